"""`ds4h run` on one generated site whose medications file was renamed and whose notes file is absent:
the renamed file blocks (exit 2, named), the source's ignore lets it through, the manifest lists only the
files read, and events of quarantined stays are published without their visit."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from pipelines.cli import app
from transforms.storage import Workspace, read_partition

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    r = runner.invoke(app, list(args), catch_exceptions=False, terminal_width=400)
    return r.exit_code, r.output


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    mp = pytest.MonkeyPatch()
    base = tmp_path_factory.mktemp("landing")
    home = base / "home"
    mp.setenv("DS4H_HOME", str(home))
    mp.setenv("DS4H_KEYS", str(base / "keys"))
    mp.setenv("DAGSTER_HOME", str(home / "dagster"))
    mp.delenv("DS4H_CONFIG", raising=False)
    try:
        assert invoke("init")[0] == 0
        code, out = invoke("generate", "--patients", "400", "--sites", "1", "--seed", "5", "--dirty", "0.04")
        assert code == 0, out
        cfg_path = home / "ds4h.yaml"
        cfg = yaml.safe_load(cfg_path.read_text())
        cfg["sources"] = [s for s in cfg["sources"] if s["site"] == "hospital-a"]
        # 400 patients at one site: k = 5 needs fields collapsed; this test is about the landing files
        qis = [{"column": c, "hierarchy": h, "allow_removal": True}
               for c, h in (("year_of_birth", "builtin:year5"), ("sex", "builtin:sex"),
                            ("postcode", "builtin:lu-postcode"), ("death_year", "builtin:year5"))]
        cfg["policy"] = {"thresholds": {"avg_risk": 0.3}, "quasi_identifiers": qis}
        cfg_path.write_text(yaml.safe_dump(cfg))
        landing = home / "landing" / "hospital-a"
        (landing / "medications.csv").rename(landing / "medications_2024.csv")
        (landing / "notes.csv").unlink()
        (landing / "patients.csv").rename(landing / "patients_2024.csv")  # a required file renamed: exit 1
        code0, out0 = invoke("run")
        (landing / "patients_2024.csv").rename(landing / "patients.csv")
        code1, out1 = invoke("run")
        published_after_block = (home / "dataspace" / "omop-demo").exists()
        cfg["sources"][0]["ignore"] = ["medications_*.csv"]
        cfg_path.write_text(yaml.safe_dump(cfg))
        code2, out2 = invoke("run")
        yield {"home": home, "landing": landing, "code0": code0, "out0": out0, "code1": code1, "out1": out1, "code2": code2, "out2": out2,
               "published_after_block": published_after_block}
    finally:
        mp.undo()


def test_a_renamed_required_file_stops_the_run_naming_both(run: dict[str, object]) -> None:
    out = " ".join(str(run["out0"]).split())
    assert run["code0"] == 1, out
    assert "patients.csv is missing" in out and "patients_2024.csv" in out and "medications_2024.csv" in out


def test_a_renamed_file_blocks_the_release_naming_it(run: dict[str, object]) -> None:
    out = " ".join(str(run["out1"]).split())
    assert run["code1"] == 2, out
    assert "landing_inventory" in out and "medications_2024.csv" in out
    assert "ignore" in out and "medications.csv" in out  # how to fix it: rename, or ignore
    assert not run["published_after_block"]


def test_an_ignore_glob_lets_it_through_and_the_manifest_lists_the_files_read(run: dict[str, object]) -> None:
    assert run["code2"] == 0, run["out2"]
    home, landing = Path(str(run["home"])), Path(str(run["landing"]))
    m = json.loads((home / "dataspace" / "omop-demo" / "1" / "manifest.json").read_text())
    [site] = m["source_extracts"]
    assert site["site"] == "hospital-a" and site["format"] == "hospital-csv"
    files = {f["file"]: f for f in site["files"]}
    assert set(files) == {"patients.csv", "stays.csv", "diagnoses.csv", "procedures.csv", "labs.csv"}
    for name, f in files.items():
        assert f["sha256"] == hashlib.sha256((landing / name).read_bytes()).hexdigest()
        assert f["bytes"] == (landing / name).stat().st_size
    assert site["ignored"] == ["medications_2024.csv"]
    assert site["missing"] == ["medications.csv", "notes.csv"]
    out = " ".join(str(run["out2"]).split())
    assert "optional file(s) missing" in out and "notes.csv" in out
    assert "left aside by the source's ignore: medications_2024.csv" in out


def test_events_of_quarantined_stays_are_published_without_their_visit(run: dict[str, object]) -> None:
    home = Path(str(run["home"]))
    m = json.loads((home / "dataspace" / "omop-demo" / "1" / "manifest.json").read_text())
    acc = pl.DataFrame(m["row_accounting"]).filter(pl.col("stage") == "raw")
    unlinked = acc.filter(pl.col("category") == "unlinked")
    assert unlinked["rows"].sum() > 0, acc.to_dicts()
    # the quarantined stays' labs are measurements with visit_occurrence_id empty (or the person's other
    # visit covering the date: transforms/omop.py attaches an event without a visit to one); every lab
    # of the generated extract names a stay, so none had an empty visit before
    ws = Workspace(home)
    labs = unlinked.filter(pl.col("table") == "labs")["rows"].sum()
    raw_labs = read_partition(ws.lake("raw", "labs", "hospital-a"))
    assert raw_labs["stay_id"].null_count() == labs > 0
    no_visit = read_partition(ws.lake("omop", "measurement", "hospital-a"))["visit_occurrence_id"].null_count()
    assert 0.5 * labs < no_visit <= labs
    released = pl.read_parquet(home / "dataspace" / "omop-demo" / "1" / "omop" / "measurement" / "part-0.parquet")
    assert released["visit_occurrence_id"].null_count() > 0
    # no event was quarantined for its stay alone; the summary says what became of them
    q = read_partition(ws.quarantine("raw", "labs", "hospital-a"))
    assert not q["reason_detail"].str.contains(r"^stay_id \S+ \(.* was quarantined").any()
    out = " ".join(str(run["out2"]).split())
    assert "root causes:" in out and "cascades:" in out and "events kept without their visit (unlinked)" in out


def test_quarantine_command_on_the_run(run: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = invoke("quarantine")  # the test's own empty workspace
    assert code == 1 and "no quarantine in" in out
    monkeypatch.setenv("DS4H_HOME", str(run["home"]))
    code, out = invoke("quarantine")
    assert code == 0, out
    assert "raw.orphan" in out and "hospital-a" in out and "cascades" in out
    code, out = invoke("quarantine", "--site", "hospital-a", "--reason", "raw.orphan", "--rows", "2")
    assert code == 0, out
    assert out.count(" line ") >= 2 and "was quarantined: raw." in out
