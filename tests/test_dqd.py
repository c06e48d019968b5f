"""DataQualityDashboard checks: a clean tiny CDM passes, one planted violation per check type fails
exactly that check, and the Eunomia CDM runs end to end."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from schemas import omop
from transforms import dqd

# --------------------------------------------------------------------------------------------------
# a tiny hand-made CDM and its vocabulary

EHR = 32817
COND_A, COND_B, COND_NONSTD, COND_SRC = 2000000101, 2000000102, 2000000103, 2000000501
MEAS_A, MEAS_OTHER_DOMAIN = 2000000201, 2000000202
PROC_A, OBS_A = 2000000301, 2000000401
INGREDIENT, CLINICAL_DRUG = 1125315, 1125360


def _concepts() -> pl.DataFrame:
    rows = [
        (0, "No matching concept", "Metadata", None, "Undefined"),
        (8507, "MALE", "Gender", "S", "Gender"),
        (8532, "FEMALE", "Gender", "S", "Gender"),
        (8527, "White", "Race", "S", "Race"),
        (38003564, "Not Hispanic or Latino", "Ethnicity", "S", "Ethnicity"),
        (9201, "Inpatient Visit", "Visit", "S", "Visit"),
        (9202, "Outpatient Visit", "Visit", "S", "Visit"),
        (EHR, "EHR", "Type Concept", "S", "Type Concept"),
        (COND_A, "Condition A", "Condition", "S", "Clinical Finding"),
        (COND_B, "Condition B", "Condition", "S", "Clinical Finding"),
        (COND_NONSTD, "Condition, not standard", "Condition", None, "Clinical Finding"),
        (COND_SRC, "Source condition code", "Condition", None, "ICD10 code"),
        (26662, "Testicular hypofunction", "Condition", "S", "Clinical Finding"),
        (4090861, "Male-only ancestor", "Condition", "S", "Clinical Finding"),
        (9999901, "Descendant of the male-only ancestor", "Condition", "S", "Clinical Finding"),
        (MEAS_A, "Measurement A", "Measurement", "S", "Lab Test"),
        (MEAS_OTHER_DOMAIN, "Measurement B", "Measurement", "S", "Lab Test"),
        (3013721, "AST", "Measurement", "S", "Lab Test"),
        (8840, "milligram per deciliter", "Unit", "S", "Unit"),
        (8645, "unit per liter", "Unit", "S", "Unit"),
        (INGREDIENT, "Acetaminophen", "Drug", "S", "Ingredient"),
        (CLINICAL_DRUG, "Acetaminophen 500 MG Oral Tablet", "Drug", "S", "Clinical Drug"),
        (PROC_A, "Procedure A", "Procedure", "S", "Procedure"),
        (OBS_A, "Observation A", "Observation", "S", "Clinical Observation"),
    ]
    return pl.DataFrame(
        rows, schema=["concept_id", "concept_name", "domain_id", "standard_concept", "concept_class_id"], orient="row"
    ).with_columns(pl.col("concept_id").cast(pl.Int32), invalid_reason=pl.lit(None, pl.String))


def _ancestors() -> pl.DataFrame:
    return pl.DataFrame({"ancestor_concept_id": [4090861, 4090861], "descendant_concept_id": [4090861, 9999901]})


def _t(name: str, rows: list[dict[str, Any]]) -> pl.DataFrame:
    return omop.conform(pl.DataFrame(rows, infer_schema_length=None), name)


def tiny_cdm() -> dict[str, pl.DataFrame]:
    d = date
    person = [
        {"person_id": 1, "gender_concept_id": 8507, "year_of_birth": 1970, "month_of_birth": 1, "day_of_birth": 15,
         "birth_datetime": datetime(1970, 1, 15), "race_concept_id": 8527, "ethnicity_concept_id": 38003564},
        {"person_id": 2, "gender_concept_id": 8532, "year_of_birth": 1980, "month_of_birth": 5, "day_of_birth": 20,
         "birth_datetime": datetime(1980, 5, 20), "race_concept_id": 8527, "ethnicity_concept_id": 38003564},
        {"person_id": 3, "gender_concept_id": 8507, "year_of_birth": 1950, "month_of_birth": 3, "day_of_birth": 1,
         "birth_datetime": datetime(1950, 3, 1), "race_concept_id": 8527, "ethnicity_concept_id": 38003564},
    ]
    op = [
        {"observation_period_id": i, "person_id": i, "observation_period_start_date": d(2010, 1, 1),
         "observation_period_end_date": d(2020, 6, 1) if i == 3 else d(2023, 12, 31), "period_type_concept_id": EHR}
        for i in (1, 2, 3)
    ]
    visits = [
        {"visit_occurrence_id": 1, "person_id": 1, "visit_concept_id": 9201, "visit_start_date": d(2015, 3, 1),
         "visit_end_date": d(2015, 3, 3), "visit_type_concept_id": EHR},
        {"visit_occurrence_id": 2, "person_id": 2, "visit_concept_id": 9202, "visit_start_date": d(2016, 5, 1),
         "visit_end_date": d(2016, 5, 1), "visit_type_concept_id": EHR},
        {"visit_occurrence_id": 3, "person_id": 3, "visit_concept_id": 9202, "visit_start_date": d(2019, 1, 10),
         "visit_end_date": d(2019, 1, 10), "visit_type_concept_id": EHR},
    ]
    conditions = [
        {"condition_occurrence_id": i + 1, "person_id": 1 + i % 2, "condition_concept_id": (COND_A, COND_B)[i % 2],
         "condition_start_date": d(2015, 3, 2) if i == 0 else d(2017, 1, 1 + i), "condition_type_concept_id": EHR,
         "visit_occurrence_id": 1 if i == 0 else None, "condition_source_value": ("A01", "B02")[i % 2],
         "condition_source_concept_id": COND_SRC}
        for i in range(20)
    ]
    eras = [
        {"condition_era_id": p, "person_id": p, "condition_concept_id": COND_A, "condition_era_start_date": d(2017, 1, 2),
         "condition_era_end_date": d(2017, 1, 30), "condition_occurrence_count": 10}
        for p in (1, 2)
    ]
    measurements = [
        {"measurement_id": i + 1, "person_id": 1 + i % 2, "measurement_concept_id": MEAS_A,
         "measurement_date": d(2015, 3, 2) if i % 2 == 0 else d(2016, 5, 1), "measurement_type_concept_id": EHR,
         "value_as_number": 5.0, "unit_concept_id": 8840, "visit_occurrence_id": 1 if i == 0 else None,
         "measurement_source_concept_id": MEAS_A}
        for i in range(4)
    ]
    drugs = [{"drug_exposure_id": 1, "person_id": 1, "drug_concept_id": CLINICAL_DRUG,
              "drug_exposure_start_date": d(2015, 3, 2), "drug_exposure_end_date": d(2015, 3, 10),
              "drug_type_concept_id": EHR, "drug_source_concept_id": CLINICAL_DRUG}]
    drug_eras = [{"drug_era_id": 1, "person_id": 1, "drug_concept_id": INGREDIENT, "drug_era_start_date": d(2015, 3, 2),
                  "drug_era_end_date": d(2015, 3, 10), "drug_exposure_count": 1, "gap_days": 0}]
    procedures = [{"procedure_occurrence_id": 1, "person_id": 1, "procedure_concept_id": PROC_A,
                   "procedure_date": d(2015, 3, 2), "procedure_type_concept_id": EHR, "procedure_source_concept_id": PROC_A}]
    observations = [{"observation_id": 1, "person_id": 2, "observation_concept_id": OBS_A,
                     "observation_date": d(2016, 5, 1), "observation_type_concept_id": EHR,
                     "observation_source_concept_id": OBS_A}]
    death = [{"person_id": 3, "death_date": d(2020, 6, 1), "death_type_concept_id": EHR}]
    return {
        "person": _t("person", person), "observation_period": _t("observation_period", op),
        "visit_occurrence": _t("visit_occurrence", visits), "condition_occurrence": _t("condition_occurrence", conditions),
        "condition_era": _t("condition_era", eras), "measurement": _t("measurement", measurements),
        "drug_exposure": _t("drug_exposure", drugs), "drug_era": _t("drug_era", drug_eras),
        "procedure_occurrence": _t("procedure_occurrence", procedures), "observation": _t("observation", observations),
        "death": _t("death", death),
    }


def all_tables() -> dict[str, pl.DataFrame]:
    """The tiny CDM plus every other checked table, present but empty."""
    tables = tiny_cdm()
    for name, spec in omop.tables().items():
        if name not in tables and name not in dqd.EXCLUDED_TABLES:
            tables[name] = pl.DataFrame(schema=spec.polars_schema)
    return tables


def run(tables: dict[str, pl.DataFrame], **kw: Any) -> dqd.DqdRun:
    return dqd.run_checks(tables, _concepts(), concept_ancestor=_ancestors(), **kw)


def failures(r: dqd.DqdRun) -> set[tuple[str, str, str | None]]:
    return {(x.check_name, x.table, x.field) for x in r.results if x.failed}


def assert_clean_samples(r: dqd.DqdRun) -> None:
    for x in r.results:
        assert len(x.sample) <= dqd.SAMPLE_SIZE
        for row in x.sample:
            assert not any(k.endswith("_source_value") for k in row), (x.check_id, row)
            assert all(not isinstance(v, str) or k.endswith(("_date", "_datetime")) for k, v in row.items()), row


@cache
def baseline() -> dqd.DqdRun:
    return run(tiny_cdm())


# --------------------------------------------------------------------------------------------------
# (1) the clean CDM


def test_definitions_cover_the_27_check_types() -> None:
    types = {d["checkName"] for d in dqd.check_descriptions()}
    assert len(types) == 27
    assert {c.check_name for c in dqd.check_definitions()} == types
    levels = {c.check_level for c in dqd.check_definitions()}
    assert levels == {"TABLE", "FIELD", "CONCEPT"}


def test_tiny_cdm_passes_every_applicable_check() -> None:
    r = baseline()
    assert failures(r) == set()
    assert [x.error for x in r.results if x.error] == []
    counts = r.counts["total"]
    assert counts["run"] == len(dqd.check_definitions())
    assert counts["passed"] > 500
    assert counts["passed"] + counts["not_applicable"] == counts["run"]
    assert dqd.fatal_failures(r) == []
    # every check type applies somewhere in the tiny CDM, apart from the table-presence check
    passed_types = {x.check_name for x in r.results if x.passed}
    assert {d["checkName"] for d in dqd.check_descriptions()} - passed_types <= {
        "plausibleGender", "plausibleGenderUseDescendants", "plausibleUnitConceptIds"}


def test_all_tables_present_and_strict_mode_also_clean() -> None:
    r = run(all_tables(), skip_tables_absent=False)
    assert failures(r) == set()
    assert [x.error for x in r.results if x.error] == []


def test_absent_tables_and_vocabulary_are_not_applicable() -> None:
    r = baseline()
    by_id = {x.check_id: x for x in r.results}
    note = by_id["cdmtable_note"]
    assert note.not_applicable and not note.failed and "not provided" in (note.not_applicable_reason or "")
    strict = dqd.run_checks({"person": tiny_cdm()["person"]}, None, skip_tables_absent=False)
    by_id = {x.check_id: x for x in strict.results}
    assert by_id["cdmtable_note"].failed and by_id["cdmtable_note"].severity == "fatal"
    assert by_id["isrequired_note_note_id"].not_applicable
    fk = by_id["isforeignkey_person_gender_concept_id"]
    assert fk.not_applicable and "CONCEPT" in (fk.not_applicable_reason or "")
    assert by_id["isprimarykey_person_person_id"].passed


# --------------------------------------------------------------------------------------------------
# (2) one planted violation per check type

Tables = dict[str, pl.DataFrame]
Case = tuple[Callable[[Tables], Tables], dict[str, Any], set[tuple[str, str, str | None]]]


def _set(tables: Tables, table: str, row: int, **values: Any) -> Tables:
    df = tables[table]
    idx = pl.int_range(pl.len()) == row
    tables[table] = df.with_columns(
        pl.when(idx).then(pl.lit(v, dtype=df.schema[k])).otherwise(pl.col(k)).alias(k) for k, v in values.items()
    )
    return tables


def _add(tables: Tables, table: str, rows: list[dict[str, Any]]) -> Tables:
    tables[table] = pl.concat([tables[table], _t(table, rows)])
    return tables


def _drop_person(tables: Tables, table: str, person_id: int) -> Tables:
    tables[table] = tables[table].filter(pl.col("person_id") != person_id)
    return tables


def _without(tables: Tables, table: str) -> Tables:
    del tables[table]
    return tables


def _string_ids(tables: Tables) -> Tables:
    co = tables["condition_occurrence"]
    ids = [str(i) for i in co["condition_occurrence_id"]]
    ids[-1] = "20x"
    tables["condition_occurrence"] = co.with_columns(condition_occurrence_id=pl.Series(ids))
    return tables


def _op_start_after_end(tables: Tables) -> Tables:
    # 100 one-day periods ten days apart, then one period ending the day before it starts: the start/end
    # check (threshold 0) fails while the deprecated end-after-start check (threshold 1%) stays under.
    extra = [{"observation_period_id": 100 + i, "person_id": 1,
              "observation_period_start_date": date(1990, 1, 1) + (date(1990, 1, 11) - date(1990, 1, 1)) * i,
              "observation_period_end_date": date(1990, 1, 1) + (date(1990, 1, 11) - date(1990, 1, 1)) * i,
              "period_type_concept_id": EHR} for i in range(100)]
    extra.append({"observation_period_id": 999, "person_id": 1, "observation_period_start_date": date(1995, 1, 2),
                  "observation_period_end_date": date(1995, 1, 1), "period_type_concept_id": EHR})
    return _add(tables, "observation_period", extra)


CASES: dict[str, Case] = {
    "cdmTable": (lambda t: _without(t, "note"), {"all": True, "skip_tables_absent": False},
                 {("cdmTable", "note", None)}),
    "measurePersonCompleteness": (lambda t: _drop_person(t, "observation_period", 2), {},
                                  {("measurePersonCompleteness", "observation_period", None)}),
    "measureConditionEraCompleteness": (lambda t: _drop_person(t, "condition_era", 2), {},
                                        {("measureConditionEraCompleteness", "condition_era", None)}),
    "measureObservationPeriodOverlap": (
        lambda t: _add(t, "observation_period", [{"observation_period_id": 50, "person_id": 1,
                                                  "observation_period_start_date": date(2012, 1, 1),
                                                  "observation_period_end_date": date(2012, 12, 31),
                                                  "period_type_concept_id": EHR}]),
        {}, {("measureObservationPeriodOverlap", "observation_period", None)}),
    "cdmField": (lambda t: {**t, "condition_occurrence": t["condition_occurrence"].drop("stop_reason")}, {},
                 {("cdmField", "condition_occurrence", "stop_reason")}),
    # A null in a required field is both DQD checks of that field: isRequired and measureValueCompleteness
    # (every non-required field has a measureValueCompleteness threshold of 100%).
    "isRequired": (lambda t: _set(t, "person", 1, year_of_birth=None), {},
                   {("isRequired", "person", "year_of_birth"), ("measureValueCompleteness", "person", "year_of_birth")}),
    "cdmDatatype": (_string_ids, {}, {("cdmDatatype", "condition_occurrence", "condition_occurrence_id")}),
    "isPrimaryKey": (lambda t: _set(t, "measurement", 1, measurement_id=1), {},
                     {("isPrimaryKey", "measurement", "measurement_id")}),
    "isForeignKey": (lambda t: _set(t, "condition_occurrence", 3, visit_occurrence_id=999), {},
                     {("isForeignKey", "condition_occurrence", "visit_occurrence_id")}),
    "fkDomain": (lambda t: _set(t, "condition_occurrence", 4, condition_concept_id=MEAS_OTHER_DOMAIN), {},
                 {("fkDomain", "condition_occurrence", "condition_concept_id")}),
    "fkClass": (lambda t: _set(t, "drug_era", 0, drug_concept_id=CLINICAL_DRUG), {},
                {("fkClass", "drug_era", "drug_concept_id")}),
    "isStandardValidConcept": (lambda t: _set(t, "condition_occurrence", 4, condition_concept_id=COND_NONSTD), {},
                               {("isStandardValidConcept", "condition_occurrence", "condition_concept_id")}),
    "measureValueCompleteness": (
        lambda t: _set(t, "visit_occurrence", 1, visit_end_date=None), {},
        {("measureValueCompleteness", "visit_occurrence", "visit_end_date"),
         ("isRequired", "visit_occurrence", "visit_end_date")}),
    "standardConceptRecordCompleteness": (lambda t: _set(t, "measurement", 0, measurement_concept_id=0), {},
                                          {("standardConceptRecordCompleteness", "measurement", "measurement_concept_id")}),
    "sourceConceptRecordCompleteness": (
        lambda t: _set(t, "measurement", 0, measurement_source_concept_id=0), {},
        {("sourceConceptRecordCompleteness", "measurement", "measurement_source_concept_id")}),
    "sourceValueCompleteness": (
        lambda t: _set(t, "condition_occurrence", 5, condition_concept_id=0, condition_source_value="Z99"), {},
        {("sourceValueCompleteness", "condition_occurrence", "condition_source_value")}),
    "plausibleValueLow": (lambda t: _set(t, "person", 0, month_of_birth=0), {},
                          {("plausibleValueLow", "person", "month_of_birth")}),
    "plausibleValueHigh": (lambda t: _set(t, "person", 0, day_of_birth=32), {},
                           {("plausibleValueHigh", "person", "day_of_birth")}),
    "plausibleTemporalAfter": (lambda t: _set(t, "drug_exposure", 0, verbatim_end_date=date(2015, 3, 1)), {},
                               {("plausibleTemporalAfter", "drug_exposure", "verbatim_end_date")}),
    # The deprecated plausibleDuringLife and its replacement plausibleBeforeDeath test the same thing
    # (after death + 60 days); every field with the first has the second.
    "plausibleDuringLife": (lambda t: _set(t, "visit_occurrence", 2, visit_end_date=date(2021, 1, 1)), {},
                            {("plausibleDuringLife", "visit_occurrence", "visit_end_date"),
                             ("plausibleBeforeDeath", "visit_occurrence", "visit_end_date")}),
    "plausibleBeforeDeath": (lambda t: _set(t, "measurement", 3, person_id=3, measurement_date=date(2021, 1, 1)), {},
                             {("plausibleBeforeDeath", "measurement", "measurement_date")}),
    "plausibleAfterBirth": (lambda t: _set(t, "measurement", 0, measurement_datetime=datetime(1960, 1, 1)), {},
                            {("plausibleAfterBirth", "measurement", "measurement_datetime")}),
    "plausibleStartBeforeEnd": (_op_start_after_end, {},
                                {("plausibleStartBeforeEnd", "observation_period", "observation_period_start_date")}),
    "withinVisitDates": (lambda t: _set(t, "measurement", 0, measurement_date=date(2015, 4, 1)), {},
                         {("withinVisitDates", "measurement", "measurement_date")}),
    "plausibleGender": (lambda t: _set(t, "condition_occurrence", 1, condition_concept_id=26662), {},
                        {("plausibleGender", "condition_occurrence", "condition_concept_id")}),
    "plausibleGenderUseDescendants": (
        lambda t: _set(t, "condition_occurrence", 1, condition_concept_id=9999901), {},
        {("plausibleGenderUseDescendants", "condition_occurrence", "condition_concept_id")}),
    "plausibleUnitConceptIds": (
        lambda t: _set(t, "measurement", 1, measurement_concept_id=3013721, unit_source_value="mg/dL"), {},
        {("plausibleUnitConceptIds", "measurement", "measurement_concept_id")}),
}


def test_a_case_per_check_type() -> None:
    assert set(CASES) == {d["checkName"] for d in dqd.check_descriptions()}


@pytest.mark.parametrize("check_name", sorted(CASES))
def test_planted_violation_fails_exactly_its_check(check_name: str) -> None:
    plant, kw, expected = CASES[check_name]
    base_tables = all_tables() if kw.pop("all", False) else tiny_cdm()
    planted = run(plant(dict(base_tables)), **kw)
    assert [x.error for x in planted.results if x.error] == []
    assert failures(planted) == expected
    hits = [x for x in planted.results if x.failed and x.check_name == check_name]
    assert len(hits) == 1
    hit = hits[0]
    assert hit.num_violated_rows and hit.num_violated_rows >= 1
    assert hit.description and "@" not in hit.description
    assert hit.severity in ("fatal", "convention", "characterization")
    if check_name not in ("cdmTable", "cdmField"):
        assert hit.sample, "an offending row is shown"
    assert_clean_samples(planted)
    assert bool(dqd.fatal_failures(planted)) == any(x.severity == "fatal" for x in planted.results if x.failed)


# --------------------------------------------------------------------------------------------------
# reports


def test_results_json_has_dqd_shape(tmp_path: Path) -> None:
    r = run(_set(tiny_cdm(), "person", 0, day_of_birth=32))
    path = tmp_path / "dq" / "results.json"
    dqd.write_results_json(r, path)
    doc = json.loads(path.read_text())
    assert {"startTimestamp", "endTimestamp", "executionTime", "executionTimeSeconds", "CheckResults", "Metadata",
            "Overview"} <= doc.keys()
    assert len(doc["CheckResults"]) == len(dqd.check_definitions())
    fail = next(c for c in doc["CheckResults"] if c["failed"] == 1)
    assert fail["checkId"] == "plausiblevaluehigh_person_day_of_birth"
    assert fail["cdmTableName"] == "PERSON" and fail["category"] == "Plausibility"
    assert 0 < fail["pctViolatedRows"] <= 1 and fail["thresholdValue"] == 1
    ov = doc["Overview"]
    assert ov["countTotal"] == len(doc["CheckResults"])
    assert ov["countOverallFailed"] == 1 and ov["countFailedPlausibility"] == 1
    assert doc["Metadata"][0]["cdm_source_name"] == "ds4h"


def test_html_report_is_self_contained(tmp_path: Path) -> None:
    r = run(_set(tiny_cdm(), "measurement", 1, measurement_id=1))
    path = tmp_path / "dq.html"
    dqd.write_html(r, path)
    text = path.read_text()
    assert "<script" not in text.lower() and "http://" not in text and "https://" not in text
    for cat in dqd.CATEGORIES:
        assert cat in text
    assert "isPrimaryKey" in text and "measurement_id" in text
    assert text.index("isPrimaryKey") < text.index("measureValueCompleteness")  # failures first


# --------------------------------------------------------------------------------------------------
# (3) the Eunomia CDM with the demo vocabulary


def _read_cdm_csv(path: Path, name: str) -> pl.DataFrame:
    spec = omop.table(name)
    df = pl.read_csv(path, infer_schema=False)
    df = df.rename({c: c.lower() for c in df.columns})
    exprs = []
    for f in spec.fields:
        if f.name not in df.columns:
            continue
        c, typ = pl.col(f.name), f.polars_type
        if typ == pl.Date():
            e = c.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
        elif isinstance(typ, pl.Datetime):
            e = c.str.to_datetime(strict=False, time_unit="us")
        else:
            e = c.cast(typ, strict=False)
        exprs.append(e.alias(f.name))
    return df.with_columns(exprs)


def test_eunomia(shared: Path, tmp_path: Path) -> None:
    from transforms.vocabulary import load_vocabulary

    folder = shared / "data" / "omop-eunomia-synthea27nj"
    tables = {p.stem.lower(): _read_cdm_csv(p, p.stem.lower()) for p in sorted(folder.glob("*.csv"))}
    vocab = load_vocabulary(str(shared / "data" / "vocabulary-demo"))
    ancestor = pl.read_csv(shared / "data" / "vocabulary-demo" / "CONCEPT_ANCESTOR.csv", separator="\t")
    t0 = time.perf_counter()
    r = dqd.run_checks(tables, vocab.concept, concept_ancestor=ancestor, cdm_source_name="Eunomia")
    elapsed = time.perf_counter() - t0
    c = r.counts["total"]
    print(f"Eunomia: {c} in {elapsed:.1f}s")
    assert c["errors"] == 0
    assert c["run"] == len(dqd.check_definitions())
    assert c["passed"] > 1000
    assert_clean_samples(r)
    # the demo vocabulary has no type concepts: every *_type_concept_id is a dangling key (fatal)
    fatal = {(x.table, x.field) for x in dqd.fatal_failures(r)}
    assert ("visit_occurrence", "visit_type_concept_id") in fatal
    assert all(x.check_name == "isForeignKey" for x in dqd.fatal_failures(r))
    assert r.cdm_source["cdm_source_name"] == "NJ"
    dqd.write_results_json(r, tmp_path / "eunomia.json")
    dqd.write_html(r, tmp_path / "eunomia.html")


def test_batched_counts_equal_each_checks_own_query() -> None:
    """Checks run batched (count_if per table, grouped concept checks); each one's own SQL gives the same numbers."""
    import duckdb

    tables = tiny_cdm()
    for name in ("plausibleGender", "plausibleUnitConceptIds", "isForeignKey", "plausibleValueHigh", "fkDomain"):
        tables = CASES[name][0](tables)
    r = run(tables)
    assert {x.check_name for x in r.results if x.failed} >= {"plausibleGender", "plausibleUnitConceptIds",
                                                            "isForeignKey", "plausibleValueHigh", "fkDomain"}
    con = duckdb.connect()
    dqd._register(con, tables, _concepts(), _ancestors())
    ran = [x for x in r.results if x.query_text]
    assert len(ran) > 500
    for x in ran:
        n, d = con.execute(x.query_text).fetchall()[0]
        assert (n, d) == (x.num_violated_rows, x.num_denominator_rows), x.check_id
    con.close()


