"""instance.sqlite_synchronous: the local Dagster instance's SQLite databases sync at checkpoints, not per event."""


from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from pipelines.environment import _SQLITE_SYNCHRONOUS, prepare_dagster_home, tune_sqlite
from schemas.config import load_config
from transforms.storage import Workspace

NORMAL, FULL = 1, 2


@pytest.fixture(autouse=True)
def _forget() -> object:
    saved = dict(_SQLITE_SYNCHRONOUS)
    _SQLITE_SYNCHRONOUS.clear()
    yield
    _SQLITE_SYNCHRONOUS.clear()
    _SQLITE_SYNCHRONOUS.update(saved)


def _synchronous(db: Path, wal: bool = True) -> int:
    engine = sa.create_engine(f"sqlite:///{db}", poolclass=sa.pool.NullPool)
    if wal:
        with engine.connect() as c:
            c.execute(sa.text("PRAGMA journal_mode=WAL"))
    with engine.connect() as c:
        value = int(c.execute(sa.text("PRAGMA synchronous")).scalar_one())
    engine.dispose()
    return value


def test_only_wal_databases_under_the_instance_folder_are_tuned(tmp_path: Path) -> None:
    home, other = tmp_path / "dagster", tmp_path / "dagster-other"
    (home / "history").mkdir(parents=True)
    other.mkdir()
    assert _synchronous(home / "history" / "runs.db") == FULL  # before tuning: SQLite's default
    tune_sqlite(home, "normal")
    assert _synchronous(home / "history" / "runs.db") == NORMAL
    assert _synchronous(home / "rollback.db", wal=False) == FULL  # NORMAL is only safe in WAL mode
    assert _synchronous(other / "runs.db") == FULL  # a folder sharing the prefix is not the instance's
    tune_sqlite(home, "full")
    assert _synchronous(home / "history" / "runs.db") == FULL


def test_a_run_uses_the_setting_and_its_events_stay_readable(tmp_path: Path) -> None:
    cfg_path = tmp_path / "ds4h.yaml"
    cfg_path.write_text(yaml.safe_dump({"sources": [{"site": "a", "path": "landing/a"}]}))
    home = prepare_dagster_home(Workspace(tmp_path), load_config(cfg_path))
    seen: list[int] = []

    @dg.asset
    def probe(context: dg.AssetExecutionContext) -> dg.MaterializeResult:  # type: ignore[type-arg]
        context.log.info("probe")
        return dg.MaterializeResult(metadata={"rows": 1})

    with dg.DagsterInstance.get() as instance:
        assert dg.materialize([probe], instance=instance).success
        event_dbs = sorted((home / "history" / "runs").glob("*.db"))
        assert event_dbs
        seen.append(_synchronous(event_dbs[0], wal=False))
        record = instance.get_latest_materialization_event(dg.AssetKey("probe"))
        assert record is not None and record.asset_materialization is not None
        assert record.asset_materialization.metadata["rows"].value == 1
    assert seen == [NORMAL]


def test_the_setting_is_validated(tmp_path: Path) -> None:
    cfg_path = tmp_path / "ds4h.yaml"
    cfg_path.write_text(yaml.safe_dump({"sources": [{"site": "a", "path": "landing/a"}],
                                        "instance": {"sqlite_synchronous": "off"}}))
    with pytest.raises(Exception, match="sqlite_synchronous"):
        load_config(cfg_path)
