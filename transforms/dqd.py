"""OHDSI DataQualityDashboard (DQD 2.8) checks on an OMOP CDM v5.4, in DuckDB.

The checks are not written by hand: they are generated from DQD's own v5.4 CSVs, vendored in
``schemas/dqd`` (check descriptions, and the table-, field- and concept-level thresholds). For every
row of the descriptions file, each row of the CSV of its level that passes the description's
``evaluationFilter`` becomes one check with its own SQL query, modelled on DQD's SQL template
(``sqlFile``), over the tables registered as DuckDB views on one connection (the query is kept as
``queryText``). To scan each table once, the checks that count rows of one table (null, zero, range,
datatype, foreign-key and same-row date checks) run together as ``count(*) FILTER (WHERE ...)``
columns of one query per table, and the concept-level gender and unit checks run as one grouped join
per field; a test holds that every check's own query gives the same numbers. Thresholds, failure and
"not applicable" rules follow DQD's ``evaluateThresholds`` and ``calculateNotApplicableStatus``.

Deviations from DQD, on purpose:
- a table absent from the input is treated as an empty table (its checks are not applicable) and its
  ``cdmTable`` check is not applicable rather than passed; with ``skip_tables_absent=False`` it fails
  as in DQD;
- ``isRequired`` stays applicable when the whole field is null (DQD marks it "not populated"), so a
  required field left empty blocks the pipeline;
- checks that need the vocabulary (CONCEPT, CONCEPT_ANCESTOR) are not applicable without it;
- ``isStandardValidConcept`` counts concepts whose ``standard_concept`` is null as non-standard;
- samples of offending rows show key columns only (ids, concept ids, dates, numbers), never text;
- ``cdmDatatype`` keeps DQD's case-sensitive filter ``cdmDatatype=='integer'`` (the few fields the
  specification types ``Integer`` or ``bigint`` are not checked, as in DQD).
"""

from __future__ import annotations

import csv
import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import UTC, date, datetime
from functools import cache, partial
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from schemas import omop
from transforms.storage import fs_of, is_remote, read_parquet_files, scan_parquet_files, url_of

Table = pl.DataFrame | Sequence[Path]
"""A CDM table: a polars frame, or the Parquet files that hold it."""

CATEGORIES = ("Plausibility", "Conformance", "Completeness")
# DQD's executeDqChecks default tablesToExclude: the vocabulary tables are not checked.
EXCLUDED_TABLES = frozenset(
    {"concept", "vocabulary", "concept_ancestor", "concept_relationship", "concept_class", "concept_synonym",
     "relationship", "domain"}
)
_VOCAB_NEEDED = {"concept", "concept_ancestor", "vocabulary", "domain", "concept_class", "relationship",
                 "concept_relationship", "concept_synonym"}
_GENDER = {"Male": 8507, "Female": 8532}
SAMPLE_SIZE = 5


# --------------------------------------------------------------------------------------------------
# the vendored CSVs


def _read_csv(name: str) -> list[dict[str, str]]:
    text = resources.files("schemas").joinpath(f"dqd/{name}").read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(text.splitlines(keepends=True)))
    return [{k: ("" if (v is None or v.strip() == "NA") else v.strip()) for k, v in r.items()} for r in rows]


@cache
def check_descriptions() -> list[dict[str, str]]:
    """The 27 check types of DQD's ``OMOP_CDMv5.4_Check_Descriptions.csv``."""
    return _read_csv("OMOP_CDMv5.4_Check_Descriptions.csv")


@cache
def _level_rows(level: str) -> list[dict[str, str]]:
    name = {"TABLE": "Table", "FIELD": "Field", "CONCEPT": "Concept"}[level]
    return _read_csv(f"OMOP_CDMv5.4_{name}_Level.csv")


_TERM = re.compile(r"^\s*(\w+)\s*(==|!=)\s*'([^']*)'\s*$")


def _matches(filter_text: str, row: Mapping[str, str]) -> bool:
    """Evaluate DQD's ``evaluationFilter`` (R: ``a=='Yes' & b!=''``); an empty cell is R's NA (no match)."""
    for term in filter_text.split("&"):
        m = _TERM.match(term)
        if m is None:
            raise ValueError(f"unsupported DQD evaluationFilter term {term!r}")
        name, op, value = m.groups()
        cell = row.get(name, "")
        if cell == "":
            return False
        if (cell == value) != (op == "=="):
            return False
    return True


def _norm_field(name: str) -> str:
    return name.strip().strip('"').lower()


@dataclass(frozen=True)
class CheckDef:
    """One check: a check type applied to one table, field or concept row of DQD's CSVs."""

    check_name: str
    check_level: str
    cdm_table_name: str  # DQD's spelling (upper case)
    cdm_field_name: str | None  # DQD's spelling
    concept_id: str | None
    unit_concept_id: str | None
    description: dict[str, str]
    row: dict[str, str]

    @property
    def table(self) -> str:
        return self.cdm_table_name.lower()

    @property
    def field(self) -> str | None:
        return _norm_field(self.cdm_field_name) if self.cdm_field_name else None

    @property
    def threshold(self) -> float | None:
        v = self.row.get(f"{self.check_name}Threshold", "")
        return float(v) if v else None

    @property
    def notes(self) -> str | None:
        return self.row.get(f"{self.check_name}Notes") or None

    @property
    def check_id(self) -> str:
        parts = [self.check_name, self.cdm_table_name, self.cdm_field_name, self.concept_id, self.unit_concept_id]
        return "_".join(re.sub(r"[\s,]+", "_", p).lower() for p in parts if p)

    def rendered_description(self) -> str:
        def sub(m: re.Match[str]) -> str:
            return self.row.get(m.group(1)) or m.group(0)

        return re.sub(r"@(\w+)", sub, self.description["checkDescription"]).strip()


