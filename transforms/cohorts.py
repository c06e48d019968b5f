"""Cohorts the OHDSI way: a cohort spec (schemas/cohort_spec.py) applied to OMOP CDM tables, written
as OHDSI's cohort table (``cohort_definition_id, subject_id, cohort_start_date, cohort_end_date``),
with the attrition (persons and events left after each rule).

As an ATLAS cohort definition does it:

1. entry events: rows of the five event tables holding a concept of the entry set in their standard
   or source concept column; the index date is the event's date (one event per person and day);
2. the event must fall inside one of the person's observation periods;
3. ``occurrence: first`` keeps each person's earliest entry event, before the inclusion rules (a
   person whose first event fails a rule is out, not moved to a later event);
4. inclusion rules: age at index (year of the index date minus year of birth, bounds included; a
   person without a year of birth fails it), prior observation (index date minus the observation
   period's start, in days, at least N), and each exclusion concept set (an event is removed when
   its person holds a concept of the set, in any event table, on or before the index date);
5. the cohort end: the observation period's end, the index date, or index + N days (never after the
   observation period's end);
6. a person's overlapping eras (``occurrence: all``) are collapsed: an era whose start falls inside
   the previous one (start <= its end) extends it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from schemas.cohort_spec import CohortSpec, EndDays
from transforms.conceptsets import concept_rows, read_concept_set, resolve

# the event date of each event table
EVENT_DATES: dict[str, str] = {
    "condition_occurrence": "condition_start_date",
    "procedure_occurrence": "procedure_date",
    "drug_exposure": "drug_exposure_start_date",
    "measurement": "measurement_date",
    "observation": "observation_date",
}

COHORT_SCHEMA = pl.Schema({
    "cohort_definition_id": pl.Int64(), "subject_id": pl.Int64(),
    "cohort_start_date": pl.Date(), "cohort_end_date": pl.Date(),
})

Attrition = list[dict[str, str | int]]


class CohortError(ValueError):
    """Tables a cohort cannot be built from (the message says what is missing)."""


def concept_events(tables: Mapping[str, pl.LazyFrame], concepts: list[int]) -> pl.DataFrame:
    """One row per person and day with any of ``concepts`` in a standard or source concept column of
    the event tables present in ``tables``: ``person_id`` (Int64), ``event_date`` (Date)."""
    frames = []
    for table, rows, names in concept_rows(tables, concepts):
        date = EVENT_DATES[table]
        if date not in names:
            raise CohortError(f"{table} has no {date} column: its events cannot be dated")
        frames.append(rows.filter(pl.col(date).is_not_null()).select(
            pl.col("person_id").cast(pl.Int64), pl.col(date).cast(pl.Date).alias("event_date")))
    if not frames:
        return pl.DataFrame(schema={"person_id": pl.Int64, "event_date": pl.Date})
    return pl.concat(frames).unique().sort("person_id", "event_date").collect()


def _step(attrition: Attrition, rule: str, events: pl.DataFrame) -> None:
    attrition.append({"rule": rule, "persons": events["person_id"].n_unique(), "events": events.height})


def _concepts(path: Path, ancestor: pl.DataFrame, maps_to: pl.DataFrame) -> list[int]:
    return resolve(read_concept_set(path), ancestor, maps_to)


def collapse_eras(rows: pl.DataFrame) -> pl.DataFrame:
    """Merge each person's overlapping (start, end) rows: a row starting on or before the latest end
    so far of the person's earlier rows extends that era. Columns ``person_id, start, end``."""
    if rows.is_empty():
        return rows.select("person_id", "start", "end")
    rows = rows.sort("person_id", "start", "end")
    prev_end = pl.col("end").cum_max().shift(1).over("person_id")
    return (rows.with_columns(new=(prev_end.is_null() | (pl.col("start") > prev_end)))
            .with_columns(era=pl.col("new").cast(pl.Int64).cum_sum().over("person_id"))
            .group_by("person_id", "era")
            .agg(pl.col("start").min(), pl.col("end").max())
            .sort("person_id", "start")
            .select("person_id", "start", "end"))


