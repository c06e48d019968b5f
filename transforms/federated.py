"""The maths of a federated logistic regression across hospitals, each step computed at a site on
its own rows and only aggregates leaving it. Pure numpy/polars, no I/O.

The model: L2-regularised logistic regression on standardised features, weights ``w`` of length
``len(features) + 1`` with the intercept LAST, minimising the mean loss

    L(w) = mean_i [ log(1 + exp(z_i)) - y_i z_i ] + (l2 / 2) * ||w[:-1]||^2,   z = X w[:-1] + w[-1]

(the intercept is not penalised). A round of federated averaging: every site runs
:func:`local_update` from the global weights on its training rows (optionally :func:`clip_and_noise`
for differential privacy) and the coordinator averages the results weighted by the sites' row counts;
:func:`fit_logistic` fits the same model on pooled rows (the reference the federated fit approaches).

Train/test split: :func:`split_mask` from the person id alone, so a person falls on the same side at
every site and in every run. Evaluation: each site's held-out scores leave as a histogram on a fixed
grid of the probability, adjacent bins merged until no cell holds 1..k-1 persons
(:func:`score_bins`); :func:`auc_from_bins` computes the network's AUC from them.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import polars as pl

Array = npt.NDArray[np.float64]
Stats = tuple[int, Array, Array]  # (n, per-feature sums, per-feature sums of squares)
Interval = tuple[int, int, int, int]  # (lo grid bin, hi grid bin exclusive, negatives, positives)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _mix(ids: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """SplitMix64's finaliser (a fixed multiplicative hash; uint64 arithmetic wraps modulo 2**64)."""
    z = ids + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def split_mask(person_ids: pl.Series, test_share: float = 0.25) -> pl.Series:
    """Boolean, True = held out for testing. Decided by the integer id alone (SplitMix64's finaliser,
    the top 32 bits compared to ``test_share * 2**32``), not by polars' hash, which may change between
    versions: the same id is on the same side at every site, in every run and every version."""
    if not 0.0 <= test_share <= 1.0:
        raise ValueError(f"test_share must be within [0, 1], not {test_share}")
    if person_ids.null_count():
        raise ValueError("person ids hold nulls")
    ids = person_ids.cast(pl.Int64).to_numpy().astype(np.int64).view(np.uint64)
    top = (_mix(ids) >> np.uint64(32)).astype(np.float64)
    return pl.Series(person_ids.name, top < test_share * 2.0**32, dtype=pl.Boolean)


def design(populations_row_ids: pl.Series, covariates: pl.DataFrame, features: list[int]) -> Array:
    """A dense float64 matrix, one row per id of ``populations_row_ids`` (in its order), one column per
    covariate id of ``features`` (in its order); ``covariates`` (rowId, covariateId, covariateValue) in
    PatientLevelPrediction's sparse shape; a covariate a row does not hold is 0."""
    rows = populations_row_ids.cast(pl.Int64)
    out = np.zeros((rows.len(), len(features)), dtype=np.float64)
    if not rows.len() or not features or not covariates.height:
        return out
    row_pos = pl.DataFrame({"rowId": rows, "_r": np.arange(rows.len(), dtype=np.int64)})
    col_pos = pl.DataFrame({"covariateId": pl.Series(features, dtype=pl.Int64),
                            "_c": np.arange(len(features), dtype=np.int64)})
    cells = (covariates.select(pl.col("rowId").cast(pl.Int64), pl.col("covariateId").cast(pl.Int64),
                               pl.col("covariateValue").cast(pl.Float64))
             .join(row_pos, on="rowId").join(col_pos, on="covariateId"))
    out[cells["_r"].to_numpy(), cells["_c"].to_numpy()] = cells["covariateValue"].fill_null(0.0).to_numpy()
    return out


def standardise_stats(X: Array) -> Stats:
    """(rows, column sums, column sums of squares) of a site's training matrix."""
    return int(X.shape[0]), X.sum(axis=0), np.square(X).sum(axis=0)


def combine_stats(stats: list[Stats]) -> tuple[Array, Array]:
    """(mean, std) over the sites' rows from their :func:`standardise_stats`; the population std,
    1.0 where it is 0 (a constant feature is left as it is instead of divided by 0)."""
    if not stats:
        raise ValueError("no statistics to combine")
    n = sum(s[0] for s in stats)
    if n <= 0:
        raise ValueError("no rows")
    sums = np.sum([s[1] for s in stats], axis=0, dtype=np.float64)
    sumsqs = np.sum([s[2] for s in stats], axis=0, dtype=np.float64)
    mean: Array = np.asarray(sums / n, dtype=np.float64)
    std: Array = np.sqrt(np.maximum(sumsqs / n - np.square(mean), 0.0))
    std = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0).astype(np.float64)
    return mean, std


def _with_intercept(X: Array) -> Array:
    return np.hstack([X, np.ones((X.shape[0], 1), dtype=np.float64)])


def _sigmoid(z: Array) -> Array:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow for any z


