"""Held-out de-identification test notes, written independently of the tool (see README.md)."""
