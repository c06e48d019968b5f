"""Harmonise one site's typed hospital-csv extract into OMOP CDM v5.4 tables (identifiable zone).

Ids in this zone are stable, unkeyed 63-bit hashes of the site and the source key (so they survive
new extracts); the pseudonymisation stage replaces them with keyed pseudonyms. Source values keep
the hospital's own codes and ids: this zone never leaves the hospital.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import polars as pl

from schemas import omop as cdm
from schemas.geo import postcode_index
from transforms.ingest import accounting_frame
from transforms.vocabulary import Vocabulary

GENDER = {"M": 8507, "F": 8532}
VISIT = {"INPATIENT": 9201, "OUTPATIENT": 9202, "EMERGENCY": 9203}
EHR = 32817
EHR_ENCOUNTER = 32827
PERIOD_TYPE = 32882  # Standard algorithm from EHR


def stable_id(namespace: str, values: pl.Series) -> pl.Series:
    """Unkeyed, stable 63-bit ids for the identifiable zone (blake2b of namespace and value)."""
    distinct = values.drop_nulls().unique().sort()
    ids = [
        int.from_bytes(hashlib.blake2b(f"{namespace}\x1f{v}".encode(), digest_size=8).digest(), "big") & ((1 << 63) - 1)
        for v in distinct.to_list()
    ]
    lut = pl.DataFrame({"v": distinct, "id": pl.Series(ids, dtype=pl.Int64)})
    return values.to_frame("v").join(lut, on="v", how="left", maintain_order="left")["id"]


@dataclass
class OmopResult:
    tables: dict[str, pl.DataFrame]
    accounting: pl.DataFrame
    unmapped: pl.DataFrame  # table, source_value, description, rows
    stats: dict[str, float] = field(default_factory=dict)


def _person_ids(site: str, patients: pl.DataFrame) -> pl.DataFrame:
    return patients.select("patient_id").with_columns(person_id=stable_id(f"person:{site}", patients["patient_id"]))


def build_location(site: str, patients: pl.DataFrame) -> pl.DataFrame:
    idx = postcode_index()
    loc = patients.select(
        address_1=pl.col("address"), city=pl.col("city"), zip=pl.col("postcode")
    ).unique().sort("zip", "city", "address_1", nulls_last=True)
    key = pl.concat_str([pl.col("address_1"), pl.col("zip"), pl.col("city")], separator="|", ignore_nulls=True)
    loc = loc.with_columns(location_key=key)
    loc = loc.with_columns(location_id=stable_id(f"location:{site}", loc["location_key"]))
    canton = pl.col("zip").replace_strict({k: v.canton for k, v in idx.items()}, default=None, return_dtype=pl.String)
    loc = loc.with_columns(
        county=canton,
        country_source_value=pl.lit("LU"),
        location_source_value=pl.col("location_key"),
    )
    return cdm.conform(loc, "location")


def build_person(site: str, patients: pl.DataFrame, location: pl.DataFrame) -> pl.DataFrame:
    key = pl.concat_str([pl.col("address"), pl.col("postcode"), pl.col("city")], separator="|", ignore_nulls=True)
    p = patients.with_columns(
        person_id=stable_id(f"person:{site}", patients["patient_id"]),
        location_source_value=key,
    ).join(location.select("location_id", "location_source_value"), on="location_source_value", how="left",
           maintain_order="left")
    p = p.with_columns(
        gender_concept_id=pl.col("sex").replace_strict(GENDER, default=0, return_dtype=pl.Int32),
        year_of_birth=pl.col("birth_date").dt.year(),
        month_of_birth=pl.col("birth_date").dt.month(),
        day_of_birth=pl.col("birth_date").dt.day(),
        birth_datetime=pl.col("birth_date").cast(pl.Datetime("us")),
        race_concept_id=pl.lit(0),
        ethnicity_concept_id=pl.lit(0),
        person_source_value=pl.col("patient_id"),
        gender_source_value=pl.col("sex"),
        gender_source_concept_id=pl.lit(0),
    )
    return cdm.conform(p, "person").sort("person_id")


def build_visits(site: str, stays: pl.DataFrame, persons: pl.DataFrame) -> pl.DataFrame:
    v = stays.join(persons, on="patient_id", how="inner", maintain_order="left").with_columns(
        visit_occurrence_id=stable_id(f"visit:{site}", stays["stay_id"]),
        visit_concept_id=pl.col("stay_type").replace_strict(VISIT, default=0, return_dtype=pl.Int32),
        visit_start_date=pl.col("admission").dt.date(),
        visit_start_datetime=pl.col("admission"),
        visit_end_date=pl.coalesce("discharge", "admission").dt.date(),
        visit_end_datetime=pl.coalesce("discharge", "admission"),
        visit_type_concept_id=pl.lit(EHR_ENCOUNTER),
        visit_source_value=pl.col("stay_id"),
        visit_source_concept_id=pl.lit(0),
    )
    return cdm.conform(v, "visit_occurrence").sort("visit_occurrence_id")


def build_conditions(
    site: str, diagnoses: pl.DataFrame, persons: pl.DataFrame, visits: pl.DataFrame, vocab: Vocabulary
) -> pl.DataFrame:
    d = vocab.lookup(diagnoses, "icd10_code", "ICD10", "condition")
    visit_ids = visits.select(stay_id=pl.col("visit_source_value"), visit_occurrence_id="visit_occurrence_id")
    d = d.join(persons, on="patient_id", how="inner", maintain_order="left").join(
        visit_ids, on="stay_id", how="left", maintain_order="left"
    )
    d = d.with_columns(
        condition_occurrence_id=stable_id(f"condition:{site}", d["diagnosis_id"]),
        condition_start_date=pl.col("diagnosis_date"),
        condition_start_datetime=pl.col("diagnosis_date").cast(pl.Datetime("us")),
        condition_type_concept_id=pl.lit(EHR),
        condition_source_value=pl.col("icd10_code"),
        condition_status_source_value=pl.col("diagnosis_rank"),
    )
    return cdm.conform(d, "condition_occurrence").sort("condition_occurrence_id")


def build_observation_period(persons: pl.DataFrame, visits: pl.DataFrame, conditions: pl.DataFrame) -> pl.DataFrame:
    dates = pl.concat([
        visits.select("person_id", start="visit_start_date", end="visit_end_date"),
        conditions.select("person_id", start="condition_start_date", end="condition_start_date"),
    ])
    op = dates.group_by("person_id").agg(
        observation_period_start_date=pl.col("start").min(), observation_period_end_date=pl.col("end").max()
    ).join(persons.select("person_id"), on="person_id", how="inner")
    op = op.with_columns(
        observation_period_id=pl.col("person_id"), period_type_concept_id=pl.lit(PERIOD_TYPE)
    )
    return cdm.conform(op, "observation_period").sort("person_id")


def harmonise_site(site: str, raw: dict[str, pl.DataFrame], vocab: Vocabulary) -> OmopResult:
    """raw entity tables (typed, valid) -> OMOP tables of the identifiable zone."""
    patients, stays, diagnoses = raw["patients"], raw["stays"], raw["diagnoses"]
    location = build_location(site, patients)
    person = build_person(site, patients, location)
    pid = person.select("person_id", patient_id=pl.col("person_source_value"))
    visits = build_visits(site, stays, pid)
    conditions = build_conditions(site, diagnoses, pid, visits, vocab)
    op = build_observation_period(person, visits, conditions)
    acc: list[dict[str, object]] = []
    for table, src, out in (
        ("person", patients, person), ("location", None, location), ("visit_occurrence", stays, visits),
        ("condition_occurrence", diagnoses, conditions), ("observation_period", None, op),
    ):
        if src is None:
            acc.append(dict(table=table, category="produced", reason_code=None, rows=out.height))
        else:
            acc.append(dict(table=table, category="in", reason_code=None, rows=src.height))
            acc.append(dict(table=table, category="out", reason_code=None, rows=out.height))
            if src.height != out.height:
                raise AssertionError(f"{table}: {src.height} rows in, {out.height} out: rows lost in harmonisation")
    unmapped = (
        conditions.filter(pl.col("condition_concept_id") == 0)
        .join(diagnoses.select(condition_source_value="icd10_code", description="description").unique("condition_source_value"),
              on="condition_source_value", how="left")
        .group_by("condition_source_value", "description").len("rows")
        .select(table=pl.lit("condition_occurrence"), source_value="condition_source_value", description="description", rows="rows")
        .sort("rows", "source_value", descending=[True, False])
    )
    mapped = conditions.height - int(unmapped["rows"].sum())
    return OmopResult(
        tables={"person": person, "location": location, "visit_occurrence": visits,
                "condition_occurrence": conditions, "observation_period": op},
        accounting=accounting_frame("omop", site, acc),
        unmapped=unmapped,
        stats={"condition_mapped_share": mapped / conditions.height if conditions.height else 1.0},
    )
