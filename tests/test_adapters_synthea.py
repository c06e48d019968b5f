from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import polars as pl
import pytest

from transforms import staging
from transforms.adapters.synthea import read_synthea, synthea_to_staging
from transforms.ingest import ExtractError, IngestResult

ROOT = Path(__file__).resolve().parents[1]


def assert_accounting_holds(raw: IngestResult) -> None:
    acc = raw.accounting()
    for name, r in raw.entities.items():
        assert r.rows_in == r.table.height + r.quarantined + r.deduplicated, name
        rows = acc.filter(pl.col("table") == name)
        got = dict(rows.group_by("category").agg(pl.col("rows").sum()).iter_rows())
        assert got["in"] == got["out"] + got.get("quarantined", 0) + got.get("deduplicated", 0), name
        if r.quarantined:
            q = r.quarantine
            assert q["reason_code"].null_count() == 0 and q["reason_detail"].null_count() == 0
            assert {"source_file", "source_line"} <= set(q.columns)


def assert_staging_conforms(st: dict[str, pl.DataFrame]) -> None:
    assert set(st) == set(staging.SCHEMAS)
    for name, df in st.items():
        assert df.schema == staging.SCHEMAS[name], name
    persons = st["persons"]["person_key"]
    assert persons.is_unique().all()
    for name in ("visits", "events", "notes"):
        assert st[name]["person_key"].is_in(persons.implode()).all(), name
    assert st["events"].filter(pl.col("visit_key").is_not_null())["visit_key"].is_in(
        st["visits"]["visit_key"].implode()).all()
    assert st["events"]["kind"].is_in(list(staging.KINDS)).all()
    assert st["events"]["event_key"].is_unique().all()
    assert set(st["persons"]["sex"].unique()) <= {"M", "F", "U"}


def test_synthea_sample(shared: Path) -> None:
    raw = read_synthea("s1", shared / "data" / "synthea-v3-27")
    assert raw.missing_files == []
    assert_accounting_holds(raw)
    st = synthea_to_staging(raw)
    assert_staging_conforms(st)
    counts = {k: v.height for k, v in st.items()}
    print("synthea-v3-27 staging:", counts)
    assert counts["persons"] == 27
    assert counts["visits"] == 604
    assert counts["events"] == 438 + 663 + 29 + 990 + 249 + 40 + 3
    ev = st["events"]
    by = dict(ev.group_by("kind").len().iter_rows())
    assert by["condition"] == 438 and by["procedure"] == 249 and by["device"] == 3
    assert by["drug"] == 663 + 29
    assert by["measurement"] + by["observation"] == 990 and by["allergy"] == 40
    assert set(st["visits"]["visit_class"].unique()) <= {
        "AMBULATORY", "EMERGENCY", "INPATIENT", "WELLNESS", "URGENTCARE", "OUTPATIENT", "HOME", "HOSPICE", "SNF", "VIRTUAL"}
    assert set(ev.filter(pl.col("kind") == "drug")["code_system"].unique()) == {"RXNORM", "CVX"}
    # allergies carry their own SYSTEM (Synthea 3.x): RxNorm drug allergies stay RxNorm
    assert "RXNORM" in ev.filter(pl.col("event_key").str.starts_with("allergies:"))["code_system"].to_list()
    p = st["persons"]
    assert p["first_name"].null_count() == 0 and p["last_name"].null_count() == 0 and p["address"].null_count() == 0
    assert st["visits"]["start"].null_count() == 0
    assert st["visits"]["start"].dt.time().cast(pl.String).str.contains(":").all()
    m = ev.filter(pl.col("kind") == "measurement")
    assert m["value_number"].null_count() == 0
    assert ev.filter(pl.col("kind") == "observation", pl.col("event_key").str.starts_with("observations:"))[
        "value_text"].null_count() == 0


