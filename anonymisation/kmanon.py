"""k^m-anonymity of the facts of a release, within the classes of the person-level fields.

A *fact* is a distinct (table, column, value) of a person (docs/privacy.md). A release is
k^m-anonymous when every set of at most m facts of a person, together with the person's class (the
combination of every published person-level field), is shared by at least k persons. This module
enforces that on *units*: the distinct fact-carrying tuples of a person's rows (a row of
``condition_occurrence`` is a unit with up to three coded facts, concept, source value and source
concept, plus cell facts such as ``provider_id``). Work is per class (classes are independent), on a
boolean person x fact matrix X of the class: supports are column sums, pair supports X^T X (one
matrix product), triple supports the same conditioned on one fact.

Actions, cheapest first, each moving a fact up its chain (``parent``: a concept's nearest standard
ancestor of the same domain, an ICD-10 or ATC code's shorter code; ``-1`` when nothing is above,
which means suppression):

1. a fact held by fewer than k persons of the class is generalised for every holder in the class
   (local recoding: other classes keep it), repeatedly, until it reaches k or is suppressed;
2. a set of 2..m facts held by fewer than k persons: each person holding a violating set changes ONE
   of its own facts per round, the one in the most violating sets of that person (ties: the least
   supported, then the lowest id), generalised one step for that person only, or suppressed when
   nothing is above it; then everything is recounted.

A concept and its source value go together: a unit whose concept is generalised has its source
value generalised at least one step, and a unit whose source value is generalised loses its source
concept. Suppressing the concept of a *removable* unit (an event row) removes the unit with all its
facts; other units (visits, death causes) keep their row with the fact emptied.

Earlier published versions are *pinned* facts: they count in X, no action can remove them (they are
already out). A violation that only pinned facts can fix suppresses the persons holding it.

Every action moves a fact up a finite chain or removes it, so the loop ends; when it ends, no set of
at most m facts of a person of the class is held by fewer than k persons (``tests/test_kmanon.py``
checks this against brute force).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

IntArray = npt.NDArray[np.signedinteger[Any]]  # int32 where the ids fit (memory at a million patients), else int64
BoolArray = npt.NDArray[np.bool_]
NONE = -1
CONCEPT, SOURCE, SOURCE_CONCEPT = 0, 1, 2  # the coded slots of a unit; slots 3.. are cell facts
MAX_M = 3


@dataclass
class Units:
    """Distinct fact-carrying tuples: ``facts[u, slot]`` is a fact id or ``NONE``."""

    person: IntArray  # (U,) person index
    facts: IntArray  # (U, W) with W >= 3: concept, source value, source concept, then cells
    removable: BoolArray  # (U,) suppressing the concept (or, for an unmapped unit, the source) removes the unit

    def __post_init__(self) -> None:
        if self.facts.ndim != 2 or self.facts.shape[1] < 3:
            raise ValueError("units need at least the three coded slots (concept, source, source concept)")
        if not (len(self.person) == len(self.facts) == len(self.removable)):
            raise ValueError("units: person, facts and removable differ in length")


@dataclass
class KmResult:
    facts: IntArray  # (U, W) fact ids after generalisation/suppression (NONE where emptied)
    removed: BoolArray  # (U,) units removed (their rows go)
    suppressed_persons: IntArray  # person indices that only person suppression could protect
    rounds: int
    classes: int
    stats: dict[str, int] = field(default_factory=dict)


def enforce_km(
    units: Units,
    person_class: IntArray,
    parent: IntArray,
    k: int,
    m: int,
    *,
    pinned_person: IntArray | None = None,
    pinned_fact: IntArray | None = None,
    start: KmResult | None = None,
    reuse_start: bool = False,
) -> KmResult:
    """Make the units' facts k^m-anonymous within the classes of ``person_class`` (see the module doc).

    ``person_class[p]``: class of person p (persons are 0..P-1; -1: a suppressed person, whose units are
    left as they are and not removed); ``parent[f]``: the fact above f, or
    ``NONE``. ``pinned_person``/``pinned_fact``: facts of earlier published versions (kept as they are).
    ``start``: an earlier result on the same units to continue from (its moves and removals stand);
    ``reuse_start``: change its arrays in place instead of copying them (the caller drops ``start``).
    """
    if not 0 <= m <= MAX_M:
        raise ValueError(f"attacker_facts (m) must be between 0 and {MAX_M}: the cost grows as facts^m")
    if k < 1:
        raise ValueError("k must be at least 1")
    if start is None:
        facts, removed = units.facts.copy(), np.zeros(len(units.facts), dtype=bool)
    elif reuse_start:
        facts, removed = start.facts, start.removed
    else:
        facts, removed = start.facts.copy(), start.removed.copy()
    stats = {"generalised_classwide": 0, "generalised_local": 0, "suppressed_local": 0}
    if m == 0 or (len(facts) == 0 and pinned_person is None):
        return KmResult(facts, removed, np.zeros(0, dtype=np.int64), 0, 0, stats)
    pin_p = pinned_person if pinned_person is not None else np.zeros(0, dtype=np.int64)
    pin_f = pinned_fact if pinned_fact is not None else np.zeros(0, dtype=np.int64)
    unit_class = person_class[units.person]
    order = np.argsort(unit_class, kind="stable")
    u_bounds = _bounds(unit_class[order])
    pin_class = person_class[pin_p] if len(pin_p) else np.zeros(0, dtype=np.int64)
    pin_order = np.argsort(pin_class, kind="stable")
    p_bounds = _bounds(pin_class[pin_order])
    dead: list[IntArray] = []
    rounds = 0
    classes = sorted(c for c in set(u_bounds) | set(p_bounds) if c >= 0)  # class -1: suppressed persons, left as they are

    def one_class(c: int) -> tuple[IntArray, IntArray, BoolArray, IntArray, int, dict[str, int]]:
        ua, ub = u_bounds.get(c, (0, 0))
        idx = order[ua:ub]
        pa, pb = p_bounds.get(c, (0, 0))
        pidx = pin_order[pa:pb]
        own = dict.fromkeys(stats, 0)
        sub = _Class(facts[idx], units.facts[idx], units.person[idx], units.removable[idx],
                     pin_p[pidx], pin_f[pidx], parent, k, m, own, removed[idx])
        n_rounds = sub.run()
        return idx, sub.global_facts, sub.removed, sub.dead_persons, n_rounds, own

    limits = threadpool_limits(1, user_api="blas")  # small products: BLAS threads only contend
    workers = _workers(len(classes))
    # classes are independent: each reads and writes its own units only, so the result is the same in
    # any order; results are applied in class order
    with ThreadPoolExecutor(workers) if workers > 1 else nullcontext() as pool:
        done = pool.map(one_class, classes) if pool is not None else map(one_class, classes)
        for idx, class_facts, class_removed, class_dead, n_rounds, own in done:
            facts[idx] = class_facts
            removed[idx] = class_removed
            if class_dead.size:
                dead.append(class_dead)
            rounds += n_rounds
            for key, value in own.items():
                stats[key] += value
    limits.restore_original_limits()
    if workers > 1:
        _release_thread_memory()
    if start is not None:
        dead.append(start.suppressed_persons)
    gone = np.unique(np.concatenate(dead)) if dead else np.zeros(0, dtype=np.int64)
    if gone.size:
        removed |= np.isin(units.person, gone)
    return KmResult(facts, removed, gone.astype(np.int64), rounds, len(classes), stats)


def _workers(n_classes: int) -> int:
    """Threads for the classes: one unless ``$DS4H_KM_THREADS`` says more. Two threads took the main call
    of a 100,000-patient release from 7.4 to 4.7 s (numpy's matrix work releases the GIL) but raised the
    release stage's peak RSS by 90-140 MB (glibc's per-thread arenas, trimmed after the classes), and
    the issue caps peak RSS: opt in where memory is plentiful."""
    env = os.environ.get("DS4H_KM_THREADS")
    if env and env.isdigit():
        return max(1, min(int(env), n_classes))
    return 1


def _release_thread_memory() -> None:
    """Hand the memory the worker threads freed back to the system: glibc keeps each thread's freed
    blocks in its own arena (+170 MB of peak RSS over a 100,000-patient release without this)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return
    trim(0)


