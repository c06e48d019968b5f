"""The k-anonymity engine: frequency tables, exactness against brute force, guarantees, applying."""

from __future__ import annotations

import math
import os
import random

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
    _aecs_bound_above,
    _pair_suppression_bound,
    _pair_suppression_bound_reference,
    _ranked,
    _static_bounds,
    apply_levels,
    apply_result,
    brute_force,
    encode,
    frequency_table,
    lattice_nodes,
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
    draw: st.DrawFn, max_qis: int = 4, sensitive: bool = False, fixed: bool | None = None
) -> tuple[pl.DataFrame, dict[str, Hierarchy]]:
    """Random QIs with random hierarchies; with ``fixed`` (``None``: drawn) one more QI ``f`` at a
    random position is a fixed attribute (height 0) of 1-3 values."""
    q = draw(st.integers(1, max_qis))
    hs = {f"q{j}": draw(hierarchies(f"q{j}")) for j in range(q)}
    if fixed if fixed is not None else draw(st.booleans()):
        items = list(hs.items())
        at = draw(st.integers(0, len(items)))
        f = Hierarchy.fixed("f", [f"f{i}" for i in range(draw(st.integers(1, 3)))])
        hs = dict([*items[:at], ("f", f), *items[at:]])
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


def _geo(*values: float) -> float:
    """ARX's geometric-mean aggregate of per-attribute losses."""
    return math.prod(1 + v for v in values) ** (1 / len(values)) - 1


def test_metric_values_by_hand() -> None:
    df, hs = _toy()
    problem = encode(frequency_table(df, list(hs)), hs)
    # k=4, 10% suppression, node (age 1, sex 1): [20-29] (4), [30-39] (5), [50-59] (1, suppressed), sex *
    e = Evaluator(problem, PrivacyModel(k=4, suppression=0.1)).evaluate((1, 1))
    assert e.anonymous
    assert e.suppressed == 1
    assert e.classes == 2
    m = e.metrics
    # loss: age domain 10 leaves; [20-29] holds 4 leaves, [30-39] 5; suppressed record scores 1; sex: all 1;
    # aggregated by the geometric mean
    age_loss = (4 * 3 / 9 + 5 * 4 / 9 + 1) / 10
    assert m["loss"] == pytest.approx(_geo(age_loss, 1.0))
    # precision: age level 1 of 3, sex 1 of 1; suppressed record scores 1
    assert m["precision"] == pytest.approx(((9 * (1 / 3) + 1) / 10 + 1.0) / 2)
    assert m["discernibility"] == 16 + 25 + 1 * 10
    # all 10 records over 2 kept classes + 1 class of suppressed records
    assert m["aecs"] == pytest.approx(10 / 3)
    # non-uniform entropy: every age is unique: -log2(1/|band|) for every record (the suppressed 50 is
    # alone in its band); sex '*': -log2(P(sex)); one suppressed record: c·log2(S/c) = 0
    ent_age = 4 * math.log2(4) + 5 * math.log2(5)
    ent_sex = 5 * math.log2(10 / 5) + 5 * math.log2(10 / 5)
    assert m["entropy"] == pytest.approx(ent_age + ent_sex)


def test_metric_values_by_hand_with_several_suppressed_records() -> None:
    df, hs = _toy()
    problem = encode(frequency_table(df, list(hs)), hs)
    # k=3, 70%: node (age 1, sex 0): [30-39]F (31, 32, 36) is kept; [20-29]F (2), [20-29]M (2),
    # [30-39]M (2), [50-59]M (1) are suppressed (7 records)
    e = Evaluator(problem, PrivacyModel(k=3, suppression=0.7)).evaluate((1, 0))
    assert (e.anonymous, e.suppressed, e.classes) == (True, 7, 1)
    m = e.metrics
    assert m["loss"] == pytest.approx(_geo((3 * 4 / 9 + 7) / 10, 7 / 10))
    assert m["precision"] == pytest.approx(((3 * (1 / 3) + 7) / 10 + 7 / 10) / 2)
    assert m["discernibility"] == 9 + 7 * 10
    assert m["aecs"] == pytest.approx(10 / 2)
    # ARX: generalisation entropy over all records, plus Σ_g c_g·log2(S/c_g) over the suppressed
    # records' generalised values (age bands 4, 2, 1; sexes F 2, M 5)
    ent_age = 4 * math.log2(4) + 5 * math.log2(5) + 4 * math.log2(7 / 4) + 2 * math.log2(7 / 2) + math.log2(7)
    ent_sex = 2 * math.log2(7 / 2) + 5 * math.log2(7 / 5)
    assert m["entropy"] == pytest.approx(ent_age + ent_sex)


