"""Issue 13, point 2: "Maps to value" is read, and a code with several standard targets gives one row
per target (as OHDSI's ETLs write them), on a hand-made vocabulary."""

from __future__ import annotations

import datetime as dt

import polars as pl

from transforms import staging
from transforms.omop import build_events, map_events
from transforms.vocabulary import Vocabulary, _empty

CONCEPTS = pl.DataFrame(
    [
        (1, "Family history of diabetes", "Observation", "ICD10", "ICD10 code", None, "Z83.3"),
        (2, "Diabetes with nephropathy", "Condition", "ICD10", "ICD10 code", None, "E11.2"),
        (10, "Family history of clinical finding", "Observation", "SNOMED", "Clinical Finding", "S", "416471007"),
        (20, "Diabetes mellitus", "Condition", "SNOMED", "Clinical Finding", "S", "73211009"),
        (30, "Type 2 diabetes mellitus", "Condition", "SNOMED", "Clinical Finding", "S", "44054006"),
        (31, "Diabetic renal disease", "Condition", "SNOMED", "Clinical Finding", "S", "127013003"),
    ],
    schema={"concept_id": pl.Int64, "concept_name": pl.String, "domain_id": pl.String, "vocabulary_id": pl.String,
            "concept_class_id": pl.String, "standard_concept": pl.String, "concept_code": pl.String},
    orient="row",
).with_columns(valid_start_date=pl.lit(dt.date(2000, 1, 1)), valid_end_date=pl.lit(dt.date(2099, 12, 31)),
               invalid_reason=pl.lit(None, pl.String))
PAIRS = {"concept_id_1": pl.Int32, "concept_id_2": pl.Int32}
VOCAB = Vocabulary(
    CONCEPTS, pl.DataFrame({"concept_id_1": [1, 2, 2], "concept_id_2": [10, 30, 31]}, schema=PAIRS),
    _empty("source_to_concept_map"), maps_to_value=pl.DataFrame({"concept_id_1": [1], "concept_id_2": [20]}, schema=PAIRS))


def _events() -> pl.DataFrame:
    start = dt.datetime(2020, 1, 1, 9)
    return staging.conform(pl.DataFrame({
        "event_key": ["a", "b"], "person_key": ["p", "p"], "kind": ["condition", "condition"],
        "code": ["Z83.3", "E11.2"], "code_system": ["ICD10", "ICD10"], "start": [start, start],
    }), "events").with_columns(person_id=pl.lit(1, pl.Int64), visit_occurrence_id=pl.lit(None, pl.Int64),
                               visit_detail_id=pl.lit(None, pl.Int64))


def test_maps_to_value_and_one_row_per_target() -> None:
    mapped = map_events(_events(), VOCAB).sort("event_key")
    assert mapped.select("event_key", "concept_id", "value_concept_id", "table").rows() == [
        ("a", 10, 20, "observation"),  # family history of (value) diabetes
        ("b", 30, None, "condition_occurrence"),
        ("b#31", 31, None, "condition_occurrence"),  # the second target of E11.2
    ]
    tables = build_events("s", mapped, VOCAB)
    obs = tables["observation"]
    assert obs.select("observation_concept_id", "value_as_concept_id", "observation_source_value").rows() == [
        (10, 20, "Z83.3")]
    cond = tables["condition_occurrence"]
    assert sorted(cond["condition_concept_id"]) == [30, 31] and cond["condition_occurrence_id"].n_unique() == 2
    assert set(cond["condition_source_value"]) == {"E11.2"}
