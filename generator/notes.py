"""Synthetic French clinical notes with gold identifier spans, to measure text de-identification.

Each note is built piece by piece, so every identifier's offsets are known exactly: ``Note.spans``
holds ``(start, end, type, surface)`` with ``text[start:end] == surface``. Types are PATIENT_NAME,
OTHER_NAME, MATRICULE, PHONE, EMAIL, ADDRESS, DATE (also the year of a past event: "traité en 2009"),
AGE ("71 ans") and IBAN; LOCAL_ID is in the vocabulary but these notes do not write one.

Traps are deliberate: medical eponyms that are also surnames ("classification de Wagner",
"maladie de Parkinson") are not spans, and clinical numbers (HbA1c 7,2 %, 500 mg) must stay.

    >>> notes = make_notes(make_patients(seed=1, n=2), seed=1)
    >>> all(n.text[s:e] == surface for n in notes for s, e, _t, surface in n.spans)
    True
"""

from __future__ import annotations

import json
import random
import re
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from generator.reference import ascii_fold, name_pools
from schemas.geo import communes
from schemas.matricule import make_matricule

__all__ = [
    "EPONYM_PHRASES",
    "NOTE_KINDS",
    "SPAN_TYPES",
    "Note",
    "PatientInfo",
    "Relative",
    "StayContext",
    "known_identifiers",
    "make_notes",
    "make_patients",
    "note_json_lines",
    "one_line",
    "stay_note",
    "write_notes_files",
]

# LOCAL_ID (a hospital's patient, stay or file number) is in the vocabulary; these notes do not write one.
SPAN_TYPES = (
    "PATIENT_NAME", "OTHER_NAME", "MATRICULE", "LOCAL_ID", "PHONE", "EMAIL", "ADDRESS", "DATE", "AGE", "IBAN",
)  # fmt: skip

# Eponyms used medically that are also surnames. The phrase is not an identifier.
EPONYM_PHRASES: dict[str, str] = {
    "Wagner": "plaie du pied classée grade 2 de la classification de Wagner",
    "Parkinson": "antécédent de maladie de Parkinson stable sous lévodopa",
    "Babinski": "signe de Babinski négatif des deux côtés",
    "Charcot": "pas d'argument pour un pied de Charcot",
    "Hodgkin": "antécédent de lymphome de Hodgkin traité en 2009",
    "Crohn": "pas de maladie de Crohn connue",
    "Basedow": "antécédent de maladie de Basedow",
    "Cushing": "syndrome de Cushing écarté",
    "Alzheimer": "pas de maladie d'Alzheimer",
    "Glasgow": "score de Glasgow à 15",
}
_EPONYM_SURNAMES = ("Wagner", "Parkinson", "Babinski", "Charcot", "Hodgkin", "Basedow")

_MONTHS = (
    "janvier", "février", "mars", "avril", "mai", "juin",
    "juillet", "août", "septembre", "octobre", "novembre", "décembre",
)  # fmt: skip
_DOCTOR_FIRST = ("Paul", "Marc", "Claude", "Anne", "Sophie", "Luc", "Nathalie", "Yves", "Carole", "Tom")
_DOCTOR_LAST = ("Schmit", "Hoffmann", "Kremer", "Thill", "Reuter", "Faber", "Lentz", "Becker", "Welter")
_RELATIONS_F = ("fille", "épouse", "sœur", "mère", "compagne")
_RELATIONS_M = ("fils", "époux", "frère", "père", "compagnon")


@dataclass(frozen=True, slots=True)
class Relative:
    relation: str  # "fille", "épouse", ...
    first_name: str
    last_name: str


@dataclass(frozen=True, slots=True)
class PatientInfo:
    patient_id: str
    first_name: str
    last_name: str
    sex: str  # "M" or "F"
    birth_date: date
    matricule: str | None
    phone: str | None  # "+352 621 123 456"
    email: str | None
    street: str  # "12, rue de la Gare"
    postcode: str  # "L-1234"
    city: str
    relatives: tuple[Relative, ...] = ()
    doctors: tuple[str, ...] = ("Paul Schmit",)


