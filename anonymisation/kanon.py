"""Optimal k-anonymity (with optional l-diversity) by full-domain generalisation and record suppression.

The engine works on a *frequency table* of quasi-identifier (QI) combinations (one row per distinct
combination and its number of records), so its cost grows with the number of distinct
combinations, not with rows, and per-site tables merge (:func:`merge_frequency_tables`) into one
global decision that every site then applies to its own rows (:func:`apply_levels`).

Search. A *node* of the generalisation lattice is a vector of levels, one per QI. A node is
*anonymous* when the records in equivalence classes smaller than ``k`` (or not l-diverse) number at
most the suppression limit; those records are suppressed. Anonymity is monotone over the lattice
(if a node is anonymous, so is every generalisation of it: classes only merge, so the set of
records in too-small or non-diverse classes can only shrink), which gives ARX/Flash-style
*predictive tagging*: an anonymous node tags its generalisations anonymous, a non-anonymous one
tags its specialisations non-anonymous.

Utility metrics are not monotone once suppressed records count as fully generalised, so the search
is a best-first branch and bound that stays exact: nodes are visited in order of a lower bound of
the metric that holds with suppression and grows with generalisation; the search stops when the
bound exceeds the best anonymous node found, and skips nodes that are tagged non-anonymous or
whose bound derived from an evaluated specialisation already exceeds the best. Cheap necessary
conditions prune without grouping: records in a QI pair combination (at the node's levels) with
fewer than ``k`` records — or fewer than ``l`` distinct sensitive values — are suppressed in every
class inside it. Evaluating a node groups the integer codes of the smallest cached class table of
a specialisation (roll-up), not the whole table.

Utility metrics are ARX 3.9.2's defaults (``Metric.create*Metric()``): loss (geometric mean of
per-attribute losses), precision, discernibility, AECS and non-uniform entropy, with suppressed
records counted as ARX counts them; :meth:`Evaluator._metrics` gives the exact formulas.

Fixed attributes. A QI whose hierarchy has height 0 (:meth:`Hierarchy.fixed`, e.g. a value already
published in an earlier release) is part of the class key: it splits the equivalence classes, so it
counts for k, suppression, discernibility and AECS, but it is never generalised and has no
per-attribute loss; loss, precision and entropy run over the generalisable QIs only.

Tie-break among equal optima: lowest sum of levels (as ARX's ``AbstractAlgorithm.trackOptimum``),
then the lexicographically smallest vector (ARX keeps the first one its traversal meets).
"""

from __future__ import annotations

import itertools
import math
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
import polars as pl

from anonymisation.hierarchy import Hierarchy, HierarchyError, resolve_hierarchy

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
Metric = Literal["loss", "precision", "discernibility", "aecs", "entropy"]
METRICS: tuple[Metric, ...] = ("loss", "precision", "discernibility", "aecs", "entropy")
COUNT = "_count"
Frame = pl.DataFrame | pl.LazyFrame

_MAX_LATTICE = 2_000_000
_KEY_LIMIT = 1 << 62
_NEVER = 1 << 40  # a level above every hierarchy
_DENSE_ROWS, _DENSE_SLACK = 4, 65536  # group ids are ranked (sorted) beyond this space
# ranked through a bitmap of the space (5 bytes a value) up to this many times the rows, and this space
_RANK_BITMAP, _RANK_BITMAP_MAX = 32, 1 << 26
_STAGE_SAMPLE = 65536  # rows sampled to estimate whether a floor of a larger table is worth grouping
_ROUND = 1e10  # ARX's Metric.FACTOR (10 digits)


class NoSolutionError(ValueError):
    """No node of the lattice satisfies the privacy model within the suppression limit."""


# --------------------------------------------------------------------------- frequency tables


def frequency_table(data: Frame, qis: Sequence[str], sensitive: str | None = None) -> pl.DataFrame:
    """Distinct combinations of the QI columns (and the sensitive attribute) with their counts.

    Values are cast to strings (the hierarchies' vocabulary); the count column is ``_count``.
    Runs on polars' streaming engine, so memory is bounded by the number of combinations.
    """
    cols = [*qis, *([sensitive] if sensitive else [])]
    if COUNT in cols:
        raise ValueError(f"a column may not be called {COUNT}")
    lf = data.lazy() if isinstance(data, pl.DataFrame) else data
    schema = lf.collect_schema()
    missing = [c for c in cols if c not in schema]
    if missing:
        raise ValueError(f"column(s) not in the table: {', '.join(missing)}")
    return (
        lf.select([pl.col(c).cast(pl.String) for c in cols])
        .group_by(cols)
        .agg(pl.len().cast(pl.Int64).alias(COUNT))
        .sort(cols, nulls_last=True)
        .collect(engine="streaming")
    )


def merge_frequency_tables(tables: Iterable[pl.DataFrame]) -> pl.DataFrame:
    """Merge per-site frequency tables (same columns) into one global table."""
    frames = list(tables)
    if not frames:
        raise ValueError("no frequency table to merge")
    keys = [c for c in frames[0].columns if c != COUNT]
    for f in frames[1:]:
        if sorted(f.columns) != sorted(frames[0].columns):
            raise ValueError(f"frequency tables differ in columns: {frames[0].columns} vs {f.columns}")
    return (
        pl.concat([f.select([*keys, COUNT]) for f in frames])
        .group_by(keys)
        .agg(pl.col(COUNT).sum())
        .sort(keys, nulls_last=True)
    )


def hierarchies_for(
    freq: pl.DataFrame, specs: Mapping[str, str], delimiter: str = ";"
) -> dict[str, Hierarchy]:
    """Resolve ``{column: "builtin:NAME" | ARX CSV path}`` against the values of the frequency table."""
    out: dict[str, Hierarchy] = {}
    for col, spec in specs.items():
        if col not in freq.columns:
            raise ValueError(f"column {col} not in the table")
        out[col] = resolve_hierarchy(spec, freq[col].unique().to_list(), col, delimiter=delimiter)
    return out


# --------------------------------------------------------------------------- the encoded problem


@dataclass(frozen=True)
class PrivacyModel:
    """k-anonymity with a record-suppression limit (share of records), optionally l-diversity."""

    k: int = 5
    suppression: float = 0.05
    l: int | None = None  # noqa: E741
    l_variant: Literal["distinct", "entropy"] = "distinct"

    def max_suppressed(self, n: int) -> int:
        return math.floor(self.suppression * n + 1e-9)


def _encode_column(series: pl.Series, h: Hierarchy, column: str) -> IntArray:
    leaves = list(h.labels[0])
    codes = series.replace_strict(leaves, list(range(len(leaves))), default=None, return_dtype=pl.Int64)
    bad_mask = codes.is_null()
    if bad_mask.any():
        bad = series.filter(bad_mask).unique(maintain_order=True).head(6).to_list()
        n_bad = series.filter(bad_mask).n_unique()
        shown = ", ".join(repr(v) for v in bad[:5])
        raise HierarchyError(f"column {column}: {n_bad} value(s) not in hierarchy {h.name}: {shown}")
    return codes.to_numpy().astype(np.int64, copy=False)


