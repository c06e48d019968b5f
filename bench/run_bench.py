"""make bench: time each stage of the flow on N generated patients, beside the I/O floor.

Each stage runs as its own process (the real CLI: `ds4h run --select group:<stage>`), so its wall
time and peak RSS are its own. The I/O floor reads the same extract CSVs with pyarrow and writes them
as Parquet. Results are appended to bench/RESULTS.md with the date.

    uv run python bench/run_bench.py [--patients 100000] [--no-notes] [--max-rss-mb 4096] [--keep]
    uv run python bench/run_bench.py --synthea 100000    # one synthea-csv site (person buckets)
    uv run python bench/run_bench.py --products 100000   # the data products (bench/bench_products.py)

With ``--synthea N`` the extract is ../shared/data/synthea-v3-27 replicated to N patients
(bench/make_synthea.py) as one synthea-csv site, with ../shared/data/vocabulary-demo and a policy
for US data (postcodes are not Luxembourg's: generalised flat).

``--no-notes`` generates the extract without notes.csv (``ds4h generate --no-notes``). ``--max-rss-mb M``
marks a stage of the flow (raw, omop, pseudo, release) whose peak RSS reaches M MB as failed, in the
output and in RESULTS.md, and the exit code is then 1 (``make bench-million``: 4096). After a
successful release, ``ds4h verify`` of the published version is a step of its own.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
from pathlib import Path

from common import ROOT, SHARED, append_results, timed

SYNTHEA_CONFIG = """project: demo
sources:
- site: synthea
  format: synthea-csv
  path: landing/synthea
vocabulary: {vocab}
quality:
  dqd_blocks_on_fatal: false   # vocabulary-demo lacks the CDM version concept 756265
policy:
  quasi_identifiers:
  - {{column: year_of_birth, hierarchy: builtin:year5}}
  - {{column: sex, hierarchy: builtin:sex}}
  - {{column: postcode, hierarchy: builtin:flat}}
  - {{column: death_year, hierarchy: builtin:year5}}