@dataclass(slots=True)
class Note:
    id: str
    patient_id: str
    text: str
    spans: list[tuple[int, int, str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StayContext:
    """The stay a note belongs to: its dates (the note's first date is ``admission``), ward and reason."""

    admission: date
    discharge: date
    ward: str
    reason: str  # in French, after "admis(e) pour": "une pneumopathie"
    age: int  # years at admission
    cancer: str | None = None  # "breast", "colon", "lung" or "prostate": the oncology note's finding


_EVENT_YEAR = re.compile(r"(?<=\ben )(?:19|20)\d\d\b")


class _Builder:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pos = 0
        self.spans: list[tuple[int, int, str, str]] = []

    def t(self, s: str) -> _Builder:
        self.parts.append(s)
        self.pos += len(s)
        return self

    def e(self, surface: str, kind: str) -> _Builder:
        assert kind in SPAN_TYPES, kind
        self.spans.append((self.pos, self.pos + len(surface), kind, surface))
        return self.t(surface)

    def history(self, s: str) -> _Builder:
        """Text in which the year of a past event ("traité en 2009") is a DATE span."""
        last = 0
        for m in _EVENT_YEAR.finditer(s):
            self.t(s[last : m.start()]).e(m.group(), "DATE")
            last = m.end()
        return self.t(s[last:])

    def text(self) -> str:
        return "".join(self.parts)


# ---------------------------------------------------------------- patients


def _lu_iban(rng: random.Random) -> str:
    bban = f"{rng.randint(1, 99):03d}" + "".join(str(rng.randint(0, 9)) for _ in range(13))
    numeric = int(bban + "2130" + "00")  # "LU" -> 21 30, check digits 00
    check = 98 - numeric % 97
    return f"LU{check:02d}{bban}"


def make_patients(seed: int, n: int) -> list[PatientInfo]:
    """``n`` synthetic patients for notes, deterministic for ``seed`` (a few carry eponym surnames)."""
    rng = random.Random(f"ds4h-notes-patients:{seed}")
    pools = name_pools(seed, 300)
    all_communes = communes()
    out: list[PatientInfo] = []
    for i in range(n):
        loc = rng.randrange(len(pools.last))
        sex = rng.choice("MF")
        first = rng.choice(pools.male[loc] if sex == "M" else pools.female[loc])
        last = rng.choice(_EPONYM_SURNAMES) if rng.random() < 0.12 else rng.choice(pools.last[loc])
        birth = date(1930, 1, 1) + timedelta(days=rng.randrange(365 * 75))
        commune = rng.choice(all_communes)
        relatives: list[Relative] = []
        for _ in range(rng.randint(1, 2)):
            rsex = rng.choice("MF")
            rel = rng.choice(_RELATIONS_F if rsex == "F" else _RELATIONS_M)
            rfirst = rng.choice(pools.male[loc] if rsex == "M" else pools.female[loc])
            rlast = last if rel in ("fille", "fils", "sœur", "frère") else rng.choice(pools.last[loc])
            relatives.append(Relative(rel, rfirst, rlast))
        doctors = tuple(f"{rng.choice(_DOCTOR_FIRST)} {rng.choice(_DOCTOR_LAST)}" for _ in range(2))
        phone = f"+352 6{rng.choice('2589')}1 {rng.randint(100, 999)} {rng.randint(100, 999)}"
        email = f"{ascii_fold(first).lower()}.{ascii_fold(last).lower().replace(' ', '')}@{rng.choice(['pt.lu', 'gmail.com', 'internet.lu'])}"
        out.append(
            PatientInfo(
                patient_id=f"P{seed}-{i:05d}",
                first_name=first,
                last_name=last,
                sex=sex,
                birth_date=birth,
                matricule=make_matricule(birth, rng.randint(0, 999)) if rng.random() < 0.9 else None,
                phone=phone if rng.random() < 0.9 else None,
                email=email.replace("'", "") if rng.random() < 0.8 else None,
                street=f"{rng.randint(1, 180)}, {rng.choice(pools.streets)}",
                postcode=rng.choice(commune.postcodes),
                city=commune.name,
                relatives=tuple(relatives),
                doctors=doctors,
            )
        )
    return out


def known_identifiers(p: PatientInfo) -> dict[str, list[str]]:
    """The patient's structured identifiers, in the ``known`` format of ``ds4h deid-text``."""
    return {
        "names": [f"{p.first_name} {p.last_name}"],
        "phones": [p.phone] if p.phone else [],
        "emails": [p.email] if p.email else [],
        "addresses": [p.street, f"{p.postcode} {p.city}"],
        "national_ids": [p.matricule] if p.matricule else [],
    }


# ---------------------------------------------------------------- pieces of text


def _num_date(rng: random.Random, d: date) -> str:
    sep = rng.choice("/./")
    return f"{d.day:02d}{sep}{d.month:02d}{sep}{d.year}"


def _long_date(rng: random.Random, d: date, year: bool = True) -> str:
    day = "1er" if d.day == 1 and rng.random() < 0.7 else str(d.day)
    return f"{day} {_MONTHS[d.month - 1]}" + (f" {d.year}" if year else "")


def _date(b: _Builder, rng: random.Random, d: date) -> None:
    r = rng.random()
    if r < 0.5:
        b.e(_num_date(rng, d), "DATE")
    elif r < 0.85:
        b.e(_long_date(rng, d), "DATE")
    else:
        b.e(_long_date(rng, d, year=False), "DATE")


def _title(p: PatientInfo, full: bool) -> str:
    if p.sex == "M":
        return "Monsieur" if full else "M."
    return "Madame" if full else "Mme"


def _patient_name(b: _Builder, rng: random.Random, p: PatientInfo) -> None:
    """One mention of the patient, title outside the span."""
    r = rng.randrange(6)
    if r == 0:
        b.t(f"{_title(p, False)} ").e(f"{p.first_name} {p.last_name}", "PATIENT_NAME")
    elif r == 1:
        b.t(f"{_title(p, False)} ").e(p.last_name.upper(), "PATIENT_NAME")
    elif r == 2:
        b.e(f"{p.last_name.upper()} {p.first_name}", "PATIENT_NAME")
    elif r == 3:
        b.t(f"{_title(p, True)} ").e(f"{p.first_name} {p.last_name.upper()}", "PATIENT_NAME")
    elif r == 4:
        b.t(f"{_title(p, True)} ").e(p.last_name, "PATIENT_NAME")
    else:
        b.e(f"{p.first_name} {p.last_name}", "PATIENT_NAME")


def _doctor(b: _Builder, rng: random.Random, name: str) -> None:
    first, last = name.split(" ", 1)
    r = rng.randrange(3)
    if r == 0:
        b.t("Dr ").e(name, "OTHER_NAME")
    elif r == 1:
        b.t("Docteur ").e(last.upper(), "OTHER_NAME")
    else:
        b.t("Dr ").e(f"{first[0]}. {last}", "OTHER_NAME")


def _relative(b: _Builder, rng: random.Random, rel: Relative) -> None:
    det = "sa" if rel.relation in _RELATIONS_F and rel.relation != "épouse" else "son"
    if rng.random() < 0.5:
        b.t(f"{det} {rel.relation} ").e(rel.first_name, "OTHER_NAME")
    else:
        b.t(f"{det} {rel.relation} ").e(f"{rel.first_name} {rel.last_name}", "OTHER_NAME")


def _phone_variant(rng: random.Random, phone: str) -> str:
    digits = "".join(ch for ch in phone if ch.isdigit())
    national = digits[3:] if digits.startswith("352") else digits
    r = rng.randrange(4)
    if r == 0:
        return phone
    if r == 1:
        return f"00352 {national}"
    if r == 2:
        return f"{national[:3]} {national[3:6]} {national[6:]}"
    return f"+352{national}"


def _matricule_variant(rng: random.Random, m: str) -> str:
    r = rng.randrange(3)
    if r == 0:
        return m
    if r == 1:
        return f"{m[:4]} {m[4:8]} {m[8:11]} {m[11:]}"
    return f"{m[:8]} {m[8:]}"


def _iban_text(rng: random.Random, iban: str) -> str:
    if rng.random() < 0.5:
        return iban
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))


