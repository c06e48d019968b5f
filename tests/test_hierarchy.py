"""Hierarchies: ARX's CSV format and the built-ins."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anonymisation.hierarchy import (
    BUILTINS,
    Hierarchy,
    HierarchyError,
    builtin_hierarchy,
    load_arx_hierarchy,
    resolve_hierarchy,
    write_arx_hierarchy,
)
from schemas.geo import CANTON_CODES, communes, postcode_index

ADULT = Path(__file__).parents[2] / "shared" / "data" / "arx-adult"


def test_from_rows_codes_and_lookups() -> None:
    h = Hierarchy.from_rows("t", [["a", "ab", "*"], ["b", "ab", "*"], ["c", "c", "*"]])
    assert h.height == 2
    assert h.domain_size == 3
    assert h.labels[1] == ("ab", "c")
    assert h.generalise("b", 1) == "ab"
    assert h.generalise("c", 2) == "*"
    assert list(h.up(1, 2)) == [0, 0]
    assert list(h.leaves_under[1]) == [2, 1]
    assert h.label_map(1) == {"a": "ab", "b": "ab", "c": "c"}


def test_non_monotone_hierarchy_is_rejected() -> None:
    with pytest.raises(HierarchyError, match="not monotone"):
        Hierarchy.from_rows("t", [["a", "x", "p"], ["b", "x", "q"]])


def test_ragged_and_conflicting_rows_are_rejected() -> None:
    with pytest.raises(HierarchyError, match="levels"):
        Hierarchy.from_rows("t", [["a", "x", "*"], ["b", "*"]])
    with pytest.raises(HierarchyError, match="twice"):
        Hierarchy.from_rows("t", [["a", "x"], ["a", "y"]])
    with pytest.raises(HierarchyError, match="two levels"):
        Hierarchy.from_rows("t", [["a"], ["b"]])


def test_arx_csv_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_bytes("﻿1;0-4;*\r\n2;0-4;*\r\n7;5-9;*\r\n\r\n".encode())
    h = load_arx_hierarchy(path)
    assert h.labels[0] == ("1", "2", "7")
    assert h.generalise("7", 1) == "5-9"
    out = tmp_path / "out.csv"
    write_arx_hierarchy(h, out)
    assert load_arx_hierarchy(out).rows() == h.rows()


def test_missing_hierarchy_file() -> None:
    with pytest.raises(HierarchyError, match="not found"):
        load_arx_hierarchy("/nonexistent/h.csv")


@pytest.mark.skipif(not ADULT.exists(), reason="shared ARX adult data absent")
def test_arx_adult_hierarchies_load() -> None:
    heights = {}
    for f in sorted((ADULT / "hierarchies").glob("*.csv")):
        h = load_arx_hierarchy(f)
        heights[f.stem.removeprefix("adult_hierarchy_")] = h.height
        assert h.labels[h.height] == ("*",)
    assert heights["age"] == 4
    assert heights["sex"] == 1
    assert heights["education"] == 3


def test_year5_bands() -> None:
    h = builtin_hierarchy("year5", ["1952", "1957", "1949", "1961"], "year_of_birth")
    assert h.height == 4
    assert h.generalise("1952", 1) == "[1950-1954]"
    assert h.generalise("1957", 2) == "[1950-1959]"
    assert h.generalise("1949", 3) == "[1940-1959]"
    assert h.generalise("1961", 3) == "[1960-1979]"
    assert h.generalise("1961", 4) == "*"


def test_numbers_as_strings_parse() -> None:
    h = builtin_hierarchy("age10", ["7", "12.0", " 19 "], "age")
    assert h.generalise("12.0", 1) == "[10-19]"
    assert h.generalise(" 19 ", 2) == "[0-19]"


def test_bad_values_name_the_column() -> None:
    with pytest.raises(HierarchyError, match=r"column year_of_birth: 2 value\(s\) cannot be placed.*'abc'"):
        builtin_hierarchy("year5", ["1950", "abc", "19x5"], "year_of_birth")
    with pytest.raises(HierarchyError, match="None"):
        builtin_hierarchy("year5", ["1950", None], "year_of_birth")


def test_dates() -> None:
    h = builtin_hierarchy("date-month", ["2020-03-14", "2020-05-01T10:00:00", "2021-12-31"], "d")
    assert [h.generalise("2020-03-14", lv) for lv in range(5)] == [
        "2020-03-14",
        "2020-03",
        "2020-Q1",
        "2020",
        "*",
    ]
    assert h.generalise("2020-05-01T10:00:00", 2) == "2020-Q2"
    q = builtin_hierarchy("date-quarter", ["2021-12-31"], "d")
    assert [q.generalise("2021-12-31", lv) for lv in range(4)] == ["2021-12-31", "2021-Q4", "2021", "*"]
    y = builtin_hierarchy("date-year", ["2021-12-31"], "d")
    assert y.height == 2
    with pytest.raises(HierarchyError, match="column d"):
        builtin_hierarchy("date-year", ["31/12/2021"], "d")


def test_lu_postcode_labels_are_codes() -> None:
    index = postcode_index()
    codes = sorted(index)[:6]
    h = builtin_hierarchy("lu-postcode", codes, "postcode")
    assert h.height == 4
    for pc in codes:
        c = index[pc]
        assert [h.generalise(pc, lv) for lv in range(1, 5)] == [f"LU-{c.code}", CANTON_CODES[c.canton], "LU", "*"]
    # Vianden the commune and Vianden the canton, Luxembourg the commune, canton and country: distinct labels
    vianden = next(c for c in communes() if c.name == "Vianden")
    city = next(c for c in communes() if c.name == "Luxembourg")
    h = builtin_hierarchy("lu-postcode", [vianden.postcodes[0], city.postcodes[0]], "postcode")
    assert [h.generalise(vianden.postcodes[0], lv) for lv in range(1, 4)] == [f"LU-{vianden.code}", "LU-VD", "LU"]
    assert [h.generalise(city.postcodes[0], lv) for lv in range(1, 4)] == [f"LU-{city.code}", "LU-LU", "LU"]
    assert not set(h.labels[1]) & set(h.labels[2]) and not set(h.labels[2]) & set(h.labels[3])
    # an unknown Luxembourg postcode, a commune's code or a postcode without its country stays an error
    for bad in ("L-0001", "0001", "LU-0042", "57000"):
        with pytest.raises(HierarchyError, match=f"column postcode: 1 value\\(s\\) cannot be placed .*'{bad}'"):
            builtin_hierarchy("lu-postcode", [codes[0], bad], "postcode")


def test_lu_postcode_abroad_generalises_to_the_country() -> None:
    lu = sorted(postcode_index())[0]
    values = [lu, "FR-57000", "FR-57100", "BE-6600", "DE-54290", "NL-1234 AB", "US-01234", "FR", "LU", "*"]
    h = builtin_hierarchy("lu-postcode", values, "postcode")
    for v, country in (("FR-57000", "FR"), ("FR-57100", "FR"), ("BE-6600", "BE"), ("DE-54290", "DE"),
                       ("NL-1234 AB", "NL"), ("US-01234", "US"), ("FR", "FR"), ("LU", "LU")):
        assert [h.generalise(v, lv) for lv in range(5)] == [v, country, country, country, "*"], v
    assert h.generalise("*", 1) == "*"
    # BE 6600 (Bastogne) is not the synthetic L-6600 of a Luxembourg commune
    assert "L-6600" in postcode_index()
    assert h.generalise("BE-6600", 1) == "BE"
    # a US Synthea site (58 zips) no longer stops the release once its QI values carry the country
    zips = [f"US-{n:05d}" for n in range(1000, 1058)]
    us = builtin_hierarchy("lu-postcode", zips, "postcode")
    assert set(us.labels[1]) == {"US"}


def test_lu_postcode_labels_do_not_depend_on_the_other_values() -> None:
    """Per-site frequency tables merge: a value's labels are the same whichever values a site holds."""
    pcs = sorted(postcode_index())
    site_a = [*pcs[:40], "FR-57100", "BE-6700", "DE"]
    site_b = [*pcs[30:90], "FR-57100", "FR", "DE-54290"]
    ha = builtin_hierarchy("lu-postcode", site_a, "postcode")
    hb = builtin_hierarchy("lu-postcode", site_b, "postcode")
    both = builtin_hierarchy("lu-postcode", site_a + site_b, "postcode")
    for lv in range(5):
        merged = both.label_map(lv)
        assert ha.label_map(lv) == {v: merged[v] for v in ha.labels[0]}
        assert hb.label_map(lv) == {v: merged[v] for v in hb.labels[0]}