@cache
def check_definitions() -> tuple[CheckDef, ...]:
    """Every check DQD 2.8 runs by default on a CDM v5.4 (vocabulary tables excluded, as DQD does)."""
    out: list[CheckDef] = []
    for d in check_descriptions():
        level = d["checkLevel"]
        for row in _level_rows(level):
            table = row["cdmTableName"]
            if table.lower() in EXCLUDED_TABLES or not _matches(d["evaluationFilter"], row):
                continue
            out.append(
                CheckDef(
                    check_name=d["checkName"],
                    check_level=level,
                    cdm_table_name=table,
                    cdm_field_name=row.get("cdmFieldName") or None if level != "TABLE" else None,
                    concept_id=re.sub(r"\s+", "", row["conceptId"]) or None if level == "CONCEPT" else None,
                    unit_concept_id=row.get("unitConceptId") or None if level == "CONCEPT" else None,
                    description=d,
                    row=row,
                )
            )
    return tuple(out)


# --------------------------------------------------------------------------------------------------
# results


@dataclass
class CheckResult:
    check_name: str
    check_level: str
    table: str
    field: str | None
    concept_id: str | None
    unit_concept_id: str | None
    category: str
    subcategory: str | None
    context: str
    severity: str
    description: str
    num_violated_rows: int | None
    num_denominator_rows: int | None
    pct_violated_rows: float | None  # a fraction, 0..1, as in DQD
    threshold: float | None  # percent
    failed: bool
    not_applicable: bool
    error: str | None
    sample: list[dict[str, Any]] = dc_field(default_factory=list)
    not_applicable_reason: str | None = None
    check_id: str = ""
    cdm_table_name: str = ""
    cdm_field_name: str | None = None
    sql_file: str = ""
    query_text: str = ""
    execution_seconds: float = 0.0
    notes: str | None = None

    @property
    def passed(self) -> bool:
        return not self.failed and not self.not_applicable and self.error is None

    @property
    def is_error(self) -> bool:
        return self.error is not None


@dataclass
class DqdRun:
    results: list[CheckResult]
    start_time: datetime
    end_time: datetime
    cdm_source: dict[str, Any]

    @property
    def execution_seconds(self) -> float:
        return (self.end_time - self.start_time).total_seconds()

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """run, passed, failed, not_applicable, errors, per Kahn category and in ``total``."""
        out = {c: dict.fromkeys(("run", "passed", "failed", "not_applicable", "errors"), 0) for c in (*CATEGORIES, "total")}
        for r in self.results:
            for key in (r.category, "total"):
                c = out.setdefault(key, dict.fromkeys(("run", "passed", "failed", "not_applicable", "errors"), 0))
                c["run"] += 1
                c["passed"] += r.passed
                c["failed"] += r.failed
                c["not_applicable"] += r.not_applicable
                c["errors"] += r.is_error
        return out


def fatal_failures(run: DqdRun) -> list[CheckResult]:
    """Failed checks of DQD severity ``fatal``: these block the pipeline."""
    return [r for r in run.results if r.failed and r.severity == "fatal"]


# --------------------------------------------------------------------------------------------------
# SQL generation


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_value(v: str) -> str:
    """DQD's threshold values are SQL Server expressions: translate the few forms used to DuckDB."""
    v = v.strip()
    m = re.fullmatch(r"'(\d{4})(\d{2})(\d{2})'", v)
    if m:
        return f"DATE '{m.group(1)}-{m.group(2)}-{m.group(3)}'"
    compact = v.replace(" ", "").upper()
    if compact == "DATEADD(DD,1,GETDATE())":
        return "(current_date + 1)"
    if compact == "YEAR(GETDATE())+1":
        return "(year(current_date) + 1)"
    float(v)  # raises on anything else
    return v


_INT_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT"}


@dataclass
class _Ctx:
    columns: dict[str, dict[str, str]]  # table -> column -> duckdb type
    present: set[str]  # tables given by the caller
    rows: dict[str, int]
    vocab: set[str]  # vocabulary tables registered
    given_columns: dict[str, set[str]]  # the columns the caller gave, per table
    # frames registered on the connection (a registration is the connection's own: each cursor that
    # runs checks registers the same Arrow tables, zero-copy)
    registered: dict[str, Any] = dc_field(default_factory=dict)


@dataclass
class _Sql:
    violated: str  # SELECT of violating rows (key columns only)
    denominator: str  # SELECT count
    # (group key "checkName|table|field", VALUES row): concept-level checks, one grouped query per key
    group: tuple[str, str] | None = None
    # ((source, condition) of the numerator, (source, condition) of the denominator): each counted with
    # count_if in one query per source with every other count over that source (a table's field checks;
    # the checks joining a table with person, death or visits share that join), equal to ``violated``'s
    # rows and ``denominator``
    counts: tuple[tuple[str, str], tuple[str, str]] | None = None


def _safe_column(table: str, col: str) -> bool:
    """A column a sample may show: ids, concept ids, dates and numbers, never text."""
    if col.endswith("_source_value"):
        return False
    try:
        dt = omop.table(table).field(col).datatype.lower()
    except KeyError:
        return col.endswith(("_id", "_date", "_datetime"))
    return not dt.startswith("varchar")


def _keys(ctx: _Ctx, table: str, alias: str, *extra: str | None) -> str:
    cols: list[str] = []
    try:
        pk = omop.table(table).primary_key
    except KeyError:
        pk = None
    for c in (pk, "person_id", *extra):
        actual = ctx.columns.get(table, {}).get(c or "", "VARCHAR").upper()
        # a key is shown only if the spec and the data both say it is not text
        if c and c not in cols and actual != "VARCHAR" and _safe_column(table, c):
            cols.append(c)
    if not cols:
        return "NULL AS no_key"
    return ", ".join(f"{alias}.{q(c)}" for c in cols)


def _date(expr: str) -> str:
    return f"CAST({expr} AS DATE)"


