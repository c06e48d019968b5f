"""Staff are data subjects too: a provider's attributes are published only where at least ``k``
providers share them.

Each attribute of the OMOP provider table is a quasi-identifier: gender, specialty, care site and
year of birth. Gender and specialty go with their source value and source concept (published
together, a source value could split a class: 'F' and 'female' under one concept). The optimal
k-anonymity engine (``kanon.py``) chooses, over the frequency table of their combinations, which
attributes to keep (flat hierarchies: kept or removed for every provider) and how far to band the
year of birth (``builtin:year10``: year, 10-, 20-year band, removed), with the loss metric and no
suppression limit: a provider whose combination still cannot be shared by ``k`` keeps its row (events
point at it) with every attribute withheld. A withheld attribute is null (0 for concept ids), as an
unknown one is, so the two cannot be told apart. ``provider_name``, ``npi``, ``dea`` and
``provider_source_value`` are always null. No row is ever removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from anonymisation.hierarchy import TOP, Hierarchy, builtin_hierarchy
from anonymisation.kanon import PrivacyModel, apply_levels, encode, frequency_table, search

# attribute -> its columns (the first is the one the attribute is named by)
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "gender": ("gender_concept_id", "gender_source_value", "gender_source_concept_id"),
    "specialty": ("specialty_concept_id", "specialty_source_value", "specialty_source_concept_id"),
    "care_site": ("care_site_id",),
    "year_of_birth": ("year_of_birth",),
}
HIERARCHIES: dict[str, str] = {"gender": "flat", "specialty": "flat", "care_site": "flat", "year_of_birth": "year10"}
ALWAYS_NULL = ("provider_name", "npi", "dea", "provider_source_value")
_CONCEPT_SUFFIX = "concept_id"
_ROW = "_provider_row"
_WITHHELD = "_withheld"
_BANDS = {1: "10-year bands", 2: "20-year bands"}


@dataclass
class ProviderResult:
    frame: pl.DataFrame  # the provider table as published: same rows, same columns and types
    summary: dict[str, Any]  # JSON-ready: k, providers, levels, attributes kept/removed, providers withheld


def _withheld_value(column: str, dtype: pl.DataType) -> pl.Expr:
    return pl.lit(0 if column.endswith(_CONCEPT_SUFFIX) else None, dtype=dtype)


def _attribute_value(attribute: str, columns: tuple[str, ...]) -> pl.Expr:
    """The attribute as one string (its columns joined), ``*`` when it holds nothing (null or concept 0)."""
    empty = pl.all_horizontal([
        pl.col(c).is_null() | (pl.col(c) == 0 if c.endswith(_CONCEPT_SUFFIX) else pl.lit(False)) for c in columns
    ])
    joined = pl.concat_str([pl.col(c).cast(pl.String).fill_null("") for c in columns], separator="\x1f")
    return pl.when(empty).then(pl.lit(TOP)).otherwise(joined).alias(attribute)


def protect_providers(provider: pl.DataFrame, k: int) -> ProviderResult:
    """The provider table with its attributes generalised so that every published combination of
    them is shared by at least ``k`` providers (see the module docstring), and a summary."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}: give the policy's k")
    needed = ["provider_id", *(c for cols in ATTRIBUTES.values() for c in cols)]
    missing = [c for c in needed if c not in provider.columns]
    if missing:
        raise ValueError(f"the provider table lacks {', '.join(missing)}: give the OMOP CDM provider table "
                         "(schemas.omop.conform(df, 'provider'))")
    out = provider.with_columns([pl.lit(None, dtype=provider.schema[c]).alias(c) for c in ALWAYS_NULL
                                 if c in provider.columns])
    n = provider.height
    if n == 0:
        return ProviderResult(out, _summary(k, 0, dict.fromkeys(ATTRIBUTES, 0), {}, 0))
    qi = provider.select(
        pl.int_range(pl.len()).alias(_ROW),
        *(_attribute_value(a, cols) for a, cols in ATTRIBUTES.items() if a != "year_of_birth"),
        year_of_birth=pl.col("year_of_birth").cast(pl.String).fill_null(TOP),
    )
    attributes = list(ATTRIBUTES)
    freq = frequency_table(qi, attributes)
    hierarchies: dict[str, Hierarchy] = {
        a: builtin_hierarchy(HIERARCHIES[a], freq[a].to_list(), a) for a in attributes
    }
    result = search(encode(freq, hierarchies), PrivacyModel(k=k, suppression=1.0), "loss")
    generalised = apply_levels(qi, hierarchies, result.levels)
    kept = apply_levels(qi, hierarchies, result.levels, result.suppressed_classes)
    assert isinstance(generalised, pl.DataFrame) and isinstance(kept, pl.DataFrame)
    labels = generalised.with_columns((~pl.col(_ROW).is_in(kept[_ROW].implode())).alias(_WITHHELD)).rename(
        {a: f"_g_{a}" for a in attributes})
    out = out.with_columns(pl.int_range(pl.len()).alias(_ROW)).join(labels, on=_ROW, how="left", maintain_order="left")
    updates: list[pl.Expr] = []
    for a, cols in ATTRIBUTES.items():
        label = pl.col(f"_g_{a}")
        publish = ~pl.col(_WITHHELD) & (label != TOP)
        for c in cols:
            dtype = provider.schema[c]
            value = label.str.extract(r"(\d{3,4})", 1).cast(dtype) if a == "year_of_birth" else pl.col(c)
            updates.append(pl.when(publish).then(value).otherwise(_withheld_value(c, dtype)).alias(c))
    out = out.with_columns(updates).select(provider.columns)
    withheld = int(n - kept.height)
    return ProviderResult(out, _summary(k, n, result.levels, {a: h.height for a, h in hierarchies.items()}, withheld))


def _summary(k: int, n: int, levels: dict[str, int], heights: dict[str, int], withheld: int) -> dict[str, Any]:
    state: dict[str, str] = {}
    for a in ATTRIBUTES:
        level = levels.get(a, 0)
        if n == 0 or withheld == n or level >= heights.get(a, 1):
            state[a] = "removed"
        else:
            state[a] = "kept" if level == 0 else _BANDS.get(level, f"level {level}")
    return {
        "k": k,
        "providers": n,
        "providers_withheld": withheld,  # providers whose attributes were all withheld (no k could share them)
        "levels": {a: int(levels.get(a, 0)) for a in ATTRIBUTES},
        "attributes": state,
        "kept": [a for a, s in state.items() if s != "removed"],
        "removed": [a for a, s in state.items() if s == "removed"],
    }