PATIENTS = (
    "Id,BIRTHDATE,DEATHDATE,FIRST,LAST,GENDER,ADDRESS,CITY,COUNTY,ZIP\n"
    "p1,1970-03-04,,Ana,Lopez,F,1 Main St,Town,Cnty,01234\n"
    "p2,31/12/1980,,Bo,Kim,M,,,,\n"  # line 3: invalid date
    "p3,1990-01-01,2020-05-01,Cy,Roe,M,,,,\n"
    "p3,1990-01-01,2020-05-01,Cy,Roe,M,,,,\n"  # line 5: exact repeat -> deduplicated
    "p4,,,Di,Poe,F,,,,\n"  # line 6: missing birth date
)
ENCOUNTERS = (
    "Id,START,STOP,PATIENT,ORGANIZATION,PROVIDER,ENCOUNTERCLASS,CODE,DESCRIPTION\n"
    "e1,2019-01-02T10:00:00Z,2019-01-02T10:30:00Z,p1,o1,pr1,urgentcare,1,x\n"
    "e2,2019-02-02T10:00:00Z,,p2,o1,pr1,inpatient,1,x\n"  # orphan: p2 was quarantined
    "e3,2019-03-02T10:00:00Z,,p3,o1,pr1,ambulatory,1,x\n"
    "e3,2019-03-03T10:00:00Z,,p3,o1,pr1,ambulatory,1,x\n"  # duplicate key
)
# Synthea 2.7 procedures (DATE, not START/STOP), lower-case headers
PROCEDURES = (
    "date,patient,encounter,code,description\n"
    "2019-01-02T10:05:00Z,p1,e1,123,Thing\n"
    "2019-01-02T10:05:00Z,p1,e9,124,Other\n"  # encounter e9 does not exist
)
# conditions without the CODE column: every row is quarantined, the rest goes on
CONDITIONS = "START,STOP,PATIENT,ENCOUNTER,DESCRIPTION\n2019-01-02,,p1,e1,Flu\n2019-03-02,,p3,e3,Cold\n"
OBSERVATIONS = (
    "DATE,PATIENT,ENCOUNTER,CATEGORY,CODE,DESCRIPTION,VALUE,UNITS,TYPE\n"
    "2019-01-02T10:00:00Z,p1,e1,vital-signs,8302-2,Height,170.5,cm,numeric\n"
    "2019-01-02T10:00:00Z,p1,e1,survey,72166-2,Smoking,Never smoked,,text\n"
    "2019-13-02T10:00:00Z,p1,e1,survey,72166-2,Smoking,Never smoked,,text\n"
)


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def reasons(raw: IngestResult, entity: str) -> dict[int, str]:
    q = raw.entities[entity].quarantine
    return dict(zip(q["source_line"].to_list(), q["reason_code"].to_list(), strict=True))


def test_synthea_faults_are_quarantined_and_the_rest_goes_on(tmp_path: Path) -> None:
    folder = write(tmp_path / "s", {
        "patients.csv": PATIENTS, "Encounters.csv": ENCOUNTERS, "procedures.csv": PROCEDURES,
        "conditions.csv": CONDITIONS, "observations.csv": OBSERVATIONS, "claims.csv": "Id\nx\n",
    })
    raw = read_synthea("s", folder)
    assert_accounting_holds(raw)
    assert set(raw.missing_files) == {f"{n}.csv" for n in (
        "organizations", "providers", "medications", "immunizations", "allergies", "devices")}
    assert "claims" not in raw.entities
    assert reasons(raw, "patients") == {3: "raw.invalid_date", 6: "raw.missing_required"}
    assert raw.entities["patients"].deduplicated == 1
    assert reasons(raw, "encounters") == {3: "raw.orphan", 5: "raw.duplicate_key"}
    assert reasons(raw, "procedures") == {3: "raw.orphan"}
    assert reasons(raw, "conditions") == {2: "raw.missing_required", 3: "raw.missing_required"}
    q = raw.entities["conditions"].quarantine
    assert q["reason_detail"][0] == "column CODE is absent from conditions.csv"
    assert q["description"].to_list() == ["Flu", "Cold"]  # the original cells travel with the quarantine
    assert q["source_file"].unique().to_list() == ["conditions.csv"]
    assert reasons(raw, "observations") == {4: "raw.invalid_date"}

    st = synthea_to_staging(raw)
    assert_staging_conforms(st)
    assert st["persons"]["person_key"].to_list() == ["p1", "p3"]
    p3 = st["persons"].row(1, named=True)
    assert p3["death_date"].isoformat() == "2020-05-01" and p3["sex"] == "M"
    v = st["visits"].sort("visit_key")
    assert v["visit_class"].to_list() == ["URGENTCARE", "AMBULATORY"]
    assert v["end"].to_list()[1] is None
    ev = st["events"].sort("event_key")
    assert ev["event_key"].to_list() == ["observations:2", "observations:3", "procedures:2"]
    assert ev["kind"].to_list() == ["measurement", "observation", "procedure"]
    assert ev["value_number"].to_list()[0] == 170.5 and ev["unit"].to_list()[0] == "cm"
    assert ev["value_text"].to_list()[1] == "Never smoked"
    assert ev["code_system"].to_list() == ["LOINC", "LOINC", "SNOMED"]
    assert str(ev["start"].to_list()[2]) == "2019-01-02 10:05:00"


