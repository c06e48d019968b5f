"""Benchmark of the release audit (anonymisation/audit.py, not a test).

Writes a synthetic release folder (two versions of one dataset) and times ``audit_release`` in a fresh
process per run (wall time with imports, the audit's own seconds, the process's peak RSS):

- version 2: N persons (default 100,000) in about N / 50 classes (sex x 5-year band x 20 postcodes x
  death year), ~40 distinct facts per person from visits (concept, care site, a unique source
  value), conditions (concept + source value), condition eras, drugs (concept + source value),
  measurements, with Zipf-like concept frequencies;
- version 1: 95% of those persons (5% are new in version 2), 2% with another year band, fewer rows.

    uv run python bench/bench_audit.py [--persons 100000] [--classes 2000] [--no-visit-ids] [--out DIR]
                                       [--record]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from common import append_results, timed

RUN = (
    "import json, sys\n"
    "from pathlib import Path\n"
    "from anonymisation.audit import audit_release\n"
    "v, k, m, joint = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == '1'\n"
    "r = audit_release(v, k, m, earlier=None if joint else [])\n"
    "print(json.dumps(r.as_dict()))\n"
)


def zipf(rng: np.random.Generator, n: int, size: int, a: float = 1.1) -> np.ndarray:
    """Indices 0..n-1 with probability ~ 1 / (i + 1)^a."""
    w = 1.0 / np.arange(1, n + 1) ** a
    return rng.choice(n, size=size, p=w / w.sum()).astype(np.int64)


def write(folder: Path, table: str, columns: dict[str, np.ndarray | pa.Array]) -> None:
    (folder / "omop" / table).mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), folder / "omop" / table / "part-0.parquet")


def make_version(folder: Path, ids: np.ndarray, band: np.ndarray, sex: np.ndarray, zips: np.ndarray,
                 dead: np.ndarray, seed: int, scale: float, visit_ids: bool) -> int:
    rng = np.random.default_rng(seed)
    n = len(ids)
    write(folder, "person", {
        "person_id": ids, "gender_concept_id": np.where(sex == 0, 8507, 8532).astype(np.int32),
        "year_of_birth": (1930 + 5 * band).astype(np.int32), "location_id": zips.astype(np.int64),
        "race_concept_id": np.zeros(n, np.int32), "gender_source_value": np.where(sex == 0, "M", "F"),
    })
    write(folder, "location", {"location_id": np.arange(20, dtype=np.int64),
                               "zip": np.array([f"L-{1000 + 50 * i}" for i in range(20)])})
    who = np.flatnonzero(dead)
    write(folder, "death", {
        "person_id": ids[who],
        "death_date": pa.array(np.datetime64("2018-01-01") + rng.integers(0, 3, len(who)) * 365, pa.date32()),
        "cause_concept_id": (4306655 + zipf(rng, 30, len(who))).astype(np.int32)})
    rows = 0

    def per_person(mean: float) -> np.ndarray:
        return np.repeat(ids, rng.poisson(mean * scale, n))

    p = per_person(3)
    visits = {"person_id": p, "visit_concept_id": (9201 + zipf(rng, 3, len(p))).astype(np.int32),
              "care_site_id": zipf(rng, 60, len(p))}
    if visit_ids:  # one value per visit, as in today's releases: every person is at risk at level 1
        visits["visit_source_value"] = np.char.add(f"v{seed}-", np.arange(len(p)).astype(str))
    write(folder, "visit_occurrence", visits)
    rows += len(p)
    p = per_person(7)
    cond = zipf(rng, 2000, len(p))
    write(folder, "condition_occurrence", {
        "person_id": p, "condition_concept_id": (200000 + cond).astype(np.int32),
        "condition_source_value": np.char.add("C", (cond * 2 + (rng.random(len(p)) < 0.1)).astype(str))})
    write(folder, "condition_era", {"person_id": p, "condition_concept_id": (200000 + cond).astype(np.int32)})
    rows += 2 * len(p)
    p = per_person(5)
    drug = zipf(rng, 1000, len(p))
    write(folder, "drug_exposure", {
        "person_id": p, "drug_concept_id": (1100000 + drug).astype(np.int32),
        "drug_source_value": np.char.add("D", drug.astype(str))})
    rows += len(p)
    p = per_person(10)
    write(folder, "measurement", {
        "person_id": p, "measurement_concept_id": (3000000 + zipf(rng, 300, len(p), 1.3)).astype(np.int32),
        "value_as_number": rng.normal(size=len(p))})
    rows += len(p)
    return rows


def make_release(root: Path, persons: int, classes: int, visit_ids: bool) -> Path:
    rng = np.random.default_rng(7)
    ids = rng.choice(np.int64(2) ** 62, size=persons, replace=False).astype(np.int64)
    # class key: sex (2) x year band (bands) x zip (20) x death year (mostly none): ~classes cells
    bands = max(1, classes // 40)
    sex = rng.integers(0, 2, persons)
    band = rng.integers(0, bands, persons)
    zips = rng.integers(0, 20, persons)
    dead = rng.random(persons) < 0.01
    dataset = root / "dataspace" / "bench"
    rows2 = make_version(dataset / "2", ids, band, sex, zips, dead, 2, 1.0, visit_ids)
    keep = rng.random(persons) < 0.95
    band1 = np.where(rng.random(persons) < 0.02, (band + 1) % bands, band)
    rows1 = make_version(dataset / "1", ids[keep], band1[keep], sex[keep], zips[keep], dead[keep], 1, 0.6, visit_ids)
    print(f"version 2: {persons:,} persons, {rows2:,} event rows; version 1: {int(keep.sum()):,} persons, "
          f"{rows1:,} event rows")
    return dataset / "2"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, default=100_000)
    ap.add_argument("--classes", type=int, default=2_000)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--no-visit-ids", action="store_true",
                    help="no visit_source_value (one per visit): persons are not all at risk at level 1")
    ap.add_argument("--out", type=Path, help="keep the synthetic release here (default: a temporary folder)")
    ap.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        version = make_release(root, args.persons, args.classes, not args.no_visit_ids)
        lines = [
            f"\n\n## {datetime.now():%Y-%m-%d %H:%M}: release audit (bench/bench_audit.py), "
            f"{args.persons:,} persons, ~{args.classes:,} classes, k = {args.k}"
            f"{', no visit_source_value' if args.no_visit_ids else ''}, 2 cores\n\n",
            "| m | joint | wall s | audit s | peak RSS MB | persons | classes | person-facts | at_risk | joint at_risk |\n",
            "|---:|---|---:|---:|---:|---:|---:|---:|---|---|\n",
        ]
        for m, joint in ((0, False), (1, False), (2, False), (3, False), (2, True), (3, True)):
            run = timed([sys.executable, "-c", RUN, str(version), str(args.k), str(m), "1" if joint else "0"])
            r = json.loads(run.stdout.splitlines()[-1])
            rel = r["release"]
            j = r["joint"]["check"]["at_risk"] if r["joint"] else "-"
            lines.append(f"| {m} | {'1+2' if joint else 'no'} | {run.wall:.1f} | {r['seconds']:.1f} | "
                         f"{run.rss_mb:.0f} | {rel['persons']:,} | {rel['classes']:,} | {rel['person_facts'] or 0:,} | "
                         f"{rel['at_risk']} | {j} |\n")
            print(lines[-1], end="", flush=True)
        if args.record:
            append_results("".join(lines))


if __name__ == "__main__":
    main()
