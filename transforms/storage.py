"""The one storage helper: every path of the workspace goes through here.

Today a local folder; later an fsspec/pyarrow filesystem (S3-compatible). Layout:

    landing/<site>/...                                  extracts as delivered
    lake/<zone>/<table>/site=<site>/part-0.parquet      zones raw, omop, pseudo (hive style); a site run
                                                        in person buckets has one part per bucket
                                                        (part-0.parquet, part-00001.parquet, ...)
    lake/release/<table>/part-0.parquet                 the release, all sites
    lake/identity/patients/site=<site>/part-0.parquet   the identifiable zone's direct identifiers per
                                                        person (folders 0700, files 0600): never an
                                                        asset, never published; read only by the
                                                        pseudonymisation, the leak scans and verify
    lake/identity/pseudonyms/site=<site>/               identity person_id -> pseudonymous person_id
    lake/identity/release/persons/                      the release being built: released person_id ->
                                                        pseudonymous person_id (per permit), date coincidences
    lake/identity/published/<dataset>/<version>/        the same for every published version (for verify)
    quarantine/<stage>/<table>/site=<site>/part-0.parquet
    accounting/<stage>/site=<site>/part-0.parquet       row accounting of a stage and site
    dataspace/<dataset>/<version>/...                   published releases
    dagster/                                            the Dagster instance storage
    reports/                                            reports kept in the workspace
    work/<stage>/site=<site>/                           scratch (person-bucket splits), removed after use
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import polars as pl

ZONES = ("raw", "omop", "pseudo")
PRIVATE_DIR = 0o700  # the identity zone's folders
PRIVATE_FILE = 0o600  # and files


@dataclass(frozen=True, slots=True)
class Workspace:
    root: Path

    @property
    def landing_root(self) -> Path:
        return self.root / "landing"

    def landing(self, site: str) -> Path:
        return self.landing_root / site

    @property
    def dataspace(self) -> Path:
        return self.root / "dataspace"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def vocabulary_root(self) -> Path:
        return self.root / "vocabulary"

    def zone_table(self, zone: str, table: str) -> Path:
        if zone not in (*ZONES, "release"):
            raise ValueError(f"unknown zone {zone!r}")
        return self.root / "lake" / zone / table

    def lake(self, zone: str, table: str, site: str | None = None) -> Path:
        """The folder of one partition (zones raw/omop/pseudo) or of a release table."""
        base = self.zone_table(zone, table)
        if zone == "release":
            return base
        if site is None:
            raise ValueError(f"zone {zone} is partitioned by site: give a site")
        return base / f"site={site}"

    @property
    def identity_root(self) -> Path:
        """The identity zone: direct identifiers, apart from the OMOP zone (which holds CDM tables only)."""
        return self.root / "lake" / "identity"

    @property
    def identity_table(self) -> Path:
        """The identity table, partitioned by site (``site=<site>`` folders)."""
        return self.identity_root / "patients"

    def identity(self, site: str) -> Path:
        """A site's identity partition: OMOP person_id with the person's identifiers (``identity_frame``)."""
        return self.identity_table / f"site={site}"

    @property
    def pseudonyms_table(self) -> Path:
        """Each identity row's pseudonymous person id, partitioned by site (``site=<site>`` folders):
        written by the pseudo stage, read by the leak scans to know whose rows are whose."""
        return self.identity_root / "pseudonyms"

    def pseudonyms(self, site: str) -> Path:
        """A site's pseudonyms partition: person_id (as in the identity and OMOP zones), pseudo_person_id."""
        return self.pseudonyms_table / f"site={site}"

    @property
    def release_persons(self) -> Path:
        """The release being built: its person ids (per permit in a pseudonymised release) with the
        pseudonymous ids they come from, and whether a date of the person fell on the birth date
        by chance (a coincidence of the date shift, not a leak)."""
        return self.identity_root / "release" / "persons"

    def published_persons(self, dataset: str, version: int | str) -> Path:
        """``release_persons`` as they were when version ``version`` of ``dataset`` was published
        (read by ``ds4h verify --workspace``)."""
        return self.identity_root / "published" / dataset / str(version)

    def identity_writer(self, site: str) -> PartitionWriter:
        """A private writer of a site's identity partition; the zone's folders are made mode 0700."""
        return self.private_writer(self.identity(site))

    def private_writer(self, folder: Path) -> PartitionWriter:
        """A private writer of a partition of the identity zone (``folder`` under ``identity_root``):
        every folder from the zone's root down is made mode 0700, every file 0600."""
        rel = folder.relative_to(self.identity_root)  # ValueError outside the identity zone
        parents = [self.identity_root, *[self.identity_root.joinpath(*rel.parts[:n]) for n in range(1, len(rel.parts))]]
        for p in parents:
            p.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
            p.chmod(PRIVATE_DIR)  # mkdir's mode passes through the umask, and an old folder keeps its own
        return PartitionWriter(folder, private=True)

    def drop_legacy_identity(self, site: str) -> None:
        """Remove a site's identity left in the OMOP zone by an older version (``lake/omop/_identity``)."""
        legacy = self.root / "lake" / "omop" / "_identity"
        shutil.rmtree(legacy / f"site={site}", ignore_errors=True)
        if legacy.is_dir() and not any(legacy.iterdir()):
            legacy.rmdir()

    def quarantine(self, stage: str, table: str, site: str) -> Path:
        return self.root / "quarantine" / stage / table / f"site={site}"

    def work(self, stage: str, site: str) -> Path:
        """Scratch space of a stage and site (e.g. an extract split into person buckets); removed after use."""
        return self.root / "work" / stage / f"site={site}"

    def accounting(self, stage: str, site: str) -> Path:
        return self.root / "accounting" / stage / f"site={site}"

    def ensure(self) -> None:
        for p in (self.landing_root, self.dataspace, self.dagster_home, self.reports, self.root / "lake"):
            p.mkdir(parents=True, exist_ok=True)


