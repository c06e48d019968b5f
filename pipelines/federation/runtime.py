"""The Flower processes of a federation: ``ds4h federation up|status|down`` (the demo: a SuperLink and one
SuperNode per configured site on 127.0.0.1) and ``ds4h node start`` (one hospital's SuperNode, TLS and
SuperNode authentication). State lives under ``$DS4H_HOME/federation/``; ``down`` stops exactly the
processes ``up`` started (and what they spawned), nothing else.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

APP_DIR = Path(__file__).resolve().parent / "app"
CONNECTION = "ds4h"  # the SuperLink connection's name in FLWR_HOME/config.toml


class RuntimeError_(RuntimeError):
    """A federation that cannot be started, reached or stopped; the message says what to do."""


def federation_root(home: Path) -> Path:
    return home / "federation"


def state_path(home: Path) -> Path:
    return federation_root(home) / "state.json"


def flwr_env(home: Path) -> dict[str, str]:
    """The environment of every Flower process and command: telemetry and update checks off, Flower's
    own home under the workspace, and this environment's ``bin`` first on PATH (the SuperLink and
    SuperNodes spawn ``flower-superexec`` by name)."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env["FLWR_TELEMETRY_ENABLED"] = "0"
    env["FLWR_DISABLE_UPDATE_CHECK"] = "1"
    env["FLWR_HOME"] = str(federation_root(home) / "flwr")
    return env


def executable(name: str) -> str:
    path = Path(sys.executable).parent / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if not found:
        raise RuntimeError_(f"{name} is not installed in this environment: run 'make install' (flwr is a dependency)")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def wait_listening(port: int, what: str, log: Path, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not listening(port):
        if proc.poll() is not None:
            raise RuntimeError_(f"{what} exited with code {proc.returncode} before listening on port {port}: "
                                f"see {log}")
        if time.monotonic() > deadline:
            raise RuntimeError_(f"{what} did not listen on port {port} within {timeout:.0f} s: see {log}")
        time.sleep(0.2)


# ---------------------------------------------------------------- processes

def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def descendants(pid: int) -> list[int]:
    kids, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int, marker: str) -> bool:
    """``pid`` runs and is still the Flower process recorded (its command line holds ``marker``): a pid
    reused by another program is never signalled."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and marker in cmdline(pid)


@dataclass(frozen=True)
class Process:
    role: str  # "superlink" or "node <site>"
    pid: int
    port: int
    marker: str
    log: str

    def as_dict(self) -> dict[str, Any]:
        return {"role": self.role, "pid": self.pid, "port": self.port, "marker": self.marker, "log": self.log}


# the Popen objects of the processes this Python process started: kept (a Popen collected while its process
# runs warns) and waited for by ``down`` (no zombie left behind when up and down run in one process)
_STARTED: dict[int, subprocess.Popen[bytes]] = {}


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as fh:
        proc = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True, cwd=str(log.parent))
    _STARTED[proc.pid] = proc
    return proc


def write_connection(home: Path, port: int, root_certificates: Path | None = None) -> Path:
    """FLWR_HOME/config.toml: the ``ds4h`` SuperLink connection that ``flwr run`` uses."""
    folder = federation_root(home) / "flwr"
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["[superlink]", f'default = "{CONNECTION}"', "", f"[superlink.{CONNECTION}]",
             f'address = "127.0.0.1:{port}"']
    lines.append(f'root-certificates = "{root_certificates}"' if root_certificates else "insecure = true")
    path = folder / "config.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def node_config(site: str, home: Path, policy: Path) -> str:
    return f'site="{site}" home="{home}" policy="{policy}"'


def up(home: Path, sites: list[str], policies: dict[str, Path], *, timeout: float = 60.0,
       tls: bool = False, node_keys: Path | None = None) -> dict[str, Any]:
    """Start a SuperLink and one SuperNode per site on 127.0.0.1 (free ports); returns the state.

    With ``tls``, what a real deployment runs: the SuperLink serves TLS with a certificate of a CA made
    here (``federation/certs``), admits only registered SuperNodes (``--enable-supernode-auth``), and
    each node verifies the SuperLink with the CA and authenticates with its own key (made under
    ``node_keys``, registered with ``flwr supernode register``)."""
    current = read_state(home)
    if current and any(alive(p["pid"], p["marker"]) for p in current["processes"]):
        raise RuntimeError_("a federation is already up in this workspace ('ds4h federation status'; "
                            "'ds4h federation down' stops it)")
    root = federation_root(home)
    logs = root / "logs"
    env = flwr_env(home)
    started: list[Process] = []
    try:
        port = free_port()
        log = logs / "superlink.log"
        security = ["--insecure"]
        ca: Path | None = None
        if tls:
            from pipelines.federation.tls import make_node_keys, make_superlink_certs

            ca, _, cert, key = make_superlink_certs(root / "certs", ["127.0.0.1", "localhost"])
            security = ["--ssl-ca-certfile", str(ca), "--ssl-certfile", str(cert), "--ssl-keyfile", str(key),
                        "--enable-supernode-auth"]
        args = [executable("flower-superlink"), *security, "--host", "127.0.0.1", "--port", str(port),
                "--database", str(root / "superlink.db"), "--disable-runtime-dependency-installation"]
        proc = _spawn(args, env, log)
        started.append(Process("superlink", proc.pid, port, "flower-superlink", str(log)))
        _save(home, started, port, tls)
        wait_listening(port, "the SuperLink", log, proc, timeout)
        write_connection(home, port, ca)
        for site in sites:
            node_security = ["--insecure"]
            if tls:
                assert ca is not None and node_keys is not None
                private, public = make_node_keys(node_keys, site)
                register_node(home, public)
                node_security = ["--root-certificates", str(ca), "--auth-supernode-private-key", str(private)]
            node_port = free_port()
            log = logs / f"node-{site}.log"
            args = [executable("flower-supernode"), *node_security, "--superlink", f"127.0.0.1:{port}",
                    "--node-config", node_config(site, home, policies[site]), "--host", "127.0.0.1",
                    "--port", str(node_port)]
            proc = _spawn(args, env, log)
            started.append(Process(f"node {site}", proc.pid, node_port, "flower-supernode", str(log)))
            _save(home, started, port, tls)
            wait_listening(node_port, f"the SuperNode of {site}", log, proc, timeout)
    except BaseException:
        down(home)
        raise
    state = read_state(home)
    assert state is not None
    return state


def register_node(home: Path, public_key: Path) -> None:
    """Admit a SuperNode's public key at the SuperLink (``flwr supernode register``, the Control API)."""
    proc = subprocess.run([executable("flwr"), "supernode", "register", str(public_key), CONNECTION],
                          env=flwr_env(home), capture_output=True, text=True, check=False, timeout=120)
    if proc.returncode != 0:
        said = (proc.stdout + proc.stderr).strip().splitlines()
        raise RuntimeError_(f"could not register {public_key.name} at the SuperLink (exit {proc.returncode})"
                            + (f": {said[-1]}" if said else ""))


