"""Dagster assets of ds4h: thin wrappers that call pure functions and record metadata.

raw_<entity>  --> omop_<table>  --> pseudo_<table>   (partitioned by site)
                                        --> release_<table>  (all sites)  --> published_release
Each stage is one multi-asset per partition: it writes its own Parquet through the storage helper
and returns MaterializeResult and AssetCheckResult events. Metadata never holds an identifier.
"""


import datetime as dt
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from anonymisation.leakscan import describe_table_hits
from anonymisation.pseudonym import CollisionError
from anonymisation.pseudonymise import OptOutError, identity_frame, read_opt_outs
from pipelines.buckets import (
    BUCKETED_FORMATS,
    NOTE_TABLES,
    STRUCTURED_TABLES,
    EntityStats,
    PseudoOrderError,
    omop_in_buckets,
    pseudo_in_parts,
    raw_in_buckets,
)
from pipelines.progress import counter, report, with_memory
from pipelines.quality import DQD_IN_MEMORY_BYTES, DQD_MEMORY_LIMIT, dqd_check, run_dqd
from pipelines.resources import Ds4hResource
from schemas import omop as cdm
from schemas.config import Config, Quality
from schemas.extract import Entity
from schemas.mapping import MappingError
from transforms.adapters.registry import FORMATS, Format
from transforms.contracts import ContractResult, format_suite, move_failed_rows
from transforms.contracts import validate_entity as validate_contract
from transforms.dqd import Table
from transforms.ingest import ExtractError
from transforms.inventory import Inventory, landing_inventory
from transforms.omop import OMOP_TABLES as ALL_OMOP_TABLES
from transforms.omop import coverage_summary, harmonise_site, omop_identity, passthrough_omop, usagi_csv
from transforms.storage import Workspace, has_partition, read_partition, scan_partition, write_partition
from transforms.vocabulary import VocabularyError, load_vocabulary

OMOP_TABLES = list(ALL_OMOP_TABLES)
PSEUDO_TABLES = OMOP_TABLES
RELEASE_TABLES = OMOP_TABLES

Events = Iterator[dg.MaterializeResult[Any] | dg.AssetCheckResult]


