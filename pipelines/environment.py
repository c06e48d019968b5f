"""Process environment for Dagster: the instance lives in the workspace ($DS4H_HOME/dagster)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from transforms.storage import Workspace

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def prepare_dagster_home(ws: Workspace) -> Path:
    """Point DAGSTER_HOME at the workspace and install the project's dagster.yaml there."""
    home = ws.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    src = PROJECT_ROOT / "dagster.yaml"
    dst = home / "dagster.yaml"
    if src.exists() and (not dst.exists() or dst.read_bytes() != src.read_bytes()):
        shutil.copyfile(src, dst)
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    return home
