"""The Dagster instance on PostgreSQL (dagster-postgres): a real server started here on 127.0.0.1.

Debian's ``postgresql`` package (``make test`` installs it): initdb + pg_ctl in a temporary folder, as the
unprivileged user ``postgres`` when the tests run as root (initdb and postgres refuse root).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from pipelines.cli import app

PASSWORD = "s3cret-Pg-pw-4711"
USER, DB = "ds4h", "dagster_ds4h"
runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    r = runner.invoke(app, list(args), catch_exceptions=False)
    return r.exit_code, r.output


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def postgres() -> Iterator[dict[str, Any]]:
    """A PostgreSQL server on 127.0.0.1 with user ds4h (password auth) and database dagster_ds4h."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.fail("PostgreSQL is not installed: 'make test' installs it (apt-get install postgresql)")
    as_root = os.geteuid() == 0
    run_as: dict[str, Any] = {}
    root = Path(tempfile.mkdtemp(prefix="ds4h-pg-", dir="/tmp"))
    if as_root:
        import pwd

        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        run_as = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    data, pwfile, log = root / "data", root / "pw", root / "server.log"
    pwfile.write_text(PASSWORD + "\n")
    if as_root:
        os.chown(pwfile, run_as["user"], run_as["group"])
    pwfile.chmod(0o600)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C", "LC_ALL": "C"}

    def pg(*cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False,
                              **run_as)

    port = _free_port()
    r = pg(str(bindir / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={pwfile}", "--auth-host=scram-sha-256",
           "--auth-local=trust", "-E", "UTF8", "--no-locale")
    assert r.returncode == 0, r.stderr
    # -w: pg_ctl waits until the server accepts connections
    r = pg(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
           f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off", "start")
    assert r.returncode == 0, r.stderr + (log.read_text() if log.exists() else "")
    try:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user=USER, password=PASSWORD, dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {DB}")
        conn.close()
        yield {"port": port, "url": f"postgresql://{USER}@127.0.0.1:{port}/{DB}"}
    finally:
        r = pg(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)
        assert r.returncode == 0, r.stderr


def _query(port: int, sql: str) -> list[tuple[Any, ...]]:
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=port, user=USER, password=PASSWORD, dbname=DB)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


def test_demo_publishes_with_the_instance_on_postgres(postgres: dict[str, Any], isolated_env: Path,
                                                     monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import dagster as dg

    home = isolated_env
    # the password reaches Dagster only through this environment variable (read from password_file)
    monkeypatch.setenv("DS4H_POSTGRES_PASSWORD", "")
    code, out = invoke("init")
    assert code == 0, out
    pwfile = tmp_path / "pg-password"
    pwfile.write_text(PASSWORD + "\n")
    pwfile.chmod(0o644)
    cfg_path = home / "ds4h.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["instance"] = {"postgres_url": postgres["url"], "password_file": str(pwfile),
                       "run_queue": {"max_concurrent_runs": 3, "per_site_limit": 1}}
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    code, out = invoke("run")
    assert code == 1 and "readable by others" in out and "chmod 600" in out, out
    pwfile.chmod(0o600)

    code, out = invoke("init")
    assert code == 0 and "PostgreSQL storage" in out, out
    written = yaml.safe_load((home / "dagster" / "dagster.yaml").read_text())
    assert written["storage"]["postgres"]["postgres_db"] == {
        "username": USER, "password": {"env": "DS4H_POSTGRES_PASSWORD"}, "hostname": "127.0.0.1", "db_name": DB,
        "port": postgres["port"], "scheme": "postgresql+psycopg2"}
    assert written["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert written["run_coordinator"]["config"]["tag_concurrency_limits"] == [
        {"key": "ds4h/site", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}]

    assert (home / "dagster" / "workspace.yaml").exists()

    # no daemon serves the queue yet: 'ds4h run' says so instead of queueing runs nobody takes
    code, out = invoke("run")
    assert code == 1 and "no dagster-daemon serves it" in " ".join(out.split()), out

    with _daemon(home / "dagster", {"DS4H_CONFIG": str(cfg_path), "DS4H_POSTGRES_PASSWORD": PASSWORD}):
        t0 = time.monotonic()
        code, demo_out = invoke("demo")
        print(f"demo through the queue: {time.monotonic() - t0:.1f} s")
        assert code == 0 and "Published omop-demo v1" in demo_out, demo_out
        with dg.DagsterInstance.get() as instance:
            queued = instance.get_runs()
            enqueued = {r.run_id: instance.all_logs(r.run_id, of_type=dg.DagsterEventType.RUN_ENQUEUED) for r in queued}
        assert len(enqueued) == 4 and all(enqueued.values()), "every run went through the queue"
        assert all(r.tags.get("ds4h/site") == r.tags.get("dagster/partition") for r in queued)
        # the release alone: 'ds4h run' reads the sites' blocking checks from PostgreSQL (no site runs now)
        code, out = invoke("run", "--force", "--select", "group:release or group:products or group:publish")
        assert code == 0 and "Published omop-demo v2" in out, out

    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        runs = instance.get_runs()
    assert sorted((r.job_name, r.tags.get("dagster/partition")) for r in runs) == [
        ("release_job", None), ("release_job", None), ("site_job", "hospital-a"), ("site_job", "hospital-b"),
        ("site_job", "hospital-c")]
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    # the runs and the asset-check evaluations are in PostgreSQL, nothing in SQLite under DAGSTER_HOME
    assert _query(postgres["port"], "SELECT count(*) FROM runs")[0][0] == 5
    by_site = dict(_query(postgres["port"], "SELECT partition, count(*) FROM asset_check_executions "
                                            "WHERE partition IS NOT NULL GROUP BY partition"))
    assert set(by_site) == {"hospital-a", "hospital-b", "hospital-c"} and min(by_site.values()) > 0, by_site
    assert not list((home / "dagster").rglob("*.db"))
    code, out = invoke("run")
    assert code == 0 and "nothing changed since version 2" in " ".join(out.split()), out

    # a new, empty database: no check result for any site, so the release alone is blocked
    _create_db(postgres["port"], "empty_ds4h")
    cfg["instance"]["postgres_url"] = postgres["url"].rsplit("/", 1)[0] + "/empty_ds4h"
    del cfg["instance"]["run_queue"]  # in this process: the in-process path reads PostgreSQL too
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    code, blocked_out = invoke("run", "--force", "--select", "group:release or group:products or group:publish")
    assert code == 2 and "has no result" in " ".join(blocked_out.split()), blocked_out

    for text in (demo_out, out, blocked_out):
        assert PASSWORD not in text
    for f in (home / "dagster").rglob("*"):
        if f.is_file():
            assert PASSWORD.encode() not in f.read_bytes(), f
    assert stat.S_IMODE(pwfile.stat().st_mode) == 0o600


@contextlib.contextmanager
def _daemon(dagster_home: Path, env: dict[str, str]) -> Iterator[None]:
    """dagster-daemon on the instance (it dequeues and launches the queued runs); stopped on exit."""
    from dagster._daemon.controller import get_daemon_statuses

    log = (dagster_home / "daemon.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "dagster._daemon", "run", "-w", str(dagster_home / "workspace.yaml")],
                            cwd=dagster_home, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        import dagster as dg

        deadline = time.monotonic() + 120
        with dg.DagsterInstance.get() as instance:
            while not get_daemon_statuses(instance, ["QUEUED_RUN_COORDINATOR"])["QUEUED_RUN_COORDINATOR"].healthy:
                assert proc.poll() is None and time.monotonic() < deadline, (dagster_home / "daemon.log").read_text()
                time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        log.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)  # its code server, if it outlived the daemon


def _create_db(port: int, name: str) -> None:
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=port, user=USER, password=PASSWORD, dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    conn.close()


def test_instance_config_refuses_a_password_in_the_url(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from schemas.config import ConfigError, load_config, parse_config

    base = {"sources": [{"site": "a", "path": "landing/a"}]}
    with pytest.raises(ConfigError, match="must not contain a password"):
        parse_config(base | {"instance": {"postgres_url": "postgresql://u:pw@db:5432/x"}}, isolated_env)
    with pytest.raises(ConfigError, match="needs a user, a host and a database"):
        parse_config(base | {"instance": {"postgres_url": "postgresql://db:5432/x"}}, isolated_env)
    with pytest.raises(ConfigError, match=r"run_queue needs instance\.postgres_url"):
        parse_config(base | {"instance": {"run_queue": {}}}, isolated_env)
    path = isolated_env / "ds4h.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(base))
    assert load_config(path).instance.postgres_url is None
    monkeypatch.setenv("DS4H_POSTGRES_URL", "postgresql://dagster@db.example:6543/ds4h")
    assert load_config(path).instance.postgres_url == "postgresql://dagster@db.example:6543/ds4h"
    monkeypatch.setenv("DS4H_POSTGRES_URL", "postgresql://dagster:hunter2@db.example/ds4h")
    with pytest.raises(ConfigError, match="DS4H_POSTGRES_URL: the URL must not contain a password") as e:
        load_config(path)
    assert "hunter2" not in str(e.value)
