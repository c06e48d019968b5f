"""Leak scan: no direct identifier of the landing data may appear in pseudonymised or released data.

Every known identifier of the identity zone (names, birth dates, phones, e-mails, street lines,
matricules, local patient ids) is turned into *keys*: sequences of folded tokens (case folded,
accents removed, and German/Nordic letters transliterated both ways: ü -> u and ue, ß -> ss, ...)
or, for numbers, the digits of consecutive digit groups ("+352 621 12 34 56" holds 352621123456 and
621123456). A text cell is tokenised the same way and its token n-grams and digit groups are looked
up in the keys (hash joins, one pass per column over its distinct values, never one regex per
identifier); e-mails, IBANs (mod-97), international phone numbers and matricules (check digits)
are also found by their shape.

Where each identifier is looked for:

- everywhere (any row of any table, any published text file): matricules, e-mails, IBANs, phone
  numbers of 8 digits or more, local patient ids that mix letters and digits (or have several
  parts, as UUIDs do), and full names (first and last name together, either order);
- in the rows of the person it belongs to only: single names (first, last, other names), birth dates
  (in text, in any format, and as the value of a Date column), street lines, 6- and 7-digit
  phone numbers (old Luxembourg landlines) and purely numeric local ids. A common surname or a
  birth date shared by thousands of persons is no leak in another person's row; the scanned table's
  ``person_id`` must therefore be the person ids the identifiers are keyed by (see
  ``identifiers_from_patients``).

Results are counts of cells (of lines, in text files) by identifier type and table: never values.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import polars as pl

from schemas.matricule import is_valid_matricule

KINDS = ("name", "full_name", "birth_date", "phone", "address", "email", "matricule", "iban", "local_id", "national_id")
EVERYWHERE_PHONE_DIGITS = 8  # national numbers at least this long are looked for in every row
OWN_PHONE_DIGITS = 6  # shorter ones (old 6-digit Luxembourg landlines) in the person's own rows only
MAX_TOKENS = 12  # the longest token sequence looked for (a street line, a long name)
MAX_DIGIT_GROUPS = 8
PERSON = "person_id"

# columns that name public places (a town abroad may be a surname: Metz, Thionville); names are not
# looked for there (the release rebuilds locations from codes: no raw town name is published)
PLACE_COLUMNS: dict[str, tuple[str, ...]] = {"location": ("city", "county", "state")}

# name particles: never looked for alone (every French note holds "de" and "la")
PARTICLES = frozenset({
    "a", "al", "am", "an", "auf", "aus", "ben", "bin", "d", "da", "dal", "das", "de", "degli", "dei", "del", "della",
    "der", "des", "di", "do", "dos", "du", "el", "en", "et", "im", "in", "l", "la", "las", "le", "les", "lo", "los",
    "mac", "mc", "op", "st", "ste", "saint", "sainte", "san", "santa", "ten", "ter", "um", "und", "van", "vande",
    "vander", "vom", "von", "y", "zu", "zum", "zur",
})
# French function words that are also surnames (Sá, Son, Mon...): alone in their person's free text
# they are nearly always the word ("sa fille"), so, like particles, they count only inside a whole name
FUNCTION_WORDS = frozenset({
    "au", "aux", "ce", "ces", "ci", "ca", "elle", "il", "je", "lui", "ma", "me", "mes", "moi", "mon", "ne", "ni",
    "nos", "on", "ou", "par", "pas", "peu", "qui", "que", "sa", "se", "ses", "si", "son", "sur", "ta", "te", "tes",
    "toi", "ton", "tu", "un", "une", "vos", "vous", "nous",
})

# words before ("classification de Wagner", "grade Wagner") or after ("Wagner classification",
# "Parkinson's disease") a surname that make it a medical eponym, not the person's name
EPONYM_BEFORE = frozenset({
    "classification", "contracture", "critere", "criteres", "echelle", "grade", "index", "lymphome", "maladie",
    "manoeuvre", "morbus", "nodule", "nodules", "oesophage", "phenomene", "pied", "sarcome", "score", "signe", "stade",
    "syndrome", "test", "triade", "tumeur",
})
EPONYM_AFTER = frozenset({
    "classification", "criteria", "disease", "grade", "index", "maneuver", "manoeuvre", "reflex", "scale", "score",
    "sign", "stage", "syndrome", "test", "triad",
})

_TOKEN = r"[\p{L}\p{N}]+"
_PIECE = r"[\p{L}\p{N}]+[^\p{L}\p{N}]*"  # a token and the separator after it
_PHONE_SEPARATORS = r"^[ \-/.()+]{1,4}$"  # what may stand between the digit groups of one number
_EMAIL = r"[\w.%+\-]+@[\w\-]+(?:\.[\w\-]+)*\.[A-Za-z]{2,}"
_IBAN_UPPER = r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"  # LU28 0019 4006 4475 0000
_IBAN_GROUPED = r"(?i)\b[a-z]{2}[0-9]{2}(?: [a-z0-9]{4}){2,7}(?: [a-z0-9]{1,4})?\b"  # lu28 0019 4006 ...
_INTL_PHONE = r"\+ ?[0-9]{1,3}(?:[ .\-/()]{0,3}[0-9]+)+"  # +352 621 123 456, +33 (0)6 12 34 56 78
# how people write a 13-digit matricule (1980 0101 123 45): the lengths of its digit groups
MATRICULE_GROUPS = frozenset({"13", "4-4-3-2", "8-3-2", "8-5", "4-4-5", "4-2-2-3-2", "4-2-2-5", "2-2-2-2-3-2"})
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AT": 20, "BA": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18,
    "EE": 20, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GI": 23, "GL": 18, "GR": 27, "HR": 21,
    "HU": 28, "IE": 22, "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24,
    "ME": 22, "MK": 19, "MT": 31, "NL": 18, "NO": 15, "PL": 28, "PT": 25, "RO": 24, "RS": 22, "SE": 24,
    "SI": 19, "SK": 24, "SM": 27, "TR": 26, "UA": 29, "VA": 22, "XK": 20,
}
# country calling codes a known number may be written with (the longest match wins)
CALLING_CODES = frozenset({"1", "7", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45",
                           "46", "47", "48", "49", "351", "352", "353", "354", "355", "356", "357", "358",
                           "359", "370", "371", "372", "373", "380", "381", "382", "385", "386", "387",
                           "389", "420", "421", "423"})
# a national number written with a trunk 0 (06 12 34 56 78) is from abroad: the neighbours' codes
TRUNK_COUNTRIES = ("33", "32", "49", "31", "41", "39", "34", "44", "43", "351")

MONTHS: dict[int, tuple[str, ...]] = {  # folded month names: French, English, German, Luxembourgish
    1: ("janvier", "janv", "jan", "january", "januar", "janner", "jaenner"),
    2: ("fevrier", "fevr", "fev", "feb", "february", "februar"),
    3: ("mars", "mar", "march", "marz", "maerz", "mrz", "maeerz"),
    4: ("avril", "avr", "apr", "april", "abrell"),
    5: ("mai", "may", "mee"),
    6: ("juin", "jun", "june", "juni"),
    7: ("juillet", "juil", "jul", "july", "juli"),
    8: ("aout", "aug", "august"),
    9: ("septembre", "sept", "sep", "september"),
    10: ("octobre", "oct", "october", "oktober", "okt"),
    11: ("novembre", "nov", "november"),
    12: ("decembre", "dec", "december", "dezember", "dez"),
}

_FOLD_BOTH = (("ß", "ss"), ("æ", "ae"), ("œ", "oe"), ("ł", "l"), ("đ", "d"), ("ð", "d"), ("þ", "th"), ("ı", "i"))
_FOLD_PLAIN = (("ø", "o"),)
_FOLD_GERMAN = (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("ø", "oe"), ("å", "aa"))
_GERMAN_LETTERS = "[äöüøå]"


def fold_expr(e: pl.Expr, german: bool = False) -> pl.Expr:
    """Case folded, accents removed; ``german``: ä ö ü ø å written ae oe ue oe aa (else a o u o a)."""
    e = e.str.normalize("NFC").str.to_lowercase()
    for a, b in _FOLD_BOTH + (_FOLD_GERMAN if german else _FOLD_PLAIN):
        e = e.str.replace_all(a, b, literal=True)
    return e.str.normalize("NFKD").str.replace_all(r"\p{M}", "")


def normalise_text(s: str) -> str:
    """Folded letters and digits only (``Müller-Spieß`` -> ``mullerspiess``)."""
    folded = pl.select(fold_expr(pl.lit(s, pl.String))).item()
    return "".join(ch for ch in str(folded) if ch.isalnum())


def _empty(schema: Mapping[str, pl.DataType | type[pl.DataType]]) -> pl.DataFrame:
    return pl.DataFrame(schema=dict(schema))


EVERY_SCHEMA = {"key": pl.String, "kind": pl.String}
OWN_SCHEMA = {PERSON: pl.Int64, "key": pl.String, "kind": pl.String}
BIRTH_SCHEMA = {PERSON: pl.Int64, "birth_date": pl.Date}
BIRTH_KEY_SCHEMA = {"birth_date": pl.Date, "key": pl.String}


@dataclass
class Identifiers:
    """The keys of known identifiers (kept in memory only, never written): ``everywhere`` (key, kind)
    are looked for in every row, ``own`` (person_id, key, kind) in that person's rows, ``births``
    (person_id, birth_date) in that person's Date cells and, written in any of the ways of
    ``birth_keys`` (birth_date, key), in that person's text. Word keys are folded tokens joined by one
    space; digit keys are ``#`` and the digits.

    A birth date's written forms (about 30) are kept once per distinct date, not per person: they
    would be 85% of ``own`` (37 keys a person; 1.8 GB at a million persons)."""

    everywhere: pl.DataFrame = field(default_factory=lambda: _empty(EVERY_SCHEMA))
    own: pl.DataFrame = field(default_factory=lambda: _empty(OWN_SCHEMA))
    births: pl.DataFrame = field(default_factory=lambda: _empty(BIRTH_SCHEMA))
    allowed_emails: frozenset[str] = frozenset()  # e-mails that may be published (a publisher's contact)
    birth_keys: pl.DataFrame = field(default_factory=lambda: _empty(BIRTH_KEY_SCHEMA))
    _index: _Index | None = field(default=None, init=False, repr=False)
    # identifiers with the same keys (self re-keyed from them): their index's key tables are shared
    _same_keys: Identifiers | None = field(default=None, init=False, repr=False)

    def count(self) -> int:
        """How many identifier forms are looked for (a person's birth date counts once per written form)."""
        written = 0
        if self.births.height and self.birth_keys.height:
            forms = self.birth_keys.group_by("birth_date").agg(_n=pl.len())
            written = int(self.births.join(forms, on="birth_date").select(pl.col("_n").sum()).item() or 0)
        return self.everywhere.height + self.own.height + written + self.births.height

    def merge(self, other: Identifiers) -> Identifiers:
        self.everywhere = pl.concat([self.everywhere, other.everywhere]).unique()
        self.own = pl.concat([self.own, other.own]).unique()
        self.births = pl.concat([self.births, other.births]).unique()
        self.birth_keys = pl.concat([self.birth_keys, other.birth_keys]).unique()
        self.allowed_emails = self.allowed_emails | other.allowed_emails
        self._index = self._same_keys = None
        return self

    def rekeyed(self, ids: pl.DataFrame) -> Identifiers:
        """The same identifiers for persons known by other ids: ``ids`` maps ``person_id`` to
        ``new_person_id`` (a person without one loses its own keys and births). Equal to deriving them again
        from the identity frame with its ``person_id`` replaced (no key depends on the id), without the
        derivation's cost."""
        m = ids.select(pl.col(PERSON).cast(pl.Int64), pl.col("new_person_id").cast(pl.Int64).alias("_new"))

        def re(df: pl.DataFrame) -> pl.DataFrame:
            return (df.join(m, on=PERSON, how="left").with_columns(pl.col("_new").alias(PERSON)).drop("_new")
                    .drop_nulls().unique())

        births, own = re(self.births), re(self.own)
        birth_keys = self.birth_keys.filter(pl.col("birth_date").is_in(births["birth_date"].unique().implode()))
        out = Identifiers(self.everywhere, own, births, self.allowed_emails, birth_keys)
        if (own.height, births.height, birth_keys.height) == (self.own.height, self.births.height, self.birth_keys.height):
            # every row kept (only its person_id changed): the same keys, whose index need not be built again
            # (1.4 s for a site of 33,000 persons; the pseudo pass indexes the site's keys before and after)
            out._same_keys = self
        return out

    @property
    def index(self) -> _Index:
        if self._index is None:
            if self._same_keys is not None:
                keys, self._same_keys = self._same_keys.index, None
                self._index = _Index(keys.every, keys.own_keys, keys.first, keys.max_tokens,
                                     self.own.sort("key", PERSON, "kind"), self.births.sort(PERSON, "birth_date"),
                                     keys.every_hashed, keys.own_keys_hashed)
            else:
                self._index = _Index.of(self)
            # the index sorts own and births for its lookups: keep one copy of each, the sorted one
            self.own, self.births = self._index.own, self._index.births
        return self._index


@dataclass(frozen=True)
class _Index:
    """What the matching needs, computed once per set of identifiers."""

    every: pl.DataFrame  # key, kind, sorted by key (looked up by binary search: see _matches)
    own_keys: pl.DataFrame  # key, kind: distinct keys of ``own`` (and written birth dates), sorted by key
    first: pl.Series  # first tokens of every word key, sorted: where an n-gram may start
    max_tokens: int
    own: pl.DataFrame  # ``own`` sorted by key (its rows looked up by key: _rows_of)
    births: pl.DataFrame  # ``births`` sorted by person (looked up by person: _rows_of)
    every_hashed: _Hashed  # ``every`` and ``own_keys`` looked up by their keys' hashes (_matches)
    own_keys_hashed: _Hashed

    @classmethod
    def of(cls, ids: Identifiers) -> _Index:
        own_keys = pl.concat([ids.own.select("key", "kind"),
                              ids.birth_keys.select("key", kind=pl.lit("birth_date"))]).unique()
        keys = pl.concat([ids.everywhere.select("key"), own_keys.select("key")]).unique()
        words = keys.filter(~pl.col("key").str.starts_with("#"))
        n = words.select(pl.col("key").str.count_matches(" ").max()).item()
        every, own_keys = ids.everywhere.sort("key"), own_keys.sort("key")
        return cls(every, own_keys,
                   words.select(pl.col("key").str.split(" ").list.first()).to_series().unique().sort(),
                   min(MAX_TOKENS, int(n or 0) + 1), ids.own.sort("key", PERSON, "kind"),
                   ids.births.sort(PERSON, "birth_date"), _Hashed.of(every), _Hashed.of(own_keys))


@dataclass(frozen=True)
class _Hashed:
    """The rows of a key table found by their keys' 64-bit hashes: an integer binary search in the
    sorted hashes, each candidate then compared on the key itself (a collision finds nothing false).
    A string binary search (``_rows_of``) and a join on the keys found took 0.5-0.8 s for the ~300,000
    distinct keys a table part's values give against 735,000 keys of 33,000 persons; a hash join would
    hash the whole key table at each call. 12 bytes a key (hash and row)."""

    hashes: npt.NDArray[np.uint64]  # sorted
    rows: npt.NDArray[np.int32]  # the row of each hash

    @classmethod
    def of(cls, table: pl.DataFrame) -> _Hashed:
        h = table["key"].hash(seed=_KEY_SEED).to_numpy()
        order = np.argsort(h, kind="stable")
        return cls(h[order], order.astype(np.int32))

    def pairs(self, table: pl.DataFrame, keys: pl.Series) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        """(i, r): every pair of ``keys[i]`` and row r of ``table`` (the frame this was built on) with the same key."""
        none = np.zeros(0, dtype=np.int64)
        if not len(keys) or not len(self.hashes):
            return none, none
        wanted = keys.hash(seed=_KEY_SEED).to_numpy()
        by = np.argsort(wanted)  # the needles in order: the searches walk the hashes once (~7x faster)
        ordered = wanted[by]
        lo = np.searchsorted(self.hashes, ordered, side="left")
        hi = np.searchsorted(self.hashes, ordered, side="right")
        hit = np.flatnonzero(hi > lo)
        if not hit.size:
            return none, none
        n = (hi - lo)[hit]
        which = np.repeat(by[hit], n)
        at = np.repeat(lo[hit], n) + (np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n))
        rows = self.rows[at]
        same = (table["key"].gather(rows) == keys.gather(which)).fill_null(False).to_numpy()
        return which[same], rows[same]


