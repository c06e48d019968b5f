"""The clinical model of the generator: conditions, their codes, wards, procedures and medications.

Plain tables, so that a reader can check the clinical plausibility at a glance. Codes are those of the
bundled demo vocabulary (checked by :func:`generator.reference.vocabulary`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ACUTE",
    "CHRONIC_FOCUS_WEIGHT",
    "CHRONIC_MEDS",
    "FOCUS_MEDS",
    "MEDS",
    "STAY_TYPE_BY_KIND",
    "WARDS",
    "AcuteCode",
    "Duration",
    "Medication",
    "kind_of_code",
    "ward_choices",
]

Duration = Literal["chronic", "once", "course", "short", "depot"]


@dataclass(frozen=True, slots=True)
class Medication:
    atc: str
    doses: tuple[str, ...]
    unit: str
    route: str
    duration: Duration


MEDS: dict[str, Medication] = {
    m.atc: m
    for m in (
        Medication("A10BA02", ("500", "850", "1000"), "mg", "PO", "chronic"),  # metformin
        Medication("A10AB04", ("4", "6", "8", "10"), "IU", "SC", "chronic"),  # insulin lispro
        Medication("A10AD01", ("12", "16", "20", "24"), "IU", "SC", "chronic"),  # biphasic insulin
        Medication("A10BJ02", ("1.2", "1.8"), "mg", "SC", "chronic"),  # liraglutide
        Medication("A10BJ06", ("0.5", "1"), "mg", "SC", "chronic"),  # semaglutide (weekly)
        Medication("A10BJ05", ("1.5",), "mg", "SC", "chronic"),  # dulaglutide (weekly)
        Medication("A10BK01", ("10",), "mg", "PO", "chronic"),  # dapagliflozin
        Medication("A10BK03", ("10", "25"), "mg", "PO", "chronic"),  # empagliflozin
        Medication("A10BH01", ("100",), "mg", "PO", "chronic"),  # sitagliptin
        Medication("L01XA01", ("120", "130", "140"), "mg", "IV", "once"),  # cisplatin
        Medication("L01XA02", ("400", "450", "500"), "mg", "IV", "once"),  # carboplatin
        Medication("L01XA03", ("140", "150", "160"), "mg", "IV", "once"),  # oxaliplatin
        Medication("L01BC02", ("700", "750", "800"), "mg", "IV", "once"),  # fluorouracil
        Medication("L01CD01", ("280", "300", "320"), "mg", "IV", "once"),  # paclitaxel
        Medication("L01CD02", ("120", "130", "140"), "mg", "IV", "once"),  # docetaxel
        Medication("L01CB01", ("160", "180", "200"), "mg", "IV", "once"),  # etoposide
        Medication("L01DB01", ("100", "110", "120"), "mg", "IV", "once"),  # doxorubicin
        Medication("L01AA01", ("900", "1000", "1100"), "mg", "IV", "once"),  # cyclophosphamide
        Medication("L01BC06", ("1500", "2000"), "mg", "PO", "course"),  # capecitabine (14 days a cycle)
        Medication("L02BA01", ("20",), "mg", "PO", "chronic"),  # tamoxifen
        Medication("L02BG03", ("1",), "mg", "PO", "chronic"),  # anastrozole
        Medication("L02AE02", ("11.25", "22.5"), "mg", "SC", "depot"),  # leuprorelin
        Medication("C09AA03", ("5", "10", "20"), "mg", "PO", "chronic"),  # lisinopril
        Medication("C08CA01", ("5", "10"), "mg", "PO", "chronic"),  # amlodipine
        Medication("C10AA01", ("20", "40"), "mg", "PO", "chronic"),  # simvastatin
        Medication("C10AA05", ("10", "20", "40", "80"), "mg", "PO", "chronic"),  # atorvastatin
        Medication("B01AC06", ("100",), "mg", "PO", "chronic"),  # acetylsalicylic acid
        Medication("B01AC04", ("75",), "mg", "PO", "chronic"),  # clopidogrel
        Medication("B01AA03", ("2.5", "5"), "mg", "PO", "chronic"),  # warfarin
        Medication("N02BE01", ("500", "1000"), "mg", "PO", "short"),  # paracetamol
        Medication("J01CA04", ("500", "1000"), "mg", "PO", "course"),  # amoxicillin
        Medication("C03AA03", ("12.5", "25"), "mg", "PO", "chronic"),  # hydrochlorothiazide
    )
}

# Chronic conditions (person level). Weight of a condition when a stay is "about" a chronic condition.
# Diabetes and cancer are not here: their stays are the pathways' (generator.diabetes, generator.oncology).
CHRONIC_FOCUS_WEIGHT: dict[str, float] = {
    "ckd": 2.5,
    "hf": 2.0,
    "af": 1.5,
    "htn": 1.0,
    "hld": 0.6,
    "asthma": 1.0,
    "depression": 0.6,
    "anaemia": 0.6,
}

# Medications ordered at a stay whose focus is the condition: (probability, alternatives).
FOCUS_MEDS: dict[str, tuple[tuple[float, tuple[str, ...]], ...]] = {
    "htn": ((0.8, ("C09AA03", "C08CA01")), (0.35, ("C03AA03",))),
    "hld": ((0.9, ("C10AA05", "C10AA01")),),
    "af": ((0.85, ("B01AA03",)),),
    "hf": ((0.8, ("C09AA03",)), (0.6, ("C03AA03",))),
    "ckd": ((0.3, ("C08CA01",)),),
    "anaemia": (),
    "asthma": (),
    "depression": (),
    "I21.9": ((0.95, ("B01AC06",)), (0.8, ("B01AC04",)), (0.8, ("C10AA05",))),
    "I48.9": ((0.8, ("B01AA03",)),),
    "J18.9": ((0.9, ("J01CA04",)), (0.5, ("N02BE01",))),
    "J20.9": ((0.35, ("J01CA04",)), (0.5, ("N02BE01",))),
    "J01.9": ((0.6, ("J01CA04",)), (0.5, ("N02BE01",))),
    "J02.9": ((0.5, ("J01CA04",)), (0.6, ("N02BE01",))),
    "U07.1": ((0.7, ("N02BE01",)),),
    "S82.8": ((0.9, ("N02BE01",)),),
}

# The long-term medication of a condition, continued at inpatient stays about something else.
CHRONIC_MEDS: dict[str, tuple[str, ...]] = {
    "htn": ("C09AA03", "C08CA01", "C03AA03"),
    "hld": ("C10AA05", "C10AA01"),
    "af": ("B01AA03",),
    "hf": ("C09AA03",),
}

@dataclass(frozen=True, slots=True)
class AcuteCode:
    code: str
    weight: float
    kind: str  # "severe" or "minor"
    min_age: int = 0
    not_before: str = ""  # ISO date before which the code cannot occur (COVID-19)


ACUTE: tuple[AcuteCode, ...] = (
    AcuteCode("J18.9", 3.0, "severe"),
    AcuteCode("I21.9", 1.2, "severe", min_age=35),
    AcuteCode("I48.9", 0.6, "severe", min_age=45),
    AcuteCode("U07.1", 1.5, "severe", not_before="2020-03-01"),
    AcuteCode("J20.9", 2.0, "minor"),
    AcuteCode("J01.9", 1.5, "minor"),
    AcuteCode("J02.9", 1.5, "minor"),
    AcuteCode("S82.8", 2.0, "minor"),
)

# (stay type, probability) alternatives and the probability that an emergency visit is followed by an
# inpatient stay, per kind of stay focus.
STAY_TYPE_BY_KIND: dict[str, tuple[tuple[tuple[str, float], ...], float]] = {
    "chronic": ((("OUTPATIENT", 0.6), ("INPATIENT", 0.3), ("EMERGENCY", 0.1)), 0.3),
    "cardio": ((("OUTPATIENT", 0.4), ("INPATIENT", 0.35), ("EMERGENCY", 0.25)), 0.5),
    "severe": ((("EMERGENCY", 0.65), ("INPATIENT", 0.35)), 0.5),
    "minor": ((("EMERGENCY", 0.6), ("OUTPATIENT", 0.4)), 0.05),
}

WARDS: tuple[str, ...] = (
    "Médecine interne",
    "Oncologie",
    "Endocrinologie",
    "Cardiologie",
    "Urgences",
    "Pneumologie",
    "Gastro-entérologie",
    "Urologie",
)


def kind_of_code(code: str, condition: str | None) -> str:
    """The kind of a stay focus (see STAY_TYPE_BY_KIND)."""
    if condition in ("af", "hf"):
        return "cardio"
    if condition is not None:
        return "chronic"
    for a in ACUTE:
        if a.code == code:
            return a.kind
    return "minor"


def ward_choices(code: str) -> tuple[str, ...]:
    """Wards a non-emergency stay with this principal diagnosis goes to."""
    if code.startswith("E1"):
        return ("Endocrinologie", "Médecine interne")
    if code.startswith("C50"):
        return ("Oncologie",)
    if code.startswith("C34"):
        return ("Oncologie", "Pneumologie")
    if code.startswith(("C18", "C19", "C20", "C78")):
        return ("Oncologie", "Gastro-entérologie")
    if code == "C61":
        return ("Urologie", "Oncologie")
    if code.startswith("I"):
        return ("Cardiologie", "Cardiologie", "Médecine interne")
    if code == "E78.5":
        return ("Médecine interne", "Cardiologie")
    if code.startswith("J") or code == "U07.1":
        return ("Pneumologie", "Médecine interne")
    return ("Médecine interne",)