def _bounds(sorted_keys: IntArray) -> dict[int, tuple[int, int]]:
    if len(sorted_keys) == 0:
        return {}
    cuts = np.flatnonzero(np.diff(sorted_keys)) + 1
    starts = np.concatenate([[0], cuts])
    ends = np.concatenate([cuts, [len(sorted_keys)]])
    return {int(sorted_keys[a]): (int(a), int(b)) for a, b in zip(starts, ends, strict=True)}


def _any_row(cells: BoolArray) -> BoolArray:
    """``cells.any(axis=1)`` for a narrow matrix (a few slots per unit): a pass per column is ~5x faster
    than numpy's reduction along the short axis."""
    out = cells[:, 0].copy()
    for j in range(1, cells.shape[1]):
        out |= cells[:, j]
    return out


class _Class:
    """The units and pinned facts of one class, and the loop that fixes them.

    Facts are renumbered locally (the facts of the class and every fact up their chains); a count
    matrix (persons x facts: how many live unit cells of the person hold the fact) is kept up to date
    as cells move, so each round only recomputes supports and co-occurrences."""

    def __init__(self, cur: IntArray, orig: IntArray, person: IntArray, removable: BoolArray,
                 pin_p: IntArray, pin_f: IntArray, parent: IntArray, k: int, m: int,
                 stats: dict[str, int], removed: BoolArray | None = None) -> None:
        base = np.unique(np.concatenate([orig[orig >= 0], cur[cur >= 0], pin_f]))
        universe = [base]
        frontier = parent[base]
        frontier = np.unique(frontier[frontier >= 0])
        seen = base
        while frontier.size:
            new = np.setdiff1d(frontier, seen, assume_unique=True)
            if not new.size:
                break
            universe.append(new)
            seen = np.union1d(seen, new)
            up = parent[new]
            frontier = np.unique(up[up >= 0])
        self.fl = np.unique(np.concatenate(universe)).astype(np.int64)  # local -> global fact id
        gp = parent[self.fl]
        self.lparent = np.where(gp >= 0, np.searchsorted(self.fl, np.maximum(gp, 0)), NONE).astype(np.int64)
        self.orig = self._local(orig)
        self.cur = self._local(cur)
        persons, pl = np.unique(np.concatenate([person, pin_p]), return_inverse=True)
        self.persons = persons
        self.upl = pl[: len(person)].astype(np.int64)
        n, nf = len(persons), len(self.fl)
        self.xp = np.zeros((n, nf), dtype=bool)
        if len(pin_p):
            self.xp[pl[len(person):], np.searchsorted(self.fl, pin_f)] = True
        self.removable = removable
        self.removed = np.zeros(len(cur), dtype=bool) if removed is None else removed.copy()
        self.cur[self.removed] = NONE
        self.counts = np.zeros((n, nf), dtype=np.int32)
        self._count(self.cur, 1)
        self.dead = np.zeros(n, dtype=bool)
        self.k, self.m = k, m
        self.stats = stats

    def _local(self, a: IntArray) -> IntArray:
        out = np.full(a.shape, NONE, dtype=np.int64)
        held = a >= 0
        out[held] = np.searchsorted(self.fl, a[held])
        return out

    def _count(self, cells: IntArray, sign: int, rows: IntArray | None = None) -> None:
        r = np.arange(len(cells)) if rows is None else rows
        held = cells >= 0
        np.add.at(self.counts, (np.broadcast_to(self.upl[r][:, None], cells.shape)[held], cells[held]), sign)

    @property
    def global_facts(self) -> IntArray:
        out = np.full(self.cur.shape, NONE, dtype=np.int64)
        held = self.cur >= 0
        out[held] = self.fl[self.cur[held]]
        return out

    @property
    def dead_persons(self) -> IntArray:
        return self.persons[self.dead].astype(np.int64)

    # ------------------------------------------------------------------ actions

    def _move(self, cells: BoolArray) -> int:
        """Move the marked (unit, slot) cells one step up their chain; keep concept and source together."""
        rows = np.flatnonzero(_any_row(cells))
        if not rows.size:
            return 0
        before = self.cur[rows].copy()
        sub = cells[rows]
        self.cur[rows] = np.where(sub, np.where(before >= 0, self.lparent[np.maximum(before, 0)], NONE), before)
        self._tie(rows)
        after = self.cur[rows]
        changed = after != before
        self._count(np.where(changed, before, NONE), -1, rows)
        self._count(np.where(changed, after, NONE), 1, rows)
        return int(sub.sum())

    def _tie(self, rows: IntArray) -> None:
        cur, orig = self.cur, self.orig
        c, o = cur[rows], orig[rows]
        concept_moved = c[:, CONCEPT] != o[:, CONCEPT]
        fix = concept_moved & (c[:, SOURCE] == o[:, SOURCE]) & (o[:, SOURCE] >= 0)
        c[fix, SOURCE] = self.lparent[o[fix, SOURCE]]
        c[c[:, SOURCE] != o[:, SOURCE], SOURCE_CONCEPT] = NONE
        # an event row goes when its coded group holds nothing any more (a concept without an
        # ancestor may still leave its row with a coarser source code)
        coded_gone = (c[:, CONCEPT] < 0) & (c[:, SOURCE] < 0) & ((o[:, CONCEPT] >= 0) | (o[:, SOURCE] >= 0))
        gone = self.removable[rows] & ~self.removed[rows] & coded_gone
        if gone.any():
            self.removed[rows[gone]] = True
            c[gone] = NONE
        cur[rows] = c

    def _marked(self, local_facts: IntArray) -> BoolArray:
        """Whether each unit cell holds one of ``local_facts`` (a lookup table; NONE holds none)."""
        table = np.zeros(len(self.fl) + 1, dtype=bool)  # the last entry: NONE (-1)
        table[local_facts] = True
        return np.asarray(table[self.cur], dtype=bool)

    def _live(self) -> BoolArray:
        return np.asarray(~self.removed & ~self.dead[self.upl], dtype=bool)

    # ------------------------------------------------------------------ the loop

    def _matrix(self) -> tuple[IntArray, BoolArray, BoolArray]:
        """(local fact ids present, X, actionable): X = held now or pinned; actionable = held now
        through a live unit and not pinned (an action can remove it)."""
        held = self.counts > 0
        x = held | self.xp
        x[self.dead] = False
        present = np.flatnonzero(x.any(axis=0))
        act = held & ~self.xp
        act[self.dead] = False
        return present, x[:, present], act[:, present]

    def run(self) -> int:
        rounds = 0
        k = self.k
        while True:
            rounds += 1
            fids, x, act = self._matrix()
            if not len(fids):
                return rounds
            support = x.sum(axis=0)
            bad = (support > 0) & (support < k)
            if bad.any():
                cells = self._live()[:, None] & self._marked(fids[bad])
                moved = self._move(cells)
                self.stats["generalised_classwide"] += moved
                if not moved:  # only pinned holders left: only person suppression protects them
                    self.dead |= x[:, bad].any(axis=1)
                continue
            if self.m < 2:
                return rounds
            chosen = self._cover_pairs(x, act, support)
            if chosen is None and self.m >= 3:
                chosen = self._cover_triples(x, act, support)
            if chosen is None:
                return rounds
            # the cells holding a chosen (person, fact): each cell's column of X, looked up
            column = np.full(len(self.fl) + 1, -1, dtype=np.int64)  # the last entry: NONE (-1)
            column[fids] = np.arange(len(fids))
            col = column[self.cur]
            cells = (col >= 0) & chosen[self.upl[:, None], np.maximum(col, 0)]
            cells &= self._live()[:, None]
            up = self.lparent[self.cur[cells]] >= 0
            self.stats["generalised_local"] += int(up.sum())
            self.stats["suppressed_local"] += int((~up).sum())
            self._move(cells)

    def _pick(self, deg: npt.NDArray[np.float32], act: BoolArray, support: IntArray,
              chosen: BoolArray, xa: npt.NDArray[np.float32], persons_of: IntArray | None = None) -> bool:
        """One fact per person in a violating set: the one in most violating sets (then the least
        supported, then the lowest id); a person who can change none of them is suppressed.
        ``persons_of``: the class's person index of each row of ``deg`` (default: the rows)."""
        n = deg.shape[0]
        big = len(self.persons) + 1
        involved = deg > 0
        persons = involved.any(axis=1)
        if not persons.any():
            return False
        score = np.where(involved & act & ~chosen, deg * big + (big - support)[None, :], -1.0)
        best = np.argmax(score, axis=1)
        can = score[np.arange(n), best] > 0
        stuck = persons & ~can
        if stuck.any():
            self.dead[stuck if persons_of is None else persons_of[stuck]] = True
            xa[stuck] = 0.0
        go = np.flatnonzero(persons & can)
        chosen[go, best[go]] = True
        xa[go, best[go]] = 0.0
        return True

    def _cover_pairs(self, x: BoolArray, act: BoolArray, support: IntArray) -> BoolArray | None:
        """Facts to change so that no violating pair (held by fewer than k) stays with its holders:
        a greedy cover of each person's violating pairs, all persons at once."""
        xf = x.astype(np.float32)
        co = xf.T @ xf
        viol = (co > 0) & (co < self.k)
        np.fill_diagonal(viol, False)
        if not viol.any():
            return None
        # only the facts in a violating pair and the persons holding one matter: work on that block
        cols = np.flatnonzero(viol.any(axis=0))
        v = viol[np.ix_(cols, cols)].astype(np.float32)
        xs = xf[:, cols]
        rows = np.flatnonzero(((xs @ v) * xs).any(axis=1))
        xa = xs[rows]
        sub_chosen = np.zeros(xa.shape, dtype=bool)
        sub_act = act[np.ix_(rows, cols)]
        dead_before = self.dead.copy()
        for _ in range(len(cols)):
            deg = (xa @ v) * xa
            if not self._pick(deg, sub_act, support[cols], sub_chosen, xa, rows):
                break
        chosen = np.zeros(x.shape, dtype=bool)
        chosen[np.ix_(rows, cols)] = sub_chosen
        chosen[self.dead & ~dead_before] = False
        return chosen

    def _cover_triples(self, x: BoolArray, act: BoolArray, support: IntArray) -> BoolArray | None:
        deg = np.zeros(x.shape, dtype=np.float32)
        found = False
        for a in np.flatnonzero(support >= self.k):
            rows = np.flatnonzero(x[:, a])
            sub = x[rows].astype(np.float32)
            co = sub.T @ sub
            viol = (co > 0) & (co < self.k)
            viol[a, :] = False
            viol[:, a] = False
            np.fill_diagonal(viol, False)
            if not viol.any():
                continue
            found = True
            d = (sub @ viol.astype(np.float32)) * sub  # violating (b, c) partners of each held b, given a
            deg[rows] += d
            deg[rows, a] += d.sum(axis=1) / 2.0
        if not found:
            return None
        chosen = np.zeros(x.shape, dtype=bool)
        self._pick(deg, act, support, chosen, x.astype(np.float32))
        return chosen


