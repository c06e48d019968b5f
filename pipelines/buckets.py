"""The site stages processed in person buckets (``transforms/buckets.py``) or, generally, in parts.

Formats whose files can be large (``synthea-csv``, ``hospital-csv``, ``fhir-bulk``) are split once into buckets of about 5,000
patients; the raw stage checks (adapter checks, then the great-expectations suite) and writes each
bucket as one Parquet part of every raw partition, and the OMOP stage harmonises part by part. The
pseudo stage works part by part for every site (a site that was not bucketed has one part). Memory
is bounded by a bucket, not by the site; the results are those of the site in one piece (tested).
No Dagster here: the assets call these functions and record the metadata.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import polars as pl

from anonymisation.leakscan import Identifiers, LeakScan, identifiers_from_patients
from anonymisation.pseudonym import id63_checked, identity_expr
from anonymisation.pseudonymise import (
    DEATH_YEARS,
    NoteDeid,
    OptOuts,
    identity_frame,
    pseudonymise_site,
    pseudonyms,
)
from pipelines.leaks import explain_pseudo_dates, write_private
from schemas import omop as cdm
from schemas.config import Source
from schemas.extract import Entity
from schemas.mapping import load_mapping
from schemas.policy import PrivacyPolicy
from transforms.adapters import FILE, fhir, synthea
from transforms.adapters.hospital_csv import EVENT_ENTITIES, split_hospital
from transforms.adapters.registry import Format
from transforms.contracts import ContractResult, format_suite, merge_contract_results, move_failed_rows
from transforms.contracts import validate_entity as validate_contract
from transforms.ingest import (
    LINE,
    EntityResult,
    IngestResult,
    OrphanEvents,
    RowChecks,
    merge_accounting,
    rejected_keys,
)
from transforms.omop import GLOBAL_TABLES, OMOP_TABLES, OmopResult, harmonise_buckets, parts_accounting
from transforms.staging import Staging
from transforms.storage import (
    PartitionWriter,
    Workspace,
    has_partition,
    parquet_rows,
    partition_files,
    read_parquet_files,
    read_partition,
    write_parquet_file,
)
from transforms.vocabulary import Vocabulary

_QUARANTINE_SCHEMA = pl.Schema({"reason_code": pl.String(), "reason_detail": pl.String(),
                                "source_file": pl.String(), "source_line": pl.Int64()})


BUCKETED_FORMATS = ("synthea-csv", "hospital-csv", "fhir-bulk")
SHARED = {"synthea-csv": synthea.SHARED_ENTITIES, "fhir-bulk": fhir.SHARED_ENTITIES}  # entities read whole, once (one part), per format
Log = Callable[[str], None]


@dataclass
class EntityStats:
    """An entity's row counts summed over buckets (what the raw asset's metadata and checks need)."""

    rows_in: int = 0
    rows_out: int = 0
    deduplicated: int = 0
    file: str | None = None
    by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def quarantined(self) -> int:
        return sum(self.by_reason.values())

    def add(self, er: EntityResult) -> None:
        self.rows_in += er.rows_in
        self.rows_out += er.table.height
        self.deduplicated += er.deduplicated
        self.file = self.file or er.file
        if er.quarantine.height:
            for code, n in er.quarantine.group_by("reason_code").len().iter_rows():
                self.by_reason[code] = self.by_reason.get(code, 0) + n

    @classmethod
    def of(cls, er: EntityResult) -> EntityStats:
        s = cls()
        s.add(er)
        return s


@dataclass
class RawOutcome:
    stats: dict[str, EntityStats]
    contracts: dict[str, ContractResult]
    accounting: pl.DataFrame
    missing_files: list[str]
    buckets: int


def _contract(fmt: Format, er: EntityResult, now: dt.datetime) -> ContractResult | None:
    suite = format_suite(fmt.name, er.entity)
    if suite is None or not er.table.height:
        return None
    cr = validate_contract(er.entity, er.table, suite, now=now)
    move_failed_rows(er, cr)
    return cr.without_rows()  # a bucket's rows are written: keeping them would grow with the site


def raw_in_buckets(site: str, src: Source, fmt: Format, ws: Workspace, now: dt.datetime, log: Log,
                   orphan_events: OrphanEvents = "keep") -> RawOutcome:
    """Split the site's extract, check every bucket and write it as part ``k`` of each raw partition."""
    if fmt.name == "hospital-csv":
        return _raw_hospital(site, src, fmt, ws, now, log, orphan_events)
    if fmt.name == "fhir-bulk":
        return _raw_fhir(site, src, fmt, ws, now, log, orphan_events)
    work = ws.work("raw", site)
    shutil.rmtree(work, ignore_errors=True)
    split = synthea.split_synthea(site, src.path, work, persons_per_bucket=src.persons_per_bucket, progress=log,
                                  orphan_events=orphan_events)
    log(f"{site}: {split.persons:,} patients in {split.buckets} buckets of about "
        f"{-(-split.persons // split.buckets):,}")
    writers = {e: PartitionWriter(ws.lake("raw", f"{fmt.prefix}{e}", site)) for e in fmt.entities}
    quarantine = {e: PartitionWriter(ws.quarantine("raw", f"{fmt.prefix}{e}", site)) for e in fmt.entities}
    stats = {e: EntityStats() for e in fmt.entities}
    contracts: dict[str, list[ContractResult]] = {}
    accounting: list[pl.DataFrame] = []
    for name, er in split.shared.items():  # organizations, providers: checked and written once
        cr = _contract(fmt, er, now)
        if cr is not None:
            contracts.setdefault(name, []).append(cr)
        writers[name].write(er.table, 0)
        quarantine[name].write(er.quarantine, 0)
        stats[name].add(er)
    for k in range(split.buckets):
        raw = synthea.read_synthea_bucket(split, k)
        for name, er in raw.entities.items():
            if name in split.shared:
                continue
            cr = _contract(fmt, er, now)
            if cr is not None:
                contracts.setdefault(name, []).append(cr)
            writers[name].write(er.table, k)  # every bucket writes a part, empty or not: part k = bucket k
            if er.quarantine.height:
                quarantine[name].write(er.quarantine, k)
            stats[name].add(er)
        accounting.append(raw.accounting())
        log(f"{site}: raw bucket {k + 1}/{split.buckets} checked")
    for name in fmt.entities:
        writers[name].commit()
        quarantine[name].commit(_QUARANTINE_SCHEMA)
    shutil.rmtree(work, ignore_errors=True)
    merged = {name: merge_contract_results(parts) for name, parts in contracts.items()}
    return RawOutcome(stats, merged, synthea.bucket_accounting(split, accounting), split.missing_files, split.buckets)


