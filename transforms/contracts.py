"""Extract contracts as great-expectations 1.x expectation suites, and their validation.

The suites are generated from the hospital-csv contract (``schemas/extract.py``) plus the value sets,
ranges and formats below, and kept as JSON in ``schemas/contracts/<entity>.json``
(``uv run python -m transforms.contracts`` writes them; a test keeps the files equal to
:func:`build_suites`).

They run after ingest (``transforms/ingest.py``), on the typed rows, and catch what typing cannot:
value sets, ranges, formats (some conditional on another column, as GX ``row_condition``s: a
postcode is ``L-NNNN`` where the country is LU), the matricule's check digits, uniqueness, column
types and required columns. Each expectation carries ``meta.row_level``:

- row-level expectations (value sets, ranges, formats, not-null...) quarantine the rows they fail
  with the reason code ``contract.<expectation type>`` (one reason per row: the first failing
  expectation in suite order);
- table-level ones (column set, column types, row count, uniqueness of the key, which ingest has
  already deduplicated) are reported, never quarantine rows.

The matricule's check digits are not expressible in GX without a custom expectation: the suite lists
them in ``meta.ds4h_row_checks`` (type ``expect_column_values_to_be_valid_matricule``), run in polars
after the GX expectations and ranked after them.

Evaluation. The suites stay great-expectations suites and the report keeps GX's result fields,
but by default :func:`validate_entity` evaluates them in polars (``engine="polars"``): each
expectation type the suites use, with the kwargs and column types they use, is computed as GX's
pandas engine computes it (rules under :func:`_polars_outcome`; ``tests/test_contracts_engine.py``
runs both engines side by side on every suite and asserts equal reports and quarantines). Anything
else (a column missing, a range on a text column, an expectation type not listed) goes to GX itself.
On a 562k-row Synthea bucket GX's pandas engine took 1.39 s and the polars evaluation 0.02 s, and
most runs no longer import GX at all (about 3.4 s). ``engine="gx"`` evaluates everything with GX:
it is imported lazily then, and validates pandas, so the frame goes through Arrow (Arrow-backed
pandas dtypes).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import sys
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import polars as pl

from schemas.extract import ENTITIES, REQUIRED_FILES, Entity
from schemas.matricule import is_valid_matricule
from transforms.adapters import Spec
from transforms.ingest import LINE, VALUE_SETS, EntityResult

__all__ = [
    "CONTRACTS_DIR",
    "ContractResult",
    "build_suites",
    "load_suite",
    "reason_code",
    "validate_entity",
    "write_suites",
]

CONTRACTS_DIR: Final = Path(__file__).resolve().parents[1] / "schemas" / "contracts"
REASON_PREFIX: Final = "contract."

# Value sets of code columns (ingest already enforces some of them while typing).
CONTRACT_VALUE_SETS: Final[dict[tuple[str, str], tuple[str, ...]]] = {
    **VALUE_SETS,
    ("diagnoses", "diagnosis_rank"): ("PRINCIPAL", "SECONDARY"),
}

# Formats (full-match regular expressions) of string columns.
FORMATS: Final[dict[tuple[str, str], str]] = {
    ("patients", "matricule"): r"^\d{13}$",
    ("patients", "country"): r"^[A-Z]{2}$",  # ISO 3166-1 alpha-2
    ("patients", "email"): r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$",
    ("diagnoses", "icd10_code"): r"^[A-Z]\d{2}(?:\.\d{1,2})?$",  # no capture group: pandas warns on one
    ("procedures", "procedure_code"): r"^\d{6,18}$",  # SNOMED CT concept id
    ("labs", "loinc_code"): r"^\d{1,7}-\d$",
    ("medications", "atc_code"): r"^[A-Z]\d{2}[A-Z]{2}\d{2}$",
}

# Formats that depend on another column: (entity, column) -> [((column, operator, value), regex), ...];
# each is a GX row condition (serialised as GX 1.x writes a ``Column(...) == value`` condition).
CONDITIONAL_FORMATS: Final[dict[tuple[str, str], tuple[tuple[tuple[str, str, str], str], ...]]] = {
    ("patients", "postcode"): (
        (("country", "==", "LU"), r"^L-\d{4}$"),  # Luxembourg
        (("country", "!=", "LU"), r"^[A-Z0-9][A-Z0-9 -]{1,9}$"),  # abroad: the country's own (57100, NL 1234 AB)
    ),
}

EARLIEST_BIRTH: Final = "1900-01-01"
EARLIEST_EVENT: Final = "1950-01-01"  # no clinical event of an extract is older
# Upper bounds are suite parameters, given at validation time (default: the current day / time).
TODAY_PARAMETER: Final = "today"
NOW_PARAMETER: Final = "now"

# Numeric ranges: (min, max, strict_min).
RANGES: Final[dict[tuple[str, str], tuple[float | None, float | None, bool]]] = {
    ("labs", "value"): (0, None, False),
    ("medications", "dose"): (0, None, True),
}

# Date/datetime columns checked against a plausible window [earliest, today/now].
DATE_WINDOWS: Final[dict[tuple[str, str], str]] = {
    ("patients", "birth_date"): EARLIEST_BIRTH,
    ("stays", "admission"): EARLIEST_EVENT,
    ("stays", "discharge"): EARLIEST_EVENT,
    ("diagnoses", "diagnosis_date"): EARLIEST_EVENT,
    ("procedures", "procedure_date"): EARLIEST_EVENT,
    ("labs", "sampled_at"): EARLIEST_EVENT,
    ("medications", "start_date"): EARLIEST_EVENT,
    ("medications", "end_date"): EARLIEST_EVENT,
    ("notes", "note_date"): EARLIEST_EVENT,
}

# Column pairs (a, b): a >= b when both are present.
ORDERED_PAIRS: Final[dict[str, tuple[str, str]]] = {
    "stays": ("discharge", "admission"),
    "medications": ("end_date", "start_date"),
}

# Row-level checks that GX cannot express without a custom expectation: type -> predicate on a value.
ROW_CHECKS: Final[dict[str, Callable[[str], bool]]] = {
    "expect_column_values_to_be_valid_matricule": is_valid_matricule,
}
MATRICULE_CHECKS: Final[dict[tuple[str, str], str]] = {
    ("patients", "matricule"): "expect_column_values_to_be_valid_matricule",
}

# Expectation types whose failures are about single rows (the others describe the table).
_ROW_LEVEL_TYPES: Final = frozenset(
    {
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_match_regex",
        "expect_column_values_to_be_between",
        "expect_column_pair_values_a_to_be_greater_than_b",
        *ROW_CHECKS,
    }
)

_ROW_ID: Final = "__contract_row"  # private row index, the GX unexpected index


def reason_code(expectation_type: str) -> str:
    return REASON_PREFIX + expectation_type


# --- suites ---------------------------------------------------------------------------------------


def _exp(kind: str, row_level: bool, **kwargs: Any) -> dict[str, Any]:
    return {"type": kind, "kwargs": kwargs, "meta": {"row_level": row_level}}


def _suite(e: Entity) -> dict[str, Any]:
    exps: list[dict[str, Any]] = [
        _exp("expect_table_columns_to_match_set", False, column_set=[LINE, *e.column_names], exact_match=False),
    ]
    if e.name in REQUIRED_FILES:
        exps.append(_exp("expect_table_row_count_to_be_between", False, min_value=1))
    for c in e.columns:
        if c.required:
            exps.append(_exp("expect_column_to_exist", False, column=c.name))
        exps.append(_exp("expect_column_values_to_be_of_type", False, column=c.name, type_=c.type))
    exps.append(_exp("expect_column_values_to_be_unique", False, column=e.key))
    # row-level: first failing one (in this order) is the row's reason
    for c in e.columns:
        if c.required:
            exps.append(_exp("expect_column_values_to_not_be_null", True, column=c.name))
    for c in e.columns:
        k = (e.name, c.name)
        if k in CONTRACT_VALUE_SETS:
            exps.append(_exp("expect_column_values_to_be_in_set", True, column=c.name,
                             value_set=list(CONTRACT_VALUE_SETS[k])))
        if k in FORMATS:
            exps.append(_exp("expect_column_values_to_match_regex", True, column=c.name, regex=FORMATS[k]))
        for (other, op, value), regex in CONDITIONAL_FORMATS.get(k, ()):
            condition = {"type": "comparison", "column": {"name": other}, "operator": op, "parameter": value}
            exps.append(_exp("expect_column_values_to_match_regex", True, column=c.name, regex=regex,
                             row_condition=condition))
        if k in RANGES:
            lo, hi, strict_min = RANGES[k]
            kw: dict[str, Any] = {"column": c.name}
            if lo is not None:
                kw["min_value"] = lo
            if hi is not None:
                kw["max_value"] = hi
            if strict_min:
                kw["strict_min"] = True
            exps.append(_exp("expect_column_values_to_be_between", True, **kw))
        if k in DATE_WINDOWS:
            # GX parses a bound "YYYY-MM-DD" as a date and "YYYY-MM-DD HH:MM:SS" as a datetime: match the column
            date_col = c.type == "date"
            lower = DATE_WINDOWS[k] if date_col else DATE_WINDOWS[k] + " 00:00:00"
            upper = TODAY_PARAMETER if date_col else NOW_PARAMETER
            exps.append(_exp("expect_column_values_to_be_between", True, column=c.name,
                             min_value=lower, max_value={"$PARAMETER": upper}))
    if e.name in ORDERED_PAIRS:
        a, b = ORDERED_PAIRS[e.name]
        exps.append(_exp("expect_column_pair_values_a_to_be_greater_than_b", True, column_A=a, column_B=b,
                         or_equal=True, ignore_row_if="either_value_is_missing"))
    extra = [
        _exp(t, True, column=col) for (ent, col), t in MATRICULE_CHECKS.items() if ent == e.name
    ]
    return {
        "name": f"hospital-csv.{e.name}",
        "expectations": exps,
        "meta": {
            "source_format": "hospital-csv",
            "entity": e.name,
            "generated_by": "transforms.contracts (uv run python -m transforms.contracts)",
            "reason_codes": "contract.<expectation type>, for row_level expectations",
            "parameters": {
                TODAY_PARAMETER: "ISO date of the validation (upper bound of date columns)",
                NOW_PARAMETER: "ISO datetime of the validation (upper bound of datetime columns)",
            },
            "ds4h_row_checks": extra,
        },
        "notes": f"Contract of {e.file}, generated from schemas/extract.py; do not edit by hand.",
    }


def build_suites() -> dict[str, dict[str, Any]]:
    """One GX 1.x expectation suite (as JSON-able dict) per entity of the hospital-csv format."""
    return {e.name: _suite(e) for e in ENTITIES}


def _spec_suite(fmt: str, spec: Spec) -> dict[str, Any]:
    """The suite of one entity of an adapter format (synthea-csv, fhir-bulk), from its ``Spec``:
    required columns present and not null, the key unique, dates within [1900, today]."""
    exps: list[dict[str, Any]] = [_exp("expect_column_to_exist", False, column=c) for c in spec.required]
    if spec.key:
        exps.append(_exp("expect_column_values_to_be_unique", False, column=spec.key))
    exps += [_exp("expect_column_values_to_not_be_null", True, column=c) for c in spec.required]
    for c in spec.dates:
        exps.append(_exp("expect_column_values_to_be_between", True, column=c, min_value="1900-01-01",
                         max_value={"$PARAMETER": TODAY_PARAMETER}))
    for c in spec.datetimes:
        exps.append(_exp("expect_column_values_to_be_between", True, column=c, min_value="1900-01-01 00:00:00",
                         max_value={"$PARAMETER": NOW_PARAMETER}))
    return {
        "name": f"{fmt}.{spec.name}",
        "expectations": exps,
        "meta": {"source_format": fmt, "entity": spec.name,
                 "generated_by": "transforms.contracts (uv run python -m transforms.contracts)",
                 "reason_codes": "contract.<expectation type>, for row_level expectations",
                 "parameters": {TODAY_PARAMETER: "ISO date of the validation", NOW_PARAMETER: "ISO datetime of the validation"},
                 "ds4h_row_checks": []},
        "notes": f"Contract of the {fmt} entity {spec.name}, generated from its adapter's Spec; do not edit by hand.",
    }


def build_format_suites() -> dict[str, dict[str, dict[str, Any]]]:
    """format -> entity -> suite, for the adapter formats (hospital-csv is :func:`build_suites`)."""
    from transforms.adapters import fhir, synthea

    return {
        "synthea-csv": {e.spec.name: _spec_suite("synthea-csv", e.spec) for e in synthea.ENTITIES},
        "fhir-bulk": {name: _spec_suite("fhir-bulk", spec) for name, spec in fhir.SPECS.items()},
    }


def suite_json(suite: dict[str, Any]) -> str:
    return json.dumps(suite, indent=2, ensure_ascii=False) + "\n"


def format_suite(fmt: str, entity: str) -> dict[str, Any] | None:
    """The suite of an entity of an adapter format, or None when the format has none for it."""
    return build_format_suites().get(fmt, {}).get(entity)


def write_suites(folder: Path = CONTRACTS_DIR) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, suite in build_suites().items():
        path = folder / f"{name}.json"
        path.write_text(suite_json(suite), encoding="utf-8")
        out.append(path)
    for fmt, suites in build_format_suites().items():
        (folder / fmt).mkdir(exist_ok=True)
        for name, suite in suites.items():
            path = folder / fmt / f"{name}.json"
            path.write_text(suite_json(suite), encoding="utf-8")
            out.append(path)
    return out


def load_suite(entity: str, folder: Path = CONTRACTS_DIR) -> dict[str, Any]:
    """The suite kept in ``schemas/contracts/<entity>.json``."""
    data: dict[str, Any] = json.loads((folder / f"{entity}.json").read_text(encoding="utf-8"))
    return data


# --- validation -----------------------------------------------------------------------------------


@dataclass
class ContractResult:
    entity: str
    passed_rows: pl.DataFrame  # the typed rows that meet every row-level expectation
    failed_rows: pl.DataFrame  # the others, with reason_code and reason_detail
    expectations: list[dict[str, Any]]  # type, column, success, unexpected_count, unexpected_percent, ...
    failure_ratio: float  # failed rows / rows
    counts: tuple[int, int] | None = None  # (rows, failed rows) when the row frames were dropped

    @property
    def rows(self) -> int:
        return self.counts[0] if self.counts is not None else self.passed_rows.height + self.failed_rows.height

    @property
    def failed(self) -> int:
        return self.counts[1] if self.counts is not None else self.failed_rows.height

    def without_rows(self) -> ContractResult:
        """The same result without its row frames (what a check's metadata needs): keep many cheaply."""
        return ContractResult(self.entity, self.passed_rows.clear(), self.failed_rows.clear(), self.expectations,
                              self.failure_ratio, (self.rows, self.failed))

    @property
    def table_failures(self) -> list[dict[str, Any]]:
        """Failed expectations that quarantine no row: table-level ones (column set, types, row count,
        key uniqueness) and any that could not run (``exception``, e.g. on a column typed wrong)."""
        return [x for x in self.expectations if not x["success"] and (not x["row_level"] or "exception" in x)]


_GX_LOCK = threading.Lock()
_CACHE: dict[str, Any] = {}  # suite JSON -> (validation definition, expectation ids in suite order)


def _gx() -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    if "great_expectations" not in sys.modules:
        with warnings.catch_warnings():
            # Python 3.11 deprecates the modules sre_constants and sre_parse, which GX 1.24 imports
            warnings.filterwarnings("ignore", message="module 'sre_(constants|parse)' is deprecated",
                                    category=DeprecationWarning)
            import great_expectations  # noqa: F401
    return sys.modules["great_expectations"]


def _context() -> Any:
    ctx = _CACHE.get("__context__")
    if ctx is None:
        gx = _gx()
        from great_expectations.data_context.types.base import ProgressBarsConfig

        ctx = gx.get_context(mode="ephemeral")
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        _CACHE["__context__"] = ctx
    return ctx


def _validation(suite: dict[str, Any]) -> tuple[Any, list[str]]:
    """The GX validation definition of ``suite`` (cached per process) and its expectation ids in order."""
    key = json.dumps(suite, sort_keys=True)
    hit = _CACHE.get(key)
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    gx = _gx()
    from great_expectations.core.expectation_suite import ExpectationSuite

    ctx = _context()
    n = sum(1 for k in _CACHE if k != "__context__")
    name = f"{suite.get('name', 'suite')}-{n}"
    gx_suite = ctx.suites.add(
        ExpectationSuite(name=name, expectations=suite["expectations"], meta=suite.get("meta") or {})
    )
    ids = [str(x.id) for x in gx_suite.expectations]
    asset = ctx.data_sources.add_pandas(f"ds4h-{name}").add_dataframe_asset(name)
    batch = asset.add_batch_definition_whole_dataframe("whole")
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=gx_suite))
    _CACHE[key] = (vd, ids)
    return vd, ids


