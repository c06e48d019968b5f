"""The source-neutral staging model between a source adapter and the OMOP builder.

Every source format (hospital-csv, synthea-csv, fhir-bulk) has an adapter in ``transforms/adapters/``
that reads and types its own files (the raw zone) and turns them into these staging tables; one
builder (``transforms/omop.py``) then maps codes through the vocabulary, routes each event to the
OMOP table of its standard concept's domain, rolls visits up and derives eras and periods. An
existing OMOP CDM (``omop-csv``) skips staging.

Keys are the source's own ids as strings (``person_key``, ``visit_key``, ...): unique per site.
``code_system`` names the coding system of a code: ICD10, ATC, SNOMED, LOINC, RXNORM, CVX, NDC, ...
(``VOCABULARY_OF`` gives the OMOP vocabulary_id). ``kind`` says what the source thought the event was;
it decides the OMOP table only when the code does not map to a standard concept.
"""

from __future__ import annotations

import polars as pl

PERSONS = pl.Schema({
    "person_key": pl.String(), "national_id": pl.String(), "birth_date": pl.Date(), "sex": pl.String(),
    "race_source": pl.String(), "ethnicity_source": pl.String(), "death_date": pl.Date(),
    # the cause of death as the source codes it (Synthea's death certificate encounter, FHIR's cause of death)
    "death_cause_code": pl.String(), "death_cause_system": pl.String(),
    "address": pl.String(), "postcode": pl.String(), "city": pl.String(), "county": pl.String(), "country": pl.String(),
    "state": pl.String(),  # a US state (two-letter code or name) or a region; Luxembourg's cantons are counties
    "updated_at": pl.Datetime("us"),
    # direct identifiers: kept in the identifiable zone for the leak scan and note de-identification only
    "first_name": pl.String(), "last_name": pl.String(), "phone": pl.String(), "email": pl.String(),
    "other_names": pl.String(),  # other names of the person (maiden, aliases), separated by " | "
    # national identifiers other than the Luxembourg matricule (SSN, passport, driver's licence), " | "-separated
    "other_ids": pl.String(),
})
VISITS = pl.Schema({
    "visit_key": pl.String(), "person_key": pl.String(), "start": pl.Datetime("us"), "end": pl.Datetime("us"),
    "visit_class": pl.String(),  # INPATIENT, OUTPATIENT, EMERGENCY, URGENTCARE, WELLNESS, AMBULATORY, HOME, VIRTUAL, ...
    "provider_key": pl.String(), "care_site_key": pl.String(), "ward": pl.String(),
})
EVENTS = pl.Schema({
    "event_key": pl.String(), "person_key": pl.String(), "visit_key": pl.String(),
    "kind": pl.String(),  # condition, drug, procedure, measurement, observation, device, allergy (immunization -> drug)
    "code": pl.String(), "code_system": pl.String(), "description": pl.String(),
    "start": pl.Datetime("us"), "end": pl.Datetime("us"),
    "value_number": pl.Float64(), "value_text": pl.String(), "unit": pl.String(),
    "value_code": pl.String(), "value_code_system": pl.String(),  # a coded result (FHIR valueCodeableConcept)
    "quantity": pl.Float64(), "route": pl.String(), "status": pl.String(), "provider_key": pl.String(),
    # where the record comes from, when the source says: vital-signs, exam, laboratory, survey, social-history,
    # immunization (an administered vaccine), ... (decides the OMOP type concept, never the table)
    "category": pl.String(),
    # a cancer diagnosis as a registry codes it (conditions only): ICD-O-3 morphology with behaviour (8140/3;
    # the topography is the ICD-10 code's site), clinical TNM categories (UICC 8th: T2, N1, M0) and the stage
    # group at diagnosis (IIB); transforms/omop.py makes the ICDO3 condition and the stage measurements
    "histology": pl.String(), "tnm_t": pl.String(), "tnm_n": pl.String(), "tnm_m": pl.String(),
    "stage_group": pl.String(),
})
PROVIDERS = pl.Schema({
    "provider_key": pl.String(), "name": pl.String(), "specialty": pl.String(), "care_site_key": pl.String(),
    "sex": pl.String(),
})
CARE_SITES = pl.Schema({
    "care_site_key": pl.String(), "name": pl.String(), "place_of_service": pl.String(),
    "address": pl.String(), "postcode": pl.String(), "city": pl.String(), "county": pl.String(), "country": pl.String(),
    "state": pl.String(),
})
NOTES = pl.Schema({
    "note_key": pl.String(), "person_key": pl.String(), "visit_key": pl.String(), "date": pl.Datetime("us"),
    "title": pl.String(), "note_class": pl.String(), "text": pl.String(), "provider_key": pl.String(),
})

SCHEMAS: dict[str, pl.Schema] = {
    "persons": PERSONS, "visits": VISITS, "events": EVENTS, "providers": PROVIDERS,
    "care_sites": CARE_SITES, "notes": NOTES,
}
KINDS = ("condition", "drug", "procedure", "measurement", "observation", "device", "allergy")
VOCABULARY_OF: dict[str, str] = {
    "ICD10": "ICD10", "ICD10CM": "ICD10CM", "ATC": "ATC", "SNOMED": "SNOMED", "LOINC": "LOINC",
    "RXNORM": "RxNorm", "CVX": "CVX", "NDC": "NDC", "UCUM": "UCUM", "CPT4": "CPT4", "HCPCS": "HCPCS",
    "ICDO3": "ICDO3",
}


def vocabulary_of(code_system: object) -> str:
    """The OMOP vocabulary_id of a staging ``code_system`` (itself when it is none of ``VOCABULARY_OF``)."""
    name = str(code_system or "")
    return VOCABULARY_OF.get(name.upper(), name)


def empty(name: str) -> pl.DataFrame:
    return pl.DataFrame(schema=SCHEMAS[name])


def conform(df: pl.DataFrame, name: str) -> pl.DataFrame:
    """Exactly the staging columns of ``name`` in order and type (missing ones null)."""
    schema = SCHEMAS[name]
    return df.select([
        (pl.col(c) if c in df.columns else pl.lit(None)).cast(t).alias(c) for c, t in schema.items()
    ])


Staging = dict[str, pl.DataFrame]