def _raw_hospital(site: str, src: Source, fmt: Format, ws: Workspace, now: dt.datetime, log: Log,
                  orphan_events: OrphanEvents) -> RawOutcome:
    """hospital-csv in person buckets: patients and stays bucket by bucket, then the events.

    A patient and all the rows naming it share a bucket. Stays are checked before any event, so that
    an event naming a stay of another bucket (of another patient) finds it among the valid stays of the
    whole site, or its quarantine reason, as in one piece; duplicate keys across buckets are decided
    over the whole file by the split."""
    work = ws.work("raw", site)
    shutil.rmtree(work, ignore_errors=True)
    split = split_hospital(site, src.path, work, encoding=src.encoding, delimiter=src.delimiter,
                           mapping=load_mapping(src.mapping), today=now.date(),
                           persons_per_bucket=src.persons_per_bucket, progress=log, orphan_events=orphan_events,
                           absent=src.absent)
    log(f"{site}: {split.persons:,} patients in {split.buckets} buckets of about "
        f"{-(-split.persons // split.buckets):,}")
    writers = {e: PartitionWriter(ws.lake("raw", f"{fmt.prefix}{e}", site)) for e in fmt.entities}
    quarantine = {e: PartitionWriter(ws.quarantine("raw", f"{fmt.prefix}{e}", site)) for e in fmt.entities}
    stats = {e: EntityStats() for e in fmt.entities}
    contracts: dict[str, list[ContractResult]] = {}
    accounting: list[pl.DataFrame] = []
    last = split.buckets - 1
    qschema: dict[str, pl.Schema] = {}  # an empty quarantine keeps the entity's columns, as in one piece

    def checks(k: int) -> RowChecks:
        def run(entity: Entity, df: pl.DataFrame) -> pl.DataFrame:
            if not df.height and (k < last or entity.name in contracts):  # an empty bucket says nothing
                return pl.DataFrame(schema={"_line": pl.Int64, "reason_code": pl.String, "reason_detail": pl.String})
            r = validate_contract(entity.name, df, now=now)
            contracts.setdefault(entity.name, []).append(r.without_rows())
            return r.failed_rows.select("_line", "reason_code", "reason_detail")
        return run

    def keep(name: str, k: int, er: EntityResult) -> None:
        writers[name].write(er.table, k)  # every bucket writes a part, empty or not: part k = bucket k
        if er.quarantine.height:
            quarantine[name].write(er.quarantine, k)
        qschema.setdefault(name, er.quarantine.schema)
        stats[name].add(er)

    patients: list[tuple[pl.Series, pl.DataFrame | None]] = []
    stay_keys: list[pl.Series] = []
    stay_quarantine: list[pl.DataFrame] = []
    for k in range(split.buckets):
        p = split.check("patients", k, {}, {}, checks(k))
        pk = p.table["patient_id"]
        s = split.check("stays", k, {"patients": pk},
                        {"patients": p.rejected_keys} if p.rejected_keys is not None else {}, checks(k))
        keep("patients", k, p)
        keep("stays", k, s)
        patients.append((pk, p.rejected_keys))
        stay_keys.append(s.table["stay_id"])
        stay_quarantine.append(s.quarantine.select("stay_id", "source_file", "source_line", "reason_code"))
        accounting.append(IngestResult(site, {"patients": p, "stays": s}).accounting())
        log(f"{site}: raw bucket {k + 1}/{split.buckets}: patients and stays checked")
    all_stays = pl.concat(stay_keys)
    del stay_keys
    stays_rejected = rejected_keys(pl.concat(stay_quarantine), pl.col("stay_id"), pl.col("stay_id"), all_stays)
    for k in range(split.buckets):
        rows = {name: split.rows(name, k) for name in EVENT_ENTITIES}
        stays = all_stays.filter(all_stays.is_in(split.named(rows, "stay_id").implode()))
        pk, prej = patients[k]
        rejected = {"stays": stays_rejected, **({"patients": prej} if prej is not None else {})}
        ers = {name: split.check(name, k, {"patients": pk, "stays": stays}, rejected, checks(k), rows[name])
               for name in EVENT_ENTITIES}
        for name, er in ers.items():
            keep(name, k, er)
        accounting.append(IngestResult(site, dict(ers)).accounting())
        log(f"{site}: raw bucket {k + 1}/{split.buckets}: events checked")
    for name in fmt.entities:
        writers[name].commit()
        quarantine[name].commit(qschema.get(name, _QUARANTINE_SCHEMA))
    shutil.rmtree(work, ignore_errors=True)
    merged = {name: merge_contract_results(parts) for name, parts in contracts.items()}
    return RawOutcome(stats, merged, merge_accounting(accounting), split.missing_files, split.buckets)


