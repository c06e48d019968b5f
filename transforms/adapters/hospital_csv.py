"""hospital-csv adapter: the typed extract entities (``transforms/ingest.py``) -> staging tables."""

from __future__ import annotations

import polars as pl

from schemas.geo import COUNTRY_CODE
from transforms import staging


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
