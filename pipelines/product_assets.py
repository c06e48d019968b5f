"""The `products` group: use-case data products built after the release, before it is published, and
published inside it under ``products/<name>/``. Aggregates are computed from the pseudonymised data
of the release's population (after opt-outs and person suppression), not from the generalised
tables, and leave only under disclosure control (anonymisation/disclosure.py).
"""


import json
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from pipelines.assets import _md_table
from pipelines.resources import Ds4hResource
from schemas.config import Config
from transforms.oncology_product import STAGE_MEASUREMENT, OncologyTables, oncology_tables
from transforms.storage import Workspace, has_partition, read_partition, scan_partition
from transforms.vocabulary import load_vocabulary

PRODUCTS = ("oncology", "t2dm-complications")
COHORTS = Path(__file__).resolve().parents[1] / "schemas" / "cohorts"
T2DM_SPEC = COHORTS / "type-2-diabetes.yaml"
OUTCOMES = {"retinopathy": "diabetic-retinopathy.json", "neuropathy": "diabetic-neuropathy.json",
            "nephropathy": "diabetic-nephropathy.json"}
T2DM_DESCRIPTION = (
    "The type 2 diabetes cohort (schemas/cohorts/type-2-diabetes.yaml) characterised with OHDSI FeatureExtraction's "
    "covariate ids (gender, 5-year age group, conditions, drugs and measurements in the year before index: persons "
    "and share per covariate), and per complication (retinopathy, neuropathy, nephropathy) the persons with a first "
    "onset within 1 and 5 years after index. An anonymised release carries these aggregates only; the "
    "PatientLevelPrediction-shaped person-level files are for pseudonymised releases and federated nodes (not built "
    "yet).")

ONCOLOGY_DESCRIPTION = (
    "Per cancer: incidence by 5-year band of diagnosis and sex, main stage group at diagnosis (0, I-IV), first- and "
    "second-line treatment regimens, and survival by stage (persons at risk at the start of each year "
    "since diagnosis and deaths in it, Kaplan-Meier ready), from OMOP EPISODE (OHDSI Oncology WG).")


def product_folder(ws: Workspace, name: str) -> Path:
    return ws.lake("release", "_products") / name


def population(ws: Workspace) -> pl.Series:
    """The pseudonymous ids of the persons the release holds (the pseudo zone's ids)."""
    released = read_partition(ws.lake("release", "person")).select("person_id")
    mapping = read_partition(ws.release_persons).select("person_id", "pseudo_person_id")
    return mapping.join(released, on="person_id", how="semi")["pseudo_person_id"].unique().sort()


def _pseudo(ws: Workspace, sites: list[str], table: str, keep: pl.Series,
            where: pl.Expr | None = None) -> pl.DataFrame:
    frames = []
    for site in sites:
        folder = ws.lake("pseudo", table, site)
        if has_partition(folder):
            lf = scan_partition(folder).filter(pl.col("person_id").is_in(keep.implode()))
            frames.append((lf.filter(where) if where is not None else lf).collect())
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame(schema={"person_id": pl.Int64})


def _columns(df: pl.DataFrame) -> list[dict[str, str]]:
    return [{"name": c, "type": str(t)} for c, t in df.schema.items()]


