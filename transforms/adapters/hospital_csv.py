"""hospital-csv adapter: the typed extract entities (``transforms/ingest.py``) -> staging tables; and the
extract split into person buckets (``split_hospital``), so that the raw and OMOP stages of a large site
run bucket by bucket (``pipelines/buckets.py``) with the results of the site in one piece."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from schemas.extract import BY_NAME, ENTITIES, REQUIRED_FILES, Entity
from schemas.geo import COUNTRY_CODE
from schemas.mapping import HospitalMapping
from transforms import staging
from transforms.buckets import (
    CHUNK_ROWS,
    DEFAULT_PERSONS_PER_BUCKET,
    CsvDialect,
    SplitFile,
    bucket_count,
    bucket_lookup,
    csv_column,
    csv_header,
    split_csv,
)
from transforms.ingest import (
    LINE,
    EntityResult,
    ExtractError,
    OrphanEvents,
    RowChecks,
    absent_but_present,
    key_candidates,
    validate_entity,
)


def _dt(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.Datetime("us"))


def _optional(df: pl.DataFrame, col: str) -> pl.Expr:
    """An optional text column: trimmed, empty as null; null throughout when the raw table lacks it."""
    if col not in df.columns:
        return pl.lit(None, pl.String)
    s = pl.col(col).cast(pl.String).str.strip_chars()
    return pl.when(s != "").then(s)


# diagnoses.csv's cancer-registry columns, carried to the staging events under the same names
REGISTRY_COLUMNS = ("histology", "tnm_t", "tnm_n", "tnm_m", "stage_group")

# patients: the code system of the cause of death
DEFAULT_CODE_SYSTEMS = {"patients": "ICD10", "diagnoses": "ICD10", "procedures": "SNOMED", "labs": "LOINC", "medications": "ATC"}


def hospital_to_staging(raw: dict[str, pl.DataFrame], code_systems: dict[str, str] | None = None) -> dict[str, pl.DataFrame]:
    """``raw[entity]`` are the typed, valid rows of each hospital-csv entity; ``code_systems``
    overrides the code system of an entity's codes (a site's mapping file)."""
    systems = {**DEFAULT_CODE_SYSTEMS, **(code_systems or {})}
    p = raw["patients"]
    # the country of residence (ISO alpha-2; ingest fills LU): raw tables written before it was in the contract lack it
    country = pl.col("country").fill_null(COUNTRY_CODE) if "country" in p.columns else pl.lit(COUNTRY_CODE)
    persons = p.select(
        person_key="patient_id", national_id="matricule", birth_date="birth_date", sex="sex",
        address="address", postcode="postcode", city="city", country=country, updated_at="updated_at",
        first_name="first_name", last_name="last_name", phone="phone", email="email",
        # optional since 2026-12-06: raw tables written before lack them
        death_date=pl.col("death_date") if "death_date" in p.columns else pl.lit(None, pl.Date),
        death_cause_code=pl.col("death_cause_code") if "death_cause_code" in p.columns else pl.lit(None, pl.String),
        death_cause_system=pl.lit(systems["patients"]),
    )
    s = raw["stays"]
    visits = s.select(
        visit_key="stay_id", person_key="patient_id", start="admission",
        end=pl.coalesce("discharge", "admission"), visit_class="stay_type", ward="ward",
    )
    frames = []
    d = raw.get("diagnoses")
    if d is not None and d.height:
        frames.append(d.select(
            event_key=pl.lit("dx:") + pl.col("diagnosis_id"), person_key="patient_id", visit_key="stay_id",
            kind=pl.lit("condition"), code="icd10_code", code_system=pl.lit(systems["diagnoses"]), description="description",
            start=_dt("diagnosis_date"), status="diagnosis_rank",
            # the cancer-registry columns (optional since 2026-12-06: raw tables written before lack them)
            **{c: _optional(d, c) for c in REGISTRY_COLUMNS},
        ))
    pr = raw.get("procedures")
    if pr is not None and pr.height:
        frames.append(pr.select(
            event_key=pl.lit("px:") + pl.col("procedure_id"), person_key="patient_id", visit_key="stay_id",
            kind=pl.lit("procedure"), code="procedure_code", code_system=pl.lit(systems["procedures"]), description="description",
            start="procedure_date",
        ))
    lab = raw.get("labs")
    if lab is not None and lab.height:
        frames.append(lab.select(
            event_key=pl.lit("lab:") + pl.col("lab_id"), person_key="patient_id", visit_key="stay_id",
            kind=pl.lit("measurement"), code="loinc_code", code_system=pl.lit(systems["labs"]), description="description",
            start="sampled_at", value_number="value", unit="unit",
            # a coded result (SNOMED CT, optional since 2026-12-06)
            value_code=_optional(lab, "value_code"),
            value_code_system=pl.when(_optional(lab, "value_code").is_not_null()).then(pl.lit("SNOMED")),
        ))
    m = raw.get("medications")
    if m is not None and m.height:
        frames.append(m.select(
            event_key=pl.lit("rx:") + pl.col("medication_id"), person_key="patient_id", visit_key="stay_id",
            kind=pl.lit("drug"), code="atc_code", code_system=pl.lit(systems["medications"]), description="drug_name",
            start=_dt("start_date"), end=_dt("end_date"), quantity="dose", unit="dose_unit", route="route",
        ))
    events = pl.concat([staging.conform(f, "events") for f in frames]) if frames else staging.empty("events")
    out = {
        "persons": staging.conform(persons, "persons"),
        "visits": staging.conform(visits, "visits"),
        "events": events,
        "providers": staging.empty("providers"),
        "care_sites": staging.empty("care_sites"),
        "notes": staging.empty("notes"),
    }
    n = raw.get("notes")
    if n is not None and n.height:
        out["notes"] = staging.conform(n.select(
            note_key="note_id", person_key="patient_id", visit_key="stay_id", date=_dt("note_date"),
            title="note_type", note_class="note_type", text="text",
        ), "notes")
    return out


# ---------------------------------------------------------------------------------------------- person buckets

PERSON_ENTITIES = ("patients", "stays")  # checked first, bucket by bucket: the events' parents
EVENT_ENTITIES = ("diagnoses", "procedures", "labs", "medications", "notes")


@dataclass
class HospitalSplit:
    """A hospital-csv folder split into person buckets (``transforms/buckets.py``) under a work folder.

    Every file is split by its ``patient_id`` (trimmed, as the checks read it); rows naming no patient
    of patients.csv go to bucket 0, where the orphan check quarantines them as in one piece. What is not
    a person matter is decided over the whole file beforehand: ``duplicates`` holds, per entity, the
    lines whose key repeats that of an earlier row (of any patient) that passes the row checks."""

    site: str
    buckets: int
    persons: int
    files: dict[str, SplitFile]  # entities whose file is present
    file_names: dict[str, str]  # entity -> its file's name (present or not)
    missing_files: list[str]
    duplicates: dict[str, pl.Series]
    today: dt.date
    mapping: HospitalMapping = field(default_factory=HospitalMapping)
    orphan_events: OrphanEvents = "keep"

    def rows(self, name: str, k: int) -> pl.DataFrame:
        """The source rows of entity ``name`` in bucket ``k`` (strings and ``_line``)."""
        if name in self.files:
            return self.files[name].bucket(k)
        ent = BY_NAME[name]
        return pl.DataFrame(schema={LINE: pl.Int64(), **{c: pl.String() for c in ent.column_names}})

    def named(self, rows: dict[str, pl.DataFrame], contract: str) -> pl.Series:
        """The distinct values (trimmed, as the checks read them) of the contract column ``contract`` in the
        source rows of several entities (e.g. the stays an event bucket names)."""
        values = [df[col].str.strip_chars() for name, df in rows.items()
                  if (col := _source_column(self.mapping, name, df.columns, contract)) is not None]
        return pl.concat(values).drop_nulls().unique() if values else pl.Series(contract, [], pl.String)

    def check(self, name: str, k: int, parents: dict[str, pl.Series], rejected: dict[str, pl.DataFrame],
              row_checks: RowChecks | None = None, rows: pl.DataFrame | None = None) -> EntityResult:
        """``validate_entity`` on bucket ``k`` of entity ``name``, with the whole file's duplicate keys."""
        return validate_entity(BY_NAME[name], self.rows(name, k) if rows is None else rows, self.file_names[name],
                               self.today, parents, row_checks, self.mapping, rejected, self.orphan_events,
                               duplicate_lines=self.duplicates.get(name))


