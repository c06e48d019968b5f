"""A cohort in OHDSI PatientLevelPrediction's shape, from OMOP CDM frames of one site or several
(concatenated): the same functions serve a release and a federated node on its own site's data.

Covariates (FeatureExtraction, inst/csv/PrespecAnalyses.csv and the SQL of inst/sql/sql_server/),
for each subject at its index date (the first ``cohort_start_date``):

| analysis | name | covariateId | covariateValue |
|---|---|---|---|
| 1 | DemographicsGender | gender_concept_id * 1000 + 1 (concept 0 skipped) | 1 |
| 3 | DemographicsAgeGroup | floor((year(index) - year_of_birth) / 5) * 1000 + 3 | 1 |
| 102 | ConditionOccurrenceLongTerm | conceptId * 1000 + 102, start in [index - 365, index] | 1 |
| 302 | DrugExposureLongTerm | conceptId * 1000 + 302, start in the long-term window | 1 |
| 702 | MeasurementLongTerm | conceptId * 1000 + 702, date in the long-term window | 1 |
| 706 | MeasurementValueLongTerm | conceptId * 1000000 + (unitConceptId mod 1000) * 1000 + 706 | the last value |

706 is DomainValueAsNumber.sql: per measurement concept and unit, the value of the latest
measurement in the long-term window (ties: the lowest value); measurements without a number or a
unit concept are not used. Here it is restricted to the HbA1c concepts (``hba1c_concepts``).

The study population follows createStudyPopulation (R/PopulationSettings.R): risk window
[index + 1, index + 365 * years] days, its end censored at the end of the observation period holding
the index date and at death; subjects with the outcome before the window (index day included) are
removed (removeSubjectsWithPriorOutcome, priorOutcomeLookback 99999); a subject without the outcome
in the window needs ``tarEnd >= tarStart + minTimeAtRisk`` (requireTimeAtRisk, includeAllOutcomes),
``minTimeAtRisk`` being the whole window (364 at 1 year: PLP's default); ``outcomeCount`` is 0 or 1
(binary), ``timeAtRisk = tarEnd - tarStart + 1``, ``survivalTime`` the days from the window's start
to the first outcome, or ``timeAtRisk`` without one (both + 1, as PLP counts them).

``rowId``: 1..N over the cohort's subjects sorted by subject id, the same in every file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

LONG_TERM_START, END_DAY = -365, 0
RISK_WINDOW_START = 1
WINDOWS = {"1y": 365, "5y": 1825}  # risk window end (days after index) per population file
PRIOR_OUTCOME_LOOKBACK = 99999
HBA1C = 3004410  # LOINC 4548-4 Hemoglobin A1c/Hemoglobin.total in Blood

DOMAINS = {  # analysis id -> (table, concept column, date column, domain id, FeatureExtraction name)
    102: ("condition_occurrence", "condition_concept_id", "condition_start_date", "Condition",
          "ConditionOccurrenceLongTerm"),
    302: ("drug_exposure", "drug_concept_id", "drug_exposure_start_date", "Drug", "DrugExposureLongTerm"),
    702: ("measurement", "measurement_concept_id", "measurement_date", "Measurement", "MeasurementLongTerm"),
}
VALUE_ANALYSIS = 706

POPULATION_SCHEMA = {"rowId": pl.Int64, "subjectId": pl.Int64, "cohortStartDate": pl.Date,
                     "outcomeCount": pl.Int32, "timeAtRisk": pl.Int32, "survivalTime": pl.Int32}
COVARIATE_SCHEMA = {"rowId": pl.Int64, "covariateId": pl.Int64, "covariateValue": pl.Float64}
COVARIATE_REF_SCHEMA = {"covariateId": pl.Int64, "covariateName": pl.String, "analysisId": pl.Int32,
                        "conceptId": pl.Int64}
ANALYSIS_REF_SCHEMA = {"analysisId": pl.Int32, "analysisName": pl.String, "domainId": pl.String,
                       "startDay": pl.Int32, "endDay": pl.Int32, "isBinary": pl.String,
                       "missingMeansZero": pl.String}
# as each FeatureExtraction SQL file inserts its #analysis_ref row (start/end day NULL for
# demographics and for DomainValueAsNumber; missing_means_zero NULL for binary analyses)
ANALYSIS_REF = [
    (1, "DemographicsGender", "Demographics", None, None, "Y", None),
    (3, "DemographicsAgeGroup", "Demographics", None, None, "Y", None),
    *[(a, d[4], d[3], LONG_TERM_START, END_DAY, "Y", None) for a, d in DOMAINS.items()],
    (VALUE_ANALYSIS, "MeasurementValueLongTerm", "Measurement", None, None, "N", "N"),
]


@dataclass(frozen=True)
class PlpData:
    populations: dict[tuple[str, str], pl.DataFrame]  # (outcome, "1y" | "5y") -> study population
    covariates: pl.DataFrame  # rowId, covariateId, covariateValue
    covariate_ref: pl.DataFrame
    analysis_ref: pl.DataFrame


def index_dates(cohort: pl.DataFrame) -> pl.DataFrame:
    """rowId, subjectId, cohortStartDate: each subject's first cohort start, rowId dense by subject id."""
    return (cohort.group_by(pl.col("subject_id").cast(pl.Int64).alias("subjectId"))
            .agg(pl.col("cohort_start_date").cast(pl.Date).min().alias("cohortStartDate"))
            .sort("subjectId")
            .with_row_index("rowId", offset=1)
            .select(pl.col("rowId").cast(pl.Int64), "subjectId", "cohortStartDate"))


