"""synthea-csv adapter: Synthea's CSV export (2.7 to 3.3, the versions OHDSI's ETL-Synthea loads).

Raw tables keep every source column under its lower-case name (headers are matched case-insensitively;
2.7's ``procedures.DATE`` becomes ``start``), with dates typed (naive UTC) and a ``_line`` column (the
1-based source line, header = 1). Only ``patients`` and ``encounters`` are required; a missing optional
file is listed in ``missing_files``; claims, payers, careplans, supplies and imaging files are not read.

Checks per row (first failing wins): ``raw.missing_required`` (an empty or absent required column),
``raw.invalid_date``, ``raw.duplicate_key`` (``Id`` of patients, encounters, organizations, providers),
``raw.orphan`` (``PATIENT`` names no valid patient; ``ENCOUNTER``, when given, names no valid
encounter). An event whose encounter was quarantined (its patient valid) is kept with ``encounter``
emptied and counted ``unlinked`` (``quality.orphan_events: keep``); a row whose parent was quarantined
names that row and its reason. An exact repeat of an earlier row is counted as ``deduplicated``.

Events carry no id in Synthea: ``event_key`` is ``<file>:<line>`` (e.g. ``conditions:12``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from transforms import staging
from transforms.adapters import (
    LINE,
    PRE_DETAIL,
    PRE_REASON,
    Spec,
    code_system_expr,
    empty_result,
    validate,
    with_country,
)
from transforms.buckets import (
    CHUNK_ROWS,
    DEFAULT_PERSONS_PER_BUCKET,
    SplitFile,
    bucket_count,
    bucket_lookup,
    csv_column,
    csv_header,
    split_csv,
)
from transforms.ingest import (
    EntityResult,
    ExtractError,
    IngestResult,
    OrphanEvents,
    merge_accounting,
    read_text_csv,
)

SYNTHEA_REQUIRED = ("patients", "encounters")

_EVENT_REFS = {"patient": "patients", "encounter": "encounters"}


@dataclass(frozen=True)
class _Entity:
    spec: Spec
    aliases: tuple[tuple[str, str], ...] = ()  # (source name, canonical name) when the canonical is absent


ENTITIES: tuple[_Entity, ...] = (
    _Entity(Spec("patients", key="id", required=("id", "birthdate"), dates=("birthdate", "deathdate"))),
    _Entity(Spec("encounters", key="id", required=("id", "patient", "start"), datetimes=("start", "stop"),
                 refs={"patient": "patients"})),
    _Entity(Spec("organizations", key="id", required=("id",))),
    _Entity(Spec("providers", key="id", required=("id",)), aliases=(("specialty", "speciality"),)),
    _Entity(Spec("conditions", required=("patient", "code", "start"), datetimes=("start", "stop"), refs=_EVENT_REFS)),
    _Entity(Spec("medications", required=("patient", "code", "start"), datetimes=("start", "stop"),
                 numbers=("dispenses",), refs=_EVENT_REFS)),
    _Entity(Spec("immunizations", required=("patient", "code", "date"), datetimes=("date",), refs=_EVENT_REFS)),
    _Entity(Spec("observations", required=("patient", "code", "date"), datetimes=("date",), refs=_EVENT_REFS)),
    _Entity(Spec("procedures", required=("patient", "code", "start"), datetimes=("start", "stop"), refs=_EVENT_REFS),
            aliases=(("date", "start"),)),
    _Entity(Spec("allergies", required=("patient", "code", "start"), datetimes=("start", "stop"), refs=_EVENT_REFS)),
    _Entity(Spec("devices", required=("patient", "code", "start"), datetimes=("start", "stop"), refs=_EVENT_REFS)),
)

_BY_NAME = {e.spec.name: e for e in ENTITIES}


def _find(folder: Path, name: str) -> Path | None:
    wanted = f"{name}.csv"
    exact = folder / wanted
    if exact.is_file():
        return exact
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.name.lower() == wanted:
            return p
    return None


def _header_map(columns: list[str] | tuple[str, ...], ent: _Entity) -> dict[str, str]:
    """Source column -> canonical lower-case name (a repeated header keeps both; the first wins)."""
    names: dict[str, str] = {}
    for c in columns:
        if c == LINE:
            continue
        low = c.strip().lower()
        if low in names.values() or low == LINE:
            low = f"{low}_{len(names)}"
        names[c] = low
    for src, canonical in ent.aliases:
        if canonical not in names.values() and src in names.values():
            names = {k: (canonical if v == src else v) for k, v in names.items()}
    return names


def _source_column(columns: list[str] | tuple[str, ...], ent: _Entity, canonical: str) -> str | None:
    """The header (as written) of a canonical column, if the file has it."""
    return next((c for c, low in _header_map(columns, ent).items() if low == canonical), None)


_CONFLICTS_SQL = """
WITH r AS (
    SELECT _line, id, patient FROM enc WHERE trim(id) <> '' AND trim(patient) <> ''
), owner AS (
    SELECT id, arg_min(patient, _line) AS owner FROM r GROUP BY id HAVING count(DISTINCT patient) > 1
)
SELECT r._line FROM r JOIN owner USING (id) WHERE r.patient <> owner.owner ORDER BY r._line
"""


def encounter_conflicts(encounters: pl.DataFrame | list[Path], id_col: str, patient_col: str,
                        temp_dir: Path | None = None) -> pl.DataFrame:
    """Encounter ``Id``s given to more than one patient: every row whose patient is not the patient of
    the Id's first line is quarantined as ``raw.duplicate_key`` (``_line``, ``_pre_reason``, ``_pre_detail``).

    Decided over the whole file (a frame, or the Parquet files of its buckets), so that splitting a
    site into person buckets decides exactly as reading it in one piece; an Id repeated for the same
    patient stays a bucket-local matter (``validate``'s duplicate-key check). DuckDB, with a memory
    limit and spilling to ``temp_dir``: memory stays bounded however many encounters there are."""
    con = duckdb.connect(config={"memory_limit": "512MB", "threads": 2,
                                 **({"temp_directory": str(temp_dir)} if temp_dir is not None else {})})
    try:
        cols = f'"_line" AS _line, "{id_col}" AS id, "{patient_col}" AS patient'
        if isinstance(encounters, pl.DataFrame):
            con.register("enc_src", encounters.select(LINE, id_col, patient_col).to_arrow())
            con.execute(f"CREATE VIEW enc AS SELECT {cols} FROM enc_src")
        elif encounters:
            files = ", ".join("'" + str(p).replace("'", "''") + "'" for p in encounters)
            con.execute(f"CREATE VIEW enc AS SELECT {cols} FROM read_parquet([{files}])")
        else:
            con.execute("CREATE VIEW enc AS SELECT 0::BIGINT AS _line, ''::VARCHAR AS id, ''::VARCHAR AS patient LIMIT 0")
        lines = con.sql(_CONFLICTS_SQL).pl()[LINE].cast(pl.Int64)
    finally:
        con.close()
    return pl.DataFrame({LINE: lines}).with_columns(
        pl.lit("raw.duplicate_key").alias(PRE_REASON),
        pl.lit("id repeats an earlier row of another patient").alias(PRE_DETAIL),
    )


def _check_entity(ent: _Entity, df: pl.DataFrame, file: str, parents: dict[str, pl.Series],
                  pre: pl.DataFrame | None = None, rejected: dict[str, pl.DataFrame] | None = None,
                  orphan_events: OrphanEvents = "keep") -> EntityResult:
    """Type and check one entity's rows (source strings + ``_line``); ``pre``: faults decided beforehand."""
    spec = ent.spec
    df = df.rename(_header_map(df.columns, ent))
    source_columns = [c for c in df.columns if c != LINE]
    needed = {*spec.required, *spec.datetimes, *spec.dates, *spec.numbers, *spec.refs}
    absent = {c: f"column {c.upper()} is absent from {file}" for c in needed if c not in df.columns}
    df = df.with_columns([pl.lit(None, pl.String).alias(c) for c in absent])
    if "encounter" in spec.refs:  # an event's encounter must be one of its own patient's
        df = df.with_columns(pl.concat_str([pl.col("patient"), pl.col("encounter")], separator=_PAIR).alias(_ENC_REF))
    if pre is not None and pre.height:
        df = df.join(pre, on=LINE, how="left", maintain_order="left")
    key_expr = (pl.concat_str([pl.col("patient"), pl.col("id")], separator=_PAIR)
                if spec.name == "encounters" else None)
    result = validate(spec, df, file=file, source_columns=source_columns, dedup_on=source_columns,
                      parents=parents, absent=absent, scoped_refs={"encounter": _ENC_REF}, rejected=rejected,
                      visit_refs=("encounter",), orphan_events=orphan_events, key_expr=key_expr)
    if _ENC_REF in result.table.columns:
        result.table = result.table.drop(_ENC_REF)
    return result


_PAIR = "\x1f"
_ENC_REF = "_encounter_ref"


def _valid_keys(name: str, table: pl.DataFrame) -> pl.Series:
    """What children check against: patient ids; encounters as (patient, id) pairs."""
    if name == "encounters":
        return table.select(pl.concat_str([pl.col("patient"), pl.col("id")], separator=_PAIR)).to_series()
    return table["id"]


def read_synthea(site: str, folder: Path, orphan_events: OrphanEvents = "keep") -> IngestResult:
    """Read and check one site's Synthea CSV folder in one piece (patients and encounters required).

    For large exports use ``split_synthea`` and ``read_synthea_bucket``: the same checks, per bucket."""
    result = IngestResult(site)
    valid: dict[str, pl.Series] = {}
    rejected: dict[str, pl.DataFrame] = {}
    for ent, path in _files(folder, result.missing_files):
        name = ent.spec.name
        if path is None:
            r = empty_result(name, sorted({*ent.spec.required, *ent.spec.datetimes, *ent.spec.dates}), None)
        else:
            df = read_text_csv(path, "utf-8", ",")
            pre = None
            if name == "encounters":
                id_col, patient_col = _source_column(df.columns, ent, "id"), _source_column(df.columns, ent, "patient")
                if id_col is not None and patient_col is not None:
                    pre = encounter_conflicts(df, id_col, patient_col)
            r = _check_entity(ent, df, path.name, valid, pre, rejected, orphan_events)
        result.entities[name] = r
        if ent.spec.key is not None:
            valid[name] = _valid_keys(name, r.table)
            if r.rejected_keys is not None:
                rejected[name] = r.rejected_keys
    return result


def _files(folder: Path, missing: list[str]) -> list[tuple[_Entity, Path | None]]:
    if not folder.is_dir():
        raise ExtractError(f"landing folder {folder} does not exist: copy the Synthea CSV export there")
    out: list[tuple[_Entity, Path | None]] = []
    for ent in ENTITIES:
        path = _find(folder, ent.spec.name)
        if path is None:
            if ent.spec.name in SYNTHEA_REQUIRED:
                raise ExtractError(f"{folder / (ent.spec.name + '.csv')} is missing: a Synthea CSV export always has it")
            missing.append(f"{ent.spec.name}.csv")
        out.append((ent, path))
    return out


SHARED_ENTITIES = ("organizations", "providers")  # not per patient: read whole, once


@dataclass
class SyntheaSplit:
    """A Synthea folder split into person buckets (``transforms/buckets.py``) under a work folder."""

    site: str
    buckets: int
    files: dict[str, SplitFile]  # per-patient entities present in the export
    shared: dict[str, EntityResult]  # organizations and providers, checked once
    missing_files: list[str]
    conflicts: pl.DataFrame  # encounter lines quarantined before the buckets (an Id of two patients)
    orphan_events: OrphanEvents = "keep"

    @property
    def persons(self) -> int:
        return self.files["patients"].rows

    def shared_result(self) -> IngestResult:
        """The shared entities as an ingest result (for their row accounting, counted once)."""
        return IngestResult(self.site, dict(self.shared))


def split_synthea(site: str, folder: Path, work: Path, *, persons_per_bucket: int = DEFAULT_PERSONS_PER_BUCKET,
                  chunk_rows: int = CHUNK_ROWS, progress: Callable[[str], None] | None = None,
                  orphan_events: OrphanEvents = "keep") -> SyntheaSplit:
    """Stream every per-patient file of ``folder`` once into person-bucket Parquet files under ``work``.

    The number of buckets follows the patients file (about ``persons_per_bucket`` patients each)."""
    missing: list[str] = []
    files = _files(folder, missing)
    patients_path = next(p for e, p in files if e.spec.name == "patients")
    assert patients_path is not None
    id_col = _source_column(csv_header(patients_path), _BY_NAME["patients"], "id")
    ids = csv_column(patients_path, id_col) if id_col else pl.Series("key", [], pl.String)
    buckets = bucket_count(ids.len(), persons_per_bucket)
    lookup = bucket_lookup(ids, buckets)
    split: dict[str, SplitFile] = {}
    shared: dict[str, EntityResult] = {}
    for ent, path in files:
        name = ent.spec.name
        if name in SHARED_ENTITIES:
            shared[name] = (_check_entity(ent, read_text_csv(path, "utf-8", ","), path.name, {}) if path is not None
                            else empty_result(name, sorted({*ent.spec.required, *ent.spec.datetimes}), None))
            continue
        if path is None:
            continue
        key = _source_column(csv_header(path), ent, "id" if name == "patients" else "patient")
        split[name] = split_csv(path, key, lookup, work / name, chunk_rows=chunk_rows)
        if progress is not None:
            progress(f"{site}: split {path.name} ({split[name].rows:,} rows) into {buckets} person buckets")
    conflicts = pl.DataFrame(schema={LINE: pl.Int64, PRE_REASON: pl.String, PRE_DETAIL: pl.String})
    enc = split["encounters"]
    id_col, patient_col = (_source_column(enc.columns, _BY_NAME["encounters"], c) for c in ("id", "patient"))
    if id_col is not None and patient_col is not None:
        conflicts = encounter_conflicts(enc.files(), id_col, patient_col, temp_dir=work / "_duckdb")
    return SyntheaSplit(site, buckets, split, shared, missing, conflicts, orphan_events)


def read_synthea_bucket(split: SyntheaSplit, k: int) -> IngestResult:
    """The checked raw rows of bucket ``k`` (its patients and their rows), shared entities included."""
    result = IngestResult(split.site, missing_files=list(split.missing_files))
    valid: dict[str, pl.Series] = {}
    rejected: dict[str, pl.DataFrame] = {}
    for ent in ENTITIES:
        name = ent.spec.name
        if name in split.shared:
            result.entities[name] = split.shared[name]
        elif name in split.files:
            f = split.files[name]
            pre = split.conflicts if name == "encounters" else None
            result.entities[name] = _check_entity(ent, f.bucket(k), f.source.name, valid, pre, rejected,
                                                  split.orphan_events)
        else:
            result.entities[name] = empty_result(name, sorted({*ent.spec.required, *ent.spec.datetimes, *ent.spec.dates}), None)
        if ent.spec.key is not None:
            valid[name] = _valid_keys(name, result.entities[name].table)
            rk = result.entities[name].rejected_keys
            if rk is not None:
                rejected[name] = rk
    return result


def bucket_accounting(split: SyntheaSplit, buckets: list[pl.DataFrame]) -> pl.DataFrame:
    """The raw row accounting of a split site: the buckets' (per-patient entities) plus the shared ones once."""
    per_patient = [b.filter(~pl.col("table").is_in(list(SHARED_ENTITIES))) for b in buckets]
    return merge_accounting([*per_patient, split.shared_result().accounting()])


# ---------------------------------------------------------------------------------------------- staging

def _col(df: pl.DataFrame, name: str, dtype: pl.DataType = pl.String()) -> pl.Expr:
    return pl.col(name) if name in df.columns else pl.lit(None, dtype)


def _nonempty(e: pl.Expr) -> pl.Expr:
    s = e.str.strip_chars()
    return pl.when(s != "").then(s)


_SEX = {"M": "M", "MALE": "M", "F": "F", "FEMALE": "F"}


SYNTHEA_COUNTRY = "US"  # Synthea models US states; its exports have no COUNTRY column unless customised


def _persons(p: pl.DataFrame) -> pl.DataFrame:
    return with_country(p.select(
        person_key="id", birth_date="birthdate", death_date=_col(p, "deathdate", pl.Date()),
        sex=_col(p, "gender").str.strip_chars().str.to_uppercase().replace_strict(_SEX, default="U", return_dtype=pl.String),
        race_source=_col(p, "race"), ethnicity_source=_col(p, "ethnicity"),
        address=_col(p, "address"), postcode=_col(p, "zip"), city=_col(p, "city"), county=_col(p, "county"),
        country=_col(p, "country"), state=_col(p, "state"),
        first_name=_col(p, "first"), last_name=_col(p, "last"),
        # social security number, driver's licence, passport: direct identifiers, identity zone only
        other_ids=pl.concat_str([_nonempty(_col(p, c)) for c in ("ssn", "drivers", "passport")], separator=" | ",
                                ignore_nulls=True).replace("", None),
        phone=_col(p, "phone"), email=_col(p, "email"),
        # the maiden name: notes may use it (Synthea writes "First Maiden" in some notes)
        other_names=pl.when(_col(p, "maiden").is_not_null())
        .then(pl.concat_str([_col(p, "first"), _col(p, "maiden")], separator=" ", ignore_nulls=True)).otherwise(None),
    ), default=SYNTHEA_COUNTRY)


DEATH_CERTIFICATION = "308646001"  # SNOMED "Death certification": the encounter's reason is the cause of death


def death_causes(e: pl.DataFrame) -> pl.DataFrame:
    """person_key, death_cause_code, death_cause_system: the reason of each patient's death certification
    encounter (the earliest, when there are several), as OHDSI's ETL-Synthea reads the cause of death."""
    if not {"code", "reasoncode"} <= set(e.columns):
        return pl.DataFrame(schema={"person_key": pl.String, "death_cause_code": pl.String, "death_cause_system": pl.String})
    d = e.filter((pl.col("code").str.strip_chars() == DEATH_CERTIFICATION) & _nonempty(pl.col("reasoncode")).is_not_null())
    return (d.sort("patient", "start", "id").unique("patient", keep="first", maintain_order=True)
            .select(person_key="patient", death_cause_code=_nonempty(pl.col("reasoncode")), death_cause_system=pl.lit("SNOMED")))


def _visits(e: pl.DataFrame) -> pl.DataFrame:
    return e.select(
        visit_key="id", person_key="patient", start="start", end=_col(e, "stop", pl.Datetime("us")),
        visit_class=_col(e, "encounterclass").str.strip_chars().str.to_uppercase(),
        provider_key=_nonempty(_col(e, "provider")), care_site_key=_nonempty(_col(e, "organization")),
    )


def _events(name: str, df: pl.DataFrame) -> pl.DataFrame:
    key = pl.lit(f"{name}:") + pl.col(LINE).cast(pl.String)
    common = dict(
        event_key=key, person_key=pl.col("patient"), visit_key=_nonempty(_col(df, "encounter")),
        code=pl.col("code").str.strip_chars(), description=_col(df, "description"),
    )
    if name == "conditions":
        return df.select(**common, kind=pl.lit("condition"), code_system=code_system_expr_or(df, "SNOMED"),
                         start="start", end=_col(df, "stop", pl.Datetime("us")))
    if name == "medications":
        return df.select(**common, kind=pl.lit("drug"), code_system=code_system_expr_or(df, "RXNORM"),
                         start="start", end=_col(df, "stop", pl.Datetime("us")))
    if name == "immunizations":
        return df.select(**common, kind=pl.lit("drug"), code_system=code_system_expr_or(df, "CVX"), start="date",
                         category=pl.lit("immunization"))
    if name == "observations":
        value = _col(df, "value").str.strip_chars()
        number = value.cast(pl.Float64, strict=False)
        return df.select(
            **common, kind=pl.when(number.is_not_null()).then(pl.lit("measurement")).otherwise(pl.lit("observation")),
            code_system=code_system_expr_or(df, "LOINC"), start="date",
            value_number=number, value_text=pl.when(number.is_null()).then(_nonempty(value)),
            unit=_nonempty(_col(df, "units")), category=_nonempty(_col(df, "category")).str.to_lowercase(),
        )
    if name == "procedures":
        return df.select(**common, kind=pl.lit("procedure"), code_system=code_system_expr_or(df, "SNOMED"),
                         start="start", end=_col(df, "stop", pl.Datetime("us")))
    if name == "allergies":  # the code is the substance; CATEGORY: medication, food, environment
        return df.select(**common, kind=pl.lit("allergy"), code_system=code_system_expr_or(df, "SNOMED"),
                         start="start", end=_col(df, "stop", pl.Datetime("us")),
                         category=_nonempty(_col(df, "category")).str.to_lowercase())
    if name == "devices":
        return df.select(**common, kind=pl.lit("device"), code_system=code_system_expr_or(df, "SNOMED"),
                         start="start", end=_col(df, "stop", pl.Datetime("us")), value_text=_col(df, "udi"))
    raise ValueError(f"not a Synthea event file: {name}")


def code_system_expr_or(df: pl.DataFrame, default: str) -> pl.Expr:
    """The row's ``SYSTEM`` (Synthea 3.x writes it for allergies, 3.3 for conditions and procedures)."""
    if "system" in df.columns:
        return code_system_expr("system", default)
    return pl.lit(default)


EVENT_FILES = ("conditions", "medications", "immunizations", "observations", "procedures", "allergies", "devices")


def synthea_to_staging(raw: IngestResult) -> dict[str, pl.DataFrame]:
    """The staging tables (``transforms/staging.py``) of a Synthea site's valid raw rows."""
    ents = raw.entities
    persons = _persons(ents["patients"].table).join(
        death_causes(ents["encounters"].table), on="person_key", how="left", maintain_order="left")
    out: dict[str, pl.DataFrame] = {
        "persons": staging.conform(persons, "persons"),
        "visits": staging.conform(_visits(ents["encounters"].table), "visits"),
    }
    frames = [
        staging.conform(_events(n, ents[n].table), "events")
        for n in EVENT_FILES if n in ents and ents[n].table.height
    ]
    out["events"] = pl.concat(frames) if frames else staging.empty("events")
    prov = ents.get("providers")
    if prov is not None and prov.table.height:
        t = prov.table
        out["providers"] = staging.conform(t.select(
            provider_key="id", name=_col(t, "name"), specialty=_col(t, "speciality"),
            care_site_key=_nonempty(_col(t, "organization")),
            sex=_col(t, "gender").str.strip_chars().str.to_uppercase().replace_strict(_SEX, default="U", return_dtype=pl.String),
        ), "providers")
    else:
        out["providers"] = staging.empty("providers")
    org = ents.get("organizations")
    if org is not None and org.table.height:
        t = org.table
        out["care_sites"] = staging.conform(with_country(t.select(
            care_site_key="id", name=_col(t, "name"), address=_col(t, "address"), postcode=_col(t, "zip"),
            city=_col(t, "city"), country=_col(t, "country"), state=_col(t, "state"),
        ), default=SYNTHEA_COUNTRY), "care_sites")
    else:
        out["care_sites"] = staging.empty("care_sites")
    out["notes"] = staging.empty("notes")
    return out