def _source_column(mapping: HospitalMapping, entity: str, columns: list[str], contract: str) -> str | None:
    """The file's column read as the contract's ``contract`` column (a mapping may rename it)."""
    for src, dst in mapping.source_to_contract(entity).items():
        if dst == contract and src in columns:
            return src
    return contract if contract in columns else None


_DUPLICATES_SQL = """
WITH d AS (SELECT key, min(_line) AS first FROM ok GROUP BY key HAVING count(*) > 1)
SELECT ok._line FROM ok JOIN d USING (key) WHERE ok._line <> d.first ORDER BY ok._line
"""


def _repeated_keys(files: list[Path], temp_dir: Path) -> pl.Series:
    """The lines (of the candidate files: ``key``, ``_line``) whose key an earlier line already has.
    DuckDB with a memory limit, spilling to ``temp_dir``: bounded however long the file."""
    if not files:
        return pl.Series(LINE, [], pl.Int64)
    temp_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"memory_limit": "512MB", "threads": 2, "temp_directory": str(temp_dir)})
    try:
        paths = ", ".join("'" + str(p).replace("'", "''") + "'" for p in files)
        con.execute(f"CREATE VIEW ok AS SELECT key, _line FROM read_parquet([{paths}])")
        lines: pl.Series = con.sql(_DUPLICATES_SQL).pl()[LINE].cast(pl.Int64)
        return lines
    finally:
        con.close()


