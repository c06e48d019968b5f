"""Re-identification risk of a table of quasi-identifiers, before and after anonymisation.

Models (as in ARX and El Emam's "Guide to the De-Identification of Personal Health Information"):

- *prosecutor*: the attacker knows the person is in the data; a record's risk is 1 / size of its
  equivalence class. Highest = 1 / smallest class; average = classes / records.
- *records at risk*: share of records whose prosecutor risk exceeds a threshold.
- *sample uniques*: share of records alone in their class.
- *marketer*: the expected share of records re-identified when the attacker links every record:
  classes / records without population data; with a population table,
  (1 / n) Σ_c f_c / F_c.
- *journalist*: the attacker does not know who is in the data and links against the population;
  a record's risk is 1 / F_c, the population size of its class (never smaller than the sample's).

All functions work on class sizes or on the encoded frequency table, never on rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl

from anonymisation.kanon import COUNT, Evaluator, IntArray, PrivacyModel, Problem, group_ids

POPULATION_COUNT_COLUMNS = ("count", "population", "n", COUNT)


@dataclass(frozen=True)
class RiskProfile:
    """Risk figures of one release (or of the original data)."""

    records: int
    classes: int
    threshold: float
    prosecutor_max: float
    prosecutor_avg: float
    records_at_risk: float  # share of records with risk > threshold
    records_at_risk_count: int
    sample_uniques: float  # share
    sample_uniques_count: int
    marketer: float
    journalist_max: float | None = None
    journalist_avg: float | None = None
    size_counts: dict[int, int] = field(default_factory=dict)  # class size -> number of classes

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["size_counts"] = {str(k): v for k, v in sorted(self.size_counts.items())}
        return d

    def share_above(self, level: float) -> float:
        """Share of records whose prosecutor risk (1 / class size) exceeds ``level``."""
        if not self.records:
            return 0.0
        above = sum(size * n for size, n in self.size_counts.items() if 1.0 / size > level)
        return above / self.records


def profile_from_sizes(
    sizes: IntArray | Sequence[int],
    threshold: float = 0.2,
    journalist: tuple[float, float] | None = None,
) -> RiskProfile:
    """Risk from the sizes of the released equivalence classes."""
    arr = np.asarray(sizes, dtype=np.int64)
    arr = arr[arr > 0]
    n = int(arr.sum())
    c = len(arr)
    if n == 0:
        return RiskProfile(
            0,
            0,
            threshold,
            0.0,
            0.0,
            0.0,
            0,
            0.0,
            0,
            0.0,
            journalist[0] if journalist else None,
            journalist[1] if journalist else None,
            {},
        )
    at_risk = int(arr[1.0 / arr > threshold].sum())
    uniques = int(arr[arr == 1].sum())
    values, freq = np.unique(arr, return_counts=True)
    return RiskProfile(
        records=n,
        classes=c,
        threshold=threshold,
        prosecutor_max=1.0 / float(arr.min()),
        prosecutor_avg=c / n,
        records_at_risk=at_risk / n,
        records_at_risk_count=at_risk,
        sample_uniques=uniques / n,
        sample_uniques_count=uniques,
        marketer=journalist[1] if journalist else c / n,
        journalist_max=journalist[0] if journalist else None,
        journalist_avg=journalist[1] if journalist else None,
        size_counts={int(v): int(f) for v, f in zip(values, freq, strict=True)},
    )


# --------------------------------------------------------------------------- population


def _population_count_column(population: pl.DataFrame) -> str:
    for c in POPULATION_COUNT_COLUMNS:
        if c in population.columns:
            return c
    raise ValueError(f"population table needs a count column (one of {', '.join(POPULATION_COUNT_COLUMNS)})")


def journalist_risk(
    problem: Problem, node: Sequence[int], codes: IntArray, sizes: IntArray, population: pl.DataFrame
) -> tuple[float, float]:
    """(highest, average) journalist risk of the released classes against a population table.

    The population table has some of the QI columns (values = labels of their hierarchy at some
    level, e.g. year-of-birth bands, sex, canton) and a count column. Both sides are compared at the
    coarser of the release level and the population's level, over the QIs the population describes;
    a record's risk is 1 / max(F, f), F the population count of its cell, f the sample's.
    """
    count_col = _population_count_column(population)
    cols = [c for c in population.columns if c in problem.qis]
    if not cols:
        raise ValueError(f"population table shares no column with the quasi-identifiers {list(problem.qis)}")
    n = int(sizes.sum())
    if n == 0:
        return 0.0, 0.0
    sample_cols: list[IntArray] = []
    pop_cols: list[IntArray] = []
    cards: list[int] = []
    for c in cols:
        j = problem.qis.index(c)
        h = problem.hierarchies[j]
        values = population[c].cast(pl.String).to_list()
        level = None
        for lv in range(h.height + 1):
            labels = set(h.labels[lv])
            if all(v in labels for v in values):
                level = lv
                break
        if level is None:
            known = {lab for level_labels in h.labels for lab in level_labels}
            bad = [v for v in dict.fromkeys(values) if v not in known][:5]
            raise ValueError(f"population column {c}: values not in hierarchy {h.name}: {bad}")
        cmp_level = max(level, int(node[j]))
        index = {lab: i for i, lab in enumerate(h.labels[level])}
        pop_codes = np.array([index[v] for v in values], dtype=np.int64)
        pop_cols.append(h.up(level, cmp_level)[pop_codes])
        sample_cols.append(h.up(int(node[j]), cmp_level)[codes[:, j]])
        cards.append(h.cardinality(cmp_level))
    pop_counts = population[count_col].cast(pl.Int64).to_numpy()
    both = [np.concatenate([s, pc]) for s, pc in zip(sample_cols, pop_cols, strict=True)]
    key, space, _ = group_ids(both, cards, len(both[0]))
    skey, pkey = key[: len(sizes)], key[len(sizes) :]
    f = np.bincount(skey, weights=sizes, minlength=space)
    big_f = np.bincount(pkey, weights=pop_counts, minlength=space)
    eff = np.maximum(big_f, f)[skey]
    risk = 1.0 / eff
    return float(risk.max()), float(np.dot(sizes, risk) / n)


def read_population(path: str) -> pl.DataFrame:
    """A population CSV (``,`` or ``;`` separated): QI columns and a count column."""
    with open(path, encoding="utf-8-sig") as fh:
        head = fh.readline()
    sep = ";" if head.count(";") > head.count(",") else ","
    return pl.read_csv(path, separator=sep, infer_schema=False)


# --------------------------------------------------------------------------- before / after


def _evaluator(problem: Problem, model: PrivacyModel | None) -> Evaluator:
    return Evaluator(problem, model or PrivacyModel(k=1, suppression=0.0))


def risk_at(
    problem: Problem,
    node: Sequence[int],
    model: PrivacyModel | None = None,
    threshold: float = 0.2,
    population: pl.DataFrame | None = None,
) -> RiskProfile:
    """Risk of the data generalised to ``node``; with ``model``, its suppressed classes are removed."""
    ev = _evaluator(problem, model)
    codes, sizes = ev.classes(tuple(int(x) for x in node), kept_only=model is not None)
    journalist = journalist_risk(problem, node, codes, sizes, population) if population is not None else None
    return profile_from_sizes(sizes, threshold, journalist)


def risk_before_after(
    problem: Problem,
    node: Sequence[int],
    model: PrivacyModel,
    threshold: float = 0.2,
    population: pl.DataFrame | None = None,
) -> tuple[RiskProfile, RiskProfile]:
    """Risk of the original data (level 0, nothing suppressed) and of the release."""
    before = risk_at(problem, (0,) * problem.q, None, threshold, population)
    after = risk_at(problem, node, model, threshold, population)
    return before, after


@dataclass(frozen=True)
class QIContribution:
    """How much one QI adds to uniqueness: uniques and records at risk when it is removed or
    generalised one more level (the others unchanged)."""

    qi: str
    level: int
    uniques: float
    uniques_without: float
    uniques_one_level_up: float | None
    at_risk: float
    at_risk_without: float
    at_risk_one_level_up: float | None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def qi_contributions(
    problem: Problem,
    node: Sequence[int],
    model: PrivacyModel | None = None,
    threshold: float = 0.2,
) -> list[QIContribution]:
    """Each QI's contribution at ``node`` (over the released classes when ``model`` is given)."""
    ev = _evaluator(problem, model)
    codes, sizes = ev.classes(tuple(int(x) for x in node), kept_only=model is not None)
    n = int(sizes.sum())
    hs = problem.hierarchies

    def shares(cols: list[IntArray], cards: list[int]) -> tuple[float, float]:
        if n == 0:
            return 0.0, 0.0
        if not cols:
            s = np.array([n])
        else:
            key, space, _ = group_ids(cols, cards, len(sizes))
            s = np.bincount(key, weights=sizes, minlength=space).round().astype(np.int64)
            s = s[s > 0]
        return float(s[s == 1].sum()) / n, float(s[1.0 / np.maximum(s, 1) > threshold].sum()) / n

    base_cols = [codes[:, j] for j in range(problem.q)]
    base_cards = [hs[j].cardinality(int(node[j])) for j in range(problem.q)]
    u0, r0 = shares(base_cols, base_cards)
    out: list[QIContribution] = []
    for j, qi in enumerate(problem.qis):
        others = [i for i in range(problem.q) if i != j]
        uw, rw = shares([base_cols[i] for i in others], [base_cards[i] for i in others])
        lv = int(node[j])
        uu: float | None = None
        ru: float | None = None
        if lv < hs[j].height:
            cols = list(base_cols)
            cards = list(base_cards)
            cols[j] = hs[j].up(lv, lv + 1)[codes[:, j]]
            cards[j] = hs[j].cardinality(lv + 1)
            uu, ru = shares(cols, cards)
        out.append(QIContribution(qi, lv, u0, uw, uu, r0, rw, ru))
    return out


def population_frame(rows: Mapping[tuple[str, ...], int], columns: Sequence[str]) -> pl.DataFrame:
    """Build a population table from ``{(value, ...): count}`` (handy in tests and notebooks)."""
    data: dict[str, list[object]] = {c: [] for c in columns}
    data["count"] = []
    for key, cnt in rows.items():
        for c, v in zip(columns, key, strict=True):
            data[c].append(v)
        data["count"].append(cnt)
    return pl.DataFrame(data)
