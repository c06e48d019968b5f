"""Held-out synthetic clinical notes with gold spans, written independently of the de-identification tool.

write_notes(folder, n, seed) writes folder/notes.jsonl (the tool's input) and folder/notes_gold.jsonl
(the truth).  See README.md in this folder for the rules followed (what is and is not a span).

    uv run python -m tests.heldout.notes_writer OUT_DIR --n 1500 --seed 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from faker import Faker

from . import pools as P
from .cases import CASES

PATIENT_NAME = "PATIENT_NAME"
OTHER_NAME = "OTHER_NAME"
DATE = "DATE"
AGE = "AGE"
PHONE = "PHONE"
EMAIL = "EMAIL"
ADDRESS = "ADDRESS"
MATRICULE = "MATRICULE"
IBAN = "IBAN"
LOCAL_ID = "LOCAL_ID"
TYPES = (PATIENT_NAME, OTHER_NAME, DATE, AGE, PHONE, EMAIL, ADDRESS, MATRICULE, IBAN, LOCAL_ID)

KNOWN_KEYS = ("names", "phones", "emails", "addresses", "national_ids", "birth_dates", "local_ids", "ibans")

T = TypeVar("T")

# A piece of text: plain str, (text, TYPE) for a gold span, or a list of pieces.
Piece = Any


# ====================================================================== text builder
class Doc:
    """Appends text and records gold spans at the exact offsets where entities are written."""

    _SLOT = re.compile(r"\{(\w+)\}")

    def __init__(self) -> None:
        self.buf: list[str] = []
        self.n = 0
        self.spans: list[list[Any]] = []

    def add(self, *pieces: Piece) -> Doc:
        for p in pieces:
            self._one(p)
        return self

    def _one(self, p: Piece) -> None:
        if p is None:
            return
        if isinstance(p, str):
            self.buf.append(p)
            self.n += len(p)
        elif isinstance(p, tuple):
            text, typ = p
            if typ is None:
                self._one(text)
                return
            assert typ in TYPES, typ
            assert text and text == text.strip() and "\n" not in text, repr(text)
            self.spans.append([self.n, self.n + len(text), typ, text])
            self.buf.append(text)
            self.n += len(text)
        else:
            for q in p:
                self._one(q)

    def f(self, tpl: str, **slots: Piece) -> Doc:
        """Write a template whose {slot}s are filled with pieces."""
        parts = self._SLOT.split(tpl)
        for i, part in enumerate(parts):
            if i % 2 == 0:
                self._one(part)
            else:
                self._one(slots[part])
        return self

    def line(self, tpl: str = "", **slots: Piece) -> Doc:
        self.f(tpl, **slots)
        self._one("\n")
        return self

    def text(self) -> str:
        return "".join(self.buf)


# ====================================================================== check digits (own implementations)
def luhn_digit(payload: str) -> int:
    """Luhn check digit to append to payload (doubling every second digit from the right, starting at the last)."""
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10


def luhn_valid(number: str) -> bool:
    return luhn_digit(number[:-1]) == int(number[-1])


_VD = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
]
_VP = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
]
_VINV = [0, 4, 3, 2, 1, 5, 6, 7, 8, 9]


def verhoeff_digit(payload: str) -> int:
    c = 0
    for i, ch in enumerate(reversed(payload)):
        c = _VD[c][_VP[(i + 1) % 8][int(ch)]]
    return _VINV[c]


def verhoeff_valid(number: str) -> bool:
    c = 0
    for i, ch in enumerate(reversed(number)):
        c = _VD[c][_VP[i % 8][int(ch)]]
    return c == 0


def matricule_valid(m: str) -> bool:
    """13 digits: YYYYMMDD + 3 digits + Luhn digit of the first 11 + Verhoeff digit of the first 11."""
    m = re.sub(r"\D", "", m)
    return len(m) == 13 and luhn_digit(m[:11]) == int(m[11]) and verhoeff_digit(m[:11]) == int(m[12])


def _iban_numeric(s: str) -> int:
    return int("".join(str(int(ch, 36)) for ch in s))


def iban_make(cc: str, bban: str) -> str:
    check = 98 - _iban_numeric(bban + cc + "00") % 97
    return f"{cc}{check:02d}{bban}"


def iban_valid(iban: str) -> bool:
    s = iban.replace(" ", "").upper()
    return len(s) > 4 and _iban_numeric(s[4:] + s[:4]) % 97 == 1


# ====================================================================== small text helpers
_DE_TRANSLIT = {"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "ß": "ss"}


def strip_accents(s: str) -> str:
    s = s.replace("ß", "ss").replace("đ", "d").replace("Đ", "D")
    nfkd = unicodedata.normalize("NFKD", s)
    return unicodedata.normalize("NFC", "".join(c for c in nfkd if not unicodedata.combining(c)))


def translit_de(s: str) -> str:
    return "".join(_DE_TRANSLIT.get(c, c) for c in s)


def initial(first: str) -> str:
    return "-".join(part[0] + "." for part in first.split("-"))


def ascii_slug(s: str) -> str:
    s = strip_accents(translit_de(s)).lower()
    return re.sub(r"[^a-z]", "", s)


_UNITS = ["zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf", "dix", "onze", "douze",
          "treize", "quatorze", "quinze", "seize"]
_TENS = {2: "vingt", 3: "trente", 4: "quarante", 5: "cinquante", 6: "soixante"}


def fr_words(n: int) -> str:
    """French number words (traditional hyphenation), 0..2099."""
    if n < 17:
        return _UNITS[n]
    if n < 20:
        return "dix-" + _UNITS[n - 10]
    if n < 70:
        t, u = divmod(n, 10)
        if u == 0:
            return _TENS[t]
        if u == 1:
            return _TENS[t] + " et un"
        return _TENS[t] + "-" + _UNITS[u]
    if n < 80:
        return "soixante et onze" if n == 71 else "soixante-" + fr_words(n - 60)
    if n < 100:
        if n == 80:
            return "quatre-vingts"
        return "quatre-vingt-" + fr_words(n - 80)
    if n < 1000:
        h, r = divmod(n, 100)
        head = "cent" if h == 1 else _UNITS[h] + (" cents" if r == 0 else " cent")
        return head if r == 0 else head + " " + fr_words(r)
    th, r = divmod(n, 1000)
    head = "mille" if th == 1 else fr_words(th) + " mille"
    return head if r == 0 else head + " " + fr_words(r)


# ====================================================================== identifiers of a patient
@dataclass
class Phone:
    cc: str  # "352", "33", "32", "49"
    parts: tuple[str, ...]  # LU: (digits,), FR: (9 digits,), BE: (zone, subscriber), DE: (area, subscriber)
    record: str = ""


@dataclass
class Address:
    country: str  # LU FR BE DE
    number: str
    street: str
    postcode: str
    town: str
    street_first: bool
    record: str = ""


@dataclass
class Person:
    first: str
    last: str
    sex: str
    group: str
    maiden: str | None = None
    first2: str | None = None


@dataclass
class Patient(Person):
    dob: dt.date = dt.date(1950, 1, 1)
    matricule: str = ""
    phones: list[Phone] = field(default_factory=list)
    email: str = ""
    address: Address | None = None
    ipp_style: str = "zero9"
    ipp: str = ""
    iban: str = ""
    iban_grouped: bool = False
    last_parts: tuple[str, ...] = ()  # the two surnames of a Portuguese double surname


def phone_digits_le(ph: Phone) -> str:
    return "".join(ph.parts)


def _group(s: str, sizes: list[int], sep: str) -> str:
    out, i = [], 0
    for k in sizes:
        out.append(s[i:i + k])
        i += k
    if i < len(s):
        out.append(s[i:])
    return sep.join(x for x in out if x)


def render_phone(ph: Phone, rng: random.Random) -> str:
    """One of the ways people write this number."""
    ch = rng.choice
    if ph.cc == "352":
        d = ph.parts[0]
        if len(d) == 6:
            body = ch([_group(d, [2, 2, 2], " "), _group(d, [3, 3], " "), d, _group(d, [2, 2, 2], "."),
                       _group(d, [2, 2, 2], "-"), _group(d, [2, 4], " ")])
        elif len(d) == 8:
            body = ch([_group(d, [2, 2, 2, 2], " "), _group(d, [4, 4], " "), d, _group(d, [2, 2, 2, 2], "."),
                       _group(d, [4, 4], "-"), _group(d, [2, 2, 4], " "), _group(d, [4, 2, 2], " ")])
        else:
            body = ch([_group(d, [3, 3, 3], " "), d, _group(d, [3, 2, 2, 2], " "), _group(d, [3, 3, 3], "."),
                       _group(d, [3, 3, 3], "-"), d[:3] + "/" + _group(d[3:], [3, 3], " ")])
        prefix = rng.choices(["", "+352 ", "00352 ", "(+352) ", "+352-", "+352", "00 352 "],
                             weights=[45, 25, 10, 6, 4, 5, 5])[0]
        return prefix + body
    if ph.cc == "33":
        d = ph.parts[0]
        nat = "0" + d
        style = rng.randrange(8)
        if style == 0:
            return _group(nat, [2] * 5, " ")
        if style == 1:
            return _group(nat, [2] * 5, ".")
        if style == 2:
            return nat
        if style == 3:
            return _group(nat, [2] * 5, "-")
        if style == 4:
            return "+33 " + d[0] + " " + _group(d[1:], [2] * 4, " ")
        if style == 5:
            return "+33 (0)" + d[0] + " " + _group(d[1:], [2] * 4, " ")
        if style == 6:
            return "0033 " + d[0] + " " + _group(d[1:], [2] * 4, " ")
        return "+33" + d
    if ph.cc == "32":
        zone, sub = ph.parts
        mobile = zone.startswith("4")
        style = rng.randrange(6)
        subg = _group(sub, [2, 2, 2] if len(sub) == 6 else [3, 2, 2], " ")
        if style == 0:
            return f"0{zone} {subg}"
        if style == 1:
            return f"0{zone}/{_group(sub, [2, 2, 2] if len(sub) == 6 else [3, 2, 2], '.')}"
        if style == 2:
            return f"+32 {zone} {subg}"
        if style == 3:
            return f"0032 {zone} {subg}" if not mobile else f"0032 {zone} {_group(sub, [3, 3], ' ')}"
        if style == 4:
            return f"0{zone}{sub}"
        return f"+32 (0){zone} {subg}"
    # Germany
    area, sub = ph.parts
    style = rng.randrange(7)
    if style == 0:
        return f"0{area} {sub}"
    if style == 1:
        return f"0{area}/{sub}"
    if style == 2:
        return f"0{area}-{sub}"
    if style == 3:
        return f"+49 {area} {sub}"
    if style == 4:
        return f"0049 {area} {sub}"
    if style == 5:
        return f"+49 (0){area} {sub}"
    return f"(0{area}) {sub}"


def record_phone(ph: Phone, rng: random.Random) -> str:
    """How the hospital's records hold the number (a few house styles)."""
    nat = phone_digits_le(ph)
    trunk = "" if ph.cc == "352" else "0"
    return rng.choice([f"+{ph.cc}{nat}", f"+{ph.cc} {nat}", f"00{ph.cc}{nat}", f"{trunk}{nat}"])