def _run(suite: dict[str, Any], pdf: Any, parameters: dict[str, Any]) -> list[Any]:
    """GX results in suite order."""
    vd, ids = _validation(suite)
    result = vd.run(
        batch_parameters={"dataframe": pdf},
        expectation_parameters=parameters,
        result_format={
            "result_format": "COMPLETE",
            "unexpected_index_column_names": [_ROW_ID],
            "return_unexpected_index_query": False,
            "partial_unexpected_count": 0,
        },
    )
    by_id = {str(r.expectation_config.id): r for r in result.results}
    return [by_id[i] for i in ids]


def _exceptions(r: Any) -> list[str]:
    """Messages of the exceptions an expectation raised (GX nests them per metric, or not)."""
    info = r.exception_info or {}
    infos = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    return [str(i.get("exception_message") or "") for i in infos if i.get("raised_exception")]


def _raised(r: Any) -> bool:
    return bool(_exceptions(r))


def _describe(exp: dict[str, Any]) -> str:
    """Column and expectation: never a cell value."""
    kw = exp["kwargs"]
    t = exp["type"]
    col = kw.get("column", "")
    if t == "expect_column_values_to_not_be_null":
        what = "is empty"
    elif t == "expect_column_values_to_be_in_set":
        what = "is not one of " + "/".join(map(str, kw["value_set"]))
    elif t == "expect_column_values_to_match_regex":
        what = f"does not match {kw['regex']}"
        cond = kw.get("row_condition")
        if isinstance(cond, dict) and cond.get("type") == "comparison":
            what += f" (where {cond['column']['name']} {cond['operator']} {cond['parameter']})"
    elif t == "expect_column_values_to_be_between":
        lo, hi = kw.get("min_value"), kw.get("max_value")
        if isinstance(hi, dict):
            hi = hi.get("$PARAMETER")
        op = ">" if kw.get("strict_min") else ">="
        what = " and ".join(x for x in (f"{op} {lo}" if lo is not None else "",
                                         f"<= {hi}" if hi is not None else "") if x)
        what = f"is not {what}"
    elif t == "expect_column_pair_values_a_to_be_greater_than_b":
        col = kw["column_A"]
        what = f"is before {kw['column_B']}"
    elif t == "expect_column_values_to_be_valid_matricule":
        what = "has invalid check digits or birth date"
    else:
        what = "fails"
    return f"{col} {what} ({t})"