def test_sex_and_unknown_builtin() -> None:
    h = builtin_hierarchy("sex", ["F", "M"], "sex")
    assert h.generalise("F", 1) == "*"
    with pytest.raises(HierarchyError, match="unknown hierarchy builtin:nope"):
        builtin_hierarchy("nope", ["x"], "c")
    assert {"year5", "age10", "date-month", "lu-postcode", "sex"} <= set(BUILTINS)


def test_resolve_checks_values(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("a;*\nb;*\n")
    h = resolve_hierarchy(str(path), ["a", "b"], "col")
    assert h.domain_size == 2
    with pytest.raises(HierarchyError, match=r"column col: 2 value\(s\) not in hierarchy.*'zz'"):
        resolve_hierarchy(str(path), ["a", "zz", "yy"], "col")
    assert resolve_hierarchy("builtin:sex", ["F"], "sex").height == 1


def test_encode_is_vectorised_and_exact() -> None:
    h = builtin_hierarchy("flat", ["x", "y"], "c")
    assert np.array_equal(h.encode(["y", "x", "y"], "c"), np.array([1, 0, 1]))


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_star_is_accepted_as_fully_generalised(name: str) -> None:
    h = builtin_hierarchy(name, ["*"], "c")
    assert all(h.generalise("*", lv) == "*" for lv in range(h.height + 1))


def test_configuration_docs_list_every_builtin() -> None:
    docs = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text(encoding="utf-8")
    for name in BUILTINS:
        assert f"`{name}`" in docs, name