def formats_in(cfg: Config) -> list[Format]:
    """The source formats of the config, hospital-csv first (its raw assets keep their plain names)."""
    names = {s.format for s in cfg.sources} | {"hospital-csv"}
    return [FORMATS[n] for n in FORMATS if n in names]


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

    formats = formats_in(cfg)
    raw_keys = [fmt.asset(e) for fmt in formats for e in fmt.entities]
    inventory_keys = {fmt.name: fmt.asset(fmt.entities[0]) for fmt in formats}  # one check per format

    @dg.multi_asset(
        name="raw",
        partitions_def=parts,
        specs=[
            dg.AssetSpec(fmt.asset(e), group_name="raw",
                         description=f"Typed {e} rows of a {fmt.name} extract; bad rows quarantined with a reason.")
            for fmt in formats for e in fmt.entities
        ],
        check_specs=[
            dg.AssetCheckSpec("extract_checks", asset=key, blocking=True, partitions_def=parts,
                              description="One check for the site's extract (its metadata lists every entity): the "
                              "landing folder holds only files the format reads or knows, or that the source's ignore "
                              "globs cover (a renamed extract blocks, it is never skipped); at most "
                              f"{cfg.quality.max_quarantine_ratio:.0%} of each entity's rows quarantined; each entity's "
                              "great-expectations suite (schemas/contracts) failed by at most "
                              f"{cfg.quality.max_contract_failure_ratio:.0%} of its rows, no table-level failure.")
            for key in inventory_keys.values()
        ],
    )
    def raw(context: dg.AssetExecutionContext, ds4h: Ds4hResource) -> Events:
        site = _site(context)
        config, ws = ds4h.config(), ds4h.workspace()
        src = config.source(site)
        fmt = FORMATS[src.format]
        contract_results: dict[str, ContractResult] = {}
        now = dt.datetime.combine(today(), dt.time.max)

        def contract(entity: Entity, df: pl.DataFrame) -> pl.DataFrame:
            r = validate_contract(entity.name, df, now=now)
            contract_results[entity.name] = r
            return r.failed_rows.select("_line", "reason_code", "reason_detail")

        try:
            before = landing_inventory(src, checksums=False)
        except MappingError as e:
            raise _fail(str(e)) from None

        def unreadable(e: Exception) -> dg.Failure:
            extra = (f"; the folder also holds file(s) the {fmt.name} format does not read: "
                     f"{', '.join(before.unexpected[:10])}") if before.unexpected else ""
            return _fail(f"{e}{extra}")

        orphans = config.quality.orphan_events
        if src.format in BUCKETED_FORMATS:
            try:
                outcome = raw_in_buckets(site, src, fmt, ws, now, context.log.info, orphan_events=orphans)
            except ExtractError as e:
                raise unreadable(e) from None
            stats, contract_results = outcome.stats, outcome.contracts
            missing, accounting = outcome.missing_files, outcome.accounting
        else:
            checks = contract if src.format == "hospital-csv" else None
            try:
                result = fmt.read(site, src, today(), checks, orphans)
            except (ExtractError, MappingError) as e:
                raise unreadable(e) from None
            if src.format != "hospital-csv":  # adapter formats: their suites run on the typed rows here
                for name, typed in result.entities.items():
                    suite = format_suite(src.format, name)
                    if suite is not None and typed.table.height:
                        contract_results[name] = validate_contract(name, typed.table, suite, now=now)
                        move_failed_rows(typed, contract_results[name])
            for name, entity_result in result.entities.items():
                if name in fmt.entities:
                    write_partition(entity_result.table, ws.lake("raw", f"{fmt.prefix}{name}", site))
                _write_quarantine(ws, "raw", f"{fmt.prefix}{name}", site, entity_result.quarantine)
            stats = {name: EntityStats.of(er) for name, er in result.entities.items()}
            missing, accounting = result.missing_files, result.accounting()
        for name in missing:
            context.log.warning(f"{site}: {name} is missing from the {fmt.name} extract; that entity is empty")
        inventory = landing_inventory(src, missing)
        write_inventory(ws, inventory)
        for name in inventory.ignored:
            context.log.info(f"{site}: {name} left aside (the source's ignore)")
        _write_accounting(ws, "raw", site, accounting)
        sub_counts = {(t, c): int(n) for t, c, n in accounting.filter(pl.col("category").is_in(["unlinked", "cascaded"]))
                      .group_by("table", "category").agg(pl.col("rows").sum()).iter_rows()}
        entity_rows: list[dict[str, Any]] = []
        for other in formats:
            for name in other.entities:
                key = other.asset(name)
                st: EntityStats | None = stats.get(name) if other is fmt else None
                anchor = inventory_keys[other.name] == key  # carries the format's extract_checks
                if st is None:
                    note = "missing from the extract" if other is fmt else f"not part of this site's format ({fmt.name})"
                    md: dict[str, Any] = {"rows_in": 0, "rows_out": 0, "note": note}
                    if anchor and other is fmt:
                        md.update(inventory.metadata())
                    yield dg.MaterializeResult(asset_key=key, metadata=md)
                    if other is fmt:
                        entity_rows.append(_entity_row(name, None, None, config.quality, note))
                    elif anchor:  # another format's extract_checks: nothing of this site to check
                        yield dg.AssetCheckResult(asset_key=key, check_name="extract_checks", passed=True,
                                                  metadata={"note": note})
                else:
                    extra = {"unlinked": sub_counts.get((name, "unlinked"), 0),
                             "cascaded": sub_counts.get((name, "cascaded"), 0),
                             **(inventory.metadata() if anchor else {})}
                    yield _raw_materialization(key, st, ws.lake("raw", f"{fmt.prefix}{name}", site), extra)
                    entity_rows.append(_entity_row(name, st, contract_results.get(name), config.quality))
        yield _extract_check(inventory_keys[fmt.name], inventory, entity_rows, config.quality)

    @dg.multi_asset(
        name="omop",
        partitions_def=parts,
        specs=[dg.AssetSpec(f"omop_{t}", group_name="omop", deps=raw_keys,
                            description=f"OMOP CDM v5.4 {t} of the site (identifiable zone).")
               for t in OMOP_TABLES],
        check_specs=[
            dg.AssetCheckSpec("cdm_conformance", asset="omop_person", blocking=True, partitions_def=parts,
                              description="Every OMOP table of the site (its metadata lists them): primary key unique, "
                              "fields the CDM marks required never null."),
            dg.AssetCheckSpec("dqd", asset="omop_person", blocking=cfg.quality.dqd_blocks_on_fatal, partitions_def=parts,
                              description="OHDSI DataQualityDashboard 2.8 checks on the site's CDM; fatal failures block."),
        ],
    )
    def omop(context: dg.AssetExecutionContext, ds4h: Ds4hResource) -> Events:
        site = _site(context)
        config, ws = ds4h.config(), ds4h.workspace()
        try:
            vocab = load_vocabulary(config.vocabulary)
        except VocabularyError as e:
            raise _fail(str(e)) from None
        src = config.source(site)
        if src.stcm is not None:
            try:
                vocab = vocab.with_stcm(src.stcm)
            except VocabularyError as e:
                raise _fail(str(e)) from None
        fmt = FORMATS[src.format]
        if src.format in BUCKETED_FORMATS:
            try:
                bucketed = omop_in_buckets(site, src, fmt, ws, vocab, with_memory(context.log.info))
            except MappingError as e:
                raise _fail(str(e)) from None
            result = bucketed.result
            rows = bucketed.rows
            tables: dict[str, Table] = {t: bucketed.files[t] for t in OMOP_TABLES}
        else:
            raw = {e: read_partition(ws.lake("raw", f"{fmt.prefix}{e}", site)) for e in fmt.entities
                   if has_partition(ws.lake("raw", f"{fmt.prefix}{e}", site))}
            if fmt.to_staging is None:
                result, stg = passthrough_omop(site, raw), None
            else:
                try:
                    stg = fmt.to_staging(raw, src)
                except MappingError as e:
                    raise _fail(str(e)) from None
                result = harmonise_site(site, stg, vocab)
            for t, df in result.tables.items():
                write_partition(df, ws.lake("omop", t, site))
            identity = identity_frame(stg["persons"], result.tables["person"]) if stg is not None else omop_identity(result.tables["person"])
            writer = ws.identity_writer(site)  # the identity zone, not the OMOP zone
            writer.write(identity, 0)
            writer.commit()
            rows = {t: df.height for t, df in result.tables.items()}
            tables = dict(result.tables.items())
        ws.drop_legacy_identity(site)  # an older version kept it in the OMOP zone
        _write_accounting(ws, "omop", site, result.accounting)
        cov = ws.reports / "coverage"
        cov.mkdir(parents=True, exist_ok=True)
        with (cov / f"{site}-unmapped-usagi.csv").open("wb") as f:  # a file object: the folder may be on a store
            usagi_csv(result.coverage).write_csv(f)
        summary = coverage_summary(result.coverage)
        with (cov / f"{site}-summary.csv").open("wb") as f:
            summary.write_csv(f)
        for t in OMOP_TABLES:
            md: dict[str, Any] = {"rows": rows[t], "path": dg.MetadataValue.path(str(ws.lake("omop", t, site)))}
            part = summary.filter(pl.col("table") == t)
            if part.height:
                n, mapped = int(part["rows"].sum()), int(part["rows_mapped"].sum())
                md["mapped_share"] = round(mapped / n, 4) if n else 1.0
                md["coverage"] = _md_table(part.drop("table"))
                top = usagi_csv(result.coverage.filter(pl.col("table") == t), top=10)
                md["top_unmapped_codes"] = _md_table(top.select("sourceCode", "sourceName", "sourceFrequency"))
            yield dg.MaterializeResult(asset_key=f"omop_{t}", metadata=md)
        yield _cdm_check("omop_person", [_cdm_row(t, scan_partition(ws.lake("omop", t, site))) for t in OMOP_TABLES])
        folder = ws.reports / "dqd" / site
        dqd = run_dqd(tables, vocab, site, folder, memory_limit=DQD_MEMORY_LIMIT, in_memory_bytes=DQD_IN_MEMORY_BYTES)
        yield dqd_check("omop_person", dqd, folder / "dqd.html", config.quality.dqd_blocks_on_fatal)

    def pseudo_spec(t: str) -> dg.AssetSpec:
        notes = t in NOTE_TABLES
        return dg.AssetSpec(
            f"pseudo_{t}", group_name="pseudo",
            # each table is pseudonymised from itself and its persons' keys and date offsets (declaring
            # every omop table upstream of every pseudo table drew a 400-edge tower in the UI); the notes
            # come after the structured tables (they add to the person pseudonyms' birth-date coincidences)
            deps=sorted({f"omop_{t}", "omop_person", *(["pseudo_person"] if notes else [])}),
            kinds={"polars", "parquet"},
            description=(
                "Pseudonymised notes of one site: de-identified (names, phones, addresses, identifiers "
                "tagged; dates shifted by the person's offset) only when the policy publishes notes "
                "(publish_notes), else kept without their text." if notes else
                f"Pseudonymised {t} of one site: keyed ids, dates shifted by the person's offset, direct "
                "identifiers removed."))

    def leak_anchor(tables: Sequence[str]) -> str:
        """The asset that carries a step's leak_scan: pseudo_person, or the notes' first table."""
        return "pseudo_person" if "person" in tables else f"pseudo_{tables[0]}"

    def leak_check(tables: Sequence[str]) -> dg.AssetCheckSpec:
        return dg.AssetCheckSpec("leak_scan", asset=leak_anchor(tables), blocking=True, partitions_def=parts,
                                 description=f"No direct identifier of the landing data in any text, categorical or "
                                 f"date column of the {len(tables)} table(s) of this asset's step (names, birth dates "
                                 "and streets in their person's rows); the metadata lists the hits by table.")

    def pseudo_events(context: dg.AssetExecutionContext, ds4h: Ds4hResource, tables: Sequence[str],
                      note_deid: Callable[..., list[str]] | None, extra: dict[str, Any]) -> Events:
        site = _site(context)
        config, ws = ds4h.config(), ds4h.workspace()
        key = ds4h.key()
        try:
            opt_outs = read_opt_outs(config.policy.opt_out_registry, config.sites)
        except (FileNotFoundError, OptOutError) as e:
            raise _fail(str(e)) from None
        try:
            result = pseudo_in_parts(site, ws, key.secret, config.policy, opt_outs, note_deid,
                                     with_memory(context.log.info), tables)
        except (CollisionError, PseudoOrderError) as e:
            raise _fail(str(e)) from None
        _write_accounting(ws, "pseudo" if "person" in tables else "pseudo-notes", site, result.accounting)
        for t in tables:
            yield dg.MaterializeResult(
                asset_key=f"pseudo_{t}",
                metadata={"rows": result.rows[t], "opted_out_persons": result.opted_out_persons,
                          "identifier_cells_emptied": result.masked_cells.get(t, 0),
                          "key_fingerprint": key.fingerprint,
                          "path": dg.MetadataValue.path(str(ws.lake("pseudo", t, site))), **extra},
            )
        yield leak_check_result(leak_anchor(tables), {t: result.hits[t] for t in tables}, {
            "identifier_values_checked": result.identifiers.count(),
            "birth_date_coincidences_site": result.birth_date_coincidences})

    @dg.multi_asset(
        name="pseudo",
        partitions_def=parts,
        specs=[pseudo_spec(t) for t in STRUCTURED_TABLES],
        check_specs=[leak_check(STRUCTURED_TABLES)],
    )
    def pseudo(context: dg.AssetExecutionContext, ds4h: Ds4hResource) -> Events:
        yield from pseudo_events(context, ds4h, STRUCTURED_TABLES, None, {})

    @dg.multi_asset(
        name="pseudo_notes",
        partitions_def=parts,
        specs=[pseudo_spec(t) for t in NOTE_TABLES],
        check_specs=[leak_check(NOTE_TABLES)],
    )
    def pseudo_notes(context: dg.AssetExecutionContext, ds4h: Ds4hResource) -> Events:
        """Notes are de-identified only when a release publishes them (``policy.publish_notes``): the NER
        is most of a run with notes. Otherwise the note rows are written without text or title (the
        release withholds the table), and every note is still accounted for."""
        site = _site(context)
        config, ws = ds4h.config(), ds4h.workspace()
        notes = scan_partition(ws.lake("omop", "note", site)).select(pl.col("note_text").drop_nulls().len()).collect().item()
        deid = notes > 0 and config.policy.publish_notes
        if notes and not deid:
            context.log.info(f"{site}: {notes} notes kept without their text: the policy does not publish notes "
                             "(publish_notes: false), so they are not de-identified")
        with _NoteDeid(notes if deid else 0) as note_deid:
            if note_deid.processes > 1:
                context.log.info(f"{site}: de-identifying {notes} notes (presidio, fr_core_news_sm) in "
                                 f"{note_deid.processes} worker processes")
            elif deid:
                context.log.info(f"{site}: de-identifying {notes} notes (presidio, fr_core_news_sm)")
            yield from pseudo_events(context, ds4h, NOTE_TABLES, note_deid if deid else None, {
                "notes_with_text": notes, "notes_deidentified": notes if deid else 0,
                "publish_notes": config.policy.publish_notes, "deid_processes": note_deid.processes})

    return [raw, omop, pseudo, pseudo_notes]


