"""Type 1 and type 2 diabetes pathways: diagnosis, follow-up, treatment escalation, complications, death.

A diabetic person (:class:`DiabetesProfile`, drawn by :func:`draw_profile`) is followed from the
diagnosis, which can predate the extract's ten-year window, every 3 to 6 months by an OUTPATIENT visit
of the endocrinology ward. Visits before the window are simulated (treatment, HbA1c, kidney function and
complications evolve) but not written, so that a prevalent patient's first visit in the data already
shows the treatment and complications of their history. Every visit records HbA1c (4548-4) and blood
pressure; once a year eGFR (62238-1, CKD-EPI), urine albumin/creatinine (14959-1), BMI (39156-5),
creatinine and the smoking status (72166-2, coded SNOMED CT result).

- HbA1c: a person-level control level (``control``, standard normal: adherence, beta-cell reserve) plus
  a drift with the duration of type 2 diabetes (UKPDS 33: HbA1c rises by about 0.2 %/year under any
  monotherapy), minus the effect of the current drugs (scaled by adherence), plus noise.
- Treatment (type 2; ADA/EASD consensus 2018/2019): metformin at diagnosis; when HbA1c is above 7 % at
  two consecutive visits (and the last change is 6 months old) the next drug is added: an SGLT2
  inhibitor (empagliflozin, dapagliflozin) first when the kidneys or heart are involved, a GLP-1
  receptor agonist (liraglutide, semaglutide, dulaglutide) first when BMI >= 30, else a DPP-4 inhibitor
  (sitagliptin) or an SGLT2 inhibitor; then the other class (a GLP-1 agonist replaces a DPP-4
  inhibitor); then insulin. Metformin stops below eGFR 30. Type 1: basal-bolus insulin from diagnosis.
- Complications (each coded from the visit where it is found, and at every later visit): retinopathy,
  nephropathy, neuropathy and (type 2) diabetic foot, each from a yearly hazard
  ``base * exp(linear predictor)`` of the updated mean HbA1c since diagnosis (hazard ratio 1.57 per 1 %:
  UKPDS 35, 37 % less microvascular disease per 1 % HbA1c), duration, age, hypertension (UKPDS 38), smoking, BMI, and for
  nephropathy the albumin/creatinine ratio and eGFR; the foot from neuropathy (loss of protective
  sensation). Albuminuria rises with HbA1c, blood pressure and smoking; eGFR falls faster with
  nephropathy, slower under an SGLT2 inhibitor.
- Death: a Gompertz baseline by age times hazard ratios for diabetes (1.8, Emerging Risk Factors
  Collaboration 2011), its duration, nephropathy, low eGFR, diabetic foot, smoking and heart failure.

Parameters are in the module's tables; docs/generator.md names the sources.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Final

from generator.clinical import MEDS
from generator.visits import Diagnosis, Lab, Med, Pathway, Visit, before_death

__all__ = [
    "COMPLICATION_CODES",
    "DiabetesProfile",
    "diabetes_pathway",
    "draw_profile",
    "t1d_prevalence",
    "t2d_prevalence",
]

YEAR: Final = 365.25
HBA1C_TARGET: Final = 7.0
SMOKING_CODES: Final = {"smoker": "77176002", "ex": "8517006", "never": "266919005"}

# complication -> ICD-10 code per diabetes type (type 1 neuropathy and foot: no sourced concept, not modelled)
COMPLICATION_CODES: Final[dict[str, dict[str, str]]] = {
    "t2d": {"nephropathy": "E11.2", "retinopathy": "E11.3", "neuropathy": "E11.4", "foot": "E11.5"},
    "t1d": {"nephropathy": "E10.2", "retinopathy": "E10.3"},
}
PLAIN_CODE: Final = {"t2d": "E11.9", "t1d": "E10.9"}

# yearly hazard at HbA1c 7 %, no duration, age 60, no hypertension, never smoker
_BASE_HAZARD: Final = {"retinopathy": 0.012, "nephropathy": 0.008, "neuropathy": 0.012, "foot": 0.002}
_LOG_HR_HBA1C: Final = math.log(1.57)  # per 1 % (UKPDS 35: 37 % less microvascular disease per 1 % lower)
_LOG_HR_HBA1C_RETINOPATHY: Final = math.log(1.9)  # per 1 % (DCCT: the steep HbA1c gradient of retinopathy)

# the drugs (doses, units and routes in generator.clinical.MEDS)
_SGLT2: Final = ("A10BK03", "A10BK01")  # empagliflozin, dapagliflozin
_GLP1: Final = ("A10BJ06", "A10BJ05", "A10BJ02")  # semaglutide, dulaglutide, liraglutide
_DPP4: Final = ("A10BH01",)  # sitagliptin
_METFORMIN: Final = "A10BA02"
_INSULIN: Final = "A10AD01"  # the demo vocabulary's insulin product (intermediate + fast acting)
_BOLUS: Final = "A10AB04"  # insulin lispro
# HbA1c lowering (%, full adherence) of each class added to the treatment
_EFFECT: Final = {"metformin": 1.1, "sglt2": 0.7, "dpp4": 0.6, "glp1": 1.1, "insulin": 1.4}
_CLASS_OF: Final = {_METFORMIN: "metformin", _INSULIN: "insulin", _BOLUS: "insulin"} | {
    a: c for c, atcs in (("sglt2", _SGLT2), ("glp1", _GLP1), ("dpp4", _DPP4)) for a in atcs
}


def t2d_prevalence(age: int) -> float:
    """Share of people of ``age`` with type 2 diabetes (diagnosed by the reference date)."""
    if age < 20:
        return 0.0
    if age < 35:
        return 0.006
    if age < 45:
        return 0.02
    if age < 55:
        return 0.05
    if age < 65:
        return 0.10
    if age < 75:
        return 0.15
    return 0.17


def t1d_prevalence(age: int) -> float:
    return 0.0 if age < 5 else 0.004


@dataclass(frozen=True, slots=True)
class DiabetesProfile:
    kind: str  # "t1d" or "t2d"
    onset: int  # day of the diagnosis
    control: float  # latent, standard normal: higher is worse glycaemic control
    smoking: str  # "smoker", "ex" or "never"
    hypertension: bool
    ckd: bool
    heart_failure: bool
    bmi: float


def draw_profile(
    rng: random.Random, kind: str, age: int, birth: int, ref: int, hypertension: bool, ckd: bool, hf: bool
) -> DiabetesProfile:
    """The diabetes (``kind`` "t1d" or "t2d", drawn with :func:`t1d_prevalence`, :func:`t2d_prevalence`)
    of a person aged ``age`` at the reference day ``ref``: its diagnosis day and risk factors."""
    if kind == "t1d":
        onset_age = 5 + rng.random() * max(min(age, 40) - 5, 0.5)
    else:
        # years since diagnosis: exponential with a 9-year mean, diagnosed at 30 or later
        onset_age = age - min(rng.expovariate(1 / 9), max(age - 30, 0.5))
    onset = min(birth + int(onset_age * YEAR), ref - 30)
    s = rng.random()
    smoking = "smoker" if s < 0.2 else "ex" if s < 0.45 else "never"
    bmi = rng.gauss(30.5, 5) if kind == "t2d" else rng.gauss(25, 3.5)
    return DiabetesProfile(kind, onset, rng.gauss(0, 1), smoking, hypertension, ckd, hf, min(max(bmi, 18.0), 55.0))


@dataclass(slots=True)
class _State:
    drugs: list[str]
    last_change: int
    prev_hba1c: float
    mean_hba1c: float  # updated mean since the diagnosis (UKPDS 35)
    n_hba1c: int
    egfr: float
    log_uacr: float
    sbp: float
    bmi: float
    complications: dict[str, int]  # complication -> day found
    last_annual: int


def _adherence(control: float) -> float:
    return min(1.0, max(0.25, 0.85 - 0.2 * control))


def _hba1c(p: DiabetesProfile, s: _State, dur: float, rng: random.Random) -> float:
    if p.kind == "t1d":
        level = 7.9 + 1.1 * p.control
        return min(14.0, max(5.5, level + rng.gauss(0, 0.25)))
    natural = 7.6 + 1.3 * p.control + 0.2 * min(dur, 15)
    effect = _adherence(p.control) * sum(_EFFECT[_CLASS_OF[a]] for a in s.drugs)
    return min(14.0, max(5.2, natural - effect + rng.gauss(0, 0.25)))


def _escalate(p: DiabetesProfile, s: _State, rng: random.Random) -> str | None:
    """The drug added to a type 2 treatment (a GLP-1 agonist replaces a DPP-4 inhibitor)."""
    classes = {_CLASS_OF[a] for a in s.drugs}
    organ = p.ckd or p.heart_failure or s.egfr < 60 or s.log_uacr > math.log(30)
    if "sglt2" not in classes and organ:
        c = "sglt2"
    elif "glp1" not in classes and s.bmi >= 30:
        c = "glp1"
    elif not {"dpp4", "glp1", "sglt2"} & classes:
        c = "dpp4" if rng.random() < 0.5 else "sglt2"
    elif "sglt2" not in classes:
        c = "sglt2"
    elif "glp1" not in classes:
        c = "glp1"
    elif "insulin" not in classes:
        c = "insulin"
    else:
        return None
    if c == "glp1" and "dpp4" in classes:
        s.drugs = [a for a in s.drugs if _CLASS_OF[a] != "dpp4"]
    pool = {"sglt2": _SGLT2, "glp1": _GLP1, "dpp4": _DPP4, "insulin": (_INSULIN,)}[c]
    return pool[int(rng.random() * len(pool))]


def _hazard(name: str, p: DiabetesProfile, s: _State, a1c: float, dur: float, age: float) -> float:
    smoker = 1.0 if p.smoking == "smoker" else 0.4 if p.smoking == "ex" else 0.0
    lp = (_LOG_HR_HBA1C_RETINOPATHY if name == "retinopathy" else _LOG_HR_HBA1C) * (a1c - HBA1C_TARGET)
    albuminuria = s.log_uacr - math.log(10)  # a marker of the person's microvascular disease
    if name == "retinopathy":
        lp += 0.03 * min(dur, 25) + 0.3 * p.hypertension + 0.012 * (s.sbp - 130) + 0.4 * albuminuria
    elif name == "nephropathy":
        lp += (0.03 * min(dur, 25) + 0.4 * p.hypertension + 0.3 * smoker + 0.9 * albuminuria
               + 0.8 * (s.egfr < 60))
    elif name == "neuropathy":
        lp += 0.04 * min(dur, 25) + 0.035 * (age - 60) + 0.4 * smoker + 0.03 * (s.bmi - 28) + 0.3 * albuminuria
    else:  # foot
        lp += 1.5 * ("neuropathy" in s.complications) + 0.6 * smoker + 0.7 * (s.egfr < 60) + 0.02 * min(dur, 25)
    return _BASE_HAZARD[name] * math.exp(lp)


def _death_hazard(p: DiabetesProfile, s: _State, age: float, dur: float) -> float:
    h = 0.0008 * math.exp(0.09 * (age - 40)) * 1.8  # Gompertz baseline x diabetes
    h *= math.exp(0.02 * min(dur, 30))  # x 1.22 per 10 years of diabetes
    if "nephropathy" in s.complications:
        h *= 1.6
    if s.egfr < 45:
        h *= 1.8
    if "foot" in s.complications:
        h *= 2.0
    if p.smoking == "smoker":
        h *= 1.8
    if p.heart_failure:
        h *= 2.0
    return h


def _death_cause(p: DiabetesProfile, s: _State, rng: random.Random) -> str:
    if "nephropathy" in s.complications and s.egfr < 45 and rng.random() < 0.5:
        return COMPLICATION_CODES[p.kind]["nephropathy"]
    if p.heart_failure and rng.random() < 0.5:
        return "I50.9"
    x = rng.random()
    return "I21.9" if x < 0.45 else "I50.9" if x < 0.75 else "J18.9"


def diabetes_pathway(p: DiabetesProfile, birth: int, start: int, end: int, rng: random.Random) -> Pathway:
    """The visits from ``start`` (the window's first day) to ``end`` (the last admission day)."""
    g = rng.gauss
    age_onset = (p.onset - birth) / YEAR
    egfr0 = 52.0 if p.ckd else 100 - 0.9 * max(0.0, age_onset - 40) + g(0, 10)
    s = _State(
        drugs=[_BOLUS, _INSULIN] if p.kind == "t1d" else [],
        last_change=p.onset,
        prev_hba1c=0.0,
        mean_hba1c=0.0,
        n_hba1c=0,
        egfr=min(120.0, max(25.0, egfr0)),
        log_uacr=math.log(8) + g(0, 0.7) + (0.8 if p.ckd else 0.0),
        sbp=(140 if p.hypertension else 126) + g(0, 8),
        bmi=p.bmi,
        complications={},
        last_annual=-10**6,
    )
    codes = COMPLICATION_CODES[p.kind]
    visits: list[Visit] = []
    death: tuple[int, str] | None = None
    day, prev = p.onset, p.onset
    while day <= end:
        dt = (day - prev) / YEAR
        dur = (day - p.onset) / YEAR
        age = (day - birth) / YEAR
        a1c = _hba1c(p, s, dur, rng)
        # what happened since the previous visit: death, complications, kidneys
        if dt > 0:
            # alive when first seen in the window (the extract holds them): death only after a written visit
            if visits and rng.random() < 1 - math.exp(-_death_hazard(p, s, age, dur) * dt):
                death = (prev + 1 + int(rng.random() * (day - prev - 1)), _death_cause(p, s, rng))
                break
            for name in codes:
                if name not in s.complications and rng.random() < 1 - math.exp(
                    -_hazard(name, p, s, s.mean_hba1c, dur, age) * dt
                ):
                    s.complications[name] = day
            excess = max(0.0, a1c - HBA1C_TARGET)
            decline = 0.8 + 0.3 * excess + 0.5 * p.hypertension + (2.5 if "nephropathy" in s.complications else 0)
            if any(_CLASS_OF[a] == "sglt2" for a in s.drugs):
                decline *= 0.6
            s.egfr = max(8.0, s.egfr - decline * dt + g(0, 0.8) * math.sqrt(dt))
            s.log_uacr += (0.02 + 0.12 * excess + 0.08 * p.hypertension + 0.06 * (p.smoking == "smoker")) * dt
            if "nephropathy" in s.complications:
                s.log_uacr = max(s.log_uacr, math.log(45))
            s.sbp += g(0, 1.5)
            s.bmi += g(0, 0.3)
        # treatment
        if p.kind == "t2d":
            if not s.drugs:
                s.drugs = [_METFORMIN]
                s.last_change = day
            elif a1c > HBA1C_TARGET and s.prev_hba1c > HBA1C_TARGET and day - s.last_change >= 180:
                new = _escalate(p, s, rng)
                if new is not None:
                    s.drugs.append(new)
                    s.last_change = day
                    s.bmi -= 1.5 if _CLASS_OF[new] == "glp1" else 0.7 if _CLASS_OF[new] == "sglt2" else 0
            if s.egfr < 30 and _METFORMIN in s.drugs:
                s.drugs.remove(_METFORMIN)
        s.prev_hba1c = a1c
        s.n_hba1c += 1
        s.mean_hba1c += (a1c - s.mean_hba1c) / s.n_hba1c
        nxt = day + 91 + int(rng.random() * 92)
        if day >= start:
            visits.append(_visit(p, s, day, nxt, a1c, codes, rng))
        prev, day = day, nxt
    return Pathway(before_death(visits, death[0] if death else None), death)


def _visit(
    p: DiabetesProfile, s: _State, day: int, nxt: int, a1c: float, codes: dict[str, str], rng: random.Random
) -> Visit:
    g = rng.gauss
    found = sorted((d, codes[c]) for c, d in s.complications.items())
    dx = [c for _, c in found][:4] or [PLAIN_CODE[p.kind]]
    if p.hypertension and len(dx) < 4:
        dx.append("I10")
    labs = [
        Lab("hba1c", a1c),
        Lab("systolic", min(220.0, max(90.0, s.sbp + g(0, 8)))),
        Lab("diastolic", min(130.0, max(50.0, 0.6 * s.sbp + g(0, 6)))),
    ]
    if day - s.last_annual >= 330:
        s.last_annual = day
        egfr = min(130.0, max(5.0, s.egfr + g(0, 3)))
        labs += [
            Lab("egfr", egfr),
            Lab("creatinine", _creatinine(egfr)),
            Lab("uacr", min(3000.0, max(1.0, math.exp(s.log_uacr + g(0, 0.3))))),
            Lab("bmi", s.bmi + g(0, 0.4)),
            Lab("smoking", None, SMOKING_CODES[p.smoking]),
        ]
    meds = tuple(Med(a, MEDS[a].doses[int(rng.random() * len(MEDS[a].doses))], day, nxt - 1) for a in s.drugs)
    return Visit(day, "OUTPATIENT", 0, "Endocrinologie", tuple(Diagnosis(c) for c in dx), (), tuple(labs), meds,
                 routine=True)


def _creatinine(egfr: float) -> float:
    """A serum creatinine (mg/dL) of the order the eGFR implies (CKD-EPI inverted for a 60-year-old)."""
    return min(9.0, max(0.4, 0.9 * float((egfr / 95) ** (-1 / 1.2))))
