"""The one storage helper: every path of the workspace goes through here.

A local folder, or (config ``storage:``) an S3-compatible object store for everything but the Dagster
instance, scratch (``work/``), the landing folders and, unless ``storage.identity: object``, the identity
zone. Object-store paths are universal_pathlib ``UPath``s (fsspec's s3fs underneath): they offer the
pathlib calls the code uses (``/``, ``name``, ``glob``, ``exists``, ``open``, ``read_text``/``write_text``),
and are typed ``Path`` for the checker; what pathlib cannot do on a store (rename, chmod, symlinks,
Parquet through polars or DuckDB) goes through the helpers here, which branch on ``is_remote``. Layout:

    landing/<site>/...                                  extracts as delivered
    lake/<zone>/<table>/site=<site>/part-0.parquet      zones raw, omop, pseudo (hive style); a site run
                                                        in person buckets has one part per bucket
                                                        (part-0.parquet, part-00001.parquet, ...)
    lake/release/<table>/part-*.parquet                 the release, all sites (one part per released site part)
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
from typing import Any, cast

import polars as pl

ZONES = ("raw", "omop", "pseudo")
PRIVATE_DIR = 0o700  # the identity zone's folders
PRIVATE_FILE = 0o600  # and files


@dataclass(frozen=True, slots=True)
class ObjectStore:
    """An S3-compatible object store: ``url`` s3://bucket/prefix, ``endpoint_url`` for a non-AWS store.
    Credentials: the AWS environment variables (read by botocore and by polars' object_store)."""

    url: str
    endpoint_url: str | None = None
    region: str = "us-east-1"

    def __post_init__(self) -> None:
        if not self.url.startswith("s3://"):
            raise ValueError(f"object storage must be an s3:// URL, not {self.url!r}")

    def path(self, *parts: str) -> Path:
        """A path of the store (a ``UPath``, typed ``Path``: see the module's docstring)."""
        from upath import UPath

        base = UPath(self.url.rstrip("/"), **({"endpoint_url": self.endpoint_url} if self.endpoint_url else {}),
                     client_kwargs={"region_name": self.region})
        return cast(Path, base.joinpath(*parts) if parts else base)


def is_remote(path: Path) -> bool:
    """Whether ``path`` is on an object store (not a local file)."""
    return not isinstance(path, Path)


def _upath(path: Path) -> Any:
    return cast(Any, path)


def fs_of(path: Path) -> Any:
    """The fsspec filesystem of an object-store path."""
    return _upath(path).fs


def url_of(path: Path) -> str:
    """``s3://bucket/key`` of an object-store path, the path itself (as text) of a local one."""
    return str(path)


def polars_options(path: Path) -> dict[str, str] | None:
    """polars' ``storage_options`` for ``path`` (object_store keys; credentials from the environment)."""
    if not is_remote(path):
        return None
    so = _upath(path).storage_options
    opts = {"aws_region": str(so.get("client_kwargs", {}).get("region_name") or "us-east-1")}
    ep = so.get("endpoint_url")
    if ep:
        opts["aws_endpoint_url"] = str(ep)
        if str(ep).startswith("http://"):
            opts["aws_allow_http"] = "true"
    for env, key in (("AWS_ACCESS_KEY_ID", "aws_access_key_id"), ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
                     ("AWS_SESSION_TOKEN", "aws_session_token")):
        if os.environ.get(env):
            opts[key] = os.environ[env]
    return opts


def read_parquet_files(files: list[Path], columns: list[str] | None = None) -> pl.DataFrame:
    """Parquet files (local or on a store) read as one frame (``columns``: only those)."""
    return scan_parquet_files(files, columns).collect()


def scan_parquet_files(files: list[Path], columns: list[str] | None = None) -> pl.LazyFrame:
    """Parquet files (local or on a store) scanned lazily (``columns``: only those present)."""
    if not files:
        raise FileNotFoundError("no Parquet file to read")
    sources: list[str] | list[Path] = [url_of(f) for f in files] if is_remote(files[0]) else list(files)
    lf = pl.scan_parquet(sources, storage_options=polars_options(files[0]))
    if columns is not None:
        present = lf.collect_schema().names()
        lf = lf.select([c for c in columns if c in present])
    return lf


def parquet_source(file: Path) -> Any:
    """What pyarrow reads a Parquet file from: the path, or an open file of the store."""
    return file.open("rb") if is_remote(file) else file


def parquet_rows(file: Path) -> int:
    """Rows of a Parquet file, from its footer (local or on a store)."""
    import pyarrow.parquet as pq

    source = parquet_source(file)
    try:
        return int(pq.ParquetFile(source).metadata.num_rows)
    finally:
        if not isinstance(source, Path):
            source.close()


def write_parquet_file(df: pl.DataFrame, target: Path, **kwargs: Any) -> None:
    """Write one Parquet file (local or on a store)."""
    if is_remote(target):
        df.write_parquet(url_of(target), storage_options=polars_options(target), **kwargs)
    else:
        df.write_parquet(target, **kwargs)


def remove_tree(path: Path) -> None:
    """Remove a folder (a prefix on a store) and everything under it; nothing if absent."""
    if is_remote(path):
        fs = fs_of(path)
        key = _upath(path).path
        if fs.exists(key):
            fs.rm(key, recursive=True)
        fs.invalidate_cache()
    else:
        shutil.rmtree(path, ignore_errors=True)


def move_tree(src: Path, dst: Path) -> None:
    """Move every object under the prefix ``src`` to the same name under ``dst`` (server-side copies, then
    the sources removed): an object store has no rename."""
    fs = fs_of(src)
    s_key, d_key = _upath(src).path.rstrip("/"), _upath(dst).path.rstrip("/")
    keys = sorted(fs.find(s_key))
    for k in keys:
        fs.copy(k, d_key + k[len(s_key):])
    if keys:
        fs.rm(keys)
    fs.invalidate_cache()


def download_tree(src: Path, dst: Path) -> Path:
    """Copy every object under the prefix ``src`` of a store into the local folder ``dst``; returns ``dst``."""
    fs = fs_of(src)
    key = _upath(src).path.rstrip("/")
    dst.mkdir(parents=True, exist_ok=True)
    for k in sorted(fs.find(key)):
        target = dst.joinpath(*k[len(key) + 1:].split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(k, str(target))
    return dst


@dataclass(frozen=True, slots=True)
class Workspace:
    """The workspace: ``root`` on local disk; with ``store``, the lake, quarantine, accounting, reports and
    data space on the object store (the identity zone too when ``identity_on_store``)."""

    root: Path
    store: ObjectStore | None = None
    identity_on_store: bool = False

    @classmethod
    def open(cls, root: Path, storage: Any = None) -> Workspace:
        """The workspace at ``root`` with the config's ``storage:`` block (``schemas.config.Storage``) if any."""
        if storage is None:
            return cls(root)
        return cls(root, ObjectStore(storage.url, storage.endpoint_url, storage.region),
                   identity_on_store=storage.identity == "object")

    @property
    def shared(self) -> Path:
        """The root of what may live on the object store."""
        return self.store.path() if self.store is not None else self.root

    @property
    def landing_root(self) -> Path:
        return self.root / "landing"

    def landing(self, site: str) -> Path:
        return self.landing_root / site

    @property
    def dataspace(self) -> Path:
        return self.shared / "dataspace"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster"

    @property
    def reports(self) -> Path:
        return self.shared / "reports"

    @property
    def vocabulary_root(self) -> Path:
        return self.root / "vocabulary"

    def zone_table(self, zone: str, table: str) -> Path:
        if zone not in (*ZONES, "release"):
            raise ValueError(f"unknown zone {zone!r}")
        return self.shared / "lake" / zone / table

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
        return (self.shared if self.identity_on_store else self.root) / "lake" / "identity"

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
        every folder from the zone's root down is made mode 0700, every file 0600 (on an object store the
        bucket's policy protects the zone: there are no modes)."""
        if is_remote(folder):
            return PartitionWriter(folder)
        rel = folder.relative_to(self.identity_root)  # ValueError outside the identity zone
        parents = [self.identity_root, *[self.identity_root.joinpath(*rel.parts[:n]) for n in range(1, len(rel.parts))]]
        for p in parents:
            p.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
            p.chmod(PRIVATE_DIR)  # mkdir's mode passes through the umask, and an old folder keeps its own
        return PartitionWriter(folder, private=True)

    def drop_legacy_identity(self, site: str) -> None:
        """Remove a site's identity left in the OMOP zone by an older version (``lake/omop/_identity``)."""
        if self.store is not None:
            return  # a store is new: no older version wrote there
        legacy = self.root / "lake" / "omop" / "_identity"
        shutil.rmtree(legacy / f"site={site}", ignore_errors=True)
        if legacy.is_dir() and not any(legacy.iterdir()):
            legacy.rmdir()

    def quarantine(self, stage: str, table: str, site: str) -> Path:
        return self.shared / "quarantine" / stage / table / f"site={site}"

    @property
    def scratch(self) -> Path:
        """Local scratch (``work/``): always on this machine's disk."""
        return self.root / "work"

    def work(self, stage: str, site: str) -> Path:
        """Scratch space of a stage and site (e.g. an extract split into person buckets); removed after use."""
        return self.root / "work" / stage / f"site={site}"

    def accounting(self, stage: str, site: str) -> Path:
        return self.shared / "accounting" / stage / f"site={site}"

    def ensure(self) -> None:
        for p in (self.landing_root, self.dagster_home, self.root / "lake"):
            p.mkdir(parents=True, exist_ok=True)
        if self.store is None:
            for p in (self.dataspace, self.reports):
                p.mkdir(parents=True, exist_ok=True)


class PartitionWriter:
    """Write one partition as Parquet parts (``part-0.parquet``, ``part-00001.parquet``, ...: sorted names
    follow the part numbers; e.g. one part per person bucket), then
    replace the old folder with ``commit``: locally atomically (a rename), so readers never see a
    half-written partition; on an object store (no rename) the parts are written under ``<name>.tmp/``
    and moved in at commit, the old parts removed first (a stage's run owns its site's partitions).
    ``private``: the folder is mode 0700 and every part 0600 from their creation (identifiers)."""

    def __init__(self, folder: Path, *, private: bool = False) -> None:
        self.folder = folder
        self.private = private
        self.remote = is_remote(folder)
        self.tmp = folder.with_name(folder.name + ".tmp")
        self.parts = 0
        if self.remote:
            remove_tree(self.tmp)
            return
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(mode=PRIVATE_DIR if private else 0o777)
        if private:
            self.tmp.chmod(PRIVATE_DIR)

    def write(self, df: pl.DataFrame, part: int) -> Path:
        target = self.tmp / f"part-{part}.parquet" if part < 1 else self.tmp / f"part-{part:05d}.parquet"
        if self.private and not self.remote:  # created 0600, so no identifier is ever in a file others may read
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
        write_parquet_file(df, target, compression="zstd", statistics=True, row_group_size=256_000)
        self.parts += 1
        return target

    def commit(self, schema: pl.Schema | None = None) -> Path:
        """Make the written parts the partition; with no part written, one empty part of ``schema``."""
        if not self.parts and schema is not None:
            self.write(pl.DataFrame(schema=schema), 0)
        if self.remote:
            remove_tree(self.folder)
            if self.parts:
                move_tree(self.tmp, self.folder)
            return self.folder
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
    """Replace a partition folder with one Parquet file (zstd, statistics)."""
    if not is_remote(folder):
        folder.parent.mkdir(parents=True, exist_ok=True)
    writer = PartitionWriter(folder)
    writer.write(df, 0)
    writer.commit()
    return folder / "part-0.parquet"


def partition_files(folder: Path) -> list[Path]:
    """The Parquet parts of a partition folder, in part order (none if the folder is absent)."""
    if is_remote(folder):
        fs = fs_of(folder)
        key = _upath(folder).path
        try:
            names = sorted(k for k in fs.ls(key, detail=False, refresh=True) if k.endswith(".parquet"))
        except FileNotFoundError:
            return []
        return [folder / k.rsplit("/", 1)[-1] for k in names]
    return sorted(folder.glob("*.parquet"))


def read_partition(folder: Path) -> pl.DataFrame:
    files = partition_files(folder)
    if not files:
        raise FileNotFoundError(f"no Parquet under {folder}: materialise the upstream asset first")
    return read_parquet_files(files)


def scan_partition(folder: Path) -> pl.LazyFrame:
    files = partition_files(folder)
    if not files:
        raise FileNotFoundError(f"no Parquet under {folder}: materialise the upstream asset first")
    return scan_parquet_files(files)


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
        return partition_files(self._folders[table])


def has_partition(folder: Path) -> bool:
    return bool(partition_files(folder))


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
