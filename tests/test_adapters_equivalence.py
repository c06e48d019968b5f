"""The same patients written by hand as Synthea CSV, as FHIR NDJSON and as FHIR Bundles give the same
staging persons, visits and conditions (on the columns both formats carry)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tests.test_adapters_synthea import assert_accounting_holds, assert_staging_conforms, write
from transforms.adapters.fhir import fhir_to_staging, read_fhir
from transforms.adapters.synthea import read_synthea, synthea_to_staging

SYNTHEA = {
    "patients.csv": (
        "Id,BIRTHDATE,DEATHDATE,SSN,DRIVERS,PASSPORT,PREFIX,FIRST,LAST,SUFFIX,MAIDEN,MARITAL,RACE,ETHNICITY,GENDER,"
        "BIRTHPLACE,ADDRESS,CITY,STATE,COUNTY,ZIP,LAT,LON,HEALTHCARE_EXPENSES,HEALTHCARE_COVERAGE\n"
        "p1,1970-03-04,,999-11-1111,,,Mrs.,Ana,Lopez,,,M,white,hispanic,F,Boston  MA  US,1 Main St,Town,"
        "Massachusetts,Suffolk County,01234,42.1,-71.1,1000.00,10.00\n"
        "p2,1955-11-30,2020-05-01,999-22-2222,,,Mr.,Bo,Kim,,,M,asian,nonhispanic,M,Salem  MA  US,9 Elm Rd,Ville,"
        "Massachusetts,Essex County,05678,42.5,-70.9,2000.00,20.00\n"
    ),
    "encounters.csv": (
        "Id,START,STOP,PATIENT,ORGANIZATION,PROVIDER,PAYER,ENCOUNTERCLASS,CODE,DESCRIPTION,BASE_ENCOUNTER_COST,"
        "TOTAL_CLAIM_COST,PAYER_COVERAGE,REASONCODE,REASONDESCRIPTION\n"
        "e1,2019-01-02T10:00:00Z,2019-01-02T10:30:00Z,p1,o1,pr1,pay,ambulatory,185345009,Encounter for symptom,"
        "1,1,0,,\n"
        "e2,2019-06-01T08:00:00Z,2019-06-05T12:00:00Z,p2,o1,pr2,pay,inpatient,32485007,Hospital admission,1,1,0,,\n"
        "e3,2020-04-30T22:15:00Z,2020-04-30T23:45:00Z,p2,o1,pr2,pay,emergency,50849002,Emergency room admission,"
        "1,1,0,,\n"
    ),
    "conditions.csv": (
        "START,STOP,PATIENT,ENCOUNTER,CODE,DESCRIPTION\n"
        "2019-01-02,,p1,e1,44054006,Diabetes mellitus type 2 (disorder)\n"
        "2019-06-01,2019-06-05,p2,e2,195662009,Acute viral pharyngitis (disorder)\n"
        "2020-04-30,,p2,e3,840539006,COVID-19\n"
    ),
    "organizations.csv": "Id,NAME,ADDRESS,CITY,STATE,ZIP,LAT,LON,PHONE,REVENUE,UTILIZATION\no1,GENERAL,5 Road,Town,MA,01234,0,0,,0,3\n",
    "providers.csv": (
        "Id,ORGANIZATION,NAME,GENDER,SPECIALITY,ADDRESS,CITY,STATE,ZIP,LAT,LON,UTILIZATION\n"
        "pr1,o1,Doc One,F,GENERAL PRACTICE,5 Road,Town,MA,01234,0,0,1\n"
        "pr2,o1,Doc Two,M,GENERAL PRACTICE,5 Road,Town,MA,01234,0,0,2\n"
    ),
}

SCT = "http://snomed.info/sct"
NPI = "http://hl7.org/fhir/sid/us-npi"
SYN = "https://github.com/synthetichealth/synthea"


def _patient(pid: str, gender: str, birth: str, given: str, family: str, line: str, city: str, county: str,
             postcode: str, deceased: str | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {
        "resourceType": "Patient", "id": pid, "gender": gender, "birthDate": birth,
        "name": [{"use": "official", "family": family, "given": [given]}],
        "address": [{"line": [line], "city": city, "district": county, "state": "MA", "postalCode": postcode,
                     "country": "US"}],
    }
    if deceased:
        r["deceasedDateTime"] = deceased
    return r


def _encounter(eid: str, pid: str, cls: str, start: str, end: str, pract: dict[str, Any], org: dict[str, Any],
               subject: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter", "id": eid, "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": cls},
        "subject": {"reference": subject + pid}, "period": {"start": start, "end": end},
        "participant": [{"individual": pract}], "serviceProvider": org,
    }


def _condition(cid: str, pid: str, eid: str, code: str, display: str, onset: str, abatement: str | None,
               prefix: tuple[str, str]) -> dict[str, Any]:
    r: dict[str, Any] = {
        "resourceType": "Condition", "id": cid,
        "code": {"coding": [{"system": SCT, "code": code, "display": display}], "text": display},
        "subject": {"reference": prefix[0] + pid}, "encounter": {"reference": prefix[1] + eid},
        "onsetDateTime": onset,
    }
    if abatement:
        r["abatementDateTime"] = abatement
    return r


def fhir_resources(bundle_style: bool) -> dict[str, list[dict[str, Any]]]:
    """Per patient (and 'shared' for practitioners and organizations), the FHIR resources."""
    pref = ("urn:uuid:", "urn:uuid:") if bundle_style else ("Patient/", "Encounter/")

    def pract(key: str, npi: str) -> dict[str, Any]:
        return {"reference": f"Practitioner?identifier={NPI}|{npi}"} if bundle_style else {"reference": f"Practitioner/{key}"}

    org = {"reference": f"Organization?identifier={SYN}|o1"} if bundle_style else {"reference": "Organization/o1"}
    shared = [
        {"resourceType": "Organization", "id": "o1", "name": "GENERAL", "identifier": [{"system": SYN, "value": "o1"}]},
        {"resourceType": "Practitioner", "id": "pr1", "identifier": [{"system": NPI, "value": "9991"}],
         "name": [{"family": "One", "given": ["Doc"]}], "gender": "female"},
        {"resourceType": "Practitioner", "id": "pr2", "identifier": [{"system": NPI, "value": "9992"}],
         "name": [{"family": "Two", "given": ["Doc"]}], "gender": "male"},
    ]
    p1 = [
        _patient("p1", "female", "1970-03-04", "Ana", "Lopez", "1 Main St", "Town", "Suffolk County", "01234"),
        _encounter("e1", "p1", "AMB", "2019-01-02T05:00:00-05:00", "2019-01-02T05:30:00-05:00", pract("pr1", "9991"),
                   org, pref[0]),
        _condition("c1", "p1", "e1", "44054006", "Diabetes mellitus type 2 (disorder)", "2019-01-02", None, pref),
    ]
    p2 = [
        _patient("p2", "male", "1955-11-30", "Bo", "Kim", "9 Elm Rd", "Ville", "Essex County", "05678",
                 deceased="2020-05-01T03:00:00-04:00"),
        _encounter("e2", "p2", "IMP", "2019-06-01T04:00:00-04:00", "2019-06-05T08:00:00-04:00", pract("pr2", "9992"),
                   org, pref[0]),
        _encounter("e3", "p2", "EMER", "2020-04-30T22:15:00Z", "2020-04-30T19:45:00-04:00", pract("pr2", "9992"),
                   org, pref[0]),
        _condition("c2", "p2", "e2", "195662009", "Acute viral pharyngitis (disorder)", "2019-06-01", "2019-06-05", pref),
        _condition("c3", "p2", "e3", "840539006", "COVID-19", "2020-04-30", None, pref),
    ]
    return {"shared": shared, "p1": p1, "p2": p2}


def write_synthea(folder: Path) -> Path:
    folder.mkdir()
    for name, text in SYNTHEA.items():
        (folder / name).write_text(text)
    return folder


def write_resources(folder: Path, resources: Iterable[dict[str, Any]]) -> Path:
    """``resources`` as a bulk export writes them: one NDJSON file per resource type."""
    folder.mkdir(parents=True, exist_ok=True)
    by_type: dict[str, list[str]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(json.dumps(r))
    for rtype, lines in by_type.items():
        (folder / f"{rtype}.000.ndjson").write_text("\n".join(lines) + "\n")
    return folder


def write_ndjson(folder: Path) -> Path:
    return write_resources(folder, (r for rs in fhir_resources(bundle_style=False).values() for r in rs))


def write_bundles(folder: Path) -> Path:
    folder.mkdir()
    for name, resources in fhir_resources(bundle_style=True).items():
        kind = "collection" if name == "shared" else "transaction"
        entries = []
        for r in resources:
            entry: dict[str, Any] = {"fullUrl": f"urn:uuid:{r['id']}", "resource": r}
            if kind == "transaction":
                entry["request"] = {"method": "POST", "url": r["resourceType"]}
            entries.append(entry)
        (folder / f"{name}.json").write_text(json.dumps({"resourceType": "Bundle", "type": kind, "entry": entries}))
    return folder


PERSON_COLS = ["person_key", "birth_date", "death_date", "sex", "first_name", "last_name", "address", "city",
               "postcode", "county", "country"]
VISIT_COLS = ["visit_key", "person_key", "start", "end", "visit_class", "provider_key", "care_site_key"]
CONDITION_COLS = ["person_key", "visit_key", "code", "code_system", "description", "start", "end"]


def comparable(st: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    return {
        "persons": st["persons"].select(PERSON_COLS).sort("person_key"),
        "visits": st["visits"].select(VISIT_COLS).sort("visit_key"),
        "conditions": st["events"].filter(pl.col("kind") == "condition").select(CONDITION_COLS)
        .sort("person_key", "start", "code"),
    }


@pytest.fixture
def from_synthea(tmp_path: Path) -> dict[str, pl.DataFrame]:
    raw = read_synthea("x", write_synthea(tmp_path / "synthea"))
    assert_accounting_holds(raw)
    assert sum(r.quarantined + r.deduplicated for r in raw.entities.values()) == 0
    st = synthea_to_staging(raw)
    assert_staging_conforms(st)
    return comparable(st)


@pytest.mark.parametrize("writer", [write_ndjson, write_bundles], ids=["ndjson", "bundle"])
def test_same_staging_from_synthea_csv_and_fhir(writer, from_synthea, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    raw = read_fhir("x", writer(tmp_path / "fhir"))
    assert_accounting_holds(raw)
    assert sum(r.quarantined + r.deduplicated for r in raw.entities.values()) == 0
    st = fhir_to_staging(raw)
    assert_staging_conforms(st)
    got = comparable(st)
    assert from_synthea["persons"].height == 2 and from_synthea["visits"].height == 3
    assert from_synthea["conditions"].height == 3
    for name, expected in from_synthea.items():
        assert got[name].equals(expected), f"{name}:\n{got[name]}\n!=\n{expected}"
    # what the two formats carry in different words is still there
    assert from_synthea["visits"]["visit_class"].to_list() == ["AMBULATORY", "INPATIENT", "EMERGENCY"]
    assert str(from_synthea["visits"]["end"][2]) == "2020-04-30 23:45:00"


# --------------------------------------------------------------------------------------------------
# a lung cancer patient (issue 13): staged a day after the diagnosis, two-day cycles of cisplatin and
# paclitaxel with chemoradiation every 33 days, a latex allergy, a coded smoking status and a death
# with its cause. Asserted: the same staging, and the same episodes and stage measurement after the build.

CANCER_DAYS = ("2020-02-01", "2020-02-02", "2020-03-05", "2020-03-06", "2020-04-07", "2020-04-08")
CANCER_SYNTHEA = {
    "patients.csv": SYNTHEA["patients.csv"].splitlines()[0] + "\n"
    "p3,1940-02-02,2021-03-01,999-33-3333,,,Mr.,Cy,Roe,,,M,white,nonhispanic,M,Lowell  MA  US,3 Oak Av,Burg,"
    "Massachusetts,Middlesex County,01850,42.6,-71.3,3000.00,30.00\n",
    "encounters.csv": SYNTHEA["encounters.csv"].splitlines()[0] + "\n"
    "e4,2020-01-10T09:00:00Z,2020-01-11T17:00:00Z,p3,o1,pr1,pay,inpatient,32485007,Hospital admission,1,1,0,,\n"
    + "".join(f"c{d},{d}T09:00:00Z,{d}T15:00:00Z,p3,o1,pr1,pay,ambulatory,185347001,Encounter for problem,1,1,0,,\n"
              for d in CANCER_DAYS)
    + "e9,2021-03-01T08:00:00Z,2021-03-01T09:00:00Z,p3,o1,pr1,pay,emergency,50849002,Emergency room admission,"
    "1,1,0,,\n",
    "conditions.csv": "START,STOP,PATIENT,ENCOUNTER,CODE,DESCRIPTION\n"
    "2020-01-10,,p3,e4,254637007,Non-small cell lung cancer (disorder)\n"
    "2020-01-11,,p3,e4,424132000,\"Non-small cell carcinoma of lung, TNM stage 1 (disorder)\"\n",
    "medications.csv": "START,STOP,PATIENT,PAYER,ENCOUNTER,CODE,DESCRIPTION,BASE_COST,PAYER_COVERAGE,DISPENSES,"
    "TOTALCOST,REASONCODE,REASONDESCRIPTION\n"
    + "".join(f"{d}T09:00:00Z,,p3,pay,c{d},{code},{name},1,0,1,1,424132000,stage 1\n" for d in CANCER_DAYS
              for code, name in (("1736854", "Cisplatin 50 MG Injection"), ("583214", "PACLitaxel 100 MG Injection"))),
    "procedures.csv": "START,STOP,PATIENT,ENCOUNTER,CODE,DESCRIPTION,BASE_COST,REASONCODE,REASONDESCRIPTION\n"
    + "".join(f"{d}T09:00:00Z,{d}T10:00:00Z,p3,c{d},703423002,Combined chemotherapy and radiation therapy "
              "(procedure),1,424132000,stage 1\n" for d in CANCER_DAYS),
    "allergies.csv": "START,STOP,PATIENT,ENCOUNTER,CODE,SYSTEM,DESCRIPTION,TYPE,CATEGORY,REACTION1,DESCRIPTION1,"
    "SEVERITY1,REACTION2,DESCRIPTION2,SEVERITY2\n"
    "2020-01-10,,p3,e4,300916003,SNOMED-CT,Latex allergy (finding),allergy,environment,,,,,,\n",
    "observations.csv": "DATE,PATIENT,ENCOUNTER,CATEGORY,CODE,DESCRIPTION,VALUE,UNITS,TYPE\n"
    "2020-01-10T09:00:00Z,p3,e4,survey,72166-2,Tobacco smoking status,Former smoker (finding),,text\n"
    "2021-03-01T08:00:00Z,p3,e9,,69453-9,Cause of Death [US Standard Certificate of Death],"
    "Non-small cell lung cancer (disorder),,text\n",
    "organizations.csv": SYNTHEA["organizations.csv"],
    "providers.csv": SYNTHEA["providers.csv"],
}
LOINC_URI = "http://loinc.org"
RXNORM_URI = "http://www.nlm.nih.gov/research/umls/rxnorm"


def cancer_fhir() -> list[dict[str, Any]]:
    pref = ("Patient/", "Encounter/")
    pract = {"reference": "Practitioner/pr1"}
    org = {"reference": "Organization/o1"}
    out: list[dict[str, Any]] = [
        {"resourceType": "Organization", "id": "o1", "name": "GENERAL"},
        {"resourceType": "Practitioner", "id": "pr1", "name": [{"family": "One", "given": ["Doc"]}], "gender": "female"},
        {"resourceType": "Practitioner", "id": "pr2", "name": [{"family": "Two", "given": ["Doc"]}], "gender": "male"},
        _patient("p3", "male", "1940-02-02", "Cy", "Roe", "3 Oak Av", "Burg", "Middlesex County", "01850",
                 deceased="2021-03-01T08:00:00Z"),
        _encounter("e4", "p3", "IMP", "2020-01-10T09:00:00Z", "2020-01-11T17:00:00Z", pract, org, pref[0]),
        _encounter("e9", "p3", "EMER", "2021-03-01T08:00:00Z", "2021-03-01T09:00:00Z", pract, org, pref[0]),
        _condition("k1", "p3", "e4", "254637007", "Non-small cell lung cancer (disorder)", "2020-01-10", None, pref),
        _condition("k2", "p3", "e4", "424132000", "Non-small cell carcinoma of lung, TNM stage 1 (disorder)",
                   "2020-01-11", None, pref),
        {"resourceType": "AllergyIntolerance", "id": "a1", "patient": {"reference": "Patient/p3"},
         "encounter": {"reference": "Encounter/e4"}, "recordedDate": "2020-01-10", "type": "allergy",
         "category": ["environment"],
         "code": {"coding": [{"system": SCT, "code": "300916003", "display": "Latex allergy (finding)"}]}},
        {"resourceType": "Observation", "id": "o-smoke", "status": "final", "subject": {"reference": "Patient/p3"},
         "encounter": {"reference": "Encounter/e4"}, "effectiveDateTime": "2020-01-10T09:00:00Z",
         "code": {"coding": [{"system": LOINC_URI, "code": "72166-2", "display": "Tobacco smoking status"}]},
         "valueCodeableConcept": {"coding": [{"system": SCT, "code": "8517006",
                                              "display": "Former smoker (finding)"}], "text": "Former smoker (finding)"}},
        {"resourceType": "Observation", "id": "o-death", "status": "final", "subject": {"reference": "Patient/p3"},
         "encounter": {"reference": "Encounter/e9"}, "effectiveDateTime": "2021-03-01T08:00:00Z",
         "code": {"coding": [{"system": LOINC_URI, "code": "69453-9",
                              "display": "Cause of Death [US Standard Certificate of Death]"}]},
         "valueCodeableConcept": {"coding": [{"system": SCT, "code": "254637007",
                                              "display": "Non-small cell lung cancer (disorder)"}],
                                  "text": "Non-small cell lung cancer (disorder)"}},
    ]
    for d in CANCER_DAYS:
        out.append(_encounter(f"c{d}", "p3", "AMB", f"{d}T09:00:00Z", f"{d}T15:00:00Z", pract, org, pref[0]))
        for code, name in (("1736854", "Cisplatin 50 MG Injection"), ("583214", "PACLitaxel 100 MG Injection")):
            out.append({"resourceType": "MedicationRequest", "id": f"m{d}-{code}", "status": "stopped", "intent": "order",
                        "medicationCodeableConcept": {"coding": [{"system": RXNORM_URI, "code": code, "display": name}]},
                        "subject": {"reference": "Patient/p3"}, "encounter": {"reference": f"Encounter/c{d}"},
                        "authoredOn": f"{d}T09:00:00Z"})
        out.append({"resourceType": "Procedure", "id": f"x{d}", "status": "completed",
                    "code": {"coding": [{"system": SCT, "code": "703423002",
                                         "display": "Combined chemotherapy and radiation therapy (procedure)"}]},
                    "subject": {"reference": "Patient/p3"}, "encounter": {"reference": f"Encounter/c{d}"},
                    "performedPeriod": {"start": f"{d}T09:00:00Z", "end": f"{d}T10:00:00Z"}})
    return out


EVENT_COLS = ["person_key", "visit_key", "kind", "code", "code_system", "start", "end"]


def _built_episodes(st: dict[str, pl.DataFrame], shared: Path) -> dict[str, list[Any]]:
    import datetime as dt

    from transforms.omop import harmonise_site
    from transforms.vocabulary import load_vocabulary

    vocab = load_vocabulary(str(shared / "data" / "vocabulary-demo"))
    t = harmonise_site("x", st, vocab, dt.date(2026, 1, 1)).tables
    ep = t["episode"].sort("episode_concept_id", "episode_start_date")
    kinds = t["episode_event"].join(t["episode"].select("episode_id", "episode_concept_id"), on="episode_id")
    stage = t["measurement"].filter(pl.col("meas_event_field_concept_id") == 1147127)
    return {
        "episodes": ep.select("episode_concept_id", "episode_start_date", "episode_end_date", "episode_number",
                              "episode_object_concept_id", "episode_source_value").rows(),
        "links": kinds.group_by("episode_concept_id", "episode_event_field_concept_id").len().sort(
            "episode_concept_id", "episode_event_field_concept_id").rows(),
        "stage": stage.select("measurement_concept_id", "measurement_date", "value_source_value").rows(),
        "stage_of": t["condition_occurrence"].filter(pl.col("condition_occurrence_id").is_in(
            stage["measurement_event_id"].implode()))["condition_source_value"].to_list(),
        "death": t["death"].select("death_date").rows(),
        "death_cause": t["death"].select("cause_source_value", "cause_concept_id").rows(),
        "allergy": t["observation"].filter(pl.col("observation_source_value") == "300916003").select(
            "observation_concept_id", "value_as_concept_id").rows(),
        "drug_allergy_exposures": t["drug_exposure"].filter(pl.col("drug_source_value") == "300916003").height,
    }


def test_cancer_patient_same_staging_and_episodes_from_synthea_csv_and_fhir(tmp_path: Path, shared: Path) -> None:
    if not (shared / "data" / "vocabulary-demo").exists():
        pytest.skip("vocabulary-demo not in ../shared")
    raw_s = read_synthea("x", write(tmp_path / "synthea", CANCER_SYNTHEA))
    assert_accounting_holds(raw_s)
    assert sum(r.quarantined + r.deduplicated for r in raw_s.entities.values()) == 0
    raw_f = read_fhir("x", write_resources(tmp_path / "fhir", cancer_fhir()))
    assert_accounting_holds(raw_f)
    assert sum(r.quarantined + r.deduplicated for r in raw_f.entities.values()) == 0
    st_s, st_f = synthea_to_staging(raw_s), fhir_to_staging(raw_f)
    assert_staging_conforms(st_s)
    assert_staging_conforms(st_f)
    for kind in ("condition", "drug", "procedure"):
        a = st_s["events"].filter(pl.col("kind") == kind).select(EVENT_COLS).sort(EVENT_COLS, nulls_last=True)
        b = st_f["events"].filter(pl.col("kind") == kind).select(EVENT_COLS).sort(EVENT_COLS, nulls_last=True)
        assert a.equals(b), f"{kind}:\n{a}\n!=\n{b}"
    # the allergy (kind allergy: an observation with the substance as value) and the two coded observations
    for st in (st_s, st_f):
        assert sorted(st["events"].filter(pl.col("kind") == "observation")["code"].to_list()) == ["69453-9", "72166-2"]
        allergy = st["events"].filter(pl.col("kind") == "allergy")
        assert allergy.select("code", "category").rows() == [("300916003", "environment")]

    got_s, got_f = _built_episodes(st_s, shared), _built_episodes(st_f, shared)
    # the cause of death: FHIR codes it (Observation 69453-9); this Synthea patient has it as text only
    # (no death certification encounter with its reason code)
    assert got_f.pop("death_cause") == [("254637007", 4115276)] and got_s.pop("death_cause") == [(None, None)]
    assert got_s == got_f
    d = __import__("datetime").date
    assert got_s["episodes"] == [
        (32528, d(2020, 1, 10), d(2020, 4, 8), None, 4115276, "254637007"),  # one disease: the stage is no episode
        (32531, d(2020, 2, 1), d(2020, 4, 8), 1, 45766298, "cisplatin+paclitaxel"),
        (32532, d(2020, 2, 1), d(2020, 2, 2), 1, 45766298, None),  # cycles every 33 days, not per date
        (32532, d(2020, 3, 5), d(2020, 3, 6), 2, 45766298, None),
        (32532, d(2020, 4, 7), d(2020, 4, 8), 3, 45766298, None),
    ]
    assert got_s["links"] == [(32528, 1147127, 2), (32531, 1147082, 6), (32531, 1147094, 12),
                              (32532, 1147082, 6), (32532, 1147094, 12)]
    assert got_s["stage"] == [(3022698, d(2020, 1, 11), "TNM stage 1")]
    assert got_s["stage_of"] == ["424132000"]
    assert got_s["death"] == [(d(2021, 3, 1),)]
    assert len(got_s["allergy"]) == 1 and got_s["drug_allergy_exposures"] == 0  # an observation, never an exposure
