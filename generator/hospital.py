"""Deterministic synthetic Luxembourg hospital extracts in the hospital-csv contract.

``generate(out_dir, patients, sites, seed, dirty)`` writes, for each site, one CSV file per entity of
:mod:`schemas.extract` (header row first, the site's encoding and delimiter) and
``<site>/_truth/faults.jsonl``: one JSON object per injected fault, with the 1-based line of the CSV
file (the header is line 1), the row's key, the fault and its expected outcome downstream.

Diabetic and cancer patients follow a pathway (:mod:`generator.diabetes`, :mod:`generator.oncology`,
docs/generator.md): scheduled follow-up, surgery, radiotherapy and chemotherapy visits written as stays of
their home site after their random stays, complications after the diagnosis, and a death after which
nothing happens (their random stays and drugs stop before it).

Clinical notes (``notes.csv``, French free text from :mod:`generator.notes`) are written for about 40%
of inpatient stays (a hospitalisation report, and for 40% of them a discharge letter too) and 10% of
the other stays (a consultation, oncology board or emergency report; 3% of the pathways' follow-up and
treatment visits), with the site's own patient data
(names, matricule, phone, e-mail, address, birth date), the stay's dates and ward and a doctor of that
ward. Line breaks of the text are written as `` / `` so that one row is one line. Beside the faults,
``_truth/notes.jsonl`` (the ``ds4h deid-text`` input: id, text, the patient's known identifiers) and
``_truth/notes_gold.jsonl`` (the identifier spans of each text) hold every note as generated, before
any fault. Notes draw from their own random streams (content and faults), so adding them changed no
byte of the other files.

Determinism: the same arguments give byte-identical files. Faker is seeded and used only to fill name
and street pools; everything else is drawn from ``random.Random`` instances seeded from ``seed`` (one
for the population, and per site one for the content and one for the faults, so that a clean and a
dirty extract of the same seed hold the same patients, and one for the residence abroad). Neither
global random state nor the clock is read.

About 5% of addresses are across the border (``country`` FR, BE or DE, with the town's real postcode:
``57100`` Thionville, ``6700`` Arlon, ``54290`` Trier; ``generator.reference.FOREIGN_TOWNS``); the
others are in Luxembourg (``country`` LU, a synthetic ``L-NNNN`` postcode of its commune). Notes write
a foreign postcode as letters of Luxembourg hospitals do: ``F-57100 Thionville``.

The population is generated once; a patient has a home site and about 10% also attend a second site,
where they have that site's own patient id and the same matricule, name and birth date (sometimes a
new address and phone, and in about 2% of them a conflicting sex). About 3% have no matricule
(cross-border workers); they are never shared, since nothing would link their two records.
Ids are site-local with a per-site letter: patients ``A0000123``, stays ``AS00000001``, diagnoses
``AD000000001``, procedures ``AP00000001``, labs ``AL000000001``, medications ``AM000000001``, notes
``AN000000001``.

Faults (``dirty`` is the probability that a row gets one; at most one per row):

- ``invalid_date`` (the entity's required date cell: ``31/02/2020``, ``2020-13-01``, ``2021-02-30``...),
  ``future_date`` (2090s; a stay's discharge and a medication's end move with it),
  ``missing_required`` (a required cell emptied, never the patient_id of patients; an emptied key is
  written as ``"key": null``) and ``orphan`` (patient_id or stay_id of a child row set to an id that
  does not exist) are quarantined;
- ``duplicate``: an exact copy right after the row; the fault's line is the copy's;
- notes get the same row-level faults (dates, missing_required, orphan, duplicate), never a code one;
- ``unknown_code``: a well-formed code the demo vocabulary lacks (diagnoses, procedures, labs,
  medications), kept and unmapped; ``dirty_code``: the same entities' code lower-cased with stray
  spaces, kept and normalised.

Patient rows of shared patients only ever get ``duplicate``. The rows of a patient or stay that a
fault quarantines get no fault themselves: they become orphans downstream, which is not recorded.
"""

from __future__ import annotations

import csv
import json
import random
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from itertools import accumulate
from pathlib import Path
from typing import IO, Any, Final, TypeVar

from generator import diabetes, oncology
from generator.clinical import (
    ACUTE,
    CHRONIC_FOCUS_WEIGHT,
    CHRONIC_MEDS,
    FOCUS_MEDS,
    MEDS,
    STAY_TYPE_BY_KIND,
    kind_of_code,
    ward_choices,
)
from generator.notes import (
    NOTE_KINDS,
    Note,
    PatientInfo,
    Relative,
    StayContext,
    known_identifiers,
    note_json_lines,
    one_line,
    stay_note,
)
from generator.reference import (
    FOREIGN_TOWNS,
    LAB_TESTS,
    NAME_LOCALES,
    PROCEDURE_CODES,
    UNKNOWN_ATC,
    UNKNOWN_ICD10,
    UNKNOWN_LOINC,
    UNKNOWN_SNOMED,
    NamePools,
    Vocabulary,
    ascii_fold,
    commune_weights,
    name_pools,
    vocabulary,
)
from generator.visits import Pathway, Visit, merge
from schemas.extract import ENTITIES, PATIENTS, Entity
from schemas.matricule import make_matricule

__all__ = [
    "FAULT_KINDS",
    "FAULT_OUTCOMES",
    "Fault",
    "GenerationResult",
    "Progress",
    "SiteSpec",
    "default_site_specs",
    "generate",
]

Progress = Callable[[str, int, int], None]
_T = TypeVar("_T")

# fault -> (outcome, reason_code) expected downstream
FAULT_OUTCOMES: Final[dict[str, tuple[str, str]]] = {
    "invalid_date": ("quarantined", "raw.invalid_date"),
    "future_date": ("quarantined", "raw.future_date"),
    "missing_required": ("quarantined", "raw.missing_required"),
    "orphan": ("quarantined", "raw.orphan"),
    "duplicate": ("deduplicated", "raw.duplicate"),
    "unknown_code": ("unmapped", "omop.unmapped"),
    "dirty_code": ("normalised", "raw.normalised_code"),
}
FAULT_KINDS: Final[tuple[str, ...]] = tuple(FAULT_OUTCOMES)
_QUARANTINING: Final = frozenset({"invalid_date", "future_date", "missing_required", "orphan"})

# Population shares.
SHARED_SHARE: Final = 0.10  # of all patients, attend a second site
NO_MATRICULE_SHARE: Final = 0.03
SEX_CONFLICT_SHARE: Final = 0.02  # of shared patients
MOVED_SHARE: Final = 0.4  # of shared patients: another address and phone at the second site
FOREIGN_SHARE: Final = 0.05  # of addresses: in France, Belgium or Germany (cross-border patients)
# how letters of Luxembourg hospitals write a neighbour's postcode: F-57100 Thionville, B-6700 Arlon
_LETTER_PREFIX: Final = {"FR": "F", "BE": "B", "DE": "D"}
HISTORY_DAYS: Final = 3652  # stays fall in the ten years before the reference date
LAST_ADMISSION_MARGIN: Final = 17  # an inpatient stay (up to 15 days, + a night) ends before the reference

# Age buckets (years at the reference date) and their weights: hospital patients are older.
_AGE_BUCKETS: Final = (
    (2, 9, 6.0),
    (10, 19, 5.0),
    (20, 29, 8.0),
    (30, 39, 10.0),
    (40, 49, 12.0),
    (50, 59, 15.0),
    (60, 69, 16.0),
    (70, 79, 15.0),
    (80, 89, 10.0),
    (90, 96, 3.0),
)

_HHMM: Final = tuple(f"{h:02d}:{m:02d}" for h in range(24) for m in range(60))
_DAY: Final = 1440


# --- public types ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SiteSpec:
    """A hospital and the shape of its extract files."""

    site: str
    encoding: str = "utf-8"
    delimiter: str = ","


def _letters(i: int) -> str:
    """0 -> a, 25 -> z, 26 -> aa (bijective base 26)."""
    s = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        s = chr(97 + r) + s
    return s


