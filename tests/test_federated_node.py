"""The federated node (pipelines/node.py), its policy (schemas/federation.py) and its maths
(transforms/federated.py), on a hand-made pseudonymised zone: one site with a type 2 diabetes cohort
whose retinopathy depends on hypertension and HbA1c, and a second site whose partitions are not
Parquet at all (reading them would fail): a node reads only its own site."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from pipelines.node import Node, Refused
from schemas.federation import NodePolicy, load_node_policy
from schemas.omop import conform
from transforms.conceptsets import persons_with, read_concept_set, resolve
from transforms.federated import (
    auc,
    auc_from_bins,
    clip_and_noise,
    combine_stats,
    design,
    dp_noise_std,
    fit_logistic,
    local_update,
    logistic_loss,
    predict,
    score_bins,
    split_mask,
    standardise_stats,
)
from transforms.storage import Workspace, write_partition
from transforms.vocabulary import load_vocabulary

SITE, OTHER = "site-a", "site-b"
COHORTS = Path(__file__).resolve().parents[1] / "schemas" / "cohorts"
T2DM, RETINOPATHY, HYPERTENSION, INFARCTION = 201826, 4226121, 320128, 4329847
METFORMIN, HBA1C, PERCENT = 1503297, 3004410, 8554
FIRST_ID, ID_STEP = 7_300_000_011, 7919  # distinctive pseudonymous ids: none may appear in the audit log
K = 5


def _pid(i: int) -> int:
    return FIRST_ID + i * ID_STEP


def _tables(n: int = 400, seed: int = 3) -> dict[str, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    person, period, cond, drug, meas, death = [], [], [], [], [], []
    for i in range(n):
        pid = _pid(i)
        person.append({"person_id": pid, "gender_concept_id": [8507, 8532][i % 2],
                       "year_of_birth": int(rng.integers(1940, 1980))})
        period.append({"person_id": pid, "observation_period_id": i + 1,
                       "observation_period_start_date": dt.date(2010, 1, 1),
                       "observation_period_end_date": dt.date(2024, 12, 31), "period_type_concept_id": 32817})
        if i >= n - 40:  # not diabetic: hypertension only
            cond.append({"person_id": pid, "condition_concept_id": HYPERTENSION,
                         "condition_start_date": dt.date(2015, 3, 1)})
            continue
        index = dt.date(2013, 1, 1) + dt.timedelta(days=int(rng.integers(0, 6 * 365)))
        cond.append({"person_id": pid, "condition_concept_id": T2DM, "condition_start_date": index})
        htn = bool(rng.random() < 0.5)
        if htn:
            cond.append({"person_id": pid, "condition_concept_id": HYPERTENSION,
                         "condition_start_date": index - dt.timedelta(days=100)})
        if i < 3:  # 3 persons only: a count that must not leave the node
            cond.append({"person_id": pid, "condition_concept_id": INFARCTION,
                         "condition_start_date": index - dt.timedelta(days=50)})
        if rng.random() < 0.6:
            drug.append({"person_id": pid, "drug_concept_id": METFORMIN,
                         "drug_exposure_start_date": index - dt.timedelta(days=30)})
        hba1c = float(rng.normal(7.5, 1.0))
        meas.append({"person_id": pid, "measurement_concept_id": HBA1C, "measurement_date": index - dt.timedelta(days=10),
                     "value_as_number": round(hba1c, 1), "unit_concept_id": PERCENT})
        risk = 1 / (1 + np.exp(-(-1.2 + 1.5 * htn + 1.0 * (hba1c - 7.5))))
        if rng.random() < risk:
            cond.append({"person_id": pid, "condition_concept_id": RETINOPATHY,
                         "condition_start_date": index + dt.timedelta(days=int(rng.integers(30, 1700)))})
        if i % 50 == 7:
            death.append({"person_id": pid, "death_date": index + dt.timedelta(days=2500)})
    for rows, id_col in ((cond, "condition_occurrence_id"), (drug, "drug_exposure_id"), (meas, "measurement_id")):
        for j, r in enumerate(rows, start=1):
            r[id_col] = j
    return {"person": conform(pl.DataFrame(person), "person"),
            "observation_period": conform(pl.DataFrame(period), "observation_period"),
            "condition_occurrence": conform(pl.DataFrame(cond), "condition_occurrence"),
            "drug_exposure": conform(pl.DataFrame(drug), "drug_exposure"),
            "measurement": conform(pl.DataFrame(meas), "measurement"),
            "death": conform(pl.DataFrame(death), "death")}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("federated-home")
    ws = Workspace(root)
    for table, df in _tables().items():
        write_partition(df, ws.lake("pseudo", table, SITE))
        other = ws.lake("pseudo", table, OTHER)  # another site's partition: unreadable on purpose
        other.mkdir(parents=True)
        (other / "part-0.parquet").write_bytes(b"not parquet: a node must never open another site's rows")
    return root


@pytest.fixture
def node_home(home: Path) -> Path:
    """The module's workspace with a fresh audit log for each test."""
    audit = Workspace(home).accounting("federated", SITE)
    if audit.exists():
        for f in audit.iterdir():
            f.unlink()
    return home


