"""Long-lived note de-identification workers.

:func:`anonymisation.deid.deidentify_batch` runs the recognisers, spaCy's NER, the patient's known
identifiers and the redaction in the calling process, on one core. :class:`DeidWorkers` runs the
whole of it in worker processes that are started once (``spawn``: fresh interpreters, never forked
from a Dagster process and its threads), each loading the French model once, and that are then fed
chunks of notes for as long as the pool lives (a site's notes pass: its texts and its titles, every
part). Each text's result does not depend on its chunk or on the process that made it, so the output
is the same as in one process, in the same order.

``DS4H_DEID_PROCESSES`` chooses the number of workers (:func:`worker_count`); one means no worker: the
notes are de-identified in the calling process, as before.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import date
from types import TracebackType

__all__ = ["CHUNK", "WORKERS_FROM", "DeidWorkers", "worker_count"]

WORKERS_FROM = 1000  # notes: below this, starting workers (~4 s each, in parallel) costs more than it saves
CHUNK = 250  # notes per task: small enough for steady progress, large enough to amortise pickling

Known = Mapping[str, Sequence[str]]


def worker_count(notes: int) -> int:
    """Worker processes for a notes pass of ``notes`` texts: ``$DS4H_DEID_PROCESSES`` when set (1: none,
    the calling process does the work), else one per core up to two from WORKERS_FROM notes on."""
    env = os.environ.get("DS4H_DEID_PROCESSES", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"DS4H_DEID_PROCESSES must be a whole number >= 1, not {env!r}")
        return int(env)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(2, cores) if notes >= WORKERS_FROM else 1


def _start() -> None:
    """Worker initialiser: one spaCy process per worker (no nested pool), the model loaded now, while
    the parent prepares the first chunks."""
    os.environ["DS4H_DEID_PROCESSES"] = "1"
    from anonymisation import deid

    if deid._SHARED is None:
        deid._SHARED = deid.Deidentifier()


def _run(texts: list[str], knowns: list[Known], offsets: list[int], tagged: list[Collection[date]] | None) -> list[str]:
    from anonymisation.deid import deidentify_batch

    return deidentify_batch(texts, knowns, offsets, tagged)


class DeidWorkers:
    """A pool of ``processes`` spawned de-identification workers; use as a context manager (the workers
    stop on exit). Call it as :func:`deidentify_batch` is called."""

    def __init__(self, processes: int, chunk: int = CHUNK) -> None:
        if processes < 1:
            raise ValueError("at least one worker process")
        self.processes = processes
        self.chunk = chunk
        self._pool = ProcessPoolExecutor(
            max_workers=processes, mp_context=multiprocessing.get_context("spawn"), initializer=_start)

    def __enter__(self) -> DeidWorkers:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __call__(
        self,
        texts: Sequence[str],
        knowns: Sequence[Known],
        offsets: Sequence[int],
        tagged_dates: Sequence[Collection[date]] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[str]:
        """De-identified ``texts`` in order; ``progress(done)`` after each chunk."""
        if not (len(knowns) == len(offsets) == len(texts)) or (tagged_dates is not None and len(tagged_dates) != len(texts)):
            raise ValueError("one known-identifier mapping, offset (and tagged dates) per text")
        futures: list[Future[list[str]]] = []
        for i in range(0, len(texts), self.chunk):
            part = slice(i, i + self.chunk)
            futures.append(self._pool.submit(
                _run, list(texts[part]), list(knowns[part]), list(offsets[part]),
                None if tagged_dates is None else list(tagged_dates[part])))
        out: list[str] = []
        try:
            for f in futures:
                out += f.result()
                if progress is not None:
                    progress(len(out))
        except BrokenProcessPool as e:
            raise RuntimeError(
                "a note de-identification worker stopped (out of memory?): set DS4H_DEID_PROCESSES=1 to "
                "de-identify in one process, or give the machine more memory") from e
        finally:
            for f in futures:
                f.cancel()
        return out