"""

FLOOR = r"""
import sys
from pathlib import Path
import pyarrow.csv as pv, pyarrow.parquet as pq
home = Path(sys.argv[1])
for f in sorted((home / "landing").glob("*/*.csv")):
    enc = "cp1252" if f.parent.name == "hospital-c" else "utf8"
    delim = ";" if f.parent.name == "hospital-c" else ","
    t = pv.read_csv(f, read_options=pv.ReadOptions(encoding=enc),
                    parse_options=pv.ParseOptions(delimiter=delim),
                    convert_options=pv.ConvertOptions(strings_can_be_null=True))
    out = home / "floor" / f.parent.name / (f.stem + ".parquet")
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(t, out, compression="zstd")
"""


FLOW = ("raw", "omop", "pseudo", "release")  # the stages of the flow (a limit on peak RSS applies to them)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--synthea", type=int, metavar="N", help="one synthea-csv site of N patients instead")
    ap.add_argument("--products", type=int, metavar="N", help="the data products at N patients (bench_products.py)")
    ap.add_argument("--no-notes", action="store_true", help="generate the extract without notes.csv")
    ap.add_argument("--max-rss-mb", type=float, metavar="M",
                    help="a flow stage whose peak RSS reaches M MB fails the benchmark")
    ap.add_argument("--keep", action="store_true", help="keep the benchmark workspace")
    args = ap.parse_args()
    if args.products:
        from bench_products import main as products

        return products(["--patients", str(args.products), *(["--keep"] if args.keep else [])])
    tmp = Path(tempfile.mkdtemp(prefix="ds4h-bench-"))
    home = tmp / "home"
    env = dict(os.environ, DS4H_HOME=str(home), DS4H_KEYS=str(tmp / "keys"), GX_ANALYTICS_ENABLED="False")
    env.pop("DS4H_CONFIG", None)
    ds4h = [sys.executable, "-m", "pipelines.cli"]
    if args.synthea:
        args.patients = args.synthea
        home.mkdir(parents=True)
        (home / "ds4h.yaml").write_text(SYNTHEA_CONFIG.format(vocab=SHARED / "vocabulary-demo"), encoding="utf-8")
        make = [sys.executable, str(ROOT / "bench" / "make_synthea.py"), str(args.synthea),
                str(home / "landing" / "synthea"), "--skip-claims"]
        first = [("keys", [*ds4h, "keys", "new", "--project", "demo"]), ("generate (replicate Synthea)", make)]
    else:
        first = [("init", [*ds4h, "init"]),
                 ("generate", [*ds4h, "generate", "--patients", str(args.patients), "--sites", "3", "--seed", "1",
                               "--dirty", "0.02", *(["--no-notes"] if args.no_notes else [])])]
    steps = [
        *first,
        ("I/O floor (pyarrow CSV -> Parquet)", [sys.executable, "-c", FLOOR, str(home)]),
        ("raw (ingest, validate, quarantine)", [*ds4h, "run", "--select", "group:raw"]),
        ("omop (harmonise)", [*ds4h, "run", "--select", "group:omop"]),
        ("pseudo (pseudonymise, leak scan)", [*ds4h, "run", "--select", "group:pseudo"]),
        ("release + publish", [*ds4h, "run", "--select", "group:release or group:publish"]),
    ]
    rows: list[tuple[str, float, float, int, str]] = []  # name, wall, peak RSS, exit code, why it failed

    def step(name: str, cmd: list[str]) -> int:
        print(f"{name} ...", flush=True)
        run = timed(cmd, env=env, check=False)
        wall, rss, code = run.wall, run.rss_mb, run.code
        why = f"exit {code}" if code else ""
        if code:
            print(f"  failed ({code}): {run.stderr[-400:]}", file=sys.stderr)
        elif args.max_rss_mb and name.split()[0] in FLOW and rss >= args.max_rss_mb:
            why = f"peak {rss:.0f} MB >= {args.max_rss_mb:.0f} MB"
            print(f"  failed: {why}", file=sys.stderr)
        rows.append((name, wall, rss, code, why))
        print(f"  {wall:8.1f} s  {rss:8.0f} MB", flush=True)
        return code

    for name, cmd in steps:
        if step(name, cmd):
            break
    else:
        dataspace = home / "dataspace"
        published = sorted(p.parent.parent.name for p in dataspace.glob("*/1/manifest.json")) if dataspace.is_dir() else []
        for dataset in published:
            step(f"verify {dataset} 1", [*ds4h, "verify", dataset, "1"])
        if not published:
            rows.append(("verify", 0.0, 0.0, 1, "no published version"))
    floor = next((w for n, w, *_ in rows if n.startswith("I/O floor")), None)
    flow = sum(w for n, w, *_ in rows if n.split()[0] in FLOW)
    data_mb = sum(f.stat().st_size for f in (home / "landing").rglob("*.csv")) / 1e6
    stamp = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    what = "one synthea-csv site" if args.synthea else "3 sites" + (", no notes" if args.no_notes else "")
    lines = [f"\n## {stamp}: {args.patients:,} patients, {what} ({data_mb:,.0f} MB of CSV), {os.cpu_count()} cores\n",
             "| stage | wall s | peak RSS MB |", "|---|---:|---:|"]
    lines += [f"| {n} | {w:.1f} | {r:.0f} |" + (f" failed ({why})" if why else "") for n, w, r, _, why in rows]
    if args.max_rss_mb:
        lines.append(f"\nPeak RSS limit per flow stage: {args.max_rss_mb:.0f} MB.")
    if floor:
        lines.append(f"\nWhole flow (raw → publish): {flow:.1f} s = {flow / floor:.1f}× the I/O floor ({floor:.1f} s).")
    append_results("\n".join(lines) + "\n")
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"workspace kept: {tmp}")
    return 1 if any(why for *_, why in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