def _other_phone(rng: random.Random) -> str:
    r = rng.randrange(4)
    if r == 0:
        return f"06 {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)}"
    if r == 1:
        return (
            f"+33 6 {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)}"
        )
    if r == 2:
        return f"+32 470 {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)}"
    return f"+49 151 {rng.randint(1000000, 9999999)}"


def _address(b: _Builder, p: PatientInfo) -> None:
    b.e(p.street, "ADDRESS").t(", ").e(f"{p.postcode} {p.city}", "ADDRESS")


def _clinical_numbers(rng: random.Random) -> str:
    hba1c = f"{rng.randint(55, 110) / 10:.1f}".replace(".", ",")
    gly = f"{rng.randint(80, 250) / 100:.2f}".replace(".", ",")
    return (
        f"HbA1c {hba1c} %, glycémie à jeun {gly} g/L, créatinine {rng.randint(50, 140)} µmol/L, "
        f"TA {rng.randint(110, 160)}/{rng.randint(60, 95)} mmHg, IMC {rng.randint(18, 38)},{rng.randint(0, 9)} kg/m²"
    )


def _treatment(rng: random.Random) -> str:
    return rng.choice(
        [
            "metformine 500 mg 2x/j, atorvastatine 20 mg 1x/j",
            "insuline glargine 18 UI le soir, metformine 1000 mg matin et soir",
            "ramipril 5 mg, bisoprolol 2,5 mg, acide acétylsalicylique 100 mg",
            "paracétamol 1 g si douleur (max 4 g/24 h), énoxaparine 4000 UI/j",
        ]
    )


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _eponym(rng: random.Random, p: PatientInfo) -> str:
    if p.last_name in EPONYM_PHRASES and rng.random() < 0.8:
        return EPONYM_PHRASES[p.last_name]
    return EPONYM_PHRASES[rng.choice(sorted(EPONYM_PHRASES))]


