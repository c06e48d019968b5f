"""Dagster assets of ds4h: thin wrappers that call pure functions and record metadata.

raw_<entity>  --> omop_<table>  --> pseudo_<table>   (partitioned by site)
                                        --> release_<table>  (all sites)  --> published_release
Each stage is one multi-asset per partition: it writes its own Parquet through the storage helper
and returns MaterializeResult and AssetCheckResult events. Metadata never holds an identifier.
"""


import datetime as dt
from collections.abc import Iterator
from typing import Any

import dagster as dg
import polars as pl

from anonymisation.leakscan import identifiers_from_patients, scan_table
from anonymisation.pseudonymise import identity_frame, pseudonymise_site, read_opt_outs
from pipelines.resources import Ds4hResource
from schemas import omop as cdm
from schemas.config import Config
from schemas.extract import ENTITIES
from transforms.ingest import ExtractError, ingest_site
from transforms.adapters.hospital_csv import hospital_to_staging
from transforms.omop import OMOP_TABLES as ALL_OMOP_TABLES
from transforms.omop import coverage_summary, harmonise_site, usagi_csv
from transforms.storage import Workspace, read_partition, write_partition
from transforms.vocabulary import VocabularyError, load_vocabulary

RAW_TABLES = [e.name for e in ENTITIES]
OMOP_TABLES = list(ALL_OMOP_TABLES)
IDENTITY = "_identity"  # the identifiable zone's person identifiers (never an asset, never published)
PSEUDO_TABLES = OMOP_TABLES
RELEASE_TABLES = OMOP_TABLES
MAX_QUARANTINE_RATIO = 0.2

Events = Iterator[dg.MaterializeResult[Any] | dg.AssetCheckResult]


def site_partitions(cfg: Config) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition(cfg.sites)


def _site(context: dg.AssetExecutionContext) -> str:
    return str(context.partition_key)


def _write_quarantine(ws: Workspace, stage: str, table: str, site: str, df: pl.DataFrame) -> None:
    write_partition(df, ws.quarantine(stage, table, site))


def _write_accounting(ws: Workspace, stage: str, site: str, df: pl.DataFrame) -> None:
    write_partition(df, ws.accounting(stage, site))


def _md_table(df: pl.DataFrame) -> dg.MetadataValue:
    return dg.MetadataValue.md(_markdown(df))


def _markdown(df: pl.DataFrame) -> str:
    if df.height == 0:
        return "(none)"
    head = "| " + " | ".join(df.columns) + " |\n|" + "---|" * len(df.columns) + "\n"
    body = "".join("| " + " | ".join("" if v is None else str(v) for v in row) + " |\n" for row in df.iter_rows())
    return head + body


def _fail(msg: str) -> dg.Failure:
    return dg.Failure(description=msg, allow_retries=False)


