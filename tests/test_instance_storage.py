"""The local instance's event log keeps its SQLite connections open (issue 19, item 6): a run opens a
few connections instead of two or three per event, and every event stays readable."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from pipelines import instance_storage
from pipelines.environment import instance_yaml, prepare_dagster_home
from pipelines.instance_storage import PooledSqliteEventLogStorage
from schemas.config import load_config
from transforms.storage import Workspace

LOG_LINES = 30


@dg.asset
def probe(context: dg.AssetExecutionContext) -> dg.MaterializeResult:  # type: ignore[type-arg]
    for i in range(LOG_LINES):
        context.log.info(f"line {i}")
    return dg.MaterializeResult(metadata={"rows": 7})


@dg.asset_check(asset=probe, blocking=True)
def probe_ok() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True, metadata={"tables": "a, b"})


def _home(tmp_path: Path) -> Path:
    cfg_path = tmp_path / "ds4h.yaml"
    cfg_path.write_text(yaml.safe_dump({"sources": [{"site": "a", "path": "landing/a"}]}))
    return prepare_dagster_home(Workspace(tmp_path), load_config(cfg_path))


@pytest.fixture
def connects() -> Iterator[list[str]]:
    """Paths of the SQLite databases each new DBAPI connection opens, while the test runs."""
    opened: list[str] = []

    def listen(dbapi_connection: Any, _record: Any) -> None:
        rows = dbapi_connection.execute("PRAGMA database_list").fetchall()
        opened.append(next(str(r[2]) for r in rows if r[1] == "main"))

    sa.event.listen(sa.engine.Engine, "connect", listen)
    yield opened
    sa.event.remove(sa.engine.Engine, "connect", listen)


def test_the_workspace_instance_uses_the_pooled_event_log(tmp_path: Path) -> None:
    _home(tmp_path)
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
        assert instance.event_log_storage._base_dir == str(tmp_path / "dagster" / "history" / "runs")


def test_a_run_opens_a_few_connections_and_its_events_stay_readable(tmp_path: Path, connects: list[str]) -> None:
    home = _home(tmp_path)
    runs_dir = str(home / "history" / "runs") + "/"
    with dg.DagsterInstance.get() as instance:
        result = dg.materialize([probe, probe_ok], instance=instance)
        assert result.success
        pooled = [p for p in connects if p.startswith(runs_dir)]
        logs = instance.all_logs(result.run_id)
        assert sum(1 for e in logs if e.user_message.startswith("line ")) == LOG_LINES
        record = instance.get_latest_materialization_event(dg.AssetKey("probe"))
        assert record is not None and record.asset_materialization is not None
        assert record.asset_materialization.metadata["rows"].value == 7
        check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey("probe"), "probe_ok")])
        assert check[dg.AssetCheckKey(dg.AssetKey("probe"), "probe_ok")].status.value == "SUCCEEDED"
    # more than LOG_LINES events were stored; Dagster's own storage opens 1-3 connections for each
    assert len(logs) > LOG_LINES
    assert len(pooled) <= 16, pooled

    # the same run on Dagster's own SQLite event log, for comparison: a connection per write
    connects.clear()
    (tmp_path / "plain").mkdir()
    plain = dg.DagsterInstance.local_temp(str(tmp_path / "plain"))
    with plain:
        assert dg.materialize([probe, probe_ok], instance=plain).success
    assert len([p for p in connects if p.startswith(str(tmp_path / "plain"))]) > LOG_LINES


def test_connections_are_kept_for_the_last_databases_only(tmp_path: Path) -> None:
    _home(tmp_path)
    with dg.DagsterInstance.get() as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, PooledSqliteEventLogStorage)
        run_ids = [dg.materialize([probe], instance=instance).run_id for _ in range(storage.keep + 2)]
        assert len(storage._engines) <= storage.keep
        for run_id in run_ids:  # a run whose engine was dropped is read through a new one
            assert sum(1 for e in instance.all_logs(run_id) if e.user_message.startswith("line ")) == LOG_LINES


def test_wipe_closes_the_connections_before_deleting_the_databases(tmp_path: Path) -> None:
    home = _home(tmp_path)
    with dg.DagsterInstance.get() as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, PooledSqliteEventLogStorage)
        first = dg.materialize([probe], instance=instance).run_id
        instance.wipe()
        assert set(storage._engines) <= {"index"}  # emptying the index opened it again
        assert not (home / "history" / "runs" / f"{first}.db").exists()
        again = dg.materialize([probe], instance=instance)
        assert again.success and len(instance.all_logs(again.run_id)) > LOG_LINES


def test_a_forked_child_never_uses_its_parents_connections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _home(tmp_path)
    with dg.DagsterInstance.get() as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, PooledSqliteEventLogStorage)
        run_id = dg.materialize([probe], instance=instance).run_id
        parents = dict(storage._engines)
        assert parents
        disposed: list[bool] = []
        for engine in parents.values():
            monkeypatch.setattr(engine, "dispose", lambda close=True: disposed.append(close))
        monkeypatch.setattr(instance_storage.os, "getpid", lambda: -1)  # as in a child after fork()
        assert len(instance.all_logs(run_id)) > LOG_LINES
        assert disposed and not any(disposed)  # dropped without closing the parent's connections
        assert all(engine is not parents.get(shard) for shard, engine in storage._engines.items())


def test_instance_yaml_writes_the_local_storage_unless_the_project_chose_one() -> None:
    written = yaml.safe_load(instance_yaml(None, "telemetry:\n  enabled: false\n"))
    assert written["storage"]["custom"] == {"module": "pipelines.instance_storage", "class": "Ds4hSqliteStorage",
                                            "config": {"base_dir": {"env": "DAGSTER_HOME"}}}
    assert written["telemetry"] == {"enabled": False}
    own = "storage:\n  sqlite:\n    base_dir: /srv/dagster\n"
    assert instance_yaml(None, own) == own
