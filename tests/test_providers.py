"""Provider attributes (staff are data subjects): published only where at least k providers share them."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anonymisation.providers import ATTRIBUTES, protect_providers
from schemas import omop as cdm

RELEASED = [c for cols in ATTRIBUTES.values() for c in cols]  # every attribute column
WITHHELD = {"gender_concept_id": 0, "gender_source_value": None, "gender_source_concept_id": 0,
            "specialty_concept_id": 0, "specialty_source_value": None, "specialty_source_concept_id": 0,
            "care_site_id": None, "year_of_birth": None}


def providers(rows: list[tuple[str, int, int | None, int | None]]) -> pl.DataFrame:
    """(gender F/M, specialty concept, care site, year of birth) per provider, with the identifying columns filled."""
    n = len(rows)
    return cdm.conform(pl.DataFrame({
        "provider_id": list(range(100, 100 + n)),
        "provider_name": [f"Dr {i}" for i in range(n)], "npi": [f"npi{i}" for i in range(n)],
        "dea": [f"dea{i}" for i in range(n)], "provider_source_value": [f"staff-{i}" for i in range(n)],
        "gender_concept_id": [8532 if g == "F" else 8507 for g, *_ in rows],
        "gender_source_value": [g for g, *_ in rows],
        "specialty_concept_id": [s for _, s, _, _ in rows],
        "specialty_source_value": [f"sp{s}" for _, s, _, _ in rows],
        "care_site_id": pl.Series([c for _, _, c, _ in rows], dtype=pl.Int64),
        "year_of_birth": pl.Series([y for *_, y in rows], dtype=pl.Int32),
    }), "provider")


def assert_k_shared(out: pl.DataFrame, k: int) -> None:
    """Every combination of published attributes (rows not entirely withheld) is held by >= k providers."""
    withheld_all = pl.all_horizontal([pl.col(c).eq_missing(pl.lit(v)) for c, v in WITHHELD.items()])
    published = out.filter(~withheld_all)
    sizes = published.group_by(RELEASED, maintain_order=True).len()
    assert sizes["len"].min() is None or sizes["len"].min() >= k, sizes.filter(pl.col("len") < k)


def test_only_what_must_go_is_withheld() -> None:
    df = providers([("F", 38004451, 1, 1970), ("F", 38004451, 1, 1972),
                    ("M", 38004447, 2, 1980), ("M", 38004447, 2, 1985),
                    ("M", 38004458, 3, 1990)])  # the fifth shares nothing with anyone
    r = protect_providers(df, k=2)
    out = r.frame.sort("provider_id")
    assert out["provider_id"].to_list() == df["provider_id"].to_list()  # no row removed
    for c in ("provider_name", "npi", "dea", "provider_source_value"):
        assert out[c].null_count() == out.height, c
    # the four who share gender, specialty and care site keep them; their years become decades
    keep = ["gender_concept_id", "gender_source_value", "specialty_concept_id", "specialty_source_value", "care_site_id"]
    assert out.head(4).select(keep).equals(df.head(4).select(keep))
    assert out["year_of_birth"].to_list()[:4] == [1970, 1970, 1980, 1980]
    # the fifth cannot be shared by two: it keeps its row, with every attribute withheld
    assert {c: out.row(4, named=True)[c] for c in WITHHELD} == WITHHELD
    assert_k_shared(out, 2)
    assert r.summary == {"k": 2, "providers": 5, "providers_withheld": 1,
                         "levels": {"gender": 0, "specialty": 0, "care_site": 0, "year_of_birth": 1},
                         "attributes": {"gender": "kept", "specialty": "kept", "care_site": "kept",
                                        "year_of_birth": "10-year bands"},
                         "kept": ["gender", "specialty", "care_site", "year_of_birth"], "removed": []}


def test_an_attribute_nobody_shares_is_removed_not_the_providers() -> None:
    # six providers in two care sites of three, with six different specialties: specialty goes, the rest stays
    df = providers([(g, 38004400 + i, 1 if i < 3 else 2, 1960) for i, g in enumerate("FFFMMM")])
    r = protect_providers(df, k=3)
    out = r.frame.sort("provider_id")
    assert out["specialty_concept_id"].to_list() == [0] * 6 and out["specialty_source_value"].null_count() == 6
    assert out["care_site_id"].to_list() == [1, 1, 1, 2, 2, 2] and out["year_of_birth"].to_list() == [1960] * 6
    assert r.summary["removed"] == ["specialty"] and r.summary["providers_withheld"] == 0
    assert_k_shared(out, 3)


def test_source_values_split_a_class() -> None:
    # the same gender concept recorded as 'F' and 'female': published together, they would single out one provider
    df = providers([("F", 1, 1, 1970)] * 3).with_columns(
        gender_source_value=pl.Series(["F", "F", "female"]))
    out = protect_providers(df, k=2).frame
    assert_k_shared(out, 2)
    assert "female" not in out["gender_source_value"].to_list()


def test_fewer_providers_than_k_and_none_at_all() -> None:
    r = protect_providers(providers([("F", 1, 1, 1970)]), k=5)
    assert {c: r.frame.row(0, named=True)[c] for c in WITHHELD} == WITHHELD
    assert r.summary["providers_withheld"] == 1 and r.summary["kept"] == []
    empty = protect_providers(providers([]), k=5)
    assert empty.frame.height == 0 and empty.summary["providers"] == 0
    with pytest.raises(ValueError, match="k must be"):
        protect_providers(providers([]), k=0)
    with pytest.raises(ValueError, match="year_of_birth"):
        protect_providers(providers([("F", 1, 1, 1970)]).drop("year_of_birth"), k=2)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(st.sampled_from("FM"), st.integers(1, 4), st.one_of(st.none(), st.integers(1, 3)),
                               st.one_of(st.none(), st.integers(1950, 1995))), max_size=40),
       k=st.integers(2, 5))
def test_every_published_combination_is_shared_by_k(rows: list[tuple[str, int, int | None, int | None]], k: int) -> None:
    df = providers(rows)
    r = protect_providers(df, k=k)
    assert r.frame.height == df.height and sorted(r.frame["provider_id"]) == sorted(df["provider_id"])
    assert r.frame.schema == df.schema
    assert_k_shared(r.frame, k)
    assert r.summary["providers"] == df.height
