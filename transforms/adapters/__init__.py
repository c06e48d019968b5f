"""Source adapters: each reads one source format into typed raw tables and turns them into staging tables.

An adapter has two halves: ``read_<format>(site, folder) -> IngestResult`` (typed raw tables, the
quarantine with a reason per bad row, row accounting) and ``<format>_to_staging(raw)`` (the
source-neutral tables of ``transforms/staging.py``). This module holds what the adapters share:
date parsing, code-system names, country codes, and the row checks (required, dates, duplicates, orphans).

Modules: ``hospital_csv``, ``synthea`` (Synthea CSV 2.7 to 3.3), ``fhir`` (FHIR R4 NDJSON and Bundles).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import polars as pl

from transforms.ingest import LINE as LINE  # re-exported: the adapters take it from here
from transforms.ingest import TYPED as _TYPED
from transforms.ingest import EntityResult, OrphanEvents, first_failing, orphan_checks, rejected_keys, unlink
from transforms.parsing import first_parsed

FILE = "_file"
ROW = "_row"
PRE_REASON = "_pre_reason"
PRE_DETAIL = "_pre_detail"
RAW = "raw"  # the source text of a JSON resource: kept for the quarantine only
_REASON = "_reason"
_DETAIL = "_detail"
_MARKED = "_duplicate_row"

# Names of coding systems, as sources write them, normalised (upper-case, letters and digits only)
# or as FHIR system URIs -> the staging code_system.
_SYSTEM_WORDS: dict[str, str] = {
    "SNOMED": "SNOMED", "SNOMEDCT": "SNOMED", "SCT": "SNOMED",
    "LOINC": "LOINC", "LN": "LOINC",
    "RXNORM": "RXNORM", "RXN": "RXNORM",
    "CVX": "CVX", "NDC": "NDC", "ATC": "ATC", "UCUM": "UCUM",
    "ICD10": "ICD10", "ICD10CM": "ICD10CM", "ICD10PCS": "ICD10PCS",
    "CPT": "CPT4", "CPT4": "CPT4", "HCPCS": "HCPCS", "DMD": "DMD",
}
SYSTEM_URIS: dict[str, str] = {
    "http://snomed.info/sct": "SNOMED",
    "http://loinc.org": "LOINC",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RXNORM",
    "http://hl7.org/fhir/sid/cvx": "CVX",
    "http://hl7.org/fhir/sid/icd-10": "ICD10",
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD10CM",
    "http://hl7.org/fhir/sid/ndc": "NDC",
    "http://www.whocc.no/atc": "ATC",
    "http://www.ama-assn.org/go/cpt": "CPT4",
    "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets": "HCPCS",
    "http://unitsofmeasure.org": "UCUM",
}


def code_system_name(system: str | None) -> str | None:
    """The staging code_system for a source's system name or URI; unknown ones are kept as written."""
    if system is None:
        return None
    s = system.strip()
    if not s:
        return None
    if s in SYSTEM_URIS:
        return SYSTEM_URIS[s]
    word = "".join(ch for ch in s.upper() if ch.isalnum())
    return _SYSTEM_WORDS.get(word, s)


def code_system_expr(col: str, default: str) -> pl.Expr:
    """Vectorised ``code_system_name`` of a column (``default`` where it is null or absent)."""
    s = pl.col(col).str.strip_chars()
    word = s.str.to_uppercase().str.replace_all(r"[^A-Z0-9]", "")
    by_uri = s.replace_strict(SYSTEM_URIS, default=None, return_dtype=pl.String)
    by_word = word.replace_strict(_SYSTEM_WORDS, default=None, return_dtype=pl.String)
    return pl.coalesce(by_uri, by_word, pl.when(s != "").then(s), pl.lit(default))


def with_country(df: pl.DataFrame, column: str = "country", default: str | None = None) -> pl.DataFrame:
    """``column`` as ISO 3166-1 alpha-2 codes (``schemas.geo.country_code``: codes, alpha-3 codes and
    the names met so far, e.g. "Luxembourg" -> LU, "USA" -> US); a value it cannot read is kept as
    written (trimmed), an empty one becomes ``default``."""
    from schemas.geo import country_code

    values = [v for v in df[column].unique().to_list() if v is not None]
    mapping = {v: country_code(v) or (v.strip() or None) for v in values}
    e = pl.col(column).cast(pl.String).replace_strict(mapping, default=None, return_dtype=pl.String)
    return df.with_columns((e if default is None else e.fill_null(pl.lit(default))).alias(column))


