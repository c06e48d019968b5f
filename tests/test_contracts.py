"""Extract contracts (great-expectations suites) on typed ingest rows."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from schemas.extract import ENTITIES, entity
from schemas.matricule import make_matricule
from transforms.contracts import CONTRACTS_DIR, build_suites, main, validate_entity

# GX 1.24 imports sre_parse too, deprecated in Python 3.11 (pyproject filters only sre_constants)
pytestmark = pytest.mark.filterwarnings("ignore:module 'sre_parse' is deprecated:DeprecationWarning")

NOW = dt.datetime(2026, 1, 1, 12, 0)
ROOT = Path(__file__).resolve().parents[1]

_PL_TYPES: dict[str, pl.DataType] = {
    "str": pl.String(), "int": pl.Int64(), "float": pl.Float64(), "date": pl.Date(), "datetime": pl.Datetime("us"),
}

D = dt.date
T = dt.datetime
GOOD_MATRICULE = [make_matricule(D(1980, 1, 1), 123), make_matricule(D(1975, 6, 30), 7), make_matricule(D(2001, 12, 9), 999)]

CLEAN: dict[str, dict[str, list[Any]]] = {
    "patients": {
        "patient_id": ["A1", "A2", "A3"],
        "matricule": [*GOOD_MATRICULE[:2], None],
        "last_name": ["Muller", "Weber", "Schmit"],
        "first_name": ["Jean", "Anne", "Luc"],
        "birth_date": [D(1980, 1, 1), D(1975, 6, 30), D(1900, 1, 1)],
        "sex": ["M", "F", "U"],
        "address": ["1, rue X", None, "3, route d'Arlon"],
        "postcode": ["L-1080", "L-4001", "57100"],
        "city": ["Luxembourg", "Esch-sur-Alzette", "Thionville"],
        "country": ["LU", "LU", "FR"],
        "phone": ["+352 621 000 111", None, None],
        "email": ["jean.muller@pt.lu", None, "l.schmit2@internet.lu"],
        "updated_at": [T(2024, 1, 1, 10), None, T(2025, 12, 31, 23, 59)],
        "death_date": [None, D(2024, 3, 1), None],
        "death_cause_code": [None, "I21.9", None],
    },
    "stays": {
        "stay_id": ["S1", "S2", "S3"],
        "patient_id": ["A1", "A1", "A2"],
        "admission": [T(2020, 1, 1, 10), T(2021, 5, 5), T(2025, 12, 31, 8)],
        "discharge": [T(2020, 1, 3), None, T(2025, 12, 31, 8)],
        "stay_type": ["INPATIENT", "OUTPATIENT", "EMERGENCY"],
        "ward": ["CARDIO", None, "URG"],
    },
    "diagnoses": {
        "diagnosis_id": ["D1", "D2", "D3"],
        "stay_id": ["S1", "S1", "S2"],
        "patient_id": ["A1", "A1", "A1"],
        "icd10_code": ["E11.9", "C61", "E11.65"],
        "diagnosis_date": [D(2020, 1, 2), D(2020, 1, 2), D(2021, 5, 5)],
        "diagnosis_rank": ["PRINCIPAL", "SECONDARY", None],
        "description": ["Type 2 diabetes", None, None],
        "histology": [None, "8140/3", None],
        "tnm_t": [None, "T2", None],
        "tnm_n": [None, "N0", None],
        "tnm_m": [None, "M0", None],
        "stage_group": [None, "II", None],
    },
    "procedures": {
        "procedure_id": ["P1", "P2", "P3"],
        "stay_id": ["S1", "S1", "S2"],
        "patient_id": ["A1", "A1", "A1"],
        "procedure_code": ["80146002", "38102005", "29303009"],
        "procedure_date": [T(2020, 1, 2, 9), T(2020, 1, 2, 14, 30), T(2021, 5, 5)],
        "description": ["Appendectomy", None, None],
    },
    "labs": {
        "lab_id": ["L1", "L2", "L3"],
        "stay_id": ["S1", "S1", "S2"],
        "patient_id": ["A1", "A1", "A1"],
        "loinc_code": ["2345-7", "4548-4", "2324-2"],
        "value": [5.4, 0.0, None],
        "unit": ["mmol/L", "%", None],
        "sampled_at": [T(2020, 1, 2, 7), T(2020, 1, 2, 7), T(2021, 5, 5)],
        "description": [None, None, None],
        "value_code": [None, None, "77176002"],
    },
    "medications": {
        "medication_id": ["M1", "M2", "M3"],
        "stay_id": ["S1", "S1", "S2"],
        "patient_id": ["A1", "A1", "A1"],
        "atc_code": ["A10BA02", "L01XA01", "N02AA01"],
        "drug_name": ["metformin", "cisplatin", None],
        "dose": [500.0, 0.1, None],
        "dose_unit": ["mg", "mg", None],
        "route": ["PO", "IV", None],
        "start_date": [D(2020, 1, 1), D(2020, 1, 2), D(2021, 5, 5)],
        "end_date": [D(2020, 3, 1), D(2020, 1, 2), None],
    },
    "notes": {
        "note_id": ["N1", "N2", "N3"],
        "stay_id": ["S1", "S1", "S2"],
        "patient_id": ["A1", "A1", "A1"],
        "note_date": [T(2020, 1, 3, 11), T(2020, 1, 3, 12), T(2021, 5, 5, 10)],
        "note_type": ["Compte-rendu d'hospitalisation", "Lettre de sortie", None],
        "author": ["Anne Weber", None, "Luc Schmit"],
        "text": ["Patient : MULLER Jean / Sortie le 03/01/2020.", "Cher confrère, ...", "Consultation."],
    },
}


def frame(name: str, **changes: Any) -> pl.DataFrame:
    """The clean typed frame of ``name`` (as ingest returns it), with the second row's cells changed."""
    ent = entity(name)
    data = {k: list(v) for k, v in CLEAN[name].items()}
    for col, value in changes.items():
        data[col][1] = value
    schema = {"_line": pl.Int64(), **{c.name: _PL_TYPES[c.type] for c in ent.columns}}
    return pl.DataFrame({"_line": [2, 3, 4], **data}, schema=schema)


