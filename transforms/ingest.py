"""Ingest adapter for the hospital-csv extract contract (``schemas/extract.py``).

Each entity file is read as text in the source's encoding and delimiter, normalised (trimmed cells,
empty as missing, codes upper-case), typed, and checked. Every input row ends in exactly one place:
the typed table (``out``), the quarantine (with a reason code), or counted as ``deduplicated``.

Reason codes (first failing check wins, in this order):
``raw.missing_required``, ``raw.invalid_date``, ``raw.future_date``, ``raw.invalid_value``,
``raw.inconsistent_dates``, ``raw.duplicate_key``, ``raw.orphan``.

Orphans: a row naming a parent row that was itself quarantined says so in its ``reason_detail``
(``stay_id S1 (stays.csv line 45) was quarantined: raw.invalid_date``) and is counted as ``cascaded``
besides ``quarantined``. An event whose stay was quarantined but whose patient is valid is kept
with its stay link emptied (``orphan_events: keep``, the default), counted as ``unlinked`` besides
``out``; ``orphan_events: quarantine`` quarantines it as ``raw.orphan``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl
from polars._typing import PolarsTemporalType

from schemas.extract import ENTITIES, REQUIRED_FILES, Column, Entity
from schemas.mapping import HospitalMapping
from transforms.parsing import first_parsed

LINE = "_line"
FILE = "_file"
REASON = "_reason"
DETAIL = "_detail"

DATE_FORMATS = ("%Y-%m-%d",)
DATETIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M")
VALUE_SETS: dict[tuple[str, str], tuple[str, ...]] = {
    ("patients", "sex"): ("M", "F", "U"),
    ("stays", "stay_type"): ("INPATIENT", "OUTPATIENT", "EMERGENCY"),
}


OrphanEvents = Literal["keep", "quarantine"]
"""What becomes of an event whose visit (stay, encounter) was quarantined while its person is valid."""
PARENT_KEY = "_parent_key"
PARENT_DETAIL = "_parent_detail"
_UNLINK = "_unlink_"
_CASCADE = "_cascade"
_MISSING = "_missing_parent"


class ExtractError(Exception):
    """A whole extract file is unusable; the message says which file and what to do."""


@dataclass
class EntityResult:
    entity: str
    rows_in: int
    table: pl.DataFrame
    quarantine: pl.DataFrame
    deduplicated: int
    file: str | None
    unlinked: int = 0  # rows kept (in ``table``) with their visit link emptied: the visit was quarantined
    cascaded: int = 0  # quarantined rows whose parent row was quarantined (a sub-count of the quarantine)
    rejected_keys: pl.DataFrame | None = None  # quarantined rows' keys (not also valid) -> why: for children

    @property
    def quarantined(self) -> int:
        return self.quarantine.height


@dataclass
class IngestResult:
    site: str
    entities: dict[str, EntityResult] = field(default_factory=dict)
    missing_files: list[str] = field(default_factory=list)

    def accounting(self) -> pl.DataFrame:
        rows: list[dict[str, object]] = []
        for name, r in self.entities.items():
            rows.append(dict(category="in", reason_code=None, rows=r.rows_in, table=name))
            rows.append(dict(category="out", reason_code=None, rows=r.table.height, table=name))
            if r.unlinked:  # a sub-count of out
                rows.append(dict(category="unlinked", reason_code=None, rows=r.unlinked, table=name))
            if r.deduplicated:
                rows.append(dict(category="deduplicated", reason_code="raw.duplicate", rows=r.deduplicated, table=name))
            if r.cascaded:  # a sub-count of quarantined (raw.orphan): the parent row was quarantined
                rows.append(dict(category="cascaded", reason_code="raw.orphan", rows=r.cascaded, table=name))
            if r.quarantine.height:
                counts = r.quarantine.group_by("reason_code").len().sort("reason_code")
                for code, n in counts.iter_rows():
                    rows.append(dict(category="quarantined", reason_code=code, rows=n, table=name))
        return accounting_frame("raw", self.site, rows)


def accounting_frame(stage: str, site: str, rows: list[dict[str, object]]) -> pl.DataFrame:
    schema = {"stage": pl.String, "site": pl.String, "table": pl.String, "category": pl.String,
              "reason_code": pl.String, "rows": pl.Int64}
    if not rows:
        return pl.DataFrame(schema=schema)
    df = pl.DataFrame(rows, schema_overrides={"rows": pl.Int64, "reason_code": pl.String})
    return df.with_columns(stage=pl.lit(stage), site=pl.lit(site)).select(list(schema)).cast(schema)  # type: ignore[arg-type]


def merge_accounting(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """Accounting frames of several buckets -> their sums (same stage, site, table, category, reason)."""
    acc = pl.concat(parts)
    keys = ["stage", "site", "table", "category", "reason_code"]
    return acc.group_by(keys, maintain_order=True).agg(pl.col("rows").sum()).select(acc.columns)


SUB_COUNTS = ("unlinked", "cascaded", "generalised")
"""Accounting categories that count rows already counted in another category (not part of ``in``'s sum)."""


def rejected_keys(quarantined: pl.DataFrame, key: pl.Expr, shown: pl.Expr, valid: pl.Series) -> pl.DataFrame:
    """The keys of quarantined rows that no valid row has, each with why (its first line):
    ``PARENT_KEY``, ``PARENT_DETAIL`` ("S1 (stays.csv line 45) was quarantined: raw.invalid_date"; a child
    row's detail puts its reference column before it: "stay_id S1 (stays.csv ...").

    ``quarantined`` has ``source_file``, ``source_line``, ``reason_code`` and the columns ``key`` and ``shown``
    read; ``key`` is what children look up, ``shown`` the key as the detail writes it."""
    empty = pl.DataFrame(schema={PARENT_KEY: pl.String, PARENT_DETAIL: pl.String})
    if not quarantined.height:
        return empty
    return (
        quarantined.select(
            key.cast(pl.String).str.strip_chars().alias(PARENT_KEY),
            (shown.cast(pl.String).str.strip_chars() + pl.lit(" (")
             + pl.col("source_file").cast(pl.String) + pl.lit(" line ") + pl.col("source_line").cast(pl.String)
             + pl.lit(") was quarantined: ") + pl.col("reason_code")).alias(PARENT_DETAIL),
            pl.col("source_line"),
        )
        .filter(pl.col(PARENT_KEY).is_not_null() & (pl.col(PARENT_KEY) != "") & ~pl.col(PARENT_KEY).is_in(valid.implode()))
        .sort("source_line").unique(PARENT_KEY, keep="first", maintain_order=True)
        .select(PARENT_KEY, PARENT_DETAIL)
    )


def orphan_checks(
    df: pl.DataFrame,
    refs: Mapping[str, str],
    parents: Mapping[str, pl.Series],
    rejected: Mapping[str, pl.DataFrame],
    *,
    reason: str,
    detail: str,
    message: Callable[[str, str], pl.Expr],
    looked_up: Mapping[str, str] | None = None,
    visit_refs: Collection[str] = (),
    orphan_events: OrphanEvents = "keep",
) -> pl.DataFrame:
    """The orphan check of every reference column of ``df`` (rows whose ``reason`` is still null).

    A reference to a row that was quarantined (``rejected[parent]``) names that row and its reason and
    is flagged ``_cascade``; a reference column in ``visit_refs`` whose row was quarantined, with
    ``orphan_events`` keep, leaves the row valid and flags ``_unlink_<col>`` (the caller empties the
    link of the rows it keeps). Other references to unknown keys get ``message(col, parent)``."""
    looked_up = looked_up or {}
    df = df.with_columns(pl.lit(False).alias(_CASCADE))
    for col, parent in refs.items():
        keys = parents.get(parent)
        if keys is None:
            continue
        value = pl.col(looked_up[col]) if col in looked_up and looked_up[col] in df.columns else pl.col(col)
        missing = pl.col(reason).is_null() & pl.col(col).is_not_null() & ~value.is_in(keys.implode())
        rej = rejected.get(parent)
        if rej is not None and rej.height:
            df = df.with_columns(value.cast(pl.String).str.strip_chars().alias(PARENT_KEY)).join(
                rej, on=PARENT_KEY, how="left", maintain_order="left")
        else:
            df = df.with_columns(pl.lit(None, pl.String).alias(PARENT_KEY), pl.lit(None, pl.String).alias(PARENT_DETAIL))
        df = df.with_columns(missing.alias(_MISSING))  # the key lookup once, read by every expression below
        missing = pl.col(_MISSING)
        cascade = missing & pl.col(PARENT_DETAIL).is_not_null()
        unlink = cascade & pl.lit(col in visit_refs and orphan_events == "keep")
        orphan = missing & ~unlink
        df = df.with_columns(
            pl.when(orphan).then(pl.lit("raw.orphan")).otherwise(pl.col(reason)).alias(reason),
            pl.when(orphan & cascade).then(pl.lit(f"{col} ") + pl.col(PARENT_DETAIL))
            .when(orphan).then(message(col, parent)).otherwise(pl.col(detail)).alias(detail),
            (pl.col(_CASCADE) | (orphan & cascade)).alias(_CASCADE),
            unlink.alias(f"{_UNLINK}{col}"),
        ).drop(PARENT_KEY, PARENT_DETAIL, _MISSING)
    return df


def unlink(table: pl.DataFrame, columns: Collection[str]) -> tuple[pl.DataFrame, int]:
    """Empty the flagged visit links of the kept rows; drop the flags. -> (table, rows unlinked)."""
    flags = [f"{_UNLINK}{c}" for c in columns if f"{_UNLINK}{c}" in table.columns]
    if not flags:
        return table, 0
    n = int(table.select(pl.any_horizontal(flags).sum()).item())
    return table.with_columns(
        [pl.when(pl.col(f)).then(None).otherwise(pl.col(f[len(_UNLINK):])).alias(f[len(_UNLINK):]) for f in flags]
    ).drop(flags), n


def read_text_csv(path: Path, encoding: str, delimiter: str) -> pl.DataFrame:
    """Every cell as a string, plus the 1-based source line (header is line 1)."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ExtractError(f"cannot read {path}: {e.strerror}") from None
    if encoding.lower().replace("-", "").replace("_", "") not in ("utf8", "utf8sig"):
        try:
            raw = raw.decode(encoding).encode("utf-8")
        except UnicodeDecodeError as e:
            raise ExtractError(f"{path} is not valid {encoding} (byte {e.start}): set the source's 'encoding'") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        df = pl.read_csv(raw, separator=delimiter, infer_schema=False, encoding="utf8", quote_char='"')
    except pl.exceptions.ComputeError as e:
        first = str(e).strip().splitlines()[0][:160]
        raise ExtractError(
            f"{path} is not a readable CSV ({first}); check the source's 'encoding' and 'delimiter'"
        ) from None
    except pl.exceptions.NoDataError:
        raise ExtractError(f"{path} is empty: expected a header row and data") from None
    return df.with_row_index(LINE, offset=2).with_columns(pl.col(LINE).cast(pl.Int64))


def _parse_temporal(col: Column, mapping: HospitalMapping) -> pl.Expr:
    """The first of the mapping's and the default formats that parses each value (each format tried only
    on the values the ones before it left null)."""
    s = pl.col(col.name)
    if col.type == "date":
        return first_parsed(s, [_strptime(pl.Date, f) for f in (*mapping.date_formats, *DATE_FORMATS)], pl.Date)
    parsers = [_strptime(pl.Datetime("us"), f) for f in (*mapping.datetime_formats, *DATETIME_FORMATS)]
    parsers += [_strptime(pl.Date, f) for f in (*mapping.date_formats, "%Y-%m-%d")]
    return first_parsed(s, parsers, pl.Datetime("us"))


def _strptime(dtype: PolarsTemporalType, fmt: str) -> Callable[[pl.Expr], pl.Expr]:
    return lambda e: e.str.strptime(dtype, fmt, strict=False, exact=True)


def _normalise(entity: Entity, df: pl.DataFrame, mapping: HospitalMapping) -> pl.DataFrame:
    exprs = []
    values = mapping.values.get(entity.name, {})
    for c in entity.columns:
        e = pl.col(c.name).str.strip_chars()
        e = pl.when(e == "").then(None).otherwise(e)
        if c.name in values:
            e = e.replace(values[c.name])
        if c.code:
            e = e.str.to_uppercase()
        if c.default is not None:
            e = e.fill_null(pl.lit(c.default))
        exprs.append(e.alias(c.name))
    return df.with_columns(exprs)


RowChecks = Callable[[Entity, pl.DataFrame], pl.DataFrame]
"""Extra row-level checks on the typed rows (e.g. the great-expectations contract): returns the
failing ``_line`` values with ``reason_code`` and ``reason_detail``; those rows are quarantined."""


def _prepared(entity: Entity, df: pl.DataFrame, file: str, mapping: HospitalMapping) -> pl.DataFrame:
    """The source frame under the contract's column names (absent optional columns added as null)."""
    renames = {s: d for s, d in mapping.source_to_contract(entity.name).items() if s in df.columns}
    df = df.rename(renames)
    missing_cols = [c for c in entity.column_names if c not in df.columns]
    required_missing = [c for c in missing_cols if entity.column(c).required]
    if required_missing:
        raise ExtractError(
            f"{file} lacks the required column(s) {', '.join(required_missing)}; the contract is in docs/hospital-csv.md (or name the source's column in its mapping file)"
        )
    return df.with_columns([pl.lit(None, pl.String).alias(c) for c in missing_cols])


