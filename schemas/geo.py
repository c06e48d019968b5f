"""Luxembourg geography: communes, cantons and the synthetic postcodes of the generator.

The 100 communes and 12 cantons are public facts (Luxembourg geoportal). Postcodes are *synthetic*:
each commune gets 1 to 3 fixed ``L-NNNN`` codes derived from its official commune code, so that the
hierarchy postcode -> commune -> canton -> country is well defined. They are not real postcodes.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources

COUNTRY = "Luxembourg"


@dataclass(frozen=True, slots=True)
class Commune:
    name: str
    code: str
    canton: str
    postcodes: tuple[str, ...]


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