# ---------------------------------------------------------------- note kinds


def _hospitalisation(
    b: _Builder, rng: random.Random, p: PatientInfo, when: date, ctx: StayContext | None = None
) -> None:
    ward = f"Service : {ctx.ward}" if ctx else "Service de médecine interne"
    b.t(f"COMPTE-RENDU D'HOSPITALISATION\n{ward}\n\nPatient : ")
    b.e(f"{p.last_name.upper()} {p.first_name}", "PATIENT_NAME").t(", né(e) le ")
    _date(b, rng, p.birth_date)
    if p.matricule:
        b.t("\nMatricule : ").e(_matricule_variant(rng, p.matricule), "MATRICULE")
    b.t("\nAdresse : ")
    _address(b, p)
    b.t("\nDate d'entrée : ")
    _date(b, rng, when)
    b.t(" - date de sortie : ")
    _date(b, rng, ctx.discharge if ctx else when + timedelta(days=rng.randint(2, 12)))
    b.t("\n\n")
    _patient_name(b, rng, p)
    age = ctx.age if ctx else 2024 - p.birth_date.year
    reason = ctx.reason if ctx else "déséquilibre glycémique"
    b.t(", ").e(f"{age} ans", "AGE").t(f", est admis(e) pour {reason}. ")
    b.history(f"{_cap(_eponym(rng, p))}. ")
    b.t(f"Bilan : {_clinical_numbers(rng)}. ")
    b.e(p.first_name, "PATIENT_NAME").t(" est accompagné(e) de ")
    _relative(b, rng, p.relatives[0])
    b.t(". Traitement de sortie : ")
    b.t(_treatment(rng))
    b.t(".\n\nPatient(e) suivi(e) par le ")
    _doctor(b, rng, p.doctors[0])
    b.t(". Contrôle prévu le ")
    _date(b, rng, when + timedelta(days=rng.randint(20, 60)))
    b.t(".\n")


