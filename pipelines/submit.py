"""``ds4h run`` through the instance: the named jobs are submitted to the instance's run coordinator
(``instance.run_queue``: Dagster's QueuedRunCoordinator) and awaited, instead of ``execute_in_process``.

The dagster-daemon of the instance dequeues them (max_concurrent_runs, the per-site limit) and its run
launcher starts them from the code location of ``$DAGSTER_HOME/workspace.yaml``, which ds4h writes. The
results are read back from the instance's event log, so the runner treats them as in-process results.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import dagster as dg
from dagster._core.definitions.selector import JobSubsetSelector
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
from dagster._core.storage.dagster_run import FINISHED_STATUSES
from dagster._core.workspace.context import WorkspaceProcessContext, WorkspaceRequestContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._daemon.controller import get_daemon_statuses

LOCATION = "ds4h"
QUEUE_DAEMON = "QUEUED_RUN_COORDINATOR"


class SubmitError(Exception):
    """The instance cannot take the runs (no daemon, no code location): worded for the user."""


def uses_instance_submission(instance: dg.DagsterInstance) -> bool:
    """True when the instance's dagster.yaml sets a run coordinator or a run launcher: runs then go through
    the instance. (Without either, Dagster still defaults to a QueuedRunCoordinator, which 'ds4h run'
    does not use: runs stay in this process.)"""
    import yaml

    path = Path(instance.root_directory) / "dagster.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else None
    return isinstance(data, dict) and bool({"run_coordinator", "run_launcher"} & set(data))


@dataclass
class SubmittedResult:
    """What the runner reads of an ExecuteInProcessResult, for a run launched through the instance."""

    run: dg.DagsterRun
    events: list[DagsterEvent]

    @property
    def success(self) -> bool:
        return self.run.status == dg.DagsterRunStatus.SUCCESS

    def get_step_failure_events(self) -> list[DagsterEvent]:
        return [e for e in self.events if e.event_type == DagsterEventType.STEP_FAILURE]

    def get_asset_check_evaluations(self) -> list[dg.AssetCheckEvaluation]:
        return [cast("dg.AssetCheckEvaluation", e.event_specific_data) for e in self.events
                if e.event_type == DagsterEventType.ASSET_CHECK_EVALUATION]

    def asset_materializations_for_node(self, node_name: str) -> list[dg.AssetMaterialization]:
        return [cast("StepMaterializationData", e.event_specific_data).materialization for e in self.events
                if e.event_type == DagsterEventType.ASSET_MATERIALIZATION and e.node_handle is not None
                and e.node_handle.name == node_name]


class Submitter:
    """Submits runs of the ds4h code location to the instance and awaits them."""

    def __init__(self, instance: dg.DagsterInstance, ctx: WorkspaceRequestContext) -> None:
        self.instance, self.ctx = instance, ctx

    def submit(self, job_name: str, *, tags: Mapping[str, str], run_config: Mapping[str, Any],
               asset_selection: Sequence[dg.AssetKey] | None = None) -> str:
        loc = self.ctx.get_code_location(LOCATION)
        repo = loc.get_repository(next(iter(loc.get_repository_names())))
        selection = frozenset(asset_selection) if asset_selection is not None else None
        remote_job = loc.get_job(JobSubsetSelector(location_name=loc.name, repository_name=repo.name,
                                                   job_name=job_name, op_selection=None,
                                                   asset_selection=selection))
        plan = loc.get_execution_plan(remote_job, dict(run_config), step_keys_to_execute=None, known_state=None,
                                      instance=self.instance)
        run = self.instance.create_run(
            job_name=job_name, run_id=None, run_config=dict(run_config), resolved_op_selection=None,
            step_keys_to_execute=None, op_selection=None, status=None, root_run_id=None, parent_run_id=None,
            tags={**remote_job.tags, **tags}, job_snapshot=remote_job.job_snapshot,
            execution_plan_snapshot=plan.execution_plan_snapshot, parent_job_snapshot=remote_job.parent_job_snapshot,
            remote_job_origin=remote_job.get_remote_origin(), job_code_origin=remote_job.get_python_origin(),
            asset_selection=selection, asset_check_selection=None, asset_graph=repo.asset_graph)
        self.instance.submit_run(run.run_id, self.ctx)
        return run.run_id

    def wait(self, run_ids: Sequence[str], poll: float = 0.5) -> list[SubmittedResult]:
        """Wait until every run has finished (polling the run storage) and read its events."""
        while True:
            runs = [self.instance.get_run_by_id(r) for r in run_ids]
            if all(r is not None and r.status in FINISHED_STATUSES for r in runs):
                break
            time.sleep(poll)
        out = []
        for r in runs:
            assert r is not None
            events = [e.dagster_event for e in self.instance.all_logs(r.run_id) if e.dagster_event is not None]
            out.append(SubmittedResult(r, events))
        return out


@contextmanager
def submitter(instance: dg.DagsterInstance) -> Iterator[Submitter]:
    """The ds4h code location of ``$DAGSTER_HOME/workspace.yaml`` (a code server for it) and a Submitter.

    Refuses when no dagster-daemon serves the instance's queue: the runs would wait for ever. (A
    run_launcher set in the project's dagster.yaml needs a location named ds4h in workspace.yaml too.)"""
    from dagster._core.run_coordinator import QueuedRunCoordinator

    queued = isinstance(instance.run_coordinator, QueuedRunCoordinator)
    if queued and not get_daemon_statuses(instance, [QUEUE_DAEMON])[QUEUE_DAEMON].healthy:
        raise SubmitError("the instance queues runs (instance.run_queue, or a run_launcher in dagster.yaml) but no "
                          "dagster-daemon serves it: start "
                          f"'dagster-daemon run -w {instance.root_directory}/workspace.yaml' with the same "
                          "environment (DS4H_CONFIG, DS4H_KEYS, DAGSTER_HOME, the PostgreSQL password variable), or "
                          "remove instance.run_queue to run in this process")
    target = WorkspaceFileTarget(paths=[f"{instance.root_directory}/workspace.yaml"])
    with WorkspaceProcessContext(instance, target, code_server_log_level="WARNING") as wctx:
        ctx = wctx.create_request_context()
        errors = ctx.get_code_location_error(LOCATION) if ctx.has_code_location_error(LOCATION) else None
        if errors is not None:
            raise SubmitError(f"the ds4h code location does not load: {errors.message.splitlines()[0]}")
        yield Submitter(instance, ctx)
