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

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
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
) -> KmResult:
    """Make the units' facts k^m-anonymous within the classes of ``person_class`` (see the module doc).

    ``person_class[p]``: class of person p (persons are 0..P-1); ``parent[f]``: the fact above f, or
    ``NONE``. ``pinned_person``/``pinned_fact``: facts of earlier published versions (kept as they are).
    """
    if not 0 <= m <= MAX_M:
        raise ValueError(f"attacker_facts (m) must be between 0 and {MAX_M}: the cost grows as facts^m")
    if k < 1:
        raise ValueError("k must be at least 1")
    facts = units.facts.copy()
    removed = np.zeros(len(facts), dtype=bool)
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
    classes = sorted(set(u_bounds) | set(p_bounds))
    for c in classes:
        ua, ub = u_bounds.get(c, (0, 0))
        idx = order[ua:ub]
        pa, pb = p_bounds.get(c, (0, 0))
        pidx = pin_order[pa:pb]
        sub = _Class(facts[idx], units.facts[idx], units.person[idx], units.removable[idx],
                     pin_p[pidx], pin_f[pidx], parent, k, m, stats)
        rounds += sub.run()
        facts[idx] = sub.cur
        removed[idx] = sub.removed
        if sub.dead_persons.size:
            dead.append(sub.dead_persons)
    gone = np.unique(np.concatenate(dead)) if dead else np.zeros(0, dtype=np.int64)
    if gone.size:
        removed |= np.isin(units.person, gone)
    return KmResult(facts, removed, gone.astype(np.int64), rounds, len(classes), stats)


def _bounds(sorted_keys: IntArray) -> dict[int, tuple[int, int]]:
    if len(sorted_keys) == 0:
        return {}
    cuts = np.flatnonzero(np.diff(sorted_keys)) + 1
    starts = np.concatenate([[0], cuts])
    ends = np.concatenate([cuts, [len(sorted_keys)]])
    return {int(sorted_keys[a]): (int(a), int(b)) for a, b in zip(starts, ends, strict=True)}


