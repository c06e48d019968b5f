"""Process environment for Dagster: the instance lives in the workspace ($DS4H_HOME/dagster).

Its dagster.yaml is the project's dagster.yaml, plus, when the config has ``instance.postgres_url``, the
PostgreSQL storage of dagster-postgres (the password as an environment reference, never its value) and the
run queue of ``instance.run_queue``.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from typing import Any, Literal

import yaml

from schemas.config import Config, ConfigError, Instance, postgres_parts
from transforms.storage import Workspace

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SITE_TAG = "ds4h/site"


def _password_into_env(inst: Instance) -> None:
    """Make the password available to Dagster in ``inst.password_env`` (read from password_file if given)."""
    if inst.password_file is not None:
        f = inst.password_file
        try:
            mode = f.stat().st_mode
        except OSError:
            raise ConfigError(f"instance.password_file {f} does not exist") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"instance.password_file {f} is readable by others: run 'chmod 600 {f}'")
        lines = f.read_text(encoding="utf-8").splitlines()
        os.environ[inst.password_env] = lines[0] if lines else ""
    elif inst.password_env not in os.environ:
        raise ConfigError(f"the PostgreSQL password is not set: export {inst.password_env} (instance.password_env) "
                          "or set instance.password_file")


_STORAGE_KEYS = frozenset({"storage", "run_storage", "event_log_storage", "schedule_storage"})  # dagster.yaml's


def instance_yaml(cfg: Config | None, template: str) -> str:
    """The instance's dagster.yaml: the project's template plus the storage and run queue of ``cfg.instance``."""
    inst = cfg.instance if cfg is not None else Instance()
    base = yaml.safe_load(template) or {}
    if inst.postgres_url is None:
        if _STORAGE_KEYS & set(base):
            return template  # the project's dagster.yaml chose its storage
        # Dagster's SQLite storage, its event log keeping its connections open (pipelines/instance_storage.py)
        local = {"storage": {"custom": {"module": "pipelines.instance_storage", "class": "Ds4hSqliteStorage",
                                        "config": {"base_dir": {"env": "DAGSTER_HOME"}}}}}
        return (template.rstrip("\n") + "\n\n# written by ds4h: the local SQLite storage (docs/configuration.md)\n"
                + yaml.safe_dump(local, sort_keys=False))
    taken = sorted((_STORAGE_KEYS | {"run_coordinator", "code_servers"}) & set(base))
    if taken:
        raise ConfigError(f"the project's dagster.yaml already sets {', '.join(taken)}: remove it there, or remove "
                          "instance.postgres_url from the ds4h config")
    db: dict[str, Any] = postgres_parts(inst.postgres_url)
    db = {"username": db["username"], "password": {"env": inst.password_env}, "hostname": db["hostname"],
          "db_name": db["db_name"], "port": db["port"],
          # SQLAlchemy 2.1 defaults postgresql:// to psycopg 3; dagster-postgres brings psycopg2
          "scheme": "postgresql+psycopg2"}
    extra: dict[str, Any] = {"storage": {"postgres": {"postgres_db": db}}}
    if inst.run_queue is not None:
        q: dict[str, Any] = {"max_concurrent_runs": inst.run_queue.max_concurrent_runs}
        if inst.run_queue.per_site_limit is not None:
            q["tag_concurrency_limits"] = [{"key": SITE_TAG, "value": {"applyLimitPerUniqueValue": True},
                                            "limit": inst.run_queue.per_site_limit}]
        extra["run_coordinator"] = {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator",
                                    "config": q}
        # 'ds4h run' and the daemon start a code server for the ds4h location: wait for it when they stop
        extra["code_servers"] = {"wait_for_local_processes_on_shutdown": True}
    return (template.rstrip("\n") + "\n\n# written by ds4h from the config's 'instance:' (docs/configuration.md)\n"
            + yaml.safe_dump(extra, sort_keys=False))


_SQLITE_SYNCHRONOUS: dict[str, str] = {}  # instance folder (with a trailing separator) -> PRAGMA synchronous


def _tune_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    """SQLAlchemy ``connect`` listener: a SQLite database in WAL mode under an instance folder gets that
    instance's ``synchronous`` setting. Dagster opens a connection per event (NullPool) and sets WAL on
    its databases; with the default FULL every event waits for an fsync of the WAL."""
    if not _SQLITE_SYNCHRONOUS or not isinstance(dbapi_connection, sqlite3.Connection):
        return
    rows = dbapi_connection.execute("PRAGMA database_list").fetchall()
    path = next((str(r[2]) for r in rows if r[1] == "main"), "")
    sync = next((v for root, v in _SQLITE_SYNCHRONOUS.items() if path.startswith(root)), None)
    if sync is None:
        return
    # NORMAL is safe from corruption only in WAL mode (Dagster's own setting for its storages)
    if str(dbapi_connection.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
        dbapi_connection.execute(f"PRAGMA synchronous={sync}")


def tune_sqlite(home: Path, synchronous: Literal["normal", "full"]) -> None:
    """Apply ``instance.sqlite_synchronous`` to the SQLite databases of the Dagster instance in ``home``
    (run, event log and schedule storage), for the connections this process opens from now on."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    _SQLITE_SYNCHRONOUS[os.path.join(os.path.realpath(home), "")] = synchronous.upper()
    if not event.contains(Engine, "connect", _tune_sqlite_connection):
        event.listen(Engine, "connect", _tune_sqlite_connection)


def prepare_dagster_home(ws: Workspace, cfg: Config | None = None) -> Path:
    """Point DAGSTER_HOME at the workspace and write its dagster.yaml (the project's, plus ``cfg.instance``)."""
    home = ws.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    src = PROJECT_ROOT / "dagster.yaml"
    dst = home / "dagster.yaml"
    template = src.read_text(encoding="utf-8") if src.exists() else ""
    if cfg is not None and cfg.instance.postgres_url is not None:
        _password_into_env(cfg.instance)
    text = instance_yaml(cfg, template)
    if text and (not dst.exists() or dst.read_text(encoding="utf-8") != text):
        dst.write_text(text, encoding="utf-8")
    ws_file = home / "workspace.yaml"
    if {"run_coordinator", "run_launcher"} & set(yaml.safe_load(text) or {}):
        # the code location the daemon launches queued runs from: 'dagster-daemon run -w <this file>'
        ws_text = yaml.safe_dump({"load_from": [{"python_module": {
            "module_name": "pipelines.definitions", "location_name": "ds4h",
            "working_directory": str(PROJECT_ROOT)}}]}, sort_keys=False)
        if not ws_file.exists() or ws_file.read_text(encoding="utf-8") != ws_text:
            ws_file.write_text(ws_text, encoding="utf-8")
    else:
        ws_file.unlink(missing_ok=True)  # written by ds4h for an earlier run queue
    os.environ["DAGSTER_HOME"] = str(home)
    if cfg is None or cfg.instance.postgres_url is None:
        tune_sqlite(home, (cfg.instance if cfg is not None else Instance()).sqlite_synchronous)
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    return home


def open_workspace(cfg: Config | None = None, root: Path | None = None) -> Workspace:
    """The workspace ($DS4H_HOME, or ``root``) with the object store of the config's ``storage:`` block.
    Without ``cfg`` the config is loaded; a workspace whose config does not load is local."""
    from schemas.config import home, load_config

    if cfg is None:
        try:
            cfg = load_config()
        except ConfigError:
            cfg = None
    return Workspace.open(root or home(), cfg.storage if cfg is not None else None)
