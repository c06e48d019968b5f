"""A blocked run and a published one, end to end, and their reports opened in a real headless browser.

The browser is Debian's ``chromium`` (``make install`` installs it) driven by playwright with the
system executable: no download. The pages must load with no console error and no request at all
(self-contained), and show the status, the thresholds and non-empty charts.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipelines.cli import app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    r = runner.invoke(app, list(args), catch_exceptions=False)
    return r.exit_code, r.output


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """300 patients at 2 sites: k = 7 with 1% suppression removes fields (blocked, exit 2); the same
    policy allowing their removal publishes."""
    mp = pytest.MonkeyPatch()
    base = tmp_path_factory.mktemp("browser")
    home = base / "home"
    mp.setenv("DS4H_HOME", str(home))
    mp.setenv("DS4H_KEYS", str(base / "keys"))
    mp.setenv("DAGSTER_HOME", str(home / "dagster"))
    mp.delenv("DS4H_CONFIG", raising=False)
    try:
        assert invoke("init")[0] == 0
        code, out = invoke("generate", "--patients", "300", "--sites", "2", "--seed", "3", "--dirty", "0")
        assert code == 0, out
        cfg_path = home / "ds4h.yaml"
        cfg = yaml.safe_load(cfg_path.read_text())
        qis = [{"column": c, "hierarchy": h} for c, h in (("year_of_birth", "builtin:year5"), ("sex", "builtin:sex"),
                                                          ("postcode", "builtin:lu-postcode"),
                                                          ("death_year", "builtin:year5"))]
        cfg["sources"] = cfg["sources"][:2]
        cfg["policy"] = {"k": 7, "suppression": 0.01, "thresholds": {"avg_risk": 0.2}, "quasi_identifiers": qis}
        cfg_path.write_text(yaml.safe_dump(cfg))
        code1, out1 = invoke("run")
        published_after_blocked = (home / "dataspace" / "omop-demo" / "1").exists()
        reports = home / "lake" / "release" / "_reports"
        blocked_copy = base / "blocked-risk-report.html"
        if (reports / "risk-report.html").exists():
            shutil.copy(reports / "risk-report.html", blocked_copy)
        risk = yaml.safe_load((reports / "risk-report.json").read_text()) if (reports / "risk-report.json").exists() \
            else {}
        removed = list((risk.get("utility") or {}).get("removed") or [])
        for q in qis:
            q["allow_removal"] = q["column"] in removed
        cfg_path.write_text(yaml.safe_dump(cfg))
        code2, out2 = invoke("run")
        yield {"home": home, "code1": code1, "out1": out1, "code2": code2, "out2": out2, "removed": removed,
               "blocked_report": blocked_copy, "reports": reports,
               "published_after_blocked": published_after_blocked}
    finally:
        mp.undo()


def test_a_removed_field_blocks_the_run_with_exit_2_and_names_the_report(runs: dict[str, object]) -> None:
    out = str(runs["out1"])
    assert runs["code1"] == 2, out
    removed = list(runs["removed"])  # type: ignore[call-overload]
    assert removed, out
    flat = " ".join(out.split())
    assert "quasi_identifiers_kept" in flat and "allow_removal: true" in flat, out
    for q in removed:
        assert q.replace("_", " ") in flat
    assert "Candidate risk report:" in flat and "risk-report.html" in flat
    assert runs["published_after_blocked"] is False


def test_allow_removal_publishes_and_the_report_says_so(runs: dict[str, object]) -> None:
    assert runs["code2"] == 0, runs["out2"]
    page = (Path(str(runs["home"])) / "dataspace" / "omop-demo" / "1" / "reports" / "risk-report.html").read_text()
    assert "as the policy allows (allow_removal)" in page
    assert "published (DEMO, approved automatically)" in page


def _open(path: Path) -> dict[str, object]:
    """Load a page in headless chromium: console errors, requests other than the page, and what it shows."""
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: run 'make install' (it installs Debian's chromium) or "
                    "'apt-get install -y --no-install-recommends chromium'")
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    requests: list[str] = []
    failed: list[str] = []
    url = path.resolve().as_uri()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url) if r.url != url else None)
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.goto(url, wait_until="load")
            text = page.inner_text("body")
            headers = page.eval_on_selector_all("th", "els => els.map(e => e.textContent)")
            charts = page.eval_on_selector_all(
                "svg", "els => els.map(e => [e.getBoundingClientRect().width, e.getBoundingClientRect().height, "
                "Array.from(e.querySelectorAll('rect')).filter(r => r.getBoundingClientRect().width > 0).length])")
            clipped = page.eval_on_selector_all(
                "svg text", "els => els.filter(t => { const b = t.getBoundingClientRect(); "
                "const s = t.ownerSVGElement.getBoundingClientRect(); return b.left < s.left - 0.5; }).length")
        finally:
            browser.close()
    return {"errors": errors, "requests": requests, "failed": failed, "text": text, "charts": charts,
            "clipped": clipped, "headers": headers}


def test_risk_reports_render_in_a_browser(runs: dict[str, object]) -> None:
    published = Path(str(runs["home"])) / "dataspace" / "omop-demo" / "1" / "reports" / "risk-report.html"
    for path, status in ((published, "published"), (Path(str(runs["blocked_report"])), "blocked")):
        seen = _open(path)
        assert seen["errors"] == [] and seen["requests"] == [] and seen["failed"] == [], seen
        text = str(seen["text"])
        assert f"status\t{status}" in text or f"status {status}" in text or status in text.split("next step")[0]
        assert "next step" in text and "average prosecutor risk" in text and "Thresholds" in text
        charts = list(seen["charts"])  # type: ignore[call-overload]
        assert charts and all(w > 0 and h > 0 and bars > 0 for w, h, bars in charts), charts
        assert seen["clipped"] == 0


def test_dqd_page_renders_in_a_browser(runs: dict[str, object]) -> None:
    home = Path(str(runs["home"]))
    pages = sorted((home / "reports" / "dqd").glob("*/dqd.html"))
    assert pages
    seen = _open(pages[0])
    assert seen["errors"] == [] and seen["requests"] == [] and seen["failed"] == [], seen
    text = str(seen["text"])
    assert "No fatal failure." in text or "fatal failure(s)" in text  # the status
    assert "threshold" in list(seen["headers"])  # type: ignore[call-overload]
    assert "Overview by Kahn category" in text
