"""Generalisation hierarchies for k-anonymity: ARX's CSV format and built-ins for health data.

A hierarchy maps each original value (a *leaf*, level 0) to a label at every level ``1..height``;
the top level is usually the single value ``*``. Full-domain generalisation to level ``l`` replaces
every value of the column by its level-``l`` label.

ARX's format (accepted unchanged): one row per leaf value, levels separated by ``;``, e.g.
``39;35-39;30-39;20-39;*``. All rows have the same number of levels.

Built-ins (``builtin:NAME``) are built from the values found in the data, so that per-site
frequency tables that merge give the same hierarchy everywhere (bands are aligned on multiples of
their width, so labels never depend on which values a site happens to hold):

- ``year5``  year of birth → [1950-1954] → [1950-1959] → [1940-1959] → ``*``
- ``year10`` year of birth → [1950-1959] → [1940-1959] → ``*``
- ``year20`` year of birth → [1940-1959] → ``*``
- ``age5``, ``age10``, ``age20``: the same bands for an age (e.g. age at index date)
- ``date-month`` date (ISO) → 2020-03 → 2020-Q1 → 2020 → ``*``
- ``date-quarter`` date → 2020-Q1 → 2020 → ``*``
- ``date-year`` date → 2020 → ``*``
- ``lu-postcode`` place of residence: a Luxembourg postcode ``L-1234`` → its commune's code
  ``LU-0042`` → its canton's ISO 3166-2 code ``LU-EC`` → ``LU`` → ``*``; a residence abroad,
  written ``FR-57000`` (ISO 3166-1 alpha-2 country, ``-``, postcode) or ``FR`` alone, → ``FR`` →
  ``FR`` → ``FR`` → ``*``. Labels are codes, never names (ten cantons and the country are also
  commune names), so a label names one place at one level (``anonymisation/locations.py`` reads
  them back). ``L-NNNN`` postcodes are the synthetic ones of ``schemas/geo.py``: an unknown one is an
  error, and so is a value that names no country (a bare ``57000``)
- ``sex`` (and ``flat`` for any categorical column): value → ``*``

Each hierarchy is *monotone*: two values that share a label at level ``l`` share it at every level
above, so generalisation never splits a group; loading checks this.

A *fixed* hierarchy (:meth:`Hierarchy.fixed`) has height 0: one level, the leaves. Its column is a
quasi-identifier that can no longer be generalised (e.g. a value already published in an earlier
release): it partitions the equivalence classes but is never recoded.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import numpy.typing as npt

from anonymisation.hierarchy_names import BUILTINS

IntArray = npt.NDArray[np.int64]

TOP = "*"
BUILTIN_PREFIX = "builtin:"


class HierarchyError(ValueError):
    """A hierarchy cannot be built or loaded, or a value cannot be placed in it."""


def _preview(values: Iterable[str], limit: int = 5) -> str:
    items = list(values)
    shown = ", ".join(repr(v) for v in items[:limit])
    more = f" (and {len(items) - limit} more)" if len(items) > limit else ""
    return shown + more


@dataclass(frozen=True)
class Hierarchy:
    """A generalisation hierarchy over integer codes.

    ``labels[l]`` lists the distinct labels of level ``l`` (their position is their code);
    ``maps[l][leaf_code]`` is the level-``l`` code of a leaf (``maps[0]`` is the identity).
    """

    name: str
    labels: tuple[tuple[str, ...], ...]
    maps: tuple[IntArray, ...]
    _index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    @staticmethod
    def from_rows(name: str, rows: Sequence[Sequence[str]], *, min_levels: int = 2) -> Hierarchy:
        """Build from one row per leaf: ``[leaf, level1, level2, ...]`` (ARX's layout).

        Rows need at least ``min_levels`` levels (2 by default: a one-column hierarchy file is
        usually a wrong delimiter; :meth:`fixed` builds the one-level hierarchy on purpose).
        """
        if not rows:
            raise HierarchyError(f"hierarchy {name}: no rows")
        width = len(rows[0])
        if width < max(min_levels, 1):
            raise HierarchyError(f"hierarchy {name}: needs at least two levels (value;generalised)")
        seen: dict[str, tuple[str, ...]] = {}
        unique_rows: list[tuple[str, ...]] = []
        for i, row in enumerate(rows):
            if len(row) != width:
                raise HierarchyError(
                    f"hierarchy {name}: row {i + 1} has {len(row)} levels, the first row has {width}"
                )
            tup = tuple(row)
            if tup[0] in seen:
                if seen[tup[0]] != tup:
                    raise HierarchyError(
                        f"hierarchy {name}: value {tup[0]!r} appears twice with different levels"
                    )
                continue
            seen[tup[0]] = tup
            unique_rows.append(tup)
        labels: list[tuple[str, ...]] = []
        maps: list[IntArray] = []
        for level in range(width):
            codes: dict[str, int] = {}
            arr = np.empty(len(unique_rows), dtype=np.int64)
            for i, row in enumerate(unique_rows):
                arr[i] = codes.setdefault(row[level], len(codes))
            labels.append(tuple(codes))
            maps.append(arr)
        h = Hierarchy(name, tuple(labels), tuple(maps), {v: i for i, v in enumerate(labels[0])})
        h._check_monotone()
        return h

    @staticmethod
    def fixed(name: str, values: Iterable[str | None]) -> Hierarchy:
        """A hierarchy of height 0 over the distinct ``values`` (sorted): a fixed quasi-identifier that
        is never generalised. A null value is an error (the engine encodes values as strings)."""
        given = list(values)
        if any(v is None for v in given):
            raise HierarchyError(f"hierarchy {name}: a fixed attribute cannot hold a null value")
        distinct = sorted({str(v) for v in given})
        return Hierarchy.from_rows(name, [[v] for v in distinct], min_levels=1)

    def _check_monotone(self) -> None:
        for level in range(1, self.height + 1):
            lower, upper = self.maps[level - 1], self.maps[level]
            parent = np.full(len(self.labels[level - 1]), -1, dtype=np.int64)
            parent[lower] = upper
            bad = np.nonzero(parent[lower] != upper)[0]
            if bad.size:
                leaf = self.labels[0][int(bad[0])]
                raise HierarchyError(
                    f"hierarchy {self.name}: not monotone at level {level}: "
                    f"{self.labels[level - 1][int(lower[bad[0]])]!r} (from {leaf!r}) "
                    f"generalises to more than one value"
                )

    @property
    def height(self) -> int:
        """Highest level (number of generalisation steps); 0 for a fixed attribute."""
        return len(self.labels) - 1

    @property
    def is_fixed(self) -> bool:
        """Height 0: the column is a class key that cannot be generalised."""
        return self.height == 0

    @property
    def domain_size(self) -> int:
        """Number of leaves."""
        return len(self.labels[0])

    def cardinality(self, level: int) -> int:
        return len(self.labels[level])

    def code(self, value: str) -> int:
        return self._index[value]

    @cached_property
    def leaves_under(self) -> tuple[IntArray, ...]:
        """``leaves_under[l][code]``: number of leaves under the level-``l`` value ``code``."""
        return tuple(
            np.bincount(m, minlength=len(lab)).astype(np.int64)
            for m, lab in zip(self.maps, self.labels, strict=True)
        )

    def up(self, lower: int, upper: int) -> IntArray:
        """Lookup array: level-``lower`` code → level-``upper`` code (``lower <= upper``)."""
        return self._up[lower][upper]

    @cached_property
    def _up(self) -> tuple[tuple[IntArray, ...], ...]:
        out: list[tuple[IntArray, ...]] = []
        for a in range(self.height + 1):
            row: list[IntArray] = []
            for b in range(self.height + 1):
                if b < a:
                    row.append(np.empty(0, dtype=np.int64))
                    continue
                arr = np.zeros(len(self.labels[a]), dtype=np.int64)
                arr[self.maps[a]] = self.maps[b]
                row.append(arr)
            out.append(tuple(row))
        return tuple(out)

    def encode(self, values: Sequence[str | None], column: str) -> IntArray:
        """Leaf codes of ``values``; a value missing from the hierarchy is an error naming the column."""
        index = self._index
        out = np.empty(len(values), dtype=np.int64)
        missing: dict[str, None] = {}
        for i, v in enumerate(values):
            c = index.get(v) if v is not None else None
            if c is None:
                missing[repr(v) if v is None else v] = None
                out[i] = -1
            else:
                out[i] = c
        if missing:
            raise HierarchyError(
                f"column {column}: {len(missing)} value(s) not in hierarchy {self.name}: {_preview(missing)}"
            )
        return out

    def generalise(self, value: str, level: int) -> str:
        return self.labels[level][int(self.maps[level][self._index[value]])]

    def label_map(self, level: int) -> dict[str, str]:
        """Leaf value → its label at ``level``."""
        lab = self.labels[level]
        return {v: lab[int(c)] for v, c in zip(self.labels[0], self.maps[level], strict=True)}

    def rows(self) -> list[list[str]]:
        """ARX layout: one row per leaf."""
        return [
            [self.labels[lv][int(self.maps[lv][i])] for lv in range(self.height + 1)]
            for i in range(self.domain_size)
        ]


# --------------------------------------------------------------------------- ARX CSV


def load_arx_hierarchy(path: str | Path, delimiter: str = ";", name: str | None = None) -> Hierarchy:
    """Read an ARX hierarchy CSV (one row per value, levels separated by ``delimiter``)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise HierarchyError(f"hierarchy file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HierarchyError(f"cannot read hierarchy {p}: {exc}") from None
    rows = [row for row in csv.reader(text.splitlines(), delimiter=delimiter) if row and any(c for c in row)]
    return Hierarchy.from_rows(name or p.name, rows)


def write_arx_hierarchy(h: Hierarchy, path: str | Path, delimiter: str = ";") -> None:
    with Path(path).open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter=delimiter, lineterminator="\n")
        writer.writerows(h.rows())


# --------------------------------------------------------------------------- built-ins

_NUMBER = re.compile(r"^\s*[+-]?\d+(\.0*)?\s*$")


def _parse_int(value: str) -> int | None:
    if not _NUMBER.match(value):
        return None
    return int(float(value)) if "." in value else int(value)


def _band(x: int, width: int) -> str:
    lo = (x // width) * width
    return f"[{lo}-{lo + width - 1}]"


def _numeric_levels(widths: Sequence[int]) -> Callable[[str], list[str] | None]:
    def levels(value: str) -> list[str] | None:
        x = _parse_int(value)
        if x is None:
            return None
        return [value, *(_band(x, w) for w in widths), TOP]

    return levels


def _parse_date(value: str) -> dt.date | None:
    s = value.strip()
    for candidate in (s, s[:10]):
        try:
            return dt.date.fromisoformat(candidate)
        except ValueError:
            continue
    return None


def _date_levels(kind: str) -> Callable[[str], list[str] | None]:
    def levels(value: str) -> list[str] | None:
        d = _parse_date(value)
        if d is None:
            return None
        month, quarter, year = (
            f"{d.year:04d}-{d.month:02d}",
            f"{d.year:04d}-Q{(d.month - 1) // 3 + 1}",
            f"{d.year:04d}",
        )
        if kind == "month":
            return [value, month, quarter, year, TOP]
        if kind == "quarter":
            return [value, quarter, year, TOP]
        return [value, year, TOP]

    return levels


_POSTCODE = re.compile(r"^\s*(?:L-?)?(\d{4})\s*$", re.IGNORECASE)
_ABROAD = re.compile(r"^\s*([A-Za-z]{2})(?:-(\S(?:.*\S)?))?\s*$")  # FR-57000, NL-1234 AB, or FR alone


def _postcode_levels(value: str) -> list[str] | None:
    """Luxembourg: value, commune code, canton code, LU, *; abroad: value, country thrice, *.

    Every label depends on the value alone, never on the other values of the column."""
    from schemas.geo import COUNTRY_CODE, postcode_index

    m = _POSTCODE.match(value)
    if m:
        commune = postcode_index().get(f"L-{m.group(1)}")
        if commune is None:
            return None
        return [value, commune.label, commune.canton_code, COUNTRY_CODE, TOP]
    m = _ABROAD.match(value)
    if not m:
        return None
    country = m.group(1).upper()
    if country == COUNTRY_CODE and m.group(2) is not None:
        return None  # LU-0042 is a commune's code, not a postcode: Luxembourg postcodes are L-NNNN
    return [value, country, country, country, TOP]


def _flat_levels(value: str) -> list[str] | None:
    return [value, TOP]


_BUILDERS: dict[str, Callable[[str], list[str] | None]] = {
    "year5": _numeric_levels([5, 10, 20]),
    "year10": _numeric_levels([10, 20]),
    "year20": _numeric_levels([20]),
    "age5": _numeric_levels([5, 10, 20]),
    "age10": _numeric_levels([10, 20]),
    "age20": _numeric_levels([20]),
    "date-month": _date_levels("month"),
    "date-quarter": _date_levels("quarter"),
    "date-year": _date_levels("year"),
    "lu-postcode": _postcode_levels,
    "sex": _flat_levels,
    "flat": _flat_levels,
}


_HINTS: dict[str, str] = {
    "lu-postcode": (
        " (expected a Luxembourg postcode L-NNNN known to schemas/geo.py, or a residence abroad as its"
        " ISO country code and postcode, e.g. FR-57000, or the country code alone)"
    ),
}


def _sample_value(name: str) -> str:
    if name.startswith("date"):
        return "2000-01-01"
    if name == "lu-postcode":
        from schemas.geo import communes

        return communes()[0].postcodes[0]
    return "2000"


def builtin_hierarchy(name: str, values: Iterable[str | None], column: str = "?") -> Hierarchy:
    """Build ``builtin:name`` over the distinct ``values`` found in the data (sorted).

    The value ``*`` (already fully generalised, e.g. a missing value) is accepted by every built-in
    and stays ``*`` at every level. A null or a value that cannot be placed is an error naming the
    column and the first such values.
    """
    builder = _BUILDERS.get(name)
    if builder is None:
        raise HierarchyError(f"unknown hierarchy builtin:{name} (known: {', '.join(sorted(BUILTINS))})")
    given = list(values)
    distinct = sorted({v for v in given if v is not None})
    rows: list[list[str]] = []
    bad: list[str] = [repr(None)] if any(v is None for v in given) else []
    for v in distinct:
        r = [TOP] * len(builder(_sample_value(name)) or []) if v == TOP else builder(v)
        if r is None:
            bad.append(v)
        else:
            rows.append(r)
    if bad:
        raise HierarchyError(
            f"column {column}: {len(bad)} value(s) cannot be placed in builtin:{name}: {_preview(bad)}"
            + _HINTS.get(name, "")
        )
    if not rows:
        raise HierarchyError(f"column {column}: no values to build builtin:{name}")
    return Hierarchy.from_rows(f"builtin:{name}", rows)


def resolve_hierarchy(
    spec: str, values: Sequence[str | None], column: str, delimiter: str = ";"
) -> Hierarchy:
    """``builtin:NAME`` (built from ``values``) or the path of an ARX CSV; checks every value is placed."""
    if spec.startswith(BUILTIN_PREFIX):
        return builtin_hierarchy(spec[len(BUILTIN_PREFIX) :], values, column)
    h = load_arx_hierarchy(spec, delimiter=delimiter)
    h.encode(list(dict.fromkeys(values)), column)  # raises naming the column and first missing values
    return h
