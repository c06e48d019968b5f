"""One site's federated node: the answers a Flower ClientApp sends back for the site, under the
site's own disclosure policy (schemas/federation.py), every request written to an audit log.

A node reads only its own site's pseudonymised tables (``lake/pseudo/<table>/site=<site>/``) and the
vocabulary; no row and no person id ever leaves it. Requests are ``{"analysis", "run_id", "params"}``:

| analysis | params | answer |
|---|---|---|
| count | name, concept_set (ATLAS JSON) | persons of the site with any concept of the set (None when 1..k-1) |
| characterise | | the T2DM cohort's aggregate characterisation (transforms/characterisation.py) at k |
| oncology | | the oncology product's four tables (transforms/oncology_product.py) at k |
| features | outcome, window | covariate ids held by >= k persons of the training split |
| standardise | outcome, window, features | n, sums, sums of squares of the training rows |
| fit | outcome, window, features, mean, std, lr, epochs, l2, clip?, noise_std? + weights | n, new weights |
| evaluate | outcome, window, features, mean, std + weights | AUC, n and the score histogram of the test split |
| histogram | outcome, window, features, mean, std + weights | the test split's full score histogram, ONLY masked |

``histogram`` (the fine histogram of the test split's scores, negatives then positives, HISTOGRAM_GRID
bins each) holds cells below k: the node gives it only to the ClientApp's SecAgg+ step (``masked=True``,
an argument no request can set), which masks it before it leaves; the coordinator learns only the sum
over the sites (SecAgg+'s guarantee: an honest-but-curious coordinator that does not collude with the
reconstruction threshold of nodes) and turns it into one AUC.

features/standardise/fit/evaluate need ``train`` in the policy's ``allow``. The T2DM cohort and its
PatientLevelPrediction data are built by the same code as the t2dm-complications product
(pipelines/product_assets.py ``_t2dm_cohort``, transforms/plp.py ``plp_data``); the split into training
and test rows is transforms/federated.py ``split_mask`` of the person id.

Audit: one JSON line per request, answered or refused, in
``<home>/accounting/federated/site=<site>/audit.jsonl`` (time, run_id, analysis, a summary of the
params, status, reason, and what was returned: the aggregates of count, characterise, oncology,
features and evaluate; only n and the shapes for standardise and fit, never their vectors). A concept
set is logged by its name and the sha256 of its canonical JSON (sorted keys, no spaces), never a path.
The fit answers of a run id are counted from this log (each Flower message may reach a fresh process).

k (``policy.min_cell``) protects each answer on its own. Not covered: differences between answers
(two populations, e.g. the 1- and 5-year windows, or two concept sets, can differ by 1..k-1 persons),
and what model weights reveal: a fit from known weights discloses the gradient, i.e. per-feature sums
over the training rows weighted by the outcome. ``max_rounds`` bounds the number of such answers;
``clip`` with ``noise_std`` (transforms/federated.py ``dp_noise_std``) makes them differentially
private at the level of the whole site.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipelines.environment import open_workspace
from schemas.config import Config, load_config
from schemas.federation import NodePolicy
from transforms.federated import (
    Array,
    auc,
    clip_and_noise,
    design,
    local_update,
    predict,
    score_bins,
    split_mask,
    standardise_stats,
)
from transforms.storage import has_partition, read_partition
from transforms.vocabulary import BUNDLED, Vocabulary, load_vocabulary

TRAIN = ("features", "standardise", "fit", "evaluate", "histogram")
HISTOGRAM_GRID = 1000
NEEDS = {"count": "count", "characterise": "characterise", "oncology": "oncology", **dict.fromkeys(TRAIN, "train")}
TEST_SHARE = 0.25
MAX_EPOCHS = 10_000


class Refused(Exception):
    """A request the node does not answer; the message says why (worded for the coordinator)."""


@dataclass(frozen=True)
class _Split:
    """One (outcome, window) study population of the site, split by person id."""

    row_ids: pl.Series  # rowId of every population row
    y: Array  # outcomeCount
    test: np.ndarray[Any, np.dtype[np.bool_]]  # True = held-out row
    covariates: pl.DataFrame  # rowId, covariateId, covariateValue (the whole cohort's)

    def matrix(self, features: list[int], test: bool) -> tuple[Array, Array]:
        keep = self.test if test else ~self.test
        rows = self.row_ids.filter(pl.Series(keep))
        return design(rows, self.covariates, features), self.y[keep]

    def held(self, test: bool) -> list[int]:
        """Covariate ids of the split's rows, sorted."""
        keep = self.test if test else ~self.test
        rows = self.row_ids.filter(pl.Series(keep))
        ids = self.covariates.filter(pl.col("rowId").is_in(rows.implode()) & (pl.col("covariateValue") != 0))
        return sorted(ids["covariateId"].unique().to_list())

    def holders(self, features: list[int], test: bool) -> dict[int, int]:
        """Persons of the split holding each of ``features`` (a non-zero value)."""
        keep = self.test if test else ~self.test
        rows = self.row_ids.filter(pl.Series(keep))
        counts = (self.covariates.filter(pl.col("rowId").is_in(rows.implode())
                                         & pl.col("covariateId").is_in(features) & (pl.col("covariateValue") != 0))
                  .group_by("covariateId").agg(pl.col("rowId").n_unique().alias("n")))
        held = dict(zip(counts["covariateId"].to_list(), counts["n"].to_list(), strict=True))
        return {f: int(held.get(f, 0)) for f in features}