_KEY_SEED = 20_261_208  # any fixed seed: both sides of a lookup are hashed in the same process


# --------------------------------------------------------------------------- identifiers -> keys


def _tokens(e: pl.Expr, german: bool = False) -> pl.Expr:
    return fold_expr(e, german).str.extract_all(_TOKEN)


def _gram(tokens: pl.Expr) -> pl.Expr:
    return tokens.list.join(" ")


_ASCII_NON_DIGITS = {c: None for c in range(128) if not chr(c).isdigit()}


def _digits_of(raw: str) -> str:
    """The characters of ``raw`` that are digits (``str.isdigit``: also other scripts' digits)."""
    if raw.isascii():  # a translate table: 3x faster than a loop over the characters (phones, ids)
        return raw.translate(_ASCII_NON_DIGITS)
    return "".join(ch for ch in raw if ch.isdigit())


def phone_forms(raw: str) -> tuple[str, set[str]]:
    """A known phone number: its national number and the digit strings it may be written as
    (national, with the country code, with 00 and the country code, with a trunk 0)."""
    s = raw.strip()
    digits = _digits_of(s)
    codes: tuple[str, ...]
    if s.startswith("+") or digits.startswith("00"):
        rest = digits[2:] if not s.startswith("+") else digits
        cc = rest[:3] if rest[:3] in CALLING_CODES else rest[:2] if rest[:2] in CALLING_CODES else \
            rest[:1] if rest[:1] in CALLING_CODES else ""
        national = rest[len(cc):]
        if national.startswith("0"):  # +33 (0)6 12 ...
            national = national[1:]
        codes = (cc,) if cc else ()
        trunk = bool(cc) and cc != "352"
    elif digits.startswith("0"):  # a national number from abroad (06 12 34 56 78)
        national, codes, trunk = digits[1:], TRUNK_COUNTRIES, True
    else:  # a Luxembourg number without its code (no trunk prefix there)
        national, codes, trunk = digits, ("352",), False
    forms = {national} | {c + national for c in codes} | {"00" + c + national for c in codes}
    if trunk:
        forms.add("0" + national)
    return national, forms


