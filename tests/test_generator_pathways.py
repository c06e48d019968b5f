"""Diabetes and cancer pathways of the generator: causal order, schedules, escalation, stages, survival."""

from __future__ import annotations

import csv
import random
from collections import defaultdict
from datetime import date
from itertools import pairwise
from pathlib import Path

import pytest

from generator import diabetes, oncology
from generator.hospital import SiteSpec, generate
from generator.visits import Pathway

REF = date(2026, 1, 1).toordinal()
START = REF - 3652
END = REF - 17
CANCER_OF = {"C50": "breast", "C34": "lung", "C18": "colorectal", "C19": "colorectal", "C20": "colorectal",
             "C61": "prostate"}
COMPLICATIONS = {"E11.2", "E11.3", "E11.4", "E11.5", "E10.2", "E10.3"}


def _read(root: Path, name: str) -> list[dict[str, str]]:
    with open(root / "hospital-a" / f"{name}.csv", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def extract(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pathways")
    generate(root, 3000, [SiteSpec("hospital-a")], 3, 0.0)
    return root


def _t2d(seed: int, age: int = 62, onset_years_ago: float = 4.0, control: float = 0.0) -> Pathway:
    rng = random.Random(seed)
    birth = REF - int(age * 365.25)
    profile = diabetes.DiabetesProfile(
        "t2d", REF - int(onset_years_ago * 365.25), control, "never", True, False, False, 31.0
    )
    return diabetes.diabetes_pathway(profile, birth, START, END, rng)


def _codes(v: object) -> set[str]:
    return {d.code for d in v.diagnoses}  # type: ignore[attr-defined]


def test_complications_only_after_the_diagnosis_and_kept_once_found() -> None:
    found = 0
    for seed in range(300):
        pw = _t2d(seed, control=1.5, onset_years_ago=8)  # diagnosed in the window: its first visit is the diagnosis
        assert pw.visits[0].diagnoses[0].code == "E11.9"
        assert not _codes(pw.visits[0]) & COMPLICATIONS
        seen: set[str] = set()
        for v in pw.visits:
            codes = _codes(v) & COMPLICATIONS
            assert seen <= codes, "a complication once found is coded at every later visit"
            assert ("E11.9" in _codes(v)) == (not codes), "E11.9 only while there is no complication"
            seen = codes
        found += bool(seen)
    assert found > 50  # poorly controlled diabetes does get complications


def test_hba1c_every_three_to_six_months(extract: Path) -> None:
    pw = _t2d(1)
    days = [v.day for v in pw.visits]
    assert all(91 <= b - a <= 182 for a, b in pairwise(days))
    assert all(any(lab.test == "hba1c" for lab in v.labs) for v in pw.visits)
    # in the extract: a diabetic's HbA1c samples are 3 to 6 months apart (HbA1c is only measured at follow-up)
    per_patient: dict[str, list[date]] = defaultdict(list)
    for r in _read(extract, "labs"):
        if r["loinc_code"] == "4548-4":
            per_patient[r["patient_id"]].append(date.fromisoformat(r["sampled_at"][:10]))
    assert len(per_patient) > 100
    for samples in per_patient.values():
        samples.sort()
        assert all(91 <= (b - a).days <= 182 for a, b in pairwise(samples)), samples
    # once a year at least: eGFR, urine albumin/creatinine, BMI and the coded smoking status
    tests = {r["loinc_code"] for r in _read(extract, "labs")}
    assert {"62238-1", "14959-1", "39156-5", "72166-2"} <= tests


def test_treatment_escalates_only_when_hba1c_stays_above_target() -> None:
    classes = {
        "A10BA02": "metformin", "A10BK01": "sglt2", "A10BK03": "sglt2", "A10BH01": "dpp4",
        "A10BJ02": "glp1", "A10BJ05": "glp1", "A10BJ06": "glp1", "A10AD01": "insulin",
    }
    escalations = 0
    for seed in range(200):
        pw = _t2d(seed, control=1.0, onset_years_ago=9)
        prev_classes: set[str] = set()
        prev_a1c = 0.0
        for i, v in enumerate(pw.visits):
            now = {classes[m.atc] for m in v.meds}
            a1c = next(lab.value for lab in v.labs if lab.test == "hba1c")
            assert a1c is not None
            if i == 0:
                assert now == {"metformin"}  # metformin first
            elif now - prev_classes:
                escalations += 1
                assert a1c > 7.0 and prev_a1c > 7.0, (seed, v.day, now, prev_classes, a1c, prev_a1c)
            prev_classes, prev_a1c = now, a1c
    assert escalations > 100
    # good control: metformin is enough
    assert all({m.atc for v in _t2d(s, control=-2.0, onset_years_ago=3).visits for m in v.meds} == {"A10BA02"}
               for s in range(20))


def _cancer(cancer: str, group: str, code: str, histology: str, seed: int, age: int = 60) -> Pathway:
    tnm = next(k for k, g in oncology.TNM_STAGE[cancer].items() if g == group)
    p = oncology.CancerProfile(cancer, START + 100, code, histology, tnm, group, False)
    return oncology.cancer_pathway(p, START + 100 - int(age * 365.25), END, REF + 100 * 365, random.Random(seed))


def _cycles(pw: Pathway, atc: str) -> list[int]:
    return [v.day for v in pw.visits if any(m.atc == atc for m in v.meds)]


def test_regimens_in_cycles_at_their_intervals() -> None:
    folfox = _cycles(_cancer("colorectal", "IIIB", "C18.9", "8140/3", 5), "L01XA03")  # oxaliplatin
    assert len(folfox) == 12
    gaps = [b - a for a, b in pairwise(folfox)]
    assert sorted(gaps)[len(gaps) // 2] == 14 and set(gaps) <= {14, 21}
    breast = _cancer("breast", "IIB", "C50.9", "8500/3", 2)
    ac = _cycles(breast, "L01DB01")  # doxorubicin with cyclophosphamide
    assert len(ac) == 4 and _cycles(breast, "L01AA01") == ac
    assert all(b - a in (21, 28) for a, b in pairwise(ac))
    taxol = _cycles(breast, "L01CD01")
    assert len(taxol) == 12 and taxol[0] > ac[-1] and all(b - a in (7, 14) for a, b in pairwise(taxol))
    # every administration is a day-case stay with the chemotherapy procedure, one row per drug
    for v in breast.visits:
        if v.meds and v.meds[0].atc.startswith("L01"):
            assert v.stay_type == "OUTPATIENT" and "chemotherapy" in v.procedures
            assert all(m.start == m.end == v.day for m in v.meds)


def test_tnm_consistent_with_stage_group(extract: Path) -> None:
    staged = [r for r in _read(extract, "diagnoses") if r["stage_group"]]
    assert len(staged) > 30
    seen_cancers = set()
    for r in staged:
        cancer = CANCER_OF[r["icd10_code"][:3]]
        seen_cancers.add(cancer)
        tnm = (r["tnm_t"], r["tnm_n"], r["tnm_m"])
        assert oncology.TNM_STAGE[cancer][tnm] == r["stage_group"], r
        # the rules of UICC 8th edition, independently of the table
        if r["tnm_m"] != "M0":
            assert r["stage_group"].startswith("IV"), r
        elif cancer == "prostate":  # node-positive prostate cancer is stage IVA
            assert r["stage_group"].startswith("IV") == (r["tnm_n"] != "N0"), r
        else:
            assert not r["stage_group"].startswith("IV"), r
        if r["tnm_m"] == "M0" and r["tnm_n"] == "N0" and r["tnm_t"] == "T1":
            assert r["stage_group"] in ("I", "IA"), r
        if cancer != "prostate" and r["tnm_m"] == "M0" and r["tnm_n"] != "N0":
            assert r["stage_group"].startswith(("II", "III")), r
        assert r["diagnosis_rank"] == "PRINCIPAL" and r["histology"] in {"8500/3", "8520/3", "8140/3", "8070/3",
                                                                         "8041/3"}
        assert (r["histology"] == "8041/3") == (r["icd10_code"] == "C34.1")
    assert len(seen_cancers) >= 3
    # one staged diagnosis per cancer patient, and prostate cancer only for men
    per_patient = [r["patient_id"] for r in staged]
    assert len(per_patient) == len(set(per_patient))
    sex = {r["patient_id"]: r["sex"] for r in _read(extract, "patients")}
    assert all(sex[r["patient_id"]] == "M" for r in staged if r["icd10_code"] == "C61")


@pytest.mark.parametrize(
    ("cancer", "code", "histology", "groups"),
    [
        ("breast", "C50.9", "8500/3", ("IA", "IIA", "IIIA", "IV")),
        ("lung", "C34.9", "8140/3", ("IA", "IIB", "IIIA", "IVA")),
        ("colorectal", "C18.9", "8140/3", ("I", "IIA", "IIIB", "IVA")),
    ],
)
def test_survival_ordered_by_stage(cancer: str, code: str, histology: str, groups: tuple[str, ...]) -> None:
    five_year = []
    for group in groups:
        dead = 0
        for seed in range(400):
            pw = _cancer(cancer, group, code, histology, seed)
            dead += pw.death is not None and pw.death[0] - (START + 100) <= 5 * 365
        five_year.append(1 - dead / 400)
    assert five_year == sorted(five_year, reverse=True) and five_year[0] - five_year[-1] > 0.4, five_year


def test_no_event_after_death(extract: Path) -> None:
    deaths = {r["patient_id"]: r["death_date"] for r in _read(extract, "patients") if r["death_date"]}
    assert len(deaths) > 50
    causes = {r["death_cause_code"] for r in _read(extract, "patients") if r["death_date"]}
    assert {c[:3] for c in causes} & {"C50", "C34", "C18", "C19", "C20", "C61"}
    checks = {"stays": ("discharge",), "diagnoses": ("diagnosis_date",), "labs": ("sampled_at",),
              "procedures": ("procedure_date",), "medications": ("start_date", "end_date")}
    n = 0
    for name, cols in checks.items():
        for r in _read(extract, name):
            death = deaths.get(r["patient_id"])
            if death:
                for c in cols:
                    assert not r[c] or r[c][:10] <= death, (name, r, death)
                    n += 1
    assert n > 1000


def test_diabetes_prevalence_and_complications_after_the_first_visit(extract: Path) -> None:
    patients = _read(extract, "patients")
    adults = {r["patient_id"] for r in patients if r["birth_date"] <= "2007-12-31"}
    dx = _read(extract, "diagnoses")
    t2d = {r["patient_id"] for r in dx if r["icd10_code"].startswith("E11")}
    assert 0.05 < len(t2d & adults) / len(adults) < 0.13  # adults of a hospital population: older than average
    first: dict[str, str] = {}
    for r in dx:
        if r["icd10_code"].startswith(("E10", "E11")):
            first[r["patient_id"]] = min(first.get(r["patient_id"], "9999"), r["diagnosis_date"])
    # incident diabetes (first coded after the window's first year): no complication at the first visit
    incident = {p for p, d in first.items() if d > "2017-01-01"}
    assert incident
    for r in dx:
        if r["patient_id"] in incident and r["icd10_code"] in COMPLICATIONS:
            assert r["diagnosis_date"] > first[r["patient_id"]], r


def test_pathways_are_deterministic() -> None:
    assert _t2d(11) == _t2d(11)
    assert _t2d(11) != _t2d(12)
    assert _cancer("lung", "IVB", "C34.9", "8140/3", 4) == _cancer("lung", "IVB", "C34.9", "8140/3", 4)
