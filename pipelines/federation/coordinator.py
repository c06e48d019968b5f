"""The coordinator's side of ``ds4h federate``: submit a job to the SuperLink with ``flwr run`` (the ds4h
Flower App, the job in its run config), wait for it, read what the ServerApp wrote. Only aggregates
come back from the sites. In the demo, where every site's pseudonymised data are in this one workspace,
``train`` also fits the pooled model for comparison.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelines.federation.runtime import (
    APP_DIR,
    CONNECTION,
    RuntimeError_,
    executable,
    federation_root,
    flwr_env,
)

DEFAULTS = {"lr": 0.5, "epochs": 3, "l2": 0.3, "clip": 1.0, "dp_delta": 1e-5}


def _toml_string(value: str) -> str:
    return "'''" + value + "'''" if "'" not in value else json.dumps(value)


def _stage(line: str) -> str | None:
    """A progress message from a line of the run's streamed log (the ServerApp's own log lines)."""
    m = re.search(r"\[ROUND (\d+)\]", line)
    if m:
        return f"round {m[1]}"
    for needle, what in (("Secure aggregation commencing", "secure aggregation"),
                         ("aggregate_fit", "aggregating"), ("Starting logstream", "waiting for the sites")):
        if needle in line:
            return what
    return None


def run_job(home: Path, job: dict[str, Any], *, timeout: float = 900.0,
            progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run ``job`` on the federation whose connection is in ``$DS4H_HOME/federation/flwr``; the
    ServerApp's result (an ``error`` key when the federation refused or failed)."""
    root = federation_root(home)
    if not (root / "flwr" / "config.toml").exists():
        raise RuntimeError_("no federation is configured in this workspace: run 'ds4h federation up' first")
    results = root / "results"
    results.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    out = results / f"{stamp}-{job['analysis']}.json"
    overrides = results / f"{stamp}-{job['analysis']}.toml"
    overrides.write_text(f"job = {_toml_string(json.dumps(job, sort_keys=True))}\nout = {json.dumps(str(out))}\n",
                         encoding="utf-8")
    log = results / f"{stamp}-{job['analysis']}.log"
    args = [executable("flwr"), "run", str(APP_DIR), CONNECTION, "--run-config", str(overrides), "--stream"]
    started = time.monotonic()
    with log.open("wb") as fh:
        proc = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, env=flwr_env(home), cwd=str(results))
        seen = 0
        while proc.poll() is None:
            if time.monotonic() - started > timeout:
                proc.kill()
                proc.wait()
                raise RuntimeError_(f"the federated {job['analysis']} did not finish within {timeout:.0f} s: see "
                                    f"{log}; 'ds4h federation status' shows whether every node is up")
            if progress is not None:
                text = log.read_text(encoding="utf-8", errors="replace")
                for line in text[seen:].splitlines():
                    stage = _stage(line)
                    if stage:
                        progress(stage)
                seen = len(text)
            time.sleep(0.5)
    if not out.exists():
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
        raise RuntimeError_(f"the federated {job['analysis']} produced no result (flwr exited with {proc.returncode}): "
                            + " | ".join(tail) + f" (full log: {log})")
    result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    result["wall_seconds"] = round(time.monotonic() - started, 2)
    return result


def count_job(sites: list[str], concept_set: Path) -> dict[str, Any]:
    data = json.loads(concept_set.read_text(encoding="utf-8"))
    return {"analysis": "count", "sites": sites, "params": {"name": concept_set.stem, "concept_set": data}}


def train_job(sites: list[str], outcome: str, window: str, rounds: int, *, secagg: bool,
              dp_epsilon: float | None, **overrides: Any) -> dict[str, Any]:
    return {"analysis": "train", "sites": sites, "outcome": outcome, "window": window, "rounds": rounds,
            "secagg": secagg, "dp_epsilon": dp_epsilon, **DEFAULTS, **overrides}


def pooled_auc(home: Path, sites: list[str], result: dict[str, Any], l2: float) -> float | None:
    """The same model family (L2 logistic regression, same features and standardisation) fitted on the
    pooled training rows of every site and scored on the pooled held-out rows; None when a site's
    pseudonymised data are not in this workspace (a real federation: nobody holds the pool)."""
    import numpy as np

    from pipelines.environment import open_workspace
    from pipelines.node import Node
    from schemas.federation import NodePolicy
    from transforms.federated import auc, fit_logistic, predict

    ws = open_workspace(root=home)
    if not all((ws.lake("pseudo", "person", s)).exists() for s in sites):
        return None
    features = [int(f) for f in result["features"]]
    mean, std = np.asarray(result["mean"]), np.asarray(result["std"])
    parts = [Node(home, s, NodePolicy(site=s)).dataset(result["outcome"], result["window"], features) for s in sites]
    x_train = np.vstack([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    x_test = np.vstack([p[2] for p in parts])
    y_test = np.concatenate([p[3] for p in parts])
    if len(set(y_test.tolist())) < 2 or len(set(y_train.tolist())) < 2:
        return None
    w = fit_logistic((x_train - mean) / std, y_train, l2=l2)
    return float(auc(y_test, predict((x_test - mean) / std, w)))