def _node(home: Path, **policy: Any) -> Node:
    return Node(home, SITE, NodePolicy(site=SITE, min_cell=K, **policy))


def _audit(home: Path) -> list[dict[str, Any]]:
    path = Workspace(home).accounting("federated", SITE) / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _concept_set(*concepts: int) -> dict[str, Any]:
    return {"items": [{"concept": {"CONCEPT_ID": c}, "includeDescendants": True, "includeMapped": True}
                      for c in concepts]}


# -- the policy --------------------------------------------------------------------------------------------

def test_the_node_policy_loads_and_names_the_file_and_field_on_bad_input(tmp_path: Path) -> None:
    good = tmp_path / "node.yaml"
    good.write_text("site: site-a\nmin_cell: 10\nallow: [count]\n")
    policy = load_node_policy(good)
    assert (policy.site, policy.min_cell, policy.allow, policy.max_rounds) == ("site-a", 10, ["count"], 20)
    assert NodePolicy(site="x").allow == ["count", "characterise", "oncology", "train"]
    for text, field in (("site: a\nmin_cell: 1\n", "min_cell"), ("site: a\nallow: [export]\n", "allow"),
                        ("site: a\nmax_round: 3\n", "max_round"), ("min_cell: 5\n", "site")):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ValueError, match=field) as e:
            load_node_policy(bad)
        assert str(bad) in str(e.value)
    with pytest.raises(ValueError, match="not valid YAML"):
        bad.write_text("site: [a\n")
        load_node_policy(bad)


# -- the node ------------------------------------------------------------------------------------------------

def test_an_analysis_not_allow_listed_is_refused_and_audited(node_home: Path) -> None:
    node = _node(node_home, allow=["count"])
    with pytest.raises(Refused, match="not allow-listed"):
        node.handle({"analysis": "characterise", "run_id": "r1", "params": {}})
    with pytest.raises(Refused, match="needs 'train'"):
        node.handle({"analysis": "features", "run_id": "r1", "params": {"outcome": "retinopathy", "window": "5y"}})
    with pytest.raises(Refused, match="unknown analysis"):
        node.handle({"analysis": "export_rows", "run_id": "r1", "params": {}})
    lines = _audit(node_home)
    assert [(r["analysis"], r["status"]) for r in lines] == [
        ("characterise", "refused"), ("features", "refused"), ("export_rows", "refused")]
    assert all(r["reason"] and r["returned"] is None and r["run_id"] == "r1" for r in lines)