def default_site_specs(n_sites: int) -> list[SiteSpec]:
    """``hospital-a``, ``hospital-b``, ...; the third (``hospital-c``) writes cp1252 with ``;``."""
    if n_sites < 1:
        raise ValueError(f"n_sites must be >= 1, got {n_sites}")
    return [
        SiteSpec(f"hospital-{_letters(i)}", "cp1252", ";") if i == 2 else SiteSpec(f"hospital-{_letters(i)}")
        for i in range(n_sites)
    ]


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault: where it is and what should become of the row downstream."""

    site: str
    entity: str
    line: int  # 1-based line in the CSV file, the header being line 1
    key: str | None  # the row's primary key as written (None when the fault emptied it)
    fault: str
    column: str | None = None  # the cell the fault changed (None for a duplicate)

    @property
    def outcome(self) -> str:
        return FAULT_OUTCOMES[self.fault][0]

    @property
    def reason_code(self) -> str:
        return FAULT_OUTCOMES[self.fault][1]

    def to_json(self) -> dict[str, Any]:
        return {
            "entity": self.entity,
            "line": self.line,
            "key": self.key,
            "fault": self.fault,
            "outcome": self.outcome,
            "reason_code": self.reason_code,
            "column": self.column,
        }


@dataclass
class GenerationResult:
    """What ``generate`` wrote."""

    out_dir: Path
    seed: int
    patients: int  # size of the population
    sites: list[str]
    rows: dict[str, dict[str, int]] = field(default_factory=dict)  # site -> entity -> data lines
    shared_patients: int = 0  # patients with rows at two sites
    sex_conflicts: int = 0  # shared patients whose sex differs between their two sites
    without_matricule: int = 0
    faults: list[Fault] = field(default_factory=list)
    notes: dict[str, int] = field(default_factory=dict)  # site -> notes generated (before faults)
    deaths: dict[str, int] = field(default_factory=dict)  # site -> patients written with a death date

    def fault_counts(self) -> dict[str, int]:
        """Injected faults per kind (all sites, all entities)."""
        counts = dict.fromkeys(FAULT_KINDS, 0)
        for f in self.faults:
            counts[f.fault] += 1
        return counts

    def entity_rows(self, entity: str) -> int:
        """Data lines of an entity over all sites."""
        return sum(per_site.get(entity, 0) for per_site in self.rows.values())


# --- population -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Address:
    street: str
    postcode: str
    city: str
    phone: str
    country: str = "LU"  # ISO 3166-1 alpha-2


@dataclass(slots=True)
class _Person:
    birth: int  # ordinal
    sex: str
    first: str
    last: str
    matricule: str
    address: _Address
    email: str
    home: int
    second: int  # -1 when the patient attends one site only
    second_address: _Address | None  # when moved
    second_sex: str
    conditions: tuple[tuple[str, tuple[str, ...]], ...]  # (condition, its ICD-10 codes)
    age: int  # years at the reference date
    pathway: Pathway | None = None  # diabetes and cancer visits (home site) and the death they lead to


class _Draw:
    """Fast weighted draws from a seeded ``random.Random``."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.random = rng.random

    def pick(self, seq: Sequence[_T]) -> _T:
        return seq[int(self.random() * len(seq))]

    def weighted(self, items: Sequence[_T], cum: Sequence[float]) -> _T:
        return items[bisect_right(cum, self.random() * cum[-1])]

    def int_between(self, lo: int, hi: int) -> int:
        """Uniform in lo..hi inclusive."""
        return lo + int(self.random() * (hi - lo + 1))


def _cum(weights: Sequence[float]) -> list[float]:
    return list(accumulate(weights))


_COMPOUND_MALE: Final = (
    "Jean-Paul",
    "Jean-Marie",
    "Jean-Claude",
    "Jean-Pierre",
    "Jean-Luc",
    "Jean-Louis",
    "Jean-Marc",
    "Jean-François",
    "Jean-Jacques",
    "Pierre-Yves",
    "Marc-André",
    "Jean-Philippe",
)
_COMPOUND_FEMALE: Final = (
    "Marie-Claire",
    "Marie-Paule",
    "Marie-Thérèse",
    "Marie-Louise",
    "Marie-Christine",
    "Anne-Marie",
    "Marie-Jeanne",
    "Marie-Hélène",
    "Marie-José",
    "Anne-Sophie",
    "Marie-Anne",
)
_EMAIL_DOMAINS: Final = (
    "pt.lu",
    "internet.lu",
    "gmail.com",
    "hotmail.com",
    "outlook.com",
    "yahoo.fr",
    "web.de",
    "gmx.de",
    "live.be",
    "icloud.com",
)
_EMAIL_DOMAIN_CUM: Final = _cum((14, 6, 30, 10, 10, 8, 7, 6, 4, 5))
_MOBILE_PREFIXES: Final = ("621", "628", "661", "671", "691")


class _PopulationBuilder:
    def __init__(
        self,
        rng: random.Random,
        pools: NamePools,
        reference: date,
        n_sites: int,
        residence: random.Random | None = None,
        seed: int = 0,
    ) -> None:
        self.d = _Draw(rng)
        self.seed = seed
        self.count = 0  # persons drawn: each pathway has its own random stream
        # residence abroad: its own stream, so that everything else is drawn as without it
        self.residence = _Draw(residence or random.Random(0))
        self.foreign_cum = _cum([t.weight for t in FOREIGN_TOWNS])
        self.pools = pools
        self.reference = reference
        self.ref_ord = reference.toordinal()
        self.n_sites = n_sites
        self.locale_cum = _cum([share for _, share in NAME_LOCALES])
        self.communes, weights = commune_weights()
        self.commune_cum = _cum(weights)
        self.age_cum = _cum([w for _, _, w in _AGE_BUCKETS])
        self.used_serials: dict[int, set[int]] = {}
        self.min_birth = date(reference.year - 96, 1, 1).toordinal()
        self.max_birth = date(reference.year - 2, 12, 31).toordinal()

    def phone(self) -> str:
        d = self.d
        r = d.random()
        if r < 0.6:  # mobile: +352 621 123 456
            return f"+352 {d.pick(_MOBILE_PREFIXES)} {d.int_between(100, 999)} {d.int_between(0, 999):03d}"
        if r < 0.9:  # 8-digit landline: +352 26 12 34 56
            return (
                f"+352 {d.int_between(22, 99)} {d.int_between(0, 99):02d} {d.int_between(0, 99):02d} "
                f"{d.int_between(0, 99):02d}"
            )
        # 6-digit landline of the older numbering: +352 44 12 34
        return f"+352 {d.int_between(22, 99)} {d.int_between(0, 99):02d} {d.int_between(0, 99):02d}"

    def address(self) -> _Address:
        d = self.d
        commune = d.weighted(self.communes, self.commune_cum)
        number = d.int_between(1, 150)
        suffix = "A" if d.random() < 0.04 else ""
        street = f"{number}{suffix}, {d.pick(self.pools.streets)}"
        phone = self.phone() if d.random() < 0.92 else ""
        postcode = d.pick(commune.postcodes)
        if self.residence.random() < FOREIGN_SHARE:
            town = self.residence.weighted(FOREIGN_TOWNS, self.foreign_cum)
            return _Address(street, town.postcode, town.name, phone, town.country)
        return _Address(street, postcode, commune.name, phone)

    def email(self, first: str, last: str) -> str:
        d = self.d
        if d.random() < 0.25:
            return ""
        f = "".join(ch for ch in ascii_fold(first).lower() if ch.isalnum() or ch == "-")
        l_ = "".join(ch for ch in ascii_fold(last).lower() if ch.isalnum() or ch == "-")
        r = d.random()
        if r < 0.5:
            local = f"{f}.{l_}"
        elif r < 0.75:
            local = f"{f[:1]}{l_}"
        else:
            local = f"{f}.{l_}{d.int_between(1, 99)}"
        return f"{local}@{d.weighted(_EMAIL_DOMAINS, _EMAIL_DOMAIN_CUM)}"

    def birth(self) -> int:
        d = self.d
        lo_age, hi_age, _ = d.weighted(_AGE_BUCKETS, self.age_cum)
        y = self.reference.year
        lo = max(self.min_birth, date(y - 1 - hi_age, 1, 1).toordinal())
        hi = min(self.max_birth, date(y - lo_age, 12, 31).toordinal())
        return d.int_between(lo, hi)

    def matricule(self, birth: int) -> str:
        used = self.used_serials.setdefault(birth, set())
        if len(used) >= 1000:
            raise ValueError(f"more than 1000 people born on {date.fromordinal(birth)}: no serial left")
        while True:
            serial = int(self.d.random() * 1000)
            if serial not in used:
                used.add(serial)
                return make_matricule(date.fromordinal(birth), serial)

    def conditions(self, age: int, sex: str) -> tuple[tuple[tuple[str, tuple[str, ...]], ...], str]:
        """The chronic conditions of the random stays, and the diabetes type ("t1d", "t2d" or "")."""
        r = self.d.random
        out: list[tuple[str, tuple[str, ...]]] = []
        x = r()
        p1, p2 = diabetes.t1d_prevalence(age), diabetes.t2d_prevalence(age)
        kind = "t1d" if x < p1 else "t2d" if x < p1 + p2 else ""
        adult = age >= 18
        old = age >= 60
        p_htn = 0.45 if old else 0.2 if age >= 40 else 0.05 if adult else 0.0
        if r() < (min(0.75, 1.6 * p_htn) if kind == "t2d" else p_htn):
            out.append(("htn", ("I10",)))
        if r() < (0.3 if age >= 40 else 0.05 if adult else 0.0):
            out.append(("hld", ("E78.5",)))
        if r() < (0.2 if kind else 0.08 if age >= 50 else 0.0):
            out.append(("ckd", ("N18.3",)))
        if old and r() < 0.09:
            out.append(("af", ("I48.9",)))
        if age >= 65 and r() < 0.07:
            out.append(("hf", ("I50.9",)))
        if r() < 0.07:
            out.append(("asthma", ("J45.9",)))
        if adult and r() < 0.06:
            out.append(("depression", ("F32.9",)))
        if r() < (0.3 if any(c == "ckd" for c, _ in out) else 0.02):
            out.append(("anaemia", ("D64.9",)))
        return tuple(out), kind

    def pathway(self, birth: int, sex: str, age: int, kind: str, conds: set[str]) -> Pathway | None:
        """The person's diabetes and cancer pathways (own random stream per person)."""
        rng = random.Random(f"ds4h:{self.seed}:pathway:{self.count}")
        start = max(birth + 1, self.ref_ord - HISTORY_DAYS)
        end = self.ref_ord - LAST_ADMISSION_MARGIN
        if start > end:
            return None
        dm: Pathway | None = None
        if kind:
            profile = diabetes.draw_profile(
                rng, kind, age, birth, self.ref_ord, "htn" in conds, "ckd" in conds, "hf" in conds
            )
            dm = diabetes.diabetes_pathway(profile, birth, start, end, rng)
        ca: Pathway | None = None
        cancer = oncology.draw_profile(rng, age, sex, start, end - 60)
        if cancer is not None:
            ca = oncology.cancer_pathway(cancer, birth, end, self.ref_ord, rng)
        return merge(dm, ca)

    def person(self) -> _Person:
        d = self.d
        r = d.random
        x = r()
        sex = "M" if x < 0.49 else "F" if x < 0.99 else "U"
        birth = self.birth()
        locale = bisect_right(self.locale_cum, r() * self.locale_cum[-1])
        firsts = (
            self.pools.male[locale] if sex == "M" or (sex == "U" and r() < 0.5) else self.pools.female[locale]
        )
        first = d.pick(firsts)
        if locale < 2 and sex != "U" and r() < 0.07:  # French-style compound names: Jean-Paul, Marie-Claire
            first = d.pick(_COMPOUND_MALE if sex == "M" else _COMPOUND_FEMALE)
        last = d.pick(self.pools.last[locale])
        if r() < 0.04:  # double-barrelled last names
            other = d.pick(self.pools.last[bisect_right(self.locale_cum, r() * self.locale_cum[-1])])
            if other != last:
                last = f"{last}-{other}"
        matricule = "" if r() < NO_MATRICULE_SHARE else self.matricule(birth)
        address = self.address()
        email = self.email(first, last)
        home = int(r() * self.n_sites)
        second = -1
        second_address: _Address | None = None
        second_sex = sex
        if self.n_sites > 1 and matricule and r() < SHARED_SHARE / (1 - NO_MATRICULE_SHARE):
            second = (home + 1 + int(r() * (self.n_sites - 1))) % self.n_sites
            if r() < MOVED_SHARE:
                second_address = self.address()
            if r() < SEX_CONFLICT_SHARE:
                second_sex = {"M": "F", "F": "M", "U": "M"}[sex]
        age = (self.ref_ord - birth) * 100 // 36525
        conditions, kind = self.conditions(age, sex)
        pathway = self.pathway(birth, sex, age, kind, {c for c, _ in conditions})
        self.count += 1
        return _Person(
            birth,
            sex,
            first,
            last,
            matricule,
            address,
            email,
            home,
            second,
            second_address,
            second_sex,
            conditions,
            age,
            pathway,
        )


