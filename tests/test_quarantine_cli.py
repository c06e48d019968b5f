"""`ds4h quarantine` on a hand-made quarantine: the summary, the filters, the rows (terminal only), the errors."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.commands.quarantine import summarise

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    r = runner.invoke(app, list(args), catch_exceptions=False, terminal_width=300)
    return r.exit_code, r.output


def _write(home: Path, stage: str, table: str, site: str, rows: list[dict[str, object]]) -> None:
    folder = home / "quarantine" / stage / table / f"site={site}"
    folder.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(rows).write_parquet(folder / "part-0.parquet")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "ws"
    monkeypatch.setenv("DS4H_HOME", str(h))
    bad_date = {"reason_code": "raw.invalid_date", "reason_detail": "admission is not a valid date: 2020-31-01",
                "source_file": "stays.csv", "source_line": 3, "stay_id": "S2"}
    _write(h, "raw", "stays", "hospital-a", [bad_date, {**bad_date, "source_line": 7, "stay_id": "S7"}])
    cascade = {"reason_code": "raw.orphan", "reason_detail": "patient_id P2 (patients.csv line 3) was quarantined: "
               "raw.invalid_date", "source_file": "labs.csv", "source_line": 5, "lab_id": "L4"}
    root = {**cascade, "reason_detail": "stay_id names no valid stays row: S9", "source_line": 6, "lab_id": "L5"}
    _write(h, "raw", "labs", "hospital-a", [cascade, root])
    _write(h, "raw", "labs", "hospital-b", [{**root, "lab_id": "B1"}])
    return h


def test_summary_by_stage_table_site_and_reason(home: Path) -> None:
    s = summarise(home / "quarantine")
    assert s.select("table", "site", "reason_code", "rows", "cascades").rows() == [
        ("labs", "hospital-a", "raw.orphan", 2, 1), ("labs", "hospital-b", "raw.orphan", 1, 0),
        ("stays", "hospital-a", "raw.invalid_date", 2, 0)]
    code, out = invoke("quarantine")
    assert code == 0, out
    assert "raw.invalid_date" in out and "hospital-b" in out
    assert "5 rows quarantined, 1 of them because their parent row was quarantined" in out
    assert "S2" not in out and "L4" not in out  # no row without --reason


def test_reason_shows_rows_on_the_terminal_only(home: Path) -> None:
    code, out = invoke("quarantine", "--site", "hospital-a", "--reason", "raw.orphan")
    assert code == 0, out
    assert "labs.csv line 5: patient_id P2 (patients.csv line 3) was quarantined: raw.invalid_date" in out
    assert "lab_id=L4" in out and "lab_id=L5" in out and "B1" not in out  # only hospital-a
    assert "hospital-b" not in out.split("Identifiable data")[0]  # the summary is filtered too
    code, out = invoke("quarantine", "--reason", "raw.invalid_date", "--rows", "1")
    assert code == 0 and "S2" in out and "S7" not in out
    assert not list(home.rglob("*.txt")) and not (home / "reports").exists()  # nothing written


def test_unknown_site_or_reason_lists_the_known_ones(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = invoke("quarantine", "--site", "nowhere")
    assert code == 1 and "sites with quarantined rows: hospital-a, hospital-b" in out
    code, out = invoke("quarantine", "--site", "hospital-b", "--reason", "raw.invalid_date")
    assert code == 1 and "reasons: raw.orphan" in out
    monkeypatch.setenv("DS4H_HOME", str(tmp_path / "empty"))
    code, out = invoke("quarantine")
    assert code == 1 and "no quarantine in" in out and "ds4h run" in out


def test_help_has_an_example() -> None:
    code, out = invoke("quarantine", "--help")
    assert code == 0 and "xample" in out