TYPED = "_typed_"  # prefix of the typed value columns the row checks add (their ``typed`` expressions read them)
_FIRST = "_first_check"


def first_failing(df: pl.DataFrame, checks: Sequence[tuple[pl.Expr, str, pl.Expr]]) -> tuple[pl.Series, pl.Series]:
    """(reason code, detail) of each row of ``df``: those of the first check whose condition holds (a null
    condition does not), null when none does. Each condition is evaluated once; the detail expressions
    only on the failing rows."""
    reason = pl.Series(REASON, [], pl.String).extend_constant(None, df.height)
    detail = pl.Series(DETAIL, [], pl.String).extend_constant(None, df.height)
    if not checks:
        return reason, detail
    first = df.select(pl.coalesce([pl.when(cond.fill_null(False)).then(pl.lit(i, pl.Int32))
                                   for i, (cond, _, _) in enumerate(checks)]).alias(_FIRST)).to_series()
    failing = first.is_not_null()
    if failing.any():
        rows = failing.arg_true()
        message: pl.Expr = pl.lit(None, pl.String)
        for i, (_, _, msg) in reversed(list(enumerate(checks))):
            message = pl.when(pl.col(_FIRST) == i).then(msg).otherwise(message)
        bad = df.filter(failing).with_columns(first.filter(failing).alias(_FIRST)).select(
            pl.col(_FIRST), message.alias(DETAIL))
        codes = pl.Series(REASON, [code for _, code, _ in checks], pl.String)
        reason = reason.scatter(rows, codes.gather(bad[_FIRST]))
        detail = detail.scatter(rows, bad[DETAIL])
    return reason, detail


