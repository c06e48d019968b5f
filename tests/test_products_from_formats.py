"""Synthea CSV and FHIR patients reach the same use-case products (issue 15).

Two hand-written patients in each format, run through the adapter, the OMOP builder (bundled
vocabulary) and the product functions with k = 1 (nothing withheld):

- a type 2 diabetic (diagnosis, two HbA1c results, metformin, diabetic retinopathy two years later):
  in the T2DM cohort (schemas/cohorts/type-2-diabetes.yaml), characterised with its drug and
  measurement, the retinopathy an outcome after index (within 5 years, not within 1);
- a lung cancer patient (non-small cell lung cancer, its stage, cisplatin + paclitaxel in four
  21-day cycles, death): in the oncology product's incidence, stage, first line and survival.

What a format cannot carry: Synthea CSV has no TNM and no stage column: its stage is the SNOMED
"TNM stage 1" variant diagnosis Synthea writes (measurement value ``TNM stage 1``); the FHIR patient's
stage is ``Condition.stage.summary`` (``Stage I`` -> ``I``); the product shows both as stage ``I``.
Neither format carries TNM categories or an ICD-O-3 histology (a hospital registry extract does:
tests/test_registry_columns.py).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipelines.product_assets import T2DM_SPEC, build_t2dm
from schemas.cohort_spec import load_cohort_spec
from tests.test_adapters_equivalence import write_resources
from tests.test_adapters_synthea import write
from transforms.adapters.fhir import fhir_to_staging, read_fhir
from transforms.adapters.synthea import read_synthea, synthea_to_staging
from transforms.cohorts import build_cohort
from transforms.omop import harmonise_site
from transforms.oncology_product import oncology_tables
from transforms.vocabulary import BUNDLED, Vocabulary, load_vocabulary

TODAY = dt.date(2026, 1, 1)
CYCLES = ("2020-03-01", "2020-03-22", "2020-04-12", "2020-05-03")
SYNTHEA = {
    "patients.csv": (
        "Id,BIRTHDATE,DEATHDATE,SSN,DRIVERS,PASSPORT,PREFIX,FIRST,LAST,SUFFIX,MAIDEN,MARITAL,RACE,ETHNICITY,GENDER,"
        "BIRTHPLACE,ADDRESS,CITY,STATE,COUNTY,ZIP,LAT,LON,HEALTHCARE_EXPENSES,HEALTHCARE_COVERAGE\n"
        "d1,1960-01-01,,999-11-1111,,,Mrs.,Ana,Lopez,,,M,white,hispanic,F,Boston  MA  US,1 Main St,Town,"
        "Massachusetts,Suffolk County,01234,42.1,-71.1,1000.00,10.00\n"
        "c1,1950-05-05,2022-06-01,999-22-2222,,,Mr.,Bo,Kim,,,M,asian,nonhispanic,M,Salem  MA  US,9 Elm Rd,Ville,"
        "Massachusetts,Essex County,05678,42.5,-70.9,2000.00,20.00\n"
    ),
    "encounters.csv": (
        "Id,START,STOP,PATIENT,ORGANIZATION,PROVIDER,PAYER,ENCOUNTERCLASS,CODE,DESCRIPTION,BASE_ENCOUNTER_COST,"
        "TOTAL_CLAIM_COST,PAYER_COVERAGE,REASONCODE,REASONDESCRIPTION\n"
        "e1,2019-01-10T09:00:00Z,2019-01-10T09:30:00Z,d1,,,,ambulatory,185345009,Encounter,1,1,0,,\n"
        "e2,2019-07-10T09:00:00Z,2019-07-10T09:30:00Z,d1,,,,ambulatory,185345009,Encounter,1,1,0,,\n"
        "e3,2021-03-05T09:00:00Z,2021-03-05T09:30:00Z,d1,,,,ambulatory,185345009,Encounter,1,1,0,,\n"
        "e4,2020-02-01T08:00:00Z,2020-02-03T12:00:00Z,c1,,,,inpatient,32485007,Admission,1,1,0,,\n"
        + "".join(f"e{5 + i},{d}T08:00:00Z,{d}T14:00:00Z,c1,,,,ambulatory,185345009,Chemotherapy,1,1,0,,\n"
                  for i, d in enumerate(CYCLES))
    ),
    "conditions.csv": (
        "START,STOP,PATIENT,ENCOUNTER,CODE,DESCRIPTION\n"
        "2019-01-10,,d1,e1,44054006,Diabetes mellitus type 2 (disorder)\n"
        "2021-03-05,,d1,e3,422034002,Retinopathy due to type 2 diabetes mellitus (disorder)\n"
        "2020-02-01,,c1,e4,254637007,Non-small cell lung cancer (disorder)\n"
        "2020-02-02,,c1,e4,424132000,Non-small cell carcinoma of lung  TNM stage 1 (disorder)\n"
    ),
    "observations.csv": (
        "DATE,PATIENT,ENCOUNTER,CATEGORY,CODE,DESCRIPTION,VALUE,UNITS,TYPE\n"
        "2019-01-10T09:10:00Z,d1,e1,laboratory,4548-4,Hemoglobin A1c,8.1,%,numeric\n"
        "2019-07-10T09:10:00Z,d1,e2,laboratory,4548-4,Hemoglobin A1c,7.2,%,numeric\n"
    ),
    "medications.csv": (
        "START,STOP,PATIENT,PAYER,ENCOUNTER,CODE,DESCRIPTION,BASE_COST,PAYER_COVERAGE,DISPENSES,TOTALCOST,"
        "REASONCODE,REASONDESCRIPTION\n"
        "2019-01-10T09:20:00Z,2019-07-10T09:20:00Z,d1,,e1,860975,metformin,1,0,6,6,44054006,\n"
        + "".join(f"{d}T09:00:00Z,{d}T13:00:00Z,c1,,e{5 + i},{code},{name},1,0,1,1,254637007,\n"
                  for i, d in enumerate(CYCLES) for code, name in (("1736854", "cisplatin"), ("583214", "paclitaxel")))
    ),
}
SCT, LOINC, RXNORM = "http://snomed.info/sct", "http://loinc.org", "http://www.nlm.nih.gov/research/umls/rxnorm"


def _cc(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def fhir_patients() -> list[dict[str, Any]]:
    def enc(eid: str, pid: str, cls: str, start: str, end: str) -> dict[str, Any]:
        return {"resourceType": "Encounter", "id": eid, "status": "finished", "class": {"code": cls},
                "subject": {"reference": f"Patient/{pid}"}, "period": {"start": start, "end": end}}

    def cond(cid: str, pid: str, eid: str, code: str, display: str, onset: str, **more: Any) -> dict[str, Any]:
        return {"resourceType": "Condition", "id": cid, "code": _cc(SCT, code, display),
                "subject": {"reference": f"Patient/{pid}"}, "encounter": {"reference": f"Encounter/{eid}"},
                "onsetDateTime": onset, **more}

    def hba1c(oid: str, eid: str, at: str, value: float) -> dict[str, Any]:
        return {"resourceType": "Observation", "id": oid, "status": "final", "code": _cc(LOINC, "4548-4", "HbA1c"),
                "category": [{"coding": [{"code": "laboratory"}]}], "subject": {"reference": "Patient/d1"},
                "encounter": {"reference": f"Encounter/{eid}"}, "effectiveDateTime": at,
                "valueQuantity": {"value": value, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}}

    def rx(mid: str, pid: str, eid: str, code: str, name: str, start: str, end: str) -> dict[str, Any]:
        return {"resourceType": "MedicationRequest", "id": mid, "status": "completed", "intent": "order",
                "medicationCodeableConcept": _cc(RXNORM, code, name), "subject": {"reference": f"Patient/{pid}"},
                "encounter": {"reference": f"Encounter/{eid}"}, "authoredOn": start,
                "dispenseRequest": {"validityPeriod": {"start": start, "end": end}}}

    out: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": "d1", "gender": "female", "birthDate": "1960-01-01"},
        {"resourceType": "Patient", "id": "c1", "gender": "male", "birthDate": "1950-05-05",
         "deceasedDateTime": "2022-06-01"},
        enc("e1", "d1", "AMB", "2019-01-10T09:00:00Z", "2019-01-10T09:30:00Z"),
        enc("e2", "d1", "AMB", "2019-07-10T09:00:00Z", "2019-07-10T09:30:00Z"),
        enc("e3", "d1", "AMB", "2021-03-05T09:00:00Z", "2021-03-05T09:30:00Z"),
        enc("e4", "c1", "IMP", "2020-02-01T08:00:00Z", "2020-02-03T12:00:00Z"),
        cond("k1", "d1", "e1", "44054006", "Diabetes mellitus type 2 (disorder)", "2019-01-10"),
        cond("k2", "d1", "e3", "422034002", "Retinopathy due to type 2 diabetes mellitus (disorder)", "2021-03-05"),
        # the stage inside the diagnosis (Condition.stage.summary), no separate staged condition
        cond("k3", "c1", "e4", "254637007", "Non-small cell lung cancer (disorder)", "2020-02-01",
             stage=[{"summary": {"text": "Stage I"}}]),
        hba1c("o1", "e1", "2019-01-10T09:10:00Z", 8.1),
        hba1c("o2", "e2", "2019-07-10T09:10:00Z", 7.2),
        rx("m1", "d1", "e1", "860975", "metformin", "2019-01-10T09:20:00Z", "2019-07-10T09:20:00Z"),
    ]
    for i, d in enumerate(CYCLES):
        out.append(enc(f"e{5 + i}", "c1", "AMB", f"{d}T08:00:00Z", f"{d}T14:00:00Z"))
        out += [rx(f"m{2 + 2 * i + j}", "c1", f"e{5 + i}", code, name, f"{d}T09:00:00Z", f"{d}T13:00:00Z")
                for j, (code, name) in enumerate((("1736854", "cisplatin"), ("583214", "paclitaxel")))]
    return out


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return load_vocabulary(BUNDLED)


@pytest.fixture(scope="module", params=["synthea", "fhir"])
def tables(request: pytest.FixtureRequest, vocab: Vocabulary,
           tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, pl.DataFrame]]:
    folder = tmp_path_factory.mktemp(request.param)
    if request.param == "synthea":
        stg = synthea_to_staging(read_synthea("s", write(folder / "in", SYNTHEA)))
    else:
        stg = fhir_to_staging(read_fhir("f", write_resources(folder / "in", fhir_patients())))
    return request.param, harmonise_site(request.param, stg, vocab, TODAY).tables


def _person(t: dict[str, pl.DataFrame], key: str) -> int:
    return int(t["person"].filter(pl.col("person_source_value") == key)["person_id"].item())


def test_the_diabetic_is_in_the_t2dm_cohort_with_the_complication_after_index(
        tables: tuple[str, dict[str, pl.DataFrame]], vocab: Vocabulary, tmp_path: Path) -> None:
    _, t = tables
    cohort = build_cohort(load_cohort_spec(T2DM_SPEC), {k: v.lazy() for k, v in t.items()}, vocab.ancestor,
                          vocab.maps_to)
    assert cohort["subject_id"].to_list() == [_person(t, "d1")]
    assert cohort["cohort_start_date"].to_list() == [dt.date(2019, 1, 10)]
    names = vocab.concept.select("concept_id", "concept_name")
    doc = build_t2dm(tmp_path / "t2dm", t, vocab.ancestor, vocab.maps_to, names, k=1, persons=t["person"].height)
    assert doc["cohort_persons_shown"] == 1
    outcomes = {(r["outcome"], r["window_years"]): r["persons_with_onset"]
                for r in pl.read_parquet(tmp_path / "t2dm" / "outcomes.parquet").iter_rows(named=True)}
    assert outcomes[("retinopathy", 1)] == 0 and outcomes[("retinopathy", 5)] == 1
    assert outcomes[("nephropathy", 5)] == 0
    cov = pl.read_parquet(tmp_path / "t2dm" / "covariates.parquet")
    shown = dict(zip(cov["covariate_id"].to_list(), cov["persons"].to_list(), strict=True))
    assert shown[40163924 * 1000 + 302] == 1  # metformin on the index date (long-term window)
    assert shown[3004410 * 1000 + 702] == 1  # HbA1c
    assert shown[201826 * 1000 + 102] == 1


def test_the_cancer_patient_is_in_the_oncology_aggregates(
        tables: tuple[str, dict[str, pl.DataFrame]], vocab: Vocabulary) -> None:
    _, t = tables
    onc = oncology_tables(t["episode"], t["episode_event"], t["measurement"], t["person"], t["death"],
                          t["observation_period"], vocab.concept.select("concept_id", "concept_name"), k=1)
    cancer = "Non-small cell lung cancer"
    stage = "I"  # Synthea's "TNM stage 1" and FHIR's "Stage I" alike
    inc = onc.incidence.filter((pl.col("cancer") == cancer) & (pl.col("year_band") == "2020-2024"))
    assert inc.filter(pl.col("sex") == "male")["persons"].to_list() == [1]
    assert onc.stage.filter((pl.col("cancer") == cancer) & (pl.col("stage") == stage))["persons"].to_list() == [1]
    lines = onc.lines.filter(pl.col("cancer") == cancer)
    line = lines.filter((pl.col("first_line") == "cisplatin+paclitaxel") & (pl.col("second_line") == "none"))
    assert line["persons"].to_list() == [1]
    surv = {r["year"]: r for r in onc.survival.filter(pl.col("stage") == stage).iter_rows(named=True)}
    assert [surv[y]["at_risk"] for y in range(4)] == [1, 1, 1, None]  # none at risk after the death: withheld
    assert [surv[y]["deaths"] for y in range(3)] == [0, 0, 1]
    cycles = t["episode"].filter(pl.col("episode_concept_id") == 32532)
    assert cycles.height == 4  # one per 21-day cycle
    # the diabetic has no cancer
    assert _person(t, "d1") not in t["episode"]["person_id"].to_list()