def test_importing_contracts_does_not_import_great_expectations() -> None:
    code = "import sys, transforms.contracts; sys.exit('great_expectations' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False).returncode == 0


def test_suite_files_equal_build_suites() -> None:
    suites = build_suites()
    assert list(suites) == [e.name for e in ENTITIES]
    assert sorted(p.name for p in CONTRACTS_DIR.glob("*.json")) == sorted(f"{n}.json" for n in suites)
    for name, suite in suites.items():
        assert json.loads((CONTRACTS_DIR / f"{name}.json").read_text(encoding="utf-8")) == suite, (
            f"schemas/contracts/{name}.json is stale: run uv run python -m transforms.contracts"
        )
    assert main(["--check"]) == 0


def test_suites_are_valid_great_expectations_suites() -> None:
    from great_expectations.core.expectation_suite import ExpectationSuite

    for name, suite in build_suites().items():
        gx_suite = ExpectationSuite(**suite)
        assert len(gx_suite.expectations) == len(suite["expectations"]), name
        assert all("row_level" in e["meta"] for e in suite["expectations"])


def test_every_required_column_is_checked() -> None:
    for e in ENTITIES:
        exps = build_suites()[e.name]["expectations"]
        not_null = {x["kwargs"]["column"] for x in exps if x["type"] == "expect_column_values_to_not_be_null"}
        exist = {x["kwargs"]["column"] for x in exps if x["type"] == "expect_column_to_exist"}
        typed = {x["kwargs"]["column"] for x in exps if x["type"] == "expect_column_values_to_be_of_type"}
        assert not_null == exist == set(e.required)
        assert typed == set(e.column_names)


@pytest.mark.parametrize("name", [e.name for e in ENTITIES])
def test_clean_frames_pass_entirely(name: str, capfd: pytest.CaptureFixture[str]) -> None:
    df = frame(name)
    r = validate_entity(name, df, now=NOW)
    assert r.failed_rows.height == 0, r.failed_rows.to_dicts()
    assert r.passed_rows.equals(df)
    assert r.failure_ratio == 0.0
    assert [x for x in r.expectations if not x["success"]] == []
    assert r.table_failures == []
    out, err = capfd.readouterr()
    assert "Calculating Metrics" not in out + err  # no progress bars


