"""A steward's decisions: approve with a summary and a confirmation, reject, revoke; LATEST, the
catalogue, the exports and verify follow them. A version's files never change."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.publish import (
    PublishError,
    approve,
    approved_versions,
    publish_release,
    reject,
    revoke,
    version_state,
)

runner = CliRunner()

EXTRA = {"project": "lu-2026", "key_fingerprint": "0" * 32, "mode": "anonymised",
         "policy": {"k": 5}, "risk": {"summary": {"k": 5, "persons": 5, "persons_released": 5, "levels": {}},
                                      "after": {"prosecutor_max": 0.2, "prosecutor_avg": 0.1}, "passed": True}}


def _tables() -> dict[str, pl.DataFrame]:
    person = pl.DataFrame({"person_id": [1, 2, 3, 4, 5], "gender_concept_id": [8507] * 5,
                           "year_of_birth": [1950] * 5})  # one class of k = 5: verify's k^m audit holds
    day = pl.date(2020, 1, 1)
    visits = pl.DataFrame({"visit_occurrence_id": [10, 11], "person_id": [1, 2]}).with_columns(
        visit_start_date=day, visit_end_date=day)
    periods = pl.DataFrame({"observation_period_id": [1, 2, 3, 4, 5], "person_id": [1, 2, 3, 4, 5]}).with_columns(
        observation_period_start_date=day, observation_period_end_date=day)
    return {"person": person, "visit_occurrence": visits, "observation_period": periods}


@pytest.fixture
def space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace's data space with versions 1, 2 and 3 of a real (non-demo) project, all pending."""
    monkeypatch.setenv("DS4H_HOME", str(tmp_path))
    dataspace = tmp_path / "dataspace"
    for _ in range(3):
        publish_release(dataspace, "omop-lu", _tables(), EXTRA, demo=False)
    return dataspace


def _hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _catalogued(dataspace: Path) -> list[str]:
    return [d["dct:identifier"] for d in json.loads((dataspace / "catalog.jsonld").read_text())["dcat:dataset"]]


def test_approve_reject_revoke_move_latest_and_the_catalogue(space: Path) -> None:
    ds = space / "omop-lu"
    files_before = {v: _hashes(ds / v) for v in ("1", "2", "3")}
    assert [version_state(ds, v) for v in (1, 2, 3)] == ["pending"] * 3 and not (ds / "LATEST").exists()
    approve(space, "omop-lu", 1, by="Jane", reason="read the report")
    approve(space, "omop-lu", 2, by="Jane")
    reject(space, "omop-lu", 3, by="Jane", reason="postcode removed")
    assert (ds / "LATEST").read_text().strip() == "2" and _catalogued(space) == ["omop-lu/1", "omop-lu/2"]
    record = json.loads((ds / "approvals" / "1.json").read_text())
    assert record["by"] == "Jane" and record["reason"] == "read the report" and record["user"] and record["at"]
    with pytest.raises(PublishError, match="rejected"):
        approve(space, "omop-lu", 3, by="Jane")
    with pytest.raises(PublishError, match="already approved"):
        approve(space, "omop-lu", 2, by="Jane")
    with pytest.raises(PublishError, match="only an approved version can be revoked"):
        revoke(space, "omop-lu", 3, by="Jane", reason="x")
    revoke(space, "omop-lu", 2, by="Jane", reason="opt-out received")
    assert version_state(ds, 2) == "revoked" and approved_versions(ds) == [1]
    assert (ds / "LATEST").read_text().strip() == "1" and _catalogued(space) == ["omop-lu/1"]
    revoke(space, "omop-lu", 1, by="Jane", reason="superseded")
    assert not (ds / "LATEST").exists() and _catalogued(space) == []
    # decisions are records beside the versions: no file of a version changed
    assert {v: _hashes(ds / v) for v in ("1", "2", "3")} == files_before


def test_cli_approve_shows_the_summary_and_needs_confirmation(space: Path) -> None:
    r = runner.invoke(app, ["approve", "omop-lu", "1", "--by", "Jane"], input=None)
    # no terminal and no --yes: nothing recorded
    assert r.exit_code == 1 and "--yes" in r.output and "k" in r.output and "data quality" in r.output
    assert version_state(space / "omop-lu", 1) == "pending"
    r = runner.invoke(app, ["approve", "omop-lu", "1", "--by", "Jane", "--reason", "ok", "--yes"])
    assert r.exit_code == 0, r.output
    assert "LATEST is now v1" in r.output and "utility" in r.output and "products" in r.output
    r = runner.invoke(app, ["releases"])
    assert r.exit_code == 0
    lines = {ln.split("│")[2].strip(): ln for ln in r.output.splitlines() if ln.count("│") > 5 and "omop-lu" in ln}
    assert "approved" in lines["1"] and "LATEST" in lines["1"] and "pending" in lines["2"] and "LATEST" not in lines["2"]


def test_cli_reject_needs_a_reason_and_revoked_cannot_be_exported(space: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["reject", "omop-lu", "3", "--by", "Jane", "--yes"])
    assert r.exit_code != 0 and "reason" in r.output.lower()
    assert runner.invoke(app, ["approve", "omop-lu", "2", "--by", "Jane", "--yes"]).exit_code == 0
    r = runner.invoke(app, ["revoke", "omop-lu", "2", "--by", "Jane", "--reason", "opt-out", "--yes"])
    assert r.exit_code == 0 and "LATEST removed" in r.output, r.output
    r = runner.invoke(app, ["connector-export", "omop-lu", "2", "--out", str(tmp_path / "edc")])
    assert r.exit_code == 1 and "revoked" in r.output and not (tmp_path / "edc").exists()
    r = runner.invoke(app, ["verify", "omop-lu", "2"])
    assert r.exit_code == 1 and "revoked" in r.output and "opt-out" in r.output
    r = runner.invoke(app, ["releases"])
    assert "revoked" in r.output


@pytest.fixture
def served(space: Path) -> Iterator[str]:
    """The data space served over HTTP on 127.0.0.1, as a hospital's web server would."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(space)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_verify_a_release_by_url(space: Path, served: str) -> None:
    approve(space, "omop-lu", 1, by="Jane")
    r = runner.invoke(app, ["verify", f"{served}/omop-lu/1/"])
    assert r.exit_code == 0, r.output
    assert "manifest matches the approval by Jane" in r.output
    # a tampered file on the server does not verify
    part = space / "omop-lu" / "1" / "omop" / "person" / "part-0.parquet"
    part.write_bytes(part.read_bytes()[:-10] + b"0123456789")
    r = runner.invoke(app, ["verify", f"{served}/omop-lu/1/"])
    assert r.exit_code == 1 and "BAD" in r.output
    r = runner.invoke(app, ["verify", f"{served}/omop-lu/7/"])
    assert r.exit_code == 1 and "no manifest.json" in r.output


def test_version_flag() -> None:
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.startswith("ds4h ")
