"""``ds4h anonymise-table`` through typer's CliRunner."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from pipelines.commands.anonymise_table import register

ADULT = Path(__file__).parents[2] / "shared" / "data" / "arx-adult"
QIS = ["sex", "age", "race", "marital-status", "education", "native-country", "workclass", "occupation"]


@pytest.fixture
def app() -> typer.Typer:
    a = typer.Typer()
    register(a)

    @a.callback()
    def _root() -> None:
        """ds4h (test app)."""

    return a


runner = CliRunner()


def _table(tmp_path: Path) -> Path:
    rows = []
    for i in range(60):
        rows.append({"id": str(i), "yob": str(1940 + (i * 7) % 40), "sex": "FM"[i % 2], "note": f"n{i}"})
    path = tmp_path / "people.csv"
    pl.DataFrame(rows).write_csv(path)
    return path


def test_help_lists_builtins(app: typer.Typer) -> None:
    res = runner.invoke(app, ["anonymise-table", "--help"])
    assert res.exit_code == 0
    for name in (
        "builtin:year5",
        "builtin:age10",
        "builtin:date-month",
        "builtin:lu-postcode",
        "builtin:sex",
    ):
        assert name in res.output


def test_csv_with_builtins(app: typer.Typer, tmp_path: Path) -> None:
    src = _table(tmp_path)
    out, rep, page = tmp_path / "out.csv", tmp_path / "r.json", tmp_path / "r.html"
    res = runner.invoke(
        app,
        [
            "anonymise-table",
            str(src),
            "--qi",
            "yob=builtin:year5",
            "--qi",
            "sex=builtin:sex",
            "--k",
            "5",
            "--out",
            str(out),
            "--report",
            str(rep),
            "--html",
            str(page),
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads(rep.read_text())
    assert set(report) >= {"levels", "classes", "suppressed", "metrics", "risk", "seconds"}
    assert set(report["metrics"]) == {"loss", "precision", "discernibility", "aecs", "entropy"}
    for when in ("before", "after"):
        assert set(report["risk"][when]) >= {
            "prosecutor_max",
            "prosecutor_avg",
            "records_at_risk",
            "sample_uniques",
            "marketer",
        }
    df = pl.read_csv(out, infer_schema=False)
    assert df.columns == ["id", "yob", "sex", "note"]
    assert df.height == 60 - report["suppressed"]
    assert df.group_by(["yob", "sex"]).len()["len"].min() >= 5  # type: ignore[operator]
    assert report["risk"]["after"]["prosecutor_max"] <= 0.2
    text = page.read_text()
    assert "<svg" in text and "<script" not in text and "http" not in text


def test_parquet_in_and_out(app: typer.Typer, tmp_path: Path) -> None:
    src = tmp_path / "people.parquet"
    pl.read_csv(_table(tmp_path)).write_parquet(src)
    out = tmp_path / "out.parquet"
    res = runner.invoke(
        app,
        [
            "anonymise-table",
            str(src),
            "--qi",
            "yob=builtin:year10",
            "--qi",
            "sex=builtin:sex",
            "--out",
            str(out),
            "--metric",
            "discernibility",
        ],
    )
    assert res.exit_code == 0, res.output
    df = pl.read_parquet(out)
    assert df["id"].dtype == pl.Int64  # other columns keep their type
    assert df["yob"].dtype == pl.String


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["/nonexistent.csv", "--qi", "a=builtin:sex"], "input not found"),
        (["{src}", "--qi", "yob=builtin:nope"], "unknown hierarchy builtin:nope"),
        (["{src}", "--qi", "missing=builtin:sex"], "column(s) missing not in"),
        (["{src}", "--qi", "sex=builtin:year5"], "column sex"),
        (["{src}", "--qi", "yob=/nonexistent/h.csv"], "hierarchy file not found"),
    ],
)
def test_errors_are_one_line(app: typer.Typer, tmp_path: Path, args: list[str], needle: str) -> None:
    src = _table(tmp_path)
    argv = ["anonymise-table", *[a.format(src=src) for a in args], "--out", str(tmp_path / "o.csv")]
    res = runner.invoke(app, argv)
    assert res.exit_code == 1, res.output
    err = res.stderr.strip()
    assert needle in err
    assert len(err.splitlines()) == 1
    assert "Traceback" not in res.output


def test_value_missing_from_arx_hierarchy(app: typer.Typer, tmp_path: Path) -> None:
    src = _table(tmp_path)
    h = tmp_path / "sex.csv"
    h.write_text("F;*\n")
    res = runner.invoke(
        app, ["anonymise-table", str(src), "--qi", f"sex={h}", "--out", str(tmp_path / "o.csv")]
    )
    assert res.exit_code == 1
    assert "column sex: 1 value(s) not in hierarchy" in res.stderr and "'M'" in res.stderr


def test_usage_error_for_bad_qi_syntax(app: typer.Typer, tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["anonymise-table", str(_table(tmp_path)), "--qi", "yob", "--out", str(tmp_path / "o.csv")]
    )
    assert res.exit_code == 2
    assert "COLUMN=HIERARCHY" in res.output


def test_command_imports_no_heavy_framework() -> None:
    code = (
        "import sys, pipelines.commands.anonymise_table as m, anonymisation.risk_report, anonymisation.kanon;"
        "bad=[x for x in ('dagster','presidio_analyzer','great_expectations','spacy') if x in sys.modules];"
        "print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[1],
    )
    assert out.stdout.strip() == "[]"
    # --help needs neither numpy nor polars
    code = "import sys, pipelines.commands.anonymise_table; print([m for m in ('numpy', 'polars') if m in sys.modules])"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[1],
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.skipif(not (ADULT / "adult.csv").exists(), reason="shared ARX adult data absent")
def test_adult_end_to_end(app: typer.Typer, tmp_path: Path) -> None:
    out, rep = tmp_path / "adult.csv", tmp_path / "adult.json"
    qis = [a for q in QIS for a in ("--qi", f"{q}={ADULT / 'hierarchies' / f'adult_hierarchy_{q}.csv'}")]
    res = runner.invoke(
        app,
        [
            "anonymise-table",
            str(ADULT / "adult.csv"),
            "--delimiter",
            ";",
            *qis,
            "--k",
            "5",
            "--suppression",
            "0.05",
            "--metric",
            "loss",
            "--out",
            str(out),
            "--report",
            str(rep),
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads(rep.read_text())
    assert report["levels"] == dict(zip(QIS, (0, 3, 0, 0, 1, 1, 1, 2), strict=True))  # ARX 3.9.2's optimum
    assert (report["classes"], report["suppressed"]) == (399, 1458)
    df = pl.read_csv(out, separator=";", infer_schema=False)
    assert df.height == 30162 - 1458
    assert "salary-class" in df.columns
    assert df.group_by(QIS).len()["len"].min() >= 5  # type: ignore[operator]


def test_the_command_keeps_freed_memory_for_its_next_arrays() -> None:
    # glibc (this project's Linux images): the allocator settings are accepted
    from pipelines.commands.anonymise_table import _keep_freed_memory

    assert _keep_freed_memory() is True
