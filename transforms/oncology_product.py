"""The `oncology` data product's aggregates, from OMOP EPISODE (OHDSI Oncology WG conventions, as
transforms/episodes.py writes them) of one population, each protected by disclosure control
(anonymisation/disclosure.py) before it leaves:

- incidence: first occurrences of each cancer by year band of diagnosis and sex;
- stage: the main stage group at diagnosis (0, I, II, III, IV) of the stage measurement linked to the
  disease's conditions, whatever the source wrote (``IIB``, ``Stage 2b``, Synthea's ``TNM stage 2``:
  II); a value without a main group as recorded; ``unknown`` without a stage;
- lines: first- and second-line regimens (TreatmentPatterns-style sequences of combinations);
- survival: by stage, persons at risk at the start of each year since diagnosis and deaths in it
  (Kaplan-Meier ready); a bin is withheld once fewer than k persons are at risk, and after a year
  whose deaths (1..k-1) were withheld.

Pure polars; no Dagster. Concept ids: 32528 Disease First Occurrence, 32531 Treatment Regimen,
3022698 Stage group.clinical Cancer, 1147127 condition_occurrence.condition_occurrence_id.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from anonymisation.disclosure import protect
from transforms.cancer_registry import main_stage, normalise_stage

DISEASE, REGIMEN = 32528, 32531
STAGE_MEASUREMENT, CONDITION_FIELD = 3022698, 1147127
UNKNOWN = "unknown"


@dataclass(frozen=True)
class OncologyTables:
    incidence: pl.DataFrame  # cancer, year_band, sex, persons (null when withheld), suppressed, reason
    stage: pl.DataFrame  # cancer, stage, persons, suppressed, reason
    lines: pl.DataFrame  # cancer, first_line, second_line, persons, suppressed, reason
    survival: pl.DataFrame  # stage, year, at_risk, deaths (null when withheld), suppressed


def _diseases(episode: pl.DataFrame, concept_names: pl.DataFrame,
              cancers: dict[str, list[int]] | None = None) -> pl.DataFrame:
    """One row per disease episode; ``cancer`` its label in ``cancers`` (label -> resolved concept ids:
    the shipped concept sets, so that every histology and site of a lung cancer counts as "lung
    cancer"), else its concept's name."""
    names = concept_names.select(pl.col("concept_id").cast(pl.Int64), pl.col("concept_name").alias("cancer"))
    if cancers:
        labels = pl.DataFrame([{"concept_id": c, "label": label} for label, ids in sorted(cancers.items()) for c in ids],
                              schema={"concept_id": pl.Int64, "label": pl.String}).unique("concept_id", keep="first")
        names = names.join(labels, on="concept_id", how="full", coalesce=True).select(
            "concept_id", pl.coalesce("label", "cancer").alias("cancer"))
    return (episode.filter(pl.col("episode_concept_id") == DISEASE)
            .select("episode_id", "person_id", pl.col("episode_start_date").alias("diagnosed"),
                    pl.col("episode_object_concept_id").cast(pl.Int64).alias("concept_id"))
            .join(names, on="concept_id", how="left")
            .with_columns(pl.col("cancer").fill_null(pl.col("concept_id").cast(pl.String))))


def _stages(diseases: pl.DataFrame, episode_event: pl.DataFrame, measurement: pl.DataFrame) -> pl.DataFrame:
    """The disease's stage: the main group of the earliest stage measurement linked to one of its conditions."""
    links = episode_event.filter(pl.col("episode_event_field_concept_id") == CONDITION_FIELD).select(
        "episode_id", pl.col("event_id").alias("condition_occurrence_id"))
    stages = measurement.filter((pl.col("measurement_concept_id") == STAGE_MEASUREMENT)
                                & (pl.col("meas_event_field_concept_id") == CONDITION_FIELD)).select(
        pl.col("measurement_event_id").alias("condition_occurrence_id"), "measurement_date",
        pl.coalesce(main_stage(normalise_stage(pl.col("value_source_value"))), pl.col("value_source_value")).alias("stage"))
    first = (links.join(stages, on="condition_occurrence_id").sort("measurement_date", "stage")
             .group_by("episode_id", maintain_order=True).first().select("episode_id", "stage"))
    return diseases.join(first, on="episode_id", how="left").with_columns(pl.col("stage").fill_null(UNKNOWN))


def _year_band(col: str, width: int) -> pl.Expr:
    start = (pl.col(col).dt.year() // width) * width
    return pl.format("{}-{}", start, start + width - 1)


def oncology_tables(episode: pl.DataFrame, episode_event: pl.DataFrame, measurement: pl.DataFrame,
                    person: pl.DataFrame, death: pl.DataFrame, observation_period: pl.DataFrame,
                    concept_names: pl.DataFrame, *, k: int, year_band: int = 5, survival_years: int = 5,
                    round_to: int | None = None, cancers: dict[str, list[int]] | None = None) -> OncologyTables:
    """The four tables of the product, protected. ``person`` (person_id, gender_concept_id) is the
    population: episodes of persons outside it are not counted. ``cancers``: label -> concept ids of
    the cancers to report under one name (a disease outside them keeps its concept's name)."""
    diseases = _stages(_diseases(episode, concept_names, cancers), episode_event, measurement).join(
        person.select("person_id", pl.col("gender_concept_id").replace_strict(
            {8507: "male", 8532: "female"}, default="other", return_dtype=pl.String).alias("sex")),
        on="person_id", how="inner")
    incidence = diseases.group_by(pl.col("cancer"), _year_band("diagnosed", year_band).alias("year_band"),
                                  "sex").agg(pl.col("person_id").n_unique().alias("persons"))
    stage = diseases.group_by("cancer", "stage").agg(pl.col("person_id").n_unique().alias("persons"))

    regimens = (episode.filter(pl.col("episode_concept_id") == REGIMEN)
                .select(pl.col("episode_parent_id").alias("episode_id"), "episode_number",
                        pl.col("episode_source_value").fill_null(UNKNOWN).alias("regimen")))
    line = (diseases.select("episode_id", "person_id", "cancer")
            .join(regimens.filter(pl.col("episode_number") == 1).select("episode_id", pl.col("regimen").alias("first_line")),
                  on="episode_id", how="inner")
            .join(regimens.filter(pl.col("episode_number") == 2).select("episode_id", pl.col("regimen").alias("second_line")),
                  on="episode_id", how="left")
            .with_columns(pl.col("second_line").fill_null("none")))
    lines = line.group_by("cancer", "first_line", "second_line").agg(pl.col("person_id").n_unique().alias("persons"))

    # survival from the first diagnosis of each person's cancer: death, else censored at the end of observation
    ends = observation_period.group_by("person_id").agg(pl.col("observation_period_end_date").max().alias("obs_end"))
    deaths = death.select("person_id", "death_date").group_by("person_id").agg(pl.col("death_date").min())
    follow = (diseases.sort("diagnosed").group_by("person_id", maintain_order=True).first()
              .join(ends, on="person_id", how="left").join(deaths, on="person_id", how="left")
              .with_columns(end=pl.coalesce("death_date", "obs_end", "diagnosed"), died=pl.col("death_date").is_not_null())
              .with_columns(years=(pl.col("end") - pl.col("diagnosed")).dt.total_days() / 365.25))
    rows = []
    for stage_value, grp in sorted(follow.group_by("stage"), key=lambda g: str(g[0][0])):
        withheld = False
        for year in range(survival_years):
            at_risk = grp.filter(pl.col("years") >= year).height
            deaths_in = grp.filter(pl.col("died") & (pl.col("years") >= year) & (pl.col("years") < year + 1)).height
            withheld = withheld or at_risk < k
            small = 0 < deaths_in < k
            rows.append({"stage": str(stage_value[0]), "year": year, "at_risk": None if withheld else at_risk,
                         "deaths": None if withheld or small else deaths_in, "suppressed": withheld or small})
            # a withheld death count would be the difference of two published numbers at risk (when
            # nobody is censored): every later bin of the stage is withheld too
            withheld = withheld or small
    survival = pl.DataFrame(rows, schema={"stage": pl.String, "year": pl.Int64, "at_risk": pl.Int64,
                                          "deaths": pl.Int64, "suppressed": pl.Boolean})
    return OncologyTables(
        incidence=protect(incidence, ["cancer", "year_band", "sex"], k=k, round_to=round_to).table,
        stage=protect(stage, ["cancer", "stage"], k=k, round_to=round_to).table,
        lines=protect(lines, ["cancer", "first_line", "second_line"], k=k, round_to=round_to).table,
        survival=survival,
    )
