"""Places of residence in the release: the postcode QI of a location row, and location rows of labels."""

from __future__ import annotations

import polars as pl
import pytest

from anonymisation.hierarchy import builtin_hierarchy
from anonymisation.locations import location_qi, qi_value, release_location_rows
from schemas import omop as cdm
from schemas.geo import CANTON_CODES, CANTON_NAMES, communes, postcode_index

CANTONS = sorted({c.canton for c in communes()})
FIELDS = ("zip", "city", "county", "country_source_value", "country_concept_id", "location_source_value")


def _rows(labels: list[str], **kw: object) -> dict[str, dict[str, object]]:
    ids = {lab: i + 1 for i, lab in enumerate(labels)}
    df = release_location_rows(ids, **kw)  # type: ignore[arg-type]
    by_id = {r["location_id"]: r for r in df.iter_rows(named=True)}
    return {lab: {f: by_id[i][f] for f in FIELDS} for lab, i in ids.items()}


def _expect(zip_: str | None = None, city: str | None = None, county: str | None = None,
            country: str | None = "LU", concept: int | None = 0) -> dict[str, object]:
    return {"zip": zip_, "city": city, "county": county, "country_source_value": country,
            "country_concept_id": concept if country is not None else None, "location_source_value": None}


# --- the QI value of a location row -----------------------------------------------------------------


def test_location_qi_carries_the_country() -> None:
    loc = pl.DataFrame({
        "location_id": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
        "zip": ["L-1080", "1080", "57000", "6600", "54290", None, "F-57100", "l 1234", "01234", "57000", None, "1234 ab"],
        "country_source_value": ["LU", None, "FR", "BE", "DE", "FR", "FR", "", "US", "Atlantis", None, "NL"],
    })
    qi = location_qi(loc)
    assert qi.columns == ["location_id", "postcode"] and qi.schema["location_id"] == pl.Int64
    assert dict(qi.iter_rows()) == {
        1: "L-1080", 2: "L-1080",  # a null country means Luxembourg
        3: "FR-57000", 4: "BE-6600", 5: "DE-54290",
        6: "FR",  # abroad without a postcode: the country
        7: "FR-57100",  # the letter prefix of a French postcode is not part of it
        8: "L-1234", 9: "US-01234",
        10: "*",  # a country that cannot be read: unknown residence
        11: "LU",
        12: "NL-1234 AB",
    }


def test_location_qi_names_countries_by_code() -> None:
    assert qi_value("57000", "France") == "FR-57000"
    assert qi_value("54290", "Deutschland") == "DE-54290"
    assert qi_value("02134", "United States") == "US-02134"
    assert qi_value("1080", "Luxembourg") == "L-1080"
    assert qi_value("6700", "b") == "*"  # one letter is neither a code nor a name
    # a Luxembourg postcode that is not one stays as given: the hierarchy names it in its error
    assert qi_value("57000", "LU") == "57000"


def test_location_qi_feeds_the_hierarchy() -> None:
    lu = sorted(postcode_index())[:3]
    loc = pl.DataFrame({"location_id": list(range(7)), "zip": [*lu, "57000", "6600", "01234", None],
                        "country_source_value": ["LU", "LU", None, "FR", "BE", "US", "DE"]})
    values = location_qi(loc)["postcode"].to_list()
    h = builtin_hierarchy("lu-postcode", values, "postcode")
    assert [h.generalise(v, 1) for v in values[3:]] == ["FR", "BE", "US", "DE"]


def test_location_qi_without_country_column_is_luxembourg() -> None:
    qi = location_qi(pl.DataFrame({"location_id": [5], "zip": ["L-1080"]}))
    assert qi.rows() == [(5, "L-1080")]


# --- location rows of labels ------------------------------------------------------------------------


def test_every_canton_resolves_to_a_canton() -> None:
    assert sorted(CANTON_CODES) == CANTONS
    rows = _rows([CANTON_CODES[c] for c in CANTONS])
    for c in CANTONS:
        assert rows[CANTON_CODES[c]] == _expect(county=c), c


def test_communes_named_like_a_canton_resolve_to_the_commune() -> None:
    twins = [c for c in communes() if c.name in CANTONS]
    assert len(twins) == 10 and {c.name for c in twins} >= {"Vianden", "Luxembourg", "Wiltz", "Esch-sur-Alzette"}
    rows = _rows([c.label for c in twins] + [CANTON_CODES[c.name] for c in twins])
    for c in twins:
        assert rows[c.label] == _expect(city=c.name, county=c.canton), c.name
        assert rows[CANTON_CODES[c.name]] == _expect(county=c.name), c.name
    # the release once showed city=Vianden, county=Vianden for the canton: the commune of Vianden is in
    # the canton of Vianden, but the canton's row names no city
    assert rows["LU-VD"]["city"] is None


def test_every_commune_resolves_to_itself() -> None:
    rows = _rows([c.label for c in communes()])
    for c in communes():
        assert rows[c.label] == _expect(city=c.name, county=c.canton)


def test_countries_postcodes_and_the_top() -> None:
    lu = communes()[0]
    pc = lu.postcodes[0]
    rows = _rows(["LU", "FR", "BE", pc, "FR-57000", "BE-6600", "NL-1234 AB", "*"], country_concepts={"FR": 4071})
    assert rows["LU"] == _expect()  # the country, never the commune or canton of Luxembourg
    assert rows["FR"] == _expect(country="FR", concept=4071)
    assert rows["BE"] == _expect(country="BE")
    assert rows[pc] == _expect(zip_=pc, city=lu.name, county=lu.canton)
    assert rows["FR-57000"] == _expect(zip_="57000", country="FR", concept=4071)
    assert rows["BE-6600"] == _expect(zip_="6600", country="BE")  # not the L-6600 of a Luxembourg commune
    assert rows["NL-1234 AB"] == _expect(zip_="1234 AB", country="NL")
    assert rows["*"] == {f: None for f in FIELDS}


def test_a_label_of_another_hierarchy_is_kept_as_source_value() -> None:
    rows = _rows(["North <1>"])
    assert rows["North <1>"] == {**{f: None for f in FIELDS}, "location_source_value": "North 1"}


def test_rows_are_omop_location_rows() -> None:
    df = release_location_rows({"LU-VD": 7, "FR": 3})
    assert df.columns == [f.name for f in cdm.table("location").fields]
    assert df["location_id"].to_list() == [3, 7]
    assert release_location_rows({}).height == 0


@pytest.mark.parametrize("level", range(5))
def test_every_hierarchy_label_resolves_to_its_level(level: int) -> None:
    """Each label of builtin:lu-postcode, at each level, gives the row of that level and no other."""
    values = [pc for c in communes() for pc in c.postcodes] + ["FR-57000", "BE-6700", "DE-54290", "FR"]
    h = builtin_hierarchy("lu-postcode", values, "postcode")
    labels = sorted(set(h.labels[level]))
    rows = _rows(labels)
    index = postcode_index()
    for v in values:
        label = h.generalise(v, level)
        row = rows[label]
        abroad = not v.startswith("L-")
        if level == 4:
            assert row == {f: None for f in FIELDS}
        elif abroad:
            country = v[:2]
            assert row == _expect(zip_=v[3:] if level == 0 and len(v) > 2 else None, country=country)
        else:
            c = index[v]
            assert row == [_expect(zip_=v, city=c.name, county=c.canton), _expect(city=c.name, county=c.canton),
                           _expect(county=c.canton), _expect()][level]
    assert set(CANTON_NAMES) == set(CANTON_CODES.values())
