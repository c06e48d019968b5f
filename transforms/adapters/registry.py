"""The source formats ds4h reads, selected by a source's ``format`` in the config."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from schemas.extract import ENTITIES as HOSPITAL_ENTITIES
from transforms.adapters import fhir, omop_csv, synthea
from transforms.adapters.hospital_csv import hospital_to_staging
from transforms.ingest import EntityResult, IngestResult, RowChecks, ingest_site

Reader = Callable[[str, Path, str, str, dt.date, RowChecks | None], IngestResult]
ToStaging = Callable[[dict[str, pl.DataFrame]], dict[str, pl.DataFrame]]


@dataclass(frozen=True)
class Format:
    name: str
    prefix: str  # raw asset names: raw_<prefix><entity>
    entities: tuple[str, ...]
    read: Reader
    to_staging: ToStaging | None  # None: the raw tables already are OMOP (omop-csv)

    def asset(self, entity: str) -> str:
        return f"raw_{self.prefix}{entity}"


def _as_result(tables: dict[str, pl.DataFrame]) -> IngestResult:
    empty = pl.DataFrame()
    return IngestResult("", {n: EntityResult(n, df.height, df, empty, 0, None) for n, df in tables.items()})


def _hospital(site: str, folder: Path, enc: str, delim: str, today: dt.date, checks: RowChecks | None) -> IngestResult:
    return ingest_site(site, folder, enc, delim, today=today, row_checks=checks)


FORMATS: dict[str, Format] = {
    "hospital-csv": Format("hospital-csv", "", tuple(e.name for e in HOSPITAL_ENTITIES), _hospital, hospital_to_staging),
    "synthea-csv": Format(
        "synthea-csv", "synthea_", tuple(e.spec.name for e in synthea.ENTITIES),
        lambda site, folder, _e, _d, _t, _c: synthea.read_synthea(site, folder),
        lambda tables: synthea.synthea_to_staging(_as_result(tables)),
    ),
    "fhir-bulk": Format(
        "fhir-bulk", "fhir_", (*fhir.ORDER, "bundle"),
        lambda site, folder, _e, _d, _t, _c: fhir.read_fhir(site, folder),
        lambda tables: fhir.fhir_to_staging(_as_result(tables)),
    ),
    "omop-csv": Format(
        "omop-csv", "omop_source_", omop_csv.CLINICAL_TABLES,
        lambda site, folder, enc, delim, _t, _c: omop_csv.read_omop(site, folder, enc, delim),
        None,
    ),
}