def build_site_assets(cfg: Config) -> list[dg.AssetsDefinition]:
    parts = site_partitions(cfg)

    @dg.multi_asset(
        name="raw",
        partitions_def=parts,
        specs=[
            dg.AssetSpec(f"raw_{t}", group_name="raw", description=f"Typed {t} rows of the site's extract; bad rows quarantined with a reason.")
            for t in RAW_TABLES
        ],
        check_specs=[
            dg.AssetCheckSpec("quarantine_ratio", asset=f"raw_{t}", blocking=True, partitions_def=parts,
                              description=f"At most {MAX_QUARANTINE_RATIO:.0%} of the rows are quarantined.")
            for t in RAW_TABLES
        ],
    )
    def raw(context: dg.AssetExecutionContext, ds4h: Ds4hResource) -> Events:
        site = _site(context)
        config, ws = ds4h.config(), ds4h.workspace()
        src = config.source(site)
        if src.format != "hospital-csv":
            raise _fail(f"source format {src.format!r} of site {site} is not supported yet; use hospital-csv")
        try:
            result = ingest_site(site, src.path, src.encoding, src.delimiter)
        except ExtractError as e:
            raise _fail(str(e)) from None
        for name in result.missing_files:
            context.log.warning(f"{site}: optional file {name} is missing; that entity is empty")
        for name, er in result.entities.items():
            write_partition(er.table.drop("_line"), ws.lake("raw", name, site))
            _write_quarantine(ws, "raw", name, site, er.quarantine)
        _write_accounting(ws, "raw", site, result.accounting())
        for name, er in result.entities.items():
            by_reason = (
                er.quarantine.group_by("reason_code").len("rows").sort("reason_code")
                if er.quarantined else pl.DataFrame({"reason_code": [], "rows": []})
            )
            ratio = er.quarantined / er.rows_in if er.rows_in else 0.0
            yield dg.MaterializeResult(
                asset_key=f"raw_{name}",
                metadata={
                    "rows_in": er.rows_in,
                    "rows_out": er.table.height,
                    "quarantined": er.quarantined,
                    "deduplicated": er.deduplicated,
                    "quarantine_by_reason": _md_table(by_reason),
                    "file_present": er.file is not None and name not in [m.removesuffix(".csv") for m in result.missing_files],
                    "path": dg.MetadataValue.path(str(ws.lake("raw", name, site))),
                },
            )
            yield dg.AssetCheckResult(
                asset_key=f"raw_{name}", check_name="quarantine_ratio", passed=ratio <= MAX_QUARANTINE_RATIO,
                metadata={"ratio": round(ratio, 4), "threshold": MAX_QUARANTINE_RATIO},
            )

    @dg.multi_asset(
        name="omop",
        partitions_def=parts,
        specs=[dg.AssetSpec(f"omop_{t}", group_name="omop", deps=[f"raw_{r}" for r in RAW_TABLES],
                            description=f"OMOP CDM v5.4 {t} of the site (identifiable zone).")
               for t in OMOP_TABLES],
        check_specs=[
            spec for t in OMOP_TABLES for spec in (
                dg.AssetCheckSpec("primary_key_unique", asset=f"omop_{t}", blocking=True, partitions_def=parts),
                dg.AssetCheckSpec("required_fields", asset=f"omop_{t}", blocking=True, partitions_def=parts,
                                  description="Fields the CDM marks required are never null."),
            )
        ],
    )
    def omop(context: dg.AssetExecutionContext, ds4h: Ds4hResource) -> Events:
        site = _site(context)
        config, ws = ds4h.config(), ds4h.workspace()
        try:
            vocab = load_vocabulary(config.vocabulary)
        except VocabularyError as e:
            raise _fail(str(e)) from None
        raw = {t: read_partition(ws.lake("raw", t, site)) for t in RAW_TABLES}
        stg = hospital_to_staging(raw)
        result = harmonise_site(site, stg, vocab)
        for t, df in result.tables.items():
            write_partition(df, ws.lake("omop", t, site))
        write_partition(identity_frame(stg["persons"], result.tables["person"]), ws.lake("omop", IDENTITY, site))
        _write_accounting(ws, "omop", site, result.accounting)
        cov = ws.reports / "coverage"
        cov.mkdir(parents=True, exist_ok=True)
        usagi_csv(result.coverage).write_csv(cov / f"{site}-unmapped-usagi.csv")
        summary = coverage_summary(result.coverage)
        summary.write_csv(cov / f"{site}-summary.csv")
        for t, df in result.tables.items():
            md: dict[str, Any] = {"rows": df.height, "path": dg.MetadataValue.path(str(ws.lake("omop", t, site)))}
            part = summary.filter(pl.col("table") == t)
            if part.height:
                rows, mapped = int(part["rows"].sum()), int(part["rows_mapped"].sum())
                md["mapped_share"] = round(mapped / rows, 4) if rows else 1.0
                md["coverage"] = _md_table(part.drop("table"))
                top = usagi_csv(result.coverage.filter(pl.col("table") == t), top=10)
                md["top_unmapped_codes"] = _md_table(top.select("sourceCode", "sourceName", "sourceFrequency"))
            yield dg.MaterializeResult(asset_key=f"omop_{t}", metadata=md)
            yield from _cdm_checks(f"omop_{t}", t, df)

    @dg.multi_asset(
        name="pseudo",
        partitions_def=parts,
        specs=[dg.AssetSpec(f"pseudo_{t}", group_name="pseudo", deps=[f"omop_{o}" for o in OMOP_TABLES],
                            description=f"Pseudonymised {t}: keyed ids, shifted dates, no direct identifier.")
               for t in PSEUDO_TABLES],
        check_specs=[dg.AssetCheckSpec("leak_scan", asset=f"pseudo_{t}", blocking=True, partitions_def=parts,
                                       description="No direct identifier of the landing data in any string column.")
                     for t in PSEUDO_TABLES],
    )
    def pseudo(context: dg.AssetExecutionContext, ds4h: Ds4hResource) -> Events:
        site = _site(context)
        config, ws = ds4h.config(), ds4h.workspace()
        key = ds4h.key()
        omop_tables = {t: read_partition(ws.lake("omop", t, site)) for t in OMOP_TABLES}
        identity = read_partition(ws.lake("omop", IDENTITY, site))
        try:
            opt_outs = read_opt_outs(config.policy.opt_out_registry)
        except FileNotFoundError as e:
            raise _fail(str(e)) from None
        result = pseudonymise_site(site, omop_tables, identity, key.secret, config.policy, opt_outs)
        for t, df in result.tables.items():
            write_partition(df, ws.lake("pseudo", t, site))
        _write_accounting(ws, "pseudo", site, result.accounting)
        ids = identifiers_from_patients(identity)
        for t, df in result.tables.items():
            yield dg.MaterializeResult(
                asset_key=f"pseudo_{t}",
                metadata={"rows": df.height, "opted_out_persons": result.opted_out_persons,
                          "key_fingerprint": key.fingerprint,
                          "path": dg.MetadataValue.path(str(ws.lake("pseudo", t, site)))},
            )
            hits = scan_table(df, ids)
            yield dg.AssetCheckResult(
                asset_key=f"pseudo_{t}", check_name="leak_scan", passed=not hits,
                metadata={"identifier_values_checked": ids.count(), **{f"hits_{k}": v for k, v in hits.items()}},
            )

    return [raw, omop, pseudo]


def _cdm_checks(asset: str, table: str, df: pl.DataFrame) -> Iterator[dg.AssetCheckResult]:
    spec = cdm.table(table)
    pk = spec.primary_key
    dupes = int(df[pk].is_duplicated().sum()) if pk and df.height else 0
    yield dg.AssetCheckResult(asset_key=asset, check_name="primary_key_unique", passed=dupes == 0,
                              metadata={"primary_key": pk or "-", "duplicated_rows": dupes})
    nulls = {c: int(df[c].null_count()) for c in spec.required if c in df.columns}
    bad = {c: n for c, n in nulls.items() if n}
    yield dg.AssetCheckResult(asset_key=asset, check_name="required_fields", passed=not bad,
                              metadata={"required_fields": len(nulls), **{f"nulls_{c}": n for c, n in bad.items()}})


def today() -> dt.date:
    return dt.date.today()
