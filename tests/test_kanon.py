"""The k-anonymity engine: frequency tables, exactness against brute force, guarantees, applying."""

from __future__ import annotations

import math
import os

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anonymisation.hierarchy import Hierarchy, HierarchyError, builtin_hierarchy
from anonymisation.kanon import (
    COUNT,
    METRICS,
    Evaluator,
    NoSolutionError,
    PrivacyModel,
    apply_levels,
    apply_result,
    brute_force,
    encode,
    frequency_table,
    merge_frequency_tables,
    search,
)

# --------------------------------------------------------------------------- strategies


@st.composite
def hierarchies(draw: st.DrawFn, name: str) -> Hierarchy:
    """A random monotone hierarchy over 1-6 leaves, 1-3 levels, top '*' or not."""
    leaves = [f"{name}{i}" for i in range(draw(st.integers(1, 6)))]
    height = draw(st.integers(1, 3))
    groups = list(range(len(leaves)))  # level code of each leaf
    columns: list[list[str]] = [leaves]
    for level in range(1, height + 1):
        n_prev = max(groups) + 1
        if level == height and draw(st.booleans()):
            parent = [0] * n_prev
        else:
            n_new = draw(st.integers(1, n_prev))
            parent = [draw(st.integers(0, n_new - 1)) for _ in range(n_prev)]
            used = sorted(set(parent))
            parent = [used.index(x) for x in parent]
        groups = [parent[g] for g in groups]
        columns.append(
            [f"{name}L{level}_{g}" if not (level == height and max(groups) == 0) else "*" for g in groups]
        )
    rows = [[columns[lv][i] for lv in range(height + 1)] for i in range(len(leaves))]
    return Hierarchy.from_rows(name, rows)


@st.composite
def problems(
    draw: st.DrawFn, max_qis: int = 4, sensitive: bool = False
) -> tuple[pl.DataFrame, dict[str, Hierarchy]]:
    q = draw(st.integers(1, max_qis))
    hs = {f"q{j}": draw(hierarchies(f"q{j}")) for j in range(q)}
    n = draw(st.integers(0, 60))
    data: dict[str, list[str]] = {
        c: [h.labels[0][draw(st.integers(0, h.domain_size - 1))] for _ in range(n)] for c, h in hs.items()
    }
    if sensitive:
        data["s"] = [draw(st.sampled_from(["a", "b", "c", "d"])) for _ in range(n)]
    return pl.DataFrame(data, schema=dict.fromkeys(data, pl.String)), hs


models = st.builds(
    PrivacyModel,
    k=st.integers(2, 5),
    suppression=st.sampled_from([0.0, 0.05, 0.1, 0.3, 1.0]),
)

