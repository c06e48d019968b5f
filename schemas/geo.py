"""Geography: Luxembourg's communes and cantons, the generator's synthetic postcodes, country codes.

The 100 communes and 12 cantons are public facts (Luxembourg geoportal). Postcodes are *synthetic*:
each commune gets 1 to 3 fixed ``L-NNNN`` codes derived from its official commune code, so that the
hierarchy postcode -> commune -> canton -> country is well defined. They are not real postcodes.

Names are ambiguous (ten cantons and the country share their name with a commune: Vianden is a
commune and a canton, Luxembourg is a commune, a canton and the country), so places are also named by
codes that are unambiguous whatever the level: ``L-1234`` a postcode, ``LU-0042`` a commune (its
official code), ``LU-VD`` a canton (ISO 3166-2:LU), ``LU`` a country (ISO 3166-1 alpha-2).

Countries are ISO 3166-1 alpha-2 codes; :func:`country_code` reads the codes, alpha-3 codes and
names (English, French, German, Luxembourgish) that the sources send for the countries met so far.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources

COUNTRY = "Luxembourg"
COUNTRY_CODE = "LU"

# ISO 3166-2:LU: the code of each canton (the cantons of lu-communes.csv; a test keeps them in step)
CANTON_CODES: dict[str, str] = {
    "Capellen": "LU-CA",
    "Clervaux": "LU-CL",
    "Diekirch": "LU-DI",
    "Echternach": "LU-EC",
    "Esch-sur-Alzette": "LU-ES",
    "Grevenmacher": "LU-GR",
    "Luxembourg": "LU-LU",
    "Mersch": "LU-ME",
    "Redange": "LU-RD",
    "Remich": "LU-RM",
    "Vianden": "LU-VD",
    "Wiltz": "LU-WI",
}
CANTON_NAMES: dict[str, str] = {code: name for name, code in CANTON_CODES.items()}


@dataclass(frozen=True, slots=True)
class Commune:
    name: str
    code: str
    canton: str
    postcodes: tuple[str, ...]

    @property
    def label(self) -> str:
        """The commune's unambiguous code: ``LU-`` and its official code (``LU-0042``)."""
        return f"{COUNTRY_CODE}-{self.code}"

    @property
    def canton_code(self) -> str:
        """The ISO 3166-2:LU code of its canton (``LU-EC``)."""
        return CANTON_CODES[self.canton]


def _postcodes_for(code: str) -> tuple[str, ...]:
    number = int(code)
    count = 1 + number % 3
    return tuple(f"L-{1000 + number * 80 + i:04d}" for i in range(count))


@cache
def communes() -> tuple[Commune, ...]:
    """All communes, sorted by official code, with their synthetic postcodes."""
    text = resources.files("schemas").joinpath("data/lu-communes.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    out = [
        Commune(r["commune"], r["commune_code"], r["canton"], _postcodes_for(r["commune_code"]))
        for r in rows
    ]
    return tuple(sorted(out, key=lambda c: c.code))


@cache
def postcode_index() -> dict[str, Commune]:
    """Postcode -> commune."""
    return {pc: c for c in communes() for pc in c.postcodes}


@cache
def commune_index() -> dict[str, Commune]:
    """Commune label (``LU-0042``) -> commune."""
    return {c.label: c for c in communes()}


# --------------------------------------------------------------------------- countries

# ISO 3166-1 alpha-2 code -> (English name, other names and codes it is written as). The English name
# is also how the OMOP vocabulary (OSM, "2nd level") names the country.
COUNTRIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "LU": ("Luxembourg", ("LUX", "Luxemburg", "Lëtzebuerg", "Letzebuerg", "Grand-Duché de Luxembourg",
                          "Grand Duchy of Luxembourg", "Großherzogtum Luxemburg")),
    "FR": ("France", ("FRA", "Frankreich", "Frankräich", "République française")),
    "BE": ("Belgium", ("BEL", "Belgique", "België", "Belgien", "Belsch")),
    "DE": ("Germany", ("DEU", "Deutschland", "Allemagne", "Däitschland", "Bundesrepublik Deutschland")),
    "NL": ("Netherlands", ("NLD", "Pays-Bas", "Nederland", "Niederlande", "The Netherlands", "Holland")),
    "US": ("United States", ("USA", "United States of America", "U.S.", "U.S.A.", "America", "États-Unis",
                             "Etats-Unis", "Vereinigte Staaten")),
    "PT": ("Portugal", ("PRT",)),
    "IT": ("Italy", ("ITA", "Italie", "Italien", "Italia")),
    "ES": ("Spain", ("ESP", "Espagne", "Spanien", "España")),
    "CH": ("Switzerland", ("CHE", "Suisse", "Schweiz", "Svizzera")),
    "AT": ("Austria", ("AUT", "Autriche", "Österreich")),
    "GB": ("United Kingdom", ("GBR", "UK", "Royaume-Uni", "Vereinigtes Königreich", "Great Britain")),
    "PL": ("Poland", ("POL", "Pologne", "Polen")),
    "RO": ("Romania", ("ROU", "Roumanie", "Rumänien")),
    "GR": ("Greece", ("GRC", "EL", "Grèce", "Griechenland")),
}
_ISO2 = re.compile(r"^[A-Za-z]{2}$")


