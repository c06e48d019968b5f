"""Re-identification risk: prosecutor, marketer, journalist, contributions; thresholds and report."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import polars as pl
import pytest

from anonymisation.hierarchy import builtin_hierarchy
from anonymisation.kanon import PrivacyModel, Problem, encode, frequency_table, search
from anonymisation.risk import (
    EstimationError,
    PopulationRisk,
    PopulationTableError,
    benedetti_franconi,
    check_population,
    journalist_risk,
    population_frame,
    population_uniqueness,
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
    search_keeping,
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
    assert after.marketer <= after.journalist_avg <= 1 / 1000 + 1e-12
    # a population smaller than the sample never lowers risk below the sample's
    tiny = population.with_columns(pl.lit(1).alias("count"))
    codes_sizes = risk_at(problem, (0, 0, 0), None, population=tiny)
    assert codes_sizes.journalist_max == 1.0
    with pytest.raises(PopulationTableError, match="lacks quasi-identifier column"):
        journalist_risk(
            problem, result.node, *_classes(problem, result.node), pl.DataFrame({"x": ["a"], "count": [1]})
        )


def _two_classes() -> tuple[Problem, list[str]]:
    """101 records: 100 alike, 1 alone (every QI at its finest level)."""
    pcs = _postcodes()
    rows = {
        "yob": ["1950"] * 100 + ["1960"],
        "sex": ["F"] * 100 + ["M"],
        "postcode": [pcs[0]] * 100 + [pcs[1]],
    }
    fq = frequency_table(pl.DataFrame(rows), list(rows))
    hs = {
        "yob": builtin_hierarchy("year5", fq["yob"].to_list(), "yob"),
        "sex": builtin_hierarchy("sex", fq["sex"].to_list(), "sex"),
        "postcode": builtin_hierarchy("lu-postcode", fq["postcode"].to_list(), "postcode"),
    }
    return encode(fq, hs), pcs


def test_journalist_and_marketer_by_hand() -> None:
    """ARX RiskModelSampleSummary / El Emam: journalist highest = 1 / min F, average =
    max(J / Σ F, (1/n) Σ f / F), marketer = (1/n) Σ f / F. Computed by hand, not from a tool."""
    problem, pcs = _two_classes()
    population = population_frame(
        {("1950", "F", pcs[0]): 1000, ("1960", "M", pcs[1]): 100, ("1950", "M", pcs[0]): 5},
        ["yob", "sex", "postcode"],
    )
    p = risk_at(problem, (0, 0, 0), population=population)
    marketer = (100 / 1000 + 1 / 100) / 101  # 0.00108911
    assert p.marketer == pytest.approx(marketer, rel=1e-12)
    assert p.journalist_max == pytest.approx(1 / 100, rel=1e-12)
    # one person picked from the 1100 people of the two populated cells: 2 / 1100 > marketer
    assert p.journalist_avg == pytest.approx(2 / 1100, rel=1e-12)
    assert p.journalist_avg != pytest.approx(p.marketer)
    # without a population: F = f, marketer = J / n, no journalist figures
    bare = risk_at(problem, (0, 0, 0))
    assert bare.marketer == pytest.approx(2 / 101) and bare.journalist_avg is None
    # counts that ignore sex and the postcode are sums over them (F too large): refused
    partial = population.drop("sex", "postcode")
    with pytest.raises(PopulationTableError) as err:
        risk_at(problem, (0, 0, 0), population=partial)
    assert isinstance(err.value, ValueError)
    msg = str(err.value)
    assert "\n" not in msg and "sex, postcode" in msg and "population size" in msg
    with pytest.raises(PopulationTableError, match="postcode"):
        check_population(problem, population.drop("postcode"))
    assert check_population(problem, population) == "count"


def test_profile_keeps_the_marketer_it_is_given() -> None:
    sizes = [100, 1]
    risk = PopulationRisk(journalist_max=0.01, journalist_avg=2 / 1100, marketer=0.0011)
    assert profile_from_sizes(sizes, journalist=risk).marketer == 0.0011
    # the JSON form keeps (highest, average) and the marketer figure separately
    assert profile_from_sizes(sizes, journalist=(0.01, 2 / 1100), marketer=0.0011).marketer == 0.0011
    # without it: bounded from above by min(J / n, journalist average)
    assert profile_from_sizes(sizes, journalist=(0.01, 2 / 1100)).marketer == pytest.approx(2 / 1100)
    assert profile_from_sizes(sizes, journalist=(0.5, 0.5)).marketer == pytest.approx(2 / 101)


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
        thresholds=Thresholds(max_risk=0.15, avg_risk=0.05, risk_level=0.15, max_share_at_risk=0.5)
    )
    checks = evaluate_thresholds(profile_from_sizes([5, 5, 10]), policy)
    assert [c.name for c in checks] == ["highest prosecutor risk", "average prosecutor risk",
                                        "share of records with risk above 0.15"]
    assert [c.passed for c in checks] == [False, False, True]
    assert checks[1].value == pytest.approx(3 / 20)
    assert checks[1].limit == 0.05
    assert checks[2].value == pytest.approx(10 / 20)
    # the JSON form gives the same answer
    as_json = json.loads(json.dumps(profile_from_sizes([5, 5, 10]).as_dict()))
    assert evaluate_thresholds(as_json, policy) == checks
    assert risk_profile_from_dict(as_json).size_counts == {5: 2, 10: 1}
    # by default only the average is a threshold: k already bounds the highest risk by 1/k
    assert [c.name for c in evaluate_thresholds(profile_from_sizes([5, 20]), _policy())] == ["average prosecutor risk"]
    # the EMA's public-release threshold, with a k that can fail it
    ema = _policy(k=10, thresholds=Thresholds(max_risk=0.09))
    assert evaluate_thresholds(profile_from_sizes([5, 20]), ema)[0].passed is False


@pytest.mark.parametrize("thresholds", [{"max_risk": 0.2}, {"max_risk": 0.5},
                                        {"risk_level": 0.2, "max_share_at_risk": 0.0}])
def test_thresholds_that_k_makes_impossible_to_fail_are_refused(thresholds: dict[str, float]) -> None:
    # at k = 5 every class has 5 records or more: no risk can exceed 0.2, such a threshold would do nothing
    with pytest.raises(ValueError, match=r"cannot fail|does nothing"):
        _policy(k=5, thresholds=thresholds)


def test_suggestion_is_verified_by_rerunning_the_search() -> None:
    _, problem = _people()
    policy = _policy(k=2, suppression=0.0, thresholds=Thresholds(max_risk=0.2, avg_risk=0.1))  # 0.2 < 1/2
    suggestions = suggest_policy_change(problem, policy)
    assert suggestions, "k = 2 cannot hold a 0.2 highest risk"
    by = {s.setting: s for s in suggestions}
    assert "k" in by
    k = int(by["k"].value)
    assert k > 2
    # the text states the cost: the levels in words (here the year of birth collapses) and the suppression
    assert by["k"].text == f"raise k to {k}: {by['k'].cost}"
    assert "yob removed (the policy does not allow its removal)" in by["k"].cost and by["k"].refused == ["yob"]
    assert by["k"].cost.endswith(f"{by['k'].suppressed / problem.n:.1%} of records suppressed")
    # re-running the search with the suggested k passes; with k - 1 it does not
    for kk, ok in ((k, True), (k - 1, False)):
        trial = policy.model_copy(update={"k": kk})
        result = search_keeping(problem, model_of(trial), trial)
        after = risk_at(problem, result.node, model_of(trial))
        assert all(c.passed for c in evaluate_thresholds(after, trial)) is ok
    # a passing policy needs no change
    assert suggest_policy_change(problem, policy.model_copy(update={"k": k})) == []


def test_report_json_and_html_are_self_contained() -> None:
    _, problem = _people()
    policy = _policy(k=2, suppression=0.0, thresholds=Thresholds(max_risk=0.2))
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


# --------------------------------------------------------------------------- population uniqueness

# Class-size histogram (size: number of classes) of ARX's data/adult.csv (30,162 records) with its nine
# hierarchy attributes as quasi-identifiers, as ARX's TestRiskMetrics uses it; counted from that file.
ADULT = {
    1: 15512, 2: 2098, 3: 754, 4: 375, 5: 189, 6: 155, 7: 97, 8: 73, 9: 39, 10: 37, 11: 29, 12: 18,
    13: 23, 14: 14, 15: 15, 16: 9, 17: 11, 18: 10, 19: 10, 20: 5, 21: 3, 22: 4, 23: 3, 24: 2, 25: 1,
    26: 3, 27: 5, 29: 1, 30: 2, 32: 1, 34: 1, 35: 1, 36: 1, 45: 1,
}  # fmt: skip


def test_population_uniqueness_against_arx() -> None:
    """Numbers from ARX's TestRiskMetrics (testDecisionRule2, testAverageRisk2) on adult.csv."""
    assert sum(s * c for s, c in ADULT.items()) == 30162
    assert profile_from_sizes(
        [s for s, c in ADULT.items() for _ in range(c)]
    ).prosecutor_avg == pytest.approx(0.6465751607983555, abs=1e-15)
    # sampling fraction 0.1: Dankar's rule takes Pitman
    r = population_uniqueness(ADULT, 0.1)
    assert (r.model, r.population_size) == ("pitman", 301620)
    assert r.share == pytest.approx(0.27684993883653597, abs=1e-9)
    assert r.estimates["zayatz"] == pytest.approx(
        0.3207402393466189, abs=1e-12
    )  # ARX's Zayatz fallback value
    assert population_uniqueness(ADULT, 0.1, "pitman").share == r.share
    # 0.01: Pitman
    r = population_uniqueness(ADULT, 0.01)
    assert r.model == "pitman" and r.share == pytest.approx(0.1446083531167384, abs=1e-9)
    # 0.2: ARX reports Zayatz, 0.3577099234829125, because its SNB finds no solution on this data
    # (ARX's E[c2] has (1 - d)^(α+2) where the model gives (1 - d)^-(α+2), and its Shlosser
    # denominator subtracts 1 per class size); the correct SNB has one and it is the smaller
    assert population_uniqueness(ADULT, 0.2, "zayatz").share == pytest.approx(0.3577099234829125, abs=1e-12)
    r = population_uniqueness(ADULT, 0.2)
    assert r.model == "snb" and r.share < 0.3577099234829125
    # a census: population uniques are the sample uniques
    r = population_uniqueness(ADULT, 1.0)
    assert r.share == pytest.approx(0.5142895033485844, abs=1e-12) == r.sample_uniques
    assert r.estimates["snb"] == pytest.approx(r.sample_uniques, abs=1e-12)
    # and Benedetti-Franconi falls back to 1 / f: its mean is the prosecutor average
    assert r.individual_risk_avg == pytest.approx(0.6465751607983555, abs=1e-15)
    assert r.individual_risk_max == 1.0


