"""The landing inventory (files read, missing, ignored, unexpected) and orphans that keep their events."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest

from schemas.config import ConfigError, Source, parse_config
from tests.test_adapters_synthea import write as write_synthea
from tests.test_ingest import write
from transforms.adapters import omop_csv, synthea
from transforms.adapters.fhir import read_fhir
from transforms.ingest import SUB_COUNTS, ingest_site
from transforms.inventory import Inventory, landing_inventory
from transforms.storage import sha256_file

TODAY = dt.date(2026, 1, 1)
PATIENTS = (
    "patient_id,birth_date,sex\n"
    "P1,1980-01-01,M\n"
    "P2,1990-13-01,F\n"  # line 3: invalid date -> quarantined
    "P3,1970-05-05,F\n"
)
STAYS = (
    "stay_id,patient_id,admission,discharge,stay_type\n"
    "S1,P1,2020-01-01 10:00,2020-01-03,INPATIENT\n"
    "S2,P1,2020-31-01,,OUTPATIENT\n"  # line 3: invalid date -> quarantined; its labs keep their patient
    "S3,P2,2020-01-01,,OUTPATIENT\n"  # line 4: its patient was quarantined -> cascade
    "S4,P3,2020-02-01,,OUTPATIENT\n"
)
LABS = (
    "lab_id,stay_id,patient_id,loinc_code,value,unit,sampled_at\n"
    "L1,S1,P1,2345-7,5.1,mmol/L,2020-01-02 08:00\n"
    "L2,S2,P1,2345-7,6.0,mmol/L,2020-01-31 08:00\n"  # line 3: stay S2 quarantined -> kept, unlinked
    "L3,S2,P1,718-7,13,g/dL,2020-01-31 09:00\n"  # line 4: the same
    "L4,S3,P2,2345-7,4.0,mmol/L,2020-01-01 08:00\n"  # line 5: its patient was quarantined -> quarantined
    "L5,S9,P3,2345-7,4.0,mmol/L,2020-01-01 08:00\n"  # line 6: S9 never existed -> a root-cause orphan
)


def _site(tmp_path: Path) -> Path:
    return write(tmp_path / "a", {"patients.csv": PATIENTS, "stays.csv": STAYS, "labs.csv": LABS})


def _detail(result, entity: str, line: int) -> str:  # type: ignore[no-untyped-def]
    q = result.entities[entity].quarantine
    return str(q.filter(pl.col("source_line") == line)["reason_detail"].item())


def test_events_of_a_quarantined_stay_keep_their_patient_without_the_stay(tmp_path: Path) -> None:
    r = ingest_site("a", _site(tmp_path), today=TODAY)
    labs = r.entities["labs"]
    kept = labs.table.filter(pl.col("lab_id").is_in(["L2", "L3"]))
    assert kept["patient_id"].to_list() == ["P1", "P1"]
    assert kept["stay_id"].to_list() == [None, None]  # the visit link is empty
    assert labs.table.filter(pl.col("lab_id") == "L1")["stay_id"].item() == "S1"
    assert labs.unlinked == 2
    q = dict(zip(labs.quarantine["source_line"].to_list(), labs.quarantine["reason_code"].to_list(), strict=True))
    assert q == {5: "raw.orphan", 6: "raw.orphan"}  # the person is missing: nothing to keep
    acc = r.accounting().filter(pl.col("table") == "labs")
    cats = {c: n for c, n in acc.group_by("category").agg(pl.col("rows").sum()).iter_rows()}
    assert cats["in"] == 5 and cats["out"] == 3 and cats["unlinked"] == 2 and cats["quarantined"] == 2
    assert cats["cascaded"] == 1  # L4 (its patient was quarantined); L5 is a root cause
    for table, g in r.accounting().group_by("table"):  # sub-counts stay outside the sum
        rest = g.filter(~pl.col("category").is_in(["in", *SUB_COUNTS]))["rows"].sum()
        assert g.filter(pl.col("category") == "in")["rows"].sum() == rest, table


def test_a_cascade_names_the_parent_row_and_its_reason(tmp_path: Path) -> None:
    r = ingest_site("a", _site(tmp_path), today=TODAY)
    assert _detail(r, "stays", 4) == "patient_id P2 (patients.csv line 3) was quarantined: raw.invalid_date"
    assert _detail(r, "labs", 5) == "patient_id P2 (patients.csv line 3) was quarantined: raw.invalid_date"
    assert _detail(r, "labs", 6) == "stay_id names no valid stays row: S9"  # a root cause says what it is


def test_orphan_events_quarantine_keeps_the_old_behaviour(tmp_path: Path) -> None:
    r = ingest_site("a", _site(tmp_path), today=TODAY, orphan_events="quarantine")
    labs = r.entities["labs"]
    assert labs.table["lab_id"].to_list() == ["L1"] and labs.unlinked == 0
    assert _detail(r, "labs", 3) == "stay_id S2 (stays.csv line 3) was quarantined: raw.invalid_date"
    assert labs.cascaded == 3


def test_mapped_files_name_the_parent_by_their_own_file(tmp_path: Path) -> None:
    from schemas.mapping import HospitalMapping

    folder = write(tmp_path / "b", {"PAT.csv": PATIENTS, "SEJ.csv": STAYS, "LAB.csv": LABS})
    m = HospitalMapping(files={"patients": "PAT.csv", "stays": "SEJ.csv", "labs": "LAB.csv"})
    r = ingest_site("b", folder, today=TODAY, mapping=m)
    assert _detail(r, "labs", 5) == "patient_id P2 (PAT.csv line 3) was quarantined: raw.invalid_date"
    assert r.entities["labs"].unlinked == 2
    assert "diagnoses.csv" in r.missing_files


SYNTHEA = {
    "patients.csv": "Id,BIRTHDATE,GENDER\np1,1980-01-01,M\np2,not-a-date,F\n",
    "encounters.csv": "Id,START,STOP,PATIENT,ENCOUNTERCLASS\n"
                      "e1,2020-01-01T10:00:00Z,,p1,ambulatory\n"
                      "e2,bad,,p1,ambulatory\n"  # line 3: quarantined; its conditions keep p1
                      "e3,2020-01-01T10:00:00Z,,p2,ambulatory\n",
    "conditions.csv": "START,STOP,PATIENT,ENCOUNTER,CODE,DESCRIPTION\n"
                      "2020-01-01,,p1,e1,44054006,x\n"
                      "2020-01-01,,p1,e2,44054006,x\n"
                      "2020-01-01,,p2,e3,44054006,x\n",
}


def test_synthea_events_of_a_quarantined_encounter_are_kept_unlinked(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    for name, text in SYNTHEA.items():
        (folder / name).write_text(text)
    raw = synthea.read_synthea("s", folder)
    c = raw.entities["conditions"]
    assert c.table["patient"].to_list() == ["p1", "p1"] and c.table["encounter"].to_list() == ["e1", None]
    assert c.unlinked == 1
    detail = c.quarantine["reason_detail"].to_list()
    assert detail == ["patient p2 (patients.csv line 3) was quarantined: raw.invalid_date"]
    strict = synthea.read_synthea("s", folder, orphan_events="quarantine").entities["conditions"]
    assert strict.table.height == 1
    assert "encounter e2 (encounters.csv line 3) was quarantined: raw.invalid_date" in strict.quarantine["reason_detail"].to_list()


def test_fhir_events_of_a_quarantined_encounter_are_kept_unlinked(tmp_path: Path) -> None:
    res = [
        {"resourceType": "Patient", "id": "p1", "birthDate": "1980-01-01", "gender": "male"},
        {"resourceType": "Encounter", "id": "e1", "subject": {"reference": "Patient/p1"}, "period": {"start": "bad"}},
        {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
         "encounter": {"reference": "Encounter/e1"}, "onsetDateTime": "2020-01-01",
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}},
    ]
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "all.ndjson").write_text("\n".join(json.dumps(r) for r in res) + "\n")
    raw = read_fhir("f", tmp_path / "f")
    cond = raw.entities["condition"]
    assert cond.table["id"].to_list() == ["c1"] and cond.table["encounter"].to_list() == [None]
    assert cond.unlinked == 1
    strict = read_fhir("f", tmp_path / "f", orphan_events="quarantine").entities["condition"]
    assert strict.quarantine["reason_detail"].to_list() == ["encounter e1 (all.ndjson line 2) was quarantined: raw.invalid_date"]


def test_omop_csv_orphans_name_the_quarantined_person(tmp_path: Path) -> None:
    folder = tmp_path / "o"
    folder.mkdir()
    (folder / "person.csv").write_text(
        "person_id,gender_concept_id,year_of_birth,race_concept_id,ethnicity_concept_id\n1,8507,1980,0,0\n2,8507,x,0,0\n")
    (folder / "observation_period.csv").write_text(
        "observation_period_id,person_id,observation_period_start_date,observation_period_end_date,"
        "period_type_concept_id\n1,1,2020-01-01,2020-12-31,32817\n2,2,2020-01-01,2020-12-31,32817\n"
        "3,7,2020-01-01,2020-12-31,32817\n")
    r = omop_csv.read_omop("o", folder)
    op = r.entities["observation_period"]
    assert dict(zip(op.quarantine["source_line"].to_list(), op.quarantine["reason_detail"].to_list(), strict=True)) == {
        3: "person_id 2 (person.csv line 3) was quarantined: raw.invalid_value", 4: "person_id names no person"}
    assert op.cascaded == 1


# ----------------------------------------------------------------------------------------------- inventory

def _source(folder: Path, **kw: object) -> Source:
    return Source.model_validate({"site": "a", "path": str(folder), **kw})


def test_a_renamed_file_is_unexpected_and_named_with_the_fix(tmp_path: Path) -> None:
    folder = _site(tmp_path)
    (folder / "medications_2024.csv").write_text("medication_id\n")
    (folder / "_truth").mkdir()
    (folder / "_truth" / "faults.jsonl").write_text("{}\n")  # the generator's answer key: exempt
    (folder / ".DS_Store").write_bytes(b"\x00\x00")  # a file manager's: never an extract, never blocks
    (folder / "Thumbs.db").write_bytes(b"\x00")
    r = ingest_site("a", folder, today=TODAY)
    inv = landing_inventory(_source(folder), r.missing_files)
    assert inv.read == ["labs.csv", "patients.csv", "stays.csv"]
    assert inv.unexpected == ["medications_2024.csv"]
    assert "medications.csv" in inv.missing and "notes.csv" in inv.missing
    msg = inv.blocking_message()
    assert msg is not None and "medications_2024.csv" in msg and "ignore" in msg and "medications.csv" in msg
    ok = landing_inventory(_source(folder, ignore=["medications_*.csv"]), r.missing_files)
    assert ok.unexpected == [] and ok.ignored == ["medications_2024.csv"] and ok.blocking_message() is None
    assert inv.metadata()["files_unexpected"] == 1


def test_the_inventory_checksums_the_files_read_and_round_trips(tmp_path: Path) -> None:
    folder = _site(tmp_path)
    (folder / "archive").mkdir()
    (folder / "archive" / "old.csv").write_text("x\n")
    inv = landing_inventory(_source(folder, ignore=["archive"]))
    assert inv.ignored == ["archive/old.csv"] and inv.unexpected == []
    assert [c["file"] for c in inv.checksums] == inv.read
    first = inv.checksums[0]
    assert first["sha256"] == sha256_file(folder / str(first["file"]))
    assert first["bytes"] == (folder / str(first["file"])).stat().st_size
    assert Inventory.from_json(inv.to_json()) == inv
    entry = inv.manifest_entry()
    assert {f["file"] for f in entry["files"]} == {"labs.csv", "patients.csv", "stays.csv"}


def test_the_mapping_names_the_files_read(tmp_path: Path) -> None:
    folder = write(tmp_path / "b", {"PAT.csv": PATIENTS, "SEJ.csv": STAYS, "patients.csv": PATIENTS})
    (folder / "mapping.yaml").write_text("files: {patients: PAT.csv, stays: SEJ.csv}\n")
    inv = landing_inventory(_source(folder, mapping=str(folder / "mapping.yaml")))
    assert inv.read == ["PAT.csv", "SEJ.csv"]
    assert inv.not_read == ["mapping.yaml"]  # the source's own configuration
    assert inv.unexpected == ["patients.csv"]  # the contract's name, but the mapping says PAT.csv


def test_inventory_of_the_other_formats(tmp_path: Path) -> None:
    s = tmp_path / "syn"
    write_synthea(s, {"patients.csv": "Id,BIRTHDATE\np1,1980-01-01\n", "Encounters.csv": "Id,START,PATIENT\n"})
    (s / "claims.csv").write_text("x\n")
    (s / "notes.txt").write_text("x\n")
    inv = landing_inventory(_source(s, format="synthea-csv"))
    assert inv.read == ["Encounters.csv", "patients.csv"] and inv.not_read == ["claims.csv"] and inv.unexpected == ["notes.txt"]
    f = tmp_path / "fhir"
    f.mkdir()
    (f / "Patient.000.ndjson").write_text("{}\n")
    (f / "Patient.000.ndjson.gz").write_bytes(b"x")
    inv = landing_inventory(_source(f, format="fhir-bulk"))
    assert inv.read == ["Patient.000.ndjson"] and inv.unexpected == ["Patient.000.ndjson.gz"]
    o = tmp_path / "omop"
    o.mkdir()
    for name in ("PERSON.csv", "CONCEPT.csv", "readme.md"):
        (o / name).write_text("x\n")
    inv = landing_inventory(_source(o, format="omop-csv"))
    assert inv.read == ["PERSON.csv"] and inv.not_read == ["CONCEPT.csv"] and inv.unexpected == ["readme.md"]


def test_config_keys(tmp_path: Path) -> None:
    cfg = parse_config({"sources": [{"site": "a", "path": "x", "ignore": ["*.log"]}]}, tmp_path)
    assert cfg.sources[0].ignore == ["*.log"] and cfg.quality.orphan_events == "keep"
    cfg = parse_config({"sources": [{"site": "a", "path": "x"}], "quality": {"orphan_events": "quarantine"}}, tmp_path)
    assert cfg.quality.orphan_events == "quarantine"
    with pytest.raises(ConfigError, match="orphan_events"):
        parse_config({"sources": [{"site": "a", "path": "x"}], "quality": {"orphan_events": "drop"}}, tmp_path)
    with pytest.raises(ConfigError, match="relative"):
        parse_config({"sources": [{"site": "a", "path": "x", "ignore": ["/etc/*"]}]}, tmp_path)
