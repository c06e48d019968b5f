"""``ds4h vocabulary load``: an Athena download folder -> typed Parquet in the workspace, once.

Imports no Dagster; polars is imported inside the command, so ``--help`` answers at once.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.status import Status

if TYPE_CHECKING:
    from transforms.athena import TableLoaded

__all__ = ["load", "register"]

err = Console(stderr=True)
out = Console()


class _Progress:
    """One spinner per table on stderr, then one line per table."""

    def __init__(self, console: Console, header: str) -> None:
        self.console = console
        self.header: str | None = header
        self.status: Status | None = None

    def start(self, table: str) -> None:
        self.stop()
        if self.header is not None:
            self.console.print(self.header, highlight=False, soft_wrap=True)
            self.header = None
        self.status = self.console.status(f"loading {table} ...")
        self.status.start()

    def stop(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None

    def done(self, t: TableLoaded) -> None:
        self.stop()
        if t.skipped:
            self.console.print(f"  [dim]- {t.table:<22} skipped (no {t.table.upper()}.csv; optional)[/]", highlight=False)
        else:
            self.console.print(f"  [green]✓[/] {t.table:<22} {t.rows:>12,} rows  {t.seconds:6.1f} s  ({t.source})",
                               highlight=False, soft_wrap=True)


def load(
    path: Annotated[Path, typer.Argument(help="An unzipped Athena download folder (CONCEPT.csv, ...).")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Output folder (default $DS4H_HOME/vocabulary/<folder name>).")] = None,
    stcm: Annotated[list[Path] | None, typer.Option("--stcm", help="A SOURCE_TO_CONCEPT_MAP CSV as Usagi exports it (repeatable).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing loaded vocabulary.")] = False,
) -> None:
    """Load an Athena vocabulary download into Parquet (one file per table, with vocabulary.json).

    Example: ds4h vocabulary load ~/athena/vocabulary_download_v5 --stcm maps/site-a-usagi.csv
    """
    from schemas.config import home
    from transforms.athena import VocabularyError, load_athena

    folder = path.expanduser().resolve()
    target = (out_dir.expanduser() if out_dir else home() / "vocabulary" / folder.name).resolve()
    progress = _Progress(err, f"loading {folder} -> {target}")
    t0 = time.perf_counter()
    try:
        manifest = load_athena(folder, target, list(stcm or []), force=force, on_start=progress.start,
                               on_table=progress.done)
    except VocabularyError as e:
        progress.stop()
        err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    finally:
        progress.stop()
    rows = sum(int(t["rows"]) for t in manifest["tables"].values())
    out.print(
        f"{target}  ({len(manifest['tables'])} tables, {rows:,} rows, {len(manifest['vocabularies'])} vocabularies, "
        f"{time.perf_counter() - t0:.1f} s)",
        highlight=False, soft_wrap=True,
    )
    out.print(f"set 'vocabulary: {target}' in the config to use it", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add the ``vocabulary`` command group (``vocabulary load``) to ``app``."""
    group = typer.Typer(help="OMOP vocabularies: load an Athena download into the workspace.", no_args_is_help=True)
    group.command("load")(load)
    app.add_typer(group, name="vocabulary")