def test_required_files(tmp_path: Path) -> None:
    with pytest.raises(ExtractError, match=r"encounters\.csv is missing"):
        read_synthea("s", write(tmp_path / "a", {"patients.csv": PATIENTS}))
    with pytest.raises(ExtractError, match="does not exist"):
        read_synthea("s", tmp_path / "nowhere")


def _make_synthea_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("make_synthea", ROOT / "bench" / "make_synthea.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["make_synthea"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_make_synthea_replicates_with_fresh_consistent_ids(shared: Path, tmp_path: Path) -> None:
    mod = _make_synthea_module()
    out = tmp_path / "big"
    written = mod.replicate(shared / "data" / "synthea-v3-27", out, 60)
    assert written["patients.csv"] == 60
    raw = read_synthea("b", out)
    assert_accounting_holds(raw)
    assert sum(r.quarantined + r.deduplicated for r in raw.entities.values()) == 0
    st = synthea_to_staging(raw)
    assert_staging_conforms(st)
    assert st["persons"].height == 60
    original = set(pl.read_csv(shared / "data" / "synthea-v3-27" / "patients.csv", infer_schema=False)["Id"])
    assert not original & set(st["persons"]["person_key"])
    # two full copies and 6 patients of the third: every visit of those patients, no more
    enc = pl.read_csv(shared / "data" / "synthea-v3-27" / "encounters.csv", infer_schema=False)
    first6 = pl.read_csv(shared / "data" / "synthea-v3-27" / "patients.csv", infer_schema=False)["Id"].head(6)
    assert st["visits"].height == 2 * enc.height + enc.filter(pl.col("PATIENT").is_in(first6.implode())).height
    claims = pl.read_csv(out / "claims.csv", infer_schema=False)
    assert claims["PATIENTID"].is_in(st["persons"]["person_key"].implode()).all()


def test_synthea_country_is_us_unless_a_country_column_says_otherwise(tmp_path: Path) -> None:
    encounters = "Id,START,STOP,PATIENT,ORGANIZATION,PROVIDER,ENCOUNTERCLASS,CODE,DESCRIPTION\n"
    orgs = "Id,NAME,ADDRESS,CITY,STATE,ZIP\no1,GENERAL,5 Road,Town,MA,01234\n"
    us = write(tmp_path / "us", {"patients.csv": PATIENTS, "encounters.csv": encounters, "organizations.csv": orgs})
    st = synthea_to_staging(read_synthea("us", us))
    assert set(st["persons"]["country"]) == {"US"} and st["care_sites"]["country"].to_list() == ["US"]
    custom = (
        "Id,BIRTHDATE,FIRST,LAST,GENDER,ADDRESS,CITY,ZIP,COUNTRY\n"
        "p1,1970-03-04,Ana,Lopez,F,1 rue X,Luxembourg,L-1080,Luxembourg\n"
        "p2,1971-03-04,Bo,Kim,M,2 rue Y,Thionville,57100,FR\n"
        "p3,1972-03-04,Cy,Roe,M,3 Main St,Town,01234,\n"
    )
    lu = write(tmp_path / "lu", {"patients.csv": custom, "encounters.csv": encounters})
    st = synthea_to_staging(read_synthea("lu", lu))
    assert st["persons"].select("person_key", "postcode", "country").rows() == [
        ("p1", "L-1080", "LU"), ("p2", "57100", "FR"), ("p3", "01234", "US")]
