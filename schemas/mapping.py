"""A site's mapping file for the hospital-csv format: how its export differs from the contract.

A second hospital's differently shaped export maps without code changes: file names, column names,
date formats, value codes and code systems are declared in YAML and named by the source's
``mapping`` in the config. Example::

    files: {patients: PATIENTS_EXPORT.csv, stays: SEJOURS.csv}
    columns:
      patients: {patient_id: NO_PATIENT, birth_date: DATE_NAISSANCE, sex: SEXE, death_date: DATE_DECES,
                 death_cause_code: CAUSE_DECES}
      stays: {stay_id: NO_SEJOUR, patient_id: NO_PATIENT, admission: DATE_ENTREE, discharge: DATE_SORTIE, stay_type: TYPE}
    date_formats: ["%d/%m/%Y"]
    datetime_formats: ["%d/%m/%Y %H:%M"]
    values:
      patients: {sex: {"1": M, "2": F}}
      stays: {stay_type: {HOSP: INPATIENT, AMBU: OUTPATIENT, URG: EMERGENCY}}
    code_systems: {diagnoses: ICD10, procedures: SNOMED, labs: LOINC, medications: ATC, patients: ICD10}

``code_systems.patients`` is the code system of the cause of death (``death_cause_code``; ICD-10 unless
it says otherwise): a hospital coding causes in ICD-10-CM, say, declares ``patients: ICD10CM``.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.extract import BY_NAME


class MappingError(Exception):
    """A mapping file that cannot be used; the message names the file, the key and the fix."""


class HospitalMapping(BaseModel):
    model_config = ConfigDict(extra="forbid")
    files: dict[str, str] = Field(default_factory=dict, description="entity -> file name in the landing folder")
    columns: dict[str, dict[str, str]] = Field(default_factory=dict, description="entity -> {contract column: source column}")
    date_formats: list[str] = Field(default_factory=list, description="strptime formats tried before YYYY-MM-DD")
    datetime_formats: list[str] = Field(default_factory=list, description="strptime formats tried before ISO")
    values: dict[str, dict[str, dict[str, str]]] = Field(default_factory=dict, description="entity -> column -> {source: contract}")
    code_systems: dict[str, str] = Field(default_factory=dict, description="entity -> code system of its codes")

    @model_validator(mode="after")
    def _known_names(self) -> HospitalMapping:
        for section in ("files", "columns", "values", "code_systems"):
            for entity in getattr(self, section):
                if entity not in BY_NAME:
                    raise ValueError(f"{section}: unknown entity {entity!r}; entities: {', '.join(BY_NAME)}")
        for section in ("columns", "values"):
            for entity, cols in getattr(self, section).items():
                known = BY_NAME[entity].column_names
                bad = [c for c in cols if c not in known]
                if bad:
                    raise ValueError(f"{section}.{entity}: {', '.join(bad)} not in the contract; columns: {', '.join(known)}")
        return self

    def file(self, entity: str, default: str) -> str:
        return self.files.get(entity, default)

    def source_to_contract(self, entity: str) -> dict[str, str]:
        """source column -> contract column, for renaming a read file."""
        return {src: dst for dst, src in self.columns.get(entity, {}).items()}


def load_mapping(path: Path | None) -> HospitalMapping:
    if path is None:
        return HospitalMapping()
    if not path.exists():
        raise MappingError(f"mapping file {path} does not exist: fix the source's 'mapping' in the config")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return HospitalMapping.model_validate(data)
    except yaml.YAMLError:
        raise MappingError(f"{path} is not valid YAML: fix its syntax") from None
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise MappingError(f"{path}: {where}: {first['msg']}") from None
