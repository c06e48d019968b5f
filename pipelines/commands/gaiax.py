"""``ds4h gaiax export|verify``: Gaia-X 25.11 credentials of a release, and their offline check
(pipelines/gaiax.py, docs/gaiax.md). Light imports: pySHACL and jwcrypto load inside the commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pipelines.environment import open_workspace

__all__ = ["register"]

out = Console()
err = Console(stderr=True)

gaiax_app = typer.Typer(help="Gaia-X 25.11 credentials (did:web, VC-JOSE) of a release, and their offline check.",
                        no_args_is_help=True)


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@gaiax_app.command("export")
def export_cmd(
    dataset: str,
    version: int,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for did.json, the credentials (*.vc.jwt and their "
                                          "decoded *.json) and presentation.vp.jwt.")],
    config: Annotated[str | None, typer.Option("--config", help="Config file (default $DS4H_CONFIG, else "
                                               "$DS4H_HOME/ds4h.yaml).")] = None,
) -> None:
    """Sign the participant's, the federated node's and the release's Gaia-X credentials.

    Real projects: approved, non-revoked releases only, with a 'participant:' block in the config and a key
    from 'ds4h keys participant'. DEMO releases export marked DEMO (self-signed, MOCK notary; the demo
    participant key is made if missing). Example: ds4h gaiax export omop-lu 3 --out gaiax/
    """
    from pipelines import gaiax
    from schemas.config import ConfigError, load_config

    try:
        cfg = load_config(config)
        manifest = gaiax.exportable(open_workspace().dataspace, dataset, version)
        demo = bool(manifest.get("demo"))
        project = manifest.get("project", cfg.project)
        if cfg.participant is not None:
            participant = cfg.participant.model_dump()
        elif demo:
            participant = gaiax.DEMO_PARTICIPANT
        else:
            raise gaiax.GaiaxError("the config has no 'participant:' block (legal_name, registration_number, "
                                   "legal_address, headquarters_address, did_web_domain): see docs/gaiax.md")
        if demo and not gaiax.participant_key_path(project).exists():
            thumb = gaiax.new_participant_key(project)
            out.print(f"made the DEMO participant key {gaiax.participant_key_path(project)} (thumbprint {thumb})",
                      highlight=False)
        key = gaiax.load_participant_key(project)
        result = gaiax.export(open_workspace().dataspace / dataset / str(version), out_dir, participant, key, demo)
    except (gaiax.GaiaxError, ConfigError) as e:
        _fail(str(e))
        return
    out.print(f"wrote {len(result.files)} files to {out_dir} for {result.did}"
              + (" (DEMO: self-signed, MOCK notary)" if demo else "")
              + f"; signed in {result.sign_seconds * 1000:.0f} ms. Check: ds4h gaiax verify {out_dir}", highlight=False)


@gaiax_app.command("verify")
def verify_cmd(
    folder: Annotated[Path, typer.Argument(help="The --out folder of 'ds4h gaiax export'.")],
) -> None:
    """Check every token's signature against did.json and mock-notary.did.json, then the credentials'
    subjects against the Gaia-X 25.11 SHACL shapes (offline). Exit 0 only if all hold.

    Example: ds4h gaiax verify gaiax/
    """
    from pipelines import gaiax

    try:
        findings, times = gaiax.verify(folder)
    except gaiax.GaiaxError as e:
        _fail(str(e))
        return
    for f in findings:
        out.print(f"[{'green' if f.ok else 'red'}]{'ok ' if f.ok else 'BAD'}[/] {f.check}: {f.detail}",
                  highlight=False, soft_wrap=True)
    out.print("times: " + ", ".join(f"{k} {v:.2f} s" for k, v in times.items()), highlight=False)
    if not all(f.ok for f in findings):
        _fail(f"{folder} does not verify: {sum(not f.ok for f in findings)} failure(s) above")


def register(app: typer.Typer) -> None:
    app.add_typer(gaiax_app, name="gaiax")
