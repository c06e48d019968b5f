"""The scheduled visits of a care pathway (diabetes follow-up, cancer treatment), written as stays.

A pathway (:mod:`generator.diabetes`, :mod:`generator.oncology`) is a pure function of a person's
profile and a seeded ``random.Random``; it returns :class:`Pathway`: its visits in date order and, when
the person dies before the extract's reference date, the day and ICD-10 cause of death. Days are
``date.toordinal()`` numbers. :mod:`generator.hospital` writes each visit as a stay of the home site
with its diagnoses, procedures, labs and medications.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["Diagnosis", "Lab", "Med", "Pathway", "Visit", "before_death", "merge"]


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """An ICD-10 code, with the tumour's ICD-O-3 histology and clinical TNM / stage group when known."""

    code: str
    histology: str = ""
    tnm_t: str = ""
    tnm_n: str = ""
    tnm_m: str = ""
    stage_group: str = ""


@dataclass(frozen=True, slots=True)
class Lab:
    """A result: ``test`` is a key of ``generator.reference.LAB_TESTS``; coded results have no value."""

    test: str
    value: float | None
    value_code: str = ""  # SNOMED CT code of a coded result (smoking status)


@dataclass(frozen=True, slots=True)
class Med:
    """A medication order: ``start`` and ``end`` days (``end`` -1: ongoing at the extract)."""

    atc: str
    dose: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Visit:
    day: int
    stay_type: str  # OUTPATIENT (same day) or INPATIENT
    los: int  # nights (INPATIENT)
    ward: str
    diagnoses: tuple[Diagnosis, ...]  # the principal first
    procedures: tuple[str, ...] = ()  # keys of generator.reference.PROCEDURE_CODES
    labs: tuple[Lab, ...] = ()
    meds: tuple[Med, ...] = ()
    routine: bool = False  # a follow-up or treatment visit: rarely a note

    @property
    def last_day(self) -> int:
        """The discharge day, or the last day a medication of the visit is taken."""
        ends = [m.end if m.end >= 0 else m.start for m in self.meds]
        return max([self.day + self.los, *ends])


@dataclass(frozen=True, slots=True)
class Pathway:
    visits: tuple[Visit, ...]
    death: tuple[int, str] | None = None  # (day, ICD-10 cause)


def merge(a: Pathway | None, b: Pathway | None) -> Pathway | None:
    """Two pathways of a person as one: visits in date order, the earlier death, no visit after it."""
    if a is None or b is None:
        return a or b
    deaths = [d for d in (a.death, b.death) if d is not None]
    death = min(deaths) if deaths else None
    visits = sorted((*a.visits, *b.visits), key=lambda v: v.day)
    return Pathway(before_death(visits, death[0] if death else None), death)


def before_death(visits: list[Visit], death: int | None) -> tuple[Visit, ...]:
    """The visits that end before ``death`` (an inpatient stay ends at the latest on that day), their
    medications stopped on that day at the latest."""
    if death is None:
        return tuple(visits)
    out = []
    for v in visits:
        if v.day + v.los > death or v.day >= death:
            continue
        meds = tuple(replace(m, end=death if m.end < 0 or m.end > death else m.end) for m in v.meds)
        out.append(replace(v, meds=meds))
    return tuple(out)
