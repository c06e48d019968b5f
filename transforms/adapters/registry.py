"""The source formats ds4h reads, selected by a source's ``format`` in the config."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from schemas.config import Source
from schemas.extract import ENTITIES as HOSPITAL_ENTITIES
from schemas.mapping import load_mapping
from transforms.adapters import fhir, omop_csv, synthea
from transforms.adapters.hospital_csv import hospital_to_staging
from transforms.ingest import EntityResult, IngestResult, OrphanEvents, RowChecks, ingest_site

Reader = Callable[[str, Source, dt.date, RowChecks | None, OrphanEvents], IngestResult]
ToStaging = Callable[[dict[str, pl.DataFrame], Source], dict[str, pl.DataFrame]]


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


def _hospital(site: str, src: Source, today: dt.date, checks: RowChecks | None,
              orphan_events: OrphanEvents = "keep") -> IngestResult:
    return ingest_site(site, src.path, src.encoding, src.delimiter, today=today, row_checks=checks,
                       mapping=load_mapping(src.mapping), orphan_events=orphan_events, absent=src.absent)


def _hospital_staging(tables: dict[str, pl.DataFrame], src: Source) -> dict[str, pl.DataFrame]:
    return hospital_to_staging(tables, load_mapping(src.mapping).code_systems)


def _synthea_read(site: str, src: Source, _today: dt.date, _checks: RowChecks | None,
                  orphan_events: OrphanEvents = "keep") -> IngestResult:
    return synthea.read_synthea(site, src.path, orphan_events)


def _fhir_read(site: str, src: Source, _today: dt.date, _checks: RowChecks | None,
               orphan_events: OrphanEvents = "keep") -> IngestResult:
    return fhir.read_fhir(site, src.path, orphan_events)


def _omop_read(site: str, src: Source, _today: dt.date, _checks: RowChecks | None,
               _orphan_events: OrphanEvents = "keep") -> IngestResult:
    return omop_csv.read_omop(site, src.path, src.encoding, src.delimiter)  # its only parent is the person


FORMATS: dict[str, Format] = {
    "hospital-csv": Format("hospital-csv", "", tuple(e.name for e in HOSPITAL_ENTITIES), _hospital, _hospital_staging),
    "synthea-csv": Format(
        "synthea-csv", "synthea_", tuple(e.spec.name for e in synthea.ENTITIES),
        _synthea_read,
        lambda tables, _src: synthea.synthea_to_staging(_as_result(tables)),
    ),
    "fhir-bulk": Format(
        "fhir-bulk", "fhir_", (*fhir.ORDER, "bundle"),
        _fhir_read,
        lambda tables, _src: fhir.fhir_to_staging(_as_result(tables)),
    ),
    "omop-csv": Format(
        "omop-csv", "omop_source_", omop_csv.CLINICAL_TABLES,
        _omop_read,
        None,
    ),
}
