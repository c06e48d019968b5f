"""Direct identifiers live in their own zone (lake/identity), private, never in the OMOP zone."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from generator.hospital import SiteSpec, generate
from schemas.config import load_config
from schemas.omop import tables
from transforms.storage import Workspace, read_partition


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_identity_writer_makes_private_folders_and_files(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    ws.identity_root.mkdir(parents=True, mode=0o755)
    os.chmod(ws.identity_root, 0o755)  # a folder made by hand (or by an older version) is made private too
    w = ws.identity_writer("a")
    w.write(pl.DataFrame({"person_id": [1], "phone": ["+352 621 000 000"]}), 0)
    w.commit()
    assert ws.identity("a") == tmp_path / "lake" / "identity" / "patients" / "site=a"
    assert [_mode(p) for p in (ws.identity_root, ws.identity_table, ws.identity("a"))] == [0o700] * 3
    assert [_mode(p) for p in ws.identity("a").iterdir()] == [0o600]
    assert read_partition(ws.identity("a"))["person_id"].to_list() == [1]


def test_pseudonyms_and_released_persons_are_written_privately(tmp_path: Path) -> None:
    """What the leak scans need to know whose rows are whose stays in the identity zone, private."""
    ws = Workspace(tmp_path)
    for folder in (ws.pseudonyms("a"), ws.release_persons, ws.published_persons("omop-demo", 3)):
        w = ws.private_writer(folder)
        w.write(pl.DataFrame({"person_id": [1], "pseudo_person_id": [2]}), 0)
        w.commit()
        rel = folder.relative_to(ws.identity_root)
        chain = [ws.identity_root, *[ws.identity_root.joinpath(*rel.parts[:n]) for n in range(1, len(rel.parts) + 1)]]
        assert [_mode(p) for p in chain] == [0o700] * len(chain), folder
        assert [_mode(p) for p in folder.iterdir()] == [0o600]
    assert ws.pseudonyms("a") == tmp_path / "lake" / "identity" / "pseudonyms" / "site=a"
    with pytest.raises(ValueError):  # never a private writer outside the identity zone
        ws.private_writer(tmp_path / "lake" / "omop" / "person")


def test_omop_stage_writes_identities_in_their_own_zone(tmp_path: Path, isolated_env: Path) -> None:
    from pipelines.assets import build_site_assets
    from pipelines.resources import Ds4hResource

    home = isolated_env
    generate(home / "landing", 30, [SiteSpec("hospital-a")], seed=5, dirty=0.0)
    cfg_path = home / "ds4h.yaml"
    cfg_path.write_text(yaml.safe_dump({"sources": [{"site": "hospital-a", "path": "landing/hospital-a"}]}))
    ws = Workspace(home)
    legacy = home / "lake" / "omop" / "_identity" / "site=hospital-a"  # where an older version kept them
    legacy.mkdir(parents=True)
    pl.DataFrame({"person_id": [1]}).write_parquet(legacy / "part-0.parquet")
    raw, omop, *_ = build_site_assets(load_config(cfg_path))
    with dg.DagsterInstance.ephemeral() as instance:
        dg.materialize([raw, omop], partition_key="hospital-a", instance=instance, raise_on_error=False,
                       resources={"ds4h": Ds4hResource(config_path=str(cfg_path), home=str(home))})
    identity = read_partition(ws.identity("hospital-a"))
    assert identity.height == read_partition(ws.lake("omop", "person", "hospital-a")).height > 0
    assert identity["phone"].drop_nulls().len() > 0
    assert _mode(ws.identity_root) == _mode(ws.identity("hospital-a")) == 0o700
    omop_zone = home / "lake" / "omop"
    assert not (omop_zone / "_identity").exists()
    assert {p.name for p in omop_zone.iterdir()} <= set(tables())  # nothing but CDM tables