def test_aecs_without_suppression_is_records_per_class() -> None:
    df, hs = _toy()
    problem = encode(frequency_table(df, list(hs)), hs)
    e = Evaluator(problem, PrivacyModel(k=2, suppression=0.0)).evaluate((3, 1))
    assert (e.suppressed, e.classes, e.metrics["aecs"]) == (0, 1, 10.0)
    e = Evaluator(problem, PrivacyModel(k=2, suppression=0.0)).evaluate((2, 1))  # [20-39] (9), [40-59] (1)
    assert (e.anonymous, e.suppressed) == (False, 1)
    assert e.metrics["aecs"] == pytest.approx(10 / 2)


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
    # precision: (age 2, sex 0) suppressing the age 50 (loss prefers (3, 0): its geometric mean
    # √(2·1) − 1 is below √(1.9·1.1) − 1, the suppressed record scoring 1 on sex too)
    assert search(problem, PrivacyModel(k=4, suppression=0.1), "loss").node == (3, 0)
    result = search(problem, PrivacyModel(k=4, suppression=0.1), "precision")
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


@pytest.mark.parametrize("space", [50, 5_000, 10**12])
def test_ranked_keys_are_uniques_inverse(space: int) -> None:
    # a small space is ranked through a bitmap, a huge one by sorting: both as np.unique's inverse
    key = np.random.default_rng(space).integers(0, space, 3_000)
    ranked, n = _ranked(key, space)
    uniq, inverse = np.unique(key, return_inverse=True)
    assert n == len(uniq)
    assert ranked.dtype == np.int64
    assert (ranked == inverse).all()


