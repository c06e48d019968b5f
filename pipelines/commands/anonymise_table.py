"""``ds4h anonymise-table``: k-anonymise any CSV or Parquet table with the optimal search, and report risk.

Imports neither Dagster, presidio nor great-expectations (directly or not), so it answers at once.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from anonymisation.hierarchy_names import BUILTINS

HELP = (
    "k-anonymise a table (CSV or Parquet, by extension) by full-domain generalisation and record "
    "suppression, with an optimal lattice search, and write a risk report.\n\n"
    "Each --qi is COLUMN=HIERARCHY, HIERARCHY being an ARX hierarchy CSV (one row per value, levels "
    "separated by ';') or builtin:NAME:\n\n"
    + "\n\n".join(f"  builtin:{name}: {text}" for name, text in BUILTINS.items())
    + "\n\nOUT keeps every other column, writes generalised values as the hierarchy's labels and drops "
    "suppressed rows. REPORT.json holds levels, classes, suppressed records, the five utility metrics, "
    "risk before and after, and the policy's thresholds.\n\n"
    "Example: ds4h anonymise-table adult.csv --delimiter ';' --qi age=hierarchies/age.csv --qi sex=builtin:sex "
    "--k 5 --suppression 0.05 --metric loss --out adult-k5.csv --report report.json"
)

_CSV = {".csv", ".txt", ".tsv"}
_PARQUET = {".parquet", ".pq"}


class CommandError(Exception):
    """A user-facing error: one line on stderr, exit code 1."""


def _parse_qis(items: list[str]) -> dict[str, str]:
    specs: dict[str, str] = {}
    for item in items:
        column, sep, spec = item.partition("=")
        if not sep or not column.strip() or not spec.strip():
            raise typer.BadParameter(f"{item!r}: expected COLUMN=HIERARCHY", param_hint="--qi")
        if column.strip() in specs:
            raise typer.BadParameter(f"column {column.strip()} given twice", param_hint="--qi")
        specs[column.strip()] = spec.strip()
    return specs


def _kind(path: Path, what: str) -> str:
    suffix = path.suffix.lower()
    if suffix in _CSV:
        return "csv"
    if suffix in _PARQUET:
        return "parquet"
    raise CommandError(f"{what} {path}: unknown extension {suffix or '(none)'} (use .csv or .parquet)")


def anonymise_table(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="CSV or Parquet table")],
    qi: Annotated[list[str], typer.Option("--qi", help="COLUMN=HIERARCHY, once per quasi-identifier")],
    out: Annotated[Path, typer.Option("--out", help="anonymised table (CSV or Parquet)")],
    report: Annotated[Path | None, typer.Option("--report", help="risk report (JSON)")] = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="the same report as a self-contained HTML page")
    ] = None,
    k: Annotated[int, typer.Option("--k", min=2, help="smallest equivalence class")] = 5,
    suppression: Annotated[
        float, typer.Option("--suppression", min=0.0, max=1.0, help="largest share of records suppressed")
    ] = 0.05,
    metric: Annotated[
        str, typer.Option("--metric", help="utility metric: loss|precision|discernibility|aecs|entropy")
    ] = "loss",
    delimiter: Annotated[str, typer.Option("--delimiter", help="CSV delimiter of INPUT and OUT")] = ",",
    sensitive: Annotated[
        str | None, typer.Option("--sensitive", help="sensitive attribute for l-diversity")
    ] = None,
    l_div: Annotated[
        int | None, typer.Option("--l", min=2, help="l of l-diversity (needs --sensitive)")
    ] = None,
    l_variant: Annotated[str, typer.Option("--l-variant", help="distinct|entropy")] = "distinct",
    population: Annotated[
        Path | None,
        typer.Option("--population", help="population counts CSV (QI columns + count) for journalist risk"),
    ] = None,
    policy_file: Annotated[
        Path | None,
        typer.Option(
            "--policy", help="policy YAML for the risk thresholds (flags override k, suppression, metric)"
        ),
    ] = None,
    suggest: Annotated[
        bool,
        typer.Option(
            "--suggest/--no-suggest",
            help="when a threshold fails, re-run the search to find a policy that passes",
        ),
    ] = True,
) -> None:
    specs = _parse_qis(qi)
    if metric not in ("loss", "precision", "discernibility", "aecs", "entropy"):
        raise typer.BadParameter(
            f"{metric!r} (use loss, precision, discernibility, aecs or entropy)", param_hint="--metric"
        )
    if l_variant not in ("distinct", "entropy"):
        raise typer.BadParameter(f"{l_variant!r} (use distinct or entropy)", param_hint="--l-variant")
    if (l_div is None) != (sensitive is None):
        raise typer.BadParameter("--l and --sensitive go together", param_hint="--l")
    if len(delimiter) != 1:
        raise typer.BadParameter("one character", param_hint="--delimiter")
    try:
        _run(
            input_path,
            specs,
            out,
            report,
            html,
            k,
            suppression,
            metric,
            delimiter,
            sensitive,
            l_div,
            l_variant,
            population,
            policy_file,
            suggest,
        )
    except typer.Exit:
        raise
    except Exception as exc:  # one clear line, never a traceback
        message = " ".join(str(exc).split()) or type(exc).__name__
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(1) from None


def _keep_freed_memory() -> bool:
    """Ask glibc's allocator to keep what this one-shot command frees (no trimming below 1 GB, 256 MB
    of padding when its heap grows) instead of handing it back to the system and faulting it in again
    on the next array: the search allocates and frees arrays of the table's size at every node. On a
    VM whose fresh pages fault slowly this took a million-row search from 1.3-1.4 s to 0.4 s, for ~50 MB
    more peak RSS (bench/RESULTS.md). Process-wide: for this command only. False where there is no glibc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad = -1, -2  # glibc's malloc.h
    return bool(mallopt(m_trim_threshold, 1 << 30)) and bool(mallopt(m_top_pad, 256 << 20))


