"""A modifier row (a stage measurement linked to its diagnosis by ``measurement_event_id``) leaves the
release with the diagnosis it modifies: the k^m engine must count that removal, or the written files
hold fewer persons with a set of facts than the engine believes (found at 300,000 generated patients:
the audit of the written files saw 40 persons at risk at 2 facts, the engine 0)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl

from anonymisation.audit import audit_release
from anonymisation.facts import collect_units, unit_links
from anonymisation.release import build_release
from schemas import omop as cdm
from schemas.policy import PrivacyPolicy
from tests.release_check import release_check

KEY = b"k" * 32
STAGE = 3022698  # AJCC stage group: the modifier's measurement concept
CONDITION_FIELD = 1147127  # the link's field concept: condition_occurrence.condition_occurrence_id


def _site() -> dict[str, pl.DataFrame]:
    """Five persons of one class (same year of birth, sex, place). Every one has diabetes (E11.9),
    a cancer and its stage measurement linked to it; persons 1-3 also have hypertension (I10).
    Person 1's cancer is unique and has nothing above it (the engine removes that row); person 1 also
    has a common cancer row, so the engine's view keeps every other fact at support >= 3. In the
    written files person 1's stage measurement is gone with the removed cancer, so {stage, I10} is held
    by persons 2 and 3 only: both at risk at 2 facts unless the engine counts the removal."""
    persons = range(1, 6)
    person = cdm.conform(pl.DataFrame({
        "person_id": list(persons), "gender_concept_id": [8532] * 5, "year_of_birth": [1960] * 5,
        "race_concept_id": [0] * 5, "ethnicity_concept_id": [0] * 5, "location_id": [1] * 5,
        "person_source_value": [f"p{p}" for p in persons]}), "person")
    location = cdm.conform(pl.DataFrame({"location_id": [1], "zip": ["L-1080"], "country_source_value": ["LU"]}),
                           "location")
    period = cdm.conform(pl.DataFrame({
        "observation_period_id": list(persons), "person_id": list(persons),
        "observation_period_start_date": [dt.date(2020, 1, 1)] * 5,
        "observation_period_end_date": [dt.date(2020, 12, 31)] * 5,
        "period_type_concept_id": [32817] * 5}), "observation_period")
    cond: list[dict[str, object]] = []
    meas: list[dict[str, object]] = []

    def diagnosis(p: int, concept: int, source: str, link: bool) -> None:
        cid = 100 + len(cond)
        cond.append({"condition_occurrence_id": cid, "person_id": p, "condition_concept_id": concept,
                     "condition_source_value": source, "condition_start_date": dt.date(2020, 3, 1),
                     "condition_type_concept_id": 32817})
        if link:
            meas.append({"measurement_id": 500 + len(meas), "person_id": p, "measurement_concept_id": STAGE,
                         "measurement_date": dt.date(2020, 3, 2), "measurement_type_concept_id": 32817,
                         "value_source_value": "II", "measurement_event_id": cid,
                         "meas_event_field_concept_id": CONDITION_FIELD})

    for p in persons:
        diagnosis(p, 201826, "E11.9", link=False)
        diagnosis(p, 4112853, "C50.9", link=p != 1)
        if p <= 3:
            diagnosis(p, 320128, "I10", link=False)
    diagnosis(1, 0, "8070/3-C34.3", link=True)  # unique, unmapped, no shorter code: removed by the engine
    return {"person": person, "location": location, "observation_period": period,
            "condition_occurrence": cdm.conform(pl.DataFrame(cond), "condition_occurrence"),
            "measurement": cdm.conform(pl.DataFrame(meas), "measurement")}


def _write(tables: dict[str, pl.DataFrame], version: Path) -> None:
    for name, df in tables.items():
        folder = version / "omop" / name
        folder.mkdir(parents=True)
        df.write_parquet(folder / "part-0.parquet")


def test_the_engine_counts_the_modifiers_that_leave_with_their_diagnosis(tmp_path: Path) -> None:
    policy = PrivacyPolicy.model_validate({"k": 3, "attacker_facts": 2, "fact_weight": 0})
    result = build_release({"hospital-a": _site()}, policy, KEY)
    t = result.tables
    assert t["person"].height == 5  # nobody suppressed: the class holds
    # the unique cancer is removed, and its stage measurement with it (the release's modifier rule)
    assert "8070/3-C34.3" not in t["condition_occurrence"]["condition_source_value"].to_list()
    links = t["measurement"]["measurement_event_id"].drop_nulls()
    assert links.is_in(t["condition_occurrence"]["condition_occurrence_id"].implode()).all()
    version = tmp_path / "omop-test" / "1"
    _write(t, version)
    audit = audit_release(version, policy.k, policy.attacker_facts, earlier=[])
    brute = release_check(version, policy.k, policy.attacker_facts)
    engine = result.report["km"]["after"]
    assert audit.at_risk == brute["release"]["at_risk"]  # the two readings of the files agree
    assert audit.at_risk == [0, 0, 0], audit.release.violating_columns
    assert engine == audit.at_risk  # and the engine's own figures say what the files hold


def test_a_modifier_unit_goes_only_when_every_row_of_it_goes() -> None:
    """Units 0 and 1: two diagnoses (rows 10 and 11); measurement units in their sorted order: unit 2 (M)
    a row linked to diagnosis 10 and an unlinked one (anchored); unit 3 (T) a row linked to a row that is
    not there (gone whatever the engine does); unit 4 (stage group) rows linked to both diagnoses."""
    cond = collect_units("condition_occurrence", pl.DataFrame({
        "person_id": [1, 1], "condition_concept_id": [11, 12], "condition_source_value": ["C50.9", "C34.3"],
        "condition_source_concept_id": [0, 0]}), 0)
    meas = collect_units("measurement", pl.DataFrame({
        "person_id": [1, 1, 1, 1, 1], "measurement_concept_id": [STAGE, STAGE, 3006575, 3006575, 3008841],
        "measurement_source_value": ["s", "s", "m", "m", "t"], "measurement_source_concept_id": [0] * 5}), 2)
    assert cond is not None and meas is not None
    linked = {"measurement": pl.DataFrame({
        "person_id": [1, 1, 1, 1], "measurement_concept_id": [STAGE, STAGE, 3006575, 3008841],
        "measurement_source_value": ["s", "s", "m", "t"], "measurement_source_concept_id": [0] * 4,
        "_target": ["condition_occurrence"] * 4, "_link": [10, 11, 10, 99], "_rows": [1, 1, 1, 1]})}
    targets = {"condition_occurrence": pl.DataFrame({
        "_id": [10, 11], "person_id": [1, 1], "condition_concept_id": [11, 12],
        "condition_source_value": ["C50.9", "C34.3"], "condition_source_concept_id": [0, 0]})}
    links = unit_links([cond, meas], linked, targets, 5)
    assert links.anchored.tolist() == [True, True, True, False, False]
    none = np.zeros(5, dtype=bool)
    assert links.orphaned(none).tolist() == [False, False, False, True, False]
    first = np.array([True, False, False, False, False])
    assert links.orphaned(first).tolist() == [False, False, False, True, False]
    both = np.array([True, True, False, False, False])
    assert links.orphaned(both).tolist() == [False, False, False, True, True]