# ====================================================================== the per-note context
class Ctx:
    def __init__(self, rng: random.Random, fakers: dict[str, Faker], profile: str) -> None:
        self.rng = rng
        self.fk = fakers
        self.used_tokens: set[str] = set()
        self.eponym_tokens: set[str] = set()
        for _, toks in P.EPONYMS:
            self.eponym_tokens |= self._tokens(*toks)
        self.eponym_tokens |= self._tokens(*P.RESERVED_NAME_WORDS)
        self.index_date = dt.date(2017, 1, 1) + dt.timedelta(days=rng.randrange(0, 8 * 365))
        self.date_style = self._pick_main_date_style()
        self.hospital = rng.choice(P.HOSPITALS)
        self.case = self._pick_case(profile)
        self.patient = self._make_patient(profile)
        self.stay_no = self._stay_number()
        self.people: list[Person] = []

    # ------------------------------------------------------------------ random helpers
    def ch(self, seq: Sequence[T]) -> T:
        return self.rng.choice(seq)

    def p(self, prob: float) -> bool:
        return self.rng.random() < prob

    def sample(self, seq: Sequence[T], k: int) -> list[T]:
        return self.rng.sample(seq, min(k, len(seq)))

    # ------------------------------------------------------------------ names
    def _tokens(self, *names: str | None) -> set[str]:
        out: set[str] = set()
        for name in names:
            if not name:
                continue
            for t in re.split(r"[\s\-']+", name):
                if len(t) > 2:
                    out.add(strip_accents(translit_de(t)).lower())
                    out.add(strip_accents(t).lower())
        return out

    def _free(self, *names: str | None) -> bool:
        toks = self._tokens(*names)
        return not (toks & self.used_tokens) and not (toks & self.eponym_tokens)

    def _first_name(self, sex: str, group: str) -> str:
        lists = P.FIRST_M if sex == "M" else P.FIRST_F
        loc = {"lu": "fr", "cv": "pt", "balkan": None}.get(group, group)
        if loc in P.FAKER_LOCALES and self.p(0.35):
            fk = self.fk[P.FAKER_LOCALES[loc] if loc != "be" else self.ch(["fr_BE", "nl_BE"])]
            return fk.first_name_male() if sex == "M" else fk.first_name_female()
        return self.ch(lists[group])

    def _last_name(self, group: str) -> str:
        if self.p(0.3):
            if group == "lu":
                return self.fk[P.FAKER_LU_SURNAMES].last_name()
            loc = {"cv": "pt", "balkan": None}.get(group, group)
            if loc in P.FAKER_LOCALES:
                return self.fk[P.FAKER_LOCALES[loc] if loc != "be" else self.ch(["fr_BE", "nl_BE"])].last_name()
        return self.ch(P.SURNAMES[group])

    def _group(self) -> str:
        groups = [g for g, _ in P.GROUP_WEIGHTS]
        return self.rng.choices(groups, weights=[w for _, w in P.GROUP_WEIGHTS])[0]

    def new_person(self, sex: str | None = None, group: str | None = None) -> Person:
        for _ in range(200):
            s = sex or self.ch("MF")
            g = group or self._group()
            first = self._first_name(s, g)
            last = self._last_name(g)
            if self.p(0.06):
                other = self._last_name(self._group())
                if other != last:
                    last = f"{last}-{other}"
            if self._free(first, last) and " " not in first:
                self.used_tokens |= self._tokens(first, last)
                person = Person(first, last, s, g)
                self.people.append(person)
                return person
        raise RuntimeError("could not draw a fresh name")

    # ------------------------------------------------------------------ the patient
    def _make_patient(self, profile: str) -> Patient:
        rng = self.rng
        for _ in range(200):
            sex = self.ch("MF")
            group = self._group()
            first = self._first_name(sex, group)
            last = self._last_name(group)
            first2 = None
            parts: tuple[str, ...] = ()
            if group in ("pt", "cv") and self.p(0.45):
                second = self.ch(P.SURNAMES["pt"])
                if second != last:
                    parts = (last, second)
                    last = f"{last} {second}"
            elif self.p(0.06):
                other = self._last_name(self._group())
                if other != last:
                    last = f"{last}-{other}"
            if self.p(0.12) and "-" not in first:
                extra = self._first_name(sex, group)
                if extra != first and "-" not in extra and " " not in extra:
                    if self.p(0.5):
                        first = f"{first}-{extra}"
                    else:
                        first2 = extra
            if " " in first:
                continue
            if self._free(first, last, first2):
                break
        self.used_tokens |= self._tokens(first, last, first2)
        idx = self.index_date
        if profile == "infant":
            dob = idx - dt.timedelta(days=rng.randrange(20, 700))
        elif profile == "child":
            dob = idx - dt.timedelta(days=rng.randrange(2 * 365 + 30, 17 * 365))
        elif profile == "old":
            dob = idx - dt.timedelta(days=rng.randrange(90 * 365 + 30, 104 * 365))
        else:
            years = rng.choice([rng.randrange(18, 90), rng.randrange(45, 95), rng.randrange(60, 92)])
            dob = idx - dt.timedelta(days=years * 365 + rng.randrange(0, 365))
        maiden = None
        if sex == "F" and profile in ("adult", "old") and self.p(0.45):
            for _ in range(50):
                m = self._last_name(self._group())
                if self._free(m):
                    maiden = m
                    self.used_tokens |= self._tokens(m)
                    break
        pat = Patient(first, last, sex, group, maiden=maiden, first2=first2, dob=dob, last_parts=parts)
        serial = f"{rng.randrange(0, 1000):03d}"
        payload = dob.strftime("%Y%m%d") + serial
        pat.matricule = payload + str(luhn_digit(payload)) + str(verhoeff_digit(payload))
        pat.address = self._make_address(self.rng.choices(["LU", "FR", "BE", "DE"], weights=[80, 9, 6, 5])[0])
        pat.phones = self._make_phones(pat.address.country)
        pat.email = self._make_email(pat)
        pat.ipp_style = self.ch(["zero9", "zero9", "p6", "num7", "h7"])
        num = rng.randrange(1000, 999999)
        pat.ipp = {"zero9": f"{num:09d}", "p6": f"P-{num:06d}", "num7": f"{rng.randrange(1000000, 9999999)}",
                   "h7": f"H{rng.randrange(100000, 9999999):07d}"}[pat.ipp_style]
        pat.iban = self._make_iban(pat.address.country)
        pat.iban_grouped = self.p(0.5)
        return pat

    def _make_address(self, country: str) -> Address:
        rng = self.rng
        num = str(rng.choice([rng.randrange(1, 40), rng.randrange(1, 200), rng.randrange(1, 12)]))
        if self.p(0.08):
            num += self.ch(["A", "B", "a", "bis"])
        if country == "LU":
            lo, hi, town = self.ch(P.LU_TOWNS)
            postcode = str(rng.randrange(lo, hi + 1))
            if self.p(0.3):
                street = self.ch(P.LU_STREETS_LB)
                street_first = self.p(0.8)
            elif self.p(0.04):
                street, street_first = "Maison", True
            else:
                street = self.ch(P.LU_STREETS_FR)
                street_first = self.p(0.2)
        elif country == "FR":
            postcode, town = self.ch(P.FR_TOWNS)
            street = self.ch(P.FR_STREETS) if self.p(0.6) else self.fk["fr_FR"].street_name()
            street_first = False
        elif country == "BE":
            postcode, town = self.ch(P.BE_TOWNS)
            street = self.ch(P.BE_STREETS)
            street_first = self.p(0.7)
        else:
            postcode, town = self.ch(P.DE_TOWNS)
            street = self.ch(P.DE_STREETS) if self.p(0.6) else self.fk["de_DE"].street_name()
            street_first = True
        a = Address(country, num, street, postcode, town, street_first)
        if street_first:
            a.record = f"{street[0].upper()}{street[1:]} {num}"
        else:
            a.record = f"{num}{self.ch([', ', ' '])}{street}"
        return a

    def make_other_address(self) -> Address:
        return self._make_address(self.rng.choices(["LU", "FR", "BE", "DE"], weights=[85, 7, 4, 4])[0])

    def _make_phones(self, country: str) -> list[Phone]:
        out = [self.make_phone(country, mobile=False)] if self.p(0.6) else []
        mob_country = country if self.p(0.5) else "LU"
        out.append(self.make_phone(mob_country, mobile=True))
        if self.p(0.15):
            out.append(self.make_phone(self.ch(["LU", "FR", "BE", "DE"]), mobile=True))
        for ph in out:
            ph.record = record_phone(ph, self.rng)
        return out

    def make_phone(self, country: str, mobile: bool) -> Phone:
        rng = self.rng

        def digits(k: int) -> str:
            return "".join(str(rng.randrange(10)) for _ in range(k))

        if country == "LU":
            if mobile:
                return Phone("352", (self.ch(["621", "628", "661", "671", "691", "698"]) + digits(6),))
            if self.p(0.4):
                return Phone("352", (str(rng.randrange(3, 10)) + digits(5),))
            return Phone("352", (self.ch(["2", "2", "2", "4", "5", "8"]) + str(rng.randrange(10)) + digits(6),))
        if country == "FR":
            return Phone("33", ((self.ch(["6", "7"]) if mobile else self.ch(["3", "3", "1", "4"])) + digits(8),))
        if country == "BE":
            if mobile:
                return Phone("32", (self.ch(["470", "475", "478", "486", "495", "498"]), digits(6)))
            return Phone("32", (self.ch(["63", "61", "81", "4"]), digits(6) if self.p(0.8) else digits(7)))
        if mobile:
            return Phone("49", (self.ch(["151", "160", "170", "171", "176"]), digits(rng.choice([7, 8]))))
        return Phone("49", (self.ch(["651", "6581", "6501", "6561", "681"]), digits(rng.choice([5, 6, 7]))))

    def _make_email(self, pat: Patient) -> str:
        f = ascii_slug(pat.first)
        last = pat.last_parts[-1] if pat.last_parts and self.p(0.5) else pat.last
        la = ascii_slug(last) if self.p(0.6) else re.sub(r"[^a-z]", "", strip_accents(last).lower())
        y = pat.dob.strftime("%y")
        local = self.ch([f"{f}.{la}", f"{f[0]}{la}", f"{la}.{f}", f"{f}{la}{y}", f"{f}_{la}", f"{f}.{la}{y}"])
        return f"{local}@{self.ch(P.EMAIL_DOMAINS)}"

    def _make_iban(self, country: str) -> str:
        rng = self.rng

        def digits(k: int) -> str:
            return "".join(str(rng.randrange(10)) for _ in range(k))

        cc = country if self.p(0.4) else "LU"
        if cc == "LU":
            bank = self.ch(["001", "002", "003", "014", "019", "025", "030", "008"])
            acct = digits(13) if self.p(0.7) else digits(4) + self.ch(["A", "B", "C", "X"]) + digits(8)
            return iban_make("LU", bank + acct)
        if cc == "FR":
            bank, guichet, acct = self.ch(["30003", "30004", "10278", "20041", "30066"]), digits(5), digits(11)
            key = 97 - (89 * int(bank) + 15 * int(guichet) + 3 * int(acct)) % 97
            return iban_make("FR", f"{bank}{guichet}{acct}{key:02d}")
        if cc == "BE":
            base = self.ch(["000", "001", "063", "068", "310", "363"]) + digits(7)
            chk = int(base) % 97 or 97
            return iban_make("BE", f"{base}{chk:02d}")
        return iban_make("DE", self.ch(["58550130", "58560103", "58570048", "59010066"]) + digits(10))

    def _stay_number(self) -> str:
        y = self.index_date.year
        s = self.rng.randrange(1, 99999)
        return self.ch([f"{y}-{s:06d}", f"{y % 100:02d}{s:06d}", f"S{y % 100:02d}-{s:05d}", f"EP-{y % 100:02d}{s:05d}",
                        f"U{y % 100:02d}/{s:06d}", f"{y}{s:06d}"])

    def _pick_case(self, profile: str) -> dict[str, Any]:
        if profile in ("infant", "child"):
            return next(c for c in CASES if c["key"] == "bronchiolite")
        pool = [c for c in CASES if c.get("ped") != "yes"]
        return self.ch(pool)

    # ------------------------------------------------------------------ dates
    def _pick_main_date_style(self) -> str:
        return self.rng.choices(
            ["dmy_slash", "dmy_dot", "dmy_slash2", "dmy_dash", "iso", "long", "dmy_dot2", "dmy_nopad"],
            weights=[36, 18, 8, 6, 6, 16, 5, 5])[0]

    def date_text(self, d: dt.date, style: str | None = None) -> str:
        if style is None:
            style = self.date_style if self.p(0.75) else self.ch(
                ["dmy_slash", "dmy_dot", "dmy_slash2", "dmy_dash", "iso", "long", "long_abbr", "dmy_nopad", "wd_long"])
        day = "1er" if d.day == 1 else str(d.day)
        m = P.MONTHS_FR[d.month - 1]
        if style == "dmy_slash":
            return d.strftime("%d/%m/%Y")
        if style == "dmy_dot":
            return d.strftime("%d.%m.%Y")
        if style == "dmy_slash2":
            return d.strftime("%d/%m/%y")
        if style == "dmy_dot2":
            return d.strftime("%d.%m.%y")
        if style == "dmy_dash":
            return d.strftime("%d-%m-%Y")
        if style == "iso":
            return d.isoformat()
        if style == "dmy_nopad":
            return f"{d.day}/{d.month}/{d.year}"
        if style == "long":
            return f"{day} {m} {d.year}"
        if style == "long_upper":
            return f"{day} {m} {d.year}".upper()
        if style == "long_abbr":
            return f"{d.day} {P.MONTHS_FR_ABBR[d.month - 1]} {d.year}"
        if style == "long_noyear":
            return f"{day} {m}"
        if style == "wd_long":
            return f"{P.WEEKDAYS_FR[d.weekday()]} {day} {m} {d.year}"
        if style == "wd_noyear":
            return f"{P.WEEKDAYS_FR[d.weekday()]} {day} {m}"
        if style == "month_year":
            return f"{m} {d.year}"
        if style == "mm_yyyy":
            return d.strftime("%m/%Y")
        if style == "year":
            return str(d.year)
        if style == "dm_slash":
            return d.strftime("%d/%m")
        if style == "de_long":
            return f"{d.day}. {P.MONTHS_DE[d.month - 1]} {d.year}"
        if style == "de_dot":
            return d.strftime("%d.%m.%Y")
        if style == "lb_long":
            return f"{d.day}. {P.MONTHS_LB[d.month - 1]}"
        if style == "words":
            dw = "premier" if d.day == 1 else fr_words(d.day)
            return f"{dw} {m} {fr_words(d.year)}"
        raise ValueError(style)

    def D(self, d: dt.date, style: str | None = None) -> tuple[str, str]:
        return (self.date_text(d, style), DATE)

    def D_short(self, d: dt.date) -> tuple[str, str]:
        """A date inside a note where the year goes without saying."""
        return self.D(d, self.ch(["long_noyear", "dm_slash", "wd_noyear", "long_noyear", None, None]))

    def D_past(self, d: dt.date) -> tuple[str, str]:
        return self.D(d, self.ch(["year", "year", "year", "month_year", "mm_yyyy", None]))

    def D_dob(self) -> tuple[str, str]:
        style = self.rng.choices(
            ["dmy_slash", "dmy_dot", "long", "iso", "dmy_dash", "dmy_slash2", "words", "long_abbr", "long_upper"],
            weights=[34, 22, 16, 6, 5, 5, 4, 5, 3])[0]
        return self.D(self.patient.dob, style)

    def days(self, a: int, b: int) -> dt.date:
        return self.index_date + dt.timedelta(days=self.rng.randrange(a, b + 1))

    def past(self, min_years: int = 1) -> dt.date:
        """A date in the patient's adult past, before the index date."""
        start = max(self.patient.dob + dt.timedelta(days=18 * 365), dt.date(1975, 1, 1))
        end = self.index_date - dt.timedelta(days=min_years * 365)
        if end <= start:
            start = self.patient.dob + dt.timedelta(days=30)
            end = self.index_date - dt.timedelta(days=20)
        if end <= start:
            return start
        return start + dt.timedelta(days=self.rng.randrange(0, (end - start).days + 1))

    def time(self, h: int | None = None) -> str:
        h = self.rng.randrange(0, 24) if h is None else h
        m = self.ch([0, 5, 10, 15, 20, 30, 35, 40, 45, 50, 55])
        return self.ch([f"{h:02d}h{m:02d}", f"{h}h{m:02d}", f"{h:02d}:{m:02d}", f"{h} h {m:02d}"])

    def time_pair(self) -> str:
        h = self.rng.randrange(7, 19)
        return f"{self.time(h)} - {self.time(h + self.rng.randrange(1, 4))}"

    # ------------------------------------------------------------------ ages
    def age_years(self, at: dt.date | None = None) -> int:
        at = at or self.index_date
        dob = self.patient.dob
        return at.year - dob.year - ((at.month, at.day) < (dob.month, dob.day))

    def age_months(self) -> int:
        at, dob = self.index_date, self.patient.dob
        return (at.year - dob.year) * 12 + at.month - dob.month - (at.day < dob.day)

    def AGE(self, lang: str = "fr") -> tuple[str, str]:
        y = self.age_years()
        if y < 2:
            mo = self.age_months()
            if mo < 2:
                wk = (self.index_date - self.patient.dob).days // 7
                return (f"{wk} semaines", AGE) if lang == "fr" else (f"{wk} Wochen", AGE)
            return (f"{mo} mois", AGE) if lang == "fr" else (f"{mo} Monate", AGE)
        if lang == "de":
            return (f"{y} Jahre", AGE)
        if lang == "lb":
            return (f"{y} Joer", AGE)
        return (self.rng.choices([f"{y} ans", f"{y}ans", f"{y} a"], weights=[90, 5, 5])[0], AGE)

    # ------------------------------------------------------------------ patient mentions
    def vary(self, s: str, upper: float = 0.25) -> str:
        """The patient's name part as it may be written: transliterated, without accents, in capitals."""
        alts = []
        if translit_de(s) != s:
            alts.append(translit_de(s))
        if strip_accents(s) != s:
            alts.append(strip_accents(s))
        if alts and self.p(0.45):
            s = self.ch(alts)
        if self.p(upper):
            s = s.upper()
        return s

    def last_variant(self) -> str:
        last = self.patient.last
        if self.patient.last_parts and self.p(0.35):
            # Portuguese double surname: one of the two parts (usually the last one)
            a, b = self.patient.last_parts
            last = b if self.p(0.65) else a
        return last

    def title(self, person: Person, lang: str = "fr") -> str:
        if lang == "de":
            return "Frau " if person.sex == "F" else "Herrn "
        if lang == "lb":
            return "d'Madame " if person.sex == "F" else "den Här "
        if person.sex == "F":
            return self.rng.choices(P.PATIENT_TITLES_F, weights=[70, 20, 5, 5])[0]
        return self.rng.choices(P.PATIENT_TITLES_M, weights=[70, 15, 8, 2, 5])[0]

    def pname(self, style: str | None = None) -> str:
        pat = self.patient
        first = self.vary(pat.first, upper=0.1)
        last = self.vary(self.last_variant(), upper=0.0)
        style = style or self.rng.choices(
            ["LF", "FL", "L", "LU", "FLU", "F", "iL", "ALLU", "LFF2"], weights=[26, 20, 16, 14, 10, 4, 4, 3, 3])[0]
        if style == "LF":
            return f"{last.upper()} {first}"
        if style == "FL":
            return f"{first} {last}"
        if style == "L":
            return last
        if style == "LU":
            return last.upper()
        if style == "FLU":
            return f"{first} {last.upper()}"
        if style == "F":
            return first
        if style == "iL":
            return f"{initial(pat.first)} {last}"
        if style == "ALLU":
            return f"{first} {last}".upper()
        if style == "LFF2":
            return f"{last.upper()} {first} {pat.first2}" if pat.first2 else f"{last.upper()} {first}"
        raise ValueError(style)

    def PAT(self, with_title: float = 0.7, maiden: float = 0.5, style: str | None = None,
            lang: str = "fr") -> list[Piece]:
        """A mention of the patient: optional title, the name, and perhaps the maiden name."""
        pat = self.patient
        out: list[Piece] = []
        if pat.maiden and lang == "fr" and style is None and self.p(0.1):
            # "Mme SCHMIT épouse WEBER": birth name, then the married name
            out.append(self.title(pat, lang))
            out += [(f"{self.vary(pat.maiden, upper=0.7)}", PATIENT_NAME), self.ch([" épouse ", " ép. "]),
                    (self.vary(self.last_variant(), upper=0.7), PATIENT_NAME)]
            if self.p(0.5):
                out += [" ", (self.vary(pat.first, upper=0.1), PATIENT_NAME)]
            return out
        st = style or self.rng.choices(["LF", "FL", "L", "LU", "FLU", "iL", "ALLU", "LFF2"],
                                       weights=[26, 20, 16, 14, 10, 4, 3, 3])[0]
        if self.p(with_title) and st != "F":
            out.append(self.title(pat, lang))
        out.append((self.pname(st), PATIENT_NAME))
        if pat.maiden and self.p(maiden):
            m = self.vary(pat.maiden, upper=0.5 if st in ("LF", "LU", "FLU", "ALLU") else 0.2)
            if lang == "de":
                out += [self.ch([", geb. ", " geb. "]), (m, PATIENT_NAME)]
            else:
                out += [self.ch([" née ", " née ", ", née ", " (née ", " n. "]), (m, PATIENT_NAME)]
                if out[-2] == " (née ":
                    out.append(")")
        return out

    def PATSHORT(self, lang: str = "fr") -> list[Piece]:
        """Title + surname, the usual way to refer to the patient again in running text."""
        if lang == "fr" and self.p(0.15):
            return [("le patient" if self.patient.sex == "M" else "la patiente")]
        return [self.title(self.patient, lang), (self.vary(self.last_variant(), upper=0.4), PATIENT_NAME)]

    def DOB(self) -> list[Piece]:
        return [self.D_dob()]

    def born(self) -> str:
        return "née" if self.patient.sex == "F" else "né"

    def il(self) -> str:
        return "elle" if self.patient.sex == "F" else "il"

    def Il(self) -> str:
        return self.il().capitalize()

    def e(self) -> str:
        """Feminine ending."""
        return "e" if self.patient.sex == "F" else ""

    def patient_word(self) -> str:
        return "patiente" if self.patient.sex == "F" else "patient"

    def MATR(self) -> tuple[str, str]:
        m = self.patient.matricule
        style = self.rng.choices(["plain", "cns", "dob", "grp", "space3", "dots"], weights=[30, 35, 12, 12, 6, 5])[0]
        text = {
            "plain": m,
            "cns": f"{m[:4]} {m[4:8]} {m[8:11]} {m[11:]}",
            "dob": f"{m[:8]} {m[8:]}",
            "grp": f"{m[:4]} {m[4:6]} {m[6:8]} {m[8:11]} {m[11:]}",
            "space3": f"{m[:4]} {m[4:8]} {m[8:]}",
            "dots": f"{m[:4]}.{m[4:8]}.{m[8:11]}.{m[11:]}",
        }[style]
        return (text, MATRICULE)

    def IPP(self) -> tuple[str, str]:
        pat = self.patient
        rec = pat.ipp
        if pat.ipp_style == "zero9":
            text = self.ch([rec, rec, rec.lstrip("0"), f"{rec[:3]} {rec[3:6]} {rec[6:]}"])
        elif pat.ipp_style == "p6":
            text = self.ch([rec, rec, rec.replace("-", ""), rec.replace("-", " ")])
        elif pat.ipp_style == "h7":
            text = self.ch([rec, rec, f"{rec[0]} {rec[1:]}"])
        else:
            text = self.ch([rec, rec, f"{rec[:3]} {rec[3:]}"])
        return (text, LOCAL_ID)

    def STAY(self) -> tuple[str, str]:
        return (self.stay_no, LOCAL_ID)

    def ipp_label(self) -> str:
        return self.ch(["IPP", "IPP", "N° patient", "Dossier n°", "N° de dossier", "ID patient", "PID", "No dossier"])

    def stay_label(self) -> str:
        return self.ch(["N° de séjour", "NDA", "Épisode", "N° d'hospitalisation", "Séjour n°", "N° de passage"])

    def IBANT(self, iban: str | None = None, grouped: bool | None = None) -> tuple[str, str]:
        iban = iban or self.patient.iban
        grouped = self.p(0.6) if grouped is None else grouped
        return (" ".join(iban[i:i + 4] for i in range(0, len(iban), 4)) if grouped else iban, IBAN)

    def other_iban(self) -> str:
        return self._make_iban(self.ch(["LU", "FR", "BE", "DE"]))

    def PHONE(self, ph: Phone | None = None) -> tuple[str, str]:
        ph = ph or self.ch(self.patient.phones)
        return (render_phone(ph, self.rng), PHONE)

    def mobile(self) -> Phone:
        return self.patient.phones[-1]

    def ophone(self, mobile: bool | None = None, country: str | None = None) -> tuple[str, str]:
        country = country or self.rng.choices(["LU", "FR", "BE", "DE"], weights=[80, 8, 6, 6])[0]
        mob = self.p(0.6) if mobile is None else mobile
        return (render_phone(self.make_phone(country, mob), self.rng), PHONE)

    def hosp_phone(self) -> tuple[str, str]:
        return (render_phone(self.make_phone("LU", False), self.rng), PHONE)

    def EMAILT(self) -> tuple[str, str]:
        e = self.patient.email
        return (e.upper() if self.p(0.03) else e, EMAIL)

    def staff_email(self, person: Person, hospital: bool = True) -> tuple[str, str]:
        f, la = ascii_slug(person.first), ascii_slug(person.last)
        dom = self.hospital[2] if hospital and self.p(0.8) else self.ch(["pt.lu", "cabinet-medical.lu", "doctors.lu", "gmail.com"])
        return (self.ch([f"{f}.{la}", f"{f[0]}.{la}", f"{la}.{f}", f"{f[0]}{la}"]) + "@" + dom, EMAIL)

    def service_email(self) -> tuple[str, str]:
        svc = ascii_slug(self.case["service"].split()[0])
        return (self.ch([f"secretariat.{svc}", f"{svc}", f"sec-{svc}", "admissions", "urgences"]) + "@" + self.hospital[2],
                EMAIL)

    # ------------------------------------------------------------------ addresses
    def addr_pieces(self, a: Address | None = None, city: float = 0.6, multiline: float = 0.0,
                    vary: bool = True) -> list[Piece]:
        a = a or self.patient.address
        assert a is not None
        street = a.street
        num = a.number
        if vary and self.p(0.2):
            for long_, short in (("rue ", "r. "), ("avenue ", "av. "), ("boulevard ", "bd "), ("route ", "rte "),
                                 ("straße", "str."), ("Straße", "Str."), ("strooss", "str.")):
                if long_ in street:
                    street = street.replace(long_, short, 1)
                    break
        if street == "Maison":
            line = f"Maison {num}"
        else:
            sf = a.street_first if not vary or self.p(0.85) else not a.street_first
            if sf:
                line = f"{street[0].upper()}{street[1:]} {num}" if self.p(0.7) else f"{street} {num}"
                if self.p(0.15):
                    line = f"{street}, {num}"
            else:
                line = f"{num}{self.ch([', ', ' ', ', '])}{street}"
        if vary and self.p(0.06):
            line = line.upper()
        out: list[Piece] = [(line, ADDRESS)]
        if self.p(city):
            pc = a.postcode
            if a.country == "LU":
                pc = self.rng.choices([f"L-{pc}", f"L {pc}", pc, f"L-{pc}"], weights=[55, 10, 25, 10])[0]
            else:
                letter = {"FR": "F", "BE": "B", "DE": "D"}[a.country]
                pc = f"{letter}-{pc}" if self.p(0.5) else pc
            town = a.town.upper() if self.p(0.15) else a.town
            citytxt = f"{pc} {town}"
            if self.p(multiline):
                out += ["\n", (citytxt, ADDRESS)]
            else:
                sep = self.ch([", ", " ", ", ", " - ", " – "])
                out = [(line + sep + citytxt, ADDRESS)]
        return out

    def CITY(self, a: Address | None = None) -> tuple[str, str]:
        a = a or self.patient.address
        assert a is not None
        pc = a.postcode
        if a.country == "LU":
            pc = self.ch([f"L-{pc}", pc])
        else:
            pc = self.ch([f"{ {'FR': 'F', 'BE': 'B', 'DE': 'D'}[a.country]}-{pc}", pc])
        return (f"{pc} {a.town}", ADDRESS)

    # ------------------------------------------------------------------ other people
    def ONAME(self, person: Person, style: str | None = None) -> tuple[str, str]:
        style = style or self.rng.choices(["FL", "L", "iL", "LU", "FLU", "LF"], weights=[30, 28, 14, 10, 12, 6])[0]
        f, la = person.first, person.last
        if self.p(0.05):
            la = strip_accents(la)
        text = {"FL": f"{f} {la}", "L": la, "iL": f"{initial(f)} {la}", "LU": la.upper(), "FLU": f"{f} {la.upper()}",
                "LF": f"{la.upper()} {f}", "F": f}[style]
        return (text, OTHER_NAME)

    def DR(self, person: Person | None = None, title: float = 0.9, style: str | None = None) -> list[Piece]:
        person = person or self.new_person()
        out: list[Piece] = []
        if self.p(title):
            out.append(self.rng.choices(P.DOC_TITLES, weights=[40, 10, 8, 10, 10, 5, 4, 3])[0])
        out.append(self.ONAME(person, style))
        return out

    def nurse(self) -> list[Piece]:
        person = self.new_person(sex=self.rng.choices("FM", weights=[75, 25])[0])
        titles = P.NURSE_TITLES_F if person.sex == "F" else P.NURSE_TITLES_M
        t = self.ch(titles)
        return [t, self.ONAME(person, "F" if not t or self.p(0.4) else self.ch(["FL", "L", "iL"]))]

    def relative(self) -> tuple[str, Person]:
        """A relative with a surname different from the patient's."""
        rel = self.ch(["fils", "fille", "épouse", "époux", "sœur", "frère", "nièce", "neveu", "compagne", "compagnon",
                       "belle-fille", "voisine", "petite-fille"])
        fem = rel in ("fille", "épouse", "sœur", "nièce", "compagne", "belle-fille", "voisine", "petite-fille")
        return rel, self.new_person(sex="F" if fem else "M")

    @staticmethod
    def art(word: str, fem: bool) -> str:
        if word[0] in "aeéiou":
            return "l'"
        return "la " if fem else "le "

    def mtitle(self, person: Person) -> str:
        return self.ch(["Mme ", "Madame "]) if person.sex == "F" else self.ch(["M. ", "Monsieur "])


