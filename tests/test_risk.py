"""Re-identification risk: prosecutor, marketer, journalist, contributions; thresholds and report."""

from __future__ import annotations

import json

import polars as pl
import pytest

from anonymisation.hierarchy import builtin_hierarchy
from anonymisation.kanon import PrivacyModel, Problem, encode, frequency_table, search
from anonymisation.risk import (
    journalist_risk,
    population_frame,
    profile_from_sizes,
    qi_contributions,
    risk_at,
    risk_before_after,
)
from anonymisation.risk_report import (
    evaluate_thresholds,
    full_report,
    model_of,
    render_html,
    risk_profile_from_dict,
    suggest_policy_change,
)
from schemas.geo import postcode_index
from schemas.policy import PrivacyPolicy, QuasiIdentifier, Thresholds


def test_profile_by_hand() -> None:
    p = profile_from_sizes([1, 1, 2, 6], threshold=0.2)
    assert p.records == 10
    assert p.classes == 4
    assert p.prosecutor_max == 1.0
    assert p.prosecutor_avg == pytest.approx(4 / 10)
    assert p.records_at_risk_count == 4  # sizes 1, 1, 2 have risk > 0.2
    assert p.records_at_risk == pytest.approx(0.4)
    assert p.sample_uniques == pytest.approx(0.2)
    assert p.marketer == pytest.approx(0.4)
    assert p.size_counts == {1: 2, 2: 1, 6: 1}
    assert p.share_above(0.4) == pytest.approx(0.4)
    assert p.share_above(0.5) == pytest.approx(0.2)
    empty = profile_from_sizes([])
    assert (empty.records, empty.prosecutor_max) == (0, 0.0)


def _postcodes() -> list[str]:
    index = postcode_index()
    seen: dict[str, str] = {}
    for pc, commune in sorted(index.items()):
        seen.setdefault(commune.canton, pc)
    return sorted(seen.values())[:3] + sorted(index)[:2]


def _people(n: int = 200) -> tuple[pl.DataFrame, Problem]:
    pcs = _postcodes()
    rows = {
        "yob": [str(1930 + (i * 37) % 70) for i in range(n)],
        "sex": ["F" if (i * 13) % 3 else "M" for i in range(n)],
        "postcode": [pcs[(i * 7) % 5] for i in range(n)],
    }
    df = pl.DataFrame(rows)
    fq = frequency_table(df, list(rows))
    hs = {
        "yob": builtin_hierarchy("year5", fq["yob"].to_list(), "yob"),
        "sex": builtin_hierarchy("sex", fq["sex"].to_list(), "sex"),
        "postcode": builtin_hierarchy("lu-postcode", fq["postcode"].to_list(), "postcode"),
    }
    return df, encode(fq, hs)


def test_before_after_and_k_bound() -> None:
    _, problem = _people()
    model = PrivacyModel(k=5, suppression=0.05)
    result = search(problem, model, "loss")
    before, after = risk_before_after(problem, result.node, model)
    assert before.records == 200
    assert after.records == 200 - result.suppressed
    assert after.prosecutor_max <= 1 / 5
    assert after.sample_uniques == 0
    assert before.prosecutor_max >= after.prosecutor_max
    assert after.classes == result.classes


def test_journalist_risk_with_a_made_up_population() -> None:
    df, problem = _people()
    model = PrivacyModel(k=5, suppression=0.05)
    result = search(problem, model, "loss")
    cantons = sorted({problem.hierarchies[2].generalise(v, 2) for v in df["postcode"].unique()})
    bands = sorted(set(problem.hierarchies[0].labels[2]))  # 10-year bands
    # 1000 persons per (band, sex, canton)
    population = population_frame(
        {(b, s, c): 1000 for b in bands for s in ("F", "M") for c in cantons}, ["yob", "sex", "postcode"]
    )
    after = risk_at(problem, result.node, model, population=population)
    assert after.journalist_max is not None and after.journalist_avg is not None
    # each release class falls in a population cell of 1000 (or more when coarser)
    assert after.journalist_max <= 1 / 1000 + 1e-12
    assert after.marketer == after.journalist_avg
    # a population smaller than the sample never lowers risk below the sample's
    tiny = population.with_columns(pl.lit(1).alias("count"))
    codes_sizes = risk_at(problem, (0, 0, 0), None, population=tiny)
    assert codes_sizes.journalist_max == 1.0
    with pytest.raises(ValueError, match="shares no column"):
        journalist_risk(
            problem, result.node, *_classes(problem, result.node), pl.DataFrame({"x": ["a"], "count": [1]})
        )


