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
from transforms.storage import (
    Workspace,
    has_partition,
    read_partition,
    remove_tree,
    scan_partition,
    write_parquet_file,
)
from transforms.vocabulary import load_vocabulary

PRODUCTS = ("oncology", "t2dm-complications")
COHORTS = Path(__file__).resolve().parents[1] / "schemas" / "cohorts"
T2DM_SPEC = COHORTS / "type-2-diabetes.yaml"
# complication -> its concept set under schemas/cohorts/ (a new one: one entry here, files follow)
OUTCOMES = {"retinopathy": "diabetic-retinopathy.json", "neuropathy": "diabetic-neuropathy.json",
            "nephropathy": "diabetic-nephropathy.json", "diabetic_foot": "diabetic-foot.json"}
CANCERS = {"breast cancer": "breast-cancer.json", "lung cancer": "lung-cancer.json",
           "colorectal cancer": "colorectal-cancer.json", "prostate cancer": "prostate-cancer.json"}
T2DM_TABLES = ("condition_occurrence", "drug_exposure", "measurement", "procedure_occurrence", "observation",
               "observation_period", "death")
T2DM_DESCRIPTION = (
    "The type 2 diabetes cohort (schemas/cohorts/type-2-diabetes.yaml) characterised with OHDSI FeatureExtraction's "
    "covariate ids (gender, 5-year age group, conditions, drugs and measurements in the year before index: persons "
    "and share per covariate; the last HbA1c: persons and mean), and per complication (retinopathy, neuropathy, "
    "nephropathy, diabetic foot) the persons with a first onset within 1 and 5 years after index. An anonymised release carries "
    "these aggregates only; a pseudonymised release carries the PatientLevelPrediction-shaped person-level files "
    "instead.")
T2DM_PLP_DESCRIPTION = (
    "The type 2 diabetes cohort (schemas/cohorts/type-2-diabetes.yaml) in OHDSI PatientLevelPrediction's shape: per "
    "complication (retinopathy, neuropathy, nephropathy, diabetic foot) and risk window (1 and 5 years after index) the study "
    "population (rowId, subjectId, cohortStartDate, outcomeCount, timeAtRisk, survivalTime; prior outcome removed), "
    "and one set of sparse covariates (rowId, covariateId, covariateValue) with covariateRef and analysisRef, "
    "FeatureExtraction's ids: gender, 5-year age group, conditions, drugs and measurements in the year before index, "
    "the last HbA1c value. Person-level: built from this pseudonymised release's own tables (subjectId is its "
    "person_id, dates are its dates).")

ONCOLOGY_DESCRIPTION = (
    "Per cancer (breast, lung, colorectal, prostate by the shipped concept sets, every histology and site "
    "included; any other cancer under its concept's name): incidence by 5-year band of diagnosis and sex, main stage group at diagnosis (0, I-IV), first- and "
    "second-line treatment regimens, and survival by stage (persons at risk at the start of each year "
    "since diagnosis and deaths in it, Kaplan-Meier ready), from OMOP EPISODE (OHDSI Oncology WG).")


def product_folder(ws: Workspace, name: str) -> Path:
    return ws.lake("release", "_products") / name


def fresh_folder(folder: Path) -> Path:
    """``folder`` emptied: every file in it is published, so none of an earlier build may stay (an
    anonymised release must not inherit the person-level files of a pseudonymised one)."""
    remove_tree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


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


