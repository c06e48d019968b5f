"""The facts of a release as the k^m engine sees them, and its decision applied back to the rows.

1. ``collect_units``: for each fact table (``schemas.facts.FACT_TABLES``), the distinct tuples of a
   person's fact columns (a *unit*) with their row counts; each fact is the key ``table|column|value``.
2. ``FactBook``: every fact key gets an integer id (sorted keys: deterministic), and a *parent*:
   a concept's nearest standard ancestor of the same domain in CONCEPT_ANCESTOR (nearest first, then
   the ancestor held by the most persons, then the lowest id), an ICD-10 or ATC source code's shorter
   code (``shorter_code``), nothing for the other columns. Parents of parents follow, so each fact
   has a finite chain.
3. ``apply_units``: after ``anonymisation.kmanon.enforce_km``, each table's rows take their unit's
   new values (joined on the unit's original values); removed units' rows go. Per table and fact
   column, counts of facts kept exactly, generalised and suppressed are returned for the report.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from anonymisation.kmanon import NONE, Units
from schemas.facts import ATC_TABLES, FACT_TABLES, FactColumns

IntArray = npt.NDArray[np.int64]
SEP = "|"
UNIT = "_unit"
ROWS = "_rows"
CONCEPT_GROUP_PAIRS = 2_000_000  # (concept, person) pairs whose ancestors are counted at once

_ICD10 = re.compile(r"^[A-Z]\d{2}(\.[0-9A-Z]{1,4}|[0-9][0-9A-Z]{0,3})$")
_ATC = re.compile(r"^[A-Z]\d{2}[A-Z]([A-Z](\d{2})?)?$|^[A-Z]\d{2}$")
_ATC_UP = {7: 5, 5: 4, 4: 3, 3: 1}


def shorter_code(code: str, atc: bool) -> str | None:
    """The next coarser code: ICD-10 ``E11.65`` -> ``E11.6`` -> ``E11`` (``E1165`` -> ``E116`` -> ``E11``);
    ATC ``A10BA02`` -> ``A10BA`` -> ``A10B`` -> ``A10`` -> ``A``. None when nothing is above."""
    if atc:
        if not _ATC.match(code):
            return None
        n = _ATC_UP.get(len(code))
        return code[:n] if n else None
    if not _ICD10.match(code):
        return None
    head, dot, tail = code.partition(".")
    if dot:
        return f"{head}.{tail[:-1]}" if len(tail) > 1 else head
    return code[:-1] if len(code) > 3 else None


def slot_columns(spec: FactColumns) -> list[str | None]:
    return [spec.concept, spec.source, spec.source_concept, *spec.cells]


def _is_concept(col: str) -> bool:
    return col.endswith("_concept_id")


def fact_key(table: str, col: str) -> pl.Expr:
    """``table|col|value`` when the cell holds a fact (a concept id other than 0, a non-empty value)."""
    v = pl.col(col)
    valid = v.is_not_null() & ((v.cast(pl.Int64, strict=False) != 0) if _is_concept(col) else (v.cast(pl.String) != ""))
    return pl.when(valid).then(pl.lit(f"{table}{SEP}{col}{SEP}") + v.cast(pl.String)).otherwise(None)


def table_fact_keys(df: pl.DataFrame, table: str) -> pl.DataFrame:
    """(person_id, key): the distinct facts of ``table``'s rows (published or not)."""
    spec = FACT_TABLES.get(table)
    if spec is None or "person_id" not in df.columns:
        return pl.DataFrame(schema={"person_id": pl.Int64, "key": pl.String})
    cols = [c for c in slot_columns(spec) if c is not None and c in df.columns]
    parts = [df.select(pl.col("person_id").cast(pl.Int64), key=fact_key(table, c)) for c in cols]
    if not parts:
        return pl.DataFrame(schema={"person_id": pl.Int64, "key": pl.String})
    return pl.concat(parts).drop_nulls().unique()


@dataclass
class TableUnits:
    table: str
    columns: list[str]  # the fact columns present (original names), in slot order with None gaps removed
    slots: list[int]  # slot index of each present column
    frame: pl.DataFrame  # _unit, person_id, the fact columns (original values), _rows