class _Parts:
    """The raw partitions of a site written part by part: tables of the format's entities, quarantines
    of every entity read (an empty quarantine keeps the entity's columns, as in one piece)."""

    def __init__(self, fmt: Format, ws: Workspace, site: str, now: dt.datetime) -> None:
        self.fmt, self.ws, self.site, self.now = fmt, ws, site, now
        self.tables: dict[str, PartitionWriter] = {}
        self.quarantines: dict[str, PartitionWriter] = {}
        self.qschema: dict[str, pl.Schema] = {}
        self.stats: dict[str, EntityStats] = {}
        self.contracts: dict[str, list[ContractResult]] = {}
        self.written: dict[str, list[Path]] = {}

    def keep(self, name: str, k: int, er: EntityResult) -> None:
        """Run the format's suite on ``er`` and write it as part ``k`` (the table even when empty)."""
        self.qschema.setdefault(name, er.quarantine.schema)  # the adapter's columns come first
        cr = _contract(self.fmt, er, self.now)
        if cr is not None:
            self.contracts.setdefault(name, []).append(cr)
        if name in self.fmt.entities:
            if name not in self.tables:
                self.tables[name] = PartitionWriter(self.ws.lake("raw", f"{self.fmt.prefix}{name}", self.site))
            self.tables[name].write(er.table, k)
        if name not in self.quarantines:
            self.quarantines[name] = PartitionWriter(self.ws.quarantine("raw", f"{self.fmt.prefix}{name}", self.site))
        if er.quarantine.height:
            self.written.setdefault(name, []).append(self.quarantines[name].write(er.quarantine, k))
        self.stats.setdefault(name, EntityStats()).add(er)

    def _align(self, name: str) -> None:
        """Give every quarantine part of ``name`` the same columns: rows the suite moved carry the typed
        cells, the adapter's rows the source text; a part holding both has the columns of both, as the
        quarantine of the site in one piece has (the adapter's first)."""
        parts = self.written.get(name, [])
        schemas = [read_parquet_files([p]).schema for p in parts]  # quarantine parts: small
        if len({tuple(sc.names()) for sc in schemas}) <= 1:
            return
        union = dict(self.qschema[name])
        for sc in schemas:
            for c, t in sc.items():
                union.setdefault(c, t)
        for p, sc in zip(parts, schemas, strict=True):
            if sc.names() != list(union):
                df = read_parquet_files([p])
                df = df.with_columns([pl.lit(None, t).alias(c) for c, t in union.items() if c not in df.columns])
                write_parquet_file(df.select(list(union)).cast(pl.Schema(union)), p, compression="zstd", statistics=True,
                                   row_group_size=256_000)

    def commit(self) -> dict[str, ContractResult]:
        for w in self.tables.values():
            w.commit()
        for name, w in self.quarantines.items():
            self._align(name)
            w.commit(self.qschema.get(name, _QUARANTINE_SCHEMA))
        return {name: merge_contract_results(parts) for name, parts in self.contracts.items()}


