"""The landing inventory of a site: which files its format reads, which it knows but does not read,
which the source's ``ignore`` globs cover, and which are unexpected.

An unexpected file (not in the contract or the mapping, not covered by ``ignore``) blocks the release:
a renamed ``medications.csv`` would otherwise be silently left out. The generator's ``_truth/`` folder
is exempt. File names are not identifiers: the inventory goes into Dagster metadata, the run
summary and the release manifest (the files read, with size and SHA-256).
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from schemas import omop as cdm
from schemas.config import Source
from schemas.extract import ENTITIES as HOSPITAL_ENTITIES
from schemas.mapping import HospitalMapping, load_mapping
from transforms.storage import sha256_file

EXEMPT_DIRS = ("_truth",)  # the generator's answer key beside its extracts (never read, never published)
# what file managers leave in any folder: never an extract, never worth blocking a release for
SYSTEM_FILES = (".DS_Store", "Thumbs.db", "desktop.ini", "._*", ".~lock.*#")
# Synthea CSV files that ds4h knows but does not read (claims, costs, care plans, imaging, supplies)
SYNTHEA_NOT_READ = ("careplans", "claims", "claims_transactions", "imaging_studies", "patient_expenses",
                    "payer_transitions", "payers", "supplies")


@dataclass
class Inventory:
    site: str
    format: str
    read: list[str] = field(default_factory=list)  # files the format reads (relative to the source folder)
    missing: list[str] = field(default_factory=list)  # optional files the format or mapping expects, absent
    not_read: list[str] = field(default_factory=list)  # files the format knows and leaves aside
    ignored: list[str] = field(default_factory=list)  # unknown files covered by the source's ignore globs
    unexpected: list[str] = field(default_factory=list)  # unknown files: they block the release
    expected: list[str] = field(default_factory=list)  # what the format looks for (for the message)
    checksums: list[dict[str, Any]] = field(default_factory=list)  # the read files: file, bytes, sha256

    def blocking_message(self) -> str | None:
        """One line naming the unexpected files and how to fix it, or None when there are none."""
        if not self.unexpected:
            return None
        names = ", ".join(self.unexpected[:10]) + (f" (and {len(self.unexpected) - 10} more)"
                                                   if len(self.unexpected) > 10 else "")
        hint = f"; it expects {', '.join(self.missing)} (missing)" if self.missing else ""
        example = json.dumps(self.unexpected[:3])
        return (f"{self.site}: {len(self.unexpected)} file(s) in the landing folder that the {self.format} format does "
                f"not read: {names}{hint}. Rename each to a file the format reads, or add it to the source's "
                f"ignore (e.g. ignore: {example}) to leave it out knowingly")

    def metadata(self) -> dict[str, Any]:
        """File names and counts only (Dagster metadata)."""
        return {
            "files_read": len(self.read), "files_missing": len(self.missing), "files_not_read": len(self.not_read),
            "files_ignored": len(self.ignored), "files_unexpected": len(self.unexpected),
            "read": ", ".join(self.read) or "(none)", "missing": ", ".join(self.missing) or "(none)",
            "ignored": ", ".join(self.ignored) or "(none)", "unexpected": ", ".join(self.unexpected) or "(none)",
        }

    def manifest_entry(self) -> dict[str, Any]:
        """What the release manifest says of the site's extract: the files read (with checksums), the
        optional files missing, the files left aside knowingly."""
        return {"site": self.site, "format": self.format, "files": self.checksums, "missing": self.missing,
                "ignored": self.ignored, "not_read": self.not_read}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Inventory:
        data = json.loads(text)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def landing_files(folder: Path) -> list[str]:
    """Every file under ``folder`` (relative POSIX paths, sorted), but the exempt folders'."""
    out = []
    for p in folder.rglob("*"):
        rel = p.relative_to(folder)
        if rel.parts[0] in EXEMPT_DIRS or not p.is_file() or any(fnmatch.fnmatchcase(p.name, g) for g in SYSTEM_FILES):
            continue
        out.append(rel.as_posix())
    return sorted(out)