def test_a_count_below_k_is_withheld_and_one_above_is_the_sites_own(node_home: Path) -> None:
    node = _node(node_home)
    small, _ = node.handle({"analysis": "count", "run_id": "c", "params": {
        "name": "infarction", "concept_set": _concept_set(INFARCTION)}})
    assert small == {"persons": None, "suppressed": True}
    items = read_concept_set(COHORTS / "type-2-diabetes.json")
    answer, weights = node.handle({"analysis": "count", "run_id": "c", "params": {
        "name": "t2dm", "concept_set": json.loads((COHORTS / "type-2-diabetes.json").read_text())}})
    vocab = load_vocabulary()
    concepts = resolve(items, vocab.ancestor, vocab.maps_to.select("concept_id_1", "concept_id_2"))
    ws = Workspace(node_home)
    site_tables = {t: pl.scan_parquet(ws.lake("pseudo", t, SITE) / "part-0.parquet")
                   for t in ("condition_occurrence", "drug_exposure", "measurement")}
    expected = persons_with(site_tables, concepts)
    assert expected >= K and answer == {"persons": expected, "suppressed": False} and weights is None
    nobody, _ = node.handle({"analysis": "count", "run_id": "c", "params": {
        "name": "nothing", "concept_set": _concept_set(4226121999)}})
    assert nobody == {"persons": 0, "suppressed": False}


def test_a_concept_set_that_does_not_parse_is_refused(node_home: Path) -> None:
    node = _node(node_home)
    with pytest.raises(Refused, match=r"the concept set 'broken'.*items"):
        node.handle({"analysis": "count", "run_id": "c", "params": {"name": "broken", "concept_set": {"x": 1}}})
    with pytest.raises(Refused, match="item 1 has no integer"):
        node.handle({"analysis": "count", "run_id": "c", "params": {
            "name": "broken", "concept_set": {"items": [{"concept": {"CONCEPT_ID": "201826"}}]}}})
    assert [r["status"] for r in _audit(node_home)] == ["refused", "refused"]