def _names(patients: pl.DataFrame, places: set[str]) -> tuple[list[pl.DataFrame], list[pl.DataFrame]]:
    """(everywhere, own) keys of names: full names anywhere, single names and each name in its
    person's rows."""
    every: list[pl.DataFrame] = []
    own: list[pl.DataFrame] = []
    cols = [c for c in ("first_name", "last_name") if c in patients.columns]
    if not cols:
        names = pl.DataFrame(schema={PERSON: pl.Int64})
    else:
        names = patients.select(PERSON, *[pl.col(c).cast(pl.String) for c in cols])
    variants: dict[str, list[pl.Expr]] = {c: [_tokens(pl.col(c)), _tokens(pl.col(c), True)] for c in cols}
    singles: list[pl.DataFrame] = []
    for c in cols:
        for v in variants[c]:
            singles.append(names.select(PERSON, toks=v))
    if {"first_name", "last_name"} <= set(cols):
        for f in variants["first_name"]:
            for last in variants["last_name"]:
                pair = names.select(f=_gram(f), last=_gram(last)).filter(
                    (pl.col("f").str.len_chars() > 0) & (pl.col("last").str.len_chars() > 0))
                every.append(pair.select(key=pl.col("f") + " " + pl.col("last")))
                every.append(pair.select(key=pl.col("last") + " " + pl.col("f")))
    if "other_names" in patients.columns:  # maiden names, aliases: "First Maiden | Alias"
        other = (patients.select(PERSON, entry=pl.col("other_names").cast(pl.String).str.split("|"))
                 .explode("entry").filter(pl.col("entry").str.strip_chars().str.len_chars() > 0))
        for german in (False, True):
            toks = other.select(PERSON, toks=_tokens(pl.col("entry"), german))
            singles.append(toks)
            full = toks.filter(pl.col("toks").list.len() >= 2)
            every.append(full.select(key=_gram(pl.col("toks"))))
            every.append(full.select(key=_gram(pl.concat_list([pl.col("toks").list.slice(1), pl.col("toks").list.slice(0, 1)]))))
    for s in singles:
        s = s.filter(pl.col("toks").list.len() > 0)
        # the whole name ("jean paul", "van den berg"), and each part but particles and public places
        own.append(s.filter(pl.col("toks").list.len() >= 2).select(PERSON, key=_gram(pl.col("toks"))))
        parts = s.select(PERSON, key=pl.col("toks")).explode("key")
        own.append(parts.filter((pl.col("key").str.len_chars() >= 2)
                                & ~pl.col("key").is_in(sorted(PARTICLES | FUNCTION_WORDS | places))))
    every = [e.with_columns(kind=pl.lit("full_name")) for e in every]
    own = [o.with_columns(kind=pl.lit("name")) for o in own]
    return every, own