def _fold(s: str) -> str:
    decomposed = unicodedata.normalize("NFKD", s)
    return "".join(ch for ch in decomposed if ch.isalnum() and not unicodedata.combining(ch)).casefold()


@cache
def _country_names() -> dict[str, str]:
    out: dict[str, str] = {}
    for code, (name, others) in COUNTRIES.items():
        for n in (name, *others):
            out[_fold(n)] = code
    return out


def country_code(value: str | None) -> str | None:
    """The ISO 3166-1 alpha-2 code of a country given as a code (``fr``), an alpha-3 code (``FRA``)
    or a name (``France``, ``Frankreich``); None when empty or not recognised. Two letters are taken
    as a code (``UK`` and ``EL``, the EU's codes, become ``GB`` and ``GR``)."""
    if value is None:
        return None
    s = value.strip()
    if not s:
        return None
    folded = _fold(s)
    if _ISO2.match(s):
        return _country_names().get(folded, s.upper()) if folded in ("uk", "el") else s.upper()
    return _country_names().get(folded)


def country_name(code: str) -> str | None:
    """The English name of an ISO alpha-2 code of :data:`COUNTRIES` (as the OMOP vocabulary names it)."""
    entry = COUNTRIES.get(code)
    return entry[0] if entry else None


# USPS codes of the US states, DC and the territories (Synthea writes states by name; OMOP's
# location.state holds two letters, as OHDSI's ETL-Synthea maps them)
US_STATES: dict[str, str] = {
    "Alabama": "AL", "Alaska": "AK", "Arizona": "AZ", "Arkansas": "AR", "California": "CA", "Colorado": "CO",
    "Connecticut": "CT", "Delaware": "DE", "District of Columbia": "DC", "Florida": "FL", "Georgia": "GA",
    "Hawaii": "HI", "Idaho": "ID", "Illinois": "IL", "Indiana": "IN", "Iowa": "IA", "Kansas": "KS",
    "Kentucky": "KY", "Louisiana": "LA", "Maine": "ME", "Maryland": "MD", "Massachusetts": "MA",
    "Michigan": "MI", "Minnesota": "MN", "Mississippi": "MS", "Missouri": "MO", "Montana": "MT",
    "Nebraska": "NE", "Nevada": "NV", "New Hampshire": "NH", "New Jersey": "NJ", "New Mexico": "NM",
    "New York": "NY", "North Carolina": "NC", "North Dakota": "ND", "Ohio": "OH", "Oklahoma": "OK",
    "Oregon": "OR", "Pennsylvania": "PA", "Rhode Island": "RI", "South Carolina": "SC", "South Dakota": "SD",
    "Tennessee": "TN", "Texas": "TX", "Utah": "UT", "Vermont": "VT", "Virginia": "VA", "Washington": "WA",
    "West Virginia": "WV", "Wisconsin": "WI", "Wyoming": "WY", "Puerto Rico": "PR", "Guam": "GU",
    "American Samoa": "AS", "Northern Mariana Islands": "MP", "U.S. Virgin Islands": "VI",
}


@cache
def _state_names() -> dict[str, str]:
    return {_fold(name): code for name, code in US_STATES.items()}


def state_code(value: str | None) -> str | None:
    """A state as OMOP's two-letter ``location.state``: two letters are kept (upper-cased), a US
    state's name becomes its USPS code; None when empty or not recognised (never truncated)."""
    if value is None:
        return None
    s = value.strip()
    if not s:
        return None
    if _ISO2.match(s):
        return s.upper()
    return _state_names().get(_fold(s))