# --- CSV output and faults ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _FaultPlan:
    """Where each fault kind applies in an entity's rows (column indices)."""

    kinds: tuple[str, ...]
    key: int
    date: int
    date_is_datetime: bool
    date_partner: int  # a date shifted together with ``date`` by future_date, or -1
    required: tuple[int, ...]
    patient_ref: int  # -1 when the entity references no patient
    stay_ref: int
    code: int  # -1 when the entity has no clinical code


def _plan(entity: Entity) -> _FaultPlan:
    names = entity.column_names
    date_col = next(c for c in entity.columns if c.required and c.type in ("date", "datetime"))
    partner = {"stays": "discharge", "medications": "end_date"}.get(entity.name)
    code = {
        "diagnoses": "icd10_code",
        "procedures": "procedure_code",
        "labs": "loinc_code",
        "medications": "atc_code",
    }.get(entity.name)
    required = tuple(
        i
        for i, c in enumerate(entity.columns)
        if c.required and not (entity is PATIENTS and c.name == entity.key)
    )
    kinds = ["invalid_date", "future_date", "missing_required"]
    if entity.references:
        kinds.append("orphan")
    kinds.append("duplicate")
    if code:
        kinds += ["unknown_code", "dirty_code"]
    return _FaultPlan(
        kinds=tuple(kinds),
        key=names.index(entity.key),
        date=names.index(date_col.name),
        date_is_datetime=date_col.type == "datetime",
        date_partner=names.index(partner) if partner else -1,
        required=required,
        patient_ref=names.index("patient_id") if "patient_id" in entity.references else -1,
        stay_ref=names.index("stay_id") if "stay_id" in entity.references else -1,
        code=names.index(code) if code else -1,
    )


_PLANS: Final = {e.name: _plan(e) for e in ENTITIES}
_ENTITY_ORDER: Final = {e.name: i for i, e in enumerate(ENTITIES)}

# The row builders below write cells in this order; a changed contract must fail loudly, not shift columns.
_ROW_LAYOUT: Final = {
    "patients": (
        "patient_id",
        "matricule",
        "last_name",
        "first_name",
        "birth_date",
        "sex",
        "address",
        "postcode",
        "city",
        "country",
        "phone",
        "email",
        "updated_at",
        "death_date",
        "death_cause_code",
    ),
    "stays": ("stay_id", "patient_id", "admission", "discharge", "stay_type", "ward"),
    "diagnoses": (
        "diagnosis_id",
        "stay_id",
        "patient_id",
        "icd10_code",
        "diagnosis_date",
        "diagnosis_rank",
        "description",
        "histology",
        "tnm_t",
        "tnm_n",
        "tnm_m",
        "stage_group",
    ),
    "procedures": (
        "procedure_id",
        "stay_id",
        "patient_id",
        "procedure_code",
        "procedure_date",
        "description",
    ),
    "labs": ("lab_id", "stay_id", "patient_id", "loinc_code", "value", "unit", "sampled_at", "description", "value_code"),
    "medications": (
        "medication_id",
        "stay_id",
        "patient_id",
        "atc_code",
        "drug_name",
        "dose",
        "dose_unit",
        "route",
        "start_date",
        "end_date",
    ),
    "notes": ("note_id", "stay_id", "patient_id", "note_date", "note_type", "author", "text"),
}


def _check_contract() -> None:
    got = {e.name: tuple(e.column_names) for e in ENTITIES}
    if got != _ROW_LAYOUT:
        raise RuntimeError(f"the extract contract changed; update generator.hospital: {got}")


# ICD-10 codes of the generator that are usual underlying causes of death (WHO's leading causes)
DEATH_CAUSES: Final = frozenset({"I21.9", "I50.9", "J18.9", "N18.3", "I48.9", "U07.1", "E11.2", "E10.2"})
COMMON_CAUSES: Final = ("I21.9", "I50.9", "J18.9")


class _Pending:
    """A csv writer's stand-in that keeps the rows (the same lists) to be written later."""

    def __init__(self) -> None:
        self.rows: list[list[str]] = []

    def writerow(self, row: list[str]) -> None:
        self.rows.append(row)


