"""The Flower apps of ds4h's federated analyses: a ServerApp (the coordinator's side, run by the
SuperLink) and a ClientApp (each hospital's side, run by its SuperNode). Thin wrappers: every answer a
hospital gives comes from ``pipelines.node.Node`` (its policy, its k, its audit log); the server only
combines aggregates.

One request travels as a Flower *query* (legacy ``get_properties``: a JSON request in, a JSON answer
out) or, for the model rounds, as Flower *train* messages of FedAvg through ``DefaultWorkflow``, with
``SecAggPlusWorkflow`` when asked (the ClientApp carries ``secaggplus_mod``: the server then sees only
the sum of the sites' weighted updates).

The job comes in the run config (``job``: JSON) and the result is written to ``out`` (JSON), which the
``ds4h federate`` command that started the run reads.
"""

from __future__ import annotations

import contextvars
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Context, Message
from flwr.app.message_type import MessageType
from flwr.client import NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common import GetPropertiesIns, MessageTypeLegacy, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
from flwr.compat.common import recorddict_compat as compat
from flwr.server import LegacyContext, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_PARAMS_RECORD
from flwr.serverapp import Grid, ServerApp

# SecAgg+ quantises each weighted parameter into [-CLIP_RANGE, CLIP_RANGE]: standardised logistic
# weights stay well inside; MAX_WEIGHT bounds a site's training rows (its FedAvg weight)
SECAGG_CLIP_RANGE = 8.0
# the secure histogram round: counts / HISTOGRAM_SCALE stay inside the clipping range (up to 8,000 held-out
# rows per score bin and site); quantisation error about 0.004 of a count
HISTOGRAM_SCALE = 1000.0
_MASKED: contextvars.ContextVar[bool] = contextvars.ContextVar("ds4h_secagg_masked", default=False)


class FederationError(RuntimeError):
    """A federated job that cannot go on (a site missing, a site refusing, too few rows)."""


# ---------------------------------------------------------------- the hospital's side (ClientApp)

def _node(context: Context) -> Any:
    from pipelines.node import Node
    from schemas.federation import load_node_policy

    cfg = context.node_config
    site, home, policy = str(cfg["site"]), Path(str(cfg["home"])), Path(str(cfg["policy"]))
    return Node(home, site, load_node_policy(policy))


class SiteClient(NumPyClient):
    """One site's answers. Queries: ``get_properties({"request": JSON})`` -> ``{"answer": JSON}`` or
    ``{"refused": why}``. Training: ``fit`` with the request in the config and the global weights."""

    def __init__(self, context: Context) -> None:
        self.context = context

    def get_properties(self, config: dict[str, Any]) -> dict[str, Any]:
        request = json.loads(str(config["request"]))
        site = str(self.context.node_config["site"])
        if request.get("analysis") == "whoami":
            return {"site": site}
        from pipelines.node import Refused

        params = request.get("params") or {}
        weights = np.asarray(params.pop("weights"), dtype=np.float64) if "weights" in params else None
        try:
            answer, _ = _node(self.context).handle(request, weights)
        except Refused as e:
            return {"site": site, "refused": str(e)}
        return {"site": site, "answer": json.dumps(answer, sort_keys=True)}

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        request = json.loads(str(config["request"]))
        if request.get("analysis") == "histogram":  # only inside SecAgg+: the node refuses it otherwise
            _, hist = _node(self.context).handle(request, parameters[0], masked=_MASKED.get())
            assert hist is not None
            return [hist / HISTOGRAM_SCALE], 1, {}
        answer, weights = _node(self.context).handle(request, parameters[0])  # Refused -> the round fails, loudly
        assert weights is not None
        # with DP noise the sites' updates are averaged with equal weights (the sum over a public constant, as
        # the noise calibration assumes); else FedAvg weights each site by its training rows
        weight = 1 if request.get("params", {}).get("noise_std") is not None else int(answer["n"])
        return [weights], weight, {}


def _client_fn(context: Context) -> Any:
    return SiteClient(context).to_client()


