"""The whole flow on a few hundred generated patients: init, generate, run twice, and what it must show."""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from anonymisation.leakscan import normalise_text, public_place_names
from pipelines.cli import app
from schemas.extract import ENTITIES
from transforms.ingest import ingest_site

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    r = runner.invoke(app, list(args), catch_exceptions=False)
    return r.exit_code, r.output


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One workspace shared by the tests of this module (the run takes several seconds)."""
    mp = pytest.MonkeyPatch()
    base = tmp_path_factory.mktemp("e2e")
    home, keys = base / "home", base / "keys"
    mp.setenv("DS4H_HOME", str(home))
    mp.setenv("DS4H_KEYS", str(keys))
    mp.setenv("DAGSTER_HOME", str(home / "dagster"))
    mp.delenv("DS4H_CONFIG", raising=False)
    try:
        code, out = invoke("init")
        assert code == 0, out
        code, out = invoke("generate", "--patients", "400", "--sites", "3", "--seed", "11", "--dirty", "0.03")
        assert code == 0, out
        cfg_path = home / "ds4h.yaml"
        cfg = yaml.safe_load(cfg_path.read_text())
        # a few hundred patients cannot reach the default average risk of 0.05 at k=5
        cfg["policy"] = {"thresholds": {"avg_risk": 0.2}}
        cfg_path.write_text(yaml.safe_dump(cfg))
        code1, out1 = invoke("run")
        v1 = home / "dataspace" / "omop-demo" / "1"
        hashes1 = {p.relative_to(v1).as_posix(): sha(p) for p in v1.rglob("*") if p.is_file()}
        code2, out2 = invoke("run")
        yield {"home": home, "code1": code1, "out1": out1, "code2": code2, "out2": out2, "hashes1": hashes1}
    finally:
        mp.undo()


def test_run_publishes_versions(published: dict[str, object]) -> None:
    home = Path(str(published["home"]))
    assert published["code1"] == 0, published["out1"]
    assert published["code2"] == 0, published["out2"]
    ds = home / "dataspace" / "omop-demo"
    assert (ds / "LATEST").read_text().strip() == "2"
    m1 = json.loads((ds / "1" / "manifest.json").read_text())
    for key in ("dataset", "version", "created", "project", "key_fingerprint", "demo", "code_version", "files", "row_accounting"):
        assert key in m1
    assert m1["demo"] is True and m1["project"] == "demo" and m1["version"] == 1
    for f in m1["files"]:
        p = ds / "1" / f["path"]
        assert p.stat().st_size == f["bytes"]
        assert sha(p) == f["sha256"]
        assert pl.read_parquet(p).height == f["rows"]
    # version 1 untouched by the second run
    v1 = ds / "1"
    assert {p.relative_to(v1).as_posix(): sha(p) for p in v1.rglob("*") if p.is_file()} == published["hashes1"]
    # same inputs and key: byte-identical Parquet
    m2 = json.loads((ds / "2" / "manifest.json").read_text())
    assert [(f["path"], f["sha256"]) for f in m1["files"]] == [(f["path"], f["sha256"]) for f in m2["files"]]
    assert "Published omop-demo v1" in str(published["out1"])


def _landing_rows(home: Path) -> dict[tuple[str, str], int]:
    cfg = yaml.safe_load((home / "ds4h.yaml").read_text())
    out = {}
    for src in cfg["sources"]:
        folder = home / src["path"]
        for e in ENTITIES:
            f = folder / e.file
            if f.exists():
                with f.open(encoding=src.get("encoding", "utf-8"), newline="") as fh:
                    out[(src["site"], e.name)] = sum(1 for _ in csv.reader(fh, delimiter=src.get("delimiter", ","))) - 1
    return out


def test_every_landing_row_is_accounted_for(published: dict[str, object]) -> None:
    home = Path(str(published["home"]))
    m = json.loads((home / "dataspace" / "omop-demo" / "1" / "manifest.json").read_text())
    acc = pl.DataFrame(m["row_accounting"])
    # every stage, site and table balances: in = out + every other category
    for (stage, site, table), g in acc.group_by("stage", "site", "table"):
        rows_in = g.filter(pl.col("category") == "in")["rows"].sum()
        if g.filter(pl.col("category") == "in").height == 0:
            assert set(g["category"]) == {"produced"}, (stage, site, table)
            continue
        rest = g.filter(~pl.col("category").is_in(["in", "produced"]))["rows"].sum()
        assert rows_in == rest, (stage, site, table, g.to_dicts())
    # raw stage "in" equals the data lines of the landing files
    raw_in = {(s, t): n for s, t, n in acc.filter((pl.col("stage") == "raw") & (pl.col("category") == "in"))
              .select("site", "table", "rows").iter_rows()}
    assert raw_in == _landing_rows(home)
    cats = set(acc["category"])
    assert {"out", "quarantined", "deduplicated", "merged", "suppressed"} <= cats


def test_no_identifier_reaches_the_dataspace(published: dict[str, object]) -> None:
    home = Path(str(published["home"]))
    cfg = yaml.safe_load((home / "ds4h.yaml").read_text())
    needles: Counter[str] = Counter()
    places = public_place_names()
    for src in cfg["sources"]:
        with (home / src["path"] / "patients.csv").open(encoding=src.get("encoding", "utf-8"), newline="") as fh:
            for row in csv.DictReader(fh, delimiter=src.get("delimiter", ",")):
                for col in ("last_name", "matricule", "email", "address"):
                    v = (row.get(col) or "").strip()
                    if len(v) >= 4 and normalise_text(v) not in places:
                        needles[normalise_text(v)] += 1
                phone = "".join(ch for ch in row.get("phone") or "" if ch.isdigit())
                if len(phone) >= 8:
                    needles[phone] += 1
    assert len(needles) > 500
    haystack: list[str] = []
    for p in (home / "dataspace").rglob("*"):
        if p.suffix == ".parquet":
            df = pl.read_parquet(p)
            for c in df.columns:
                haystack.extend(normalise_text(str(v)) for v in df[c].drop_nulls().unique().to_list())
        elif p.is_file():
            haystack.append(normalise_text(p.read_text(encoding="utf-8", errors="replace")))
    values = set(haystack)
    exact = [n for n in needles if n in values]
    assert not exact, f"{len(exact)} identifiers found as cell values"
    long_text = "\n".join(v for v in values if len(v) > 40)
    inside = [n for n in needles if len(n) >= 8 and n in long_text]
    assert not inside, f"{len(inside)} identifiers found inside text"


def test_generator_faults_end_as_documented(published: dict[str, object]) -> None:
    home = Path(str(published["home"]))
    cfg = yaml.safe_load((home / "ds4h.yaml").read_text())
    seen: Counter[str] = Counter()
    for src in cfg["sources"]:
        folder = home / src["path"]
        result = ingest_site(src["site"], folder, src.get("encoding", "utf-8"), src.get("delimiter", ","))
        faults = [json.loads(line) for line in (folder / "_truth" / "faults.jsonl").read_text().splitlines()]
        for f in faults:
            er = result.entities[f["entity"]]
            q = er.quarantine.filter(pl.col("source_line") == f["line"])
            kept = er.table.filter(pl.col("_line") == f["line"])
            if f["outcome"] == "quarantined":
                assert q["reason_code"].to_list() == [f["reason_code"]], f
            elif f["outcome"] == "deduplicated":
                assert q.height == 0 and kept.height == 0, f
            elif f["outcome"] in ("unmapped", "normalised"):
                if q.height:  # its parent row was quarantined: it follows as an orphan
                    assert q["reason_code"].to_list() == ["raw.orphan"], f
                    continue
                value = kept[f["column"]].item()
                assert value == value.strip().upper(), f
            seen[f["fault"]] += 1
    assert set(seen) >= {"invalid_date", "future_date", "missing_required", "orphan", "duplicate", "unknown_code", "dirty_code"}


def test_bad_input_gives_one_clear_line(published: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = Path(str(published["home"]))
    bad = tmp_path / "bad.yaml"
    bad.write_text("project: demo\nsorces: []\n")
    code, out = invoke("run", "--config", str(bad))
    assert code == 1 and "sorces" in out and "Traceback" not in out
    missing = tmp_path / "nokey.yaml"
    missing.write_text(f"project: other\nsources:\n- site: hospital-a\n  path: {home}/landing/hospital-a\n")
    code, out = invoke("run", "--config", str(missing))
    assert code == 1 and "ds4h keys new --project other" in out
    monkeypatch.setenv("DS4H_KEY_DEMO", "ab" * 32)
    broken = tmp_path / "broken.yaml"
    broken.write_text(f"project: demo\nsources:\n- site: x\n  path: {tmp_path}/nowhere\n")
    code, out = invoke("run", "--config", str(broken))
    assert code == 1 and "does not exist" in out and "Traceback" not in out
    assert sorted(p.name for p in (home / "dataspace" / "omop-demo").iterdir() if p.name.isdigit()) == ["1", "2"]
