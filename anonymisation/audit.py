"""Independent audit of a written release: k^m over the class key and the facts of docs/privacy.md.

The audit re-reads a release folder (``dataspace/<dataset>/<version>/omop/<table>/*.parquet``) and
checks, for the release alone and jointly with the other numbered versions of the same dataset,
that every person's class key together with every set of at most m of the person's facts is shared
by at least k persons. It shares no code with the anonymisation engine: everything below is derived
from the definitions in docs/privacy.md (class key, facts, k^m, persons at risk, versions).

How it counts, per class (persons with the same class key):

- level 0: the class itself; a class of fewer than k persons puts all its persons at risk;
- level 1: the support of each fact in the class (persons holding it);
- level 2: all pair supports of the class's frequent facts (support >= k) at once, X^T X for the
  boolean person x fact matrix X of the class;
- level 3: the supports of the triples whose three pairs are frequent: for small classes in one
  product (persons holding b and d)^T X over the frequent pairs (b, d); for large ones by
  conditioning on each fact a (the pair supports among the persons holding a), skipping a when
  support(a, b) + support(a, d) - support(a) >= k already holds for every pair.

A *violating set* is a set S of facts held by at least one person of a class, with fewer than k
persons of the class holding it, whose every proper subset is held by at least k (the minimal sets:
every set of a person at risk contains one). A person is at risk at level j when they hold a
violating set of size <= j, which is the definition's "some set of at most j of p's facts shared by
fewer than k persons" (any such set contains a minimal one). Level 0's violating sets are the
classes of fewer than k persons.

Readings of docs/privacy.md where it leaves a choice:

- a location_id with no row in ``location`` counts as a null row, like a null location_id; a
  location_id found twice in ``location`` is an error; no ``location`` table, no location fields;
- death year: the earliest non-null death_date (a date or timestamp column); rows of persons not in
  ``person`` are ignored, here and in every fact table (as are null person_ids);
- concept columns are the ``*_concept_id`` columns (0, "0" and null are not facts); the others
  (source values, care_site_id, provider_id) lose only null and "" (so provider_id 0 is a fact);
- a value's text is Python's ``str`` of it (integers as digits, strings as they are), so the same
  value typed differently in two versions is one joint fact; NaN equals NaN in a class key;
- the versions joined are every other numbered folder beside the audited one (later ones too), in
  numeric order; each one's class key is computed from its own files; a numbered folder without
  ``omop/person`` is an error (the audit cannot vouch for the joint record);
- part files of one table with different schemas are unified (a missing column reads as null).

The result holds counts and table/column names only: no identifier, no value.
"""

from __future__ import annotations

import ctypes
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from transforms.storage import parquet_source, partition_files

Int = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]  # the stored (person, value) pairs: half the memory of int64
Mat = npt.NDArray[np.floating[Any]]  # 0/1 blocks and their products: float32, float64 for huge classes
Bool = npt.NDArray[np.bool_]

MAX_M = 3
ABSENT = -1  # joint class key component of a person missing from a version
VERSION_NAME = re.compile(r"^[1-9][0-9]*$")

# docs/privacy.md, "Facts": the fact columns of each table.
FACT_COLUMNS: dict[str, tuple[str, ...]] = {
    "visit_occurrence": ("visit_concept_id", "visit_source_concept_id", "care_site_id",
                         "provider_id"),
    "visit_detail": ("visit_detail_concept_id", "visit_detail_source_concept_id",
                     "care_site_id", "provider_id"),
    "condition_occurrence": ("condition_concept_id", "condition_source_value", "condition_source_concept_id",
                             "provider_id"),
    "drug_exposure": ("drug_concept_id", "drug_source_value", "drug_source_concept_id", "provider_id"),
    "procedure_occurrence": ("procedure_concept_id", "procedure_source_value", "procedure_source_concept_id",
                             "provider_id"),
    "device_exposure": ("device_concept_id", "device_source_value", "device_source_concept_id", "provider_id"),
    "measurement": ("measurement_concept_id", "measurement_source_value", "measurement_source_concept_id",
                    "provider_id"),
    "observation": ("observation_concept_id", "observation_source_value", "observation_source_concept_id",
                    "provider_id"),
    "specimen": ("specimen_concept_id", "specimen_source_value"),
    "death": ("cause_concept_id", "cause_source_value", "cause_source_concept_id"),
    "condition_era": ("condition_concept_id",),
    "drug_era": ("drug_concept_id",),
    "dose_era": ("drug_concept_id",),
    "episode": ("episode_concept_id", "episode_object_concept_id", "episode_source_value",
                "episode_source_concept_id"),
}