def _diabetology(
    b: _Builder, rng: random.Random, p: PatientInfo, when: date, ctx: StayContext | None = None
) -> None:
    b.t("Consultation de diabétologie du ")
    _date(b, rng, when)
    b.t("\n\nJe revois ce jour ")
    _patient_name(b, rng, p)
    b.t(", né(e) le ")
    _date(b, rng, p.birth_date)
    b.t(", pour le suivi de son diabète de type 2. ")
    b.t(f"{_clinical_numbers(rng)}. ")
    b.history(f"Examen des pieds : {_eponym(rng, p)}. ")
    b.t(f"Traitement : {_treatment(rng)}.\n")
    if p.phone:
        b.t("Joignable au ").e(_phone_variant(rng, p.phone), "PHONE")
        if p.email:
            b.t(" ou par courriel ").e(p.email, "EMAIL")
        b.t(". ")
    if len(p.relatives) > 1:
        b.t("Personne de contact : ")
        _relative(b, rng, p.relatives[1])
        b.t(", tél. ").e(_other_phone(rng), "PHONE").t(". ")
    b.t("\nProchain rendez-vous le ")
    _date(b, rng, when + timedelta(days=rng.randint(60, 120)))
    b.t(".\n\n")
    _doctor(b, rng, p.doctors[0])
    b.t("\n")


def _oncology(
    b: _Builder, rng: random.Random, p: PatientInfo, when: date, ctx: StayContext | None = None
) -> None:
    b.t("RÉUNION DE CONCERTATION PLURIDISCIPLINAIRE D'ONCOLOGIE\nSéance du ")
    _date(b, rng, when)
    b.t("\nPrésents : ")
    _doctor(b, rng, p.doctors[0])
    b.t(", ")
    _doctor(b, rng, p.doctors[1])
    b.t("\n\nDossier : ")
    _patient_name(b, rng, p)
    if p.matricule:
        b.t(" (matricule ").e(_matricule_variant(rng, p.matricule), "MATRICULE").t(")")
    b.t(", né(e) le ")
    _date(b, rng, p.birth_date)
    finding, plan = _CANCERS[ctx.cancer if ctx and ctx.cancer else "colon"]
    b.t(f".\n{finding}. ")
    b.history(f"{_cap(_eponym(rng, p))}. ")
    b.t(f"Proposition : {plan} à partir du ")
    _date(b, rng, when + timedelta(days=rng.randint(10, 30)))
    b.t(". Décision expliquée à ")
    _patient_name(b, rng, p)
    b.t(" et à ")
    _relative(b, rng, p.relatives[0])
    b.t(".\n")


def _discharge(
    b: _Builder, rng: random.Random, p: PatientInfo, when: date, ctx: StayContext | None = None
) -> None:
    b.t("LETTRE DE SORTIE\n\nCher confrère,\n\nVotre patient(e) ")
    _patient_name(b, rng, p)
    b.t(", domicilié(e) ")
    _address(b, p)
    b.t(", a quitté notre service le ")
    _date(b, rng, when)
    b.t(f". {_clinical_numbers(rng)}. ")
    b.history(f"{_cap(_eponym(rng, p))}. ")
    b.t(f"Traitement : {_treatment(rng)}. ")
    if p.phone:
        b.t("Téléphone du patient : ").e(_phone_variant(rng, p.phone), "PHONE").t(". ")
    if p.email:
        b.t("Courriel : ").e(p.email, "EMAIL").t(". ")
    if rng.random() < 0.35:
        b.t("Remboursement des frais sur le compte IBAN ").e(_iban_text(rng, _lu_iban(rng)), "IBAN").t(". ")
    b.t("Le retour à domicile se fait avec ")
    _relative(b, rng, p.relatives[-1])
    b.t(".\n\nBien confraternellement,\n")
    _doctor(b, rng, p.doctors[1])
    b.t("\n")


