"""Dates as French and Luxembourg clinical notes write them: parse a date's surface, shift it, write it back.

Every form the recognisers find (``anonymisation.deid_recognizers``) is read here:

==========================  ==============================  ===========
form                        examples                        precision
==========================  ==============================  ===========
``dmy``                     14/03/2021, 14.3.21, 1-3-2021   day
``ymd`` (ISO)               2021-03-14, 2021/03/14          day
``text``                    14 mars 2021, 1er avril,        day
                            lundi 14 mars 2021, 3 janv.
``range``                   3 au 7 janvier 2022, 3-4 mai    day
``dm`` (after "le")         14/03                           day
``month_text``              mars 2021, janv. 2021           month
``month_num``               03/2021, 3.2021                 month
``ym`` (ISO)                2021-03                         month
``year``                    2019 (after "en", "né en"...)   year
==========================  ==============================  ===========

A partial date is shifted through a representative day (the 15th of its month, the 1st of July of its
year) and written back at its own precision, so that "mars 2021" and "14 mars 2021" move together.
A surface that has a date's shape but is no real date ("31/02/2021") parses to ``None``: the caller
masks it rather than leaving it as it is.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Literal

__all__ = [
    "MONTHS",
    "MONTH_ABBR_RE",
    "MONTH_RE",
    "WEEKDAYS",
    "WEEKDAY_RE",
    "DateForm",
    "ParsedDate",
    "format_date",
    "parse_date",
    "same_date",
    "shift_date",
]

Precision = Literal["day", "month", "year"]

_FULL = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
         "novembre", "décembre")  # fmt: skip
_ABBR = ("janv", "févr", "mars", "avr", "mai", "juin", "juil", "août", "sept", "oct", "nov", "déc")
WEEKDAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")

# every spelling read -> month number (full names, abbreviations, with and without accents)
MONTHS: dict[str, int] = {}
for _i, (_full, _abbr) in enumerate(zip(_FULL, _ABBR, strict=True), start=1):
    for _s in (_full, _abbr):
        MONTHS[_s] = _i
        MONTHS[unicodedata.normalize("NFKD", _s).encode("ascii", "ignore").decode()] = _i
_FULL_NAMES = frozenset(_FULL) | {unicodedata.normalize("NFKD", f).encode("ascii", "ignore").decode() for f in _FULL}
MONTHS.update({"jan": 1, "fév": 2, "fev": 2, "juill": 7, "sep": 9})
MONTH_RE = "|".join(sorted(MONTHS, key=len, reverse=True))  # longest first: "juillet" before "juil"
# the abbreviations that take a full stop ("janv.", "sept."): the stop belongs to the date
MONTH_ABBR_RE = "|".join(sorted((m for m in MONTHS if m not in _FULL_NAMES), key=len, reverse=True))
WEEKDAY_RE = "|".join(WEEKDAYS)

_Y = r"(?:1[89]\d\d|20\d\d)"
_WD = rf"(?:(?P<wd>{WEEKDAY_RE}),?\s+(?:le\s+)?)?"
_PARSERS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("dmy", re.compile(rf"{_WD}(?P<d>\d{{1,2}})(?P<sep>[/.\-])(?P<m>\d{{1,2}})(?P=sep)(?P<y>\d{{4}}|\d{{2}})", re.I)),
    ("ymd", re.compile(r"(?P<y>\d{4})(?P<sep>[/.\-])(?P<m>\d{1,2})(?P=sep)(?P<d>\d{1,2})")),
    ("text", re.compile(rf"{_WD}(?P<d>1er|1ᵉʳ|premier|\d{{1,2}})\s*(?P<mon>{MONTH_RE})(?P<dot>\.)?(?:\s+(?P<y>\d{{4}}))?",
                        re.I)),
    ("dm", re.compile(r"(?P<d>\d{1,2})(?P<sep>/)(?P<m>\d{1,2})")),
    ("month_text", re.compile(rf"(?P<mon>{MONTH_RE})(?P<dot>\.)?\s+(?P<y>\d{{4}})", re.I)),
    ("month_num", re.compile(r"(?P<m>\d{1,2})(?P<sep>[/.\-])(?P<y>\d{4})")),
    ("ym", re.compile(r"(?P<y>\d{4})(?P<sep>-)(?P<m>\d{2})")),
    ("year", re.compile(r"(?P<y>\d{4})")),
)
_RANGE = re.compile(r"(?P<d1>1er|1ᵉʳ|\d{1,2})(?P<mid>\s+(?:au|et|à|a)\s+(?:le\s+)?|\s*[-–]\s*)(?P<rest>.+)", re.I)
_PRECISION: dict[str, Precision] = {"range": "day", "dmy": "day", "ymd": "day", "text": "day", "dm": "day",
                                    "month_text": "month", "month_num": "month", "ym": "month", "year": "year"}
_NO_YEAR = 2000  # a day without its year is read in a leap year: "29 février" stays valid


@dataclass(frozen=True, slots=True)
class DateForm:
    """How a date was written, so that a shifted date is written the same way."""

    kind: str
    precision: Precision
    sep: str = ""
    pad_day: bool = True
    pad_month: bool = True
    year_digits: int = 4  # 0: no year ("14 mars")
    abbreviated: bool = False
    dot: bool = False
    accented: bool = True
    case: Literal["lower", "title", "upper"] = "lower"
    weekday: bool = False
    weekday_case: Literal["lower", "title", "upper"] = "lower"
    weekday_comma: bool = False
    weekday_le: bool = False
    premier: str = ""  # how the 1st was written: "1er", "1ᵉʳ", "premier" ("" when it was a number)
    range_mid: str = ""  # a range of days ("3 au 7 janvier"): what stands between the two days


@dataclass(frozen=True, slots=True)
class ParsedDate:
    value: date | None  # None: a date's shape but no real date ("31/02/2021")
    form: DateForm
    start: date | None = None  # a range of days: its first day (``value`` is its last)

    @property
    def precision(self) -> Precision:
        return self.form.precision


def _case(s: str) -> Literal["lower", "title", "upper"]:
    letters = [c for c in s if c.isalpha()]
    if letters and all(c.isupper() for c in letters) and len(letters) > 1:
        return "upper"
    return "title" if s[:1].isupper() else "lower"


def _apply_case(s: str, case: str) -> str:
    return s.upper() if case == "upper" else s[:1].upper() + s[1:] if case == "title" else s


def _year(y: str) -> int:
    value = int(y)
    if len(y) == 2:
        value += 1900 if value > 30 else 2000
    return value


def parse_date(surface: str) -> ParsedDate | None:
    """The date ``surface`` stands for and how it is written; None when it has no date's shape.

    A partial date stands for a representative day: the 15th of its month, the 1st of July of its year.
    """
    s = surface.strip()
    r = _RANGE.fullmatch(s)
    if r is not None:
        end = parse_date(r.group("rest"))
        if end is not None and end.form.kind == "text" and not end.form.weekday:
            first = 1 if not r.group("d1").isdigit() else int(r.group("d1"))
            form = replace(end.form, kind="range", range_mid=r.group("mid"))
            if end.value is None:
                return ParsedDate(None, form)
            anchor = end.value if first <= end.value.day else end.value.replace(day=1) - timedelta(days=1)
            try:
                return ParsedDate(end.value, form, anchor.replace(day=first))
            except ValueError:
                return ParsedDate(None, form)
    for kind, rx in _PARSERS:
        m = rx.fullmatch(s)
        if m is None:
            continue
        g = m.groupdict()
        form = DateForm(kind, _PRECISION[kind], sep=g.get("sep") or "")
        if g.get("wd"):
            between = s[m.end("wd") : m.start("d")]
            form = replace(form, weekday=True, weekday_case=_case(g["wd"]),
                           weekday_comma="," in between, weekday_le="le" in between.lower())
        if g.get("mon"):
            mon = g["mon"]
            form = replace(form, abbreviated=mon.lower() not in _FULL_NAMES, dot=bool(g.get("dot")),
                accented=any(ord(c) > 127 for c in mon) or MONTHS[mon.lower()] not in (2, 8, 12),
                case=_case(mon))
            month = MONTHS[mon.lower()]
        elif g.get("m"):
            month = int(g["m"])
            both_two = len(g["m"]) == 2 and len(g.get("d") or "00") == 2  # "30-09-2020": padded style
            form = replace(form, pad_month=g["m"].startswith("0") or both_two or kind in ("ymd", "ym"))
        else:
            month = 7
        if g.get("d"):
            d_text = g["d"]
            day = 1 if not d_text.isdigit() else int(d_text)
            numeric = kind in ("dmy", "ymd", "dm")
            padded = d_text.startswith("0") or (numeric and len(d_text) == 2 and len(g.get("m") or "") == 2)
            form = replace(form, pad_day=padded, premier="" if d_text.isdigit() else d_text)
        else:
            day = 15 if kind in ("month_text", "month_num", "ym") else 1
        y_text = g.get("y")
        if y_text:
            year = _year(y_text)
            form = replace(form, year_digits=len(y_text))
        else:
            year, form = _NO_YEAR, replace(form, year_digits=0)
        if kind == "month_num" and not 1 <= month <= 12:
            return None  # "45.2021" is not a month
        try:
            value = date(year, month, day)
        except ValueError:
            return ParsedDate(None, form)
        if kind == "year" and not 1800 <= year <= 2099:
            return None
        return ParsedDate(value, form)
    return None


def _month_name(month: int, form: DateForm) -> str:
    name = _ABBR[month - 1] if form.abbreviated else _FULL[month - 1]
    if form.abbreviated and form.dot and name not in ("mars", "mai", "juin", "août"):
        name += "."
    if not form.accented:
        name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return _apply_case(name, form.case)


def format_date(d: date, form: DateForm) -> str:
    """``d`` written as ``form`` was."""
    year = ""
    if form.year_digits:
        year = f"{d.year % 100:02d}" if form.year_digits == 2 else f"{d.year:04d}"
    day = f"{d.day:02d}" if form.pad_day else str(d.day)
    month = f"{d.month:02d}" if form.pad_month else str(d.month)
    k = form.kind
    if k == "dmy":
        out = f"{day}{form.sep}{month}{form.sep}{year}"
    elif k == "ymd":
        out = f"{year}{form.sep}{month}{form.sep}{day}"
    elif k == "dm":
        out = f"{day}/{month}"
    elif k in ("text", "range"):
        day_text = (form.premier or "1er") if d.day == 1 else day
        out = f"{day_text} {_month_name(d.month, form)}" + (f" {year}" if year else "")
    elif k == "month_text":
        out = f"{_month_name(d.month, form)} {year}"
    elif k == "month_num":
        out = f"{month}{form.sep}{year}"
    elif k == "ym":
        out = f"{year}-{month}"
    else:
        out = year
    if form.weekday:
        wd = _apply_case(WEEKDAYS[d.weekday()], form.weekday_case)
        out = f"{wd}{',' if form.weekday_comma else ''} {'le ' if form.weekday_le else ''}{out}"
    return out


def shift_date(parsed: ParsedDate, days: int) -> str | None:
    """The date moved by ``days`` and written as it was; None when it is no real date."""
    if parsed.value is None:
        return None
    end = parsed.value + timedelta(days=days)
    out = format_date(end, parsed.form)
    if parsed.start is None:
        return out
    start = parsed.start + timedelta(days=days)
    first = (parsed.form.premier or "1er") if start.day == 1 else str(start.day)
    if (start.year, start.month) != (end.year, end.month):  # "du 30 janvier au 3 février"
        first += f" {_month_name(start.month, parsed.form)}"
        if start.year != end.year and parsed.form.year_digits:
            first += f" {start.year}"
    return f"{first}{parsed.form.range_mid}{out}"


def same_date(parsed: ParsedDate, other: date) -> bool:
    """True when ``parsed`` names ``other`` at its own precision (a year, a month, a day without year)."""
    v = parsed.value
    if v is None:
        return False
    if parsed.precision == "year":
        return v.year == other.year
    if parsed.precision == "month":
        return (v.year, v.month) == (other.year, other.month)
    if not parsed.form.year_digits:
        return (v.month, v.day) == (other.month, other.day)
    return v == other