# ====================================================================== common blocks
def bullet(ctx: Ctx) -> str:
    return ctx.ch(["- ", "- ", "• ", "* ", "– ", "> "])


def heading(ctx: Ctx, doc: Doc, title: str, style: str) -> None:
    if style == "caps":
        doc.line(title.upper())
    elif style == "colon":
        doc.line(f"{title} :")
    elif style == "under":
        doc.line(title.upper())
        doc.line("-" * len(title))
    elif style == "num":
        doc.line(f"{ctx.ch(['#', '§'])} {title}")
    else:
        doc.line(f"{title.upper()} :")


def lc(s: str) -> str:
    """Lower-case the first letter unless the first word is an acronym (NSTEMI, DT2, AVC)."""
    word = s.split(" ")[0]
    if len(word) > 1 and (word[1].isupper() or word[1].isdigit()):
        return s
    return s[0].lower() + s[1:]


def poss(noun: str, fem: bool) -> str:
    """French possessive before a noun: sa fille, son fils, son épouse."""
    return "sa " if fem and strip_accents(noun[0]).lower() not in "aeiouh" else "son "


def de(word: str) -> str:
    """French 'de' before a noun: d'endocrinologie, de cardiologie."""
    return ("d'" if strip_accents(word[0]).lower() in "aeiouh" else "de ") + word


def clinic(ctx: Ctx, key: str, k: int = 1) -> str:
    return " ".join(ctx.sample(list(ctx.case[key]), k))


def maybe_eponym(ctx: Ctx, prob: float = 0.5) -> str:
    if not ctx.p(prob):
        return ""
    for _ in range(10):
        s = ctx.ch(P.EPONYM_FINDINGS)
        toks = {strip_accents(t).lower() for t in re.findall(r"[A-ZÉ][\w'-]+", s)}
        if not (toks & ctx.used_tokens):
            return s
    return ""


def homograph(ctx: Ctx) -> str:
    """A sentence with an ordinary word that is also the patient's surname (likely), or another such word."""
    toks = {strip_accents(t).lower() for t in re.split(r"[\s\-']+", ctx.patient.last)}
    for word, sentences in P.HOMOGRAPHS.items():
        if strip_accents(word) in toks and ctx.p(0.8):
            return ctx.ch(sentences)
    if ctx.p(0.06):
        return ctx.ch(ctx.ch(list(P.HOMOGRAPHS.values())))
    return ""


def trap_sentence(ctx: Ctx) -> str:
    """Text with numbers that look like identifiers but are not (see README: traps)."""
    rng = ctx.rng
    lot = f"{rng.randrange(1000, 9999)} {rng.randrange(1000, 9999)}"
    lot2 = f"{rng.choice(['FK', 'EW', 'AB', 'PT'])}{rng.randrange(1000, 9999)}"
    return ctx.ch([
        f"Vaccin antigrippal administré, lot {lot}.",
        f"Vaccination COVID-19 (Comirnaty), lot {lot2}.",
        f"TA {rng.randrange(10, 17)}/{rng.randrange(6, 10)} cmHg.",
        f"EVA {rng.randrange(0, 10)}/10.",
        f"Force segmentaire {rng.randrange(3, 6)}/5 aux quatre membres.",
        f"MMSE {rng.randrange(14, 30)}/30.",
        f"Glasgow {rng.randrange(13, 16)}/15.",
        f"Fil résorbable 3/0, lot {lot}.",
        f"Débit d'O2 à {rng.randrange(1, 6)} l/min, objectif SpO2 88-92 %.",
        f"Chambre {rng.randrange(101, 699)}, lit {rng.randrange(1, 3)}.",
        f"Code CIM-10 : {ctx.ch(['I50.1', 'J18.9', 'E11.9', 'S72.0', 'N10', 'I63.4'])}.",
        "Perfusion NaCl 0,9 % 1000 ml/24 h.",
        f"Posologie : 1-0-1 pendant {rng.randrange(5, 15)} jours.",
        f"Poids {rng.randrange(48, 110)} kg, taille 1,{rng.randrange(50, 95)} m.",
        f"Score CHA2DS2-VASc {rng.randrange(1, 7)}, HAS-BLED {rng.randrange(0, 4)}.",
        f"Réf. implant {rng.randrange(100, 999)}-{rng.randrange(1000, 9999)}, lot {lot}.",
        f"Selon les recommandations ESC {rng.randrange(2016, 2024)}.",
        f"Glycémie capillaire {rng.randrange(80, 300)} mg/dl à {ctx.time()}.",
        f"BIC : {ctx.ch(['BCEELULL', 'BGLLLULL', 'CCRALULL', 'BILLLULL'])}.",
    ])


def vitals(ctx: Ctx) -> str:
    rng = ctx.rng
    parts = [f"TA {rng.randrange(95, 185)}/{rng.randrange(50, 105)} mmHg", f"FC {rng.randrange(52, 130)}/min",
             f"SpO2 {rng.randrange(86, 100)} %{ctx.ch(['', ' AA', ' sous 2 l O2'])}",
             f"T° {rng.randrange(359, 401) / 10:.1f} °C".replace(".", ","), f"FR {rng.randrange(12, 30)}/min"]
    return ctx.ch([", ", " | ", " - ", " ; "]).join(ctx.sample(parts, rng.randrange(3, 6)))


def lab_value(ctx: Ctx, lab: tuple[str, str, float, float, int]) -> str:
    _, _, lo, hi, dec = lab
    v = ctx.rng.uniform(lo, hi)
    return (f"{v:.{dec}f}" if dec else str(round(v))).replace(".", ",")


