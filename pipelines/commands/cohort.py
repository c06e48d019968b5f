"""``ds4h cohort count``: the persons of a release holding any concept of an ATLAS concept set,
suppressed below the release's k. ``ds4h cohort build``: a cohort spec (schemas/cohorts/*.yaml) as
OHDSI's cohort table, with its attrition suppressed below k. Reads only the published release (and a
vocabulary); no Dagster.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from pipelines.environment import open_workspace

__all__ = ["build", "count", "register"]

out = Console()
err = Console(stderr=True)


def _fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _release_folder(release: str | None, config: str | None) -> Path:
    """A release folder, ``DATASET/VERSION`` of the workspace, or the configured dataset's LATEST."""
    from schemas.config import ConfigError, load_config

    dataspace = open_workspace().dataspace
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

    from transforms.storage import read_partition

    omop = folder / "omop"
    if (omop / "concept_ancestor").is_dir() and (omop / "concept_relationship").is_dir():
        ancestor = read_partition(omop / "concept_ancestor")
        rel = read_partition(omop / "concept_relationship")
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

    from transforms.conceptsets import EVENT_COLUMNS, ConceptSetError, persons_with, read_concept_set, resolve
    from transforms.storage import has_partition, scan_partition

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
    tables = {t: scan_partition(folder / "omop" / t) for t in EVENT_COLUMNS if has_partition(folder / "omop" / t)}
    n = persons_with(tables, concepts)
    suppressed = 0 < n < k
    if as_json:
        out.print_json(json.dumps({"persons": None if suppressed else n, "suppressed": suppressed,
                                   "concepts": concepts}))
        return
    shown = f"fewer than {k} (suppressed)" if suppressed else f"{n:,}"
    out.print(f"{concept_set.name}: {shown} persons in {manifest.get('dataset')} v{manifest.get('version')} "
              f"hold any of {len(concepts)} concepts (resolved with {source}; k = {k})", highlight=False)


def _manifest(folder: Path) -> dict[str, Any]:
    manifest_path = folder / "manifest.json"
    if not manifest_path.exists():
        _fail(f"{folder} has no manifest.json: is it a release folder?")
    manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
    return manifest


def build(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC.yaml", help="A cohort spec (e.g. schemas/cohorts/*.yaml).")],
    release: Annotated[str | None, typer.Option("--release", help="A release folder or DATASET/VERSION (default: "
                                                "the configured dataset's LATEST).")] = None,
    out_path: Annotated[Path | None, typer.Option("--out", help="Write the cohort table (cohort_definition_id, "
                                                  "subject_id, cohort_start_date, cohort_end_date) to this "
                                                  "Parquet file (never inside the release).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help='Print {"cohort_definition_id", "name", "k", '
                                          '"attrition": [{"rule", "persons", "events", "suppressed"}], "out"}.')] = False,
    config: Annotated[str | None, typer.Option("--config", help="Config file (default $DS4H_CONFIG, else "
                                               "$DS4H_HOME/ds4h.yaml).")] = None,
) -> None:
    """Build a cohort spec on a release as OHDSI's cohort table, printing the persons and events left
    after each rule (counts between 1 and k-1 shown as fewer than k).

    Example: ds4h cohort build schemas/cohorts/type-2-diabetes.yaml --release omop-demo/1 --out t2dm.parquet
    """

    from schemas.cohort_spec import CohortSpecError, load_cohort_spec
    from transforms.cohorts import CohortError, build_cohort_with_attrition
    from transforms.conceptsets import EVENT_COLUMNS, ConceptSetError
    from transforms.storage import has_partition, scan_partition

    try:
        spec = load_cohort_spec(spec_path)
    except CohortSpecError as e:
        _fail(str(e))
    folder = _release_folder(release, config)
    manifest = _manifest(folder)
    k = int(manifest.get("policy", {}).get("k", 5))
    target = out_path.resolve() if out_path is not None else None
    if target is not None:
        if target.is_relative_to(folder.resolve()):
            _fail(f"--out {out_path} is inside the release {folder}: a release is sealed, write the cohort elsewhere")
        if target.is_dir():
            _fail(f"--out {out_path} is a folder: give a file name such as cohort.parquet")
        if not target.parent.is_dir():
            _fail(f"--out {out_path}: folder {target.parent} does not exist")
    ancestor, maps_to, source = _vocabulary(folder, config)
    omop = folder / "omop"
    tables = {t: scan_partition(omop / t)
              for t in (*EVENT_COLUMNS, "observation_period", "person") if has_partition(omop / t)}
    try:
        cohort, attrition = build_cohort_with_attrition(spec, tables, ancestor, maps_to)
    except (ConceptSetError, CohortError) as e:
        _fail(str(e))
    if target is not None:
        cohort.write_parquet(target, compression="zstd", statistics=True)
    shown: list[dict[str, Any]] = []
    for step in attrition:
        persons, events = int(step["persons"]), int(step["events"])
        suppressed = 0 < persons < k or 0 < events < k
        shown.append({"rule": step["rule"], "persons": None if suppressed else persons,
                      "events": None if suppressed else events, "suppressed": suppressed})
    if as_json:
        out.print_json(json.dumps({"cohort_definition_id": spec.cohort_definition_id, "name": spec.name, "k": k,
                                   "attrition": shown, "out": str(target) if target is not None else None}))
        return
    out.print(f"{spec.name} (cohort {spec.cohort_definition_id}) on {manifest.get('dataset')} "
              f"v{manifest.get('version')}; concepts resolved with {source}; k = {k}", highlight=False)
    for step in shown:
        if step["suppressed"]:
            counts = f"fewer than {k}"
        else:
            counts = f"{step['persons']:,} persons, {step['events']:,} events"
        out.print(f"  {step['rule']}: {counts}", highlight=False)
    if target is not None:
        out.print(f"cohort table written to {target}", highlight=False)
    else:
        out.print("(give --out cohort.parquet to write the cohort table)", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``cohort`` command group (``cohort count``, ``cohort build``) to ``app``."""
    group = typer.Typer(help="Cohorts from ATLAS concept sets and cohort specs, on a release.", no_args_is_help=True)
    group.command("count")(count)
    group.command("build")(build)
    app.add_typer(group, name="cohort")