def test_a_node_reads_only_its_own_site(node_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipelines.node as node_module
    from transforms.storage import read_partition as real

    read: list[Path] = []

    def spy(folder: Path) -> pl.DataFrame:
        read.append(folder)
        return real(folder)

    monkeypatch.setattr(node_module, "read_partition", spy)
    node = _node(node_home)
    node.handle({"analysis": "count", "run_id": "s", "params": {"name": "t2dm", "concept_set": _concept_set(T2DM)}})
    node.handle({"analysis": "characterise", "run_id": "s", "params": {}})
    node.handle({"analysis": "features", "run_id": "s", "params": {"outcome": "retinopathy", "window": "5y"}})
    assert read and all(p.name == f"site={SITE}" and "pseudo" in p.parts for p in read)


def test_characterise_withholds_small_counts(node_home: Path) -> None:
    answer, _ = _node(node_home).handle({"analysis": "characterise", "run_id": "ch", "params": {}})
    assert answer["cohort_persons"] == 360
    cov = {r["covariate_id"]: r for r in answer["covariates"]}
    assert cov[INFARCTION * 1000 + 102]["persons"] is None and cov[INFARCTION * 1000 + 102]["suppressed"]
    assert cov[HYPERTENSION * 1000 + 102]["persons"] >= K
    assert all(r["persons"] is None or r["persons"] == 0 or r["persons"] >= K for r in answer["covariates"])
    json.dumps(answer)


def test_oncology_without_episodes_is_refused_not_a_traceback(node_home: Path) -> None:
    with pytest.raises(Refused, match="no episode"):
        _node(node_home).handle({"analysis": "oncology", "run_id": "o", "params": {}})


def _train(node: Node, run_id: str, rounds: int) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    base = {"outcome": "retinopathy", "window": "5y"}
    feats, _ = node.handle({"analysis": "features", "run_id": run_id, "params": base})
    features = feats["features"]
    stats, _ = node.handle({"analysis": "standardise", "run_id": run_id, "params": {**base, "features": features}})
    mean, std = combine_stats([(stats["n"], np.array(stats["sums"]), np.array(stats["sumsqs"]))])
    params = {**base, "features": features, "mean": mean.tolist(), "std": std.tolist()}
    w = np.zeros(len(features) + 1)
    for r in range(rounds):
        answer, new = node.handle({"analysis": "fit", "run_id": run_id, "params": {
            **params, "lr": 0.5, "epochs": 20, "l2": 0.01, "round": r + 1}}, w)
        assert answer == {"n": feats["train"]} and new is not None
        w = new
    evaluation, _ = node.handle({"analysis": "evaluate", "run_id": run_id, "params": params}, w)
    return features, mean, std, w, evaluation


def test_training_features_standardise_fit_evaluate(node_home: Path) -> None:
    node = _node(node_home)
    features, mean, std, w, evaluation = _train(node, "t1", rounds=5)
    assert features == sorted(features) and 8507001 in features and HYPERTENSION * 1000 + 102 in features
    assert INFARCTION * 1000 + 102 not in features  # 3 persons
    X_train, y_train, X_test, y_test, ids = node.dataset("retinopathy", "5y", features)
    assert ids == features and X_train.shape == (y_train.size, len(features))
    # the same weights from the node's data as from the dataset the coordinator's reference uses
    expected = np.zeros(len(features) + 1)
    for _ in range(5):
        expected = local_update((X_train - mean) / std, y_train, expected, lr=0.5, epochs=20, l2=0.01)
    np.testing.assert_allclose(w, expected)
    exact = auc(y_test, predict((X_test - mean) / std, w))
    assert evaluation["auc"] == pytest.approx(exact) and evaluation["n"] == y_test.size
    assert evaluation["auc"] > 0.6
    bins = evaluation["bins"]
    assert bins and all(n == 0 or n >= K for *_b, n, _p in bins) and all(p == 0 or p >= K for *_b, p in bins)
    pooled = auc_from_bins([[(b[0], b[1], b[2], b[3]) for b in bins]])
    assert pooled is not None and abs(pooled - exact) < 0.05
    # the pooled reference fits the same model: its loss is no higher than the federated one's
    ref = fit_logistic((X_train - mean) / std, y_train, l2=0.01)
    assert logistic_loss((X_train - mean) / std, y_train, ref, l2=0.01) <= logistic_loss(
        (X_train - mean) / std, y_train, w, l2=0.01) + 1e-12


def test_the_fine_histogram_leaves_only_masked(node_home: Path) -> None:
    """The 1,000-bin score histogram holds cells below k: no request can get it in the clear; the
    ClientApp's SecAgg+ step (masked=True) gets the test split's exact counts."""
    from pipelines.node import HISTOGRAM_GRID, Refused

    node = _node(node_home)
    features, mean, std, w, _evaluation = _train(node, "h1", rounds=1)
    params = {"outcome": "retinopathy", "window": "5y", "features": features, "mean": mean.tolist(),
              "std": std.tolist()}
    with pytest.raises(Refused, match="only masked"):
        node.handle({"analysis": "histogram", "run_id": "h1", "params": params}, w)
    assert _audit(node_home)[-1]["status"] == "refused"
    answer, hist = node.handle({"analysis": "histogram", "run_id": "h1", "params": params}, w, masked=True)
    assert hist is not None and hist.shape == (2 * HISTOGRAM_GRID,)
    _X_train, _y_train, X_test, y_test, _ids = node.dataset("retinopathy", "5y", features)
    assert hist[HISTOGRAM_GRID:].sum() == y_test.sum() and hist.sum() == y_test.size == answer["n"]
    exact = auc(y_test, predict((X_test - mean) / std, w))
    neg, pos = hist[:HISTOGRAM_GRID], hist[HISTOGRAM_GRID:]
    from_hist = auc_from_bins([[(i, i + 1, int(neg[i]), int(pos[i])) for i in range(HISTOGRAM_GRID)]],
                              grid=HISTOGRAM_GRID)
    assert from_hist == pytest.approx(exact, abs=0.01)
    last = _audit(node_home)[-1]
    assert last["status"] == "answered" and last["returned"]["masked"] == "SecAgg+" and "histogram" not in last


def test_fit_is_refused_after_max_rounds(node_home: Path) -> None:
    node = _node(node_home, max_rounds=2)
    features, mean, std, w, _ = _train(node, "run-1", rounds=2)
    params = {"outcome": "retinopathy", "window": "5y", "features": features, "mean": mean.tolist(),
              "std": std.tolist(), "lr": 0.5, "epochs": 20, "l2": 0.01}
    with pytest.raises(Refused, match="max_rounds"):
        node.handle({"analysis": "fit", "run_id": "run-1", "params": params}, w)
    fresh = _node(node_home, max_rounds=2)  # a fresh process counts from the audit log
    with pytest.raises(Refused, match="max_rounds"):
        fresh.handle({"analysis": "fit", "run_id": "run-1", "params": params}, w)
    _answer, new = fresh.handle({"analysis": "fit", "run_id": "run-2", "params": params}, w)
    assert new is not None
    with pytest.raises(Refused, match="weights"):
        fresh.handle({"analysis": "fit", "run_id": "run-3", "params": params}, w[:-1])


def test_fit_with_clipping_and_noise(node_home: Path) -> None:
    node = _node(node_home)
    features, mean, std, w, _ = _train(node, "dp", rounds=1)
    params = {"outcome": "retinopathy", "window": "5y", "features": features, "mean": mean.tolist(),
              "std": std.tolist(), "lr": 0.5, "epochs": 20, "l2": 0.01, "clip": 0.1}
    _a, clipped = node.handle({"analysis": "fit", "run_id": "dp", "params": params}, w)
    assert clipped is not None and np.linalg.norm(clipped - w) <= 0.1 + 1e-9
    _a, noisy = node.handle({"analysis": "fit", "run_id": "dp", "params": {**params, "noise_std": 0.5}}, w)
    assert noisy is not None and np.linalg.norm(noisy - w) > 0.1


def test_the_audit_log_has_one_line_per_request_and_no_person_id_nor_vector(node_home: Path) -> None:
    node = _node(node_home, max_rounds=3)
    node.handle({"analysis": "count", "run_id": "a", "params": {"name": "t2dm", "concept_set": _concept_set(T2DM)}})
    _features, _mean, _std, w, evaluation = _train(node, "a", rounds=3)  # features, standardise, 3 fits, evaluate
    with pytest.raises(Refused):
        node.handle({"analysis": "fit", "run_id": "a", "params": {}}, w)
    lines = _audit(node_home)
    assert [r["analysis"] for r in lines] == ["count", "features", "standardise", "fit", "fit", "fit", "evaluate", "fit"]
    assert [r["status"] for r in lines] == ["answered"] * 7 + ["refused"]
    count = lines[0]
    assert count["params"]["name"] == "t2dm" and len(count["params"]["concept_set_sha256"]) == 64
    assert "path" not in json.dumps(count["params"])
    assert lines[2]["returned"].keys() == {"n", "shape"}
    assert all(r["returned"].keys() == {"n", "shape"} for r in lines[3:6])
    assert [r["params"]["round"] for r in lines[3:6]] == [1, 2, 3]
    assert lines[6]["returned"] == evaluation
    text = Workspace(node_home).accounting("federated", SITE).joinpath("audit.jsonl").read_text()
    assert all(str(_pid(i)) not in text for i in range(400))
    assert all(f"{v:.6f}"[:8] not in text for v in w if abs(v) > 1e-3)  # no weight of the model
    for r in lines:
        assert set(r) == {"time", "site", "run_id", "analysis", "params", "status", "reason", "returned"}
        assert dt.datetime.fromisoformat(r["time"]).utcoffset() == dt.timedelta(0)
        assert list(r) == sorted(r)


def test_too_few_rows_is_refused(node_home: Path) -> None:
    node = Node(node_home, SITE, NodePolicy(site=SITE, min_cell=1000))
    with pytest.raises(Refused, match="too few rows"):
        node.handle({"analysis": "features", "run_id": "f", "params": {"outcome": "retinopathy", "window": "5y"}})
    with pytest.raises(Refused, match="unknown outcome"):
        node.handle({"analysis": "features", "run_id": "f", "params": {"outcome": "gout", "window": "5y"}})
    with pytest.raises(ValueError, match="site-b"):
        Node(node_home, SITE, NodePolicy(site=OTHER))


# -- the maths -----------------------------------------------------------------------------------------------

def _logistic_data(seed: int, n: int = 600, d: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    truth = np.r_[rng.normal(size=d), -0.5]
    y = (rng.random(n) < predict(X, truth)).astype(np.float64)
    return X, y


def test_local_update_lowers_the_loss_and_is_deterministic() -> None:
    X, y = _logistic_data(1)
    w0 = np.zeros(X.shape[1] + 1)
    w1 = local_update(X, y, w0, lr=0.5, epochs=10, l2=0.1)
    assert logistic_loss(X, y, w1, l2=0.1) < logistic_loss(X, y, w0, l2=0.1)
    np.testing.assert_array_equal(w1, local_update(X, y, w0, lr=0.5, epochs=10, l2=0.1))
    assert not w0.any()  # not changed in place
    ref = fit_logistic(X, y, l2=0.1)
    far = local_update(X, y, w0, lr=0.5, epochs=2000, l2=0.1)
    np.testing.assert_allclose(far, ref, atol=1e-6)  # gradient descent reaches the pooled reference


def test_clip_and_noise_bounds_the_update() -> None:
    rng = np.random.default_rng(0)
    w, new = np.zeros(4), np.array([3.0, 4.0, 0.0, 0.0])
    np.testing.assert_allclose(clip_and_noise(new, w, 1.0, 0.0, rng), [0.6, 0.8, 0, 0])
    np.testing.assert_allclose(clip_and_noise(new, w, 10.0, 0.0, rng), new)
    assert not np.allclose(clip_and_noise(new, w, 1.0, 1.0, rng), [0.6, 0.8, 0, 0])


def test_score_bins_never_hold_a_cell_of_1_to_k_minus_1() -> None:
    for seed in range(60):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(0, 300))
        k = int(rng.integers(2, 12))
        y = (rng.random(n) < rng.random()).astype(np.float64)
        scores = rng.beta(rng.uniform(0.3, 3), rng.uniform(0.3, 3), size=n)
        bins = score_bins(y, scores, k)
        pos, neg = int(y.sum()), int(n - y.sum())
        if 0 < pos < k or 0 < neg < k:
            assert bins == []
            continue
        assert sum(b[2] for b in bins) == neg and sum(b[3] for b in bins) == pos
        for lo, hi, negatives, positives in bins:
            assert 0 <= lo < hi <= 200 and negatives + positives > 0
            assert negatives == 0 or negatives >= k
            assert positives == 0 or positives >= k
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(bins))