def labs_block(ctx: Ctx, doc: Doc, k: int | None = None) -> None:
    labs = ctx.sample(P.LABS, k or ctx.rng.randrange(4, 9))
    style = ctx.ch(["table", "inline", "list", "dated"])
    if style == "table":
        doc.line("Paramètre | Valeur | Unité")
        for lab in labs:
            doc.line(f"{lab[0]} | {lab_value(ctx, lab)} | {lab[1]}")
    elif style == "dated":
        d1 = ctx.days(0, 1)
        d2 = d1 + dt.timedelta(days=ctx.rng.randrange(1, 5))
        st = ctx.ch(["dm_slash", None])
        doc.line("Paramètre | {A} | {B}", A=ctx.D(d1, st), B=ctx.D(d2, st))
        for lab in labs:
            doc.line(f"{lab[0]} | {lab_value(ctx, lab)} | {lab_value(ctx, lab)} {lab[1]}".rstrip())
    elif style == "list":
        for lab in labs:
            doc.line(f"{bullet(ctx)}{lab[0]} : {lab_value(ctx, lab)} {lab[1]}".rstrip())
    else:
        doc.line(", ".join(f"{lab[0]} {lab_value(ctx, lab)} {lab[1]}".rstrip() for lab in labs) + ".")


def atcd_block(ctx: Ctx, doc: Doc, k: int | None = None) -> None:
    items: list[Callable[[], list[Piece]]] = [
        lambda: ["HTA depuis ", ctx.D_past(ctx.past())],
        lambda: ["HTA depuis ", str(ctx.rng.randrange(3, 25)), " ans"],
        lambda: ["IDM inférieur en ", ctx.D(ctx.past(), "month_year"), ", stenté"],
        lambda: ["Cholécystectomie (", ctx.D_past(ctx.past()), ")"],
        lambda: ["PTH droite ", ctx.D(ctx.past(), "mm_yyyy")],
        lambda: ["DT2 diagnostiqué en ", ctx.D(ctx.past(), "year"), ", sous ADO"],
        lambda: ["DT2 sous insuline depuis ", str(ctx.rng.randrange(2, 15)), " ans"],
        lambda: ["FA paroxystique connue depuis ", ctx.D_past(ctx.past())],
        lambda: ["BPCO GOLD 2 (ex-tabagique, ", str(ctx.rng.randrange(15, 60)), " PA)"],
        lambda: ["Néo du sein gauche traité en ", ctx.D(ctx.past(), "year"), " (tumorectomie + RT)"],
        lambda: ["AVC ischémique le ", ctx.D(ctx.past())],
        lambda: ["Appendicectomie dans l'enfance"],
        lambda: ["Fracture du poignet droit (", ctx.D_past(ctx.past()), ")"],
        lambda: ["Syndrome dépressif"],
        lambda: ["SAOS appareillé (PPC)"],
        lambda: ["IRC stade 3b (DFG ", str(ctx.rng.randrange(30, 45)), " ml/min)"],
        lambda: ["Hypothyroïdie substituée"],
        lambda: ["Allergie : pénicilline (urticaire)"],
        lambda: ["Dyslipidémie"],
        lambda: ["Hernie discale L4-L5 opérée en ", ctx.D_past(ctx.past())],
        lambda: ["Hystérectomie ", ctx.D(ctx.past(), "year")] if ctx.patient.sex == "F"
        else ["Adénomectomie prostatique ", ctx.D(ctx.past(), "year")],
        lambda: ["Pontage aorto-coronarien x3 le ", ctx.D(ctx.past())],
        lambda: ["Embolie pulmonaire ", ctx.D(ctx.past(), "mm_yyyy"), ", anticoagulée 6 mois"],
        lambda: ["Glaucome"], lambda: ["Goutte"], lambda: ["Arthrose des genoux"],
        lambda: ["Maladie de Parkinson diagnostiquée en ", ctx.D(ctx.past(), "year")],
        lambda: ["Thyroïdite de Hashimoto"],
    ]
    chosen = ctx.sample(items, k or ctx.rng.randrange(2, 7))
    style = ctx.ch(["bullets", "bullets", "inline", "semicolon"])
    if style == "bullets":
        b = bullet(ctx)
        for it in chosen:
            doc.add(b, it(), "\n")
    else:
        sep = ", " if style == "inline" else " ; "
        for i, it in enumerate(chosen):
            doc.add(sep if i else "", it())
        doc.add(".\n")


def ttt_block(ctx: Ctx, doc: Doc, k: int | None = None) -> None:
    drugs = ctx.sample(P.DRUGS, k or ctx.rng.randrange(2, 8))
    style = ctx.ch(["bullets", "numbered", "table", "inline"])
    if style == "bullets":
        b = bullet(ctx)
        for d in drugs:
            doc.line(f"{b}{d}")
    elif style == "numbered":
        for i, d in enumerate(drugs, 1):
            doc.line(f"{i}) {d}")
    elif style == "table":
        doc.line("Médicament | Posologie")
        for d in drugs:
            m = re.search(r" (?=\d)", d)
            cut = m.start() if m else d.find(" ")
            doc.line(f"{d[:cut]} | {d[cut + 1:]}")
    else:
        doc.line(" ; ".join(drugs) + ".")


def signature(ctx: Ctx, doc: Doc, doctor: Person | None = None, lang: str = "fr") -> None:
    doctor = doctor or ctx.new_person()
    spec = next((sp for sp in P.SPECIALTIES if sp[0] == ctx.case["service"]), None)
    if spec is None or ctx.p(0.2):
        spec = ctx.ch(P.SPECIALTIES)
    if lang == "de":
        doc.line(ctx.ch(["Mit freundlichen kollegialen Grüßen", "Mit freundlichen Grüßen", "Mat beschte Gréiss"]))
        doc.line()
        doc.add(ctx.ch(["Dr. med. ", "Dr. ", "Prof. Dr. "]), ctx.ONAME(doctor, ctx.ch(["FL", "FLU"])), "\n")
        doc.line(ctx.ch(["Oberarzt", "Chefarzt", "Assistenzarzt", "Facharzt für Innere Medizin"]))
        return
    doc.line(ctx.ch(["Bien confraternellement,", "Avec mes salutations confraternelles,", "Bien cordialement,",
                     "Veuillez agréer, cher Confrère, l'expression de mes sentiments les meilleurs.",
                     "Je vous remercie de votre confiance et reste à votre disposition.",
                     "Confraternellement,"]))
    doc.line()
    style = ctx.ch(["a", "b", "c", "d"])
    if style == "a":
        doc.add(ctx.DR(doctor, title=1.0, style=ctx.ch(["FL", "FLU", "iL"])), "\n")
        doc.line(f"Médecin spécialiste en {spec[0]}")
    elif style == "b":
        doc.add(ctx.DR(doctor, title=1.0, style=ctx.ch(["FL", "FLU"])), ", ", spec[1], "\n")
    elif style == "c":
        assistant = ctx.new_person()
        doc.add(ctx.DR(assistant, title=1.0, style="iL"), ctx.ch([" (médecin assistant)", " (MEVS)", ""]), " / ",
                ctx.DR(doctor, title=1.0, style=ctx.ch(["iL", "FL"])), "\n")
    else:
        doc.add(ctx.DR(doctor, title=1.0, style=ctx.ch(["FL", "FLU"])), "\n")
        doc.add(f"Service {de(spec[0])} - {ctx.hospital[1]}", "\n")
        if ctx.p(0.5):
            doc.add("Tél. ", ctx.hosp_phone(), ctx.ch([" | ", " - ", "\n"]), ctx.ch(["E-mail : ", "Mail : ", ""]),
                    ctx.staff_email(doctor), "\n")
    if ctx.p(0.3):
        doc.add(ctx.ch(["Dicté, non relu", "Document validé électroniquement", "Dicté le "]))
        if doc.buf[-1] == "Dicté le ":
            doc.add(ctx.D(ctx.days(1, 10)))
        doc.add("\n")


def letterhead(ctx: Ctx, doc: Doc) -> None:
    name, abbr, _ = ctx.hospital
    style = ctx.ch(["full", "abbr", "caps", "none"])
    if style == "none":
        return
    doc.line(name.upper() if style == "caps" else (name if style == "full" else f"{abbr} - {name}"))
    doc.line(f"Service {de(ctx.case['service'])}" if ctx.p(0.7) else f"Département {de(ctx.case['service'])}")
    if ctx.p(0.6):
        doc.add(ctx.ch(["Secrétariat : ", "Tél. ", "Secr. tél. "]), ctx.hosp_phone())
        if ctx.p(0.6):
            doc.add(ctx.ch([" | Fax ", " - Fax : ", " / Fax "]), ctx.hosp_phone())
        if ctx.p(0.3):
            doc.add(" | ", ctx.service_email())
        doc.add("\n")
    doc.line()


def concerne(ctx: Ctx, doc: Doc) -> None:
    """The block that names the patient at the top of a letter."""
    style = ctx.rng.randrange(7)
    lab = ctx.ch(["Concerne : ", "Objet : ", "Concerne: ", "Réf. : ", "Patient : ", "CONCERNE : "])
    if style == 0:
        doc.add(lab, ctx.PAT(), ", ", ctx.born(), " le ", ctx.DOB(), "\n")
    elif style == 1:
        doc.add(lab, ctx.PAT(with_title=0.3), " (", ctx.ipp_label(), " ", ctx.IPP(), ")", "\n")
    elif style == 2:
        doc.add(lab, "votre ", ctx.patient_word(), " ", ctx.PAT(), ", ", ctx.AGE(), "\n")
    elif style == 3:
        doc.add(lab, ctx.PAT(with_title=0.5), " - ", ctx.ch(["DDN", "Né(e) le", "°"]), " ", ctx.DOB(), " - ",
                ctx.ch(["Matricule", "Matr.", "N° CNS", "N° sécu"]), " ", ctx.MATR(), "\n")
    elif style == 4:
        doc.add(lab, ctx.PAT(with_title=1.0), "\n")
        doc.add(ctx.addr_pieces(city=0.9), "\n")
    elif style == 5:
        doc.add(lab, ctx.PAT(with_title=0.4), " | ", ctx.DOB(), " | ", ctx.ipp_label(), " : ", ctx.IPP(), " | ",
                ctx.stay_label(), " : ", ctx.STAY(), "\n")
    else:
        doc.add(lab, ctx.PAT(), ", ", ctx.AGE(), ", hospitalisé", ctx.e(), " du ", ctx.D(ctx.index_date), " au ",
                ctx.D(ctx.days(2, 14)), "\n")


def salutation(ctx: Ctx, doc: Doc, gp: Person | None = None) -> None:
    if gp is not None and ctx.p(0.4):
        doc.add(ctx.ch(["Cher Docteur ", "Chère Consœur, cher Docteur ", "Cher Dr "]) if gp.sex == "M"
                else ctx.ch(["Chère Docteure ", "Chère Dr ", "Chère Madame "]), ctx.ONAME(gp, "L"), ",\n")
    else:
        doc.line(ctx.ch(["Cher Confrère,", "Chère Consœur,", "Chère Consœur, Cher Confrère,", "Chers Collègues,",
                         "Madame, Monsieur,", "Cher Ami,", "Cher confrère,"]))
    doc.line()


# ====================================================================== layouts
def lay_discharge(ctx: Ctx, doc: Doc) -> None:
    """Lettre de sortie: the long one."""
    gp = ctx.new_person()
    doctor = ctx.new_person()
    letterhead(ctx, doc)
    if ctx.p(0.6):
        doc.add(ctx.ch(["", "Au ", "A l'attention du "]), ctx.DR(gp, title=1.0, style=ctx.ch(["FL", "FLU", "iL"])),
                "\n")
        if ctx.p(0.7):
            doc.add(ctx.addr_pieces(ctx.make_other_address(), city=0.95, multiline=0.6), "\n")
        doc.line()
    town = ctx.ch(P.TOWNS_ALONE[:12])
    doc.add(town, ", le ", ctx.D(ctx.days(3, 20)), "\n\n")
    concerne(ctx, doc)
    if ctx.p(0.4):
        doc.add(ctx.ipp_label(), " ", ctx.IPP(), " - ", ctx.stay_label(), " ", ctx.STAY(), "\n")
    doc.line()
    salutation(ctx, doc, gp)
    adm = ctx.index_date
    dis = ctx.days(2, 18)
    hs = ctx.ch(["caps", "colon", "under", "num", "capscolon"])
    opening = ctx.ch(["Votre ", "Nous avons hospitalisé votre ", "J'ai eu le plaisir de prendre en charge votre "])
    doc.add(opening, ctx.patient_word(), " ", ctx.PAT(maiden=0.3), ", ", ctx.AGE(), ", ",
            "a été hospitalisé" + ctx.e() + " " if opening == "Votre " else "",
            *(("du ", ctx.D(adm), " au ", ctx.D(dis)) if ctx.p(0.7) else ("entre le ", ctx.D(adm), " et le ", ctx.D(dis))),
            " pour ", ctx.ch(ctx.case["motif"]), ".\n\n")
    heading(ctx, doc, "Diagnostic principal", hs)
    doc.line(ctx.ch(ctx.case["diag"]))
    doc.line()
    heading(ctx, doc, ctx.ch(["Antécédents", "ATCD"]), hs)
    atcd_block(ctx, doc)
    doc.line()
    heading(ctx, doc, ctx.ch(["Anamnèse", "Histoire de la maladie"]), hs)
    doc.line(clinic(ctx, "hdm", 2))
    if ctx.p(0.3):
        doc.add(ctx.ch(["Originaire de ", "Né" + ctx.e() + " à "]), ctx.ch(P.TOWNS_ALONE[-8:]), ", ", ctx.il(),
                " vit à ", ctx.ch(P.TOWNS_ALONE[:30]), " depuis ", ctx.D_past(ctx.past()), ".\n")
    if ctx.p(0.5):
        rel, rp = ctx.relative()
        if rel in ("épouse", "époux", "compagne", "compagnon"):
            doc.add(ctx.Il(), " vit avec ", "sa " if rp.sex == "F" else "son ", rel, ", ", ctx.ONAME(rp, ctx.ch(["FL", "F"])))
        else:
            doc.add(ctx.Il(), " vit seul", ctx.e(), " ; personne de contact : ", rel, ", ", ctx.mtitle(rp),
                    ctx.ONAME(rp, ctx.ch(["FL", "L"])))
        doc.add(ctx.ch([", joignable au ", ", tél. ", ", GSM "]), ctx.ophone(mobile=True), ".\n")
    doc.line()
    heading(ctx, doc, ctx.ch(["Examen clinique", "Status à l'entrée", "Examen à l'admission"]), hs)
    doc.line(vitals(ctx))
    doc.line(clinic(ctx, "exam", 2))
    ep = maybe_eponym(ctx, 0.6)
    if ep:
        doc.line(ep)
    doc.line()
    heading(ctx, doc, ctx.ch(["Biologie", "Laboratoire", "Bilan biologique"]), hs)
    labs_block(ctx, doc)
    doc.line()
    heading(ctx, doc, ctx.ch(["Imagerie", "Examens complémentaires"]), hs)
    img = clinic(ctx, "imaging", 1)
    if img.startswith("Pas d"):
        doc.line(img)
    else:
        doc.add(img, " (", ctx.D(ctx.days(0, 3)), ")\n" if ctx.p(0.5) else ").\n")
    if ctx.p(0.3):
        doc.line(ctx.ch(P.WORDS_PETIT))
    hg = homograph(ctx)
    if hg:
        doc.line(hg)
    doc.line()
    if ctx.p(0.4):
        heading(ctx, doc, ctx.ch(["Mode de vie", "Contexte social"]), hs)
        doc.line(ctx.ch(["Retraité" + ctx.e() + " (ancien" + ("ne" if ctx.patient.sex == "F" else "") + " employé" + ctx.e()
                         + " communal" + ("e" if ctx.patient.sex == "F" else "") + ").",
                         "Ouvrier du bâtiment en arrêt de travail." if ctx.patient.sex == "M" else "Aide-soignante à temps partiel.",
                         "Tabac : sevré. Alcool : occasionnel.", "Autonome pour les AVQ, conduit encore."]))
        doc.add("Allergies : ", ctx.ch(["aucune connue", "pénicilline", "produits iodés", "AINS (bronchospasme)"]), ".\n")
        if ctx.p(0.5):
            doc.add("Dernière hospitalisation : ", ctx.D(ctx.days(-700, -60), ctx.ch(["month_year", None])), " au ",
                    ctx.ch(P.HOSPITALS)[0], " pour ", ctx.ch(["une pneumonie", "une chute", "une colique néphrétique",
                                                              "un malaise"]), ".\n")
        doc.line()
    heading(ctx, doc, ctx.ch(["Évolution", "Evolution dans le service", "Évolution et prise en charge"]), hs)
    doc.line(clinic(ctx, "evol", 2))
    if ctx.p(0.4):
        doc.add("Avis ", ctx.ch(["cardiologique", "diététique", "gériatrique", "néphrologique", "infectiologique"]), " (",
                ctx.DR(title=0.8), ") le ", ctx.D_short(ctx.days(1, 5)), ".\n")
    if ctx.p(0.5):
        doc.line(trap_sentence(ctx))
    doc.line()
    heading(ctx, doc, ctx.ch(["Traitement de sortie", "TTT de sortie", "Médication à la sortie"]), hs)
    ttt_block(ctx, doc)
    doc.line()
    heading(ctx, doc, ctx.ch(["Suite de prise en charge", "Recommandations", "Propositions"]), hs)
    doc.line(clinic(ctx, "plan", 2))
    if ctx.p(0.6):
        doc.add("Rendez-vous de contrôle ", ctx.ch(["le ", "prévu le ", "fixé au "]), ctx.D(ctx.days(20, 90)),
                ctx.ch([f" à {ctx.time()}", "", " en policlinique"]), ctx.ch([" avec le ", " chez le "]),
                ctx.DR(title=1.0), ".\n")
    doc.line()
    signature(ctx, doc, doctor)
    if ctx.p(0.4):
        doc.add("Copie : ", ctx.DR(gp, style="L"), ctx.ch([" (médecin traitant)", ""]), "; ", ctx.PAT(maiden=0.0),
                "\n")