def write_oncology(folder: Path, tables: OncologyTables, k: int, round_to: int | None, persons: int) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    named = {"incidence": tables.incidence, "stage": tables.stage, "lines": tables.lines, "survival": tables.survival}
    for name, df in named.items():
        df.write_parquet(folder / f"{name}.parquet", compression="zstd", statistics=True)
    doc: dict[str, Any] = {
        "name": "oncology",
        "description": ONCOLOGY_DESCRIPTION,
        "population": f"the {persons:,} persons of the release; a cancer is a Disease First Occurrence episode (32528)",
        "cohort": None,
        "concept_sets": [],
        "tables": {name: {"rows": df.height, "columns": _columns(df)} for name, df in named.items()},
        "disclosure": {
            "k": k, "round_to": round_to,
            "rule": "counts between 1 and k-1 are withheld (null, suppressed = true) with their margins' "
                    "complements so that no withheld count equals a published total minus the published counts "
                    "of its other parts (secondary suppression); survival bins are withheld once fewer than k "
                    "persons are at risk and after a year whose deaths were withheld",
            "not_covered": "a withheld count can still be bounded by combining several totals; tables of the same "
                           "population are not protected jointly",
        },
    }
    (folder / "product.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return doc


def build_product_assets(cfg: Config) -> list[dg.AssetsDefinition]:
    @dg.asset(
        name="product_oncology",
        group_name="products",
        deps=["release_person", "release_episode"],
        kinds={"polars", "parquet"},
        description=ONCOLOGY_DESCRIPTION + " Published in the release under products/oncology/.",
    )
    def product_oncology(context: dg.AssetExecutionContext, ds4h: Ds4hResource) -> dg.MaterializeResult[Any]:
        config, ws = ds4h.config(), ds4h.workspace()
        keep = population(ws)
        sites = config.sites
        k = config.products_k
        tables = oncology_tables(
            episode=_pseudo(ws, sites, "episode", keep),
            episode_event=_episode_events(ws, sites),
            measurement=_pseudo(ws, sites, "measurement", keep, pl.col("measurement_concept_id") == STAGE_MEASUREMENT),
            person=_pseudo(ws, sites, "person", keep).unique("person_id", keep="first"),
            death=_pseudo(ws, sites, "death", keep),
            observation_period=_pseudo(ws, sites, "observation_period", keep),
            concept_names=load_vocabulary(config.vocabulary).concept.select("concept_id", "concept_name"),
            k=k, round_to=config.products.round_to)
        folder = product_folder(ws, "oncology")
        doc = write_oncology(folder, tables, k, config.products.round_to, len(keep))
        context.log.info(f"oncology product: {doc['tables']['stage']['rows']} stage cells, k = {k}")
        withheld = sum(int(df["suppressed"].sum()) for df in (tables.incidence, tables.stage, tables.lines, tables.survival))
        return dg.MaterializeResult(metadata={
            "path": dg.MetadataValue.path(str(folder)), "k": k, "persons": len(keep), "cells_withheld": withheld,
            "tables": _md_table(pl.DataFrame([{"table": n, "rows": t["rows"]} for n, t in doc["tables"].items()])),
        })

    @dg.asset(
        name="product_t2dm_complications",
        group_name="products",
        deps=["release_person", "release_condition_occurrence"],
        kinds={"polars", "parquet"},
        description=T2DM_DESCRIPTION + " Published in the release under products/t2dm-complications/.",
    )
    def product_t2dm_complications(context: dg.AssetExecutionContext, ds4h: Ds4hResource) -> dg.MaterializeResult[Any]:
        config, ws = ds4h.config(), ds4h.workspace()
        keep = population(ws)
        k = config.products_k
        vocab = load_vocabulary(config.vocabulary)
        tables = {t: _pseudo(ws, config.sites, t, keep) for t in
                  ("condition_occurrence", "drug_exposure", "measurement", "procedure_occurrence", "observation",
                   "observation_period")}
        tables["person"] = _pseudo(ws, config.sites, "person", keep).unique("person_id", keep="first")
        doc = build_t2dm(product_folder(ws, "t2dm-complications"), tables, vocab.ancestor,
                         vocab.maps_to.select("concept_id_1", "concept_id_2"),
                         vocab.concept.select("concept_id", "concept_name"), k=k, persons=len(keep))
        context.log.info(f"t2dm-complications: cohort of {doc['cohort_persons_shown']} persons, k = {k}")
        return dg.MaterializeResult(metadata={
            "path": dg.MetadataValue.path(str(product_folder(ws, "t2dm-complications"))), "k": k,
            "tables": _md_table(pl.DataFrame([{"table": n, "rows": t["rows"]} for n, t in doc["tables"].items()])),
        })

    return [product_oncology, product_t2dm_complications]


def build_t2dm(folder: Path, tables: dict[str, pl.DataFrame], ancestor: pl.DataFrame, maps_to: pl.DataFrame,
               concept_names: pl.DataFrame, *, k: int, persons: int) -> dict[str, Any]:
    """Build the T2DM cohort on ``tables``, characterise it and count each complication's onsets."""
    from schemas.cohort_spec import load_cohort_spec
    from transforms.characterisation import characterise
    from transforms.cohorts import build_cohort, concept_events
    from transforms.conceptsets import read_concept_set, resolve

    lazy = {t: df.lazy() for t, df in tables.items()}
    cohort = build_cohort(load_cohort_spec(T2DM_SPEC), lazy, ancestor, maps_to)
    covariates = characterise(cohort, tables["person"], tables, concept_names, k=k)
    index = cohort.group_by("subject_id").agg(pl.col("cohort_start_date").min())
    size = index.height
    rows: list[dict[str, Any]] = []
    for outcome, file in OUTCOMES.items():
        concepts = resolve(read_concept_set(COHORTS / file), ancestor, maps_to)
        onsets = (concept_events({t: lazy[t] for t in lazy if t != "person"}, concepts)
                  .group_by("person_id").agg(pl.col("event_date").min().alias("onset"))
                  .join(index.rename({"subject_id": "person_id"}), on="person_id"))
        prior = onsets.filter(pl.col("onset") <= pl.col("cohort_start_date")).height
        for years in (1, 5):
            n = onsets.filter((pl.col("onset") > pl.col("cohort_start_date"))
                              & (pl.col("onset") <= pl.col("cohort_start_date") + pl.duration(days=365 * years))).height
            rows.append({"outcome": outcome, "window_years": years, "persons_with_onset": n,
                         "persons_with_prior_outcome": prior})
    for first, second in zip(rows[::2], rows[1::2], strict=True):  # 1 and 5 years of one outcome
        if 0 < second["persons_with_onset"] - first["persons_with_onset"] < k:
            first["persons_with_onset"] = None  # else the 5-year count minus the 1-year count discloses it
    outcomes = pl.DataFrame(rows, schema={"outcome": pl.String, "window_years": pl.Int64,
                                          "persons_with_onset": pl.Int64, "persons_with_prior_outcome": pl.Int64})
    small = 0 < size < k
    outcomes = outcomes.with_columns(
        [pl.when(small | pl.col(c).is_between(1, k - 1)).then(None).otherwise(pl.col(c)).alias(c)
         for c in ("persons_with_onset", "persons_with_prior_outcome")])
    folder.mkdir(parents=True, exist_ok=True)
    covariates.write_parquet(folder / "covariates.parquet", compression="zstd", statistics=True)
    outcomes.write_parquet(folder / "outcomes.parquet", compression="zstd", statistics=True)
    doc: dict[str, Any] = {
        "name": "t2dm-complications",
        "description": T2DM_DESCRIPTION,
        "population": f"the {persons:,} persons of the release",
        "cohort": "schemas/cohorts/type-2-diabetes.yaml",
        "concept_sets": ["type-2-diabetes.json", *OUTCOMES.values()],
        "cohort_persons_shown": None if small else size,
        "tables": {"covariates": {"rows": covariates.height, "columns": _columns(covariates)},
                   "outcomes": {"rows": outcomes.height, "columns": _columns(outcomes)}},
        "disclosure": {
            "k": k, "round_to": None,
            "rule": "counts between 1 and k-1 are withheld (null); gender and age groups, which partition the cohort, "
                    "get secondary suppression against the cohort's size; a cohort smaller than k publishes nothing",
            "not_covered": "covariates of one person overlap (one person counts in many), so differences between "
                           "covariates are not protected jointly; a 1-year onset count is withheld when the 5-year "
                           "count exceeds it by 1 to k-1",
        },
    }
    (folder / "product.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return doc


def _episode_events(ws: Workspace, sites: list[str]) -> pl.DataFrame:
    """EPISODE_EVENT has no person_id: all rows (the join on the population's episodes filters them)."""
    frames = [read_partition(ws.lake("pseudo", "episode_event", s)) for s in sites
              if has_partition(ws.lake("pseudo", "episode_event", s))]
    return (pl.concat(frames, how="diagonal_relaxed") if frames
            else pl.DataFrame(schema={"episode_id": pl.Int64, "event_id": pl.Int64,
                                      "episode_event_field_concept_id": pl.Int32}))
