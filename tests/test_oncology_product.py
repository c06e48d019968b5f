"""The oncology product's aggregates on hand-made EPISODE data: what each table counts, and that no
count between 1 and k-1 leaves, nor one recoverable from the published ones."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from anonymisation.disclosure import ALL
from tests.test_disclosure import _audit
from transforms.oncology_product import oncology_tables

BREAST, LUNG = 4112853, 4115276
D = dt.date


def _data() -> dict[str, pl.DataFrame]:
    # 12 breast cancers (women, 2016-2018), 6 lung cancers (men, 2021); stage I for 8 breast, II for 4
    persons = list(range(1, 19))
    person = pl.DataFrame({"person_id": persons, "gender_concept_id": [8532] * 12 + [8507] * 6})
    ep, ev, meas = [], [], []
    for p in persons:
        breast = p <= 12
        ep.append({"episode_id": 100 + p, "person_id": p, "episode_concept_id": 32528,
                   "episode_start_date": D(2016 + p % 3, 3, 1) if breast else D(2021, 5, 1), "episode_parent_id": None,
                   "episode_number": None, "episode_object_concept_id": BREAST if breast else LUNG,
                   "episode_source_value": None})
        ev.append({"episode_id": 100 + p, "event_id": 1000 + p, "episode_event_field_concept_id": 1147127})
        if breast:
            meas.append({"person_id": p, "measurement_concept_id": 3022698, "measurement_event_id": 1000 + p,
                         "meas_event_field_concept_id": 1147127, "measurement_date": D(2016 + p % 3, 3, 2),
                         "value_source_value": "TNM stage 1" if p <= 8 else "TNM stage 2"})
            ep.append({"episode_id": 200 + p, "person_id": p, "episode_concept_id": 32531,
                       "episode_start_date": D(2016 + p % 3, 4, 1), "episode_parent_id": 100 + p, "episode_number": 1,
                       "episode_object_concept_id": 4273629, "episode_source_value": "cyclophosphamide+doxorubicin"})
            if p <= 6:
                ep.append({"episode_id": 300 + p, "person_id": p, "episode_concept_id": 32531,
                           "episode_start_date": D(2016 + p % 3, 9, 1), "episode_parent_id": 100 + p,
                           "episode_number": 2, "episode_object_concept_id": 4273629, "episode_source_value": "paclitaxel"})
    death = pl.DataFrame({"person_id": [13, 14, 15, 16, 17, 18], "death_date": [D(2021, 9, 1)] * 3 + [D(2023, 1, 1)] * 3})
    periods = pl.DataFrame({"person_id": persons, "observation_period_end_date": [D(2025, 12, 31)] * 18})
    names = pl.DataFrame({"concept_id": [BREAST, LUNG], "concept_name": ["Malignant neoplasm of breast",
                                                                          "Malignant tumor of lung"]})
    return {"episode": pl.DataFrame(ep), "episode_event": pl.DataFrame(ev), "measurement": pl.DataFrame(meas),
            "person": person, "death": death, "observation_period": periods, "concept_names": names}


def test_the_four_tables() -> None:
    t = oncology_tables(**_data(), k=3)
    stage = {(r["cancer"], r["stage"]): r["persons"] for r in t.stage.iter_rows(named=True)}
    assert stage[("Malignant neoplasm of breast", "I")] == 8
    assert stage[("Malignant neoplasm of breast", "II")] == 4
    assert stage[("Malignant tumor of lung", "unknown")] == 6 and stage[(ALL, ALL)] == 18
    lines = {(r["cancer"], r["first_line"], r["second_line"]): r["persons"] for r in t.lines.iter_rows(named=True)}
    assert lines[("Malignant neoplasm of breast", "cyclophosphamide+doxorubicin", "paclitaxel")] == 6
    assert lines[("Malignant neoplasm of breast", "cyclophosphamide+doxorubicin", "none")] == 6
    inc = {(r["cancer"], r["year_band"], r["sex"]): r["persons"] for r in t.incidence.iter_rows(named=True)}
    assert inc[("Malignant neoplasm of breast", "2015-2019", "female")] == 12
    assert inc[("Malignant tumor of lung", "2020-2024", "male")] == 6
    surv = {r["stage"]: r for r in t.survival.filter(pl.col("year") == 0).iter_rows(named=True)}
    assert surv["unknown"]["at_risk"] == 6 and surv["unknown"]["deaths"] == 3  # lung: 3 die within a year


def test_small_counts_are_withheld_and_not_recoverable() -> None:
    data = _data()
    t = oncology_tables(**data, k=5)
    for name, table, count in (("incidence", t.incidence, "persons"), ("stage", t.stage, "persons"),
                               ("lines", t.lines, "persons")):
        assert not table.filter(pl.col(count).is_between(1, 4)).height, name
    stage_cells = t.stage.filter((pl.col("cancer") != ALL) & (pl.col("stage") != ALL))
    assert stage_cells.filter(pl.col("stage") == "II")["persons"].to_list() == [None]  # 4 < k
    # the independent audit of test_disclosure on the stage table
    truth = pl.DataFrame({"cancer": ["Malignant neoplasm of breast", "Malignant neoplasm of breast",
                                     "Malignant tumor of lung"],
                          "stage": ["I", "II", "unknown"], "persons": [8, 4, 6]})
    assert _audit(t.stage.rename({"persons": "persons"}), truth, ["cancer", "stage"], 5) == []
    # survival: lung has 6 at risk, 3 deaths in year 0 (< 5): withheld, and every later bin too
    lung = t.survival.filter(pl.col("stage") == "unknown").sort("year")
    assert lung["at_risk"].to_list()[0] == 6 and lung["deaths"].to_list()[0] is None
    assert lung["at_risk"].to_list()[1:] == [None] * 4 and lung["suppressed"].all()
    published = [v for v in (*t.survival["at_risk"].to_list(), *t.survival["deaths"].to_list()) if v is not None]
    assert not [v for v in published if 0 < v < 5]


def test_persons_outside_the_population_are_not_counted() -> None:
    data = _data()
    data["person"] = data["person"].filter(pl.col("person_id") > 12)  # breast patients suppressed from the release
    t = oncology_tables(**data, k=3)
    assert set(t.stage.filter(pl.col("cancer") != ALL)["cancer"].to_list()) == {"Malignant tumor of lung"}


def test_round_to_rounds_every_published_count() -> None:
    t = oncology_tables(**_data(), k=3, round_to=5)
    shown = pl.concat([t.incidence["persons"], t.stage["persons"], t.lines["persons"]]).drop_nulls()
    assert shown.len() and (shown % 5 == 0).all()
    stage = {(r["cancer"], r["stage"]): r["persons"] for r in t.stage.iter_rows(named=True)}
    assert stage[("Malignant neoplasm of breast", "I")] == 10  # 8, to the nearest 5


def test_products_k_defaults_to_the_policy_and_never_goes_below_it(tmp_path: Path) -> None:
    from schemas.config import ConfigError, parse_config

    src = {"sources": [{"site": "a", "path": "landing/a"}]}
    assert parse_config(src, tmp_path).products_k == 5
    assert parse_config({**src, "products": {"k": 11}}, tmp_path).products_k == 11
    with pytest.raises(ConfigError, match=r"below policy\.k"):
        parse_config({**src, "products": {"k": 3}}, tmp_path)


def test_histologies_of_one_cancer_are_reported_as_that_cancer() -> None:
    """With the shipped concept sets, lung cancers coded as different ICD-O-3 histology-topography
    concepts (adenocarcinoma / squamous cell carcinoma of the upper lobe) count as one "lung cancer":
    otherwise every histology is its own cell and all of them fall below k."""
    from pipelines.product_assets import cancer_sets
    from transforms.vocabulary import load_vocabulary

    vocab = load_vocabulary()
    sets = cancer_sets(vocab.ancestor, vocab.maps_to)
    adeno, squamous = 44499882, 44500984  # 8140/3-C34.1, 8070/3-C34.1
    assert {adeno, squamous} <= set(sets["lung cancer"])
    assert not {adeno, squamous} & set(sets["breast cancer"])
    data = _data()
    data["episode"] = data["episode"].with_columns(
        episode_object_concept_id=pl.when(pl.col("episode_object_concept_id") == LUNG)
        .then(pl.when(pl.col("person_id") % 2 == 0).then(adeno).otherwise(squamous))
        .otherwise(pl.col("episode_object_concept_id")))
    t = oncology_tables(**data, k=3, cancers=sets)
    stage = {(r["cancer"], r["stage"]): r["persons"] for r in t.stage.iter_rows(named=True)}
    assert stage[("lung cancer", "unknown")] == 6  # 3 + 3 histologies: each alone would be withheld
    assert stage[("breast cancer", "I")] == 8  # 4112853 is in the breast set
    without = oncology_tables(**data, k=3)
    assert not without.stage.filter(pl.col("cancer") == "lung cancer").height
