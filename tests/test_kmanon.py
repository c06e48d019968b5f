"""The k^m engine on units: checked against a brute-force count of every fact set (plain Python)."""

from __future__ import annotations

import itertools
import os
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anonymisation.kmanon import NONE, Units, enforce_km, persons_at_risk

SETTINGS = settings(max_examples=int(os.environ.get("DS4H_HYPOTHESIS_EXAMPLES", "60")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def person_facts(units: Units, facts: np.ndarray, removed: np.ndarray, dead: set[int],
                 pinned: list[tuple[int, int]]) -> dict[int, set[int]]:
    out: dict[int, set[int]] = {}
    for u in range(len(facts)):
        p = int(units.person[u])
        if removed[u] or p in dead:
            continue
        out.setdefault(p, set()).update(int(f) for f in facts[u] if f >= 0)
    for p, f in pinned:
        if p not in dead:
            out.setdefault(p, set()).add(f)
    return out


def violations(held: dict[int, set[int]], cls: dict[int, int], k: int, m: int) -> int:
    """Persons with a set of 1..m of their facts shared by fewer than k persons of their class."""
    support: Counter[tuple[int, tuple[int, ...]]] = Counter()
    for p, fs in held.items():
        for size in range(1, m + 1):
            for combo in itertools.combinations(sorted(fs), size):
                support[(cls[p], combo)] += 1
    bad = 0
    for p, fs in held.items():
        if any(support[(cls[p], combo)] < k
               for size in range(1, m + 1) for combo in itertools.combinations(sorted(fs), size)):
            bad += 1
    return bad


def on_chain(parent: np.ndarray, start: int, end: int) -> bool:
    f = start
    while f >= 0:
        if f == end:
            return True
        f = int(parent[f])
    return end == NONE


@st.composite
def problems(draw: st.DrawFn) -> tuple[Units, np.ndarray, np.ndarray, int, int, list[tuple[int, int]]]:
    n_persons = draw(st.integers(1, 25))
    n_facts = draw(st.integers(1, 12))
    parent = np.array([draw(st.integers(i + 1, n_facts)) if i + 1 < n_facts and draw(st.booleans()) else NONE
                       for i in range(n_facts)], dtype=np.int64)
    parent[parent >= n_facts] = NONE
    n_classes = draw(st.integers(1, 3))
    cls = np.array([draw(st.integers(0, n_classes - 1)) for _ in range(n_persons)], dtype=np.int64)
    n_units = draw(st.integers(0, 60))
    person = np.array([draw(st.integers(0, n_persons - 1)) for _ in range(n_units)], dtype=np.int64)
    width = 4
    facts = np.full((n_units, width), NONE, dtype=np.int64)
    for u in range(n_units):
        for s in range(width):
            if draw(st.booleans()):
                facts[u, s] = draw(st.integers(0, n_facts - 1))
    removable = np.array([draw(st.booleans()) for _ in range(n_units)], dtype=bool)
    pinned = [(draw(st.integers(0, n_persons - 1)), draw(st.integers(0, n_facts - 1)))
              for _ in range(draw(st.integers(0, 3)))]
    k = draw(st.integers(1, 4))
    m = draw(st.integers(1, 3))
    return Units(person, facts, removable), cls, parent, k, m, pinned


@SETTINGS
@given(problems())
def test_output_is_km_anonymous_and_only_climbs_chains(problem: tuple[Units, np.ndarray, np.ndarray, int, int,
                                                                       list[tuple[int, int]]]) -> None:
    units, cls, parent, k, m, pinned = problem
    pp = np.array([p for p, _ in pinned], dtype=np.int64)
    pf = np.array([f for _, f in pinned], dtype=np.int64)
    r = enforce_km(units, cls, parent, k, m, pinned_person=pp, pinned_fact=pf)
    if pinned and len(units.facts):  # continuing from a result made without the pinned facts ends the same way
        first = enforce_km(units, cls, parent, k, m)
        r2 = enforce_km(units, cls, parent, k, m, pinned_person=pp, pinned_fact=pf, start=first)
        dead2 = {int(p) for p in r2.suppressed_persons}
        held2 = person_facts(units, r2.facts, r2.removed, dead2, pinned)
        assert violations(held2, {p: int(cls[p]) for p in held2}, k, m) == 0
    dead = {int(p) for p in r.suppressed_persons}
    held = person_facts(units, r.facts, r.removed, dead, pinned)
    assert violations(held, {p: int(cls[p]) for p in held}, k, m) == 0
    for u in range(len(units.facts)):
        if r.removed[u]:
            continue
        for s in range(units.facts.shape[1]):
            before, after = int(units.facts[u, s]), int(r.facts[u, s])
            if before < 0:
                assert after == NONE
            else:
                assert on_chain(parent, before, after), (before, after)
    # removed units are removable ones (or belong to suppressed persons)
    for u in np.flatnonzero(r.removed):
        assert units.removable[u] or int(units.person[u]) in dead


def test_rare_fact_climbs_to_a_shared_parent_before_suppression() -> None:
    # class of 4 persons, k = 2: fact 0 (one holder) and fact 1 (one holder) share parent 2
    person = np.array([0, 1, 2, 3], dtype=np.int64)
    facts = np.array([[0, -1, -1], [1, -1, -1], [3, -1, -1], [3, -1, -1]], dtype=np.int64)
    parent = np.array([2, 2, NONE, NONE], dtype=np.int64)
    r = enforce_km(Units(person, facts, np.ones(4, dtype=bool)), np.zeros(4, dtype=np.int64), parent, 2, 1)
    assert r.facts[:, 0].tolist() == [2, 2, 3, 3]
    assert not r.removed.any()


def test_pair_fixed_by_changing_one_fact_of_the_person() -> None:
    # persons 0-2 hold a and b; person 2 also holds c, which person 3 holds too; k = 2
    a, b, c = 0, 1, 2
    person = np.array([0, 0, 1, 1, 2, 2, 2, 3], dtype=np.int64)
    facts = np.array([[a, -1, -1], [b, -1, -1], [a, -1, -1], [b, -1, -1], [a, -1, -1], [b, -1, -1], [c, -1, -1],
                      [c, -1, -1]], dtype=np.int64)
    parent = np.full(3, NONE, dtype=np.int64)
    units = Units(person, facts, np.ones(8, dtype=bool))
    r = enforce_km(units, np.zeros(4, dtype=np.int64), parent, 2, 2)
    # (a, c) and (b, c) are held by person 2 only: person 2 drops c (in both pairs), keeps a and b;
    # c is then held by person 3 alone and goes too
    kept = [(int(units.person[u]), int(f)) for u, f in enumerate(r.facts[:, 0]) if not r.removed[u]]
    assert kept == [(0, a), (0, b), (1, a), (1, b), (2, a), (2, b)]
    assert r.suppressed_persons.size == 0


def test_concept_and_source_go_together() -> None:
    # unit: concept 0 (rare, parent 1), source 2 (common), source concept 4; k = 2
    person = np.array([0, 1, 2], dtype=np.int64)
    facts = np.array([[0, 2, 4], [1, 2, 4], [1, 2, 4]], dtype=np.int64)
    parent = np.array([1, NONE, 3, NONE, NONE], dtype=np.int64)
    r = enforce_km(Units(person, facts, np.ones(3, dtype=bool)), np.zeros(3, dtype=np.int64), parent, 2, 1)
    assert r.facts[0].tolist()[0] == 1
    assert r.facts[0].tolist()[1] != 2  # the exact source does not stay beside a generalised concept
    assert r.facts[0].tolist()[2] == NONE


def test_pinned_only_violation_suppresses_the_person() -> None:
    person = np.array([0, 1], dtype=np.int64)
    facts = np.array([[0, -1, -1], [0, -1, -1]], dtype=np.int64)
    r = enforce_km(Units(person, facts, np.ones(2, dtype=bool)), np.zeros(2, dtype=np.int64),
                   np.full(2, NONE, dtype=np.int64), 2, 1,
                   pinned_person=np.array([1], dtype=np.int64), pinned_fact=np.array([1], dtype=np.int64))
    assert r.suppressed_persons.tolist() == [1]


def test_m_out_of_range() -> None:
    units = Units(np.zeros(0, dtype=np.int64), np.zeros((0, 3), dtype=np.int64), np.zeros(0, dtype=bool))
    with pytest.raises(ValueError, match="attacker_facts"):
        enforce_km(units, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), 5, 4)


@SETTINGS
@given(problems())
def test_persons_at_risk_counts_like_brute_force(problem: tuple[Units, np.ndarray, np.ndarray, int, int,
                                                                list[tuple[int, int]]]) -> None:
    units, cls, _parent, k, m, pinned = problem
    pp = np.array([p for p, _ in pinned], dtype=np.int64)
    pf = np.array([f for _, f in pinned], dtype=np.int64)
    counts = persons_at_risk(units, cls, k, m, pp, pf)
    held = person_facts(units, units.facts, np.zeros(len(units.facts), dtype=bool), set(), pinned)
    everyone = {p: held.get(p, set()) for p in range(len(cls))}
    sizes = Counter(int(c) for c in cls)
    small = {p for p in everyone if sizes[int(cls[p])] < k}
    assert counts[0] == len(small)
    for j in range(1, m + 1):
        # brute force: a person with a set of 1..j facts shared by fewer than k, or in a class below k
        support: Counter[tuple[int, tuple[int, ...]]] = Counter()
        for p, fs in everyone.items():
            for size in range(1, j + 1):
                for combo in itertools.combinations(sorted(fs), size):
                    support[(int(cls[p]), combo)] += 1
        risky = {p for p, fs in everyone.items()
                 if p in small or any(support[(int(cls[p]), c)] < k for size in range(1, j + 1)
                                      for c in itertools.combinations(sorted(fs), size))}
        assert counts[j] == len(risky), j


@SETTINGS
@given(problems())
def test_classes_in_threads_give_the_same_result(problem: tuple[Units, np.ndarray, np.ndarray, int, int,
                                                                 list[tuple[int, int]]],
                                                 ) -> None:
    """Classes on several threads ($DS4H_KM_THREADS, issue 19): the same result as on one."""
    units, cls, parent, k, m, pinned = problem
    pp = np.array([p for p, _ in pinned], dtype=np.int64)
    pf = np.array([f for _, f in pinned], dtype=np.int64)
    results = []
    for threads in ("1", "3"):
        os.environ["DS4H_KM_THREADS"] = threads
        try:
            results.append(enforce_km(units, cls, parent, k, m, pinned_person=pp, pinned_fact=pf))
        finally:
            del os.environ["DS4H_KM_THREADS"]
    one, many = results
    assert np.array_equal(one.facts, many.facts) and np.array_equal(one.removed, many.removed)
    assert np.array_equal(one.suppressed_persons, many.suppressed_persons)
    assert (one.rounds, one.classes, one.stats) == (many.rounds, many.classes, many.stats)


def test_threads_default_to_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from anonymisation import kmanon

    monkeypatch.delenv("DS4H_KM_THREADS", raising=False)
    assert kmanon._workers(50) == 1
    monkeypatch.setenv("DS4H_KM_THREADS", "4")
    assert kmanon._workers(3) == 3
    assert kmanon._workers(50) == 4