def _nonnull_count(df: pl.DataFrame, column: str | None) -> int:
    if column is None or column not in df.columns:
        return df.height
    return df.height - df[column].null_count()


_NS_MIN, _NS_MAX = dt.datetime(1678, 1, 1), dt.datetime(2262, 1, 1)


def _numpy_datetimes(df: pl.DataFrame) -> dict[str, Any]:
    """Datetime columns as numpy ``datetime64[ns]``: GX checks a window on those vectorised (on Arrow
    timestamps it goes value by value through Python: 5 µs a row); type checks stay on Arrow. Values outside the nanosecond range are clamped to
    1678 or 2262, far outside every window a suite checks, so they fail exactly as before."""
    out: dict[str, Any] = {}
    for c, t in df.schema.items():
        if isinstance(t, pl.Datetime) and t.time_zone is None:
            clamped = df[c].clip(_NS_MIN, _NS_MAX).cast(pl.Datetime("ns"))
            out[c] = clamped.to_pandas()
    return out


Engine = Literal["polars", "gx"]


@dataclass
class _Outcome:
    """One expectation's result, from either engine: what the report and the quarantine need."""

    success: bool
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    observed_value: Any = None
    exception: str | None = None
    bad_rows: pl.Series | None = None  # row ids (``_ROW_ID``) of the unexpected rows, row-level types