def _run(
    input_path: Path,
    specs: dict[str, str],
    out: Path,
    report: Path | None,
    html_path: Path | None,
    k: int,
    suppression: float,
    metric: str,
    delimiter: str,
    sensitive: str | None,
    l_div: int | None,
    l_variant: str,
    population: Path | None,
    policy_file: Path | None,
    suggest: bool,
) -> None:
    start = time.perf_counter()
    _keep_freed_memory()
    import polars as pl

    from anonymisation.kanon import apply_result, encode, frequency_table, hierarchies_for, search
    from anonymisation.risk import read_population
    from anonymisation.risk_report import full_report, model_of, render_html
    from schemas.policy import PrivacyPolicy, QuasiIdentifier

    if not input_path.is_file():
        raise CommandError(f"input not found: {input_path}")
    kind_in, kind_out = _kind(input_path, "INPUT"), _kind(out, "OUT")
    base: dict[str, object] = {}
    if policy_file is not None:
        import yaml

        if not policy_file.is_file():
            raise CommandError(f"policy not found: {policy_file}")
        loaded = yaml.safe_load(policy_file.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise CommandError(f"policy {policy_file}: not a mapping")
        base = dict(loaded.get("privacy", loaded))
    base.update(
        k=k,
        suppression=suppression,
        metric=metric,
        quasi_identifiers=[QuasiIdentifier(column=c, hierarchy=s) for c, s in specs.items()],
    )
    if l_div is not None and sensitive is not None:
        base["l_diversity"] = {"attribute": sensitive, "l": l_div, "variant": l_variant}
    if population is not None:
        base["population"] = str(population)
    policy = PrivacyPolicy.model_validate(base)

    if kind_in == "csv":
        lf = pl.scan_csv(input_path, separator=delimiter, infer_schema=False)
    else:
        lf = pl.scan_parquet(input_path)
    columns = lf.collect_schema().names()
    wanted = [*specs, *([sensitive] if sensitive else [])]
    missing = [c for c in wanted if c not in columns]
    if missing:
        shown = ", ".join(columns[:12]) + (" ..." if len(columns) > 12 else "")
        raise CommandError(f"column(s) {', '.join(missing)} not in {input_path} (columns: {shown})")

    freq = frequency_table(lf, list(specs), sensitive)
    hierarchies = hierarchies_for(freq, specs)
    problem = encode(freq, hierarchies, sensitive)
    result = search(problem, model_of(policy), policy.metric)

    anonymised = apply_result(lf, result)
    assert isinstance(anonymised, pl.LazyFrame)
    out.parent.mkdir(parents=True, exist_ok=True)
    if kind_out == "csv":
        anonymised.sink_csv(out, separator=delimiter)
    else:
        anonymised.sink_parquet(out)

    pop = read_population(str(population)) if population is not None else None
    if report is not None or html_path is not None:
        doc = full_report(problem, result, policy, population=pop, suggest=suggest)
        doc["seconds"] = time.perf_counter() - start
        if report is not None:
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        if html_path is not None:
            html_path.parent.mkdir(parents=True, exist_ok=True)
            html_path.write_text(render_html(doc), encoding="utf-8")
    seconds = time.perf_counter() - start
    levels = ", ".join(f"{q}={lv}" for q, lv in result.levels.items())
    typer.echo(
        f"{result.records} records, levels {levels}: {result.classes} classes, "
        f"{result.suppressed} suppressed ({metric} {result.value:.6g}) in {seconds:.2f} s"
    )


def register(app: typer.Typer) -> None:
    """Add ``anonymise-table`` to the ds4h typer app."""
    app.command("anonymise-table", help=HELP, no_args_is_help=True)(anonymise_table)
