"""Condition and drug eras (transforms/eras.py) against hand-computed OHDSI eras."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from schemas import omop as cdm
from transforms.eras import DrugEraResult, condition_era, drug_era, ingredient_map, merge_intervals
from transforms.vocabulary import load_vocabulary

D0 = date(2021, 1, 1)
BUNDLED = Path(__file__).resolve().parents[1] / "schemas" / "vocabulary" / "demo"


def _d(days: int) -> date:
    return D0 + timedelta(days=days)


def _co(rows: list[tuple[int, int, date, date | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={"person_id": pl.Int64, "condition_concept_id": pl.Int32,
                "condition_start_date": pl.Date, "condition_end_date": pl.Date},
        orient="row",
    )


def _de(rows: list[tuple[int, int, int, date, date | None, int | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={"drug_exposure_id": pl.Int64, "person_id": pl.Int64, "drug_concept_id": pl.Int32,
                "drug_exposure_start_date": pl.Date, "drug_exposure_end_date": pl.Date, "days_supply": pl.Int32},
        orient="row",
    )


# A tiny vocabulary: ingredients 1 and 2 (standard RxNorm), 3 (non-standard: not an ingredient for eras),
# drugs 11, 12 -> 1; 13 -> 1 and 2 (a combination); 14 -> 3 only; 99 nothing.
CONCEPT = pl.DataFrame(
    {
        "concept_id": [1, 2, 3, 11, 12, 13, 14, 99],
        "vocabulary_id": ["RxNorm", "RxNorm Extension", "RxNorm", "RxNorm", "RxNorm", "RxNorm", "RxNorm", "RxNorm"],
        "concept_class_id": ["Ingredient"] * 3 + ["Clinical Drug"] * 5,
        "standard_concept": ["S", "S", None, "S", "S", "S", "S", "S"],
    },
    schema_overrides={"concept_id": pl.Int32},
)
ANCESTOR = pl.DataFrame(
    {
        "ancestor_concept_id": [1, 2, 3, 1, 1, 1, 2, 3],
        "descendant_concept_id": [1, 2, 3, 11, 12, 13, 13, 14],
    }
)


def test_merge_intervals_running_max() -> None:
    df = pl.DataFrame({"k": [1, 1, 1], "s": [_d(0), _d(5), _d(70)], "e": [_d(60), _d(10), _d(80)]})
    out = merge_intervals(df, ["k"], "s", "e", 10)
    assert out["era"].to_list() == [1, 1, 1]  # the second is inside the first; the third starts 10 days after
    assert merge_intervals(df, ["k"], "s", "e", 9)["era"].to_list() == [1, 1, 2]
    with pytest.raises(ValueError):
        merge_intervals(df, ["k"], "s", "e", -1)


# --- condition eras ---------------------------------------------------------------------------


@pytest.mark.parametrize(("gap", "eras"), [(29, 1), (30, 1), (31, 2)])
def test_condition_era_persistence_window(gap: int, eras: int) -> None:
    co = _co([(1, 100, _d(0), _d(10)), (1, 100, _d(10 + gap), _d(15 + gap))])
    out = condition_era(co, "site-a")
    assert out.height == eras
    if eras == 1:
        row = out.row(0, named=True)
        assert row["condition_era_start_date"] == _d(0)
        assert row["condition_era_end_date"] == _d(15 + gap)
        assert row["condition_occurrence_count"] == 2
    else:
        assert out["condition_occurrence_count"].to_list() == [1, 1]
        assert out["condition_era_end_date"].to_list() == [_d(10), _d(15 + gap)]


def test_condition_era_missing_end_is_start_plus_one_day() -> None:
    # OHDSI: coalesce(condition_end_date, condition_start_date + 1 day); so a gap of 30 counts from start+1.
    co = _co([(1, 100, _d(0), None), (1, 100, _d(31), None), (1, 100, _d(63), None)])
    out = condition_era(co, "s")
    assert out.select("condition_era_start_date", "condition_era_end_date", "condition_occurrence_count").rows() == [
        (_d(0), _d(32), 2), (_d(63), _d(64), 1),
    ]


def test_condition_era_groups_and_exclusions() -> None:
    co = _co([
        (1, 100, _d(0), _d(60)),
        (1, 100, _d(5), _d(6)),  # inside the first: the era end stays the running maximum
        (1, 100, _d(85), _d(86)),  # 25 days after day 60
        (1, 200, _d(1), _d(2)),  # another concept: its own era
        (2, 100, _d(0), _d(1)),  # another person
        (1, 0, _d(0), _d(1)),  # unmapped: no era
        (1, 100, _d(40), _d(20)),  # end before start: treated as ending at its start
    ])
    out = condition_era(co, "s").sort("person_id", "condition_concept_id")
    assert out.select("person_id", "condition_concept_id", "condition_era_start_date",
                      "condition_era_end_date", "condition_occurrence_count").rows() == [
        (1, 100, _d(0), _d(86), 4), (1, 200, _d(1), _d(2), 1), (2, 100, _d(0), _d(1), 1),
    ]


def test_condition_era_conforms_and_is_deterministic() -> None:
    co = _co([(1, 100, _d(i * 20), None) for i in range(5)] + [(2, 7, _d(3), _d(4))])
    a = condition_era(co, "s")
    b = condition_era(co.reverse(), "s")
    assert a.schema == cdm.table("condition_era").polars_schema
    assert a.equals(b)
    assert a["condition_era_id"].n_unique() == a.height
    assert (a["condition_era_id"] >= 0).all()
    assert not condition_era(co, "other-site")["condition_era_id"].is_in(a["condition_era_id"].implode()).any()


def test_condition_era_empty() -> None:
    out = condition_era(_co([]), "s")
    assert out.height == 0
    assert out.schema == cdm.table("condition_era").polars_schema


# --- drug eras --------------------------------------------------------------------------------


def test_ingredient_map_standard_rxnorm_ingredients_only() -> None:
    m = ingredient_map(ANCESTOR, CONCEPT)
    assert m.rows() == [(1, 1), (2, 2), (11, 1), (12, 1), (13, 1), (13, 2)]


@pytest.mark.parametrize(("gap", "eras"), [(29, 1), (30, 1), (31, 2)])
def test_drug_era_persistence_window_and_gap_days(gap: int, eras: int) -> None:
    # days_supply 10 -> end = start + 10; the second exposure starts `gap` days after the first ends
    de = _de([(1, 1, 11, _d(0), None, 10), (2, 1, 12, _d(10 + gap), None, 10)])
    res = drug_era(de, ANCESTOR, CONCEPT, "s")
    assert isinstance(res, DrugEraResult)
    out = res.eras
    assert out.height == eras
    assert out["drug_concept_id"].unique().to_list() == [1]
    if eras == 1:
        assert out.select("drug_era_start_date", "drug_era_end_date", "drug_exposure_count", "gap_days").row(0) == (
            _d(0), _d(20 + gap), 2, gap,
        )
    else:
        assert out["gap_days"].to_list() == [0, 0]
        assert out["drug_exposure_count"].to_list() == [1, 1]


def test_drug_era_overlapping_exposures_do_not_double_count() -> None:
    de = _de([
        (1, 1, 11, _d(0), _d(20), None),
        (2, 1, 12, _d(10), _d(30), None),  # overlaps: one sub-exposure day 0..30
        (3, 1, 11, _d(30), _d(35), None),  # touches: same sub-exposure
        (4, 1, 11, _d(45), _d(50), None),  # 10 days later: same era, 10 gap days
    ])
    eras, no_ingredient, invalid = drug_era(de, ANCESTOR, CONCEPT, "s")
    assert (no_ingredient, invalid) == (0, 0)
    assert eras.select("drug_era_start_date", "drug_era_end_date", "drug_exposure_count", "gap_days").rows() == [
        (_d(0), _d(50), 4, 10),
    ]


def test_drug_era_end_date_rules() -> None:
    de = _de([
        (1, 1, 11, _d(0), _d(3), 30),  # an end date wins over days_supply
        (2, 2, 11, _d(0), None, 0),  # days_supply 0 counts as missing: start + 1 day
        (3, 3, 11, _d(0), None, None),  # nothing: start + 1 day
        (4, 4, 11, _d(0), None, 7),  # start + days_supply
    ])
    out = drug_era(de, ANCESTOR, CONCEPT, "s").eras.sort("person_id")
    assert out["drug_era_end_date"].to_list() == [_d(3), _d(1), _d(1), _d(7)]
    assert out["gap_days"].to_list() == [0, 0, 0, 0]


def test_drug_era_skips_and_combinations() -> None:
    de = _de([
        (1, 1, 13, _d(0), None, 5),  # combination: one era per ingredient
        (2, 1, 99, _d(0), None, 5),  # no ingredient at all
        (3, 1, 14, _d(0), None, 5),  # only a non-standard ingredient
        (4, 1, 0, _d(0), None, 5),  # unmapped
        (5, 1, 11, _d(0), None, -3),  # negative days_supply: left out, as in OHDSI
        (6, None, 11, _d(0), None, 5),  # no person
    ])
    res = drug_era(de, ANCESTOR, CONCEPT, "s")
    assert res.skipped_no_ingredient == 3
    assert res.skipped_invalid == 2
    assert res.eras.sort("drug_concept_id").select("drug_concept_id", "drug_exposure_count").rows() == [(1, 1), (2, 1)]
    assert res.eras.schema == cdm.table("drug_era").polars_schema


def test_drug_era_deterministic_ids() -> None:
    de = _de([(i, i % 3, 11 + i % 2, _d(i * 17), None, 10) for i in range(30)])
    a = drug_era(de, ANCESTOR, CONCEPT, "s").eras
    b = drug_era(de.sample(fraction=1.0, shuffle=True, seed=1), ANCESTOR, CONCEPT, "s").eras
    assert a.equals(b)
    assert a["drug_era_id"].n_unique() == a.height


def _real_drug_run(vocab_dir: Path) -> tuple[pl.DataFrame, DrugEraResult, pl.DataFrame]:
    concept = load_vocabulary(str(vocab_dir)).concept
    ancestor = pl.read_csv(vocab_dir / "CONCEPT_ANCESTOR.csv", separator="\t", infer_schema=False)
    ingredients = ingredient_map(ancestor, concept)
    drugs = concept.filter(pl.col("domain_id") == "Drug").sort("concept_id")
    reach = drugs.filter(pl.col("concept_id").is_in(ingredients["descendant_concept_id"].implode()),
                         pl.col("concept_class_id") != "Ingredient")["concept_id"].to_list()
    other = drugs.filter(~pl.col("concept_id").is_in(ingredients["descendant_concept_id"].implode()))[
        "concept_id"].to_list()[:10]
    rows: list[tuple[int, int, int, date, date | None, int | None]] = []
    n = 0
    for person in (1, 2, 3):
        for j, cid in enumerate(reach):
            for k in range(2):  # two fills per drug, 40 days apart, 30 days of supply: one era, 10 gap days
                n += 1
                rows.append((n, person, cid, _d(j + 40 * k), None, 30))
    for cid in other:
        n += 1
        rows.append((n, 1, cid, _d(0), None, 30))
    de = _de(rows)
    return de, drug_era(de, ancestor, concept, "demo"), ingredients.filter(
        pl.col("descendant_concept_id").is_in(reach))


def _check_real_run(de: pl.DataFrame, res: DrugEraResult, ingredients: pl.DataFrame) -> None:
    eras = res.eras
    n_no_ing = de.filter(~pl.col("drug_concept_id").is_in(ingredients["descendant_concept_id"].implode())).height
    assert res.skipped_no_ingredient == n_no_ing
    assert res.skipped_invalid == 0
    assert eras.height > 0
    assert set(eras["drug_concept_id"].to_list()) == set(ingredients["ingredient_concept_id"].to_list())
    # every exposure reaching k ingredients is counted once per ingredient
    per_exposure = ingredients.group_by("descendant_concept_id").len()
    expected = de.join(per_exposure, left_on="drug_concept_id", right_on="descendant_concept_id")["len"].sum()
    assert eras["drug_exposure_count"].sum() == expected
    assert (eras["gap_days"] >= 0).all()
    assert (eras["drug_era_end_date"] >= eras["drug_era_start_date"]).all()
    assert eras.schema == cdm.table("drug_era").polars_schema
    assert eras["drug_era_id"].n_unique() == eras.height


def test_drug_era_on_bundled_demo_vocabulary_rolls_drugs_up_to_their_ingredients() -> None:
    # The bundled demo vocabulary carries the RxNorm ingredients of its drugs (since 2026-12-06): every
    # demo drug but the two insulin products (no ingredient there) rolls up to its ingredient; those two
    # are reported as skipped rather than silently lost.
    concept = load_vocabulary("bundled:demo").concept
    ancestor = pl.read_csv(BUNDLED / "CONCEPT_ANCESTOR.csv", separator="\t", infer_schema=False)
    drugs = concept.filter((pl.col("domain_id") == "Drug") & (pl.col("concept_class_id") != "Ingredient"))
    de = _de([(i, i, cid, _d(1), None, 30) for i, cid in enumerate(drugs["concept_id"].to_list())])
    res = drug_era(de, ancestor, concept, "demo")
    assert res.eras.schema == cdm.table("drug_era").polars_schema
    assert res.skipped_no_ingredient == 2
    assert res.eras.height == drugs.height - 2
    names = dict(concept.select("concept_id", "concept_name").iter_rows())
    by_person = dict(res.eras.select("person_id", "drug_concept_id").iter_rows())
    metformin = drugs["concept_id"].to_list().index(40163924)
    assert names[by_person[metformin]] == "metformin"
    assert {concept.filter(pl.col("concept_id") == c)["concept_class_id"].item() for c in by_person.values()} == {"Ingredient"}


def test_drug_era_on_vocabulary_demo(shared: Path) -> None:
    folder = shared / "data" / "vocabulary-demo"
    if not folder.exists():
        pytest.skip("vocabulary-demo not in ../shared")
    de, res, ingredients = _real_drug_run(folder)
    assert ingredients["descendant_concept_id"].n_unique() >= 100  # ~120 drugs reach an ingredient
    _check_real_run(de, res, ingredients)
    # a single-ingredient drug's two fills make one era with 10 gap days
    single = ingredients.group_by("descendant_concept_id").len().filter(pl.col("len") == 1)
    ids = single["descendant_concept_id"].to_list()
    one = de.filter(pl.col("drug_concept_id") == ids[0], pl.col("person_id") == 1)
    eras = drug_era(one, pl.read_csv(folder / "CONCEPT_ANCESTOR.csv", separator="\t", infer_schema=False),
                    load_vocabulary(str(folder)).concept, "demo").eras
    assert eras.select("drug_exposure_count", "gap_days").rows() == [(2, 10)]
