from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli import app

runner = CliRunner()
COMMANDS = [
    ["init"], ["generate"], ["run"], ["demo"], ["ui"], ["keys", "new"], ["keys", "list"], ["approve"], ["reject"], ["revoke"], ["verify"],
    ["releases"], ["connector-export"], ["anonymise-table"], ["deid-text"], ["eval-deid"], ["vocabulary", "load"], ["cohort", "count"],
]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c))
def test_every_command_has_help_with_an_example(cmd: list[str]) -> None:
    r = runner.invoke(app, [*cmd, "--help"], terminal_width=200)
    assert r.exit_code == 0, r.output
    assert "xample" in r.output, r.output


def test_importing_the_cli_loads_no_heavy_library() -> None:
    code = (
        "import sys, pipelines.cli; "
        "heavy = [m for m in ('dagster', 'presidio_analyzer', 'great_expectations', 'spacy') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_entry_point_keeps_exit_codes_and_output_with_the_collector_spared(tmp_path: Path) -> None:
    """`main()` freezes the garbage collector on the way out (interpreter shutdown then skips its pass
    over every live object): exit codes and printed output must come through unchanged."""
    probe = (
        "import atexit, gc, sys, pipelines.cli as c; "
        "atexit.register(lambda: print('collector', 'on' if gc.isenabled() else 'off', file=sys.stderr)); "
        "sys.argv = ['ds4h', *sys.argv[1:]]; c.main()"
    )
    ok = subprocess.run([sys.executable, "-c", probe, "--help"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "Start with: ds4h demo" in ok.stdout
    assert "collector off" in ok.stderr
    bad = subprocess.run([sys.executable, "-c", probe, "run", "--config", str(tmp_path / "absent.yaml")],
                         capture_output=True, text=True)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "absent.yaml" in bad.stdout + bad.stderr
    assert "Traceback" not in bad.stderr
    assert "collector off" in bad.stderr
