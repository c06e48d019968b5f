"""The contracts' polars evaluation equals great-expectations' on every expectation type the suites use.

``validate_entity(engine="polars")`` (the default) evaluates the expectations in polars and
``engine="gx"`` with great-expectations' pandas engine, the reference. Both run side by side on
every suite (hospital-csv, synthea-csv, fhir-bulk) over frames built from the suite itself, full of
the edge cases where engines differ (null and NaN, infinities, bounds to the microsecond, values
outside pandas' nanosecond range, Unicode digits and a final newline under a regex, duplicated keys,
null conditions), then on frames hypothesis generates, then with columns missing or typed wrong
(where the expectation is handed to GX): the report (every expectation's success, counts, percent,
observed value, exception) and the quarantined rows with their reasons must be equal.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.matricule import make_matricule
from transforms.contracts import build_format_suites, build_suites, validate_entity

pytestmark = pytest.mark.filterwarnings("ignore:module 'sre_parse' is deprecated:DeprecationWarning")

NOW = dt.datetime(2026, 1, 1, 12, 0, 0, 500_000)  # microseconds in the "now" parameter too
TODAY = NOW.date()
US = dt.timedelta(microseconds=1)

SUITES: dict[str, dict[str, Any]] = {f"hospital-csv.{n}": s for n, s in build_suites().items()}
SUITES |= {f"{fmt}.{n}": s for fmt, suites in build_format_suites().items() for n, s in suites.items()}

_TYPES: dict[str, pl.DataType] = {
    "str": pl.String(), "int": pl.Int64(), "float": pl.Float64(), "date": pl.Date(), "datetime": pl.Datetime("us"),
}


def _schema(suite: dict[str, Any]) -> dict[str, pl.DataType]:
    """Every column the suite names, typed as its type expectation or its date window says."""
    schema: dict[str, pl.DataType] = {"_line": pl.Int64()}
    for e in suite["expectations"]:
        kw = e["kwargs"]
        for c in [kw.get("column"), kw.get("column_A"), kw.get("column_B"), *(kw.get("column_set") or [])]:
            if c is not None:
                schema.setdefault(c, pl.String())
    for e in suite["expectations"]:
        kw = e["kwargs"]
        if e["type"] == "expect_column_values_to_be_of_type":
            schema[kw["column"]] = _TYPES[kw["type_"]]
        elif e["type"] == "expect_column_values_to_be_between" and isinstance(kw.get("min_value"), str):
            schema[kw["column"]] = pl.Date() if len(kw["min_value"]) == 10 else pl.Datetime("us")
        elif e["type"] == "expect_column_values_to_be_between" and kw["column"] not in _typed(suite):
            schema[kw["column"]] = pl.Float64()
    for e in suite.get("meta", {}).get("ds4h_row_checks") or []:
        schema.setdefault(e["kwargs"]["column"], pl.String())
    return schema


def _typed(suite: dict[str, Any]) -> set[str]:
    return {e["kwargs"]["column"] for e in suite["expectations"] if e["type"] == "expect_column_values_to_be_of_type"}


def _strings(suite: dict[str, Any], column: str) -> list[str | None]:
    """Edge strings for a column: its value set's members and near misses, texts near its regexes."""
    pool: list[str | None] = [None, None, None, None, "", " ", "x", "LU", "FR", "NL", "lu", "L-1080", "L-1080\n", "L-١٠٨٠", "57100",
                              "NL 1234 AB", "B-6700!", "E11.9", "E11.65", "C61", "e11.9", "E11.", "A10BA02", "a10ba02",
                              "2345-7", "2345-77", "80146002", "8014", "١٢٣٤٥٦", "jean@pt.lu", "a b@pt.lu",
                              "jean@pt", "1234567890123", "1234567890123\n", "PRINCIPAL", "SECONDARY", "principal",
                              make_matricule(dt.date(1980, 1, 1), 123), make_matricule(dt.date(2001, 12, 9), 9),
                              "19800101123", "A1", "A1", "A2"]
    for e in suite["expectations"]:
        if e["kwargs"].get("column") == column and e["type"] == "expect_column_values_to_be_in_set":
            pool += e["kwargs"]["value_set"] + [v.lower() for v in e["kwargs"]["value_set"]]
    return pool


def _pool(suite: dict[str, Any], column: str, dtype: pl.DataType) -> list[Any]:
    if dtype == pl.String:
        return _strings(suite, column)
    if dtype == pl.Float64:
        return [None, math.nan, math.inf, -math.inf, 0.0, -0.0, 5e-324, -1.0, 5.4, 5.4, 500.0]
    if dtype == pl.Int64:
        return [None, 0, -1, 1, 1, 2**62]
    if dtype == pl.Date:
        d = dt.date
        return [None, d(1899, 12, 31), d(1900, 1, 1), d(1949, 12, 31), d(1950, 1, 1), d(1980, 1, 1), d(1980, 1, 1),
                TODAY, TODAY + dt.timedelta(days=1), d(1600, 1, 1), d(3000, 1, 1), d(1970, 1, 1)]
    t = dt.datetime
    return [None, t(1900, 1, 1), t(1900, 1, 1) - US, t(1950, 1, 1), t(1950, 1, 1) - US, t(1980, 1, 1, 8),
            t(1980, 1, 1, 8), NOW, NOW + US, NOW - US, t(1600, 1, 1), t(3000, 1, 1), t(2262, 4, 12)]


