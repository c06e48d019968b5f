"""The data products at N generated patients: build time and size, and whether t2dm-complications
carries a signal a model can learn.

1. ``ds4h init``, ``ds4h generate --patients N --sites 3``, a pseudonymised release (policy.mode
   pseudonymised, a data permit; every quasi-identifier may collapse, so that a small N never blocks)
   and ``ds4h run``: the whole flow, timed as one process;
2. the products rebuilt in this process on that workspace, each timed (pipelines/product_assets.py:
   the functions the Dagster assets call): oncology, t2dm-complications in its anonymised form
   (aggregates, from the pseudo zone) and in its pseudonymised form (the PatientLevelPrediction
   files, from the release's tables); files, rows and bytes of each;
3. usefulness: per complication, a scikit-learn LogisticRegression on the published 5-year
   population and the covariates (sparse, scaled by the largest absolute value of each covariate),
   trained on 70% of the subjects and scored on the other 30% (the split: SHA-256 of subjectId),
   AUC on the 30%. The generator's signal should give clearly better than chance (>= 0.7).

    uv run python bench/bench_products.py [--patients 100000] [--keep]

Results are appended to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml
from common import ROOT, append_results, timed

QIS = [("year_of_birth", "builtin:year5"), ("sex", "builtin:sex"), ("postcode", "builtin:lu-postcode"),
       ("death_year", "builtin:year5")]


def _pseudonymised(home: Path) -> None:
    path = home / "ds4h.yaml"
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    cfg["policy"] = {"mode": "pseudonymised", "thresholds": {"avg_risk": 0.2}, "suppression": 0.06,
                     "quasi_identifiers": [{"column": c, "hierarchy": h, "allow_removal": True} for c, h in QIS]}
    cfg["release"]["permit"] = "BENCH-1"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")


def _size(folder: Path) -> tuple[int, int, int]:
    """Parquet files, rows, bytes (product.json included in the bytes)."""
    files = sorted(folder.glob("*.parquet"))
    rows = sum(pl.scan_parquet(f).select(pl.len()).collect().item() for f in files)
    return len(files), rows, sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def build_products(home: Path) -> list[tuple[str, str, float, int, int, int]]:
    """(product, form, wall s, files, rows, bytes) of each product rebuilt on the workspace ``home``."""
    os.environ["DS4H_HOME"] = str(home)
    from pipelines.product_assets import oncology_product, product_folder, t2dm_product
    from schemas.config import load_config
    from transforms.storage import Workspace

    config, ws = load_config(str(home / "ds4h.yaml")), Workspace(home)
    anonymised = config.model_copy(update={"policy": config.policy.model_copy(update={"mode": "anonymised"})})
    out = []
    for name, form, build in (
        ("oncology", "aggregates", lambda: oncology_product(config, ws)),
        ("t2dm-complications", "aggregates (anonymised)", lambda: t2dm_product(anonymised, ws)),
        ("t2dm-complications", "PatientLevelPrediction (pseudonymised)", lambda: t2dm_product(config, ws)),
    ):
        start = time.perf_counter()
        build()
        wall = time.perf_counter() - start
        out.append((name, form, wall, *_size(product_folder(ws, name))))
    return out


def _train(subject: int) -> bool:
    return int.from_bytes(hashlib.sha256(str(subject).encode()).digest()[:8], "big") % 100 < 70


def usefulness(folder: Path, outcomes: list[str]) -> list[dict[str, Any]]:
    """Per outcome: persons and outcomes of the 5-year population, train/test sizes and the test AUC."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import MaxAbsScaler

    cov = pl.read_parquet(folder / "covariates.parquet")
    ids = {c: i for i, c in enumerate(sorted(set(cov["covariateId"].to_list())))}
    rows_out = []
    for outcome in outcomes:
        pop = pl.read_parquet(folder / f"population_{outcome}_5y.parquet").sort("rowId")
        position = {r: i for i, r in enumerate(pop["rowId"].to_list())}
        c = cov.filter(pl.col("rowId").is_in(pop["rowId"].implode()))
        x = sparse.csr_matrix((c["covariateValue"].to_numpy(),
                               ([position[r] for r in c["rowId"].to_list()], [ids[v] for v in c["covariateId"].to_list()])),
                              shape=(pop.height, max(len(ids), 1)))
        y = pop["outcomeCount"].to_numpy() > 0
        train = np.array([_train(s) for s in pop["subjectId"].to_list()], dtype=bool)
        row: dict[str, Any] = {"outcome": outcome, "persons": pop.height, "with_outcome": int(y.sum()),
                               "train": int(train.sum()), "test": int((~train).sum()), "auc": None}
        if len(set(y[train].tolist())) == 2 and len(set(y[~train].tolist())) == 2:
            scaler = MaxAbsScaler().fit(x[train])
            model = LogisticRegression(max_iter=2000).fit(scaler.transform(x[train]), y[train])
            row["auc"] = float(roc_auc_score(y[~train], model.predict_proba(scaler.transform(x[~train]))[:, 1]))
        rows_out.append(row)
    return rows_out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--keep", action="store_true", help="keep the benchmark workspace")
    args = ap.parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    tmp = Path(tempfile.mkdtemp(prefix="ds4h-bench-products-"))
    home = tmp / "home"
    env = dict(os.environ, DS4H_HOME=str(home), DS4H_KEYS=str(tmp / "keys"), DAGSTER_HOME=str(home / "dagster"),
               GX_ANALYTICS_ENABLED="False", DAGSTER_DISABLE_TELEMETRY="1")
    env.pop("DS4H_CONFIG", None)
    os.environ["DS4H_KEYS"] = env["DS4H_KEYS"]
    ds4h = [sys.executable, "-m", "pipelines.cli"]
    timed([*ds4h, "init"], env=env)
    print("generate ...", flush=True)
    timed([*ds4h, "generate", "--patients", str(args.patients), "--sites", "3", "--seed", "1", "--dirty", "0.02"],
          env=env)
    _pseudonymised(home)
    print("ds4h run (pseudonymised) ...", flush=True)
    flow = timed([*ds4h, "run"], env=env)
    print(f"  {flow.wall:.1f} s", flush=True)
    print("products ...", flush=True)
    builds = build_products(home)
    from pipelines.product_assets import OUTCOMES

    published = home / "dataspace" / "omop-demo" / "1" / "products" / "t2dm-complications"
    scores = usefulness(published, list(OUTCOMES))
    stamp = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [f"\n## {stamp}: data products (bench/bench_products.py), {args.patients:,} patients, 3 sites, "
             f"pseudonymised release, {os.cpu_count()} cores\n",
             f"Whole flow (`ds4h run`, one process): {flow.wall:.1f} s, peak RSS {flow.rss_mb:.0f} MB. "
             "Each product rebuilt on its own, in one process:\n",
             "| product | form | wall s | Parquet files | rows | bytes |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {n} | {f} | {w:.2f} | {k} | {r:,} | {b:,} |" for n, f, w, k, r, b in builds]
    lines += ["\nLogistic regression per complication on the 5-year population (70/30 split by a hash of "
              "subjectId), AUC on the 30%:\n",
              "| outcome | persons | with outcome | train | test | AUC |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {s['outcome']} | {s['persons']:,} | {s['with_outcome']:,} | {s['train']:,} | {s['test']:,} | "
              + (f"{s['auc']:.3f}" if s["auc"] is not None else "n/a (one class)") + " |" for s in scores]
    append_results("\n".join(lines) + "\n")
    if args.keep:
        print(f"workspace kept: {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
