"""Cancer pathways: breast, lung, colorectal and prostate cancer from diagnosis to treatment lines and death.

A person gets at most one cancer (:func:`draw_profile`, age- and sex-specific incidence per 100,000 and
year, over the ten years of the extract), diagnosed in the window. The diagnostic stay's principal
diagnosis carries the ICD-O-3 histology and the clinical TNM with its UICC 8th edition stage group
(:data:`TNM_STAGE`: every (T, N, M) written is one of the group's combinations); the later stays of the
cancer carry its histology too (so that they map to the same ICD-O-3 concept), without TNM. Treatment follows the
cancer and the stage (:func:`cancer_pathway`): surgery (INPATIENT), radiotherapy (weekly OUTPATIENT
visits of the course), chemotherapy as day-case OUTPATIENT visits, one per cycle at the regimen's
interval, with one medication row per drug administered, and hormone therapy (tamoxifen or anastrozole
every 6 months, leuprorelin depot every 3 months). Survival: an exponential cancer death time whose
5-year survival is that of the stage (:data:`SURVIVAL_5Y`), plus a background mortality by age; when the
cancer kills, it progresses first (at 45-75 % of the survival time) and a next line of treatment starts.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from generator.clinical import MEDS
from generator.visits import Diagnosis, Lab, Med, Pathway, Visit, before_death

__all__ = [
    "CANCERS",
    "INCIDENCE",
    "REGIMENS",
    "STAGE_SHARES",
    "SURVIVAL_5Y",
    "TNM_STAGE",
    "CancerProfile",
    "cancer_pathway",
    "draw_profile",
    "main_stage",
]

YEAR: Final = 365.25
CANCERS: Final = ("breast", "lung", "colorectal", "prostate")

# Incidence per 100,000 and year by age band (lower bounds) and sex: (M, F).
INCIDENCE: Final[dict[str, tuple[tuple[int, float, float], ...]]] = {
    "breast": ((0, 0, 0), (30, 0, 30), (40, 1, 130), (50, 1, 230), (60, 2, 300), (70, 2, 320), (80, 2, 300)),
    "prostate": ((0, 0, 0), (45, 40, 0), (55, 250, 0), (65, 600, 0), (75, 600, 0), (85, 500, 0)),
    "lung": ((0, 0, 0), (40, 15, 10), (50, 80, 50), (60, 200, 110), (70, 300, 150), (80, 280, 120)),
    "colorectal": ((0, 0, 0), (40, 20, 18), (50, 70, 50), (60, 150, 95), (70, 260, 180), (80, 340, 260)),
}

# Clinical TNM -> stage group (UICC TNM 8th edition; sub-categories upper-cased as the contract writes them:
# T2B, N2A, M1C); prostate from TNM alone (PSA and Gleason grade not modelled).
TNM_STAGE: Final[dict[str, dict[tuple[str, str, str], str]]] = {
    "breast": {
        ("T1", "N0", "M0"): "IA",
        ("T1", "N1", "M0"): "IIA", ("T2", "N0", "M0"): "IIA",
        ("T2", "N1", "M0"): "IIB", ("T3", "N0", "M0"): "IIB",
        ("T1", "N2", "M0"): "IIIA", ("T2", "N2", "M0"): "IIIA", ("T3", "N1", "M0"): "IIIA",
        ("T3", "N2", "M0"): "IIIA",
        ("T4", "N0", "M0"): "IIIB", ("T4", "N1", "M0"): "IIIB", ("T4", "N2", "M0"): "IIIB",
        ("T2", "N3", "M0"): "IIIC", ("T3", "N3", "M0"): "IIIC", ("T4", "N3", "M0"): "IIIC",
        ("T2", "N0", "M1"): "IV", ("T2", "N1", "M1"): "IV", ("T3", "N2", "M1"): "IV", ("T4", "N2", "M1"): "IV",
    },
    "lung": {
        ("T1", "N0", "M0"): "IA",
        ("T2A", "N0", "M0"): "IB",
        ("T2B", "N0", "M0"): "IIA",
        ("T1", "N1", "M0"): "IIB", ("T2A", "N1", "M0"): "IIB", ("T2B", "N1", "M0"): "IIB", ("T3", "N0", "M0"): "IIB",
        ("T1", "N2", "M0"): "IIIA", ("T2A", "N2", "M0"): "IIIA", ("T3", "N1", "M0"): "IIIA",
        ("T4", "N0", "M0"): "IIIA", ("T4", "N1", "M0"): "IIIA",
        ("T1", "N3", "M0"): "IIIB", ("T2A", "N3", "M0"): "IIIB", ("T3", "N2", "M0"): "IIIB",
        ("T4", "N2", "M0"): "IIIB",
        ("T3", "N3", "M0"): "IIIC", ("T4", "N3", "M0"): "IIIC",
        ("T2A", "N2", "M1A"): "IVA", ("T3", "N2", "M1B"): "IVA", ("T4", "N3", "M1A"): "IVA",
        ("T3", "N2", "M1C"): "IVB", ("T4", "N3", "M1C"): "IVB", ("T2B", "N1", "M1C"): "IVB",
    },
    "colorectal": {
        ("T1", "N0", "M0"): "I", ("T2", "N0", "M0"): "I",
        ("T3", "N0", "M0"): "IIA",
        ("T4A", "N0", "M0"): "IIB",
        ("T4B", "N0", "M0"): "IIC",
        ("T1", "N1", "M0"): "IIIA", ("T2", "N1", "M0"): "IIIA", ("T1", "N2A", "M0"): "IIIA",
        ("T3", "N1", "M0"): "IIIB", ("T4A", "N1", "M0"): "IIIB", ("T2", "N2A", "M0"): "IIIB",
        ("T3", "N2A", "M0"): "IIIB", ("T2", "N2B", "M0"): "IIIB",
        ("T4A", "N2A", "M0"): "IIIC", ("T3", "N2B", "M0"): "IIIC", ("T4B", "N1", "M0"): "IIIC",
        ("T4B", "N2", "M0"): "IIIC",
        ("T3", "N1", "M1A"): "IVA", ("T4A", "N2", "M1A"): "IVA",
        ("T3", "N2", "M1B"): "IVB", ("T4A", "N1", "M1B"): "IVB",
        ("T4B", "N2", "M1C"): "IVC",
    },
    "prostate": {
        ("T1", "N0", "M0"): "I", ("T2A", "N0", "M0"): "I",
        ("T2B", "N0", "M0"): "II", ("T2C", "N0", "M0"): "II",
        ("T3A", "N0", "M0"): "III", ("T3B", "N0", "M0"): "III", ("T4", "N0", "M0"): "III",
        ("T2C", "N1", "M0"): "IVA", ("T3A", "N1", "M0"): "IVA", ("T3B", "N1", "M0"): "IVA",
        ("T3A", "N0", "M1"): "IVB", ("T3B", "N1", "M1"): "IVB", ("T4", "N1", "M1"): "IVB",
    },
}

# Shares of stages I, II, III, IV at diagnosis (small cell lung cancer: its own row).
STAGE_SHARES: Final[dict[str, tuple[float, float, float, float]]] = {
    "breast": (0.44, 0.38, 0.11, 0.07),
    "lung": (0.18, 0.08, 0.22, 0.52),
    "lung_small_cell": (0.03, 0.03, 0.24, 0.70),
    "colorectal": (0.18, 0.27, 0.31, 0.24),
    "prostate": (0.22, 0.30, 0.28, 0.20),
}

# 5-year survival by stage I, II, III, IV.
SURVIVAL_5Y: Final[dict[str, tuple[float, float, float, float]]] = {
    "breast": (0.98, 0.90, 0.72, 0.26),
    "lung": (0.57, 0.35, 0.14, 0.04),
    "lung_small_cell": (0.30, 0.20, 0.12, 0.02),
    "colorectal": (0.92, 0.84, 0.66, 0.11),
    "prostate": (0.99, 0.99, 0.95, 0.49),
}

# Chemotherapy regimens: (drugs, days between cycles, cycles)
REGIMENS: Final[dict[str, tuple[tuple[str, ...], int, int]]] = {
    "AC": (("L01DB01", "L01AA01"), 21, 4),  # doxorubicin + cyclophosphamide
    "paclitaxel_weekly": (("L01CD01",), 7, 12),
    "docetaxel": (("L01CD02",), 21, 6),
    "carboplatin_paclitaxel": (("L01XA02", "L01CD01"), 21, 4),
    "cisplatin_etoposide": (("L01XA01", "L01CB01"), 21, 4),
    "carboplatin_etoposide": (("L01XA02", "L01CB01"), 21, 4),
    "FOLFOX": (("L01XA03", "L01BC02"), 14, 12),  # oxaliplatin + fluorouracil (folinic acid not coded)
    "capecitabine": (("L01BC06",), 21, 6),
}
_HISTOLOGY: Final = {
    "breast": (("8500/3", 0.8), ("8520/3", 0.2)),
    "lung": (("8140/3", 0.55), ("8070/3", 0.30), ("8041/3", 0.15)),
    "colorectal": (("8140/3", 1.0),),
    "prostate": (("8140/3", 1.0),),
}
# ICD-10 sites of colorectal cancers: caecum, ascending, sigmoid, overlapping, colon unspecified,
# rectosigmoid junction, rectum
_COLORECTAL_SITES: Final = (("C18.0", 0.15), ("C18.2", 0.10), ("C18.7", 0.25), ("C18.8", 0.03), ("C18.9", 0.12),
                            ("C19", 0.05), ("C20", 0.30))
_WARD: Final = {"breast": "Oncologie", "lung": "Pneumologie", "colorectal": "Gastro-entérologie",
                "prostate": "Urologie"}
_CHEMO_LABS: Final = ("haemoglobin", "platelets", "leukocytes", "creatinine")


@dataclass(frozen=True, slots=True)
class CancerProfile:
    cancer: str
    diagnosis: int  # day
    code: str  # ICD-10
    histology: str  # ICD-O-3
    tnm: tuple[str, str, str]
    stage_group: str
    hormone_sensitive: bool  # breast: oestrogen receptor positive


def main_stage(group: str) -> int:
    """1..4 of a stage group ("IIIA" -> 3)."""
    roman = group.rstrip("ABC")
    return {"I": 1, "II": 2, "III": 3, "IV": 4}[roman]


def _rate(cancer: str, age: int, sex: str) -> float:
    rate = 0.0
    for lo, m, f in INCIDENCE[cancer]:
        if age >= lo:
            rate = m if sex == "M" else f if sex == "F" else (m + f) / 2
    return rate / 100_000


def _pick(rng: random.Random, items: Sequence[tuple[str, float]]) -> str:
    x = rng.random() * sum(w for _, w in items)
    for item, w in items:
        x -= w
        if x < 0:
            return item
    return items[-1][0]


def draw_profile(rng: random.Random, age: int, sex: str, start: int, end: int) -> CancerProfile | None:
    """A cancer diagnosed between ``start`` and ``end`` (days) of a person aged ``age`` at the reference
    date, or None. The chance of each cancer is its incidence over the window's years at the person's age
    five years earlier."""
    years = (end - start) / YEAR
    if years <= 0:
        return None
    x = rng.random()
    cancer = ""
    for c in CANCERS:
        p = 1 - math.exp(-_rate(c, max(age - 5, 0), sex) * years)
        if x < p:
            cancer = c
            break
        x -= p
    if not cancer:
        return None
    day = start + int(rng.random() * (end - start))
    histology = _pick(rng, _HISTOLOGY[cancer])
    small_cell = histology == "8041/3"
    shares = STAGE_SHARES["lung_small_cell" if small_cell else cancer]
    stage = 1 + int(_pick(rng, [(str(i), w) for i, w in enumerate(shares)]))
    combos = [(tnm, g) for tnm, g in TNM_STAGE[cancer].items() if main_stage(g) == stage]
    tnm, group = combos[int(rng.random() * len(combos))]
    if cancer == "breast":
        code = "C50.4" if rng.random() < 0.35 else "C50.9"
    elif cancer == "lung":  # the demo vocabulary maps C34.1 to small cell, C34.3 and C34.9 to non-small cell
        code = "C34.1" if small_cell else "C34.3" if rng.random() < 0.6 else "C34.9"
    elif cancer == "colorectal":
        code = _pick(rng, _COLORECTAL_SITES)
    else:
        code = "C61"
    return CancerProfile(cancer, day, code, histology, tnm, group, cancer == "breast" and rng.random() < 0.75)


class _Plan:
    """The visits of one pathway being built."""

    def __init__(self, p: CancerProfile, rng: random.Random, end: int) -> None:
        self.p = p
        self.rng = rng
        self.end = end
        self.visits: list[Visit] = []

    def dose(self, atc: str) -> str:
        doses = MEDS[atc].doses
        return doses[int(self.rng.random() * len(doses))]

    def labs(self, tests: Sequence[str]) -> tuple[Lab, ...]:
        g = self.rng.gauss
        base = {"haemoglobin": (12.4, 1.2), "platelets": (230, 60), "leukocytes": (6.2, 1.8), "creatinine": (0.9, 0.15)}
        lo = {"haemoglobin": 7.0, "platelets": 20, "leukocytes": 1.0, "creatinine": 0.4}
        return tuple(Lab(t, max(lo[t], g(*base[t]))) for t in tests)

    def add(self, day: int, stay_type: str, los: int, procedures: tuple[str, ...] = (), meds: tuple[Med, ...] = (),
            labs: tuple[Lab, ...] = (), routine: bool = True, dx: Diagnosis | None = None, ward: str = "") -> None:
        if day > self.end:
            return
        dx = dx or Diagnosis(self.p.code, self.p.histology)
        self.visits.append(Visit(day, stay_type, los, ward or "Oncologie", (dx,), procedures, labs, meds, routine))

    def chemo(self, start: int, regimen: str, cycles: int | None = None) -> int:
        """Day-case cycles from ``start``; the day after the last cycle's interval."""
        drugs, interval, n = REGIMENS[regimen]
        day = start
        for _ in range(cycles or n):
            meds = tuple(Med(a, self.dose(a), day, day + (13 if a == "L01BC06" else 0)) for a in drugs)
            self.add(day, "OUTPATIENT", 0, ("chemotherapy",), meds, self.labs(_CHEMO_LABS))
            day += interval + (7 if self.rng.random() < 0.04 else 0)  # a cycle delayed a week now and then
        return day

    def radiotherapy(self, start: int, weeks: int) -> int:
        for w in range(weeks):
            self.add(start + 7 * w, "OUTPATIENT", 0, ("radiotherapy",))
        return start + 7 * weeks

    def surgery(self, day: int, procedures: tuple[str, ...], los: int) -> int:
        self.add(day, "INPATIENT", los, procedures, (), self.labs(("haemoglobin", "leukocytes", "creatinine")),
                 routine=False, ward=_WARD[self.p.cancer])
        return day + los

    def hormone(self, start: int, atc: str, years: float, stop: int | None = None) -> None:
        every = 91 if MEDS[atc].duration == "depot" else 182
        last = min(start + int(years * YEAR), stop if stop is not None else 10**9)
        day = start
        while day < last:
            self.add(day, "OUTPATIENT", 0, (), (Med(atc, self.dose(atc), day, day + every - 1),))
            day += every

    def follow_up(self, start: int, years: int) -> None:
        for k in range(2 * years):
            self.add(start + 182 * k + int(self.rng.random() * 21), "OUTPATIENT", 0)


