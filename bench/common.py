"""What the benchmarks share: run one command in a fresh process and measure it; record the figures.

The scripts run as ``uv run python bench/<script>.py``, so this folder is on ``sys.path``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "RESULTS.md"


@dataclass(frozen=True)
class Run:
    wall: float  # seconds
    rss_mb: float  # peak resident memory of this one process (MiB)
    code: int
    stdout: str
    stderr: str


def timed(cmd: list[str], *, env: Mapping[str, str] | None = None, check: bool = True) -> Run:
    """Run ``cmd`` from the project root; its own wall time and peak RSS (``wait4``, not the largest
    child so far). Output goes through files, so a talkative child never blocks on a full pipe.
    With ``check``, a failure ends the benchmark with the command's last error lines."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=None if env is None else dict(env), stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        run = Run(wall, usage.ru_maxrss / 1024, code, out.read().decode(errors="replace").strip(),
                  err.read().decode(errors="replace").strip())
    if check and code:
        raise SystemExit(f"failed ({code}): {' '.join(cmd[:4])}: {run.stderr[-800:]}")
    return run


def append_results(text: str) -> None:
    """Append a section to bench/RESULTS.md (created if missing) and print it."""
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nAppended by `make bench`.\n", encoding="utf-8")
    with RESULTS.open("a", encoding="utf-8") as f:
        f.write(text)
    print(text)