VIOLATIONS = [
    ("patients", "patient_id", None, "expect_column_values_to_not_be_null"),
    ("patients", "matricule", "198001011234", "expect_column_values_to_match_regex"),
    ("patients", "matricule", "1980 0101 123 45", "expect_column_values_to_match_regex"),
    ("patients", "matricule", GOOD_MATRICULE[1][:-1] + str((int(GOOD_MATRICULE[1][-1]) + 1) % 10),
     "expect_column_values_to_be_valid_matricule"),
    ("patients", "matricule", "1980023012347", "expect_column_values_to_be_valid_matricule"),  # 30 February
    ("patients", "birth_date", D(1899, 12, 31), "expect_column_values_to_be_between"),
    ("patients", "birth_date", D(2026, 1, 2), "expect_column_values_to_be_between"),
    ("patients", "sex", "X", "expect_column_values_to_be_in_set"),
    ("patients", "sex", None, "expect_column_values_to_not_be_null"),
    ("patients", "postcode", "1080", "expect_column_values_to_match_regex"),
    ("patients", "postcode", "57100", "expect_column_values_to_match_regex"),  # a French postcode with country LU
    ("patients", "country", "FRA", "expect_column_values_to_match_regex"),  # ISO alpha-2 only
    ("patients", "country", "FRANCE", "expect_column_values_to_match_regex"),
    ("patients", "country", "L", "expect_column_values_to_match_regex"),
    ("patients", "email", "anne.weber(at)pt.lu", "expect_column_values_to_match_regex"),
    ("stays", "stay_type", "DAYCARE", "expect_column_values_to_be_in_set"),
    ("stays", "admission", T(1949, 12, 31, 23), "expect_column_values_to_be_between"),
    ("stays", "admission", T(2026, 1, 1, 13), "expect_column_values_to_be_between"),
    ("stays", "discharge", T(2021, 5, 4), "expect_column_pair_values_a_to_be_greater_than_b"),
    ("diagnoses", "icd10_code", "E119", "expect_column_values_to_match_regex"),
    ("diagnoses", "icd10_code", "E11.123", "expect_column_values_to_match_regex"),
    ("diagnoses", "diagnosis_rank", "MAIN", "expect_column_values_to_be_in_set"),
    ("diagnoses", "diagnosis_date", D(1900, 1, 1), "expect_column_values_to_be_between"),
    ("procedures", "procedure_code", "APPENDIX", "expect_column_values_to_match_regex"),
    ("labs", "loinc_code", "4548", "expect_column_values_to_match_regex"),
    ("labs", "value", -0.5, "expect_column_values_to_be_between"),
    ("labs", "sampled_at", None, "expect_column_values_to_not_be_null"),
    ("medications", "atc_code", "A10BA", "expect_column_values_to_match_regex"),
    ("medications", "dose", 0.0, "expect_column_values_to_be_between"),
    ("medications", "end_date", D(2020, 1, 1), "expect_column_pair_values_a_to_be_greater_than_b"),
]


@pytest.mark.parametrize(("name", "column", "value", "expectation"), VIOLATIONS)
def test_each_violation_quarantines_its_row(name: str, column: str, value: Any, expectation: str) -> None:
    r = validate_entity(name, frame(name, **{column: value}), now=NOW)
    assert r.failed_rows["_line"].to_list() == [3]
    row = r.failed_rows.row(0, named=True)
    assert row["reason_code"] == f"contract.{expectation}"
    assert column in row["reason_detail"] and expectation in row["reason_detail"]
    if value is not None and entity(name).column(column).identifier:
        assert str(value) not in row["reason_detail"]
    assert r.passed_rows["_line"].to_list() == [2, 4]
    assert r.passed_rows.columns == r.failed_rows.columns[:-2]
    assert r.failure_ratio == pytest.approx(1 / 3)
    failed = [x for x in r.expectations if not x["success"]]
    assert failed[0]["type"] == expectation  # a malformed matricule also fails its check digits, reported after
    assert all(x["unexpected_count"] == 1 and x["row_level"] and x["column"] == column for x in failed)