def _raw_fhir(site: str, src: Source, fmt: Format, ws: Workspace, now: dt.datetime, log: Log,
              orphan_events: OrphanEvents) -> RawOutcome:
    """fhir-bulk in person buckets: patients and encounters bucket by bucket, then the other resources.

    Encounters are checked before any event, so that an event naming an encounter of another bucket
    (of another patient) finds it among the site's valid encounters, or its quarantine reason, as in
    one piece; duplicate ids across buckets are decided over the whole site by the split. A folder of
    Bundles is read in one piece (one bucket)."""
    work = ws.work("raw", site)
    shutil.rmtree(work, ignore_errors=True)
    split = fhir.split_fhir(site, src.path, work, persons_per_bucket=src.persons_per_bucket, progress=log,
                            orphan_events=orphan_events)
    out = _Parts(fmt, ws, site, now)
    if split is None:
        log(f"{site}: the folder holds FHIR Bundles (*.json), not only NDJSON bulk files: read in one piece "
            "(one bucket)")
        result = fhir.read_fhir(site, src.path, orphan_events)
        for name, er in result.entities.items():
            out.keep(name, 0, er)
        return RawOutcome(out.stats, out.commit(), result.accounting(), result.missing_files, 1)
    log(f"{site}: {split.persons:,} patients in {split.buckets} buckets of about "
        f"{-(-split.persons // split.buckets):,}")
    accounting: list[pl.DataFrame] = []
    shared = split.read("shared")
    ers = {name: split.check(name, shared.get(name, []), {}, {}) for name in split.entities("shared")}
    for name, er in ers.items():
        out.keep(name, 0, er)  # organizations, practitioners, roles, locations: checked and written once
    accounting.append(IngestResult(site, dict(ers)).accounting())
    seen = set(split.files)
    patients: list[tuple[pl.Series, pl.DataFrame | None]] = []
    enc_keys: list[pl.Series] = []
    enc_quarantine: list[pl.DataFrame] = []
    for k in range(split.buckets):
        rows = split.read("persons", k)
        p = split.check("patient", rows.get("patient", []), {}, {}) if "patient" in seen else None
        valid = {"patient": p.table["id"]} if p is not None else {}
        rejected = {"patient": p.rejected_keys} if p is not None and p.rejected_keys is not None else {}
        e = split.check("encounter", rows.get("encounter", []), valid, rejected) if "encounter" in seen else None
        patients.append((p.table["id"], p.rejected_keys) if p is not None else (pl.Series("id", [], pl.String), None))
        ers = {}
        if p is not None:
            ers["patient"] = p
        if e is not None:
            enc_keys.append(e.table["id"])
            ids = fhir.entity_frame("encounter", rows.get("encounter", [])).select(FILE, LINE, "id")
            enc_quarantine.append(e.quarantine.select("source_file", "source_line", "reason_code").join(
                ids, left_on=["source_file", "source_line"], right_on=[FILE, LINE], how="inner"))
            ers["encounter"] = e
        for name, er in ers.items():  # the suites move rows after the events' parents were taken, as in one piece
            out.keep(name, k, er)
        accounting.append(IngestResult(site, ers).accounting())
        log(f"{site}: raw bucket {k + 1}/{split.buckets}: patients and encounters checked")
    all_enc = pl.concat(enc_keys) if enc_keys else pl.Series("id", [], pl.String)
    del enc_keys
    enc_rejected = rejected_keys(pl.concat(enc_quarantine), pl.col("id"), pl.col("id"), all_enc) \
        if enc_quarantine else None
    del enc_quarantine
    events = split.entities("events")
    for k in range(split.buckets):
        rows = split.read("events", k)
        named = pl.Series("e", sorted({r["encounter"] for rs in rows.values() for r in rs if r.get("encounter")}),
                          pl.String)
        pk, prej = patients[k]
        valid = {**({"patient": pk} if "patient" in seen else {}),
                 **({"encounter": all_enc.filter(all_enc.is_in(named.implode()))} if "encounter" in seen else {})}
        rejected = {**({"patient": prej} if prej is not None else {}),
                    **({"encounter": enc_rejected} if enc_rejected is not None else {})}
        ers = {name: split.check(name, rows.get(name, []), valid, rejected) for name in events}
        for name, er in ers.items():
            out.keep(name, k, er)
        accounting.append(IngestResult(site, ers).accounting())
        log(f"{site}: raw bucket {k + 1}/{split.buckets}: other resources checked")
    contracts = out.commit()
    shutil.rmtree(work, ignore_errors=True)
    return RawOutcome(out.stats, contracts, merge_accounting(accounting), split.missing_files, split.buckets)