def test_a_large_table_searched_with_estimated_floors_is_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above 65,536 distinct rows, floors in a sparse key space are estimated from a sample before
    being grouped; the search still finds the optimum of every node evaluated directly."""
    rng = np.random.default_rng(7)
    n = 90_000
    # 15,000 prototypes jittered below the first level: ~78,000 distinct rows, 15,000 classes at
    # levels (1, 1, 1) (a floor worth grouping), nearly every row distinct at (1, 0, 0) (one not)
    proto = rng.integers(0, 15_000, n)
    yb, pb, db = rng.integers(0, 20, 15_000), rng.integers(0, 200, 15_000), rng.integers(0, 1_500, 15_000)
    df = pl.DataFrame(
        {
            "y": (1920 + yb[proto] * 5 + rng.integers(0, 5, n)).astype(str),
            "p": (pb[proto] * 2 + rng.integers(0, 2, n)).astype(str),
            "d": (db[proto] * 2 + rng.integers(0, 2, n)).astype(str),
        }
    )
    def tree(name: str, values: list[str], *widths: int) -> Hierarchy:
        rows = [[v, *(f"{name}{int(v) // w}" for w in widths), "*"] for v in sorted(set(values))]
        return Hierarchy.from_rows(name, rows)

    hs = {"y": tree("y", df["y"].to_list(), 5), "p": tree("p", df["p"].to_list(), 2, 20),
          "d": tree("d", df["d"].to_list(), 2, 30)}
    problem = encode(frequency_table(df, list(hs)), hs)
    assert len(problem.counts) > 65_536
    estimated: list[bool] = []
    real = Evaluator._estimated_classes

    def spy(self: Evaluator, node: tuple[int, ...]) -> float:
        got = real(self, node)
        estimated.append(got > 0.75 * len(problem.counts))
        return got

    monkeypatch.setattr(Evaluator, "_estimated_classes", spy)
    model = PrivacyModel(k=3, suppression=0.05)
    for metric in ("loss", "aecs"):
        got = search(problem, model, metric)
        want = search(problem, model, metric, prune=False)
        assert (got.node, got.value, got.suppressed) == (want.node, want.value, want.suppressed), metric
        # and the chosen node's classes grouped straight from the frequency table (no floor, no cache)
        _, sizes = Evaluator(problem, model).classes(got.node, kept_only=False)
        assert got.suppressed == int(sizes[sizes < model.k].sum())
        assert got.classes == int((sizes >= model.k).sum())
    assert set(estimated) == {True, False}  # floors both skipped and grouped


# --------------------------------------------------------------------------- fixed attributes


def test_fixed_hierarchy_has_height_zero() -> None:
    h = Hierarchy.fixed("f", ["b", "a", "b"])
    assert (h.height, h.is_fixed, h.domain_size) == (0, True, 2)
    assert h.labels == (("a", "b"),)
    assert h.label_map(0) == {"a": "a", "b": "b"}
    assert h.rows() == [["a"], ["b"]]
    with pytest.raises(HierarchyError, match="null"):
        Hierarchy.fixed("f", ["a", None])
    with pytest.raises(HierarchyError, match="two levels"):  # a one-column CSV is still refused
        Hierarchy.from_rows("t", [["a"], ["b"]])


@pytest.mark.parametrize("metric", METRICS)
def test_a_single_valued_fixed_column_changes_nothing(metric: str) -> None:
    df, hs = _toy()
    model = PrivacyModel(k=3, suppression=0.1)
    base = search(encode(frequency_table(df, list(hs)), hs), model, metric)  # type: ignore[arg-type]
    df_f = df.with_columns(pl.lit("v1").alias("release"))
    hs_f = {"release": Hierarchy.fixed("release", ["v1"]), **hs}
    fixed = search(encode(frequency_table(df_f, list(hs_f)), hs_f), model, metric)  # type: ignore[arg-type]
    assert fixed.node == (0, *base.node)
    assert fixed.metrics == base.metrics
    out = apply_result(df_f, fixed)
    assert isinstance(out, pl.DataFrame)
    assert out["release"].to_list() == ["v1"] * out.height


def test_fixed_column_splits_the_classes() -> None:
    df, hs = _toy()
    # the fixed column splits both sexes of [20-39]: k=3 now needs suppression at (age 2, sex 1)
    df_f = df.with_columns(
        pl.when(pl.col("other") < 2).then(pl.lit("old")).otherwise(pl.lit("new")).alias("v")
    )
    hs_f = {**hs, "v": Hierarchy.fixed("v", ["old", "new"])}
    ev = Evaluator(encode(frequency_table(df_f, list(hs_f)), hs_f), PrivacyModel(k=3, suppression=0.5))
    e = ev.evaluate((3, 1, 0))  # age *, sex *: classes old (2 records), new (8)
    assert (e.suppressed, e.classes) == (2, 1)
    assert e.metrics["aecs"] == pytest.approx(10 / 2)
    assert e.metrics["discernibility"] == 64 + 2 * 10
    assert e.metrics["precision"] == pytest.approx(1.0)  # only age and sex count, both at the top
    assert e.metrics["loss"] == pytest.approx(1.0)


def _with_fixed(node: tuple[int, ...], at: int) -> tuple[int, ...]:
    return (*node[:at], 0, *node[at:])


@SETTINGS
@given(problems(max_qis=3, fixed=True), models)
def test_fixed_column_is_its_partitions_solved_jointly(
    pd: tuple[pl.DataFrame, dict[str, Hierarchy]], model: PrivacyModel
) -> None:
    """With a fixed column, a node's classes are the union of the classes of each fixed value's
    partition: suppression, anonymity, discernibility, AECS and precision follow from the partitions
    evaluated separately, and so does the optimum."""
    df, hs = pd
    n = df.height
    if n == 0:
        return
    problem = encode(frequency_table(df, list(hs)), hs)
    at = list(hs).index("f")
    others = {c: h for c, h in hs.items() if c != "f"}
    parts = [
        Evaluator(encode(frequency_table(part, list(others)), others), model) for part in df.partition_by("f")
    ]
    sizes = [part.n for part in (ev.p for ev in parts)]
    whole = Evaluator(problem, model)
    limit = model.max_suppressed(n)
    joint: dict[tuple[int, ...], dict[str, float]] = {}
    for node in (tuple(int(x) for x in row) for row in lattice_nodes([h.height for h in others.values()])):
        e = whole.evaluate(_with_fixed(node, at))
        es = [ev.evaluate(node) for ev in parts]
        sup = sum(x.suppressed for x in es)
        kept_classes = sum(x.classes for x in es)
        assert (e.suppressed, e.classes, e.anonymous) == (sup, kept_classes, sup <= limit)
        assert e.classes_all == sum(x.classes_all for x in es)
        metrics = {
            "discernibility": float(sum(x.dm_kept for x in es) + n * sup),
            "aecs": n / (kept_classes + (1 if sup else 0)),
            "precision": sum(s * x.metrics["precision"] for s, x in zip(sizes, es, strict=True)) / n,
        }
        assert e.metrics["discernibility"] == metrics["discernibility"]
        assert e.metrics["aecs"] == metrics["aecs"]
        assert e.metrics["precision"] == pytest.approx(metrics["precision"])
        if e.anonymous:
            joint[node] = metrics
    for metric in ("discernibility", "aecs", "precision"):
        if not joint:
            with pytest.raises(NoSolutionError):
                search(problem, model, metric)  # type: ignore[arg-type]
            continue
        result = search(problem, model, metric)  # type: ignore[arg-type]
        best = min(joint, key=lambda nd: (joint[nd][metric], sum(nd), nd))
        if metric == "precision":  # summed in another order: equal up to rounding
            chosen = tuple(x for j, x in enumerate(result.node) if j != at)
            assert joint[chosen][metric] == pytest.approx(joint[best][metric])
        else:
            assert result.node == _with_fixed(best, at)


# --------------------------------------------------------------------------- the bounds


@SETTINGS
@given(
    problems(),
    models,
    st.one_of(st.none(), st.tuples(st.integers(2, 3), st.sampled_from(["distinct", "entropy"]))),
)
def test_bounds_never_exceed_the_metric(
    pd: tuple[pl.DataFrame, dict[str, Hierarchy]], base: PrivacyModel, ldiv: tuple[int, str] | None
) -> None:
    """The static bounds hold at every anonymous node, and the AECS bound from an evaluated node
    holds at every generalisation of it: the branch and bound stays exact."""
    df, hs = pd
    if ldiv is not None:
        df = df.with_columns(pl.Series("s", [["a", "b", "c"][i % 3] for i in range(df.height)], pl.String))
    sens = "s" if ldiv is not None else None
    model = PrivacyModel(base.k, base.suppression, *(ldiv or (None,)))  # type: ignore[arg-type]
    problem = encode(frequency_table(df, list(hs), sens), hs, sens)
    nodes = lattice_nodes(problem.heights)
    sup_lb = _pair_suppression_bound(problem, model, nodes)
    ev = Evaluator(problem, model)
    evals = [ev.evaluate(tuple(int(x) for x in row), keep=False) for row in nodes]
    assert all(e.suppressed >= s for e, s in zip(evals, sup_lb, strict=True))
    monotone = model.l is None or model.l_variant == "distinct"
    for metric in METRICS:
        lb = _static_bounds(problem, model, metric, nodes, sup_lb)
        for e, bound in zip(evals, lb, strict=True):
            if e.anonymous:
                assert bound <= e.metrics[metric] + 1e-9 * max(1.0, abs(e.metrics[metric])), (metric, e.node)
    for i, m in enumerate(evals):
        bound = _aecs_bound_above(m, problem.n, model.k, monotone)
        above = (nodes >= nodes[i]).all(axis=1)
        for j in np.nonzero(above)[0]:
            assert bound <= evals[j].metrics["aecs"] + 1e-12, (m.node, evals[j].node)


@SETTINGS
@given(
    problems(sensitive=True),
    models,
    st.one_of(st.none(), st.tuples(st.integers(2, 3), st.sampled_from(["distinct", "entropy"]))),
    st.randoms(use_true_random=False),
)
def test_rolled_up_evaluation_equals_the_direct_one(
    pd: tuple[pl.DataFrame, dict[str, Hierarchy]], base: PrivacyModel, ldiv: tuple[int, str] | None, rnd: random.Random
) -> None:
    """Nodes grouped from cached class tables of their specialisations (roll-up, in a random order)
    evaluate exactly as nodes grouped from the frequency table, and the pair bound rolled up level by
    level equals the one grouped directly."""
    df, hs = pd
    sens = "s" if ldiv is not None else None
    model = PrivacyModel(base.k, base.suppression, *(ldiv or (None,)))  # type: ignore[arg-type]
    problem = encode(frequency_table(df, list(hs), sens), hs, sens)
    nodes = lattice_nodes(problem.heights)
    assert (
        _pair_suppression_bound(problem, model, nodes) == _pair_suppression_bound_reference(problem, model, nodes)
    ).all()
    rolled = Evaluator(problem, model)
    rolled.store_min_rows = 0
    order = list(range(len(nodes)))
    rnd.shuffle(order)
    for i in order:
        node = tuple(int(x) for x in nodes[i])
        for metric in (None, *METRICS):
            rolled.only = metric
            got = rolled.evaluate(node, keep=True, metrics=metric is None)
            direct = Evaluator(problem, model)
            direct.only = metric
            assert got == direct.evaluate(node, keep=False, metrics=metric is None), (node, metric)