def test_benedetti_franconi_against_sdcmicro() -> None:
    """sdcMicro tests/testthat/test_indivRisk.R, weighted example, method approx: the eight records'
    classes have f = 3, 1, 3, 1, 2, 2, 1, 3 and summed weights F = 108, 45.5, 108, 17, 100, 100,
    123.5, 108."""
    risk = benedetti_franconi([3, 1, 3, 1, 2, 2, 1, 3], [108, 45.5, 108, 17, 100, 100, 123.5, 108])
    expected = [
        0.01369863,
        0.08579129,
        0.01369863,
        0.17707583,
        0.01877883,
        0.01877883,
        0.03931625,
        0.01369863,
    ]
    assert risk == pytest.approx(expected, abs=5e-9)
    # unweighted (F = f): 1 / f
    assert benedetti_franconi([3, 1, 2], [3, 1, 2]) == pytest.approx([1 / 3, 1, 1 / 2])


def test_population_uniqueness_by_hand() -> None:
    """Computed by hand (no published number): classes of sizes 1, 1, 2 (n = 4) at π = 0.5, N = 8."""
    r = population_uniqueness({1: 2, 2: 1}, 0.5, "zayatz")
    # hypergeometric P(one drawn): size 1: 4/8; size 2: 2 * (4/8) * (4/7) = 4/7
    # P(F = 1 | f = 1) = 2 * 1/2 / (2 * 1/2 + 4/7) = 7/11; uniques = 2 * 7/11 / 0.5 = 28/11
    assert r.uniques == pytest.approx(28 / 11, rel=1e-12)
    assert r.share == pytest.approx(28 / 11 / 8, rel=1e-12)
    assert r.records_unique == pytest.approx(28 / 11 / 2, rel=1e-12)
    assert r.sample_uniques == 0.5
    # Benedetti-Franconi with p = π = 0.5: f=1: log 2; f=2: 1 - log 2; f=3: 0.5 / 2.5
    bf = population_uniqueness([1, 2, 3], 0.5)
    assert bf.individual_risk_max == pytest.approx(math.log(2))
    assert bf.individual_risk_avg == pytest.approx((math.log(2) + 2 * (1 - math.log(2)) + 3 * 0.2) / 6)
    # the same histogram as sizes, as size counts, and as JSON size counts
    sizes = [1, 1, 2, 5, 5, 7]
    a = population_uniqueness(sizes, 0.05)
    assert population_uniqueness({1: 2, 2: 1, 5: 2, 7: 1}, 0.05) == a
    assert population_uniqueness({"1": 2, "2": 1, "5": 2, "7": 1}, population_size=a.population_size) == a
    json.dumps(a.as_dict())