def collect_units(table: str, rows: pl.DataFrame, first_unit: int) -> TableUnits | None:
    """The distinct fact tuples of a table's rows (``rows`` needs person_id and the fact columns; with a
    ``_rows`` column, each row stands for that many rows: tuples counted part by part, then combined)."""
    spec = FACT_TABLES.get(table)
    if spec is None or "person_id" not in rows.columns:
        return None
    cols, slots = [], []
    for i, c in enumerate(slot_columns(spec)):
        if c is not None and c in rows.columns:
            cols.append(c)
            slots.append(i)
    if spec.concept not in cols:
        return None
    count = pl.col(ROWS).sum() if ROWS in rows.columns else pl.len()
    frame = (rows.group_by(["person_id", *cols]).agg(count.cast(pl.Int64).alias(ROWS))
             .sort(["person_id", *cols], nulls_last=True))
    frame = frame.with_columns(pl.int_range(first_unit, first_unit + frame.height, dtype=pl.Int64).alias(UNIT))
    return TableUnits(table, cols, slots, frame)


@dataclass
class FactBook:
    keys: list[str]
    index: dict[str, int]
    parent: IntArray
    _values: pl.Series | None = field(default=None, repr=False)

    def ids(self, keys: pl.Series) -> IntArray:
        """Fact ids of keys (null -> NONE)."""
        mapped = keys.replace_strict(self.index, default=NONE, return_dtype=pl.Int64)
        return np.asarray(mapped.fill_null(NONE).to_numpy(), dtype=np.int64)

    def value(self, fid: int) -> str:
        return self.keys[fid].split(SEP, 2)[2]

    def values(self) -> pl.Series:
        """The value of every fact id, in id order (a Series to gather from)."""
        if self._values is None:
            self._values = pl.Series([k.split(SEP, 2)[2] for k in self.keys], dtype=pl.String)
        return self._values