def lay_consult(ctx: Ctx, doc: Doc) -> None:
    """Consultation note, short to medium."""
    d = ctx.index_date
    top = ctx.rng.randrange(4)
    if top == 0:
        doc.add("Consultation du ", ctx.D(d), ctx.ch(["", f" - {ctx.time()}"]), "\n")
    elif top == 1:
        doc.add("CONSULTATION DE ", ctx.case["service"].upper(), " - ", ctx.D(d), "\n")
    elif top == 2:
        doc.add(ctx.D(d), " ", ctx.ch(["Cs", "Consult.", "Policlinique"]), " ", ctx.DR(title=1.0, style="L"), "\n")
    else:
        doc.add("Patient", ctx.e(), " : ", ctx.PAT(with_title=0.2, maiden=0.2), " (", ctx.AGE(), ") - ",
                ctx.ipp_label(), " ", ctx.IPP(), "\n")
    if top != 3 and ctx.p(0.6):
        doc.add(ctx.PAT(maiden=0.3), ", ", ctx.ch(["", "DDN ", "né(e) le ", "°"]), ctx.DOB(), "\n")
    doc.line()
    form = ctx.rng.randrange(3)
    if form == 0:
        doc.add("Motif : ", ctx.ch(ctx.case["motif"]), ".\n")
        doc.add("ATCD : ")
        atcd_block(ctx, doc, ctx.rng.randrange(1, 4))
        doc.add("TTT : ", "; ".join(ctx.sample(P.DRUGS, ctx.rng.randrange(1, 4))), ".\n")
        doc.add("Examen : ", vitals(ctx), ". ", clinic(ctx, "exam"), "\n")
        doc.add("Conclusion : ", ctx.ch(ctx.case["diag"]), ".\n")
        doc.add("Plan : ", clinic(ctx, "plan"), "\n")
    elif form == 1:
        doc.add(ctx.ch(["Je revois ", "Revu ce jour ", "Vu en consultation "]), ctx.PATSHORT(), ", ", ctx.AGE(),
                ", pour ", ctx.ch(ctx.case["motif"]), ". ", clinic(ctx, "hdm"), "\n")
        doc.add("Dernière consultation le ", ctx.D(ctx.past(0) if ctx.p(0.3) else ctx.days(-200, -20)), ". ",
                clinic(ctx, "evol"), "\n")
        doc.line(clinic(ctx, "exam"))
        hg = homograph(ctx)
        if hg:
            doc.line(hg)
        ep = maybe_eponym(ctx, 0.7)
        if ep:
            doc.line(ep)
        if ctx.p(0.4):
            doc.line(trap_sentence(ctx))
        doc.add("Au total : ", lc(ctx.ch(ctx.case["diag"])), ". ", clinic(ctx, "plan"), "\n")
        doc.add("Prochain RDV : ", ctx.D(ctx.days(30, 180), ctx.ch([None, "wd_long", "long"])), ".\n")
    else:
        doc.line("S : " + clinic(ctx, "hdm"))
        doc.line("O : " + vitals(ctx) + ". " + clinic(ctx, "exam"))
        doc.line("A : " + ctx.ch(ctx.case["diag"]))
        doc.add("P : ", clinic(ctx, "plan"), " Revoir le ", ctx.D_short(ctx.days(7, 60)), ".\n")
    if ctx.p(0.5):
        doc.line()
        doc.add(ctx.DR(title=1.0, style=ctx.ch(["FL", "iL", "FLU"])), "\n")


def lay_emergency(ctx: Ctx, doc: Doc) -> None:
    d = ctx.index_date
    doc.line(ctx.ch(["SERVICE DES URGENCES", "URGENCES - Dossier de passage", "Urgences adultes", "POLICLINIQUE / URGENCES"]))
    doc.add(ctx.stay_label(), " : ", ctx.STAY(), ctx.ch([" | ", "\n"]), ctx.ipp_label(), " : ", ctx.IPP(), "\n")
    doc.add("Nom : ", (ctx.vary(ctx.last_variant(), upper=0.8), PATIENT_NAME), ctx.ch([" | ", "\n"]), "Prénom : ",
            (ctx.vary(ctx.patient.first, upper=0.1), PATIENT_NAME), ctx.ch([" | ", "\n"]), "DDN : ", ctx.DOB(),
            " (", ctx.AGE(), ")\n")
    if ctx.p(0.35):
        doc.add("Domicile : ", ctx.CITY() if ctx.p(0.5) else ctx.addr_pieces(city=0.8), "\n")
    elif ctx.p(0.3):
        doc.add("Vient de ", ctx.ch(P.TOWNS_ALONE[:40]), ".\n")
    doc.add("Arrivée : ", ctx.D(d), " ", ctx.ch(["à ", ""]), ctx.time(), ctx.ch([" - SAMU", " - ambulance", " - moyens propres",
                                                                            " - SAMU (112)", ""]), "\n")
    doc.line(f"Tri Manchester : {ctx.ch(['orange', 'jaune', 'vert', 'rouge'])}")
    doc.line()
    doc.add("Motif : ", ctx.ch(ctx.case["motif"]), "\n")
    doc.add("Anamnèse : ", clinic(ctx, "hdm", 2), "\n")
    if ctx.p(0.6):
        doc.add("ATCD : ")
        atcd_block(ctx, doc, ctx.rng.randrange(1, 5))
    doc.add("Paramètres : ", vitals(ctx), "\n")
    doc.add("Examen : ", clinic(ctx, "exam", 2), " ", maybe_eponym(ctx, 0.5), "\n")
    if ctx.p(0.6):
        labs_block(ctx, doc, ctx.rng.randrange(3, 6))
    if ctx.p(0.5):
        doc.add("Avis ", ctx.ch(["cardio", "chir", "neuro", "réa", "gériatrique"]), " (", ctx.DR(), ") à ", ctx.time(),
                " : ", ctx.ch(["hospitalisation", "retour à domicile possible", "surveillance 24 h en UHCD"]), ".\n")
    if ctx.p(0.55):
        rel, rp = ctx.relative()
        doc.add("Famille prévenue : ", rel, " (", ctx.mtitle(rp) if ctx.p(0.5) else "", ctx.ONAME(rp), ", ",
                ctx.ch(["GSM ", "tél. ", ""]), ctx.ophone(mobile=True), ").\n")
    if ctx.p(0.3):
        doc.line(trap_sentence(ctx))
    doc.add("Orientation : ", ctx.ch([*P.WARDS, "domicile", "retour en maison de soins"]), ctx.ch(["", " à " + ctx.time()]),
            ".\n")
    doc.add("Médecin urgentiste : ", ctx.DR(title=0.6), "\n")


def lay_nursing(ctx: Ctx, doc: Doc) -> None:
    d = ctx.days(0, 8)
    style = ctx.rng.randrange(3)
    if style == 0:
        doc.add("Transmissions ciblées du ", ctx.D(d), " - ", ctx.ch(["équipe de nuit", "équipe du matin", "poste de l'après-midi"]),
                "\n")
        doc.add(ctx.ch(["Pt : ", "Patient : ", "Ch. " + str(ctx.rng.randrange(101, 650)) + " - "]),
                ctx.PAT(with_title=0.8, maiden=0.1, style=ctx.ch(["L", "LU", "LF"])), "\n")
        for cible in ctx.sample(["Douleur", "Mobilité", "Élimination", "Alimentation", "Sommeil", "Anxiété", "Plaie"], 2):
            doc.line(f"Cible : {cible}")
            doc.line(f"D : {ctx.ch(['pt algique', 'plainte de douleurs', 'agitation nocturne', 'pas de selles depuis 3 jours', 'refuse le repas'])}, EVA {ctx.rng.randrange(2, 9)}/10")
            doc.add("A : ", ctx.ch(["Dafalgan 1 g IV", "Tramadol 50 mg PO", "mobilisation au fauteuil", "lavement", "réassurance"]),
                    " à ", ctx.time(), ctx.ch(["", ", selon prescription du "]))
            if doc.buf[-1].endswith("du "):
                doc.add(ctx.DR(title=1.0, style="L"))
            doc.add("\n")
            doc.line(f"R : {ctx.ch(['EVA 2/10 à la réévaluation', 'pt soulagé', 'efficace', 'sans effet, médecin prévenu'])}")
    elif style == 1:
        doc.add(ctx.D(d), " ", ctx.time(), " - ", ctx.ch(["RAS cette nuit.", "Nuit calme.", "Pt agité vers 3h, désorienté."]),
                " ", ctx.ch(["TA ", "TA : "]), f"{ctx.rng.randrange(100, 170)}/{ctx.rng.randrange(55, 95)}, ",
                f"HGT {ctx.rng.randrange(90, 280)} mg/dl. ")
        if ctx.p(0.6):
            rel, rp = ctx.relative()
            doc.add("Visite de ", poss(rel, rp.sex == "F"), rel, " ", ctx.ONAME(rp, ctx.ch(["F", "FL"])), " ",
                    ctx.ch(["l'après-midi", "vers 18h", "ce matin"]), ". ")
        doc.add("\n")
    else:
        doc.add("Soins infirmiers - ", ctx.PAT(with_title=0.8, maiden=0.2), " - ", ctx.ch(["ch. ", "chambre "]),
                str(ctx.rng.randrange(101, 650)), "\n")
        doc.add(bullet(ctx), "Toilette au lit avec aide, ", ctx.ch(["escarre talon D stade 2", "peau intacte", "rougeur sacrée"]),
                ". ", ctx.ch(["Échelle de Norton 12.", "Braden 14.", ""]), "\n")
        doc.add(bullet(ctx), "Pansement refait le ", ctx.D_short(d), ", prochain le ", ctx.D_short(d + dt.timedelta(days=2)),
                ".\n")
        doc.add(bullet(ctx), "Pesée : ", str(ctx.rng.randrange(45, 110)), " kg\n")
    doc.add(ctx.ch(["IDE : ", "Signé : ", "Inf. de nuit : ", "-- "]), ctx.nurse(), "\n")


def lay_referral(ctx: Ctx, doc: Doc) -> None:
    """Letter of a GP sending the patient to a specialist."""
    gp = ctx.new_person()
    spec = ctx.new_person()
    doc.add(ctx.DR(gp, title=1.0, style=ctx.ch(["FL", "FLU"])), "\n")
    doc.line(ctx.ch(["Médecin généraliste", "Médecine générale", "Médecin généraliste - Médecine du sport"]))
    doc.add(ctx.addr_pieces(ctx.make_other_address(), city=0.95, multiline=0.7), "\n")
    doc.add(ctx.ch(["Tél. ", "Tél : ", "T. "]), ctx.ophone(mobile=False, country="LU"))
    if ctx.p(0.5):
        doc.add(ctx.ch([" - Fax ", " | Fax : "]), ctx.ophone(mobile=False, country="LU"))
    doc.add("\n")
    if ctx.p(0.4):
        doc.add(ctx.staff_email(gp, hospital=False), "\n")
    doc.line()
    doc.add(ctx.ch(["", "A l'attention du ", "À "]), ctx.DR(spec, title=1.0), ", ", ctx.ch(P.SPECIALTIES)[1], "\n")
    doc.line(ctx.hospital[0] if ctx.p(0.7) else ctx.ch(P.OTHER_PLACES))
    doc.line()
    doc.add(ctx.ch(P.TOWNS_ALONE[:20]), ", le ", ctx.D(ctx.index_date), "\n\n")
    salutation(ctx, doc, spec)
    doc.add(ctx.ch(["Je vous adresse ", "Permettez-moi de vous adresser ", "Merci de bien vouloir voir "]),
            ctx.PAT(maiden=0.4), ctx.ch([", ", " ("]), ctx.born(), " le ", ctx.DOB(), ctx.ch([", ", ") "]),
            ctx.ch(["domicilié" + ctx.e() + " ", "demeurant ", "habitant "]), ctx.addr_pieces(city=0.7), ", ",
            ctx.ch(["pour ", "en raison de ", "pour avis concernant "]), ctx.ch(ctx.case["motif"]), ".\n\n")
    doc.line(clinic(ctx, "hdm", 2))
    doc.add("Dans ses antécédents : ")
    atcd_block(ctx, doc, ctx.rng.randrange(2, 5))
    doc.add("Traitement actuel : ", ", ".join(ctx.sample(P.DRUGS, ctx.rng.randrange(2, 5))), ".\n")
    if ctx.p(0.5):
        doc.add("Dernière biologie du ", ctx.D(ctx.days(-30, -2)), " : ", ", ".join(
            f"{lab[0]} {lab_value(ctx, lab)} {lab[1]}".rstrip() for lab in ctx.sample(P.LABS, 3)), ".\n")
    doc.line()
    doc.add(ctx.ch(["Vous pouvez joindre ", "Merci de convoquer directement "]), ctx.PATSHORT(), " au ", ctx.PHONE(),
            ctx.ch([".", " ou par mail : "]))
    if doc.buf[-1] == " ou par mail : ":
        doc.add(ctx.EMAILT(), ".")
    doc.add("\n\n")
    doc.line("En vous remerciant, je vous prie de croire, cher Confrère, à mes sentiments les meilleurs.")
    doc.add(ctx.DR(gp, title=1.0, style="iL"), "\n")
    if ctx.p(0.4):
        doc.add("Matricule du patient : ", ctx.MATR(), "\n")


OPERATIONS: dict[str, tuple[str, str]] = {
    "cholecystite": ("Cholécystectomie par cœlioscopie", "Installation en décubitus dorsal, position de Trendelenburg inversée. "
                     "Open cœlioscopie ombilicale, 3 trocarts. Dissection du triangle de Calot, clips sur le canal et l'artère cystiques."),
    "fracture": ("Prothèse intermédiaire de hanche", "Décubitus latéral. Voie d'abord postéro-latérale. "
                 "Ostéotomie du col, mise en place d'une tige cimentée. Drain de Redon. Fermeture plan par plan."),
    "sca": ("Angioplastie coronaire", "Abord radial droit selon la technique de Seldinger, désilet 6F. Mise en place d'un stent actif."),
    "onco": ("Sigmoïdectomie par cœlioscopie", "Décubitus dorsal, jambes écartées. Ligature de l'artère mésentérique inférieure, "
             "anastomose colorectale mécanique. Pas de stomie."),
    "hemodig": ("Gastroscopie interventionnelle", "Sous sédation. Ulcère bulbaire avec vaisseau visible : injection d'adrénaline et 2 clips."),
    "syncope": ("Implantation d'un pacemaker double chambre", "Abord veineux céphalique gauche, sondes en position auriculaire "
                "et ventriculaire droites, loge sous-cutanée."),
}
OTHER_OPS = [
    ("Appendicectomie cœlioscopique", "Exploration : appendice phlegmoneux, pas de perforation. Ligature à l'Endoloop. "
     "Pas de point de McBurney utilisé (voie cœlioscopique)."),
    ("Césarienne", "Incision de Pfannenstiel, hystérotomie segmentaire transversale, naissance d'un enfant vivant, score d'Apgar 9/10/10."),
    ("Cure de hernie inguinale gauche selon Lichtenstein", "Incision inguinale, dissection du sac, plaque de polypropylène."),
    ("Ostéosynthèse d'une fracture de Pouteau-Colles", "Plaque palmaire verrouillée, contrôle scopique satisfaisant."),
]