_CANCERS: dict[str, tuple[str, str]] = {
    "colon": (
        "Adénocarcinome colique pT3N1M0, ECOG 1, ACE 12,4 ng/mL",
        "chimiothérapie adjuvante FOLFOX 6 cycles",
    ),
    "lung": (
        "Carcinome bronchique non à petites cellules cT2N1M0, ECOG 1",
        "chimiothérapie par carboplatine et pémétrexed 4 cycles",
    ),
    "breast": (
        "Carcinome canalaire infiltrant du sein, récepteurs hormonaux positifs, HER2 négatif",
        "chirurgie puis chimiothérapie adjuvante AC-paclitaxel, radiothérapie et hormonothérapie",
    ),
    "prostate": (
        "Adénocarcinome prostatique, score de Gleason 7, PSA 14,2 ng/mL",
        "radiothérapie externe associée à une hormonothérapie",
    ),
}


def _consultation(
    b: _Builder, rng: random.Random, p: PatientInfo, when: date, ctx: StayContext | None = None
) -> None:
    ward = ctx.ward if ctx else "Médecine interne"
    reason = ctx.reason if ctx else "un bilan"
    b.t(f"COMPTE-RENDU DE CONSULTATION\n{ward}, consultation du ")
    _date(b, rng, when)
    b.t("\n\nJe vois ce jour ")
    _patient_name(b, rng, p)
    b.t(", né(e) le ")
    _date(b, rng, p.birth_date)
    b.history(
        f", pour {reason}. {_clinical_numbers(rng)}. {_cap(_eponym(rng, p))}. Traitement : {_treatment(rng)}. "
    )
    if p.phone and rng.random() < 0.6:
        b.t("Le patient peut être joint au ").e(_phone_variant(rng, p.phone), "PHONE").t(". ")
    b.t("\nRevu(e) dans trois mois, le ")
    _date(b, rng, when + timedelta(days=rng.randint(80, 100)))
    b.t(".\n\n")
    _doctor(b, rng, p.doctors[0])
    b.t("\n")


def _emergency(
    b: _Builder, rng: random.Random, p: PatientInfo, when: date, ctx: StayContext | None = None
) -> None:
    reason = ctx.reason if ctx else "une douleur thoracique"
    age = ctx.age if ctx else 2024 - p.birth_date.year
    b.t("SERVICE DES URGENCES\nPassage du ")
    _date(b, rng, when)
    b.t("\n\n")
    _patient_name(b, rng, p)
    b.t(", ").e(f"{age} ans", "AGE").t(", domicilié(e) ")
    _address(b, p)
    b.t(f", se présente pour {reason}. ")
    if p.matricule and rng.random() < 0.5:
        b.t("Matricule : ").e(_matricule_variant(rng, p.matricule), "MATRICULE").t(". ")
    b.history(f"{_clinical_numbers(rng)}. {_cap(_eponym(rng, p))}. ")
    b.t("Personne à prévenir : ")
    _relative(b, rng, p.relatives[0])
    b.t(", tél. ").e(_other_phone(rng), "PHONE")
    b.t(".\nRetour à domicile après surveillance.\n\n")
    _doctor(b, rng, p.doctors[0])
    b.t("\n")


_KINDS = (_hospitalisation, _diabetology, _oncology, _discharge)

_KindWriter = Callable[[_Builder, random.Random, PatientInfo, date, StayContext | None], None]

# kind -> (writer, note_type)
NOTE_KINDS: dict[str, tuple[_KindWriter, str]] = {
    "hospitalisation": (_hospitalisation, "Compte-rendu d'hospitalisation"),
    "discharge": (_discharge, "Lettre de sortie"),
    "diabetology": (_diabetology, "Consultation de diabétologie"),
    "oncology": (_oncology, "Compte-rendu de RCP d'oncologie"),
    "consultation": (_consultation, "Compte-rendu de consultation"),
    "emergency": (_emergency, "Compte-rendu des urgences"),
}


