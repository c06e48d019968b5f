"""What a release was made from, as one fingerprint: landing files, config, policy files, vocabulary,
code version and key. ``ds4h run`` compares it with the newest version's and publishes nothing when
they are equal ("nothing changed since version N"); ``--force`` publishes anyway. No Dagster import.

Landing files and the small files the config names (mapping, STCM, opt-out registry, hierarchies) are
hashed by content; a loaded vocabulary folder (gigabytes) by file name, size and modification time.
The fingerprint is a SHA-256 of those, never of a value that could identify anyone.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pipelines.publish import code_version, versions
from schemas.config import Config
from transforms.inventory import landing_files as inventory_files
from transforms.storage import sha256_file


def landing_files(config: Config) -> list[tuple[str, Path]]:
    """(site, file) of every file of each source (its folder's, as the landing inventory lists them, or
    the source file itself)."""
    found: list[tuple[str, Path]] = []
    for src in config.sources:
        if src.path.is_file():
            found.append((src.site, src.path))
        elif src.path.is_dir():
            found += [(src.site, src.path / rel) for rel in inventory_files(src.path)]
    return found


def _named_files(config: Config) -> list[Path]:
    registry = config.policy.opt_out_registry
    files: list[Path | None] = [Path(registry) if registry else None]
    for src in config.sources:
        files += [src.mapping, src.stcm]
    files += [Path(q.hierarchy) for q in config.policy.quasi_identifiers if not q.hierarchy.startswith("builtin:")]
    return [p for p in files if p is not None]


def run_inputs(config: Config, key_fingerprint: str) -> dict[str, Any]:
    """The inputs of a run and their fingerprint (``fingerprint``: 64 hex digits)."""
    h = hashlib.sha256()

    def add(label: str, value: str) -> None:
        h.update(f"{label}\x1f{value}\x1e".encode())

    landing = landing_files(config)
    for site, p in landing:
        src = config.source(site)
        rel = p.name if src.path.is_file() else p.relative_to(src.path).as_posix()
        add(f"landing:{site}:{rel}", sha256_file(p))
    add("config", json.dumps(config.model_dump(mode="json"), sort_keys=True))
    for p in _named_files(config):
        add(f"file:{p}", sha256_file(p) if p.is_file() else "absent")
    if not config.vocabulary.startswith("bundled:"):
        root = Path(config.vocabulary)
        for p in sorted(root.rglob("*")) if root.is_dir() else []:
            if p.is_file():
                st = p.stat()
                add(f"vocabulary:{p.relative_to(root).as_posix()}", f"{st.st_size}:{st.st_mtime_ns}")
    code = code_version()
    add("code", code)
    add("key", key_fingerprint)
    return {"fingerprint": h.hexdigest(), "landing_files": len(landing), "code_version": code,
            "key_fingerprint": key_fingerprint}


def unchanged_since(dataspace: Path, dataset: str, fingerprint: str) -> int | None:
    """The newest version of ``dataset`` when it was made from exactly these inputs, else None."""
    numbers = versions(dataspace / dataset)
    if not numbers:
        return None
    manifest = dataspace / dataset / str(numbers[-1]) / "manifest.json"
    try:
        inputs = json.loads(manifest.read_text(encoding="utf-8")).get("inputs", {})
    except (OSError, ValueError):
        return None
    return numbers[-1] if isinstance(inputs, dict) and inputs.get("fingerprint") == fingerprint else None
