from __future__ import annotations

import subprocess
import sys

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
