"""The federation on real Flower processes: the demo's three sites, `ds4h federation up` (a SuperLink and
three SuperNodes on 127.0.0.1), federated counts checked against counts computed here directly from each
site's pseudonymised files (pyarrow, not the node's code), three SecAgg+ rounds of FedAvg against the
pooled fit, a node refusing what its policy does not allow, and `ds4h federation down` leaving no
process and no listening port; then the same with TLS and SuperNode authentication, where a node whose
key was not registered is turned away.

The demo is generated with 12,000 patients (about 2.5 min): at the default 2,000, a site's held-out
rows hold 0 to 2 cases of a complication and no AUC can be compared."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.dataset as pads
import pytest
import yaml
from typer.testing import CliRunner

from pipelines.cli import app

COHORTS = Path(__file__).resolve().parents[1] / "schemas" / "cohorts"
SITES = ["hospital-a", "hospital-b", "hospital-c"]
EVENT_COLUMNS = {"condition_occurrence": "condition_concept_id", "drug_exposure": "drug_concept_id",
                 "measurement": "measurement_concept_id", "procedure_occurrence": "procedure_concept_id",
                 "observation": "observation_concept_id", "device_exposure": "device_concept_id"}

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    r = runner.invoke(app, list(args), catch_exceptions=False)
    return r.exit_code, r.output


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    mp = pytest.MonkeyPatch()
    base = tmp_path_factory.mktemp("fed")
    home = base / "home"
    mp.setenv("DS4H_HOME", str(home))
    mp.setenv("DS4H_KEYS", str(base / "keys"))
    mp.setenv("DAGSTER_HOME", str(home / "dagster"))
    mp.delenv("DS4H_CONFIG", raising=False)
    try:
        code, out = invoke("demo", "--patients", "12000")
        assert code == 0, out
        code, out = invoke("federation", "up", "--json")
        assert code == 0, out
        state = json.loads(out)
        yield {"home": home, "keys": base / "keys", "state": state}
    finally:
        invoke("federation", "down")
        mp.undo()


@pytest.fixture(autouse=True)
def _in_the_federation_workspace(isolated_env: Path, fed: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """conftest gives every test a fresh $DS4H_HOME: these tests work in the module's workspace."""
    monkeypatch.setenv("DS4H_HOME", str(fed["home"]))
    monkeypatch.setenv("DS4H_KEYS", str(fed["keys"]))
    monkeypatch.setenv("DAGSTER_HOME", str(fed["home"] / "dagster"))


def _direct_count(home: Path, site: str, concepts: set[int]) -> int:
    persons: set[int] = set()
    for table, column in EVENT_COLUMNS.items():
        folder = home / "lake" / "pseudo" / table / f"site={site}"
        if not folder.exists():
            continue
        t = pads.dataset(str(folder), format="parquet").to_table(columns=["person_id", column])
        for pid, cid in zip(t.column("person_id").to_pylist(), t.column(column).to_pylist(), strict=True):
            if cid in concepts:
                persons.add(pid)
    return len(persons)


def _concepts(path: Path) -> set[int]:
    from transforms.conceptsets import read_concept_set, resolve
    from transforms.vocabulary import load_vocabulary

    vocab = load_vocabulary()
    return set(resolve(read_concept_set(path), vocab.ancestor, vocab.maps_to.select("concept_id_1", "concept_id_2")))


def test_up_starts_a_superlink_and_one_node_per_site(fed: dict[str, Any]) -> None:
    roles = [p["role"] for p in fed["state"]["processes"]]
    assert roles == ["superlink", *[f"node {s}" for s in SITES]]
    code, out = invoke("federation", "status", "--json")
    assert code == 0
    status = json.loads(out)
    assert status["up"] and all(p["running"] and p["listening"] for p in status["processes"])
    assert status["superlink"].startswith("127.0.0.1:")


@pytest.mark.parametrize("concept_set", ["type-2-diabetes.json", "diabetic-retinopathy.json", "breast-cancer.json"])
def test_federated_count_is_the_sum_of_the_sites(fed: dict[str, Any], concept_set: str) -> None:
    home = fed["home"]
    k = yaml.safe_load((home / "federation" / "policy" / "hospital-a.yaml").read_text())["min_cell"]
    code, out = invoke("federate", "count", str(COHORTS / concept_set), "--json")
    assert code == 0, out
    result = json.loads(out)
    assert set(result) == {"total", "sites"} and set(result["sites"]) == set(SITES)
    concepts = _concepts(COHORTS / concept_set)
    direct = {s: _direct_count(home, s, concepts) for s in SITES}
    for site, n in direct.items():
        assert result["sites"][site] == (None if 0 < n < k else n), (site, n, result)
    if all(v is not None for v in result["sites"].values()):
        assert result["total"] == sum(direct.values())
    else:
        assert result["total"] is None  # else the total minus the others gives the withheld site away


def _counts(value: Any) -> Iterator[int]:
    """Every count-like number in an answer (persons, at_risk, deaths) wherever it sits."""
    if isinstance(value, dict):
        for key, v in value.items():
            if key in {"persons", "at_risk", "deaths", "cohort_persons"} and isinstance(v, int):
                yield v
            else:
                yield from _counts(v)
    elif isinstance(value, list):
        for v in value:
            yield from _counts(v)


