"""Stable, unkeyed row ids of the identifiable zone (the pseudonymisation stage re-keys them)."""

from __future__ import annotations

import hashlib

import polars as pl

_MASK63 = (1 << 63) - 1


def stable_id(namespace: str, values: pl.Series) -> pl.Series:
    """Unkeyed, stable 63-bit ids for the identifiable zone (blake2b of namespace and value).

    Each distinct value is hashed once, in no particular order (an id depends on its value only); the
    namespace is hashed once and its state copied per value."""
    distinct = values.drop_nulls().unique()
    copy = hashlib.blake2b(f"{namespace}\x1f".encode(), digest_size=8).copy
    from_bytes = int.from_bytes
    raw = distinct.to_list()
    texts: list[str] = raw if distinct.dtype == pl.String else [str(v) for v in raw]
    ids: list[int] = []
    append = ids.append
    for text in texts:
        h = copy()
        h.update(text.encode())
        append(from_bytes(h.digest(), "big") & _MASK63)
    lut = pl.DataFrame({"v": distinct, "id": pl.Series(ids, dtype=pl.Int64)})
    return values.to_frame("v").join(lut, on="v", how="left", maintain_order="left")["id"]
