"""Oncology episodes (transforms/episodes.py) on small hand-made frames and demo vocabulary concepts."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from schemas import omop as cdm
from transforms.episodes import (
    CHEMORADIOTHERAPY,
    CHEMOTHERAPY,
    DISEASE_FIRST_OCCURRENCE,
    EHR,
    FIELD_CONDITION_OCCURRENCE,
    FIELD_DRUG_EXPOSURE,
    FIELD_PROCEDURE_OCCURRENCE,
    RADIOTHERAPY,
    STAGE_GROUP,
    TREATMENT_CYCLE,
    TREATMENT_REGIMEN,
    cancer_modifiers,
    oncology_episodes,
)
from transforms.vocabulary import load_vocabulary

D0 = date(2022, 3, 1)
# concepts of the bundled demo vocabulary
COLON_CANCER = 197500  # Primary malignant neoplasm of colon
HYPERTENSION = 320128  # Essential hypertension
OXALIPLATIN = 35603924  # 10 ML oxaliplatin 5 MG/ML Injection
FLUOROURACIL = 42628973  # 10 ML fluorouracil 50 MG/ML Injection
CHEMO_PROC = 4273629  # Chemotherapy
RADIO_PROC = 4029715  # Radiation oncology AND/OR radiotherapy


def _d(days: int) -> date:
    return D0 + timedelta(days=days)


@pytest.fixture(scope="module")
def concept() -> pl.DataFrame:
    return load_vocabulary("bundled:demo").concept


def _co(rows: list[tuple[int, int, int, date, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={"condition_occurrence_id": pl.Int64, "person_id": pl.Int64, "condition_concept_id": pl.Int32,
                "condition_start_date": pl.Date, "condition_source_value": pl.String},
        orient="row",
    ).with_columns(condition_end_date=pl.lit(None, dtype=pl.Date))


def _de(rows: list[tuple[int, int, int, date, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={"drug_exposure_id": pl.Int64, "person_id": pl.Int64, "drug_concept_id": pl.Int32,
                "drug_exposure_start_date": pl.Date, "drug_source_value": pl.String},
        orient="row",
    ).with_columns(drug_exposure_end_date=pl.lit(None, dtype=pl.Date), days_supply=pl.lit(None, dtype=pl.Int32))


def _po(rows: list[tuple[int, int, int, date]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={"procedure_occurrence_id": pl.Int64, "person_id": pl.Int64, "procedure_concept_id": pl.Int32,
                "procedure_date": pl.Date},
        orient="row",
    ).with_columns(procedure_end_date=pl.lit(None, dtype=pl.Date))


def _course(first_id: int, person: int, start: int) -> list[tuple[int, int, int, date, str | None]]:
    """FOLFOX-like course: oxaliplatin + fluorouracil every 14 days, 4 cycles."""
    rows: list[tuple[int, int, int, date, str | None]] = []
    for c in range(4):
        rows.append((first_id + 2 * c, person, OXALIPLATIN, _d(start + 14 * c), None))
        rows.append((first_id + 2 * c + 1, person, FLUOROURACIL, _d(start + 14 * c), None))
    return rows


def _colon_patient() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    co = _co([
        (1, 1, COLON_CANCER, _d(0), "C18.9"),
        (2, 1, COLON_CANCER, _d(200), "C18.9"),  # a later record of the same cancer
        (3, 2, HYPERTENSION, _d(0), "I10"),  # the non-cancer patient
    ])
    # course 1 on days 10..52, course 2 starts 120 days after course 1's last dose (day 172)
    de = _de([*_course(100, 1, 10), *_course(200, 1, 52 + 120), (300, 2, OXALIPLATIN, _d(5), None)])
    po = _po([(400, 1, CHEMO_PROC, _d(10)), (401, 2, CHEMO_PROC, _d(5))])
    return co, de, po


def test_colon_cancer_two_courses(concept: pl.DataFrame) -> None:
    co, de, po = _colon_patient()
    episode, event = oncology_episodes(co, de, po, concept, "site-a")
    assert episode["person_id"].unique().to_list() == [1]  # the non-cancer patient has no episode

    disease = episode.filter(pl.col("episode_concept_id") == DISEASE_FIRST_OCCURRENCE)
    assert disease.height == 1
    d = disease.row(0, named=True)
    assert d["episode_object_concept_id"] == COLON_CANCER
    assert d["episode_start_date"] == _d(0)
    assert d["episode_end_date"] == _d(214)  # last dose of course 2 (172 + 42), after the day-200 record
    assert d["episode_parent_id"] is None
    assert d["episode_source_value"] == "C18.9"

    regimens = episode.filter(pl.col("episode_concept_id") == TREATMENT_REGIMEN).sort("episode_start_date")
    assert regimens.select("episode_start_date", "episode_end_date", "episode_number").rows() == [
        (_d(10), _d(52), 1), (_d(172), _d(214), 2),
    ]
    assert regimens["episode_parent_id"].to_list() == [d["episode_id"]] * 2
    assert regimens["episode_object_concept_id"].to_list() == [CHEMOTHERAPY] * 2

    cycles = episode.filter(pl.col("episode_concept_id") == TREATMENT_CYCLE)
    assert cycles.height == 8
    for r in regimens.iter_rows(named=True):
        mine = cycles.filter(pl.col("episode_parent_id") == r["episode_id"]).sort("episode_start_date")
        assert mine["episode_number"].to_list() == [1, 2, 3, 4]
        assert mine["episode_start_date"].min() == r["episode_start_date"]

    assert (episode["episode_type_concept_id"] == EHR).all()
    assert episode["episode_id"].n_unique() == episode.height

    # every drug and the procedure of patient 1 link to their regimen (and cycle); nothing of patient 2
    by_regimen = event.filter(pl.col("episode_id").is_in(regimens["episode_id"].implode()))
    assert sorted(by_regimen["event_id"].to_list()) == sorted([*range(100, 108), *range(200, 208), 400])
    assert set(by_regimen.filter(pl.col("event_id") == 400)["episode_event_field_concept_id"]) == {
        FIELD_PROCEDURE_OCCURRENCE}
    assert set(by_regimen.filter(pl.col("event_id") != 400)["episode_event_field_concept_id"]) == {
        FIELD_DRUG_EXPOSURE}
    by_cycle = event.filter(pl.col("episode_id").is_in(cycles["episode_id"].implode()))
    assert by_cycle.height == by_regimen.height
    assert not event["event_id"].is_in([300, 401]).any()
    # issue 13: the disease episode links its condition occurrences (was: no link by default)
    by_disease = event.filter(pl.col("episode_id") == d["episode_id"])
    assert by_disease.select("event_id", "episode_event_field_concept_id").rows() == [
        (1, FIELD_CONDITION_OCCURRENCE), (2, FIELD_CONDITION_OCCURRENCE)]


def test_outputs_conform(concept: pl.DataFrame) -> None:
    episode, event = oncology_episodes(*_colon_patient(), concept, "site-a")
    assert episode.columns == cdm.table("episode").columns
    assert event.columns == cdm.table("episode_event").columns
    assert episode.schema == cdm.table("episode").polars_schema
    assert event.schema == cdm.table("episode_event").polars_schema
    # 63-bit ids: episode_parent_id and event_id must be 64-bit columns
    assert episode.schema["episode_parent_id"] == pl.Int64
    assert event.schema["event_id"] == pl.Int64
    assert (episode["episode_parent_id"].drop_nulls() > 2**31).any()


def test_deterministic(concept: pl.DataFrame) -> None:
    co, de, po = _colon_patient()
    a = oncology_episodes(co, de, po, concept, "site-a")
    b = oncology_episodes(co.reverse(), de.sample(fraction=1.0, shuffle=True, seed=3), po, concept, "site-a")
    assert a[0].equals(b[0])
    assert a[1].equals(b[1])
    c = oncology_episodes(co, de, po, concept, "site-b")
    assert not c[0]["episode_id"].is_in(a[0]["episode_id"].implode()).any()


@pytest.mark.parametrize(("gap", "regimens"), [(90, 1), (91, 2)])
def test_regimen_gap(concept: pl.DataFrame, gap: int, regimens: int) -> None:
    co = _co([(1, 1, COLON_CANCER, _d(0), None)])
    de = _de([(1, 1, OXALIPLATIN, _d(10), None), (2, 1, OXALIPLATIN, _d(10 + gap), None)])
    episode, _ = oncology_episodes(co, de, _po([]), concept, "s")
    assert episode.filter(pl.col("episode_concept_id") == TREATMENT_REGIMEN).height == regimens


def test_treatment_before_diagnosis_is_not_linked_and_no_treatment_means_open_end(concept: pl.DataFrame) -> None:
    co = _co([(1, 1, COLON_CANCER, _d(100), None)])
    de = _de([(1, 1, OXALIPLATIN, _d(10), None)])
    episode, event = oncology_episodes(co, de, _po([]), concept, "s")
    assert episode["episode_concept_id"].to_list() == [DISEASE_FIRST_OCCURRENCE]
    assert episode["episode_end_date"].to_list() == [None]
    assert event["episode_event_field_concept_id"].to_list() == [FIELD_CONDITION_OCCURRENCE]  # the diagnosis only


def test_icd10_source_code_atc_drug_and_modalities(concept: pl.DataFrame) -> None:
    co = _co([(1, 1, 0, _d(0), "C50.9"), (2, 2, COLON_CANCER, _d(0), None), (3, 3, 0, _d(0), "D12.6")])
    de = _de([(1, 1, 0, _d(5), "L01XA03")])  # unmapped drug, ATC oxaliplatin
    po = _po([(1, 1, RADIO_PROC, _d(300)), (2, 2, RADIO_PROC, _d(5)), (3, 2, CHEMO_PROC, _d(6)),
              (4, 2, RADIO_PROC, _d(400))])
    episode, _ = oncology_episodes(co, de, po, concept, "s", cycles=False)
    assert TREATMENT_CYCLE not in episode["episode_concept_id"].to_list()
    disease = episode.filter(pl.col("episode_concept_id") == DISEASE_FIRST_OCCURRENCE).sort("person_id")
    assert disease.select("person_id", "episode_object_concept_id", "episode_source_value").rows() == [
        (1, 0, "C50.9"), (2, COLON_CANCER, None),
    ]  # D12.6 (benign) is no cancer
    regimens = episode.filter(pl.col("episode_concept_id") == TREATMENT_REGIMEN).sort("person_id", "episode_start_date")
    assert regimens.select("person_id", "episode_object_concept_id").rows() == [
        (1, CHEMOTHERAPY), (1, RADIOTHERAPY), (2, CHEMORADIOTHERAPY), (2, RADIOTHERAPY),
    ]


def test_two_cancers_regimen_goes_to_latest_diagnosis(concept: pl.DataFrame) -> None:
    co = _co([(1, 1, COLON_CANCER, _d(0), None), (2, 1, 0, _d(200), "C61")])
    de = _de([(1, 1, OXALIPLATIN, _d(10), None), (2, 1, OXALIPLATIN, _d(400), None)])
    episode, _ = oncology_episodes(co, de, _po([]), concept, "s")
    disease = episode.filter(pl.col("episode_concept_id") == DISEASE_FIRST_OCCURRENCE).sort("episode_start_date")
    regimens = episode.filter(pl.col("episode_concept_id") == TREATMENT_REGIMEN).sort("episode_start_date")
    assert regimens["episode_parent_id"].to_list() == disease["episode_id"].to_list()
    assert regimens["episode_number"].to_list() == [1, 1]


def test_conditions_linked_by_default(concept: pl.DataFrame) -> None:
    co, de, po = _colon_patient()
    assert not oncology_episodes(co, de, po, concept, "s", link_conditions=False)[1][
        "episode_event_field_concept_id"].is_in([FIELD_CONDITION_OCCURRENCE]).any()
    episode, event = oncology_episodes(co, de, po, concept, "s")
    disease_id = episode.filter(pl.col("episode_concept_id") == DISEASE_FIRST_OCCURRENCE)["episode_id"].item()
    linked = event.filter(pl.col("episode_event_field_concept_id") == FIELD_CONDITION_OCCURRENCE)
    assert linked.select("episode_id", "event_id").rows() == [(disease_id, 1), (disease_id, 2)]


def test_no_cancer_no_episode(concept: pl.DataFrame) -> None:
    co = _co([(3, 2, HYPERTENSION, _d(0), "I10")])
    de = _de([(300, 2, OXALIPLATIN, _d(5), None)])
    episode, event = oncology_episodes(co, de, _po([(401, 2, CHEMO_PROC, _d(5))]), concept, "s")
    assert episode.height == 0 and event.height == 0
    assert episode.columns == cdm.table("episode").columns


def test_emitted_concepts_exist_in_bundled_vocabulary(concept: pl.DataFrame) -> None:
    co, de, po = _colon_patient()
    po = pl.concat([po, _po([(402, 1, RADIO_PROC, _d(20)), (403, 1, RADIO_PROC, _d(600))])])
    episode, event = oncology_episodes(co, de, po, concept, "s")
    emitted = set(episode["episode_concept_id"]) | set(episode["episode_object_concept_id"]) | set(
        episode["episode_type_concept_id"]) | set(event["episode_event_field_concept_id"])
    assert {CHEMORADIOTHERAPY, RADIOTHERAPY} <= emitted
    assert emitted <= set(concept["concept_id"].to_list())


def test_antineoplastic_drugs_of_vocabulary_demo(shared: Path) -> None:
    folder = shared / "data" / "vocabulary-demo"
    if not folder.exists():
        pytest.skip("vocabulary-demo not in ../shared")
    concept = load_vocabulary(str(folder)).concept
    drugs = concept.filter(pl.col("domain_id") == "Drug", pl.col("concept_class_id") != "Ingredient")
    de = _de([(i, 1, cid, _d(10), None) for i, cid in enumerate(drugs["concept_id"].to_list())])
    co = _co([(1, 1, 4180790, _d(0), None)])  # Malignant tumor of colon
    episode, event = oncology_episodes(co, de, _po([]), concept, "s", cycles=False)
    linked = de.filter(pl.col("drug_exposure_id").is_in(event["event_id"].implode())).join(
        concept, left_on="drug_concept_id", right_on="concept_id")
    names = " ".join(linked["concept_name"].to_list()).lower()
    for ingredient in ("oxaliplatin", "fluorouracil", "carboplatin", "cisplatin", "paclitaxel", "docetaxel",
                       "etoposide", "leuprolide"):
        assert ingredient in names
    assert episode.filter(pl.col("episode_concept_id") == TREATMENT_REGIMEN).height == 1


# --------------------------------------------------------------------------------------------------
# issue 13: stage variants, cancer modifiers, regimens split by combination, cycles at the interval

NSCLC = 4115276  # Non-small cell lung cancer (demo vocabulary)
NSCLC_STAGE_1 = 4310703  # Non-small cell carcinoma of lung, TNM stage 1 (vocabulary-demo; bundled since issue 15)
CISPLATIN = 35604087  # cisplatin injection of the bundled vocabulary
PACLITAXEL = 1378388
CHEMORADIO_PROC = 45766298


@pytest.fixture(scope="module")
def lung_concept(concept: pl.DataFrame) -> pl.DataFrame:
    """The bundled concepts, which hold the real SNOMED stage-1 NSCLC concept (as in ../shared/data/vocabulary-demo)."""
    out = concept.select("concept_id", "concept_name")
    assert out.filter(pl.col("concept_id") == NSCLC_STAGE_1)["concept_name"].to_list() == [
        "Non-small cell carcinoma of lung, TNM stage 1"]
    return out


def _monthly_course(first_id: int, start: int, cycles: int, every: int = 33, days: int = 4,
                    drugs: tuple[int, ...] = (CISPLATIN, PACLITAXEL)) -> list[tuple[int, int, int, date, str | None]]:
    """``cycles`` cycles of ``days`` consecutive administration days every ``every`` days."""
    rows: list[tuple[int, int, int, date, str | None]] = []
    i = first_id
    for c in range(cycles):
        for day in range(days):
            for drug in drugs:
                rows.append((i, 1, drug, _d(start + every * c + day), None))
                i += 1
    return rows


def test_stage_variant_is_no_new_disease_and_becomes_a_linked_measurement(lung_concept: pl.DataFrame) -> None:
    co = _co([(1, 1, NSCLC, _d(0), "254637007"), (2, 1, NSCLC_STAGE_1, _d(1), "424132000"),
              (3, 1, COLON_CANCER, _d(1500), "C18.9")])
    episode, event = oncology_episodes(co, _de([]), _po([]), lung_concept, "s")
    disease = episode.filter(pl.col("episode_concept_id") == DISEASE_FIRST_OCCURRENCE).sort("episode_start_date")
    assert disease.select("episode_object_concept_id", "episode_start_date", "episode_source_value").rows() == [
        (NSCLC, _d(0), "254637007"), (COLON_CANCER, _d(1500), "C18.9")]  # one per primary cancer
    lung = disease["episode_id"][0]
    assert event.filter(pl.col("episode_id") == lung)["event_id"].to_list() == [1, 2]
    assert disease["episode_end_date"][0] == _d(1)  # the variant is a later record of the cancer

    m = cancer_modifiers(co, lung_concept, "s")
    assert m.columns == cdm.table("measurement").columns and m.schema == cdm.table("measurement").polars_schema
    assert m.select("measurement_concept_id", "measurement_date", "value_source_value", "measurement_event_id",
                    "meas_event_field_concept_id").rows() == [
        (STAGE_GROUP, _d(1), "TNM stage 1", 2, FIELD_CONDITION_OCCURRENCE)]
    assert cancer_modifiers(co, lung_concept, "s").equals(m)  # deterministic ids


def test_variant_goes_to_its_ancestor_cancer_and_variants_alone_make_one_disease(lung_concept: pl.DataFrame) -> None:
    # the stage-1 variant is nearer in time to the colon cancer, but the vocabulary says it is a lung cancer
    co = _co([(1, 1, NSCLC, _d(0), None), (2, 1, COLON_CANCER, _d(300), None), (3, 1, NSCLC_STAGE_1, _d(290), None)])
    ancestor = pl.DataFrame({"ancestor_concept_id": [NSCLC], "descendant_concept_id": [NSCLC_STAGE_1]})
    episode, event = oncology_episodes(co, _de([]), _po([]), lung_concept, "s", ancestor=ancestor)
    lung = episode.filter(pl.col("episode_object_concept_id") == NSCLC)["episode_id"].item()
    assert sorted(event.filter(pl.col("episode_id") == lung)["event_id"].to_list()) == [1, 3]
    _, event = oncology_episodes(co, _de([]), _po([]), lung_concept, "s")  # without ancestors: nearest in time
    assert event.filter(pl.col("episode_id") == lung)["event_id"].to_list() == [1]
    only = oncology_episodes(_co([(3, 1, NSCLC_STAGE_1, _d(0), None), (4, 1, NSCLC_STAGE_1, _d(400), None)]),
                             _de([]), _po([]), lung_concept, "s")[0]
    assert only.select("episode_object_concept_id", "episode_start_date").rows() == [(NSCLC_STAGE_1, _d(0))]


def test_cycles_follow_the_regimen_interval(lung_concept: pl.DataFrame) -> None:
    co = _co([(1, 1, NSCLC, _d(0), None)])
    de = _de(_monthly_course(1000, 10, cycles=6))  # 6 cycles of 4 days every 33 days: 24 treatment days
    po = _po([(5000 + c, 1, CHEMORADIO_PROC, _d(10 + 33 * c)) for c in range(6)])
    episode, event = oncology_episodes(co, de, po, lung_concept, "s")
    regimen = episode.filter(pl.col("episode_concept_id") == TREATMENT_REGIMEN)
    assert regimen.select("episode_start_date", "episode_end_date", "episode_object_concept_id",
                          "episode_source_value").rows() == [(_d(10), _d(10 + 33 * 5 + 3), CHEMORADIOTHERAPY,
                                                              "cisplatin+paclitaxel")]
    cycles = episode.filter(pl.col("episode_concept_id") == TREATMENT_CYCLE).sort("episode_start_date")
    assert cycles.height == 6  # not one per administration date
    assert cycles["episode_number"].to_list() == [1, 2, 3, 4, 5, 6]
    assert [(r["episode_start_date"] - _d(10)).days for r in cycles.iter_rows(named=True)] == [0, 33, 66, 99, 132, 165]
    assert all((r["episode_end_date"] - r["episode_start_date"]).days == 3 for r in cycles.iter_rows(named=True))
    assert (cycles["episode_parent_id"] == regimen["episode_id"].item()).all()
    by_cycle = event.filter(pl.col("episode_id").is_in(cycles["episode_id"].implode()))
    assert by_cycle.height == de.height + po.height


def test_regimen_splits_when_the_combination_changes(lung_concept: pl.DataFrame) -> None:
    co = _co([(1, 1, NSCLC, _d(0), None)])
    first = _monthly_course(1000, 10, cycles=4, every=21, days=1)
    second = _monthly_course(2000, 10 + 21 * 4, cycles=3, every=21, days=1, drugs=(PACLITAXEL,))  # no gap
    episode, _ = oncology_episodes(co, _de([*first, *second]), _po([]), lung_concept, "s")
    regimens = episode.filter(pl.col("episode_concept_id") == TREATMENT_REGIMEN).sort("episode_start_date")
    assert regimens.select("episode_source_value", "episode_number", "episode_start_date", "episode_end_date").rows() == [
        ("cisplatin+paclitaxel", 1, _d(10), _d(10 + 63)), ("paclitaxel", 2, _d(94), _d(94 + 42))]
    cycles = episode.filter(pl.col("episode_concept_id") == TREATMENT_CYCLE)
    assert cycles.group_by("episode_parent_id").len()["len"].sort().to_list() == [3, 4]


def test_lung_cancer_of_the_fhir_sample(shared: Path) -> None:
    """/work/shared's FHIR patient with a lung cancer, its 'TNM stage 1' variant a day later, a breast cancer
    five years on and 221 days of cisplatin + paclitaxel with chemoradiation in monthly blocks."""
    from transforms.adapters.fhir import fhir_to_staging, read_fhir
    from transforms.omop import harmonise_site

    folder = shared / "data" / "fhir-r4-bulk-10"
    vocab_folder = shared / "data" / "vocabulary-demo"
    if not folder.exists() or not vocab_folder.exists():
        pytest.skip("fhir-r4-bulk-10 or vocabulary-demo not in ../shared")
    vocab = load_vocabulary(str(vocab_folder))
    t = harmonise_site("fhir", fhir_to_staging(read_fhir("fhir", folder)), vocab, date(2026, 1, 1)).tables
    episode, event = t["episode"], t["episode_event"]
    disease = episode.filter(pl.col("episode_concept_id") == DISEASE_FIRST_OCCURRENCE).sort("episode_start_date")
    assert disease["episode_object_concept_id"].to_list() == [NSCLC, 4112853]  # lung, then breast: no stage episode
    regimen = episode.filter(pl.col("episode_concept_id") == TREATMENT_REGIMEN)
    assert regimen.height == 1
    r = regimen.row(0, named=True)
    assert r["episode_parent_id"] == disease["episode_id"][0] and r["episode_source_value"] == "cisplatin+paclitaxel"
    treated = t["drug_exposure"].filter(pl.col("drug_exposure_id").is_in(
        event.filter(pl.col("episode_id") == r["episode_id"])["event_id"].implode()))
    assert treated.height == 442
    # no regimen longer than its treatment course: it spans the first to the last administration
    assert (r["episode_start_date"], r["episode_end_date"]) == (
        treated["drug_exposure_start_date"].min(), treated["drug_exposure_end_date"].max())
    cycles = episode.filter(pl.col("episode_concept_id") == TREATMENT_CYCLE).sort("episode_start_date")
    starts = cycles["episode_start_date"]
    gaps = starts.diff().drop_nulls().dt.total_days().to_list()
    assert 40 <= cycles.height <= 60  # one per monthly block, not one per administration date (221)
    assert min(gaps) >= 28 and max(gaps) <= 45  # cycles at the regimen's ~33-day interval
    # a cycle is its administration days: shorter than half the interval plus a block
    assert max((cycles["episode_end_date"] - cycles["episode_start_date"]).dt.total_days().to_list()) < 33
    lung_links = event.filter(pl.col("episode_id") == disease["episode_id"][0],
                              pl.col("episode_event_field_concept_id") == FIELD_CONDITION_OCCURRENCE)
    assert lung_links.height == 2  # the diagnosis and its stage variant
    stage = t["measurement"].filter(pl.col("meas_event_field_concept_id") == FIELD_CONDITION_OCCURRENCE)
    assert stage.select("measurement_concept_id", "value_source_value").rows() == [(STAGE_GROUP, "TNM stage 1")]
    assert stage["measurement_event_id"].is_in(lung_links["event_id"].implode()).all()
    variant = t["condition_occurrence"].filter(pl.col("condition_occurrence_id") == stage["measurement_event_id"].item())
    assert variant["condition_concept_id"].item() == NSCLC_STAGE_1
