"""A larger fhir-bulk site from the shared 13-patient sample: ``python bench/make_fhir_copies.py N OUT``
writes N copies of every per-patient resource (each id of a person resource, and every reference to it,
given a per-copy suffix); Organization, Practitioner, PractitionerRole and Location are written once."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "fhir-r4-bulk-10"
SHARED = ("Organization.", "Practitioner.", "PractitionerRole.", "Location.")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def main(copies: int, out: Path, sample: Path = SAMPLE) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ids = {json.loads(line)["id"] for f in sample.glob("*.ndjson") if not f.name.startswith(SHARED)
           for line in f.read_text(encoding="utf-8").splitlines()}
    for f in sorted(sample.glob("*.ndjson")):
        text = f.read_text(encoding="utf-8")
        with (out / f.name).open("w", encoding="utf-8") as fh:
            if f.name.startswith(SHARED):
                fh.write(text)
                continue
            for j in range(copies):
                def renamed(m: re.Match[str], j: int = j) -> str:
                    return m.group(0)[:-6] + f"{j:06d}" if m.group(0) in ids else m.group(0)
                fh.write(UUID.sub(renamed, text))


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))
