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
    TREATMENT_CYCLE,
    TREATMENT_REGIMEN,
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
    # the disease episode links its diagnoses (issue 13: the field concept 1147127 is in the vocabulary now)
    by_disease = event.filter(pl.col("episode_id") == d["episode_id"])
    assert sorted(by_disease["event_id"].to_list()) == [1, 2]
    assert set(by_disease["episode_event_field_concept_id"]) == {FIELD_CONDITION_OCCURRENCE}


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


def test_link_conditions_opt_in(concept: pl.DataFrame) -> None:
    co, de, po = _colon_patient()
    episode, event = oncology_episodes(co, de, po, concept, "s", link_conditions=True)
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


# ------------------------------------------------------------------ issue 13, point 6

STAGED_LUNG = 99_000_001  # a test concept: a cancer restated with its TNM stage


def _with_staged(concept: pl.DataFrame) -> pl.DataFrame:
    extra = concept.head(1).with_columns(
        concept_id=pl.lit(STAGED_LUNG, concept.schema["concept_id"]),
        concept_name=pl.lit("Non-small cell carcinoma of lung, TNM stage 1"), domain_id=pl.lit("Condition"))
    return pl.concat([concept, extra])


def test_a_staged_restatement_is_no_new_primary_cancer(concept: pl.DataFrame) -> None:
    co = _co([(1, 1, COLON_CANCER, _d(0), "C18.9"), (2, 1, STAGED_LUNG, _d(1), None)])
    episode, event = oncology_episodes(co, _de([]), _po([]), _with_staged(concept), "s")
    assert episode["episode_concept_id"].to_list() == [DISEASE_FIRST_OCCURRENCE]
    assert episode["episode_object_concept_id"].to_list() == [COLON_CANCER]  # the primary, not its stage
    assert sorted(event["event_id"]) == [1, 2]  # both diagnoses link to the one disease episode
    # with no cancer diagnosed before it, a staged diagnosis is a primary of its own
    alone, _ = oncology_episodes(_co([(2, 1, STAGED_LUNG, _d(1), None)]), _de([]), _po([]), _with_staged(concept), "s")
    assert alone["episode_object_concept_id"].to_list() == [STAGED_LUNG]


def _daily_cycles(first_id: int, drug: int, starts: list[int]) -> list[tuple[int, int, int, date, str | None]]:
    """Days 1-5 of each cycle, one administration a day."""
    return [(first_id + 10 * n + k, 1, drug, _d(s + k), None) for n, s in enumerate(starts) for k in range(5)]


def test_cycles_are_runs_of_administrations_and_a_new_combination_is_a_new_regimen(concept: pl.DataFrame) -> None:
    co = _co([(1, 1, COLON_CANCER, _d(0), "C18.9")])
    # six 28-day cycles of oxaliplatin, then, without a gap, three of fluorouracil
    de = _de([*_daily_cycles(1000, OXALIPLATIN, [28 * n + 10 for n in range(6)]),
              *_daily_cycles(2000, FLUOROURACIL, [28 * n + 10 + 28 * 6 for n in range(3)])])
    episode, _ = oncology_episodes(co, de, _po([]), concept, "s")
    regimens = episode.filter(pl.col("episode_concept_id") == TREATMENT_REGIMEN).sort("episode_start_date")
    assert regimens.select("episode_start_date", "episode_end_date").rows() == [
        (_d(10), _d(28 * 5 + 14)), (_d(28 * 6 + 10), _d(28 * 8 + 14))]
    cycles = episode.filter(pl.col("episode_concept_id") == TREATMENT_CYCLE)
    per_regimen = cycles.group_by("episode_parent_id").len().join(
        regimens.select(episode_parent_id="episode_id", s="episode_start_date"), on="episode_parent_id")
    assert sorted(per_regimen.select("s", "len").rows()) == [(_d(10), 6), (_d(28 * 6 + 10), 3)]
    # each cycle spans its five days, at the regimen's 28-day interval
    first = cycles.filter(pl.col("episode_parent_id") == regimens["episode_id"][0]).sort("episode_start_date")
    assert (first["episode_end_date"] - first["episode_start_date"]).dt.total_days().to_list() == [4] * 6
    assert first["episode_start_date"].diff().drop_nulls().dt.total_days().to_list() == [28] * 5


def test_the_fhir_samples_lung_cancer_patient(shared: Path) -> None:
    import datetime as dt

    from transforms.adapters.fhir import fhir_to_staging, read_fhir
    from transforms.omop import harmonise_site

    vocab = load_vocabulary(str(shared / "data" / "vocabulary-demo"))
    t = harmonise_site("f", fhir_to_staging(read_fhir("f", shared / "data" / "fhir-r4-bulk-10")), vocab,
                       dt.date(2024, 1, 1)).tables
    e = t["episode"]
    counts = dict(e.group_by("episode_concept_id").len().iter_rows())
    # lung cancer (its "TNM stage 1" restatement a day later is no second episode) and a later breast cancer
    assert counts[DISEASE_FIRST_OCCURRENCE] == 2
    assert counts[TREATMENT_REGIMEN] == 1 and counts[TREATMENT_CYCLE] == 44  # monthly cycles, not 221 days
    regimen = e.filter(pl.col("episode_concept_id") == TREATMENT_REGIMEN).row(0, named=True)
    cycles = e.filter(pl.col("episode_concept_id") == TREATMENT_CYCLE)
    assert regimen["episode_start_date"] == cycles["episode_start_date"].min()
    assert regimen["episode_end_date"] == cycles["episode_end_date"].max()  # no longer than its course
    links = t["episode_event"].filter(pl.col("episode_event_field_concept_id") == FIELD_CONDITION_OCCURRENCE)
    assert links.height == 3  # lung cancer, its staged restatement, breast cancer
