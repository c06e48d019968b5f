"""Leak scan: no direct identifier of the landing data may appear in pseudonymised or released tables.

Identifiers are gathered from the raw patients table (names, matricules, phones, emails, street
lines) and compared in exact and normalised forms (case, accents, spacing, digits only) with every
string column. Results are counts by identifier type and table: never the values.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

import polars as pl

IDENTIFIER_COLUMNS: dict[str, str] = {
    "last_name": "name",
    "first_name": "name",
    "matricule": "matricule",
    "phone": "phone",
    "email": "email",
    "address": "address",
    "patient_id": "local_id",
}
# identifier types matched as substrings (long and specific) vs whole cell values (short, like names)
SUBSTRING_TYPES = {"matricule", "phone", "email", "address", "full_name"}
MIN_DIGITS = 8


def normalise_text(s: str) -> str:
    decomposed = unicodedata.normalize("NFKD", s)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return "".join(ch for ch in stripped.casefold() if ch.isalnum())


def _norm_expr(e: pl.Expr) -> pl.Expr:
    return (e.str.normalize("NFKD").str.replace_all(r"\p{M}", "").str.to_lowercase().str.replace_all("ß", "ss")
            .str.replace_all(r"[^\p{L}\p{N}]", ""))


@dataclass
class Identifiers:
    """Normalised identifier values by type (kept in memory only, never written)."""

    values: dict[str, set[str]] = field(default_factory=dict)

    def add(self, kind: str, raw: str | None) -> None:
        if raw is None:
            return
        n = normalise_text(raw)
        if kind in ("matricule", "phone"):
            n = "".join(ch for ch in raw if ch.isdigit())
            if kind == "phone" and n.startswith("352") and len(n) > 9:
                self.values.setdefault(kind, set()).add(n[3:])
            if len(n) < MIN_DIGITS:
                return
        if len(n) < 3:
            return
        self.values.setdefault(kind, set()).add(n)

    def count(self) -> int:
        return sum(len(v) for v in self.values.values())

    def merge(self, other: Identifiers) -> Identifiers:
        for kind, values in other.values.items():
            self.values.setdefault(kind, set()).update(values)
        return self


def public_place_names() -> set[str]:
    """Commune, canton and country names: public values that a surname may share (Biwer, Wiltz)."""
    from schemas.geo import COUNTRY, communes

    names = {COUNTRY} | {c.name for c in communes()} | {c.canton for c in communes()}
    return {normalise_text(n) for n in names}


def identifiers_from_patients(patients: pl.DataFrame) -> Identifiers:
    """Identifiers of the patients; names that are also public place names are left out, since a
    commune column legitimately holds them (the location is governed by k-anonymity instead)."""
    ids = Identifiers()
    for col, kind in IDENTIFIER_COLUMNS.items():
        if col in patients.columns:
            for v in patients[col].drop_nulls().unique().to_list():
                ids.add(kind, str(v))
    # full names, in both orders: matched inside any text (a note), not only as a whole cell
    if {"first_name", "last_name"} <= set(patients.columns):
        for f, last in patients.select("first_name", "last_name").drop_nulls().iter_rows():
            ids.add("full_name", f"{f} {last}")
            ids.add("full_name", f"{last} {f}")
    if "other_names" in patients.columns:  # maiden names, aliases: "First Maiden | Alias"
        for entry in patients["other_names"].drop_nulls().to_list():
            for full in (n.strip() for n in str(entry).split("|")):
                tokens = full.split()
                if len(tokens) >= 2:
                    ids.add("full_name", full)
                    ids.add("full_name", " ".join(tokens[1:] + tokens[:1]))
                    ids.add("name", tokens[-1])
    ids.values["name"] = ids.values.get("name", set()) - public_place_names()
    return ids


def _hit(kind: str, patterns: list[str], col: str) -> pl.Expr:
    """True where the cell holds an identifier of ``kind`` (in one of its normalised forms)."""
    if kind in ("matricule", "phone"):
        # digit runs with usual separators ("+352 621 12 34 56", "1980 0101 123 45"), never
        # digits picked across letters (a hex pseudonym holds digits too)
        runs = pl.col(col).str.extract_all(r"\b\d[\d .\-/()]{6,}\d\b").list.eval(pl.element().str.replace_all(r"\D", ""))
        return runs.list.eval(pl.element().str.contains_any(patterns)).list.any().fill_null(False)
    norm = _norm_expr(pl.col(col))
    if kind in SUBSTRING_TYPES:
        return norm.str.contains_any(patterns).fill_null(False)
    return norm.is_in(patterns).fill_null(False)


# columns that name public places (a town abroad may be a surname: Metz, Thionville); names are not
# looked for there (the release rebuilds locations from codes: no raw town name is published)
PLACE_COLUMNS: dict[str, tuple[str, ...]] = {"location": ("city", "county", "state")}


def scan_table(df: pl.DataFrame, ids: Identifiers, table: str | None = None) -> dict[str, int]:
    """Cells of string columns that hold an identifier, counted by identifier type (``table``: the
    OMOP table ``df`` is, so that its place columns are not searched for names)."""
    counts: dict[str, int] = {}
    string_cols = [c for c, t in df.schema.items() if t == pl.String]
    places = set(PLACE_COLUMNS.get(table or "", ()))
    if not string_cols or df.height == 0:
        return counts
    for kind, values in sorted(ids.values.items()):
        if not values:
            continue
        patterns = sorted(values)
        hits = 0
        for c in string_cols:
            if kind == "name" and c in places:
                continue
            col = df.select(pl.col(c).drop_nulls())
            if col.height:
                hits += int(col.select(_hit(kind, patterns, c).sum()).item() or 0)
        if hits:
            counts[kind] = hits
    return counts


def mask_identifiers(df: pl.DataFrame, columns: list[str], ids: Identifiers) -> tuple[pl.DataFrame, int]:
    """Null the cells of free-text ``columns`` that hold an identifier; returns the frame and the count."""
    cols = [c for c in columns if c in df.columns and df.schema[c] == pl.String]
    if not cols or df.height == 0 or not ids.count():
        return df, 0
    masked = 0
    for c in cols:
        hit = pl.lit(False)
        for kind, values in sorted(ids.values.items()):
            if values:
                hit = hit | _hit(kind, sorted(values), c)
        flags = df.select(hit.alias("_hit"))["_hit"]
        masked += int(flags.sum())
        df = df.with_columns(pl.when(flags).then(None).otherwise(pl.col(c)).alias(c))
    return df, masked


def describe_hits(hits: dict[str, int]) -> str | None:
    """One line for a check result: counts by identifier type, never values."""
    return "identifiers found (cells by type): " + ", ".join(f"{k} {v}" for k, v in sorted(hits.items())) if hits else None
