"""Places of residence in the release: the postcode quasi-identifier and the location rows it becomes.

Both sides speak the codes of ``builtin:lu-postcode`` (``anonymisation/hierarchy.py``), never names,
since names are ambiguous (ten cantons and the country are also communes: "Vianden" is a commune and
a canton, "Luxembourg" a commune, a canton and the country):

==============  ===========================  ======================================================
label           what                         location row (``country_source_value`` always set)
==============  ===========================  ======================================================
``L-1234``      a Luxembourg postcode        zip ``L-1234`` (and its commune and canton names)
``FR-57000``    a postcode abroad            zip ``57000``, country ``FR``
``LU-0042``     a commune (official code)    city = commune name, county = canton name
``LU-EC``       a canton (ISO 3166-2:LU)     county = canton name
``LU``, ``FR``  a country (ISO 3166-1)       country only
``*``           nothing                      every column null
==============  ===========================  ======================================================

:func:`location_qi` makes the QI value of each OMOP location row (the hierarchy's leaves);
:func:`release_location_rows` turns the labels chosen by the k-anonymity search back into location
rows. Both are pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import polars as pl

from schemas import omop as cdm
from schemas.geo import CANTON_NAMES, COUNTRY_CODE, commune_index, country_code, postcode_index

__all__ = ["UNKNOWN", "location_qi", "qi_value", "release_location_rows"]

UNKNOWN = "*"  # the hierarchies' top: a residence whose country cannot be read
_LU_POSTCODE = re.compile(r"^\s*(?:L\s*-?\s*)?(\d{4})\s*$", re.IGNORECASE)
_COMMUNE = re.compile(r"^LU-(\d{4})$")
_CANTON = re.compile(r"^LU-([A-Z]{2})$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_ABROAD = re.compile(r"^([A-Z]{2})-(\S(?:.*\S)?)$")
# how addresses in Luxembourg write a neighbour's postcodes: F-57000, B-6700, D-54290
_LEGACY_PREFIX: dict[str, str] = {"FR": "F", "BE": "B", "DE": "D", "NL": "NL", "CH": "CH", "AT": "A", "IT": "I"}


def _foreign_postcode(zip_: str, country: str) -> str:
    """``57000`` (or ``F-57000``, ``FR-57000``, ``f 57000``) of a French residence -> ``57000``."""
    z = " ".join(zip_.upper().split())
    for prefix in (country, _LEGACY_PREFIX.get(country)):
        if prefix:
            for sep in ("-", " "):
                if z.startswith(prefix + sep) and len(z) > len(prefix) + 1:
                    return z[len(prefix) + 1:].strip()
    return z


def qi_value(zip_: str | None, country: str | None) -> str:
    """The postcode QI value of one location: ``L-1234`` in Luxembourg, ``FR-57000`` abroad, the
    country code alone when the postcode is missing, ``*`` when the country cannot be read.

    A null or empty country means Luxembourg. A Luxembourg zip that is not four digits is returned as
    given, so that the hierarchy names it in its error (an unknown Luxembourg postcode stops the
    release, as it should: the extract or the geography is wrong)."""
    cc = COUNTRY_CODE if country is None or not country.strip() else country_code(country)
    if cc is None:
        return UNKNOWN
    z = zip_.strip() if zip_ is not None else ""
    if not z:
        return cc
    if cc == COUNTRY_CODE:
        m = _LU_POSTCODE.match(z)
        return f"L-{m.group(1)}" if m else z
    return f"{cc}-{_foreign_postcode(z, cc)}"


def location_qi(locations: pl.DataFrame) -> pl.DataFrame:
    """``location_id``, ``postcode``: the QI value (:func:`qi_value`) of each OMOP location row, from its
    ``zip`` and ``country_source_value`` (a missing column counts as null)."""
    def col(name: str) -> pl.Expr:
        return pl.col(name) if name in locations.columns else pl.lit(None, pl.String)

    pairs = locations.select("location_id", _zip=col("zip").cast(pl.String),
                             _country=col("country_source_value").cast(pl.String)).unique("location_id", keep="first", maintain_order=True)
    distinct = pairs.select("_zip", "_country").unique()
    values = distinct.with_columns(postcode=pl.Series(
        [qi_value(z, c) for z, c in distinct.iter_rows()], dtype=pl.String))
    out = pairs.join(values, on=["_zip", "_country"], how="left", nulls_equal=True, maintain_order="left")
    return out.select(pl.col("location_id").cast(pl.Int64), "postcode")


def _row(label: str) -> dict[str, object]:
    """The location columns that one label names (no location_id)."""
    if label == UNKNOWN:
        return {}
    m = _LU_POSTCODE.match(label)
    if m:
        zip_ = f"L-{m.group(1)}"
        row: dict[str, object] = {"zip": zip_, "country_source_value": COUNTRY_CODE}
        commune = postcode_index().get(zip_)
        if commune is not None:
            row.update(city=commune.name, county=commune.canton)
        return row
    if _COMMUNE.match(label) and label in commune_index():
        c = commune_index()[label]
        return {"city": c.name, "county": c.canton, "country_source_value": COUNTRY_CODE}
    if _CANTON.match(label) and label in CANTON_NAMES:
        return {"county": CANTON_NAMES[label], "country_source_value": COUNTRY_CODE}
    if _COUNTRY.match(label):
        return {"country_source_value": label}
    m = _ABROAD.match(label)
    if m and m.group(1) != COUNTRY_CODE:
        return {"zip": m.group(2), "country_source_value": m.group(1)}
    # not a label of builtin:lu-postcode (a steward's own hierarchy): kept as the location's source value
    return {"location_source_value": re.sub(r"[^\w\- ]", "", label)[:50]}


def release_location_rows(labels: Mapping[str, int], *, country_concepts: Mapping[str, int] | None = None) -> pl.DataFrame:
    """OMOP location rows, one per generalised postcode label (``label -> location_id``).

    A label's kind is read from its form (table in the module docstring), never looked up by name.
    ``country_concept_id`` is the concept of the country in ``country_concepts`` (ISO code ->
    concept_id, e.g. the vocabulary's OSM countries), else 0; null on the ``*`` row. A label that
    is not one of builtin:lu-postcode (a custom ARX hierarchy's) keeps its text in
    ``location_source_value``."""
    concepts = country_concepts or {}
    rows = []
    for label, lid in labels.items():
        row = {"location_id": lid, **_row(label)}
        country = row.get("country_source_value")
        if isinstance(country, str):
            row["country_concept_id"] = int(concepts.get(country, 0))
        rows.append(row)
    schema = {"location_id": pl.Int64, "zip": pl.String, "city": pl.String, "county": pl.String,
              "location_source_value": pl.String, "country_concept_id": pl.Int64, "country_source_value": pl.String}
    frame = pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)
    return cdm.conform(frame, "location").sort("location_id")
