"""The utility guard: a quasi-identifier collapsed to one value by anonymisation blocks the release
unless the policy allows it; what the report and the suggestions say about it."""

from __future__ import annotations

import polars as pl
import pytest

from anonymisation import release as release_mod
from anonymisation.hierarchy import builtin_hierarchy
from anonymisation.kanon import search
from anonymisation.release import build_release
from anonymisation.risk_report import candidate_header, published_header, removal_message, render_html
from anonymisation.utility import cost_words, field_utility, level_words
from schemas.policy import PrivacyPolicy
from tests.test_release_privacy import KEY, Sites, pseudo, vocab  # noqa: F401  (module fixtures)
from transforms.vocabulary import Vocabulary


def _qis(policy: PrivacyPolicy, allow: set[str]) -> PrivacyPolicy:
    qis = [q.model_copy(update={"allow_removal": q.column in allow}) for q in policy.quasi_identifiers]
    return policy.model_copy(update={"quasi_identifiers": qis})


def test_levels_in_words() -> None:
    years = builtin_hierarchy("year5", [str(y) for y in range(1940, 2000)])
    assert [level_words(years, lv) for lv in range(5)] == ["exact", "5-year bands", "10-year bands",
                                                           "20-year bands", "removed"]
    place = builtin_hierarchy("lu-postcode", ["L-1080", "L-1160", "FR-57000"])
    assert [level_words(place, lv) for lv in range(5)] == ["exact", "commune", "canton", "country only", "removed"]
    assert level_words(builtin_hierarchy("sex", ["M", "F"]), 1) == "removed"


def test_constant_in_input_is_not_a_removal() -> None:
    """death_year when nobody died: one value before and after, not removed by anonymisation; sex that
    went from two values to one is."""
    before = pl.DataFrame({"sex": ["M", "F", "M"], "death_year": ["*", "*", "*"]})
    after = pl.DataFrame({"sex": ["*", "*", "*"], "death_year": ["*", "*", "*"]})
    hs = {"sex": builtin_hierarchy("sex", ["M", "F"]), "death_year": builtin_hierarchy("flat", ["*"])}
    fields = {f.qi: f for f in field_utility(before, after, {"sex": 1, "death_year": 0}, hs, PrivacyPolicy())}
    assert fields["death_year"].status == "constant" and not fields["death_year"].blocks
    assert fields["sex"].status == "removed" and fields["sex"].blocks
    allowed = _qis(PrivacyPolicy(), {"sex"})
    assert not field_utility(before, after, {"sex": 1}, hs, allowed)[0].blocks


def test_cost_of_a_node_in_words() -> None:
    hs = {"year_of_birth": builtin_hierarchy("year5", [str(y) for y in range(1940, 2000)]),
          "sex": builtin_hierarchy("sex", ["M", "F"])}
    text, refused = cost_words({"year_of_birth": 3, "sex": 1}, hs, 31, 1000, PrivacyPolicy())
    assert text == ("sex removed (the policy does not allow its removal), year of birth in 20-year bands, "
                    "3.1% of records suppressed")
    assert refused == ["sex"]


def test_a_removed_quasi_identifier_blocks_and_allow_removal_lets_it_through(
        pseudo: tuple[Sites, pl.DataFrame], vocab: Vocabulary) -> None:  # noqa: F811
    """600 persons at k = 7 with 1% suppression: no generalisation keeps every field, so the release
    removes some; blocked unless allowed, and the report says which in words."""
    sites, dy = pseudo
    policy = PrivacyPolicy.model_validate({"k": 7, "suppression": 0.01, "thresholds": {"avg_risk": 0.2}})
    r = build_release(sites, policy, KEY, vocab.ancestor, vocab.concept, true_death_years=dy)
    removed = r.report["utility"]["removed"]
    assert removed and r.report["utility"]["blocked"] == removed
    published = r.tables["person"]
    if "year_of_birth" in removed:
        assert published["year_of_birth"].n_unique() == 1
    msg = removal_message(r.report)
    assert msg is not None and "allow_removal: true" in msg
    for q in removed:
        assert q.replace("_", " ") in msg
    page = render_html(r.report)
    assert "which the policy does not allow" in page and "Every risk threshold" not in page
    # the same policy with those fields allowed to go: not blocked, and the report says so in words
    allowed = _qis(policy, set(removed))
    r2 = build_release(sites, allowed, KEY, vocab.ancestor, vocab.concept, true_death_years=dy)
    assert r2.report["utility"]["blocked"] == [] and set(r2.report["utility"]["removed"]) == set(removed)
    assert removal_message(r2.report) is None
    page2 = render_html(r2.report)
    for q in removed:
        assert f"{q.replace('_', ' ')} is removed: every published value is the same" in page2
    assert "as the policy allows (allow_removal)" in page2


def test_the_search_keeps_the_fields_it_can(pseudo: tuple[Sites, pl.DataFrame], vocab: Vocabulary,  # noqa: F811
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """With 15% suppression, the optimal node of the whole lattice (and the coarsening that spares facts)
    removes the year of birth; the search within the levels that keep it finds a node that does not."""
    sites, dy = pseudo
    policy = PrivacyPolicy.model_validate({"k": 5, "suppression": 0.15, "thresholds": {"avg_risk": 0.2}})
    kept = build_release(sites, policy, KEY, vocab.ancestor, vocab.concept, true_death_years=dy)
    assert kept.report["levels_in_words"]["year_of_birth"] != "removed"
    assert "year_of_birth" not in kept.report["utility"]["removed"]
    monkeypatch.setattr(release_mod, "search_keeping", lambda p, m, pol: search(p, m, pol.metric))
    monkeypatch.setattr(release_mod, "ceilings", lambda qis, hs, pol: tuple(h.height for h in hs))
    unguarded = build_release(sites, policy, KEY, vocab.ancestor, vocab.concept, true_death_years=dy)
    assert "year_of_birth" in unguarded.report["utility"]["blocked"]


def test_report_top_section_has_dataset_version_status_and_next_step() -> None:
    report = {"risk": {"before": {}, "after": {}}, "passed": True, "thresholds": [], "levels": {"sex": 0},
              "levels_in_words": {"sex": "exact", "postcode": "country only"}, "policy": PrivacyPolicy().model_dump()}
    page = render_html(report, header=candidate_header("omop-x", 3, ["postcode removed"]))
    assert '<td id="status" class="ko">blocked</td>' in page
    assert "3 (not published)" in page and "omop-x" in page and "re-run `uv run ds4h run`" in page
    assert "postcode: country only" in page and "postcode=3" not in page
    page = render_html(report, header=published_header("omop-x", 3, demo=False))
    assert "ds4h approve omop-x 3 --by NAME" in page and "published, awaiting approval" in page
    # the policy is a table, not raw JSON; an all-zero chart is one sentence
    assert "<pre>" not in page and '<table id="policy">' in page and "may be removed" in page
    assert "every risk measure is 0 before and after." in page and "<svg" not in page


@pytest.mark.parametrize("allow", [True, False])
def test_policy_accepts_allow_removal(allow: bool) -> None:
    p = PrivacyPolicy.model_validate({"quasi_identifiers": [
        {"column": "postcode", "hierarchy": "builtin:lu-postcode", "allow_removal": allow}]})
    assert p.quasi_identifiers[0].allow_removal is allow