def lay_operative(ctx: Ctx, doc: Doc) -> None:
    d = ctx.days(0, 3)
    doc.line(ctx.ch(["COMPTE RENDU OPÉRATOIRE", "Compte-rendu opératoire", "PROTOCOLE OPÉRATOIRE", "CRO"]))
    doc.add("Patient", ctx.e(), " : ", ctx.PAT(with_title=0.4, maiden=0.3), ctx.ch([" - ", " | "]), ctx.DOB(),
            ctx.ch([" - ", " | "]), ctx.ipp_label(), " ", ctx.IPP(), "\n")
    doc.add("Date de l'intervention : ", ctx.D(d), ctx.ch(["", f" ({ctx.time_pair()})"]), "\n")
    rows = [("Opérateur", ctx.DR(title=0.8)), ("Aide", ctx.DR(title=0.7)), ("Anesthésiste", ctx.DR(title=0.8)),
            ("Instrumentiste", ctx.nurse())]
    if ctx.p(0.5):
        for i, (k, v) in enumerate(rows):
            doc.add(" | " if i else "", k, " : ", v)
        doc.add("\n")
    else:
        for k, v in rows:
            doc.add(k, " : ", v, "\n")
    if ctx.case["key"] not in OPERATIONS and ctx.p(0.8):
        key = ctx.ch(sorted(OPERATIONS))
        ctx.case = next(c for c in CASES if c["key"] == key)
    op = OPERATIONS.get(ctx.case["key"]) if ctx.p(0.8) else None
    op = op or ctx.ch(OTHER_OPS)
    doc.add("Intervention : ", op[0], "\n")
    doc.add("Indication : ", ctx.ch(ctx.case["diag"]), "\n")
    doc.add("Description : ", op[1], "\n")
    doc.line(f"Pertes sanguines estimées : {ctx.rng.randrange(20, 600)} ml. Fil {ctx.ch(['2/0', '3/0', '4/0'])}.")
    if ctx.p(0.5):
        doc.line(trap_sentence(ctx))
    doc.add("Suites : ", clinic(ctx, "plan"), "\n")
    if ctx.p(0.5):
        doc.add("Rédigé par ", ctx.DR(title=1.0, style="iL"), " le ", ctx.D(d), "\n")


def lay_message(ctx: Ctx, doc: Doc) -> None:
    """Brief messages, some in Luxembourgish."""
    k = ctx.rng.randrange(9)
    colleague = ctx.new_person()
    if k == 0:
        doc.add("Moien ", ctx.ONAME(colleague, "F"), ", kanns du w.e.g. ", ctx.PATSHORT("lb"), " (", ctx.ipp_label(), " ",
                ctx.IPP(), ") muer nach eng Kéier kucken? Merci! Bis muer, ", ctx.ONAME(ctx.new_person(), "F"))
    elif k == 1:
        doc.add("Pour info : ", ctx.PAT(maiden=0.0), " (ch. ", str(ctx.rng.randrange(101, 650)), ") sort ",
                ctx.ch(["demain", "le " + ctx.date_text(ctx.days(1, 3), "wd_noyear")]), ", taxi commandé, ",
                ctx.ch(["fille", "fils", "épouse", "voisine"]), " prévenu(e) au ", ctx.ophone(mobile=True), ".")
    elif k == 2:
        doc.add(ctx.DR(colleague, title=1.0, style="L"), ", ", ctx.PAT(maiden=0.0), " a rappelé pour son RDV du ",
                ctx.D_short(ctx.days(2, 30)), ". Merci de ", "la" if ctx.patient.sex == "F" else "le", " rappeler au ",
                ctx.PHONE(), ctx.ch([".", " (après 16h).", " - répondeur."]))
    elif k == 3:
        doc.add("De : ", ctx.staff_email(colleague), "\nÀ : ", ctx.service_email(), "\nObjet : RDV ", ctx.PATSHORT(),
                "\n\n", ctx.ch(["Bonjour,", "Moien,", "Hello,"]), "\n", "Pourriez-vous programmer un ",
                ctx.ch(["ETT", "Holter ECG", "scanner thoracique", "EMG"]), " pour ", ctx.PAT(maiden=0.0), ", ",
                ctx.born(), " le ", ctx.DOB(), ", ", ctx.ch(["avant le ", "si possible le "]), ctx.D(ctx.days(5, 40)),
                " ?\nMerci d'avance,\n", ctx.ONAME(colleague, ctx.ch(["FL", "F"])))
    elif k == 4:
        fem = ctx.patient.sex == "F"
        doc.add("D'Madame " if fem else "Den Här ", (ctx.vary(ctx.last_variant(), upper=0.3), PATIENT_NAME),
                ctx.ch([" huet ugeruff", " huet ugeruff wéinst " + ("hirem" if fem else "sengem") + " Rendez-vous"]),
                ", si" if fem else ", hie", " kann den ", ctx.D(ctx.days(1, 20), "lb_long"), " net kommen. W.e.g. zeréckruffen op ",
                ctx.PHONE(), ". Merci! Äddi, ", ctx.ONAME(colleague, "F"))
    elif k == 5:
        doc.add("RAS pour ", ctx.PATSHORT(), ", ", ctx.ch(["bilan OK", "constantes stables", "a bien mangé", "douleur contrôlée"]),
                ". ", ctx.ch(["Sortie prévue le ", "Revoir le "]), ctx.D_short(ctx.days(1, 6)), ".")
    elif k == 6:
        doc.add(ctx.ch(["Rappel :", "NB :", "A faire :"]), " appeler ", ctx.ch(["la fille", "le fils", "l'épouse"]), " de ",
                ctx.PATSHORT(), " (", ctx.ophone(mobile=True), ") pour ", ctx.ch(["les papiers de sortie", "la demande de maison de soins",
                                                                               "l'accord pour la gastrostomie"]), ".")
    elif k == 7:
        doc.add("Labo ", ctx.D_short(ctx.days(0, 3)), " ", ctx.PATSHORT(), " : ", ", ".join(
            f"{lab[0]} {lab_value(ctx, lab)}" for lab in ctx.sample(P.LABS, 3)), ". ", ctx.ch(["À contrôler.", "Vu.", "OK."]))
    else:
        doc.add("Moien ", ctx.DR(colleague, title=0.5, style="L"), ", ", ctx.PAT(maiden=0.0, style="FL"), " (",
                ctx.AGE(), ") ass bei eis op der ", ctx.ch(["Intensiv", "Urgence", "Station"]), ". ",
                ctx.ch(["Kanns de dech mell?", "Ruff mech w.e.g. un op "]))
        if doc.buf[-1].endswith("op "):
            doc.add(ctx.hosp_phone(), ".")
        doc.add(" Bis muer!")
    doc.add("\n")


def lay_german(ctx: Ctx, doc: Doc) -> None:
    """Arztbrief from a German hospital (cross-border patients) or a German fragment."""
    doctor = ctx.new_person()
    doc.line(ctx.ch(["Klinikum Mutterhaus der Borromäerinnen, Trier", "Brüderkrankenhaus Trier", "Klinik für Innere Medizin",
                     "Universitätsklinikum des Saarlandes"]))
    doc.line()
    gp = ctx.new_person()
    doc.add("Sehr geehrte Frau Kollegin " if gp.sex == "F" else "Sehr geehrter Herr Kollege ", ctx.ONAME(gp, "L"), ",\n\n")
    dis = ctx.days(3, 15)
    doc.add("wir berichten über ", "Ihre Patientin " if ctx.patient.sex == "F" else "Ihren Patienten ",
            ctx.PAT(with_title=0.8, lang="de"), ", geb. ", ctx.D(ctx.patient.dob, ctx.ch(["de_dot", "de_long"])),
            ", wohnhaft ", ctx.addr_pieces(city=0.8), ", ",
            "die" if ctx.patient.sex == "F" else "der", " sich vom ", ctx.D(ctx.index_date, "de_dot"), " bis ",
            ctx.D(dis, ctx.ch(["de_dot", "de_long"])), " in unserer stationären Behandlung befand.\n\n")
    doc.line("Diagnosen:")
    doc.line(f"{bullet(ctx)}{ctx.ch(['Dekompensierte Herzinsuffizienz', 'Ambulant erworbene Pneumonie', 'Akuter Myokardinfarkt (NSTEMI)', 'Pyelonephritis links', 'Schenkelhalsfraktur rechts'])}")
    doc.line(f"{bullet(ctx)}{ctx.ch(['Arterielle Hypertonie', 'Diabetes mellitus Typ 2', 'Vorhofflimmern', 'Morbus Parkinson'])}")
    doc.line()
    doc.add("Anamnese: Die Aufnahme erfolgte wegen ",
            ctx.ch(["zunehmender Belastungsdyspnoe", "Fieber und Husten", "akuter Thoraxschmerzen", "eines Sturzes"]), ".\n")
    age = ctx.age_years()
    doc.add(("Die " if ctx.patient.sex == "F" else "Der "), (f"{age}-jährige", AGE), " Patient",
            "in" if ctx.patient.sex == "F" else "", " berichtete über ",
            ctx.ch(["Dyspnoe seit 2 Wochen", "Fieber bis 39 °C seit 3 Tagen", "Brustschmerzen seit dem Vorabend"]), ".\n")
    krea = f"{ctx.rng.randrange(6, 25) / 10:.1f}".replace(".", ",")
    hb = f"{ctx.rng.randrange(90, 160) / 10:.1f}".replace(".", ",")
    hg = homograph(ctx)
    if hg:
        doc.line(hg)
    doc.line(f"Labor: CRP {ctx.rng.randrange(5, 200)} mg/l, Kreatinin {krea} mg/dl, Hb {hb} g/dl.")
    doc.add("Procedere: Kontrolle beim Hausarzt am ", ctx.D(dis + dt.timedelta(days=ctx.rng.randrange(5, 20)),
                                                          ctx.ch(["de_dot", "de_long"])), ".\n\n")
    signature(ctx, doc, doctor, lang="de")


def lay_radiology(ctx: Ctx, doc: Doc) -> None:
    d = ctx.days(0, 5)
    doc.line(ctx.ch(["COMPTE RENDU D'IMAGERIE", "Service de Radiologie", "IMAGERIE MÉDICALE", "Radiologie - Protocole"]))
    doc.add("Patient", ctx.e(), " : ", ctx.PAT(with_title=0.5, maiden=0.3), ctx.ch([", ", " - "]), ctx.ch(["né(e) le ", "DDN ", ""]),
            ctx.DOB(), "\n")
    if ctx.p(0.6):
        doc.add(ctx.ipp_label(), " : ", ctx.IPP(), ctx.ch([" - N° examen : ", " / Acc. ", " - N° d'examen "]),
                (str(ctx.rng.randrange(10**7, 10**8)), LOCAL_ID), "\n")
    doc.add("Prescripteur : ", ctx.DR(title=0.9), "\n")
    found = [x for x in ctx.case["imaging"] if " : " in x]
    if found:
        exam, _, result = ctx.ch(found).partition(" : ")
    else:
        exam = ctx.ch(["Scanner cérébral non injecté", "RX thorax face", "Échographie abdominale"])
        result = "pas d'anomalie significative."
    doc.add("Examen : ", exam, " du ", ctx.D(d), ctx.ch(["", f" à {ctx.time()}"]), "\n")
    doc.add("Indication : ", ctx.ch(ctx.case["motif"]), ".\n")
    if ctx.p(0.5):
        doc.add("Comparaison : examen du ", ctx.D(ctx.past(0)), ".\n")
    doc.line(f"Technique : {ctx.ch(['acquisition hélicoïdale après injection de 80 ml d Omnipaque 350', 'séquences T1, T2, FLAIR, diffusion', 'incidence de face debout', 'sonde convexe 3,5 MHz'])}.")
    doc.line("Résultat :")
    doc.line(result[0].upper() + result[1:])
    if ctx.p(0.5):
        doc.line(ctx.ch(P.WORDS_PETIT))
    if ctx.p(0.4):
        doc.line(f"Nodule de {ctx.rng.randrange(3, 9)} mm du LSD, pas de suivi nécessaire selon les critères de Fleischner.")
    doc.add("Conclusion : ", ctx.ch(["aspect compatible avec : ", "", "en faveur de : "]), lc(ctx.ch(ctx.case["diag"])), ".\n")
    doc.add(ctx.DR(title=1.0, style=ctx.ch(["FL", "iL"])), ctx.ch([", radiologue", "", " (radiologue)"]), "\n")


def lay_admin(ctx: Ctx, doc: Doc) -> None:
    """Administrative sheet written as a table."""
    pat = ctx.patient
    sep = ctx.ch([" | ", " : ", "\t"])
    doc.line(ctx.ch(["FICHE ADMINISTRATIVE", "Données administratives", "ADMISSION", "Fiche patient"]))
    rows: list[tuple[str, list[Piece]]] = [
        ("Nom", [(ctx.vary(ctx.last_variant(), upper=0.7), PATIENT_NAME)]),
        ("Prénom(s)", [(ctx.vary(pat.first, upper=0.2), PATIENT_NAME)] + ([" ", (pat.first2, PATIENT_NAME)] if pat.first2 else [])),
    ]
    if pat.maiden:
        rows.append((ctx.ch(["Nom de naissance", "Nom de jeune fille", "Née"]), [(ctx.vary(pat.maiden, upper=0.6), PATIENT_NAME)]))
    rows += [
        ("Sexe", [pat.sex]),
        ("Date de naissance", [ctx.D_dob()]),
        ("Âge", [ctx.AGE()]),
        ("Matricule", [ctx.MATR()]),
        (ctx.ipp_label(), [ctx.IPP()]),
        (ctx.stay_label(), [ctx.STAY()]),
        ("Adresse", ctx.addr_pieces(city=0.9)),
        ("Tél.", [ctx.PHONE(pat.phones[0])]),
    ]
    if len(pat.phones) > 1:
        rows.append(("GSM", [ctx.PHONE(pat.phones[1])]))
    if ctx.p(0.6):
        rows.append(("E-mail", [ctx.EMAILT()]))
    if ctx.p(0.6):
        rows.append(("IBAN", [ctx.IBANT()]))
    rel, rp = ctx.relative()
    rows.append(("Personne de confiance", [ctx.ONAME(rp, ctx.ch(["FL", "LF"])), f" ({rel}) ", ctx.ophone(mobile=True)]))
    rows.append(("Médecin traitant", ctx.DR(title=0.8)))
    rows.append(("Caisse", [ctx.ch(["CNS", "CNS + CMCM", "CNS / DKV", "CPAM (frontalier)", "CNS"])]))
    rows.append(("Date d'admission", [ctx.D(ctx.index_date)]))
    rows = [rows[0], rows[1], *ctx.sample(rows[2:], len(rows) - 2 - ctx.rng.randrange(0, 4))]
    for k, v in rows:
        doc.add(k, sep, v, "\n")


