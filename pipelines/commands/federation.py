"""Federated analyses on Flower: analyses travel to each hospital's node, only aggregates come back.

- ``ds4h federation up|status|down``: the demo on one machine, a SuperLink and one SuperNode per site
  of the config on 127.0.0.1; ``down`` stops exactly what ``up`` started.
- ``ds4h node start --site S --superlink HOST:PORT``: one hospital's node (TLS and SuperNode
  authentication unless ``--insecure``); ``ds4h node keys`` and ``ds4h federation certs`` make the keys
  and certificates (docs/federation.md).
- ``ds4h federate count CONCEPT_SET.json`` and ``ds4h federate train t2dm-complications``.
Imports no Dagster; Flower is imported inside the commands.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["register"]

out = Console()
err = Console(stderr=True)

OUTCOME_NAMES = ("retinopathy", "neuropathy", "nephropathy", "diabetic_foot")


def _fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _config(config: str | None) -> Any:
    from schemas.config import ConfigError, load_config

    try:
        return load_config(config)
    except ConfigError as e:
        _fail(str(e))


def _home() -> Path:
    from schemas.config import home

    return home()


def default_policy(home: Path, site: str, min_cell: int) -> Path:
    """The node policy file of ``site`` under ``$DS4H_HOME/federation/policy/`` (written once from the
    config's k; the steward edits it: min_cell, allow, max_rounds)."""
    path = home / "federation" / "policy" / f"{site}.yaml"
    if not path.exists():
        import yaml

        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"site": site, "min_cell": min_cell, "allow": ["count", "characterise", "oncology", "train"],
               "max_rounds": 20}
        path.write_text("# the disclosure policy of this site's federated node (docs/federation.md)\n"
                        + yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


# ---------------------------------------------------------------- ds4h federation

def up(config: Annotated[str | None, typer.Option(help="Config file (default $DS4H_HOME/ds4h.yaml).")] = None,
       tls: Annotated[bool, typer.Option("--tls", help="TLS and SuperNode authentication, as a real deployment "
                                         "(a CA and certificates under federation/certs, node keys under "
                                         "$DS4H_KEYS/federation).")] = False,
       as_json: Annotated[bool, typer.Option("--json", help="Print the state as JSON.")] = False) -> None:
    """Start a SuperLink and one SuperNode per configured site on 127.0.0.1 (free ports, state under
    $DS4H_HOME/federation/, telemetry off).

    Example: ds4h federation up && ds4h federate count schemas/cohorts/type-2-diabetes.json
    """
    from anonymisation.keys import keys_dir
    from pipelines.federation.runtime import RuntimeError_
    from pipelines.federation.runtime import up as start

    cfg = _config(config)
    home = _home()
    policies = {s: default_policy(home, s, cfg.products_k) for s in cfg.sites}
    try:
        state = start(home, cfg.sites, policies, tls=tls, node_keys=keys_dir() / "federation")
    except RuntimeError_ as e:
        _fail(str(e))
    if as_json:
        typer.echo(json.dumps(state, sort_keys=True))
        return
    out.print(f"federation up{' (TLS, authenticated nodes)' if tls else ''}: SuperLink on {state['superlink']}, "
              f"{len(cfg.sites)} node(s); "
              "'ds4h federation down' stops it", highlight=False)
    _print_processes(state["processes"])


def _print_processes(procs: list[dict[str, Any]]) -> None:
    table = Table("role", "pid", "port", "running", "log")
    for p in procs:
        table.add_row(p["role"], str(p["pid"]), str(p["port"]), "yes" if p.get("running", True) else "no", p["log"])
    out.print(table)


def status(as_json: Annotated[bool, typer.Option("--json", help="Print the state as JSON.")] = False) -> None:
    """Whether the federation of this workspace is up: each process, its port, its log."""
    from pipelines.federation.runtime import status as read

    state = read(_home())
    if as_json:
        typer.echo(json.dumps(state, sort_keys=True))
        return
    if not state["processes"]:
        out.print("no federation in this workspace ('ds4h federation up' starts one)")
        return
    out.print(f"federation {'up' if state['up'] else 'DEGRADED'}: SuperLink {state['superlink']}, started "
              f"{state['started']}", highlight=False)
    _print_processes(state["processes"])


def down() -> None:
    """Stop exactly the processes 'ds4h federation up' started (and what they spawned)."""
    from pipelines.federation.runtime import down as stop

    stopped = stop(_home())
    out.print(f"stopped {len(stopped)} process(es)" if stopped else "nothing to stop")


def certs(host: Annotated[list[str], typer.Option("--host", help="A name or IP the SuperLink is reached at "
                                                  "(repeat).")],
          out_dir: Annotated[Path, typer.Option("--out", help="Folder for ca.pem, superlink.pem, superlink.key.")]
          ) -> None:
    """Make a CA and the SuperLink's TLS certificate (EC P-256, with `cryptography`); give ca.pem to every
    hospital (its node verifies the SuperLink with it). Keys are written 0600 and never printed."""
    from pipelines.federation.tls import make_superlink_certs

    paths = make_superlink_certs(out_dir, host)
    out.print("wrote " + ", ".join(str(p) for p in paths), highlight=False)


# ---------------------------------------------------------------- ds4h node

def node_keys(site: Annotated[str, typer.Option(help="The site this node serves.")],
              out_dir: Annotated[Path | None, typer.Option("--out", help="Folder (default $DS4H_KEYS/federation).")] = None,
              ) -> None:
    """Make the node's SuperNode authentication key pair (EC P-384, OpenSSH format). The private key stays
    at the hospital (0600); send the .pub file to the coordinator, who registers it with
    'flwr supernode register'."""
    from pipelines.federation.tls import make_node_keys

    if out_dir is None:
        from anonymisation.keys import keys_dir

        out_dir = keys_dir() / "federation"
    private, public = make_node_keys(out_dir, site)
    out.print(f"private key {private} (keep it here); public key {public} (send it to the coordinator)",
              highlight=False)


def node_start(
    site: Annotated[str, typer.Option(help="The site this node serves (a site of the config).")],
    superlink: Annotated[str, typer.Option(help="The coordinator's SuperLink, HOST:PORT.")],
    policy: Annotated[Path | None, typer.Option(help="The node's policy file (default "
                                                "$DS4H_HOME/federation/policy/SITE.yaml).")] = None,
    root_certificates: Annotated[Path | None, typer.Option(help="The CA certificate that signed the SuperLink's.")] = None,
    auth_key: Annotated[Path | None, typer.Option(help="The node's private key (ds4h node keys).")] = None,
    insecure: Annotated[bool, typer.Option(help="No TLS, no authentication: loopback demos only.")] = False,
    port: Annotated[int, typer.Option(min=1, max=65535, help="The node's own runtime API port on 127.0.0.1 "
                                      "(its app processes talk to it).")] = 9094,
    config: Annotated[str | None, typer.Option(help="Config file.")] = None,
) -> None:
    """Run this hospital's federated node in the foreground: a Flower SuperNode that answers from this
    site's pseudonymised OMOP only (lake/pseudo/<table>/site=SITE/), under its policy, and appends every
    request to accounting/federated/site=SITE/audit.jsonl.

    Example: ds4h node start --site hospital-a --superlink coordinator.example:9093
    --root-certificates ca.pem --auth-key $DS4H_KEYS/federation/hospital-a
    """
    from pipelines.federation.runtime import executable, flwr_env, node_config
    from schemas.federation import load_node_policy

    cfg = _config(config)
    if site not in cfg.sites:
        _fail(f"site {site!r} is not in the config (sites: {', '.join(cfg.sites)})")
    home = _home()
    policy = policy or default_policy(home, site, cfg.products_k)
    try:
        loaded = load_node_policy(policy)
    except (OSError, ValueError) as e:
        _fail(str(e))
    if loaded.site != site:
        _fail(f"{policy} is the policy of site {loaded.site!r}, not {site!r}")
    if loaded.min_cell < cfg.products_k:
        _fail(f"{policy}: min_cell {loaded.min_cell} is below the project's k ({cfg.products_k})")
    args = [executable("flower-supernode"), "--superlink", superlink, "--host", "127.0.0.1", "--port", str(port),
            "--node-config", node_config(site, home, policy.resolve())]
    if insecure:
        args.append("--insecure")
    else:
        if root_certificates is None or auth_key is None:
            _fail("a node outside a loopback demo needs --root-certificates (the CA of the SuperLink's certificate) "
                  "and --auth-key (ds4h node keys); --insecure only for a demo on 127.0.0.1")
        for path in (root_certificates, auth_key):
            if not path.exists():
                _fail(f"{path} does not exist")
        args += ["--root-certificates", str(root_certificates), "--auth-supernode-private-key", str(auth_key)]
    out.print(f"node {site}: connecting to {superlink} ({'insecure' if insecure else 'TLS, authenticated'})",
              highlight=False)
    os.execve(args[0], args, flwr_env(home))


# ---------------------------------------------------------------- ds4h federate

def _show_error(result: dict[str, Any]) -> None:
    if "error" in result:
        _fail(f"the federation refused or failed: {result['error']}")


def count(
    concept_set: Annotated[Path, typer.Argument(help="An ATLAS ConceptSetExpression JSON (e.g. schemas/cohorts/*.json).")],
    as_json: Annotated[bool, typer.Option("--json", help='Print {"total": N|null, "sites": {SITE: N|null}}.')] = False,
    config: Annotated[str | None, typer.Option(help="Config file.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the sites.")] = 600.0,
) -> None:
    """Persons with any concept of CONCEPT_SET at each site, counted at the node (withheld below its k),
    and their sum. A person treated at two hospitals counts at each, as in any federated network; the
    total is withheld when a site's count is (it would give that count away).

    Example: ds4h federate count schemas/cohorts/type-2-diabetes.json --json
    """
    from pipelines.federation.coordinator import count_job, run_job
    from pipelines.federation.runtime import RuntimeError_

    cfg = _config(config)
    if not concept_set.exists():
        _fail(f"{concept_set} does not exist")
    try:
        json.loads(concept_set.read_text(encoding="utf-8"))
    except ValueError as e:
        _fail(f"{concept_set} is not JSON: {e}")
    try:
        with err.status(f"counting {concept_set.name} at {len(cfg.sites)} sites"):
            result = run_job(_home(), count_job(cfg.sites, concept_set), timeout=timeout)
    except RuntimeError_ as e:
        _fail(str(e))
    _show_error(result)
    if as_json:
        typer.echo(json.dumps({"total": result["total"], "sites": result["sites"]}, sort_keys=True))
        return
    table = Table("site", "persons")
    for site, n in result["sites"].items():
        why = result.get("refused", {}).get(site)
        table.add_row(site, f"{n:,}" if n is not None else (f"refused: {why}" if why else "withheld (< k)"))
    table.add_row("total", f"{result['total']:,}" if result["total"] is not None else "withheld")
    out.print(f"{concept_set.name}: persons per site (a person treated at two hospitals counts at each)")
    out.print(table)


def _aggregates(analysis: str, config: str | None, timeout: float) -> dict[str, Any]:
    from pipelines.federation.coordinator import run_job
    from pipelines.federation.runtime import RuntimeError_

    cfg = _config(config)
    try:
        with err.status(f"{analysis} at {len(cfg.sites)} sites"):
            result = run_job(_home(), {"analysis": analysis, "sites": cfg.sites}, timeout=timeout)
    except RuntimeError_ as e:
        _fail(str(e))
    _show_error(result)
    return result


def characterise(
    as_json: Annotated[bool, typer.Option("--json", help='Print {"sites": {SITE: {cohort_persons, covariates}|null}, '
                                          '"refused": {SITE: why}}.')] = False,
    config: Annotated[str | None, typer.Option(help="Config file.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the sites.")] = 600.0,
) -> None:
    """The T2DM cohort's aggregate characterisation at each site (FeatureExtraction covariates, counts
    withheld below the node's k), as the t2dm-complications product computes it.

    Example: ds4h federate characterise --json
    """
    result = _aggregates("characterise", config, timeout)
    if as_json:
        typer.echo(json.dumps({"sites": result["sites"], "refused": result["refused"]}, sort_keys=True))
        return
    table = Table("site", "cohort persons", "covariates shown", "withheld (< k)")
    for site, answer in result["sites"].items():
        if answer is None:
            table.add_row(site, f"refused: {result['refused'].get(site)}", "", "")
            continue
        rows = answer["covariates"]
        shown = sum(1 for r in rows if r.get("persons") is not None)
        table.add_row(site, str(answer["cohort_persons"]), str(shown), str(len(rows) - shown))
    out.print(table)


def oncology(
    as_json: Annotated[bool, typer.Option("--json", help='Print {"sites": {SITE: {incidence, stage, lines, '
                                          'survival}|null}, "refused": {SITE: why}}.')] = False,
    config: Annotated[str | None, typer.Option(help="Config file.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the sites.")] = 600.0,
) -> None:
    """The oncology product's aggregates at each site (incidence, stage at diagnosis, treatment lines,
    survival by stage), withheld below the node's k.

    Example: ds4h federate oncology --json
    """
    result = _aggregates("oncology", config, timeout)
    if as_json:
        typer.echo(json.dumps({"sites": result["sites"], "refused": result["refused"]}, sort_keys=True))
        return
    table = Table("site", "incidence cells", "stage cells", "line cells", "survival rows")
    for site, answer in result["sites"].items():
        if answer is None:
            table.add_row(site, f"refused: {result['refused'].get(site)}", "", "", "")
            continue
        table.add_row(site, *(str(len(answer[t])) for t in ("incidence", "stage", "lines", "survival")))
    out.print(table)


def train(
    product: Annotated[str, typer.Argument(help="The data product whose model is trained: t2dm-complications.")],
    outcome: Annotated[str, typer.Option(help="retinopathy, neuropathy, nephropathy or diabetic_foot.")],
    rounds: Annotated[int, typer.Option(min=1, max=200, help="FedAvg rounds.")] = 5,
    secagg: Annotated[bool, typer.Option("--secagg", help="Secure aggregation (SecAgg+): the coordinator sees only "
                                         "the sum of the sites' updates.")] = False,
    dp_epsilon: Annotated[float | None, typer.Option("--dp-epsilon", min=0.01, help="Site-level differential "
                                                      "privacy: Gaussian noise on clipped updates.")] = None,
    window: Annotated[str, typer.Option(help="Risk window: 1y or 5y.")] = "5y",
    as_json: Annotated[bool, typer.Option("--json", help="Print federated_auc, pooled_auc, sites, rounds, seconds, "
                                          "epsilon.")] = False,
    config: Annotated[str | None, typer.Option(help="Config file.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the whole job.")] = 1800.0,
) -> None:
    """FedAvg logistic regression of a T2DM complication (features of the t2dm-complications product, built
    at each node from its own site), federated standardisation, each site scoring the model on its own
    held-out rows. In the demo (every site in this workspace) the pooled fit is computed for comparison.

    Example: ds4h federate train t2dm-complications --outcome retinopathy --rounds 3 --secagg --json
    """
    from pipelines.federation.coordinator import DEFAULTS, pooled_auc, run_job, train_job
    from pipelines.federation.runtime import RuntimeError_

    if product != "t2dm-complications":
        _fail(f"no federated model for {product!r}: the trainable product is t2dm-complications")
    if outcome not in OUTCOME_NAMES:
        _fail(f"unknown outcome {outcome!r}: one of {', '.join(OUTCOME_NAMES)}")
    if window not in ("1y", "5y"):
        _fail(f"--window {window!r}: 1y or 5y")
    cfg = _config(config)
    if secagg and len(cfg.sites) < 3:
        _fail("SecAgg+ needs at least 3 sites (with 2, each learns the other's update from the sum)")
    home = _home()
    try:
        with err.status(f"federated training of {outcome}: starting") as status_line:
            started = time.monotonic()

            def progress(stage: str) -> None:
                status_line.update(f"federated training of {outcome}: {stage} of {rounds} [{time.monotonic() - started:.0f} s]"
                             if stage.startswith("round") else
                             f"federated training of {outcome}: {stage} [{time.monotonic() - started:.0f} s]")

            result = run_job(home, train_job(cfg.sites, outcome, window, rounds, secagg=secagg,
                                             dp_epsilon=dp_epsilon), timeout=timeout, progress=progress)
    except RuntimeError_ as e:
        _fail(str(e))
    _show_error(result)
    pooled = pooled_auc(home, cfg.sites, result, float(DEFAULTS["l2"]))
    shown = {"federated_auc": result["federated_auc"], "pooled_auc": pooled, "sites": result["sites"],
             "rounds": result["rounds"], "seconds": result["wall_seconds"], "epsilon": result["epsilon"]}
    if as_json:
        typer.echo(json.dumps(shown, sort_keys=True))
        return

    def fmt(x: float | None) -> str:
        return f"{x:.3f}" if x is not None else "withheld"

    out.print(f"{outcome} within {window}: federated AUC {fmt(result['federated_auc'])} over every site's held-out "
              f"rows; pooled fit {fmt(pooled) if pooled is not None else 'not computable here'}; "
              f"{result['rounds']} round(s){' with SecAgg+' if secagg else ''}"
              f"{f', site-level DP epsilon {dp_epsilon}' if dp_epsilon else ''}; {result['wall_seconds']:.0f} s",
              highlight=False)
    table = Table("site", "AUC (own held-out rows)")
    for site, a in result["sites"].items():
        table.add_row(site, fmt(a))
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add ``federation``, ``node`` and ``federate`` to ``app``."""
    fed = typer.Typer(help="The federation on this machine (demo): up, status, down; TLS certificates.",
                      no_args_is_help=True)
    fed.command("up")(up)
    fed.command("status")(status)
    fed.command("down")(down)
    fed.command("certs")(certs)
    app.add_typer(fed, name="federation")
    node = typer.Typer(help="One hospital's federated node.", no_args_is_help=True)
    node.command("start")(node_start)
    node.command("keys")(node_keys)
    app.add_typer(node, name="node")
    federate = typer.Typer(help="Federated analyses: only aggregates leave the sites.", no_args_is_help=True)
    federate.command("count")(count)
    federate.command("train")(train)
    federate.command("characterise")(characterise)
    federate.command("oncology")(oncology)
    app.add_typer(federate, name="federate")
