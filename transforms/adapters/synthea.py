"""synthea-csv adapter: Synthea's CSV export (2.7 to 3.3, the versions OHDSI's ETL-Synthea loads).

Raw tables keep every source column under its lower-case name (headers are matched case-insensitively;
2.7's ``procedures.DATE`` becomes ``start``), with dates typed (naive UTC) and a ``_line`` column (the
1-based source line, header = 1). Only ``patients`` and ``encounters`` are required; a missing optional
file is listed in ``missing_files``; claims, payers, careplans, supplies and imaging files are not read.

Checks per row (first failing wins): ``raw.missing_required`` (an empty or absent required column),
``raw.invalid_date``, ``raw.duplicate_key`` (``Id`` of patients, encounters, organizations, providers),
``raw.orphan`` (``PATIENT`` names no valid patient; ``ENCOUNTER``, when given, names no valid
encounter). An exact repeat of an earlier row is counted as ``deduplicated``.

Events carry no id in Synthea: ``event_key`` is ``<file>:<line>`` (e.g. ``conditions:12``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from transforms import staging
from transforms.adapters import LINE, Spec, code_system_expr, empty_result, validate
from transforms.ingest import EntityResult, ExtractError, IngestResult, read_text_csv

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


def _find(folder: Path, name: str) -> Path | None:
    wanted = f"{name}.csv"
    exact = folder / wanted
    if exact.is_file():
        return exact
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.name.lower() == wanted:
            return p
    return None


def _normalise_columns(df: pl.DataFrame, ent: _Entity) -> pl.DataFrame:
    names: dict[str, str] = {}
    for c in df.columns:
        if c == LINE:
            continue
        low = c.strip().lower()
        if low in names.values() or low == LINE:
            low = f"{low}_{len(names)}"  # a repeated header: keep both, the first wins
        names[c] = low
    df = df.rename(names)
    for src, canonical in ent.aliases:
        if canonical not in df.columns and src in df.columns:
            df = df.rename({src: canonical})
    return df


def _read_entity(ent: _Entity, path: Path, parents: dict[str, pl.Series]) -> EntityResult:
    spec = ent.spec
    df = _normalise_columns(read_text_csv(path, "utf-8", ","), ent)
    source_columns = [c for c in df.columns if c != LINE]
    needed = {*spec.required, *spec.datetimes, *spec.dates, *spec.numbers, *spec.refs}
    absent = {c: f"column {c.upper()} is absent from {path.name}" for c in needed if c not in df.columns}
    df = df.with_columns([pl.lit(None, pl.String).alias(c) for c in absent])
    return validate(spec, df, file=path.name, source_columns=source_columns, dedup_on=source_columns,
                    parents=parents, absent=absent)


def read_synthea(site: str, folder: Path) -> IngestResult:
    """Read and check one site's Synthea CSV folder (patients and encounters required)."""
    if not folder.is_dir():
        raise ExtractError(f"landing folder {folder} does not exist: copy the Synthea CSV export there")
    result = IngestResult(site)
    valid: dict[str, pl.Series] = {}
    for ent in ENTITIES:
        name = ent.spec.name
        path = _find(folder, name)
        if path is None:
            if name in SYNTHEA_REQUIRED:
                raise ExtractError(f"{folder / (name + '.csv')} is missing: a Synthea CSV export always has it")
            result.missing_files.append(f"{name}.csv")
            r = empty_result(name, sorted({*ent.spec.required, *ent.spec.datetimes, *ent.spec.dates}), None)
        else:
            r = _read_entity(ent, path, valid)
        result.entities[name] = r
        if ent.spec.key is not None:
            valid[name] = r.table[ent.spec.key]
    return result


# ---------------------------------------------------------------------------------------------- staging

def _col(df: pl.DataFrame, name: str, dtype: pl.DataType = pl.String()) -> pl.Expr:
    return pl.col(name) if name in df.columns else pl.lit(None, dtype)


def _nonempty(e: pl.Expr) -> pl.Expr:
    s = e.str.strip_chars()
    return pl.when(s != "").then(s)


_SEX = {"M": "M", "MALE": "M", "F": "F", "FEMALE": "F"}


def _persons(p: pl.DataFrame) -> pl.DataFrame:
    return p.select(
        person_key="id", birth_date="birthdate", death_date=_col(p, "deathdate", pl.Date()),
        sex=_col(p, "gender").str.strip_chars().str.to_uppercase().replace_strict(_SEX, default="U", return_dtype=pl.String),
        race_source=_col(p, "race"), ethnicity_source=_col(p, "ethnicity"),
        address=_col(p, "address"), postcode=_col(p, "zip"), city=_col(p, "city"), county=_col(p, "county"),
        first_name=_col(p, "first"), last_name=_col(p, "last"),
        phone=_col(p, "phone"), email=_col(p, "email"),
        # the maiden name: notes may use it (Synthea writes "First Maiden" in some notes)
        other_names=pl.when(_col(p, "maiden").is_not_null())
        .then(pl.concat_str([_col(p, "first"), _col(p, "maiden")], separator=" ", ignore_nulls=True)).otherwise(None),
    )


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
        return df.select(**common, kind=pl.lit("drug"), code_system=code_system_expr_or(df, "CVX"), start="date")
    if name == "observations":
        value = _col(df, "value").str.strip_chars()
        number = value.cast(pl.Float64, strict=False)
        return df.select(
            **common, kind=pl.when(number.is_not_null()).then(pl.lit("measurement")).otherwise(pl.lit("observation")),
            code_system=code_system_expr_or(df, "LOINC"), start="date",
            value_number=number, value_text=pl.when(number.is_null()).then(_nonempty(value)),
            unit=_nonempty(_col(df, "units")),
        )
    if name == "procedures":
        return df.select(**common, kind=pl.lit("procedure"), code_system=code_system_expr_or(df, "SNOMED"),
                         start="start", end=_col(df, "stop", pl.Datetime("us")))
    if name == "allergies":
        return df.select(**common, kind=pl.lit("observation"), code_system=code_system_expr_or(df, "SNOMED"),
                         start="start", end=_col(df, "stop", pl.Datetime("us")))
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
    out: dict[str, pl.DataFrame] = {
        "persons": staging.conform(_persons(ents["patients"].table), "persons"),
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
        out["care_sites"] = staging.conform(t.select(
            care_site_key="id", name=_col(t, "name"), address=_col(t, "address"), postcode=_col(t, "zip"),
            city=_col(t, "city"),
        ), "care_sites")
    else:
        out["care_sites"] = staging.empty("care_sites")
    out["notes"] = staging.empty("notes")
    return out
