"""The hospital-csv cancer-registry columns (diagnoses: histology, tnm_t/n/m, stage_group; labs: value_code)
through ingest, staging and the OMOP builder with the bundled vocabulary, then pseudonymisation."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from anonymisation.pseudonymise import identity_frame, pseudonymise_site
from schemas import omop as cdm
from schemas.policy import PrivacyPolicy
from transforms import cancer_registry
from transforms.adapters.hospital_csv import hospital_to_staging
from transforms.conceptsets import persons_with, read_concept_set, resolve
from transforms.episodes import oncology_episodes
from transforms.ingest import ingest_site
from transforms.omop import OmopResult, harmonise_site
from transforms.oncology_product import oncology_tables
from transforms.vocabulary import BUNDLED, Vocabulary, load_vocabulary

TODAY = dt.date(2026, 1, 1)
COHORTS = Path(__file__).resolve().parents[1] / "schemas" / "cohorts"
FILES = {
    "patients.csv": "patient_id,matricule,last_name,first_name,birth_date,sex,address,postcode,city,country,phone,email,updated_at\n"
                    "P1,,Muller,Paul,1950-02-03,M,,L-1080,Lux,,,,\n"
                    "P2,,Weber,Jos,1945-06-07,M,,L-1080,Lux,,,,\n"
                    "P3,,Schmit,Anne,1960-01-01,F,,L-1080,Lux,,,,\n",
    "stays.csv": "stay_id,patient_id,admission,discharge,stay_type,ward\n"
                 "S1,P1,2020-03-01 08:30,2020-03-04 12:00,INPATIENT,ONC\n"
                 "S2,P2,2021-05-10 09:00,2021-05-12 12:00,INPATIENT,URO\n"
                 "S3,P3,2022-01-10 09:00,2022-01-10 11:00,OUTPATIENT,\n",
    "diagnoses.csv": "diagnosis_id,stay_id,patient_id,icd10_code,diagnosis_date,diagnosis_rank,description,histology,"
                     "tnm_t,tnm_n,tnm_m,stage_group\n"
                     "D1,S1,P1,C34.1,2020-03-02,PRINCIPAL,lung,8140/3,T2,N1,M0,IIB\n"
                     "D2,S2,P2,C61,2021-05-10,PRINCIPAL,prostate,8140/3,,,M1,IV\n"
                     "D3,S1,P1,E11.9,2020-03-02,SECONDARY,diabetes,,,,,\n"
                     "D4,S3,P3,C50.9,2022-01-10,PRINCIPAL,breast,8500/3,T1,N0,M0,Stage 1\n",
    "labs.csv": "lab_id,stay_id,patient_id,loinc_code,value,unit,sampled_at,description,value_code\n"
                "L1,S1,P1,72166-2,,,2020-03-01 09:00,smoking status,449868002\n"
                "L2,S2,P2,72166-2,,,2021-05-10 10:00,smoking status,77176002\n"
                "L3,S1,P1,4548-4,7.1,%,2020-03-01 09:00,HbA1c,\n",
}


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return load_vocabulary(BUNDLED)


@pytest.fixture(scope="module")
def built(vocab: Vocabulary, tmp_path_factory: pytest.TempPathFactory) -> tuple[OmopResult, dict[str, pl.DataFrame]]:
    folder = tmp_path_factory.mktemp("landing")
    for name, text in FILES.items():
        (folder / name).write_text(text, encoding="utf-8")
    ingested = ingest_site("hospital-a", folder, today=TODAY)
    for name, entity in ingested.entities.items():
        assert entity.quarantined == 0, (name, entity.quarantine.to_dicts())
    stg = hospital_to_staging({n: e.table for n, e in ingested.entities.items()})
    return harmonise_site("hospital-a", stg, vocab, TODAY), stg


def _conditions(result: OmopResult) -> dict[str, dict[str, object]]:
    co = result.tables["condition_occurrence"]
    return {str(r["condition_source_value"]): r for r in co.iter_rows(named=True)}


def test_histology_gives_the_icdo3_condition_or_falls_back_to_the_icd10_map(
        built: tuple[OmopResult, dict[str, pl.DataFrame]]) -> None:
    result, _ = built
    co = _conditions(result)
    # lung: the vocabulary has 8140/3-C34.1 (44499882 Adenocarcinoma, NOS, of upper lobe, lung)
    assert co["8140/3-C34.1"]["condition_concept_id"] == 44499882
    assert co["8140/3-C34.1"]["condition_source_concept_id"] == 44499882
    # prostate: C61 -> topography C61.9 (44499685 Adenocarcinoma, NOS, of prostate gland)
    assert co["8140/3-C61.9"]["condition_concept_id"] == 44499685
    # breast: no 8500/3-C50.9 concept in the vocabulary -> the ICD-10 map (4112853), the ICD-O-3 code kept
    assert co["8500/3-C50.9"]["condition_concept_id"] == 4112853
    assert co["8500/3-C50.9"]["condition_source_concept_id"] == 0  # the ICD-10 code maps through the STCM
    # without a histology nothing changes
    assert co["E11.9"]["condition_concept_id"] == 201826
    assert result.stats["icdo3_conditions"] == 2 and result.stats["icdo3_via_icd10"] == 1
    cov = result.coverage.filter(pl.col("table") == "condition_occurrence")
    assert sorted(cov.filter(pl.col("code_system") == "ICDO3")["source_code"].to_list()) == ["8140/3-C34.1", "8140/3-C61.9"]
    assert cov.filter(pl.col("code_system") == "ICD10 (ICDO3 lacking)")["source_code"].to_list() == ["C50.9"]


def test_stage_and_tnm_are_measurements_linked_to_their_condition(
        built: tuple[OmopResult, dict[str, pl.DataFrame]]) -> None:
    result, _ = built
    co = _conditions(result)
    m = result.tables["measurement"].filter(pl.col("meas_event_field_concept_id") == 1147127)
    got = {(r["measurement_event_id"], r["measurement_concept_id"]): (r["value_source_value"], r["value_as_concept_id"])
           for r in m.iter_rows(named=True)}
    lung, prostate, breast = (co[k]["condition_occurrence_id"] for k in ("8140/3-C34.1", "8140/3-C61.9", "8500/3-C50.9"))
    assert got == {
        (lung, 3022698): ("IIB", 1635131), (lung, 3008841): ("T2", 1635562), (lung, 3007727): ("N1", 0),
        (lung, 3006575): ("M0", 0),
        (prostate, 3022698): ("IV", 1633987), (prostate, 3006575): ("M1", 1635142),
        (breast, 3022698): ("I", 1635838), (breast, 3008841): ("T1", 1635564), (breast, 3007727): ("N0", 0),
        (breast, 3006575): ("M0", 0),
    }
    assert m["measurement_date"].to_list().count(dt.date(2020, 3, 2)) == 4
    acc = result.accounting.filter(pl.col("reason_code") == "omop.registry_modifier")
    assert acc["rows"].item() == 10


def test_coded_lab_result_is_the_value_concept(built: tuple[OmopResult, dict[str, pl.DataFrame]]) -> None:
    result, _ = built
    obs = result.tables["observation"].filter(pl.col("observation_source_value") == "72166-2").sort("observation_date")
    # 72166-2 is an Observation-domain concept (43054909): the rows go to observation with the coded result
    assert obs["observation_concept_id"].to_list() == [43054909, 43054909]
    # 449868002 Smokes tobacco daily is in the bundled vocabulary; 77176002 is not (0, as the CDM says)
    assert obs["value_as_concept_id"].to_list() == [42709996, 0]
    assert obs["value_source_value"].to_list() == ["449868002", "77176002"]  # the code is kept either way
    assert result.tables["measurement"].filter(pl.col("measurement_source_value") == "4548-4")["value_as_number"].to_list() == [7.1]


def test_the_registry_cancers_are_episodes_with_their_stage_and_count_in_the_concept_sets(
        built: tuple[OmopResult, dict[str, pl.DataFrame]], vocab: Vocabulary) -> None:
    result, _ = built
    t = result.tables
    diseases = t["episode"].filter(pl.col("episode_concept_id") == 32528)
    assert sorted(diseases["episode_object_concept_id"].to_list()) == [4112853, 44499685, 44499882]
    onc = oncology_tables(t["episode"], t["episode_event"], t["measurement"], t["person"], t["death"],
                          t["observation_period"], vocab.concept.select("concept_id", "concept_name"), k=1)
    stage = {(r["cancer"], r["stage"]): r["persons"] for r in onc.stage.iter_rows(named=True)}
    assert stage[("Adenocarcinoma, NOS, of upper lobe, lung", "II")] == 1  # IIB: the main group in the product
    assert stage[("Adenocarcinoma, NOS, of prostate gland", "IV")] == 1 and stage[("Malignant tumor of breast", "I")] == 1
    lazy = {k: v.lazy() for k, v in t.items()}
    for name, persons in (("lung-cancer.json", 1), ("prostate-cancer.json", 1), ("breast-cancer.json", 1)):
        concepts = resolve(read_concept_set(COHORTS / name), vocab.ancestor, vocab.maps_to)
        assert persons_with(lazy, concepts) == persons, name


def test_pseudonymisation_rekeys_the_link_to_the_condition(
        built: tuple[OmopResult, dict[str, pl.DataFrame]]) -> None:
    result, stg = built
    ident = identity_frame(stg["persons"], result.tables["person"])
    res = pseudonymise_site("hospital-a", result.tables, ident, b"k" * 32, PrivacyPolicy())
    co = res.tables["condition_occurrence"]
    m = res.tables["measurement"].filter(pl.col("meas_event_field_concept_id") == 1147127)
    assert m.height == 10
    assert m["measurement_event_id"].is_in(co["condition_occurrence_id"].implode()).all()
    assert not m["measurement_event_id"].is_in(result.tables["condition_occurrence"]["condition_occurrence_id"].implode()).any()


def test_topography_and_stage_normalisation() -> None:
    df = pl.DataFrame({"icd10": ["C34.1", "C61", "C341", "C50.911", "E11.9"],
                       "stage": ["Stage IIB", "2b", "stage 4", "Stage 1 (qualifier value)", "IVB"]})
    out = df.select(t=cancer_registry.topography(pl.col("icd10")), s=cancer_registry.normalise_stage(pl.col("stage")))
    assert out["t"].to_list() == ["C34.1", "C61.9", "C34.1", "C50.9", None]
    assert out["s"].to_list() == ["IIB", "IIB", "IV", "I", "IVB"]
    assert df.select(cancer_registry.main_stage(cancer_registry.normalise_stage(pl.col("stage"))))["stage"].to_list() \
        == ["II", "II", "IV", "I", "IV"]


def test_an_unmapped_icdo3_diagnosis_is_still_a_cancer(vocab: Vocabulary) -> None:
    """A malignant ICD-O-3 histology-topography source value (behaviour /3) names a cancer even with concept 0
    and a name that says neither carcinoma nor cancer; an in-situ one (/2) does not."""
    co = pl.DataFrame({"condition_occurrence_id": [1, 2], "person_id": [1, 2], "condition_concept_id": [0, 0],
                       "condition_start_date": [dt.date(2020, 1, 1)] * 2,
                       "condition_source_value": ["8240/3-C61.9", "8500/2-C50.9"]},
                      schema={"condition_occurrence_id": pl.Int64, "person_id": pl.Int64, "condition_concept_id": pl.Int32,
                              "condition_start_date": pl.Date, "condition_source_value": pl.String}
                      ).with_columns(condition_end_date=pl.lit(None, pl.Date))
    episode, _ = oncology_episodes(co, pl.DataFrame(schema=cdm.table("drug_exposure").polars_schema),
                                   pl.DataFrame(schema=cdm.table("procedure_occurrence").polars_schema),
                                   vocab.concept, "s")
    assert episode.filter(pl.col("episode_concept_id") == 32528)["episode_source_value"].to_list() == ["8240/3-C61.9"]


def test_fhir_stage_summary_is_read_from_text_display_or_code() -> None:
    from transforms.adapters.fhir import _stage

    assert _stage([{"summary": {"text": "Stage IIB"}}]) == "Stage IIB"
    assert _stage([{"assessment": [{"reference": "Observation/x"}]},
                   {"summary": {"coding": [{"code": "3A", "display": "Stage 3A"}]}}]) == "Stage 3A"
    assert _stage([{"summary": {"coding": [{"code": "3C"}]}}]) == "3C"
    assert _stage(None) is None and _stage([{"assessment": []}]) is None


def test_same_extract_same_rows(built: tuple[OmopResult, dict[str, pl.DataFrame]], vocab: Vocabulary) -> None:
    result, stg = built
    again = harmonise_site("hospital-a", stg, vocab, TODAY)
    for t in ("condition_occurrence", "measurement", "observation", "episode"):
        assert again.tables[t].equals(result.tables[t]), t
