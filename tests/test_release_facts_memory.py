"""The release's facts pass in bounded memory (issue 18) gives what the whole-table computation gives:
units counted one range of person ids at a time from the Parquet parts, fact ids mapped through each
column's distinct values, and the persons holding each ancestor counted over groups of persons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

import anonymisation.facts as facts
import anonymisation.release as release
from anonymisation.facts import build_factbook, concept_parents, fact_key, units_matrix
from schemas import omop as cdm
from transforms.storage import LazyTables, PartitionWriter

CODES = [(201826, "E11.9"), (320128, "I10"), (4329847, "I21.9"), (0, "Z99.9"), (201254, "E10.9")]


def _conditions(seed: int, persons: list[int]) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n = 40 * len(persons)
    pick = rng.integers(0, len(CODES), n)
    return cdm.conform(pl.DataFrame({
        "condition_occurrence_id": np.arange(n) + seed * 100_000,
        "person_id": rng.choice(persons, n),
        "condition_concept_id": [CODES[i][0] for i in pick],
        "condition_source_value": [CODES[i][1] if i != 2 or seed % 2 else None for i in pick],
        "condition_source_concept_id": [0] * n,
        "condition_start_date": [None] * n,
        "provider_id": rng.choice([None, 7, 8], n).tolist(),
    }).with_columns(pl.col("condition_start_date").cast(pl.Date)), "condition_occurrence")


@pytest.fixture()
def sites(tmp_path: Path) -> tuple[dict[str, LazyTables], dict[str, dict[str, pl.DataFrame]]]:
    """Two sites in Parquet parts (person buckets; persons 1-5 at both sites, as a patient of two
    hospitals is) and the same tables in memory."""
    on_disk: dict[str, LazyTables] = {}
    in_memory: dict[str, dict[str, pl.DataFrame]] = {}
    for s, seed in (("a", 1), ("b", 2)):
        folder = tmp_path / s / "condition_occurrence"
        writer = PartitionWriter(folder)
        parts = [_conditions(seed * 10 + k, [*range(1, 6), *range(seed * 1000 + k * 50, seed * 1000 + k * 50 + 50)])
                 for k in range(3)]
        for k, df in enumerate(parts):
            writer.write(df, k)
        writer.commit()
        on_disk[s] = LazyTables({"condition_occurrence": folder})
        in_memory[s] = {"condition_occurrence": pl.concat(parts)}
    return on_disk, in_memory


def test_units_counted_by_range_of_persons_equal_the_whole_table(
        sites: tuple[dict[str, LazyTables], dict[str, dict[str, pl.DataFrame]]], monkeypatch: pytest.MonkeyPatch) -> None:
    on_disk, in_memory = sites
    whole = release._table_units(in_memory, "condition_occurrence", 17)
    monkeypatch.setattr(release, "UNIT_RANGE_ROWS", 500)  # about 5 ranges of person ids
    ranged = release._table_units(on_disk, "condition_occurrence", 17)
    assert whole is not None and ranged is not None
    assert whole.frame.height > 100
    assert ranged.columns == whole.columns and ranged.slots == whole.slots
    assert ranged.frame.equals(whole.frame)  # the same units, in the same order, with the same ids


def test_fact_ids_through_distinct_values_and_grouped_ancestors(
        sites: tuple[dict[str, LazyTables], dict[str, dict[str, pl.DataFrame]]], monkeypatch: pytest.MonkeyPatch) -> None:
    from transforms.vocabulary import load_vocabulary

    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "vocabulary-demo"
    if not shared.exists():
        pytest.skip("../shared is not beside this checkout")
    vocab = load_vocabulary(str(shared))
    _, in_memory = sites
    tu = release._table_units(in_memory, "condition_occurrence", 0)
    assert tu is not None
    pairs = tu.frame.select(concept=pl.col("condition_concept_id").cast(pl.Int64), person="person_id")
    parents = concept_parents(pairs, vocab.ancestor, vocab.concept)
    assert parents
    monkeypatch.setattr(facts, "CONCEPT_GROUP_PAIRS", 7)
    assert concept_parents(pairs, vocab.ancestor, vocab.concept) == parents
    book = build_factbook([tu], [], vocab.ancestor, vocab.concept)
    persons = {int(p): i for i, p in enumerate(sorted(set(tu.frame["person_id"].to_list())))}
    um = units_matrix([tu], book, persons)
    assert um.facts.dtype == np.int32
    for c, s in zip(tu.columns, tu.slots, strict=True):  # each unit's own key, looked up one by one
        expected = book.ids(tu.frame.select(k=fact_key(tu.table, c))["k"])
        assert np.array_equal(um.facts[:, s], expected), c
    assert (um.facts[:, 0] >= 0).any() and (um.facts[:, 0] < 0).any()  # concept 0 is no fact


def test_eras_by_range_of_persons_equal_the_whole_table() -> None:
    """The release's eras computed one range of person ids at a time (null ids with the first range) are
    the eras of the whole table, row for row and in the same order."""
    import datetime as dt

    from transforms import eras

    rng = np.random.default_rng(5)
    n = 3_000
    start = [dt.date(2020, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 700, n)]
    co = pl.DataFrame({
        "person_id": rng.integers(1, 400, n) * 1_000_003,
        "condition_concept_id": rng.choice([201826, 320128, 4329847], n).astype(np.int32),
        "condition_start_date": start,
        "condition_end_date": [s + dt.timedelta(days=int(k)) if k else None for s, k in zip(start, rng.integers(0, 40, n), strict=True)],
    })
    whole = eras.condition_era(co, "release")
    ranged = release._by_person_range(co, lambda d: eras.condition_era(d, "release"), rows=250)
    assert whole.height > 500
    assert ranged.equals(whole)
