"""The hospital-csv extract contract: one CSV file per entity, in a site's landing folder.

This module is the single source of truth for the contract: the generator writes it, the ingest
adapter types and validates against it, and ``docs/hospital-csv.md`` describes it.

Conventions:
- UTF-8 with ``,`` unless the source says otherwise (``encoding``, ``delimiter`` in the config);
- a header row with the column names below (order free, extra columns are kept in quarantine
  files but ignored otherwise);
- dates ``YYYY-MM-DD``; datetimes ``YYYY-MM-DD HH:MM[:SS]`` (a date alone is accepted, at 00:00);
- codes are case-insensitive and trimmed (ICD-10 ``e11.9`` becomes ``E11.9``);
- empty cells are missing values (a column with a default takes it instead; an optional column
  may be absent from the file).

Changed on 2026-12-06 (an interface change): ``patients.csv`` gained the optional columns
``death_date`` and ``death_cause_code`` (ICD-10), which fill the OMOP ``death`` table; files without
them are read as before (no deaths).

Changed on 2026-12-06 (an interface change, for the use-case products): ``diagnoses.csv`` gained the
optional cancer-registry columns ``histology`` (ICD-O-3 morphology with behaviour, e.g. ``8140/3``),
``tnm_t``, ``tnm_n``, ``tnm_m`` (clinical TNM categories, UICC 8th edition) and ``stage_group``;
``labs.csv`` gained the optional column ``value_code`` (a coded result, SNOMED CT, e.g. the smoking
status). Files without them are read as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ColumnType = Literal["str", "int", "float", "date", "datetime"]


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: ColumnType = "str"
    required: bool = False
    code: bool = False  # normalised: trimmed, upper-case
    identifier: bool = False  # a direct identifier: never leaves the identifiable zone
    description: str = ""
    default: str | None = None  # the value of an empty cell, or of every row when the column is absent


@dataclass(frozen=True, slots=True)
class Entity:
    name: str
    file: str
    key: str
    columns: tuple[Column, ...]
    references: dict[str, str] = field(default_factory=dict)  # column -> entity it must exist in
    description: str = ""

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


PATIENTS = Entity(
    name="patients",
    file="patients.csv",
    key="patient_id",
    description="One row per patient known to the site.",
    columns=(
        Column("patient_id", required=True, identifier=True, description="site-local patient id"),
        Column("matricule", identifier=True, description="Luxembourg national id (13 digits), when known"),
        Column("last_name", identifier=True),
        Column("first_name", identifier=True),
        Column("birth_date", "date", required=True),
        Column("sex", required=True, code=True, description="M, F or U"),
        Column("address", identifier=True, description="street line"),
        Column("postcode", code=True, description="L-NNNN in Luxembourg; abroad, the country's own postcode (e.g. 57100)"),
        Column("city", description="commune (abroad: the town)"),
        Column("country", code=True, default="LU",
               description="country of residence, ISO 3166-1 alpha-2 (LU, FR, BE, DE, ...)"),
        Column("phone", identifier=True),
        Column("email", identifier=True),
        Column("updated_at", "datetime", description="last update of the record in the hospital system"),
        Column("death_date", "date", description="date of death, when the hospital knows it; not before `birth_date`"),
        Column("death_cause_code", code=True,
               description="underlying cause of death, ICD-10 (another system when the mapping file's "
                           "`code_systems.patients` names one); empty when unknown"),
    ),
)

STAYS = Entity(
    name="stays",
    file="stays.csv",
    key="stay_id",
    references={"patient_id": "patients"},
    description="Hospital stays and visits.",
    columns=(
        Column("stay_id", required=True, identifier=True),
        Column("patient_id", required=True, identifier=True),
        Column("admission", "datetime", required=True),
        Column("discharge", "datetime"),
        Column("stay_type", required=True, code=True, description="INPATIENT, OUTPATIENT, EMERGENCY"),
        Column("ward"),
    ),
)

DIAGNOSES = Entity(
    name="diagnoses",
    file="diagnoses.csv",
    key="diagnosis_id",
    references={"patient_id": "patients", "stay_id": "stays"},
    description="Coded diagnoses (ICD-10).",
    columns=(
        Column("diagnosis_id", required=True),
        Column("stay_id", required=True, identifier=True),
        Column("patient_id", required=True, identifier=True),
        Column("icd10_code", required=True, code=True),
        Column("diagnosis_date", "date", required=True),
        Column("diagnosis_rank", code=True, description="PRINCIPAL or SECONDARY"),
        Column("description"),
        Column("histology", code=True,
               description="cancers only: ICD-O-3 morphology with behaviour (e.g. 8140/3 adenocarcinoma); the "
                           "topography is the ICD-10 code's site"),
        Column("tnm_t", code=True, description="cancers only: clinical T category, UICC 8th edition (TX, T0, Tis, T1…T4, "
                                               "with a letter when known: T1C)"),
        Column("tnm_n", code=True, description="cancers only: clinical N category (NX, N0…N3)"),
        Column("tnm_m", code=True, description="cancers only: clinical M category (M0, M1, with a letter when known)"),
        Column("stage_group", code=True,
               description="cancers only: UICC/AJCC stage group at diagnosis (0, I, IA, IB, II…, IV, IVB)"),
    ),
)

PROCEDURES = Entity(
    name="procedures",
    file="procedures.csv",
    key="procedure_id",
    references={"patient_id": "patients", "stay_id": "stays"},
    description="Procedures (SNOMED CT codes).",
    columns=(
        Column("procedure_id", required=True),
        Column("stay_id", required=True, identifier=True),
        Column("patient_id", required=True, identifier=True),
        Column("procedure_code", required=True, code=True),
        Column("procedure_date", "datetime", required=True),
        Column("description"),
    ),
)

LABS = Entity(
    name="labs",
    file="labs.csv",
    key="lab_id",
    references={"patient_id": "patients", "stay_id": "stays"},
    description="Laboratory results (LOINC, UCUM units).",
    columns=(
        Column("lab_id", required=True),
        Column("stay_id", required=True, identifier=True),
        Column("patient_id", required=True, identifier=True),
        Column("loinc_code", required=True, code=True),
        Column("value", "float"),
        Column("unit"),
        Column("sampled_at", "datetime", required=True),
        Column("description"),
        Column("value_code", code=True,
               description="a coded result (SNOMED CT), e.g. 77176002 Smoker for the smoking status 72166-2; "
                           "`value` is then empty"),
    ),
)

MEDICATIONS = Entity(
    name="medications",
    file="medications.csv",
    key="medication_id",
    references={"patient_id": "patients", "stay_id": "stays"},
    description="Medication orders (ATC codes).",
    columns=(
        Column("medication_id", required=True),
        Column("stay_id", required=True, identifier=True),
        Column("patient_id", required=True, identifier=True),
        Column("atc_code", required=True, code=True),
        Column("drug_name"),
        Column("dose", "float"),
        Column("dose_unit"),
        Column("route", code=True),
        Column("start_date", "date", required=True),
        Column("end_date", "date"),
    ),
)

NOTES = Entity(
    name="notes",
    file="notes.csv",
    key="note_id",
    references={"patient_id": "patients", "stay_id": "stays"},
    description="Clinical notes (free text in French), one row per note and one line per row.",
    columns=(
        Column("note_id", required=True),
        Column("stay_id", required=True, identifier=True),
        Column("patient_id", required=True, identifier=True),
        Column("note_date", "datetime", required=True, description="when the note was written, during the stay"),
        Column("note_type", description="e.g. Compte-rendu d'hospitalisation, Lettre de sortie"),
        Column("author", identifier=True, description="the doctor who wrote the note"),
        Column(
            "text",
            required=True,
            identifier=True,
            description=(
                "free text that names the patient, relatives and doctors and holds dates, phones, "
                "addresses and national ids: de-identified before it leaves the identifiable zone; "
                "line breaks are written as ' / ' so that one row is one line"
            ),
        ),
    ),
)

ENTITIES: tuple[Entity, ...] = (PATIENTS, STAYS, DIAGNOSES, PROCEDURES, LABS, MEDICATIONS, NOTES)
BY_NAME: dict[str, Entity] = {e.name: e for e in ENTITIES}
REQUIRED_FILES: tuple[str, ...] = ("patients", "stays")


def entity(name: str) -> Entity:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown entity {name!r}; known: {', '.join(BY_NAME)}") from None


def contract_markdown() -> str:
    """docs/hospital-csv.md, generated from this module (a test keeps the file in step)."""
    doc = __doc__ or ""
    lines = [
        "# The hospital-csv extract contract",
        "",
        "Generated from `schemas/extract.py` (`uv run python -m schemas.extract > docs/hospital-csv.md`).",
        "",
        *[ln.strip() for ln in doc.strip().splitlines()[1:]],
        "",
    ]
    for e in ENTITIES:
        lines += [f"## `{e.file}` ({e.name})", "", e.description, "",
                  f"Key: `{e.key}`." + (" References: " + ", ".join(f"`{c}` → {p}" for c, p in e.references.items()) + "."
                                         if e.references else ""),
                  "", "| column | type | required | notes |", "|---|---|---|---|"]
        for c in e.columns:
            notes = "; ".join(x for x in (c.description, "code (trimmed, upper-case)" if c.code else "",
                                          f"default {c.default} when empty or absent" if c.default is not None else "",
                                          "direct identifier" if c.identifier else "") if x)
            lines.append(f"| `{c.name}` | {c.type} | {'yes' if c.required else ''} | {notes} |")
        lines.append("")
    required = ", ".join(f"`{BY_NAME[n].file}`" for n in REQUIRED_FILES)
    lines += [f"Required files: {required}; a missing optional file is reported and its entity is empty.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(contract_markdown(), end="")
