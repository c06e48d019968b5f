"""Synthetic Luxembourg hospital extracts (deterministic for a seed)."""
