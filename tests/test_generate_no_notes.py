"""`ds4h generate --no-notes`: an extract without notes.csv, marked absent in the config, runs its site
stages without blocking or expecting notes; a notes.csv there despite the mark is a clear error."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from pipelines.cli import app
from schemas.config import load_config
from transforms.ingest import ExtractError, ingest_site
from transforms.storage import Workspace, read_partition

from .conftest import SHARED

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    r = runner.invoke(app, list(args), catch_exceptions=False, terminal_width=400)
    return r.exit_code, r.output


@pytest.fixture(scope="module")
def no_notes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    if not SHARED.exists():
        pytest.skip("../shared is not beside this checkout")
    mp = pytest.MonkeyPatch()
    base = tmp_path_factory.mktemp("nonotes")
    home = base / "home"
    mp.setenv("DS4H_HOME", str(home))
    mp.setenv("DS4H_KEYS", str(base / "keys"))
    mp.setenv("DAGSTER_HOME", str(home / "dagster"))
    mp.delenv("DS4H_CONFIG", raising=False)
    try:
        assert invoke("init")[0] == 0
        code, out = invoke("generate", "--patients", "120", "--sites", "2", "--seed", "3", "--dirty", "0.03")
        assert code == 0, out
        with_notes = {p.name: p.read_bytes() for p in (home / "landing" / "hospital-a").glob("*.csv")}
        code, out = invoke("generate", "--patients", "120", "--sites", "2", "--seed", "3", "--dirty", "0.03", "--no-notes")
        assert code == 0, out
        cfg_path = home / "ds4h.yaml"
        written = yaml.safe_load(cfg_path.read_text())
        cfg = dict(written)
        cfg["sources"] = [s for s in written["sources"] if s["site"] == "hospital-a"]
        cfg["vocabulary"] = str(SHARED / "data" / "vocabulary-demo")
        cfg["quality"] = {"dqd_blocks_on_fatal": False}
        cfg["sources"][0]["persons_per_bucket"] = 40  # several buckets
        cfg_path.write_text(yaml.safe_dump(cfg))
        mp.setenv("DS4H_CONFIG", str(cfg_path))
        from pipelines.definitions import build_definitions

        defs = build_definitions(load_config(cfg_path))
        assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)
                  and set(a.group_names_by_key.values()) <= {"raw", "omop", "pseudo"}]
        with dg.DagsterInstance.ephemeral() as instance:
            result = dg.materialize(assets, partition_key="hospital-a", instance=instance,
                                    resources=dict(defs.resources or {}), raise_on_error=False)
            checks = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in result.get_asset_check_evaluations()}
            logs = [e.message for e in instance.all_logs(result.run_id) if e.message]
        yield {"home": home, "written": written, "out": out, "success": result.success, "checks": checks, "logs": logs,
               "with_notes": with_notes}
    finally:
        mp.undo()


def test_generate_no_notes_writes_no_notes_and_marks_them_absent(no_notes: dict[str, object]) -> None:
    home = no_notes["home"]
    assert isinstance(home, Path)
    for site in ("hospital-a", "hospital-b"):
        landing = home / "landing" / site
        assert not (landing / "notes.csv").exists()  # the earlier run's notes are gone too
        assert not (landing / "_truth" / "notes.jsonl").exists()
        assert (landing / "stays.csv").is_file()
    written = no_notes["written"]
    assert isinstance(written, dict)
    absent = {s["site"]: s.get("absent") for s in written["sources"]}
    assert absent["hospital-a"] == ["notes"] and absent["hospital-b"] == ["notes"]
    assert absent["hospital-c"] is None  # not generated this time: left as it was
    assert "notes marked absent at hospital-a, hospital-b" in str(no_notes["out"])
    # the other files are the bytes written with notes (the notes draw from their own streams)
    with_notes = no_notes["with_notes"]
    assert isinstance(with_notes, dict)
    now = {p.name: p.read_bytes() for p in (home / "landing" / "hospital-a").glob("*.csv")}
    assert set(with_notes) - set(now) == {"notes.csv"}
    assert all(now[n] == with_notes[n] for n in now)


def test_site_stages_run_without_notes(no_notes: dict[str, object]) -> None:
    assert no_notes["success"], no_notes["checks"]
    checks = no_notes["checks"]
    assert isinstance(checks, dict)
    assert checks[("raw_patients", "extract_checks")]
    assert all(checks.values()), [k for k, v in checks.items() if not v]
    logs = no_notes["logs"]
    assert isinstance(logs, list)
    assert not [m for m in logs if "notes.csv is missing" in m]  # not expected, so not reported missing
    ws = Workspace(no_notes["home"])  # type: ignore[arg-type]
    from pipelines.assets import inventory_path
    from transforms.inventory import Inventory

    inventory = Inventory.from_json(inventory_path(ws, "hospital-a").read_text())
    assert inventory.missing == [] and not inventory.unexpected and "patients.csv" in inventory.read
    assert len(list(ws.lake("raw", "patients", "hospital-a").glob("*.parquet"))) >= 2  # in buckets
    assert read_partition(ws.lake("raw", "notes", "hospital-a")).height == 0
    assert read_partition(ws.lake("omop", "note", "hospital-a")).height == 0
    assert read_partition(ws.lake("omop", "person", "hospital-a")).height > 50
    assert read_partition(ws.lake("pseudo", "note", "hospital-a")).height == 0
    acc = read_partition(ws.accounting("raw", "hospital-a")).filter(pl.col("table") == "notes")
    assert acc["rows"].sum() == 0


def test_notes_declared_absent_but_present_is_a_clear_error(tmp_path: Path) -> None:
    from generator.hospital import default_site_specs, generate

    generate(tmp_path, 20, default_site_specs(1), seed=1, dirty=0.0)
    folder = tmp_path / "hospital-a"
    with pytest.raises(ExtractError, match="declares notes absent: remove 'notes' from the source's 'absent'"):
        ingest_site("hospital-a", folder, today=dt.date.today(), absent=("notes",))
    (folder / "notes.csv").unlink()
    r = ingest_site("hospital-a", folder, today=dt.date.today(), absent=("notes",))
    assert r.missing_files == [] and r.entities["notes"].table.height == 0
    r = ingest_site("hospital-a", folder, today=dt.date.today())
    assert r.missing_files == ["notes.csv"]  # not declared absent: reported missing, as before


def test_generate_fewer_sites_than_the_config_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`ds4h init` lists three sites; generating one names the two left without an extract (which
    `ds4h run` would stop on) and how to fix it."""
    monkeypatch.setenv("DS4H_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DS4H_KEYS", str(tmp_path / "keys"))
    monkeypatch.delenv("DS4H_CONFIG", raising=False)
    assert invoke("init")[0] == 0
    code, output = invoke("generate", "--patients", "20", "--sites", "1", "--seed", "3")
    assert code == 0
    assert "the config also lists hospital-b, hospital-c, with no extract" in output
    assert "generate with --sites 3" in output
    code, output = invoke("generate", "--patients", "20", "--sites", "3", "--seed", "3")
    assert code == 0 and "with no extract" not in output
