"""The DataQualityDashboard checks as a Dagster asset check, with their reports."""

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from transforms.dqd import DqdRun, Table, fatal_failures, run_checks, write_html, write_results_json
from transforms.vocabulary import Vocabulary

DQD_MEMORY_LIMIT = "2GB"
# Parquet bytes of a site read into DuckDB's memory (smallest tables first): a generated 33,000-patient
# site (60 MB) fits whole, 1 s faster; at 256 MB a 100,000-patient Synthea site's DQD peaked at 2.1 GB,
# 900 MB over its harmonisation, for 3.5 s
DQD_IN_MEMORY_BYTES = 64 << 20


def run_dqd(tables: Mapping[str, Table], vocab: Vocabulary, name: str, folder: Path, *, timings: bool = True,
            memory_limit: str | None = None, in_memory_bytes: int = 0) -> DqdRun:
    """Run every DQD check and write ``dqd-results.json`` (DQD's shape) and ``dqd.html`` to ``folder``.

    Tables given as Parquet files are read into DuckDB's memory while their files stay within
    ``in_memory_bytes``, the others in place (``memory_limit`` bounds DuckDB; it spills to ``folder``/tmp
    beyond): the results are the same either way."""
    tmp = folder / "tmp" if memory_limit is not None else None
    run = run_checks(tables, vocab.concept, cdm_source_name=name, concept_ancestor=vocab.ancestor,
                     memory_limit=memory_limit, temp_dir=tmp, in_memory_bytes=in_memory_bytes)
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    write_results_json(run, folder / "dqd-results.json", timings=timings)
    write_html(run, folder / "dqd.html", timings=timings)
    return run


def dqd_summary(run: DqdRun) -> dict[str, Any]:
    """Counts per Kahn category and the fatal failures (no timings: the manifest stays byte-stable)."""
    return {
        "counts": run.counts,
        "fatal_failures": [f"{r.check_name} {r.table}.{r.field or ''}".rstrip(".") for r in fatal_failures(run)],
        "failed": sorted(f"{r.check_name} {r.table}.{r.field or ''}".rstrip(".") for r in run.results if r.failed),
    }


def dqd_check(asset_key: str, run: DqdRun, report: Path, blocks: bool) -> dg.AssetCheckResult:
    fatal = fatal_failures(run)
    total = run.counts["total"]
    applicable = total["passed"] + total["failed"]
    md: dict[str, Any] = {
        "checks_run": total["run"], "passed": total["passed"], "failed": total["failed"],
        "not_applicable": total["not_applicable"], "errors": total["errors"], "fatal_failures": len(fatal),
        "pass_rate": round(total["passed"] / applicable, 4) if applicable else 1.0,
        "report": dg.MetadataValue.path(str(report)),
    }
    for cat, c in run.counts.items():
        if cat != "total" and (c["passed"] + c["failed"]):
            md[f"pass_rate_{cat.lower()}"] = round(c["passed"] / (c["passed"] + c["failed"]), 4)
    desc = ("fatal: " + "; ".join(f"{r.check_name} on {r.table}.{r.field or ''}" for r in fatal[:5])) if fatal else None
    return dg.AssetCheckResult(asset_key=asset_key, check_name="dqd", passed=not (blocks and fatal),
                               metadata=md, description=desc)
