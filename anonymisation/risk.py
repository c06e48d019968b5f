"""Re-identification risk of a table of quasi-identifiers, before and after anonymisation.

Attacker models as in ARX (``RiskModelSampleSummary``) and El Emam's "Guide to the De-Identification
of Personal Health Information" (2013), ch. "Measuring the Probability of Re-Identification".
``f`` is the size of a record's class in the release, ``F`` the size of its class in the population,
``n`` the number of records, ``J`` the number of classes:

- *prosecutor*: the attacker knows the person is in the data; a record's risk is 1 / f.
  Highest = 1 / smallest f; average = J / n.
- *records at risk*: share of records whose prosecutor risk exceeds a threshold.
- *sample uniques*: share of records alone in their class.
- *marketer*: the expected share of records re-identified when the attacker links every record,
  (1 / n) Σ_c f_c / F_c; without a population table F = f and this is J / n.
- *journalist* (needs a population table, :func:`journalist_risk`): the attacker does not know who
  is in the data and links against the population; a record's risk is 1 / F of its class (F never
  smaller than f). Highest = 1 / smallest F; average = max(J / Σ_c F_c, marketer): the better of
  targeting one person of the population who matches some released class (J / Σ F) and
  linking every released record (the marketer's rate), as ARX and El Emam define it.
- *population uniqueness* (no population table, only its size, :func:`population_uniqueness`): the
  estimated share of records unique in the population, by the models of Zayatz, Pitman and the
  slide negative binomial, chosen by Dankar et al.'s rule as ARX does; and the per-record risk of
  Benedetti and Franconi as sdcMicro's ``indivRisk`` computes it.

All functions work on class sizes or on the encoded frequency table, never on rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import polars as pl

from anonymisation.kanon import COUNT, Evaluator, IntArray, PrivacyModel, Problem, group_ids

POPULATION_COUNT_COLUMNS = ("count", "population", "n", COUNT)
FloatArray = npt.NDArray[np.float64]


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


class PopulationRisk(NamedTuple):
    """Journalist and marketer risk of a release against a population table
    (:func:`journalist_risk`)."""

    journalist_max: float  # 1 / smallest F
    journalist_avg: float  # max(J / Σ F, marketer)
    marketer: float  # (1 / n) Σ f / F


def profile_from_sizes(
    sizes: IntArray | Sequence[int],
    threshold: float = 0.2,
    journalist: PopulationRisk | tuple[float, float] | None = None,
    *,
    marketer: float | None = None,
) -> RiskProfile:
    """Risk from the sizes of the released equivalence classes.

    ``journalist`` is what :func:`journalist_risk` returns (it carries the marketer risk against
    the population). A bare ``(highest, average)`` pair, as a profile's JSON keeps it, carries no
    marketer figure: pass the stored one as ``marketer``; without it the marketer risk is bounded
    from above by min(J / n, journalist average), both of which can only exceed it.
    """
    arr = np.asarray(sizes, dtype=np.int64)
    arr = arr[arr > 0]
    n = int(arr.sum())
    c = len(arr)
    j_max = float(journalist[0]) if journalist is not None else None
    j_avg = float(journalist[1]) if journalist is not None else None
    if marketer is None:
        if isinstance(journalist, PopulationRisk):
            marketer = journalist.marketer
        elif journalist is not None and n:
            marketer = min(c / n, float(journalist[1]))
    if n == 0:
        return RiskProfile(0, 0, threshold, 0.0, 0.0, 0.0, 0, 0.0, 0, marketer or 0.0, j_max, j_avg, {})
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
        marketer=c / n if marketer is None else float(marketer),
        journalist_max=j_max,
        journalist_avg=j_avg,
        size_counts={int(v): int(f) for v, f in zip(values, freq, strict=True)},
    )


# --------------------------------------------------------------------------- population table


class PopulationTableError(ValueError):
    """A population table that cannot give the journalist risk of this problem."""


def _population_count_column(population: pl.DataFrame) -> str:
    for c in POPULATION_COUNT_COLUMNS:
        if c in population.columns:
            return c
    raise PopulationTableError(
        f"population table needs a count column (one of {', '.join(POPULATION_COUNT_COLUMNS)})"
    )


def check_population(problem: Problem, population: pl.DataFrame) -> str:
    """Refuse a population table that lacks a quasi-identifier; return its count column.

    Counts that ignore a quasi-identifier are sums over its values, so every F would be too large
    and the journalist risk understated.
    """
    count_col = _population_count_column(population)
    missing = [q for q in problem.qis if q not in population.columns]
    if missing:
        raise PopulationTableError(
            f"population table lacks quasi-identifier column(s) {', '.join(missing)}: add them "
            f"(one count per combination of all of {', '.join(problem.qis)}), or leave the population "
            "table out and estimate population uniqueness from the population size instead"
        )
    return count_col


def journalist_risk(
    problem: Problem, node: Sequence[int], codes: IntArray, sizes: IntArray, population: pl.DataFrame
) -> PopulationRisk:
    """Journalist (highest, average) and marketer risk of the released classes against a population.

    The population table has every QI column (values = labels of its hierarchy at some level, e.g.
    year-of-birth bands, sex, canton) and a count column; a table lacking a QI is refused
    (:class:`PopulationTableError`). Each QI is compared at the coarser of the release level and
    the population's level; a *cell* is a combination of those values, F its population count
    (never smaller than f, the sample's count in that cell). With J the cells holding records:

    - highest = 1 / min F (the record in the smallest population cell),
    - marketer = (1 / n) Σ f / F (the mean over records of 1 / F),
    - average = max(J / Σ F, marketer) (ARX ``RiskModelSampleSummary.getJournalistRisk``; El Emam).

    When the population is coarser than the release, several released classes share a cell and
    the figures are those of the coarser cells (a lower bound on the risk of the finer release).
    """
    count_col = check_population(problem, population)
    n = int(sizes.sum())
    if n == 0:
        return PopulationRisk(0.0, 0.0, 0.0)
    sample_cols: list[IntArray] = []
    pop_cols: list[IntArray] = []
    cards: list[int] = []
    for j, c in enumerate(problem.qis):
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
            raise PopulationTableError(f"population column {c}: values not in hierarchy {h.name}: {bad}")
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
    held = f > 0
    f_cells = f[held]
    big_f_cells = np.maximum(big_f[held], f_cells)
    marketer = float((f_cells / big_f_cells).sum() / n)
    average = max(len(f_cells) / float(big_f_cells.sum()), marketer)
    return PopulationRisk(float(1.0 / big_f_cells.min()), average, marketer)


def read_population(path: str) -> pl.DataFrame:
    """A population CSV (``,`` or ``;`` separated): QI columns and a count column."""
    with open(path, encoding="utf-8-sig") as fh:
        head = fh.readline()
    sep = ";" if head.count(";") > head.count(",") else ","
    return pl.read_csv(path, separator=sep, infer_schema=False)


# --------------------------------------------------------------------------- population uniqueness

UNIQUENESS_MODELS = ("dankar", "pitman", "zayatz", "snb")
DANKAR_PITMAN_LIMIT = 0.1  # Dankar et al.: Pitman up to this sampling fraction, above it Zayatz / SNB


class EstimationError(ValueError):
    """A population-uniqueness model that gives no estimate for these class sizes."""


@dataclass(frozen=True)
class PopulationUniqueness:
    """Estimated population uniqueness of a release (:func:`population_uniqueness`)."""

    requested: str  # dankar, pitman, zayatz or snb
    model: str  # the model whose estimate this is (Dankar's rule picks one); "none": no sample uniques
    records: int  # n
    population_size: int  # N
    sampling_fraction: float  # n / N
    uniques: float  # estimated number of population uniques (people alone in their population class)
    share: float  # uniques / N: estimated share of records unique in the population
    records_unique: float  # share * n: expected number of released records unique in the population
    sample_uniques: float  # share of records unique in the release, for comparison
    estimates: dict[str, float | None]  # share by each model; None where the model has no solution
    individual_risk_max: float  # Benedetti-Franconi per-record risk, highest
    individual_risk_avg: float  # and mean over records (sdcMicro's global risk)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class _Histogram(NamedTuple):
    sizes: FloatArray  # distinct class sizes, ascending
    counts: FloatArray  # number of classes of each size
    n: float  # records
    u: float  # classes
    c1: float  # classes of size 1
    c2: float  # classes of size 2


def _histogram(sizes: Mapping[int, int] | Mapping[str, int] | IntArray | Sequence[int]) -> _Histogram:
    if isinstance(sizes, Mapping):
        pairs = sorted((int(k), int(v)) for k, v in sizes.items())
        if any(k < 1 or v < 0 for k, v in pairs):
            raise ValueError("size counts map class sizes >= 1 to numbers of classes >= 0")
        values = np.array([k for k, v in pairs if v > 0], dtype=np.float64)
        counts = np.array([v for _, v in pairs if v > 0], dtype=np.float64)
    else:
        arr = np.asarray(sizes, dtype=np.int64)
        if (arr < 0).any():
            raise ValueError("class sizes cannot be negative")
        v, c = np.unique(arr[arr > 0], return_counts=True)
        values, counts = v.astype(np.float64), c.astype(np.float64)
    c1 = float(counts[0]) if len(values) and values[0] == 1 else 0.0
    c2 = float(counts[values == 2].sum())
    return _Histogram(values, counts, float(values @ counts), float(counts.sum()), c1, c2)


def _digamma(x: FloatArray) -> FloatArray:
    """ψ(x) for x > 0: recurrence up to 12, then the asymptotic (Bernoulli) series."""
    x = np.array(x, dtype=np.float64)
    out = np.zeros_like(x)
    for _ in range(12):
        low = x < 12.0
        if not low.any():
            break
        out[low] -= 1.0 / x[low]
        x[low] += 1.0
    z = 1.0 / (x * x)
    tail = z * (
        1 / 12 - z * (1 / 120 - z * (1 / 252 - z * (1 / 240 - z * (1 / 132 - z * (691 / 32760 - z / 12)))))
    )
    return out + np.log(x) - 0.5 / x - tail


def _trigamma(x: FloatArray) -> FloatArray:
    """ψ'(x) for x > 0, likewise."""
    x = np.array(x, dtype=np.float64)
    out = np.zeros_like(x)
    for _ in range(12):
        low = x < 12.0
        if not low.any():
            break
        out[low] += 1.0 / (x[low] * x[low])
        x[low] += 1.0
    i = 1.0 / x
    z = i * i
    tail = (
        i
        * z
        * (1 / 6 - z * (1 / 30 - z * (1 / 42 - z * (1 / 30 - z * (5 / 66 - z * (691 / 2730 - z * 7 / 6))))))
    )
    return out + i + 0.5 * z + tail


def _one_drawn(sizes: FloatArray, population: float, sample: float) -> FloatArray:
    """Hypergeometric P(X = 1): exactly one of a population class of each size is in a simple
    random sample of ``sample`` out of ``population``.

    P = K (n / N) Π_{j=0}^{K-2} (N - n - j) / (N - 1 - j), summed in logs; terms far below the
    smallest double are not computed (their probability is 0)."""
    big_n, n = population, sample
    if big_n <= 1 or n >= big_n:
        return np.where(sizes == 1, n / big_n, 0.0)
    first = math.log1p(-(n - 1) / (big_n - 1)) if n > 1 else 0.0
    longest = int(sizes.max()) - 1
    if first < 0:
        longest = min(longest, int(800 / -first) + 2)
    j = np.arange(longest, dtype=np.float64)
    alive = big_n - n - j > 0
    terms = np.full(longest, -np.inf)
    terms[alive] = np.log1p(-(n - 1) / (big_n - 1 - j[alive]))
    cum = np.concatenate([[0.0], np.cumsum(terms)])
    k = sizes.astype(np.int64) - 1
    inside = k <= longest
    logs = np.full(len(sizes), -np.inf)
    logs[inside] = cum[k[inside]]
    out: FloatArray = sizes * (n / big_n) * np.exp(logs)
    return out


def _zayatz(h: _Histogram, big_n: int) -> float:
    """Zayatz (1991): P(F = 1 | f = 1) by Bayes' rule, the population's class-size distribution
    taken from the sample's and P(f = 1 | F = j) hypergeometric; uniques = c1 P(F = 1 | f = 1) / π."""
    p = _one_drawn(h.sizes, float(big_n), h.n)
    given_unique = h.c1 * float(p[0]) / float(h.counts @ p)
    return h.c1 * given_unique * big_n / h.n


def _pitman(h: _Histogram, big_n: int) -> float | None:
    """Pitman's sampling formula (Hoshino 2001): maximum-likelihood (θ, α) from the class sizes,
    population uniques = Γ(θ + 1) / Γ(θ + α) N^α. None when the likelihood has no interior maximum
    with 0 < α < 1, θ > -α (e.g. every record unique)."""
    u, n = h.u, h.n
    if h.c1 == 0 or u < 2 or u >= n:
        return None
    multi = h.sizes > 1
    sizes, counts = h.sizes[multi], h.counts[multi]

    def loglik(t: float, a: float) -> float:
        x = t / a
        rest = sum(c * (math.lgamma(s - a) - math.lgamma(1 - a)) for s, c in zip(sizes, counts, strict=True))
        return (
            (u - 1) * math.log(a)
            + math.lgamma(x + u)
            - math.lgamma(x + 1)
            - math.lgamma(t + n)
            + math.lgamma(t + 1)
            + float(rest)
        )

    def derivatives(t: float, a: float) -> tuple[FloatArray, FloatArray]:
        x = t / a
        at = np.array([x + u, x + 1, t + n, t + 1, 1 - a])
        dg, tg = _digamma(at), _trigamma(at)
        d, dd = dg[0] - dg[1], tg[0] - tg[1]  # Σ_{i<u} 1/(θ+iα) = d / α, and its derivative
        grad = np.array(
            [
                d / a - (dg[2] - dg[3]),
                (u - 1) / a - t * d / a**2 - float(counts @ (_digamma(sizes - a) - dg[4])),
            ]
        )
        h_tt = dd / a**2 - (tg[2] - tg[3])
        h_ta = -d / a**2 - t * dd / a**3
        h_aa = (
            -(u - 1) / a**2
            + 2 * t * d / a**3
            + t * t * dd / a**4
            + float(counts @ (_trigamma(sizes - a) - tg[4]))
        )
        return grad, np.array([[h_tt, h_ta], [h_ta, h_aa]])

    # start: α = share of singleton classes, θ solving ∂L/∂θ = 0 for that α (bisection in log(θ + α))
    a = min(max(h.c1 / u, 0.05), 0.95)
    lo, hi = math.log(1e-12), math.log(1e12)
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if derivatives(math.exp(mid) - a, a)[0][0] > 0:
            lo = mid
        else:
            hi = mid
    t = math.exp(0.5 * (lo + hi)) - a
    ll = loglik(t, a)
    for _ in range(200):
        grad, hess = derivatives(t, a)
        try:
            step = -np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            step = grad
        if float(step @ grad) <= 0:  # not an ascent direction: a gradient step
            step = grad / max(1.0, float(np.abs(grad).max()))
        lam = 1.0
        while lam > 1e-14:
            t_new, a_new = t + lam * step[0], a + lam * step[1]
            if 0 < a_new < 1 and t_new > -a_new:
                ll_new = loglik(t_new, a_new)
                if ll_new >= ll - 1e-13 * abs(ll):
                    break
            lam *= 0.5
        else:
            return None
        done = abs(t_new - t) <= 1e-12 * (1 + abs(t)) and abs(a_new - a) <= 1e-13
        t, a, ll = t_new, a_new, ll_new
        if t > 1e12:
            return None
        if done:
            break
    else:
        return None
    grad, hess = derivatives(t, a)
    if hess[0, 0] >= 0 or np.linalg.det(hess) <= 0:  # not a maximum
        return None
    log_uniques = math.lgamma(t + 1) - math.lgamma(t + a) + a * math.log(big_n)
    uniques = math.exp(log_uniques) if log_uniques < 700 else math.inf
    return uniques if 0 < uniques <= big_n else None


def _classes_in_population(h: _Histogram, pi: float) -> float:
    """Number of non-empty population classes K: the Shlosser-type estimator D_Sh3 of Haas,
    Naughton, Seshadri and Stokes (1995), with q = π:
    K = u + c1 [Σ i q² (1 - q²)^(i-1) c_i / Σ (1 - q)^i ((1 + q)^i - 1) c_i]
              [Σ (1 - q)^i c_i / Σ i q (1 - q)^(i-1) c_i]²."""
    if pi >= 1:
        return h.u
    s, c, q = h.sizes, h.counts, pi
    v3 = float(c @ (1 - q) ** s)
    if v3 == 0:
        return h.u
    v1 = float(c @ (s * q * q * (1 - q * q) ** (s - 1)))
    v2 = float(c @ ((1 - q * q) ** s - (1 - q) ** s))
    v4 = float(c @ (s * q * (1 - q) ** (s - 1)))
    return h.u + h.c1 * (v1 / v2) * (v3 / v4) ** 2


def _snb(h: _Histogram, big_n: int) -> float | None:
    """Slide (shifted) negative binomial (Chen and Keller-McNulty 1998): population class sizes
    are 1 + NB(α, β), sample counts binomial(F, π). With d = (1 - π)(1 - β), K classes:
    E c1 = K π (β / (1 - d))^α (1 + α d / (1 - d)),
    E c2 = K α β^α π² (1 - β) (2 - (1 - α) d) / (2 (1 - d)^(α + 2)).
    Solved for (α, β) by Newton's method (in log α, logit β) from a grid of starts;
    population uniques = K P(F = 1) = K β^α. None without a solution."""
    if h.c1 == 0 or h.c2 == 0:
        return None
    pi = h.n / big_n
    k = _classes_in_population(h, pi)
    if not (math.isfinite(k) and k > 0):
        return None
    target = np.array([math.log(h.c1), math.log(h.c2)]) - math.log(k)

    def residual(x: FloatArray) -> FloatArray:
        a = math.exp(x[0])
        log_b, log_1b = -math.log1p(math.exp(-x[1])), -math.log1p(math.exp(x[1]))
        d = (1 - pi) * math.exp(log_1b)
        l1 = math.log(pi) + a * (log_b - math.log1p(-d)) + math.log1p(a * d / (1 - d))
        l2 = (
            math.log(a)
            + a * log_b
            + 2 * math.log(pi)
            + log_1b
            + math.log(2 - (1 - a) * d)
            - math.log(2)
            - (a + 2) * math.log1p(-d)
        )
        return np.array([l1, l2]) - target

    def safe(x: FloatArray) -> FloatArray | None:
        if np.abs(x).max() > 40:
            return None
        try:
            r = residual(x)
        except (ValueError, OverflowError, ZeroDivisionError):
            return None
        return r if np.isfinite(r).all() else None

    for a0 in (0.1, 0.5, 1.0, 2.0, 5.0):
        for b0 in (0.05, 0.2, 0.5, 0.8):
            x = np.array([math.log(a0), math.log(b0 / (1 - b0))])
            r = safe(x)
            if r is None:
                continue
            for _ in range(100):
                if np.abs(r).max() < 1e-11:
                    break
                jac = np.empty((2, 2))
                for i in range(2):
                    e = np.zeros(2)
                    e[i] = 1e-6
                    hi, lo = safe(x + e), safe(x - e)
                    if hi is None or lo is None:
                        break
                    jac[:, i] = (hi - lo) / 2e-6
                else:
                    try:
                        step = -np.linalg.solve(jac, r)
                    except np.linalg.LinAlgError:
                        break
                    lam = 1.0
                    while lam > 1e-10:
                        r_new = safe(x + lam * step)
                        if r_new is not None and np.abs(r_new).max() < np.abs(r).max():
                            x, r = x + lam * step, r_new
                            break
                        lam *= 0.5
                    else:
                        break
                    continue
                break
            if np.abs(r).max() < 1e-9:
                a = math.exp(x[0])
                log_b = -math.log1p(math.exp(-x[1]))
                uniques = k * math.exp(a * log_b)
                return uniques if 0 < uniques <= big_n else None
    return None


def benedetti_franconi(
    sample_counts: FloatArray | Sequence[float], population_counts: FloatArray | Sequence[float]
) -> FloatArray:
    """Per-class individual risk of Benedetti and Franconi (1998; Franconi and Polettini 2004), the
    approximation sdcMicro's ``indivRisk(method = "approx")`` and ``measure_risk`` use.

    f = sample count of a record's class, F = its estimated population count (sum of sampling
    weights; f / π for a simple random sample) and p = f / F:
    f = 1: p / (1 - p) log(1 / p); f = 2: p / (1 - p) - (p / (1 - p))² log(1 / p);
    f > 2: p / (f - (1 - p)); F = f (a census of the class): 1 / f.
    """
    f = np.asarray(sample_counts, dtype=np.float64)
    big_f = np.asarray(population_counts, dtype=np.float64)
    if f.shape != big_f.shape:
        raise ValueError("sample and population counts differ in shape")
    if (f < 1).any() or (big_f <= 0).any():
        raise ValueError("sample counts must be >= 1 and population counts > 0")
    census = big_f <= f
    p = np.where(census, 0.5, f / big_f)  # 0.5: a placeholder where the census rule applies
    odds = p / (1 - p)
    log_inv = -np.log(p)
    risk = np.where(f == 1, odds * log_inv, np.where(f == 2, odds - odds * odds * log_inv, p / (f - (1 - p))))
    return np.where(census, 1.0 / f, risk)


def population_uniqueness(
    sizes: Mapping[int, int] | Mapping[str, int] | IntArray | Sequence[int],
    sampling_fraction: float | None = None,
    model: str = "dankar",
    *,
    population_size: int | None = None,
) -> PopulationUniqueness:
    """Estimate the share of records unique in the population from the class sizes alone.

    ``sizes`` is a profile's ``size_counts`` (class size -> number of classes; JSON string keys
    accepted) or the class sizes themselves; give the ``sampling_fraction`` π = n / N in (0, 1]
    or the ``population_size`` N (>= n). As ARX (``ARXPopulationModel``) N = round(n / π) and the
    fraction used is n / N.

    ``model``: ``pitman`` (Pitman's sampling formula, Hoshino 2001), ``zayatz`` (Zayatz 1991),
    ``snb`` (slide negative binomial, Chen and Keller-McNulty 1998) or ``dankar`` (default):
    Dankar, El Emam, Neisa and Roffey 2012, "Estimating the re-identification risk of clinical
    data sets", BMC Med Inform Decis Mak 12:66, as ARX's ``RiskModelPopulationUniqueness``
    applies it: π <= 0.1: Pitman (Zayatz when Pitman has no solution); π > 0.1: the smaller of
    Zayatz and SNB (Zayatz when SNB has no solution). Without sample uniques every estimate is 0.
    An explicitly named model without a solution raises :class:`EstimationError`.

    Also the per-record risk of Benedetti and Franconi (sdcMicro ``indivRisk``), each record
    weighted 1 / π, summarised as highest and mean.
    """
    if model not in UNIQUENESS_MODELS:
        raise ValueError(
            f"unknown population-uniqueness model {model!r} (one of {', '.join(UNIQUENESS_MODELS)})"
        )
    h = _histogram(sizes)
    n = int(h.n)
    if (sampling_fraction is None) == (population_size is None):
        raise ValueError("give either the sampling fraction or the population size")
    if sampling_fraction is not None:
        if not (math.isfinite(sampling_fraction) and 0 < sampling_fraction <= 1):
            raise ValueError(
                f"sampling fraction must be in (0, 1] (records / population size), got {sampling_fraction}"
            )
        big_n = round(n / sampling_fraction)
    else:
        big_n = int(population_size or 0)
        if big_n < max(n, 1):
            raise ValueError(f"population size {big_n} is smaller than the {n} records")
    if n == 0:
        return PopulationUniqueness(model, "none", 0, big_n, 0.0, 0.0, 0.0, 0.0, 0.0, {}, 0.0, 0.0)
    pi = n / big_n
    estimates: dict[str, float | None] = {"pitman": 0.0, "zayatz": 0.0, "snb": 0.0}
    counts: dict[str, float | None] = dict(estimates)
    if h.c1 > 0:
        counts = {"pitman": _pitman(h, big_n), "zayatz": _zayatz(h, big_n), "snb": _snb(h, big_n)}
        estimates = {m: (None if v is None else v / big_n) for m, v in counts.items()}
    if h.c1 == 0:
        used = "none"
    elif model != "dankar":
        used = model
        if counts[model] is None:
            raise EstimationError(
                f"the {model} model has no solution for these class sizes (π = {pi:.4g}); "
                "use model='dankar' or 'zayatz'"
            )
    elif pi <= DANKAR_PITMAN_LIMIT:
        used = "pitman" if counts["pitman"] is not None else "zayatz"
    else:
        snb, zayatz = counts["snb"], counts["zayatz"]
        used = "snb" if snb is not None and zayatz is not None and snb <= zayatz else "zayatz"
    uniques = float(counts.get(used) or 0.0)
    share = uniques / big_n
    risk = benedetti_franconi(h.sizes, h.sizes / pi)
    return PopulationUniqueness(
        requested=model,
        model=used,
        records=n,
        population_size=big_n,
        sampling_fraction=pi,
        uniques=uniques,
        share=share,
        records_unique=share * n,
        sample_uniques=h.c1 / n,
        estimates=estimates,
        individual_risk_max=float(risk.max()),
        individual_risk_avg=float(h.counts @ (h.sizes * risk)) / n,
    )


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
