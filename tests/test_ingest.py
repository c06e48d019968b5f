from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from transforms.ingest import SUB_COUNTS, ExtractError, ingest_site

TODAY = dt.date(2026, 1, 1)
PATIENTS = (
    "patient_id,matricule,last_name,first_name,birth_date,sex,address,postcode,city,phone,email,updated_at\n"
    "P1,1980010112345,Dupont,Jean,1980-01-01, m ,1 rue X,L-1080,Lux,+352 621 000 111,j@x.lu,2020-01-01 10:00\n"
    "P2,,Muller,Anne,31/02/2020,F,,,,,,\n"
    "P3,,Muller,Anne,2090-01-01,F,,,,,,\n"
    "P1,1980010112345,Dupont,Jean,1980-01-01, m ,1 rue X,L-1080,Lux,+352 621 000 111,j@x.lu,2020-01-01 10:00\n"
    "P4,,Ané,Zoë,1970-05-05,F,,,,,,\n"
    "P5,,Weber,Luc,,M,,,,,,\n"
    "P6,,Klein,Max,2020-13-01,M,,,,,,\n"
)
STAYS = (
    "stay_id,patient_id,admission,discharge,stay_type,ward\n"
    "S1,P1,2020-01-01 10:00,2020-01-03,inpatient,X\n"
    "S2,P9,2020-01-01,,OUTPATIENT,\n"
    "S3,P2,2020-01-01,,OUTPATIENT,\n"
    "S4,P4,2020-02-01,2020-01-01,OUTPATIENT,\n"
)
DIAGNOSES = (
    "diagnosis_id,stay_id,patient_id,icd10_code,diagnosis_date,diagnosis_rank,description\n"
    "D1,S1,P1, e11.9 ,2020-01-02,principal,x\n"
    "D2,S1,P1,Z99.8,2020-01-02,secondary,x\n"
    "D3,S9,P1,I10,2020-01-02,secondary,x\n"
)


def write(folder: Path, files: dict[str, str], encoding: str = "utf-8", delimiter: str = ",") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_bytes(text.replace(",", delimiter).encode(encoding))
    return folder


def reasons(result, entity: str) -> dict[int, str]:  # type: ignore[no-untyped-def]
    q = result.entities[entity].quarantine
    return dict(zip(q["source_line"].to_list(), q["reason_code"].to_list(), strict=True))


def test_each_fault_ends_as_the_contract_says(tmp_path: Path) -> None:
    site = write(tmp_path / "a", {"patients.csv": PATIENTS, "stays.csv": STAYS, "diagnoses.csv": DIAGNOSES})
    r = ingest_site("a", site, today=TODAY)
    assert reasons(r, "patients") == {
        3: "raw.invalid_date", 4: "raw.future_date", 7: "raw.missing_required", 8: "raw.invalid_date",
    }
    p = r.entities["patients"]
    assert p.deduplicated == 1
    assert p.table["patient_id"].to_list() == ["P1", "P4"]
    assert p.table["sex"].to_list() == ["M", "F"]  # trimmed and upper-cased
    assert p.table["last_name"].to_list() == ["Dupont", "Ané"]
    assert reasons(r, "stays") == {3: "raw.orphan", 4: "raw.orphan", 5: "raw.inconsistent_dates"}
    d = r.entities["diagnoses"]
    assert d.table["icd10_code"].to_list() == ["E11.9", "Z99.8"]  # normalised, unknown code kept
    assert reasons(r, "diagnoses") == {4: "raw.orphan"}


def test_every_row_is_accounted_for(tmp_path: Path) -> None:
    site = write(tmp_path / "a", {"patients.csv": PATIENTS, "stays.csv": STAYS, "diagnoses.csv": DIAGNOSES})
    acc = ingest_site("a", site, today=TODAY).accounting()
    for table, g in acc.group_by("table"):
        rows_in = g.filter(pl.col("category") == "in")["rows"].sum()
        # unlinked (of out) and cascaded (of quarantined) are sub-counts, not part of the sum
        rest = g.filter(~pl.col("category").is_in(["in", *SUB_COUNTS]))["rows"].sum()
        assert rows_in == rest, table


def test_quarantine_keeps_original_row_and_reason(tmp_path: Path) -> None:
    site = write(tmp_path / "a", {"patients.csv": PATIENTS, "stays.csv": STAYS})
    q = ingest_site("a", site, today=TODAY).entities["patients"].quarantine
    row = q.filter(pl.col("source_line") == 3).to_dicts()[0]
    assert row["birth_date"] == "31/02/2020"
    assert row["source_file"] == "patients.csv"
    assert "birth_date" in row["reason_detail"]


