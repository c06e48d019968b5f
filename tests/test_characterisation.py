"""The aggregate characterisation: FeatureExtraction's covariate ids, the long-term window, and the
disclosure rule (a withheld gender count is not the cohort's size minus the other)."""

from __future__ import annotations

import datetime as dt

import polars as pl

from transforms.characterisation import characterise

D = dt.date


def _data(n_men: int = 4) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, pl.DataFrame], pl.DataFrame]:
    persons = list(range(1, 13))
    cohort = pl.DataFrame({"cohort_definition_id": [1] * 12, "subject_id": persons,
                           "cohort_start_date": [D(2020, 6, 1)] * 12, "cohort_end_date": [D(2022, 1, 1)] * 12})
    person = pl.DataFrame({"person_id": persons, "gender_concept_id": [8507] * n_men + [8532] * (12 - n_men),
                           "year_of_birth": [1960] * 6 + [1951] * 6})  # ages 60 (group 12) and 69 (group 13)
    cond = pl.DataFrame({"person_id": [*persons, 1],
                         "condition_concept_id": [201826] * 12 + [4226121],
                         "condition_start_date": [D(2020, 1, 1)] * 12 + [D(2020, 5, 1)]})
    drug = pl.DataFrame({"person_id": persons, "drug_concept_id": [1503297] * 12,
                         "drug_exposure_start_date": [D(2020, 3, 1)] * 6 + [D(2018, 1, 1)] * 6})  # 6 outside the window
    names = pl.DataFrame({"concept_id": [8507, 8532, 201826, 4226121, 1503297],
                          "concept_name": ["MALE", "FEMALE", "Type 2 diabetes mellitus",
                                           "Retinopathy due to type 2 diabetes mellitus", "metformin"]})
    return cohort, person, {"condition_occurrence": cond, "drug_exposure": drug}, names


def test_covariates_follow_feature_extraction() -> None:
    cohort, person, tables, names = _data(n_men=6)
    out = characterise(cohort, person, tables, names, k=5)
    rows = {r["covariate_id"]: r for r in out.iter_rows(named=True)}
    assert rows[8507001]["persons"] == 6 and rows[8532001]["persons"] == 6  # gender: conceptId * 1000 + 1
    assert rows[12003]["persons"] == 6 and rows[13003]["persons"] == 6  # age groups 60-64, 65-69
    assert rows[12003]["covariate_name"] == "age group:  60 -  64"  # FeatureExtraction pads to 3 characters
    assert rows[201826102]["persons"] == 12 and rows[201826102]["average_value"] == 1.0
    assert rows[1503297302]["persons"] == 6  # metformin started within 365 days before index: 6 of 12
    assert rows[4226121102]["suppressed"] and rows[4226121102]["persons"] is None  # 1 person: withheld
    assert out["covariate_id"].is_sorted()


def test_a_withheld_gender_is_not_the_rest_of_the_cohort() -> None:
    cohort, person, tables, names = _data(n_men=4)  # 4 men < k: withheld, and women (8) too, else 12 - 8
    out = characterise(cohort, person, tables, names, k=5)
    rows = {r["covariate_id"]: r for r in out.iter_rows(named=True)}
    assert rows[8507001]["persons"] is None and rows[8532001]["persons"] is None
    assert rows[201826102]["persons"] == 12
    shown = out["persons"].drop_nulls()
    assert not shown.filter(shown.is_between(1, 4)).len()


def test_a_cohort_smaller_than_k_publishes_nothing() -> None:
    cohort, person, tables, names = _data()
    small = cohort.head(3)
    out = characterise(small, person, tables, names, k=5)
    assert out["persons"].null_count() == out.height and out["suppressed"].all()


def test_products_round_to_rounds_the_t2dm_aggregates(tmp_path: object) -> None:
    """products.round_to reaches the t2dm-complications aggregate form too: every published count is a
    multiple of round_to (never below k), and the cohort's size is rounded with them."""
    import json
    from pathlib import Path

    from pipelines.product_assets import build_t2dm
    from transforms.vocabulary import load_vocabulary

    vocab = load_vocabulary()
    persons = list(range(1, 13))
    person = pl.DataFrame({"person_id": persons, "gender_concept_id": [8507] * 7 + [8532] * 5,
                           "year_of_birth": [1960] * 12})
    cond = pl.DataFrame({"person_id": [*persons, *persons[:8]],
                         "condition_concept_id": [201826] * 12 + [4226121] * 8,
                         "condition_start_date": [D(2020, 1, 1)] * 12 + [D(2021, 1, 1)] * 8})
    period = pl.DataFrame({"person_id": persons, "observation_period_start_date": [D(2019, 1, 1)] * 12,
                           "observation_period_end_date": [D(2025, 1, 1)] * 12})
    empty = {t: pl.DataFrame(schema={"person_id": pl.Int64}) for t in
             ("drug_exposure", "measurement", "procedure_occurrence", "observation")}
    tables = {"person": person, "condition_occurrence": cond, "observation_period": period, **empty}
    folder = Path(str(tmp_path)) / "t2dm"
    doc = build_t2dm(folder, tables, vocab.ancestor, vocab.maps_to.select("concept_id_1", "concept_id_2"),
                     vocab.concept.select("concept_id", "concept_name"), k=3, persons=12, round_to=5)
    assert doc["cohort_persons_shown"] == 10 and doc["disclosure"]["round_to"] == 5  # 12, to the nearest 5
    cov = pl.read_parquet(folder / "covariates.parquet")
    out = pl.read_parquet(folder / "outcomes.parquet")
    shown = pl.concat([cov["persons"], out["persons_with_onset"], out["persons_with_prior_outcome"]]).drop_nulls()
    assert shown.len() and (shown.filter(shown > 0) % 5 == 0).all()
    retinopathy = out.filter((pl.col("outcome") == "retinopathy") & (pl.col("window_years") == 5))
    assert retinopathy["persons_with_onset"].item() == 10  # 8 onsets within 5 years, to the nearest 5
    assert json.loads((folder / "product.json").read_text())["cohort_persons_shown"] == 10
