"""Issue 13, point 1: an allergy is an observation of the allergy with the substance as its value, never
a drug exposure (a drug allergy coded in RxNorm routed by its Drug domain gave false exposures and eras)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import polars as pl

from tests.test_adapters_equivalence import SYNTHEA, write_resources
from tests.test_adapters_synthea import write
from tests.test_omop_fidelity import _fhir
from transforms.adapters.fhir import fhir_to_staging, read_fhir
from transforms.adapters.synthea import read_synthea, synthea_to_staging
from transforms.omop import allergy_concepts, harmonise_site
from transforms.vocabulary import load_vocabulary

TODAY = dt.date(2024, 1, 1)
ALLERGIES = (
    "START,STOP,PATIENT,ENCOUNTER,CODE,SYSTEM,DESCRIPTION,TYPE,CATEGORY,REACTION1,DESCRIPTION1,SEVERITY1,"
    "REACTION2,DESCRIPTION2,SEVERITY2\n"
    "2019-01-02,,p1,e1,1191,RxNorm,Aspirin,allergy,medication,,,,,,\n"
    "2019-01-02,,p1,e1,762952008,SNOMED-CT,Peanut (substance),allergy,food,,,,,,\n"
)


def test_a_drug_allergy_is_an_observation_with_the_substance_as_value(tmp_path: Path, shared: Path) -> None:
    vocab = load_vocabulary(str(shared / "data" / "vocabulary-demo"))
    folder = write(tmp_path / "synthea", {**SYNTHEA, "allergies.csv": ALLERGIES})
    t = harmonise_site("x", synthea_to_staging(read_synthea("x", folder)), vocab, TODAY).tables
    assert t["drug_exposure"].filter(pl.col("drug_source_value") == "1191").height == 0
    obs = t["observation"].filter(pl.col("observation_source_value").is_in(["1191", "762952008"])).sort(
        "observation_source_value")
    assert obs.height == 2
    aspirin = vocab.code_map("RxNorm").filter(pl.col("source_code") == "1191")["concept_id"].item()
    assert aspirin != 0  # the substance maps to a standard Drug concept ...
    assert obs["value_as_concept_id"].to_list()[0] == aspirin  # ... which becomes the value
    concepts = allergy_concepts(vocab)
    assert obs["observation_concept_id"].to_list() == [concepts["medication"], concepts["food"]]
    assert obs["value_as_concept_id"].null_count() == 0  # 0 where the substance is unmapped, as the CDM says


def test_the_allergy_concept_is_the_vocabularys_snomed_one_by_category() -> None:
    concept = pl.DataFrame({"concept_id": [1, 2, 3, 4], "vocabulary_id": ["SNOMED"] * 4,
                            "concept_code": ["416098002", "414285001", "419199007", "426232007"],
                            "standard_concept": ["S", "S", "S", None]})
    assert allergy_concepts(SimpleNamespace(concept=concept)) == {  # type: ignore[arg-type]
        "medication": 1, "food": 2, "environment": 0, "": 3}  # a non-standard concept is no target


def test_the_27_synthea_patients_have_no_allergy_exposures_and_ohdsis_57_drug_eras(shared: Path) -> None:
    vocab = load_vocabulary(str(shared / "data" / "vocabulary-demo"))
    raw = read_synthea("s", shared / "data" / "synthea-v3-27")
    t = harmonise_site("s", synthea_to_staging(raw), vocab, TODAY).tables
    allergy_codes = raw.entities["allergies"].table["code"].unique().to_list()
    assert t["drug_exposure"].filter(pl.col("drug_source_value").is_in(allergy_codes)).height == 0
    assert t["observation"].filter(pl.col("observation_source_value").is_in(allergy_codes)).height == 40
    assert t["drug_era"].height == 57  # as OHDSI's drug era SQL gives on the same patients


def test_fhir_allergies_never_become_exposures(shared: Path) -> None:
    vocab = load_vocabulary(str(shared / "data" / "vocabulary-demo"))
    stg = fhir_to_staging(read_fhir("f", shared / "data" / "fhir-r4-bulk-10"))
    allergy = stg["events"].filter(pl.col("kind") == "allergy")
    assert allergy.height > 0 and set(allergy["category"].drop_nulls()) <= {"medication", "food", "environment", "biologic"}
    t = harmonise_site("f", stg, vocab, TODAY).tables
    assert t["drug_exposure"].filter(pl.col("drug_source_value").is_in(allergy["code"].implode())).height == 0


# ------------------------------------------------------------ coded results (issue 13, point 2, in part)

def _observation(oid: str, **value: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final", "subject": {"reference": "Patient/p1"},
            "encounter": {"reference": "Encounter/e1"}, "effectiveDateTime": "2019-01-01T10:02:00Z",
            "code": {"coding": [{"system": "http://loinc.org", "code": "72166-2", "display": "Tobacco smoking status"}]},
            **value}


def test_a_coded_result_gets_its_standard_concept_as_value(tmp_path: Path) -> None:
    sct = "http://snomed.info/sct"
    resources = [r for r in _fhir() if r["resourceType"] != "Observation"] + [
        _observation("o-mapped", valueCodeableConcept={"coding": [{"system": sct, "code": "44054006",
                                                                    "display": "Diabetes mellitus type 2"}]}),
        _observation("o-unmapped", valueCodeableConcept={"coding": [{"system": sct, "code": "266919005",
                                                                      "display": "Never smoker"}]}),
        _observation("o-text", valueString="no code here"),
    ]
    stg = fhir_to_staging(read_fhir("x", write_resources(tmp_path / "fhir", resources)))
    obs = harmonise_site("x", stg, load_vocabulary(), TODAY).tables["observation"]
    values = dict(obs.select("value_source_value", "value_as_concept_id").iter_rows())
    assert values["Diabetes mellitus type 2"] == 201826  # the bundled vocabulary's standard concept
    assert values["Never smoker"] == 0  # a code the vocabulary lacks: 0, as the CDM says
    assert values["no code here"] is None  # no coded value: no concept
