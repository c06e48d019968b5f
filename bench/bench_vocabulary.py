"""Benchmark of ``ds4h vocabulary load`` (not a test).

1. The demo Athena download (../shared/data/vocabulary-demo), best of 3, in a fresh process each.
2. A synthetic Athena folder generated with DuckDB in a temporary folder (deleted afterwards):
   ``--relationships`` CONCEPT_RELATIONSHIP rows (default 20 million), ``--concepts`` CONCEPT rows,
   ``--ancestors`` CONCEPT_ANCESTOR rows; wall time and peak RSS of ``vocabulary load`` in a fresh
   process, then of ``load_vocabulary`` + one ``code_map`` on the result.

    uv run python bench/bench_vocabulary.py [--relationships 20000000] [--skip-large]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from common import SHARED, timed

DEMO = SHARED / "vocabulary-demo"

CLI = (
    "import typer, sys\n"
    "from pipelines.commands.vocabulary import register\n"
    "app = typer.Typer()\n"
    "register(app)\n"
    "@app.callback()\n"
    "def _root() -> None: ...\n"
    "app(sys.argv[1:])\n"
)
OPEN = (
    "import sys, time\n"
    "from transforms.vocabulary import load_vocabulary\n"
    "t = time.perf_counter()\n"
    "v = load_vocabulary(sys.argv[1])\n"
    "m = v.code_map('V1')\n"
    "print(f'{v.concept.height:,} concepts, {v.maps_to.height:,} Maps to, code_map(V1) {m.height:,} rows')\n"
)


def run(code: str, args: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB) and stdout of one fresh process."""
    r = timed([sys.executable, "-c", code, *args])
    return r.wall, r.rss_mb, r.stdout


def synthesise(folder: Path, relationships: int, concepts: int, ancestors: int) -> None:
    import duckdb

    folder.mkdir(parents=True)
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    opts = "(DELIMITER '\t', HEADER true)"
    con.execute(
        f"""COPY (SELECT i::INTEGER AS concept_id, 'Concept number ' || i AS concept_name,
                  ['Condition','Drug','Measurement','Observation','Procedure'][i % 5 + 1] AS domain_id,
                  'V' || (i % 40) AS vocabulary_id, 'Class' || (i % 7) AS concept_class_id,
                  CASE WHEN i % 3 = 0 THEN 'S' END AS standard_concept, 'C' || i AS concept_code,
                  '19700101' AS valid_start_date, '20991231' AS valid_end_date, NULL::VARCHAR AS invalid_reason
                FROM range(1, {concepts} + 1) t(i)) TO '{folder / "CONCEPT.csv"}' {opts}"""
    )
    con.execute(
        f"""COPY (SELECT (i % {concepts} + 1)::INTEGER AS concept_id_1,
                  ((i * 7919) % {concepts} + 1)::INTEGER AS concept_id_2,
                  ['Maps to','Mapped from','Is a','Subsumes','Has ingredient'][i % 5 + 1] AS relationship_id,
                  '19700101' AS valid_start_date, '20991231' AS valid_end_date,
                  CASE WHEN i % 97 = 0 THEN 'D' END AS invalid_reason
                FROM range(0, {relationships}) t(i)) TO '{folder / "CONCEPT_RELATIONSHIP.csv"}' {opts}"""
    )
    con.execute(
        f"""COPY (SELECT (i % {concepts} + 1)::INTEGER AS ancestor_concept_id,
                  ((i * 104729) % {concepts} + 1)::INTEGER AS descendant_concept_id,
                  (i % 6)::INTEGER AS min_levels_of_separation, (i % 6 + 1)::INTEGER AS max_levels_of_separation
                FROM range(0, {ancestors}) t(i)) TO '{folder / "CONCEPT_ANCESTOR.csv"}' {opts}"""
    )
    con.execute(
        f"""COPY (SELECT 'V' || i AS vocabulary_id, 'Vocabulary ' || i AS vocabulary_name, 'synthetic' AS
                  vocabulary_reference, 'v' || i AS vocabulary_version, i::INTEGER AS vocabulary_concept_id
                FROM range(0, 40) t(i)) TO '{folder / "VOCABULARY.csv"}' {opts}"""
    )
    con.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--relationships", type=int, default=20_000_000)
    ap.add_argument("--concepts", type=int, default=2_000_000)
    ap.add_argument("--ancestors", type=int, default=5_000_000)
    ap.add_argument("--skip-large", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ds4h-bench-vocab-") as tmp_:
        tmp = Path(tmp_)
        if DEMO.is_dir():
            times = []
            for i in range(3):
                wall, peak, _ = run(CLI, ["vocabulary", "load", str(DEMO), "--out", str(tmp / f"demo{i}")])
                times.append(wall)
            print(f"demo ({DEMO.name}): vocabulary load best of 3 {min(times):.2f} s (fresh process), "
                  f"peak RSS {peak:.0f} MiB")
        if a.skip_large:
            return
        athena = tmp / "athena-synthetic"
        t = time.perf_counter()
        synthesise(athena, a.relationships, a.concepts, a.ancestors)
        size = sum(p.stat().st_size for p in athena.iterdir()) / 2**20
        print(f"synthetic: {a.relationships:,} relationships, {a.concepts:,} concepts, {a.ancestors:,} ancestors, "
              f"{size:,.0f} MiB of TSV, generated in {time.perf_counter() - t:.1f} s")
        out = tmp / "loaded"
        wall, peak, _ = run(CLI, ["vocabulary", "load", str(athena), "--out", str(out)])
        parquet = sum(p.stat().st_size for p in out.iterdir()) / 2**20
        print(f"| step | wall s | peak RSS MiB |\n|---|---:|---:|\n| vocabulary load ({parquet:,.0f} MiB Parquet) "
              f"| {wall:.1f} | {peak:.0f} |")
        wall, peak, msg = run(OPEN, [str(out)])
        print(f"| load_vocabulary + code_map ({msg}) | {wall:.1f} | {peak:.0f} |")


if __name__ == "__main__":
    main()
