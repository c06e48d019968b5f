"""Disclosure control of aggregates, checked by code that shares nothing with the engine: it rebuilds
every additive relation of the published table itself and tries to recover each withheld count."""

from __future__ import annotations

import itertools
import random

import polars as pl
import pytest

from anonymisation.disclosure import ALL, DisclosureError, protect


def _true_totals(cells: pl.DataFrame, dims: list[str]) -> dict[tuple[str, ...], int]:
    out: dict[tuple[str, ...], int] = {}
    for row in cells.iter_rows(named=True):
        for mask in itertools.product([False, True], repeat=len(dims)):
            key = tuple(ALL if m else str(row[d]) for d, m in zip(dims, mask, strict=True))
            out[key] = out.get(key, 0) + int(row["persons"])
    return out


def _audit(published: pl.DataFrame, cells: pl.DataFrame, dims: list[str], k: int) -> list[str]:
    """What an attacker gets from the published table: counts in 1..k-1, and withheld counts that one
    relation (a total minus its published parts, or the parts' sum for a withheld total) gives back."""
    problems = []
    truth = _true_totals(cells, dims)
    shown = {tuple(r[d] for d in dims): r["persons"] for r in published.iter_rows(named=True)}
    assert set(shown) == set(truth), "the table is not the whole cube"
    for key, v in shown.items():
        if v is not None and 0 < v < k:
            problems.append(f"{key} published as {v}")
        if v is not None and v != truth[key]:
            problems.append(f"{key} published as {v}, true {truth[key]}")
    for key in shown:
        for i, d in enumerate(dims):
            if key[i] != ALL:
                continue
            parts = [p for p in shown if p[i] != ALL and all(p[j] == key[j] for j in range(len(dims)) if j != i)]
            unknown = [m for m in [key, *parts] if shown[m] is None]
            if len(unknown) == 1:
                problems.append(f"{unknown[0]} recoverable from the total over {d} at {key}")
    return problems


def _random_table(seed: int, dims: dict[str, int]) -> pl.DataFrame:
    rng = random.Random(seed)
    rows = [{**{d: f"{d}{v}" for d, v in zip(dims, combo, strict=True)},
             "persons": rng.choice([0, 0, 1, 2, 3, 4, 5, 8, 13, 40, 120])}
            for combo in itertools.product(*[range(n) for n in dims.values()])]
    return pl.DataFrame(rows)


def test_a_small_table_by_hand() -> None:
    cells = pl.DataFrame({"stage": ["I", "II", "III", "IV"], "persons": [12, 3, 9, 0]})
    p = protect(cells, ["stage"], k=5)
    shown = dict(zip(p.table["stage"], p.table["persons"], strict=True))
    # 3 withheld; the total (24) minus 12, 9 and 0 would give it back: 9 is withheld too, 0 stays
    assert shown == {"I": 12, "II": None, "III": None, "IV": 0, ALL: 24}
    assert (p.primary, p.secondary) == (1, 1)
    assert p.table.filter(pl.col("stage") == "III")["reason"].item() == "secondary"


@pytest.mark.parametrize("seed", range(40))
def test_random_tables_pass_the_independent_audit(seed: int) -> None:
    dims = {"cancer": 4, "sex": 2, "year": 3} if seed % 2 else {"stage": 5, "sex": 2}
    cells = _random_table(seed, dims)
    k = 5 + seed % 4
    p = protect(cells, list(dims), k=k)
    assert _audit(p.table, cells, list(dims), k) == []
    assert p.primary > 0  # the draws always hold small counts: the test exercises suppression


def test_without_secondary_suppression_the_audit_finds_the_cell() -> None:
    """The audit is not vacuous: the same table with primary suppression only is caught."""
    cells = pl.DataFrame({"stage": ["I", "II", "III"], "persons": [12, 3, 9]})
    p = protect(cells, ["stage"], k=5)
    naive = p.table.with_columns(pl.when(pl.col("reason") == "secondary").then(pl.lit(9, pl.Int64))
                                 .otherwise(pl.col("persons")).alias("persons"))
    assert any("recoverable" in x for x in _audit(naive, cells, ["stage"], 5))


def test_rounding_never_publishes_below_k() -> None:
    cells = pl.DataFrame({"sex": ["F", "M", "X"], "persons": [7, 23, 0]})
    p = protect(cells, ["sex"], k=7, round_to=5)
    shown = dict(zip(p.table["sex"], p.table["persons"], strict=True))
    assert shown == {"F": 10, "M": 25, "X": 0, ALL: 30}
    assert all(v is None or v == 0 or v >= 7 for v in shown.values())


def test_bad_tables_say_what_is_wrong() -> None:
    with pytest.raises(DisclosureError, match="aggregate first"):
        protect(pl.DataFrame({"a": ["x", "x"], "persons": [1, 2]}), ["a"], k=5)
    with pytest.raises(DisclosureError, match="negative"):
        protect(pl.DataFrame({"a": ["x"], "persons": [-1]}), ["a"], k=5)
    with pytest.raises(DisclosureError, match="'ALL'"):
        protect(pl.DataFrame({"a": ["ALL"], "persons": [1]}), ["a"], k=5)
    with pytest.raises(DisclosureError, match="no column"):
        protect(pl.DataFrame({"a": ["x"]}), ["a"], k=5)
