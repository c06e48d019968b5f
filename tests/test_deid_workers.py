"""Long-lived note de-identification workers (issue 19, item 2): spawned once, the whole
de-identification in each, the same output as one process, in order."""

from __future__ import annotations

import multiprocessing
import os
from datetime import date

import pytest

from anonymisation.deid import deidentify_batch
from anonymisation.deid_workers import WORKERS_FROM, DeidWorkers, worker_count
from generator.notes import known_identifiers, make_notes, make_patients


def test_worker_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DS4H_DEID_PROCESSES", raising=False)
    assert worker_count(WORKERS_FROM - 1) == 1  # few notes: no worker to start
    assert worker_count(WORKERS_FROM) == min(2, multiprocessing.cpu_count())
    monkeypatch.setenv("DS4H_DEID_PROCESSES", "1")
    assert worker_count(10**6) == 1
    monkeypatch.setenv("DS4H_DEID_PROCESSES", "3")
    assert worker_count(5) == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("DS4H_DEID_PROCESSES", bad)
        with pytest.raises(ValueError, match="DS4H_DEID_PROCESSES"):
            worker_count(5)


def _pids(workers: DeidWorkers) -> set[int]:
    """The process ids of the workers that answer (several tasks, so that every worker may take one)."""
    return {f.result() for f in [workers._pool.submit(os.getpid) for _ in range(4 * workers.processes)]}


def test_workers_give_the_one_process_output_and_live_across_calls() -> None:
    patients = make_patients(11, 40)
    by_id = {p.patient_id: p for p in patients}
    notes = make_notes(patients, 11, per_patient=2)
    texts = [n.text for n in notes]
    knowns = [known_identifiers(by_id[n.patient_id]) for n in notes]
    offsets = [(i % 30) - 15 for i in range(len(notes))]
    tagged: list[set[date]] = [set() for _ in notes]
    alone = deidentify_batch(texts, knowns, offsets, tagged)
    done: list[int] = []
    with DeidWorkers(2, chunk=7) as workers:  # several chunks per worker
        assert workers._pool._mp_context.get_start_method() == "spawn"  # never forked from the caller
        first = workers(texts, knowns, offsets, tagged, progress=done.append)
        before = _pids(workers)
        again = workers(texts[::-1], knowns[::-1], offsets[::-1], tagged[::-1])
        after = _pids(workers)
    assert first == alone
    assert again == alone[::-1]
    assert done[-1] == len(texts) and done == sorted(done)
    assert len(before | after) <= 2  # the same processes served both calls (the model loaded once each)
    assert any("[NOM]" in t for t in first)


def test_mismatched_lengths_are_refused() -> None:
    with DeidWorkers(1) as workers, pytest.raises(ValueError, match="per text"):
        workers(["a", "b"], [{}], [0, 0])
