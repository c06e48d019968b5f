"""The PatientLevelPrediction shape of t2dm-complications on hand-made OMOP frames with known answers
(createStudyPopulation's time at risk, prior outcome and censoring; FeatureExtraction's covariate ids
and the last HbA1c), and the product in a pseudonymised and an anonymised release, read from the
written release folder with pyarrow only."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from transforms.characterisation import characterise
from transforms.plp import analysis_ref, hba1c_concepts, plp_data

D = dt.date
INDEX = D(2020, 1, 1)
HBA1C, PERCENT = 3004410, 8554
T2DM, RETINOPATHY, METFORMIN = 201826, 4226121, 1503297
HBA1C_COVARIATE = HBA1C * 1_000_000 + (PERCENT % 1000) * 1000 + 706  # 3004410554706


def _day(n: int) -> D:
    return INDEX + dt.timedelta(days=n)


def _data() -> tuple[pl.DataFrame, dict[str, pl.DataFrame], pl.DataFrame, pl.DataFrame]:
    """Subjects 10..80 (unsorted in the cohort), all indexed on 2020-01-01; observation to 2030 unless said."""
    subjects = [30, 10, 20, 40, 50, 60, 70, 80]
    cohort = pl.DataFrame({"cohort_definition_id": [1] * 8, "subject_id": subjects,
                           "cohort_start_date": [INDEX] * 8, "cohort_end_date": [D(2030, 1, 1)] * 8})
    ends = {40: _day(200), 60: _day(250)}  # 40: observation ends at day 200, 60: at day 250
    periods = pl.DataFrame({"person_id": subjects, "observation_period_start_date": [D(2015, 1, 1)] * 8,
                            "observation_period_end_date": [ends.get(s, D(2030, 1, 1)) for s in subjects]})
    death = pl.DataFrame({"person_id": [50], "death_date": [_day(500)]})  # 50 dies at day 500
    # retinopathy: 10 on the index day (prior), 20 at day 100, 30 at day 400, 60 at day 300 (after its
    # observation ends), 70 before index (prior), 80 at day 100 and again at 200
    outcome = pl.DataFrame({"person_id": [10, 20, 30, 60, 70, 80, 80],
                            "event_date": [_day(0), _day(100), _day(400), _day(300), _day(-30), _day(100), _day(200)]})
    person = pl.DataFrame({"person_id": subjects, "gender_concept_id": [8507, 8507, 8532, 8532, 8507, 8532, 0, 8507],
                           "year_of_birth": [1960, 1960, 1951, 1951, 1960, 1960, 1960, 1960]})
    condition = pl.DataFrame({"person_id": [10, 10, 20, 30],
                              "condition_concept_id": [T2DM, RETINOPATHY, T2DM, T2DM],
                              "condition_start_date": [_day(0), _day(-400), _day(-100), _day(1)]})
    drug = pl.DataFrame({"person_id": [10], "drug_concept_id": [METFORMIN], "drug_exposure_start_date": [_day(-365)]})
    measurement = pl.DataFrame({
        "person_id": [10, 10, 10, 10, 20, 20],
        "measurement_concept_id": [HBA1C] * 6,
        "measurement_date": [_day(-200), _day(-10), _day(5), _day(-400), _day(-3), _day(-3)],
        "value_as_number": [8.1, 7.2, 9.0, 6.0, 6.9, 6.4],  # 10: last in window 7.2; 20: same day, lowest 6.4
        "unit_concept_id": [PERCENT] * 6})
    names = pl.DataFrame({"concept_id": [8507, 8532, T2DM, RETINOPATHY, METFORMIN, HBA1C, PERCENT],
                          "concept_name": ["MALE", "FEMALE", "Type 2 diabetes mellitus", "Diabetic retinopathy",
                                           "metformin", "Hemoglobin A1c/Hemoglobin.total in Blood", "percent"]})
    tables = {"person": person, "observation_period": periods, "death": death, "condition_occurrence": condition,
              "drug_exposure": drug, "measurement": measurement}
    return cohort, tables, outcome, names


def _plp() -> tuple[dict[str, pl.DataFrame], pl.DataFrame, pl.DataFrame]:
    cohort, tables, outcome, names = _data()
    data = plp_data(cohort, tables, {"retinopathy": outcome}, names, [HBA1C])
    pops = {w: data.populations[("retinopathy", w)] for w in ("1y", "5y")}
    return pops, data.covariates, data.covariate_ref


def _rows(df: pl.DataFrame) -> dict[int, dict[str, object]]:
    return {int(r["subjectId"]): r for r in df.iter_rows(named=True)}


def test_row_ids_are_dense_by_subject_id() -> None:
    pops, cov, _ref = _plp()
    everyone = {10: 1, 20: 2, 30: 3, 40: 4, 50: 5, 60: 6, 70: 7, 80: 8}
    for pop in pops.values():
        assert pop["rowId"].is_sorted()
        assert all(everyone[s] == r for s, r in zip(pop["subjectId"], pop["rowId"], strict=True))
    assert set(cov["rowId"].to_list()) <= set(everyone.values())


def test_study_population_follows_create_study_population() -> None:
    pops, _cov, _ref = _plp()
    one, five = _rows(pops["1y"]), _rows(pops["5y"])
    # outcome on the index day or before it: removed (removeSubjectsWithPriorOutcome)
    assert 10 not in one and 10 not in five and 70 not in one and 70 not in five
    # outcome at day 100: survivalTime 100 (days from the window's start + 1), full time at risk
    assert (one[20]["outcomeCount"], one[20]["timeAtRisk"], one[20]["survivalTime"]) == (1, 365, 100)
    assert (five[20]["outcomeCount"], five[20]["timeAtRisk"], five[20]["survivalTime"]) == (1, 1825, 100)
    # outcome at day 400: outside the 1-year window, inside the 5-year one
    assert (one[30]["outcomeCount"], one[30]["survivalTime"]) == (0, 365)
    assert (five[30]["outcomeCount"], five[30]["survivalTime"]) == (1, 400)
    # observation ends at day 200 without the outcome: too little time at risk (minTimeAtRisk = the window)
    assert 40 not in one and 40 not in five
    # death at day 500: a full first year, too short for five
    assert one[50]["timeAtRisk"] == 365 and 50 not in five
    # the outcome after the observation period's end does not count; without it, too little time at risk
    assert 60 not in one
    # recorded twice in the window: binary outcomeCount, survival to the first
    assert (one[80]["outcomeCount"], one[80]["survivalTime"]) == (1, 100)
    assert pops["1y"].columns == ["rowId", "subjectId", "cohortStartDate", "outcomeCount", "timeAtRisk", "survivalTime"]


def test_time_at_risk_is_censored_by_observation_end_and_death() -> None:
    from transforms.plp import censor_days, index_dates, study_population

    cohort, tables, outcome, _names = _data()
    index = index_dates(cohort)
    ends = censor_days(index, tables["observation_period"], tables["death"])
    for window, label in ((365, "1y"), (1825, "5y")):
        pop = _rows(study_population(index, ends, outcome, window, min_time_at_risk=0))
        assert pop[40]["timeAtRisk"] == 200 and pop[40]["outcomeCount"] == 0  # observation end
        assert pop[60]["timeAtRisk"] == 250 and pop[60]["outcomeCount"] == 0  # outcome at 300: after censoring
        assert pop[50]["timeAtRisk"] == min(window, 500), label  # death
        assert pop[50]["survivalTime"] == pop[50]["timeAtRisk"]


def test_covariate_ids_follow_feature_extraction() -> None:
    _pops, cov, ref = _plp()
    by_row = {r: set(g["covariateId"].to_list()) for (r,), g in cov.group_by("rowId")}
    row = {10: 1, 20: 2, 30: 3, 70: 7}
    assert {8507001, 12003, T2DM * 1000 + 102, METFORMIN * 1000 + 302, HBA1C * 1000 + 702,
            HBA1C_COVARIATE} <= by_row[row[10]]  # gender, age 60 -> group 12, long-term window [-365, 0]
    assert RETINOPATHY * 1000 + 102 not in by_row[row[10]]  # day -400: outside the window
    assert 8532001 in by_row[row[20]] and 13003 in by_row[row[20]]  # a woman born 1951: 69 at index
    assert T2DM * 1000 + 102 not in by_row[row[30]]  # day 1: after index
    assert not any(c % 1000 == 1 for c in by_row[row[70]])  # gender concept 0: no gender covariate
    values = {r: v for r, c, v in cov.iter_rows() if c == HBA1C_COVARIATE}
    assert values == {row[10]: 7.2, row[20]: 6.4}  # the latest in the window; a same-day tie: the lowest
    names = dict(zip(ref["covariateId"], ref["covariateName"], strict=True))
    assert names[12003] == "age group:  60 -  64"
    assert names[HBA1C_COVARIATE] == ("measurement value during day -365 through 0 days relative to index: "
                                      "Hemoglobin A1c/Hemoglobin.total in Blood (percent)")
    assert names[T2DM * 1000 + 102].startswith("condition_occurrence during day -365 through 0 days relative to index")
    assert set(ref["covariateId"].to_list()) == set(cov["covariateId"].to_list())
    assert cov.columns == ["rowId", "covariateId", "covariateValue"] and cov.select("rowId", "covariateId").is_duplicated().sum() == 0


def test_analysis_ref_is_feature_extraction_s() -> None:
    ref = {r["analysisId"]: r for r in analysis_ref().iter_rows(named=True)}
    assert ref[706]["isBinary"] == "N" and ref[706]["missingMeansZero"] == "N"
    assert ref[102]["startDay"] == -365 and ref[102]["endDay"] == 0 and ref[102]["isBinary"] == "Y"
    assert ref[1]["analysisName"] == "DemographicsGender" and ref[3]["analysisName"] == "DemographicsAgeGroup"


def test_hba1c_concepts_take_descendants_and_equivalents_from_the_vocabulary() -> None:
    ancestor = pl.DataFrame({"ancestor_concept_id": [HBA1C, HBA1C, 9], "descendant_concept_id": [HBA1C, 111, 222]})
    maps_to = pl.DataFrame({"concept_id_1": [333, 444], "concept_id_2": [HBA1C, 9]})
    assert hba1c_concepts(ancestor, maps_to) == [111, 333, HBA1C]


def test_the_aggregate_mean_of_the_last_hba1c_is_withheld_below_k() -> None:
    cohort, tables, _outcome, names = _data()
    shown = characterise(cohort, tables["person"], tables, names, k=2, value_concepts=[HBA1C])
    row = shown.filter(pl.col("covariate_id") == HBA1C_COVARIATE).row(0, named=True)
    assert row["persons"] == 2 and row["average_value"] == pytest.approx((7.2 + 6.4) / 2) and row["analysis_id"] == 706
    withheld = characterise(cohort, tables["person"], tables, names, k=3, value_concepts=[HBA1C])
    row = withheld.filter(pl.col("covariate_id") == HBA1C_COVARIATE).row(0, named=True)
    assert row["persons"] is None and row["average_value"] is None and row["suppressed"]
    share = withheld.filter(pl.col("covariate_id") == 8507001).row(0, named=True)
    assert share["average_value"] == share["persons"] / 8  # a binary covariate: the share of the cohort


def test_outputs_are_deterministic() -> None:
    a, b = _plp(), _plp()
    for x, y in zip((*a[0].values(), a[1], a[2]), (*b[0].values(), b[1], b[2]), strict=True):
        assert x.equals(y)


def test_a_site_computes_its_own_subjects_as_the_network_does() -> None:
    """A federated node runs the same code on its own site's rows: per subject, the same covariates
    and study populations as on all sites together (only rowId, dense per call, differs)."""
    from transforms.plp import index_dates

    cohort, tables, outcome, names = _data()

    def by_subject(ids: list[int]) -> tuple[set[tuple[object, ...]], set[tuple[object, ...]]]:
        c = cohort.filter(pl.col("subject_id").is_in(ids))
        data = plp_data(c, {t: df.filter(pl.col("person_id").is_in(ids)) for t, df in tables.items()},
                        {"retinopathy": outcome.filter(pl.col("person_id").is_in(ids))}, names, [HBA1C])
        subject = dict(index_dates(c).select("rowId", "subjectId").iter_rows())
        cov = {(subject[r], cid, v) for r, cid, v in data.covariates.iter_rows()}
        pops = {(w, *row[1:]) for (_o, w), p in data.populations.items() for row in p.iter_rows()}
        return cov, pops

    everyone = [10, 20, 30, 40, 50, 60, 70, 80]
    whole, a, b = by_subject(everyone), by_subject([20, 30, 50]), by_subject([10, 40, 60, 70, 80])
    assert whole[0] == a[0] | b[0] and len(whole[0]) > 10
    assert whole[1] == a[1] | b[1] and whole[1]


# ---- the product in a written release (no engine code reads it) ----

PERSON_LEVEL_COLUMNS = {"rowId", "subjectId", "person_id", "subject_id", "cohortStartDate"}


def _release(home: Path, mode: str) -> Path:
    from pipelines.cli import app

    runner = CliRunner()
    for args in (["init"], ["generate", "--patients", "300", "--sites", "1", "--seed", "5"]):
        r = runner.invoke(app, args, catch_exceptions=False)
        assert r.exit_code == 0, r.output
    cfg_path = home / "ds4h.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["sources"] = cfg["sources"][:1]
    # a few hundred patients: every quasi-identifier may collapse (as test_end_to_end allows postcode)
    qis = [{"column": c, "hierarchy": h, "allow_removal": True} for c, h in (
        ("year_of_birth", "builtin:year5"), ("sex", "builtin:sex"), ("postcode", "builtin:lu-postcode"),
        ("death_year", "builtin:year5"))]
    cfg["policy"] = {"mode": mode, "thresholds": {"avg_risk": 0.2}, "quasi_identifiers": qis, "suppression": 0.06}
    if mode == "pseudonymised":
        cfg["release"]["permit"] = "P-TEST-1"
    cfg_path.write_text(yaml.safe_dump(cfg))
    r = runner.invoke(app, ["run"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["verify", "omop-demo", "1"], catch_exceptions=False)  # checksums, metadata, leak scan
    assert r.exit_code == 0 and "leak scan: no identifier" in r.output, r.output
    return home / "dataspace" / "omop-demo" / "1"


def test_a_pseudonymised_release_carries_the_plp_files(isolated_env: Path) -> None:
    v1 = _release(isolated_env, "pseudonymised")
    folder = v1 / "products" / "t2dm-complications"
    manifest = json.loads((v1 / "manifest.json").read_text())
    (doc,) = [p for p in manifest["products"] if p["name"] == "t2dm-complications"]
    assert doc["mode"] == "pseudonymised" and doc["person_level"]
    expected = {f"population_{o}_{w}.parquet" for o in ("retinopathy", "neuropathy", "nephropathy", "diabetic_foot") for w in ("1y", "5y")}
    expected |= {"covariates.parquet", "covariate_ref.parquet", "analysis_ref.parquet", "product.json"}
    assert {p.name for p in folder.iterdir()} == expected
    assert set(doc["files"]) == expected - {"product.json"}
    listed = {f["path"] for f in manifest["files"]}
    assert {f"products/t2dm-complications/{n}" for n in expected} <= listed
    released = set(pq.read_table(v1 / "omop" / "person" / "part-0.parquet").column("person_id").to_pylist())
    rows = pq.read_table(folder / "covariates.parquet").column("rowId").to_pylist()
    for name in expected - {"product.json", "covariates.parquet", "covariate_ref.parquet", "analysis_ref.parquet"}:
        t = pq.read_table(folder / name)
        assert t.column_names == ["rowId", "subjectId", "cohortStartDate", "outcomeCount", "timeAtRisk", "survivalTime"]
        assert set(t.column("subjectId").to_pylist()) <= released  # the release's own ids, nothing else
        assert doc["tables"][name.removesuffix(".parquet")]["rows"] == t.num_rows
    assert rows and set(rows) <= set(range(1, doc["cohort_persons"] + 1))
    assert pq.read_table(folder / "covariates.parquet").column_names == ["rowId", "covariateId", "covariateValue"]
    readme = (v1 / "README.md").read_text()
    assert "Person-level data products" in readme and "products/t2dm-complications/" in readme
    dcat = json.loads((v1 / "metadata" / "healthdcat-ap.jsonld").read_text())
    assert any("population_retinopathy_5y (person-level, pseudonymised)" in d["dct:title"]
               for d in dcat["dcat:distribution"])


def test_an_anonymised_release_carries_no_person_level_file(isolated_env: Path) -> None:
    v1 = _release(isolated_env, "anonymised")
    folder = v1 / "products" / "t2dm-complications"
    (doc,) = [p for p in json.loads((v1 / "manifest.json").read_text())["products"] if p["name"] == "t2dm-complications"]
    assert doc["mode"] == "anonymised" and not doc["person_level"]
    names = {p.name for p in folder.iterdir()}
    assert names == {"covariates.parquet", "outcomes.parquet", "analysis_ref.parquet", "product.json"}
    for p in folder.glob("*.parquet"):
        assert not PERSON_LEVEL_COLUMNS & set(pq.read_schema(p).names), p.name
    cov = pq.read_table(folder / "covariates.parquet").to_pylist()
    k = doc["disclosure"]["k"]
    assert all(r["persons"] is None or r["persons"] == 0 or r["persons"] >= k for r in cov)
    for r in cov:
        if r["analysis_id"] == 706:  # the last HbA1c: a mean only behind k persons or more
            assert (r["average_value"] is None) == (r["persons"] is None)
