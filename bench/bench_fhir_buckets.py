"""Peak RSS of the fhir-bulk raw and OMOP stages, in one piece or in person buckets, one stage a process:
``python bench/bench_fhir_buckets.py {raw,omop}-{whole,buckets} LANDING HOME PERSONS_PER_BUCKET``
(run raw before omop on the same HOME; LANDING from ``bench/make_fhir_copies.py``)."""

from __future__ import annotations

import datetime as dt
import resource
import sys
import time
from pathlib import Path

from schemas.config import Source
from transforms.adapters.registry import FORMATS
from transforms.storage import Workspace, has_partition, read_partition, write_partition

VOCAB = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "vocabulary-demo")


def main(mode: str, landing: Path, home: Path, per_bucket: int) -> str:
    fmt, ws, site = FORMATS["fhir-bulk"], Workspace(home), "fb"
    src = Source(site=site, format="fhir-bulk", path=landing, persons_per_bucket=per_bucket)
    now = dt.datetime.combine(dt.date.today(), dt.time.max)
    t = time.time()
    if mode == "raw-whole":  # what the raw asset did before: the adapter, the suites, the partitions
        from transforms.contracts import format_suite, move_failed_rows
        from transforms.contracts import validate_entity as validate_contract

        r = fmt.read(site, src, dt.date.today(), None, "keep")
        for name, er in r.entities.items():
            suite = format_suite("fhir-bulk", name)
            if suite is not None and er.table.height:
                move_failed_rows(er, validate_contract(name, er.table, suite, now=now))
            if name in fmt.entities:
                write_partition(er.table, ws.lake("raw", f"{fmt.prefix}{name}", site))
            write_partition(er.quarantine, ws.quarantine("raw", f"{fmt.prefix}{name}", site))
        rows = sum(er.rows_in for er in r.entities.values())
    elif mode == "omop-whole":
        from transforms.omop import harmonise_site
        from transforms.vocabulary import load_vocabulary

        assert fmt.to_staging is not None
        raw = {e: read_partition(ws.lake("raw", f"{fmt.prefix}{e}", site)) for e in fmt.entities
               if has_partition(ws.lake("raw", f"{fmt.prefix}{e}", site))}
        res = harmonise_site(site, fmt.to_staging(raw, src), load_vocabulary(VOCAB))
        for name, df in res.tables.items():
            write_partition(df, ws.lake("omop", name, site))
        rows = sum(df.height for df in res.tables.values())
    elif mode == "raw-buckets":
        from pipelines.buckets import raw_in_buckets

        o = raw_in_buckets(site, src, fmt, ws, now, lambda _m: None)
        rows = sum(s.rows_in for s in o.stats.values())
    else:
        from pipelines.buckets import omop_in_buckets
        from transforms.vocabulary import load_vocabulary

        rows = sum(omop_in_buckets(site, src, fmt, ws, load_vocabulary(VOCAB), lambda _m: None).rows.values())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return f"{mode} {time.time() - t:.1f}s peak {peak:.0f}MB rows {rows}"


if __name__ == "__main__":
    print(main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])))