def test_counts_over_shared_joins_equal_each_checks_own_query(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks joining a table with person, death or visit_occurrence are counted together per join
    (their numerators) and per table (their denominators): each one's own SQL gives the same numbers,
    also with a person listed twice (the join counts that person's rows twice, as each check's own
    query does) and a birth known only by its year."""
    import duckdb

    tables = tiny_cdm()
    for name in ("plausibleDuringLife", "plausibleBeforeDeath", "plausibleAfterBirth", "withinVisitDates"):
        tables = CASES[name][0](tables)
    tables = _set(tables, "visit_occurrence", 0, visit_start_date=date(1969, 1, 1))  # before its person's birth
    tables = _set(tables, "person", 1, birth_datetime=None)  # person 2: born "1980-06-01" for the checks
    tables = _set(tables, "drug_exposure", 0, drug_exposure_start_date=date(1980, 3, 1))
    tables["person"] = pl.concat([tables["person"], tables["person"].filter(pl.col("person_id") == 1)])
    alone: list[str] = []  # checks run by their own query (a shared count falls back to them on an error)
    single = dqd._run_single
    monkeypatch.setattr(dqd, "_run_single", lambda con, res: (alone.append(res.check_name), single(con, res)))
    r = run(tables, workers=2)
    joined = {"plausibleDuringLife", "plausibleBeforeDeath", "plausibleAfterBirth", "withinVisitDates",
              "plausibleTemporalAfter"}
    assert not joined & set(alone)
    assert {x.check_name for x in r.results if x.failed} >= joined
    con = duckdb.connect()
    dqd._register(con, tables, _concepts(), _ancestors())
    ran = [x for x in r.results if x.query_text and x.check_name in joined]
    assert len(ran) > 100 and sum(x.num_violated_rows or 0 for x in ran) >= 8
    for x in ran:
        assert x.error is None, x.check_id
        n, d = con.execute(x.query_text).fetchall()[0]
        assert (n, d) == (x.num_violated_rows, x.num_denominator_rows), x.check_id
    con.close()


def test_a_shared_count_duckdb_refuses_falls_back_to_each_checks_own_query(monkeypatch: pytest.MonkeyPatch) -> None:
    """When DuckDB refuses a query that counts several checks (here one condition names no column), every
    check of it runs its own query: the same numbers, no error, no crash."""
    import dataclasses

    import duckdb

    build = dqd._build_sql

    def broken(c: dqd.CheckDef, ctx: Any) -> Any:
        sql = build(c, ctx)
        if (c.check_name, c.table, c.field) == ("plausibleAfterBirth", "measurement", "measurement_date"):
            assert sql.counts is not None
            return dataclasses.replace(sql, counts=((sql.counts[0][0], "no_such_column IS NULL"), sql.counts[1]))
        return sql

    monkeypatch.setattr(dqd, "_build_sql", broken)
    alone: list[str] = []
    single = dqd._run_single
    monkeypatch.setattr(dqd, "_run_single", lambda con, res: (alone.append(f"{res.check_name}:{res.table}"), single(con, res)))
    tables = CASES["plausibleAfterBirth"][0](tiny_cdm())
    r = run(tables, workers=2)
    assert "plausibleAfterBirth:measurement" in alone and "measureValueCompleteness:measurement" not in alone
    con = duckdb.connect()
    dqd._register(con, tables, _concepts(), _ancestors())
    for x in (x for x in r.results if x.query_text and x.table == "measurement"):
        assert x.error is None, x.check_id
        assert con.execute(x.query_text).fetchall()[0] == (x.num_violated_rows, x.num_denominator_rows), x.check_id
    con.close()
    assert any(x.failed and x.check_name == "plausibleAfterBirth" for x in r.results)


@pytest.mark.parametrize("check_name", ["isForeignKey", "isRequired", "plausibleValueLow", "cdmField"])
def test_parquet_tables_give_the_same_results_as_frames(check_name: str, tmp_path: Path) -> None:
    """Tables given as Parquet files (read in place by DuckDB, under a memory limit) are checked
    exactly as the same tables given as frames: planted violations included."""
    plant, kw, _expected = CASES[check_name]
    kw = dict(kw)
    tables = plant(dict(all_tables() if kw.pop("all", False) else tiny_cdm()))
    files: dict[str, dqd.Table] = {}
    for name, df in tables.items():
        path = tmp_path / name / "part-0.parquet"
        path.parent.mkdir(parents=True)
        df.write_parquet(path)
        files[name] = [path]
    in_memory = run(tables, **kw)
    on_disk = run(files, memory_limit="256MB", temp_dir=tmp_path / "spill", **kw)
    # the files read into DuckDB's memory first: all of them, or the smallest ones within a budget
    sizes = sorted(p[0].stat().st_size for p in files.values() if isinstance(p, list))
    loaded_all = run(files, in_memory_bytes=sum(sizes), **kw)
    loaded_some = run(files, in_memory_bytes=sum(sizes[: len(sizes) // 2]), **kw)
    assert dqd._in_memory(files, sum(sizes[: len(sizes) // 2])) not in (set(), set(files))

    def key(r: dqd.DqdRun) -> list[tuple[object, ...]]:
        return sorted((x.check_name, x.table, x.field or "", x.concept_id or "", x.num_violated_rows, x.num_denominator_rows,
                       x.failed, x.not_applicable, x.error) for x in r.results)

    assert key(on_disk) == key(in_memory) == key(loaded_all) == key(loaded_some)
    assert any(x.failed for x in on_disk.results)
    # the queries on several cursors at once or one after the other: the same results and samples
    # (frames registered on each cursor, views and tables shared)
    for given in (tables, files):
        serial, parallel = run(given, workers=1, **kw), run(given, workers=3, **kw)
        assert key(serial) == key(parallel) == key(in_memory)
        assert [x.sample for x in serial.results] == [x.sample for x in parallel.results]
