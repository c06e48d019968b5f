"""Write a Synthea CSV folder of N patients by replicating a small Synthea export with fresh ids.

    uv run python bench/make_synthea.py N OUT [--source DIR] [--skip-claims] [--time]

Copy k of the source gets ids whose first 8 characters are k in decimal (a UUID stays UUID-shaped):
patients, encounters, claims, members, careplans, imaging studies, and every column that refers to them
(PATIENT, PATIENTID, ENCOUNTER, APPOINTMENTID, CLAIMID, MEMBERID, PATIENTINSURANCEID) are rewritten
consistently, so references still resolve. Organizations, providers and payers are shared, as in a
real Synthea run. The last copy holds only the first patients needed to reach N. Dates, names and
values are copied as they are. ``--time`` then times ``read_synthea`` + ``synthea_to_staging`` on OUT in
a fresh process and prints seconds and peak RSS. The default source is ../shared/data/synthea-v3-27.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "synthea-v3-27"
SHARED_FILES = {"organizations.csv", "providers.csv", "payers.csv"}
CLAIM_FILES = {"claims.csv", "claims_transactions.csv"}
ID_COLUMNS = {"ID", "PATIENT", "PATIENTID", "ENCOUNTER", "APPOINTMENTID", "CLAIMID", "MEMBERID", "PATIENTINSURANCEID"}
PATIENT_COLUMNS = ("PATIENT", "PATIENTID")
ROWS_PER_BATCH = 400_000


def _fresh(col: str) -> pl.Expr:
    c = pl.col(col)
    return pl.when(c.str.len_chars() > 8).then(pl.col("_k").cast(pl.String).str.zfill(8) + c.str.slice(8)).otherwise(c)


def replicate(source: Path, out: Path, n: int, skip_claims: bool = False) -> dict[str, int]:
    """Write ``n`` patients into ``out``; returns the rows written per file."""
    out.mkdir(parents=True, exist_ok=True)
    patients = pl.read_csv(source / "patients.csv", infer_schema=False)
    per_copy = patients.height
    copies = math.ceil(n / per_copy)
    last_ids = patients["Id"].head(n - per_copy * (copies - 1))
    written: dict[str, int] = {}
    for path in sorted(source.glob("*.csv")):
        if skip_claims and path.name in CLAIM_FILES:
            continue
        df = pl.read_csv(path, infer_schema=False)
        if path.name in SHARED_FILES:
            df.write_csv(out / path.name)
            written[path.name] = df.height
            continue
        upper = {c: c.upper() for c in df.columns}
        id_cols = [c for c in df.columns if upper[c] in ID_COLUMNS]
        pcol = "Id" if path.name == "patients.csv" else next((c for c in df.columns if upper[c] in PATIENT_COLUMNS), None)
        batch = max(1, ROWS_PER_BATCH // max(df.height, 1))
        total = 0
        with (out / path.name).open("wb") as f:
            for start in range(0, copies, batch):
                ks = pl.DataFrame({"_k": pl.arange(start, min(start + batch, copies), eager=True)})
                rep = df.join(ks, how="cross")
                if pcol is not None:
                    rep = rep.filter((pl.col("_k") < copies - 1) | pl.col(pcol).is_in(last_ids.implode()))
                rep = rep.with_columns([_fresh(c).alias(c) for c in id_cols]).drop("_k")
                rep.write_csv(f, include_header=start == 0)
                total += rep.height
        if total == 0 and df.height == 0:
            df.write_csv(out / path.name)
        written[path.name] = total
    return written


_TIMER = """
import json, resource, sys, time
from pathlib import Path
t = time.perf_counter()
from transforms.adapters.synthea import read_synthea, synthea_to_staging
raw = read_synthea("bench", Path(sys.argv[1]))
t_read = time.perf_counter() - t
st = synthea_to_staging(raw)
t_all = time.perf_counter() - t
print(json.dumps({"read_s": round(t_read, 2), "total_s": round(t_all, 2),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                  "staging": {k: v.height for k, v in st.items()},
                  "quarantined": sum(r.quarantined for r in raw.entities.values())}))
"""


def time_adapter(folder: Path) -> dict[str, object]:
    """Time read_synthea + synthea_to_staging on ``folder`` in a fresh process (seconds, peak RSS)."""
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", _TIMER, str(folder)], cwd=root, capture_output=True, text=True,
                          check=True)
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", type=int, help="number of patients")
    ap.add_argument("out", type=Path, help="output folder (created)")
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="a Synthea CSV folder to replicate")
    ap.add_argument("--skip-claims", action="store_true", help="do not write claims*.csv (the adapter ignores them)")
    ap.add_argument("--time", action="store_true", help="then time the synthea adapter on OUT")
    args = ap.parse_args(argv)
    if args.n < 1:
        ap.error("N must be at least 1")
    t = time.perf_counter()
    written = replicate(args.source, args.out, args.n, args.skip_claims)
    print(f"wrote {args.n} patients to {args.out} in {time.perf_counter() - t:.1f} s: "
          + ", ".join(f"{k} {v}" for k, v in written.items()))
    if args.time:
        print(json.dumps(time_adapter(args.out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
