"""Stable, unkeyed row ids of the identifiable zone (the pseudonymisation stage re-keys them)."""

from __future__ import annotations

import hashlib

import polars as pl


def stable_id(namespace: str, values: pl.Series) -> pl.Series:
    """Unkeyed, stable 63-bit ids for the identifiable zone (blake2b of namespace and value)."""
    distinct = values.drop_nulls().unique().sort()
    ids = [
        int.from_bytes(hashlib.blake2b(f"{namespace}\x1f{v}".encode(), digest_size=8).digest(), "big") & ((1 << 63) - 1)
        for v in distinct.to_list()
    ]
    lut = pl.DataFrame({"v": distinct, "id": pl.Series(ids, dtype=pl.Int64)})
    return values.to_frame("v").join(lut, on="v", how="left", maintain_order="left")["id"]