def _gx_outcome(r: Any) -> _Outcome:
    res = r.result or {}
    ids = res.get("unexpected_index_list") or []
    return _Outcome(
        success=bool(r.success),
        unexpected_count=res.get("unexpected_count"),
        unexpected_percent=res.get("unexpected_percent"),
        observed_value=res.get("observed_value"),
        exception="; ".join(_exceptions(r)) if _raised(r) else None,
        bad_rows=pl.Series(_ROW_ID, [int(x[_ROW_ID]) for x in ids], dtype=pl.Int64),
    )


def _gx_outcomes(suite: dict[str, Any], exps: list[dict[str, Any]], framed: pl.DataFrame,
                 parameters: dict[str, Any]) -> list[_Outcome]:
    """``exps`` evaluated by great-expectations' pandas engine (Arrow-backed frame), in order."""
    pdf = framed.to_pandas(use_pyarrow_extension_array=True)
    fast = _numpy_datetimes(framed)
    fast_idx = {i for i, e in enumerate(exps)
                if e["type"] == "expect_column_values_to_be_between" and e["kwargs"].get("column") in fast}
    with _GX_LOCK:
        if fast_idx:  # date windows on datetime columns: on numpy datetimes (vectorised), the rest on Arrow
            pdf_fast = pdf.copy(deep=False)
            for c, values in fast.items():
                pdf_fast[c] = values
            slow = _run({**suite, "expectations": [e for i, e in enumerate(exps) if i not in fast_idx]}, pdf, parameters) \
                if len(fast_idx) < len(exps) else []
            quick = _run({**suite, "expectations": [e for i, e in enumerate(exps) if i in fast_idx]}, pdf_fast, parameters)
            results = [quick.pop(0) if i in fast_idx else slow.pop(0) for i in range(len(exps))]
        else:
            results = _run({**suite, "expectations": exps}, pdf, parameters)
        broken = [i for i, r in enumerate(results) if _raised(r)]
        if broken:  # an expectation that Arrow dtypes break: retry it on numpy dtypes
            retry = {**suite, "expectations": [exps[i] for i in broken]}
            for i, r in zip(broken, _run(retry, framed.to_pandas(), parameters), strict=True):
                results[i] = r
    return [_gx_outcome(r) for r in results]