def test_windows_1252_with_semicolons(tmp_path: Path) -> None:
    site = write(tmp_path / "c", {"patients.csv": PATIENTS, "stays.csv": STAYS}, encoding="cp1252", delimiter=";")
    r = ingest_site("c", site, encoding="cp1252", delimiter=";", today=TODAY)
    assert "Ané" in r.entities["patients"].table["last_name"].to_list()


def test_wrong_encoding_is_a_clear_error(tmp_path: Path) -> None:
    site = write(tmp_path / "c", {"patients.csv": PATIENTS, "stays.csv": STAYS}, encoding="cp1252")
    with pytest.raises(ExtractError, match="encoding"):
        ingest_site("c", site, today=TODAY)


def test_missing_required_file_and_column(tmp_path: Path) -> None:
    site = write(tmp_path / "a", {"patients.csv": PATIENTS})
    with pytest.raises(ExtractError, match=r"stays\.csv is missing"):
        ingest_site("a", site, today=TODAY)
    site = write(tmp_path / "b", {"patients.csv": PATIENTS.replace("birth_date", "dob"), "stays.csv": STAYS})
    with pytest.raises(ExtractError, match="birth_date"):
        ingest_site("b", site, today=TODAY)
    with pytest.raises(ExtractError, match="does not exist"):
        ingest_site("x", tmp_path / "nowhere", today=TODAY)


def test_missing_optional_file_is_reported(tmp_path: Path) -> None:
    site = write(tmp_path / "a", {"patients.csv": PATIENTS, "stays.csv": STAYS})
    r = ingest_site("a", site, today=TODAY)
    assert "labs.csv" in r.missing_files
    assert r.entities["labs"].table.height == 0


def test_country_of_residence_defaults_to_lu_and_a_non_code_is_quarantined(tmp_path: Path) -> None:
    from schemas.extract import Entity
    from transforms.adapters.hospital_csv import hospital_to_staging
    from transforms.contracts import validate_entity as validate_contract

    def contract(entity: Entity, df: pl.DataFrame) -> pl.DataFrame:
        r = validate_contract(entity.name, df, now=dt.datetime(2026, 1, 1))
        return r.failed_rows.select("_line", "reason_code", "reason_detail")

    stays = "stay_id,patient_id,admission,discharge,stay_type,ward\n"
    # no country column at all: every patient lives in Luxembourg
    old = write(tmp_path / "old", {"patients.csv": PATIENTS, "stays.csv": stays})
    r = ingest_site("old", old, today=TODAY)
    assert r.entities["patients"].table["country"].to_list() == ["LU", "LU"]
    patients = (
        "patient_id,birth_date,sex,postcode,city,country\n"
        "P1,1980-01-01,M,L-1080,Luxembourg,\n"  # empty: LU
        "P2,1981-01-01,F,57100,Thionville, fr \n"  # trimmed, upper-cased
        "P3,1982-01-01,F,6700,Arlon,BE\n"
        "P4,1983-01-01,M,57100,Thionville,France\n"  # a name, not a code
        "P5,1984-01-01,M,54290,Trier,DEU\n"  # alpha-3, not alpha-2
        "P6,1985-01-01,F,57100,Thionville,LU\n"  # a French postcode for a resident of Luxembourg
    )
    site = write(tmp_path / "a", {"patients.csv": patients, "stays.csv": stays})
    r = ingest_site("a", site, today=TODAY, row_checks=contract)
    p = r.entities["patients"]
    assert p.table.select("patient_id", "country").rows() == [("P1", "LU"), ("P2", "FR"), ("P3", "BE")]
    q = {row["patient_id"]: row for row in p.quarantine.iter_rows(named=True)}
    assert set(q) == {"P4", "P5", "P6"}
    assert {row["reason_code"] for row in q.values()} == {"contract.expect_column_values_to_match_regex"}
    assert q["P4"]["country"] == "France" and "country does not match" in q["P4"]["reason_detail"]
    assert "postcode does not match" in q["P6"]["reason_detail"]
    persons = hospital_to_staging({n: e.table for n, e in r.entities.items()})["persons"]
    assert persons.select("postcode", "country").rows() == [("L-1080", "LU"), ("57100", "FR"), ("6700", "BE")]