def test_auc_from_bins_is_within_001_of_the_exact_pooled_auc() -> None:
    rng = np.random.default_rng(11)
    ys, ss, sites = [], [], []
    for n in (400, 250, 600):
        X = rng.normal(size=(n, 3))
        y = (rng.random(n) < predict(X, np.array([1.0, -0.7, 0.4, -0.3]))).astype(np.float64)
        scores = predict(X, np.array([0.8, -0.5, 0.5, -0.2]))
        ys.append(y)
        ss.append(scores)
        sites.append(score_bins(y, scores, 5))
    exact = auc(np.concatenate(ys), np.concatenate(ss))
    approx = auc_from_bins(sites)
    assert approx is not None and abs(approx - exact) < 0.01
    assert auc_from_bins([[], []]) is None
    assert auc(np.array([0, 1, 0, 1.0]), np.array([0.1, 0.1, 0.2, 0.3])) == pytest.approx(0.625)


def test_split_mask_is_a_function_of_the_id_alone() -> None:
    ids = pl.Series("person_id", [_pid(i) for i in range(5000)])
    mask = split_mask(ids)
    np.testing.assert_array_equal(mask.to_numpy(), split_mask(ids).to_numpy())
    shuffled = ids.sample(fraction=1.0, shuffle=True, seed=4)
    by_id = dict(zip(ids.to_list(), mask.to_list(), strict=True))
    assert split_mask(shuffled).to_list() == [by_id[i] for i in shuffled.to_list()]
    assert split_mask(ids[:10]).to_list() == mask[:10].to_list()  # not a function of the other ids
    assert 0.22 < mask.mean() < 0.28  # type: ignore[operator]
    assert split_mask(pl.Series([1, 2, 3, -5]), 0.0).sum() == 0 and split_mask(pl.Series([1, 2, 3]), 1.0).all()


