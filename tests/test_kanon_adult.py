"""ARX's adult benchmark: 8 quasi-identifiers, k = 5, 5% suppression (optima checked by brute force)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from anonymisation.hierarchy import load_arx_hierarchy
from anonymisation.kanon import PrivacyModel, Problem, brute_force, encode, frequency_table, search

ADULT = Path(__file__).parents[2] / "shared" / "data" / "arx-adult"
QIS = ["sex", "age", "race", "marital-status", "education", "native-country", "workclass", "occupation"]

pytestmark = pytest.mark.skipif(not (ADULT / "adult.csv").exists(), reason="shared ARX adult data absent")

# metric -> (levels in QIS order, classes, suppressed), equal to a brute-force scan of all 6480 nodes
EXPECTED = {
    "loss": ((0, 3, 0, 1, 2, 1, 1, 1), 384, 1248),
    "precision": ((0, 4, 0, 0, 1, 1, 0, 2), 365, 1231),
    "discernibility": ((0, 0, 1, 2, 3, 2, 2, 1), 356, 105),
    "aecs": ((1, 0, 1, 2, 2, 2, 2, 0), 1030, 1436),
    "entropy": ((0, 0, 1, 1, 2, 2, 2, 1), 998, 1285),
}


@pytest.fixture(scope="module")
def adult() -> Problem:
    df = pl.read_csv(ADULT / "adult.csv", separator=";", infer_schema=False)
    hs = {q: load_arx_hierarchy(ADULT / "hierarchies" / f"adult_hierarchy_{q}.csv") for q in QIS}
    return encode(frequency_table(df, QIS), hs)


def test_adult_loss(adult: Problem) -> None:
    assert adult.n == 30162
    assert adult.lattice_size == 6480
    result = search(adult, PrivacyModel(k=5, suppression=0.05), "loss")
    levels, classes, suppressed = EXPECTED["loss"]
    assert result.node == levels
    assert (result.classes, result.suppressed) == (classes, suppressed)
    assert result.suppressed <= 0.05 * adult.n
    assert result.evaluations < adult.lattice_size / 4


@pytest.mark.slow
@pytest.mark.parametrize("metric", list(EXPECTED))
def test_adult_every_metric(adult: Problem, metric: str) -> None:
    result = search(adult, PrivacyModel(k=5, suppression=0.05), metric)  # type: ignore[arg-type]
    levels, classes, suppressed = EXPECTED[metric]
    assert result.node == levels
    assert (result.classes, result.suppressed) == (classes, suppressed)


@pytest.mark.slow
def test_adult_brute_force_agrees_for_loss(adult: Problem) -> None:
    model = PrivacyModel(k=5, suppression=0.05)
    assert brute_force(adult, model, "loss").node == search(adult, model, "loss").node