def _birth_keys(births: pl.DataFrame) -> pl.DataFrame:
    """birth_date, key: each distinct birth date of ``births`` in the ways people write it (1980-01-01,
    01/01/1980, 01.01.80, 1er janvier 1980, January 1st, 1980, 19800101, ...)."""
    days = births.select(pl.col("birth_date").unique()).drop_nulls()
    if days.is_empty():
        return _empty(BIRTH_KEY_SCHEMA)
    b = pl.col("birth_date")
    y, m, d = b.dt.year().cast(pl.String), b.dt.month(), b.dt.day()
    yy = (b.dt.year() % 100).cast(pl.String).str.zfill(2)
    m1, mm = m.cast(pl.String), m.cast(pl.String).str.zfill(2)
    d1, dd = d.cast(pl.String), d.cast(pl.String).str.zfill(2)
    numeric = [
        pl.concat_str([y, mm, dd], separator=" "), pl.concat_str([y, m1, d1], separator=" "),
        pl.concat_str([dd, mm, y], separator=" "), pl.concat_str([d1, m1, y], separator=" "),
        pl.concat_str([dd, mm, yy], separator=" "), pl.concat_str([d1, m1, yy], separator=" "),
        pl.concat_str([y, mm, dd]), pl.concat_str([dd, mm, y]), pl.concat_str([dd, mm, yy]),
    ]
    # month first (07/24/1980) only where no day-first date reads the same: 07/11/2019 is the 7th of
    # November in a European note, a date of its own (a 100,000-patient run was blocked on one)
    us = [pl.concat_str([mm, dd, y], separator=" "), pl.concat_str([m1, d1, y], separator=" ")]
    frames = [days.select("birth_date", key=e) for e in numeric]
    frames += [days.filter((d > 12) | (d == m)).select("birth_date", key=e) for e in us]
    month_names = pl.DataFrame([(mo, n) for mo, names in MONTHS.items() for n in names],
                               schema={"_m": pl.Int8, "_name": pl.String}, orient="row")
    ordinal = (pl.when(d.is_in([1, 21, 31])).then(pl.lit("st")).when(d.is_in([2, 22])).then(pl.lit("nd"))
               .when(d.is_in([3, 23])).then(pl.lit("rd")).otherwise(pl.lit("th")))
    day_forms = pl.concat([
        days.select("birth_date", _day=d1), days.select("birth_date", _day=dd),
        days.select("birth_date", _day=d1 + ordinal),
        days.filter(d == 1).select("birth_date", _day=pl.lit("1er")),
        days.filter(d == 1).select("birth_date", _day=pl.lit("premier")),
    ]).unique()
    named = day_forms.with_columns(_m=m.cast(pl.Int8), _y=y).join(month_names, on="_m")
    frames.append(named.select("birth_date", key=pl.concat_str(["_day", "_name", "_y"], separator=" ")))
    frames.append(named.select("birth_date", key=pl.concat_str(["_name", "_day", "_y"], separator=" ")))
    return pl.concat(frames).unique().select("birth_date", "key")


def _address_keys(patients: pl.DataFrame) -> pl.DataFrame:
    """person_id, key: the street line (12 rue de la gare), without its number (rue de la gare, when
    that is more than one short word) and with the number after it (rue de la gare 12)."""
    out = []
    for german in (False, True):
        t = patients.select(PERSON, toks=_tokens(pl.col("address").cast(pl.String), german)).filter(
            pl.col("toks").list.len() > 0)
        out.append(t.select(PERSON, key=_gram(pl.col("toks"))))
        numbered = t.filter(pl.col("toks").list.first().str.contains(r"^[0-9]") & (pl.col("toks").list.len() >= 2))
        street = numbered.with_columns(rest=pl.col("toks").list.slice(1), no=pl.col("toks").list.first())
        out.append(street.select(PERSON, key=_gram(pl.col("rest")) + " " + pl.col("no")))
        out.append(street.filter((pl.col("rest").list.len() >= 2) | (pl.col("rest").list.first().str.len_chars() >= 6))
                   .select(PERSON, key=_gram(pl.col("rest"))))
    return pl.concat(out)


IDENTIFIER_CHUNK = 50_000  # persons whose keys are derived at once (the derivation's working memory: ~5 KB a person)


