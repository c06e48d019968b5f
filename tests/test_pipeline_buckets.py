"""A synthea-csv site through the Dagster raw and OMOP assets, in person buckets."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from pipelines.buckets import raw_buckets
from schemas.config import load_config
from transforms.adapters.registry import FORMATS
from transforms.adapters.synthea import read_synthea, synthea_to_staging
from transforms.omop import OMOP_TABLES, harmonise_site
from transforms.storage import Workspace, read_partition
from transforms.vocabulary import load_vocabulary

from .conftest import SHARED


@pytest.fixture(scope="module")
def site_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    if not SHARED.exists():
        pytest.skip("../shared is not beside this checkout")
    shared = SHARED
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("buckets") / "home"
    landing = home / "landing" / "syn"
    shutil.copytree(shared / "data" / "synthea-v3-27", landing)
    for claims in ("claims.csv", "claims_transactions.csv", "payer_transitions.csv"):
        (landing / claims).unlink()
    vocab = str(shared / "data" / "vocabulary-demo")
    cfg_path = home / "ds4h.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "sources": [{"site": "syn", "format": "synthea-csv", "path": "landing/syn", "persons_per_bucket": 7}],
        "vocabulary": vocab,
        # vocabulary-demo lacks the CDM version concept 756265: DQD's one fatal failure here
        "quality": {"dqd_blocks_on_fatal": False},
    }))
    mp.setenv("DS4H_HOME", str(home))
    mp.setenv("DS4H_CONFIG", str(cfg_path))
    mp.setenv("DS4H_KEYS", str(home.parent / "keys"))
    try:
        from anonymisation.keys import new_key

        new_key("demo")
        from pipelines.definitions import build_definitions  # importing it loads $DS4H_CONFIG

        cfg = load_config(cfg_path)
        defs = build_definitions(cfg)
        assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)
                  and set(a.group_names_by_key.values()) <= {"raw", "omop", "pseudo"}]
        with dg.DagsterInstance.ephemeral() as instance:
            result = dg.materialize(assets, partition_key="syn", instance=instance, resources=dict(defs.resources or {}),
                                    raise_on_error=False)
            checks = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in result.get_asset_check_evaluations()}
            mats = {m.asset_key.to_user_string(): m.metadata for m in result.asset_materializations_for_node("raw")}
        yield {"home": home, "keys": home.parent / "keys", "success": result.success, "checks": checks, "mats": mats, "vocab": vocab, "landing": landing}
    finally:
        mp.undo()


def test_site_assets_run_in_buckets(site_run: dict[str, object]) -> None:
    assert site_run["success"], site_run["checks"]
    ws = Workspace(site_run["home"])  # type: ignore[arg-type]
    fmt = FORMATS["synthea-csv"]
    assert raw_buckets(ws, fmt, "syn") == 4
    assert len(list(ws.lake("omop", "person", "syn").glob("*.parquet"))) == 4
    assert len(list(ws.lake("omop", "care_site", "syn").glob("*.parquet"))) == 1
    assert not ws.work("raw", "syn").exists()  # the split is scratch, removed after use
    checks = site_run["checks"]
    assert isinstance(checks, dict)
    assert all(checks.values()), [k for k, v in checks.items() if not v]  # dqd: fatal, but not blocking here
    assert ("omop_person", "dqd") in checks and ("raw_synthea_conditions", "extract_contract") in checks
    mats = site_run["mats"]
    assert isinstance(mats, dict)
    assert mats["raw_synthea_patients"]["rows_in"].value == 27


def test_bucketed_assets_write_what_the_whole_site_gives(site_run: dict[str, object]) -> None:
    ws = Workspace(site_run["home"])  # type: ignore[arg-type]
    vocab = load_vocabulary(str(site_run["vocab"]))
    landing = site_run["landing"]
    assert isinstance(landing, Path)
    raw = read_synthea("syn", landing)
    whole = harmonise_site("syn", synthea_to_staging(raw), vocab)
    for t in OMOP_TABLES:
        got = read_partition(ws.lake("omop", t, "syn"))
        want = whole.tables[t]
        if t == "cdm_source":
            got, want = got.drop("source_release_date", "cdm_release_date"), want.drop("source_release_date", "cdm_release_date")
        assert got.sort(got.columns, nulls_last=True).equals(want.sort(want.columns, nulls_last=True)), t
    identity = read_partition(ws.identity("syn"))
    assert identity.height == 27 and identity["person_id"].is_unique().all()
    acc = read_partition(ws.accounting("omop", "syn"))
    keys = ["table", "category", "reason_code"]
    assert acc.select(*keys, "rows").sort(keys, nulls_last=True).equals(
        whole.accounting.select(*keys, "rows").sort(keys, nulls_last=True))
    raw_acc = read_partition(ws.accounting("raw", "syn")).filter(pl.col("table") == "patients")
    assert dict(raw_acc.select("category", "rows").iter_rows()) == {"in": 27, "out": 27}
    assert (ws.reports / "dqd" / "syn" / "dqd.html").is_file()
    assert dt.date.today()  # the run used today's date for cdm_source, compared above without it


def test_pseudo_in_parts_writes_what_the_whole_site_gives(site_run: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    from anonymisation.keys import load_key
    from anonymisation.pseudonymise import pseudonymise_site
    from schemas.policy import PrivacyPolicy

    monkeypatch.setenv("DS4H_KEYS", str(site_run["keys"]))
    ws = Workspace(site_run["home"])  # type: ignore[arg-type]
    assert len(list(ws.lake("pseudo", "person", "syn").glob("*.parquet"))) == 4
    omop = {t: read_partition(ws.lake("omop", t, "syn")) for t in OMOP_TABLES}
    identity = read_partition(ws.identity("syn"))
    whole = pseudonymise_site("syn", omop, identity, load_key("demo").secret, PrivacyPolicy())
    for t in OMOP_TABLES:
        got, want = read_partition(ws.lake("pseudo", t, "syn")), whole.tables[t]
        assert got.sort(got.columns, nulls_last=True).equals(want.sort(want.columns, nulls_last=True)), t
    acc = read_partition(ws.accounting("pseudo", "syn"))
    keys = ["table", "category", "reason_code"]
    assert acc.select(*keys, "rows").sort(keys, nulls_last=True).equals(
        whole.accounting.select(*keys, "rows").sort(keys, nulls_last=True))
    checks = site_run["checks"]
    assert isinstance(checks, dict)
    assert checks[("pseudo_person", "leak_scan")] and checks[("pseudo_observation", "leak_scan")]
    # the leak scan knew whose rows are whose: every identity's pseudonym, in the identity zone
    pmap = read_partition(ws.pseudonyms("syn"))
    assert pmap.height == identity.height and set(pmap["person_id"]) == set(identity["person_id"])
    assert set(pmap["pseudo_person_id"]) == set(read_partition(ws.lake("pseudo", "person", "syn"))["person_id"])