class _Class:
    """The units and pinned facts of one class, and the loop that fixes them."""

    def __init__(self, cur: IntArray, orig: IntArray, person: IntArray, removable: BoolArray,
                 pin_p: IntArray, pin_f: IntArray, parent: IntArray, k: int, m: int,
                 stats: dict[str, int]) -> None:
        self.cur = cur.copy()
        self.orig = orig
        persons, self.pl = np.unique(np.concatenate([person, pin_p]), return_inverse=True)
        self.persons = persons
        self.upl = self.pl[: len(person)]
        self.ppl = self.pl[len(person):]
        self.pin_f = pin_f
        self.removable = removable
        self.removed = np.zeros(len(cur), dtype=bool)
        self.dead = np.zeros(len(persons), dtype=bool)
        self.parent = parent
        self.k, self.m = k, m
        self.stats = stats

    @property
    def dead_persons(self) -> IntArray:
        return self.persons[self.dead].astype(np.int64)

    # ------------------------------------------------------------------ the matrix of the class

    def _matrix(self) -> tuple[IntArray, BoolArray, BoolArray]:
        """(fact ids, X current, X pinned): persons x facts of the class, dead persons emptied."""
        live = ~self.removed & ~self.dead[self.upl]
        w = self.cur.shape[1]
        f_cur = self.cur[live].ravel()
        p_cur = np.repeat(self.upl[live], w)
        keep = f_cur >= 0
        f_cur, p_cur = f_cur[keep], p_cur[keep]
        pin_live = ~self.dead[self.ppl]
        f_pin, p_pin = self.pin_f[pin_live], self.ppl[pin_live]
        fids, inv = np.unique(np.concatenate([f_cur, f_pin]), return_inverse=True)
        n = len(self.persons)
        xc = np.zeros((n, len(fids)), dtype=bool)
        xp = np.zeros((n, len(fids)), dtype=bool)
        xc[p_cur, inv[: len(f_cur)]] = True
        xp[p_pin, inv[len(f_cur):]] = True
        return fids.astype(np.int64), xc, xp

    # ------------------------------------------------------------------ actions

    def _move(self, cells: BoolArray) -> int:
        """Move the marked (unit, slot) cells one step up their chain; keep concept and source together."""
        if not cells.any():
            return 0
        vals = self.cur[cells]
        self.cur[cells] = self.parent[vals]
        self._tie()
        return int(cells.sum())

    def _tie(self) -> None:
        cur, orig = self.cur, self.orig
        concept_moved = cur[:, CONCEPT] != orig[:, CONCEPT]
        source_exact = (cur[:, SOURCE] == orig[:, SOURCE]) & (orig[:, SOURCE] >= 0)
        fix = concept_moved & source_exact
        if fix.any():
            cur[fix, SOURCE] = self.parent[orig[fix, SOURCE]]
        source_moved = cur[:, SOURCE] != orig[:, SOURCE]
        cur[source_moved, SOURCE_CONCEPT] = NONE
        gone = self.removable & ~self.removed & (
            ((orig[:, CONCEPT] >= 0) & (cur[:, CONCEPT] < 0))
            | ((orig[:, CONCEPT] < 0) & (orig[:, SOURCE] >= 0) & (cur[:, SOURCE] < 0))
        )
        if gone.any():
            self.removed |= gone
            cur[gone] = NONE

    def _live_cells(self, fact_ids: IntArray, person_of_fact: IntArray | None = None) -> BoolArray:
        """Cells (unit, slot) of live units holding one of ``fact_ids`` (per person when given)."""
        live = (~self.removed & ~self.dead[self.upl])[:, None]
        if person_of_fact is None:
            return np.asarray(live & np.isin(self.cur, fact_ids), dtype=bool)
        target = person_of_fact[self.upl]  # the fact to act on for each unit's person (or -2)
        return np.asarray(live & (self.cur == target[:, None]), dtype=bool)

    # ------------------------------------------------------------------ the loop

    def run(self) -> int:
        rounds = 0
        k = self.k
        while True:
            rounds += 1
            fids, xc, xp = self._matrix()
            if not len(fids):
                return rounds
            x = xc | xp
            support = x.sum(axis=0)
            bad = (support > 0) & (support < k)
            if bad.any():
                moved = self._move(self._live_cells(fids[bad]))
                self.stats["generalised_classwide"] += moved
                if not moved:  # only pinned holders left: only person suppression protects them
                    self.dead |= x[:, bad].any(axis=1)
                continue
            if self.m < 2:
                return rounds
            deg = self._pair_degrees(x)
            if deg is None and self.m >= 3:
                deg = self._triple_degrees(x, support)
            if deg is None:
                return rounds
            self._act(fids, deg, x, xc & ~xp, support)

    def _pair_degrees(self, x: BoolArray) -> npt.NDArray[np.float32] | None:
        xf = x.astype(np.float32)
        co = xf.T @ xf
        viol = (co > 0) & (co < self.k)
        np.fill_diagonal(viol, False)
        if not viol.any():
            return None
        deg = (xf @ viol.astype(np.float32)) * xf
        return np.asarray(deg, dtype=np.float32)

    def _triple_degrees(self, x: BoolArray, support: IntArray) -> npt.NDArray[np.float32] | None:
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
        return deg if found else None

    def _act(self, fids: IntArray, deg: npt.NDArray[np.float32], x: BoolArray, actionable: BoolArray,
             support: IntArray) -> None:
        """Each person in a violating set changes one of its own facts (see the module doc)."""
        n = x.shape[0]
        involved = deg > 0
        persons = involved.any(axis=1)
        score = np.where(involved & actionable, deg * (n + 1) + (n - support)[None, :], -1.0)
        best = np.argmax(score, axis=1)
        can = score[np.arange(n), best] > 0
        stuck = persons & ~can
        if stuck.any():
            self.dead |= stuck
        chosen = np.full(n, -2, dtype=np.int64)
        go = persons & can
        chosen[go] = fids[best[go]]
        cells = self._live_cells(fids, person_of_fact=chosen)
        if not cells.any():
            return
        up = self.parent[self.cur[cells]] >= 0
        self.stats["generalised_local"] += int(up.sum())
        self.stats["suppressed_local"] += int((~up).sum())
        self._move(cells)