class PartitionWriter:
    """Write one partition as Parquet parts (``part-0.parquet``, ``part-00001.parquet``, ...: sorted names
    follow the part numbers; e.g. one part per person bucket), then
    replace the old folder atomically with ``commit``: readers never see a half-written partition.
    ``private``: the folder is mode 0700 and every part 0600 from their creation (identifiers)."""

    def __init__(self, folder: Path, *, private: bool = False) -> None:
        self.folder = folder
        self.private = private
        self.tmp = folder.with_name(folder.name + ".tmp")
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(mode=PRIVATE_DIR if private else 0o777)
        if private:
            self.tmp.chmod(PRIVATE_DIR)
        self.parts = 0

    def write(self, df: pl.DataFrame, part: int) -> Path:
        target = self.tmp / f"part-{part}.parquet" if part < 1 else self.tmp / f"part-{part:05d}.parquet"
        if self.private:  # created 0600, so no identifier is ever in a file others may read
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
        df.write_parquet(target, compression="zstd", statistics=True, row_group_size=256_000)
        self.parts += 1
        return target

    def commit(self, schema: pl.Schema | None = None) -> Path:
        """Make the written parts the partition; with no part written, one empty part of ``schema``."""
        if not self.parts and schema is not None:
            self.write(pl.DataFrame(schema=schema), 0)
        old = self.folder.with_name(self.folder.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        if self.folder.exists():
            os.replace(self.folder, old)
        os.replace(self.tmp, self.folder)
        if old.exists():
            shutil.rmtree(old)
        return self.folder


def write_partition(df: pl.DataFrame, folder: Path) -> Path:
    """Replace a partition folder atomically with one Parquet file (zstd, statistics)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    writer = PartitionWriter(folder)
    writer.write(df, 0)
    writer.commit()
    return folder / "part-0.parquet"


def read_partition(folder: Path) -> pl.DataFrame:
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no Parquet under {folder}: materialise the upstream asset first")
    return pl.read_parquet(files)


def scan_partition(folder: Path) -> pl.LazyFrame:
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no Parquet under {folder}: materialise the upstream asset first")
    return pl.scan_parquet(files)


class LazyTables(Mapping[str, pl.DataFrame]):
    """Tables read from their partition folders on each access, never kept: a stage that handles one
    table at a time holds one table in memory, not all of them."""

    def __init__(self, folders: Mapping[str, Path]) -> None:
        self._folders = dict(folders)

    def __getitem__(self, table: str) -> pl.DataFrame:
        return read_partition(self._folders[table])

    def __iter__(self) -> Iterator[str]:
        return iter(self._folders)

    def __len__(self) -> int:
        return len(self._folders)

    def files(self, table: str) -> list[Path]:
        return sorted(self._folders[table].glob("*.parquet"))


def has_partition(folder: Path) -> bool:
    return any(folder.glob("*.parquet"))


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
