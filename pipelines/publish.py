"""Publishing a release to the data space: atomic, immutable, versioned. No Dagster import.

    dataspace/<dataset>/<version>/omop/<table>/part-0.parquet
    dataspace/<dataset>/<version>/manifest.json
    dataspace/<dataset>/approvals/<version>.json       the approval (beside the version, never inside)
    dataspace/<dataset>/approvals/<version>.rejected.json, <version>.revoked.json   the other decisions
    dataspace/<dataset>/LATEST                          newest approved, non-revoked version

A version is written to a temporary folder, fsynced, then renamed into place; an existing version
is never rewritten. A failure leaves no partial version and LATEST untouched.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow.parquet as pq

from transforms.storage import fs_of, is_remote, scan_parquet_files, sha256_file, url_of

if TYPE_CHECKING:
    from anonymisation.leakscan import Identifiers
    from transforms.vocabulary import Vocabulary, VocabularySubset

VERSION_RE = re.compile(r"^[1-9][0-9]*$")


class PublishError(Exception):
    pass


class LeakError(PublishError):
    """A published text file would hold a direct identifier (the message names files and types only)."""

    def __init__(self, hits: dict[str, dict[str, int]]) -> None:
        from anonymisation.leakscan import describe_where

        self.hits = hits
        super().__init__(f"publishing stopped: identifiers in the release's text files ({describe_where(hits)}); "
                         "nothing was published. Remove them from what the files are made of (the config's release "
                         "title and description, the reports) and run again")


def text_of(path: Path) -> str | None:
    """The content of a text file (UTF-8, no NUL byte), None for a binary one (Parquet, DuckDB)."""
    data = path.read_bytes()
    if b"\x00" in data[:65536]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def scan_text_files(root: Path, identifiers: Identifiers) -> dict[str, dict[str, int]]:
    """Every text file under ``root`` (README.md, manifest.json, metadata, reports, anything text; not
    the Parquet tables, which the release's leak_scan checks cover): path -> identifier type -> lines."""
    from anonymisation.leakscan import LeakScan

    scan = LeakScan(identifiers)
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix != ".parquet":
            text = text_of(p)
            if text is not None:
                if p.suffix in (".json", ".jsonld"):
                    text = unescaped_json(text)
                scan.text(p.relative_to(root).as_posix(), text)
    return scan.hits()


def unescaped_json(text: str) -> str:
    """A JSON text with its ``\\u`` escapes decoded: ``json.dumps`` writes é as ``\\u00e9`` by default,
    which would hide an accented name (``R\\u00c9MY``) from the leak scan. Not JSON: ``text`` as is."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


@dataclass(frozen=True)
class Published:
    dataset: str
    version: int
    path: Path
    manifest: dict[str, Any]


def code_version() -> str:
    try:
        v = version("ds4h")
    except PackageNotFoundError:
        v = "0+unknown"
    head = Path(__file__).resolve().parents[1] / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            ref_file = head.parent / ref[5:]
            ref = ref_file.read_text().strip() if ref_file.exists() else ""
        if ref:
            v += f"+g{ref[:12]}"
    except OSError:
        pass
    return v


def _numbered(dataset_dir: Path) -> list[Path]:
    if not dataset_dir.exists():
        return []
    return [p for p in dataset_dir.iterdir() if p.is_dir() and VERSION_RE.match(p.name)]


def versions(dataset_dir: Path) -> list[int]:
    """The published versions of a dataset: numbered folders with a manifest. A version is written with
    its manifest last (on an object store) or moved into place whole (on disk): a folder without a
    manifest is a publication that did not finish, invisible to readers."""
    return sorted(int(p.name) for p in _numbered(dataset_dir) if (p / "manifest.json").exists())


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fd = os.open(dirpath, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic_text(path: Path, text: str) -> None:
    if is_remote(path):  # one PUT: an object is replaced whole
        path.write_text(text, encoding="utf-8")
        return
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


DATE_COLUMNS = ("visit_start_date", "condition_start_date", "observation_period_start_date", "measurement_date",
                "drug_exposure_start_date", "procedure_date", "observation_date", "note_date", "death_date")


def _sorted(df: pl.DataFrame) -> pl.DataFrame:
    """person_id then the table's main date (then every column, for a total order)."""
    keys = [c for c in ("person_id", *DATE_COLUMNS) if c in df.columns]
    return df.sort([*keys, *[c for c in df.columns if c not in keys]], nulls_last=True) if keys else df


PUBLISH_CHUNK_ROWS = 2_000_000  # a larger table is sorted and written range of person_id by range


def write_sorted(tables: Mapping[str, pl.DataFrame], name: str, target: Path) -> pl.Schema:
    """Write one table sorted (``_sorted``) as one Parquet file. A table read from Parquet parts
    (``tables.files``, e.g. ``LazyTables`` of the release zone) of more than PUBLISH_CHUNK_ROWS rows is
    never whole in memory: it is read range of person_id by range (pseudonymous ids are spread
    evenly; rows without a person_id come last, as ``_sorted`` puts them), each range sorted and
    appended as row groups: the same rows in the same order as one sort of the whole table."""
    files = getattr(tables, "files", None)
    paths = files(name) if callable(files) else []
    if paths:
        lf = scan_parquet_files(paths)
        rows = lf.select(pl.len()).collect().item()
        if rows > PUBLISH_CHUNK_ROWS and "person_id" in lf.collect_schema().names():
            lo, hi = lf.select(pl.col("person_id").min(), pl.col("person_id").max().alias("hi")).collect().row(0)
            if lo is not None and hi is not None:
                return _write_in_ranges(lf, int(lo), int(hi), -(-rows // PUBLISH_CHUNK_ROWS), target)
    df = _sorted(tables[name])
    df.write_parquet(target, compression="zstd", statistics=True, row_group_size=128 * 1024)
    return df.schema


def _write_in_ranges(lf: pl.LazyFrame, lo: int, hi: int, ranges: int, target: Path) -> pl.Schema:
    width = (hi - lo) // ranges + 1
    writer: pq.ParquetWriter | None = None
    schema = lf.collect_schema()
    try:
        for i in range(ranges):
            start = lo + i * width
            inside = pl.col("person_id") >= start
            last = i == ranges - 1
            part = _sorted(lf.filter((inside | pl.col("person_id").is_null()) if last
                                     else inside & (pl.col("person_id") < start + width)).collect())
            table = part.to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(target, table.schema, compression="zstd", write_statistics=True)
            writer.write_table(table, row_group_size=128 * 1024)
            del part, table
    finally:
        if writer is not None:
            writer.close()
    return pl.Schema(schema)


def write_catalog_duckdb(version_dir: Path, tables: list[str]) -> None:
    """catalog.duckdb: one view per table over relative Parquet paths (start DuckDB in the folder)."""
    import duckdb

    target = version_dir / "catalog.duckdb"
    con = duckdb.connect(str(target))
    try:
        # the views keep relative paths; the search path only lets DuckDB bind them now
        con.execute(f"SET file_search_path = '{str(version_dir).replace(chr(39), chr(39) * 2)}'")
        for t in tables:
            con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('omop/{t}/*.parquet')")
    finally:
        con.close()


# the terms of the vocabularies a release may carry rows of (by vocabulary_id); the OMOP-made
# vocabularies (Gender, Visit, Type Concept, ...) are OHDSI's, under the Athena terms only
LICENCE_NOTES = {
    "SNOMED": "SNOMED CT, (c) SNOMED International: its use needs an Affiliate Licence, free of charge in "
              "SNOMED International's member countries (https://www.snomed.org/get-snomed).",
    "LOINC": "This material contains content from LOINC (https://loinc.org). LOINC is copyright (c) Regenstrief "
             "Institute, Inc. and the LOINC Committee and is available at no cost under the license at "
             "https://loinc.org/license.",
    "UCUM": "UCUM, copyright (c) Regenstrief Institute, Inc.: free to use under its terms (https://ucum.org/license).",
    "RxNorm": "RxNorm (US National Library of Medicine): free; some source vocabularies in RxNorm need a UMLS licence "
              "(https://www.nlm.nih.gov/research/umls/rxnorm/).",
    "RxNorm Extension": "RxNorm Extension (OHDSI): free, under the Athena terms.",
    "ICD10": "ICD-10, copyright (c) World Health Organization: its codes and titles may be used under WHO's terms "
             "(https://www.who.int/about/policies/publishing/copyright).",
    "ICD10CM": "ICD-10-CM (US NCHS): public domain in the United States.",
    "ATC": "ATC classification, copyright (c) WHO Collaborating Centre for Drug Statistics Methodology, Oslo: use "
           "is free, not for commercial purposes without its permission (https://atcddd.fhi.no/copyright_disclaimer/).",
    "CVX": "CVX (US CDC): public domain.",
    "CPT4": "CPT, copyright (c) American Medical Association: a licence (through the UMLS) is needed to use it.",
    "OSM": "OpenStreetMap data, (c) OpenStreetMap contributors, under the Open Database License (ODbL).",
}


def used_concept_ids(root: Path, tables: list[str]) -> list[int]:
    """Every value of every ``*_concept_id`` column of the written tables under ``root/omop/`` (read
    back from the Parquet files), sorted."""
    found: set[int] = set()
    for t in tables:
        files = sorted((root / "omop" / t).glob("*.parquet"))
        if not files:
            continue
        lf = pl.scan_parquet(files)
        cols = [c for c in lf.collect_schema().names() if c.endswith("_concept_id")]
        for c in cols:
            found.update(int(v) for v in lf.select(pl.col(c).drop_nulls().unique()).collect()[c].to_list())
    return sorted(found)


def write_vocabulary(root: Path, vocabulary: Vocabulary, tables: list[str],
                     on_file_written: Callable[[Path], None] | None = None) -> VocabularySubset:
    """The vocabulary rows of every concept the written tables use (``release_subset``), written as
    ``omop/<table>/part-0.parquet`` like the other tables, and ``VOCABULARY-LICENCES.md``."""
    from transforms.vocabulary import release_subset

    subset = release_subset(vocabulary, used_concept_ids(root, tables))
    for name, df in subset.tables.items():
        target = root / "omop" / name / "part-0.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        df.write_parquet(target, compression="zstd", statistics=True, row_group_size=128 * 1024)
        if on_file_written is not None:
            on_file_written(target)
    target = root / "VOCABULARY-LICENCES.md"
    target.write_text(vocabulary_licences(vocabulary, subset), encoding="utf-8")
    if on_file_written is not None:
        on_file_written(target)
    return subset


def vocabulary_licences(vocabulary: Vocabulary, subset: VocabularySubset) -> str:
    """VOCABULARY-LICENCES.md: where the vocabulary rows come from and the terms of each vocabulary used."""
    from transforms.vocabulary import BUNDLED, is_bundled

    concept = subset.tables["concept"]
    counts = concept.group_by("vocabulary_id").len().sort("vocabulary_id")
    names: dict[str, tuple[str, str]] = {}
    if "vocabulary" in subset.tables:
        names = {str(r["vocabulary_id"]): (str(r["vocabulary_name"] or ""), str(r["vocabulary_version"] or ""))
                 for r in subset.tables["vocabulary"].iter_rows(named=True)}
    source = ("the demo vocabulary bundled with ds4h (`" + BUNDLED + "`): a small subset of OHDSI's demo vocabulary "
              "(Eunomia; Apache-2.0 as OHDSI distributes it) with a few real concepts added by hand. It keeps the "
              "terms of its source vocabularies and is for demonstration only." if is_bundled(vocabulary) else
              f"the OMOP standardised vocabularies loaded from an Athena download (`{vocabulary.name}`), "
              "https://athena.ohdsi.org: their use is bound by Athena's terms and by each vocabulary's own licence "
              "below; some (e.g. CPT4) need a licence of their own.")
    lines = [
        "# Vocabulary rows in this release and their licences", "",
        f"`omop/concept`, `omop/concept_ancestor`, `omop/concept_relationship` (and `vocabulary`, `domain`, "
        f"`concept_class`, `relationship` where the vocabulary has them) hold the rows of the "
        f"{subset.used:,} concepts this release's tables use and of their ancestors "
        f"({concept.height:,} concepts): enough to name every concept id and to expand or roll it up. "
        f"They come from {source}", "",
        "| vocabulary | name | version | concepts | terms |", "|---|---|---|---:|---|",
    ]
    for vid, n in counts.iter_rows():
        name, ver = names.get(str(vid), ("", vocabulary.versions.get(str(vid)) or ""))
        note = LICENCE_NOTES.get(str(vid), "OMOP vocabulary made by OHDSI: free, under the Athena terms.")
        lines.append(f"| {vid} | {name} | {ver} | {n:,} | {note} |")
    if subset.missing:
        lines += ["", f"{len(subset.missing):,} concept id(s) used in the tables have no row in the vocabulary "
                      f"used: {', '.join(map(str, subset.missing[:20]))}{' ...' if len(subset.missing) > 20 else ''}."]
    return "\n".join(lines) + "\n"


def publish_release(
    dataspace: Path,
    dataset: str,
    tables: Mapping[str, pl.DataFrame],
    manifest_extra: Mapping[str, Any],
    *,
    demo: bool,
    release_meta: Mapping[str, Any] | None = None,
    reports: Mapping[str, str] | None = None,
    created: dt.datetime | None = None,
    on_file_written: Callable[[Path], None] | None = None,
    identifiers: Identifiers | None = None,
    vocabulary: Vocabulary | None = None,
    products: Mapping[str, Path] | None = None,
    scratch: Path | None = None,
) -> Published:
    """Write a new version of ``dataset``: Parquet, reports, README, catalog.duckdb, metadata, manifest.

    ``identifiers``: the known identifiers (the identity zone's): every text file written is
    searched for them before the version is moved into place; a hit raises LeakError and nothing is
    published. ``vocabulary``: the vocabulary the tables were mapped with; the rows of every concept
    they use are published beside them (``write_vocabulary``). ``products``: name -> a folder holding
    the data product's ``product.json`` and Parquet files, published under ``products/<name>/``.
    ``scratch``: a local folder where a version for an object store is built before its upload."""
    from pipelines import metadata
    from pipelines.researcher_readme import researcher_readme

    dataset_dir = dataspace / dataset
    remote = is_remote(dataset_dir)
    dataset_dir.mkdir(parents=True, exist_ok=True)
    existing = [int(p.name) for p in _numbered(dataset_dir)]  # unfinished ones too: never written over
    number = max(existing) + 1 if existing else 1
    final = dataset_dir / str(number)
    if final.exists():
        raise PublishError(f"{final} exists: a published version is never rewritten")
    created = created or dt.datetime.now(dt.UTC).replace(microsecond=0)
    meta = dict(release_meta or {"title": dataset, "description": dataset, "publisher": "ds4h",
                                 "contact_email": "dataspace@example.org", "access_body": "HDAB"})
    # built in a temporary folder beside the versions (renamed into place), or, for an object store, on
    # local scratch and then uploaded (``_upload``: a temporary prefix, the manifest last)
    tmp = (Path(scratch or tempfile.gettempdir()) if remote else dataset_dir) / f".tmp-{number}-{uuid.uuid4().hex}"

    def written(path: Path) -> None:
        if on_file_written is not None:
            on_file_written(path)

    try:
        schemas: dict[str, list[tuple[str, str]]] = {}
        for name in sorted(tables):
            target = tmp / "omop" / name / "part-0.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            schemas[name] = [(c, str(t)) for c, t in write_sorted(tables, name, target).items()]
            written(target)
        if vocabulary is not None:
            subset = write_vocabulary(tmp, vocabulary, sorted(tables), written)
            for name, df in subset.tables.items():
                schemas[name] = [(c, str(t)) for c, t in df.schema.items()]
        product_docs = []
        for pname, folder in sorted((products or {}).items()):
            doc = json.loads((folder / "product.json").read_text(encoding="utf-8"))
            for src in sorted((p for p in folder.rglob("*") if p.is_file()), key=str):
                target = tmp / "products" / pname / Path(*src.relative_to(folder).parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(src.read_bytes())
                written(target)
            product_docs.append({**doc, "path": f"products/{pname}/"})
        for rel, text in sorted((reports or {}).items()):
            target = tmp / "reports" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            written(target)
        write_catalog_duckdb(tmp, sorted(schemas))
        written(tmp / "catalog.duckdb")
        manifest: dict[str, Any] = {
            "dataset": dataset,
            "version": number,
            "created": created.isoformat().replace("+00:00", "Z"),
            "demo": demo,
            **({"notice": "DEMO release made with the demo project key: not for research use"} if demo else {}),
            "code_version": code_version(),
            **manifest_extra,
            **({"products": product_docs} if product_docs else {}),
            "files": [],
        }
        manifest["files"] = _file_entries(tmp)
        info = metadata.facts(tmp, manifest)
        manifest["facts"] = info
        docs = {
            "metadata/healthdcat-ap.jsonld": metadata.healthdcat(manifest, info, meta),
            "metadata/croissant.json": metadata.croissant(manifest, schemas, meta),
        }
        for rel, doc in docs.items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(researcher_readme(manifest, schemas, meta), encoding="utf-8")
        written(tmp / "README.md")
        manifest["files"] = _file_entries(tmp)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if identifiers is not None:
            hits = scan_text_files(tmp, identifiers)
            if hits:
                raise LeakError(hits)
        if remote:
            _upload(tmp, final)
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            _fsync_tree(tmp)
            if final.exists():
                raise PublishError(f"{final} appeared while publishing: refusing to overwrite it")
            os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if demo:
        approve(dataspace, dataset, number, by="demo", demo_ok=True)
    return Published(dataset, number, final, manifest)


def _upload(local: Path, final: Path) -> None:
    """Put a version built in ``local`` at ``final`` on an object store, which has no rename: every file
    but the manifest is uploaded under a temporary prefix (``_incoming/<version>-<random>/``), then copied
    server-side under the version's prefix, and the manifest is written last. Until then the version is
    invisible (``versions`` lists only folders with a manifest); the prefix must be empty to start with."""
    fs = fs_of(final)
    key = url_of(final).removeprefix("s3://").rstrip("/")
    if fs.find(key):
        raise PublishError(f"{final} holds objects already: a published version is never rewritten")
    staging = key.rsplit("/", 1)[0] + f"/_incoming/{final.name}-{uuid.uuid4().hex}"
    files = sorted(p for p in local.rglob("*") if p.is_file() and p.name != "manifest.json")
    try:
        for p in files:
            fs.put_file(str(p), f"{staging}/{p.relative_to(local).as_posix()}")
        for p in files:
            rel = p.relative_to(local).as_posix()
            fs.copy(f"{staging}/{rel}", f"{key}/{rel}")
        fs.put_file(str(local / "manifest.json"), f"{key}/manifest.json")
    finally:
        leftover = fs.find(staging)
        if leftover:
            fs.rm(leftover)
        fs.invalidate_cache()


def _file_entries(root: Path) -> list[dict[str, Any]]:
    entries = []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.name == "manifest.json":
            continue
        rel = p.relative_to(root).as_posix()
        entry: dict[str, Any] = {"path": rel, "bytes": p.stat().st_size, "sha256": sha256_file(p)}
        parts = p.relative_to(root).parts
        if p.suffix == ".parquet":
            if parts[0] == "omop":
                entry["table"] = p.parent.name
            elif parts[0] == "products":
                entry["product"] = parts[1]
            entry["rows"] = pq.ParquetFile(p).metadata.num_rows
        entries.append(entry)
    return entries


DECISIONS = ("approved", "rejected", "revoked")


def _record_path(dataset_dir: Path, number: int, decision: str) -> Path:
    # approvals/<v>.json is the approval (what verify anchors the manifest to); the others sit beside it
    name = f"{number}.json" if decision == "approved" else f"{number}.{decision}.json"
    return dataset_dir / "approvals" / name


def decision_records(dataset_dir: Path, number: int) -> dict[str, dict[str, Any]]:
    """The steward's decisions on one version: decision -> its record."""
    out: dict[str, dict[str, Any]] = {}
    for d in DECISIONS:
        p = _record_path(dataset_dir, number, d)
        if p.exists():
            out[d] = json.loads(p.read_text(encoding="utf-8"))
    return out


def version_state(dataset_dir: Path, number: int) -> str:
    """pending, approved, rejected or revoked (a revoked version was approved, then withdrawn)."""
    records = decision_records(dataset_dir, number)
    for d in ("revoked", "rejected", "approved"):
        if d in records:
            return d
    return "pending"


def latest_version(dataset_dir: Path) -> int | None:
    """The newest approved, non-revoked version (what LATEST names), None when there is none."""
    ok = approved_versions(dataset_dir)
    return ok[-1] if ok else None


def _decide(dataspace: Path, dataset: str, number: int, decision: str, by: str, reason: str | None,
            manifest_path: Path, manifest: dict[str, Any]) -> Path:
    dataset_dir = dataspace / dataset
    (dataset_dir / "approvals").mkdir(exist_ok=True)
    record = {
        "dataset": dataset,
        "version": number,
        "decision": decision,
        "by": by,
        "user": _system_user(),
        "at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "reason": reason,
        "manifest_sha256": sha256_file(manifest_path),
        "demo": bool(manifest.get("demo")),
    }
    target = _record_path(dataset_dir, number, decision)
    write_atomic_text(target, json.dumps(record, indent=2) + "\n")
    latest = latest_version(dataset_dir)
    if latest is None:
        (dataset_dir / "LATEST").unlink(missing_ok=True)
    else:
        write_atomic_text(dataset_dir / "LATEST", f"{latest}\n")
    write_catalog(dataspace)
    return target


def _system_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        return f"uid {os.getuid()}"


def _manifest(dataspace: Path, dataset: str, number: int) -> tuple[Path, dict[str, Any]]:
    path = dataspace / dataset / str(number) / "manifest.json"
    if not path.exists():
        known = versions(dataspace / dataset)
        raise PublishError(f"no release {dataset} version {number} under {dataspace}"
                           + (f"; its versions: {', '.join(map(str, known))}" if known else ""))
    return path, json.loads(path.read_text(encoding="utf-8"))


def approve(dataspace: Path, dataset: str, number: int, by: str, *, reason: str | None = None,
            demo_ok: bool = False) -> Path:
    """Record a steward's approval beside the version and move LATEST to the newest approved one."""
    manifest_path, manifest = _manifest(dataspace, dataset, number)
    if manifest.get("demo") and not demo_ok:
        raise PublishError(f"{dataset} v{number} is a DEMO release: it was approved automatically when published "
                           "(demo project key) and is never offered to the data space; a steward approves the releases "
                           "of real projects")
    state = version_state(dataspace / dataset, number)
    if state != "pending":
        at = decision_records(dataspace / dataset, number)[state].get("at")
        raise PublishError(f"{dataset} v{number} is already {state} ({at}); "
                           + ("publish a new version with 'ds4h run --force' to decide again" if state != "approved"
                              else "nothing to do"))
    return _decide(dataspace, dataset, number, "approved", by, reason, manifest_path, manifest)


def reject(dataspace: Path, dataset: str, number: int, by: str, reason: str) -> Path:
    """Record that a pending version is not to be used; it can never be approved (publish a new one)."""
    manifest_path, manifest = _manifest(dataspace, dataset, number)
    state = version_state(dataspace / dataset, number)
    if state != "pending":
        raise PublishError(f"{dataset} v{number} is {state}, not pending: "
                           + ("revoke it instead ('ds4h revoke')" if state == "approved" else "nothing to do"))
    return _decide(dataspace, dataset, number, "rejected", by, reason, manifest_path, manifest)


def revoke(dataspace: Path, dataset: str, number: int, by: str, reason: str) -> Path:
    """Withdraw an approved version: it leaves the catalogue, cannot be exported, and LATEST moves back."""
    manifest_path, manifest = _manifest(dataspace, dataset, number)
    state = version_state(dataspace / dataset, number)
    if state != "approved":
        raise PublishError(f"{dataset} v{number} is {state}: only an approved version can be revoked"
                           + (" (reject a pending one with 'ds4h reject')" if state == "pending" else ""))
    return _decide(dataspace, dataset, number, "revoked", by, reason, manifest_path, manifest)


def approved_versions(dataset_dir: Path) -> list[int]:
    """Approved and not revoked versions, oldest first (the catalogue, LATEST and the exports use these)."""
    approvals = dataset_dir / "approvals"
    if not approvals.exists():
        return []
    approved = sorted(int(p.stem) for p in approvals.glob("*.json") if VERSION_RE.match(p.stem))
    return [v for v in approved if not _record_path(dataset_dir, v, "revoked").exists()]


def write_catalog(dataspace: Path) -> Path:
    """dataspace/catalog.jsonld: the DCAT catalog of every approved anonymised release (a pseudonymised
    release goes to one permit's secure processing environment and is never listed)."""
    from pipelines import metadata

    entries = []
    for dataset_dir in sorted(p for p in dataspace.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for v in approved_versions(dataset_dir):
            doc = dataset_dir / str(v) / "metadata" / "healthdcat-ap.jsonld"
            manifest = dataset_dir / str(v) / "manifest.json"
            mode = json.loads(manifest.read_text(encoding="utf-8")).get("mode", "anonymised") if manifest.exists() else "?"
            if doc.exists() and mode == "anonymised":
                d = json.loads(doc.read_text(encoding="utf-8"))
                d.pop("@context", None)
                entries.append(d)
    target = dataspace / "catalog.jsonld"
    write_atomic_text(target, json.dumps(metadata.catalog(entries, dt.datetime.now(dt.UTC).replace(microsecond=0)), indent=2) + "\n")
    return target