def persons_at_risk(units: Units, person_class: IntArray, k: int, m: int,
                    pinned_person: IntArray | None = None, pinned_fact: IntArray | None = None) -> list[int]:
    """Persons at risk at each level j = 0..m (docs/privacy.md): some set of at most j of their facts,
    with their class, is shared by fewer than k persons. Persons with ``person_class < 0`` are left
    out. Counts are cumulative (a person at risk at level j is at risk at every higher level)."""
    if not 0 <= m <= MAX_M:
        raise ValueError(f"attacker_facts (m) must be between 0 and {MAX_M}")
    pin_p = pinned_person if pinned_person is not None else np.zeros(0, dtype=np.int64)
    pin_f = pinned_fact if pinned_fact is not None else np.zeros(0, dtype=np.int64)
    live = person_class >= 0
    counts = [0] * (m + 1)
    sizes = np.bincount(person_class[live]) if live.any() else np.zeros(0, dtype=np.int64)
    small = live & (sizes[np.maximum(person_class, 0)] < k)
    counts[0] = int(small.sum())
    if m == 0:
        return counts
    # (person, fact) of every held fact, in unit order then slot order; int32 where the ids fit (memory:
    # tens of millions of pairs at a million patients)
    held = units.facts >= 0
    narrow = max(len(person_class), int(units.facts.max(initial=0)) + 1, int(pin_f.max(initial=0)) + 1) < 2**31
    dtype = np.int32 if narrow else np.int64
    p_all = np.concatenate([np.broadcast_to(units.person[:, None], units.facts.shape)[held].astype(dtype),
                            pin_p.astype(dtype)])
    f_all = np.concatenate([units.facts[held].astype(dtype), pin_f.astype(dtype)])
    del held
    keep = (f_all >= 0) & live[p_all] & ~small[p_all]  # a class below k is at risk at every level already
    p_all, f_all = p_all[keep], f_all[keep]
    order = np.argsort(person_class[p_all], kind="stable")
    p_all, f_all = p_all[order], f_all[order]
    bounds = _bounds(person_class[p_all])
    at = [np.zeros(len(person_class), dtype=bool) for _ in range(m + 1)]
    at[0] = small
    with threadpool_limits(1, user_api="blas"):
        for _, (a, b) in bounds.items():
            persons, pl_ = np.unique(p_all[a:b], return_inverse=True)
            facts, fl = np.unique(f_all[a:b], return_inverse=True)
            x = np.zeros((len(persons), len(facts)), dtype=np.float32)
            x[pl_, fl] = 1.0
            support = x.sum(axis=0)
            r1 = ((x > 0) & (support < k)[None, :]).any(axis=1)
            at[1][persons[r1]] = True
            if m >= 2:
                co = x.T @ x
                viol = ((co > 0) & (co < k)).astype(np.float32)
                np.fill_diagonal(viol, 0.0)
                r2 = ((x @ viol) * x).any(axis=1)
                at[2][persons[r2]] = True
            if m >= 3:
                r3 = np.zeros(len(persons), dtype=bool)
                for f in np.flatnonzero(support >= k):
                    rows = np.flatnonzero(x[:, f] > 0)
                    sub = x[rows]
                    co3 = sub.T @ sub
                    v3 = (co3 > 0) & (co3 < k)
                    v3[f, :] = False
                    v3[:, f] = False
                    np.fill_diagonal(v3, False)
                    if v3.any():
                        r3[rows[((sub @ v3.astype(np.float32)) * sub).any(axis=1)]] = True
                at[3][persons[r3]] = True
    for j in range(1, m + 1):
        at[j] |= at[j - 1]
        counts[j] = int(at[j].sum())
    return counts
