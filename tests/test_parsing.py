"""first_parsed: the same values as coalescing every parser over the whole column (issue 19: each
fallback format runs only on the values the ones before it left null)."""

from __future__ import annotations

import polars as pl
import pytest

from schemas.extract import Column
from schemas.mapping import HospitalMapping
from transforms.adapters import _day_any, _instant_any, parse_day, parse_instant
from transforms.ingest import DATE_FORMATS, DATETIME_FORMATS, _parse_temporal
from transforms.parsing import first_parsed

VALUES = [
    "2023-10-10T04:17:47Z", " 2023-10-10T04:17:47Z ", "2023-10-10", "2023-10", "2023", "2023-10-10T04:17:47.123Z",
    "2023-10-10T04:17:47+02:00", "2023-10-10 04:17:47", "2023-10-10T04:17", "2023-10-10T04:17+01:00",
    "2023-10-10T04:17:47", "10/10/2023", "10/10/2023 04:17", "2023-02-30", "2023-13", "", "  ", "n/a", None,
    "2023-10-10T25:00:00Z", "1899-12-31T23:59:59Z", "2023-10-10 04:17", "2023-10-10T04:17:47.5",
]


@pytest.mark.parametrize(("new", "old"), [(parse_instant, _instant_any), (parse_day, _day_any)])
def test_adapters_parse_same_as_every_format_on_every_value(new: object, old: object) -> None:
    df = pl.DataFrame({"v": VALUES * 3}, schema={"v": pl.String})
    got = df.select(new(pl.col("v")))["v"]  # type: ignore[operator]
    want = df.select(old(pl.col("v")))["v"]  # type: ignore[operator]
    assert got.dtype == want.dtype
    assert got.to_list() == want.to_list()
    assert got.null_count() < len(got)  # the values parse: the comparison is not between two null columns


@pytest.mark.parametrize("kind", ["date", "datetime"])
def test_hospital_formats_same_as_coalesce(kind: str) -> None:
    mapping = HospitalMapping(date_formats=["%d/%m/%Y"], datetime_formats=["%d/%m/%Y %H:%M"])
    col = Column(name="v", type=kind)
    s = pl.col("v")
    if kind == "date":
        want_expr = pl.coalesce([s.str.strptime(pl.Date, f, strict=False, exact=True) for f in ("%d/%m/%Y", *DATE_FORMATS)])
    else:
        parsed = [s.str.strptime(pl.Datetime("us"), f, strict=False, exact=True) for f in ("%d/%m/%Y %H:%M", *DATETIME_FORMATS)]
        parsed += [s.str.strptime(pl.Date, f, strict=False, exact=True).cast(pl.Datetime("us")) for f in ("%d/%m/%Y", "%Y-%m-%d")]
        want_expr = pl.coalesce(parsed)
    df = pl.DataFrame({"v": VALUES}, schema={"v": pl.String})
    got, want = df.select(_parse_temporal(col, mapping))["v"], df.select(want_expr)["v"]
    assert got.to_list() == want.to_list()
    assert got.drop_nulls().len() >= 2  # "2023-10-10" and "10/10/2023" (the ingest strips values first)


def test_later_parsers_see_only_what_earlier_ones_left() -> None:
    seen: list[list[str | None]] = []

    def second(e: pl.Expr) -> pl.Expr:
        return e.map_batches(lambda s: (seen.append(s.to_list()), s.str.strptime(pl.Date, "%d/%m/%Y", strict=False))[1],
                             return_dtype=pl.Date)

    df = pl.DataFrame({"v": ["2020-01-02", "03/04/2020", None, "2020-05-06"]})
    out = df.select(first_parsed(pl.col("v"), [lambda e: e.str.strptime(pl.Date, "%Y-%m-%d", strict=False), second], pl.Date))
    assert [str(d) for d in out["v"].to_list()] == ["2020-01-02", "2020-04-03", "None", "2020-05-06"]
    assert seen == [["03/04/2020"]]  # neither the parsed values nor the null


def test_first_parsed_needs_a_parser() -> None:
    with pytest.raises(ValueError, match="at least one parser"):
        first_parsed(pl.col("v"), [], pl.Date)