def test_postcode_format_follows_the_country() -> None:
    """L-NNNN in Luxembourg; abroad the country's own postcode (FR, DE 5 digits, BE 4, NL 1234 AB)."""
    for country, postcode in (("FR", "57100"), ("BE", "6700"), ("DE", "54290"), ("NL", "1234 AB"), ("FR", None)):
        r = validate_entity("patients", frame("patients", country=country, postcode=postcode), now=NOW)
        assert r.failed_rows.height == 0, (country, postcode)
    r = validate_entity("patients", frame("patients", country="BE", postcode="67OO ARLON!"), now=NOW)
    assert r.failed_rows["_line"].to_list() == [3]
    assert "where country != LU" in r.failed_rows["reason_detail"][0]
    r = validate_entity("patients", frame("patients", postcode="6700"), now=NOW)  # country LU
    assert "where country == LU" in r.failed_rows["reason_detail"][0]


def test_one_reason_per_row_the_first_in_suite_order() -> None:
    # matricule comes before sex in the contract; the check digits run after every GX expectation
    df = frame("patients", matricule="12", sex="X")
    r = validate_entity("patients", df, now=NOW)
    assert r.failed_rows["reason_code"].to_list() == ["contract.expect_column_values_to_match_regex"]
    bad_digits = GOOD_MATRICULE[1][:-2] + "00"
    r = validate_entity("patients", frame("patients", matricule=bad_digits, sex="X"), now=NOW)
    assert r.failed_rows["reason_code"].to_list() == ["contract.expect_column_values_to_be_in_set"]
    failed = {x["type"] for x in r.expectations if not x["success"]}
    assert failed == {"expect_column_values_to_be_in_set", "expect_column_values_to_be_valid_matricule"}
    # a missing required value is reported as such, not as a value outside the set
    r = validate_entity("patients", frame("patients", sex=None), now=NOW)
    assert r.failed_rows["reason_code"].to_list() == ["contract.expect_column_values_to_not_be_null"]


def test_many_failures_keep_their_lines() -> None:
    df = pl.concat([frame("stays")] * 200).with_columns(pl.int_range(2, 602, dtype=pl.Int64).alias("_line"),
                                                         (pl.lit("S") + pl.int_range(600).cast(pl.String)).alias("stay_id"))
    df = df.with_columns(pl.when(pl.col("_line") % 7 == 0).then(pl.lit("X")).otherwise(pl.col("stay_type")).alias("stay_type"))
    r = validate_entity("stays", df, now=NOW)
    assert r.failed_rows["_line"].to_list() == [n for n in range(2, 602) if n % 7 == 0]
    assert r.passed_rows.height + r.failed_rows.height == 600
    assert r.failure_ratio == pytest.approx(r.failed_rows.height / 600)


def test_table_level_failures_are_reported_not_quarantined() -> None:
    df = frame("stays", stay_id="S1")  # duplicate key
    r = validate_entity("stays", df, now=NOW)
    assert r.failed_rows.height == 0 and r.passed_rows.height == 3
    assert [(x["type"], x["column"]) for x in r.table_failures] == [("expect_column_values_to_be_unique", "stay_id")]

    r = validate_entity("stays", frame("stays").drop("ward"), now=NOW)  # a column is missing
    assert r.failed_rows.height == 0
    failed = {(x["type"], x["column"]) for x in r.table_failures}
    assert failed == {("expect_table_columns_to_match_set", None), ("expect_column_values_to_be_of_type", "ward")}

    wrong = frame("patients").with_columns(pl.col("birth_date").cast(pl.String))  # a column typed wrong
    r = validate_entity("patients", wrong, now=NOW)
    assert [(x["type"], x["column"], "exception" in x) for x in r.table_failures] == [
        ("expect_column_values_to_be_of_type", "birth_date", False),
        ("expect_column_values_to_be_between", "birth_date", True),  # strings against a date bound
    ]
    assert r.failed_rows.height == 0