def _check(X: Array, y: Array, w: Array) -> None:
    if X.ndim != 2 or y.shape != (X.shape[0],) or w.shape != (X.shape[1] + 1,):
        raise ValueError(f"shapes do not match: X {X.shape}, y {y.shape}, w {w.shape} (w: one weight per "
                         "feature and the intercept last)")


def logistic_loss(X: Array, y: Array, w: Array, *, l2: float) -> float:
    """The mean L2-regularised logistic loss the module minimises (intercept not penalised)."""
    _check(X, y, w)
    z = _with_intercept(X) @ w
    return float(np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * l2 * float(w[:-1] @ w[:-1]))


def _gradient(Xa: Array, y: Array, w: Array, l2: float) -> Array:
    g: Array = Xa.T @ (_sigmoid(Xa @ w) - y) / max(Xa.shape[0], 1)
    g[:-1] += l2 * w[:-1]
    return g


def local_update(X: Array, y: Array, w: Array, *, lr: float, epochs: int, l2: float) -> Array:
    """``epochs`` steps of full-batch gradient descent (step ``lr``) on :func:`logistic_loss` from
    ``w``; ``X`` already standardised. Deterministic. Returns the new weights (``w`` is not changed)."""
    y = np.asarray(y, dtype=np.float64)
    _check(X, y, w)
    if epochs < 0 or lr <= 0 or l2 < 0:
        raise ValueError(f"need epochs >= 0, lr > 0 and l2 >= 0 (got {epochs}, {lr}, {l2})")
    Xa = _with_intercept(X)
    out = np.array(w, dtype=np.float64, copy=True)
    for _ in range(epochs):
        out -= lr * _gradient(Xa, y, out, l2)
    return out


def clip_and_noise(w_new: Array, w_global: Array, clip: float, noise_std: float,
                   rng: np.random.Generator) -> Array:
    """The site's update ``w_new - w_global`` scaled down to an L2 norm of at most ``clip`` (bounding
    what one site can move the model: the sensitivity of the sum of the sites' updates), plus Gaussian
    noise of std ``noise_std`` on every coordinate (the Gaussian mechanism, :func:`dp_noise_std`);
    returns ``w_global`` + that update. ``rng`` must not be seeded predictably in production: noise
    that can be replayed protects nothing."""
    if clip <= 0 or noise_std < 0:
        raise ValueError(f"need clip > 0 and noise_std >= 0 (got {clip}, {noise_std})")
    delta = np.asarray(w_new, dtype=np.float64) - w_global
    norm = float(np.linalg.norm(delta))
    if norm > clip:
        delta = delta * (clip / norm)
    if noise_std > 0:
        delta = delta + rng.normal(0.0, noise_std, size=delta.shape)
    out: Array = w_global + delta
    return out


def fit_logistic(X: Array, y: Array, *, l2: float, iterations: int = 100, tol: float = 1e-10) -> Array:
    """The pooled reference: :func:`logistic_loss` minimised by Newton's method (IRLS) with step
    halving, from zero weights, until the step is below ``tol`` or after ``iterations`` steps. With
    ``l2 = 0`` on separable data the weights grow without bound (as any maximum likelihood fit)."""
    y = np.asarray(y, dtype=np.float64)
    w = np.zeros(X.shape[1] + 1, dtype=np.float64)
    _check(X, y, w)
    Xa = _with_intercept(X)
    n = max(X.shape[0], 1)
    ridge = np.full(w.shape, l2, dtype=np.float64)
    ridge[-1] = 0.0
    loss = logistic_loss(X, y, w, l2=l2)
    for _ in range(iterations):
        p = _sigmoid(Xa @ w)
        hess = (Xa.T * (p * (1.0 - p))) @ Xa / n + np.diag(ridge) + 1e-12 * np.eye(w.size)
        step = np.linalg.lstsq(hess, _gradient(Xa, y, w, l2), rcond=None)[0]
        t = 1.0
        while True:
            candidate = w - t * step
            new = logistic_loss(X, y, candidate, l2=l2)
            if new <= loss + 1e-15 or t < 1e-8:
                break
            t /= 2
        w, loss = candidate, new
        if float(np.max(np.abs(t * step), initial=0.0)) < tol:
            break
    return w


def predict(X: Array, w: Array) -> Array:
    """The predicted probabilities of ``X`` (standardised) under ``w`` (intercept last)."""
    if w.shape != (X.shape[1] + 1,):
        raise ValueError(f"w has {w.size} weights; X has {X.shape[1]} features (+ the intercept)")
    return _sigmoid(_with_intercept(X) @ w)


def auc(y: Array, scores: Array) -> float:
    """The exact AUC (Mann-Whitney U / (positives * negatives), a tie counted 0.5); NaN without a
    positive or without a negative."""
    is_pos = np.asarray(y) > 0.5
    scores = np.asarray(scores, dtype=np.float64)
    pos, neg = int(is_pos.sum()), int((~is_pos).sum())
    if not pos or not neg:
        return math.nan
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(scores.size, dtype=np.float64)
    # average ranks (1-based) over runs of tied scores
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], scores.size]
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[is_pos].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def _grid_bins(scores: Array, grid: int) -> npt.NDArray[np.int64]:
    s = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    return np.minimum((s * grid).astype(np.int64), grid - 1)


