"""What ``ds4h run`` and ``ds4h demo`` print at the end: published, quarantined, k, where to look."""

from __future__ import annotations

import json
from typing import Any

import polars as pl
from rich.console import Console
from rich.table import Table

from pipelines.environment import open_workspace
from schemas.config import Config


def quarantine_line(acc: pl.DataFrame) -> str:
    """Quarantined rows by root cause, then the cascades (rows whose parent row was quarantined) and the
    events kept without their visit (unlinked), from the row accounting."""
    if not acc.height:
        return "Rows quarantined: none"

    def total(category: str) -> pl.DataFrame:
        return acc.filter(pl.col("category") == category).group_by("reason_code").agg(pl.col("rows").sum())

    q, cascaded = total("quarantined"), total("cascaded")
    unlinked = int(acc.filter(pl.col("category") == "unlinked")["rows"].sum())
    roots = (q.join(cascaded.rename({"rows": "c"}), on="reason_code", how="left")
             .select("reason_code", pl.col("rows") - pl.col("c").fill_null(0)).filter(pl.col("rows") > 0)
             .sort(["rows", "reason_code"], descending=[True, False]))
    n_q, n_c = int(q["rows"].sum()), int(cascaded["rows"].sum())
    if not n_q and not unlinked:
        return "Rows quarantined: none"
    causes = ", ".join(f"{r} {n:,}" for r, n in roots.iter_rows()) or "none"
    return (f"Quarantined {n_q:,} rows (root causes: {causes}); cascades: {n_c:,} rows whose parent row was "
            f"quarantined; {unlinked:,} events kept without their visit (unlinked). Browse: ds4h quarantine")


def landing_lines(extracts: list[dict[str, Any]]) -> list[str]:
    """Per site, the optional files the format expected and did not find, and the files left aside."""
    lines = []
    for e in extracts:
        if not isinstance(e, dict) or "site" not in e:
            continue
        if e.get("missing"):
            lines.append(f"{e['site']}: optional file(s) missing, their tables are empty: {', '.join(e['missing'])}")
        if e.get("ignored"):
            lines.append(f"{e['site']}: left aside by the source's ignore: {', '.join(e['ignored'])}")
    return lines


def facts_kept(risk: dict[str, Any]) -> str:
    """"facts kept exactly x%, generalised y%, suppressed z%" over every fact of the release's tables."""
    tables = (risk.get("facts") or {}).get("tables") or {}
    cells = {x: sum(int(c.get(x, 0)) for o in tables.values() for c in o.get("facts", {}).values())
             for x in ("exact", "generalised", "suppressed")}
    whole = sum(cells.values()) or 1
    return (f"facts kept exactly {100 * cells['exact'] / whole:.1f}%, generalised "
            f"{100 * cells['generalised'] / whole:.1f}%, suppressed {100 * cells['suppressed'] / whole:.1f}%")


def _levels(summary: dict[str, Any]) -> str:
    words = summary.get("levels_in_words")
    if isinstance(words, dict) and words:
        return ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in words.items())
    return f"levels {summary.get('levels')}"


def render_summary(console: Console, outcome: Any, cfg: Config) -> None:
    ws = open_workspace(cfg)
    pub = outcome.published
    if not pub:
        if outcome.code == 0:
            console.print(outcome.message)
        return
    path = str(pub.get("path"))
    manifest = json.loads((ws.dataspace / cfg.release.dataset / str(pub["version"]) / "manifest.json").read_text())
    t = Table(title=f"Published {manifest['dataset']} v{manifest['version']}" + (" (DEMO)" if manifest["demo"] else ""))
    t.add_column("table")
    t.add_column("rows", justify="right")
    t.add_column("bytes", justify="right")
    for f in (f for f in manifest["files"] if "table" in f):
        t.add_row(f["table"], f"{f['rows']:,}", f"{f['bytes']:,}")
    console.print(t)
    acc = pl.DataFrame(manifest["row_accounting"])
    console.print(quarantine_line(acc))
    for line in landing_lines(manifest.get("source_extracts") or []):
        console.print(line, highlight=False)
    dedup = acc.filter(pl.col("category") == "deduplicated")["rows"].sum()
    risk = manifest["risk"]
    s = risk["summary"]
    console.print(
        f"k = {s['k']} reached with {_levels(s)}; {s['suppressed_persons']:,} of {s['persons']:,} persons "
        f"suppressed; highest prosecutor risk {risk['after']['prosecutor_max']:.3f}, average "
        f"{risk['after']['prosecutor_avg']:.3f}; {dedup:,} duplicate rows removed."
    )
    km = risk.get("km") or {}
    if km:
        mode = manifest.get("mode", "anonymised")
        console.print(
            f"{mode.capitalize()} release: persons at risk for 0..{len(km.get('after', [])) - 1} facts known "
            f"{km.get('after')} (" + ("checked on the written files" if km.get("checked") else "engine") + ")"
            + (f", joined with earlier versions {km.get('after_joint')}" if km.get("after_joint") else "")
            + f"; {facts_kept(risk)} (reports/risk-report.html).")
    console.print(f"Release: {path}")
    console.print(f"Quarantine: {ws.shared / 'quarantine'}   Coverage reports: {ws.reports / 'coverage'}")
    dataset, version = manifest["dataset"], manifest["version"]
    console.print("Next:", highlight=False)
    console.print(f"  read the risk report: {path}/reports/risk-report.html", highlight=False)
    if manifest["demo"]:
        console.print("  a DEMO release is approved automatically and never exported", highlight=False)
    else:
        console.print(f"  a steward decides: uv run ds4h approve {dataset} {version} --by NAME  (or reject)",
                      highlight=False)
    console.print(f"  check a copy: uv run ds4h verify {dataset} {version}   browse rows set aside: uv run ds4h "
                  "quarantine   the Dagster UI: uv run ds4h ui", highlight=False)