def concept_parents(
    concepts: pl.DataFrame | Sequence[pl.DataFrame], ancestor: pl.DataFrame | None, concept: pl.DataFrame | None
) -> dict[int, int]:
    """Nearest standard same-domain ancestor of every concept in ``concepts`` (columns concept,
    person; several frames: their union; concept 0 or null is no concept) and of every ancestor
    reached; ties go to the ancestor held (itself or through a descendant) by the most persons, then
    to the lowest id."""
    frames = [concepts] if isinstance(concepts, pl.DataFrame) else list(concepts)
    held_concept = pl.col("concept").cast(pl.Int64, strict=False).fill_null(0) != 0
    frames = [f for f in frames if f.height]
    if ancestor is None or concept is None or not frames:
        return {}
    concepts_held = pl.concat([f.select(pl.col("concept").unique()).filter(held_concept)
                               .select(pl.col("concept").cast(pl.Int64)) for f in frames]).unique()
    if concepts_held.is_empty():
        return {}
    anc = ancestor.select(
        a=pl.col("ancestor_concept_id").cast(pl.Int64), d=pl.col("descendant_concept_id").cast(pl.Int64),
        lv=pl.col("min_levels_of_separation").cast(pl.Int64),
    ).filter((pl.col("lv") > 0) & (pl.col("a") != pl.col("d")))
    up = anc.join(concepts_held.rename({"concept": "d"}), on="d", how="semi")  # every ancestor of a data concept
    closure = pl.concat([concepts_held.select(c="concept"), up.select(c="a")]).unique()
    cand = anc.join(closure.rename({"c": "d"}), on="d", how="semi")
    info = concept.select(pl.col("concept_id").cast(pl.Int64), pl.col("domain_id").cast(pl.String),
                          pl.col("standard_concept").cast(pl.String)).unique("concept_id", keep="first")
    cand = (cand.join(info.select(d="concept_id", dd="domain_id"), on="d")
            .join(info.filter(pl.col("standard_concept") == "S").select(a="concept_id", ad="domain_id"), on="a")
            .filter(pl.col("dd") == pl.col("ad")).select("a", "d", "lv"))
    if cand.is_empty():
        return {}
    # persons holding each ancestor (itself or through a descendant), counted over disjoint groups of
    # persons and summed: the distinct (concept, person) pairs of a million patients are ~16M, and a
    # unique over them all took 3 GB
    groups = max(1, sum(f.height for f in frames) // CONCEPT_GROUP_PAIRS)
    counts = []
    for g in range(groups):
        mine = held_concept & (pl.col("person").hash(seed=0) % groups == g)
        data = pl.concat([f.filter(mine).select(pl.col("concept").cast(pl.Int64), pl.col("person").cast(pl.Int64))
                          for f in frames]).unique()
        counts.append(pl.concat([
            up.join(data.rename({"concept": "d"}), on="d").select("a", "person"),
            data.select(a="concept", person="person"),
        ]).group_by("a").agg(n=pl.col("person").n_unique()))
        del data
    held = pl.concat(counts).group_by("a").agg(pl.col("n").sum())
    best = (cand.join(held, on="a", how="left").with_columns(pl.col("n").fill_null(0))
            .sort(["d", "lv", "n", "a"], descending=[False, False, True, False])
            .group_by("d", maintain_order=True).first())
    return dict(zip(best["d"].to_list(), best["a"].to_list(), strict=True))


def build_factbook(
    units: Sequence[TableUnits],
    extra_keys: Sequence[str],
    ancestor: pl.DataFrame | None,
    concept: pl.DataFrame | None,
) -> FactBook:
    """Ids and parents of every fact of ``units`` and of ``extra_keys`` (e.g. earlier versions')."""
    keys: set[str] = set(extra_keys)
    concept_pairs: list[pl.DataFrame] = []
    for tu in units:
        for c in tu.columns:  # the keys of the column's distinct values (not one string per unit: 18M units)
            ks = tu.frame.select(pl.col(c).unique()).select(k=fact_key(tu.table, c))["k"].drop_nulls()
            keys.update(ks.to_list())
            if c == FACT_TABLES[tu.table].concept:  # the columns themselves: no copy of 18M pairs
                concept_pairs.append(tu.frame.select(concept=pl.col(c), person=pl.col("person_id")))
    parents = concept_parents(concept_pairs, ancestor, concept)
    parent_key: dict[str, str] = {}
    todo = sorted(keys)
    while todo:
        new: list[str] = []
        for key in todo:
            table, col, value = key.split(SEP, 2)
            spec = FACT_TABLES.get(table)
            up: str | None = None
            if spec is not None and col == spec.concept:
                try:
                    p = parents.get(int(value))
                except ValueError:
                    p = None
                up = f"{table}{SEP}{col}{SEP}{p}" if p is not None else None
            elif spec is not None and col == spec.source:
                code = shorter_code(value, atc=table in ATC_TABLES)
                up = f"{table}{SEP}{col}{SEP}{code}" if code else None
            if up is not None:
                parent_key[key] = up
                if up not in keys:
                    keys.add(up)
                    new.append(up)
        todo = new
    ordered = sorted(keys)
    index = {k: i for i, k in enumerate(ordered)}
    parent = np.full(len(ordered), NONE, dtype=np.int64)
    for child, up in parent_key.items():
        parent[index[child]] = index[up]
    return FactBook(ordered, index, parent)


def units_matrix(units: Sequence[TableUnits], book: FactBook, person_index: Mapping[int, int]) -> Units:
    """All tables' units as one ``kmanon.Units`` (width = 3 coded slots + the widest cell list)."""
    width = 3 + max((len(FACT_TABLES[tu.table].cells) for tu in units), default=0)
    total = sum(tu.frame.height for tu in units)
    # filled table by table in place (no per-table copies to concatenate), int32 where the ids fit:
    # 18M units x 5 slots at a million patients, and the engine holds one working copy
    code: type[np.signedinteger[Any]] = np.int32 if max(len(book.keys), len(person_index)) < 2**31 else np.int64
    persons: npt.NDArray[np.signedinteger[Any]] = np.zeros(total, dtype=code)
    facts: npt.NDArray[np.signedinteger[Any]] = np.full((total, width), NONE, dtype=code)
    removable = np.zeros(total, dtype=bool)
    start = 0
    for tu in units:
        end = start + tu.frame.height
        for c, s in zip(tu.columns, tu.slots, strict=True):
            # each distinct value's fact id (NONE: no fact), then every unit's through its value
            values = tu.frame.select(pl.col(c).unique().drop_nulls())
            ids = book.ids(values.select(k=fact_key(tu.table, c))["k"])
            mapped = tu.frame[c].replace_strict(values[c], pl.Series(ids, dtype=pl.Int64), default=NONE,
                                                return_dtype=pl.Int64).fill_null(NONE)
            facts[start:end, s] = mapped.to_numpy()
        persons[start:end] = tu.frame["person_id"].replace_strict(person_index, return_dtype=pl.Int64).to_numpy()
        removable[start:end] = FACT_TABLES[tu.table].removable
        start = end
    return Units(persons, facts, removable)


@dataclass
class TableOutcome:
    """How a table's rows fared: rows removed/generalised, and per fact column exact/generalised/suppressed."""

    rows: int = 0
    removed: int = 0
    generalised: int = 0
    facts: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "removed": self.removed, "generalised": self.generalised, "facts": self.facts}