class _NoteDeid:
    """The notes pass's de-identifier: long-lived spawned workers (anonymisation.deid_workers) when
    ``worker_count`` gives more than one, else deidentify_batch in this process; in chunks, reporting
    texts done (note texts, then titles, per part). Each text's result does not depend on its chunk
    or process. A context manager: the workers stop with the asset."""

    def __init__(self, total: int) -> None:
        from anonymisation.deid_workers import CHUNK, DeidWorkers, worker_count

        self.total, self.chunk, self.calls = total, CHUNK, 0
        self.processes = worker_count(total) if total else 1
        # started now: the workers load the model while the notes are read
        self._pool = DeidWorkers(self.processes) if self.processes > 1 else None

    def __enter__(self) -> "_NoteDeid":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.close()

    def __call__(self, texts: Sequence[str], knowns: Sequence[Mapping[str, Sequence[str]]], offsets: Sequence[int],
                 tagged_dates: Sequence[Collection[dt.date]] | None = None) -> list[str]:
        from anonymisation.deid import deidentify_batch

        self.calls += 1
        if self.calls == 1:
            report(f"loading the French NER model for {self.total:,} notes")
        tick = counter(f"de-identifying notes (pass {self.calls}):", len(texts), every=0.5)
        if self._pool is not None:
            return self._pool(texts, knowns, offsets, tagged_dates, progress=tick)
        result: list[str] = []
        for i in range(0, len(texts), self.chunk):
            part = slice(i, i + self.chunk)
            result += deidentify_batch(texts[part], knowns[part], offsets[part],
                                       None if tagged_dates is None else tagged_dates[part])
            tick(len(result))
        return result