def _row_checked(entity: Entity, df: pl.DataFrame, today: dt.date,
                 mapping: HospitalMapping) -> tuple[pl.DataFrame, dict[str, pl.Expr]]:
    """The row-local checks (each row on its own: required, dates, values) of normalised rows:
    ``df`` with ``_reason``/``_detail`` (null: the row passed; the first failing check names it), and the
    typed expression of each column.

    Each column is typed once (into a ``_typed_`` column that the returned expressions read), each
    condition evaluated once, and the messages built only for the rows that fail."""
    parse: dict[str, pl.Expr] = {}
    for c in entity.columns:
        if c.type in ("date", "datetime"):
            parse[c.name] = _parse_temporal(c, mapping)
        elif c.type in ("int", "float"):
            parse[c.name] = pl.col(c.name).str.replace(",", ".").cast(
                pl.Float64 if c.type == "float" else pl.Int64, strict=False)
    typed = {name: pl.col(TYPED + name) for name in parse}
    checks: list[tuple[pl.Expr, str, pl.Expr]] = []
    for c in entity.columns:
        if c.required:
            checks.append((pl.col(c.name).is_null(), "raw.missing_required", pl.lit(f"{c.name} is empty")))
    now = dt.datetime.combine(today, dt.time.max)
    for c in entity.columns:
        if c.type in ("date", "datetime"):
            checks.append((pl.col(c.name).is_not_null() & typed[c.name].is_null(), "raw.invalid_date",
                           pl.lit(f"{c.name} is not a valid date: ") + pl.col(c.name)))
    for c in entity.columns:
        if c.type in ("date", "datetime"):
            limit = pl.lit(today) if c.type == "date" else pl.lit(now)
            checks.append((typed[c.name] > limit, "raw.future_date", pl.lit(f"{c.name} is in the future: ") + pl.col(c.name)))
    for c in entity.columns:
        if c.type in ("int", "float"):
            checks.append((pl.col(c.name).is_not_null() & typed[c.name].is_null(), "raw.invalid_value",
                           pl.lit(f"{c.name} is not a number: ") + pl.col(c.name)))
        allowed = VALUE_SETS.get((entity.name, c.name))
        if allowed:
            checks.append((pl.col(c.name).is_not_null() & ~pl.col(c.name).is_in(list(allowed)), "raw.invalid_value",
                           pl.lit(f"{c.name} must be one of {'/'.join(allowed)}: ") + pl.col(c.name)))
    if entity.name == "stays":
        checks.append((typed["discharge"] < typed["admission"], "raw.inconsistent_dates",
                       pl.lit("discharge before admission")))
    if entity.name == "medications":
        checks.append((typed["end_date"] < typed["start_date"], "raw.inconsistent_dates",
                       pl.lit("end_date before start_date")))
    if entity.name == "patients":
        checks.append((typed["birth_date"] < pl.lit(dt.date(1900, 1, 1)), "raw.invalid_date",
                       pl.lit("birth_date before 1900")))
        checks.append((typed["death_date"] < typed["birth_date"], "raw.inconsistent_dates",
                       pl.lit("death_date before birth_date")))
    df = df.with_columns([e.alias(TYPED + name) for name, e in parse.items()])
    reason, detail = first_failing(df, checks)
    return df.with_columns(reason.alias(REASON), detail.alias(DETAIL)), typed