def _agg(source: str, keys: str, cond: str, denominator: str = "TRUE") -> _Sql:
    """A check counted as ``count_if`` over one source: runs batched with the other counts of that source."""
    where = f" WHERE {denominator}" if denominator != "TRUE" else ""
    return _Sql(
        violated=f"SELECT {keys} {source} WHERE {cond}",
        denominator=f"SELECT count(*) {source}{where}",
        counts=((source, cond), (source, denominator)),
    )


def _build_sql(c: CheckDef, ctx: _Ctx) -> _Sql:
    t, f, r = c.table, c.field, c.row
    T = q(t)
    F = f"t.{q(f)}" if f else ""
    count_all = f"SELECT count(*) FROM {T}"
    src = f"FROM {T} t"
    name = c.check_name

    if name == "measurePersonCompleteness":
        return _Sql(
            f"SELECT p.person_id FROM {q('person')} p WHERE NOT EXISTS "
            f"(SELECT 1 FROM {T} t WHERE t.person_id = p.person_id)",
            f"SELECT count(*) FROM {q('person')}",
        )
    if name == "measureConditionEraCompleteness":
        return _Sql(
            f"SELECT DISTINCT co.person_id FROM {q('condition_occurrence')} co WHERE NOT EXISTS "
            f"(SELECT 1 FROM {T} t WHERE t.person_id = co.person_id)",
            f"SELECT count(DISTINCT person_id) FROM {q('condition_occurrence')}",
        )
    if name == "measureObservationPeriodOverlap":
        return _Sql(
            f"SELECT DISTINCT t.person_id FROM {T} t JOIN {T} t2 ON t.person_id = t2.person_id "
            "AND t.observation_period_id <> t2.observation_period_id "
            "WHERE (t.observation_period_start_date <= t2.observation_period_end_date "
            "AND t.observation_period_end_date >= t2.observation_period_start_date) "
            "OR CAST(t.observation_period_end_date AS DATE) + 1 = CAST(t2.observation_period_start_date AS DATE) "
            "OR CAST(t2.observation_period_end_date AS DATE) + 1 = CAST(t.observation_period_start_date AS DATE)",
            f"SELECT count(DISTINCT person_id) FROM {T}",
        )
    assert f is not None
    keys = _keys(ctx, t, "t", f)
    if name in ("isRequired", "measureValueCompleteness"):
        return _agg(src, keys, f"{F} IS NULL")
    if name == "cdmDatatype":
        typ = ctx.columns[t].get(f, "VARCHAR").upper()
        if typ in _INT_TYPES:
            cond = "FALSE"
        elif typ in ("DOUBLE", "FLOAT", "REAL") or typ.startswith("DECIMAL"):
            cond = f"{F} <> trunc({F})"
        elif typ == "VARCHAR":
            cond = f"NOT regexp_full_match(trim({F}), '[+-]?[0-9]+')"
        else:
            cond = "TRUE"
        return _agg(src, keys, f"{F} IS NOT NULL AND {cond}")
    if name == "isPrimaryKey":
        return _Sql(
            f"SELECT {keys} FROM {T} t WHERE {F} IN "
            f"(SELECT {q(f)} FROM {T} GROUP BY {q(f)} HAVING count(*) > 1)",
            count_all,
        )
    if name == "isForeignKey":
        fk_t, fk_f = r["fkTableName"].lower(), _norm_field(r["fkFieldName"])
        return _agg(src, keys, f"{F} IS NOT NULL AND NOT ({F} IN "
                    f"(SELECT fk.{q(fk_f)} FROM {q(fk_t)} fk WHERE fk.{q(fk_f)} IS NOT NULL))")
    if name in ("fkDomain", "fkClass"):
        col, val = ("domain_id", r["fkDomain"]) if name == "fkDomain" else ("concept_class_id", r["fkClass"])
        return _Sql(
            f"SELECT {keys} FROM {T} t JOIN {q('concept')} co ON {F} = co.concept_id "
            f"WHERE co.concept_id <> 0 AND co.{col} IS DISTINCT FROM '{val.replace(chr(39), chr(39) * 2)}'",
            count_all,
        )
    if name == "isStandardValidConcept":
        return _Sql(
            f"SELECT {keys} FROM {T} t JOIN {q('concept')} co ON {F} = co.concept_id "
            "WHERE co.concept_id <> 0 AND (co.standard_concept IS DISTINCT FROM 'S' OR co.invalid_reason IS NOT NULL)",
            count_all,
        )
    if name in ("standardConceptRecordCompleteness", "sourceConceptRecordCompleteness"):
        return _agg(src, keys, f"{F} = 0")
    if name == "sourceValueCompleteness":
        std = _norm_field(r["standardConceptFieldName"])
        # DQD counts distinct source values; the sample shows rows' keys, never the (text) value.
        return _Sql(
            f"SELECT DISTINCT {F} FROM {T} t WHERE t.{q(std)} = 0",
            f"SELECT count(DISTINCT {q(f)}) + count(DISTINCT CASE WHEN {q(f)} IS NULL THEN 1 END) FROM {T}",
        )
    if name in ("plausibleValueLow", "plausibleValueHigh"):
        op, v = ("<", r["plausibleValueLow"]) if name == "plausibleValueLow" else (">", r["plausibleValueHigh"])
        return _agg(src, keys, f"{F} {op} {_sql_value(v)}", f"{F} IS NOT NULL")
    if name == "plausibleTemporalAfter":
        other_t = r["plausibleTemporalAfterTableName"].lower()
        other_f = _norm_field(r["plausibleTemporalAfterFieldName"])
        if other_t == t:
            return _agg(src, _keys(ctx, t, "t", f, other_f), f"{_date('t.' + q(other_f))} > {_date(F)}")
        after = _date(f"o.{q(other_f)}")
        if other_t == "person":
            after = f"COALESCE({after}, TRY_CAST(printf('%04d-06-01', o.year_of_birth) AS DATE))"
        joined = f"FROM {T} t JOIN {q(other_t)} o ON t.person_id = o.person_id"
        cond = f"{after} > {_date(F)}"
        # counted against each person's date computed once (not once per row and field: a printf)
        per_person = f"FROM {T} t JOIN (SELECT person_id, {after} AS _after FROM {q(other_t)} o) o ON t.person_id = o.person_id"
        return _Sql(f"SELECT {keys} {joined} WHERE {cond}", count_all,
                    counts=((per_person, f"o._after > {_date(F)}"), (src, "TRUE")))
    if name in ("plausibleDuringLife", "plausibleBeforeDeath"):
        joined = f"FROM {T} t JOIN {q('death')} d ON t.person_id = d.person_id"
        cond = f"{F} IS NOT NULL AND {_date(F)} > CAST(d.death_date AS DATE) + 60"
        dead = f"{src} WHERE t.person_id IN (SELECT person_id FROM {q('death')})"
        den = "TRUE" if name == "plausibleDuringLife" else f"{F} IS NOT NULL"
        return _Sql(f"SELECT {keys} {joined} WHERE {cond}",
                    f"SELECT count(*) {dead}" + ("" if name == "plausibleDuringLife" else f" AND {den}"),
                    counts=((joined, cond), (dead, den)))
    if name == "plausibleAfterBirth":
        birth = ("COALESCE(CAST(p.birth_datetime AS DATE), TRY_CAST(printf('%04d-%02d-%02d', p.year_of_birth, "
                 "COALESCE(p.month_of_birth, 1), COALESCE(p.day_of_birth, 1)) AS DATE))")
        joined = f"FROM {T} t JOIN {q('person')} p ON t.person_id = p.person_id"
        cond = f"{F} IS NOT NULL AND {_date(F)} < {birth}"
        # counted against each person's birth computed once (not once per row and field: a printf)
        per_person = f"FROM {T} t JOIN (SELECT person_id, {birth} AS _birth FROM {q('person')} p) p ON t.person_id = p.person_id"
        return _Sql(f"SELECT {keys} {joined} WHERE {cond}", f"SELECT count(*) FROM {T} t WHERE {F} IS NOT NULL",
                    counts=((per_person, f"{F} IS NOT NULL AND {_date(F)} < p._birth"), (src, f"{F} IS NOT NULL")))
    if name == "plausibleStartBeforeEnd":
        end = _norm_field(r["plausibleStartBeforeEndFieldName"])
        return _agg(src, _keys(ctx, t, "t", f, end), f"{_date(F)} > {_date('t.' + q(end))}")
    if name == "withinVisitDates":
        joined = f"FROM {T} t JOIN {q('visit_occurrence')} vo ON t.visit_occurrence_id = vo.visit_occurrence_id"
        cond = f"{_date(F)} < CAST(vo.visit_start_date AS DATE) - 7 OR {_date(F)} > CAST(vo.visit_end_date AS DATE) + 7"
        return _Sql(f"SELECT {_keys(ctx, t, 't', f, 'visit_occurrence_id')} {joined} WHERE {cond}",
                    f"SELECT count(*) {joined}", counts=((joined, cond), (joined, "TRUE")))
    if name in ("plausibleGender", "plausibleGenderUseDescendants"):
        gender = _GENDER[r[name]]
        ids = ", ".join(str(int(x)) for x in (c.concept_id or "").split(","))
        if name == "plausibleGender":
            match = f"{F} IN ({ids})"
            return _Sql(
                f"SELECT {keys} FROM {T} t JOIN {q('person')} p ON t.person_id = p.person_id "
                f"WHERE {match} AND p.gender_concept_id <> {gender}",
                f"SELECT count(*) FROM {T} t WHERE {match}",
                group=(f"{name}|{t}|{f}", f"{int(ids)}, {gender}"),
            )
        match = f"{F} IN (SELECT descendant_concept_id FROM {q('concept_ancestor')} WHERE ancestor_concept_id IN ({ids}))"
        return _Sql(
            f"SELECT {keys} FROM {T} t JOIN {q('person')} p ON t.person_id = p.person_id "
            f"WHERE {match} AND p.gender_concept_id <> {gender}",
            f"SELECT count(*) FROM {T} t WHERE {match}",
        )
    if name == "plausibleUnitConceptIds":
        units = r["plausibleUnitConceptIds"]
        ids = ", ".join(str(int(x)) for x in units.split(",")) if units else ""
        unit_cond = f"COALESCE(t.unit_concept_id, -1) NOT IN ({ids})" if ids else "t.unit_concept_id IS NOT NULL"
        match = f"{F} = {int(c.concept_id or 0)}"
        base = f"{match} AND t.value_as_number IS NOT NULL AND t.unit_source_value IS NOT NULL"
        return _Sql(
            f"SELECT {_keys(ctx, t, 't', f, 'unit_concept_id')} {src} WHERE {base} AND {unit_cond}",
            f"SELECT count(*) {src} WHERE {base}",
            group=(f"{name}|{t}|{f}", f"{int(c.concept_id or 0)}, " + (f"[{ids}]" if ids else "NULL::INTEGER[]")),
        )
    raise ValueError(f"no SQL for DQD check type {name!r}")


