"""A second hospital's differently shaped export maps through its mapping file, without code changes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from schemas.mapping import MappingError, load_mapping
from transforms.adapters.hospital_csv import hospital_to_staging
from transforms.ingest import ingest_site

TODAY = dt.date(2026, 1, 1)
CONTRACT = {
    "patients.csv": "patient_id,matricule,last_name,first_name,birth_date,sex,address,postcode,city,country,phone,email,updated_at\n"
                    "P1,,Dupont,Jean,1980-01-31,M,,L-1080,Lux,,,,\nP2,,Weber,Anne,1975-12-01,F,,57100,Thionville,FR,,,\n",
    "stays.csv": "stay_id,patient_id,admission,discharge,stay_type,ward\nS1,P1,2020-03-01 08:30,2020-03-04 12:00,INPATIENT,X\n"
                 "S2,P2,2021-07-15 10:00,,EMERGENCY,\n",
    "diagnoses.csv": "diagnosis_id,stay_id,patient_id,icd10_code,diagnosis_date,diagnosis_rank,description\n"
                     "D1,S1,P1,E11.9,2020-03-02,PRINCIPAL,x\n",
}
OTHER = {
    "PATIENTS_EXPORT.csv": "NO_PATIENT;NOM;PRENOM;DATE_NAISSANCE;SEXE;CP;COMMUNE;PAYS\nP1;Dupont;Jean;31/01/1980;1;L-1080;Lux;L\n"
                           "P2;Weber;Anne;01/12/1975;2;57100;Thionville;F\n",
    "SEJOURS.csv": "NO_SEJOUR;NO_PATIENT;DATE_ENTREE;DATE_SORTIE;TYPE;SERVICE\nS1;P1;01/03/2020 08:30;04/03/2020 12:00;HOSP;X\n"
                   "S2;P2;15/07/2021 10:00;;URG;\n",
    "DIAG.csv": "ID;NO_SEJOUR;NO_PATIENT;CODE;DATE_DIAG;RANG;LIBELLE\nD1;S1;P1;E11.9;02/03/2020;PRINCIPAL;x\n",
}
MAPPING = """
files: {patients: PATIENTS_EXPORT.csv, stays: SEJOURS.csv, diagnoses: DIAG.csv}
columns:
  patients: {patient_id: NO_PATIENT, last_name: NOM, first_name: PRENOM, birth_date: DATE_NAISSANCE, sex: SEXE, postcode: CP, city: COMMUNE, country: PAYS}
  stays: {stay_id: NO_SEJOUR, patient_id: NO_PATIENT, admission: DATE_ENTREE, discharge: DATE_SORTIE, stay_type: TYPE, ward: SERVICE}
  diagnoses: {diagnosis_id: ID, stay_id: NO_SEJOUR, patient_id: NO_PATIENT, icd10_code: CODE, diagnosis_date: DATE_DIAG, diagnosis_rank: RANG, description: LIBELLE}
date_formats: ["%d/%m/%Y"]
datetime_formats: ["%d/%m/%Y %H:%M"]
values:
  patients: {sex: {"1": M, "2": F}, country: {L: LU, F: FR, B: BE, D: DE}}
  stays: {stay_type: {HOSP: INPATIENT, AMBU: OUTPATIENT, URG: EMERGENCY}}
code_systems: {diagnoses: ICD10}
"""


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_differently_shaped_export_gives_the_same_rows(tmp_path: Path) -> None:
    a = ingest_site("a", _write(tmp_path / "a", CONTRACT), today=TODAY)
    (tmp_path / "map.yaml").write_text(MAPPING)
    mapping = load_mapping(tmp_path / "map.yaml")
    b = ingest_site("b", _write(tmp_path / "b", OTHER), delimiter=";", today=TODAY, mapping=mapping)
    for entity in ("patients", "stays", "diagnoses"):
        assert b.entities[entity].quarantined == 0, b.entities[entity].quarantine.to_dicts()
        cols = [c for c in a.entities[entity].table.columns if c != "_line"]
        left = a.entities[entity].table.select(cols)
        right = b.entities[entity].table.select(cols)
        shared = [c for c in cols if right[c].null_count() < right.height or left[c].null_count() == left.height]
        assert left.select(shared).equals(right.select(shared)), entity
    stg = hospital_to_staging({n: e.table for n, e in b.entities.items()}, mapping.code_systems)
    assert stg["visits"]["visit_class"].to_list() == ["INPATIENT", "EMERGENCY"]
    assert stg["events"]["code_system"].to_list() == ["ICD10"]
    # the country of residence, from a differently named column with the site's own codes
    assert b.entities["patients"].table["country"].to_list() == ["LU", "FR"]
    assert stg["persons"].select("postcode", "country").rows() == [("L-1080", "LU"), ("57100", "FR")]


def test_mapping_errors_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("columns: {patients: {birthdate: DOB}}\n")
    with pytest.raises(MappingError, match=r"birthdate not in the contract"):
        load_mapping(bad)
    bad.write_text("colums: {}\n")
    with pytest.raises(MappingError, match="colums"):
        load_mapping(bad)
    with pytest.raises(MappingError, match="does not exist"):
        load_mapping(tmp_path / "none.yaml")
