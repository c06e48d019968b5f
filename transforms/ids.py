"""Stable, unkeyed row ids of the identifiable zone (the pseudonymisation stage re-keys them)."""

from __future__ import annotations

import hashlib

import polars as pl


def stable_id(namespace: str, values: pl.Series) -> pl.Series:
    """Unkeyed, stable 63-bit ids for the identifiable zone (blake2b of namespace and value)."""
    distinct = values.drop_nulls().unique().sort()
    base = hashlib.blake2b(f"{namespace}\x1f".encode(), digest_size=8)  # the namespace hashed once, then copied
    mask = (1 << 63) - 1
    ids = []
    for v in distinct.to_list():
        h = base.copy()
        h.update(str(v).encode())
        ids.append(int.from_bytes(h.digest(), "big") & mask)
    lut = pl.DataFrame({"v": distinct, "id": pl.Series(ids, dtype=pl.Int64)})
    return values.to_frame("v").join(lut, on="v", how="left", maintain_order="left")["id"]
