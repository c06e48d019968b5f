"""Publishing a release to the data space: atomic, immutable, versioned. No Dagster import.

    dataspace/<dataset>/<version>/omop/<table>/part-0.parquet
    dataspace/<dataset>/<version>/manifest.json
    dataspace/<dataset>/approvals/<version>.json       (beside the version, never inside)
    dataspace/<dataset>/LATEST                          newest approved version

A version is written to a temporary folder, fsynced, then renamed into place; an existing version
is never rewritten. A failure leaves no partial version and LATEST untouched.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

VERSION_RE = re.compile(r"^[1-9][0-9]*$")


class PublishError(Exception):
    pass


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


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def versions(dataset_dir: Path) -> list[int]:
    if not dataset_dir.exists():
        return []
    return sorted(int(p.name) for p in dataset_dir.iterdir() if p.is_dir() and VERSION_RE.match(p.name))


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
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def publish_release(
    dataspace: Path,
    dataset: str,
    tables: Mapping[str, pl.DataFrame],
    manifest_extra: Mapping[str, Any],
    *,
    demo: bool,
    created: dt.datetime | None = None,
    on_file_written: Callable[[Path], None] | None = None,
) -> Published:
    """Write a new version of ``dataset`` with the given release tables and manifest fields."""
    dataset_dir = dataspace / dataset
    dataset_dir.mkdir(parents=True, exist_ok=True)
    existing = versions(dataset_dir)
    number = (existing[-1] + 1) if existing else 1
    final = dataset_dir / str(number)
    if final.exists():
        raise PublishError(f"{final} exists: a published version is never rewritten")
    created = created or dt.datetime.now(dt.UTC).replace(microsecond=0)
    tmp = dataset_dir / f".tmp-{number}-{uuid.uuid4().hex}"
    try:
        files = []
        for name in sorted(tables):
            df = tables[name]
            target = tmp / "omop" / name / "part-0.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            df.write_parquet(target, compression="zstd", statistics=True, row_group_size=128 * 1024)
            if on_file_written is not None:
                on_file_written(target)
            files.append({
                "path": target.relative_to(tmp).as_posix(),
                "table": name,
                "bytes": target.stat().st_size,
                "rows": pq.ParquetFile(target).metadata.num_rows,
                "sha256": sha256_file(target),
            })
        manifest: dict[str, Any] = {
            "dataset": dataset,
            "version": number,
            "created": created.isoformat().replace("+00:00", "Z"),
            "demo": demo,
            **({"notice": "DEMO release made with the demo project key: not for research use"} if demo else {}),
            "code_version": code_version(),
            **manifest_extra,
            "files": files,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
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


def approve(dataspace: Path, dataset: str, number: int, by: str, *, demo_ok: bool = False) -> Path:
    """Record a steward's approval beside the version and move LATEST to the newest approved one."""
    dataset_dir = dataspace / dataset
    folder = dataset_dir / str(number)
    manifest_path = folder / "manifest.json"
    if not manifest_path.exists():
        raise PublishError(f"no release {dataset} version {number} under {dataspace}")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("demo") and not demo_ok:
        raise PublishError(f"{dataset} v{number} is a DEMO release (demo project key): it cannot be approved")
    approvals = dataset_dir / "approvals"
    approvals.mkdir(exist_ok=True)
    target = approvals / f"{number}.json"
    if target.exists():
        raise PublishError(f"{dataset} v{number} is already approved ({target})")
    record = {
        "dataset": dataset,
        "version": number,
        "by": by,
        "at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "manifest_sha256": sha256_file(manifest_path),
        "demo": bool(manifest.get("demo")),
    }
    write_atomic_text(target, json.dumps(record, indent=2) + "\n")
    approved = sorted(int(p.stem) for p in approvals.glob("*.json") if VERSION_RE.match(p.stem))
    write_atomic_text(dataset_dir / "LATEST", f"{approved[-1]}\n")
    return target