def unit_decisions(tu: TableUnits, book: FactBook, before: IntArray, after: IntArray,
                   removed: npt.NDArray[np.bool_], offset: int,
                   changed_only: bool = False) -> tuple[pl.DataFrame, TableOutcome]:
    """The table's units with their new values (``_new_<col>``), ``_removed`` and ``_generalised``
    (``changed_only``: only the units removed or generalised; the outcome still counts them all).

    A cell that held a fact takes its new fact's value, or is emptied (0 for a concept column, null
    otherwise); a cell that held none keeps its value."""
    n = tu.frame.height
    sl = slice(offset, offset + n)
    b, a, gone = before[sl], after[sl], removed[sl]
    nrows = tu.frame[ROWS].to_numpy()
    changed = np.zeros(n, dtype=bool)
    outcome = TableOutcome(rows=int(nrows.sum()), removed=int(nrows[gone].sum()))
    for c, s in zip(tu.columns, tu.slots, strict=True):
        bs, as_ = b[:, s], a[:, s]
        had = bs >= 0
        moved = had & ~gone & (as_ != bs)
        changed |= moved
        outcome.facts[c] = {
            "exact": int(nrows[had & ~gone & (as_ == bs)].sum()),
            "generalised": int(nrows[moved & (as_ >= 0)].sum()),
            "suppressed": int(nrows[had & (gone | (as_ < 0))].sum()),
        }
    outcome.generalised = int(nrows[changed & ~gone].sum())
    # the new values of the units kept (a few percent of 18M at a million patients when changed_only)
    keep = np.flatnonzero(gone | changed) if changed_only else np.arange(n)
    frame = tu.frame.select(UNIT, "person_id", *tu.columns, ROWS)
    if changed_only:
        frame = frame[keep]
    b, a, gone, changed = b[keep], a[keep], gone[keep], changed[keep]
    news: list[pl.Expr] = []
    for c, s in zip(tu.columns, tu.slots, strict=True):
        bs, as_ = b[:, s], a[:, s]
        had = bs >= 0
        idx = pl.Series(np.where(as_ >= 0, as_, 0))
        text = book.values().gather(idx).set(pl.Series(as_ < 0), None) if len(book.keys) else \
            pl.Series([None] * len(keep), dtype=pl.String)
        dtype = tu.frame.schema[c]
        if _is_concept(c):
            value = pl.lit(text).cast(pl.Int64).fill_null(0).cast(dtype)
        elif dtype == pl.String:
            value = pl.lit(text)
        else:
            value = pl.lit(text).cast(pl.Int64).cast(dtype)
        news.append(pl.when(pl.lit(pl.Series(had & ~gone))).then(value).otherwise(pl.col(c)).alias(f"_new_{c}"))
    out = frame.with_columns(*news, _removed=pl.Series(gone), _generalised=pl.Series(changed & ~gone))
    return out, outcome