def test_empty_table() -> None:
    r = validate_entity("patients", frame("patients").clear(), now=NOW)
    assert r.failure_ratio == 0.0 and r.failed_rows.height == 0
    assert [x["type"] for x in r.table_failures] == ["expect_table_row_count_to_be_between"]
    r = validate_entity("labs", frame("labs").clear(), now=NOW)  # optional file: may be empty
    assert r.table_failures == []


def test_a_custom_suite_and_the_now_parameter() -> None:
    suite = {"name": "x", "expectations": [
        {"type": "expect_column_values_to_be_between", "kwargs": {
            "column": "admission", "min_value": "2021-01-01 00:00:00", "max_value": {"$PARAMETER": "now"}},
         "meta": {"row_level": True}},
    ]}
    r = validate_entity("stays", frame("stays"), suite, now=T(2024, 1, 1))
    assert r.failed_rows["_line"].to_list() == [2, 4]
    assert set(r.failed_rows["reason_code"]) == {"contract.expect_column_values_to_be_between"}


def test_adapter_format_suites_are_current_and_catch_rows() -> None:
    import polars as pl

    from transforms.contracts import build_format_suites, main, suite_json

    for fmt, suites in build_format_suites().items():
        for name, suite in suites.items():
            assert (CONTRACTS_DIR / fmt / f"{name}.json").read_text(encoding="utf-8") == suite_json(suite)
    assert main(["--check"]) == 0
    suite = build_format_suites()["synthea-csv"]["patients"]
    df = pl.DataFrame({
        "_line": [2, 3, 4], "id": ["a", "b", None],
        "birthdate": [dt.date(1980, 1, 1), dt.date(1850, 1, 1), dt.date(1990, 1, 1)],
        "deathdate": [None, None, None],
    }, schema_overrides={"deathdate": pl.Date})
    r = validate_entity("patients", df, suite, now=dt.datetime(2026, 1, 1))
    assert sorted(r.failed_rows["_line"].to_list()) == [3, 4]
    assert set(r.failed_rows["reason_code"]) == {"contract.expect_column_values_to_be_between",
                                                 "contract.expect_column_values_to_not_be_null"}


def test_datetime_windows_decide_as_on_arrow_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows on datetime columns run on numpy datetimes (vectorised): same rows fail as value by value,
    bounds included, values beyond the nanosecond range too."""
    import transforms.contracts as contracts

    suite = contracts.format_suite("synthea-csv", "encounters")
    assert suite is not None
    vals = [dt.datetime(2020, 1, 1), dt.datetime(1850, 5, 5), dt.datetime(2100, 1, 1), dt.datetime(1, 1, 1),
            dt.datetime(9999, 12, 31), None, dt.datetime(1900, 1, 1), dt.datetime(2026, 1, 1),
            dt.datetime(2026, 1, 1, 0, 0, 1), dt.datetime(1899, 12, 31, 23, 59, 59)]
    df = pl.DataFrame({"_line": list(range(len(vals))), "id": [f"e{i}" for i in range(len(vals))], "patient": ["p"] * len(vals),
                       "start": [v or dt.datetime(2020, 1, 1) for v in vals], "stop": vals},
                      schema_overrides={"start": pl.Datetime("us"), "stop": pl.Datetime("us")})
    now = dt.datetime(2026, 1, 1)
    fast = contracts.validate_entity("encounters", df, suite, now=now)
    monkeypatch.setattr(contracts, "_numpy_datetimes", lambda _df: {})
    slow = contracts.validate_entity("encounters", df, suite, now=now)
    assert sorted(fast.failed_rows["_line"].to_list()) == [1, 2, 3, 4, 8, 9]
    assert fast.failed_rows.select("_line", "reason_code").sort("_line").equals(
        slow.failed_rows.select("_line", "reason_code").sort("_line"))
    assert [(x["type"], x["success"], x["unexpected_count"]) for x in fast.expectations] == \
        [(x["type"], x["success"], x["unexpected_count"]) for x in slow.expectations]