SETTINGS = settings(
    max_examples=int(os.environ.get("DS4H_HYPOTHESIS_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _solve(
    df: pl.DataFrame, hs: dict[str, Hierarchy], model: PrivacyModel, metric: str, sensitive: str | None = None
):
    problem = encode(frequency_table(df, list(hs), sensitive), hs, sensitive)
    try:
        fast = search(problem, model, metric)  # type: ignore[arg-type]
    except NoSolutionError:
        fast = None
    try:
        slow = brute_force(problem, model, metric)  # type: ignore[arg-type]
    except NoSolutionError:
        slow = None
    return problem, fast, slow


# --------------------------------------------------------------------------- properties


@SETTINGS
@given(problems(), models, st.sampled_from(METRICS))
def test_search_finds_the_brute_force_optimum(
    pd: tuple[pl.DataFrame, dict[str, Hierarchy]], model: PrivacyModel, metric: str
) -> None:
    df, hs = pd
    _, fast, slow = _solve(df, hs, model, metric)
    assert (fast is None) == (slow is None)
    if fast is not None and slow is not None:
        assert fast.node == slow.node
        assert fast.value == slow.value
        assert fast.suppressed == slow.suppressed


@SETTINGS
@given(problems(), models, st.sampled_from(METRICS))
def test_output_is_k_anonymous_within_the_suppression_limit(
    pd: tuple[pl.DataFrame, dict[str, Hierarchy]], model: PrivacyModel, metric: str
) -> None:
    df, hs = pd
    problem = encode(frequency_table(df, list(hs)), hs)
    try:
        result = search(problem, model, metric)  # type: ignore[arg-type]
    except NoSolutionError:
        return
    out = apply_result(df, result)
    assert isinstance(out, pl.DataFrame)
    removed = df.height - out.height
    assert removed == result.suppressed
    assert removed <= math.floor(model.suppression * df.height + 1e-9)
    if out.height:
        sizes = out.group_by(list(hs)).len()["len"]
        assert sizes.min() >= model.k  # type: ignore[operator]
        assert sizes.len() == result.classes
    # every generalised value is a label of its hierarchy at the chosen level
    for c, h in hs.items():
        assert set(out[c].to_list()) <= set(h.labels[result.levels[c]])


@SETTINGS
@given(
    problems(sensitive=True),
    models,
    st.integers(2, 3),
    st.sampled_from(["distinct", "entropy"]),
    st.sampled_from(METRICS),
)
def test_l_diversity_matches_brute_force_and_holds(
    pd: tuple[pl.DataFrame, dict[str, Hierarchy]],
    base: PrivacyModel,
    l: int,  # noqa: E741
    variant: str,
    metric: str,
) -> None:
    df, hs = pd
    model = PrivacyModel(base.k, base.suppression, l, variant)  # type: ignore[arg-type]
    _, fast, slow = _solve(df, hs, model, metric, "s")
    assert (fast is None) == (slow is None)
    if fast is None or slow is None:
        return
    assert fast.node == slow.node
    out = apply_result(df, fast)
    assert isinstance(out, pl.DataFrame)
    for group in out.partition_by(list(hs)):
        assert group.height >= model.k
        counts = group["s"].value_counts()["count"].to_numpy().astype(float)
        if variant == "distinct":
            assert len(counts) >= l
        else:
            p = counts / counts.sum()
            assert -(p * np.log2(p)).sum() >= math.log2(l) - 1e-9


# --------------------------------------------------------------------------- examples


def _toy() -> tuple[pl.DataFrame, dict[str, Hierarchy]]:
    df = pl.DataFrame(
        {
            "age": ["21", "22", "23", "24", "31", "32", "33", "35", "36", "50"],
            "sex": ["F", "F", "M", "M", "F", "F", "M", "M", "F", "M"],
            "other": list(range(10)),
        }
    )
    hs = {
        "age": builtin_hierarchy("age10", df["age"].to_list(), "age"),
        "sex": builtin_hierarchy("sex", df["sex"].to_list(), "sex"),
    }
    return df, hs


def test_metric_values_by_hand() -> None:
    df, hs = _toy()
    problem = encode(frequency_table(df, list(hs)), hs)
    # k=4, 10% suppression, node (age 1, sex 1): [20-29] (4), [30-39] (5), [50-59] (1, suppressed), sex *
    e = Evaluator(problem, PrivacyModel(k=4, suppression=0.1)).evaluate((1, 1))
    assert e.anonymous
    assert e.suppressed == 1
    assert e.classes == 2
    m = e.metrics
    # loss: age domain 10 leaves; [20-29] holds 4 leaves, [30-39] 5; suppressed record scores 1; sex: all 1
    age_loss = (4 * 3 / 9 + 5 * 4 / 9 + 1) / 10
    assert m["loss"] == pytest.approx((age_loss + 1.0) / 2)
    # precision: age level 1 of 3, sex 1 of 1; suppressed record scores 1
    assert m["precision"] == pytest.approx(((9 * (1 / 3) + 1) / 10 + 1.0) / 2)
    assert m["discernibility"] == 16 + 25 + 1 * 10
    assert m["aecs"] == pytest.approx(9 / 2)
    # non-uniform entropy: every leaf of age is unique: -log2(1/|band|); sex: -log2(P(sex)) as it is '*'
    ent_age = 4 * math.log2(4) + 5 * math.log2(5) + 1 * math.log2(10)  # suppressed: whole domain
    ent_sex = 5 * math.log2(10 / 5) + 5 * math.log2(10 / 5)
    assert m["entropy"] == pytest.approx(ent_age + ent_sex)


def test_tie_break_lowest_sum_then_lexicographic() -> None:
    df = pl.DataFrame({"a": ["x"] * 6 + ["y"] * 6, "b": ["u", "v"] * 6})
    hs = {c: builtin_hierarchy("flat", df[c].to_list(), c) for c in ("a", "b")}
    problem = encode(frequency_table(df, list(hs)), hs)
    # (0,0) is 3-anonymous already; with k=6 both (0,1) and (1,0) work equally well: (0,1) wins
    assert search(problem, PrivacyModel(k=3, suppression=0.0), "precision").node == (0, 0)
    for metric in METRICS:
        assert search(problem, PrivacyModel(k=6, suppression=0.0), metric).node == (0, 1)


def test_no_solution() -> None:
    df = pl.DataFrame({"a": ["x", "y", "z"]})
    hs = {"a": builtin_hierarchy("flat", df["a"].to_list(), "a")}
    with pytest.raises(NoSolutionError, match="5-anonymous"):
        search(encode(frequency_table(df, ["a"]), hs), PrivacyModel(k=5, suppression=0.5))


def test_frequency_tables_merge_to_the_whole() -> None:
    df, hs = _toy()
    whole = frequency_table(df.lazy(), ["age", "sex"])
    parts = [
        frequency_table(df.slice(0, 4), ["age", "sex"]),
        frequency_table(df.slice(4).lazy(), ["age", "sex"]),
    ]
    merged = merge_frequency_tables(parts)
    assert merged.equals(whole)
    assert int(merged[COUNT].sum()) == df.height
    model = PrivacyModel(k=3, suppression=0.1)
    assert search(encode(merged, hs), model).node == search(encode(whole, hs), model).node


def test_merge_rejects_different_columns() -> None:
    with pytest.raises(ValueError, match="differ"):
        merge_frequency_tables(
            [pl.DataFrame({"a": ["x"], COUNT: [1]}), pl.DataFrame({"b": ["x"], COUNT: [1]})]
        )


def test_frequency_table_names_missing_columns() -> None:
    with pytest.raises(ValueError, match="nope"):
        frequency_table(pl.DataFrame({"a": [1]}), ["a", "nope"])


def test_encode_names_column_and_first_missing_values() -> None:
    df, hs = _toy()
    bad = df.with_columns(
        pl.when(pl.col("other") < 2).then(pl.lit("X")).otherwise(pl.col("sex")).alias("sex")
    )
    with pytest.raises(HierarchyError, match=r"column sex: 1 value.*'X'"):
        encode(frequency_table(bad, ["age", "sex"]), hs)


def test_apply_levels_lazy_and_eager_keep_other_columns() -> None:
    df, hs = _toy()
    problem = encode(frequency_table(df, list(hs)), hs)
    result = search(problem, PrivacyModel(k=4, suppression=0.1), "loss")
    eager = apply_result(df, result)
    lazy = apply_levels(df.lazy(), result.hierarchies, result.levels, result.suppressed_classes)
    assert isinstance(lazy, pl.LazyFrame)
    assert isinstance(eager, pl.DataFrame)
    assert lazy.collect().equals(eager)
    assert eager.columns == df.columns
    assert result.suppressed == 1
    assert eager["other"].to_list() == list(range(9))  # the age 50 row is suppressed
    assert set(eager["age"]) == {"[20-39]"}
    assert set(eager["sex"]) == {"F", "M"}


def test_empty_table() -> None:
    df = pl.DataFrame({"a": []}, schema={"a": pl.String})
    hs = {"a": Hierarchy.from_rows("h", [["x", "*"]])}
    result = search(encode(frequency_table(df, ["a"]), hs), PrivacyModel())
    assert result.node == (0,)
    assert result.suppressed == 0


def test_integer_and_date_columns_are_generalised() -> None:
    import datetime as dt

    df = pl.DataFrame(
        {"yob": [1950, 1951, 1952, 1953, 1954, 1960], "d": [dt.date(2020, 1, i + 1) for i in range(6)]}
    )
    fq = frequency_table(df, ["yob", "d"])
    hs = {
        "yob": builtin_hierarchy("year5", fq["yob"].to_list(), "yob"),
        "d": builtin_hierarchy("date-month", fq["d"].to_list(), "d"),
    }
    result = search(encode(fq, hs), PrivacyModel(k=5, suppression=0.2), "loss")
    out = apply_result(df, result)
    assert isinstance(out, pl.DataFrame)
    assert out["yob"].to_list() == ["[1950-1954]"] * 5
    assert out["d"].to_list() == ["2020-01"] * 5


def test_large_keys_do_not_overflow() -> None:
    # ten QIs of 100 values each: the combined key space exceeds 2**62 and is compressed
    rng = np.random.default_rng(1)
    cols = {f"c{j}": [str(x) for x in rng.integers(0, 100, 300)] for j in range(10)}
    df = pl.DataFrame(cols)
    hs = {c: builtin_hierarchy("flat", v, c) for c, v in cols.items()}
    problem = encode(frequency_table(df, list(hs)), hs)
    ev = Evaluator(problem, PrivacyModel(k=2, suppression=0.0))
    e = ev.evaluate((0,) * 10)
    assert e.classes_all == df.unique().height