def parse_instant(e: pl.Expr) -> pl.Expr:
    """ISO 8601 date or date-time (``Z``, an offset, or none; fractions; partial dates ``YYYY``/``YYYY-MM``)
    -> naive UTC ``Datetime("us")``; null where it does not parse. A value without offset is taken as UTC.

    Synthea's and FHIR's common shape (``...Z``) is parsed first; the other shapes only on the values it
    leaves null (``first_parsed``)."""
    return first_parsed(e, [lambda s: s.str.strptime(pl.Datetime("us"), "%Y-%m-%dT%H:%M:%SZ", strict=False),
                            _instant_any], pl.Datetime("us"))


def _instant_any(e: pl.Expr) -> pl.Expr:
    s = e.str.strip_chars()
    parsed = s.str.strptime(pl.Datetime("us"), "%Y-%m-%dT%H:%M:%SZ", strict=False)
    rest = pl.when(parsed.is_null()).then(s)
    parsed = pl.coalesce(parsed, rest.str.strptime(pl.Date, "%Y-%m-%d", strict=False, exact=True).cast(pl.Datetime("us")))
    iso = pl.when(parsed.is_null()).then(s).str.replace(r"^(\d{4}-\d{2}-\d{2}) ", "${1}T").str.replace(r"Z$", "+00:00")
    parsed = pl.coalesce(
        parsed,
        iso.str.strptime(pl.Datetime("us", "UTC"), "%Y-%m-%dT%H:%M:%S%.f%z", strict=False).dt.replace_time_zone(None),
    )
    rest = pl.when(parsed.is_null()).then(iso)
    return pl.coalesce(
        parsed,
        rest.str.strptime(pl.Datetime("us"), "%Y-%m-%dT%H:%M:%S%.f", strict=False),
        rest.str.strptime(pl.Datetime("us", "UTC"), "%Y-%m-%dT%H:%M%z", strict=False).dt.replace_time_zone(None),
        rest.str.strptime(pl.Datetime("us"), "%Y-%m-%dT%H:%M", strict=False),
        pl.when(rest.str.contains(r"^\d{4}(-\d{2})?$")).then(_day_any(rest)).cast(pl.Datetime("us")),
    )


def parse_day(e: pl.Expr) -> pl.Expr:
    """The calendar date as written (``YYYY-MM-DD``, or ``YYYY-MM``/``YYYY`` as the first day; a date-time
    keeps its own local date) -> ``Date``; null where it does not parse. ``YYYY-MM-DD`` first, the other
    shapes only on the values it leaves null."""
    return first_parsed(e, [lambda s: s.str.strptime(pl.Date, "%Y-%m-%d", strict=False, exact=True), _day_any], pl.Date)


def _day_any(e: pl.Expr) -> pl.Expr:
    s = e.str.strip_chars()
    day = (
        pl.when(s.str.contains(r"^\d{4}$")).then(s + "-01-01")
        .when(s.str.contains(r"^\d{4}-\d{2}$")).then(s + "-01")
        .when(s.str.contains(r"^\d{4}-\d{2}-\d{2}[T ]")).then(s.str.slice(0, 10))
        .otherwise(s)
    )
    return day.str.strptime(pl.Date, "%Y-%m-%d", strict=False, exact=True)


@dataclass(frozen=True)
class Spec:
    """What one raw entity must satisfy. Columns are the typed table's (lower-case) names."""

    name: str
    key: str | None = None
    required: tuple[str, ...] = ()
    datetimes: tuple[str, ...] = ()  # parsed to naive UTC Datetime("us")
    dates: tuple[str, ...] = ()  # parsed to Date (as written)
    numbers: tuple[str, ...] = ()  # parsed to Float64
    refs: Mapping[str, str] = field(default_factory=dict)  # column -> parent entity (its valid keys)


