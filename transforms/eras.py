"""Condition and drug eras (OMOP CDM v5.4 CONDITION_ERA and DRUG_ERA), pure polars.

Both follow the OHDSI era scripts published with the CDM ("SQL Scripts" page of
https://ohdsi.github.io/CommonDataModel/sqlScripts.html, source ``rmd/sqlScripts.Rmd`` of
OHDSI/CommonDataModel; the drug era is taken there from OHDSI/ETL-CMS
``create_CDMv5_drug_era_non_stockpile.sql``). The scripts' start/end "ordinal" trick is a running
maximum of end dates: sorted by start, a record joins the current era when its start is on or before
(the largest end so far + persistence window). Hence a gap (next start − previous end) of exactly
``persistence_days`` still merges and one day more starts a new era.

Condition era (OHDSI "Condition Eras" script):
- end of an occurrence = ``coalesce(condition_end_date, condition_start_date + 1 day)``;
- occurrences with ``condition_concept_id`` 0 (unmapped) or a null person or start are left out (the
  OHDSI script keeps concept 0; the newer OHDSI variants and this project do not: unmapped codes
  must not be merged into one "condition");
- era start = first start, era end = largest end, ``condition_occurrence_count`` = occurrences merged.

Drug era (OHDSI "Drug Eras" script, non-stockpile):
- ``drug_concept_id`` rolls up through CONCEPT_ANCESTOR to every standard RxNorm / RxNorm Extension
  concept of class Ingredient above it (an ingredient rolls up to itself; a combination drug gives
  one era row per ingredient, as in OHDSI);
- end of an exposure = ``coalesce(drug_exposure_end_date, start + days_supply, start + 1 day)``,
  where ``days_supply`` 0 counts as missing (the script's ``NULLIF``); exposures with a negative
  ``days_supply`` are left out, as in the script;
- first overlapping (or touching) exposures of one ingredient merge into sub-exposures with no gap,
  then sub-exposures merge with the persistence window;
- ``gap_days`` = (era end − era start) − days covered by the sub-exposures, i.e. the days of the era
  not covered by any exposure; ``drug_exposure_count`` = exposures merged.

An end date before its start (bad data) is raised to the start date, so no interval is negative.
Era ids are stable, unkeyed 63-bit hashes (``transforms.omop.stable_id``) of the site and
``person_id|concept_id|era start``, so the same input always gives the same ids.
"""

from __future__ import annotations

from typing import NamedTuple

import polars as pl

from schemas import omop as cdm
from transforms.ids import stable_id

INGREDIENT_VOCABULARIES = ("RxNorm", "RxNorm Extension")


def merge_intervals(
    df: pl.DataFrame, keys: list[str], start: str, end: str, persistence_days: int, out: str = "era"
) -> pl.DataFrame:
    """Number the eras of ``[start, end]`` intervals within ``keys`` (column ``out``, from 1 per key).

    An interval joins the current era when its start is at most ``persistence_days`` after the
    largest end seen so far in that era (OHDSI's rule); otherwise it opens a new era.
    """
    if persistence_days < 0:
        raise ValueError(f"persistence_days must be >= 0, got {persistence_days}")
    reach = pl.col(end).cum_max().shift(1).over(keys)
    opens = reach.is_null() | (pl.col(start) > reach + pl.duration(days=persistence_days))
    return (
        df.sort([*keys, start, end])
        .with_columns(_opens=opens)
        .with_columns(pl.col("_opens").cast(pl.Int32).cum_sum().over(keys).alias(out))
        .drop("_opens")
    )


def _era_ids(site: str, table: str, df: pl.DataFrame, concept: str, start: str) -> pl.Series:
    key = pl.concat_str(
        [pl.col("person_id").cast(pl.String), pl.col(concept).cast(pl.String), pl.col(start).cast(pl.String)],
        separator="|",
    )
    return stable_id(f"{table}:{site}", df.select(key.alias("k"))["k"])


def condition_era(condition_occurrence: pl.DataFrame, site: str, persistence_days: int = 30) -> pl.DataFrame:
    """CONDITION_ERA rows from CONDITION_OCCURRENCE (OHDSI condition era logic, see module doc)."""
    co = condition_occurrence.select(
        pl.col("person_id").cast(pl.Int64),
        concept=pl.col("condition_concept_id").cast(pl.Int32),
        start=pl.col("condition_start_date").cast(pl.Date),
        end=pl.col("condition_end_date").cast(pl.Date),
    ).filter(
        pl.col("person_id").is_not_null() & pl.col("start").is_not_null()
        & pl.col("concept").is_not_null() & (pl.col("concept") != 0)
    )
    co = co.with_columns(end=pl.coalesce("end", pl.col("start") + pl.duration(days=1)))
    co = co.with_columns(end=pl.max_horizontal("start", "end"))
    merged = merge_intervals(co, ["person_id", "concept"], "start", "end", persistence_days)
    eras = merged.group_by("person_id", "concept", "era").agg(
        condition_era_start_date=pl.col("start").min(),
        condition_era_end_date=pl.col("end").max(),
        condition_occurrence_count=pl.len(),
    ).rename({"concept": "condition_concept_id"})
    eras = eras.sort("person_id", "condition_concept_id", "condition_era_start_date")
    eras = eras.with_columns(
        condition_era_id=_era_ids(site, "condition_era", eras, "condition_concept_id", "condition_era_start_date")
    )
    return cdm.conform(eras, "condition_era")


