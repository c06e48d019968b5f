"""Can a model learn 5-year type 2 diabetes complications from the generated extracts? (docs/generator.md)

    uv run --with scikit-learn python bench/learnability_t2dm.py [--patients 40000] [--seed 5]

Generates one clean site, takes the adults whose first E11 code is in the data (the baseline), builds
baseline features (age, sex, prior conditions, diabetes/cardiovascular drugs of the year before, the last
HbA1c, eGFR, urine albumin/creatinine, BMI, systolic pressure, creatinine, smoking status) and prints the
5-fold cross-validated AUC of a logistic regression for each complication within 5 years, among those
without it at baseline and followed 5 years (or with the event). scikit-learn is not a dependency.
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.linear_model import LogisticRegression  # type: ignore[import-not-found]
from sklearn.metrics import roc_auc_score  # type: ignore[import-not-found]
from sklearn.model_selection import StratifiedKFold, cross_val_predict  # type: ignore[import-not-found]
from sklearn.pipeline import make_pipeline  # type: ignore[import-not-found]
from sklearn.preprocessing import StandardScaler  # type: ignore[import-not-found]

from generator.hospital import SiteSpec, generate

REF = date(2026, 1, 1)
KEY = ["patient_id"]
COMPLICATIONS = {"nephropathy": "E11.2", "retinopathy": "E11.3", "neuropathy": "E11.4", "diabetic foot": "E11.5"}
CONDITIONS = ("I10", "E78.5", "N18.3", "I50.9", "I48.9", "I21.9", "F32.9", "J45.9", "D64.9")
LABS = {"4548-4": "hba1c", "62238-1": "egfr", "14959-1": "uacr", "39156-5": "bmi", "8480-6": "sbp", "2160-0": "creat"}


def _read(root: Path, name: str) -> pl.DataFrame:
    return pl.read_csv(root / "hospital-a" / f"{name}.csv", infer_schema=False)


def cohort(root: Path) -> tuple[pl.DataFrame, list[str]]:
    pat = _read(root, "patients").select("patient_id", pl.col("birth_date").str.to_date(), "sex")
    dx = _read(root, "diagnoses").select("patient_id", "icd10_code", d=pl.col("diagnosis_date").str.to_date())
    labs = _read(root, "labs").select("patient_id", "loinc_code", "value_code",
                                      v=pl.col("value").cast(pl.Float64, strict=False),
                                      d=pl.col("sampled_at").str.slice(0, 10).str.to_date())
    meds = _read(root, "medications").select("patient_id", "atc_code", d=pl.col("start_date").str.to_date())
    t1 = dx.filter(pl.col("icd10_code").str.starts_with("E10")).select(KEY).unique()
    coh = (dx.filter(pl.col("icd10_code").str.starts_with("E11")).group_by(KEY).agg(base=pl.col("d").min())
           .join(t1, on=KEY, how="anti").join(pat, on=KEY)
           .with_columns(age=(pl.col("base") - pl.col("birth_date")).dt.total_days() / 365.25)
           .filter(pl.col("age") >= 18))
    base = coh.select(*KEY, "base")
    j = dx.join(base, on=KEY)
    for name, code in COMPLICATIONS.items():
        first = j.filter(pl.col("icd10_code") == code).group_by(KEY).agg(pl.col("d").min().alias(name))
        coh = coh.join(first, on=KEY, how="left")
    feats = ["age", "male", "smoker", "exsmoker", "luacr", *LABS.values()]
    prior = j.filter(pl.col("d") <= pl.col("base"))
    for c in CONDITIONS:
        coh = coh.join(prior.filter(pl.col("icd10_code") == c).select(KEY).unique().with_columns(pl.lit(1).alias(c)),
                       on=KEY, how="left")
        feats.append(c)
    year = meds.join(base, on=KEY).filter(pl.col("d").is_between(pl.col("base") - pl.duration(days=365),
                                                                  pl.col("base")))
    for atc in sorted(a for a in year["atc_code"].unique() if a.startswith(("A10", "C", "B01"))):
        coh = coh.join(year.filter(pl.col("atc_code") == atc).select(KEY).unique().with_columns(pl.lit(1).alias(atc)),
                       on=KEY, how="left")
        feats.append(atc)
    seen = labs.join(base, on=KEY).filter(pl.col("d") <= pl.col("base") + pl.duration(days=1)).sort("d")
    for loinc, name in LABS.items():
        coh = coh.join(seen.filter(pl.col("loinc_code") == loinc).group_by(KEY).agg(pl.col("v").last().alias(name)),
                       on=KEY, how="left")
    smoking = seen.filter(pl.col("loinc_code") == "72166-2").group_by(KEY).agg(smk=pl.col("value_code").last())
    coh = coh.join(smoking, on=KEY, how="left").with_columns(
        smoker=(pl.col("smk") == "77176002").cast(pl.Float64), exsmoker=(pl.col("smk") == "8517006").cast(pl.Float64),
        male=(pl.col("sex") == "M").cast(pl.Float64), luacr=pl.col("uacr").log())
    return coh.with_columns(pl.col(feats).cast(pl.Float64)), feats


def auc(coh: pl.DataFrame, feats: list[str], outcomes: list[str]) -> tuple[int, int, float]:
    horizon = pl.col("base") + pl.duration(days=int(5 * 365.25))
    prior = pl.any_horizontal([(pl.col(o) <= pl.col("base")).fill_null(False) for o in outcomes])
    event = pl.any_horizontal([((pl.col(o) > pl.col("base")) & (pl.col(o) <= horizon)).fill_null(False)
                               for o in outcomes])
    d = coh.filter(~prior).with_columns(y=event)
    d = d.filter((pl.col("base") <= pl.lit(REF - timedelta(days=int(5 * 365.25)))) | pl.col("y"))
    x = d.select(feats).to_numpy()
    median = np.nan_to_num(np.nanmedian(x, axis=0))
    x = np.where(np.isnan(x), median, x)
    y = d["y"].to_numpy()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    p = cross_val_predict(model, x, y, cv=StratifiedKFold(5, shuffle=True, random_state=0), method="predict_proba")
    return len(y), int(y.sum()), float(roc_auc_score(y, p[:, 1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=40_000)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp), args.patients, [SiteSpec("hospital-a")], args.seed, 0.0)
        coh, feats = cohort(Path(tmp))
    print(f"{coh.height} adults whose first type 2 diabetes code is in the data (seed {args.seed})")
    for label, outcomes in [("any complication", list(COMPLICATIONS)), *((n, [n]) for n in COMPLICATIONS)]:
        n, events, value = auc(coh, feats, outcomes)
        print(f"{label:17s} n={n:5d} events={events:4d} ({events / n:.0%})  AUC {value:.3f}")


if __name__ == "__main__":
    main()
