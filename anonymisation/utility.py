"""The utility guard: a quasi-identifier that anonymisation erases is a decision, never a side effect.

A quasi-identifier (QI) is *removed* when its published values collapse to one (every year of birth
0, every sex 0, every location the same country) while the input held more than one. A QI that was
already constant in the input (death_year when nobody died) is *constant*, not removed. A removed QI
blocks the release unless the policy allows it for that QI (``allow_removal: true``).

Levels are said in words ("year of birth: 10-year bands", "postcode: country only") for the risk
report and for the cost of each suggested policy change.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from anonymisation.hierarchy import TOP, Hierarchy
from schemas.policy import PrivacyPolicy

_POSTCODE_LEVELS = ("exact postcode", "commune", "canton", "country only", "removed")
_DATE_LEVELS = {
    "builtin:date-month": ("exact date", "month", "quarter", "year", "removed"),
    "builtin:date-quarter": ("exact date", "quarter", "year", "removed"),
    "builtin:date-year": ("exact date", "year", "removed"),
}
_BAND = re.compile(r"^\[?(-?\d+)\s*-\s*(-?\d+)\]?$")


def field_name(qi: str) -> str:
    """year_of_birth -> year of birth."""
    return qi.replace("_", " ")


def level_words(h: Hierarchy, level: int) -> str:
    """A hierarchy level in words: "exact", "5-year bands", "commune", "country only", "removed"."""
    if level <= 0:
        return "exact"
    labels = h.labels[min(level, h.height)]
    if all(lab == TOP for lab in labels):
        return "removed"
    if h.name == "builtin:lu-postcode" and level < len(_POSTCODE_LEVELS):
        return _POSTCODE_LEVELS[level]
    if h.name in _DATE_LEVELS and level < len(_DATE_LEVELS[h.name]):
        return _DATE_LEVELS[h.name][level]
    widths = {int(m.group(2)) - int(m.group(1)) + 1 for lab in labels if (m := _BAND.match(lab))}
    if len(widths) == 1:
        w = widths.pop()
        return f"{w}-year bands" if h.name.startswith(("builtin:year", "builtin:age")) else f"bands of {w}"
    return f"level {level} of {h.height} ({len(labels)} distinct values)"


def describe_levels(levels: Mapping[str, int], hierarchies: Mapping[str, Hierarchy]) -> dict[str, str]:
    """Each QI's level in words (the fixed columns of earlier versions, ``_v...``, left out)."""
    return {q: level_words(hierarchies[q], lv) for q, lv in levels.items()
            if not q.startswith("_v") and q in hierarchies}


@dataclass(frozen=True)
class FieldUtility:
    qi: str
    level: int
    words: str  # the level in words
    values_in: int  # distinct values among the persons before anonymisation
    values_out: int  # distinct values among the persons released
    status: str  # "kept", "removed" (collapsed by anonymisation) or "constant" (one value in the input)
    allowed: bool  # the policy allows this QI to be removed

    @property
    def blocks(self) -> bool:
        return self.status == "removed" and not self.allowed

    def as_dict(self) -> dict[str, Any]:
        return {"qi": self.qi, "level": self.level, "words": self.words, "values_in": self.values_in,
                "values_out": self.values_out, "status": self.status, "allowed": self.allowed}


def allowed_removals(policy: PrivacyPolicy) -> set[str]:
    return {q.column for q in policy.quasi_identifiers if q.allow_removal}


def field_utility(before: pl.DataFrame, after: pl.DataFrame, levels: Mapping[str, int],
                  hierarchies: Mapping[str, Hierarchy], policy: PrivacyPolicy) -> list[FieldUtility]:
    """Each QI of ``levels``: distinct values before (every person) and after (the persons released,
    their values generalised); removed when more than one value became one (or none)."""
    allowed = allowed_removals(policy)
    out: list[FieldUtility] = []
    for q, lv in levels.items():
        if q.startswith("_v") or q not in before.columns or q not in hierarchies:
            continue
        n_in = int(before[q].n_unique()) if before.height else 0
        n_out = int(after[q].n_unique()) if after.height else 0
        status = "constant" if n_in <= 1 else ("removed" if n_out <= 1 else "kept")
        words = level_words(hierarchies[q], lv)
        if status == "removed" and words != "removed":
            words += ", one value left"
        out.append(FieldUtility(q, int(lv), words, n_in, n_out, status, q in allowed))
    return out


def utility_summary(fields: Sequence[FieldUtility]) -> dict[str, Any]:
    """The report's ``utility`` section."""
    return {"fields": [f.as_dict() for f in fields],
            "removed": [f.qi for f in fields if f.status == "removed"],
            "constant": [f.qi for f in fields if f.status == "constant"],
            "blocked": [f.qi for f in fields if f.blocks]}


def removed_by_levels(levels: Mapping[str, int], hierarchies: Mapping[str, Hierarchy]) -> list[str]:
    """The QIs a node would collapse to one value (over the whole domain; suppression aside)."""
    return [q for q, lv in levels.items() if not q.startswith("_v") and q in hierarchies
            and hierarchies[q].cardinality(0) > 1 and hierarchies[q].cardinality(lv) <= 1]


def cost_words(levels: Mapping[str, int], hierarchies: Mapping[str, Hierarchy], suppressed: int, records: int,
               policy: PrivacyPolicy) -> tuple[str, list[str]]:
    """What a node costs, in words: "sex removed (not allowed: ...), year of birth in 20-year bands,
    3.1% of records suppressed"; and the removed QIs the policy does not allow."""
    allowed = allowed_removals(policy)
    removed = removed_by_levels(levels, hierarchies)
    refused = [q for q in removed if q not in allowed]
    parts = [f"{field_name(q)} removed" + ("" if q in allowed else " (the policy does not allow its removal)")
             for q in removed]
    for q, lv in levels.items():
        if q in removed or q.startswith("_v") or q not in hierarchies or lv <= 0:
            continue
        w = level_words(hierarchies[q], lv)
        parts.append(f"{field_name(q)} in {w}" if w.endswith("bands") else f"{field_name(q)}: {w}")
    share = suppressed / records if records else 0.0
    parts.append(f"{share:.1%} of records suppressed")
    return ", ".join(parts), refused


def ceilings(qis: Sequence[str], hierarchies: Sequence[Hierarchy], policy: PrivacyPolicy) -> tuple[int, ...]:
    """The highest level each QI may take without collapsing to one value: below its first level of a
    single label when the policy does not allow its removal (a QI with one value at every level, or
    allowed to go, keeps its full height)."""
    allowed = allowed_removals(policy)
    out: list[int] = []
    for q, h in zip(qis, hierarchies, strict=True):
        top = h.height
        if q not in allowed and h.cardinality(0) > 1:
            top = max(lv for lv in range(h.height + 1) if h.cardinality(lv) > 1)
        out.append(top)
    return tuple(out)