def write_product(folder: Path, named: dict[str, pl.DataFrame], doc: dict[str, Any]) -> dict[str, Any]:
    """Write each frame as ``<name>.parquet`` and ``product.json`` (``doc`` with the files and the
    tables' rows and columns added); returns the document."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, df in named.items():
        write_parquet_file(df, folder / f"{name}.parquet", compression="zstd", statistics=True)
    doc = {**doc, "files": [f"{name}.parquet" for name in named],
           "tables": {name: {"rows": df.height, "columns": _columns(df)} for name, df in named.items()}}
    (folder / "product.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return doc


def write_oncology(folder: Path, tables: OncologyTables, k: int, round_to: int | None, persons: int) -> dict[str, Any]:
    named = {"incidence": tables.incidence, "stage": tables.stage, "lines": tables.lines, "survival": tables.survival}
    doc: dict[str, Any] = {
        "name": "oncology",
        "description": ONCOLOGY_DESCRIPTION,
        "population": f"the {persons:,} persons of the release; a cancer is a Disease First Occurrence episode (32528)",
        "cohort": None,
        "concept_sets": sorted(CANCERS.values()),
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
    return write_product(folder, named, doc)


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
        k = config.products_k
        doc, withheld, persons = oncology_product(config, ws)
        folder = product_folder(ws, "oncology")
        context.log.info(f"oncology product: {doc['tables']['stage']['rows']} stage cells, k = {k}")
        return dg.MaterializeResult(metadata={
            "path": dg.MetadataValue.path(str(folder)), "k": k, "persons": persons, "cells_withheld": withheld,
            "tables": _md_table(pl.DataFrame([{"table": n, "rows": t["rows"]} for n, t in doc["tables"].items()])),
        })

    @dg.asset(
        name="product_t2dm_complications",
        group_name="products",
        deps=["release_person", *[f"release_{t}" for t in T2DM_TABLES]],
        kinds={"polars", "parquet"},
        description=T2DM_DESCRIPTION + " Published in the release under products/t2dm-complications/.",
    )
    def product_t2dm_complications(context: dg.AssetExecutionContext, ds4h: Ds4hResource) -> dg.MaterializeResult[Any]:
        config, ws = ds4h.config(), ds4h.workspace()
        k = config.products_k
        doc = t2dm_product(config, ws)
        folder = product_folder(ws, "t2dm-complications")
        if doc["person_level"]:
            context.log.info(f"t2dm-complications (PatientLevelPrediction files): {doc['cohort_persons']} persons")
        else:
            context.log.info(f"t2dm-complications: cohort of {doc['cohort_persons_shown']} persons, k = {k}")
        return dg.MaterializeResult(metadata={
            "path": dg.MetadataValue.path(str(folder)), "k": k, "mode": config.policy.mode,
            "tables": _md_table(pl.DataFrame([{"table": n, "rows": t["rows"]} for n, t in doc["tables"].items()])),
        })

    return [product_oncology, product_t2dm_complications]


def cancer_sets(ancestor: pl.DataFrame, maps_to: pl.DataFrame) -> dict[str, list[int]]:
    """The oncology product's cancers: label -> the concept ids of its shipped concept set (every
    histology and site of the cancer, ICD-O-3 concepts included, through CONCEPT_ANCESTOR)."""
    from transforms.conceptsets import read_concept_set, resolve

    pairs = maps_to.select("concept_id_1", "concept_id_2")
    return {label: resolve(read_concept_set(COHORTS / file), ancestor, pairs) for label, file in CANCERS.items()}


def oncology_product(config: Config, ws: Workspace) -> tuple[dict[str, Any], int, int]:
    """Write the oncology product of the release being built: (product.json, cells withheld, persons)."""
    keep = population(ws)
    sites = config.sites
    k = config.products_k
    vocab = load_vocabulary(config.vocabulary)
    tables = oncology_tables(
        episode=_pseudo(ws, sites, "episode", keep),
        episode_event=_episode_events(ws, sites),
        measurement=_pseudo(ws, sites, "measurement", keep, pl.col("measurement_concept_id") == STAGE_MEASUREMENT),
        person=_pseudo(ws, sites, "person", keep).unique("person_id", keep="first"),
        death=_pseudo(ws, sites, "death", keep),
        observation_period=_pseudo(ws, sites, "observation_period", keep),
        concept_names=vocab.concept.select("concept_id", "concept_name"),
        k=k, round_to=config.products.round_to, cancers=cancer_sets(vocab.ancestor, vocab.maps_to))
    doc = write_oncology(fresh_folder(product_folder(ws, "oncology")), tables, k, config.products.round_to, len(keep))
    withheld = sum(int(df["suppressed"].sum()) for df in (tables.incidence, tables.stage, tables.lines, tables.survival))
    return doc, withheld, len(keep)


def t2dm_product(config: Config, ws: Workspace) -> dict[str, Any]:
    """Write the t2dm-complications product of the release being built; returns its product.json.
    Pseudonymised mode: the PatientLevelPrediction files, from the release's own tables (its ids and
    dates); anonymised: the aggregates, from the pseudo zone's rows of the release's persons."""
    vocab = load_vocabulary(config.vocabulary)
    maps_to = vocab.maps_to.select("concept_id_1", "concept_id_2")
    names = vocab.concept.select("concept_id", "concept_name")
    folder = fresh_folder(product_folder(ws, "t2dm-complications"))
    if config.policy.mode == "pseudonymised":
        tables = {t: read_partition(ws.lake("release", t)) for t in ("person", *T2DM_TABLES)
                  if has_partition(ws.lake("release", t))}
        return build_t2dm_plp(folder, tables, vocab.ancestor, maps_to, names)
    keep = population(ws)
    tables = {t: _pseudo(ws, config.sites, t, keep) for t in T2DM_TABLES}
    tables["person"] = _pseudo(ws, config.sites, "person", keep).unique("person_id", keep="first")
    return build_t2dm(folder, tables, vocab.ancestor, maps_to, names, k=config.products_k, persons=len(keep),
                      round_to=config.products.round_to)


def _t2dm_cohort(tables: dict[str, pl.DataFrame], ancestor: pl.DataFrame, maps_to: pl.DataFrame
                 ) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    """The T2DM cohort on ``tables`` and, per complication, every (person_id, event_date) it is recorded."""
    from schemas.cohort_spec import load_cohort_spec
    from transforms.cohorts import build_cohort, concept_events
    from transforms.conceptsets import read_concept_set, resolve

    lazy = {t: df.lazy() for t, df in tables.items()}
    cohort = build_cohort(load_cohort_spec(T2DM_SPEC), lazy, ancestor, maps_to)
    events = {t: lf for t, lf in lazy.items() if t != "person"}
    return cohort, {outcome: concept_events(events, resolve(read_concept_set(COHORTS / file), ancestor, maps_to))
                    for outcome, file in OUTCOMES.items()}


def build_t2dm(folder: Path, tables: dict[str, pl.DataFrame], ancestor: pl.DataFrame, maps_to: pl.DataFrame,
               concept_names: pl.DataFrame, *, k: int, persons: int, round_to: int | None = None) -> dict[str, Any]:
    """Build the T2DM cohort on ``tables``, characterise it and count each complication's onsets. With
    ``round_to``, every published count (and the cohort's size) is rounded as anonymisation/disclosure.py
    rounds, and a binary covariate's share is recomputed from the rounded counts."""
    from anonymisation.disclosure import rounded, rounded_expr
    from transforms.characterisation import characterise
    from transforms.plp import VALUE_ANALYSIS, analysis_ref, hba1c_concepts

    cohort, outcome_events = _t2dm_cohort(tables, ancestor, maps_to)
    covariates = characterise(cohort, tables["person"], tables, concept_names, k=k,
                              value_concepts=hba1c_concepts(ancestor, maps_to))
    analyses = analysis_ref(set(covariates["analysis_id"].to_list()))
    index = cohort.group_by("subject_id").agg(pl.col("cohort_start_date").min())
    size = index.height
    rows: list[dict[str, Any]] = []
    for outcome, events in outcome_events.items():
        onsets = (events.group_by("person_id").agg(pl.col("event_date").min().alias("onset"))
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
    shown_size: int | None = None if small else size
    if round_to:
        if shown_size:
            shown_size = rounded(shown_size, k, round_to)
        covariates = covariates.with_columns(rounded_expr("persons", k, round_to)).with_columns(
            average_value=pl.when(pl.col("analysis_id") == VALUE_ANALYSIS).then(pl.col("average_value"))
            .when(pl.col("persons").is_null()).then(None)
            .otherwise(pl.col("persons") / max(shown_size or 1, 1)))
        outcomes = outcomes.with_columns([rounded_expr(c, k, round_to) for c in ("persons_with_onset",
                                                                                   "persons_with_prior_outcome")])
    named = {"covariates": covariates, "outcomes": outcomes, "analysis_ref": analyses}
    doc: dict[str, Any] = {
        "name": "t2dm-complications",
        "description": T2DM_DESCRIPTION,
        "mode": "anonymised",
        "person_level": False,
        "population": f"the {persons:,} persons of the release",
        "cohort": "schemas/cohorts/type-2-diabetes.yaml",
        "concept_sets": ["type-2-diabetes.json", *OUTCOMES.values()],
        "cohort_persons_shown": shown_size,
        "disclosure": {
            "k": k, "round_to": round_to,
            "rule": "counts between 1 and k-1 are withheld (null); with round_to, published counts are rounded to its "
                    "nearest multiple, never below k; gender and age groups, which partition the cohort, "
                    "get secondary suppression against the cohort's size; a cohort smaller than k publishes nothing; "
                    "average_value is the share of the cohort for a binary covariate and the mean value for a value "
                    "covariate (analysis 706, the last HbA1c: analysis_ref isBinary = N), withheld with its count",
            "not_covered": "covariates of one person overlap (one person counts in many), so differences between "
                           "covariates are not protected jointly; a 1-year onset count is withheld when the 5-year "
                           "count exceeds it by 1 to k-1",
        },
    }
    return write_product(folder, named, doc)


def build_t2dm_plp(folder: Path, tables: dict[str, pl.DataFrame], ancestor: pl.DataFrame, maps_to: pl.DataFrame,
                   concept_names: pl.DataFrame) -> dict[str, Any]:
    """The PatientLevelPrediction files of the T2DM cohort built on ``tables`` (a pseudonymised
    release's tables: its person ids and dates are what the files hold)."""
    from transforms.plp import WINDOWS, hba1c_concepts, plp_data

    cohort, outcome_events = _t2dm_cohort(tables, ancestor, maps_to)
    data = plp_data(cohort, tables, outcome_events, concept_names, hba1c_concepts(ancestor, maps_to))
    named = {f"population_{o}_{w}": data.populations[(o, w)] for o in OUTCOMES for w in WINDOWS}
    named |= {"covariates": data.covariates, "covariate_ref": data.covariate_ref, "analysis_ref": data.analysis_ref}
    doc: dict[str, Any] = {
        "name": "t2dm-complications",
        "description": T2DM_PLP_DESCRIPTION,
        "mode": "pseudonymised",
        "person_level": True,
        "population": "the persons of this pseudonymised release (subjectId = omop/person person_id)",
        "cohort": "schemas/cohorts/type-2-diabetes.yaml",
        "concept_sets": ["type-2-diabetes.json", *OUTCOMES.values()],
        "cohort_persons": cohort["subject_id"].n_unique(),
        "population_settings": {
            "riskWindowStart": 1, "startAnchor": "cohort start", "riskWindowEnd": dict(WINDOWS),
            "endAnchor": "cohort start", "removeSubjectsWithPriorOutcome": True, "priorOutcomeLookback": 99999,
            "requireTimeAtRisk": True, "minTimeAtRisk": {w: d - 1 for w, d in WINDOWS.items()},
            "includeAllOutcomes": True, "binary": True, "firstExposureOnly": True, "washoutPeriod": 0,
            "censoring": "the end of the observation period holding the index date, or death when earlier",
        },
        "disclosure": {
            "k": None, "round_to": None,
            "rule": "person-level rows: delivered only in a pseudonymised release, under its data permit; "
                    "no identifier other than the release's person_id (subjectId) and no date other than the "
                    "release's (cohortStartDate)",
            "not_covered": "not anonymous: the permit's terms and the access body's controls protect it",
        },
    }
    return write_product(folder, named, doc)


def _episode_events(ws: Workspace, sites: list[str]) -> pl.DataFrame:
    """EPISODE_EVENT has no person_id: all rows (the join on the population's episodes filters them)."""
    frames = [read_partition(ws.lake("pseudo", "episode_event", s)) for s in sites
              if has_partition(ws.lake("pseudo", "episode_event", s))]
    return (pl.concat(frames, how="diagonal_relaxed") if frames
            else pl.DataFrame(schema={"episode_id": pl.Int64, "event_id": pl.Int64,
                                      "episode_event_field_concept_id": pl.Int32}))
