"""Athena vocabulary downloads -> typed Parquet, streamed.

An Athena download (https://athena.ohdsi.org) is a folder of TAB-delimited, unquoted CSV files named
after the OMOP vocabulary tables (``CONCEPT.csv``, ``CONCEPT_RELATIONSHIP.csv``, ...; lower-case
names are accepted too) with dates written YYYYMMDD. :func:`load_athena` converts it once into one
Parquet file per table (lower-case names), typed as the CDM v5.4 vocabulary tables, plus a
``vocabulary.json`` describing what was loaded. Each table is streamed from CSV to Parquet
(``scan_csv`` + ``sink_parquet``), so memory stays bounded however many relationship rows there are.

Sites add local codes with SOURCE_TO_CONCEPT_MAP files as Usagi exports them (comma-separated,
quoted, dates YYYY-MM-DD or YYYYMMDD); :func:`read_stcm` reads those and Athena-style TAB files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from schemas import omop

__all__ = [
    "MANIFEST",
    "OPTIONAL",
    "REQUIRED",
    "TableLoaded",
    "VocabularyError",
    "ensure_loaded",
    "find_tables",
    "is_athena_folder",
    "is_loaded_folder",
    "load_athena",
    "read_manifest",
    "read_stcm",
    "scan_athena",
    "vocabulary_schema",
]

MANIFEST = "vocabulary.json"
FORMAT = "ds4h-vocabulary/1"
REQUIRED = ("concept", "concept_relationship", "concept_ancestor", "vocabulary")
OPTIONAL = ("domain", "concept_class", "relationship", "concept_synonym", "drug_strength", "source_to_concept_map")

_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DEFAULT_START = datetime(1970, 1, 1).date()
_DEFAULT_END = datetime(2099, 12, 31).date()


class VocabularyError(Exception):
    """A vocabulary folder is missing or incomplete; the message says what to do."""


@dataclass(frozen=True)
class TableLoaded:
    """One table written by :func:`load_athena` (passed to its ``on_table`` callback)."""

    table: str
    rows: int
    seconds: float
    source: str  # file name(s) it came from, or "" when skipped
    skipped: bool = False


def vocabulary_schema(table: str) -> pl.Schema:
    """The polars schema of a CDM v5.4 vocabulary table, concept ids as Int32.

    ``schemas.omop`` stores primary keys as Int64 (row identifiers); ``concept.concept_id`` is a
    concept id like every other and stays 32-bit here, as in the OHDSI DDL.
    """
    schema = omop.table(table).polars_schema
    return pl.Schema({k: (pl.Int32() if v == pl.Int64 else v) for k, v in schema.items()})


def find_tables(folder: Path) -> dict[str, Path]:
    """Vocabulary table name (lower case) -> CSV file of an Athena folder; upper- or lower-case names."""
    found: dict[str, Path] = {}
    if not folder.is_dir():
        return found
    by_lower = {p.name.lower(): p for p in sorted(folder.iterdir()) if p.is_file()}
    for table in (*REQUIRED, *OPTIONAL):
        p = folder / f"{table.upper()}.csv"
        if p.is_file():
            found[table] = p
        elif f"{table}.csv" in by_lower:
            found[table] = by_lower[f"{table}.csv"]
    return found


def is_athena_folder(folder: Path) -> bool:
    return "concept" in find_tables(folder)


def is_loaded_folder(folder: Path) -> bool:
    return (folder / MANIFEST).is_file()


def read_manifest(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise VocabularyError(f"{folder / MANIFEST} is unreadable ({e}): run 'ds4h vocabulary load' again") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise VocabularyError(f"{folder / MANIFEST} is not a ds4h vocabulary manifest: run 'ds4h vocabulary load' again")
    return data


def _header(path: Path, separator: str) -> tuple[list[str], list[str]]:
    """The header fields of ``path`` and the fields of its first data row ([] if none)."""
    with path.open("rb") as f:
        head = f.readline().decode("utf-8-sig").rstrip("\r\n")
        first = f.readline().decode("utf-8", errors="replace").rstrip("\r\n")
    return head.split(separator), (first.split(separator) if first else [])


def _date_format(sample: str | None) -> str:
    return "%Y-%m-%d" if sample and _ISO.match(sample.strip()) else "%Y%m%d"


def scan_athena(path: Path, table: str) -> pl.LazyFrame:
    """A lazy, typed scan of one Athena TAB file: the table's columns in CDM order.

    Integers and floats are parsed by the CSV reader; dates are parsed from YYYYMMDD (or YYYY-MM-DD
    when the first row uses it). Columns the file lacks and the CDM does not require are null;
    a missing required column raises :class:`VocabularyError`.
    """
    schema = vocabulary_schema(table)
    header, first = _header(path, "\t")
    names = [h.strip().strip('"').lower() for h in header]
    required = set(omop.table(table).required)
    missing = [c for c in schema if c not in names and c in required]
    if missing:
        raise VocabularyError(f"{path}: missing column(s) {', '.join(missing)} (is it an Athena {table.upper()} file?)")
    read_schema: dict[str, pl.DataType] = {}
    for raw, name in zip(header, names, strict=True):
        t = schema.get(name)
        read_schema[raw] = t if t is not None and t.is_numeric() else pl.String()
    lf = pl.scan_csv(path, separator="\t", quote_char=None, schema=read_schema, has_header=True,
                     truncate_ragged_lines=True)
    exprs: list[pl.Expr] = []
    for name, dtype in schema.items():
        if name not in names:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
            continue
        raw = header[names.index(name)]
        col = pl.col(raw)
        if dtype == pl.Date:
            sample = first[names.index(name)] if len(first) > names.index(name) else None
            col = col.str.strip_chars().str.strptime(pl.Date, _date_format(sample), strict=True)
        exprs.append(col.alias(name))
    return lf.select(exprs)


def read_stcm(path: Path) -> pl.DataFrame:
    """A SOURCE_TO_CONCEPT_MAP file, typed: Usagi's CSV export (comma, quoted) or an Athena TAB file.

    Required columns: source_code, source_vocabulary_id, target_concept_id. Missing optional ones get
    defaults (source_concept_id 0, valid 1970-01-01 to 2099-12-31). Dates YYYY-MM-DD or YYYYMMDD.
    """
    if not path.is_file():
        raise VocabularyError(f"{path}: no such SOURCE_TO_CONCEPT_MAP file")
    schema = vocabulary_schema("source_to_concept_map")
    with path.open("rb") as f:
        head = f.readline().decode("utf-8-sig", errors="replace")
    sep = "\t" if head.count("\t") > head.count(",") else ","
    try:
        raw = pl.read_csv(path, separator=sep, infer_schema=False, quote_char=None if sep == "\t" else '"',
                          encoding="utf8")
    except pl.exceptions.PolarsError as e:
        raise VocabularyError(f"{path}: not a readable SOURCE_TO_CONCEPT_MAP CSV ({_first_line(e)})") from None
    raw = raw.rename({c: c.strip().lower() for c in raw.columns})
    missing = [c for c in ("source_code", "source_vocabulary_id", "target_concept_id") if c not in raw.columns]
    if missing:
        raise VocabularyError(
            f"{path}: missing column(s) {', '.join(missing)}; expected Usagi's header "
            f"{','.join(schema)}"
        )
    exprs: list[pl.Expr] = []
    for name, dtype in schema.items():
        col = pl.col(name).str.strip_chars() if name in raw.columns else pl.lit(None, dtype=pl.String)
        if dtype == pl.Date:
            default = _DEFAULT_START if name == "valid_start_date" else _DEFAULT_END
            expr = pl.coalesce(
                col.str.strptime(pl.Date, "%Y-%m-%d", strict=False),
                col.str.strptime(pl.Date, "%Y%m%d", strict=False),
                pl.when(col.is_null() | (col == "")).then(pl.lit(default)),
            )
        elif dtype.is_integer():
            expr = col.cast(pl.Int64, strict=False).cast(dtype, strict=False)
            if name == "source_concept_id":
                expr = expr.fill_null(0)
        else:
            expr = pl.when(col == "").then(None).otherwise(col)
        exprs.append(expr.alias(name))
    out = raw.select(exprs)
    bad = out.filter(pl.col("target_concept_id").is_null() | pl.col("source_code").is_null()
                     | pl.col("valid_start_date").is_null() | pl.col("valid_end_date").is_null())
    if bad.height:
        raise VocabularyError(
            f"{path}: {bad.height} row(s) with an empty source_code, a non-integer target_concept_id or an "
            f"unreadable date (first: source_code={bad['source_code'][0]!r}); fix or remove them"
        )
    return out


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _inputs(files: Iterable[Path], checksums: bool) -> list[dict[str, Any]]:
    out = []
    for p in files:
        st = p.stat()
        entry: dict[str, Any] = {"path": str(p.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
        if checksums:
            entry["sha256"] = _sha256(p)
        out.append(entry)
    return out


def _checksum(inputs: Sequence[dict[str, Any]]) -> str:
    h = hashlib.sha256()
    for e in inputs:
        h.update(f"{Path(e['path']).name}\t{e['bytes']}\t{e.get('sha256', '')}\n".encode())
    return "sha256:" + h.hexdigest()


def _rows(path: Path) -> int:
    return int(pl.scan_parquet(path).select(pl.len()).collect().item())


def load_athena(
    folder: Path,
    out: Path,
    stcm: Sequence[Path] = (),
    *,
    force: bool = False,
    checksums: bool = True,
    on_table: Callable[[TableLoaded], None] | None = None,
    on_start: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Convert the Athena download ``folder`` into Parquet under ``out``; return the manifest.

    Required tables: CONCEPT, CONCEPT_RELATIONSHIP, CONCEPT_ANCESTOR, VOCABULARY (all missing ones
    are named in one error). Optional tables are loaded when present and listed as skipped
    otherwise. ``stcm`` files (Usagi CSV exports) are appended to SOURCE_TO_CONCEPT_MAP. The
    output is written to a temporary sibling folder and renamed into place; an existing ``out`` is
    replaced only with ``force``.
    """
    folder = folder.resolve()
    out = out.resolve()
    if not folder.is_dir():
        raise VocabularyError(f"{folder} is not a folder: give the folder of an unzipped Athena download")
    files = find_tables(folder)
    missing = [t.upper() + ".csv" for t in REQUIRED if t not in files]
    if missing:
        raise VocabularyError(
            f"{folder} is not a complete Athena download: missing {', '.join(missing)} "
            "(download the vocabularies from athena.ohdsi.org and unzip them there)"
        )
    if out.exists() and not out.is_dir():
        raise VocabularyError(f"{out} is a file: give a folder with --out")
    if out.is_dir() and any(out.iterdir()):
        if not is_loaded_folder(out):
            raise VocabularyError(f"{out} is not empty and holds no {MANIFEST}: refusing to replace it; use --out")
        if not force:
            raise VocabularyError(f"{out} already holds a loaded vocabulary: pass --force to replace it")
    stcm_frames = [read_stcm(Path(p)) for p in stcm]  # validate before the long part

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    tables: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []
    try:
        for table in (*REQUIRED, *OPTIONAL):
            target = tmp / f"{table}.parquet"
            src = files.get(table)
            if on_start is not None:
                on_start(table)
            t0 = time.perf_counter()
            sources: list[str] = [src.name] if src else []
            if table == "source_to_concept_map" and (src is not None or stcm_frames):
                parts = [scan_athena(src, table).collect()] if src is not None else []
                parts += stcm_frames
                sources += [Path(p).name for p in stcm]
                pl.concat(parts, how="vertical").write_parquet(target)
            elif src is not None:
                try:
                    scan_athena(src, table).sink_parquet(target)
                except pl.exceptions.PolarsError as e:
                    raise VocabularyError(f"{src}: could not read it as an Athena {table.upper()} file: {_first_line(e)}") from None
            else:
                skipped.append(table)
                if on_table is not None:
                    on_table(TableLoaded(table, 0, 0.0, "", skipped=True))
                continue
            rows = _rows(target)
            seconds = time.perf_counter() - t0
            tables[table] = {"file": target.name, "rows": rows, "source": sources, "seconds": round(seconds, 2)}
            if on_table is not None:
                on_table(TableLoaded(table, rows, seconds, " + ".join(sources)))

        versions = {
            str(k): (None if v is None else str(v))
            for k, v in pl.read_parquet(tmp / "vocabulary.parquet", columns=["vocabulary_id", "vocabulary_version"])
            .sort("vocabulary_id").iter_rows()
        }
        inputs = _inputs([*files.values(), *map(Path, stcm)], checksums)
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "name": out.name,
            "source": str(folder),
            "loaded_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "tables": tables,
            "skipped": skipped,
            "stcm": [str(Path(p).resolve()) for p in stcm],
            "vocabularies": versions,
            "inputs": inputs,
            "checksum": _checksum(inputs),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _up_to_date(loaded: Path, folder: Path) -> bool:
    """``loaded`` was written from ``folder`` and its files have not changed (size and mtime)."""
    if not is_loaded_folder(loaded):
        return False
    try:
        m = read_manifest(loaded)
    except VocabularyError:
        return False
    if m.get("source") != str(folder.resolve()) or m.get("stcm"):
        return False
    now = {e["path"]: (e["bytes"], e["mtime_ns"]) for e in _inputs(find_tables(folder).values(), checksums=False)}
    then = {e["path"]: (e["bytes"], e["mtime_ns"]) for e in m.get("inputs", [])}
    return now == then


def ensure_loaded(folder: Path, home: Path) -> Path:
    """The Parquet folder for the raw Athena ``folder``: ``home/vocabulary/<name>/``, loaded on first use
    (and again when the download's files changed)."""
    folder = folder.resolve()
    out = home / "vocabulary" / folder.name
    if not _up_to_date(out, folder):
        load_athena(folder, out, force=True)
    return out
