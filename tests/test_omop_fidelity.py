"""Issue 13 (points 3-5): provider and care-site links, race and ethnicity, the cause of death, location
state, preceding visits, verbatim end dates, type concepts, hospice and SNF visits, FHIR Locations and
the other national identifiers (SSN, passport) of the identity zone."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from anonymisation.leakscan import identifiers_from_patients, scan_table
from anonymisation.pseudonymise import identity_frame
from tests.test_adapters_equivalence import SYNTHEA, write_resources
from tests.test_adapters_synthea import write
from transforms.adapters.fhir import fhir_to_staging, read_fhir
from transforms.adapters.synthea import read_synthea, synthea_to_staging
from transforms.omop import harmonise_site
from transforms.vocabulary import load_vocabulary

TODAY = dt.date(2024, 1, 1)
EVENT_TABLES = ("condition_occurrence", "drug_exposure", "procedure_occurrence", "measurement", "observation",
                "device_exposure")

# the equivalence test's two patients, plus a death certificate, a hospice stay, a vaccine and vital signs
FILES = {
    **SYNTHEA,
    "encounters.csv": SYNTHEA["encounters.csv"] + (
        "e4,2020-05-01T09:00:00Z,2020-05-01T09:15:00Z,p2,o1,pr2,pay,outpatient,308646001,Death Certification,"
        "1,1,0,22298006,Myocardial infarction (disorder)\n"
        "e5,2020-03-01T09:00:00Z,2020-04-01T09:00:00Z,p2,o1,,pay,hospice,385763009,Hospice care,1,1,0,,\n"
    ),
    "immunizations.csv": "DATE,PATIENT,ENCOUNTER,CODE,DESCRIPTION,BASE_COST\n2019-01-02T10:10:00Z,p1,e1,140,Influenza,1\n",
    "observations.csv": (
        "DATE,PATIENT,ENCOUNTER,CATEGORY,CODE,DESCRIPTION,VALUE,UNITS,TYPE\n"
        "2019-01-02T10:05:00Z,p1,e1,vital-signs,8302-2,Body Height,160.0,cm,numeric\n"
        "2019-01-02T10:06:00Z,p1,e1,laboratory,2339-0,Glucose,99.0,mg/dL,numeric\n"
    ),
    "medications.csv": (
        "START,STOP,PATIENT,PAYER,ENCOUNTER,CODE,DESCRIPTION,BASE_COST,PAYER_COVERAGE,DISPENSES,TOTALCOST,"
        "REASONCODE,REASONDESCRIPTION\n"
        "2019-01-02T10:20:00Z,2019-02-01T10:20:00Z,p1,pay,e1,860975,Metformin,1,0,1,1,,\n"
        "2019-01-02T10:20:00Z,,p1,pay,e1,860975,Metformin,1,0,1,1,,\n"
    ),
}



@pytest.fixture(scope="module")
def synthea(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pl.DataFrame]:
    folder = write(tmp_path_factory.mktemp("fidelity") / "synthea", FILES)
    return harmonise_site("x", synthea_to_staging(read_synthea("x", folder)), load_vocabulary(), TODAY).tables


def test_race_ethnicity_and_state(synthea: dict[str, pl.DataFrame]) -> None:
    p = synthea["person"].sort("person_source_value")
    assert p["race_concept_id"].to_list() == [8527, 8515]  # white, asian
    assert p["ethnicity_concept_id"].to_list() == [38003563, 38003564]
    assert p["race_source_value"].to_list() == ["white", "asian"]
    assert set(synthea["location"]["state"].drop_nulls()) == {"MA"}


def test_visits_details_and_events_link_providers_and_care_sites(synthea: dict[str, pl.DataFrame]) -> None:
    pr = dict(synthea["provider"].select("provider_source_value", "provider_id").iter_rows())
    cs = dict(synthea["care_site"].select("care_site_source_value", "care_site_id").iter_rows())
    vd = synthea["visit_detail"]
    assert vd["care_site_id"].to_list() == [cs["o1"]] * vd.height
    named = vd.filter(pl.col("visit_detail_source_value") != "e5")  # e5 names no provider
    by_key = dict(named.select("visit_detail_source_value", "provider_id").iter_rows())
    assert by_key == {"e1": pr["pr1"], "e2": pr["pr2"], "e3": pr["pr2"], "e4": pr["pr2"]}
    vo = synthea["visit_occurrence"]
    assert vo["care_site_id"].null_count() == 0
    assert vo.filter(pl.col("provider_id").is_null())["visit_source_value"].to_list() == ["e5"]
    for t in EVENT_TABLES:
        df = synthea[t]
        assert df["provider_id"].null_count() == 0, t  # every event's encounter names its provider
    cond = synthea["condition_occurrence"].join(synthea["person"].select("person_id", "person_source_value"), on="person_id")
    assert cond.filter(pl.col("person_source_value") == "p1")["provider_id"].to_list() == [pr["pr1"]]


def test_preceding_visits_and_hospice(synthea: dict[str, pl.DataFrame]) -> None:
    vo = synthea["visit_occurrence"].sort("visit_start_datetime")
    p2 = vo.filter(pl.col("person_id") == vo.filter(pl.col("visit_source_value") == "e2")["person_id"][0])
    assert p2["preceding_visit_occurrence_id"][0] is None
    assert p2["preceding_visit_occurrence_id"].to_list()[1:] == p2["visit_occurrence_id"].to_list()[:-1]
    hospice = vo.filter(pl.col("visit_source_value") == "e5")
    assert hospice["visit_concept_id"].to_list() == [8546]
    vd = synthea["visit_detail"]
    assert vd["preceding_visit_detail_id"].null_count() == 2  # the first visit of each of the two persons


def test_death_cause_from_the_death_certificate(synthea: dict[str, pl.DataFrame]) -> None:
    d = synthea["death"]
    assert d.height == 1
    assert d.select("cause_concept_id", "cause_source_value", "cause_source_concept_id").row(0) == (
        4329847, "22298006", 4329847)


def test_type_concepts_and_verbatim_end_date(synthea: dict[str, pl.DataFrame]) -> None:
    m = dict(synthea["measurement"].select("measurement_source_value", "measurement_type_concept_id").iter_rows())
    assert m == {"8302-2": 32836, "2339-0": 32856}  # vital sign: EHR physical examination; lab: Lab
    drugs = synthea["drug_exposure"].sort("drug_source_value", "drug_exposure_end_date")
    types = dict(drugs.select("drug_source_value", "drug_type_concept_id").iter_rows())
    assert types == {"140": 32818, "860975": 32838}  # vaccine: EHR administration record; medication: prescription
    metformin = drugs.filter(pl.col("drug_source_value") == "860975").sort("verbatim_end_date", nulls_last=True)
    assert metformin["verbatim_end_date"].to_list() == [dt.date(2019, 2, 1), None]


def test_a_vocabulary_without_the_concepts_falls_back(tmp_path: Path) -> None:
    """Eunomia's vocabulary lacks 8546 and 32836: hospice is an outpatient visit, a vital sign EHR."""
    vocab = load_vocabulary()
    lacking = vocab.concept.filter(~pl.col("concept_id").is_in([8546, 32836, 32818, 8515]))
    from dataclasses import replace
    small = replace(vocab, concept=lacking, _code_maps={})
    folder = write(tmp_path / "s", FILES)
    t = harmonise_site("x", synthea_to_staging(read_synthea("x", folder)), small, TODAY).tables
    assert t["visit_occurrence"].filter(pl.col("visit_source_value") == "e5")["visit_concept_id"].to_list() == [9202]
    assert set(t["measurement"]["measurement_type_concept_id"]) == {32817, 32856}
    assert set(t["drug_exposure"]["drug_type_concept_id"]) == {32827, 32838}
    assert sorted(t["person"]["race_concept_id"]) == [0, 8527]  # asian lacks its concept: 0, never dangling