# --- the same expectations evaluated in polars ---------------------------------------------------------
#
# Each function below gives what great-expectations 1.x's pandas engine gives on the Arrow-backed frame
# (success, unexpected count and percent, observed value, unexpected rows), for the kwargs and column
# types ds4h's suites use; on anything else it returns None and that expectation goes to GX. The
# equality is a test (tests/test_contracts_engine.py: every expectation type of every suite, on planted
# edge cases and on generated frames, both engines side by side). GX's rules it follows:
# - column-map expectations ignore null cells (NaN is a value, not null) and give the unexpected
#   percent over the non-null cells (over all rows for not_be_null; over the rows with both values
#   for the column pair);
# - a ``comparison`` row condition first restricts the rows (``==``: null never equal; ``!=``: null
#   is unequal);
# - a regex is Python's ``re.search`` on the text (GX's ``astype(str).str.contains``), so evaluated
#   on the distinct values: Unicode digits match ``\d``, ``$`` matches before a final newline;
# - a date window parses ``YYYY-MM-DD`` bounds as dates on a date column and ``YYYY-MM-DD HH:MM:SS``
#   as datetimes on a naive datetime column; NaN is never within a numeric range.

_TYPE_NAMES: Final = ("str", "int", "float", "bool", "date", "datetime")


def _observed_type(dtype: pl.DataType) -> str | None:
    """GX's observed type name (the Arrow dtype's Python scalar type), for the dtypes handled here."""
    if dtype == pl.String:
        return "str"
    if dtype.is_integer():
        return "int"
    if dtype.is_float():
        return "float"
    if dtype == pl.Boolean:
        return "bool"
    if dtype == pl.Date:
        return "date"
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
        return "datetime"
    return None


def _percent(count: int, of: int) -> float | None:
    return count / of * 100 if of else None  # GX's order of operations (1/3*100 != 100*1/3 in floats)


def _map_outcome(framed: pl.DataFrame, domain: pl.Expr, ok: pl.Expr) -> _Outcome:
    """A column-map expectation: ``domain`` selects the rows it looks at (and counts for the percent),
    ``ok`` says whether a row meets it (evaluated where ``domain`` holds)."""
    got = framed.select(bad=pl.col(_ROW_ID).filter(domain & ~ok.fill_null(False)).implode(), n=domain.sum())
    bad: pl.Series = got["bad"][0]
    return _Outcome(success=bad.len() == 0, unexpected_count=bad.len(),
                    unexpected_percent=_percent(bad.len(), int(got["n"][0])), bad_rows=bad.alias(_ROW_ID))


