"""The run model of ``ds4h run``: site partitions, then the release over all sites, then publishing.

The release starts only if the latest evaluation of every blocking check on every site partition
passed, read from the workspace's Dagster instance (a blocking check stops downstream steps only
inside its own run, and a sensor may have run a site on its own). Exit codes: 0 published,
2 a blocking check stopped it (nothing published), 1 any other error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from dagster._core.event_api import PartitionKeyFilter

from anonymisation.keys import KeyError_, load_key
from pipelines.definitions import SITE_GROUPS, build_definitions
from pipelines.environment import SITE_TAG, open_workspace, prepare_dagster_home
from pipelines.fingerprint import run_inputs, unchanged_since
from pipelines.release_assets import BLOCKED_CHECK
from pipelines.submit import SubmitError, SubmittedResult, Submitter, submitter, uses_instance_submission
from schemas.config import Config, ConfigError

GLOBAL_GROUPS = ("release", "products", "publish")
# Dagster's console log stays quiet; the ds4h_progress logger feeds the terminal's progress line
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}, "ds4h_progress": {}}}

OK, OTHER_ERROR, BLOCKED = 0, 1, 2
Result = dg.ExecuteInProcessResult | SubmittedResult


@dataclass
class RunOutcome:
    code: int
    message: str
    published: dict[str, Any] | None = None
    blocked: list[str] = field(default_factory=list)
    sites_run: list[str] = field(default_factory=list)
    unchanged_since: int | None = None


def _failure_message(result: Result) -> str:
    for ev in result.get_step_failure_events():
        data = ev.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            return data.user_failure_data.description
        if data.error is not None:
            cause = data.error
            while cause.cause is not None:
                cause = cause.cause
            first = next((ln for ln in (cause.message or "").splitlines() if ln.strip() and ln.strip()[0] not in "^~"), "")
            return f"{ev.step_key} failed: {first.strip() or cause.cls_name} (details: 'ds4h ui', run logs)"
    return "the run failed (see 'ds4h ui' for its logs)"


def _blocking_failure(result: Result) -> str | None:
    """A step that failed as a blocking check would (publishing found an identifier in a text file):
    the check and why, else None."""
    for ev in result.get_step_failure_events():
        data = ev.step_failure_data.user_failure_data
        if data is not None and BLOCKED_CHECK in (data.metadata or {}):
            check = data.metadata[BLOCKED_CHECK]
            return f"{getattr(check, 'value', check)} ({data.description})"
    return None


def _select(defs: dg.Definitions, assets: list[dg.AssetsDefinition], selection: str | None,
            groups: tuple[str, ...]) -> list[dg.AssetsDefinition]:
    """The assets of ``groups`` that the user's selection touches (all of them without a selection)."""
    in_groups = [a for a in assets if any(a.group_names_by_key.get(k) in groups for k in a.keys)]
    if not selection:
        return in_groups
    sel = dg.AssetSelection.from_string(selection)
    keys = sel.resolve(defs.resolve_asset_graph())
    return [a for a in in_groups if any(k in keys for k in a.keys)]


def blocking_failures(instance: dg.DagsterInstance, defs: dg.Definitions, sites: list[str]) -> list[str]:
    """Blocking site checks whose latest evaluation for a site did not pass (or never ran)."""
    graph = defs.resolve_asset_graph()
    keys = [k for k in graph.asset_check_keys if graph.get_check_spec(k).blocking
            and graph.get(k.asset_key).group_name in SITE_GROUPS]
    storage = instance.event_log_storage
    bad: list[str] = []
    for site in sites:
        latest = storage.get_latest_asset_check_execution_by_key(keys, partition_filter=PartitionKeyFilter(key=site))
        for k in sorted(keys, key=lambda c: (c.asset_key.to_user_string(), c.name)):
            rec = latest.get(k)
            evaluation = rec.event.asset_check_evaluation if rec and rec.event and rec.event.dagster_event else None
            if evaluation is None:
                bad.append(f"{site}: {k.asset_key.to_user_string()}:{k.name} has no result")
            elif not evaluation.passed:
                bad.append(f"{site}: {k.asset_key.to_user_string()}:{k.name} failed")
    return bad