# ---------------------------------------------------------------------------------------------- FHIR

SCT = "http://snomed.info/sct"
SYN = "https://github.com/synthetichealth/synthea"


def _fhir() -> list[dict[str, Any]]:
    omb = "urn:oid:2.16.840.1.113883.6.238"
    patient = {
        "resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1950-01-01",
        "deceasedDateTime": "2020-05-01T08:00:00Z",
        "extension": [
            {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race", "extension": [
                {"url": "ombCategory", "valueCoding": {"system": omb, "code": "2054-5", "display": "Black or African American"}},
                {"url": "text", "valueString": "Black or African American"}]},
            {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity", "extension": [
                {"url": "ombCategory", "valueCoding": {"system": omb, "code": "2186-5", "display": "Not Hispanic or Latino"}},
                {"url": "text", "valueString": "Not Hispanic or Latino"}]},
        ],
        "identifier": [
            {"type": {"coding": [{"code": "SS"}]}, "system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-12-3456"},
            {"type": {"coding": [{"code": "PPN"}]}, "value": "X12345678X"},
        ],
        "name": [{"use": "official", "family": "Moss", "given": ["Ida"]}],
        "address": [{"line": ["1 Main St"], "city": "Town", "state": "Kansas", "postalCode": "66000", "country": "US"}],
    }
    org = {"resourceType": "Organization", "id": "o1", "name": "GENERAL", "identifier": [{"system": SYN, "value": "o1"}]}
    loc_managed = {"resourceType": "Location", "id": "l1", "name": "GENERAL site",
                   "managingOrganization": {"identifier": {"system": SYN, "value": "o1"}},
                   "identifier": [{"system": SYN, "value": "l1"}]}
    loc_alone = {"resourceType": "Location", "id": "l2", "name": "Field clinic",
                 "address": {"line": ["2 Side Rd"], "city": "Ville", "state": "KS", "postalCode": "66001", "country": "US"},
                 "identifier": [{"system": SYN, "value": "l2"}]}
    pract = {"resourceType": "Practitioner", "id": "d1", "name": [{"family": "Doc", "given": ["One"]}]}

    def enc(eid: str, start: str, **extra: Any) -> dict[str, Any]:
        return {"resourceType": "Encounter", "id": eid, "status": "finished", "class": {"code": "AMB"},
                "subject": {"reference": "Patient/p1"}, "period": {"start": start, "end": start},
                "participant": [{"individual": {"reference": "Practitioner/d1"}}], **extra}

    return [
        patient, org, loc_managed, loc_alone, pract,
        enc("e1", "2019-01-01T10:00:00Z", serviceProvider={"reference": "Organization/o1"}),
        enc("e2", "2019-02-01T10:00:00Z", location=[{"location": {"reference": f"Location?identifier={SYN}|l1"}}]),
        enc("e3", "2019-03-01T10:00:00Z", location=[{"location": {"reference": "Location/l2"}}]),
        enc("e4", "2020-05-02T10:00:00Z", serviceProvider={"reference": "Organization/o1"},
            type=[{"coding": [{"system": SCT, "code": "308646001", "display": "Death Certification"}]}],
            reasonCode=[{"coding": [{"system": SCT, "code": "22298006", "display": "Myocardial infarction"}]}]),
        {"resourceType": "Immunization", "id": "i1", "status": "completed", "patient": {"reference": "Patient/p1"},
         "encounter": {"reference": "Encounter/e1"}, "occurrenceDateTime": "2019-01-01T10:05:00Z",
         "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140"}]}},
        {"resourceType": "Observation", "id": "o-bp", "status": "final", "subject": {"reference": "Patient/p1"},
         "encounter": {"reference": "Encounter/e1"}, "effectiveDateTime": "2019-01-01T10:01:00Z",
         "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                   "code": "vital-signs"}]}],
         "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
         "valueQuantity": {"value": 160, "unit": "cm"}},
    ]