def identifiers_from_patients(patients: pl.DataFrame, *, allowed_emails: Iterable[str] = ()) -> Identifiers:
    """The keys of the identity frame ``patients``, derived ``IDENTIFIER_CHUNK`` persons at a time (the
    keys of a million persons take ~0.5 GB; deriving them at once took 1.6 GB for 360,000): see
    :func:`_identifiers_of`."""
    allowed_emails = list(allowed_emails)
    if patients.height <= IDENTIFIER_CHUNK:
        return _identifiers_of(patients, allowed_emails=allowed_emails)
    # chunks of whole persons (a person of two sites has two rows): own keys and births of different
    # chunks never repeat, so they are only concatenated (a unique over millions of strings takes
    # hundreds of MB); the everywhere keys (a name two persons share) are made unique once
    n = -(-patients.height // IDENTIFIER_CHUNK)
    by_row = pl.int_range(pl.len(), dtype=pl.Int64) % n  # rows without a person: any chunk
    chunk = (pl.when(pl.col(PERSON).is_null()).then(by_row)
             .otherwise((pl.col(PERSON).cast(pl.Int64).hash(seed=0) % n).cast(pl.Int64))
             if PERSON in patients.columns else by_row)
    grouped = patients.with_columns(_chunk=chunk).partition_by("_chunk", include_key=False, maintain_order=True)
    parts = [_identifiers_of(g, allowed_emails=allowed_emails, dates=False) for g in grouped]
    del grouped
    births = pl.concat([p.births for p in parts])
    return Identifiers(
        pl.concat([p.everywhere for p in parts]).unique(),
        pl.concat([p.own for p in parts]),
        births,
        frozenset.intersection(*(p.allowed_emails for p in parts)),  # a patient's own e-mail in any part: never allowed
        _birth_keys(births).filter(pl.col("key").str.len_chars() >= 2),  # once for every distinct date
    )


def _identifiers_of(patients: pl.DataFrame, *, allowed_emails: Iterable[str] = (), dates: bool = True) -> Identifiers:
    """The keys of the identity frame ``patients`` (columns as ``identity_frame`` names them; any may be
    absent). Its ``person_id`` must be the person ids of the tables to be scanned: the identity zone's
    own ids to mask free text before re-keying, the pseudonymous ids (``lake/identity/pseudonyms``)
    for the pseudo zone, the released ids for a release. Without ``person_id`` nothing is looked for
    by person. ``allowed_emails``: e-mails that may be published (the release's contact); a
    patient's own e-mail is never allowed."""
    if PERSON not in patients.columns:
        patients = patients.with_columns(pl.lit(None, pl.Int64).alias(PERSON))
    patients = patients.with_columns(pl.col(PERSON).cast(pl.Int64))
    every, own = _names(patients, public_place_names())
    if "birth_date" in patients.columns:
        births = patients.select(PERSON, birth_date=pl.col("birth_date").cast(pl.Date)).drop_nulls().unique()
        birth_keys = _birth_keys(births).filter(pl.col("key").str.len_chars() >= 2) if dates else _empty(BIRTH_KEY_SCHEMA)
    else:
        births, birth_keys = _empty(BIRTH_SCHEMA), _empty(BIRTH_KEY_SCHEMA)
    if "address" in patients.columns:
        own.append(_address_keys(patients).with_columns(kind=pl.lit("address")))
    rows_every: list[tuple[str, str]] = []
    rows_own: list[tuple[int | None, str, str]] = []
    if "phone" in patients.columns:
        for pid, raw in patients.select(PERSON, pl.col("phone").cast(pl.String)).drop_nulls("phone").unique().iter_rows():
            national, forms = phone_forms(raw)
            if len(national) >= EVERYWHERE_PHONE_DIGITS:
                rows_every.extend(("#" + f, "phone") for f in forms)
            elif len(national) >= OWN_PHONE_DIGITS:
                rows_own.extend((pid, "#" + f, "phone") for f in forms)
    if "matricule" in patients.columns:
        for raw in patients["matricule"].cast(pl.String).drop_nulls().unique().to_list():
            digits = _digits_of(raw)
            if len(digits) >= EVERYWHERE_PHONE_DIGITS:
                rows_every.append(("#" + digits, "matricule"))
    if "other_ids" in patients.columns:  # SSN, passport, driver's licence: "999-12-3456 | X123456X"
        other = (patients.select(PERSON, entry=pl.col("other_ids").cast(pl.String).str.split("|")).explode("entry")
                 .drop_nulls("entry").with_columns(toks=_tokens(pl.col("entry"))).unique(maintain_order=True))
        for pid, raw, toks in other.iter_rows():
            digits, key = _digits_of(raw), " ".join(toks)
            has_letter = any(c.isalpha() for c in key)
            if not has_letter and len(digits) >= EVERYWHERE_PHONE_DIGITS:  # 999-12-3456: its digits, however grouped
                rows_every.append(("#" + digits, "national_id"))
            elif has_letter and len(digits) >= 4 and len(key) >= 5:  # X53631011X, S99940903
                rows_every.append((key, "national_id"))
            elif not has_letter and len(digits) >= OWN_PHONE_DIGITS:  # a short number: beside its own person only
                rows_own.append((pid, "#" + digits, "national_id"))
            elif len(key) >= 6:
                rows_own.append((pid, key, "national_id"))
    known_emails: set[str] = set()
    if "email" in patients.columns:
        known_emails = {e.strip().lower() for e in patients["email"].cast(pl.String).drop_nulls().to_list()}
    if "patient_id" in patients.columns:
        local = patients.select(PERSON, toks=_tokens(pl.col("patient_id").cast(pl.String))).filter(pl.col("toks").list.len() > 0)
        for pid, toks in local.iter_rows():
            key = " ".join(toks)
            has_letter, has_digit = any(c.isalpha() for c in key), any(c.isdigit() for c in key)
            if len(toks) >= 2 or (has_letter and has_digit and len(key) >= 5):
                rows_every.append((key, "local_id"))
            elif len(key) >= 6:  # a number or a word: only beside its own person
                rows_own.append((pid, key, "local_id"))
    every.append(pl.DataFrame(rows_every, schema=EVERY_SCHEMA, orient="row"))
    own.append(pl.DataFrame(rows_own, schema=OWN_SCHEMA, orient="row"))
    everywhere = pl.concat([e.select("key", "kind") for e in every]).filter(pl.col("key").str.len_chars() >= 2).unique()
    own_all = (pl.concat([o.select(pl.col(PERSON).cast(pl.Int64), "key", "kind") for o in own])
               .drop_nulls().filter(pl.col("key").str.len_chars() >= 2).unique())
    allowed = frozenset(e.strip().lower() for e in allowed_emails) - known_emails
    return Identifiers(everywhere, own_all, births.drop_nulls(), allowed, birth_keys)


def public_place_names() -> set[str]:
    """Commune, canton and country names (folded): public values that a surname may share (Biwer,
    Wiltz); never looked for as a single name."""
    from schemas.geo import COUNTRY, communes

    names = pl.DataFrame({"n": [COUNTRY, *[c.name for c in communes()], *[c.canton for c in communes()]]})
    folded = names.select(fold_expr(pl.col("n")).str.replace_all(r"[^\p{L}\p{N}]", ""))["n"].to_list()
    return {str(n) for n in folded if n}


# --------------------------------------------------------------------------- text -> keys


def _iban_ok(candidate: str) -> bool:
    compact = "".join(candidate.split()).upper()
    if IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _iban_valid(candidate: str) -> bool:
    """A valid IBAN, or one followed by a word the pattern took along (LU28 0019 ... 0000 ET)."""
    groups = candidate.split()
    return any(_iban_ok(" ".join(groups[:n])) for n in range(len(groups), 0, -1))


def _shape_hits(values: pl.DataFrame, ids: Identifiers) -> list[pl.DataFrame]:
    """(vid, kind) of e-mails, IBANs and international phone numbers found by their shape."""
    v = pl.col("value")
    out: list[pl.DataFrame] = []
    emails = (values.select("vid", e=v.str.extract_all(_EMAIL)).explode("e").drop_nulls("e")
              .with_columns(e=pl.col("e").str.to_lowercase()))
    if emails.height:
        out.append(emails.filter(~pl.col("e").is_in(sorted(ids.allowed_emails))).select("vid", kind=pl.lit("email")))
    ibans = pl.concat([values.select("vid", i=v.str.extract_all(_IBAN_UPPER)),
                       values.select("vid", i=v.str.extract_all(_IBAN_GROUPED))]).explode("i").drop_nulls("i")
    if ibans.height:
        valid = {c for c in ibans["i"].unique().to_list() if _iban_valid(c)}
        out.append(ibans.filter(pl.col("i").is_in(sorted(valid))).select("vid", kind=pl.lit("iban")))
    phones = values.select("vid", p=v.str.extract_all(_INTL_PHONE)).explode("p").drop_nulls("p")
    if phones.height:
        out.append(phones.filter(pl.col("p").str.count_matches(r"[0-9]") >= EVERYWHERE_PHONE_DIGITS)
                   .select("vid", kind=pl.lit("phone")))
    return out


def _pieces(texts: pl.DataFrame) -> pl.DataFrame:
    """(i, vid, tok, sep) of every token of ``texts`` (vid, text), in order."""
    p = texts.select("vid", piece=pl.col("text").str.extract_all(_PIECE)).explode("piece").drop_nulls("piece")
    return p.select(
        "vid", tok=pl.col("piece").str.extract(r"^([\p{L}\p{N}]+)", 1),
        sep=pl.col("piece").str.replace(r"^[\p{L}\p{N}]+", ""),
    ).with_row_index("i").with_columns(pl.col("i").cast(pl.Int64))


def _word_grams(toks: pl.DataFrame, idx: _Index) -> pl.DataFrame:
    """(vid, key, i, end) of token n-grams that start with the first token of some key (tokens i..end)."""
    distinct = toks["tok"].drop_nulls().unique()
    starts = distinct.filter(_in_sorted(distinct, idx.first))
    cur = toks.filter(pl.col("tok").is_in(starts.implode())).select("vid", "i", key="tok")
    grams = [cur.select("vid", "key", "i", end="i")]
    nxt = toks.select(j="i", _vid="vid", _tok="tok")
    for k in range(1, idx.max_tokens):
        if cur.is_empty():
            break
        cur = (cur.with_columns(j=pl.col("i") + k).join(nxt, on="j").filter(pl.col("_vid") == pl.col("vid"))
               .select("vid", "i", key=pl.col("key") + " " + pl.col("_tok")))
        grams.append(cur.select("vid", "key", "i", end=pl.col("i") + k))
    return pl.concat(grams)


def _eponyms(grams: pl.DataFrame, toks: pl.DataFrame) -> pl.Series:
    """For each gram (vid, i, end), whether it stands as a medical eponym: "classification de Wagner",
    "maladie de Parkinson", "signe de Babinski", "Parkinson's disease"."""
    at = toks.select(j="i", _vid="vid", _tok="tok")

    def token(offset: pl.Expr, name: str) -> pl.DataFrame:
        g = grams.with_row_index("_g").with_columns(j=offset)
        return (g.join(at, on="j", how="left").with_columns(
            pl.when(pl.col("_vid") == pl.col("vid")).then(pl.col("_tok")).alias(name)).sort("_g").select(name))

    ctx = pl.concat([token(pl.col("i") - 2, "p2"), token(pl.col("i") - 1, "p1"), token(pl.col("end") + 1, "n1"),
                     token(pl.col("end") + 2, "n2")], how="horizontal")
    return ctx.select(
        (pl.col("p1").is_in(sorted(EPONYM_BEFORE))
         | (pl.col("p1").is_in(["de", "d", "du", "of"]) & pl.col("p2").is_in(sorted(EPONYM_BEFORE)))
         | pl.col("n1").is_in(sorted(EPONYM_AFTER))
         | ((pl.col("n1") == "s") & pl.col("n2").is_in(sorted(EPONYM_AFTER)))).fill_null(False).alias("eponym")
    ).to_series()


def _digit_runs(toks: pl.DataFrame) -> pl.DataFrame:
    """(vid, digits, groups) of consecutive digit groups of one number: separated by spaces, dashes,
    slashes, brackets, plus signs or dots (a dot only between groups of at most 3 digits: 1234.56
    is a decimal number, 26.12.34.56 a phone number)."""
    d = toks.with_columns(digit=pl.col("tok").str.contains(r"^[0-9]+$"), n=pl.col("tok").str.len_chars())
    nxt = d.select(j="i", _vid="vid", _tok="tok", _digit="digit", _n="n", _sep="sep")
    link = (d.filter(pl.col("digit")).with_columns(j=pl.col("i") + 1).join(nxt, on="j")
            .filter((pl.col("_vid") == pl.col("vid")) & pl.col("_digit")
                    & pl.col("sep").str.contains(_PHONE_SEPARATORS)
                    & (~pl.col("sep").str.contains(".", literal=True) | ((pl.col("n") <= 3) & (pl.col("_n") <= 3))))
            .select("i", joins=pl.lit(True)))
    d = d.join(link, on="i", how="left").with_columns(pl.col("joins").fill_null(False))
    cur = d.filter(pl.col("digit")).select("vid", "i", "joins", digits="tok", groups=pl.col("n").cast(pl.String))
    runs = [cur.select("vid", "digits", "groups")]
    nxt = d.select(j="i", _tok="tok", _n="n", _joins="joins")
    for k in range(1, MAX_DIGIT_GROUPS):
        cur = cur.filter(pl.col("joins"))
        if cur.is_empty():
            break
        cur = cur.with_columns(j=pl.col("i") + k).join(nxt, on="j").select(
            "vid", "i", joins=pl.col("_joins"), digits=pl.col("digits") + pl.col("_tok"),
            groups=pl.col("groups") + "-" + pl.col("_n").cast(pl.String))
        runs.append(cur.select("vid", "digits", "groups"))
    return pl.concat(runs).filter(pl.col("digits").str.len_chars().is_between(OWN_PHONE_DIGITS, 17))


@dataclass(frozen=True)
class _ValueHits:
    every: pl.DataFrame  # value, kind: found in any row
    own: pl.DataFrame  # value, key, kind: found only where the key is the row's person's


def _in_sorted(values: pl.Series, keys: pl.Series) -> pl.Series:
    """Whether each of ``values`` is one of ``keys`` (sorted), by binary search: ``is_in`` would build a
    hash set of the keys at every call (a million persons' first tokens: 95% of a release's leak scan)."""
    if keys.is_empty() or values.is_empty():
        return pl.Series(values.name, [False] * values.len(), pl.Boolean)
    at = keys.gather(keys.search_sorted(values, side="left").clip(0, keys.len() - 1))
    return (at == values).fill_null(False)


def _rows_of(table: pl.DataFrame, values: pl.Series, on: str) -> pl.DataFrame:
    """The rows of ``table`` (sorted by ``on``) whose ``on`` is one of ``values``, each row once, found by
    binary search. A hash join would hash the millions of rows of a million persons' identifiers at
    every call (3 s for each part of a table, 30 min for a release of a million patients)."""
    column, values = table[on], values.drop_nulls().unique()
    spans = pl.DataFrame({"_lo": column.search_sorted(values, side="left"),
                          "_hi": column.search_sorted(values, side="right")}).filter(pl.col("_hi") > pl.col("_lo"))
    return table[spans.select(_i=pl.int_ranges("_lo", "_hi")).explode("_i")["_i"]]


def _matches(found: pl.DataFrame, table: pl.DataFrame, hashed: _Hashed) -> pl.DataFrame:
    """``found.join(table, on="key")`` (rows in another order), the pairs found through ``hashed``
    (the _Hashed of ``table``)."""
    i, r = hashed.pairs(table, found["key"])
    return pl.concat([found[i], table[r].drop("key")], how="horizontal")


def _value_hits(values: pl.Series, ids: Identifiers) -> _ValueHits:
    """What the distinct non-null ``values`` hold."""
    idx = ids.index
    vals = values.cast(pl.String).drop_nulls().unique().to_frame("value").with_row_index("vid").with_columns(
        pl.col("vid").cast(pl.Int64))
    empty = _ValueHits(_empty({"value": pl.String, "kind": pl.String}),
                       _empty({"value": pl.String, "key": pl.String, "kind": pl.String}))
    if vals.is_empty():
        return empty
    plain = vals.select("vid", text=fold_expr(pl.col("value")))
    german = vals.filter(pl.col("value").str.normalize("NFC").str.to_lowercase().str.contains(_GERMAN_LETTERS)).select(
        "vid", text=fold_expr(pl.col("value"), True))
    toks = _pieces(pl.concat([plain, german]))
    keys = [_word_grams(toks, idx)] if idx.first.len() else []
    hits = _shape_hits(vals, ids)
    runs = _digit_runs(toks)
    keys.append(runs.select("vid", key="#" + pl.col("digits")))
    shaped = runs.filter((pl.col("digits").str.len_chars() == 13) & pl.col("groups").is_in(sorted(MATRICULE_GROUPS)))
    if shaped.height:
        valid = [m for m in shaped["digits"].unique().to_list() if is_valid_matricule(m)]
        hits.append(shaped.filter(pl.col("digits").is_in(valid)).select("vid", kind=pl.lit("matricule")))
    allkeys = pl.concat([k.select("vid", "key") for k in keys]).unique()
    hits.append(_matches(allkeys, idx.every, idx.every_hashed).select("vid", "kind"))
    every = pl.concat([h.select("vid", "kind") for h in hits]).unique().join(vals, on="vid").select("value", "kind")
    own = _matches(allkeys, idx.own_keys, idx.own_keys_hashed)
    if keys and own.height and (own["kind"] == "name").any():
        # a surname used as a medical eponym in its person's own note is no leak of that name
        names = _matches(keys[0], idx.own_keys, idx.own_keys_hashed).filter(pl.col("kind") == "name")
        if names.height:
            names = names.with_columns(_eponym=_eponyms(names, toks))
            plain_names = names.filter(~pl.col("_eponym")).select("vid", "key", "kind").unique()
            own = pl.concat([own.filter(pl.col("kind") != "name"), plain_names])
    own = own.join(vals, on="vid").select("value", "key", "kind").unique()
    return _ValueHits(every, own)


def _row_hits(col: pl.Series, persons: pl.Series | None, ids: Identifiers) -> pl.DataFrame:
    """(row, kind) of the cells of ``col`` that hold an identifier (``persons``: each row's person)."""
    found = _value_hits(col, ids)
    frame = pl.DataFrame({"_v": col.cast(pl.String)}).with_row_index("row")
    out = [frame.join(found.every, left_on="_v", right_on="value").select("row", "kind")]
    if persons is not None and found.own.height:
        rows = frame.with_columns(_p=persons.cast(pl.Int64)).join(found.own, left_on="_v", right_on="value")
        dated = pl.col("kind") == "birth_date"
        words = rows.filter(~dated)
        out.append(words.join(_rows_of(ids.index.own, words["key"], "key"), left_on=["_p", "key", "kind"],
                              right_on=[PERSON, "key", "kind"], how="semi").select("row", "kind"))
        # a written birth date: one of the forms of the row's person's own birth date
        written = rows.filter(dated)
        out.append(written.join(ids.birth_keys, on="key")
                   .join(_rows_of(ids.index.births, written["_p"], PERSON), left_on=["_p", "birth_date"],
                         right_on=[PERSON, "birth_date"], how="semi")
                   .select("row", "kind"))
    return pl.concat(out).unique()


def _text_columns(df: pl.DataFrame) -> list[str]:
    return [c for c, t in df.schema.items() if t == pl.String or isinstance(t, pl.Categorical | pl.Enum)]


def _date_columns(df: pl.DataFrame) -> list[str]:
    return [c for c, t in df.schema.items() if isinstance(t, pl.Date | pl.Datetime)]


@dataclass
class TableHits:
    counts: Counter[str]  # kind -> cells
    birth_dates: pl.DataFrame  # person_id, cells: Date cells (and text cells) holding the person's birth date


def inspect_table(df: pl.DataFrame, ids: Identifiers, table: str | None = None) -> TableHits:
    """Cells of text, categorical and date columns that hold an identifier (``table``: the OMOP table
    ``df`` is, so that its place columns are not searched for names)."""
    counts: Counter[str] = Counter()
    dates = pl.DataFrame(schema={PERSON: pl.Int64, "cells": pl.UInt32})
    if df.height == 0:
        return TableHits(counts, dates)
    persons = df[PERSON] if PERSON in df.columns else None
    places = set(PLACE_COLUMNS.get(table or "", ()))
    by_person: list[pl.DataFrame] = []
    for c in _text_columns(df):
        hits = _row_hits(df[c], persons, ids)
        if c in places:
            hits = hits.filter(~pl.col("kind").is_in(["name", "full_name"]))
        counts.update(dict(hits.group_by("kind").len().iter_rows()))
        if persons is not None:  # a birth date written in the person's text: explainable as a Date cell is
            rows = hits.filter(pl.col("kind") == "birth_date")["row"]
            if rows.len():
                by_person.append(pl.DataFrame({PERSON: persons.cast(pl.Int64).gather(rows)}))
    if persons is not None and ids.births.height:
        frames = [df.select(pl.col(PERSON).cast(pl.Int64), birth_date=pl.col(c).cast(pl.Date)) for c in _date_columns(df)]
        if frames:
            births = _rows_of(ids.index.births, df[PERSON].cast(pl.Int64), PERSON)
            same = pl.concat(frames).join(births, on=[PERSON, "birth_date"], how="semi")
            if same.height:
                counts["birth_date"] += same.height
                by_person.append(same.select(PERSON))
    if by_person:
        dates = pl.concat(by_person).group_by(PERSON).agg(cells=pl.len().cast(pl.UInt32))
    return TableHits(counts, dates)


def scan_table(df: pl.DataFrame, ids: Identifiers, table: str | None = None) -> dict[str, int]:
    """Cells that hold an identifier, counted by identifier type (never the values)."""
    return dict(sorted(inspect_table(df, ids, table).counts.items()))


def scan_text(text: str, ids: Identifiers) -> dict[str, int]:
    """Lines of a text (a published README, manifest, report) that hold an identifier found everywhere
    (a text file has no person: names, birth dates and addresses count there as full names only)."""
    lines = pl.Series("line", text.splitlines(), dtype=pl.String)
    hits = _row_hits(lines, None, ids)
    return dict(sorted(hits.group_by("kind").len().iter_rows()))


def mask_identifiers(df: pl.DataFrame, columns: list[str], ids: Identifiers) -> tuple[pl.DataFrame, int]:
    """Null the cells of free-text ``columns`` that hold an identifier (the scan's matching; ``df``'s
    person_id keyed as ``ids``); returns the frame and the count."""
    cols = [c for c in columns if c in df.columns and df.schema[c] == pl.String]
    if not cols or df.height == 0 or not ids.count():
        return df, 0
    persons = df[PERSON] if PERSON in df.columns else None
    masked = 0
    for c in cols:
        rows = _row_hits(df[c], persons, ids)["row"].unique()
        if rows.len():
            flags = pl.int_range(df.height, dtype=pl.UInt32).is_in(rows.implode())
            df = df.with_columns(pl.when(flags).then(None).otherwise(pl.col(c)).alias(c))
            masked += rows.len()
    return df, masked


# --------------------------------------------------------------------------- results


class LeakScan:
    """Hits by table (or file) and identifier type. Date cells equal to a person's birth date, and text
    cells of the person's rows that write it, are kept by person until the caller rules out the
    coincidences (``explain``): a date shifted by the person's offset may fall on the true birth date
    by chance, in a Date column or written in a note whose dates were shifted the same way."""

    def __init__(self, ids: Identifiers) -> None:
        self.ids = ids
        self._counts: dict[str, Counter[str]] = {}
        self._dates: list[pl.DataFrame] = []
        self.explained_cells = 0

    def table(self, where: str, df: pl.DataFrame, table: str | None = None) -> None:
        found = inspect_table(df, self.ids, table or where)
        self._counts.setdefault(where, Counter()).update(found.counts)
        if found.birth_dates.height:
            self._dates.append(found.birth_dates.with_columns(where=pl.lit(where)))

    def text(self, where: str, text: str) -> None:
        self._counts.setdefault(where, Counter()).update(scan_text(text, self.ids))

    def birth_date_persons(self) -> list[int]:
        """Persons with a Date cell equal to their birth date, or a text cell of theirs that writes it."""
        if not self._dates:
            return []
        return sorted(pl.concat(self._dates)[PERSON].unique().to_list())

    def explain(self, persons: Collection[int]) -> int:
        """Drop the Date hits of ``persons`` (their birth date is the image of one of their own
        dates); returns the cells explained."""
        if not self._dates or not persons:
            return 0
        dates = pl.concat(self._dates)
        gone = dates.filter(pl.col(PERSON).is_in(list(persons)))
        for where, n in gone.group_by("where").agg(pl.col("cells").sum()).iter_rows():
            c = self._counts[where]
            c["birth_date"] -= int(n)
            if c["birth_date"] <= 0:
                del c["birth_date"]
        self._dates = [dates.filter(~pl.col(PERSON).is_in(list(persons)))]
        n_gone = int(gone["cells"].sum()) if gone.height else 0
        self.explained_cells += n_gone
        return n_gone

    def hits(self) -> dict[str, dict[str, int]]:
        """where -> identifier type -> cells (lines), for every table or file that holds any."""
        return {w: dict(sorted((k, v) for k, v in c.items() if v > 0)) for w, c in self._counts.items() if +c}


def birth_date_images(dates: pl.DataFrame | pl.LazyFrame, shifts: pl.DataFrame | None, births: pl.DataFrame,
                      precision: Literal["day", "week", "month"] = "day") -> set[int]:
    """Persons whose birth date is the image of one of their own dates: ``dates`` (person_id, date) as
    they were before a stage, ``shifts`` (person_id, shift: days the stage moved them; none: 0),
    ``precision`` the truncation after the shift. Such a person's Date cell equal to the birth date
    is a coincidence of the shift, not a leak."""
    lf = dates.lazy().select(pl.col(PERSON).cast(pl.Int64), date=pl.col("date").cast(pl.Date)).drop_nulls()
    lf = lf.join(births.lazy().select(pl.col(PERSON).cast(pl.Int64), "birth_date"), on=PERSON)
    if shifts is not None:
        lf = lf.join(shifts.lazy().select(pl.col(PERSON).cast(pl.Int64), _s=pl.col("shift").cast(pl.Int64)),
                     on=PERSON, how="left")
        image = pl.col("date") + pl.duration(days=pl.col("_s").fill_null(0))
    else:
        image = pl.col("date")
    if precision != "day":
        image = image.dt.truncate("1w" if precision == "week" else "1mo")
    return set(lf.filter(image == pl.col("birth_date")).select(PERSON).unique().collect()[PERSON].to_list())


def describe_table_hits(hits: Mapping[str, Mapping[str, int]]) -> str | None:
    """One line for a stage's check result: counts by table and identifier type, never values."""
    return "identifiers found (cells by table and type): " + describe_where(hits) if hits else None


def describe_where(hits: Mapping[str, Mapping[str, int]]) -> str:
    """``README.md: full_name 1; manifest.json: phone 2``."""
    return "; ".join(f"{w}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())) for w, c in sorted(hits.items()))


__all__ = [
    "KINDS", "Identifiers", "LeakScan", "birth_date_images", "describe_table_hits", "describe_where", "fold_expr",
    "identifiers_from_patients", "inspect_table", "mask_identifiers", "normalise_text", "phone_forms",
    "public_place_names", "scan_table", "scan_text",
]