def _vocab_needed(c: CheckDef) -> set[str]:
    if c.check_name in ("fkDomain", "fkClass", "isStandardValidConcept"):
        return {"concept"}
    if c.check_name == "plausibleGenderUseDescendants":
        return {"concept_ancestor"}
    if c.check_name == "isForeignKey" and c.row["fkTableName"].lower() in _VOCAB_NEEDED:
        return {c.row["fkTableName"].lower()}
    return set()


# --------------------------------------------------------------------------------------------------
# running


def _parquet_view(con: duckdb.DuckDBPyConnection, name: str, files: Sequence[Path],
                  in_memory: bool = False) -> tuple[int, set[str]] | None:
    """A view over Parquet files carrying every field of the table (rows, columns); None if some lack.
    ``in_memory``: a table read from the files once instead (the checks then scan memory, not Parquet)."""
    lf = scan_parquet_files(list(files))
    columns = set(lf.collect_schema().names())
    if any(fl.name not in columns for fl in omop.table(name).fields):
        return None
    quoted = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    kind = "TABLE" if in_memory else "VIEW"
    con.execute(f'CREATE {kind} "{name}" AS SELECT * FROM read_parquet([{quoted}])')
    return int(lf.select(pl.len()).collect().item()), {c.lower() for c in columns}


