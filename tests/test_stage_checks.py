"""One blocking check per stage and site (issue 19, item 6): what each one says when something fails.

The per-table checks were merged (a Dagster event costs ~10 ms, two per check); these tests pin that
the merged check still fails on each per-table condition and names the table and the reason, and that
its metadata lists every table."""

from __future__ import annotations

import polars as pl

from pipelines.assets import _cdm_check, _cdm_row, _entity_row, _extract_check, leak_check_result
from pipelines.buckets import EntityStats
from schemas.config import Quality
from transforms.contracts import ContractResult
from transforms.inventory import Inventory


def _contract(ratio: float, expectations: list[dict[str, object]]) -> ContractResult:
    empty = pl.DataFrame()
    return ContractResult("x", empty, empty, expectations, ratio, (100, int(ratio * 100)))


def _md(value: object) -> str:
    return str(getattr(value, "value", value))


def test_extract_checks_fails_on_each_entity_condition_and_names_it() -> None:
    q = Quality(max_quarantine_ratio=0.1, max_contract_failure_ratio=0.05)
    ok = _entity_row("patients", EntityStats(rows_in=100, rows_out=95, by_reason={"bad_date": 5}), _contract(0.0, []), q)
    quarantined = _entity_row("stays", EntityStats(rows_in=100, rows_out=80, by_reason={"no_patient": 20}), None, q)
    contract = _entity_row("labs", EntityStats(rows_in=100, rows_out=100), _contract(0.08, [
        {"type": "expect_column_values_to_not_be_null", "column": "value", "success": False, "row_level": True,
         "unexpected_count": 8},
        {"type": "expect_table_columns_to_match_set", "success": False, "row_level": False},
    ]), q)
    missing = _entity_row("medications", None, None, q, "missing from the extract")
    inv = Inventory(site="h", format="hospital-csv", read=["patients.csv"])
    fine = _extract_check("raw_patients", inv, [ok, missing], q)
    assert fine.passed and fine.description is None
    assert fine.metadata["entities"].value == 2 and fine.metadata["entities_failing"].value == 0

    bad = _extract_check("raw_patients", inv, [ok, quarantined, contract, missing], q)
    assert not bad.passed
    assert bad.metadata["entities_failing"].value == 2
    assert bad.metadata["max_quarantine_ratio"].value == 0.2
    text = bad.description or ""
    assert "stays: 20.0% of its rows quarantined (at most 10%)" in text
    assert "labs: 8.0% of its rows fail its great-expectations suite (at most 5%)" in text
    assert "table-level expectation(s) failed: expect_table_columns_to_match_set" in text
    assert "patients" not in text and "medications" not in text
    table = _md(bad.metadata["by_entity"])
    assert all(e in table for e in ("patients", "stays", "labs", "medications", "missing from the extract"))
    assert "expect_column_values_to_not_be_null" in _md(bad.metadata["failed_expectations"])

    renamed = Inventory(site="h", format="hospital-csv", read=["patients.csv"], unexpected=["stays_2024.csv"])
    blocked = _extract_check("raw_patients", renamed, [ok], q)
    assert not blocked.passed
    assert (blocked.description or "").startswith("landing_inventory: h: 1 file(s)") and "stays_2024.csv" in (blocked.description or "")


def test_cdm_conformance_names_each_failing_table() -> None:
    person = pl.LazyFrame({"person_id": [1, 2, 2], "gender_concept_id": [8507, None, 8532], "year_of_birth": [1950, 1960, 1970],
                           "race_concept_id": [0, 0, 0], "ethnicity_concept_id": [0, 0, 0]})
    death = pl.LazyFrame({"person_id": [1], "death_date": [None], "death_type_concept_id": [32817]},
                         schema_overrides={"death_date": pl.Date})
    good = pl.LazyFrame({"location_id": [1, 2]})
    rows = [_cdm_row("person", person), _cdm_row("death", death), _cdm_row("location", good)]
    check = _cdm_check("omop_person", rows)
    assert not check.passed
    text = check.description or ""
    assert "person: 1 duplicated person_id; nulls in required fields: gender_concept_id 1" in text
    assert "death: nulls in required fields: death_date 1" in text
    assert "location" not in text
    assert check.metadata["tables_checked"].value == 3 and check.metadata["tables_failing"].value == 2
    assert "location" in _md(check.metadata["by_table"])
    assert _cdm_check("omop_person", [_cdm_row("location", good)]).passed


def test_leak_scan_names_tables_and_types_never_values() -> None:
    hits = {"person": {}, "measurement": {"email": 2, "name": 1}, "drug_exposure": {"iban": 1}}
    check = leak_check_result("pseudo_person", hits, {"identifier_values_checked": 10})
    assert not check.passed
    assert check.description == ("identifiers found (cells by table and type): "
                                 "drug_exposure: iban 1; measurement: email 2, name 1")
    md = check.metadata
    assert md["tables_scanned"].value == 3 and md["tables_with_hits"].value == 2
    assert md["hits_email"].value == 2 and md["hits_iban"].value == 1 and md["identifier_values_checked"].value == 10
    clean = leak_check_result("pseudo_person", {"person": {}, "measurement": {}}, {})
    assert clean.passed and clean.description is None and "hits_by_table" not in clean.metadata
