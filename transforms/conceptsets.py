"""Concept sets the OHDSI way: ATLAS's ``ConceptSetExpression`` JSON resolved through CONCEPT_ANCESTOR
and "Maps to", and the persons of a CDM holding any of the resolved concepts.

An expression is ``{"items": [{"concept": {"CONCEPT_ID": ...}, "isExcluded": bool,
"includeDescendants": bool, "includeMapped": bool}, ...]}`` (ATLAS exports it as is, or wrapped in
``{"expression": {...}}`` with the concept set's id and name). As ATLAS resolves it: each item gives
its concept, with its descendants when ``includeDescendants``, and, when ``includeMapped``, the
(non-standard, source) concepts that "Maps to" any of those; the set is the union of the included
items' concepts minus the union of the excluded items' concepts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

# the event tables a concept set is counted in, and their concept columns (standard, source)
EVENT_COLUMNS: dict[str, tuple[str, str]] = {
    "condition_occurrence": ("condition_concept_id", "condition_source_concept_id"),
    "procedure_occurrence": ("procedure_concept_id", "procedure_source_concept_id"),
    "drug_exposure": ("drug_concept_id", "drug_source_concept_id"),
    "measurement": ("measurement_concept_id", "measurement_source_concept_id"),
    "observation": ("observation_concept_id", "observation_source_concept_id"),
}


class ConceptSetError(ValueError):
    """A concept set file that is not an ATLAS ConceptSetExpression (the message says what is wrong)."""


@dataclass(frozen=True)
class ConceptSetItem:
    concept_id: int
    is_excluded: bool = False
    include_descendants: bool = False
    include_mapped: bool = False


def parse_concept_set(data: Any, source: str = "the concept set") -> list[ConceptSetItem]:
    """The items of an ATLAS ConceptSetExpression (or of its ``expression`` wrapper)."""
    if isinstance(data, Mapping) and "expression" in data and "items" not in data:
        data = data["expression"]
    if not isinstance(data, Mapping) or not isinstance(data.get("items"), list):
        raise ConceptSetError(f"{source} is not an ATLAS ConceptSetExpression: it needs an 'items' list "
                              "(export it from ATLAS: Concept Sets > Export > JSON)")
    items = []
    for n, item in enumerate(data["items"], start=1):
        concept = item.get("concept") if isinstance(item, Mapping) else None
        cid = concept.get("CONCEPT_ID") if isinstance(concept, Mapping) else None
        if isinstance(cid, bool) or not isinstance(cid, int):
            raise ConceptSetError(f"{source}: item {n} has no integer concept.CONCEPT_ID")
        flags = {}
        for key in ("isExcluded", "includeDescendants", "includeMapped"):
            value = item.get(key, False)
            if not isinstance(value, bool):
                raise ConceptSetError(f"{source}: item {n}'s {key} must be true or false, not {value!r}")
            flags[key] = value
        items.append(ConceptSetItem(cid, flags["isExcluded"], flags["includeDescendants"], flags["includeMapped"]))
    if not items:
        raise ConceptSetError(f"{source} has no items")
    return items


def read_concept_set(path: Path) -> list[ConceptSetItem]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConceptSetError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ConceptSetError(f"{path} is not readable JSON ({e})") from None
    return parse_concept_set(data, str(path))


def _expand(items: Iterable[ConceptSetItem], ancestor: pl.DataFrame, maps_to: pl.DataFrame) -> set[int]:
    out: set[int] = set()
    for item in items:
        these = {item.concept_id}
        if item.include_descendants:
            these |= set(ancestor.filter(pl.col("ancestor_concept_id") == item.concept_id)
                         ["descendant_concept_id"].to_list())
        if item.include_mapped:
            these |= set(maps_to.filter(pl.col("concept_id_2").is_in(list(these)))["concept_id_1"].to_list())
        out |= these
    return out


def resolve(items: list[ConceptSetItem], ancestor: pl.DataFrame, maps_to: pl.DataFrame) -> list[int]:
    """The concept ids of the set, sorted. ``ancestor``: CONCEPT_ANCESTOR (ancestor_concept_id,
    descendant_concept_id); ``maps_to``: concept_id_1 "Maps to" concept_id_2."""
    included = _expand([i for i in items if not i.is_excluded], ancestor, maps_to)
    excluded = _expand([i for i in items if i.is_excluded], ancestor, maps_to)
    return sorted(included - excluded)


def concept_rows(tables: Mapping[str, pl.LazyFrame],
                 concepts: list[int]) -> Iterator[tuple[str, pl.LazyFrame, list[str]]]:
    """For each event table present in ``tables`` with a concept column: (table, its rows holding any
    of ``concepts`` in a standard or source concept column, the table's column names)."""
    for table, cols in EVENT_COLUMNS.items():
        lf = tables.get(table)
        if lf is None:
            continue
        names = lf.collect_schema().names()
        present = [c for c in cols if c in names]
        if present:
            yield table, lf.filter(pl.any_horizontal([pl.col(c).is_in(concepts) for c in present])), names


def persons_with(tables: Mapping[str, pl.LazyFrame], concepts: list[int]) -> int:
    """Distinct persons with any of ``concepts`` in a standard or source concept column of the event
    tables (those present in ``tables``)."""
    frames = [rows.select(pl.col("person_id").cast(pl.Int64)) for _t, rows, _n in concept_rows(tables, concepts)]
    if not frames:
        return 0
    return int(pl.concat(frames).unique().select(pl.len()).collect().item())
