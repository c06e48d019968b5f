"""``ds4h cohort count``: the persons of a release holding any concept of an ATLAS concept set,
suppressed below the release's k. Reads only the published release (and a vocabulary); no Dagster.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

__all__ = ["count", "register"]

out = Console()
err = Console(stderr=True)


def _fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _release_folder(release: str | None, config: str | None) -> Path:
    """A release folder, ``DATASET/VERSION`` of the workspace, or the configured dataset's LATEST."""
    from schemas.config import ConfigError, home, load_config

    dataspace = home() / "dataspace"
    if release is not None:
        if Path(release).is_dir():
            return Path(release)
        m = re.fullmatch(r"([a-z0-9][a-z0-9-]*)/([1-9][0-9]*)", release)
        if m and (dataspace / m[1] / m[2]).is_dir():
            return dataspace / m[1] / m[2]
        _fail(f"--release {release!r} is neither a release folder nor DATASET/VERSION of {dataspace} "
              "('ds4h releases' lists them)")
    try:
        dataset = load_config(config).release.dataset
    except ConfigError as e:
        _fail(f"{e}; or give --release PATH|DATASET/VERSION")
    latest = dataspace / dataset / "LATEST"
    if not latest.exists():
        _fail(f"{dataset} has no approved version (no {latest}): give --release PATH|DATASET/VERSION")
    return dataspace / dataset / latest.read_text(encoding="utf-8").strip()


def _vocabulary(folder: Path, config: str | None) -> tuple[Any, Any, str]:
    """(ancestor, maps_to, where from): the release's own vocabulary rows, else the configured vocabulary."""
    import polars as pl

    omop = folder / "omop"
    if (omop / "concept_ancestor").is_dir() and (omop / "concept_relationship").is_dir():
        ancestor = pl.read_parquet(omop / "concept_ancestor" / "*.parquet")
        rel = pl.read_parquet(omop / "concept_relationship" / "*.parquet")
        maps_to = rel.filter(pl.col("relationship_id") == "Maps to").select("concept_id_1", "concept_id_2")
        return ancestor, maps_to, "the release's vocabulary rows"
    from schemas.config import ConfigError, load_config
    from transforms.vocabulary import VocabularyError, load_vocabulary

    try:
        vocab = load_vocabulary(load_config(config).vocabulary)
    except (ConfigError, VocabularyError) as e:
        _fail(f"the release has no vocabulary rows and the configured vocabulary cannot be read: {e}")
    return vocab.ancestor, vocab.maps_to.select("concept_id_1", "concept_id_2"), "the configured vocabulary"


def count(
    concept_set: Annotated[Path, typer.Argument(help="An ATLAS ConceptSetExpression JSON (e.g. schemas/cohorts/*.json).")],
    release: Annotated[str | None, typer.Option("--release", help="A release folder or DATASET/VERSION (default: "
                                                "the configured dataset's LATEST).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help='Print {"persons", "suppressed", "concepts"}.')] = False,
    config: Annotated[str | None, typer.Option("--config", help="Config file (default $DS4H_CONFIG, else "
                                               "$DS4H_HOME/ds4h.yaml).")] = None,
) -> None:
    """Count the persons of a release holding any concept of the set (condition, procedure, drug,
    measurement and observation rows, standard or source concept), suppressed when between 1 and k-1.

    Example: ds4h cohort count schemas/cohorts/type-2-diabetes.json --release omop-demo/1 --json
    """
    import polars as pl

    from transforms.conceptsets import EVENT_COLUMNS, ConceptSetError, persons_with, read_concept_set, resolve

    try:
        items = read_concept_set(concept_set)
    except ConceptSetError as e:
        _fail(str(e))
    folder = _release_folder(release, config)
    manifest_path = folder / "manifest.json"
    if not manifest_path.exists():
        _fail(f"{folder} has no manifest.json: is it a release folder?")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    k = int(manifest.get("policy", {}).get("k", 5))
    ancestor, maps_to, source = _vocabulary(folder, config)
    concepts = resolve(items, ancestor, maps_to)
    tables = {t: pl.scan_parquet(folder / "omop" / t / "*.parquet") for t in EVENT_COLUMNS
              if (folder / "omop" / t).is_dir()}
    n = persons_with(tables, concepts)
    suppressed = 0 < n < k
    if as_json:
        out.print_json(json.dumps({"persons": None if suppressed else n, "suppressed": suppressed,
                                   "concepts": concepts}))
        return
    shown = f"fewer than {k} (suppressed)" if suppressed else f"{n:,}"
    out.print(f"{concept_set.name}: {shown} persons in {manifest.get('dataset')} v{manifest.get('version')} "
              f"hold any of {len(concepts)} concepts (resolved with {source}; k = {k})", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``cohort`` command group (``cohort count``) to ``app``."""
    group = typer.Typer(help="Cohorts from ATLAS concept sets, counted on a release.", no_args_is_help=True)
    group.command("count")(count)
    app.add_typer(group, name="cohort")