@pytest.fixture(scope="module")
def fhir(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, pl.DataFrame], dict[str, pl.DataFrame]]:
    raw = read_fhir("x", write_resources(tmp_path_factory.mktemp("fidelity") / "fhir", _fhir()))
    assert sum(r.quarantined for r in raw.entities.values()) == 0
    stg = fhir_to_staging(raw)
    return stg, harmonise_site("x", stg, load_vocabulary(), TODAY).tables


def test_fhir_person_death_and_identifiers(fhir: tuple[dict[str, pl.DataFrame], dict[str, pl.DataFrame]]) -> None:
    stg, t = fhir
    assert t["person"].select("race_concept_id", "ethnicity_concept_id").row(0) == (8516, 38003564)
    assert t["death"].select("cause_concept_id", "cause_source_value").row(0) == (4329847, "22298006")
    assert stg["persons"]["other_ids"].to_list() == ["999-12-3456 | X12345678X"]
    assert stg["persons"]["state"].to_list() == ["Kansas"]
    assert "KS" in set(t["location"]["state"].drop_nulls())
    published = {c for df in t.values() for c in df.columns}
    assert "other_ids" not in published


def test_fhir_locations_become_care_sites(fhir: tuple[dict[str, pl.DataFrame], dict[str, pl.DataFrame]]) -> None:
    stg, t = fhir
    assert sorted(stg["care_sites"]["care_site_key"]) == ["l2", "o1"]  # l1 is managed by o1, read
    keys = dict(stg["visits"].select("visit_key", "care_site_key").iter_rows())
    assert keys == {"e1": "o1", "e2": "o1", "e3": "l2", "e4": "o1"}
    cs = dict(t["care_site"].select("care_site_source_value", "care_site_id").iter_rows())
    vd = dict(t["visit_detail"].select("visit_detail_source_value", "care_site_id").iter_rows())
    assert vd == {"e1": cs["o1"], "e2": cs["o1"], "e3": cs["l2"], "e4": cs["o1"]}
    assert t["visit_occurrence"]["provider_id"].null_count() == 0
    assert t["drug_exposure"]["drug_type_concept_id"].to_list() == [32818]
    assert t["measurement"]["measurement_type_concept_id"].to_list() == [32836]