def _file_bytes(files: Sequence[Path]) -> int:
    return sum(int(fs_of(f).size(url_of(f))) if is_remote(f) else f.stat().st_size for f in files)


def _in_memory(tables: Mapping[str, Table], budget: int) -> set[str]:
    """The tables given as files that are read into memory: the smallest first while their Parquet bytes
    stay within ``budget`` (a table holds about 4x its Parquet size in memory)."""
    sizes = sorted((_file_bytes(list(v)), k.lower()) for k, v in tables.items() if not isinstance(v, pl.DataFrame))
    chosen: set[str] = set()
    used = 0
    for size, name in sizes:
        if used + size > budget:
            break
        chosen.add(name)
        used += size
    return chosen


def _register(
    con: duckdb.DuckDBPyConnection, tables: Mapping[str, Table], concept: pl.DataFrame | None,
    concept_ancestor: pl.DataFrame | None, in_memory_bytes: int = 0,
) -> _Ctx:
    given: dict[str, pl.DataFrame] = {}
    present_views: set[str] = set()
    vocab_views: set[str] = set()
    rows: dict[str, int] = {}
    given_columns: dict[str, set[str]] = {}
    loaded = _in_memory(tables, in_memory_bytes) if in_memory_bytes > 0 else set()
    registered: dict[str, Any] = {}
    for k, v in tables.items():
        name = k.lower()
        if isinstance(v, pl.DataFrame):
            given[name] = v
            rows[name], given_columns[name] = v.height, {c.lower() for c in v.columns}
            continue
        files = list(v)
        view = _parquet_view(con, name, files, name in loaded) if files and name in omop.tables() else None
        if view is None:  # no file, or a file without every field: read it and fill the missing ones
            read: pl.DataFrame = read_parquet_files(files) if files else pl.DataFrame(schema=omop.table(name).polars_schema)
            given[name] = read
            rows[name], given_columns[name] = read.height, {c.lower() for c in read.columns}
            continue
        rows[name], given_columns[name] = view
        (vocab_views if name in _VOCAB_NEEDED else present_views).add(name)
    present: set[str] = set(present_views)
    vocab: set[str] = set(vocab_views)
    for name in omop.tables():
        if name in present_views or name in vocab_views:
            continue
        spec = omop.table(name)
        df: pl.DataFrame | None = given.get(name)
        if name == "concept" and concept is not None:
            df = concept
        if name == "concept_ancestor" and concept_ancestor is not None:
            df = concept_ancestor
        if df is None:
            if name in _VOCAB_NEEDED:
                continue
            df = pl.DataFrame(schema=spec.polars_schema)
        else:
            if name in _VOCAB_NEEDED:
                vocab.add(name)
            else:
                present.add(name)
            missing = [fl for fl in spec.fields if fl.name not in df.columns]
            if missing:
                df = df.with_columns(pl.lit(None, dtype=fl.polars_type).alias(fl.name) for fl in missing)
        registered[name] = df.to_arrow()
        con.register(name, registered[name])
    columns: dict[str, dict[str, str]] = {}
    for tname, cname, ctype in con.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
    ).fetchall():
        columns.setdefault(tname, {})[cname] = ctype
    return _Ctx(columns=columns, present=present, rows=rows, vocab=vocab, given_columns=given_columns,
                registered=registered)


def _result(c: CheckDef) -> CheckResult:
    d = c.description
    return CheckResult(
        check_name=c.check_name, check_level=c.check_level, table=c.table, field=c.field,
        concept_id=c.concept_id, unit_concept_id=c.unit_concept_id, category=d["kahnCategory"],
        subcategory=d["kahnSubcategory"] or None, context=d["kahnContext"], severity=d["severity"],
        description=c.rendered_description(), num_violated_rows=None, num_denominator_rows=None,
        pct_violated_rows=None, threshold=c.threshold, failed=False, not_applicable=False, error=None,
        check_id=c.check_id, cdm_table_name=c.cdm_table_name, cdm_field_name=c.cdm_field_name,
        sql_file=d["sqlFile"], notes=c.notes,
    )


def _evaluate(res: CheckResult) -> None:
    """DQD's evaluateThresholds: fail above the threshold, or on any violation when it is 0 or missing."""
    if res.error is not None or res.num_violated_rows is None:
        return
    if res.threshold is None or res.threshold == 0:
        res.failed = res.num_violated_rows > 0
    else:
        res.failed = (res.pct_violated_rows or 0.0) * 100 > res.threshold