class DrugEraResult(NamedTuple):
    """DRUG_ERA rows and the exposures that gave none (for row accounting)."""

    eras: pl.DataFrame
    skipped_no_ingredient: int  # drug_concept_id 0 or without a standard RxNorm ingredient ancestor
    skipped_invalid: int  # null person or start date, or negative days_supply


def ingredient_map(ancestor: pl.DataFrame, concept: pl.DataFrame) -> pl.DataFrame:
    """descendant drug concept -> ingredient concept (standard RxNorm/RxNorm Extension Ingredients)."""
    ingredients = concept.filter(
        (pl.col("concept_class_id") == "Ingredient")
        & pl.col("vocabulary_id").is_in(list(INGREDIENT_VOCABULARIES))
        & (pl.col("standard_concept") == "S")
    ).select(ingredient_concept_id=pl.col("concept_id").cast(pl.Int32))
    return (
        ancestor.select(
            pl.col("ancestor_concept_id").cast(pl.Int32), pl.col("descendant_concept_id").cast(pl.Int32)
        )
        .join(ingredients, left_on="ancestor_concept_id", right_on="ingredient_concept_id", how="inner")
        .select("descendant_concept_id", ingredient_concept_id="ancestor_concept_id")
        .unique()
        .sort("descendant_concept_id", "ingredient_concept_id")
    )


def drug_era(
    drug_exposure: pl.DataFrame,
    ancestor: pl.DataFrame,
    concept: pl.DataFrame,
    site: str,
    persistence_days: int = 30,
) -> DrugEraResult:
    """DRUG_ERA rows from DRUG_EXPOSURE rolled up to ingredients (OHDSI drug era logic, see module doc).

    ``ancestor`` needs ancestor_concept_id and descendant_concept_id; ``concept`` needs concept_id,
    vocabulary_id, concept_class_id and standard_concept. Returns a ``DrugEraResult`` (a named tuple:
    ``eras, skipped_no_ingredient, skipped_invalid = drug_era(...)``).
    """
    de = drug_exposure.select(
        pl.col("person_id").cast(pl.Int64),
        drug_concept_id=pl.col("drug_concept_id").cast(pl.Int32),
        start=pl.col("drug_exposure_start_date").cast(pl.Date),
        end=pl.col("drug_exposure_end_date").cast(pl.Date),
        days_supply=pl.col("days_supply").cast(pl.Int32),
    )
    valid = (
        pl.col("person_id").is_not_null() & pl.col("start").is_not_null()
        & (pl.col("days_supply").fill_null(0) >= 0)
    )
    n_invalid = de.filter(~valid).height
    de = de.filter(valid)
    mapped = de.join(ingredient_map(ancestor, concept), left_on="drug_concept_id",
                     right_on="descendant_concept_id", how="inner")
    has_ingredient = pl.col("drug_concept_id").is_in(mapped["drug_concept_id"].unique().implode())
    n_no_ingredient = de.filter(~has_ingredient.fill_null(False)).height
    supply_end = pl.when(pl.col("days_supply") > 0).then(
        pl.col("start") + pl.duration(days=pl.col("days_supply"))
    )
    mapped = mapped.with_columns(
        end=pl.coalesce("end", supply_end, pl.col("start") + pl.duration(days=1))
    ).with_columns(end=pl.max_horizontal("start", "end"))
    keys = ["person_id", "ingredient_concept_id"]
    # 1. overlapping or touching exposures -> sub-exposures (no gap allowed)
    sub = merge_intervals(mapped, keys, "start", "end", 0, out="sub").group_by([*keys, "sub"]).agg(
        start=pl.col("start").min(), end=pl.col("end").max(), n=pl.len()
    ).with_columns(days_exposed=(pl.col("end") - pl.col("start")).dt.total_days())
    # 2. sub-exposures -> eras with the persistence window
    eras = merge_intervals(sub, keys, "start", "end", persistence_days).group_by([*keys, "era"]).agg(
        drug_era_start_date=pl.col("start").min(),
        drug_era_end_date=pl.col("end").max(),
        drug_exposure_count=pl.col("n").sum(),
        exposed=pl.col("days_exposed").sum(),
    ).rename({"ingredient_concept_id": "drug_concept_id"})
    eras = eras.with_columns(
        gap_days=(pl.col("drug_era_end_date") - pl.col("drug_era_start_date")).dt.total_days() - pl.col("exposed")
    ).sort("person_id", "drug_concept_id", "drug_era_start_date")
    eras = eras.with_columns(
        drug_era_id=_era_ids(site, "drug_era", eras, "drug_concept_id", "drug_era_start_date")
    )
    return DrugEraResult(cdm.conform(eras, "drug_era"), n_no_ingredient, n_invalid)
