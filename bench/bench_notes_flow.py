"""The flow with notes against the structured flow and spaCy's NER alone (issue 19's notes target).

    uv run python bench/bench_notes_flow.py [PATIENTS]      (default 20000)

Two fresh workspaces from ``ds4h generate --patients N --sites 3 --seed 1 --dirty 0.02``: one
``--no-notes``, the other with its notes and ``policy.publish_notes: true``; each stage is one
``ds4h run``. Then spaCy's NER alone (fr_core_news_sm, ``nlp.pipe`` over the notes' text, two
processes, as a whole process) on the same notes. The target: the flow with notes within the
structured flow plus 1.25 times NER alone. Appends the figures to bench/RESULTS.md.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import polars as pl
from bench_deid import NER_ALONE
from common import append_results, timed

STAGES = ("group:raw", "group:omop", "group:pseudo", "group:release or group:publish")


def _flow(root: Path, patients: int, notes: bool) -> tuple[list[float], float]:
    """Stage times and the highest peak RSS of one fresh workspace's flow."""
    env = dict(os.environ, DS4H_HOME=str(root / "home"), DS4H_KEYS=str(root / "keys"), GX_ANALYTICS_ENABLED="False")
    env.pop("DS4H_CONFIG", None)
    ds4h = [sys.executable, "-m", "pipelines.cli"]
    timed([*ds4h, "init"], env=env)
    timed([*ds4h, "generate", "--patients", str(patients), "--sites", "3", "--seed", "1", "--dirty", "0.02",
           *([] if notes else ["--no-notes"])], env=env)
    if notes:
        with (root / "home" / "ds4h.yaml").open("a", encoding="utf-8") as f:
            f.write("policy:\n  publish_notes: true\n")
    walls, peak = [], 0.0
    for stage in STAGES:
        run = timed([*ds4h, "run", "--select", stage], env=env)
        walls.append(run.wall)
        peak = max(peak, run.rss_mb)
        print(f"{'notes' if notes else 'structured'} {stage}: {run.wall:.1f} s {run.rss_mb:.0f} MB", flush=True)
    return walls, peak


def _note_texts(landing: Path, out: Path) -> int:
    """The notes' free text (each site's longest column of notes.csv) as JSONL lines {"text": ...}."""
    n = 0
    with out.open("w", encoding="utf-8") as f:
        for path in sorted(landing.glob("*/notes.csv")):
            cp1252 = path.parent.name == "hospital-c"  # the generator's third site: cp1252, semicolons
            raw = path.read_bytes().decode("cp1252" if cp1252 else "utf-8").encode()
            df = pl.read_csv(raw, separator=";" if cp1252 else ",", infer_schema=False)
            text = max(df.columns, key=lambda c: float(df[c].str.len_chars().mean() or 0))
            for value in df[text].drop_nulls().to_list():
                f.write(json.dumps({"text": value}, ensure_ascii=False) + "\n")
                n += 1
    return n


def main() -> int:
    patients = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    tmp = Path(tempfile.mkdtemp(prefix="ds4h-notes-flow-"))
    try:
        plain, plain_peak = _flow(tmp / "plain", patients, notes=False)
        noted, noted_peak = _flow(tmp / "notes", patients, notes=True)
        n_notes = _note_texts(tmp / "notes" / "home" / "landing", tmp / "notes.jsonl")
        ner = timed([sys.executable, "-c", NER_ALONE, str(tmp / "notes.jsonl"), str(tmp / "ner.jsonl"),
                     str(min(2, os.cpu_count() or 1))])
        target = sum(plain) + 1.25 * ner.wall
        lines = [
            f"\n## {dt.datetime.now():%Y-%m-%d %H:%M}: notes with `publish_notes: true` against the structured flow "
            f"and spaCy's NER alone (bench/bench_notes_flow.py), {patients:,} patients, {os.cpu_count()} cores\n",
            "| flow | raw s | omop s | pseudo s | release + publish s | total s | peak RSS MB |",
            "|---|---:|---:|---:|---:|---:|---:|",
            f"| structured (no notes) | {' | '.join(f'{w:.1f}' for w in plain)} | {sum(plain):.1f} | {plain_peak:.0f} |",
            f"| with {n_notes:,} notes, published | {' | '.join(f'{w:.1f}' for w in noted)} | {sum(noted):.1f} "
            f"| {noted_peak:.0f} |",
            f"\nspaCy's NER alone on the same notes (two processes): {ner.wall:.1f} s ({ner.rss_mb:.0f} MB). Target "
            f"(structured + 1.25 x NER alone): {target:.1f} s; the flow with notes: {sum(noted):.1f} s "
            f"({'within' if sum(noted) <= target else 'over'} it).",
        ]
        append_results("\n".join(lines) + "\n")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