def _condition(kw: dict[str, Any], framed: pl.DataFrame) -> pl.Expr | None:
    """The row condition as a polars predicate (True when there is none), or None when not handled."""
    cond = kw.get("row_condition")
    if cond is None:
        return pl.col(_ROW_ID).is_not_null()  # every row (a column, not a literal: its sum is the row count)
    if not (isinstance(cond, dict) and cond.get("type") == "comparison" and kw.get("condition_parser") is None):
        return None
    col, op, value = (cond.get("column") or {}).get("name"), cond.get("operator"), cond.get("parameter")
    if col not in framed.columns or framed.schema[col] != pl.String or not isinstance(value, str):
        return None
    if op == "==":
        return (pl.col(col) == value).fill_null(False)
    if op == "!=":
        return (pl.col(col) != value).fill_null(True)
    return None


def _bound(value: Any, dtype: pl.DataType, parameters: dict[str, Any]) -> tuple[bool, Any]:
    """(handled, bound) of a between expectation's bound on a column of ``dtype``."""
    if isinstance(value, dict):
        if set(value) != {"$PARAMETER"} or value["$PARAMETER"] not in parameters:
            return False, None
        value = parameters[value["$PARAMETER"]]
    if value is None:
        return True, None
    if dtype.is_numeric():
        ok = isinstance(value, int | float) and not isinstance(value, bool) and not (isinstance(value, float) and math.isnan(value))
        return ok, value if ok else None
    if not isinstance(value, str):
        return False, None
    try:
        if dtype == pl.Date and len(value) == 10:
            return True, dt.date.fromisoformat(value)
        if isinstance(dtype, pl.Datetime) and dtype.time_zone is None and len(value) >= 19 and value[10] == " ":
            parsed = dt.datetime.fromisoformat(value)
            return parsed.tzinfo is None, parsed
    except ValueError:
        return False, None
    return False, None


def _polars_outcome(exp: dict[str, Any], framed: pl.DataFrame, parameters: dict[str, Any]) -> _Outcome | None:
    t, kw = exp["type"], exp["kwargs"]
    schema = framed.schema
    columns = [c for c in framed.columns if c != _ROW_ID]
    handled = {"column", "row_condition", "condition_parser", "mostly", "result_format"}
    if kw.get("mostly") not in (None, 1, 1.0) or "result_format" in kw:
        return None
    if t == "expect_table_columns_to_match_set":
        if set(kw) - {"column_set", "exact_match"} or not isinstance(kw.get("column_set"), list):
            return None
        expected, actual = set(kw["column_set"]), set(framed.columns)
        exact = kw.get("exact_match", True)
        if not isinstance(exact, bool):
            return None
        success = expected <= actual and (not exact or expected == actual)
        return _Outcome(success=success, observed_value=sorted(str(c) for c in actual))
    if t == "expect_table_row_count_to_be_between":
        lo, hi = kw.get("min_value"), kw.get("max_value")
        if set(kw) - {"min_value", "max_value"} or not all(x is None or type(x) is int for x in (lo, hi)):
            return None
        h = framed.height
        return _Outcome(success=(lo is None or h >= lo) and (hi is None or h <= hi), observed_value=h)
    if t == "expect_column_to_exist":
        if set(kw) != {"column"}:
            return None
        return _Outcome(success=kw["column"] in columns)
    if t == "expect_column_pair_values_a_to_be_greater_than_b":
        a, b = kw.get("column_A"), kw.get("column_B")
        if (set(kw) - {"column_A", "column_B", "or_equal", "ignore_row_if"}
                or kw.get("ignore_row_if") != "either_value_is_missing" or a not in columns or b not in columns):
            return None
        ta, tb = _observed_type(schema[a]), _observed_type(schema[b])
        if ta is None or ta != tb or ta in ("str", "bool") or schema[a] != schema[b]:
            return None
        domain = pl.col(a).is_not_null() & pl.col(b).is_not_null()
        if ta == "float":
            return None  # NaN ordering: left to GX
        return _map_outcome(framed, domain, pl.col(a) >= pl.col(b) if kw.get("or_equal") else pl.col(a) > pl.col(b))
    col = kw.get("column")
    if col not in columns or set(kw) - handled - {"type_", "value_set", "regex", "min_value", "max_value", "strict_min", "strict_max"}:
        return None
    dtype = schema[col]
    where = _condition(kw, framed)
    if where is None:
        return None
    if t == "expect_column_values_to_be_of_type":
        observed = _observed_type(dtype)
        if observed is None or kw.get("type_") not in _TYPE_NAMES or "row_condition" in kw:
            return None
        return _Outcome(success=observed == kw["type_"], observed_value=observed)
    nonnull = where & pl.col(col).is_not_null()
    if t == "expect_column_values_to_not_be_null":
        return _map_outcome(framed, where, pl.col(col).is_not_null())
    if t == "expect_column_values_to_be_unique":
        if "row_condition" in kw or _observed_type(dtype) is None:
            return None
        return _map_outcome(framed, nonnull, ~pl.col(col).is_duplicated())
    if t == "expect_column_values_to_be_in_set":
        values = kw.get("value_set")
        if dtype != pl.String or not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            return None
        return _map_outcome(framed, nonnull, pl.col(col).is_in(pl.Series(values, dtype=pl.String)))
    if t == "expect_column_values_to_match_regex":
        regex = kw.get("regex")
        if dtype != pl.String or not isinstance(regex, str):
            return None
        pattern = re.compile(regex)
        distinct = framed.filter(nonnull)[col].unique()
        matching = pl.Series([v for v in distinct.to_list() if pattern.search(v)], dtype=pl.String)
        return _map_outcome(framed, nonnull, pl.col(col).is_in(matching))
    if t == "expect_column_values_to_be_between":
        observed = _observed_type(dtype)
        if observed not in ("int", "float", "date", "datetime") or kw.get("strict_max") or "row_condition" in kw:
            return None
        ok_lo, lo = _bound(kw.get("min_value"), dtype, parameters)
        ok_hi, hi = _bound(kw.get("max_value"), dtype, parameters)
        if not (ok_lo and ok_hi) or (lo is None and hi is None) or (lo is not None and hi is not None and lo > hi):
            return None
        c = pl.col(col)
        ok: pl.Expr = pl.lit(True)
        if lo is not None:
            ok = ok & (c > lo if kw.get("strict_min") else c >= lo)
        if hi is not None:
            ok = ok & (c <= hi)
        if observed == "float":
            ok = ok & ~c.is_nan()
        return _map_outcome(framed, nonnull, ok)
    return None


