"""Synthea CSV -> OMOP Parquet (identifiable zone), end to end, for N patients; then the DQD checks.

    uv run python bench/bench_synthea.py 10000 [100000 ...]

For each size: replicate ../shared/data/synthea-v3-27 to N patients (bench/make_synthea.py, claims
skipped), then in a fresh process split the CSV files into person buckets of 5,000 patients, and
read + check + stage + harmonise each bucket with ../shared/data/vocabulary-demo, writing every OMOP
table as Parquet parts (wall seconds and peak RSS), then run all DQD checks on that output in another
fresh process (DuckDB reading the Parquet in place, 2 GB memory limit); then the whole `ds4h run
--select 'group:raw or group:omop'` on the same extract as one synthea-csv site of a fresh workspace,
beside dbt-synthea's pinned 43.6 s at 10,000 patients. Appends the figures to bench/RESULTS.md.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, SHARED, append_results, timed
from run_bench import SYNTHEA_CONFIG

DBT_SYNTHEA_10K = 43.6  # s: OHDSI's dbt-synthea, load and transform, 10,000 patients (issue 19, this machine)

HARMONISE = r"""
import sys
from pathlib import Path
from transforms.adapters.synthea import read_synthea_bucket, split_synthea, synthea_to_staging
from transforms.omop import harmonise_buckets
from transforms.storage import PartitionWriter
from transforms.vocabulary import load_vocabulary
src, out, vocab = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
v = load_vocabulary(vocab)
split = split_synthea("bench", src, out.parent / "split")
writers, rows = {}, 0
def sink(table, k, df):
    global rows
    if table not in writers:
        writers[table] = PartitionWriter(out / table)
    writers[table].write(df, k)
    rows += df.height
stgs = (synthea_to_staging(read_synthea_bucket(split, k)) for k in range(split.buckets))
res = harmonise_buckets("bench", stgs, v, sink)
for t, df in res.tables.items():
    writers.setdefault(t, PartitionWriter(out / t)).write(df, 0)
    rows += df.height
for w in writers.values():
    w.commit()
print(rows, split.buckets)
"""

DQD = r"""
import sys
from pathlib import Path
from transforms.dqd import run_checks
from transforms.vocabulary import load_vocabulary
out, vocab = Path(sys.argv[1]), sys.argv[2]
v = load_vocabulary(vocab)
tables = {p.name: sorted(p.glob("*.parquet")) for p in out.iterdir() if p.is_dir()}
run = run_checks(tables, v.concept, concept_ancestor=v.ancestor, memory_limit="2GB", temp_dir=out.parent / "duckdb")
print(run.counts["total"])
"""


def main() -> int:
    sizes = [int(a) for a in sys.argv[1:]] or [10_000]
    vocab = str(SHARED / "vocabulary-demo")
    lines = [f"\n## {dt.datetime.now():%Y-%m-%d %H:%M}: Synthea CSV -> OMOP Parquet (bench/bench_synthea.py), {os.cpu_count()} cores\n",
             "`ds4h run` is the whole command a user runs on one synthea-csv site (`--select 'group:raw or group:omop'`: "
             "load, validate, harmonise, DQD, Dagster), measured as OHDSI's dbt-synthea is (load and transform); "
             f"dbt-synthea's pinned figure at 10,000 patients: {DBT_SYNTHEA_10K} s (issue 19's target: 0.25x).\n",
             "| patients | buckets | harmonise s | peak RSS MB | OMOP rows | DQD checks s | DQD peak RSS MB | ds4h run s | vs dbt-synthea |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n in sizes:
        tmp = Path(tempfile.mkdtemp(prefix="ds4h-synthea-"))
        try:
            home = tmp / "home"
            src = home / "landing" / "synthea"
            subprocess.run([sys.executable, str(ROOT / "bench" / "make_synthea.py"), str(n), str(src), "--skip-claims"],
                           check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
            h = timed([sys.executable, "-c", HARMONISE, str(src), str(tmp / "omop"), vocab])
            d = timed([sys.executable, "-c", DQD, str(tmp / "omop"), vocab])
            h_wall, h_rss, out = h.wall, h.rss_mb, h.stdout
            d_wall, d_rss, counts = d.wall, d.rss_mb, d.stdout
            rows, buckets = out.split()
            (home / "ds4h.yaml").write_text(SYNTHEA_CONFIG.format(vocab=SHARED / "vocabulary-demo"), encoding="utf-8")
            env = dict(os.environ, DS4H_HOME=str(home), DS4H_KEYS=str(tmp / "keys"), GX_ANALYTICS_ENABLED="False")
            env.pop("DS4H_CONFIG", None)
            ds4h = [sys.executable, "-m", "pipelines.cli"]
            subprocess.run([*ds4h, "keys", "new", "--project", "demo"], check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
            whole = timed([*ds4h, "run", "--select", "group:raw or group:omop"], env=env).wall
            peer = f"{whole / DBT_SYNTHEA_10K:.2f}x" if n == 10_000 else ""
            print(f"{n}: harmonise {h_wall:.1f}s {h_rss:.0f}MB, {rows} rows, {buckets} buckets; "
                  f"dqd {d_wall:.1f}s {d_rss:.0f}MB {counts}; ds4h run raw+omop {whole:.1f}s", flush=True)
            lines.append(f"| {n:,} | {buckets} | {h_wall:.1f} | {h_rss:.0f} | {int(rows):,} | {d_wall:.1f} | {d_rss:.0f} "
                         f"| {whole:.1f} | {peer} |")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    append_results("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
