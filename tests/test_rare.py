"""Rare concepts (fewer than k persons): generalised to a CONCEPT_ANCESTOR ancestor or removed, counted."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anonymisation.rare import GENERALISED, RareResult, generalise_rare_concepts

SHARED = Path(__file__).parents[2] / "shared"
VOCAB = SHARED / "data" / "vocabulary-demo"
EUNOMIA = SHARED / "data" / "omop-eunomia-synthea27nj"

# --------------------------------------------------------------------------- helpers


def closure(parents: dict[int, int | None]) -> pl.DataFrame:
    """CONCEPT_ANCESTOR of a forest given child -> parent (level 0 rows included, as in Athena)."""
    rows: list[tuple[int, int, int]] = []
    for node in parents:
        level, cur = 0, node
        rows.append((node, node, 0))
        while (up := parents.get(cur)) is not None:
            level += 1
            rows.append((up, node, level))
            cur = up
    return pl.DataFrame(
        rows,
        schema=["ancestor_concept_id", "descendant_concept_id", "min_levels_of_separation"],
        orient="row",
    )


def vocab(info: dict[int, tuple[str, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "concept_id": list(info),
            "domain_id": [d for d, _ in info.values()],
            "standard_concept": [s for _, s in info.values()],
        },
        schema={"concept_id": pl.Int64, "domain_id": pl.String, "standard_concept": pl.String},
    )


def frame(rows: list[tuple[int, int]], source: list[str | None] | None = None) -> pl.DataFrame:
    df = pl.DataFrame(rows, schema={"person_id": pl.Int64, "condition_concept_id": pl.Int32}, orient="row")
    df = df.with_row_index("rid")
    if source is not None:
        df = df.with_columns(pl.Series("condition_source_value", source, dtype=pl.String))
    return df


def persons_by_concept(df: pl.DataFrame, col: str = "condition_concept_id") -> dict[int, int]:
    out = df.group_by(col).agg(pl.col("person_id").n_unique()).rows()
    return {int(c): int(n) for c, n in out}


def rows_of(concept: int, persons: range | list[int]) -> list[tuple[int, int]]:
    return [(p, concept) for p in persons]


# A small Condition hierarchy:
#   100 Condition S (root)
#     10 Condition S
#       1, 2 (rare), 3 (common)
#     20 Drug S  (wrong domain)
#       4 (rare)
#     30 Condition, not standard
#       5 (rare)
PARENTS: dict[int, int | None] = {100: None, 10: 100, 1: 10, 2: 10, 3: 10, 20: 100, 4: 20, 30: 100, 5: 30}
INFO: dict[int, tuple[str, str | None]] = {
    100: ("Condition", "S"),
    10: ("Condition", "S"),
    1: ("Condition", "S"),
    2: ("Condition", "S"),
    3: ("Condition", "S"),
    20: ("Drug", "S"),
    4: ("Condition", "S"),
    30: ("Condition", None),
    5: ("Condition", "S"),
}
ANC = closure(PARENTS)
CONCEPT = vocab(INFO)


def run(df: pl.DataFrame, k: int, **kw: object) -> RareResult:
    return generalise_rare_concepts(df, "condition_concept_id", k, ANC, CONCEPT, **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- hand-made cases


def test_rare_children_rolled_up_to_parent_thanks_to_sibling_rows() -> None:
    # 1 has 2 persons, 2 has 2 other persons: each rare at k=3, together 4 persons under 10
    df = frame(rows_of(1, [1, 2]) + rows_of(2, [3, 4]) + rows_of(3, range(10, 15)))
    r = run(df, 3)
    assert r.generalised_concepts == {1: 10, 2: 10}
    assert r.generalised_rows == 4 and r.removed_rows == 0 and r.removed_concepts == 0
    assert persons_by_concept(r.table) == {10: 4, 3: 5}
    assert r.table.filter(pl.col(GENERALISED)).get_column("rid").to_list() == [0, 1, 2, 3]
    assert r.table.get_column("rid").to_list() == list(range(df.height))  # order kept
    assert r.table.schema["condition_concept_id"] == pl.Int32


def test_parents_own_rows_count() -> None:
    df = frame(rows_of(1, [1]) + rows_of(10, [2, 3]))
    r = run(df, 3)
    # 10 itself is rare (2 persons) but pools with the rare child moved to it: kept, 3 persons
    assert r.generalised_concepts == {1: 10}
    assert r.kept_rare_concepts == 1 and r.removed_rows == 0
    assert persons_by_concept(r.table) == {10: 3}


def test_common_sibling_does_not_make_a_rare_parent() -> None:
    # 10's rolled-up count (1 + 5 persons) reaches k, but 3 is common and keeps its concept: moving 1
    # alone to 10 would create a rare 10. The fixpoint sends it on to 100, which is also only 1 person
    # in the output, so the row is removed.
    df = frame(rows_of(1, [1]) + rows_of(3, range(10, 15)))
    r = run(df, 3)
    assert r.generalised_concepts == {}
    assert r.removed_rows == 1 and r.removed_concepts == 1
    assert persons_by_concept(r.table) == {3: 5}
    assert r.rounds >= 2


def test_rare_concept_without_qualifying_ancestor_removed() -> None:
    df = frame(rows_of(1, [1]) + rows_of(3, range(10, 13)))
    r = run(df, 3)
    assert r.removed_rows == 1 and r.removed_concepts == 1 and r.generalised_rows == 0
    assert 1 not in persons_by_concept(r.table)


def test_different_domain_ancestor_not_used() -> None:
    # 4's parent 20 is a Drug concept; the Condition root 100 is used instead (3 persons there)
    df = frame(rows_of(4, [1, 2]) + rows_of(20, [3, 4, 5]) + rows_of(100, [6]))
    r = run(df, 3)
    assert r.generalised_concepts == {4: 100}
    assert r.kept_rare_concepts == 1  # 100 (1 own person) pools with 4's 2 persons
    assert persons_by_concept(r.table) == {20: 3, 100: 3}


def test_non_standard_ancestor_not_used() -> None:
    df = frame(rows_of(5, [1, 2]) + rows_of(30, [3, 4, 5]) + rows_of(100, [6, 7]))
    r = run(df, 3)
    assert r.generalised_concepts == {5: 100}
    assert persons_by_concept(r.table) == {30: 3, 100: 4}


def test_unmapped_rare_source_code_removed() -> None:
    df = frame(
        rows_of(0, [1, 2, 3]) + rows_of(0, [4]) + rows_of(3, [1, 2, 3]),
        source=["A", "A", "A", "B", "x", "x", "x"],
    )
    r = run(df, 3, source_col="condition_source_value")
    assert r.removed_rows == 1 and r.removed_source_values == 1 and r.removed_concepts == 0
    assert r.table.get_column("rid").to_list() == [0, 1, 2, 4, 5, 6]
    # without a source column, concept 0 is judged as one concept: 4 persons, kept
    r0 = run(df, 3)
    assert r0.removed_rows == 0
    # and removed when it is rare
    r5 = run(df, 5)
    assert 0 not in persons_by_concept(r5.table)


def test_threshold_exactly_met_kept() -> None:
    df = frame(rows_of(1, [1, 2, 3]) + rows_of(1, [1]))
    r = run(df, 3)
    assert r.generalised_rows == 0 and r.removed_rows == 0
    assert r.table.drop(GENERALISED).equals(df)
    assert not r.table.get_column(GENERALISED).any()


def test_without_vocabulary_rare_concepts_are_removed() -> None:
    df = frame(rows_of(1, [1, 2]) + rows_of(2, [3, 4]) + rows_of(3, range(10, 15)))
    for anc, con in ((None, CONCEPT), (ANC, None), (None, None)):
        r = generalise_rare_concepts(df, "condition_concept_id", 3, anc, con)
        assert r.generalised_concepts == {} and r.removed_rows == 4 and r.removed_concepts == 2
        assert persons_by_concept(r.table) == {3: 5}


def test_tie_broken_by_persons_then_id() -> None:
    # 7 has two parents at level 1: 40 (1 own person) and 50 (3 own persons); 50 has more persons
    anc = pl.concat([ANC, closure({7: 40}), closure({7: 50})]).unique()
    con = vocab({**INFO, 7: ("Condition", "S"), 40: ("Condition", "S"), 50: ("Condition", "S")})
    df = frame(rows_of(7, [1, 2]) + rows_of(40, [3, 4, 5]) + rows_of(50, [6, 7, 8, 9]))
    r = generalise_rare_concepts(df, "condition_concept_id", 3, anc, con)
    assert r.generalised_concepts == {7: 50}
    df2 = frame(rows_of(7, [1, 2]) + rows_of(40, [3, 4, 5]) + rows_of(50, [6, 7, 8]))
    r2 = generalise_rare_concepts(df2, "condition_concept_id", 3, anc, con)
    assert r2.generalised_concepts == {7: 40}


def test_deterministic() -> None:
    df = frame(rows_of(1, [1, 2]) + rows_of(2, [3]) + rows_of(5, [4]) + rows_of(3, range(10, 15)))
    a, b = run(df, 3), run(df.reverse(), 3)
    assert a.generalised_concepts == b.generalised_concepts
    assert a.table.sort("rid").equals(b.table.sort("rid"))


# --------------------------------------------------------------------------- property


@st.composite
def problems(draw: st.DrawFn) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, int]:
    """A random forest of concepts (mostly standard, mostly one domain) and rows of a few persons."""
    n = draw(st.integers(1, 12))
    parents: dict[int, int | None] = {}
    for node in range(1, n + 1):
        up = draw(st.integers(0, node - 1))  # 0: a root
        parents[node] = up or None
    info = {
        node: (
            draw(st.sampled_from(["Condition"] * 4 + ["Drug"])),
            draw(st.sampled_from(["S"] * 4 + [None, "C"])),
        )
        for node in parents
    }
    rows = draw(st.lists(st.tuples(st.integers(1, 8), st.integers(0, n)), min_size=0, max_size=50))
    source = draw(st.lists(st.sampled_from(["a", "b", "c", None]), min_size=len(rows), max_size=len(rows)))
    k = draw(st.integers(1, 5))
    return frame(rows, source), closure(parents), vocab(info), k


@given(problems(), st.booleans())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_property_no_new_rare_concept(
    problem: tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, int], with_source: bool
) -> None:
    df, anc, con, k = problem
    src = "condition_source_value" if with_source else None
    r = generalise_rare_concepts(df, "condition_concept_id", k, anc, con, source_col=src)
    out = r.table
    # accounting
    assert out.height + r.removed_rows == df.height
    assert r.generalised_rows == int(out.get_column(GENERALISED).sum())
    # every concept of the output reaches k (concept 0 by source value when a source column is given)
    mapped = out.filter(pl.col("condition_concept_id") != 0) if with_source else out
    assert all(n >= k for n in persons_by_concept(mapped).values())
    if with_source:
        unm = out.filter(pl.col("condition_concept_id") == 0)
        per_src = unm.group_by("condition_source_value").agg(pl.col("person_id").n_unique())
        assert all(n >= k for n in per_src.get_column("person_id").to_list())
    # generalised rows went to a strict standard ancestor of the same domain; others are untouched
    joined = out.join(df.select("rid", orig=pl.col("condition_concept_id")), on="rid")
    pairs = set(
        anc.filter(pl.col("min_levels_of_separation") > 0)
        .select("ancestor_concept_id", "descendant_concept_id")
        .iter_rows()
    )
    info = {c: (d, s) for c, d, s in con.iter_rows()}
    for new, orig, flag in joined.select("condition_concept_id", "orig", GENERALISED).iter_rows():
        if flag:
            assert (new, orig) in pairs
            assert info[new][1] == "S" and info[new][0] == info[orig][0]
            assert r.generalised_concepts[orig] == new
        else:
            assert new == orig
    # a rare concept kept as itself is a pool that a generalised rare descendant joined
    before = persons_by_concept(df.filter(pl.col("condition_concept_id") != 0) if with_source else df)
    rare = {c for c, n in before.items() if n < k}
    kept_rare = rare & set(joined.filter(~pl.col(GENERALISED)).get_column("orig").to_list())
    assert kept_rare <= set(r.generalised_concepts.values())
    assert len(kept_rare) == r.kept_rare_concepts
    assert r.removed_concepts + len(r.generalised_concepts) + r.kept_rare_concepts == len(rare)


# --------------------------------------------------------------------------- real vocabulary

needs_shared = pytest.mark.skipif(
    not (VOCAB.is_dir() and EUNOMIA.is_dir()), reason="../shared is not beside this checkout"
)


@needs_shared
@pytest.mark.parametrize("k", [2, 3, 5])
def test_demo_vocabulary_condition_concepts(k: int) -> None:
    anc = pl.read_csv(VOCAB / "CONCEPT_ANCESTOR.csv", separator="\t", quote_char=None)
    con = pl.read_csv(
        VOCAB / "CONCEPT.csv",
        separator="\t",
        quote_char=None,
        infer_schema=False,
        columns=["concept_id", "domain_id", "standard_concept"],
    ).with_columns(pl.col("concept_id").cast(pl.Int64))
    co = pl.read_csv(
        EUNOMIA / "CONDITION_OCCURRENCE.csv",
        columns=["condition_occurrence_id", "person_id", "condition_concept_id", "condition_source_value"],
        schema_overrides={"condition_source_value": pl.String, "condition_concept_id": pl.Int32},
    )
    r = generalise_rare_concepts(co, "condition_concept_id", k, anc, con, source_col="condition_source_value")
    out = r.table
    assert out.height + r.removed_rows == co.height
    counts = persons_by_concept(out.filter(pl.col("condition_concept_id") != 0))
    assert all(n >= k for n in counts.values())
    before = persons_by_concept(co)
    rare = {c for c, n in before.items() if n < k and c != 0}
    assert rare, "the demo data has rare conditions at this k"
    assert set(r.generalised_concepts) <= rare
    assert r.removed_concepts + len(r.generalised_concepts) + r.kept_rare_concepts == len(rare)
    domain = dict(con.select("concept_id", "domain_id").iter_rows())
    for child, parent in r.generalised_concepts.items():
        assert domain[parent] == domain[child] == "Condition"
    if k == 3:
        assert r.generalised_concepts, "some rare condition climbs to a common SNOMED ancestor"
