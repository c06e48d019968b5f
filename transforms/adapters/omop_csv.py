"""omop-csv adapter: an existing OMOP CDM v5.4 as CSV or Parquet files, one per table.

File names are the table names in any case (``PERSON.csv``, ``person.parquet``). Cells are typed
against the specification (``schemas/omop.py``); a row whose cell cannot be typed, lacks a required
field, repeats a primary key or names an unknown person is quarantined with a reason. Tables the
folder lacks are listed as missing (DQD reports them); vocabulary tables are ignored (the config's
vocabulary is used). The typed tables pass straight to validation and anonymisation.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from schemas import omop as cdm
from transforms.ingest import LINE, EntityResult, ExtractError, IngestResult, read_text_csv, rejected_keys

CLINICAL_TABLES = tuple(t for t in cdm.tables() if t not in cdm.VOCABULARY_TABLES)


def find_table(names: list[str], table: str) -> str | None:
    """The file name (of ``names``, sorted) that holds ``table``: its name in any case, .csv or .parquet."""
    for n in sorted(names):
        p = Path(n)
        if p.stem.lower() == table and p.suffix.lower() in (".csv", ".parquet"):
            return n
    return None


def _find(folder: Path, table: str) -> Path | None:
    name = find_table([p.name for p in folder.iterdir() if p.is_file()], table)
    return folder / name if name is not None else None


def _text_frame(path: Path, encoding: str, delimiter: str) -> pl.DataFrame:
    if path.suffix.lower() == ".parquet":
        df = pl.read_parquet(path)
        df = df.with_columns([pl.col(c).cast(pl.String) for c in df.columns])
        return df.rename({c: c.lower() for c in df.columns}).with_row_index(LINE, offset=1).with_columns(
            pl.col(LINE).cast(pl.Int64))
    df = read_text_csv(path, encoding, delimiter)
    return df.rename({c: c.lower().strip().strip('"') for c in df.columns if c != LINE})


def _typed(table: str, text: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(typed rows, rows with reason) against the spec."""
    spec = cdm.table(table)
    exprs, checks = [], []
    for f in spec.fields:
        raw = pl.col(f.name).str.strip_chars() if f.name in text.columns else pl.lit(None, pl.String)
        raw = pl.when(raw == "").then(None).otherwise(raw)
        t = f.polars_type
        if isinstance(t, pl.Datetime):
            typed = pl.coalesce(raw.str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S", strict=False),
                                raw.str.strptime(pl.Datetime("us"), "%Y-%m-%dT%H:%M:%S", strict=False),
                                raw.str.strptime(pl.Date, "%Y-%m-%d", strict=False).cast(pl.Datetime("us")))
        elif isinstance(t, pl.Date):
            typed = pl.coalesce(raw.str.strptime(pl.Date, "%Y-%m-%d", strict=False),
                                raw.str.strptime(pl.Date, "%Y%m%d", strict=False),
                                raw.str.slice(0, 10).str.strptime(pl.Date, "%Y-%m-%d", strict=False))
        elif t == pl.String():
            typed = raw
        else:
            typed = raw.cast(pl.Float64, strict=False).cast(t, strict=False) if t != pl.Float64() else raw.cast(pl.Float64, strict=False)
        exprs.append(typed.alias(f.name))
        checks.append((raw.is_not_null() & typed.is_null(), "raw.invalid_value", f"{f.name} is not a valid {f.datatype}"))
        if f.required:
            checks.append((typed.is_null(), "raw.missing_required", f"{f.name} is empty"))
    reason: pl.Expr = pl.lit(None, pl.String)
    detail: pl.Expr = pl.lit(None, pl.String)
    for cond, code, msg in reversed(checks):
        reason = pl.when(cond).then(pl.lit(code)).otherwise(reason)
        detail = pl.when(cond).then(pl.lit(msg)).otherwise(detail)
    out = text.select(LINE, *exprs, _reason=reason, _detail=detail)
    pk = spec.primary_key
    if pk:
        ok = pl.col("_reason").is_null()
        dup = ok & pl.col(pk).is_duplicated().over(ok) & (pl.col(LINE) != pl.col(LINE).min().over(pk, ok))
        out = out.with_columns(_reason=pl.when(dup).then(pl.lit("raw.duplicate_key")).otherwise(pl.col("_reason")),
                               _detail=pl.when(dup).then(pl.lit(f"{pk} repeats an earlier row")).otherwise(pl.col("_detail")))
    return out.filter(pl.col("_reason").is_null()).drop("_reason", "_detail"), out.filter(pl.col("_reason").is_not_null())


def read_omop(site: str, folder: Path, encoding: str = "utf-8", delimiter: str = ",") -> IngestResult:
    if not folder.is_dir():
        raise ExtractError(f"OMOP folder {folder} does not exist: fix the source's path")
    if _find(folder, "person") is None:
        raise ExtractError(f"{folder} has no PERSON table (person.csv or person.parquet): is it an OMOP CDM export?")
    result = IngestResult(site)
    persons: pl.Series | None = None
    rejected_persons: pl.DataFrame | None = None
    for table in CLINICAL_TABLES:
        path = _find(folder, table)
        if path is None:
            result.missing_files.append(table)
            continue
        text = _text_frame(path, encoding, delimiter)
        deduplicated = text.height - text.unique(subset=[c for c in text.columns if c != LINE]).height
        text = text.filter(pl.struct([c for c in text.columns if c != LINE]).is_first_distinct())
        good, bad = _typed(table, text)
        cascaded = 0
        if persons is not None and "person_id" in good.columns and table != "person":
            orphan = ~good["person_id"].is_in(persons.implode())
            orphans = good.filter(orphan).with_columns(_pk=pl.col("person_id").cast(pl.String))
            if rejected_persons is not None and rejected_persons.height:  # the person row was quarantined: say which
                orphans = orphans.join(rejected_persons.rename({"_parent_key": "_pk"}), on="_pk", how="left",
                                       maintain_order="left")
                cascaded = int(orphans["_parent_detail"].is_not_null().sum())
            else:
                orphans = orphans.with_columns(_parent_detail=pl.lit(None, pl.String))
            bad = pl.concat([bad, orphans.with_columns(
                _reason=pl.lit("raw.orphan"),
                _detail=pl.coalesce(pl.lit("person_id ") + pl.col("_parent_detail"), pl.lit("person_id names no person"))
            ).drop("_pk", "_parent_detail")],
                how="diagonal_relaxed")
            good = good.filter(~orphan)
        quarantine = (
            text.join(bad.select(LINE, "_reason", "_detail"), on=LINE, how="inner")
            .rename({"_reason": "reason_code", "_detail": "reason_detail", LINE: "source_line"})
            .with_columns(source_file=pl.lit(path.name)).sort("source_line")
        )
        if table == "person":
            persons = good["person_id"]
            if "person_id" in quarantine.columns:
                key = pl.col("person_id").str.strip_chars()
                rejected_persons = rejected_keys(quarantine, key, key, persons.cast(pl.String))
        result.entities[table] = EntityResult(table, text.height + deduplicated, good.sort(LINE), quarantine,
                                              deduplicated, path.name, cascaded=cascaded)
    return result