def cancer_pathway(p: CancerProfile, birth: int, end: int, ref: int, rng: random.Random) -> Pathway:
    """The visits of the cancer from its diagnosis up to ``end`` (the last admission day), and the death
    when it comes before ``ref`` (the extract's reference date)."""
    stage = main_stage(p.stage_group)
    small_cell = p.histology == "8041/3"
    key = "lung_small_cell" if small_cell else p.cancer
    # survival: cancer death (exponential with the stage's 5-year survival) or background death
    lam = -math.log(max(SURVIVAL_5Y[key][stage - 1], 0.001)) / 5 if SURVIVAL_5Y[key][stage - 1] < 1 else 0.0
    cancer_years = rng.expovariate(lam) if lam > 0 else math.inf
    age = (p.diagnosis - birth) / YEAR
    background = rng.expovariate(0.0008 * math.exp(0.09 * (age - 40)))
    progression: int | None = None
    if cancer_years < background:
        death_day = p.diagnosis + 14 + int(cancer_years * YEAR)
        cause = p.code
        progression = p.diagnosis + 14 + int(cancer_years * YEAR * (0.45 + 0.3 * rng.random()))
    else:
        death_day = p.diagnosis + 14 + int(background * YEAR)
        x = rng.random()
        cause = "I21.9" if x < 0.45 else "I50.9" if x < 0.75 else "J18.9"
    death = (death_day, cause) if death_day < ref else None

    plan = _Plan(p, rng, end)
    t, n, m = p.tnm
    diagnostic = {"breast": ("sentinel_node",), "lung": ("lung_fna", "chest_xray"),
                  "colorectal": ("colonoscopy", "colon_biopsy"), "prostate": ("prostate_biopsy",)}[p.cancer]
    plan.add(p.diagnosis, "OUTPATIENT", 0, diagnostic if p.cancer != "breast" else (),
             labs=plan.labs(("haemoglobin", "leukocytes", "creatinine")), routine=False,
             dx=Diagnosis(p.code, p.histology, t, n, m, p.stage_group), ward=_WARD[p.cancer])
    d0 = p.diagnosis + 21 + int(rng.random() * 15)
    if p.cancer == "breast":
        day = _breast(plan, p, stage, d0, birth, progression)
    elif p.cancer == "lung":
        day = _lung(plan, stage, small_cell, d0)
    elif p.cancer == "colorectal":
        day = _colorectal(plan, p, stage, d0)
    else:
        day = _prostate(plan, stage, d0, progression, age)
    if progression is not None and progression > day + 30:
        _next_line(plan, p, small_cell, progression)
    elif p.cancer in ("lung", "colorectal") or (p.cancer == "breast" and not p.hormone_sensitive):
        plan.follow_up(day + 60, 5)
    visits = sorted(plan.visits, key=lambda v: v.day)
    return Pathway(before_death(visits, death[0] if death else None), death)