def _frame(suite: dict[str, Any], rows: int, seed: int) -> pl.DataFrame:
    rng = random.Random(seed)
    schema = _schema(suite)
    data: dict[str, list[Any]] = {"_line": list(range(2, rows + 2))}
    for c, t in schema.items():
        if c != "_line":
            pool = _pool(suite, c, t)
            data[c] = [rng.choice(pool) for _ in range(rows)]
    return pl.DataFrame(data, schema=schema)


def _assert_same(name: str, df: pl.DataFrame) -> None:
    suite = SUITES[name]
    entity = suite["meta"]["entity"]
    fast = validate_entity(entity, df, suite, now=NOW, engine="polars")
    ref = validate_entity(entity, df, suite, now=NOW, engine="gx")
    for i, (a, b) in enumerate(zip(fast.expectations, ref.expectations, strict=True)):
        assert a == b, f"{name}: expectation {i} ({b['type']} {b['column']}): polars {a} != GX {b}"
    assert fast.failed_rows.equals(ref.failed_rows), name
    assert fast.passed_rows.equals(ref.passed_rows), name
    assert fast.failure_ratio == ref.failure_ratio


@pytest.mark.parametrize("name", sorted(SUITES))
def test_polars_equals_gx_on_edge_cases(name: str) -> None:
    df = _frame(SUITES[name], 120, seed=len(name))
    _assert_same(name, df)
    # the planted frame must exercise failures, or the comparison proves little
    report = validate_entity(SUITES[name]["meta"]["entity"], df, SUITES[name], now=NOW).expectations
    if any(x["row_level"] and x["type"] != "expect_column_values_to_not_be_null" for x in report):
        assert any(not x["success"] and x["row_level"] and x["type"] != "expect_column_values_to_not_be_null"
                   for x in report), name


@pytest.mark.parametrize("name", ["hospital-csv.patients", "hospital-csv.stays", "hospital-csv.labs",
                                  "hospital-csv.medications", "synthea-csv.encounters"])
def test_polars_equals_gx_with_columns_missing_or_typed_wrong(name: str) -> None:
    """Expectations the polars path does not handle (a column missing, a range on text) go to GX and
    come back the same; the others still run in polars."""
    df = _frame(SUITES[name], 40, seed=7)
    cols = [c for c in df.columns if c != "_line"]
    _assert_same(name, df.drop(cols[0]))
    _assert_same(name, df.drop(cols[-1]))
    for c, t in df.schema.items():
        if c != "_line" and t != pl.String:
            _assert_same(name, df.with_columns(pl.col(c).cast(pl.String)))
            break
    _assert_same(name, df.head(0))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(n for n in SUITES if n.startswith("hospital-csv"))),
       rows=st.integers(min_value=0, max_value=30), seed=st.integers(min_value=0, max_value=10**6))
def test_polars_equals_gx_on_generated_frames(name: str, rows: int, seed: int) -> None:
    _assert_same(name, _frame(SUITES[name], rows, seed))


def test_polars_engine_does_not_import_great_expectations() -> None:
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, datetime as dt, polars as pl\n"
        "from transforms.contracts import validate_entity, build_suites\n"
        "s = build_suites()['stays']\n"
        "df = pl.DataFrame({'_line': [2], 'stay_id': ['S1'], 'patient_id': ['A1'],"
        " 'admission': [dt.datetime(2020, 1, 1)], 'discharge': [dt.datetime(2019, 1, 1)],"
        " 'stay_type': ['INPATIENT'], 'ward': [None]}, schema_overrides={'ward': pl.String})\n"
        "r = validate_entity('stays', df, s, now=dt.datetime(2026, 1, 1))\n"
        "assert r.failed == 1, r.expectations\n"
        "sys.exit('great_expectations' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=root, check=False).returncode == 0


def test_unknown_engine_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="use 'polars' or 'gx'"):
        validate_entity("stays", pl.DataFrame(), engine="pandas")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(SUITES))
def test_polars_handles_every_expectation_of_the_suites(name: str) -> None:
    """On frames typed as ingest types them, no expectation of any suite is left to GX (so the
    comparisons above compare the polars evaluation, not GX with itself)."""
    from transforms.contracts import _ROW_ID, NOW_PARAMETER, TODAY_PARAMETER, _polars_outcome

    df = _frame(SUITES[name], 20, seed=1).with_row_index(_ROW_ID).with_columns(pl.col(_ROW_ID).cast(pl.Int64))
    params = {TODAY_PARAMETER: TODAY.isoformat(), NOW_PARAMETER: NOW.isoformat(sep=" ")}
    for e in SUITES[name]["expectations"]:
        assert _polars_outcome(e, df, params) is not None, (name, e)