def test_design_and_standardisation() -> None:
    cov = pl.DataFrame({"rowId": [1, 1, 3, 9], "covariateId": [11, 12, 12, 11], "covariateValue": [1.0, 7.5, 1.0, 1.0]})
    X = design(pl.Series([3, 1, 2]), cov, [12, 11, 13])
    np.testing.assert_array_equal(X, [[1, 0, 0], [7.5, 1, 0], [0, 0, 0]])
    a, b = standardise_stats(X[:2]), standardise_stats(X[2:])
    mean, std = combine_stats([a, b])
    np.testing.assert_allclose(mean, X.mean(axis=0))
    np.testing.assert_allclose(std, [X[:, 0].std(), X[:, 1].std(), 1.0])  # constant column: 1


def test_dp_noise_grows_as_epsilon_shrinks() -> None:
    stds = [dp_noise_std(e, 1e-5, rounds=20, clip=1.0, sites=3) for e in (8.0, 4.0, 1.0, 0.5, 0.1)]
    assert stds == sorted(stds) and len(set(stds)) == len(stds)
    assert dp_noise_std(1.0, 1e-5, 40, 1.0, 3) > dp_noise_std(1.0, 1e-5, 20, 1.0, 3)
    assert dp_noise_std(1.0, 1e-5, 20, 1.0, 4) == pytest.approx(dp_noise_std(1.0, 1e-5, 20, 1.0, 1) / 2)
    # the accounting: rho = rounds clip^2 / (2 sigma^2), epsilon = rho + 2 sqrt(rho ln(1/delta))
    sigma = dp_noise_std(2.0, 1e-6, 10, 0.5, 1)
    rho = 10 * 0.25 / (2 * sigma**2)
    assert rho + 2 * np.sqrt(rho * np.log(1e6)) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        dp_noise_std(0.0, 1e-5, 1, 1.0, 1)


def test_federation_certs_make_a_ca_and_a_superlink_certificate_it_signed(tmp_path: Path) -> None:
    """`ds4h federation certs`: the SuperLink's certificate names every --host and verifies against the
    CA (checked with cryptography, not our code); the private keys are 0600 and never printed."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from typer.testing import CliRunner

    from pipelines.cli import app

    out = tmp_path / "certs"
    r = CliRunner().invoke(app, ["federation", "certs", "--host", "fl.example.org", "--host", "127.0.0.1",
                                 "--out", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    ca = x509.load_pem_x509_certificate((out / "ca.pem").read_bytes())
    cert = x509.load_pem_x509_certificate((out / "superlink.pem").read_bytes())
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["fl.example.org"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    for key in ("ca.key", "superlink.key"):
        assert oct((out / key).stat().st_mode & 0o777) == "0o600"
        assert (out / key).read_text().splitlines()[1] not in r.output