def run_checks(
    tables: Mapping[str, Table],
    concept: pl.DataFrame | None,
    *,
    cdm_source_name: str = "ds4h",
    skip_tables_absent: bool = True,
    concept_ancestor: pl.DataFrame | None = None,
    memory_limit: str | None = None,
    temp_dir: Path | None = None,
    in_memory_bytes: int = 0,
    workers: int | None = None,
) -> DqdRun:
    """Run every DQD check on the CDM tables given (lower-case OMOP table names -> polars frames, or
    the Parquet files of a table: DuckDB then reads them in place, so a large CDM need not fit in memory).

    ``concept`` (and ``concept_ancestor``, or ``tables["concept_ancestor"]``) are the vocabulary; the
    checks that need it are not applicable without it. ``memory_limit`` (e.g. ``"2GB"``) and
    ``temp_dir`` bound DuckDB's memory, spilling to disk beyond it. ``in_memory_bytes``: tables given as
    files are read into DuckDB's memory once, smallest first, while their Parquet stays within this many
    bytes (the ~2,400 checks, ~250 queries, then scan memory: a third faster); the others are read in place.
    ``workers``: queries run at once on cursors of the connection (default: one per core, at most 4; 1
    runs them one after the other); the results do not depend on it. On 2 cores, two cursors took the
    release's DQD at 100,000 patients from 16.2-17.0 to 13.7-14.4 s for +55 MB (three: 13.7 s, +100 MB).
    Tables on an object store: one at a time.
    """
    start = datetime.now(UTC)
    config: dict[str, str | bool | int | float | list[str]] = {}
    if memory_limit is not None:
        config["memory_limit"] = memory_limit
    if temp_dir is not None:
        config["temp_directory"] = str(temp_dir)
    con = duckdb.connect(config=config)
    remote = next((f for v in tables.values() if not isinstance(v, pl.DataFrame) for f in v if is_remote(f)), None)
    if remote is not None:  # Parquet on an object store: DuckDB reads it through fsspec (no httpfs offline)
        con.register_filesystem(fs_of(remote))
    try:
        ctx = _register(con, tables, concept, concept_ancestor, in_memory_bytes)
        if workers is None:
            workers = min(4, os.cpu_count() or 1)
        results = _run_all(con, list(check_definitions()), ctx, skip_tables_absent, 1 if remote is not None else workers)
    finally:
        con.close()
    given = {k.lower(): v for k, v in tables.items()}
    cdm_source: dict[str, Any] = {"cdm_source_name": cdm_source_name, "cdm_source_abbreviation": cdm_source_name,
                                  "cdm_version": "5.4"}
    src_table = given.get("cdm_source")
    src = src_table if isinstance(src_table, pl.DataFrame) or src_table is None else \
        (read_parquet_files(list(src_table)) if list(src_table) else None)
    if src is not None and src.height > 0:
        cdm_source = {k: (v.isoformat() if isinstance(v, date | datetime) else v) for k, v in src.row(0, named=True).items()}
    return DqdRun(results=results, start_time=start, end_time=datetime.now(UTC), cdm_source=cdm_source)


def _given_columns(ctx: _Ctx, table: str) -> set[str]:
    return ctx.given_columns.get(table, set())


def _standalone(sql: _Sql) -> str:
    return (f"SELECT (SELECT count(*) FROM ({sql.violated}) v) AS num_violated_rows, "
            f"({sql.denominator}) AS num_denominator_rows")


def _run_jobs(con: duckdb.DuckDBPyConnection, ctx: _Ctx, jobs: list[Callable[[duckdb.DuckDBPyConnection], None]],
              workers: int) -> None:
    """Run the queries, on ``workers`` cursors of the connection at once (DuckDB runs a cursor's query
    without the GIL; most checks are small queries that one thread runs alone)."""
    if workers <= 1 or len(jobs) < 2:
        for job in jobs:
            job(con)
        return
    local = threading.local()
    cursors: list[duckdb.DuckDBPyConnection] = []
    lock = threading.Lock()

    def run(job: Callable[[duckdb.DuckDBPyConnection], None]) -> None:
        cur = getattr(local, "cursor", None)
        if cur is None:
            cur = local.cursor = con.cursor()
            for name, arrow in ctx.registered.items():
                cur.register(name, arrow)
            with lock:
                cursors.append(cur)
        job(cur)

    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dqd") as pool:
            for done in [pool.submit(run, job) for job in jobs]:
                done.result()
    finally:
        for cur in cursors:
            cur.close()


def _run_all(
    con: duckdb.DuckDBPyConnection, checks: list[CheckDef], ctx: _Ctx, skip_tables_absent: bool, workers: int = 1
) -> list[CheckResult]:
    """Decide what runs, count the count_if checks in one query per source (a table, or a join), the others
    one query each or grouped (on ``workers`` cursors at once)."""
    results = [_result(c) for c in checks]
    todo: list[tuple[CheckDef, CheckResult, _Sql]] = []
    for c, res in zip(checks, results, strict=True):
        if c.check_name == "cdmTable":
            res.num_violated_rows, res.num_denominator_rows = (0 if c.table in ctx.present else 1), 1
        elif c.check_name == "cdmField":
            given = c.table in ctx.present and c.field in _given_columns(ctx, c.table)
            res.num_violated_rows, res.num_denominator_rows = (0 if given else 1), 1
        elif c.table not in ctx.present or (c.field is not None and c.field not in _given_columns(ctx, c.table)):
            continue  # not applicable (table or field absent), decided in _apply_not_applicable
        elif _vocab_needed(c) - ctx.vocab:
            res.not_applicable = True
            res.not_applicable_reason = "Vocabulary table(s) {} not provided.".format(
                ", ".join(sorted(x.upper() for x in _vocab_needed(c) - ctx.vocab)))
            continue
        else:
            try:
                sql = _build_sql(c, ctx)
            except (ValueError, KeyError) as e:
                res.error = f"{type(e).__name__}: {e}"
                continue
            res.query_text = _standalone(sql)
            todo.append((c, res, sql))

    groups: dict[str, list[tuple[CheckDef, CheckResult, _Sql]]] = {}
    counts: dict[str, list[tuple[CheckResult, int, str]]] = {}
    singles: list[CheckResult] = []
    for item in todo:
        if item[2].counts is not None:
            for slot, (source, cond) in enumerate(item[2].counts):
                counts.setdefault(source, []).append((item[1], slot, cond))
        elif item[2].group is not None:
            groups.setdefault(item[2].group[0], []).append(item)
        else:
            singles.append(item[1])
    # the long scans first, so that the threads end together; each query writes only its own checks' results
    jobs: list[Callable[[duckdb.DuckDBPyConnection], None]] = [
        *[partial(_run_counts, source=source, targets=targets) for source, targets in counts.items()],
        *[partial(_run_group, key=key, items=items) for key, items in groups.items()],
        *[partial(_run_single, res=res) for res in singles],
    ]
    _run_jobs(con, ctx, jobs, workers)
    for res in results:
        if res.num_violated_rows is not None and res.num_denominator_rows is not None:
            d = res.num_denominator_rows
            res.pct_violated_rows = 0.0 if d == 0 else res.num_violated_rows / d
        _evaluate(res)
    _apply_not_applicable(results, ctx, skip_tables_absent)
    for c, res, sql in todo:
        if res.failed:  # samples only for the failures the report shows
            _sample(con, c, ctx, res, sql)
    return results


