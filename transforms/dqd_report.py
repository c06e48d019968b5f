"""Self-contained HTML page of a DQD run (no network, no script)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transforms.dqd import DqdRun


def render_html(run: DqdRun) -> str:
    return "<!doctype html><html><body>todo</body></html>"