def _classes(problem: Problem, node: tuple[int, ...]):  # type: ignore[no-untyped-def]
    from anonymisation.kanon import Evaluator

    return Evaluator(problem, PrivacyModel(k=1, suppression=0.0)).classes(node, kept_only=False)


def test_contributions() -> None:
    _, problem = _people()
    contrib = qi_contributions(problem, (0, 0, 0))
    assert [c.qi for c in contrib] == ["yob", "sex", "postcode"]
    for c in contrib:
        assert c.uniques_without <= c.uniques
        assert c.uniques_one_level_up is not None and c.uniques_one_level_up <= c.uniques
    # at the top of every hierarchy nothing is left to generalise
    top = qi_contributions(problem, problem.heights)
    assert all(c.uniques_one_level_up is None for c in top)


def _policy(**kw: object) -> PrivacyPolicy:
    qis = [
        QuasiIdentifier(column=c, hierarchy=h)
        for c, h in (("yob", "builtin:year5"), ("sex", "builtin:sex"), ("postcode", "builtin:lu-postcode"))
    ]
    return PrivacyPolicy.model_validate({"quasi_identifiers": qis, **kw})


def test_evaluate_thresholds_pure() -> None:
    policy = _policy(
        thresholds=Thresholds(max_risk=0.2, avg_risk=0.05, risk_level=0.2, max_share_at_risk=0.0)
    )
    checks = evaluate_thresholds(profile_from_sizes([5, 5, 10]), policy)
    assert [c.passed for c in checks] == [True, False, True]
    assert checks[1].name == "average prosecutor risk"
    assert checks[1].value == pytest.approx(3 / 20)
    assert checks[1].limit == 0.05
    # the JSON form gives the same answer
    as_json = json.loads(json.dumps(profile_from_sizes([5, 5, 10]).as_dict()))
    assert evaluate_thresholds(as_json, policy) == checks
    assert risk_profile_from_dict(as_json).size_counts == {5: 2, 10: 1}
    # the EMA's public-release threshold is one setting away
    ema = _policy(thresholds=Thresholds(max_risk=0.09))
    assert evaluate_thresholds(profile_from_sizes([5, 20]), ema)[0].passed is False


def test_suggestion_is_verified_by_rerunning_the_search() -> None:
    _, problem = _people()
    policy = _policy(k=2, suppression=0.0, thresholds=Thresholds(max_risk=0.2, avg_risk=0.1))
    suggestions = suggest_policy_change(problem, policy)
    assert suggestions, "k = 2 cannot hold a 0.2 highest risk"
    by = {s.setting: s for s in suggestions}
    assert "k" in by
    k = int(by["k"].value)
    assert k > 2
    assert by["k"].text == f"raise k to {k}"
    # re-running the search with the suggested k passes; with k - 1 it does not
    for kk, ok in ((k, True), (k - 1, False)):
        trial = policy.model_copy(update={"k": kk})
        result = search(problem, model_of(trial), trial.metric)
        after = risk_at(problem, result.node, model_of(trial))
        assert all(c.passed for c in evaluate_thresholds(after, trial)) is ok
    # a passing policy needs no change
    assert suggest_policy_change(problem, policy.model_copy(update={"k": k})) == []


def test_report_json_and_html_are_self_contained() -> None:
    _, problem = _people()
    policy = _policy(k=2, suppression=0.0)
    result = search(problem, model_of(policy), policy.metric)
    report = full_report(problem, result, policy, rare_concepts={"generalised": 3, "removed": 1})
    json.dumps(report)  # JSON-ready
    assert report["passed"] is False
    assert report["suggestions"]
    assert {t["name"] for t in report["thresholds"]} >= {"highest prosecutor risk", "average prosecutor risk"}
    page = render_html(report)
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg") >= 4
    for forbidden in ("<script", "http:", "https:", "src=", "<link"):
        assert forbidden not in page
    assert "raise k to" in page
    assert "rare concepts: removed" in page