def raw_buckets(ws: Workspace, fmt: Format, site: str) -> int:
    """How many buckets the raw stage wrote for the site (the parts of its patients partition; one
    when the site has none)."""
    folder = ws.lake("raw", f"{fmt.prefix}{'patient' if fmt.name == 'fhir-bulk' else 'patients'}", site)
    return len(partition_files(folder)) if has_partition(folder) else 1


def _part(folder: Path, k: int) -> pl.DataFrame:
    """Part ``k`` of a partition (sorted part names follow the part numbers)."""
    return read_parquet_files([partition_files(folder)[k]])


@dataclass
class OmopOutcome:
    result: OmopResult  # site-wide tables, accounting, coverage
    rows: dict[str, int]  # rows written per OMOP table
    files: dict[str, list[Path]]  # the Parquet parts of every OMOP table


def omop_in_buckets(site: str, src: Source, fmt: Format, ws: Workspace, vocab: Vocabulary, log: Log) -> OmopOutcome:
    """Harmonise the raw parts bucket by bucket; write every OMOP table (and the identity, in its own
    zone) as parts."""
    assert fmt.to_staging is not None
    to_staging = fmt.to_staging
    buckets = raw_buckets(ws, fmt, site)
    present = [e for e in fmt.entities if has_partition(ws.lake("raw", f"{fmt.prefix}{e}", site))]
    shared = {e: read_partition(ws.lake("raw", f"{fmt.prefix}{e}", site)) for e in SHARED.get(fmt.name, ())
              if e in present}
    writers = {t: PartitionWriter(ws.lake("omop", t, site)) for t in OMOP_TABLES}
    identity = ws.identity_writer(site)
    rows = dict.fromkeys(OMOP_TABLES, 0)
    current: dict[str, Staging] = {}

    def staged() -> Iterator[Staging]:
        for k in range(buckets):
            raw = {e: shared[e] if e in shared else _part(ws.lake("raw", f"{fmt.prefix}{e}", site), k)
                   for e in present}
            current["stg"] = to_staging(raw, src)
            yield current["stg"]
            log(f"{site}: OMOP bucket {k + 1}/{buckets} harmonised")

    def sink(table: str, k: int, df: pl.DataFrame) -> None:
        writers[table].write(df, k)
        rows[table] += df.height
        if table == "person":
            identity.write(identity_frame(current["stg"]["persons"], df), k)

    result = harmonise_buckets(site, staged(), vocab, sink)
    for t in GLOBAL_TABLES:
        writers[t].write(result.tables[t], 0)
        rows[t] = result.tables[t].height
    for t, w in writers.items():
        w.commit(cdm.table(t).polars_schema)
    identity.commit()
    files = {t: partition_files(ws.lake("omop", t, site)) for t in OMOP_TABLES}
    return OmopOutcome(result, rows, files)


