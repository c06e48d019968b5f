"""A second, brute-force reading of docs/privacy.md for small releases (the reference for test_audit).

Plain Python on purpose: rows as dicts, class keys as tuples, facts as "table|column|value" strings,
every subset of at most m of a person's facts counted against every person of the class. It shares
no code with anonymisation/audit.py; only pyarrow is used, to read the Parquet files.
"""

from __future__ import annotations

import math
from collections import Counter
from itertools import combinations
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

FACT_TABLE = """
visit_occurrence: visit_concept_id visit_source_concept_id care_site_id provider_id
visit_detail: visit_detail_concept_id visit_detail_source_concept_id care_site_id provider_id
condition_occurrence: condition_concept_id condition_source_value condition_source_concept_id provider_id
drug_exposure: drug_concept_id drug_source_value drug_source_concept_id provider_id
procedure_occurrence: procedure_concept_id procedure_source_value procedure_source_concept_id provider_id
device_exposure: device_concept_id device_source_value device_source_concept_id provider_id
measurement: measurement_concept_id measurement_source_value measurement_source_concept_id provider_id
observation: observation_concept_id observation_source_value observation_source_concept_id provider_id
specimen: specimen_concept_id specimen_source_value
death: cause_concept_id cause_source_value cause_source_concept_id
condition_era: condition_concept_id
drug_era: drug_concept_id
dose_era: drug_concept_id
episode: episode_concept_id episode_object_concept_id episode_source_value episode_source_concept_id
"""
FACTS = {line.split(":")[0]: line.split(":")[1].split() for line in FACT_TABLE.strip().splitlines()}
NAN = ("<NaN>",)  # NaN equals NaN in a class key (Python's nan != nan)
ABSENT = ("<ABSENT>",)


def read(version: Path, table: str) -> tuple[list[str], list[dict[str, Any]]] | None:
    files = sorted((version / "omop" / table).glob("*.parquet"))
    if not files:
        return None
    columns: list[str] = []
    rows: list[dict[str, Any]] = []
    for f in files:
        t = pq.ParquetFile(f).read()
        columns += [c for c in t.column_names if c not in columns]
        rows += t.to_pylist()
    return columns, rows


def plain(v: Any) -> Any:
    return NAN if isinstance(v, float) and math.isnan(v) else v


def is_fact(column: str, v: Any) -> bool:
    if v is None:
        return False
    if column.endswith("_concept_id"):
        return not (v == 0 or v == "0")
    return v != ""


def persons(version: Path) -> dict[Any, tuple[tuple[Any, ...], set[str]]]:
    """person_id -> (class key, facts)."""
    cols, rows = read(version, "person") or ([], [])
    loc = read(version, "location")
    locations: dict[Any, dict[str, Any]] = {}
    loc_cols: list[str] = []
    if loc is not None:
        loc_cols = [c for c in loc[0] if c != "location_id"]
        locations = {r.get("location_id"): r for r in loc[1] if r.get("location_id") is not None}
    death = read(version, "death")
    death_years: dict[Any, int] = {}
    if death is not None:
        for r in death[1]:
            d = r.get("death_date")
            if d is not None and (r["person_id"] not in death_years or d.year < death_years[r["person_id"]]):
                death_years[r["person_id"]] = d.year
    out: dict[Any, tuple[tuple[Any, ...], set[str]]] = {}
    for r in rows:
        key = [(c, plain(r.get(c))) for c in cols if c not in ("person_id", "location_id")]
        lrow = locations.get(r.get("location_id"), {})
        key += [("location." + c, plain(lrow.get(c))) for c in loc_cols]
        key.append(("death_year", death_years.get(r["person_id"])))
        out[r["person_id"]] = (tuple(key), set())
    for table, columns in FACTS.items():
        data = read(version, table)
        if data is None:
            continue
        for r in data[1]:
            p = r.get("person_id")
            if p not in out:
                continue
            for c in columns:
                v = r.get(c)
                if is_fact(c, v):
                    out[p][1].add(f"{table}|{c}|{v}")
    return out


def check(records: dict[Any, tuple[Any, set[str]]], k: int, m: int) -> dict[str, Any]:
    """at_risk[j], minimal violating sets by size and by column, over (class key, facts) records."""
    classes: dict[Any, list[set[str]]] = {}
    for key, facts in records.values():
        classes.setdefault(key, []).append(facts)
    at_risk = [0] * (m + 1)
    violating: set[tuple[Any, frozenset[str]]] = set()
    for key, members in classes.items():
        support: dict[frozenset[str], int] = {}

        def count(s: frozenset[str], members: list[set[str]] = members, support: dict[frozenset[str], int] = support) -> int:
            if s not in support:
                support[s] = sum(1 for f in members if s <= f)
            return support[s]

        for facts in members:
            level = None
            for j in range(m + 1):
                for combo in combinations(sorted(facts), j):
                    s = frozenset(combo)
                    if count(s) < k:
                        if level is None:
                            level = j
                        if all(count(s - {x}) >= k for x in s):
                            violating.add((key, s))
            if level is not None:
                for j in range(level, m + 1):
                    at_risk[j] += 1
    sets = [0] * (m + 1)
    columns: list[Counter[str]] = [Counter() for _ in range(m + 1)]
    for _, s in violating:
        sets[len(s)] += 1
        for f in s:
            table, column, _ = f.split("|", 2)
            columns[len(s)][f"{table}.{column}"] += 1
    return {
        "persons": len(records),
        "classes": len(classes),
        "at_risk": at_risk,
        "violating_sets": sets,
        "violating_columns": [dict(c) for c in columns],
    }


def release_check(version: Path, k: int, m: int, earlier: list[Path] | None = None) -> dict[str, Any]:
    """The release alone and, with ``earlier`` versions, jointly (the joint record of docs/privacy.md)."""
    target = persons(version)
    result = {"release": check(target, k, m), "joint": None}
    if earlier:
        others = [persons(v) for v in earlier]
        joint: dict[Any, tuple[Any, set[str]]] = {}
        for p, (key, facts) in target.items():
            keys = [o[p][0] if p in o else ABSENT for o in others]
            union = set(facts)
            for o in others:
                if p in o:
                    union |= o[p][1]
            joint[p] = ((*keys, key), union)
        result["joint"] = check(joint, k, m)
    return result