class _Out:
    """One entity's CSV file at one site, with its line counter."""

    def __init__(self, entity: Entity, fh: IO[str], delimiter: str) -> None:
        self.entity = entity
        self.name = entity.name
        self.fh = fh
        self.writer = csv.writer(fh, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        self.writer.writerow(entity.column_names)
        self.line = 1
        self.plan = _PLANS[entity.name]


class _FaultInjector:
    def __init__(
        self, site: str, prefix: str, rng: random.Random, dirty: float, reference: date, population: int
    ) -> None:
        self.site = site
        self.prefix = prefix
        self.d = _Draw(rng)
        self.dirty = dirty
        self.future_start = date(reference.year + 64, 1, 1).toordinal()
        self.faults: list[Fault] = []
        self.next_orphan_patient = population + 1  # site-local ids never exceed the population size
        # nor stays 100 per patient on average (random stays: up to 6 per patient; pathways: ~4 a year)
        self.next_orphan_stay = 100 * population + 1

    def write(self, out: _Out, row: list[str], parent_bad: bool, only_duplicate: bool = False) -> bool:
        """Write ``row`` (maybe with a fault); True when the row will be quarantined downstream."""
        if parent_bad or self.dirty <= 0 or self.d.random() >= self.dirty:
            out.writer.writerow(row)
            out.line += 1
            return False
        plan = out.plan
        kind = "duplicate" if only_duplicate else self.d.pick(plan.kinds)
        column = self._apply(kind, out, row)
        out.writer.writerow(row)
        out.line += 1
        if kind == "duplicate":
            out.writer.writerow(row)
            out.line += 1
        key = row[plan.key] or None
        self.faults.append(Fault(self.site, out.name, out.line, key, kind, column))
        return kind in _QUARANTINING

    def _apply(self, kind: str, out: _Out, row: list[str]) -> str | None:
        d = self.d
        plan = out.plan
        cols = out.entity.column_names
        if kind == "duplicate":
            return None
        if kind == "invalid_date":
            old = row[plan.date]
            year = old[:4]
            bad = d.pick(
                (f"31/02/{year}", f"{year}-13-01", f"{year}-02-30", f"{year}-04-31", f"{year}-00-10")
            )
            row[plan.date] = f"{bad} {old[11:16]}" if plan.date_is_datetime and len(old) > 10 else bad
            return cols[plan.date]
        if kind == "future_date":
            old = row[plan.date]
            new_ord = self.future_start + int(d.random() * 3650)
            shift = new_ord - date.fromisoformat(old[:10]).toordinal()
            row[plan.date] = date.fromordinal(new_ord).isoformat() + old[10:]
            p = plan.date_partner
            if p >= 0 and row[p]:
                partner = row[p]
                row[p] = (
                    date.fromordinal(date.fromisoformat(partner[:10]).toordinal() + shift).isoformat()
                    + partner[10:]
                )
            return cols[plan.date]
        if kind == "missing_required":
            i = d.pick(plan.required)
            row[i] = ""
            return cols[i]
        if kind == "orphan":
            refs = [i for i in (plan.patient_ref, plan.stay_ref) if i >= 0]
            i = d.pick(refs)
            if i == plan.patient_ref:
                row[i] = f"{self.prefix}{self.next_orphan_patient:07d}"
                self.next_orphan_patient += 1
            else:
                row[i] = f"{self.prefix}S{self.next_orphan_stay:08d}"
                self.next_orphan_stay += 1
            return cols[i]
        if kind == "dirty_code":
            code = row[plan.code].lower()
            row[plan.code] = d.pick((f" {code} ", f"{code} ", f" {code}", f"{code}  ", f"  {code} "))
            return cols[plan.code]
        if kind == "unknown_code":
            return self._unknown_code(out.name, row, plan.code)
        raise AssertionError(kind)  # pragma: no cover

    def _unknown_code(self, entity: str, row: list[str], ci: int) -> str:
        d = self.d
        col = _COLUMN_INDEX[entity]
        if entity == "diagnoses":
            code, desc = d.pick(UNKNOWN_ICD10)
            row[ci], row[col["description"]] = code, desc
        elif entity == "procedures":
            code, desc = d.pick(UNKNOWN_SNOMED)
            row[ci], row[col["description"]] = code, desc
        elif entity == "labs":
            lab = d.pick(UNKNOWN_LOINC)
            value = lab.low + d.random() * (lab.high - lab.low)
            row[ci] = lab.loinc
            row[col["value"]] = f"{value:.{lab.decimals}f}"
            row[col["unit"]] = lab.unit
            row[col["description"]] = lab.name
            row[col["value_code"]] = ""
        else:  # medications
            drug = d.pick(UNKNOWN_ATC)
            row[ci] = drug.atc
            row[col["drug_name"]] = drug.name
            row[col["dose"]] = drug.dose
            row[col["dose_unit"]] = drug.unit
            row[col["route"]] = drug.route
        return _ROW_LAYOUT[entity][ci]


_COLUMN_INDEX: Final = {name: {c: i for i, c in enumerate(cols)} for name, cols in _ROW_LAYOUT.items()}


# --- one site -------------------------------------------------------------------------------------


class _Clock:
    """ISO strings of ordinals and minute timestamps, cached."""

    def __init__(self) -> None:
        self.dates: dict[int, str] = {}

    def d(self, ordinal: int) -> str:
        s = self.dates.get(ordinal)
        if s is None:
            s = self.dates[ordinal] = date.fromordinal(ordinal).isoformat()
        return s

    def dt(self, minute: int) -> str:
        day, m = divmod(minute, _DAY)
        return f"{self.d(day)} {_HHMM[m]}"


_LOS_CUM: Final = _cum((14, 16, 14, 11, 9, 7, 6, 5, 4, 3, 3, 2, 2, 2, 2))  # inpatient stay: 1..15 days
_N_STAYS_CUM: Final = _cum((30, 25, 17, 12, 9, 7))  # 1..6 stays at the home site
_N_DIAG_CUM: Final = _cum((30, 35, 20, 15))  # 1..4 diagnoses per stay
_ACUTE_CUM: Final = _cum([a.weight for a in ACUTE])
_VITALS: Final = frozenset({"weight", "systolic", "diastolic"})
_STAY_PROFILE: Final = {
    kind: ([t for t, _ in types], _cum([p for _, p in types]), follow)
    for kind, (types, follow) in STAY_TYPE_BY_KIND.items()
}


@dataclass(slots=True)
class _Baseline:
    """Per patient and site: lab baselines, so that a patient's values are consistent over stays."""

    weight: float
    creatinine: float
    hba1c: float
    cholesterol: float
    hdl: float
    haemoglobin: float
    systolic: float
    diastolic: float


class _SiteWriter:
    def __init__(
        self,
        spec: SiteSpec,
        index: int,
        seed: int,
        dirty: float,
        reference: date,
        population: int,
        outs: dict[str, _Out],
        truth: tuple[IO[str], IO[str]] | None = None,
    ) -> None:
        self.site = spec.site
        self.prefix = _letters(index).upper()
        self.rng = random.Random(f"ds4h:{seed}:{spec.site}:content")
        self.d = _Draw(self.rng)
        self.faults = _FaultInjector(
            spec.site,
            self.prefix,
            random.Random(f"ds4h:{seed}:{spec.site}:faults"),
            dirty,
            reference,
            population,
        )
        self.ref_ord = reference.toordinal()
        self.clock = _Clock()
        self.outs = outs
        self.vocab: Vocabulary = vocabulary()
        self.n_patients = 0
        self.n_stays = 0
        self.n_diag = 0
        self.n_proc = 0
        self.n_lab = 0
        self.n_med = 0
        self.lab_desc = {t.loinc: self.vocab.loinc[t.loinc] for t in LAB_TESTS.values()}
        # notes: their own content and fault streams, so that the other files do not depend on them
        self.notes = _NoteWriter(spec.site, seed, name_pools(seed), truth)
        self.note_faults = _FaultInjector(
            spec.site,
            self.prefix,
            random.Random(f"ds4h:{seed}:{spec.site}:notes-faults"),
            dirty,
            reference,
            population,
        )
        self.n_notes = 0
        # deaths: their own stream, so that the other files do not depend on them
        self.death_rng = random.Random(f"ds4h:{seed}:{spec.site}:death")
        self.last_stay: tuple[int, str, str] | None = None  # (discharge minute, stay type, principal code)
        self.last_drug_day = 0  # the last day a drug of the patient is taken (ordinal)
        self.cap = self.ref_ord  # the patient's death day (no event after it), else the reference date
        self.deaths = 0
        self.ward = ""
        self.person_at_site: tuple[_Address, str] | None = None
        self.note_patient: PatientInfo | None = None

    # patients -------------------------------------------------------------------------------------

    def patient(self, p: _Person, is_second: bool) -> None:
        d = self.d
        self.n_patients += 1
        pid = f"{self.prefix}{self.n_patients:07d}"
        addr = p.second_address if is_second and p.second_address is not None else p.address
        sex = p.second_sex if is_second else p.sex
        self.person_at_site = (addr, sex)
        self.note_patient = None
        lo = max(p.birth + 1, self.ref_ord - 5 * 365)
        updated = d.int_between(lo * _DAY, self.ref_ord * _DAY - 1)
        updated_at = f"{self.clock.dt(updated)}:{d.int_between(0, 59):02d}"
        row = [
            pid,
            p.matricule,
            p.last,
            p.first,
            self.clock.d(p.birth),
            sex,
            addr.street,
            addr.postcode,
            addr.city,
            addr.country,
            addr.phone,
            p.email,
            updated_at,
            "",
            "",
        ]
        # the row is held until the stays are written: a death comes after (or at the end of) the last one
        out = self.outs["patients"]
        real, pending = out.writer, _Pending()
        out.writer = pending  # type: ignore[assignment]
        try:
            bad = self.faults.write(out, row, False, only_duplicate=p.second >= 0)
        finally:
            out.writer = real
        self.last_stay = None
        self.last_drug_day = 0
        death_day = p.pathway.death[0] if p.pathway is not None and p.pathway.death is not None else None
        self.cap = self.ref_ord if death_day is None else min(death_day, self.ref_ord)
        self.stays(p, pid, is_second, bad)
        if p.pathway is not None and not is_second:
            for v in p.pathway.visits:
                self.visit(p, pid, v, bad)
        death = self.death(p, is_second)
        if death is not None and not bad:
            row[-2], row[-1] = death
            self.deaths += 1
        for r in pending.rows:
            real.writerow(r)

    def death(self, p: _Person, is_second: bool) -> tuple[str, str] | None:
        """(death_date, ICD-10 cause) of a patient who dies, else None. Only patients seen at one site
        die (the other site would not know); the chance grows with age, cancer, heart failure and
        chronic kidney disease. A third of the deaths after an inpatient stay are in hospital (the
        stay ends on the day of death; not when a drug of the stay is taken after it); the others
        come up to two years after the last discharge and the last drug, before the extract's
        reference date. The cause: the cancer, else the last stay's principal
        diagnosis or a chronic condition when it is a usual cause of death, else one of those."""
        r = self.death_rng.random
        x, timing, cause_draw = r(), r(), r()
        if p.pathway is not None:  # diabetes or cancer: the pathway's death (its visits stop before it)
            if is_second or p.second >= 0 or p.pathway.death is None:
                return None
            day, cause_code = p.pathway.death
            return self.clock.d(day), cause_code
        if is_second or p.second >= 0 or self.last_stay is None:
            return None
        conds = dict(p.conditions)
        age = p.age
        chance = 0.01 if age < 40 else 0.03 if age < 60 else 0.08 if age < 75 else 0.18 if age < 85 else 0.35
        if "hf" in conds or "ckd" in conds:
            chance += 0.1
        if x >= chance:
            return None
        discharge, stay_type, principal = self.last_stay
        last_day = discharge // _DAY
        if stay_type == "INPATIENT" and timing < 1 / 3 and self.last_drug_day <= last_day:
            day = last_day
        else:
            day = max(last_day, self.last_drug_day) + 1 + int(timing * 730)
            if day >= self.ref_ord:
                return None
        chronic = [codes[0] for c, codes in conds.items() if codes[0] in DEATH_CAUSES]
        if principal in DEATH_CAUSES:
            cause = principal
        elif chronic:
            cause = chronic[int(cause_draw * len(chronic))]
        else:
            cause = COMMON_CAUSES[int(cause_draw * len(COMMON_CAUSES))]
        return self.clock.d(day), cause

    # stays ----------------------------------------------------------------------------------------

    def baseline(self, p: _Person) -> _Baseline:
        g = self.rng.gauss
        conds = {c for c, _ in p.conditions}
        adult_weight = g(82, 13) if p.sex == "M" else g(68, 12)
        weight = 9 + 3.2 * p.age + g(0, 3) if p.age < 18 else adult_weight
        creat = g(0.95, 0.15) if p.sex == "M" else g(0.75, 0.12)
        if "ckd" in conds:
            creat = g(2.1, 0.4)
        diabetic = "t2d" in conds or "t1d" in conds
        hb = g(14.6, 1.0) if p.sex == "M" else g(13.2, 0.9)
        if "anaemia" in conds:
            hb -= 2.8
        chol = g(235, 35) if "hld" in conds else g(195, 30)
        sys_ = g(142, 12) if "htn" in conds else g(122, 10)
        return _Baseline(
            weight=max(weight, 3.0),
            creatinine=max(creat, 0.4),
            hba1c=g(7.6, 1.1) if diabetic else g(5.4, 0.3),
            cholesterol=chol,
            hdl=g(50, 12) if p.sex == "M" else g(60, 14),
            haemoglobin=hb,
            systolic=sys_,
            diastolic=sys_ * 0.62 + g(0, 5),
        )

    def stays(self, p: _Person, pid: str, is_second: bool, patient_bad: bool) -> None:
        d = self.d
        r = d.random
        conditions = p.conditions
        n = d.int_between(1, 3) if is_second else 1 + bisect_right(_N_STAYS_CUM, r() * _N_STAYS_CUM[-1])
        start = max(p.birth + 1, self.ref_ord - HISTORY_DAYS)
        end = self.cap - LAST_ADMISSION_MARGIN
        if start > end:
            return
        days = sorted(d.int_between(start, end) for _ in range(n))
        base = self.baseline(p)
        focus_conds = [c for c, _ in conditions]
        focus_cum = _cum([CHRONIC_FOCUS_WEIGHT[c] for c in focus_conds])
        codes_of = dict(conditions)
        all_codes = [code for _, codes in conditions for code in codes]
        state: set[str] = (
            set()
        )  # events that happen once per patient and site (first cancer work-up, surgery)
        not_before = 0
        written = 0
        for day in days:
            if written >= n:
                break
            day = max(day, not_before // _DAY + 1)
            if day > end:
                break
            # focus of the stay: a chronic condition or an acute problem
            if focus_conds and r() < 0.65:
                cond: str | None = d.weighted(focus_conds, focus_cum)
                assert cond is not None
                codes = codes_of[cond]
                principal = d.pick(codes)
            else:
                cond = None
                principal = self.acute(p, day)
            kind = kind_of_code(principal, cond)
            types, types_cum, follow = _STAY_PROFILE[kind]
            stay_type = d.weighted(types, types_cum)
            adm, dis = self.times(stay_type, day)
            stay_bad = self.stay(pid, adm, dis, stay_type, principal, patient_bad)
            sid = f"{self.prefix}S{self.n_stays:08d}"
            written += 1
            self.children(
                p,
                pid,
                sid,
                adm,
                dis,
                stay_type,
                principal,
                cond,
                all_codes,
                base,
                state,
                patient_bad or stay_bad,
            )
            self.stay_notes(p, pid, sid, adm, dis, stay_type, principal, cond, patient_bad or stay_bad)
            not_before = dis
            if stay_type == "EMERGENCY" and written < n and r() < follow:
                adm2 = dis + d.int_between(10, 90)
                los = 1 + bisect_right(_LOS_CUM, r() * _LOS_CUM[-1])
                dis2 = (adm2 // _DAY + los) * _DAY + d.int_between(9 * 60, 18 * 60)
                stay_bad = self.stay(pid, adm2, dis2, "INPATIENT", principal, patient_bad)
                sid = f"{self.prefix}S{self.n_stays:08d}"
                written += 1
                self.children(
                    p,
                    pid,
                    sid,
                    adm2,
                    dis2,
                    "INPATIENT",
                    principal,
                    cond,
                    all_codes,
                    base,
                    state,
                    patient_bad or stay_bad,
                )
                self.stay_notes(
                    p, pid, sid, adm2, dis2, "INPATIENT", principal, cond, patient_bad or stay_bad
                )
                not_before = dis2

    def visit(self, p: _Person, pid: str, v: Visit, patient_bad: bool) -> None:
        """A pathway visit as a stay with its diagnoses (the principal first, with the tumour's histology
        and TNM when given), procedures, labs and medications, and maybe a note."""
        d = self.d
        clock = self.clock
        write = self.faults.write
        if v.stay_type == "INPATIENT":
            adm = v.day * _DAY + d.int_between(7 * 60, 20 * 60)
            dis = (v.day + v.los) * _DAY + d.int_between(9 * 60, 18 * 60)
        else:
            adm = v.day * _DAY + d.int_between(7 * 60 + 30, 15 * 60)
            dis = adm + d.int_between(30, 300)
        principal = v.diagnoses[0].code
        bad = self.stay(pid, adm, dis, v.stay_type, principal, patient_bad, v.ward) or patient_bad
        sid = f"{self.prefix}S{self.n_stays:08d}"
        adm_day, dis_day = adm // _DAY, dis // _DAY
        out = self.outs["diagnoses"]
        for i, dx in enumerate(v.diagnoses):
            self.n_diag += 1
            row = [
                f"{self.prefix}D{self.n_diag:09d}",
                sid,
                pid,
                dx.code,
                clock.d(adm_day if i == 0 else d.int_between(adm_day, dis_day)),
                "PRINCIPAL" if i == 0 else "SECONDARY",
                self.vocab.icd10[dx.code],
                dx.histology,
                dx.tnm_t,
                dx.tnm_n,
                dx.tnm_m,
                dx.stage_group,
            ]
            write(out, row, bad)
        out = self.outs["procedures"]
        for name in v.procedures:
            self.n_proc += 1
            code = PROCEDURE_CODES[name]
            row = [f"{self.prefix}P{self.n_proc:08d}", sid, pid, code, clock.dt(self.within(adm, dis)),
                   self.vocab.snomed_procedures[code]]
            write(out, row, bad)
        out = self.outs["labs"]
        blood = clock.dt(min(adm + d.int_between(15, 150), dis))
        vitals = clock.dt(min(adm + d.int_between(5, 60), dis))
        for lab in v.labs:
            self.n_lab += 1
            lt = LAB_TESTS[lab.test]
            value = "" if lab.value is None else f"{lab.value:.{lt.decimals}f}"
            row = [f"{self.prefix}L{self.n_lab:09d}", sid, pid, lt.loinc, value, lt.unit,
                   vitals if lab.test in _VITALS else blood, self.lab_desc[lt.loinc], lab.value_code]
            write(out, row, bad)
        out = self.outs["medications"]
        last = min(self.ref_ord - 1, self.cap)
        for m in v.meds:
            self.n_med += 1
            med = MEDS[m.atc]
            end = last if m.end < 0 else min(m.end, last)
            self.last_drug_day = max(self.last_drug_day, end)
            row = [f"{self.prefix}M{self.n_med:09d}", sid, pid, m.atc, self.vocab.atc[m.atc], m.dose, med.unit,
                   med.route, clock.d(m.start), clock.d(end)]
            write(out, row, bad)
        cond = _PATHWAY_CONDITION.get(principal[:3])
        self.stay_notes(p, pid, sid, adm, dis, v.stay_type, principal, cond, bad, v.routine)

    def stay_notes(
        self,
        p: _Person,
        pid: str,
        sid: str,
        adm: int,
        dis: int,
        stay_type: str,
        principal: str,
        cond: str | None,
        parent_bad: bool,
        routine: bool = False,
    ) -> None:
        if "notes" not in self.outs:  # an extract without notes (generate(notes=False))
            return
        nw = self.notes
        kinds = nw.kinds(stay_type, principal, cond, routine)
        if not kinds:
            return
        if self.note_patient is None:
            assert self.person_at_site is not None
            addr, sex = self.person_at_site
            self.note_patient = nw.patient_info(p, pid, addr, sex)
        info = nw.with_ward_doctors(self.note_patient, self.ward)
        ctx = StayContext(
            admission=date.fromordinal(adm // _DAY),
            discharge=date.fromordinal(dis // _DAY),
            ward=self.ward,
            reason=_reason(principal),
            age=(adm // _DAY - p.birth) * 100 // 36525,
            cancer=_CANCER_OF.get(cond or ""),
        )
        out = self.outs["notes"]
        for kind in kinds:
            self.n_notes += 1
            nid = f"{self.prefix}N{self.n_notes:09d}"
            note = one_line(stay_note(info, nid, nw.rng, kind, ctx))
            when = dis if kind == "discharge" else max(adm, dis - nw.d.int_between(0, 120))
            author = info.doctors[1] if kind == "discharge" else info.doctors[0]
            row = [nid, sid, pid, self.clock.dt(when), NOTE_KINDS[kind][1], author, note.text]
            self.note_faults.write(out, row, parent_bad)
            nw.record(note, info)

    def acute(self, p: _Person, day: int) -> str:
        for _ in range(10):
            a = self.d.weighted(ACUTE, _ACUTE_CUM)
            if p.age < a.min_age:
                continue
            if a.not_before and self.clock.d(day) < a.not_before:
                continue
            return a.code
        return "J18.9"

    def times(self, stay_type: str, day: int) -> tuple[int, int]:
        d = self.d
        if stay_type == "INPATIENT":
            adm = day * _DAY + d.int_between(7 * 60, 20 * 60)
            los = 1 + bisect_right(_LOS_CUM, d.random() * _LOS_CUM[-1])
            return adm, (day + los) * _DAY + d.int_between(9 * 60, 18 * 60)
        if stay_type == "OUTPATIENT":
            adm = day * _DAY + d.int_between(7 * 60 + 30, 16 * 60)
            return adm, adm + d.int_between(30, 360)
        # EMERGENCY: any hour, discharged the same day
        adm = day * _DAY + int(d.random() ** 0.8 * (_DAY - 30))
        return adm, min(adm + d.int_between(45, 6 * 60), day * _DAY + _DAY - 1)

    def stay(
        self, pid: str, adm: int, dis: int, stay_type: str, principal: str, patient_bad: bool, ward: str = ""
    ) -> bool:
        self.n_stays += 1
        sid = f"{self.prefix}S{self.n_stays:08d}"
        if not ward:
            ward = "Urgences" if stay_type == "EMERGENCY" else self.d.pick(ward_choices(principal))
        self.ward = ward
        row = [sid, pid, self.clock.dt(adm), self.clock.dt(dis), stay_type, ward]
        if self.last_stay is None or dis >= self.last_stay[0]:
            self.last_stay = (dis, stay_type, principal)
        return self.faults.write(self.outs["stays"], row, patient_bad)

    # children of a stay ---------------------------------------------------------------------------

    def children(
        self,
        p: _Person,
        pid: str,
        sid: str,
        adm: int,
        dis: int,
        stay_type: str,
        principal: str,
        cond: str | None,
        all_codes: list[str],
        base: _Baseline,
        state: set[str],
        parent_bad: bool,
    ) -> None:
        d = self.d
        clock = self.clock
        write = self.faults.write
        icd10 = self.vocab.icd10
        # diagnoses
        out = self.outs["diagnoses"]
        n = 1 + bisect_right(_N_DIAG_CUM, d.random() * _N_DIAG_CUM[-1])
        others = [c for c in all_codes if c != principal]
        secondary = self.rng.sample(others, min(n - 1, len(others))) if others and n > 1 else []
        adm_day, dis_day = adm // _DAY, dis // _DAY
        for i, code in enumerate([principal, *secondary]):
            self.n_diag += 1
            day = adm_day if i == 0 else d.int_between(adm_day, dis_day)
            write(
                out,
                [
                    f"{self.prefix}D{self.n_diag:09d}",
                    sid,
                    pid,
                    code,
                    clock.d(day),
                    "PRINCIPAL" if i == 0 else "SECONDARY",
                    icd10[code],
                    "",
                    "",
                    "",
                    "",
                    "",
                ],
                parent_bad,
            )
        # procedures
        procs = self.procedures(principal, cond, stay_type, state)
        out = self.outs["procedures"]
        for name in procs:
            self.n_proc += 1
            code = PROCEDURE_CODES[name]
            when = self.within(adm, dis)
            write(
                out,
                [
                    f"{self.prefix}P{self.n_proc:08d}",
                    sid,
                    pid,
                    code,
                    clock.dt(when),
                    self.vocab.snomed_procedures[code],
                ],
                parent_bad,
            )
        # labs
        out = self.outs["labs"]
        # one blood sample and one set of vital signs per stay, soon after admission
        blood = clock.dt(min(adm + d.int_between(15, 150), dis))
        vitals = clock.dt(min(adm + d.int_between(5, 60), dis))
        for test, value in self.labs(stay_type, cond, all_codes, principal, base, procs):
            self.n_lab += 1
            lt = LAB_TESTS[test]
            write(
                out,
                [
                    f"{self.prefix}L{self.n_lab:09d}",
                    sid,
                    pid,
                    lt.loinc,
                    f"{value:.{lt.decimals}f}",
                    lt.unit,
                    vitals if test in _VITALS else blood,
                    self.lab_desc[lt.loinc],
                    "",
                ],
                parent_bad,
            )
        # medications
        out = self.outs["medications"]
        for atc in self.medications(p, stay_type, principal, cond, procs):
            self.n_med += 1
            med = MEDS[atc]
            start = (
                adm_day if med.duration != "chronic" or d.random() < 0.7 else d.int_between(adm_day, dis_day)
            )
            end = self.end_day(med.duration, start, dis_day)
            write(
                out,
                [
                    f"{self.prefix}M{self.n_med:09d}",
                    sid,
                    pid,
                    atc,
                    self.vocab.atc[atc],
                    d.pick(med.doses),
                    med.unit,
                    med.route,
                    clock.d(start),
                    clock.d(end) if end >= 0 else "",
                ],
                parent_bad,
            )

    def within(self, adm: int, dis: int) -> int:
        if dis - adm > _DAY:  # inpatient: a working hour of a day of the stay
            day = self.d.int_between(adm // _DAY, dis // _DAY)
            t = day * _DAY + self.d.int_between(8 * 60, 17 * 60)
            return min(max(t, adm), dis)
        return self.d.int_between(adm, dis)

    def end_day(self, duration: str, start: int, dis_day: int) -> int:
        d = self.d
        last = min(self.ref_ord - 1, self.cap)
        if duration == "once":
            self.last_drug_day = max(self.last_drug_day, start)
            return start
        if duration == "chronic":
            if d.random() < 0.1:
                return -1 if self.cap >= self.ref_ord else last  # ongoing, or stopped at the death
            end = start + d.pick((30, 60, 90, 90, 180))
        elif duration == "course":
            end = start + d.int_between(5, 10)
        elif duration == "short":
            end = max(start + d.int_between(2, 5), dis_day)
        else:  # depot
            end = start + 90
        end = min(end, last)
        self.last_drug_day = max(self.last_drug_day, end)
        return end

    def procedures(self, principal: str, cond: str | None, stay_type: str, state: set[str]) -> list[str]:
        r = self.d.random
        out: list[str] = []
        if cond == "ckd":
            if stay_type == "OUTPATIENT" and r() < 0.5:
                out.append("haemodialysis")
        elif principal in ("I21.9", "I48.9", "I50.9"):
            if r() < 0.7:
                out.append("echocardiography")
            if r() < 0.3:
                out.append("chest_xray")
        elif principal in ("J18.9", "U07.1"):
            if r() < 0.85:
                out.append("chest_xray")
        elif principal in ("J20.9", "J45.9") and r() < 0.25:
            out.append("chest_xray")
        return out[:2]

    def labs(
        self,
        stay_type: str,
        cond: str | None,
        all_codes: list[str],
        principal: str,
        b: _Baseline,
        procs: list[str],
    ) -> list[tuple[str, float]]:
        d = self.d
        r = d.random
        g = self.rng.gauss
        diabetic = any(c.startswith(("E10", "E11")) for c in all_codes)
        tests: list[str] = []
        if stay_type == "INPATIENT":
            tests += [
                "creatinine",
                "potassium",
                "sodium",
                "haemoglobin",
                "platelets",
                "leukocytes",
                "weight",
                "systolic",
                "diastolic",
            ]
        elif stay_type == "EMERGENCY":
            tests += [
                "haemoglobin",
                "leukocytes",
                "creatinine",
                "potassium",
                "sodium",
                "systolic",
                "diastolic",
            ]
            if not diabetic and r() < 0.5:
                tests.append("glucose")
        else:
            tests += ["systolic", "diastolic"]
            if "chemotherapy" in procs:
                tests += ["haemoglobin", "platelets", "leukocytes", "creatinine"]
            elif r() < 0.4:
                tests.append("creatinine")
            if r() < 0.5:
                tests.append("weight")
        if diabetic:
            if r() < 0.75:
                tests.append("hba1c")
            tests.append("glucose")
        if (cond in ("hld", "t2d", "t1d") or principal == "I21.9") and r() < 0.6:
            tests += ["cholesterol", "hdl", "ldl"]
        infection = principal in ("J18.9", "U07.1", "J20.9", "J01.9", "J02.9")
        chemo = "chemotherapy" in procs
        values: list[tuple[str, float]] = []
        hdl = 0.0
        chol = 0.0
        for t in tests:
            if t == "hba1c":
                v = _clip(b.hba1c + g(0, 0.3), 4.2, 14.0)
            elif t == "glucose":
                v = (
                    _clip((b.hba1c * 28.7 - 46.7) + g(0, 25), 55, 480)
                    if diabetic
                    else _clip(g(96, 12), 65, 160)
                )
            elif t == "creatinine":
                v = _clip(b.creatinine * (1 + g(0, 0.08)), 0.3, 9.0)
            elif t == "potassium":
                v = _clip(g(4.2, 0.35) + (0.4 if "N18.3" in all_codes else 0), 2.8, 6.5)
            elif t == "sodium":
                v = _clip(g(139, 2.8), 122, 152)
            elif t == "haemoglobin":
                v = _clip(b.haemoglobin + g(0, 0.6) - (1.2 if chemo else 0), 6.0, 19.5)
            elif t == "platelets":
                v = _clip(g(250, 55) * (0.6 if chemo else 1), 15, 650)
            elif t == "leukocytes":
                v = _clip(g(7.0, 1.8) + (5 if infection else 0) - (2.5 if chemo else 0), 0.8, 35)
            elif t == "weight":
                v = _clip(b.weight + g(0, 1.2), 3, 220)
            elif t == "systolic":
                v = _clip(b.systolic + g(0, 9), 80, 220)
            elif t == "diastolic":
                v = _clip(b.diastolic + g(0, 6), 40, 130)
            elif t == "cholesterol":
                v = chol = _clip(b.cholesterol + g(0, 12), 100, 380)
            elif t == "hdl":
                v = hdl = _clip(b.hdl + g(0, 4), 20, 110)
            else:  # ldl (Friedewald-like, after cholesterol and hdl)
                v = _clip(chol - hdl - g(28, 8), 30, 300)
            values.append((t, v))
        return values

    def medications(
        self, p: _Person, stay_type: str, principal: str, cond: str | None, procs: list[str]
    ) -> list[str]:
        d = self.d
        r = d.random
        out: list[str] = []
        for prob, alternatives in FOCUS_MEDS.get(cond or principal, ()):
            if r() < prob:
                out.append(d.pick(alternatives))
        if stay_type == "INPATIENT":
            for c, _ in p.conditions:
                if c != cond and c in CHRONIC_MEDS and r() < 0.6:
                    out.append(d.pick(CHRONIC_MEDS[c]))
            if r() < 0.3:
                out.append("N02BE01")
        seen: set[str] = set()
        unique = []
        for atc in out:
            if atc not in seen:
                seen.add(atc)
                unique.append(atc)
        return unique[:6]


def _clip(v: float, lo: float, hi: float) -> float:
    return lo if v < lo else hi if v > hi else v


# --- notes ----------------------------------------------------------------------------------------

NOTE_SHARE: Final = {"INPATIENT": 0.40, "OUTPATIENT": 0.10, "EMERGENCY": 0.10}  # of stays with a note
SECOND_NOTE_SHARE: Final = 0.40  # of noted inpatient stays: a discharge letter too
ROUTINE_NOTE_SHARE: Final = 0.03  # of pathway follow-up and treatment visits (a short consultation note)
_DOCTORS_PER_WARD: Final = 4

# The reason for a stay, in French, by the first three characters of its principal ICD-10 code.
_REASONS: Final = {
    "E10": "un déséquilibre glycémique",
    "E11": "un déséquilibre glycémique",
    "C34": "la prise en charge d'un cancer bronchique",
    "C18": "la prise en charge d'un cancer colique",
    "C19": "la prise en charge d'un cancer de la jonction recto-sigmoïdienne",
    "C20": "la prise en charge d'un cancer du rectum",
    "C50": "la prise en charge d'un cancer du sein",
    "C61": "la prise en charge d'un cancer de la prostate",
    "I10": "une hypertension artérielle déséquilibrée",
    "E78": "un bilan lipidique",
    "N18": "une insuffisance rénale chronique",
    "I48": "une fibrillation atriale",
    "I50": "une décompensation cardiaque",
    "I21": "un infarctus du myocarde",
    "J45": "une exacerbation d'asthme",
    "F32": "un épisode dépressif",
    "D64": "une anémie",
    "J18": "une pneumopathie",
    "U07": "une infection à COVID-19",
    "J20": "une bronchite aiguë",
    "J01": "une sinusite aiguë",
    "J02": "une pharyngite aiguë",
    "S82": "une fracture de jambe",
}
_CANCER_OF: Final = {"lung_ca": "lung", "colon_ca": "colon", "prostate_ca": "prostate", "breast_ca": "breast"}
# the condition (for the note's kind and finding) of a pathway visit, by its principal ICD-10 code
_PATHWAY_CONDITION: Final = {"C34": "lung_ca", "C18": "colon_ca", "C19": "colon_ca", "C20": "colon_ca", "C61": "prostate_ca",
                             "C50": "breast_ca", "E10": "t1d", "E11": "t2d"}
_RELATIONS: Final = (
    ("épouse", "F"),
    ("époux", "M"),
    ("fille", "F"),
    ("fils", "M"),
    ("sœur", "F"),
    ("frère", "M"),
)
_SAME_NAME: Final = frozenset({"fille", "fils", "sœur", "frère"})


def _reason(principal: str) -> str:
    return _REASONS.get(principal[:3], "un bilan")


class _NoteWriter:
    """Notes of one site: its random stream, the wards' doctors, and the ``_truth`` JSONL files."""

    def __init__(self, site: str, seed: int, pools: NamePools, truth: tuple[IO[str], IO[str]] | None) -> None:
        self.site = site
        self.seed = seed
        self.rng = random.Random(f"ds4h:{seed}:{site}:notes")
        self.d = _Draw(self.rng)
        self.pools = pools
        self.truth = truth
        self.doctors: dict[str, tuple[str, ...]] = {}
        self.count = 0

    def kinds(self, stay_type: str, principal: str, cond: str | None, routine: bool = False) -> list[str]:
        r = self.d.random
        if r() >= (ROUTINE_NOTE_SHARE if routine else NOTE_SHARE[stay_type]):
            return []
        if stay_type == "INPATIENT":
            return ["hospitalisation", "discharge"] if r() < SECOND_NOTE_SHARE else ["hospitalisation"]
        if stay_type == "EMERGENCY":
            return ["emergency"]
        if cond in _CANCER_OF:
            return ["oncology"]
        if principal.startswith(("E10", "E11")):
            return ["diabetology"]
        return ["consultation"]

    def _name(self, rng: _Draw, sex: str, locale: int) -> str:
        pools = self.pools
        return rng.pick(pools.male[locale] if sex == "M" else pools.female[locale])

    def ward_doctors(self, ward: str) -> tuple[str, ...]:
        """The ward's doctors: the same for every stay of the site, whatever the stays before."""
        doctors = self.doctors.get(ward)
        if doctors is None:
            d = _Draw(random.Random(f"ds4h:{self.seed}:{self.site}:doctors:{ward}"))
            n = len(self.pools.last)
            doctors = tuple(
                f"{self._name(d, d.pick('MF'), loc)} {d.pick(self.pools.last[loc])}"
                for loc in (int(d.random() * n) for _ in range(_DOCTORS_PER_WARD))
            )
            self.doctors[ward] = doctors
        return doctors

    def patient_info(self, p: _Person, pid: str, addr: _Address, sex: str) -> PatientInfo:
        d = self.d
        locale = int(d.random() * len(self.pools.last))
        relatives = []
        for _ in range(1 + (d.random() < 0.5)):
            relation, rsex = d.pick(_RELATIONS)
            last = p.last if relation in _SAME_NAME else d.pick(self.pools.last[locale])
            relatives.append(Relative(relation, self._name(d, rsex, locale), last))
        return PatientInfo(
            patient_id=pid,
            first_name=p.first,
            last_name=p.last,
            sex=sex,
            birth_date=date.fromordinal(p.birth),
            matricule=p.matricule or None,
            phone=addr.phone or None,
            email=p.email or None,
            street=addr.street,
            postcode=addr.postcode if addr.country == "LU" else f"{_LETTER_PREFIX[addr.country]}-{addr.postcode}",
            city=addr.city,
            relatives=tuple(relatives),
        )

    def with_ward_doctors(self, info: PatientInfo, ward: str) -> PatientInfo:
        """``info`` with the stay's author first and a colleague of the ward second."""
        doctors = self.ward_doctors(ward)
        i = int(self.d.random() * len(doctors))
        j = (i + 1 + int(self.d.random() * (len(doctors) - 1))) % len(doctors)
        return replace(info, doctors=(doctors[i], doctors[j]))

    def record(self, note: Note, info: PatientInfo) -> None:
        self.count += 1
        if self.truth is not None:
            line, gold = note_json_lines(note, known_identifiers(info))
            self.truth[0].write(line)
            self.truth[1].write(gold)


# --- entry point ----------------------------------------------------------------------------------


def generate(
    out_dir: Path,
    patients: int,
    sites: list[SiteSpec],
    seed: int,
    dirty: float,
    reference_date: date = date(2026, 1, 1),
    progress: Progress | None = None,
    notes: bool = True,
) -> GenerationResult:
    """Write a synthetic extract per site under ``out_dir/<site>/``, and the injected faults and the
    notes' de-identification inputs and gold spans under ``out_dir/<site>/_truth/``. Same arguments,
    same bytes. ``notes=False``: no notes.csv (nor the notes' truth files); the other files are the
    same bytes as with notes (the notes draw from their own random streams)."""
    if patients < 0:
        raise ValueError(f"patients must be >= 0, got {patients}")
    if not sites:
        raise ValueError("at least one site is needed")
    names = [s.site for s in sites]
    if len(set(names)) != len(names):
        raise ValueError(f"site names must be unique: {names}")
    if not 0.0 <= dirty <= 1.0:
        raise ValueError(f"dirty must be a fraction in [0, 1], got {dirty}")
    _check_contract()
    out_dir = Path(out_dir)
    result = GenerationResult(out_dir=out_dir, seed=seed, patients=patients, sites=names)

    # the population
    builder = _PopulationBuilder(
        random.Random(f"ds4h:{seed}:population"),
        name_pools(seed),
        reference_date,
        len(sites),
        random.Random(f"ds4h:{seed}:residence"),
        seed,
    )
    people: list[_Person] = []
    step = max(1000, patients // 20)
    for i in range(patients):
        people.append(builder.person())
        if progress is not None and (i + 1) % step == 0:
            progress("population", i + 1, patients)
    if progress is not None:
        progress("population", patients, patients)
    result.shared_patients = sum(1 for p in people if p.second >= 0)
    result.sex_conflicts = sum(1 for p in people if p.second >= 0 and p.second_sex != p.sex)
    result.without_matricule = sum(1 for p in people if not p.matricule)

    # each site
    for index, spec in enumerate(sites):
        members = [(p, p.second == index) for p in people if p.home == index or p.second == index]
        site_dir = out_dir / spec.site
        truth_dir = site_dir / "_truth"
        truth_dir.mkdir(parents=True, exist_ok=True)
        if not notes:  # an earlier extract's notes would be read with these patients
            for stale in (site_dir / "notes.csv", truth_dir / "notes.jsonl", truth_dir / "notes_gold.jsonl"):
                stale.unlink(missing_ok=True)
        handles = {
            e.name: open(site_dir / e.file, "w", encoding=spec.encoding, newline="")  # noqa: SIM115
            for e in ENTITIES if notes or e.name != "notes"
        }
        truth = (
            open(truth_dir / "notes.jsonl", "w", encoding="utf-8", newline="\n"),  # noqa: SIM115
            open(truth_dir / "notes_gold.jsonl", "w", encoding="utf-8", newline="\n"),  # noqa: SIM115
        ) if notes else None
        try:
            outs = {e.name: _Out(e, handles[e.name], spec.delimiter) for e in ENTITIES if e.name in handles}
            writer = _SiteWriter(spec, index, seed, dirty, reference_date, patients, outs, truth)
            total = len(members)
            step = max(500, total // 20)
            for k, (person, is_second) in enumerate(members):
                writer.patient(person, is_second)
                if progress is not None and (k + 1) % step == 0:
                    progress(spec.site, k + 1, total)
            if progress is not None:
                progress(spec.site, total, total)
        finally:
            for fh in (*handles.values(), *(truth or ())):
                fh.close()
        result.rows[spec.site] = {name: out.line - 1 for name, out in outs.items()}
        result.notes[spec.site] = writer.notes.count
        result.deaths[spec.site] = writer.deaths
        faults = sorted(
            writer.faults.faults + writer.note_faults.faults, key=lambda f: (_ENTITY_ORDER[f.entity], f.line)
        )
        with open(truth_dir / "faults.jsonl", "w", encoding="utf-8", newline="\n") as fh:
            for f in faults:
                fh.write(json.dumps(f.to_json(), ensure_ascii=False) + "\n")
        result.faults.extend(faults)
    return result