def test_population_uniqueness_on_a_simulated_population() -> None:
    """A population whose classes are 1 + negative binomial (0.3, 0.15), Bernoulli samples of it:
    the estimate chosen by Dankar's rule lands near the true share of population uniques (the
    sample-unique share does not)."""
    rng = np.random.default_rng(1)
    big_f = 1 + rng.negative_binomial(0.3, 0.15, size=200_000)
    truth = float((big_f == 1).sum() / big_f.sum())
    for pi in (0.1, 0.2, 0.5):
        f = rng.binomial(big_f, pi)
        r = population_uniqueness(f[f > 0], population_size=int(big_f.sum()))
        assert abs(r.share - truth) < 0.03, (pi, r)
        assert r.sample_uniques > r.share


def test_population_uniqueness_edges_and_errors() -> None:
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"\(0, 1\]"):
            population_uniqueness([1, 2], bad)
    with pytest.raises(ValueError, match="smaller than"):
        population_uniqueness([1, 2], population_size=2)
    with pytest.raises(ValueError, match="either"):
        population_uniqueness([1, 2])
    with pytest.raises(ValueError, match="either"):
        population_uniqueness([1, 2], 0.5, population_size=6)
    with pytest.raises(ValueError, match="unknown"):
        population_uniqueness([1, 2], 0.5, "argus")
    # no sample uniques: nobody can be unique in the population
    r = population_uniqueness([2, 3, 5], 0.1)
    assert (r.model, r.share, r.uniques) == ("none", 0.0, 0.0)
    # every record unique: Pitman's likelihood has no maximum; Dankar falls back to Zayatz
    r = population_uniqueness([1] * 50, 0.05)
    assert r.model == "zayatz" and r.estimates["pitman"] is None
    with pytest.raises(EstimationError, match="pitman"):
        population_uniqueness([1] * 50, 0.05, "pitman")
    empty = population_uniqueness([], 0.5)
    assert (empty.records, empty.share) == (0, 0.0)