def _breast(plan: _Plan, p: CancerProfile, stage: int, d0: int, birth: int, progression: int | None) -> int:
    rng = plan.rng
    hormone = "L02BA01" if (d0 - birth) / YEAR < 50 else "L02BG03"  # tamoxifen before menopause, else anastrozole
    if stage == 4:
        if p.hormone_sensitive:
            plan.hormone(d0, hormone, 10, progression)
            return d0
        return plan.chemo(d0, "paclitaxel_weekly")
    day = plan.surgery(d0, ("mastectomy", "sentinel_node"), 2 + int(rng.random() * 3))
    if stage >= 2 or rng.random() < 0.15:
        day = plan.chemo(day + 28 + int(rng.random() * 14), "AC")
        day = plan.chemo(day, "paclitaxel_weekly")
    day = plan.radiotherapy(day + 28, 3)
    if p.hormone_sensitive:
        plan.hormone(day + 14, hormone, 5, progression)
    return day


def _lung(plan: _Plan, stage: int, small_cell: bool, d0: int) -> int:
    rng = plan.rng
    first = "cisplatin_etoposide" if small_cell else "carboplatin_paclitaxel"
    cycles = 4 + int(rng.random() * 3)
    if small_cell:
        day = plan.chemo(d0, first, cycles)
        return plan.radiotherapy(day, 6) if stage <= 3 else day
    if stage <= 2:
        day = plan.surgery(d0, ("lung_excision",), 5 + int(rng.random() * 4))
        return plan.chemo(day + 42, first, 4) if stage == 2 else day
    if stage == 3:
        plan.radiotherapy(d0, 6)
        return plan.chemo(d0, first, 4)
    return plan.chemo(d0, first, cycles)


