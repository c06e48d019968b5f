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

PRODUCTS = ("oncology",)

ONCOLOGY_DESCRIPTION = (
    "Per cancer: incidence by 5-year band of diagnosis and sex, stage group at diagnosis, first- and "
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
        k = config.products.k or config.policy.k
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

    return [product_oncology]


def _episode_events(ws: Workspace, sites: list[str]) -> pl.DataFrame:
    """EPISODE_EVENT has no person_id: all rows (the join on the population's episodes filters them)."""
    frames = [read_partition(ws.lake("pseudo", "episode_event", s)) for s in sites
              if has_partition(ws.lake("pseudo", "episode_event", s))]
    return (pl.concat(frames, how="diagonal_relaxed") if frames
            else pl.DataFrame(schema={"episode_id": pl.Int64, "event_id": pl.Int64,
                                      "episode_event_field_concept_id": pl.Int32}))