@pytest.mark.parametrize("analysis", ["characterise", "oncology"])
def test_site_aggregates_never_hold_a_cell_below_k(fed: dict[str, Any], analysis: str) -> None:
    k = yaml.safe_load((fed["home"] / "federation" / "policy" / "hospital-a.yaml").read_text())["min_cell"]
    code, out = invoke("federate", analysis, "--json")
    assert code == 0, out
    result = json.loads(out)
    assert set(result["sites"]) == set(SITES) and not result["refused"]
    counts = list(_counts(result["sites"]))
    assert counts and all(n == 0 or n >= k for n in counts)


def test_three_secagg_rounds_match_the_pooled_fit(fed: dict[str, Any]) -> None:
    code, out = invoke("federate", "train", "t2dm-complications", "--outcome", "retinopathy", "--rounds", "3",
                       "--secagg", "--json")
    assert code == 0, out
    result = json.loads(out)
    assert set(result) == {"federated_auc", "pooled_auc", "sites", "rounds", "seconds", "epsilon"}
    assert result["rounds"] == 3 and result["epsilon"] is None and result["seconds"] > 0
    assert set(result["sites"]) == set(SITES)
    assert result["pooled_auc"] is not None and result["federated_auc"] is not None
    assert 0.5 < result["pooled_auc"] <= 1.0
    assert abs(result["federated_auc"] - result["pooled_auc"]) <= 0.03, result
    # every site audited each request; the audit log holds aggregates, never a person id or a vector
    home = fed["home"]
    for site in SITES:
        lines = [json.loads(x) for x in (home / "accounting" / "federated" / f"site={site}" / "audit.jsonl")
                 .read_text().splitlines()]
        fits = [x for x in lines if x["analysis"] == "fit" and x["status"] == "answered"]
        assert len(fits) == 3
        assert "person_id" not in json.dumps(lines)


def test_a_node_refuses_what_its_policy_does_not_allow(fed: dict[str, Any]) -> None:
    home = fed["home"]
    policy_path = home / "federation" / "policy" / "hospital-c.yaml"
    original = policy_path.read_text()
    policy = yaml.safe_load(original)
    policy["allow"] = ["characterise"]
    policy_path.write_text(yaml.safe_dump(policy))
    try:
        code, out = invoke("federate", "count", str(COHORTS / "type-2-diabetes.json"), "--json")
    finally:
        policy_path.write_text(original)
    assert code == 0, out
    result = json.loads(out)
    assert result["sites"]["hospital-c"] is None and result["total"] is None
    assert result["sites"]["hospital-a"] is not None
    audit = (home / "accounting" / "federated" / "site=hospital-c" / "audit.jsonl").read_text().splitlines()
    last = json.loads(audit[-1])
    assert last["analysis"] == "count" and last["status"] == "refused"


def test_down_leaves_no_process_and_no_port(fed: dict[str, Any]) -> None:
    from pipelines.federation.runtime import descendants

    procs = fed["state"]["processes"]
    spawned = {d for p in procs for d in descendants(p["pid"])}
    code, out = invoke("federation", "down")
    assert code == 0, out
    for pid in [p["pid"] for p in procs] + sorted(spawned):
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z", pid
    for p in procs:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", p["port"])) != 0, p
    code, out = invoke("federation", "status", "--json")
    assert json.loads(out)["up"] is False
    code, out = invoke("federate", "count", str(COHORTS / "type-2-diabetes.json"))
    assert code == 1 and "ds4h federation up" in out and "Traceback" not in out


def test_tls_and_node_authentication(fed: dict[str, Any]) -> None:
    home = fed["home"]
    code, out = invoke("federation", "up", "--tls", "--json")
    assert code == 0, out
    state = json.loads(out)
    try:
        assert state["tls"] is True
        code, out = invoke("federate", "count", str(COHORTS / "type-2-diabetes.json"), "--json")
        assert code == 0, out
        assert set(json.loads(out)["sites"]) == set(SITES)
        log = Path(state["processes"][0]["log"]).read_text(encoding="utf-8", errors="replace")
        assert "Uvicorn running on https://" in log
        # a node with a key the coordinator never registered is turned away by the SuperLink
        ds4h = str(Path(sys.executable).parent / "ds4h")
        code = subprocess.run([ds4h, "node", "keys", "--site", "hospital-a", "--out", str(home / "rogue")],
                              capture_output=True, check=False, timeout=60).returncode
        assert code == 0
        assert oct((home / "rogue" / "hospital-a").stat().st_mode & 0o777) == "0o600"
        from pipelines.federation.runtime import free_port

        # output to a file, not a pipe: the node's SuperExec child would hold a pipe open after the node exits
        with (home / "rogue" / "node.log").open("wb") as fh:
            rogue = subprocess.run([ds4h, "node", "start", "--site", "hospital-a", "--superlink", state["superlink"],
                                    "--root-certificates", str(home / "federation" / "certs" / "ca.pem"),
                                    "--auth-key", str(home / "rogue" / "hospital-a"), "--port", str(free_port())],
                                   stdout=fh, stderr=subprocess.STDOUT, check=False, timeout=300)
        assert rogue.returncode != 0
        log = Path(state["processes"][0]["log"]).read_text(encoding="utf-8", errors="replace")
        assert "Attempted to register SuperNode with public key" in log
    finally:
        code, out = invoke("federation", "down")
    assert code == 0, out
    for p in state["processes"]:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", p["port"])) != 0, p


def test_a_node_needs_tls_outside_a_demo(fed: dict[str, Any]) -> None:
    code, out = invoke("node", "start", "--site", "hospital-a", "--superlink", "127.0.0.1:9")
    assert code == 1 and "--root-certificates" in out and "Traceback" not in out
