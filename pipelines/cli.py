"""The ``ds4h`` command line. Heavy libraries (Dagster, presidio, great-expectations) are imported
inside the commands that need them, so ``ds4h --help`` and light commands answer at once.

Exit codes: 0 success, 1 error (one line saying what to do), 2 a blocking check stopped ``run``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console

if TYPE_CHECKING:
    from pipelines.runner import RunOutcome
    from schemas.config import Config

app = typer.Typer(
    name="ds4h",
    help="Put hospital data into a European health data space: ingest, OMOP CDM v5.4, pseudonymise, "
    "k-anonymise, publish.\n\nStart with: ds4h demo",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="Project keys (HMAC secrets), kept outside the data.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

out = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[str | None, typer.Option("--config", help="Config file (default $DS4H_CONFIG, else $DS4H_HOME/ds4h.yaml).")]
DEFAULT_SITES = (("hospital-a", "utf-8", ","), ("hospital-b", "utf-8", ","), ("hospital-c", "cp1252", ";"))


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _load(config: str | None):  # type: ignore[no-untyped-def]
    from schemas.config import ConfigError, load_config

    try:
        return load_config(config)
    except ConfigError as e:
        fail(str(e))


def _site_entry(site: str, encoding: str, delimiter: str) -> dict[str, str]:
    entry = {"site": site, "format": "hospital-csv", "path": f"landing/{site}"}
    if encoding != "utf-8":
        entry["encoding"] = encoding
    if delimiter != ",":
        entry["delimiter"] = delimiter
    return entry


@app.command()
def init(
    force: Annotated[bool, typer.Option(help="Overwrite an existing ds4h.yaml.")] = False,
) -> None:
    """Create the workspace ($DS4H_HOME, default ./workspace), its ds4h.yaml and a key for project demo.

    Example: DS4H_HOME=/data/ds4h ds4h init
    """
    import yaml

    from anonymisation.keys import KeyError_, load_key, new_key
    from schemas.config import config_path, home
    from transforms.storage import Workspace

    ws = Workspace(home())
    ws.ensure()
    for site, _, _ in DEFAULT_SITES:
        ws.landing(site).mkdir(parents=True, exist_ok=True)
    path = config_path()
    if path.exists() and not force:
        out.print(f"config exists: {path} (use --force to overwrite)")
    else:
        data = {
            "project": "demo",
            "sources": [_site_entry(*s) for s in DEFAULT_SITES],
            "vocabulary": "bundled:demo",
            "release": {"dataset": "omop-demo"},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("# ds4h configuration: see docs/configuration.md\n" + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        out.print(f"wrote {path}")
    try:
        k = load_key("demo")
        out.print(f"key for project demo: {k.source} (fingerprint {k.fingerprint})")
    except KeyError_:
        k = new_key("demo")
        out.print(f"new key for project demo: {k.source} (fingerprint {k.fingerprint})")
    out.print(f"workspace: {ws.root}")


@app.command()
def generate(
    patients: Annotated[int, typer.Option(min=1, help="Number of distinct patients.")] = 2000,
    sites: Annotated[int, typer.Option(min=1, max=26, help="Number of hospital sites.")] = 3,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same files.")] = 42,
    dirty: Annotated[float, typer.Option(min=0.0, max=0.5, help="Share of rows given a fault (0 = clean).")] = 0.02,
    config: ConfigOpt = None,
) -> None:
    """Write synthetic Luxembourg hospital extracts to landing/<site>/ and add missing sites to the config.

    Example: ds4h generate --patients 500 --sites 3 --seed 7 --dirty 0.05
    """
    import yaml

    from generator.hospital import SiteSpec, default_site_specs
    from generator.hospital import generate as gen
    from schemas.config import config_path, home

    cfg = _load(config)
    path = cfg.config_path or config_path(config)
    specs = default_site_specs(sites)
    existing = {s.site: s for s in cfg.sources}
    chosen = []
    for spec in specs:
        src = existing.get(spec.site)
        chosen.append(SiteSpec(spec.site, src.encoding, src.delimiter) if src else spec)
    landing = home() / "landing"
    from rich.progress import Progress

    with Progress(transient=True, console=err) as bar:
        task = bar.add_task("generating", total=None)

        def progress(what: str, done: int, total: int) -> None:
            bar.update(task, description=f"generating {what}", completed=done, total=total)

        result = gen(landing, patients, chosen, seed, dirty, progress=progress)
    added = [s for s in chosen if s.site not in existing]
    if added:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for s in added:
            data["sources"].append(_site_entry(s.site, s.encoding, s.delimiter)
                                   | {"path": os.path.relpath(landing / s.site, path.parent)})
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        out.print(f"added {', '.join(s.site for s in added)} to {path}")
    rows = sum(sum(v.values()) for v in result.rows.values())
    faults = ", ".join(f"{k} {v}" for k, v in result.fault_counts().items() if v) or "none"
    out.print(
        f"wrote {result.patients:,} patients ({result.shared_patients:,} at two sites), {rows:,} rows over "
        f"{len(result.sites)} sites to {landing}; faults injected: {faults}"
    )


def _print_outcome(outcome, cfg) -> None:  # type: ignore[no-untyped-def]
    from pipelines.summary import render_summary

    render_summary(out, outcome, cfg)


@app.command()
def run(
    config: ConfigOpt = None,
    select: Annotated[str | None, typer.Option("--select", help="Dagster asset selection, e.g. 'group:omop'.")] = None,
) -> None:
    """Materialise the site partitions, then the release over all sites, then publish.

    Exit 0 when published, 2 when a blocking check stopped it (nothing published), 1 on other errors.

    Example: ds4h run --select 'group:raw or group:omop'
    """
    cfg = _load(config)
    outcome = _run(cfg, select)
    _print_outcome(outcome, cfg)
    if outcome.code:
        fail(outcome.message, outcome.code)


def _run(cfg: Config, select: str | None) -> RunOutcome:
    os.environ["DS4H_CONFIG"] = str(cfg.config_path)
    with err.status("loading the pipeline (Dagster)...") as status:
        from pipelines.runner import run_pipeline

        return run_pipeline(cfg, select, progress=lambda m: status.update(f"running {m}"))


@app.command()
def demo(
    patients: Annotated[int, typer.Option(min=10, help="Patients to generate on the first run.")] = 2000,
) -> None:
    """Init if needed, generate 2,000 patients over 3 sites (first time), run and publish a DEMO release.

    Example: ds4h demo    (run it again to publish version 2)
    """
    from schemas.config import config_path, home

    if not config_path().exists():
        init(force=False)
    cfg = _load(None)
    if not any((home() / "landing" / s / "patients.csv").exists() for s in cfg.sites):
        generate(patients=patients, sites=3, seed=42, dirty=0.02, config=None)
        cfg = _load(None)
    if not cfg.is_demo:
        fail(f"the config's project is {cfg.project!r}, not 'demo': use 'ds4h run' for real projects")
    outcome = _run(cfg, None)
    _print_outcome(outcome, cfg)
    if outcome.code:
        fail(outcome.message, outcome.code)


@app.command()
def ui(
    config: ConfigOpt = None,
    port: Annotated[int, typer.Option(help="Port of the Dagster web UI.")] = 3000,
) -> None:
    """Start the Dagster UI (dagster dev) on this project, with the config passed through DS4H_CONFIG.

    Example: ds4h ui --port 3000   then open http://127.0.0.1:3000
    """
    import subprocess

    from pipelines.environment import prepare_dagster_home
    from schemas.config import home
    from transforms.storage import Workspace

    cfg = _load(config)
    env = dict(os.environ)
    prepare_dagster_home(Workspace(home()))
    env.update({"DS4H_CONFIG": str(cfg.config_path), "DAGSTER_HOME": os.environ["DAGSTER_HOME"]})
    cmd = [sys.executable, "-m", "dagster", "dev", "-m", "pipelines.definitions", "-h", "127.0.0.1", "-p", str(port)]
    out.print(f"Dagster UI on http://127.0.0.1:{port} (Ctrl-C to stop)")
    raise typer.Exit(subprocess.call(cmd, env=env))


@keys_app.command("new")
def keys_new(
    project: Annotated[str, typer.Option(help="Project name (one key per data-space project).")],
) -> None:
    """Write a new 256-bit key to $DS4H_KEYS/<project>.key (mode 0600).

    Example: ds4h keys new --project diabetes-2026
    """
    from anonymisation.keys import KeyError_, new_key

    try:
        k = new_key(project)
    except KeyError_ as e:
        fail(str(e))
    out.print(f"wrote {k.source} (fingerprint {k.fingerprint}); keep it secret and backed up")


@keys_app.command("list")
def keys_list() -> None:
    """List the projects with a key, and each key's fingerprint (never the key).

    Example: ds4h keys list
    """
    from anonymisation.keys import keys_dir, list_keys

    rows = list_keys()
    if not rows:
        out.print(f"no keys in {keys_dir()}; make one with 'ds4h keys new --project NAME'")
    for project, fp, source in rows:
        out.print(f"{project}\t{fp}\t{source}")


@app.command()
def approve(
    dataset: str,
    version: int,
    by: Annotated[str, typer.Option("--by", help="Name of the approving data steward.")],
) -> None:
    """Approve a pending release: writes dataspace/<dataset>/approvals/<version>.json and moves LATEST.

    Example: ds4h approve omop-lu 3 --by "Jane Steward"
    """
    from pipelines.publish import PublishError
    from pipelines.publish import approve as do_approve
    from schemas.config import home

    try:
        path = do_approve(home() / "dataspace", dataset, version, by)
    except PublishError as e:
        fail(str(e))
    out.print(f"approved {dataset} v{version}: {path}")


@app.command()
def verify(
    folder: Annotated[Path, typer.Argument(help="A release folder: dataspace/<dataset>/<version>.")],
    approval: Annotated[Path | None, typer.Option(help="Approval record (default ../approvals/<version>.json).")] = None,
    workspace: Annotated[Path | None, typer.Option(help="Workspace whose identifiable zone to leak-scan against.")] = None,
) -> None:
    """Recompute every checksum and row count, check the metadata against the files, anchor the
    manifest to its approval, and re-run the leak scan when the identifiable zone is at hand.

    Exit 0 only if all hold. Example: ds4h verify dataspace/omop-demo/1
    """
    from pipelines.verify import verify_release
    from schemas.config import home
    from transforms.storage import Workspace

    if not folder.is_dir():
        fail(f"{folder} is not a folder: give a release folder such as dataspace/<dataset>/<version>")
    if workspace is None:
        ws_home = home()
        try:
            folder.resolve().relative_to(ws_home / "dataspace")
            workspace = ws_home if Workspace(ws_home).identity_table.exists() else None
        except ValueError:
            workspace = None
    findings = verify_release(folder, approval, workspace)
    for f in findings:
        out.print(f"[{'green' if f.ok else 'red'}]{'ok ' if f.ok else 'BAD'}[/] {f.check}: {f.detail}", highlight=False)
    if not all(f.ok for f in findings):
        fail(f"{folder} does not verify")


@app.command()
def releases() -> None:
    """List the releases of the data space with their status, k, risk and sizes.

    Example: ds4h releases
    """
    import json

    from rich.table import Table

    from pipelines.publish import approved_versions, versions
    from schemas.config import home

    root = home() / "dataspace"
    t = Table()
    for col in ("dataset", "version", "status", "created", "k", "max risk", "avg risk", "persons", "MB"):
        t.add_column(col)
    if root.exists():
        for ds in sorted(p for p in root.iterdir() if p.is_dir()):
            ok = set(approved_versions(ds))
            for v in versions(ds):
                m = json.loads((ds / str(v) / "manifest.json").read_text(encoding="utf-8"))
                risk = m.get("risk", {})
                status = ("approved" if v in ok else "pending") + (" DEMO" if m.get("demo") else "")
                mb = sum(f["bytes"] for f in m["files"]) / 1e6
                t.add_row(ds.name, str(v), status, m["created"], str(m.get("policy", {}).get("k", "")),
                          f"{risk.get('after', {}).get('prosecutor_max', 0):.3f}",
                          f"{risk.get('after', {}).get('prosecutor_avg', 0):.3f}",
                          f"{m.get('facts', {}).get('individuals', '')}", f"{mb:.1f}")
    Console(width=max(out.width, 150)).print(t)


@app.command("connector-export")
def connector_export(
    dataset: str,
    version: int,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for asset.json, policy-definition.json, contract-definition.json.")],
) -> None:
    """Write the EDC connector's asset, ODRL policy and contract definition for an approved release.

    Refuses DEMO and unapproved releases. Example: ds4h connector-export omop-lu 3 --out edc/
    """
    import json

    from pipelines import metadata
    from pipelines.publish import approved_versions
    from schemas.config import home

    ds = home() / "dataspace" / dataset
    folder = ds / str(version)
    if not (folder / "manifest.json").exists():
        fail(f"no release {dataset} version {version} under {home() / 'dataspace'}")
    m = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    if m.get("demo"):
        fail(f"{dataset} v{version} is a DEMO release: it cannot be offered to the data space")
    if m.get("mode", "anonymised") != "anonymised":
        fail(f"{dataset} v{version} is a pseudonymised release for permit {m.get('permit')}: deliver it to that "
             "permit's secure processing environment; it is never offered to the data space")
    if version not in approved_versions(ds):
        fail(f"{dataset} v{version} is not approved: run 'ds4h approve {dataset} {version} --by NAME' first")
    meta = m.get("config", {}).get("release", {"title": dataset, "description": dataset})
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, doc in metadata.edc(m, folder.resolve(), meta).items():
        (out_dir / name).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    out.print(f"wrote asset.json, policy-definition.json and contract-definition.json to {out_dir}")


def _register_commands() -> None:
    from pipelines.commands import anonymise_table, deid, quarantine, vocabulary

    anonymise_table.register(app)
    deid.register(app)
    vocabulary.register(app)
    quarantine.register(app)


_register_commands()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
