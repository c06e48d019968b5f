"""``ds4h verify``: recompute a release's checksums and row counts, check its metadata against its
files, anchor its manifest to the steward's approval, and re-run the leak scan when the
identifiable zone is at hand. No Dagster import; a researcher can run it on a copy."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from transforms.storage import sha256_file

SCAN_BATCH_ROWS = 1_000_000  # rows of a published table the leak scan looks at at once


@dataclass
class Finding:
    check: str
    ok: bool
    detail: str


def verify_release(folder: Path, approval: Path | None = None, workspace: Path | None = None) -> list[Finding]:
    out: list[Finding] = []
    manifest_path = folder / "manifest.json"
    if not manifest_path.exists():
        return [Finding("manifest", False, f"{manifest_path} is missing: is this a release folder?")]
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        return [Finding("manifest", False, f"manifest.json is not valid JSON ({e.msg} at line {e.lineno})")]
    listed = {f["path"]: f for f in manifest.get("files", [])}
    bad = []
    for rel, f in sorted(listed.items()):
        p = folder / rel
        if not p.is_file():
            bad.append(f"{rel}: missing")
            continue
        if p.stat().st_size != f["bytes"]:
            bad.append(f"{rel}: {p.stat().st_size} bytes, manifest says {f['bytes']}")
        elif sha256_file(p) != f["sha256"]:
            bad.append(f"{rel}: sha256 differs from the manifest")
        elif "rows" in f:
            try:
                rows = pq.ParquetFile(p).metadata.num_rows
            except Exception:
                bad.append(f"{rel}: not readable Parquet")
                continue
            if rows != f["rows"]:
                bad.append(f"{rel}: {rows} rows, manifest says {f['rows']}")
    out.append(Finding("files", not bad, "; ".join(bad[:5]) or f"{len(listed)} files: sizes, sha256 and row counts hold"))
    extra = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                   if p.is_file() and p.name != "manifest.json" and p.relative_to(folder).as_posix() not in listed)
    out.append(Finding("no unlisted files", not extra, ", ".join(extra[:5]) or "every file is in the manifest"))
    out.append(_guard("metadata", partial(_check_metadata, folder, manifest, listed)))
    out.append(_guard("approval", partial(_check_approval, folder, manifest_path, manifest, approval)))
    out.append(_guard("decision", partial(_check_withdrawn, folder, manifest)))
    out.append(_guard("k^m", partial(_check_km, folder, manifest)))
    if workspace is not None:
        out.append(_guard("leak scan", partial(_leak_scan, folder, manifest, workspace)))
    return out


def _check_km(folder: Path, manifest: dict[str, object]) -> Finding:
    """Anonymised releases: re-run the audit (anonymisation/audit.py) on the files, alone and joined with
    the sibling versions at hand; pseudonymised ones: report the persons at risk."""
    from anonymisation.audit import audit_release

    policy = manifest.get("policy")
    if not isinstance(policy, dict) or "k" not in policy:
        return Finding("k^m", False, "the manifest names no policy (k): not a ds4h release?")
    k, m = int(policy["k"]), int(policy.get("attacker_facts", 0))
    mode = str(manifest.get("mode", policy.get("mode", "anonymised")))
    earlier: list[Path] = []
    if mode == "anonymised" and folder.name.isdigit():  # the versions it was published after (docs/privacy.md)
        earlier = [p for p in sorted(folder.parent.iterdir(), key=lambda p: p.name.zfill(12))
                   if p.is_dir() and p.name.isdigit() and 0 < int(p.name) < int(folder.name)]
    result = audit_release(folder, k, max(m, 1) if mode != "anonymised" else m, earlier)
    figures = ", ".join(f"{j}: {n}" for j, n in enumerate(result.release.at_risk))
    joint = (f"; joined with versions {', '.join(result.joint.versions[:-1])}: "
             + ", ".join(f"{j}: {n}" for j, n in enumerate(result.joint.check.at_risk))) if result.joint else ""
    if mode != "anonymised":
        return Finding("k^m", True, f"pseudonymised release: persons at risk by facts known {figures} (measured)")
    return Finding("k^m", result.passed, f"k = {k}, m = {m}: persons at risk by facts known {figures}{joint}")


def _guard(name: str, check: Callable[[], Finding]) -> Finding:
    try:
        return check()
    except Exception as e:  # a damaged file must give a finding, not a traceback
        return Finding(name, False, f"could not check: {type(e).__name__}: {str(e).splitlines()[0][:200]}")


def _check_metadata(folder: Path, manifest: dict[str, object], listed: dict[str, dict[str, object]]) -> Finding:
    problems = []
    doc_path = folder / "metadata" / "healthdcat-ap.jsonld"
    if not doc_path.exists():
        return Finding("metadata", False, "metadata/healthdcat-ap.jsonld is missing")
    doc = json.loads(doc_path.read_text(encoding="utf-8"))
    parquet = {f["path"]: f for f in listed.values() if str(f["path"]).endswith(".parquet")}
    for dist in doc.get("dcat:distribution", []):
        rel = str(dist["dcat:accessURL"]["@id"]).rsplit(":", 1)[-1]
        f = parquet.get(rel)
        if f is None:
            problems.append(f"distribution {rel} is not a file of the release")
        elif dist["spdx:checksum"]["spdx:checksumValue"] != f["sha256"] or dist["dcat:byteSize"] != f["bytes"]:
            problems.append(f"distribution {rel} disagrees with the file")
    if len(doc.get("dcat:distribution", [])) != len(parquet):
        problems.append("not one distribution per table")
    total = sum(int(str(f["rows"])) for f in parquet.values())
    if doc.get("healthdcatap:numberOfRecords") != total:
        problems.append(f"numberOfRecords {doc.get('healthdcatap:numberOfRecords')} != {total} rows")
    person = folder / "omop" / "person" / "part-0.parquet"
    if person.exists():
        n = duckdb.connect().execute(f"SELECT count(DISTINCT person_id) FROM read_parquet('{person}')").fetchall()[0][0]
        if doc.get("healthdcatap:numberOfUniqueIndividuals") != n:
            problems.append(f"numberOfUniqueIndividuals {doc.get('healthdcatap:numberOfUniqueIndividuals')} != {n}")
    if doc.get("dct:issued") != manifest.get("created"):
        problems.append("dct:issued is not the manifest's created")
    cro_path = folder / "metadata" / "croissant.json"
    if cro_path.exists():
        cro = json.loads(cro_path.read_text(encoding="utf-8"))
        for fo in cro.get("distribution", []):
            f = parquet.get(fo["contentUrl"])
            if f is None or fo["sha256"] != f["sha256"]:
                problems.append(f"croissant file {fo['contentUrl']} disagrees with the release")
    return Finding("metadata", not problems, "; ".join(problems[:5]) or "HealthDCAT-AP and Croissant agree with the files")


def _check_approval(folder: Path, manifest_path: Path, manifest: dict[str, object], approval: Path | None) -> Finding:
    path = approval or folder.parent / "approvals" / f"{manifest.get('version')}.json"
    if not path.exists():
        return Finding("approval", True, "the manifest is unanchored: no approval record found "
                       "(give one with --approval to check the manifest itself)")
    record = json.loads(path.read_text(encoding="utf-8"))
    ok = record.get("manifest_sha256") == sha256_file(manifest_path)
    by = record.get("by")
    return Finding("approval", ok, f"manifest matches the approval by {by} ({path})" if ok
                   else f"manifest.json differs from the one approved by {by} ({path})")


def _check_withdrawn(folder: Path, manifest: dict[str, object]) -> Finding:
    """A revoked or rejected version is not to be used, however intact its files are."""
    for decision in ("revoked", "rejected"):
        path = folder.parent / "approvals" / f"{manifest.get('version')}.{decision}.json"
        if path.exists():
            record = json.loads(path.read_text(encoding="utf-8"))
            return Finding("decision", False, f"this version was {decision} on {record.get('at')} by "
                           f"{record.get('by')}: {record.get('reason')}; do not use it")
    return Finding("decision", True, "not revoked or rejected")


def _leak_scan(folder: Path, manifest: dict[str, Any], workspace: Path) -> Finding:
    """Every table and text file of the release against the workspace's identity zone: names, birth
    dates and streets in their person's rows (the persons the release was published with, recorded in
    the identity zone; else the pseudonymous ids, or the permit's re-derived with the project key)."""
    import polars as pl

    from anonymisation.leakscan import LeakScan, describe_where, identifiers_from_patients
    from pipelines.environment import open_workspace
    from pipelines.leaks import identity_sites, pseudonymous_identities, release_persons, released_identities
    from pipelines.publish import text_of
    from transforms.storage import has_partition, read_partition

    ws = open_workspace(root=workspace)
    sites = identity_sites(ws)
    if not sites:
        return Finding("leak scan", True, f"skipped: no identifiable zone under {workspace}")
    identities = pseudonymous_identities(ws, sites)
    record = ws.published_persons(str(manifest.get("dataset")), str(manifest.get("version")))
    note = ""
    if has_partition(record):
        persons = read_partition(record)
    elif manifest.get("mode") == "pseudonymised":
        persons = _permit_persons(identities["person_id"], manifest)
        if persons is None:
            persons = release_persons(pl.Series([], dtype=pl.Int64))
            note = (" (persons unknown: no record of this version and no project key; names, birth dates and "
                    "streets were looked for as full names only)")
    else:
        persons = release_persons(identities["person_id"])
    release_meta = manifest.get("config", {}).get("release", {}) if isinstance(manifest.get("config"), dict) else {}
    ids = identifiers_from_patients(released_identities(identities, persons),
                                    allowed_emails=[str(release_meta.get("contact_email", ""))])
    scan = LeakScan(ids)
    for p in sorted(p for p in folder.rglob("*") if p.is_file()):  # listed or not: a stray file is published too
        rel = p.relative_to(folder).as_posix()
        if p.suffix == ".parquet":  # batch by batch: a table of tens of millions of rows is never whole in memory
            for batch in pq.ParquetFile(p).iter_batches(batch_size=SCAN_BATCH_ROWS):
                frame = pl.from_arrow(batch)
                assert isinstance(frame, pl.DataFrame)
                scan.table(rel, frame, p.parent.name)
        elif (text := text_of(p)) is not None:
            scan.text(rel, text)
    if "birth_date_coincidence" in persons.columns:
        scan.explain(persons.filter(pl.col("birth_date_coincidence"))["person_id"].to_list())
    hits = scan.hits()
    return Finding("leak scan", not hits, describe_where(hits) or f"no identifier of {ids.count():,} found{note}")