def _row_checks(spec: Spec, absent: Mapping[str, str]) -> tuple[list[tuple[pl.Expr, str, pl.Expr]], dict[str, pl.Expr]]:
    """The row-local checks of ``validate`` (the read fault, required, dates and numbers), in order, and
    the typed expressions they test."""
    checks: list[tuple[pl.Expr, str, pl.Expr]] = [
        (pl.col(PRE_REASON).is_not_null(), "", pl.col(PRE_DETAIL)),
    ]
    for c in spec.required:
        msg = absent.get(c, f"{c} is empty")
        checks.append((pl.col(c).is_null() | (pl.col(c).str.strip_chars() == ""), "raw.missing_required", pl.lit(msg)))
    typed: dict[str, pl.Expr] = {}
    for c in spec.datetimes:
        typed[c] = parse_instant(pl.col(c))
    for c in spec.dates:
        typed[c] = parse_day(pl.col(c))
    for c in spec.numbers:
        typed[c] = pl.col(c).str.strip_chars().cast(pl.Float64, strict=False)
    for c in typed:
        code = "raw.invalid_value" if c in spec.numbers else "raw.invalid_date"
        what = "a number" if c in spec.numbers else "a valid date"
        checks.append((pl.col(c).is_not_null() & (pl.col(c).str.strip_chars() != "") & pl.col(f"{_TYPED}{c}").is_null(),
                       code, pl.lit(f"{c} is not {what}: ") + pl.col(c)))
    return checks, typed


def passes_row_checks(spec: Spec, df: pl.DataFrame) -> pl.Series:
    """Whether each row of ``df`` passes the row-local checks of ``validate`` (the read fault, required
    values, dates): what decides which rows take part in the duplicate-key check."""
    if PRE_REASON not in df.columns:
        df = df.with_columns(pl.lit(None, pl.String).alias(PRE_REASON), pl.lit(None, pl.String).alias(PRE_DETAIL))
    checks, typed = _row_checks(spec, {})
    failed = pl.lit(False)
    for cond, _code, _msg in checks:
        failed = failed | cond.fill_null(False)
    return df.with_columns([e.alias(f"{_TYPED}{c}") for c, e in typed.items()]).select(
        (~failed).alias("ok")).to_series()


