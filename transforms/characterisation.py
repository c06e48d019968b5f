"""The aggregate characterisation of a cohort, with OHDSI FeatureExtraction's covariate ids
(``covariateId = conceptId * 1000 + analysisId``; inst/csv/PrespecAnalyses.csv):

| analysis | FeatureExtraction name | covariate |
|---|---|---|
| 1 | DemographicsGender | gender concept |
| 3 | DemographicsAgeGroup | 5-year age group at index (``covariateId = floor(age / 5) * 1000 + 3``) |
| 102 | ConditionOccurrenceLongTerm | condition concept starting in [index - 365 d, index] |
| 302 | DrugExposureLongTerm | drug concept starting in the long-term window |
| 702 | MeasurementLongTerm | measurement concept in the long-term window |
| 706 | MeasurementValueLongTerm | the last value of a concept and unit in the long-term window (``covariateId = conceptId * 1000000 + (unitConceptId mod 1000) * 1000 + 706``; transforms/plp.py) |

Per covariate: the persons and their share of the cohort (FeatureExtraction's aggregated ``sumValue``
and ``averageValue``); for a value covariate (706) the persons with a value and their mean value,
both withheld below k. Counts between 1 and k-1 are withheld; gender and age group partition the
cohort, so each gets secondary suppression against the cohort's size (anonymisation/disclosure.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from anonymisation.disclosure import ALL, protect
from transforms.plp import VALUE_ANALYSIS, covariates, index_dates

LONG_TERM_DAYS = 365
DOMAINS = {  # analysis id -> (table, concept column, date column)
    102: ("condition_occurrence", "condition_concept_id", "condition_start_date"),
    302: ("drug_exposure", "drug_concept_id", "drug_exposure_start_date"),
    702: ("measurement", "measurement_concept_id", "measurement_date"),
}
ANALYSIS_NAMES = {1: "DemographicsGender", 3: "DemographicsAgeGroup", 102: "ConditionOccurrenceLongTerm",
                  302: "DrugExposureLongTerm", 702: "MeasurementLongTerm"}
SCHEMA = {"covariate_id": pl.Int64, "covariate_name": pl.String, "analysis_id": pl.Int64, "concept_id": pl.Int64,
          "persons": pl.Int64, "average_value": pl.Float64, "suppressed": pl.Boolean}


def _partition(cells: pl.DataFrame, k: int, size: int) -> pl.DataFrame:
    """A covariate family that partitions the cohort (gender, age group), under secondary suppression."""
    if not cells.height:
        return cells
    p = protect(cells.select(pl.col("covariate_id").cast(pl.String), "persons"), ["covariate_id"], k=k).table
    shown = p.filter(pl.col("covariate_id") != ALL).select(
        pl.col("covariate_id").cast(pl.Int64), pl.col("persons").alias("shown"))
    return cells.join(shown, on="covariate_id").with_columns(
        suppressed=pl.col("shown").is_null(), persons=pl.col("shown")).drop("shown")


def characterise(cohort: pl.DataFrame, person: pl.DataFrame, tables: Mapping[str, pl.DataFrame],
                 concept_names: pl.DataFrame, *, k: int, value_concepts: list[int] | None = None) -> pl.DataFrame:
    """``cohort``: OHDSI's cohort table (subject_id, cohort_start_date); ``person``: person_id,
    gender_concept_id, year_of_birth; ``value_concepts``: the measurement concepts whose last value
    is a covariate (706). One row per covariate, sorted by covariate_id."""
    index = cohort.group_by("subject_id").agg(pl.col("cohort_start_date").min()).rename({"subject_id": "person_id"})
    size = index.height
    names = concept_names.select(pl.col("concept_id").cast(pl.Int64), "concept_name")
    base = index.join(person.select("person_id", "gender_concept_id", "year_of_birth"), on="person_id", how="left")
    gender = (base.group_by(pl.col("gender_concept_id").cast(pl.Int64).fill_null(0).alias("concept_id"))
              .agg(pl.len().cast(pl.Int64).alias("persons"))
              .with_columns(analysis_id=pl.lit(1, pl.Int64), covariate_id=pl.col("concept_id") * 1000 + 1))
    age = base.with_columns(
        group=((pl.col("cohort_start_date").dt.year() - pl.col("year_of_birth")) // 5).cast(pl.Int64))
    ages = (age.filter(pl.col("group").is_not_null() & (pl.col("group") >= 0)).group_by("group")
            .agg(pl.len().cast(pl.Int64).alias("persons"))
            .select(pl.lit(0, pl.Int64).alias("concept_id"), "persons", pl.lit(3, pl.Int64).alias("analysis_id"),
                    (pl.col("group") * 1000 + 3).alias("covariate_id"),
                    pl.format("age group: {} - {}", (pl.col("group") * 5).cast(pl.String).str.pad_start(3),
                              (pl.col("group") * 5 + 4).cast(pl.String).str.pad_start(3)).alias("label")))
    families = [_partition(gender, k, size).join(names, on="concept_id", how="left").with_columns(
                    covariate_name=pl.format("gender = {}", pl.col("concept_name").fill_null("unknown"))).drop("concept_name"),
                _partition(ages.drop("label"), k, size).join(ages.select("covariate_id", "label"), on="covariate_id")
                .rename({"label": "covariate_name"})]
    for analysis, (table, concept, date) in DOMAINS.items():
        df = tables.get(table)
        if df is None or not df.height:
            continue
        hits = (df.select("person_id", pl.col(concept).cast(pl.Int64).alias("concept_id"), pl.col(date).alias("d"))
                .join(index, on="person_id")
                .filter(pl.col("d").is_between(pl.col("cohort_start_date") - pl.duration(days=LONG_TERM_DAYS),
                                               pl.col("cohort_start_date")) & (pl.col("concept_id") > 0))
                .group_by("concept_id").agg(pl.col("person_id").n_unique().cast(pl.Int64).alias("persons")))
        families.append(hits.join(names, on="concept_id", how="left").with_columns(
            analysis_id=pl.lit(analysis, pl.Int64), covariate_id=pl.col("concept_id") * 1000 + analysis,
            suppressed=pl.col("persons").is_between(1, k - 1),
            covariate_name=pl.format("{} in the year before index: {}", pl.lit(table),
                                     pl.col("concept_name").fill_null(pl.col("concept_id").cast(pl.String))))
            .with_columns(persons=pl.when(pl.col("suppressed")).then(None).otherwise(pl.col("persons")))
            .drop("concept_name"))
    cols = ["covariate_id", "covariate_name", "analysis_id", "concept_id", "persons", "suppressed"]
    out = pl.concat([f.select(cols).cast({"persons": pl.Int64}) for f in families if f.height],
                    how="vertical_relaxed") if any(f.height for f in families) else (
        pl.DataFrame(schema={c: t for c, t in SCHEMA.items() if c != "average_value"}))
    out = out.with_columns(mean=pl.lit(None, pl.Float64))
    if value_concepts:
        out = pl.concat([out, _value_means(cohort, tables, value_concepts, concept_names, k)], how="vertical_relaxed")
    if 0 < size < k:  # the cohort itself is too small: its size would be disclosed by every share
        out = out.with_columns(persons=pl.lit(None, pl.Int64), suppressed=pl.lit(True))
    share = (pl.col("persons") / size) if size else pl.lit(None, pl.Float64)
    return (out.with_columns(average_value=pl.when(pl.col("analysis_id") == VALUE_ANALYSIS)
                             .then(pl.when(pl.col("persons").is_not_null()).then(pl.col("mean"))).otherwise(share))
            .select(*SCHEMA).cast(SCHEMA).sort("covariate_id"))  # type: ignore[arg-type]


def _value_means(cohort: pl.DataFrame, tables: Mapping[str, pl.DataFrame], concepts: list[int],
                 concept_names: pl.DataFrame, k: int) -> pl.DataFrame:
    """Per value covariate: persons with a value and their mean, both withheld when fewer than k."""
    index = index_dates(cohort)
    person = pl.DataFrame(schema={"person_id": pl.Int64, "gender_concept_id": pl.Int64, "year_of_birth": pl.Int64})
    measurement = tables.get("measurement")
    cov, ref = covariates(index, person, {"measurement": measurement} if measurement is not None else {},
                          concept_names, concepts)
    cov = cov.join(ref.filter(pl.col("analysisId") == VALUE_ANALYSIS), on="covariateId")
    agg = cov.group_by("covariateId", "covariateName", "analysisId", "conceptId").agg(
        persons=pl.len().cast(pl.Int64), mean=pl.col("covariateValue").mean())
    small = pl.col("persons") < k
    return agg.select(pl.col("covariateId").alias("covariate_id"), pl.col("covariateName").alias("covariate_name"),
                      pl.col("analysisId").cast(pl.Int64).alias("analysis_id"),
                      pl.col("conceptId").alias("concept_id"),
                      pl.when(small).then(None).otherwise(pl.col("persons")).alias("persons"),
                      small.alias("suppressed"), pl.when(small).then(None).otherwise(pl.col("mean")).alias("mean"))
