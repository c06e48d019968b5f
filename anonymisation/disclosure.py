"""Disclosure control of aggregate tables (counts by a few dimensions), as statistical offices and
OHDSI network studies publish them.

A table of counts is published with all its margins (every total over one or more dimensions, down
to the grand total: the "cube"). Then:

- **primary suppression**: every published count between 1 and k-1 is withheld (0 is published: an
  empty cell singles nobody out);
- **secondary suppression**: a withheld count must not be recoverable as a published total minus the
  published counts of its other parts. Every additive relation of the cube (a total and the cells it
  sums, along one dimension) with exactly one withheld member gets a second one: its smallest
  published non-zero part, else the total itself. Repeated until no relation has exactly one;
- **rounding** (optional): published non-zero counts are rounded to the nearest multiple of
  ``round_to``, and never down below k (a 7 at k = 7 and ``round_to`` 5 is published as 10).

What it does not cover (say so where it is used): a withheld count can still be bounded, or in
rare layouts solved, by combining several relations at once (a full audit needs linear
programming); counts of different tables of the same population are not protected jointly.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

ALL = "ALL"  # the value of a dimension in a total over it


class DisclosureError(ValueError):
    pass


@dataclass(frozen=True)
class Protected:
    table: pl.DataFrame  # dims (String, "ALL" in totals), count (Int64, null when withheld), suppressed, reason
    primary: int
    secondary: int


Key = tuple[str, ...]


def _cube(cells: pl.DataFrame, dims: Sequence[str], count: str) -> dict[Key, int]:
    cube: dict[Key, int] = {}
    for r in range(len(dims) + 1):
        for kept in itertools.combinations(range(len(dims)), r):
            names = [dims[i] for i in kept]
            agg = (cells.group_by(names).agg(pl.col(count).sum()) if names
                   else cells.select(pl.col(count).sum()))
            for row in agg.iter_rows(named=True):
                key = tuple(str(row[d]) if i in kept else ALL for i, d in enumerate(dims))
                cube[key] = int(row[count] or 0)
    return cube


def _relations(cube: dict[Key, int], n_dims: int) -> list[list[Key]]:
    """Each additive relation as [total, part, part, ...] along one dimension."""
    relations = []
    for key in cube:
        for i in range(n_dims):
            if key[i] != ALL:
                continue
            parts = [k for k in cube if k[i] != ALL and all(k[j] == key[j] for j in range(n_dims) if j != i)]
            if parts:
                relations.append([key, *sorted(parts)])
    return relations


def rounded(value: int, k: int, round_to: int) -> int:
    """A published non-zero count rounded to the nearest multiple of ``round_to``, never down into 1..k-1."""
    return max(round_to * ((value + round_to // 2) // round_to), round_to * -(-k // round_to))


def rounded_expr(col: str, k: int, round_to: int) -> pl.Expr:
    """:func:`rounded` on a column of counts (0 and null stay as they are)."""
    return (pl.when(pl.col(col) > 0)
            .then(pl.max_horizontal(round_to * ((pl.col(col) + round_to // 2) // round_to), round_to * -(-k // round_to)))
            .otherwise(pl.col(col)).alias(col))


def protect(cells: pl.DataFrame, dims: Sequence[str], count: str = "persons", *, k: int,
            round_to: int | None = None) -> Protected:
    """The cube of ``cells`` (one row per combination of ``dims``, a non-negative ``count``) with its
    margins, protected by primary and secondary suppression and optional rounding."""
    if k < 1:
        raise DisclosureError(f"k must be at least 1, not {k}")
    if round_to is not None and round_to < 1:
        raise DisclosureError(f"round_to must be at least 1, not {round_to}")
    missing = [c for c in (*dims, count) if c not in cells.columns]
    if missing:
        raise DisclosureError(f"the table has no column {', '.join(missing)}")
    if cells.height and cells[count].min() < 0:  # type: ignore[operator]
        raise DisclosureError(f"{count} holds negative values: counts only")
    cells = cells.with_columns(pl.col(d).cast(pl.String) for d in dims)
    for d in dims:
        if cells[d].is_null().any() or (cells[d] == ALL).any():
            raise DisclosureError(f"dimension {d} holds an empty value or {ALL!r}: name those groups first")
    if cells.select(dims).is_duplicated().any():
        raise DisclosureError(f"more than one row per combination of {', '.join(dims)}: aggregate first")
    cube = _cube(cells, dims, count)
    reason: dict[Key, str] = {key: "primary" for key, v in cube.items() if 0 < v < k}
    relations = _relations(cube, len(dims))
    changed = True
    while changed:
        changed = False
        for rel in relations:
            withheld = [m for m in rel if m in reason]
            if len(withheld) != 1:
                continue
            candidates = sorted((cube[m], m) for m in rel[1:] if m not in reason and cube[m] > 0)
            pick = candidates[0][1] if candidates else rel[0]
            if pick in reason:  # the total was the one withheld and no part is left: withhold a zero part
                pick = next(m for m in rel[1:] if m not in reason)
            reason[pick] = "secondary"
            changed = True
    rows = []
    for key in sorted(cube, key=lambda kk: tuple((v == ALL, v) for v in kk)):
        value: int | None = cube[key]
        if key in reason:
            value = None
        elif round_to and value:
            value = rounded(value, k, round_to)
        rows.append({**dict(zip(dims, key, strict=True)), count: value, "suppressed": key in reason,
                     "reason": reason.get(key)})
    schema = {**{d: pl.String for d in dims}, count: pl.Int64, "suppressed": pl.Boolean, "reason": pl.String}
    table = pl.DataFrame(rows, schema=schema)
    return Protected(table, sum(1 for r in reason.values() if r == "primary"),
                     sum(1 for r in reason.values() if r == "secondary"))