def validate_entity(
    entity: str,
    df: pl.DataFrame,
    suite: dict[str, Any] | None = None,
    *,
    now: dt.datetime | None = None,
    engine: Engine = "polars",
) -> ContractResult:
    """Validate the typed rows of one entity (as returned by ingest) against its contract suite.

    ``now`` sets the upper bound of date/datetime windows (default: the current local time).
    ``engine``: ``"polars"`` (default) evaluates every expectation it handles in polars, the same as
    great-expectations does (a test proves it on every expectation type the suites use), and hands
    the rest to GX; ``"gx"`` evaluates all of them with GX's pandas engine.
    """
    if engine not in ("polars", "gx"):
        raise ValueError(f"unknown contract engine {engine!r}: use 'polars' or 'gx'")
    suite = suite if suite is not None else build_suites()[entity]
    now = now or dt.datetime.now()
    parameters = {TODAY_PARAMETER: now.date().isoformat(), NOW_PARAMETER: now.isoformat(sep=" ")}
    exps: list[dict[str, Any]] = list(suite["expectations"])
    extras: list[dict[str, Any]] = list((suite.get("meta") or {}).get("ds4h_row_checks") or [])

    framed = df.with_row_index(_ROW_ID).with_columns(pl.col(_ROW_ID).cast(pl.Int64))
    outcomes: list[_Outcome | None] = (
        [_polars_outcome(e, framed, parameters) for e in exps] if engine == "polars" else [None] * len(exps)
    )
    rest = [i for i, o in enumerate(outcomes) if o is None]
    if rest:
        for i, o in zip(rest, _gx_outcomes(suite, [exps[i] for i in rest], framed, parameters), strict=True):
            outcomes[i] = o
    results = [o for o in outcomes if o is not None]

    report: list[dict[str, Any]] = []
    failing: list[pl.DataFrame] = []  # (row id, rank) per failed row-level expectation
    for rank, (exp, r) in enumerate(zip(exps, results, strict=True)):
        row_level = bool((exp.get("meta") or {}).get("row_level", exp["type"] in _ROW_LEVEL_TYPES))
        item: dict[str, Any] = {
            "type": exp["type"],
            "column": exp["kwargs"].get("column", exp["kwargs"].get("column_A")),
            "success": r.success,
            "unexpected_count": r.unexpected_count,
            "unexpected_percent": r.unexpected_percent,
            "row_level": row_level,
        }
        observed = r.observed_value
        if isinstance(observed, list):
            observed = [x for x in observed if x != _ROW_ID]
        if observed is not None and not row_level and exp["type"] != "expect_column_values_to_be_unique":
            item["observed_value"] = observed
        if r.exception is not None:
            item["exception"] = r.exception[:300]
        report.append(item)
        if row_level and not r.success and r.exception is None and r.bad_rows is not None and r.bad_rows.len():
            failing.append(pl.DataFrame({_ROW_ID: r.bad_rows, "_rank": pl.repeat(rank, r.bad_rows.len(), dtype=pl.Int64, eager=True)}))
    for j, exp in enumerate(extras, start=len(exps)):
        col = exp["kwargs"]["column"]
        check = ROW_CHECKS[exp["type"]]
        item = {"type": exp["type"], "column": col, "success": True, "unexpected_count": 0,
                "unexpected_percent": 0.0, "row_level": True}
        if col not in framed.columns:
            item.update(success=False, unexpected_count=None, unexpected_percent=None,
                        exception=f"column {col} is missing")
            report.append(item)
            continue
        values = framed[col].cast(pl.String)
        uniq = values.drop_nulls().unique()
        bad_values = [v for v in uniq.to_list() if not check(v)]
        bad = framed.filter(pl.col(col).cast(pl.String).is_in(bad_values))[_ROW_ID]
        nonnull = _nonnull_count(framed, col)
        item.update(success=bad.len() == 0, unexpected_count=bad.len(),
                    unexpected_percent=100.0 * bad.len() / nonnull if nonnull else None)
        report.append(item)
        if bad.len():
            failing.append(pl.DataFrame({_ROW_ID: bad, "_rank": [j] * bad.len()},
                                        schema={_ROW_ID: pl.Int64, "_rank": pl.Int64}))

    all_exps = exps + extras
    codes = pl.DataFrame({
        "_rank": list(range(len(all_exps))),
        "reason_code": [reason_code(x["type"]) for x in all_exps],
        "reason_detail": [_describe(x) for x in all_exps],
    }, schema={"_rank": pl.Int64, "reason_code": pl.String, "reason_detail": pl.String})
    if failing:
        first = pl.concat(failing).group_by(_ROW_ID).agg(pl.col("_rank").min())
        first = first.join(codes, on="_rank").drop("_rank")
    else:
        first = pl.DataFrame(schema={_ROW_ID: pl.Int64, "reason_code": pl.String, "reason_detail": pl.String})
    joined = framed.join(first, on=_ROW_ID, how="left", maintain_order="left")
    failed = joined.filter(pl.col("reason_code").is_not_null()).drop(_ROW_ID)
    passed = joined.filter(pl.col("reason_code").is_null()).drop(_ROW_ID, "reason_code", "reason_detail")
    ratio = failed.height / df.height if df.height else 0.0
    return ContractResult(entity, passed, failed, report, ratio)


