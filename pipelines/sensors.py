"""A sensor per site: new or changed files in landing/<site>/ re-run that site's partitions."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import dagster as dg

from schemas.config import Config


def landing_fingerprint(folder: Path) -> str:
    """Names, sizes and modification times of the landing files (not their content)."""
    if not folder.is_dir():
        return ""
    entries = sorted(
        (p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
    )
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:16] if entries else ""


def build_landing_sensor(cfg: Config, job: dg.UnresolvedAssetJobDefinition) -> dg.SensorDefinition:
    sources = {s.site: s.path for s in cfg.sources}

    @dg.sensor(name="landing_sensor", job=job, minimum_interval_seconds=30,
               description="Runs a site's raw -> omop -> pseudo partitions when its landing files change.")
    def landing_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        cursor = json.loads(context.cursor) if context.cursor else {}
        requests = []
        for site, folder in sorted(sources.items()):
            fp = landing_fingerprint(folder)
            if fp and cursor.get(site) != fp:
                requests.append(dg.RunRequest(run_key=f"{site}-{fp}", partition_key=site, tags={"ds4h/site": site}))
                cursor[site] = fp
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(cursor, sort_keys=True))

    return landing_sensor