def validate(
    spec: Spec,
    df: pl.DataFrame,
    *,
    file: str | None,
    source_columns: list[str],
    dedup_on: list[str],
    parents: Mapping[str, pl.Series],
    absent: Mapping[str, str] | None = None,
    scoped_refs: Mapping[str, str] | None = None,
    rejected: Mapping[str, pl.DataFrame] | None = None,
    visit_refs: tuple[str, ...] = (),
    orphan_events: OrphanEvents = "keep",
    key_expr: pl.Expr | None = None,
    duplicate_rows: pl.DataFrame | None = None,
) -> EntityResult:
    """Type and check one raw entity. Every input row ends in the table, the quarantine or ``deduplicated``.

    ``df`` holds the source values as strings under the spec's column names (plus any other columns,
    passed through), ``_line`` and optionally ``_file``, ``_pre_reason``/``_pre_detail`` (a fault found
    while reading, which wins). ``source_columns`` are copied into the quarantine as the original cells;
    ``dedup_on`` identifies exact duplicate rows (counted, not quarantined); ``parents`` maps an entity
    to its valid keys for the orphan check; ``absent`` maps a missing source column to a message;
    ``scoped_refs`` maps a reference column to a column holding the value to look up instead (e.g. an
    event's patient and encounter together, when the parent's keys are such pairs); ``rejected`` maps
    an entity to its quarantined keys (a child's reason names the row and its reason; a reference in
    ``visit_refs`` to a quarantined row is emptied and the row kept when ``orphan_events`` is keep);
    ``key_expr`` is what children look up of this entity's rows (default: the key column);
    ``duplicate_rows`` (``_file``, ``_line``): rows whose key an earlier row of the whole site has, decided
    beforehand over the whole file (person buckets): ``raw.duplicate_key`` when their row checks pass.
    Reason codes, first failing check wins: the read fault, ``raw.missing_required``,
    ``raw.invalid_date``, ``raw.invalid_value``, ``raw.duplicate_key``, ``raw.orphan``.
    """
    absent = absent or {}
    rows_in = df.height
    if PRE_REASON not in df.columns:
        df = df.with_columns(pl.lit(None, pl.String).alias(PRE_REASON), pl.lit(None, pl.String).alias(PRE_DETAIL))
    df = df.with_row_index(ROW)
    original = df
    if dedup_on and df.height:
        first = df.select(
            (pl.struct(dedup_on).is_first_distinct() | pl.col(PRE_REASON).is_not_null()).alias("f")
        ).to_series()
        deduplicated = int((~first).sum())
        if deduplicated:
            df = df.filter(first)
    else:
        deduplicated = 0

    checks, typed = _row_checks(spec, absent)
    if duplicate_rows is not None and spec.key is not None and FILE in df.columns:
        marks = duplicate_rows.select(pl.col(FILE).cast(pl.String), pl.col(LINE).cast(pl.Int64)).unique()
        df = df.join(marks.with_columns(pl.lit(True).alias(_MARKED)), on=[FILE, LINE], how="left", maintain_order="left")
        checks.append((pl.col(_MARKED).fill_null(False), "raw.duplicate_key", pl.lit(f"{spec.key} repeats an earlier row")))
    df = df.with_columns([e.alias(f"{_TYPED}{c}") for c, e in typed.items()])
    reason, detail = first_failing(df, checks)
    df = df.with_columns(reason.alias(_REASON), detail.alias(_DETAIL)).with_columns(
        pl.when(pl.col(PRE_REASON).is_not_null()).then(pl.col(PRE_REASON)).otherwise(pl.col(_REASON)).alias(_REASON))

    if spec.key is not None:
        ok = pl.col(_REASON).is_null()
        dup = ok & pl.col(spec.key).is_duplicated().over(ok) & (pl.col(ROW) != pl.col(ROW).min().over(spec.key, ok))
        df = df.with_columns(
            pl.when(dup).then(pl.lit("raw.duplicate_key")).otherwise(pl.col(_REASON)).alias(_REASON),
            pl.when(dup).then(pl.lit(f"{spec.key} repeats an earlier row")).otherwise(pl.col(_DETAIL)).alias(_DETAIL),
        )
    scoped_refs = scoped_refs or {}

    def message(col: str, parent: str) -> pl.Expr:
        scoped = col in scoped_refs and scoped_refs[col] in df.columns
        what = f"{col} names no {parent[:-1] if parent.endswith('s') else parent} of this row's patient: " if scoped \
            else f"{col} names no valid {parent}: "
        return pl.lit(what) + pl.col(col)

    df = orphan_checks(df, spec.refs, parents, rejected or {}, reason=_REASON, detail=_DETAIL, message=message,
                       looked_up=scoped_refs, visit_refs=visit_refs, orphan_events=orphan_events)
    cascaded = int(df.filter(pl.col(_REASON).is_not_null())["_cascade"].sum())
    bad = df.filter(pl.col(_REASON).is_not_null()).select(ROW, _REASON, _DETAIL)
    good = df.filter(pl.col(_REASON).is_null())
    internal = (ROW, _REASON, _DETAIL, PRE_REASON, PRE_DETAIL, RAW, "_cascade", _MARKED)
    keep = [c for c in good.columns if c not in internal and not c.startswith(_TYPED)]
    table = good.with_columns([pl.col(f"{_TYPED}{c}").alias(c) for c in typed]).select(keep)
    table, unlinked = unlink(table, visit_refs)
    src_file = pl.col(FILE) if FILE in original.columns else pl.lit(file, pl.String)
    quarantine = (
        original.join(bad, on=ROW, how="inner")
        .select(
            pl.col(_REASON).alias("reason_code"), pl.col(_DETAIL).alias("reason_detail"),
            src_file.alias("source_file"), pl.col(LINE).alias("source_line"),
            *[pl.col(c) for c in source_columns if c in original.columns],
        )
    )
    rejected_here = None
    if spec.key is not None:
        q = original.join(bad, on=ROW, how="inner").select(
            pl.col(_REASON).alias("reason_code"), src_file.alias("source_file"), pl.col(LINE).alias("source_line"),
            (key_expr if key_expr is not None else pl.col(spec.key)).alias("_k"), pl.col(spec.key).alias("_shown"))
        valid = table.select(key_expr if key_expr is not None else pl.col(spec.key)).to_series()
        rejected_here = rejected_keys(q, pl.col("_k"), pl.col("_shown"), valid)
    return EntityResult(spec.name, rows_in, table, quarantine, deduplicated, file, unlinked, cascaded, rejected_here)


def empty_result(name: str, columns: list[str], file: str | None) -> EntityResult:
    """An entity with no rows (its file is absent): string columns plus ``_line``."""
    schema: dict[str, pl.DataType] = {LINE: pl.Int64(), **{c: pl.String() for c in columns}}
    quarantine = pl.DataFrame(schema={"reason_code": pl.String, "reason_detail": pl.String,
                                      "source_file": pl.String, "source_line": pl.Int64})
    return EntityResult(name, 0, pl.DataFrame(schema=schema), quarantine, 0, file)
