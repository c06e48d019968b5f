from __future__ import annotations

import importlib
import sys
from pathlib import Path

import dagster as dg
import pytest

from schemas.config import parse_config


def _cfg(tmp_path: Path):  # type: ignore[no-untyped-def]
    return parse_config(
        {"sources": [{"site": "hospital-a", "path": "landing/hospital-a"}, {"site": "hospital-b", "path": "landing/hospital-b"}]},
        tmp_path,
    )


def test_whole_definitions_load_from_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg_file = tmp_path / "ds4h.yaml"
    cfg_file.write_text("sources:\n- site: hospital-a\n  path: landing/hospital-a\n")
    monkeypatch.setenv("DS4H_CONFIG", str(cfg_file))
    sys.modules.pop("pipelines.definitions", None)
    defs = importlib.import_module("pipelines.definitions").defs
    graph = defs.resolve_asset_graph()
    groups = {graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert groups == {"raw", "omop", "pseudo", "release", "products", "publish"}
    assert dg.AssetKey("published_release") in graph.get_all_asset_keys()
    blocking = {k.name for k in graph.asset_check_keys if graph.get_check_spec(k).blocking}
    assert {"extract_checks", "cdm_conformance", "dqd", "leak_scan", "risk_thresholds"} <= blocking
    # one blocking check per stage and site, not per table (issue 19, item 6: events cost ~10 ms each)
    per_asset = [k.asset_key.to_user_string() for k in graph.asset_check_keys]
    assert {a for a in per_asset if a.startswith(("omop_", "pseudo_", "release_"))} == {
        "omop_person", "pseudo_person", "pseudo_note", "release_person"}
    assert defs.resolve_job_def("site_job") is not None
    assert dg.AssetSelection.from_string("group:omop").resolve(graph)


def test_landing_sensor_requests_a_site_run_when_files_change(tmp_path: Path) -> None:
    from pipelines.definitions import build_definitions

    cfg = _cfg(tmp_path)
    defs = build_definitions(cfg)
    sensor = defs.resolve_sensor_def("landing_sensor")
    (tmp_path / "landing" / "hospital-a").mkdir(parents=True)
    (tmp_path / "landing" / "hospital-a" / "patients.csv").write_text("patient_id\n")
    with dg.DagsterInstance.ephemeral() as instance:
        ctx = dg.build_sensor_context(instance=instance, definitions=defs)
        result = sensor(ctx)
        assert [r.partition_key for r in result.run_requests] == ["hospital-a"]
        ctx2 = dg.build_sensor_context(instance=instance, cursor=result.cursor, definitions=defs)
        assert sensor(ctx2).run_requests == []  # nothing new
        (tmp_path / "landing" / "hospital-b").mkdir(parents=True)
        (tmp_path / "landing" / "hospital-b" / "patients.csv").write_text("patient_id\n")
        ctx3 = dg.build_sensor_context(instance=instance, cursor=result.cursor, definitions=defs)
        assert [r.partition_key for r in sensor(ctx3).run_requests] == ["hospital-b"]