# Largest dense person x fact block built at once (cells); larger classes are handled in row chunks.
DENSE_CELLS = 1 << 24
# Largest (frequent pairs x max(persons, facts)) block for computing a class's triples in one product.
TRIPLE_CELLS = 1 << 22
# (person, fact) pairs checked at once: the classes are taken in groups of about this many pairs (a class
# larger than this is a group of its own), so that the working arrays do not grow with the release.
GROUP_PAIRS = 1 << 22


# The class products are small (tens to hundreds of rows and columns): OpenBLAS's threads cost more than
# they bring there (2-20x slower on 2 shared cores), so the audit runs them on one thread.
SINGLE_THREADED_BLAS = True


class AuditError(Exception):
    """The release folder cannot be audited (missing person table, unreadable file, broken keys)."""


# ----------------------------------------------------------------------------------------- result


@dataclass(frozen=True)
class CheckResult:
    """k^m over one set of persons with their class keys and facts (the release, or the joint record)."""

    persons: int
    classes: int
    smallest_class: int  # 0 when there are no persons
    facts: int | None  # distinct facts held by the persons (None for m = 0: facts are not read)
    person_facts: int | None  # distinct (person, fact) pairs (None for m = 0)
    at_risk: list[int]  # at_risk[j]: persons at risk at level j (cumulative), j = 0..m
    violating_sets: list[int]  # violating_sets[j]: minimal violating fact sets of size j (j = 0: classes < k)
    violating_columns: list[dict[str, int]]  # [j]: "table.column" -> violating sets of size j with such a fact

    @property
    def passed(self) -> bool:
        return not any(self.at_risk)


@dataclass(frozen=True)
class JointResult:
    """The joint check of the audited version with the other versions of the dataset."""

    versions: list[str]  # folder names in key order, the audited version last
    persons: dict[str, int]  # version -> persons in it
    present: dict[str, int]  # version -> persons of the audited version also in it
    check: CheckResult


@dataclass(frozen=True)
class AuditResult:
    version: str  # folder name of the audited version
    k: int
    m: int
    tables: list[str]  # OMOP tables read (person, location, death and the fact tables found)
    release: CheckResult
    joint: JointResult | None  # None when there is no other version
    seconds: float

    @property
    def passed(self) -> bool:
        return self.release.passed and (self.joint is None or self.joint.check.passed)

    @property
    def at_risk(self) -> list[int]:
        return self.release.at_risk

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["passed"] = self.passed
        d["release"]["passed"] = self.release.passed
        if self.joint is not None:
            d["joint"]["check"]["passed"] = self.joint.check.passed
        return d


# ---------------------------------------------------------------------------------------- reading


def _parts(version_dir: Path, table: str) -> list[Path]:
    return partition_files(version_dir / "omop" / table)


def _read(version_dir: Path, table: str, columns: Sequence[str] | None) -> pa.Table | None:
    """The table's part files concatenated (only ``columns`` that exist, all when None); None when absent."""
    files = _parts(version_dir, table)
    if not files:
        return None
    tables = []
    for f in files:
        try:
            pf = pq.ParquetFile(parquet_source(f))
            names = pf.schema_arrow.names
            tables.append(pf.read(columns=None if columns is None else [c for c in columns if c in names]))
        except (OSError, ValueError, pa.ArrowException) as e:
            raise AuditError(f"cannot read {f}: {e}") from e
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (ValueError, pa.ArrowException) as e:
        raise AuditError(f"the part files of {version_dir / 'omop' / table} do not share a schema: {e}") from e


def _column(table: pa.Table, name: str) -> pa.Array:
    arr = table[name].combine_chunks()
    return arr.dictionary_decode() if pa.types.is_dictionary(arr.type) else arr


def _distinct(a: Int) -> Int:
    """Sorted distinct values (a sort: faster here than numpy's hash-based unique on millions of keys)."""
    s = np.sort(a)
    if len(s) < 2:
        return s
    keep = np.empty(len(s), dtype=np.bool_)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def _codes(arr: pa.Array) -> tuple[Int, int]:
    """Equality codes of a column (nulls are one value, NaNs are one value) and their number."""
    try:
        enc = pc.dictionary_encode(arr, null_encoding="encode")
    except pa.ArrowNotImplementedError:
        enc = pc.dictionary_encode(pa.array([None if v is None else repr(v) for v in arr.to_pylist()],
                                            pa.large_string()), null_encoding="encode")
    return enc.indices.to_numpy(zero_copy_only=False).astype(np.int64), len(enc.dictionary)


def _combine(columns: Sequence[tuple[Int, int]], n: int) -> tuple[Int, int]:
    """Dense group ids of the rows' tuples of codes (mixed radix, re-densified after each column)."""
    ids = np.zeros(n, dtype=np.int64)
    groups = 1 if n else 0
    for codes, card in columns:
        combined = ids * max(card, 1) + codes
        uniq, inv = np.unique(combined, return_inverse=True)
        ids, groups = inv.astype(np.int64).reshape(-1), len(uniq)
    return ids, groups