def inventory_path(ws: Workspace, site: str) -> Path:
    """Where the raw stage records the site's landing inventory (file names, sizes, SHA-256: no identifier)."""
    return ws.reports / "inventory" / f"{site}.json"


def write_inventory(ws: Workspace, inventory: Inventory) -> None:
    path = inventory_path(ws, inventory.site)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(inventory.to_json(), encoding="utf-8")


def _raw_materialization(key: str, er: EntityStats, path: Path, extra: dict[str, Any] | None = None
                         ) -> dg.MaterializeResult[Any]:
    by_reason = (
        pl.DataFrame({"reason_code": list(er.by_reason), "rows": list(er.by_reason.values())}).sort("reason_code")
        if er.quarantined else pl.DataFrame({"reason_code": [], "rows": []})
    )
    return dg.MaterializeResult(
        asset_key=key,
        metadata={
            "rows_in": er.rows_in, "rows_out": er.rows_out, "quarantined": er.quarantined,
            "deduplicated": er.deduplicated, "quarantine_by_reason": _md_table(by_reason),
            "source_file": er.file or "(absent)", "path": dg.MetadataValue.path(str(path)),
            **(extra or {}),
        },
    )


def _entity_row(name: str, er: EntityStats | None, cr: ContractResult | None, quality: Quality,
                note: str = "") -> dict[str, Any]:
    """One entity's line of the raw stage's extract_checks: its quarantine ratio and contract, and why it fails."""
    ratio = er.quarantined / er.rows_in if er is not None and er.rows_in else 0.0
    problems: list[str] = []
    if ratio > quality.max_quarantine_ratio:
        problems.append(f"{ratio:.1%} of its rows quarantined (at most {quality.max_quarantine_ratio:.0%})")
    failed: list[dict[str, Any]] = []
    if cr is not None:
        failed = [e for e in cr.expectations if not e.get("success", True)]
        if cr.failure_ratio > quality.max_contract_failure_ratio:
            problems.append(f"{cr.failure_ratio:.1%} of its rows fail its great-expectations suite "
                            f"(at most {quality.max_contract_failure_ratio:.0%})")
        if cr.table_failures:
            problems.append("table-level expectation(s) failed: " + ", ".join(sorted(
                str(e["type"]) + (f" ({e['column']})" if e.get("column") else "") for e in cr.table_failures)))
    elif er is not None:
        note = note or "no great-expectations suite for this entity's format"
    return {
        "entity": name, "rows_in": er.rows_in if er is not None else 0,
        "quarantined": er.quarantined if er is not None else 0, "quarantine_ratio": round(ratio, 4),
        "expectations": len(cr.expectations) if cr is not None else 0, "failed_expectations": len(failed),
        "contract_failure_ratio": round(cr.failure_ratio, 4) if cr is not None else 0.0,
        "passed": not problems, "problems": "; ".join(problems), "note": note,
        "_failures": [{"entity": name, "expectation": str(e["type"]), "column": str(e.get("column") or ""),
                       "rows": int(e.get("unexpected_count") or 0)} for e in failed],
    }