def _small(count: int, k: int) -> bool:
    return 0 < count < k


def score_bins(y: Array, scores: Array, k: int, grid: int = 200) -> list[Interval]:
    """The held-out scores (probabilities) as a histogram on ``grid`` equal bins of [0, 1], adjacent
    bins merged so that every interval holds 0 or at least ``k`` negatives and 0 or at least ``k``
    positives: (lo bin, hi bin exclusive, negatives, positives), empty intervals dropped. Left to right,
    an interval grows until it holds; a last one that does not is merged into the ones before it.
    [] when the site's positives or negatives number 1..k-1 (the caller withholds)."""
    if k < 1 or grid < 1:
        raise ValueError(f"need k >= 1 and grid >= 1 (got {k}, {grid})")
    yy = np.asarray(y) > 0.5
    if _small(int(yy.sum()), k) or _small(int((~yy).sum()), k):
        return []
    bins = _grid_bins(scores, grid)
    neg = np.bincount(bins[~yy], minlength=grid)
    pos = np.bincount(bins[yy], minlength=grid)
    out: list[list[int]] = []
    current: list[int] | None = None
    for b in range(grid):
        if current is None:
            if not neg[b] and not pos[b]:
                continue
            current = [b, b + 1, 0, 0]
        current[1] = b + 1
        current[2] += int(neg[b])
        current[3] += int(pos[b])
        if not _small(current[2], k) and not _small(current[3], k):
            out.append(current)
            current = None
    if current is not None:
        out.append(current)
    while len(out) > 1 and (_small(out[-1][2], k) or _small(out[-1][3], k)):
        last = out.pop()
        out[-1] = [out[-1][0], last[1], out[-1][2] + last[2], out[-1][3] + last[3]]
    result = [(lo, hi, n, p) for lo, hi, n, p in out]
    if any(_small(n, k) or _small(p, k) for _lo, _hi, n, p in result):  # cannot happen: totals are 0 or >= k
        return []
    return result


def auc_from_bins(sites: list[list[Interval]], grid: int = 200) -> float | None:
    """The AUC over every site's held-out rows from their :func:`score_bins` intervals: an interval's
    negatives and positives spread evenly over its grid bins, two scores in the same grid bin counted
    as a tie (0.5). None without a positive or without a negative."""
    neg = np.zeros(grid, dtype=np.float64)
    pos = np.zeros(grid, dtype=np.float64)
    for intervals in sites:
        for lo, hi, n, p in intervals:
            if not 0 <= lo < hi <= grid:
                raise ValueError(f"interval [{lo}, {hi}) is outside the grid of {grid} bins")
            neg[lo:hi] += n / (hi - lo)
            pos[lo:hi] += p / (hi - lo)
    total_pos, total_neg = float(pos.sum()), float(neg.sum())
    if total_pos <= 0 or total_neg <= 0:
        return None
    below = np.cumsum(neg) - neg  # negatives in lower bins
    return float(np.sum(pos * (below + 0.5 * neg)) / (total_pos * total_neg))


def dp_noise_std(epsilon: float, delta: float, rounds: int, clip: float, sites: int) -> float:
    """The Gaussian noise std each site adds to every coordinate of its clipped update
    (:func:`clip_and_noise`) so that the SUM of the sites' updates, over ``rounds`` rounds, is
    (epsilon, delta)-differentially private.

    This is SITE-LEVEL privacy: the neighbouring datasets differ by one site's whole update (a whole
    hospital's contribution, L2 sensitivity ``clip`` per round), not by one person's rows; it is not
    person-level differential privacy, though it bounds what any one person can change too.

    zCDP accounting: one round of the Gaussian mechanism with total std sigma is rho = clip^2 /
    (2 sigma^2)-zCDP, ``rounds`` rounds compose to rho_total = rounds clip^2 / (2 sigma^2), and rho-zCDP
    implies (rho + 2 sqrt(rho ln(1/delta)), delta)-DP; solved for sigma. The noise is split among the
    ``sites`` sites (each adds sigma / sqrt(sites)): it holds when every site adds its share and only the
    sum is seen (secure aggregation); a coordinator that sees each update sees less noise on each.
    The coordinator must add the sites' updates (or divide the sum by a public constant), not weight
    them by their row counts, for the sensitivity to stay ``clip``."""
    if epsilon <= 0 or not 0 < delta < 1 or rounds < 1 or clip <= 0 or sites < 1:
        raise ValueError(f"need epsilon > 0, 0 < delta < 1, rounds >= 1, clip > 0, sites >= 1 "
                         f"(got {epsilon}, {delta}, {rounds}, {clip}, {sites})")
    log_term = math.log(1.0 / delta)
    root_rho = math.sqrt(log_term + epsilon) - math.sqrt(log_term)  # rho + 2 sqrt(rho L) = epsilon
    rho = root_rho**2
    sigma = clip * math.sqrt(rounds / (2.0 * rho))
    return sigma / math.sqrt(sites)