def apply_to_rows(rows: pl.DataFrame, decisions: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
    """The table's rows with their unit's new values; removed units' rows flagged ``_removed``. A row
    whose unit has no decision (``decisions`` may hold only the units that change) keeps its values,
    with ``_removed`` and ``_generalised`` null."""
    keys = ["person_id", *columns]
    dec = decisions.select(*keys, *[f"_new_{c}" for c in columns], "_removed", "_generalised")
    out = rows.join(dec, on=keys, how="left", nulls_equal=True, maintain_order="left")
    decided = pl.col("_removed").is_not_null()
    return out.with_columns([pl.when(decided).then(pl.col(f"_new_{c}")).otherwise(pl.col(c)).alias(c)
                             for c in columns]).drop([f"_new_{c}" for c in columns])



@dataclass
class UnitLinks:
    """Units that leave with other units: a modifier row (a stage measurement linked to its diagnosis by
    ``measurement_event_id``) is removed by the release when the row it modifies is (schemas.column_policy
    ``EVENT_LINKS``), so a modifier unit whose every row is linked loses its facts when each of its
    targets' units is removed. ``unit``/``target``: one pair per (linked row group, target unit), unit
    indices of the units matrix; ``target`` is ``NONE`` when the linked row is not among the target
    table's rows (the release removes it whatever the engine does). ``anchored``: the unit has a row no
    link removes."""

    unit: IntArray
    target: IntArray
    anchored: npt.NDArray[np.bool_]

    def orphaned(self, removed: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        """Units (not anchored) whose linked rows all point at removed or missing units."""
        n = len(self.anchored)
        linked = np.zeros(n, dtype=bool)
        linked[self.unit] = True
        ok = self.target >= 0
        ok[ok] = ~removed[self.target[ok]]
        alive = np.zeros(n, dtype=bool)
        alive[self.unit[ok]] = True
        return np.asarray(linked & ~self.anchored & ~alive, dtype=bool)


def unit_ids(tu: TableUnits, rows: pl.DataFrame) -> pl.Series:
    """The unit of each of ``rows`` (person_id and the unit's fact columns; null when none matches)."""
    keys = ["person_id", *tu.columns]
    frame = tu.frame.select(*keys, UNIT)
    cast = [pl.col(c).cast(frame.schema[c]) for c in keys if rows.schema[c] != frame.schema[c]]
    rows = rows.with_columns(cast) if cast else rows
    # only the units of the rows' persons (a few linked rows against 9M measurement units: the join's
    # hash table would hold them all)
    frame = frame.filter(pl.col("person_id").is_in(rows["person_id"].unique().implode()))
    joined = rows.select(keys).join(frame, on=keys, how="left", nulls_equal=True, maintain_order="left")
    return joined[UNIT]


def unit_links(units: Sequence[TableUnits], linked: Mapping[str, pl.DataFrame],
               targets: Mapping[str, pl.DataFrame], total: int) -> UnitLinks:
    """``linked[table]``: the table's rows that a link can remove, grouped: person_id, the fact columns,
    ``_target`` (the table linked to), ``_link`` (the target row's id), ``_rows`` (how many rows);
    ``targets[table]``: ``_id`` (primary key), person_id and the fact columns of the target rows named by
    a link (a table with no rows at all: an empty frame). ``total``: units in the matrix."""
    by_table = {tu.table: tu for tu in units}
    anchored = np.ones(total, dtype=bool)
    pair_unit: list[IntArray] = []
    pair_target: list[IntArray] = []
    target_unit: dict[str, pl.DataFrame] = {}
    for t, rows in targets.items():
        tu = by_table.get(t)
        if tu is None or rows.is_empty():
            target_unit[t] = pl.DataFrame(schema={"_link": pl.Int64, "_tunit": pl.Int64})
            continue
        target_unit[t] = pl.DataFrame({"_link": rows["_id"].cast(pl.Int64),
                                       "_tunit": unit_ids(tu, rows).cast(pl.Int64)})
    for t, rows in linked.items():
        tu = by_table.get(t)
        if tu is None or rows.is_empty():
            continue
        rows = rows.with_columns(_unit=unit_ids(tu, rows).cast(pl.Int64), _link=pl.col("_link").cast(pl.Int64))
        if rows["_unit"].null_count():
            raise ValueError(f"{t}: linked rows without a unit (the table changed while the release read it)")
        # a unit whose rows are all linked (to whatever) has no anchor
        n_linked = rows.group_by("_unit").agg(pl.col(ROWS).sum())
        frame = tu.frame.select(UNIT, ROWS).join(n_linked.rename({ROWS: "_linked"}), left_on=UNIT,
                                                 right_on="_unit", how="inner")
        bare = frame.filter(pl.col("_linked") >= pl.col(ROWS))[UNIT].to_numpy()
        anchored[bare] = False
        for target, group in rows.partition_by("_target", as_dict=True).items():
            name = str(target[0])
            found = target_unit.get(name)
            if found is None:  # the target table is not released at all: the release keeps these rows
                anchored[group["_unit"].to_numpy()] = True
                continue
            pairs = group.select("_unit", "_link").join(found, on="_link", how="left").unique(["_unit", "_tunit"])
            pair_unit.append(np.asarray(pairs["_unit"].to_numpy(), dtype=np.int64))
            pair_target.append(np.asarray(pairs["_tunit"].fill_null(NONE).to_numpy(), dtype=np.int64))
    unit = np.concatenate(pair_unit) if pair_unit else np.zeros(0, dtype=np.int64)
    target_arr = np.concatenate(pair_target) if pair_target else np.zeros(0, dtype=np.int64)
    return UnitLinks(unit, target_arr, anchored)