def _extract_check(key: str, inventory: Inventory, rows: list[dict[str, Any]], quality: Quality) -> dg.AssetCheckResult:
    """The raw stage's one blocking check for a site: the landing inventory, then every entity's quarantine
    ratio and contract (one line each in the metadata); the description names what fails."""
    message = inventory.blocking_message()
    problems = ([f"landing_inventory: {message}"] if message else []) + [
        f"{r['entity']}: {r['problems']}" for r in rows if not r["passed"]]
    entities = pl.DataFrame([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
                            schema={"entity": pl.String, "rows_in": pl.Int64, "quarantined": pl.Int64,
                                    "quarantine_ratio": pl.Float64, "expectations": pl.Int64,
                                    "failed_expectations": pl.Int64, "contract_failure_ratio": pl.Float64,
                                    "passed": pl.Boolean, "problems": pl.String, "note": pl.String})
    failures = pl.DataFrame([f for r in rows for f in r["_failures"]],
                            schema={"entity": pl.String, "expectation": pl.String, "column": pl.String, "rows": pl.Int64})
    return dg.AssetCheckResult(
        asset_key=key, check_name="extract_checks", passed=not problems,
        description="; ".join(problems) if problems else None,
        metadata={
            **inventory.metadata(), "entities": len(rows), "entities_failing": sum(not r["passed"] for r in rows),
            "max_quarantine_ratio": round(max((r["quarantine_ratio"] for r in rows), default=0.0), 4),
            "quarantine_threshold": quality.max_quarantine_ratio,
            "contract_threshold": quality.max_contract_failure_ratio,
            "by_entity": _md_table(entities.drop("problems")), "failed_expectations": _md_table(failures),
        },
    )


def leak_check_result(asset: str, hits: Mapping[str, Mapping[str, int]], extra: dict[str, Any]) -> dg.AssetCheckResult:
    """A stage's one leak_scan check: hits (table -> identifier type -> cells) summed by type in the
    metadata and named by table in the description; counts only, never a value."""
    found = {t: dict(h) for t, h in hits.items() if h}
    by_kind: Counter[str] = Counter()
    for h in found.values():
        by_kind.update(h)
    return dg.AssetCheckResult(
        asset_key=asset, check_name="leak_scan", passed=not found, description=describe_table_hits(found),
        metadata={"tables_scanned": len(hits), "tables_with_hits": len(found), **extra,
                  **{f"hits_{k}": v for k, v in sorted(by_kind.items())},
                  **({"hits_by_table": _md_table(pl.DataFrame(
                      [{"table": t, "type": k, "cells": v} for t, h in sorted(found.items()) for k, v in sorted(h.items())]))}
                     if found else {})},
    )


def _cdm_row(table: str, lf: pl.LazyFrame) -> dict[str, Any]:
    """Primary key unique, required fields non-null: on the written partition, reading only those columns."""
    spec = cdm.table(table)
    pk = spec.primary_key
    names = set(lf.collect_schema().names())
    required = [c for c in spec.required if c in names]
    exprs = [pl.col(c).null_count().alias(c) for c in required]
    if pk:
        exprs.append((pl.len() - pl.col(pk).n_unique()).alias("_dupes"))
    counts = lf.select(exprs).collect().row(0, named=True) if exprs else {}
    bad = {c: int(counts[c]) for c in required if counts[c]}
    return {"table": table, "primary_key": pk or "-", "duplicated_keys": int(counts.get("_dupes") or 0),
            "required_fields": len(required), "null_required": ", ".join(f"{c} {n}" for c, n in bad.items())}


def _cdm_check(asset: str, rows: list[dict[str, Any]]) -> dg.AssetCheckResult:
    """The omop stage's one conformance check for a site: a line per table; the description names the failures."""
    failing = [r for r in rows if r["duplicated_keys"] or r["null_required"]]
    problems = [f"{r['table']}: " + "; ".join(
        ([f"{r['duplicated_keys']} duplicated {r['primary_key']}"] if r["duplicated_keys"] else [])
        + ([f"nulls in required fields: {r['null_required']}"] if r["null_required"] else [])) for r in failing]
    return dg.AssetCheckResult(
        asset_key=asset, check_name="cdm_conformance", passed=not failing,
        description="; ".join(problems) if problems else None,
        metadata={"tables_checked": len(rows), "tables_failing": len(failing),
                  "duplicated_keys": sum(r["duplicated_keys"] for r in rows),
                  "by_table": _md_table(pl.DataFrame(rows, schema={
                      "table": pl.String, "primary_key": pl.String, "duplicated_keys": pl.Int64,
                      "required_fields": pl.Int64, "null_required": pl.String}))},
    )


def today() -> dt.date:
    return dt.date.today()