def run_pipeline(cfg: Config, selection: str | None = None, progress: Callable[[str], None] | None = None,
                 *, force: bool = False) -> RunOutcome:
    """Run the sites, then the release and publishing, as the named jobs ``site_job`` (one run per site
    partition) and ``release_job``. Without a selection and without ``force``, a run whose inputs
    equal the newest version's publishes nothing (``unchanged_since``)."""
    say = progress or (lambda _m: None)
    ws = open_workspace(cfg)
    ws.ensure()
    try:
        key = load_key(cfg.project)
    except KeyError_ as e:
        return RunOutcome(OTHER_ERROR, str(e))
    try:
        prepare_dagster_home(ws, cfg)
    except ConfigError as e:
        return RunOutcome(OTHER_ERROR, str(e))
    defs = build_definitions(cfg)
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    site_job, release_job = defs.resolve_job_def("site_job"), defs.resolve_job_def("release_job")
    try:
        site_assets = _select(defs, assets, selection, SITE_GROUPS)
        global_assets = _select(defs, assets, selection, GLOBAL_GROUPS)
    except Exception as e:  # a selection Dagster cannot parse
        return RunOutcome(OTHER_ERROR, f"invalid --select {selection!r}: {str(e).splitlines()[0]}")
    if not site_assets and not global_assets:
        return RunOutcome(OTHER_ERROR, f"--select {selection!r} matches no asset; try 'group:omop' or 'key:raw_*'")
    full_site = len(site_assets) == len(_select(defs, assets, None, SITE_GROUPS))
    full_release = len(global_assets) == len(_select(defs, assets, None, GLOBAL_GROUPS))
    if selection is None and not force:
        inputs = run_inputs(cfg, key.fingerprint)
        same = unchanged_since(ws.dataspace, cfg.release.dataset, inputs["fingerprint"])
        if same is not None:
            return RunOutcome(OK, f"nothing changed since version {same} (same landing files, config, policy, code and "
                              "key): nothing published; add --force to publish a new version anyway",
                              unchanged_since=same)
    outcome = RunOutcome(OK, "")
    with dg.DagsterInstance.get() as instance, contextlib.ExitStack() as stack:
        sub: Submitter | None = None
        if uses_instance_submission(instance):
            try:
                sub = stack.enter_context(submitter(instance))
            except SubmitError as e:
                return RunOutcome(OTHER_ERROR, str(e))
        if site_assets:
            site_keys = None if full_site else [k for a in site_assets for k in a.keys]
            groups = ' -> '.join(sorted({a.group_names_by_key[k] for a in site_assets for k in a.keys},
                                        key=SITE_GROUPS.index))
            results: Iterable[Result]
            if sub is not None:
                say(f"{', '.join(cfg.sites)}: {groups} (queued on the instance)")
                results = sub.wait([sub.submit("site_job", tags={"dagster/partition": site, SITE_TAG: site},
                                               run_config=QUIET, asset_selection=site_keys) for site in cfg.sites])
            else:
                def in_process() -> Iterator[Result]:
                    for site in cfg.sites:
                        say(f"{site}: {groups}")
                        yield site_job.execute_in_process(
                            partition_key=site, instance=instance, raise_on_error=False, run_config=QUIET,
                            asset_selection=site_keys, tags={SITE_TAG: site})
                results = in_process()
            for site, result in zip(cfg.sites, results, strict=False):
                outcome.sites_run.append(site)
                if not result.success:
                    blocked = [f"{site}: {e.asset_key.to_user_string()}:{e.check_name}"
                               + (f" ({e.description})" if e.description else "")
                               for e in result.get_asset_check_evaluations() if not e.passed]
                    if blocked:
                        return RunOutcome(BLOCKED, "blocked: " + ", ".join(blocked) + "; nothing was published",
                                          blocked=blocked, sites_run=outcome.sites_run)
                    return RunOutcome(OTHER_ERROR, f"{site}: {_failure_message(result)}", sites_run=outcome.sites_run)
        if not global_assets:
            outcome.message = f"ran {len(outcome.sites_run)} site(s); nothing published (the selection has no release)"
            return outcome
        blocked = blocking_failures(instance, defs, cfg.sites)
        if blocked:
            return RunOutcome(BLOCKED, "blocked before the release: " + "; ".join(blocked[:5])
                              + (f" (and {len(blocked) - 5} more)" if len(blocked) > 5 else ""), blocked=blocked,
                              sites_run=outcome.sites_run)
        release_keys = None if full_release else [k for a in global_assets for k in a.keys]
        if sub is not None:
            say("release over all sites -> publish (queued on the instance)")
            result = sub.wait([sub.submit("release_job", tags={}, run_config=QUIET, asset_selection=release_keys)])[0]
        else:
            say("release over all sites -> publish")
            result = release_job.execute_in_process(instance=instance, raise_on_error=False, run_config=QUIET,
                                                    asset_selection=release_keys)
        failed_checks = [
            f"{e.asset_key.to_user_string()}:{e.check_name}" + (f" ({e.description})" if e.description else "")
            for e in result.get_asset_check_evaluations()
            if not e.passed and e.asset_check_key in {k for k in defs.resolve_asset_graph().asset_check_keys
                                                      if defs.resolve_asset_graph().get_check_spec(k).blocking}
        ]
        if failed_checks:
            return RunOutcome(BLOCKED, "blocked: " + ", ".join(failed_checks) + "; nothing was published",
                              blocked=failed_checks, sites_run=outcome.sites_run)
        if not result.success:
            blocking = _blocking_failure(result)
            if blocking:
                return RunOutcome(BLOCKED, f"blocked: {blocking}", blocked=[blocking], sites_run=outcome.sites_run)
            return RunOutcome(OTHER_ERROR, _failure_message(result), sites_run=outcome.sites_run)
        pub = None
        for mat in result.asset_materializations_for_node("published_release"):
            pub = {k: v.value for k, v in mat.metadata.items()}
        outcome.published = pub
        outcome.message = "published" if pub else "release built; not published (publish not selected)"
        return outcome