def _lookup(values: pa.Array, keys: pa.Array) -> pa.Array:
    """Index of each value in ``keys`` (null when absent or null)."""
    if values.type != keys.type:
        try:
            values = values.cast(keys.type)
        except pa.ArrowException:
            values, keys = values.cast(pa.large_string()), keys.cast(pa.large_string())
    return pc.index_in(values, value_set=keys, skip_nulls=True)


class _Positions:
    """:func:`_lookup` against one fixed key array, its sort built once: the fact tables look up every
    row group's person_id among all persons, and ``pc.index_in`` rebuilt its hash table of every person
    at each call (~10 ms a row group at 100,000 persons: 2.2 of the 6.7 s of a 100,000-patient audit).
    Signed integer keys and values are searched in the sorted keys; any other type goes to
    :func:`_lookup`. The keys must be unique without nulls (person_id, checked before)."""

    def __init__(self, keys: pa.Array) -> None:
        self.keys = keys
        self.sorted: Int | None = None
        if pa.types.is_signed_integer(keys.type) and not keys.null_count:
            k = keys.to_numpy(zero_copy_only=False).astype(np.int64)
            self.order = np.argsort(k, kind="stable").astype(np.int32)
            self.sorted = k[self.order]

    def __call__(self, values: pa.Array) -> pa.Array:
        """Index of each value in the keys (null when absent or null), as ``pc.index_in`` gives it."""
        if self.sorted is None or not pa.types.is_signed_integer(values.type) or not len(self.sorted):
            return _lookup(values, self.keys)
        v = pc.fill_null(values, 0).to_numpy(zero_copy_only=False).astype(np.int64)
        at = np.minimum(np.searchsorted(self.sorted, v), len(self.sorted) - 1)
        found = self.sorted[at] == v
        if values.null_count:
            found &= pc.is_valid(values).to_numpy(zero_copy_only=False)
        return pa.array(self.order[at], type=pa.int32(), mask=~found)


def _as_text(arr: pa.Array) -> pa.Array:
    """``str`` of each (non-null) value, as the definitions compare facts."""
    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return arr.cast(pa.large_string())
    if pa.types.is_integer(t):
        return arr.cast(pa.large_string())
    return pa.array([str(v) for v in arr.to_pylist()], pa.large_string())


def _is_fact(arr: pa.Array, column: str) -> pa.Array:
    """Where the value is a fact: a concept is neither null nor 0; a source value or id neither null nor ''."""
    t = arr.type
    text = pa.types.is_string(t) or pa.types.is_large_string(t)
    if column.endswith("_concept_id"):
        if text:
            ok = pc.not_equal(arr, "0")
        elif pa.types.is_integer(t) or pa.types.is_floating(t):
            ok = pc.not_equal(arr, pa.scalar(0, t))
        else:
            ok = pc.is_valid(arr)
    else:
        ok = pc.not_equal(arr, "") if text else pc.is_valid(arr)
    return pc.fill_null(ok, False)


@dataclass
class _FactColumn:
    table: str
    column: str
    person: I32  # index of the person (in the version) holding the fact
    code: I32  # index of the fact's value in ``values``
    values: pa.Array  # distinct texts of the values

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}"


@dataclass
class _Version:
    name: str
    person_ids: pa.Array
    class_id: Int
    classes: int
    facts: list[_FactColumn]
    tables: list[str]


def _class_key(version_dir: Path, person: pa.Table, person_ids: pa.Array, tables: list[str]) -> tuple[Int, int]:
    """Class ids of the persons: every person column but person_id and location_id, the location row's
    columns but location_id, the death year."""
    n = person.num_rows
    parts: list[tuple[Int, int]] = [
        _codes(_column(person, c)) for c in person.column_names if c not in ("person_id", "location_id")
    ]

    location = _read(version_dir, "location", None)
    if location is not None:
        tables.append("location")
        loc_cols = [c for c in location.column_names if c != "location_id"]
        if loc_cols:
            if "location_id" not in location.column_names:
                raise AuditError(f"{version_dir / 'omop' / 'location'} has no location_id column")
            loc_ids = _column(location, "location_id")
            valid = pc.drop_null(loc_ids)
            if pc.count_distinct(valid).as_py() != len(valid):
                raise AuditError(f"{version_dir / 'omop' / 'location'}: location_id is not unique")
            if "location_id" in person.column_names:
                idx = _lookup(_column(person, "location_id"), loc_ids)
            else:
                idx = pa.nulls(n, pa.int32())
            parts.extend(_codes(_column(location, c).take(idx)) for c in loc_cols)

    death = _read(version_dir, "death", ["person_id", "death_date"])
    years = pa.nulls(n, pa.int64())
    if death is not None:
        tables.append("death")
        if "death_date" in death.column_names and death.num_rows:
            if "person_id" not in death.column_names:
                raise AuditError(f"{version_dir / 'omop' / 'death'} has no person_id column")
            dates = _column(death, "death_date")
            if not (pa.types.is_date(dates.type) or pa.types.is_timestamp(dates.type)):
                raise AuditError(f"{version_dir / 'omop' / 'death'}: death_date has type {dates.type}, not a date")
            pidx = _lookup(_column(death, "person_id"), person_ids)
            d = pa.table({"p": pidx, "d": dates}).filter(pc.and_(pc.is_valid(pidx), pc.is_valid(dates)))
            if d.num_rows:
                earliest = d.group_by("p").aggregate([("d", "min")])
                where = earliest["p"].to_numpy().astype(np.int64)
                values = np.zeros(n, dtype=np.int64)
                mask = np.ones(n, dtype=np.bool_)
                values[where] = pc.year(earliest["d_min"]).to_numpy()
                mask[where] = False
                years = pa.array(values, mask=mask)
    parts.append(_codes(years))
    return _combine(parts, n)