def _secagg_when_asked(msg: Message, context: Context, call_next: Any) -> Message:
    """SecAgg+ for the train messages of a secure round (they carry its configs); the others go straight
    to the client. While SecAgg+ runs the client, the vectors it returns leave only masked."""
    if msg.metadata.message_type == MessageType.TRAIN and RECORD_KEY_CONFIGS in msg.content.config_records:
        token = _MASKED.set(True)
        try:
            reply: Message = secaggplus_mod(msg, context, call_next)
        finally:
            _MASKED.reset(token)
        return reply
    out: Message = call_next(msg, context)
    return out


client = ClientApp(client_fn=_client_fn, mods=[_secagg_when_asked])


# ---------------------------------------------------------------- the coordinator's side (ServerApp)

server = ServerApp()


def _query(grid: Grid, nodes: dict[str, int], request: dict[str, Any], timeout: float) -> dict[str, dict[str, Any]]:
    """Send ``request`` to every site; site -> its properties (answer decoded, or refused)."""
    messages = []
    for node_id in nodes.values():
        content = compat.getpropertiesins_to_recorddict(GetPropertiesIns(config={"request": json.dumps(request)}))
        messages.append(Message(content=content, dst_node_id=node_id, message_type=MessageTypeLegacy.GET_PROPERTIES))
    by_node = {v: k for k, v in nodes.items()}
    out: dict[str, dict[str, Any]] = {}
    for reply in grid.send_and_receive(messages, timeout=timeout):
        site = by_node.get(reply.metadata.src_node_id, str(reply.metadata.src_node_id))
        if reply.has_error():
            out[site] = {"refused": f"the node failed: {reply.error.reason}"}
            continue
        props = dict(compat.recorddict_to_getpropertiesres(reply.content).properties)
        if "answer" in props:
            props["answer"] = json.loads(str(props["answer"]))
        out[site] = props
    for site in nodes:
        out.setdefault(site, {"refused": "no answer before the timeout"})
    return out


def _sites(grid: Grid, expected: list[str], wait: float) -> dict[str, int]:
    """site -> node id of every expected site, asking each connected SuperNode which site it serves."""
    nodes: dict[str, int] = {}
    asked: set[int] = set()
    deadline = time.monotonic() + wait
    while True:
        fresh = [n for n in grid.get_node_ids() if n not in asked]
        if fresh:
            answers = _query(grid, {f"node {n}": n for n in fresh}, {"analysis": "whoami"}, timeout=wait)
            for n in fresh:
                site = answers.get(f"node {n}", {}).get("site")
                if site is not None:
                    nodes[str(site)] = n
                    asked.add(n)
        if all(s in nodes for s in expected):
            return {s: nodes[s] for s in expected}
        if time.monotonic() > deadline:
            missing = [s for s in expected if s not in nodes]
            raise FederationError(f"site(s) {', '.join(missing)} did not connect within {wait:.0f} s "
                                  f"(connected: {', '.join(sorted(nodes)) or 'none'}): is their node started?")
        time.sleep(0.5)


def _answers(replies: dict[str, dict[str, Any]], what: str) -> dict[str, dict[str, Any]]:
    refused = {s: r["refused"] for s, r in replies.items() if "answer" not in r}
    if refused:
        raise FederationError(f"{what} refused: " + "; ".join(f"{s}: {why}" for s, why in sorted(refused.items())))
    return {s: r["answer"] for s, r in replies.items()}


def run_count(grid: Grid, nodes: dict[str, int], job: dict[str, Any], run_id: str, timeout: float) -> dict[str, Any]:
    request = {"analysis": "count", "run_id": run_id, "params": job["params"]}
    replies = _query(grid, nodes, request, timeout)
    sites: dict[str, int | None] = {}
    refused: dict[str, str] = {}
    for site, reply in replies.items():
        if "answer" in reply:
            sites[site] = reply["answer"]["persons"]
        else:
            sites[site] = None
            refused[site] = str(reply["refused"])
    # a total with a withheld (or refused) site would give that site away: total minus the others
    total = None if any(v is None for v in sites.values()) else sum(v for v in sites.values() if v is not None)
    return {"total": total, "sites": sites, "refused": refused}