def hba1c_concepts(ancestor: pl.DataFrame, maps_to: pl.DataFrame) -> list[int]:
    """3004410, its descendants (CONCEPT_ANCESTOR) and the concepts that map to it (Maps to)."""
    desc = ancestor.filter(pl.col("ancestor_concept_id") == HBA1C)["descendant_concept_id"].cast(pl.Int64)
    mapped = maps_to.filter(pl.col("concept_id_2") == HBA1C)["concept_id_1"].cast(pl.Int64)
    return sorted({HBA1C, *desc.to_list(), *mapped.to_list()})


def _names(concept_names: pl.DataFrame) -> pl.DataFrame:
    return concept_names.select(pl.col("concept_id").cast(pl.Int64), "concept_name")


def _in_window(date: str) -> pl.Expr:
    d = pl.col(date).cast(pl.Date)
    return (d <= pl.col("cohortStartDate") + pl.duration(days=END_DAY)) & (
        d >= pl.col("cohortStartDate") + pl.duration(days=LONG_TERM_START))


def last_values(index: pl.DataFrame, measurement: pl.DataFrame | None, concepts: list[int]) -> pl.DataFrame:
    """rowId, covariateId, covariateValue, conceptId, unitConceptId: analysis 706 restricted to
    ``concepts`` (the latest value per subject, concept and unit in the long-term window)."""
    empty = pl.DataFrame(schema={**COVARIATE_SCHEMA, "conceptId": pl.Int64, "unitConceptId": pl.Int64})
    need = {"person_id", "measurement_concept_id", "measurement_date", "value_as_number", "unit_concept_id"}
    if measurement is None or not measurement.height or not need <= set(measurement.columns):
        return empty
    rows = (measurement.select(pl.col("person_id").cast(pl.Int64).alias("subjectId"),
                               pl.col("measurement_concept_id").cast(pl.Int64).alias("conceptId"),
                               pl.col("unit_concept_id").cast(pl.Int64).alias("unitConceptId"),
                               pl.col("measurement_date").cast(pl.Date),
                               pl.col("value_as_number").cast(pl.Float64))
            .filter(pl.col("conceptId").is_in(concepts) & (pl.col("conceptId") != 0)
                    & pl.col("value_as_number").is_not_null() & pl.col("unitConceptId").is_not_null())
            .join(index, on="subjectId")
            .filter(_in_window("measurement_date")))
    if not rows.height:
        return empty
    return (rows.sort("rowId", "conceptId", "unitConceptId", "measurement_date", "value_as_number",
                      descending=[False, False, False, True, False])
            .unique(["rowId", "conceptId", "unitConceptId"], keep="first", maintain_order=True)
            .select("rowId",
                    (pl.col("conceptId") * 1_000_000 + (pl.col("unitConceptId") % 1000) * 1000
                     + VALUE_ANALYSIS).alias("covariateId"),
                    pl.col("value_as_number").alias("covariateValue"), "conceptId", "unitConceptId"))