def build_cohort_with_attrition(spec: CohortSpec, tables: Mapping[str, pl.LazyFrame], ancestor: pl.DataFrame,
                                maps_to: pl.DataFrame) -> tuple[pl.DataFrame, Attrition]:
    """The cohort table of ``spec`` on ``tables`` (OMOP tables by name: the event tables,
    observation_period, and person when the spec has an age rule) and its attrition: one
    ``{"rule", "persons", "events"}`` per rule, in order."""
    if "observation_period" not in tables:
        raise CohortError("no observation_period table: entry events must fall inside an observation period")
    if spec.age_at_index is not None and "person" not in tables:
        raise CohortError("no person table: the age at index needs year_of_birth")
    attrition: Attrition = []

    events = concept_events(tables, _concepts(spec.entry, ancestor, maps_to)).rename({"event_date": "index_date"})
    _step(attrition, f"entry events ({spec.entry.name})", events)

    periods = tables["observation_period"].select(
        pl.col("person_id").cast(pl.Int64),
        pl.col("observation_period_start_date").cast(pl.Date).alias("op_start"),
        pl.col("observation_period_end_date").cast(pl.Date).alias("op_end")).collect()
    events = (events.join(periods, on="person_id", how="inner")
              .filter(pl.col("index_date").is_between(pl.col("op_start"), pl.col("op_end")))
              .sort("person_id", "index_date", "op_start", "op_end")
              .unique(["person_id", "index_date"], keep="first", maintain_order=True))
    _step(attrition, "inside an observation period", events)

    if spec.occurrence == "first":
        events = events.unique("person_id", keep="first", maintain_order=True)
        _step(attrition, "first occurrence per person", events)

    age = spec.age_at_index
    if age is not None:
        births = tables["person"].select(pl.col("person_id").cast(pl.Int64),
                                         pl.col("year_of_birth").cast(pl.Int64)).collect()
        years = pl.col("index_date").dt.year().cast(pl.Int64) - pl.col("year_of_birth")
        keep = pl.col("year_of_birth").is_not_null()
        if age.min is not None:
            keep &= years >= age.min
        if age.max is not None:
            keep &= years <= age.max
        events = events.join(births, on="person_id", how="left").filter(keep).drop("year_of_birth")
        if age.min is not None and age.max is not None:
            bounds = f"{age.min} to {age.max}"
        else:
            bounds = f">= {age.min}" if age.min is not None else f"<= {age.max}"
        _step(attrition, f"age at index {bounds} years", events)

    if spec.prior_observation_days > 0:
        events = events.filter((pl.col("index_date") - pl.col("op_start")).dt.total_days()
                               >= spec.prior_observation_days)
        _step(attrition, f"at least {spec.prior_observation_days} days of prior observation", events)

    for path in spec.exclusions:
        hits = concept_events(tables, _concepts(path, ancestor, maps_to))
        flagged = (events.select("person_id", "index_date").join(hits, on="person_id", how="inner")
                   .filter(pl.col("event_date") <= pl.col("index_date"))
                   .select("person_id", "index_date").unique())
        events = events.join(flagged, on=["person_id", "index_date"], how="anti", maintain_order="left")
        _step(attrition, f"none of {path.name} on or before index", events)

    if isinstance(spec.end, EndDays):
        end = pl.min_horizontal(pl.col("index_date") + pl.duration(days=spec.end.days), pl.col("op_end"))
    elif spec.end == "index":
        end = pl.col("index_date")
    else:
        end = pl.col("op_end")
    eras = collapse_eras(events.select("person_id", pl.col("index_date").alias("start"), end.alias("end")))
    cohort = eras.select(
        pl.lit(spec.cohort_definition_id, dtype=pl.Int64).alias("cohort_definition_id"),
        pl.col("person_id").alias("subject_id"),
        pl.col("start").alias("cohort_start_date"),
        pl.col("end").alias("cohort_end_date"),
    ).cast(COHORT_SCHEMA).sort("subject_id", "cohort_start_date")
    attrition.append({"rule": "cohort eras (overlaps collapsed)", "persons": cohort["subject_id"].n_unique(),
                      "events": cohort.height})
    return cohort, attrition


def build_cohort(spec: CohortSpec, tables: Mapping[str, pl.LazyFrame], ancestor: pl.DataFrame,
                 maps_to: pl.DataFrame) -> pl.DataFrame:
    """OHDSI's cohort table of ``spec`` (see :func:`build_cohort_with_attrition`)."""
    return build_cohort_with_attrition(spec, tables, ancestor, maps_to)[0]