def _permit_persons(pseudo_ids: Any, manifest: dict[str, Any]) -> Any:
    """The persons of a pseudonymised release re-derived with the project key, or None without it."""
    from anonymisation.keys import KeyError_, load_key
    from pipelines.leaks import release_persons

    permit, project = manifest.get("permit"), manifest.get("project")
    if not permit or not project:
        return None
    try:
        key = load_key(str(project))
    except KeyError_:
        return None
    return release_persons(pseudo_ids, key.secret, str(permit))


class FetchError(Exception):
    pass


def fetch_release(url: str, dest: Path, *, timeout: float = 60.0) -> Path:
    """Copy a release served over HTTP(S) or file:// (its manifest.json, every file it lists, and its
    approval and decision records when the server has them) into ``dest``/<version>, laid out as in
    the data space, and return that folder. Raises FetchError with what to do."""
    import urllib.error
    import urllib.parse
    import urllib.request

    base = url.rstrip("/") + "/"

    def get(rel: str) -> bytes | None:
        target = urllib.parse.urljoin(base, urllib.parse.quote(rel))
        try:
            with urllib.request.urlopen(target, timeout=timeout) as r:
                data: bytes = r.read()
                return data
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise FetchError(f"{target}: HTTP {e.code} {e.reason}") from None
        except FileNotFoundError:
            return None
        except (urllib.error.URLError, OSError) as e:
            raise FetchError(f"{target}: {getattr(e, 'reason', e)}") from None

    raw = get("manifest.json")
    if raw is None:
        raise FetchError(f"no manifest.json at {base}: give the URL of a release folder (…/<dataset>/<version>/)")
    try:
        manifest = json.loads(raw)
        version = int(manifest["version"])
        files = [str(f["path"]) for f in manifest["files"]]
    except (ValueError, KeyError, TypeError):
        raise FetchError(f"{base}manifest.json is not a ds4h release manifest") from None
    folder = dest / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_bytes(raw)
    for rel in files:
        if rel.startswith("/") or ".." in Path(rel).parts:
            raise FetchError(f"the manifest names a file outside the release ({rel!r}): refusing to fetch it")
        data = get(rel)
        if data is not None:  # a missing file is reported by the checksum check
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(data)
    for name in (f"{version}.json", f"{version}.revoked.json", f"{version}.rejected.json"):
        data = get(f"../approvals/{name}")
        if data is not None:
            (dest / "approvals").mkdir(exist_ok=True)
            (dest / "approvals" / name).write_bytes(data)
    return folder
