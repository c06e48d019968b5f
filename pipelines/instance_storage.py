"""The local (SQLite) storage of the Dagster instance, with the event log's connections kept open.

Dagster's ``SqliteEventLogStorage`` builds a new SQLAlchemy engine and opens a new SQLite connection for
every write (``NullPool``), two or three per event (the run's database, then the index), and a run of
``ds4h run`` stores ~300 events per site and stage: on a 10,000-patient Synthea site that is 2.5 s of
a 17 s run. ``PooledSqliteEventLogStorage`` keeps one engine, with its pooled connection, per database
for the last few databases it used (a run's and the index), so an event costs its inserts and commit.

Same files, same tables and same transactions as Dagster's (each write in its own transaction, under
the storage's lock); a connection is never shared with a forked child (engines are dropped, unclosed,
in a process whose pid differs from their creator's). ``ds4h`` writes this storage into the workspace's
dagster.yaml when the instance is on SQLite (no ``instance.postgres_url``); PostgreSQL is unaffected.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import yaml
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.runs import SqliteRunStorage
from dagster._core.storage.schedules import SqliteScheduleStorage
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS, create_db_conn_string
from dagster._core.storage.sqlite_storage import (
    DagsterSqliteStorage,
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
)
from dagster._serdes import ConfigurableClassData
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import QueuePool

__all__ = ["Ds4hSqliteStorage", "PooledSqliteEventLogStorage"]


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log, with an engine (one pooled connection) kept per database for the
    ``keep`` databases used last."""

    keep = 4  # databases with an open connection: the index and the runs being written or read

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._pid = os.getpid()
        super().__init__(base_dir, inst_data)

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: dict[str, Any]
    ) -> PooledSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        if os.getpid() != self._pid:  # a forked child: the parent's connections are not ours to use or close
            for inherited in self._engines.values():
                inherited.dispose(close=False)
            self._engines.clear()
            self._pid = os.getpid()
        if shard in self._engines:
            engine = self._engines.pop(shard)
        else:
            engine = create_engine(create_db_conn_string(self._base_dir, shard), poolclass=QueuePool,
                                   pool_size=1, max_overflow=4, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
        self._engines[shard] = engine  # the most recently used last
        while len(self._engines) > self.keep:
            self._engines.popitem(last=False)[1].dispose()
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def _close_all(self) -> None:
        with self._db_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()

    def wipe(self) -> None:
        self._close_all()  # the run databases are deleted: no connection may stay open on them
        super().wipe()

    def dispose(self) -> None:
        self._close_all()
        super().dispose()


class Ds4hSqliteStorage(DagsterSqliteStorage):
    """Dagster's SQLite storage (runs, event log, schedules under ``base_dir``), its event log pooled."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self.base_dir = base_dir
        self._run_storage = SqliteRunStorage.from_local(_runs_directory(base_dir))
        self._event_log_storage = PooledSqliteEventLogStorage(_event_logs_directory(base_dir))
        self._schedule_storage = SqliteScheduleStorage.from_local(_schedule_directory(base_dir))
        self._inst_data = inst_data
        super(DagsterSqliteStorage, self).__init__()  # type: ignore[no-untyped-call]  # DagsterStorage's

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData, config_value: dict[str, Any]
    ) -> Ds4hSqliteStorage:
        return cls.from_local(inst_data=inst_data, **config_value)

    @property
    def event_storage_data(self) -> ConfigurableClassData | None:
        return ConfigurableClassData(__name__, PooledSqliteEventLogStorage.__name__,
                                     yaml.dump({"base_dir": _event_logs_directory(self.base_dir)}, default_flow_style=False))