def run_aggregates(grid: Grid, nodes: dict[str, int], analysis: str, run_id: str, timeout: float) -> dict[str, Any]:
    """Each site's aggregate tables (characterisation or oncology), as the node gave them under its k."""
    replies = _query(grid, nodes, {"analysis": analysis, "run_id": run_id, "params": {}}, timeout)
    return {"sites": {s: r.get("answer") for s, r in replies.items()},
            "refused": {s: str(r["refused"]) for s, r in replies.items() if "answer" not in r}}


class CountingFedAvg(FedAvg):
    """FedAvg that counts the rounds it aggregated (a failed round aggregates nothing)."""

    completed = 0

    def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
        params, metrics = super().aggregate_fit(server_round, results, failures)
        if params is not None:
            self.completed += 1
        return params, metrics


def run_train(grid: Grid, context: Context, nodes: dict[str, int], job: dict[str, Any], run_id: str,
              timeout: float) -> dict[str, Any]:
    from transforms.federated import auc_from_bins, combine_stats, dp_noise_std

    outcome, window = job["outcome"], job["window"]
    base = {"outcome": outcome, "window": window}
    feats = _answers(_query(grid, nodes, {"analysis": "features", "run_id": run_id, "params": base}, timeout),
                     "features")
    # a covariate enters the model when EVERY site holds it for k training persons or more: a covariate one
    # site barely has is noise there, and the sites' local optima drift apart on it (measured over 8 keys on
    # the 12,000-patient demo: |federated - pooled AUC| at most 0.013 so, 0.023 with the union)
    features = sorted(set.intersection(*({int(f) for f in a["features"]} for a in feats.values())))
    if not features:
        raise FederationError("no covariate is held by k training persons at every site")
    stats = _answers(_query(grid, nodes, {"analysis": "standardise", "run_id": run_id,
                                          "params": {**base, "features": features}}, timeout), "standardise")
    mean, std = combine_stats([(int(a["n"]), np.asarray(a["sums"], dtype=np.float64),
                                np.asarray(a["sumsqs"], dtype=np.float64)) for a in stats.values()])
    params: dict[str, Any] = {**base, "features": features, "mean": mean.tolist(), "std": std.tolist(),
                              "lr": float(job["lr"]), "epochs": int(job["epochs"]), "l2": float(job["l2"])}
    rounds = int(job["rounds"])
    epsilon = job.get("dp_epsilon")
    if epsilon is not None:
        params["clip"] = float(job["clip"])
        params["noise_std"] = dp_noise_std(float(epsilon), float(job["dp_delta"]), rounds, float(job["clip"]), len(nodes))

    def fit_config(server_round: int) -> dict[str, Any]:
        return {"request": json.dumps({"analysis": "fit", "run_id": run_id, "round": server_round, "params": params})}

    n = len(nodes)
    # SecAgg+ scales each site's vector by its weight / max_weight before quantising: the largest site's
    # training rows (1 with DP noise, where every site weighs 1) keep the full precision
    max_weight = 1.0 if epsilon is not None else float(max(int(a["n"]) for a in stats.values()))
    strategy = CountingFedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n, min_evaluate_clients=0,
                      min_available_clients=n, accept_failures=False, on_fit_config_fn=fit_config,
                      initial_parameters=ndarrays_to_parameters([np.zeros(len(features) + 1)]))
    legacy = LegacyContext(context, config=ServerConfig(num_rounds=rounds, round_timeout=timeout), strategy=strategy)
    fit_workflow = (SecAggPlusWorkflow(num_shares=n, reconstruction_threshold=max(2, n - 1),
                                       clipping_range=SECAGG_CLIP_RANGE, max_weight=max_weight, timeout=timeout)
                    if job.get("secagg") else None)
    DefaultWorkflow(fit_workflow=fit_workflow)(grid, legacy)
    record = legacy.state.array_records[MAIN_PARAMS_RECORD]
    (weights,) = parameters_to_ndarrays(compat.arrayrecord_to_parameters(record, keep_input=True))
    if strategy.completed < rounds:
        raise FederationError(f"only {strategy.completed} of {rounds} rounds aggregated (a site failed or refused: "
                              "its audit log and the run's log say why)")
    evals = _query(grid, nodes, {"analysis": "evaluate", "run_id": run_id,
                                 "params": {**params, "weights": weights.tolist()}}, timeout)
    answered = _answers(evals, "evaluate")
    # the federated AUC always through SecAgg+ when there are 3 sites or more (whether or not the training
    # rounds were): k-merged intervals lose most of the ranking on small sites (0.61 for 0.76 measured)
    if n >= 3:
        federated_auc, method = _secure_auc(grid, context, legacy, params, run_id, n, timeout), "secagg-histogram"
    else:
        federated_auc = auc_from_bins([[tuple(b) for b in a["bins"]] for a in answered.values()])
        method = "k-merged-bins"
    return {"outcome": outcome, "window": window, "federated_auc": federated_auc, "auc_method": method, "sites": {s: a["auc"] for s, a in answered.items()},
            "rounds": strategy.completed, "epsilon": float(epsilon) if epsilon is not None else None,
            "secagg": bool(job.get("secagg")), "features": features, "weights": weights.tolist(),
            "mean": mean.tolist(), "std": std.tolist(), "held_out": {s: a["n"] for s, a in answered.items()}}