def _run_single(con: duckdb.DuckDBPyConnection, res: CheckResult) -> None:
    t0 = time.perf_counter()
    try:
        n, d = con.execute(res.query_text).fetchall()[0]
        res.num_violated_rows, res.num_denominator_rows = int(n), int(d)
    except duckdb.Error as e:
        res.error = f"{type(e).__name__}: {e}"
    res.execution_seconds = time.perf_counter() - t0


_TIMING = threading.Lock()


def _run_shared(con: duckdb.DuckDBPyConnection, query: str, results: list[CheckResult]) -> list[tuple[Any, ...]] | None:
    """The rows of one query that serves several checks, each check timed at an equal share of it (added:
    a check counted in two queries gets both shares); None if DuckDB refuses the query, after running
    every check alone (to name the culprit)."""
    t0 = time.perf_counter()
    try:
        rows = con.execute(query).fetchall()
    except duckdb.Error:
        for res in results:
            _run_single(con, res)
        return None
    share = (time.perf_counter() - t0) / len(results)
    with _TIMING:  # a check's two counts may run on two cursors at once
        for res in results:
            res.execution_seconds += share
    return rows


def _run_counts(con: duckdb.DuckDBPyConnection, source: str, targets: list[tuple[CheckResult, int, str]]) -> None:
    """Numerators and denominators counted over one source (a table, or its join with person, death or
    visit_occurrence) in one scan: ``targets`` are (check, 0 numerator / 1 denominator, condition). On an
    error, each check alone (both its counts, to name the culprit)."""
    query = "SELECT " + ", ".join(f"count(*) FILTER (WHERE {cond})" for _, _, cond in targets) + f" {source}"
    checks = list({id(res): res for res, _, _ in targets}.values())  # each once (a check may count twice here)
    rows = _run_shared(con, query, checks)
    if rows is None:
        return
    for (res, slot, _), n in zip(targets, rows[0], strict=True):
        if slot == 0:
            res.num_violated_rows = int(n)
        else:
            res.num_denominator_rows = int(n)


def _run_group(con: duckdb.DuckDBPyConnection, key: str, items: list[tuple[CheckDef, CheckResult, _Sql]]) -> None:
    """Concept-level checks of one type on one field: a VALUES list of the concepts, one hash join, GROUP BY."""
    name, table, fld = key.split("|")
    T, F = q(table), f"t.{q(fld)}"
    rows = ", ".join(f"({i}, {sql.group[1]})" for i, (_, _, sql) in enumerate(items) if sql.group is not None)
    if name == "plausibleGender":
        query = (
            f"WITH spec(idx, cid, gender) AS (VALUES {rows}) "
            "SELECT spec.idx, count(*) FILTER (WHERE p.gender_concept_id <> spec.gender), count(*) "
            f"FROM {T} t JOIN spec ON {F} = spec.cid LEFT JOIN {q('person')} p ON t.person_id = p.person_id "
            "GROUP BY spec.idx"
        )
    else:
        query = (
            f"WITH spec(idx, cid, units) AS (VALUES {rows}) "
            "SELECT spec.idx, count(*) FILTER (WHERE CASE WHEN spec.units IS NULL THEN t.unit_concept_id IS NOT NULL "
            "ELSE NOT list_contains(spec.units, COALESCE(t.unit_concept_id, -1)) END), count(*) "
            f"FROM {T} t JOIN spec ON {F} = spec.cid "
            "WHERE t.value_as_number IS NOT NULL AND t.unit_source_value IS NOT NULL GROUP BY spec.idx"
        )
    found = _run_shared(con, query, [res for _, res, _ in items])
    if found is None:
        return
    counts = {int(i): (int(n), int(d)) for i, n, d in found}
    for i, (_, res, _) in enumerate(items):
        res.num_violated_rows, res.num_denominator_rows = counts.get(i, (0, 0))


def _sample(con: duckdb.DuckDBPyConnection, c: CheckDef, ctx: _Ctx, res: CheckResult, sql: _Sql) -> None:
    sample_sql = sql.violated
    if c.check_name == "sourceValueCompleteness":
        std = _norm_field(c.row["standardConceptFieldName"])
        sample_sql = f"SELECT {_keys(ctx, c.table, 't', std)} FROM {q(c.table)} t WHERE t.{q(std)} = 0"
    try:
        # ordered (DuckDB keeps the top rows only): the same inputs give the same sample in the published report
        rel = con.sql(f"SELECT * FROM ({sample_sql}) s ORDER BY ALL LIMIT {SAMPLE_SIZE}")
        columns = rel.columns
        rows = rel.fetchall()
    except duckdb.Error as e:
        res.error = f"{type(e).__name__}: {e}"
        return
    sample = [
        {k: (v.isoformat() if isinstance(v, date | datetime) else v) for k, v in zip(columns, row, strict=True)
         if k != "no_key"}
        for row in rows
    ]
    res.sample = [s for s in sample if s]


