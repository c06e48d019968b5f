"""Benchmark of the k-anonymity engine and of ``ds4h anonymise-table`` (not a test).

1. ARX's adult table, 8 QIs, k = 5, 5% suppression: per metric the levels chosen, classes,
   suppressed records, nodes evaluated and search time (in process), then the whole command end to
   end (a fresh process: imports, reading, search, writing, report), best of 3.
2. A 1,000,000-person QI table (year of birth, sex, synthetic Luxembourg postcode, date of first
   visit) as Parquet through the command: wall time and peak memory of the process.

    uv run python bench/bench_kanon.py [--persons 1000000] [--skip-large]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, SHARED, timed

ADULT = SHARED / "arx-adult"
QIS = ["sex", "age", "race", "marital-status", "education", "native-country", "workclass", "occupation"]
# ARX 3.9.2's optima with its default metrics (k = 5, 5% suppression), as tests/test_kanon_adult.py pins
ARX = {
    "loss": (0, 3, 0, 0, 1, 1, 1, 2),
    "precision": (0, 4, 0, 0, 1, 1, 0, 2),
    "discernibility": (0, 0, 1, 2, 3, 2, 2, 1),
    "aecs": (1, 0, 1, 1, 3, 2, 2, 0),
    "entropy": (0, 0, 1, 1, 2, 2, 2, 1),
}

CLI = (
    "import typer, sys\n"
    "from pipelines.commands.anonymise_table import register\n"
    "app = typer.Typer()\n"
    "register(app)\n"
    "@app.callback()\n"
    "def _root() -> None: ...\n"
    "app(sys.argv[1:])\n"
)


def run_command(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one anonymise-table command in a fresh process."""
    run = timed([sys.executable, "-c", CLI, "anonymise-table", *args])
    return run.wall, run.rss_mb


def bench_adult(tmp: Path) -> None:
    import polars as pl

    from anonymisation.hierarchy import load_arx_hierarchy
    from anonymisation.kanon import METRICS, PrivacyModel, encode, frequency_table, search

    df = pl.read_csv(ADULT / "adult.csv", separator=";", infer_schema=False)
    hs = {q: load_arx_hierarchy(ADULT / "hierarchies" / f"adult_hierarchy_{q}.csv") for q in QIS}
    t = time.perf_counter()
    problem = encode(frequency_table(df, QIS), hs)
    prep = time.perf_counter() - t
    print(
        f"adult: {problem.n} records, {len(problem.counts)} distinct QI combinations, "
        f"lattice {problem.lattice_size} nodes; frequency table + encoding {prep:.3f} s"
    )
    print(
        "| metric | levels ("
        + ", ".join(QIS)
        + ") | = ARX 3.9.2 | classes | suppressed | nodes evaluated | search s |"
    )
    print("|---|---|---|---|---|---|---|")
    for metric in METRICS:
        best = None
        for _ in range(3):
            r = search(problem, PrivacyModel(k=5, suppression=0.05), metric)
            best = r if best is None or r.seconds < best.seconds else best
        assert best is not None
        print(
            f"| {metric} | {best.node} | {'yes' if best.node == ARX[metric] else 'NO'} | {best.classes} "
            f"| {best.suppressed} | {best.evaluations} | {best.seconds:.3f} |"
        )
    qi_args = [a for q in QIS for a in ("--qi", f"{q}={ADULT / 'hierarchies' / f'adult_hierarchy_{q}.csv'}")]
    for metric in ("loss", "discernibility"):
        times = []
        for _ in range(3):
            wall, peak = run_command(
                [
                    str(ADULT / "adult.csv"),
                    "--delimiter",
                    ";",
                    *qi_args,
                    "--k",
                    "5",
                    "--suppression",
                    "0.05",
                    "--metric",
                    metric,
                    "--out",
                    str(tmp / "adult.csv"),
                    "--report",
                    str(tmp / "adult.json"),
                ]
            )
            times.append(wall)
        inside = json.loads((tmp / "adult.json").read_text())["seconds"]
        print(
            f"adult end to end ({metric}): {min(times):.2f} s wall (best of 3), of which {inside:.2f} s after "
            f"start-up inside the command; peak RSS {peak:.0f} MiB"
        )
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import polars, numpy, pydantic, typer"], check=True)
    print(
        f"(python start-up + importing polars, numpy, pydantic, typer alone: {time.perf_counter() - t:.2f} s)"
    )


def make_people(path: Path, n: int) -> None:
    import numpy as np
    import polars as pl

    from schemas.geo import communes

    rng = np.random.default_rng(6)
    postcodes = [pc for c in communes() for pc in c.postcodes]
    weights = rng.pareto(1.2, len(postcodes)) + 0.05
    weights /= weights.sum()
    years = np.clip(rng.normal(1975, 22, n).round(), 1915, 2024).astype(np.int64)
    start = np.datetime64("2015-01-01")
    df = pl.DataFrame(
        {
            "person_id": np.arange(n, dtype=np.int64),
            "year_of_birth": years,
            "sex": rng.choice(["F", "M"], n),
            "postcode": rng.choice(postcodes, n, p=weights),
            "first_visit": (start + rng.integers(0, 3650, n).astype("timedelta64[D]")).astype(
                "datetime64[D]"
            ),
            "value": rng.normal(size=n),
        }
    )
    df.write_parquet(path)


def bench_large(tmp: Path, n: int) -> None:
    src = tmp / "people.parquet"
    t = time.perf_counter()
    make_people(src, n)
    print(
        f"\n{n:,} persons generated in {time.perf_counter() - t:.1f} s ({src.stat().st_size / 2**20:.0f} MiB Parquet)"
    )
    for qis in (
        ["year_of_birth=builtin:year5", "sex=builtin:sex", "postcode=builtin:lu-postcode"],
        [
            "year_of_birth=builtin:year5",
            "sex=builtin:sex",
            "postcode=builtin:lu-postcode",
            "first_visit=builtin:date-month",
        ],
    ):
        args = [
            str(src),
            *[a for q in qis for a in ("--qi", q)],
            "--k",
            "5",
            "--suppression",
            "0.05",
            "--out",
            str(tmp / "out.parquet"),
            "--report",
            str(tmp / "big.json"),
        ]
        wall, peak = run_command(args)
        rep = json.loads((tmp / "big.json").read_text())
        s = rep["search"]
        print(
            f"{len(qis)} QIs ({', '.join(q.split('=')[0] for q in qis)}): levels {rep['levels']}, "
            f"{rep['classes']} classes, {rep['suppressed']} suppressed; lattice {s['lattice_size']}, "
            f"{s['evaluations']} nodes evaluated, search {s['seconds']:.2f} s; "
            f"command {wall:.2f} s wall, peak RSS {peak:.0f} MiB"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--persons", type=int, default=1_000_000)
    ap.add_argument("--skip-large", action="store_true")
    ns = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if (ADULT / "adult.csv").exists():
            bench_adult(tmp)
        else:
            print("adult data absent (../shared/data/arx-adult): skipped")
        if not ns.skip_large:
            bench_large(tmp, ns.persons)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