def test_population_uniqueness_is_fast_on_100000_classes() -> None:
    rng = np.random.default_rng(0)
    sizes = 1 + rng.negative_binomial(0.4, 0.3, size=100_000)
    start = time.perf_counter()
    for pi in (0.05, 0.5):
        r = population_uniqueness(sizes, pi)
        assert 0 < r.share < r.sample_uniques
    assert time.perf_counter() - start < 5.0


def test_report_estimates_population_uniqueness_from_the_population_size() -> None:
    _, problem = _people()
    policy = _policy(k=2, suppression=0.0, population_size=10_000)
    result = search(problem, model_of(policy), policy.metric)
    report = full_report(problem, result, policy)
    pu = report["population_uniqueness"]
    zay = full_report(problem, result, policy.model_copy(update={"uniqueness_model": "zayatz"}))
    assert zay["population_uniqueness"]["before"]["requested"] == "zayatz"
    assert set(pu) == {"before", "after"}
    for when in ("before", "after"):
        assert pu[when]["requested"] == "dankar" and 0.0 <= pu[when]["share"] <= 1.0
    # generalising can only lower it (fewer, larger classes)
    assert pu["after"]["share"] <= pu["before"]["share"]
    assert "Population uniqueness" in render_html(report)
    with pytest.raises(ValueError, match="not both"):
        _policy(population="pop.csv", population_size=10)