def _save(home: Path, processes: list[Process], port: int, tls: bool = False) -> None:
    path = state_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"superlink": f"127.0.0.1:{port}", "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
             "tls": tls, "processes": [p.as_dict() for p in processes]}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_state(home: Path) -> dict[str, Any] | None:
    path = state_path(home)
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def status(home: Path) -> dict[str, Any]:
    state = read_state(home)
    if state is None:
        return {"up": False, "superlink": None, "processes": []}
    procs = [{**p, "running": alive(p["pid"], p["marker"]), "listening": listening(int(p["port"]))}
             for p in state["processes"]]
    return {"up": bool(procs) and all(p["running"] and p["listening"] for p in procs),
            "superlink": state["superlink"], "started": state["started"], "processes": procs}


def down(home: Path, *, grace: float = 10.0) -> list[dict[str, Any]]:
    """Stop the processes ``up`` started and their children (SuperExec, app processes): SIGTERM, then
    SIGKILL after ``grace`` seconds; returns what was stopped."""
    state = read_state(home)
    if state is None:
        return []
    recorded = [p for p in state["processes"] if alive(p["pid"], p["marker"])]
    targets: list[int] = []
    for p in recorded:
        targets.append(int(p["pid"]))
        targets.extend(d for d in descendants(int(p["pid"])) if "flwr" in cmdline(d) or "flower" in cmdline(d))
    for pid in targets:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_running(pid) for pid in targets):
        time.sleep(0.1)
    for pid in targets:
        if _running(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for pid in targets:  # reap our own children when we started them (same Python process)
        proc = _STARTED.pop(pid, None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(listening(int(p["port"])) for p in state["processes"]):
        time.sleep(0.1)
    state_path(home).unlink(missing_ok=True)
    (federation_root(home) / "flwr" / "config.toml").unlink(missing_ok=True)  # no connection to a stopped SuperLink
    return recorded


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