def key_candidates(entity: Entity, df: pl.DataFrame, file: str, today: dt.date,
                   mapping: HospitalMapping | None = None) -> pl.DataFrame:
    """``key`` (normalised) and ``_line`` of the rows that pass the row-local checks: the rows among which
    ``validate_entity`` decides duplicate keys (the first line wins). For a file read in person buckets,
    the whole file's candidates decide which lines repeat a key of another bucket (``duplicate_lines``)."""
    mapping = mapping or HospitalMapping()
    df = _normalise(entity, _prepared(entity, df, file, mapping), mapping)
    checked, _ = _row_checked(entity, df, today, mapping)
    return checked.filter(pl.col(REASON).is_null()).select(pl.col(entity.key).alias("key"), LINE)


def validate_entity(
    entity: Entity,
    df: pl.DataFrame,
    file: str,
    today: dt.date,
    parents: dict[str, pl.Series],
    row_checks: RowChecks | None = None,
    mapping: HospitalMapping | None = None,
    rejected: Mapping[str, pl.DataFrame] | None = None,
    orphan_events: OrphanEvents = "keep",
    duplicate_lines: pl.Series | None = None,
) -> EntityResult:
    """Type and check one entity; ``parents`` maps a referenced entity to its valid keys, ``rejected``
    to its quarantined keys (``rejected_keys``: the reason of a cascade, and stays whose events are kept).
    ``duplicate_lines``: lines known (from the whole file) to repeat the key of an earlier valid row,
    when ``df`` is one person bucket of the file; they are quarantined as ``raw.duplicate_key``."""
    mapping = mapping or HospitalMapping()
    rows_in = df.height
    df = _prepared(entity, df, file, mapping)
    original = df
    data_cols = [c for c in df.columns if c != LINE]
    dup_mask = df.select(pl.struct(data_cols).is_first_distinct()).to_series()
    deduplicated = int((~dup_mask).sum())
    df = _normalise(entity, df.filter(dup_mask), mapping)
    df, typed = _row_checked(entity, df, today, mapping)
    if duplicate_lines is not None and duplicate_lines.len():
        df = df.with_columns(
            pl.when(pl.col(REASON).is_null() & pl.col(LINE).is_in(duplicate_lines.implode()))
            .then(pl.lit("raw.duplicate_key")).otherwise(pl.col(REASON)).alias(REASON))
    # duplicate primary keys among otherwise valid rows: the first wins
    ok = pl.col(REASON).is_null()
    df = df.with_columns(
        pl.when(ok & pl.col(entity.key).is_duplicated().over(ok))
        .then(pl.when(pl.col(LINE) == pl.col(LINE).min().over(entity.key, ok)).then(None).otherwise(pl.lit("raw.duplicate_key")))
        .otherwise(pl.col(REASON)).alias(REASON)
    ).with_columns(
        pl.when((pl.col(REASON) == "raw.duplicate_key") & pl.col(DETAIL).is_null())
        .then(pl.lit(f"{entity.key} repeats an earlier row")).otherwise(pl.col(DETAIL)).alias(DETAIL)
    )
    visit_refs = [c for c, p in entity.references.items() if p == "stays"]
    df = orphan_checks(df, entity.references, parents, rejected or {}, reason=REASON, detail=DETAIL,
                       message=lambda col, parent: pl.lit(f"{col} names no valid {parent} row: ") + pl.col(col),
                       visit_refs=visit_refs, orphan_events=orphan_events)
    if row_checks is not None:
        typed_ok = df.filter(pl.col(REASON).is_null()).with_columns([typed[c].alias(c) for c in typed]).select(
            [LINE, *entity.column_names])
        extra = row_checks(entity, typed_ok).select(LINE, pl.col("reason_code").alias("_xr"), pl.col("reason_detail").alias("_xd"))
        df = df.join(extra, on=LINE, how="left", maintain_order="left").with_columns(
            pl.coalesce(REASON, "_xr").alias(REASON), pl.coalesce(DETAIL, "_xd").alias(DETAIL)).drop("_xr", "_xd")
    bad = df.filter(pl.col(REASON).is_not_null())
    cascaded = int(bad[_CASCADE].sum())
    good = df.filter(pl.col(REASON).is_null())
    flags = [c for c in good.columns if c.startswith(_UNLINK)]
    good = good.with_columns([typed[c].alias(c) for c in typed]).select([LINE, *entity.column_names, *flags])
    good, unlinked = unlink(good, visit_refs)
    quarantine = (
        original.join(bad.select(LINE, REASON, DETAIL), on=LINE, how="inner")
        .rename({REASON: "reason_code", DETAIL: "reason_detail", LINE: "source_line"})
        .with_columns(source_file=pl.lit(file))
        .sort("source_line")
    )
    key = pl.col(entity.key)
    rejected_here = rejected_keys(quarantine, key, key, good[entity.key])
    return EntityResult(entity.name, rows_in, good.sort(LINE), quarantine, deduplicated, file, unlinked, cascaded,
                        rejected_here)