@dataclass
class Problem:
    """A frequency table encoded as integer leaf codes, with per-QI precomputations."""

    qis: tuple[str, ...]
    hierarchies: tuple[Hierarchy, ...]
    codes: IntArray  # (rows, q) leaf codes
    counts: IntArray  # (rows,)
    sensitive: IntArray | None = None
    sensitive_name: str | None = None
    sensitive_labels: tuple[str, ...] = ()
    n: int = 0
    leaf_counts: list[IntArray] = field(default_factory=list)  # records per leaf, per QI
    level_counts: list[list[IntArray]] = field(default_factory=list)  # records per level code
    loss_num: list[IntArray] = field(default_factory=list)  # Σ records (leaves(gen)-1), per level
    entropy_base: list[FloatArray] = field(default_factory=list)  # Σ -log2 P(v | gen), per level
    _columns: list[IntArray] = field(default_factory=list, repr=False, compare=False)

    @property
    def columns(self) -> list[IntArray]:
        """The leaf code columns as contiguous arrays (``codes[:, j]``), made once."""
        if len(self._columns) != self.q:
            self._columns = [np.ascontiguousarray(self.codes[:, j]) for j in range(self.q)]
        return self._columns

    @property
    def q(self) -> int:
        return len(self.qis)

    @property
    def heights(self) -> tuple[int, ...]:
        return tuple(h.height for h in self.hierarchies)

    @property
    def generalisable(self) -> tuple[int, ...]:
        """Indexes of the QIs that can be generalised (height ≥ 1); the others are fixed."""
        return tuple(j for j, h in enumerate(self.hierarchies) if h.height > 0)

    @property
    def lattice_size(self) -> int:
        return math.prod(h + 1 for h in self.heights)


def encode(freq: pl.DataFrame, hierarchies: Mapping[str, Hierarchy], sensitive: str | None = None) -> Problem:
    """Encode a frequency table (columns: QIs in the order of ``hierarchies``, ``_count``)."""
    qis = tuple(hierarchies)
    hs = tuple(hierarchies[c] for c in qis)
    for c in [*qis, *([sensitive] if sensitive else [])]:
        if c not in freq.columns:
            raise ValueError(f"column {c} not in the frequency table")
    counts = (freq[COUNT].to_numpy() if COUNT in freq.columns else np.ones(freq.height)).astype(np.int64)
    if freq.height:
        codes = np.stack(
            [_encode_column(freq[c].cast(pl.String), h, c) for c, h in zip(qis, hs, strict=True)], axis=1
        )
    else:
        codes = np.zeros((0, len(qis)), dtype=np.int64)
    sens: IntArray | None = None
    labels: tuple[str, ...] = ()
    if sensitive:
        s = freq[sensitive].cast(pl.String).fill_null("<null>")
        uniq = s.unique(maintain_order=True).to_list()
        labels = tuple(str(u) for u in uniq)
        sens = (
            s.replace_strict(uniq, list(range(len(uniq))), return_dtype=pl.Int64).to_numpy().astype(np.int64)
        )
    p = Problem(qis, hs, codes, counts, sens, sensitive, labels, int(counts.sum()))
    p._columns = [np.ascontiguousarray(codes[:, j]) for j in range(len(qis))]
    for j, h in enumerate(hs):
        lc = np.bincount(codes[:, j], weights=counts, minlength=h.domain_size).round().astype(np.int64)
        p.leaf_counts.append(lc)
        per_level = [
            np.bincount(h.maps[lv], weights=lc, minlength=h.cardinality(lv)).round().astype(np.int64)
            for lv in range(h.height + 1)
        ]
        p.level_counts.append(per_level)
        p.loss_num.append(
            np.array(
                [int(np.dot(lc, h.leaves_under[lv][h.maps[lv]] - 1)) for lv in range(h.height + 1)],
                dtype=np.int64,
            )
        )
        present = lc > 0
        ent = []
        for lv in range(h.height + 1):
            gen = per_level[lv][h.maps[lv]]
            ent.append(float(np.dot(lc[present], np.log2(gen[present] / lc[present]))))
        p.entropy_base.append(np.array(ent, dtype=np.float64))
    return p


def problem_from_frame(
    data: Frame, specs: Mapping[str, str], sensitive: str | None = None, delimiter: str = ";"
) -> tuple[pl.DataFrame, Problem]:
    """Frequency table and encoded problem straight from a frame and ``{column: hierarchy spec}``."""
    freq = frequency_table(data, list(specs), sensitive)
    hs = hierarchies_for(freq, specs, delimiter)
    return freq, encode(freq, hs, sensitive)


# --------------------------------------------------------------------------- evaluating a node


@dataclass(frozen=True)
class NodeEval:
    """Everything known about one node after grouping."""

    node: tuple[int, ...]
    anonymous: bool
    suppressed: int  # records
    classes: int  # equivalence classes kept (not suppressed)
    classes_all: int  # classes before suppression
    dm_nosup: int  # Σ class size² over all classes, before suppression
    dm_kept: int  # Σ class size² over kept classes
    metrics: dict[str, float]

    @property
    def levels_sum(self) -> int:
        return sum(self.node)


@dataclass
class _Table:
    node: tuple[int, ...]
    cols: list[IntArray]  # one code column per QI, at the node's levels
    counts: IntArray
    sens: IntArray | None
    # until first used as a source, a table without a sensitive attribute keeps how to make its
    # columns (source table, group ids of the source's rows, space, present ids) instead of them
    pending: tuple[_Table, IntArray, int, IntArray] | None = None

    @property
    def cells(self) -> int:
        return len(self.counts) * max(len(self.node), 1)


_DESCENDING: IntArray = np.zeros(0, dtype=np.int64)


def _descending(n: int) -> IntArray:
    """``[n - 1, ..., 1, 0]`` as a view of one array kept for the process (made once per size)."""
    global _DESCENDING
    if len(_DESCENDING) < n:
        _DESCENDING = np.arange(n - 1, -1, -1, dtype=np.int64)
    return _DESCENDING[len(_DESCENDING) - n :]


def _first_rows(key: IntArray, space: int, present: IntArray | npt.NDArray[np.bool_]) -> IntArray:
    """Index of the first row holding each present key (``present``: the keys held, as indexes or as a
    mask over the space; the entries of absent keys are never written, so never read)."""
    first = np.empty(space, dtype=np.int64)
    first[key[::-1]] = _descending(len(key))
    return first[present]


def _ranked(key: IntArray, space: int) -> tuple[IntArray, int]:
    """Each key replaced by its rank among the distinct keys (``np.unique``'s inverse), and their
    number; below _RANK_BITMAP x rows through a bitmap of the space instead of a sort (~4x faster)."""
    rows = len(key)
    if not rows:
        return key, 1
    if space <= min(_RANK_BITMAP * rows, _RANK_BITMAP_MAX):
        seen = np.zeros(space, dtype=bool)
        seen[key] = True
        present = np.flatnonzero(seen)
        rank = np.empty(space, dtype=np.int32)
        rank[present] = np.arange(len(present), dtype=np.int32)
        return rank.take(key, mode="clip").astype(np.int64), len(present)
    _, inv = np.unique(key, return_inverse=True)
    out = inv.astype(np.int64).reshape(rows)
    return out, int(out.max()) + 1


def group_ids(cols: Sequence[IntArray], cards: Sequence[int], rows: int) -> tuple[IntArray, int, bool]:
    """Combine code columns into one group id per row, in ``[0, space)``; returns (ids, space, dense?)."""
    key = np.zeros(rows, dtype=np.int64)
    space = 1
    for col, card in zip(cols, cards, strict=True):
        if space * card >= _KEY_LIMIT:
            key, space = _ranked(key, space)
        key = key * card + col if space > 1 else col.copy()
        space *= card
    dense = space <= _DENSE_ROWS * rows + _DENSE_SLACK
    if not dense:
        key, space = _ranked(key, space)
    return key, space, dense


