"""``ds4h quarantine``: what the quarantine holds, by stage, table, site and reason; with ``--reason``,
the rows themselves, on the terminal only.

The quarantine (``$DS4H_HOME/quarantine/<stage>/<table>/site=<site>/*.parquet``) is part of the
identifiable zone: it keeps the original cells of every rejected row. This command prints rows to the
terminal and nowhere else; never copy them into reports, logs or the data space.
Imports no Dagster; polars is imported inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipelines.environment import open_workspace

if TYPE_CHECKING:
    import polars as pl

__all__ = ["QuarantineError", "quarantine", "register", "summarise"]

out = Console()
err = Console(stderr=True)

CASCADE_MARK = ") was quarantined: "  # the reason_detail of a row whose parent row was quarantined


class QuarantineError(Exception):
    """Nothing to show, or an unknown site or reason: the message lists what there is."""


def _parts(root: Path) -> list[tuple[str, str, str, list[Path]]]:
    """(stage, table, site, parquet files) of every quarantine partition under ``root``."""
    from transforms.storage import partition_files

    found = []
    for folder in sorted(root.glob("*/*/site=*")):
        files = partition_files(folder)
        if files:
            stage, table = folder.parent.parent.name, folder.parent.name
            found.append((stage, table, folder.name.removeprefix("site="), files))
    return found


def _read(files: list[Path], columns: list[str] | None = None) -> pl.DataFrame:
    import polars as pl

    from transforms.storage import read_parquet_files

    frames = [read_parquet_files([f], columns) for f in files]
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def summarise(root: Path) -> pl.DataFrame:
    """stage, table, site, reason_code, rows, cascades (rows whose parent row was quarantined), sorted."""
    import polars as pl

    schema = {"stage": pl.String, "table": pl.String, "site": pl.String, "reason_code": pl.String,
              "rows": pl.Int64, "cascades": pl.Int64}
    frames = []
    for stage, table, site, files in _parts(root):
        df = _read(files, ["reason_code", "reason_detail"])
        if not df.height:
            continue
        if "reason_detail" not in df.columns:
            df = df.with_columns(reason_detail=pl.lit(None, pl.String))
        frames.append(df.group_by("reason_code").agg(
            rows=pl.len().cast(pl.Int64),
            cascades=pl.col("reason_detail").cast(pl.String).str.contains(CASCADE_MARK, literal=True).fill_null(False)
            .sum().cast(pl.Int64),
        ).with_columns(stage=pl.lit(stage), table=pl.lit(table), site=pl.lit(site)).select(list(schema)))
    if not frames:
        return pl.DataFrame(schema=schema)
    return pl.concat(frames).sort("stage", "table", "site", "reason_code")


def rows_of(root: Path, reason: str, site: str | None, limit: int) -> list[tuple[str, str, str, pl.DataFrame]]:
    """Up to ``limit`` quarantined rows with ``reason`` (of ``site``), per stage, table and site."""
    import polars as pl

    shown: list[tuple[str, str, str, pl.DataFrame]] = []
    left = limit
    for stage, table, s, files in _parts(root):
        if left <= 0:
            break
        if site is not None and s != site:
            continue
        df = _read(files).filter(pl.col("reason_code") == reason)
        if df.height:
            first = [c for c in ("source_file", "source_line", "reason_detail") if c in df.columns]
            df = df.select(*first, *[c for c in df.columns if c not in (*first, "reason_code")])
            shown.append((stage, table, s, df.head(left)))
            left -= min(df.height, left)
    return shown


def _check(summary: pl.DataFrame, root: Path, site: str | None, reason: str | None) -> pl.DataFrame:
    import polars as pl

    if not summary.height:
        raise QuarantineError(f"no quarantine in {root}: nothing was quarantined yet (run 'ds4h run' first)")
    if site is not None:
        sites = sorted(set(summary["site"].to_list()))
        if site not in sites:
            raise QuarantineError(f"site {site!r} has nothing in the quarantine; sites with quarantined rows: "
                                  f"{', '.join(sites)}")
        summary = summary.filter(pl.col("site") == site)
    if reason is not None:
        reasons = sorted(set(summary["reason_code"].to_list()))
        if reason not in reasons:
            where = f" at {site}" if site is not None else ""
            raise QuarantineError(f"no row quarantined as {reason!r}{where}; reasons: {', '.join(reasons)}")
        summary = summary.filter(pl.col("reason_code") == reason)
    return summary


def quarantine(
    site: Annotated[str | None, typer.Option("--site", help="Only this site.")] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Only this reason code; also shows its rows.")] = None,
    rows: Annotated[int, typer.Option("--rows", min=0, help="How many rows --reason shows (terminal only).")] = 20,
) -> None:
    """Summarise the quarantine by stage, table, site and reason; with --reason show its rows (terminal only).

    The quarantine is the identifiable zone: rows are printed here and nowhere else; never copy them into
    reports, logs or the data space.

    Example: ds4h quarantine --site hospital-a --reason raw.invalid_date --rows 5
    """

    root = open_workspace().shared / "quarantine"
    summary = summarise(root)
    try:
        summary = _check(summary, root, site, reason)
    except QuarantineError as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    t = Table(title=f"Quarantine ({root})")
    for c in ("stage", "table", "site", "reason", "rows", "of which cascades"):
        t.add_column(c, justify="right" if c in ("rows", "of which cascades") else "left", overflow="fold")
    for stage, table, s, code, n, cascades in summary.iter_rows():
        t.add_row(stage, table, s, code, f"{n:,}", f"{cascades:,}")
    Console(width=max(out.width, 110)).print(t)  # reason codes stay on one line
    total, cascades = int(summary["rows"].sum()), int(summary["cascades"].sum())
    out.print(f"{total:,} rows quarantined, {cascades:,} of them because their parent row was quarantined (cascades).",
              highlight=False)
    if reason is None:
        out.print("Rows of one reason: ds4h quarantine --reason CODE [--site SITE] [--rows N]", highlight=False)
        return
    shown = rows_of(root, reason, site, rows)
    out.print("[bold]Identifiable data[/]: shown on this terminal only; do not copy it into reports, logs or the "
              "data space.", highlight=False)
    for stage, table, s, df in shown:
        out.print(f"\n[bold]{stage}/{table} site={s}[/]: {reason} ({df.height} shown)", highlight=False)
        for row in df.iter_rows(named=True):
            where = f"{row.pop('source_file', '') or ''} line {row.pop('source_line', '')}"
            out.print(f"  {where}: {row.pop('reason_detail', '') or ''}", highlight=False, soft_wrap=True)
            out.print("    " + ", ".join(f"{k}={'' if v is None else v}" for k, v in row.items()),
                      highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``ds4h quarantine`` to ``app``."""
    app.command("quarantine")(quarantine)