def lay_social(ctx: Ctx, doc: Doc) -> None:
    rel, rp = ctx.relative()
    doc.add(ctx.ch(["Note du service social", "SERVICE SOCIAL - Entretien", "Assistante sociale : note d'évaluation"]),
            " du ", ctx.D(ctx.days(1, 10)), "\n\n")
    doc.add("Rencontre avec ", ctx.PAT(maiden=0.5), ctx.ch([" et ", " en présence de "]), poss(rel, rp.sex == "F"), rel, ", ",
            ctx.mtitle(rp), ctx.ONAME(rp, ctx.ch(["FL", "L"])), ".\n")
    doc.add("Situation : ", ctx.ch(["veuf" + ctx.e() if ctx.patient.sex == "M" else "veuve", "divorcé" + ctx.e(), "marié" + ctx.e(), "célibataire"]),
            ", vit ", ctx.ch(["seul" + ctx.e(), "avec son conjoint", "chez sa fille"]), " au ", ctx.addr_pieces(city=0.6),
            ctx.ch([".", " (maison sans ascenseur, 2 étages)."]), "\n")
    doc.add(ctx.ch(["Demande d'assurance dépendance introduite le ", "Demande de place en CIPA envoyée le ",
                    "Dossier Foyer de jour déposé le "]), ctx.D(ctx.days(1, 10)), ".\n")
    if ctx.p(0.7):
        doc.add(ctx.ch(["Versement de l'allocation sur le compte ", "Remboursement sur le compte IBAN ", "Coordonnées bancaires : "]),
                ctx.IBANT(), ctx.ch(["", " (BIC " + ctx.ch(["BCEELULL", "CCPLLULL", "BGLLLULL"]) + ")"]), ".\n")
    doc.add("Contacts : ", rel, " ", ctx.ch(["GSM ", "tél. "]), ctx.ophone(mobile=True), ctx.ch(["", " / e-mail "]))
    if doc.buf[-1] == " / e-mail ":
        doc.add((f"{ascii_slug(rp.first)}.{ascii_slug(rp.last)}@{ctx.ch(P.EMAIL_DOMAINS)}", EMAIL))
    doc.add("; ", ctx.patient_word(), " : ", ctx.PHONE(), ".\n")
    if ctx.p(0.4):
        lawyer = ctx.new_person()
        doc.add("Mesure de protection : curatelle, curateur ", ctx.ch(["Me ", "Maître "]), ctx.ONAME(lawyer, ctx.ch(["FL", "L"])),
                ", avocat à ", ctx.ch(P.TOWNS_ALONE[:8]), ".\n")
    doc.add("Réseau de soins : ", ctx.ch(P.OTHER_PLACES[-3:]), ", passage ", ctx.ch(["2x/j", "1x/j", "3x/semaine"]), ".\n")
    doc.add("AS : ", ctx.ONAME(ctx.new_person(sex="F"), ctx.ch(["FL", "iL"])), "\n")


def lay_certificate(ctx: Ctx, doc: Doc) -> None:
    doctor = ctx.new_person()
    d = ctx.index_date
    doc.line(ctx.ch(["CERTIFICAT MÉDICAL", "Certificat médical", "CERTIFICAT D'INCAPACITÉ DE TRAVAIL"]))
    doc.line()
    doc.add("Je soussigné", "e" if doctor.sex == "F" else "", ", ", ctx.DR(doctor, title=1.0, style="FL"),
            ", certifie avoir examiné ce jour ", ctx.PAT(with_title=1.0, maiden=0.3), ", ", ctx.born(), " le ", ctx.DOB(),
            ctx.ch([", matricule ", ", n° CNS "]), ctx.MATR(), ctx.ch(["", ", demeurant "]))
    if doc.buf[-1] == ", demeurant ":
        doc.add(ctx.addr_pieces(city=0.8) if ctx.p(0.7) else ["à ", ctx.CITY()])
    end = d + dt.timedelta(days=ctx.rng.randrange(3, 21))
    what = (["nécessite un arrêt de travail", "justifie une incapacité de travail"] if ctx.age_years() < 66
            else ["a nécessité une hospitalisation", "justifie un repos à domicile"])
    doc.add(", et que son état de santé ", ctx.ch(what),
            " du ", ctx.D(d), " au ", ctx.D(end), ctx.ch([" inclus", ""]), ".\n")
    doc.line(ctx.ch(["Sorties autorisées.", "Sorties non autorisées.", "Sorties autorisées de 10h à 12h et de 14h à 18h."]))
    doc.line()
    doc.add("Fait à ", ctx.ch(P.TOWNS_ALONE[:15]), ", le ", ctx.D(d), "\n")
    doc.add(ctx.DR(doctor, title=1.0, style=ctx.ch(["iL", "FL"])), "\n")


def lay_prescription(ctx: Ctx, doc: Doc) -> None:
    doctor = ctx.new_person()
    doc.line("ORDONNANCE" if ctx.p(0.6) else "Ordonnance médicale")
    doc.add(ctx.DR(doctor, title=1.0, style=ctx.ch(["FL", "FLU"])), " - ", ctx.ch(P.SPECIALTIES)[1], "\n")
    if ctx.p(0.6):
        doc.add(ctx.addr_pieces(ctx.make_other_address(), city=1.0), " - Tél. ", ctx.ophone(mobile=False, country="LU"), "\n")
    doc.line()
    doc.add("Patient", ctx.e(), " : ", ctx.PAT(with_title=0.6, maiden=0.0), ctx.ch([" - Matricule : ", " - Matr. ", "\nN° CNS : "]),
            ctx.MATR(), "\n\n")
    for i, d in enumerate(ctx.sample(P.DRUGS, ctx.rng.randrange(1, 6)), 1):
        doc.line(f"{i}) {d}")
    if ctx.p(0.4):
        doc.line("QSP 3 mois. À renouveler 2 fois.")
    doc.line()
    doc.add(ctx.ch(P.TOWNS_ALONE[:15]), ", le ", ctx.D(ctx.index_date), "\n")


def lay_phonecall(ctx: Ctx, doc: Doc) -> None:
    rel, rp = ctx.relative()
    doc.add(ctx.ch(["Appel téléphonique", "Tél.", "Entretien téléphonique"]), " le ", ctx.D(ctx.days(0, 5)), " à ", ctx.time(),
            " ", ctx.ch(["de la part de ", "avec "]), ctx.art(rel, rp.sex == "F"), rel, " de ", ctx.PATSHORT(), ", ",
            ctx.mtitle(rp), ctx.ONAME(rp, ctx.ch(["FL", "L", "LU"])), " (", ctx.ophone(mobile=True), ").\n")
    doc.add(ctx.ch(["Inquiète de l'évolution.", "Demande des nouvelles.", "Souhaite rencontrer le médecin."]), " ",
            ctx.ch(["Informée du diagnostic de ", "Expliqué : "]), lc(ctx.ch(ctx.case["diag"])), ". ")
    doc.add(ctx.ch(["Entretien famille prévu le ", "RDV avec le médecin le "]), ctx.D(ctx.days(1, 7), ctx.ch(["wd_noyear", "long_noyear", None])),
            ctx.ch(["", f" à {ctx.time()}"]), ".\n")
    doc.add(ctx.ch(["Signé ", "", "-- "]), ctx.DR(title=0.7, style=ctx.ch(["iL", "L", "FL"])), "\n")


def lay_pediatric(ctx: Ctx, doc: Doc) -> None:
    mother = ctx.new_person(sex="F")
    father_first = ctx.new_person(sex="M")
    doc.line(ctx.ch(["PÉDIATRIE - Lettre de sortie", "Kannerklinik - Consultation", "Service de pédiatrie", "Urgences pédiatriques"]))
    doc.add(ctx.ch(["Enfant : ", "Patient : ", ""]), ctx.PAT(with_title=0.0, maiden=0.0), ", ", ctx.born(), " le ", ctx.DOB(),
            " (", ctx.AGE(), ")", ctx.ch(["", " - " + ctx.ipp_label() + " "]))
    if doc.buf[-1].endswith(" "):
        doc.add(ctx.IPP())
    doc.add("\n\n")
    word = ctx.ch(["Nourrisson", "Bébé", "Enfant"]) if ctx.age_years() < 2 else "Enfant"
    doc.add(word, " de ", ctx.AGE(), ", ", ctx.ch(["né à terme", "né à 36 SA", "ancien prématuré de 32 SA"]), ", ",
            ctx.ch(["poids de naissance 3250 g", "allaité", "sous lait 1er âge"]), ", ", "admis le ", ctx.D(ctx.index_date),
            " pour ", ctx.ch(ctx.case["motif"]), ".\n")
    doc.line(clinic(ctx, "hdm", 2))
    doc.line("Examen : " + clinic(ctx, "exam", 2))
    doc.line("Évolution : " + clinic(ctx, "evol"))
    doc.add("Mère : ", ctx.mtitle(mother) if ctx.p(0.5) else "", ctx.ONAME(mother, ctx.ch(["FL", "LF"])), ", ",
            ctx.ch(["GSM ", "tél. "]), ctx.ophone(mobile=True), ". Père : ", ctx.ONAME(father_first, "F"), ".\n")
    if ctx.p(0.5):
        doc.add("Fratrie : un frère de ", (f"{ctx.rng.randrange(3, 9)} ans", AGE), ", en bonne santé.\n")
    doc.add("Contrôle chez le pédiatre traitant, ", ctx.DR(title=1.0), ", dans 48 h.\n")
    doc.line(ctx.ch(["Vaccinations selon le calendrier luxembourgeois.", "Prochain vaccin à 4 mois.", "Carnet de santé vu."]))


def lay_geriatric(ctx: Ctx, doc: Doc) -> None:
    pat = ctx.patient
    doc.line(ctx.ch(["ÉVALUATION GÉRIATRIQUE STANDARDISÉE", "Gériatrie - note d'évaluation", "Consultation gériatrique"]))
    doc.add(ctx.PAT(maiden=0.6), ", ", ctx.born(), " le ", ctx.DOB(), "\n\n")
    doc.add(ctx.ch([f"{ctx.patient_word().capitalize()} de ", f"{ctx.patient_word().capitalize()} âgé{ctx.e()} de "]),
            ctx.AGE(), ", ", ctx.ch(["veuve" if pat.sex == "F" else "veuf", "vivant seul" + ctx.e(),
                                     "en maison de soins (" + ctx.ch(P.OTHER_PLACES[1:4]) + ")"]), ", ",
            ctx.ch(["adressé" + ctx.e() + " pour ", "hospitalisé" + ctx.e() + " pour "]), ctx.ch(ctx.case["motif"]), ".\n")
    doc.line(f"MMSE {ctx.rng.randrange(12, 30)}/30, GDS {ctx.rng.randrange(1, 12)}/15, ADL {ctx.rng.randrange(1, 6)}/6, IADL {ctx.rng.randrange(0, 8)}/8.")
    doc.line(f"Échelle de Norton {ctx.rng.randrange(9, 19)}, MNA {ctx.rng.randrange(10, 28)}/30.")
    if ctx.p(0.4):
        y100 = pat.dob.replace(year=pat.dob.year + 100) if not (pat.dob.month == 2 and pat.dob.day == 29) else None
        if y100 and y100 <= ctx.index_date:
            doc.add(ctx.PATSHORT(), " a fêté ses ", ("100 ans", AGE), " en ", ctx.D(y100, "month_year"), ".\n")
    rel, rp = ctx.relative()
    doc.add("Entourage : ", rel, " (", ctx.mtitle(rp) if ctx.p(0.4) else "", ctx.ONAME(rp), ctx.ch(["", ", " ]))
    if doc.buf[-1] == ", ":
        doc.add((f"{ctx.rng.randrange(50, 80)} ans", AGE))
    doc.add("), passe ", ctx.ch(["tous les jours", "2x/semaine", "le week-end"]), ".\n")
    doc.add("ATCD : ")
    atcd_block(ctx, doc, ctx.rng.randrange(3, 6))
    doc.line("Propositions : " + clinic(ctx, "plan", 2))
    if ctx.p(0.5):
        doc.line(ctx.ch(P.EPONYM_FINDINGS))
    doc.add(ctx.DR(title=1.0), ", gériatre\n")


def lay_lab(ctx: Ctx, doc: Doc) -> None:
    d = ctx.days(0, 5)
    doc.line(ctx.ch(["LABORATOIRE - Résultats", "Résultats de biologie", "Laboratoire de biologie clinique"]))
    doc.add(ctx.PAT(with_title=0.3, maiden=0.0), ctx.ch([" | ", " - "]), ctx.DOB(), ctx.ch([" | ", " - "]), ctx.ipp_label(), " ",
            ctx.IPP(), "\n")
    doc.add("Prélevé le ", ctx.D(d), " ", ctx.time(), ctx.ch([" - Validé le ", " | Validation : "]), ctx.D(d), " ", ctx.time(), "\n")
    labs_block(ctx, doc, ctx.rng.randrange(5, 10))
    if ctx.p(0.5):
        doc.add("Commentaire : ", ctx.ch(["valeur critique communiquée au ", "résultat téléphoné au "]), ctx.DR(title=1.0), " à ",
                ctx.time(), ".\n")
    doc.add("Prescripteur : ", ctx.DR(title=0.7, style=ctx.ch(["L", "iL"])), "\n")


def lay_death(ctx: Ctx, doc: Doc) -> None:
    d = ctx.days(1, 20)
    rel, rp = ctx.relative()
    doc.line(ctx.ch(["CONSTAT DE DÉCÈS", "Note de décès", "Décès"]))
    doc.add(ctx.PAT(maiden=0.5), ", ", ctx.AGE(), ", ", "décédé", ctx.e(), " le ", ctx.D(d), " à ", ctx.time(), " ",
            ctx.ch(["dans le service", "en " + ctx.ch(P.WARDS), "en présence de la famille"]), ".\n")
    doc.add("Cause : ", lc(ctx.ch(ctx.case["diag"])), ctx.ch(["", " dans un contexte de soins palliatifs"]), ".\n")
    doc.add("Famille prévenue : ", rel, ", ", ctx.mtitle(rp), ctx.ONAME(rp), ctx.ch([", GSM ", ", tél. "]),
            ctx.ophone(mobile=True), ".\n")
    doc.add("Pompes funèbres : ", ctx.ch(["contact pris par la famille", "à organiser par la famille"]), ".\n")
    doc.add("Médecin : ", ctx.DR(title=1.0), "\n")


def lay_transfer(ctx: Ctx, doc: Doc) -> None:
    dest = ctx.ch(P.OTHER_PLACES[:6])
    doc.add(ctx.ch(["Demande de transfert : ", "Transfert : ", "Lettre de transfert - "]), dest, "\n\n")
    doc.add("Nous vous adressons ", ctx.PAT(maiden=0.3), " (", ctx.DOB(), ", ", ctx.ipp_label(), " ", ctx.IPP(), ")",
            ", hospitalisé", ctx.e(), " depuis le ", ctx.D(ctx.index_date), " pour ", lc(ctx.ch(ctx.case["diag"])), ".\n")
    doc.line(clinic(ctx, "evol", 2))
    doc.add("Date de transfert souhaitée : ", ctx.D(ctx.days(5, 25), ctx.ch([None, "wd_long", "long"])), ".\n")
    doc.add("Contact dans le service : ", ctx.DR(title=1.0), ", ", ctx.ch(["bip ", "tél. ", "poste "]))
    if doc.buf[-1] == "tél. ":
        doc.add(ctx.hosp_phone())
    else:
        doc.add(str(ctx.rng.randrange(1000, 9999)))
    doc.add(".\n")
    if ctx.p(0.5):
        doc.add("Personne de contact : ", ctx.ONAME(ctx.new_person()), ", ", ctx.ophone(mobile=True), "\n")