def _batches(version_dir: Path, table: str, columns: Sequence[str]) -> Iterator[pa.Table]:
    """The table's rows a row group at a time (only ``columns`` that exist in each part file): a fact
    table is never whole in memory."""
    for f in _parts(version_dir, table):
        try:
            pf = pq.ParquetFile(parquet_source(f))
            names = pf.schema_arrow.names
            cols = [c for c in columns if c in names]
            for g in range(pf.num_row_groups):
                yield pf.read_row_group(g, columns=cols)
        except (OSError, ValueError, pa.ArrowException) as e:
            raise AuditError(f"cannot read {f}: {e}") from e


def _facts(version_dir: Path, person_ids: pa.Array, tables: list[str]) -> list[_FactColumn]:
    if len(person_ids) >= np.iinfo(np.int32).max:
        raise AuditError(f"{version_dir / 'omop' / 'person'} has {len(person_ids):,} persons: "
                         "the audit counts at most 2^31 - 1")
    out: list[_FactColumn] = []
    positions = _Positions(person_ids)
    for table, columns in FACT_COLUMNS.items():
        files = _parts(version_dir, table)
        if not files:
            continue
        if table not in tables:
            tables.append(table)
        # per column: the values' texts as codes (in order of first sight), and each row group's distinct
        # (person, code) pairs as int32; then the distinct pairs of the whole table
        texts: dict[str, dict[str, int]] = {}
        pairs: dict[str, list[tuple[I32, I32]]] = {}
        for batch in _batches(version_dir, table, ["person_id", *columns]):
            present = [c for c in columns if c in batch.column_names]
            if not present or not batch.num_rows:
                continue
            if "person_id" not in batch.column_names:
                raise AuditError(f"{version_dir / 'omop' / table} has no person_id column")
            pidx = positions(_column(batch, "person_id"))
            known = pc.is_valid(pidx)
            for column in present:
                values = _column(batch, column)
                keep = pc.and_(known, _is_fact(values, column))
                enc = pc.dictionary_encode(values.filter(keep))
                nd = max(len(enc.dictionary), 1)
                person = pidx.filter(keep).to_numpy(zero_copy_only=False).astype(np.int64)
                both = _distinct(person * nd + enc.indices.to_numpy(zero_copy_only=False).astype(np.int64))
                # the batch's values as text (as the definitions compare), coded across the table's batches
                seen = texts.setdefault(column, {})
                code = np.fromiter((seen.setdefault(t, len(seen)) for t in _as_text(enc.dictionary).to_pylist()),
                                   dtype=np.int32, count=len(enc.dictionary))
                pairs.setdefault(column, []).append(((both // nd).astype(np.int32), code[both % nd]))
        for column in columns:
            if column not in pairs:
                continue
            held = pairs.pop(column)
            nvalues = max(len(texts[column]), 1)
            key = np.concatenate([p for p, _ in held]).astype(np.int64) * nvalues
            key += np.concatenate([c for _, c in held])
            del held
            both = _distinct(key)
            del key
            out.append(_FactColumn(table, column, (both // nvalues).astype(np.int32),
                                   (both % nvalues).astype(np.int32),
                                   pa.array(list(texts.pop(column)), pa.large_string())))
    return out


def _load(version_dir: Path, with_facts: bool) -> _Version:
    tables: list[str] = []
    if not _parts(version_dir, "person"):
        raise AuditError(f"{version_dir} has no omop/person table (no {version_dir / 'omop' / 'person'}/*.parquet)")
    person = _read(version_dir, "person", None)
    assert person is not None
    tables.append("person")
    if "person_id" not in person.column_names:
        raise AuditError(f"{version_dir / 'omop' / 'person'} has no person_id column")
    person_ids = _column(person, "person_id")
    if person_ids.null_count:
        raise AuditError(f"{version_dir / 'omop' / 'person'}: person_id has nulls")
    if pc.count_distinct(person_ids).as_py() != len(person_ids):
        raise AuditError(f"{version_dir / 'omop' / 'person'}: person_id is not unique")
    class_id, classes = _class_key(version_dir, person, person_ids, tables)
    facts = _facts(version_dir, person_ids, tables) if with_facts else []
    return _Version(version_dir.name, person_ids, class_id, classes, facts, tables)


# ------------------------------------------------------------------------------------------ k^m


def _openblas_threads() -> tuple[Callable[[], int], Callable[[int], None]] | None:
    """get/set of the thread count of the OpenBLAS numpy loaded (None when not found)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    libs = sorted({line.split()[-1] for line in maps.splitlines() if "openblas" in line.lower() and ".so" in line})
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and put is not None:
                    get.restype, put.argtypes = ctypes.c_int, [ctypes.c_int]
                    return _bind(get, put)
    return None


def _bind(get: Any, put: Any) -> tuple[Callable[[], int], Callable[[int], None]]:
    return (lambda: int(get())), (lambda n: put(n))


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    blas = _openblas_threads() if SINGLE_THREADED_BLAS else None
    if blas is None:
        yield
        return
    get, put = blas
    before = get()
    put(1)
    try:
        yield
    finally:
        put(before)



@dataclass
class _Tally:
    """What the search finds: each person's lowest level at risk; violating sets by size and column."""

    level: npt.NDArray[np.int8]
    sets: list[int]
    columns: list[Int]

    def risk(self, persons: Int, j: int) -> None:
        if len(persons):
            self.level[persons] = np.minimum(self.level[persons], j)


def _dense(indptr: Int, indices: Int, rows: Int, colmap: Int, ncols: int, dtype: type[np.floating[Any]]) -> Mat:
    """Dense 0/1 block of the class's person x fact matrix: ``rows`` (local persons) and the facts
    with ``colmap[fact] >= 0`` (at that column)."""
    starts = indptr[rows]
    lens = indptr[rows + 1] - starts
    total = int(lens.sum())
    out = np.zeros((len(rows), ncols), dtype=dtype)
    if total:
        offsets = np.cumsum(lens) - lens
        pos = np.arange(total, dtype=np.int64) - np.repeat(offsets, lens) + np.repeat(starts, lens)
        cols = colmap[indices[pos]]
        r = np.repeat(np.arange(len(rows), dtype=np.int64), lens)
        keep = cols >= 0
        out[r[keep], cols[keep]] = 1.0
    return out


def _runs(sorted_keys: Int) -> Int:
    """Start of each run of equal values in a sorted array."""
    first = np.empty(len(sorted_keys), dtype=np.bool_)
    first[:1] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=first[1:])
    return np.flatnonzero(first)


class _Class:
    """One class's frequent facts: a sparse person x fact matrix (CSR), and dense when small enough."""

    def __init__(self, person: Int, fact: Int) -> None:
        """The class's (person, fact) pairs, sorted by fact."""
        starts = _runs(fact)
        self.facts = fact[starts]
        fcol = np.repeat(np.arange(len(starts), dtype=np.int64), np.diff(np.append(starts, len(fact))))
        self.persons, inverse = np.unique(person, return_inverse=True)
        prow = inverse.reshape(-1).astype(np.int64)
        self.n, self.f = len(self.persons), len(self.facts)
        # by fact (as given): the holders of each fact; by person (CSR): the facts of each person
        self._by_fact = prow
        self._fact_ptr = np.append(starts, len(fact)).astype(np.int64)
        order = np.argsort(prow, kind="stable")
        self.indices = fcol[order]
        self.indptr = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum(np.bincount(prow, minlength=self.n), out=self.indptr[1:])
        # float32 products count exactly up to 2^24 persons
        self.dtype: type[np.floating[Any]] = np.float32 if self.n < (1 << 24) else np.float64
        self.x: Mat | None = None
        if self.n * self.f <= DENSE_CELLS:
            self.x = np.zeros((self.n, self.f), dtype=self.dtype)
            self.x[prow, fcol] = 1.0

    def rows_of(self, fact: int) -> Int:
        """Local persons holding ``fact``."""
        return self._by_fact[self._fact_ptr[fact]:self._fact_ptr[fact + 1]]

    def blocks(self, rows: Int | None, cols: Int) -> Iterator[tuple[Int, Mat]]:
        """Dense blocks (row chunks) of the submatrix ``rows`` (all when None) x ``cols`` (local indices)."""
        if rows is None:
            rows = np.arange(self.n, dtype=np.int64)
        if self.x is not None:
            yield rows, self.x[rows][:, cols]
            return
        colmap = np.full(self.f, -1, dtype=np.int64)
        colmap[cols] = np.arange(len(cols), dtype=np.int64)
        step = max(1, DENSE_CELLS // max(len(cols), 1))
        for start in range(0, len(rows), step):
            chunk = rows[start:start + step]
            yield chunk, _dense(self.indptr, self.indices, chunk, colmap, len(cols), self.dtype)

    def gram(self, rows: Int | None, cols: Int | None) -> Mat:
        """Co-occurrence counts (support of each pair) of ``cols`` among ``rows`` (all when None)."""
        if self.x is not None and rows is None and cols is None:
            return self.x.T @ self.x
        if cols is None:
            cols = np.arange(self.f, dtype=np.int64)
        g = np.zeros((len(cols), len(cols)), dtype=self.dtype)
        for _, block in self.blocks(rows, cols):
            g += block.T @ block
        return g

    def holders(self, rows: Int, cols: Int, bad: Bool) -> Int:
        """Local persons among ``rows`` holding both facts of some pair ``bad[i, j]`` (symmetric) of ``cols``."""
        found: list[Int] = [np.zeros(0, dtype=np.int64)]
        weights = bad.astype(self.dtype)
        for chunk, block in self.blocks(rows, cols):
            hit = ((block @ weights) * block).max(axis=1, initial=0.0) > 0
            found.append(chunk[hit])
        return np.concatenate(found)


def _km(class_id: Int, classes: int, columns: Sequence[tuple[I32, I32, int]], fact_column: Int,
        ncolumns: int, k: int, m: int) -> _Tally:
    """Persons at risk and minimal violating sets of size 0..m. ``columns``: each fact column's
    (person, value code, offset of its values among the facts)."""
    n = len(class_id)
    tally = _Tally(np.full(n, m + 1, dtype=np.int8), [0] * (m + 1),
                   [np.zeros(ncolumns, dtype=np.int64) for _ in range(m + 1)])
    size = np.bincount(class_id, minlength=classes)
    small = size < k
    tally.sets[0] = int(np.count_nonzero(small & (size > 0)))
    tally.risk(np.flatnonzero(small[class_id]), 0)
    if m == 0 or not any(len(p) for p, _, _ in columns):
        return tally

    # levels 1..m are counted within a class: the classes are checked in groups of about GROUP_PAIRS pairs
    pairs = np.zeros(classes, dtype=np.int64)
    for person, _, _ in columns:
        pairs += np.bincount(class_id[person], minlength=classes)
    pairs[small] = 0
    before = np.cumsum(pairs) - pairs  # pairs of the classes before each class
    group = np.where(pairs > 0, before // GROUP_PAIRS, -1)
    live = np.unique(group[group >= 0])
    person_group = np.searchsorted(live, group)[class_id].astype(np.int32)
    person_group[(group < 0)[class_id]] = -1
    nfacts = len(fact_column)
    for g in range(len(live)):
        persons, facts = [], []
        for person, code, offset in columns:
            here = person_group[person] == g
            persons.append(person[here].astype(np.int64))
            facts.append(code[here].astype(np.int64) + offset)
        _km_classes(class_id, np.concatenate(persons), np.concatenate(facts), nfacts, fact_column, k, m, tally)
    return tally


def _km_classes(class_id: Int, person: Int, fact: Int, nfacts: int, fact_column: Int, k: int, m: int,
                tally: _Tally) -> None:
    """Levels 1..m over the (person, fact) pairs of some classes of at least k persons."""
    key = class_id[person] * nfacts + fact
    order = np.argsort(key)
    key = key[order]
    person, fact = person[order], fact[order]  # sorted by class, then fact
    del order
    starts = _runs(key)  # one run per (class, fact): its holders
    support = np.diff(np.append(starts, len(key)))
    rare = support < k
    tally.sets[1] += int(np.count_nonzero(rare))
    tally.columns[1] += np.bincount(fact_column[fact[starts[rare]]], minlength=len(tally.columns[1]))
    rare_pair = np.repeat(rare, support)
    tally.risk(_distinct(person[rare_pair]), 1)
    if m == 1:
        return

    frequent = ~rare_pair
    del rare_pair
    person, fact, key = person[frequent], fact[frequent], key[frequent] // nfacts  # key: the class
    bounds = _runs(key)  # one run per class
    ends = np.append(bounds[1:], len(key)) if len(key) else bounds
    for s, e in zip(bounds.tolist(), ends.tolist(), strict=True):
        if e - s >= 2:
            _pairs_and_triples(_Class(person[s:e], fact[s:e]), fact_column, k, m, tally)


def _pairs_and_triples(c: _Class, fact_column: Int, k: int, m: int, tally: _Tally) -> None:
    """Levels 2 and 3 in one class whose facts all have support >= k."""
    if c.f < 2:
        return
    allfacts = np.arange(c.f, dtype=np.int64)
    cols = fact_column[c.facts]
    support = c.gram(None, None)
    ok = support >= k
    upper = np.triu(~ok & (support >= 1), 1)
    nbad = int(np.count_nonzero(upper))
    if nbad:
        tally.sets[2] += nbad
        i, j = np.nonzero(upper)
        tally.columns[2] += np.bincount(np.concatenate((cols[i], cols[j])), minlength=len(tally.columns[2]))
        safe = np.flatnonzero(tally.level[c.persons] > 2)  # only persons not yet at risk can change
        if len(safe):
            tally.risk(c.persons[c.holders(safe, allfacts, upper | upper.T)], 2)
    if m < 3:
        return
    b, d = np.nonzero(np.triu(ok, 1))  # the frequent pairs: triples (a, b, d), a < b < d, may be minimal
    if len(b) < 2:
        return
    if c.x is not None and len(b) * max(c.n, c.f) <= TRIPLE_CELLS:
        _triples_at_once(c, b, d, ok, cols, k, tally)
    else:
        _triples_by_fact(c, support, ok, cols, k, tally)


def _triples_at_once(c: _Class, b: Int, d: Int, ok: Bool, cols: Int, k: int, tally: _Tally) -> None:
    """Supports of every (a, b, d) for the frequent pairs (b, d): one product (pair holders)^T X."""
    assert c.x is not None
    both = c.x[:, b] * c.x[:, d]  # persons x frequent pairs
    support = both.T @ c.x  # frequent pairs x facts: support of (a, b, d)
    candidate = ok[b] & ok[d] & (np.arange(c.f)[None, :] < b[:, None])  # (a, b), (a, d) frequent, a < b
    viol = candidate & (support < k) & (support >= 1)
    count = int(np.count_nonzero(viol))
    if not count:
        return
    tally.sets[3] += count
    pair, a = np.nonzero(viol)
    tally.columns[3] += np.bincount(np.concatenate((cols[a], cols[b[pair]], cols[d[pair]])),
                                    minlength=len(tally.columns[3]))
    safe = np.flatnonzero(tally.level[c.persons] > 3)
    if len(safe):
        hits = (both[safe] @ viol.astype(c.dtype)) * c.x[safe]
        tally.risk(c.persons[safe[hits.max(axis=1) > 0]], 3)


def _triples_by_fact(c: _Class, support: Mat, ok: Bool, cols: Int, k: int, tally: _Tally) -> None:
    """Supports of (a, b, d) conditioned on a: the pair supports among the holders of a (large classes)."""
    safe = tally.level[c.persons] > 3
    ncols = len(tally.columns[3])
    for a in range(c.f - 2):
        nb = a + 1 + np.flatnonzero(ok[a, a + 1:])
        if len(nb) < 2:
            continue
        # support(a, b, d) >= support(a, b) + support(a, d) - support(a): no violation when the two
        # smallest pair supports already guarantee k
        two = np.partition(support[a, nb], 1)[:2]
        if two[0] + two[1] - support[a, a] >= k:
            continue
        rows = c.rows_of(a)
        triple = c.gram(rows, nb)  # support of (a, b, d) for b, d in nb; symmetric, diagonal >= k
        viol = (triple < k) & (triple >= 1) & ok[nb][:, nb]
        per_fact = viol.sum(axis=1)
        count = int(per_fact.sum()) // 2
        if not count:
            continue
        tally.sets[3] += count
        tally.columns[3][cols[a]] += count
        tally.columns[3] += np.bincount(cols[nb], weights=per_fact, minlength=ncols).astype(np.int64)
        rows = rows[safe[rows]]
        if len(rows):
            found = c.holders(rows, nb, viol)
            tally.risk(c.persons[found], 3)
            safe[found] = False


# -------------------------------------------------------------------------------------- assembly


def _check(class_id: Int, classes: int, facts: list[_FactColumn], names: list[str], k: int, m: int) -> CheckResult:
    """Run k^m over persons (class ids) and fact columns (``names[i]`` for column i of ``facts``)."""
    columns: list[tuple[I32, I32, int]] = []
    owners: list[Int] = []
    offset = 0
    for i, fc in enumerate(facts):
        columns.append((fc.person, fc.code, offset))
        owners.append(np.full(len(fc.values), i, dtype=np.int64))
        offset += len(fc.values)
    fact_column = np.concatenate(owners) if owners else np.zeros(0, dtype=np.int64)
    with _one_blas_thread():
        tally = _km(class_id, classes, columns, fact_column, len(facts), k, m)
    size = np.bincount(class_id, minlength=classes)
    return CheckResult(
        persons=len(class_id),
        classes=int(np.count_nonzero(size)),
        smallest_class=int(size[size > 0].min()) if len(class_id) else 0,
        facts=offset if m else None,  # every value of a column's dictionary is held by someone
        person_facts=sum(len(fc.person) for fc in facts) if m else None,
        at_risk=[int(np.count_nonzero(tally.level <= j)) for j in range(m + 1)],
        violating_sets=list(tally.sets),
        violating_columns=[
            {names[i]: int(v) for i, v in enumerate(tally.columns[j]) if v} for j in range(m + 1)
        ],
    )


def _joint(target: _Version, others: list[_Version], k: int, m: int) -> JointResult:
    n = len(target.person_ids)
    parts: list[tuple[Int, int]] = []
    persons: dict[str, int] = {}
    present: dict[str, int] = {}
    maps: list[I32] = []  # per other version: its person -> target person (-1 when not in target)
    for v in others:
        idx = _lookup(target.person_ids, v.person_ids)
        where = pc.fill_null(idx, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        comp = np.where(where >= 0, v.class_id[np.maximum(where, 0)], ABSENT) if len(v.class_id) else \
            np.full(n, ABSENT, dtype=np.int64)
        parts.append((comp + 1, v.classes + 1))  # ABSENT (-1) becomes code 0
        persons[v.name] = len(v.person_ids)
        present[v.name] = int(np.count_nonzero(where >= 0))
        back = pc.fill_null(_lookup(v.person_ids, target.person_ids), -1)
        maps.append(back.to_numpy(zero_copy_only=False).astype(np.int32))
    parts.append((target.class_id, target.classes))
    persons[target.name] = n
    present[target.name] = n
    class_id, classes = _combine(parts, n)

    # joint facts: per (table, column), the union over versions of the texts, held by target persons
    columns: dict[tuple[str, str], list[tuple[I32, I32, pa.Array]]] = {}
    for fc in target.facts:
        columns.setdefault((fc.table, fc.column), []).append((fc.person, fc.code, fc.values))
    for v, back in zip(others, maps, strict=True):
        for fc in v.facts:
            mapped = back[fc.person]
            keep = mapped >= 0
            columns.setdefault((fc.table, fc.column), []).append((mapped[keep], fc.code[keep], fc.values))
    facts: list[_FactColumn] = []
    for (table, column), pieces in columns.items():
        union = pc.dictionary_encode(pa.concat_arrays([p[2] for p in pieces]))
        remap = union.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        nvalues = max(len(union.dictionary), 1)
        keys: list[Int] = []
        offset = 0
        for person, code, values in pieces:
            keys.append(person.astype(np.int64) * nvalues + remap[code.astype(np.int64) + offset])
            offset += len(values)
        pairs = _distinct(np.concatenate(keys))
        del keys
        facts.append(_FactColumn(table, column, (pairs // nvalues).astype(np.int32),
                                 (pairs % nvalues).astype(np.int32), union.dictionary))
    check = _check(class_id, classes, facts, [fc.name for fc in facts], k, m)
    return JointResult([*(v.name for v in others), target.name], persons, present, check)


def _siblings(version_dir: Path) -> list[Path]:
    here = version_dir.resolve()
    found = [p for p in version_dir.parent.iterdir()
             if p.is_dir() and VERSION_NAME.match(p.name) and p.resolve() != here]
    return sorted(found, key=lambda p: int(p.name))


def audit_release(version_dir: Path, k: int, m: int, earlier: Sequence[Path] | None = None) -> AuditResult:
    """Check k^m of the release in ``version_dir``, alone and jointly with ``earlier`` versions.

    ``earlier=None``: the sibling numbered folders of ``version_dir`` (names 1, 2, ...) other than
    itself; ``[]``: no joint check. Raises AuditError when a version cannot be read, ValueError for
    k < 1 or m outside 0..3 (the cost grows as facts^m).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    if not 0 <= m <= MAX_M:
        raise ValueError(f"m = {m} is not supported: the audit checks m = 0..{MAX_M} "
                         "(the number of fact sets grows as facts^m)")
    start = time.perf_counter()
    version_dir = Path(version_dir)
    if not version_dir.is_dir():
        raise AuditError(f"{version_dir} is not a folder")
    target = _load(version_dir, m > 0)
    names = [fc.name for fc in target.facts]
    release = _check(target.class_id, target.classes, target.facts, names, k, m)
    others_dirs = _siblings(version_dir) if earlier is None else [Path(p) for p in earlier]
    joint = None
    if others_dirs:
        others = [_load(p, m > 0) for p in others_dirs]
        joint = _joint(target, others, k, m)
    return AuditResult(version_dir.name, k, m, target.tables, release, joint,
                       round(time.perf_counter() - start, 3))