class Evaluator:
    """Evaluates nodes of one problem under one privacy model, with a roll-up cache.

    A node is grouped from the smallest cached class table of one of its specialisations (its
    codes are mapped up level by level with lookup arrays), never from more rows than needed.
    """

    def __init__(self, problem: Problem, model: PrivacyModel, cache_cells: int = 16_000_000) -> None:
        if model.l is not None and problem.sensitive is None:
            raise ValueError("l-diversity needs a sensitive attribute in the frequency table")
        self.p = problem
        self.model = model
        self.max_sup = model.max_suppressed(problem.n)
        self.root = _Table((0,) * problem.q, problem.columns, problem.counts, problem.sensitive)
        self._cards = [[h.cardinality(lv) for lv in range(h.height + 1)] for h in problem.hierarchies]
        # cached class tables: node -> slot (oldest first); a slot's node row is _NEVER once evicted
        self.cache: OrderedDict[tuple[int, ...], int] = OrderedDict()
        self.cache_cells = cache_cells
        self._cells = 0
        self._slot_tables: list[_Table | None] = []
        self._slot_nodes: IntArray = np.zeros((0, problem.q), dtype=np.int64)
        self._slot_rows: IntArray = np.zeros(0, dtype=np.int64)
        self._free: list[int] = []
        self.evaluations = 0
        # a node's class table is cached for roll-up when its source has more rows than this
        self.store_min_rows = 256
        self._staged_tried: set[tuple[int, ...]] = set()
        self._luts: dict[tuple[int, int, int, int], IntArray] = {}
        # during a search only the optimised metric is exact in NodeEval.metrics (faster)
        self.only: Metric | None = None

    def _source(self, node: tuple[int, ...]) -> _Table:
        if not self.cache:
            return self._staged(node)
        used = len(self._slot_tables)
        ok = (self._slot_nodes[:used] <= np.asarray(node, dtype=np.int64)).all(axis=1)
        cand = np.flatnonzero(ok)
        if not len(cand):
            return self._staged(node)
        table = self._slot_tables[int(cand[np.argmin(self._slot_rows[cand])])]
        assert table is not None
        if table.pending is not None:
            src, key, space, present = table.pending
            table.cols = self._gen(src, table.node, _first_rows(key, space, present))
            table.pending = None
        return table

    def _staged(self, node: tuple[int, ...]) -> _Table:
        """The source of a node with no cached specialisation: the class table of its floor at level 1
        (each level capped at 1), grouped once from the frequency table and cached when it is smaller,
        so that the nodes above that floor roll up from it instead of the whole table."""
        floor = tuple(min(lv, 1) for lv in node)
        if floor == node or floor in self._staged_tried or not any(floor):
            return self.root
        self._staged_tried.add(floor)
        rows = len(self.root.counts)
        space = math.prod(self._cards[j][lv] for j, lv in enumerate(floor))
        # a large table and a sparse key space (grouping means ranking): a floor expected to keep
        # more than 3/4 of the rows is not worth grouping
        sparse = space > _DENSE_ROWS * rows + _DENSE_SLACK
        if rows > _STAGE_SAMPLE and sparse and self._estimated_classes(floor) > 0.75 * rows:
            return self.root
        table = self._group(self.root, floor)
        if len(table.counts) <= 0.75 * rows:
            self._store(table)
        # a floor not worth caching is still a smaller source than the root for this node
        return table

    def _estimated_classes(self, node: tuple[int, ...]) -> float:
        """The number of classes of the root at ``node`` estimated from every step-th row
        (_STAGE_SAMPLE rows): Chao1, seen + singletons² / 2·doubletons (bias-corrected)."""
        root = self.root
        step = max(len(root.counts) // _STAGE_SAMPLE, 1)
        sample = _Table(root.node, [c[::step] for c in root.cols], root.counts[::step], None)
        _, seen = np.unique(self._key(sample, node)[0], return_counts=True)
        f1, f2 = int(np.count_nonzero(seen == 1)), int(np.count_nonzero(seen == 2))
        return len(seen) + f1 * (f1 - 1) / (2 * (f2 + 1))

    def _group(self, src: _Table, node: tuple[int, ...]) -> _Table:
        """The class table of ``node`` (distinct level codes, with the sensitive value, and counts)."""
        key, space = self._key(src, node)
        sizes_f = np.bincount(key, weights=src.counts, minlength=space)
        present = np.flatnonzero(sizes_f > 0)
        return self._table(src, node, key, space, present, sizes_f[present].astype(np.int64))

    def _gen(self, src: _Table, node: tuple[int, ...], rows: IntArray | npt.NDArray[np.bool_] | None) -> list[IntArray]:
        """The level codes at ``node`` of the source table's rows (all, or those selected by ``rows``)."""
        hs = self.p.hierarchies
        out: list[IntArray] = []
        for j, (col, s, lv) in enumerate(zip(src.cols, src.node, node, strict=True)):
            c = col if rows is None else col[rows]
            out.append(c if s == lv else hs[j].up(s, lv)[c])
        return out

    def _key(self, src: _Table, node: tuple[int, ...]) -> tuple[IntArray, int]:
        """One group id per row of the source table, in ``[0, space)``: the mixed-radix number of the
        node's level codes (as :func:`group_ids`), summed from premultiplied lookup arrays, then ranked
        when the space is sparse."""
        rows = len(src.counts)
        q = len(node)
        strides = [0] * q
        space = 1
        for j in range(q - 1, -1, -1):
            strides[j] = space
            space *= self._cards[j][node[j]]
        if space >= _KEY_LIMIT:
            ids, space, _ = group_ids(
                self._gen(src, node, None), [self._cards[j][lv] for j, lv in enumerate(node)], rows
            )
            return ids, space
        key: IntArray | None = None
        buf: IntArray | None = None
        hs = self.p.hierarchies
        # lut.take(col, mode="clip") is fancy indexing without its bounds check (~30% faster): codes
        # are within their lookup array by construction
        for j in range(q):
            lv = node[j]
            if self._cards[j][lv] == 1:
                continue  # a single value: digit 0
            s = src.node[j]
            stride = strides[j]
            col = src.cols[j]
            if s == lv and stride == 1:
                key = col.copy() if key is None else np.add(key, col, out=key)
                continue
            lut_key = (j, s, lv, stride)
            lut = self._luts.get(lut_key)
            if lut is None:
                lut = hs[j].up(s, lv) * stride
                self._luts[lut_key] = lut
            if key is None:
                key = lut.take(col, mode="clip")
            else:
                if buf is None:
                    buf = np.empty(rows, dtype=np.int64)
                lut.take(col, mode="clip", out=buf)
                key += buf
        if key is None:
            return np.zeros(rows, dtype=np.int64), 1
        if space > _DENSE_ROWS * rows + _DENSE_SLACK:
            key, space = _ranked(key, space)
        return key, space

    def _table(
        self, src: _Table, node: tuple[int, ...], key: IntArray, space: int, present: IntArray, sizes: IntArray
    ) -> _Table:
        if src.sens is not None:
            gkey = key * len(self.p.sensitive_labels) + src.sens
            _, first, inv = np.unique(gkey, return_index=True, return_inverse=True)
            tcounts = np.bincount(inv, weights=src.counts).round().astype(np.int64)
            tsens: IntArray | None = src.sens[first]
        else:
            first = _first_rows(key, space, present)
            tcounts = sizes
            tsens = None
        return _Table(node, self._gen(src, node, first), tcounts, tsens)

    def _store(self, table: _Table) -> None:
        cells = table.cells
        if cells > self.cache_cells // 4 or table.node in self.cache:
            return
        while self._cells + cells > self.cache_cells and self.cache:
            _, slot = self.cache.popitem(last=False)
            old = self._slot_tables[slot]
            assert old is not None
            self._cells -= old.cells
            self._slot_tables[slot] = None
            self._slot_nodes[slot] = _NEVER  # never a specialisation of a node
            self._free.append(slot)
        if self._free:
            slot = self._free.pop()
            self._slot_tables[slot] = table
        else:
            slot = len(self._slot_tables)
            self._slot_tables.append(table)
            if slot >= len(self._slot_nodes):
                grow = max(64, len(self._slot_nodes))
                self._slot_nodes = np.vstack(
                    [self._slot_nodes, np.full((grow, self.p.q), _NEVER, dtype=np.int64)]
                )
                self._slot_rows = np.concatenate([self._slot_rows, np.zeros(grow, dtype=np.int64)])
        self._slot_nodes[slot] = table.node
        self._slot_rows[slot] = len(table.counts)
        self.cache[table.node] = slot
        self._cells += cells

    def evaluate(self, node: tuple[int, ...], keep: bool = True, metrics: bool = True) -> NodeEval:
        """Group the node; utility metrics are computed when ``metrics`` or the node is anonymous."""
        ev, _ = self._evaluate(node, keep=keep, want_classes=False, want_metrics=metrics)
        return ev

    def classes(self, node: tuple[int, ...], kept_only: bool = True) -> tuple[IntArray, IntArray]:
        """Equivalence classes at ``node``: their level codes (classes, q) and sizes; with
        ``kept_only`` the classes suppressed by the model are left out (the released data)."""
        p = self.p
        hs = p.hierarchies
        gen = [hs[j].maps[lv][col] for j, (lv, col) in enumerate(zip(node, p.columns, strict=True))]
        key, space, _ = group_ids(gen, [hs[j].cardinality(lv) for j, lv in enumerate(node)], len(p.counts))
        sizes = np.bincount(key, weights=p.counts, minlength=space).round().astype(np.int64)
        keep = sizes > 0
        if kept_only:
            keep &= ~self._bad(key, space, sizes, p.counts, p.sensitive)
        first = _first_rows(key, space, keep)
        codes = (
            np.stack([g[first] for g in gen], axis=1)
            if p.q
            else np.zeros((int(keep.sum()), 0), dtype=np.int64)
        )
        return codes.astype(np.int64), sizes[keep]

    def _bad(
        self, key: IntArray, space: int, sizes: IntArray, counts: IntArray, sens: IntArray | None
    ) -> npt.NDArray[np.bool_]:
        """Classes that violate the model (fewer than k records, or not l-diverse)."""
        model, p = self.model, self.p
        bad = sizes < model.k
        if model.l is not None and sens is not None:
            n_sens = len(p.sensitive_labels)
            pair = key * n_sens + sens
            upair, pinv = np.unique(pair, return_inverse=True)
            pclass = upair // n_sens
            distinct = np.bincount(pclass, minlength=space)
            if model.l_variant == "distinct":
                bad |= distinct < model.l
            else:
                pc = np.bincount(pinv, weights=counts)
                plogp = np.bincount(pclass, weights=pc * np.log2(np.maximum(pc, 1.0)), minlength=space)
                size_f = np.maximum(sizes.astype(np.float64), 1.0)
                ent = np.log2(size_f) - plogp / size_f
                bad |= ent < math.log2(model.l) - 1e-12
        return np.asarray(bad & (sizes > 0))

    def suppressed_classes(self, node: tuple[int, ...]) -> tuple[NodeEval, IntArray]:
        """The node's evaluation and the level codes (rows, q) of its suppressed classes."""
        ev, sup = self._evaluate(node, keep=False, want_classes=True, want_metrics=True)
        assert sup is not None
        return ev, sup

    def _evaluate(
        self, node: tuple[int, ...], keep: bool, want_classes: bool, want_metrics: bool
    ) -> tuple[NodeEval, IntArray | None]:
        p, model = self.p, self.model
        self.evaluations += 1
        src = self._source(node)
        rows = len(src.counts)
        key, space = self._key(src, node)
        counts = src.counts
        sizes_f = np.bincount(key, weights=counts, minlength=space)
        present = np.flatnonzero(sizes_f > 0)
        sizes = sizes_f[present].astype(np.int64)  # sums of integer counts below 2**53: exact
        if model.l is None:
            bad_c = sizes < model.k
        else:
            bad_c = self._bad(key, space, sizes_f, counts, src.sens)[present]
        kept_sizes = sizes[~bad_c]
        suppressed = int(sizes.sum()) - int(kept_sizes.sum())
        anonymous = suppressed <= self.max_sup
        classes = len(kept_sizes)
        classes_all = len(sizes)
        dm_nosup = int(np.dot(sizes, sizes))
        dm_kept = int(np.dot(kept_sizes, kept_sizes))
        metrics: dict[str, float] = {}
        row_bad: npt.NDArray[np.bool_] | None = None
        if suppressed and (want_classes or ((want_metrics or anonymous) and self.only in (None, "loss", "entropy"))):
            bad_dense = np.zeros(space, dtype=bool)
            bad_dense[present[bad_c]] = True
            row_bad = bad_dense[key]
        if want_metrics or anonymous:
            if row_bad is not None:
                sup_gen, sup_counts = self._gen(src, node, row_bad), counts[row_bad]
            else:
                sup_gen, sup_counts = [], counts[:0]
            metrics = self._metrics(node, suppressed, kept_sizes, sup_gen, sup_counts)
        ev = NodeEval(node, anonymous, suppressed, classes, classes_all, dm_nosup, dm_kept, metrics)
        sup_classes: IntArray | None = None
        if want_classes:
            if row_bad is not None:
                idx = np.flatnonzero(row_bad)[np.unique(key[row_bad], return_index=True)[1]]
                sup_classes = np.stack(self._gen(src, node, idx), axis=1).reshape(len(idx), p.q)
            else:
                sup_classes = np.zeros((0, p.q), dtype=np.int64)
        if keep and not want_classes and rows > self.store_min_rows and classes_all < 0.5 * rows:
            if src.sens is None:
                self._store(_Table(node, [], sizes, None, (src, key, space, present)))
            else:
                self._store(self._table(src, node, key, space, present, sizes))
        return ev, sup_classes

    def _metrics(
        self,
        node: tuple[int, ...],
        suppressed: int,
        kept_sizes: IntArray,
        sup_gen: list[IntArray],
        sup_counts: IntArray,
    ) -> dict[str, float]:
        """All five utility metrics, as ARX 3.9.2 computes them with its defaults (lower is better).

        ``n`` records, ``S`` of them suppressed, kept classes of sizes ``s_c``. The per-attribute
        metrics (loss, precision, entropy) run over the *generalisable* QIs only (height ≥ 1; a fixed
        attribute counts for the classes but has no per-attribute loss); ``Q`` is their number.

        - ``loss`` (``Metric.createLossMetric()`` = ``MetricMDNMLoss`` with gs-factor 0.5, so
          generalisation and suppression factors 1, aggregated by ``GEOMETRIC_MEAN``; Iyengar 2002,
          "Transforming data to satisfy privacy constraints", LM). Per attribute, with ARX's domain
          share of a value at a level = (leaves of the hierarchy under its label) / (leaves of the
          hierarchy) (``DomainShareMaterialized``, for a hierarchy given as a table): ``L_j = (Σ kept
          records share + S − n/|D_j|) / (n − n/|D_j|)`` (``normalizeGeneralized``), i.e. the mean over
          records of (leaves under the value − 1) / (|D_j| − 1) with a suppressed record scoring 1;
          0 when ``|D_j| = 1``. Each ``L_j`` is floored to 10 decimals (``Metric.round``) and the
          aggregate is ``Π (1 + L_j)^(1/Q) − 1`` (``ILMultiDimensionalGeometricMean``, weights 1).
        - ``precision`` (``createPrecisionMetric()`` = ``MetricMDNMPrecision``, ``ARITHMETIC_MEAN``;
          Sweeney 2002, "Achieving k-anonymity privacy protection using generalization and
          suppression", Prec): mean over attributes of ((n − S)·level/height + S) / n.
        - ``discernibility`` (``createDiscernabilityMetric()`` = ``MetricSDNMDiscernability``;
          Bayardo & Agrawal 2005, "Data privacy through optimal k-anonymization", DM):
          ``Σ s_c² + n·S``.
        - ``aecs`` (``createAECSMetric()`` = ``MetricSDAECS``, factors 1; LeFevre, DeWitt &
          Ramakrishnan 2006, "Mondrian multidimensional k-anonymity", C_AVG without 1/k): every record
          (suppressed ones included) over the classes, the suppressed records forming one more class:
          ``n / (kept classes + [S > 0])``.
        - ``entropy`` (``createEntropyMetric()`` = ``MetricMDNUNMEntropy``, ``SUM``; non-uniform
          entropy, Gionis & Tassa 2009, "k-Anonymization with minimal loss of information"): per
          attribute ``Σ over all records −log2(N(v) / N(g))`` (``N`` counts records in the data with
          the original value ``v`` and with its generalised value ``g`` at the node's level; suppressed
          records included, ``MetricMDNUEntropyPrecomputed``) plus, for the suppressed records,
          ``Σ_g c_g·log2(S / c_g)`` where ``c_g`` counts the suppressed records whose generalised value
          is ``g`` (``MetricMDNUNMEntropyPrecomputed``); each attribute's sum floored to 10 decimals,
          then summed.
        """
        p = self.p
        n = p.n
        if n == 0:
            return dict.fromkeys(METRICS, 0.0)
        kept = n - suppressed
        only = self.only
        want_loss = only in (None, "loss")
        want_entropy = only in (None, "entropy")
        need_sup = suppressed > 0 and (want_loss or want_entropy)
        losses: list[float] = []
        entropies: list[float] = []
        precision = 0.0
        gen_qis = p.generalisable
        for j in gen_qis if only not in ("discernibility", "aecs") else ():
            lv = node[j]
            h = p.hierarchies[j]
            per_code = (
                np.bincount(sup_gen[j], weights=sup_counts, minlength=h.cardinality(lv)) if need_sup else None
            )
            if want_loss:
                d = h.domain_size
                if d > 1:
                    num = int(p.loss_num[j][lv])
                    if per_code is not None:
                        num += round(float(np.dot(per_code, d - h.leaves_under[lv])))
                    losses.append(_arx_round(num / (n * (d - 1))))
                else:
                    losses.append(0.0)
            if want_entropy:
                ent = float(p.entropy_base[j][lv])
                if per_code is not None:
                    c = per_code[per_code > 0]
                    ent += float(np.dot(c, np.log2(suppressed / c)))
                entropies.append(_arx_round(ent))
            precision += (kept * (lv / h.height) + suppressed) / n
        dm = int(np.dot(kept_sizes, kept_sizes)) + suppressed * n
        groups = len(kept_sizes) + (1 if suppressed else 0)
        return {
            "loss": _geometric_mean_loss(losses),
            "precision": precision / len(gen_qis) if gen_qis else 0.0,
            "discernibility": float(dm),
            "aecs": n / groups,
            "entropy": float(sum(entropies)),
        }


def _arx_round(x: float) -> float:
    """ARX's ``Metric.round``: floor to 10 decimals (values that close compare equal)."""
    return math.floor(x * _ROUND) / _ROUND


def _geometric_mean_loss(values: Sequence[float]) -> float:
    """ARX's ``ILMultiDimensionalGeometricMean`` with weights 1: ``Π (1 + v)^(1/Q) − 1``."""
    if not values:
        return 0.0
    exp = 1.0 / len(values)
    out = 1.0
    for v in values:
        out *= (v + 1.0) ** exp
    return out - 1.0


# --------------------------------------------------------------------------- the search


@dataclass
class SearchResult:
    """The chosen node with its classes, suppression and all metrics, plus search statistics."""

    qis: tuple[str, ...]
    levels: dict[str, int]
    node: tuple[int, ...]
    metric: Metric
    value: float
    classes: int
    suppressed: int
    records: int
    metrics: dict[str, float]
    suppressed_classes: pl.DataFrame  # generalised labels of the suppressed classes (QI columns)
    lattice_size: int
    evaluations: int
    seconds: float
    model: PrivacyModel
    hierarchies: dict[str, Hierarchy]

    def as_dict(self) -> dict[str, object]:
        return {
            "levels": dict(self.levels),
            "classes": self.classes,
            "suppressed": self.suppressed,
            "records": self.records,
            "metric": self.metric,
            "metrics": dict(self.metrics),
            "lattice_size": self.lattice_size,
            "evaluations": self.evaluations,
            "seconds": self.seconds,
        }


def lattice_nodes(heights: Sequence[int]) -> IntArray:
    """All level vectors, in lexicographic order (row index = lexicographic rank)."""
    if not heights:
        return np.zeros((1, 0), dtype=np.int64)
    grids = np.indices([h + 1 for h in heights]).reshape(len(heights), -1).T
    return np.ascontiguousarray(grids.astype(np.int64))


def _better(a: NodeEval, a_idx: int, metric: Metric, b: NodeEval | None, b_idx: int) -> bool:
    if b is None:
        return True
    va, vb = a.metrics[metric], b.metrics[metric]
    if va != vb:
        return va < vb
    return (a.levels_sum, a_idx) < (b.levels_sum, b_idx)


def _static_bounds(
    p: Problem,
    model: PrivacyModel,
    metric: Metric,
    nodes: IntArray,
    sup_lb: IntArray,
    class_ub: tuple[FloatArray, FloatArray] | None = None,
) -> FloatArray:
    """A lower bound of ``metric`` (as :meth:`Evaluator._metrics` defines it) at every node, valid
    whatever the node suppresses beyond ``sup_lb``, a lower bound of its suppressed records.

    - loss: per generalisable attribute, every record's (leaves under its value − 1) at the node's
      levels, plus, for each of at least ``sup_lb`` suppressed records, the least a suppression adds
      (|D| − the most leaves under one value of that level); floored like the metric (floor is
      monotone) and aggregated by the geometric mean, which grows with each attribute's value.
    - precision: level/height, plus ``sup_lb`` records scoring 1 instead.
    - entropy: the generalisation term alone (all records, suppressed ones included): ARX's
      suppression term ``Σ_g c_g·log2(S / c_g)`` is ≥ 0 but 0 when the suppressed records share one
      generalised value, so nothing is added for suppression.
    - discernibility: ``Σ kept size² + n·S`` with the classes counted from the distinct values.
    - aecs: ``n / (kept classes + [S > 0])`` where kept classes + [S > 0] is at most the classes
      (at most the product of the distinct generalised values present) and at most
      ``⌊(n − S)/k⌋ + 1`` (every kept class holds ≥ k records).

    ``class_ub``: upper bounds of (all classes, kept classes) per node (:func:`_pair_class_bounds`),
    which tighten the last two.
    """
    n = p.n
    m = len(nodes)
    if n == 0 or p.q == 0:
        return np.zeros(m)
    s_lb = sup_lb.astype(np.float64)
    if metric in ("loss", "precision", "entropy"):
        gen = p.generalisable
        if not gen:
            return np.zeros(m)
        if metric == "loss":
            agg = np.ones(m)
            exp = 1.0 / len(gen)
            for j in gen:
                h = p.hierarchies[j]
                d = h.domain_size
                if d <= 1:
                    continue  # the attribute's loss is 0: a factor (0 + 1)^exp = 1
                lv = nodes[:, j]
                least = np.array(
                    [d - int(h.leaves_under[x].max()) for x in range(h.height + 1)], dtype=np.int64
                )
                num = p.loss_num[j][lv] + sup_lb * least[lv]
                agg *= (np.floor(num / (n * (d - 1)) * _ROUND) / _ROUND + 1.0) ** exp
            return np.asarray(agg - 1.0, dtype=np.float64)
        total = np.zeros(m)
        for j in gen:
            h = p.hierarchies[j]
            lv = nodes[:, j]
            if metric == "precision":
                frac = lv / h.height
                total += frac + s_lb * (1.0 - frac) / n
            else:
                total += np.floor(p.entropy_base[j][lv] * _ROUND) / _ROUND
        return np.asarray(total / len(gen) if metric == "precision" else total, dtype=np.float64)
    # classes at a node are at most the product of the QIs' distinct generalised values present
    distinct = np.ones(m)
    for j in range(p.q):
        present = np.array([np.count_nonzero(c) for c in p.level_counts[j]], dtype=np.float64)
        distinct *= present[nodes[:, j]]
    distinct = np.minimum(distinct, max(len(p.counts), 1))
    kept_classes = distinct
    if class_ub is not None:
        distinct = np.minimum(distinct, class_ub[0])
        kept_classes = np.maximum(np.minimum(distinct, class_ub[1]), 1.0)
    kept = n - s_lb
    floor_k = float(min(model.k, n))
    if metric == "discernibility":
        # DM = Σ kept size² + S·n with S ≥ s_lb; Σ kept size² ≥ max(kept²/classes, k·kept);
        # the bound grows with S when there are at least two classes, so S = s_lb is its minimum
        kept_min = float(n - model.max_suppressed(n))
        with_s = s_lb * n + np.maximum(kept * kept / kept_classes, floor_k * kept)
        return np.asarray(
            np.where(kept_classes >= 2, with_s, np.maximum(floor_k * n, kept_min * kept_min / kept_classes))
        )
    groups = np.minimum(distinct, np.floor((n - s_lb) / max(model.k, 1)) + 1.0)
    if class_ub is not None:
        groups = np.minimum(groups, class_ub[1] + 1.0)
    return np.asarray(n / np.maximum(groups, 1.0), dtype=np.float64)


def _aecs_bound_above(e: NodeEval, n: int, k: int, monotone: bool) -> float:
    """A lower bound of AECS at every generalisation g of the evaluated node m.

    AECS(g) = n / (kept classes at g + [S(g) > 0]); that denominator is at most the classes at g ≤
    the classes at m, and at most C(m) + ⌊S(m)/k⌋ + [S(g) > 0] (a kept class of g holds a kept class
    of m or ≥ k records suppressed at m), where [S(g) > 0] ≤ [S(m) > 0] when suppression is monotone.
    """
    extra = 1 if (e.suppressed > 0 or not monotone) else 0
    groups = min(e.classes_all, e.classes + e.suppressed // max(k, 1) + extra)
    return n / groups if groups else 0.0


def _distinct_rows(cols: Sequence[IntArray], cards: Sequence[int], counts: IntArray) -> tuple[list[IntArray], IntArray]:
    """The distinct rows of the code columns ``cols`` with their summed ``counts``."""
    key, space, _ = group_ids(cols, cards, len(counts))
    sizes = np.bincount(key, weights=counts, minlength=space)
    present = np.flatnonzero(sizes > 0)
    first = _first_rows(key, space, present)
    return [c[first] for c in cols], sizes[present].round().astype(np.int64)


def _roll_up_axis(mat: IntArray, h: Hierarchy, level: int, axis: int) -> IntArray:
    """Sum the rows (``axis`` 0) or columns (1) of a count matrix over level ``level - 1`` codes into
    level ``level`` codes (the lookup array is onto, so every group is non-empty)."""
    up = h.up(level - 1, level)
    order = np.argsort(up, kind="stable")
    starts = np.concatenate(([0], np.cumsum(np.bincount(up, minlength=h.cardinality(level)))[:-1]))
    return np.asarray(np.add.reduceat(np.take(mat, order, axis=axis), starts, axis=axis), dtype=np.int64)


_STATS = 3  # per QI-pair cell table: records in bad cells, cells present, Σ ⌊size/k⌋ over good cells


def _cell_stats(sizes: FloatArray, k: int, bad: npt.NDArray[np.bool_]) -> tuple[int, int, int]:
    """(records in bad cells, cells present, most kept classes inside the good cells) of one table."""
    good = ~bad
    return (
        round(float(sizes[bad].sum())),
        int(np.count_nonzero(sizes)),
        int(np.floor(sizes[good] / max(k, 1)).sum()),
    )


def _dense_pair_table(p: Problem, k: int, a: int, b: int) -> IntArray:
    """:data:`_STATS` statistics of the QI-pair cells (a cell is bad with fewer than ``k`` records), for
    every pair of levels of QIs ``a`` and ``b``, from their leaf count matrix rolled up level by level."""
    ha, hb = p.hierarchies[a], p.hierarchies[b]
    ca, cb = ha.cardinality(0), hb.cardinality(0)
    cols = p.columns
    row = np.bincount(cols[a] * cb + cols[b], weights=p.counts, minlength=ca * cb)
    row_mat = row.round().astype(np.int64).reshape(ca, cb)
    table = np.zeros((_STATS, ha.height + 1, hb.height + 1), dtype=np.int64)
    for la in range(ha.height + 1):
        if la:
            row_mat = _roll_up_axis(row_mat, ha, la, 0)
        mat = row_mat
        for lb in range(hb.height + 1):
            if lb:
                mat = _roll_up_axis(mat, hb, lb, 1)
            table[:, la, lb] = _cell_stats(mat.ravel().astype(np.float64), k, (mat < k).ravel())
    return table


@dataclass
class _PairTables:
    """Per QI pair ``(a, b)`` (or ``(0, 0)`` for a single QI), :data:`_STATS` statistics of its cells
    at every pair of levels: array of shape (_STATS, h_a + 1, h_b + 1)."""

    tables: dict[tuple[int, int], IntArray]

    def at(self, nodes: IntArray, stat: int) -> list[IntArray]:
        return [t[stat][nodes[:, a], nodes[:, b]] for (a, b), t in self.tables.items()]


def _pair_tables(p: Problem, model: PrivacyModel) -> _PairTables:
    """Statistics of the QI-pair combinations at every pair of levels: records in combinations
    holding fewer than k records (or fewer than l distinct sensitive values), combinations present,
    and Σ ⌊records/k⌋ over the other combinations.

    Each pair's table of distinct leaf combinations (with the sensitive value under l-diversity) is
    built once from the frequency table and rolled up level by level (a level's table from the one
    below it), so the frequency table is read once per pair, not once per pair of levels."""
    q = p.q
    out: dict[tuple[int, int], IntArray] = {}
    if q == 0 or len(p.counts) == 0:
        return _PairTables(out)
    hs = p.hierarchies
    ldiv = model.l is not None and p.sensitive is not None
    n_sens = len(p.sensitive_labels)
    extra: list[IntArray] = [p.sensitive] if ldiv and p.sensitive is not None else []
    extra_cards = [n_sens] if ldiv else []
    cols0 = p.columns

    def stats(a_col: IntArray, a_card: int, b_col: IntArray | None, b_card: int, counts: IntArray) -> tuple[int, int, int]:
        cols, cards = ([a_col], [a_card]) if b_col is None else ([a_col, b_col], [a_card, b_card])
        key, space, _ = group_ids(cols, cards, len(counts))
        sizes = np.asarray(np.bincount(key, weights=counts, minlength=space), dtype=np.float64)
        bad = sizes < model.k
        if ldiv:
            assert model.l is not None
            bad |= np.bincount(key, minlength=space) < model.l  # rows are distinct (cell, value)
        return _cell_stats(sizes, model.k, bad)

    if q == 1:
        h = hs[0]
        cols, counts = _distinct_rows([cols0[0], *extra], [h.cardinality(0), *extra_cards], p.counts)
        single = np.zeros((_STATS, h.height + 1, h.height + 1), dtype=np.int64)
        for lv in range(h.height + 1):
            if lv:
                cols, counts = _distinct_rows(
                    [h.up(lv - 1, lv)[cols[0]], *cols[1:]], [h.cardinality(lv), *extra_cards], counts
                )
            single[:, lv, :] = np.asarray(stats(cols[0], h.cardinality(lv), None, 1, counts))[:, None]
        out[(0, 0)] = single
        return _PairTables(out)
    dense_limit = max(4 * len(p.counts), 1 << 20)
    for a in range(q):
        for b in range(a + 1, q):
            ha, hb = hs[a], hs[b]
            if not ldiv and ha.cardinality(0) * hb.cardinality(0) <= dense_limit:
                out[(a, b)] = _dense_pair_table(p, model.k, a, b)
                continue
            row, row_counts = _distinct_rows(
                [cols0[a], cols0[b], *extra],
                [ha.cardinality(0), hb.cardinality(0), *extra_cards],
                p.counts,
            )
            table = np.zeros((_STATS, ha.height + 1, hb.height + 1), dtype=np.int64)
            for la in range(ha.height + 1):
                if la:
                    row, row_counts = _distinct_rows(
                        [ha.up(la - 1, la)[row[0]], *row[1:]],
                        [ha.cardinality(la), hb.cardinality(0), *extra_cards],
                        row_counts,
                    )
                cols, counts = row, row_counts
                for lb in range(hb.height + 1):
                    if lb:
                        cols, counts = _distinct_rows(
                            [cols[0], hb.up(lb - 1, lb)[cols[1]], *cols[2:]],
                            [ha.cardinality(la), hb.cardinality(lb), *extra_cards],
                            counts,
                        )
                    table[:, la, lb] = stats(cols[0], ha.cardinality(la), cols[1], hb.cardinality(lb), counts)
            out[(a, b)] = table
    return _PairTables(out)


def _pair_suppression_bound(
    p: Problem, model: PrivacyModel, nodes: IntArray, pairs: _PairTables | None = None
) -> IntArray:
    """Records that every node must suppress: those in a QI-pair combination (at the node's levels)
    holding fewer than k records (or fewer than l distinct sensitive values)."""
    pairs = pairs if pairs is not None else _pair_tables(p, model)
    out = np.zeros(len(nodes), dtype=np.int64)
    for t in pairs.at(nodes, 0):
        np.maximum(out, t, out=out)
    return out


def _pair_class_bounds(p: Problem, nodes: IntArray, pairs: _PairTables) -> tuple[FloatArray, FloatArray]:
    """Upper bounds of (all classes, kept classes) at every node from the QI-pair cells: a class lies
    in one cell of each pair, so the classes are at most the product of the cells present over a
    matching of the QIs into pairs (a QI left alone: its values present); a kept class holds at least
    k records, all inside one good cell of each pair, so the kept classes are at most Σ ⌊size/k⌋ over
    the good cells of any pair."""
    q, m = p.q, len(nodes)
    classes = np.full(m, float(max(len(p.counts), 1)))
    kept = np.full(m, np.inf)
    if not pairs.tables or m == 0:
        return classes, kept
    for t in pairs.at(nodes, 2):
        np.minimum(kept, t, out=kept)
    if q == 1:
        np.minimum(classes, pairs.tables[(0, 0)][1][nodes[:, 0], nodes[:, 0]], out=classes)
        return classes, kept
    singles = [
        np.array([np.count_nonzero(c) for c in p.level_counts[j]], dtype=np.float64)[nodes[:, j]] for j in range(q)
    ]
    for shift in (0, 1):
        order = [(j + shift) % q for j in range(q)]
        prod = np.ones(m)
        for i in range(0, q - 1, 2):
            a, b = sorted((order[i], order[i + 1]))
            prod *= pairs.tables[(a, b)][1][nodes[:, a], nodes[:, b]]
        if q % 2:
            prod *= singles[order[-1]]
        np.minimum(classes, prod, out=classes)
    return classes, kept


def _pair_suppression_bound_reference(p: Problem, model: PrivacyModel, nodes: IntArray) -> IntArray:
    """:func:`_pair_suppression_bound` computed directly, one grouping of the frequency table per
    pair of levels (reference for tests)."""
    q, m = p.q, len(nodes)
    out = np.zeros(m, dtype=np.int64)
    if q == 0 or len(p.counts) == 0:
        return out
    hs = p.hierarchies
    singles = [[hs[j].maps[lv][p.codes[:, j]] for lv in range(hs[j].height + 1)] for j in range(q)]
    pairs = [(a, b) for a in range(q) for b in range(a + 1, q)] if q > 1 else [(0, 0)]
    for a, b in pairs:
        table = np.zeros((hs[a].height + 1, hs[b].height + 1), dtype=np.int64)
        for la in range(hs[a].height + 1):
            for lb in range(hs[b].height + 1):
                cb = hs[b].cardinality(lb)
                key = singles[a][la] * cb + singles[b][lb] if a != b else singles[a][la]
                space = hs[a].cardinality(la) * cb
                sizes = np.bincount(key, weights=p.counts, minlength=space)
                bad = sizes < model.k
                if model.l is not None and p.sensitive is not None:
                    ns = len(p.sensitive_labels)
                    up = np.unique(key * ns + p.sensitive)
                    bad |= np.bincount(up // ns, minlength=space) < model.l
                table[la, lb] = round(float(sizes[bad].sum()))
        out = np.maximum(out, table[nodes[:, a], nodes[:, b]])
    return out


def search(
    problem: Problem,
    model: PrivacyModel | None = None,
    metric: Metric = "loss",
    *,
    prune: bool = True,
    ceiling: Sequence[int] | None = None,
) -> SearchResult:
    """The optimal anonymous node for ``metric`` (exact; ``prune=False`` evaluates every node).

    ``ceiling``: the highest level each QI may take (e.g. below the level where it would collapse to
    one value); nodes above it are never chosen."""
    model = model or PrivacyModel()
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r} (known: {', '.join(METRICS)})")
    if problem.lattice_size > _MAX_LATTICE:
        raise ValueError(f"lattice of {problem.lattice_size} nodes is too large (at most {_MAX_LATTICE})")
    start = time.perf_counter()
    p = problem
    nodes = lattice_nodes(p.heights)
    m = len(nodes)
    ev = Evaluator(p, model)
    ev.only = metric
    best: NodeEval | None = None
    best_idx = -1
    within: npt.NDArray[np.bool_] = np.ones(m, dtype=bool)
    if ceiling is not None:
        within = np.asarray((nodes <= np.asarray(ceiling, dtype=np.int64)).all(axis=1), dtype=bool)
    if not prune:
        for idx in np.flatnonzero(within):
            e = ev.evaluate(tuple(int(x) for x in nodes[idx]), keep=True)
            if e.anonymous and _better(e, int(idx), metric, best, best_idx):
                best, best_idx = e, int(idx)
    else:
        best, best_idx = _branch_and_bound(p, model, metric, nodes, ev, within)
    if best is None:
        raise NoSolutionError(
            f"no generalisation is {model.k}-anonymous"
            + (f" and {model.l}-diverse" if model.l else "")
            + f" with at most {model.suppression:.1%} of {p.n} records suppressed"
            + (" within the levels allowed" if ceiling is not None else "")
        )
    ev.only = None
    final, sup_codes = ev.suppressed_classes(best.node)
    sup_frame = pl.DataFrame(
        {
            q: pl.Series(q, p.hierarchies[j].labels[best.node[j]], dtype=pl.String).gather(sup_codes[:, j])
            for j, q in enumerate(p.qis)
        }
    )
    return SearchResult(
        qis=p.qis,
        levels={qn: int(lv) for qn, lv in zip(p.qis, best.node, strict=True)},
        node=best.node,
        metric=metric,
        value=final.metrics[metric],
        classes=final.classes,
        suppressed=final.suppressed,
        records=p.n,
        metrics=final.metrics,
        suppressed_classes=sup_frame,
        lattice_size=m,
        evaluations=ev.evaluations,
        seconds=time.perf_counter() - start,
        model=model,
        hierarchies=dict(zip(p.qis, p.hierarchies, strict=True)),
    )


def _branch_and_bound(
    p: Problem, model: PrivacyModel, metric: Metric, nodes: IntArray, ev: Evaluator,
    within: npt.NDArray[np.bool_] | None = None,
) -> tuple[NodeEval | None, int]:
    m = len(nodes)
    heights = np.asarray(p.heights, dtype=np.int64)
    strides = np.ones(p.q, dtype=np.int64)
    for j in range(p.q - 2, -1, -1):
        strides[j] = strides[j + 1] * (heights[j + 1] + 1)
    # entropy l-diversity with suppression is not monotone (a diverse class merged with a
    # non-diverse one may not be diverse): no predictive tagging and no bounds that rely on it
    monotone = model.l is None or model.l_variant == "distinct"
    pairs = _pair_tables(p, model)
    sup_lb = _pair_suppression_bound(p, model, nodes, pairs)
    class_ub = _pair_class_bounds(p, nodes, pairs) if metric in ("discernibility", "aecs") else None
    lb = _static_bounds(p, model, metric, nodes, sup_lb, class_ub)
    sums = nodes.sum(axis=1)
    order = np.lexsort((np.arange(m), sums, lb))
    status = np.zeros(m, dtype=np.int8)  # 1 anonymous, -1 not, 0 unknown
    status[sup_lb > ev.max_sup] = -1
    # generalising the QI that keeps the most distinct values first stays longest below the border
    keep_ratio = [
        [int(np.count_nonzero(c[lv + 1])) / max(int(np.count_nonzero(c[lv])), 1) for lv in range(len(c) - 1)]
        for c in p.level_counts
    ]
    dyn = lb.copy()
    sup_extra = sup_lb.astype(np.float64) * max(p.n - model.k, 0)
    memo: dict[int, NodeEval] = {}
    # the lattice as an array of shape (1, h_1 + 1, ..., h_q + 1) (row index = lexicographic rank):
    # the generalisations of a node are the box above it, its specialisations the box below
    shape = (1, *(h + 1 for h in p.heights))
    status_box = status.reshape(shape)
    dyn_box = dyn.reshape(shape)
    sup_extra_box = sup_extra.reshape(shape)
    node_lists: list[list[int]] = nodes.tolist()

    def above(node: tuple[int, ...]) -> tuple[slice, ...]:
        return (slice(None), *(slice(lv, None) for lv in node))

    def below(node: tuple[int, ...]) -> tuple[slice, ...]:
        return (slice(None), *(slice(0, lv + 1) for lv in node))

    def check(idx: int) -> NodeEval:
        e = memo.get(idx)
        if e is not None:
            return e
        node = tuple(node_lists[idx])
        e = ev.evaluate(node, keep=True, metrics=False)
        memo[idx] = e
        up = above(node)
        if monotone:
            down = below(node)
            if e.anonymous:
                status_box[up] = 1
            else:
                status_box[down] = -1
            if e.suppressed and metric in ("discernibility", "aecs"):
                # records suppressed here are suppressed at every specialisation x (its classes split
                # these ones): S(x) ≥ S(m), and kept classes hold ≥ k records each
                box = dyn_box[down]
                if metric == "discernibility":
                    # DM(x) = Σ kept size² + n·S(x) ≥ k'·(n − S(x)) + n·S(x) ≥ k'·n + (n − k')·S(m)
                    k_n = min(model.k, p.n)
                    np.maximum(box, float(k_n * p.n + (p.n - k_n) * e.suppressed), out=box)
                else:
                    # AECS(x) = n / (kept classes + [S > 0]) ≥ n / (⌊(n − S(m))/k⌋ + 1)
                    np.maximum(box, p.n / ((p.n - e.suppressed) // max(model.k, 1) + 1), out=box)
        else:
            status[idx] = 1 if e.anonymous else -1
        if metric in ("discernibility", "aecs"):
            # bounds for every generalisation g of this node (m); classes only merge from m to g
            box = dyn_box[up]
            if metric == "discernibility":
                # DM(g) ≥ Σ size² before suppression at m; with monotone suppression S(g) ≤ S(m):
                # each record suppressed at m either stays suppressed in g (cost n) or joins a kept
                # class (cost ≥ k), so DM(g) ≥ Σ kept size² at m + k·S(m) + (n − k)·S(g)
                np.maximum(box, float(e.dm_nosup), out=box)
                if monotone:
                    base = float(e.dm_kept + model.k * e.suppressed)
                    np.maximum(box, base + sup_extra_box[up], out=box)
            else:
                np.maximum(box, _aecs_bound_above(e, p.n, model.k, monotone), out=box)
        return e

    def classify(idx: int) -> None:
        """Binary search for the anonymity border on a path up from an unknown node (Flash)."""
        if not monotone:
            check(idx)
            return
        chain = [idx]
        cur = nodes[idx].copy()
        while True:
            options = [j for j in range(p.q) if cur[j] < heights[j]]
            if not options:
                break
            j = max(options, key=lambda j: (keep_ratio[j][cur[j]], -j))
            cur[j] += 1
            nxt = int(np.dot(cur, strides))
            if status[nxt] != 0:
                break
            chain.append(nxt)
        lo, hi = 0, len(chain)
        while lo < hi:
            mid = (lo + hi) // 2
            if check(chain[mid]).anonymous:
                hi = mid
            else:
                lo = mid + 1

    best: NodeEval | None = None
    best_idx = -1
    tol = 1e-9
    for idx in order:
        idx = int(idx)
        if best is not None:
            limit = best.metrics[metric] + tol * max(1.0, abs(best.metrics[metric]))
            if lb[idx] > limit:
                break
            if dyn[idx] > limit:
                continue
        if within is not None and not within[idx]:
            continue
        if status[idx] == 0:
            classify(idx)
        if status[idx] == -1:
            continue
        e = check(idx)
        if not e.metrics:
            e = ev.evaluate(e.node, keep=False, metrics=True)
            memo[idx] = e
        if _better(e, idx, metric, best, best_idx):
            best, best_idx = e, idx
    return best, best_idx


def brute_force(problem: Problem, model: PrivacyModel | None = None, metric: Metric = "loss") -> SearchResult:
    """Evaluate every node of the lattice (reference for tests)."""
    return search(problem, model, metric, prune=False)


# --------------------------------------------------------------------------- applying a decision


def apply_levels(
    data: Frame,
    hierarchies: Mapping[str, Hierarchy],
    levels: Mapping[str, int],
    suppressed_classes: pl.DataFrame | None = None,
) -> Frame:
    """Generalise each QI column to its level (as the hierarchy's label, a string) and remove the rows
    of the suppressed classes. Works on a DataFrame or a LazyFrame (returned as the same kind);
    every other column is kept as it is. A value missing from its hierarchy raises."""
    lf = data.lazy() if isinstance(data, pl.DataFrame) else data
    exprs = []
    for col, lv in levels.items():
        h = hierarchies[col]
        mapping = h.label_map(lv)
        exprs.append(
            pl.col(col)
            .cast(pl.String)
            .replace_strict(list(mapping), list(mapping.values()), return_dtype=pl.String)
        )
    lf = lf.with_columns(exprs)
    if suppressed_classes is not None and suppressed_classes.height:
        keys = list(levels)
        lf = lf.join(suppressed_classes.select(keys).lazy(), on=keys, how="anti", nulls_equal=True)
    return lf.collect() if isinstance(data, pl.DataFrame) else lf


def apply_result(data: Frame, result: SearchResult) -> Frame:
    """:func:`apply_levels` with the levels and suppressed classes of a search result."""
    return apply_levels(data, result.hierarchies, result.levels, result.suppressed_classes)


def all_nodes(heights: Sequence[int]) -> Iterable[tuple[int, ...]]:
    return itertools.product(*(range(h + 1) for h in heights))