def _secure_auc(grid: Grid, context: Context, trained: LegacyContext, params: dict[str, Any], run_id: str,
                n: int, timeout: float) -> float | None:
    """The AUC over every site's held-out rows from the SUM of their fine score histograms, summed by
    one more SecAgg+ round (each site weighted 1): the coordinator never sees a site's histogram."""
    from pipelines.node import HISTOGRAM_GRID
    from transforms.federated import auc_from_bins

    def config(server_round: int) -> dict[str, Any]:
        return {"request": json.dumps({"analysis": "histogram", "run_id": run_id, "params": params})}

    strategy = CountingFedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n, min_evaluate_clients=0,
                              min_available_clients=n, accept_failures=False, on_fit_config_fn=config)
    legacy = LegacyContext(context, config=ServerConfig(num_rounds=1, round_timeout=timeout), strategy=strategy,
                           client_manager=trained.client_manager)
    SecAggPlusWorkflow(num_shares=n, reconstruction_threshold=max(2, n - 1), clipping_range=SECAGG_CLIP_RANGE,
                       max_weight=1.0, timeout=timeout)(grid, legacy)
    if strategy.completed != 1:
        raise FederationError("the secure evaluation round failed (a site refused or dropped out)")
    (mean,) = parameters_to_ndarrays(compat.arrayrecord_to_parameters(legacy.state.array_records[MAIN_PARAMS_RECORD],
                                                                      keep_input=True))
    total = np.rint(mean * n * HISTOGRAM_SCALE).astype(np.int64)  # SecAgg+ returns the mean of weight-1 vectors
    neg, pos = total[:HISTOGRAM_GRID], total[HISTOGRAM_GRID:]
    return auc_from_bins([[(i, i + 1, int(neg[i]), int(pos[i])) for i in range(HISTOGRAM_GRID)]], grid=HISTOGRAM_GRID)


@server.main()
def main(grid: Grid, context: Context) -> None:
    out = Path(str(context.run_config["out"]))
    started = time.monotonic()
    result: dict[str, Any]
    failure: Exception | None = None
    try:
        job = json.loads(str(context.run_config["job"]))
        timeout = float(job.get("timeout", 300))
        nodes = _sites(grid, list(job["sites"]), wait=float(job.get("wait", 60)))
        run_id = str(context.run_id)
        if job["analysis"] == "count":
            result = run_count(grid, nodes, job, run_id, timeout)
        elif job["analysis"] in ("characterise", "oncology"):
            result = run_aggregates(grid, nodes, job["analysis"], run_id, timeout)
        elif job["analysis"] == "train":
            result = run_train(grid, context, nodes, job, run_id, timeout)
        else:
            raise FederationError(f"unknown analysis {job['analysis']!r}")
        result["run_id"] = run_id
    except FederationError as e:
        result = {"error": str(e)}
    except Exception as e:  # the command that started the run reports it; the traceback goes to the run's log
        result, failure = {"error": f"{type(e).__name__}: {e}"}, e
    result["seconds"] = round(time.monotonic() - started, 2)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, sort_keys=True), encoding="utf-8")
    os.replace(tmp, out)
    if failure is not None:
        raise failure