def lay_anesthesia(ctx: Ctx, doc: Doc) -> None:
    doc.add("Consultation pré-anesthésique du ", ctx.D(ctx.days(-20, -2)), "\n")
    doc.add(ctx.PAT(with_title=0.6, maiden=0.2), ", ", ctx.AGE(), "\n")
    doc.add("Intervention prévue le ", ctx.D(ctx.index_date), " : ",
            ctx.ch(["PTG droite", "cholécystectomie", "cure de hernie", "coloscopie sous AG", "ablation de matériel"]),
            " (", ctx.DR(title=1.0, style=ctx.ch(["L", "iL"])), ").\n")
    doc.line(f"ASA {ctx.rng.randrange(1, 4)} - Mallampati {ctx.ch(['I', 'II', 'III'])} - poids {ctx.rng.randrange(50, 120)} kg, taille {ctx.rng.randrange(150, 195)} cm.")
    doc.add("ATCD : ")
    atcd_block(ctx, doc, ctx.rng.randrange(1, 4))
    doc.line("Allergies : " + ctx.ch(["aucune connue", "latex", "pénicilline", "iode"]))
    doc.line("Arrêt " + ctx.ch(["de l'apixaban 48 h avant", "du Kardegic : non", "de la metformine la veille"]) + ".")
    doc.add(ctx.DR(title=1.0), ", anesthésiste\n")


def lay_physio(ctx: Ctx, doc: Doc) -> None:
    doc.add("Bilan kinésithérapique - ", ctx.PATSHORT(), " - ", ctx.D(ctx.days(1, 10)), "\n")
    tests = ["Test de Tinetti 18/28.", "Timed Up and Go 19 s.", "Test de Lachman négatif."]
    if "berg" not in ctx.used_tokens:
        tests.append("Échelle de Berg 41/56.")
    test = ctx.ch(tests)
    if "Berg" in test:
        ctx.eponym_tokens.add("berg")  # no kiné called van den Berg in this note
    doc.line(test)
    doc.line(f"Périmètre de marche {ctx.rng.randrange(10, 300)} m avec {ctx.ch(['rollator', 'canne', 'aide d un tiers'])}.")
    doc.add("Objectif : retour à domicile, ", ctx.ch(["escaliers (12 marches)", "transferts autonomes"]), ".\n")
    doc.add("Kiné : ", ctx.ONAME(ctx.new_person(), ctx.ch(["FL", "F", "iL"])), "\n")


def lay_psy(ctx: Ctx, doc: Doc) -> None:
    partner = ctx.new_person()
    doc.add("Entretien psychiatrique du ", ctx.D(ctx.index_date), "\n")
    doc.add(ctx.PAT(maiden=0.3), ", ", ctx.AGE(), ", ", ctx.ch(["employé" + ctx.e() + " de banque", "enseignant" + ctx.e(),
                                                                 "ouvrier" if ctx.patient.sex == "M" else "aide-soignante",
                                                                 "sans emploi", "retraité" + ctx.e()]), ".\n")
    doc.add("Vit avec ", ctx.ch(["son compagnon ", "sa compagne ", "son conjoint ", "sa conjointe "]),
            ctx.ONAME(partner, ctx.ch(["F", "FL"])), ctx.ch([", deux enfants de ", ", un enfant de "]),
            (f"{ctx.rng.randrange(2, 17)} ans", AGE), ".\n")
    doc.line(clinic(ctx, "hdm", 2))
    doc.line(clinic(ctx, "exam", 2))
    doc.line("Plan : " + clinic(ctx, "plan", 2))
    doc.add(ctx.ch(["Prochain entretien le ", "Revu le "]), ctx.D_short(ctx.days(7, 21)), ".\n")


def lay_billing(ctx: Ctx, doc: Doc) -> None:
    """A letter of the billing office to the patient (refund to a bank account)."""
    pat = ctx.patient
    doc.line(f"{ctx.hospital[0]} - Service Facturation")
    doc.line()
    doc.add(ctx.title(pat), (ctx.pname(ctx.ch(["FL", "FLU", "LF"])), PATIENT_NAME), "\n")
    doc.add(ctx.addr_pieces(city=1.0, multiline=0.8, vary=ctx.p(0.5)), "\n\n")
    doc.add(ctx.ch(P.TOWNS_ALONE[:5]), ", le ", ctx.D(ctx.days(20, 60)), "\n\n")
    doc.add("Objet : ", ctx.ch(["remboursement d'un trop-perçu", "votre facture", "demande de prise en charge"]), " - ",
            ctx.stay_label(), " ", ctx.STAY(), "\n")
    if ctx.p(0.6):
        doc.add("Matricule : ", ctx.MATR(), "\n")
    doc.line()
    doc.line("Madame," if pat.sex == "F" else "Monsieur,")
    doc.add("Suite à votre séjour du ", ctx.D(ctx.index_date), " au ", ctx.D(ctx.days(1, 10)), ", nous vous informons que ",
            ctx.ch(["le montant de ", "la somme de "]), f"{ctx.rng.randrange(12, 900)},{ctx.rng.randrange(0, 100):02d} EUR",
            " vous sera remboursé sur le compte ", ctx.IBANT(), ctx.ch(["", " (BIC BCEELULL)", " auprès de votre banque"]),
            ".\n")
    if ctx.p(0.4):
        doc.add("Si ce compte n'est plus valable, merci de nous communiquer votre nouvel IBAN (ancien compte : ",
                ctx.IBANT(ctx.other_iban()), ").\n")
    doc.add("Pour toute question : ", ctx.hosp_phone(), ctx.ch([" ou ", " / "]), ctx.service_email(), ".\n\n")
    doc.line("Veuillez agréer, " + ("Madame" if pat.sex == "F" else "Monsieur") + ", nos salutations distinguées.")
    doc.add(ctx.ONAME(ctx.new_person(), ctx.ch(["FL", "iL"])), ", ", ctx.ch(["gestionnaire", "Service Facturation"]), "\n")


def lay_patient_mail(ctx: Ctx, doc: Doc) -> None:
    """An e-mail written by the patient to the secretariat, pasted into the record."""
    doctor = ctx.new_person()
    sent = ctx.days(-10, 10)
    doc.add("De : ", ctx.EMAILT(), "\n")
    doc.add("Envoyé : ", ctx.D(sent, ctx.ch(["wd_long", None])), " ", ctx.time(), "\n")
    doc.add("À : ", ctx.service_email(), "\n")
    doc.add("Objet : ", ctx.ch(["renouvellement d'ordonnance", "rendez-vous", "résultats", "Fwd: certificat"]), "\n\n")
    doc.add(ctx.ch(["Bonjour Docteur ", "Bonjour Dr ", "Moien Dr "]), ctx.ONAME(doctor, "L"), ",\n")
    k = ctx.rng.randrange(3)
    if k == 0:
        doc.add("Je me permets de vous écrire car je n'ai plus de ", ctx.ch(P.DRUGS).split(" ")[0],
                ". Pourriez-vous me faire une nouvelle ordonnance ? Je passerai la chercher le ",
                ctx.D_short(sent + dt.timedelta(days=ctx.rng.randrange(1, 6))), ".\n")
    elif k == 1:
        doc.add("Je ne pourrai pas venir au rendez-vous du ", ctx.D(ctx.days(3, 30), ctx.ch(["wd_noyear", "long_noyear", None])),
                ". Serait-il possible de le déplacer ? Je suis joignable au ", ctx.PHONE(), ".\n")
    else:
        doc.add("Suite à ma consultation du ", ctx.D(ctx.days(-30, -2)), ", j'aimerais recevoir les résultats de la prise de sang. ",
                "Mon médecin traitant est le ", ctx.DR(title=1.0, style=ctx.ch(["FL", "L"])), ".\n")
    doc.line(ctx.ch(["Merci d'avance.", "Bien à vous,", "Cordialement,", "Villmools Merci,"]))
    doc.add((ctx.pname(ctx.ch(["FL", "FL", "F", "FLU"])), PATIENT_NAME), "\n")
    if ctx.p(0.5):
        doc.add(ctx.ch(["Tél. ", "GSM ", "Tel: "]), ctx.PHONE(), "\n")
    if ctx.p(0.4):
        doc.add(ctx.ch(["Matricule : ", "N° CNS : "]), ctx.MATR(), "\n")
    if ctx.p(0.3):
        doc.add(ctx.addr_pieces(city=0.8, multiline=0.5), "\n")


def lay_rcp(ctx: Ctx, doc: Doc) -> None:
    """Multidisciplinary meeting (RCP / Tumorboard) record for one patient."""
    ctx.case = next(c for c in CASES if c["key"] == "onco")
    d = ctx.days(-10, 10)
    doc.add(ctx.ch(["RCP ONCOLOGIE", "Réunion de concertation pluridisciplinaire", "Tumorboard"]), " du ", ctx.D(d), "\n")
    doc.add("Patient", ctx.e(), " : ", ctx.PAT(with_title=0.3, maiden=0.4), " | ", ctx.ch(["DDN ", "°"]), ctx.DOB(), " | ",
            ctx.ipp_label(), " ", ctx.IPP(), "\n")
    doc.add("Présents : ")
    roles = ["oncologue", "chirurgien", "radiothérapeute", "radiologue", "anatomopathologiste", "infirmière de coordination"]
    for i, role in enumerate(ctx.sample(roles, ctx.rng.randrange(3, 6))):
        person = ctx.new_person(sex="F" if role.startswith("infirm") else None)
        doc.add(", " if i else "", ctx.DR(person, title=0.0 if role.startswith("infirm") else 0.9,
                                           style=ctx.ch(["L", "iL", "FL"])), f" ({role})")
    doc.add("\n")
    doc.add("Histoire : ", ctx.patient_word(), " de ", ctx.AGE(), ", ", lc(ctx.ch(ctx.case["diag"])),
            ", diagnostic posé le ", ctx.D(ctx.days(-90, -15)), ". ", clinic(ctx, "hdm"), "\n")
    doc.add("Imagerie : ", clinic(ctx, "imaging"), "\n")
    doc.add("Décision : ", ctx.ch(["chimiothérapie adjuvante", "surveillance", "chirurgie puis rediscussion",
                                   "radiothérapie stéréotaxique", "soins de support exclusifs"]), ".\n")
    doc.add("Consultation d'annonce prévue le ", ctx.D(ctx.days(12, 25), ctx.ch([None, "wd_noyear", "long"])), ".\n")


def lay_homecare(ctx: Ctx, doc: Doc) -> None:
    """Home care network note (soins à domicile)."""
    d = ctx.days(-5, 30)
    doc.add(ctx.ch(P.OTHER_PLACES[-3:]), " - visite à domicile du ", ctx.D(d), "\n")
    doc.add("Client", ctx.e(), " : ", ctx.PAT(with_title=0.8, maiden=0.3), ", ", ctx.AGE(), "\n")
    doc.add("Adresse : ", ctx.addr_pieces(city=0.8), ctx.ch(["", " (2e étage sans ascenseur)", " - sonner chez le voisin"]), "\n")
    doc.add("Tél. : ", ctx.PHONE(), "\n")
    doc.line(ctx.ch(["Soins d'hygiène, pilulier semainier préparé.", "Pansement de l'ulcère veineux, pas de signe d'infection.",
                     "Injection d'insuline, glycémie 182 mg/dl.", "Aide au lever et à l'habillage."]))
    doc.line(trap_sentence(ctx))
    rel, rp = ctx.relative()
    doc.add("Famille : ", rel, " ", ctx.ONAME(rp, ctx.ch(["FL", "F", "L"])), ctx.ch([" passe le soir.", ", joignable au "]))
    if doc.buf[-1] == ", joignable au ":
        doc.add(ctx.ophone(mobile=True), ".")
    doc.add("\n", ctx.ch(["Soignante : ", "Visite : ", ""]), ctx.nurse(), "\n")


# name, function, weight, patient age profile ("adult", "old", "child", "infant" or "any")
LAYOUTS: list[tuple[str, Callable[[Ctx, Doc], None], int, str]] = [
    ("discharge", lay_discharge, 16, "any"),
    ("consult", lay_consult, 12, "adult"),
    ("emergency", lay_emergency, 10, "any"),
    ("nursing", lay_nursing, 8, "any"),
    ("referral", lay_referral, 7, "adult"),
    ("operative", lay_operative, 5, "adult"),
    ("message", lay_message, 10, "adult"),
    ("german", lay_german, 3, "adult"),
    ("radiology", lay_radiology, 5, "any"),
    ("admin", lay_admin, 5, "any"),
    ("social", lay_social, 3, "old"),
    ("certificate", lay_certificate, 3, "adult"),
    ("prescription", lay_prescription, 3, "adult"),
    ("phonecall", lay_phonecall, 3, "old"),
    ("pediatric", lay_pediatric, 4, "infant"),
    ("geriatric", lay_geriatric, 4, "old"),
    ("lab", lay_lab, 3, "any"),
    ("death", lay_death, 2, "old"),
    ("transfer", lay_transfer, 3, "adult"),
    ("anesthesia", lay_anesthesia, 3, "adult"),
    ("physio", lay_physio, 2, "old"),
    ("psy", lay_psy, 2, "adult"),
    ("billing", lay_billing, 3, "any"),
    ("patient_mail", lay_patient_mail, 4, "adult"),
    ("rcp", lay_rcp, 2, "adult"),
    ("homecare", lay_homecare, 3, "old"),
]


# ====================================================================== writing
def _known(ctx: Ctx) -> dict[str, list[str]]:
    pat = ctx.patient
    names = [pat.first, pat.last, f"{pat.first} {pat.last}"]
    if pat.first2:
        names += [pat.first2, f"{pat.first} {pat.first2} {pat.last}"]
    if pat.maiden:
        names.append(pat.maiden)
    assert pat.address is not None
    iban = pat.iban if not pat.iban_grouped else " ".join(pat.iban[i:i + 4] for i in range(0, len(pat.iban), 4))
    return {
        "names": names,
        "phones": [ph.record for ph in pat.phones],
        "emails": [pat.email],
        "addresses": [pat.address.record],
        "national_ids": [pat.matricule],
        "birth_dates": [pat.dob.isoformat()],
        "local_ids": [pat.ipp],
        "ibans": [iban],
    }


def _make_fakers() -> dict[str, Faker]:
    locs = sorted(set(P.FAKER_LOCALES.values()) | {"nl_BE", "fr_BE", P.FAKER_LU_SURNAMES})
    return {loc: Faker(loc) for loc in locs}


def make_note(i: int, note_seed: int, fakers: dict[str, Faker], with_known: bool, ids: str = "hn"
              ) -> tuple[dict[str, Any], dict[str, Any]]:
    rng = random.Random(note_seed)
    for k, fk in sorted(fakers.items()):
        fk.seed_instance(note_seed + sum(map(ord, k)))
    _names, funcs, weights, profiles = zip(*LAYOUTS, strict=True)
    j = rng.choices(range(len(LAYOUTS)), weights=weights)[0]
    profile = profiles[j]
    if profile == "any":
        profile = rng.choices(["adult", "old", "child", "infant"], weights=[70, 20, 5, 5])[0]
    ctx = Ctx(rng, fakers, profile)
    doc = Doc()
    funcs[j](ctx, doc)
    text = doc.text()
    stripped = text.rstrip()
    spans = [s for s in doc.spans if s[1] <= len(stripped)]
    shift = rng.choice([-1, 1]) * rng.randrange(1, 366)
    nid = f"{ids}-{i:05d}"
    note = {"id": nid, "text": stripped, "known": _known(ctx) if with_known else {}, "shift_days": shift,
            }
    gold = {"id": nid, "spans": spans}
    return note, gold


def write_notes(folder: Path, n: int, seed: int) -> None:
    """Write folder/notes.jsonl and folder/notes_gold.jsonl: n notes, deterministic for (n, seed)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    master = random.Random(seed)
    flags = [k < n // 2 for k in range(n)]
    master.shuffle(flags)
    seeds = [master.getrandbits(48) for _ in range(n)]
    fakers = _make_fakers()
    with (folder / "notes.jsonl").open("w", encoding="utf-8") as fn, \
            (folder / "notes_gold.jsonl").open("w", encoding="utf-8") as fg:
        for i in range(n):
            note, gold = make_note(i, seeds[i], fakers, flags[i], ids=f"s{seed}")
            fn.write(json.dumps(note, ensure_ascii=False) + "\n")
            fg.write(json.dumps(gold, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--n", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    write_notes(args.out_dir, args.n, args.seed)


if __name__ == "__main__":
    main()