def _colorectal(plan: _Plan, p: CancerProfile, stage: int, d0: int) -> int:
    rng = plan.rng
    if stage == 4:
        return plan.chemo(d0, "FOLFOX")
    day = d0
    rectum = p.code == "C20"
    if rectum and stage >= 2:
        day = plan.radiotherapy(day, 5) + 42  # neoadjuvant radiotherapy, surgery 6 weeks later
    day = plan.surgery(day, ("rectal_resection",) if rectum else ("colectomy",), 5 + int(rng.random() * 5))
    if stage == 3 or (stage == 2 and rng.random() < 0.25):
        day = plan.chemo(day + 35, "FOLFOX")
    return day


def _prostate(plan: _Plan, stage: int, d0: int, progression: int | None, age: float) -> int:
    rng = plan.rng
    if stage == 4:
        plan.hormone(d0, "L02AE02", 15)
        if age < 75 and rng.random() < 0.5:
            return plan.chemo(d0 + 28, "docetaxel")
        return d0
    if stage <= 2 and rng.random() < 0.5:
        return plan.surgery(d0, ("prostatectomy",), 3 + int(rng.random() * 3))
    day = plan.radiotherapy(d0 + 56, 4)
    if stage >= 2:
        plan.hormone(d0, "L02AE02", 0.5 if stage == 2 else 2, progression)
    return day


def _next_line(plan: _Plan, p: CancerProfile, small_cell: bool, day: int) -> None:
    """The treatment at progression: a new line."""
    if p.cancer == "breast":
        plan.chemo(day, "docetaxel" if plan.visits and any(
            m.atc == "L01CD01" for v in plan.visits for m in v.meds) else "paclitaxel_weekly")
    elif p.cancer == "lung":
        plan.chemo(day, "carboplatin_etoposide" if small_cell else "docetaxel")
    elif p.cancer == "colorectal":
        had_folfox = any(m.atc == "L01XA03" for v in plan.visits for m in v.meds)
        plan.chemo(day, "capecitabine" if had_folfox else "FOLFOX")
    elif not any(m.atc == "L01CD02" for v in plan.visits for m in v.meds):
        plan.chemo(day, "docetaxel")