def _ignored(rel: str, globs: list[str]) -> bool:
    """A glob covers a file by its path or any folder above it (``archive`` covers ``archive/x.csv``)."""
    path = PurePosixPath(rel)
    candidates = [rel, *[p.as_posix() for p in path.parents if p.as_posix() != "."]]
    return any(fnmatch.fnmatchcase(c, g.rstrip("/")) for c in candidates for g in globs)


def _own_files(src: Source) -> set[str]:
    """The source's mapping and STCM files, when they sit in its folder: configuration, not data."""
    out = set()
    for p in (src.mapping, src.stcm):
        if p is not None:
            with contextlib.suppress(ValueError):  # elsewhere: not in the folder
                out.add(p.resolve().relative_to(src.path.resolve()).as_posix())
    return out


def _hospital(files: list[str], mapping: HospitalMapping) -> tuple[list[str], set[str], set[str]]:
    expected = [mapping.file(e.name, e.file) for e in HOSPITAL_ENTITIES]
    return expected, {f for f in files if f in expected}, set()


def _synthea(files: list[str]) -> tuple[list[str], set[str], set[str]]:
    from transforms.adapters.synthea import ENTITIES

    top = [f for f in files if "/" not in f]
    read: set[str] = set()
    for e in ENTITIES:  # as the adapter finds them: the exact name, else the first in any case
        wanted = f"{e.spec.name}.csv"
        hit = wanted if wanted in top else next((f for f in top if f.lower() == wanted), None)
        if hit is not None:
            read.add(hit)
    not_read = {f for f in top if f.lower() in {f"{n}.csv" for n in SYNTHEA_NOT_READ}}
    return [f"{e.spec.name}.csv" for e in ENTITIES], read, not_read


def _fhir(files: list[str]) -> tuple[list[str], set[str], set[str]]:
    read = {f for f in files if "/" not in f and PurePosixPath(f).suffix.lower() in (".ndjson", ".json")}
    return ["*.ndjson", "*.json"], read, set()


def _omop(files: list[str]) -> tuple[list[str], set[str], set[str]]:
    from transforms.adapters.omop_csv import CLINICAL_TABLES, find_table

    top = [f for f in files if "/" not in f]
    read: set[str] = set()
    for t in CLINICAL_TABLES:
        hit = find_table(top, t)
        if hit is not None:
            read.add(hit)
    vocab = {f for f in top if PurePosixPath(f).suffix.lower() in (".csv", ".parquet")
             and PurePosixPath(f).stem.lower() in cdm.VOCABULARY_TABLES}
    return [f"{t}.csv" for t in CLINICAL_TABLES], read, vocab


def landing_inventory(src: Source, missing: list[str] | None = None, checksums: bool = True) -> Inventory:
    """The inventory of one source's folder. ``missing``: the optional files its reader found absent
    (the reader decides, e.g. a FHIR export without Patient resources); ``checksums``: SHA-256 of the
    files read."""
    inv = Inventory(src.site, src.format, missing=sorted(missing or []))
    if not src.path.is_dir():
        return inv
    files = landing_files(src.path)
    if src.format == "hospital-csv":
        expected, read, not_read = _hospital(files, load_mapping(src.mapping))
    elif src.format == "synthea-csv":
        expected, read, not_read = _synthea(files)
    elif src.format == "fhir-bulk":
        expected, read, not_read = _fhir(files)
    else:
        expected, read, not_read = _omop(files)
    not_read |= _own_files(src) - read
    inv.expected = expected
    for f in files:
        if f in read:
            inv.read.append(f)
        elif f in not_read:
            inv.not_read.append(f)
        elif _ignored(f, src.ignore):
            inv.ignored.append(f)
        else:
            inv.unexpected.append(f)
    if checksums:
        inv.checksums = [{"file": f, "bytes": (src.path / f).stat().st_size, "sha256": sha256_file(src.path / f)}
                         for f in inv.read]
    return inv

