"""Every test gets its own workspace ($DS4H_HOME) and key store ($DS4H_KEYS) in a temporary folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "ds4h-home"
    keys = tmp_path / "ds4h-keys"
    monkeypatch.setenv("DS4H_HOME", str(home))
    monkeypatch.setenv("DS4H_KEYS", str(keys))
    monkeypatch.delenv("DS4H_CONFIG", raising=False)
    for var in ("DS4H_STORAGE_URL", "DS4H_POSTGRES_URL", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)  # a workspace on local disk unless a test says otherwise
    for var in list(os.environ):
        if var.startswith("DS4H_KEY_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    yield home


@pytest.fixture
def shared() -> Path:
    if not SHARED.exists():
        pytest.skip("../shared is not beside this checkout")
    return SHARED
