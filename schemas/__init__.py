"""Schemas, contracts and configuration models of ds4h: one source of truth per schema."""