def _apply_not_applicable(results: list[CheckResult], ctx: _Ctx, skip_tables_absent: bool) -> None:
    """DQD's calculateNotApplicableStatus (see the module docstring for the deviations)."""
    missing_tables = {r.table for r in results if r.check_name == "cdmTable" and r.num_violated_rows}
    missing_fields = {(r.table, r.field) for r in results if r.check_name == "cdmField" and r.num_violated_rows}
    empty_tables = {t for t in ctx.present if ctx.rows.get(t, 0) == 0}
    empty_fields = {
        (r.table, r.field) for r in results
        if r.check_name == "measureValueCompleteness" and r.num_denominator_rows
        and r.num_denominator_rows == r.num_violated_rows
    }
    co_missing = "condition_occurrence" not in ctx.present or "condition_occurrence" in empty_tables

    def reason(r: CheckResult) -> str | None:
        absent = r.table in missing_tables
        if r.check_name == "cdmTable":
            return f"Table {r.cdm_table_name} not provided." if absent and skip_tables_absent else None
        if absent:
            if skip_tables_absent:
                return f"Table {r.cdm_table_name} not provided."
            return f"Table {r.cdm_table_name} does not exist."
        if r.check_name == "measureConditionEraCompleteness":
            return "Table CONDITION_OCCURRENCE is empty." if co_missing else None
        if r.check_name == "measurePersonCompleteness":
            return None  # DQD: applies to an empty table too (no person has a record)
        if r.check_name == "cdmField":
            return None
        if (r.table, r.field) in missing_fields:
            return f"Field {r.cdm_table_name}.{r.cdm_field_name} does not exist."
        if r.not_applicable:
            return r.not_applicable_reason
        if r.error is not None:
            return None
        if r.table in empty_tables:
            return f"Table {r.cdm_table_name} is empty."
        if r.check_name in ("measureValueCompleteness", "isRequired"):
            return None
        if (r.table, r.field) in empty_fields:
            return f"Field {r.cdm_table_name}.{r.cdm_field_name} is not populated."
        if r.check_level == "CONCEPT" and r.num_denominator_rows == 0:
            if r.unit_concept_id:
                return (f"Combination of {r.cdm_field_name}={r.concept_id}, unitConceptId={r.unit_concept_id} and "
                        f"VALUE_AS_NUMBER IS NOT NULL is missing from the {r.cdm_table_name} table.")
            return f"{r.cdm_field_name}={r.concept_id} is missing from the {r.cdm_table_name} table."
        return None

    for r in results:
        why = reason(r)
        if why is not None:
            r.not_applicable, r.not_applicable_reason, r.failed = True, why, False


# --------------------------------------------------------------------------------------------------
# the results JSON, in DQD's shape


def _overview(run: DqdRun) -> dict[str, Any]:
    res = run.results
    total = len(res)
    failed = sum(r.failed for r in res)
    errors = sum(r.is_error for r in res)
    na = sum(r.not_applicable for r in res)
    passed = sum(r.passed for r in res)
    out: dict[str, Any] = {
        "countTotal": total,
        "countThresholdFailed": sum(r.failed and not r.is_error for r in res),
        "countErrorFailed": errors,
        "countOverallFailed": failed + errors,
        "countPassed": passed,
        "countOverallPassed": passed,
        "countNotApplicable": na,
        "percentPassed": round(passed / max(total - na, 1) * 100),
        "percentFailed": round((failed + errors) / max(total - na, 1) * 100),
    }
    for cat in CATEGORIES:
        rs = [r for r in res if r.category == cat]
        out[f"countTotal{cat}"] = len(rs)
        out[f"countFailed{cat}"] = sum(r.failed or r.is_error for r in rs)
        out[f"countPassed{cat}"] = sum(r.passed for r in rs)
        out[f"countNotApplicable{cat}"] = sum(r.not_applicable for r in rs)
        applicable = max(len(rs) - out[f"countNotApplicable{cat}"], 1)
        out[f"percentPassed{cat}"] = round(out[f"countPassed{cat}"] / applicable * 100)
        out[f"percentFailed{cat}"] = round(out[f"countFailed{cat}"] / applicable * 100)
    return out


def _check_json(r: CheckResult) -> dict[str, Any]:
    return {
        "numViolatedRows": r.num_violated_rows,
        "pctViolatedRows": r.pct_violated_rows,
        "numDenominatorRows": r.num_denominator_rows,
        "executionTime": f"{r.execution_seconds:.3f} secs",
        "queryText": r.query_text,
        "checkName": r.check_name,
        "checkLevel": r.check_level,
        "checkDescription": r.description,
        "cdmTableName": r.cdm_table_name,
        "cdmFieldName": r.cdm_field_name,
        "conceptId": r.concept_id,
        "unitConceptId": r.unit_concept_id,
        "sqlFile": r.sql_file,
        "category": r.category,
        "subcategory": r.subcategory,
        "context": r.context,
        "severity": r.severity,
        "warning": None,
        "error": r.error,
        "checkId": r.check_id,
        "failed": int(r.failed),
        "passed": int(r.passed),
        "isError": int(r.is_error),
        "notApplicable": int(r.not_applicable),
        "notApplicableReason": r.not_applicable_reason,
        "thresholdValue": r.threshold,
        "notesValue": r.notes,
    }


def results_dict(run: DqdRun) -> dict[str, Any]:
    secs = run.execution_seconds
    return {
        "startTimestamp": run.start_time.strftime("%Y-%m-%d %H:%M:%S"),
        "endTimestamp": run.end_time.strftime("%Y-%m-%d %H:%M:%S"),
        "executionTime": f"{round(secs)} secs",
        "executionTimeSeconds": secs,
        "CheckResults": [_check_json(r) for r in run.results],
        "Metadata": [run.cdm_source],
        "Overview": _overview(run),
    }


TIMING_KEYS = ("startTimestamp", "endTimestamp", "executionTime", "executionTimeSeconds")


def write_results_json(run: DqdRun, path: Path, *, timings: bool = True) -> None:
    """The results JSON in the shape DataQualityDashboard 2.8 writes (its viewer opens it).

    ``timings=False`` leaves run and execution times out (null), so that a published report is
    byte-identical for the same data."""
    data = results_dict(run)
    if not timings:
        for key in TIMING_KEYS:
            if key in data:
                data[key] = None
        for r in data.get("CheckResults", []):
            r["executionTime"] = None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, separators=(",", ":"), default=str), encoding="utf-8")


def write_html(run: DqdRun, path: Path, *, timings: bool = True) -> None:
    """A self-contained HTML report (no network, no script)."""
    from transforms.dqd_report import render_html

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(run, timings=timings), encoding="utf-8")