def absent_but_present(path: Path, entity: str) -> str:
    return (f"{path} is there, but the source declares {entity} absent: remove {entity!r} from the source's "
            f"'absent' in the config to read it, or move the file away")


def ingest_site(
    site: str,
    folder: Path,
    encoding: str = "utf-8",
    delimiter: str = ",",
    today: dt.date | None = None,
    entities: tuple[Entity, ...] = ENTITIES,
    row_checks: RowChecks | None = None,
    mapping: HospitalMapping | None = None,
    orphan_events: OrphanEvents = "keep",
    absent: Collection[str] = (),
) -> IngestResult:
    """Read and validate every entity file of one site's landing folder. ``absent``: optional entities
    the source declares it does not hold (their tables are empty and they are not reported missing)."""
    if not folder.is_dir():
        raise ExtractError(f"landing folder {folder} does not exist: run 'ds4h generate' or copy the extract there")
    today = today or dt.date.today()
    result = IngestResult(site)
    valid_keys: dict[str, pl.Series] = {}
    rejected: dict[str, pl.DataFrame] = {}
    mapping = mapping or HospitalMapping()
    for ent in entities:
        path = folder / mapping.file(ent.name, ent.file)
        if ent.name in absent and path.exists():
            raise ExtractError(absent_but_present(path, ent.name))
        if not path.exists():
            if ent.name in REQUIRED_FILES:
                raise ExtractError(f"{path} is missing: the hospital-csv contract requires {ent.file}")
            if ent.name not in absent:  # declared absent: empty, not reported missing
                result.missing_files.append(path.name)
            df = pl.DataFrame(schema={c: pl.String for c in ent.column_names}).with_row_index(LINE, offset=2)
            df = df.with_columns(pl.col(LINE).cast(pl.Int64))
        else:
            df = read_text_csv(path, encoding, delimiter)
        r = validate_entity(ent, df, path.name, today, valid_keys, row_checks, mapping, rejected, orphan_events)
        result.entities[ent.name] = r
        valid_keys[ent.name] = r.table[ent.key]
        if r.rejected_keys is not None:
            rejected[ent.name] = r.rejected_keys
    return result