def test_a_planted_ssn_is_found_by_the_leak_scan(fhir: tuple[dict[str, pl.DataFrame], dict[str, pl.DataFrame]]) -> None:
    stg, t = fhir
    identity = identity_frame(stg["persons"], t["person"])
    assert identity["other_ids"].to_list() == ["999-12-3456 | X12345678X"]
    ids = identifiers_from_patients(identity)
    pid = int(identity["person_id"][0])
    other = pid + 1  # SSNs and passports are looked for in every person's rows
    for text in ("SSN 999-12-3456 on file", "ssn: 999 12 3456", "passport X12345678X"):
        cells = pl.DataFrame({"person_id": [other], "note_text": [text]})
        assert scan_table(cells, ids) == {"national_id": 1}, text
    assert scan_table(pl.DataFrame({"person_id": [pid], "note_text": ["no identifier here, 12 mg"]}), ids) == {}


# ----------------------------------------------------------------------------------- the shared samples

def test_shared_synthea_27(shared: Path) -> None:
    vocab = load_vocabulary(str(shared / "data" / "vocabulary-demo"))
    raw = read_synthea("s", shared / "data" / "synthea-v3-27")
    stg = synthea_to_staging(raw)
    t = harmonise_site("s", stg, vocab, TODAY).tables
    p = t["person"]
    assert p.height == 27
    # white, black, asian, hawaiian: every one has its concept in vocabulary-demo
    assert (p["race_concept_id"] != 0).sum() == 27 and (p["ethnicity_concept_id"] != 0).sum() == 27
    assert set(p["race_concept_id"]) == {8527, 8516, 8515, 8557}
    enc = raw.entities["encounters"].table
    assert enc["provider"].null_count() == 0 and enc["organization"].null_count() == 0
    for table in ("visit_occurrence", "visit_detail"):
        assert t[table]["provider_id"].null_count() == 0 and t[table]["care_site_id"].null_count() == 0
    for table in EVENT_TABLES:
        with_visit = t[table].filter(pl.col("visit_occurrence_id").is_not_null())
        assert with_visit["provider_id"].null_count() == 0, table
    assert t["death"]["cause_concept_id"].to_list() == [4329847, 4329847]
    assert stg["persons"]["other_ids"].null_count() == 0  # every Synthea patient has an SSN


def test_shared_fhir_10(shared: Path) -> None:
    vocab = load_vocabulary(str(shared / "data" / "vocabulary-demo"))
    stg = fhir_to_staging(read_fhir("f", shared / "data" / "fhir-r4-bulk-10"))
    t = harmonise_site("f", stg, vocab, TODAY).tables
    assert (t["person"]["race_concept_id"] != 0).all() and (t["person"]["ethnicity_concept_id"] != 0).all()
    assert t["visit_occurrence"]["care_site_id"].null_count() == 0
    assert t["visit_occurrence"]["provider_id"].null_count() == 0
    assert sorted(t["death"]["cause_source_value"]) == ["254637007", "46177005", "95281009"]
    assert (t["death"]["cause_concept_id"] != 0).all()
    assert stg["persons"]["other_ids"].str.contains("999-").all()