@dataclass
class PseudoOutcome:
    rows: dict[str, int]
    accounting: pl.DataFrame
    opted_out_persons: int
    masked_cells: dict[str, int]
    hits: dict[str, dict[str, int]]  # leak scan: table -> identifier type -> cells
    identifiers: Identifiers
    birth_date_coincidences: int = 0  # Date cells on the person's birth date explained by the date shift


class PseudoOrderError(RuntimeError):
    """The notes pass ran before the structured pass of the same site."""


NOTE_TABLES: Final = ("note",)  # pseudonymised by an asset of their own (``pseudo_note``), after the others
STRUCTURED_TABLES: Final = tuple(t for t in OMOP_TABLES if t not in NOTE_TABLES)


def pseudo_in_parts(site: str, ws: Workspace, secret: bytes, policy: PrivacyPolicy, opt_outs: OptOuts,
                    note_deid: NoteDeid | None, log: Log,
                    tables: Sequence[str] = OMOP_TABLES) -> PseudoOutcome:
    """Pseudonymise ``tables`` of a site part by part (one part, or one per person bucket) and leak-scan
    what it writes.

    Site-wide tables (care sites, providers, cdm_source) go with every part and are written once;
    locations are those any part's persons (or a care site) use. Free text is masked, and the leak scan
    looks, for the identifiers of the whole site: each person's own ones (names, birth date, street)
    in that person's rows, found through the pseudonyms written to the identity zone.

    ``tables``: the structured pass (``STRUCTURED_TABLES``, or every table) writes the pseudonyms and
    the death years; the notes pass (``NOTE_TABLES``) writes only the note table, reading nothing but
    the notes and the identity zone, and adds the persons its dates explain to the pseudonyms' birth-date
    coincidences (it runs after the structured pass). Pseudonyms are keyed values, so each table's ids
    are the same whichever pass writes it."""
    unknown = sorted(set(tables) - set(OMOP_TABLES))
    if unknown:
        raise ValueError(f"not OMOP tables: {', '.join(unknown)}")
    structured = "person" in tables
    parts = len(partition_files(ws.lake("omop", "person", site)))
    identity_all = read_partition(ws.identity(site))
    if parts > 1 and structured:  # each part checks its own persons' ids: check them across parts here
        id63_checked(secret, "person", identity_all.select(identity_expr(site).alias("i")).unique()["i"].to_list())
    # a pass with no row to mask or scan (the notes pass of a site without notes) keys and indexes nobody
    empty = not structured and not any(parquet_rows(f) for t in tables if t not in GLOBAL_TABLES
                                       for f in partition_files(ws.lake("omop", t, site)))
    indexed = identity_all.clear() if empty else identity_all
    pmap = pseudonyms(indexed, site, secret, policy.date_shift_days)
    masking = identifiers_from_patients(indexed)  # free text is masked before ids change
    ids = masking.rekeyed(pmap.select("person_id", new_person_id="pseudo_person_id"))
    scan = LeakScan(ids)
    site_wide = {t: read_partition(ws.lake("omop", t, site)) for t in GLOBAL_TABLES if t in tables}
    writers = {t: PartitionWriter(ws.lake("pseudo", t, site)) for t in tables}
    rows = dict.fromkeys(tables, 0)
    masked: dict[str, int] = {}
    accounting: list[pl.DataFrame] = []
    locations: list[pl.DataFrame] = []
    opted_out = 0
    death_years = PartitionWriter(ws.lake("pseudo", DEATH_YEARS, site)) if structured else None

    def write(t: str, df: pl.DataFrame, k: int) -> None:
        writers[t].write(df, k)
        rows[t] += df.height
        scan.table(t, df)

    for k in range(parts):
        omop = {t: site_wide[t] if t in site_wide else _part(ws.lake("omop", t, site), k) for t in tables}
        identity = _part(ws.identity(site), k)
        r = pseudonymise_site(site, omop, identity, secret, policy, opt_outs, note_deid, identifiers=masking)
        for t, df in r.tables.items():
            if t == "location":
                locations.append(df)
            elif t not in GLOBAL_TABLES or k == 0:
                write(t, df, k)
                if r.masked_cells.get(t):
                    masked[t] = masked.get(t, 0) + r.masked_cells[t]
        if death_years is not None:
            death_years.write(r.death_years, k)
        accounting.append(r.accounting)
        opted_out += r.opted_out_persons
        if parts > 1:
            log(f"{site}: pseudonymised part {k + 1}/{parts}")
    location = pl.concat(locations).unique("location_id", keep="first", maintain_order=True) if locations else None
    if location is not None:
        write("location", location, 0)
    for t, w in writers.items():
        w.commit(cdm.table(t).polars_schema)
    coincidences = explain_pseudo_dates(ws, site, scan, pmap, identity_all)
    if death_years is not None:
        death_years.commit()
        write_private(ws, pmap.select("person_id", "pseudo_person_id", birth_date_coincidence=pl.col("pseudo_person_id")
                                      .is_in(sorted(coincidences))), ws.pseudonyms(site))
    elif coincidences:  # the notes pass: the structured pass wrote the pseudonyms; add the persons it explained
        if not has_partition(ws.pseudonyms(site)):
            raise PseudoOrderError(f"{site}: the pseudonyms are not written yet: pseudonymise the structured tables "
                             "(pseudo) before the notes (pseudo_note)")
        known = read_partition(ws.pseudonyms(site))
        write_private(ws, known.with_columns(birth_date_coincidence=pl.col("birth_date_coincidence")
                                             | pl.col("pseudo_person_id").is_in(sorted(coincidences))), ws.pseudonyms(site))
    accounting_all = parts_accounting("pseudo", site, accounting, location.height if location is not None else None)
    hits = {t: scan.hits().get(t, {}) for t in tables}
    return PseudoOutcome(rows, accounting_all, opted_out, masked, hits, ids, scan.explained_cells)