def covariates(index: pl.DataFrame, person: pl.DataFrame, tables: Mapping[str, pl.DataFrame],
               concept_names: pl.DataFrame, value_concepts: list[int]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(covariates, covariateRef) of the subjects of ``index`` (:func:`index_dates`), FeatureExtraction's
    ids and names; sorted by rowId, covariateId and by covariateId."""
    names = _names(concept_names)
    base = index.join(person.select(pl.col("person_id").cast(pl.Int64).alias("subjectId"),
                                    pl.col("gender_concept_id").cast(pl.Int64),
                                    pl.col("year_of_birth").cast(pl.Int64)).unique("subjectId", keep="first"),
                      on="subjectId", how="left")
    parts: list[pl.DataFrame] = []  # rowId, covariateId, covariateValue, analysisId, conceptId, covariateName
    gender = base.filter(pl.col("gender_concept_id").is_not_null() & (pl.col("gender_concept_id") != 0)).join(
        names, left_on="gender_concept_id", right_on="concept_id", how="left")
    parts.append(gender.select("rowId", (pl.col("gender_concept_id") * 1000 + 1).alias("covariateId"),
                               pl.lit(1.0).alias("covariateValue"), pl.lit(1, pl.Int32).alias("analysisId"),
                               pl.col("gender_concept_id").alias("conceptId"),
                               pl.format("gender = {}", pl.col("concept_name").fill_null("Unknown concept"))
                               .alias("covariateName")))
    group = (pl.col("cohortStartDate").dt.year().cast(pl.Int64) - pl.col("year_of_birth")) // 5
    ages = base.filter(pl.col("year_of_birth").is_not_null() & (pl.col("year_of_birth") > 0)).with_columns(g=group)
    parts.append(ages.filter(pl.col("g") >= 0).select(
        "rowId", (pl.col("g") * 1000 + 3).alias("covariateId"), pl.lit(1.0).alias("covariateValue"),
        pl.lit(3, pl.Int32).alias("analysisId"), pl.lit(0, pl.Int64).alias("conceptId"),
        pl.format("age group: {} - {}", (pl.col("g") * 5).cast(pl.String).str.pad_start(3),
                  (pl.col("g") * 5 + 4).cast(pl.String).str.pad_start(3)).alias("covariateName")))
    for analysis, (table, concept, date, _domain, _name) in DOMAINS.items():
        df = tables.get(table)
        if df is None or not df.height:
            continue
        hits = (df.select(pl.col("person_id").cast(pl.Int64).alias("subjectId"),
                          pl.col(concept).cast(pl.Int64).alias("conceptId"), pl.col(date))
                .join(index, on="subjectId")
                .filter(_in_window(date) & pl.col("conceptId").is_not_null() & (pl.col("conceptId") != 0))
                .select("rowId", "conceptId").unique()
                .join(names, left_on="conceptId", right_on="concept_id", how="left"))
        parts.append(hits.select(
            "rowId", (pl.col("conceptId") * 1000 + analysis).alias("covariateId"), pl.lit(1.0).alias("covariateValue"),
            pl.lit(analysis, pl.Int32).alias("analysisId"), "conceptId",
            pl.format("{} during day {} through {} days relative to index: {}", pl.lit(table), pl.lit(LONG_TERM_START),
                      pl.lit(END_DAY), pl.col("concept_name").fill_null("Unknown concept")).alias("covariateName")))
    values = last_values(index, tables.get("measurement"), value_concepts)
    if values.height:
        unit = names.rename({"concept_id": "unitConceptId", "concept_name": "unit_name"})
        parts.append(values.join(names, left_on="conceptId", right_on="concept_id", how="left")
                     .join(unit, on="unitConceptId", how="left").select(
            "rowId", "covariateId", "covariateValue", pl.lit(VALUE_ANALYSIS, pl.Int32).alias("analysisId"), "conceptId",
            pl.format("measurement value during day {} through {} days relative to index: {} ({})",
                      pl.lit(LONG_TERM_START), pl.lit(END_DAY), pl.col("concept_name").fill_null("Unknown concept"),
                      pl.when(pl.col("unitConceptId") == 0).then(pl.lit("Unknown unit"))
                      .otherwise(pl.col("unit_name").fill_null("Unknown unit"))).alias("covariateName")))
    cols = ["rowId", "covariateId", "covariateValue", "analysisId", "conceptId", "covariateName"]
    long = pl.concat([p.select(cols).cast({"rowId": pl.Int64, "covariateId": pl.Int64, "covariateValue": pl.Float64,
                                           "analysisId": pl.Int32, "conceptId": pl.Int64})
                      for p in parts], how="vertical") if parts else pl.DataFrame(
        schema={**COVARIATE_SCHEMA, "analysisId": pl.Int32, "conceptId": pl.Int64, "covariateName": pl.String})
    cov = long.select(*COVARIATE_SCHEMA).sort("rowId", "covariateId")
    ref = (long.select(*COVARIATE_REF_SCHEMA).unique("covariateId", keep="first").sort("covariateId")
           .cast(COVARIATE_REF_SCHEMA))  # type: ignore[arg-type]
    return cov, ref


def analysis_ref(analyses: set[int] | None = None) -> pl.DataFrame:
    """FeatureExtraction's analysisRef rows of the analyses used (all by default)."""
    rows = [r for r in ANALYSIS_REF if analyses is None or r[0] in analyses]
    return pl.DataFrame(rows, schema=ANALYSIS_REF_SCHEMA, orient="row")


def censor_days(index: pl.DataFrame, observation_period: pl.DataFrame | None,
                death: pl.DataFrame | None) -> pl.DataFrame:
    """rowId, daysToEnd: days from index to the end of the observation period holding the index date,
    or to death when earlier (null: no period holds the index date)."""
    out = index.select("rowId", "subjectId", "cohortStartDate")
    if observation_period is not None and observation_period.height:
        op = (observation_period.select(pl.col("person_id").cast(pl.Int64).alias("subjectId"),
                                        pl.col("observation_period_start_date").cast(pl.Date).alias("s"),
                                        pl.col("observation_period_end_date").cast(pl.Date).alias("e"))
              .join(out, on="subjectId")
              .filter((pl.col("s") <= pl.col("cohortStartDate")) & (pl.col("e") >= pl.col("cohortStartDate")))
              .group_by("rowId").agg(pl.col("e").max()))
        out = out.join(op, on="rowId", how="left")
    else:
        out = out.with_columns(e=pl.lit(None, pl.Date))
    if death is not None and death.height:
        d = (death.select(pl.col("person_id").cast(pl.Int64).alias("subjectId"), pl.col("death_date").cast(pl.Date))
             .group_by("subjectId").agg(pl.col("death_date").min()))
        out = out.join(d, on="subjectId", how="left")
    else:
        out = out.with_columns(death_date=pl.lit(None, pl.Date))
    end = pl.when(pl.col("death_date").is_not_null() & (pl.col("death_date") < pl.col("e"))).then(
        pl.col("death_date")).otherwise(pl.col("e"))
    return out.select("rowId", (end - pl.col("cohortStartDate")).dt.total_days().cast(pl.Int64).alias("daysToEnd"))


def study_population(index: pl.DataFrame, ends: pl.DataFrame, outcome_dates: pl.DataFrame, window_end: int,
                     min_time_at_risk: int | None = None) -> pl.DataFrame:
    """createStudyPopulation of one outcome: ``ends`` from :func:`censor_days`, ``outcome_dates``
    (person_id, event_date) every day the outcome is recorded; ``window_end`` the days after index the
    risk window ends; ``min_time_at_risk`` defaults to the whole window (window_end - 1)."""
    min_tar = window_end - RISK_WINDOW_START if min_time_at_risk is None else min_time_at_risk
    pop = index.join(ends, on="rowId", how="left").with_columns(
        tarStart=pl.lit(RISK_WINDOW_START, pl.Int64),
        tarEnd=pl.min_horizontal(pl.lit(window_end, pl.Int64), pl.col("daysToEnd")).fill_null(RISK_WINDOW_START - 1))
    days = (outcome_dates.select(pl.col("person_id").cast(pl.Int64).alias("subjectId"),
                                 pl.col("event_date").cast(pl.Date))
            .join(pop.select("rowId", "subjectId", "cohortStartDate", "tarStart", "tarEnd"), on="subjectId")
            .with_columns(d=(pl.col("event_date") - pl.col("cohortStartDate")).dt.total_days().cast(pl.Int64)))
    prior = days.filter((pl.col("d") < pl.col("tarStart")) & (pl.col("d") > -PRIOR_OUTCOME_LOOKBACK))["rowId"].unique()
    first = (days.filter(pl.col("d").is_between(pl.col("tarStart"), pl.col("tarEnd")))
             .group_by("rowId").agg(pl.col("d").min().alias("first")))
    pop = (pop.join(first, on="rowId", how="left")
           .filter(~pl.col("rowId").is_in(prior.implode()))
           .filter(pl.col("first").is_not_null() | (pl.col("tarEnd") >= pl.col("tarStart") + min_tar)))
    tar = pl.col("tarEnd") - pl.col("tarStart") + 1
    return pop.select(
        "rowId", "subjectId", "cohortStartDate",
        pl.col("first").is_not_null().cast(pl.Int32).alias("outcomeCount"),
        tar.cast(pl.Int32).alias("timeAtRisk"),
        pl.when(pl.col("first").is_null()).then(tar).otherwise(pl.col("first") - pl.col("tarStart") + 1)
        .cast(pl.Int32).alias("survivalTime"),
    ).sort("rowId").cast(POPULATION_SCHEMA)  # type: ignore[arg-type]


def plp_data(cohort: pl.DataFrame, tables: Mapping[str, pl.DataFrame], outcomes: Mapping[str, pl.DataFrame],
             concept_names: pl.DataFrame, value_concepts: list[int],
             windows: Mapping[str, int] = WINDOWS) -> PlpData:
    """The PLP files of ``cohort`` (OHDSI's cohort table): ``tables`` the OMOP tables by name (person,
    observation_period, death, condition_occurrence, drug_exposure, measurement), ``outcomes`` name ->
    (person_id, event_date) of each outcome (transforms.cohorts.concept_events)."""
    index = index_dates(cohort)
    person = tables.get("person", pl.DataFrame(schema={"person_id": pl.Int64, "gender_concept_id": pl.Int64,
                                                       "year_of_birth": pl.Int64}))
    cov, ref = covariates(index, person, tables, concept_names, value_concepts)
    ends = censor_days(index, tables.get("observation_period"), tables.get("death"))
    pops = {(name, label): study_population(index, ends, dates, days)
            for name, dates in outcomes.items() for label, days in windows.items()}
    used = set(ref["analysisId"].to_list())
    return PlpData(pops, cov, ref, analysis_ref(used))