def stay_note(p: PatientInfo, note_id: str, rng: random.Random, kind: str, ctx: StayContext) -> Note:
    """One note of ``kind`` (a key of ``NOTE_KINDS``) about a stay; the author is ``p.doctors[0]``.

    The text keeps its line breaks; :func:`one_line` makes it one line."""
    write, _ = NOTE_KINDS[kind]
    b = _Builder()
    when = ctx.discharge if kind == "discharge" else ctx.admission
    if kind == "discharge":  # the letter is signed by doctors[1]
        p = _with_doctors(p, (p.doctors[1] if len(p.doctors) > 1 else p.doctors[0], p.doctors[0]))
    write(b, rng, p, when, ctx)
    return Note(note_id, p.patient_id, b.text(), b.spans)


def _with_doctors(p: PatientInfo, doctors: tuple[str, ...]) -> PatientInfo:
    return PatientInfo(
        p.patient_id, p.first_name, p.last_name, p.sex, p.birth_date, p.matricule, p.phone, p.email,
        p.street, p.postcode, p.city, p.relatives, doctors,
    )  # fmt: skip


_BREAK = re.compile(r" *\n[ \n]*")


def one_line(note: Note, sep: str = " / ") -> Note:
    """The note with every run of line breaks replaced by ``sep`` (trailing ones dropped), spans moved."""
    text = note.text.rstrip(" \n")
    ends: list[int] = []
    shifts: list[int] = []
    parts: list[str] = []
    last = 0
    shift = 0
    for m in _BREAK.finditer(text):
        parts.append(text[last : m.start()])
        parts.append(sep)
        last = m.end()
        shift += len(sep) - (m.end() - m.start())
        ends.append(m.end())
        shifts.append(shift)
    if not ends:
        return Note(note.id, note.patient_id, text, list(note.spans))
    parts.append(text[last:])
    spans = []
    for start, end, kind, surface in note.spans:
        i = bisect_right(ends, start)
        d = shifts[i - 1] if i else 0
        spans.append((start + d, end + d, kind, surface))
    return Note(note.id, note.patient_id, "".join(parts), spans)


def make_notes(patients: list[PatientInfo], seed: int, per_patient: int = 1) -> list[Note]:
    """``per_patient`` notes per patient, of the four kinds in turn; deterministic for ``seed``."""
    notes: list[Note] = []
    for p in patients:
        for k in range(per_patient):
            rng = random.Random(f"ds4h-notes:{seed}:{p.patient_id}:{k}")
            when = date(2019, 1, 1) + timedelta(days=rng.randrange(5 * 365))
            b = _Builder()
            kind = _KINDS[(rng.randrange(len(_KINDS)) + k) % len(_KINDS)]
            kind(b, rng, p, when)
            notes.append(Note(f"{p.patient_id}-{k}", p.patient_id, b.text(), b.spans))
    return notes


def note_json_lines(note: Note, known: dict[str, Any]) -> tuple[str, str]:
    """The note's line of ``notes.jsonl`` and of ``notes_gold.jsonl`` (each ending in a newline)."""
    line = json.dumps({"id": note.id, "text": note.text, "known": known}, ensure_ascii=False) + "\n"
    gold = json.dumps({"id": note.id, "spans": [list(s) for s in note.spans]}, ensure_ascii=False) + "\n"
    return line, gold


def write_notes_files(folder: Path, notes: list[Note], known: dict[str, dict[str, Any]]) -> None:
    """Write ``notes.jsonl`` (the ``ds4h deid-text`` input) and ``notes_gold.jsonl`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [note_json_lines(n, known.get(n.patient_id, {})) for n in notes]
    with (folder / "notes.jsonl").open("w", encoding="utf-8") as f:
        f.writelines(line for line, _ in lines)
    with (folder / "notes_gold.jsonl").open("w", encoding="utf-8") as f:
        f.writelines(gold for _, gold in lines)