def main(argv: list[str] | None = None) -> int:
    """Write ``schemas/contracts/<entity>.json``; with ``--check``, only say whether they are current."""
    args = sys.argv[1:] if argv is None else argv
    if "--check" in args:
        wanted = {f"{n}.json": s for n, s in build_suites().items()}
        wanted |= {f"{fmt}/{n}.json": s for fmt, suites in build_format_suites().items() for n, s in suites.items()}
        stale = [n for n, s in wanted.items()
                 if not (CONTRACTS_DIR / n).exists() or (CONTRACTS_DIR / n).read_text(encoding="utf-8") != suite_json(s)]
        if stale:
            print(f"stale suites in {CONTRACTS_DIR}: {', '.join(stale)}; run: uv run python -m transforms.contracts")
            return 1
        return 0
    for path in write_suites():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def merge_contract_results(parts: list[ContractResult]) -> ContractResult:
    """The results of one suite on several buckets of an entity as one: an expectation succeeds if it
    succeeded on every bucket; counts add up; the failure ratio is over all rows. The row frames are
    not kept (each bucket's failed rows were already quarantined)."""
    if not parts:
        raise ValueError("no contract result to merge")
    rows = sum(p.rows for p in parts)
    failed = sum(p.failed for p in parts)
    merged: list[dict[str, Any]] = []
    for i, first in enumerate(parts[0].expectations):
        same = [p.expectations[i] for p in parts]
        item = dict(first)
        item["success"] = all(x["success"] for x in same)
        count = sum(x.get("unexpected_count") or 0 for x in same)
        item["unexpected_count"] = count
        item["unexpected_percent"] = 100.0 * count / rows if rows else 0.0
        exceptions = [x["exception"] for x in same if "exception" in x]
        if exceptions:
            item["exception"] = exceptions[0]
        merged.append(item)
    return ContractResult(parts[0].entity, parts[0].passed_rows.clear(), parts[0].failed_rows.clear(), merged,
                          failed / rows if rows else 0.0, (rows, failed))


def move_failed_rows(er: EntityResult, cr: ContractResult) -> None:
    """Quarantine the rows of ``er`` that failed ``cr`` (for adapters whose reader ran first): the
    typed cells as text, with ``reason_code``, ``reason_detail``, ``source_file`` and ``source_line``."""
    if cr.failed_rows.height == 0:
        return
    failed = cr.failed_rows
    # a line number names a row of one file: an entity read from several files (fhir-bulk) needs the file too
    keys = ["_file", "_line"] if "_file" in failed.columns and "_file" in er.table.columns else ["_line"]
    er.table = er.table.join(failed.select(keys).unique(), on=keys, how="anti", nulls_equal=True, maintain_order="left")
    q = failed.with_columns([pl.col(c).cast(pl.String) for c in failed.columns
                             if c not in ("_line", "reason_code", "reason_detail") and not failed.schema[c].is_nested()])
    q = q.rename({"_line": "source_line"}).with_columns(source_file=pl.lit(er.file))
    er.quarantine = pl.concat([er.quarantine, q], how="diagonal_relaxed") if er.quarantine.height else q