def _jsonable(value: Any) -> Any:
    """Dates as ISO strings, numpy scalars as Python numbers, NaN as None."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _rows(df: pl.DataFrame) -> list[dict[str, Any]]:
    return [_jsonable(r) for r in df.to_dicts()]


def concept_set_digest(concept_set: Any) -> str:
    """sha256 of the concept set's canonical JSON (sorted keys, no spaces, ASCII)."""
    return hashlib.sha256(json.dumps(concept_set, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _shown(n: int, k: int) -> int | None:
    return None if 0 < n < k else n


class Node:
    """One site's node. ``home``: the workspace ($DS4H_HOME); ``config``: the project's config, for its
    vocabulary (default: ``<home>/ds4h.yaml`` when there is one, else the bundled demo vocabulary).
    The study data of the training analyses are built once per Node and (outcome, window)."""

    def __init__(self, home: Path, site: str, policy: NodePolicy, config: Config | None = None) -> None:
        if policy.site != site:
            raise ValueError(f"the node policy is for site {policy.site!r}, not {site!r}")
        if config is None and (home / "ds4h.yaml").is_file():
            config = load_config(home / "ds4h.yaml")
        self.home = home
        self.site = site
        self.policy = policy
        self.config = config
        self.k = policy.min_cell
        self.workspace = open_workspace(config, home)
        self.audit_path = self.workspace.accounting("federated", site) / "audit.jsonl"
        self._vocab: Vocabulary | None = None
        self._tables: dict[str, pl.DataFrame | None] = {}
        self._t2dm: tuple[pl.DataFrame, dict[str, pl.DataFrame]] | None = None
        self._plp: Any = None
        self._splits: dict[tuple[str, str], _Split] = {}

    # -- data: the site's own partitions only --------------------------------------------------------

    def _table(self, name: str) -> pl.DataFrame | None:
        if name not in self._tables:
            folder = self.workspace.lake("pseudo", name, self.site)
            self._tables[name] = read_partition(folder) if has_partition(folder) else None
        return self._tables[name]

    def _table_or_empty(self, name: str) -> pl.DataFrame:
        from schemas.omop import table

        df = self._table(name)
        return df if df is not None else pl.DataFrame(schema=table(name).polars_schema)

    def _vocabulary(self) -> Vocabulary:
        if self._vocab is None:
            self._vocab = load_vocabulary(self.config.vocabulary if self.config is not None else BUNDLED)
        return self._vocab

    def _maps_to(self) -> pl.DataFrame:
        return self._vocabulary().maps_to.select("concept_id_1", "concept_id_2")

    def _names(self) -> pl.DataFrame:
        return self._vocabulary().concept.select("concept_id", "concept_name")

    def _t2dm_tables(self) -> dict[str, pl.DataFrame]:
        from pipelines.product_assets import T2DM_TABLES

        person, periods = self._table("person"), self._table("observation_period")
        if person is None or periods is None or not person.height:
            raise Refused(f"site {self.site} has no person or observation_period table in its pseudonymised zone")
        tables = {t: df for t in T2DM_TABLES if (df := self._table(t)) is not None}
        tables["person"] = person.unique("person_id", keep="first")
        return tables

    def _cohort(self) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
        from pipelines.product_assets import _t2dm_cohort

        if self._t2dm is None:
            vocab = self._vocabulary()
            self._t2dm = _t2dm_cohort(self._t2dm_tables(), vocab.ancestor, self._maps_to())
        return self._t2dm

    def _split(self, outcome: str, window: str) -> _Split:
        from pipelines.product_assets import OUTCOMES
        from transforms.plp import WINDOWS, hba1c_concepts, plp_data

        if outcome not in OUTCOMES:
            raise Refused(f"unknown outcome {outcome!r}; outcomes: {', '.join(OUTCOMES)}")
        if window not in WINDOWS:
            raise Refused(f"unknown window {window!r}; windows: {', '.join(WINDOWS)}")
        if (outcome, window) not in self._splits:
            cohort, outcome_events = self._cohort()
            if not cohort.height:
                raise Refused(f"site {self.site} has no person in the type 2 diabetes cohort")
            if self._plp is None:
                vocab = self._vocabulary()
                self._plp = plp_data(cohort, self._t2dm_tables(), outcome_events, self._names(),
                                     hba1c_concepts(vocab.ancestor, self._maps_to()))
            pop = self._plp.populations[(outcome, window)]
            self._splits[(outcome, window)] = _Split(
                row_ids=pop["rowId"], y=pop["outcomeCount"].cast(pl.Float64).to_numpy(),
                test=split_mask(pop["subjectId"], TEST_SHARE).to_numpy(), covariates=self._plp.covariates)
        return self._splits[(outcome, window)]

    def dataset(self, outcome: str, window: str, features: list[int] | None = None
                ) -> tuple[Array, Array, Array, Array, list[int]]:
        """(X_train, y_train, X_test, y_test, feature ids) of the site's study population of ``outcome``
        and ``window``, unstandardised, one column per feature id: ``features``, by default every
        covariate id held by a person of the population. Person-level: for the coordinator's pooled
        reference in a test or a trusted environment, never sent over the network by the node."""
        split = self._split(outcome, window)
        ids = features if features is not None else sorted(set(split.held(False)) | set(split.held(True)))
        X_train, y_train = split.matrix(ids, test=False)
        X_test, y_test = split.matrix(ids, test=True)
        return X_train, y_train, X_test, y_test, ids

    # -- requests ------------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One request at a time per site (across processes): the fit count and its answer stay consistent."""
        self.audit_path.parent.mkdir(parents=True, exist_ok=True)
        with (self.audit_path.parent / "audit.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _audit(self, record: dict[str, Any]) -> None:
        line = json.dumps(_jsonable(record), sort_keys=True, allow_nan=False)
        with self.audit_path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()

    def fit_answers(self, run_id: str) -> int:
        """The fit requests of ``run_id`` answered so far (from the audit log)."""
        if not self.audit_path.is_file():
            return 0
        n = 0
        for line in self.audit_path.read_text(encoding="utf-8").splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r.get("run_id") == run_id and r.get("analysis") == "fit" and r.get("status") == "answered":
                n += 1
        return n

    def handle(self, request: dict[str, Any], weights: np.ndarray[Any, Any] | None = None, *, masked: bool = False
               ) -> tuple[dict[str, Any], Array | None]:
        """Answer one request: (the JSON-able answer, the new weights of a fit, else None). Raises
        :class:`Refused` (audited as refused) when the policy does not allow it, a fit run has had
        ``max_rounds`` answers, there are too few rows, or the request is malformed."""
        with self._locked():
            record: dict[str, Any] = {
                "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "site": self.site,
                "run_id": request.get("run_id") if isinstance(request, Mapping) else None,
                "analysis": request.get("analysis") if isinstance(request, Mapping) else None,
                "params": {}, "status": "refused", "reason": None, "returned": None}
            try:
                answer, new_weights, logged = self._dispatch(request, weights, record, masked)
            except Refused as e:
                record["reason"] = str(e)
                self._audit(record)
                raise
            except Exception as e:  # never a traceback (nor the data in an error message) to the coordinator
                record["reason"] = f"internal error at the node ({type(e).__name__})"
                self._audit(record)
                raise Refused(f"internal error at the node ({type(e).__name__}); the site's operator has the "
                              "details") from e
            record.update(status="answered", returned=logged)
            self._audit(record)
            return answer, new_weights

    def _dispatch(self, request: Any, weights: np.ndarray[Any, Any] | None, record: dict[str, Any],
                  masked: bool = False) -> tuple[dict[str, Any], Array | None, Any]:
        if not isinstance(request, Mapping):
            raise Refused("a request is a mapping {analysis, run_id, params}")
        analysis, run_id, params = request.get("analysis"), request.get("run_id"), request.get("params", {})
        if not isinstance(run_id, str) or not run_id or len(run_id) > 200:
            raise Refused("the request needs a run_id (a non-empty string of at most 200 characters)")
        if not isinstance(analysis, str) or analysis not in NEEDS:
            raise Refused(f"unknown analysis {analysis!r}; analyses: {', '.join(NEEDS)}")
        if not isinstance(params, Mapping):
            raise Refused("params must be a mapping")
        record["params"] = _summary(analysis, params)
        needed = NEEDS[analysis]
        if needed not in self.policy.allow:
            via = f" (it needs {needed!r})" if needed != analysis else ""
            raise Refused(f"analysis {analysis!r} is not allow-listed by site {self.site}'s policy{via}; "
                          f"allowed: {', '.join(self.policy.allow) or 'none'}")
        if analysis == "count":
            out = self._count(params)
            return out, None, out
        if analysis == "characterise":
            out = self._characterise()
            return out, None, out
        if analysis == "oncology":
            out = self._oncology()
            return out, None, out
        if analysis == "features":
            out = self._features(params)
            return out, None, out
        if analysis == "standardise":
            out = self._standardise(params)
            return out, None, {"n": out["n"], "shape": [len(out["sums"])]}
        if analysis == "fit":
            done = self.fit_answers(run_id)
            record["params"]["fit_answer"] = done + 1
            if done >= self.policy.max_rounds:
                raise Refused(f"run {run_id!r} has had its {self.policy.max_rounds} fit rounds (max_rounds of "
                              f"site {self.site}'s policy)")
            out, w = self._fit(params, weights)
            return out, w, {**out, "shape": [int(w.size)]}
        if analysis == "histogram":
            if not masked:
                raise Refused("the score histogram leaves this node only masked by secure aggregation (SecAgg+)")
            out, h = self._histogram(params, weights)
            return out, h, {**out, "shape": [int(h.size)], "masked": "SecAgg+"}
        out = self._evaluate(params, weights)
        return out, None, out

    # -- analyses ------------------------------------------------------------------------------------

    def _count(self, params: Mapping[str, Any]) -> dict[str, Any]:
        from transforms.conceptsets import (
            EVENT_COLUMNS,
            ConceptSetError,
            parse_concept_set,
            persons_with,
            resolve,
        )

        name = params.get("name")
        if not isinstance(name, str) or not name:
            raise Refused("count needs params.name (the concept set's name)")
        try:
            items = parse_concept_set(params.get("concept_set"), f"the concept set {name!r}")
        except ConceptSetError as e:
            raise Refused(str(e)) from None
        vocab = self._vocabulary()
        concepts = resolve(items, vocab.ancestor, self._maps_to())
        tables = {t: df.lazy() for t in EVENT_COLUMNS if (df := self._table(t)) is not None}
        n = persons_with(tables, concepts) if concepts else 0
        return {"persons": _shown(n, self.k), "suppressed": 0 < n < self.k}

    def _characterise(self) -> dict[str, Any]:
        from transforms.characterisation import characterise
        from transforms.plp import hba1c_concepts

        cohort, _events = self._cohort()
        tables = self._t2dm_tables()
        vocab = self._vocabulary()
        cov = characterise(cohort, tables["person"], tables, self._names(), k=self.k,
                           value_concepts=hba1c_concepts(vocab.ancestor, self._maps_to()))
        size = int(cohort["subject_id"].n_unique()) if cohort.height else 0
        return {"cohort_persons": _shown(size, self.k), "covariates": _rows(cov)}

    def _oncology(self) -> dict[str, Any]:
        from pipelines.product_assets import cancer_sets
        from transforms.oncology_product import STAGE_MEASUREMENT, oncology_tables

        episode, person = self._table("episode"), self._table("person")
        if episode is None or person is None:
            raise Refused(f"site {self.site} has no episode or person table in its pseudonymised zone")
        vocab = self._vocabulary()
        measurement = self._table_or_empty("measurement").filter(
            pl.col("measurement_concept_id") == STAGE_MEASUREMENT)
        tables = oncology_tables(
            episode=episode, episode_event=self._table_or_empty("episode_event"), measurement=measurement,
            person=person.unique("person_id", keep="first"), death=self._table_or_empty("death"),
            observation_period=self._table_or_empty("observation_period"), concept_names=self._names(),
            k=self.k, cancers=cancer_sets(vocab.ancestor, vocab.maps_to))
        return {"incidence": _rows(tables.incidence), "stage": _rows(tables.stage), "lines": _rows(tables.lines),
                "survival": _rows(tables.survival)}

    def _training(self, params: Mapping[str, Any]) -> tuple[_Split, list[int]]:
        split = self._split(_text(params, "outcome"), _text(params, "window"))
        n_train = int((~split.test).sum())
        if n_train < self.k:
            raise Refused(f"too few rows: the training split of site {self.site} has fewer than {self.k} persons")
        return split, _features_param(params)

    def _features(self, params: Mapping[str, Any]) -> dict[str, Any]:
        split = self._split(_text(params, "outcome"), _text(params, "window"))
        n_train, n_test = int((~split.test).sum()), int(split.test.sum())
        if n_train < self.k:
            raise Refused(f"too few rows: the training split of site {self.site} has fewer than {self.k} persons")
        held = split.holders(split.held(test=False), test=False)
        return {"features": sorted(f for f, n in held.items() if n >= self.k), "train": n_train,
                "test": _shown(n_test, self.k)}

    def _standardise(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """n, sums and sums of squares of the training rows; a feature held (non-zero) by 1..k-1 training
        persons is reported as if nobody held it (sum and sum of squares 0): for a binary feature the
        sum is a count of persons, for a value (the last HbA1c) a sum over too few persons."""
        split, features = self._training(params)
        X, _y = split.matrix(features, test=False)
        n, sums, sumsqs = standardise_stats(X)
        held = split.holders(features, test=False)
        small = np.array([0 < held[f] < self.k for f in features], dtype=bool)
        sums[small], sumsqs[small] = 0.0, 0.0
        return {"n": n, "sums": sums.tolist(), "sumsqs": sumsqs.tolist()}

    def _standardised(self, split: _Split, features: list[int], params: Mapping[str, Any], test: bool
                      ) -> tuple[Array, Array]:
        mean, std = _vector(params, "mean", len(features)), _vector(params, "std", len(features))
        if np.any(std <= 0):
            raise Refused("params.std must be positive")
        X, y = split.matrix(features, test=test)
        return (X - mean) / std, y

    def _fit(self, params: Mapping[str, Any], weights: np.ndarray[Any, Any] | None) -> tuple[dict[str, Any], Array]:
        split, features = self._training(params)
        w = _weights(weights, len(features))
        lr, l2 = _number(params, "lr", positive=True), _number(params, "l2")
        epochs = params.get("epochs")
        if isinstance(epochs, bool) or not isinstance(epochs, int) or not 1 <= epochs <= MAX_EPOCHS:
            raise Refused(f"params.epochs must be an integer from 1 to {MAX_EPOCHS}")
        X, y = self._standardised(split, features, params, test=False)
        new = local_update(X, y, w, lr=lr, epochs=epochs, l2=l2)
        if params.get("clip") is not None:
            clip = _number(params, "clip", positive=True)
            noise = _number(params, "noise_std") if params.get("noise_std") is not None else 0.0
            new = clip_and_noise(new, w, clip, noise, np.random.default_rng())  # fresh entropy: noise not replayable
        elif params.get("noise_std"):
            raise Refused("params.noise_std needs params.clip (noise without clipping bounds nothing)")
        return {"n": int(X.shape[0])}, new

    def _evaluate(self, params: Mapping[str, Any], weights: np.ndarray[Any, Any] | None) -> dict[str, Any]:
        split = self._split(_text(params, "outcome"), _text(params, "window"))
        features = _features_param(params)
        w = _weights(weights, len(features))
        X, y = self._standardised(split, features, params, test=True)
        scores = predict(X, w)
        pos, neg = int((y > 0.5).sum()), int((y <= 0.5).sum())
        exact = auc(y, scores) if pos >= self.k and neg >= self.k else None
        return {"auc": exact, "n": _shown(int(y.size), self.k),
                "bins": [list(b) for b in score_bins(y, scores, self.k)]}

    def _histogram(self, params: Mapping[str, Any], weights: np.ndarray[Any, Any] | None
                   ) -> tuple[dict[str, Any], Array]:
        split = self._split(_text(params, "outcome"), _text(params, "window"))
        features = _features_param(params)
        w = _weights(weights, len(features))
        X, y = self._standardised(split, features, params, test=True)
        cells = np.minimum((predict(X, w) * HISTOGRAM_GRID).astype(np.int64), HISTOGRAM_GRID - 1)
        positive = y > 0.5
        hist = np.concatenate([np.bincount(cells[~positive], minlength=HISTOGRAM_GRID),
                               np.bincount(cells[positive], minlength=HISTOGRAM_GRID)]).astype(np.float64)
        return {"n": int(y.size)}, hist


# -- parameters -----------------------------------------------------------------------------------------

def _summary(analysis: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """What the audit log keeps of the params: no path, no vector."""
    out: dict[str, Any] = {}
    if analysis == "count":
        out["name"] = params.get("name") if isinstance(params.get("name"), str) else None
        if "concept_set" in params:
            try:
                out["concept_set_sha256"] = concept_set_digest(params["concept_set"])
            except (TypeError, ValueError):
                out["concept_set_sha256"] = None
    for key in ("outcome", "window", "round", "lr", "epochs", "l2", "clip", "noise_std"):
        value = params.get(key)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            out[key] = value
    if isinstance(params.get("features"), list):
        out["n_features"] = len(params["features"])
    return out


def _text(params: Mapping[str, Any], key: str) -> str:
    value = params.get(key)
    if not isinstance(value, str):
        raise Refused(f"params.{key} must be a string")
    return value


def _number(params: Mapping[str, Any], key: str, positive: bool = False) -> float:
    value = params.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or (
            value <= 0 if positive else value < 0):
        raise Refused(f"params.{key} must be a {'positive' if positive else 'non-negative'} number")
    return float(value)


def _features_param(params: Mapping[str, Any]) -> list[int]:
    features = params.get("features")
    if (not isinstance(features, list) or not features
            or not all(isinstance(f, int) and not isinstance(f, bool) for f in features)
            or len(set(features)) != len(features)):
        raise Refused("params.features must be a non-empty list of distinct covariate ids")
    return list(features)


def _vector(params: Mapping[str, Any], key: str, size: int) -> Array:
    try:
        v = np.asarray(params.get(key), dtype=np.float64)
    except (TypeError, ValueError):
        raise Refused(f"params.{key} must be a list of {size} numbers") from None
    if v.shape != (size,) or not np.all(np.isfinite(v)):
        raise Refused(f"params.{key} must be a list of {size} numbers (one per feature)")
    return v


def _weights(weights: np.ndarray[Any, Any] | None, n_features: int) -> Array:
    if weights is None:
        raise Refused("this analysis needs the model's weights")
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape != (n_features + 1,) or not np.all(np.isfinite(w)):
        raise Refused(f"the weights must be {n_features + 1} finite numbers (one per feature, the intercept last)")
    return w