def split_hospital(site: str, folder: Path, work: Path, *, encoding: str = "utf-8", delimiter: str = ",",
                   mapping: HospitalMapping | None = None, today: dt.date | None = None,
                   persons_per_bucket: int = DEFAULT_PERSONS_PER_BUCKET, chunk_rows: int = CHUNK_ROWS,
                   progress: Callable[[str], None] | None = None, orphan_events: OrphanEvents = "keep",
                   absent: Collection[str] = ()) -> HospitalSplit:
    """Stream every file of a hospital-csv folder once into person-bucket Parquet files under ``work``
    (about ``persons_per_bucket`` patients a bucket), deciding duplicate keys over each whole file."""
    if not folder.is_dir():
        raise ExtractError(f"landing folder {folder} does not exist: run 'ds4h generate' or copy the extract there")
    mapping = mapping or HospitalMapping()
    today = today or dt.date.today()
    dialect = CsvDialect(encoding, delimiter, configurable=True)
    paths: dict[str, Path] = {}
    missing: list[str] = []
    for ent in ENTITIES:
        path = folder / mapping.file(ent.name, ent.file)
        paths[ent.name] = path
        if ent.name in absent and path.exists():
            raise ExtractError(absent_but_present(path, ent.name))
        if not path.exists():
            if ent.name in absent:
                continue  # declared absent: empty, not reported missing
            if ent.name in REQUIRED_FILES:
                raise ExtractError(f"{path} is missing: the hospital-csv contract requires {ent.file}")
            missing.append(path.name)
        elif path.stat().st_size == 0:
            raise ExtractError(f"{path} is empty: expected a header row and data")
    patients = paths["patients"]
    id_col = _source_column(mapping, "patients", csv_header(patients, dialect), "patient_id")
    # without the column, every row goes to bucket 0, whose check says the column is missing
    ids = (csv_column(patients, id_col, dialect) if id_col else pl.Series("key", [], pl.String)).str.strip_chars()
    buckets = bucket_count(ids.len(), persons_per_bucket)
    lookup = bucket_lookup(ids.filter(ids != ""), buckets)
    split: dict[str, SplitFile] = {}
    candidates: dict[str, list[Path]] = {}
    for ent in ENTITIES:
        path = paths[ent.name]
        if not path.exists():
            continue
        key = _source_column(mapping, ent.name, csv_header(path, dialect), "patient_id")
        ok_dir = work / "_keys" / ent.name
        ok_dir.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []

        def collect(chunk: pl.DataFrame, ent: Entity = ent, ok_dir: Path = ok_dir, written: list[Path] = written,
                    file: str = path.name) -> None:
            target = ok_dir / f"{len(written)}.parquet"
            key_candidates(ent, chunk, file, today, mapping).write_parquet(target)
            written.append(target)

        split[ent.name] = split_csv(path, key, lookup, work / ent.name, chunk_rows=chunk_rows, dialect=dialect,
                                    strip_key=True, on_chunk=collect)
        candidates[ent.name] = written
        if progress is not None:
            progress(f"{site}: split {path.name} ({split[ent.name].rows:,} rows) into {buckets} person buckets")
    duplicates = {name: _repeated_keys(files, work / "_duckdb") for name, files in candidates.items()}
    shutil.rmtree(work / "_keys", ignore_errors=True)
    persons = split["patients"].rows
    return HospitalSplit(site, buckets, persons, split, {n: p.name for n, p in paths.items()}, missing, duplicates,
                         today, mapping, orphan_events)
