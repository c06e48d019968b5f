"""Notes are de-identified only when a release publishes them, by an asset of their own (issue 19, item 1).

With ``policy.publish_notes`` off (the default) no release holds a note, so ``pseudo_notes`` keeps the
note rows without their text and never loads the NER model; turned on, the same asset de-identifies
them. Either way its leak scan runs and every note is accounted for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from pipelines.cli import app
from schemas.config import load_config
from transforms.storage import Workspace, read_partition

SITE = "hospital-a"


def _invoke(*args: str) -> None:
    r = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert r.exit_code == 0, r.output


def _materialize(home: Path, selection: str) -> tuple[bool, dict[str, Any], dict[tuple[str, str], bool]]:
    from pipelines.definitions import build_definitions

    defs = build_definitions(load_config(home / "ds4h.yaml"))
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)
              and set(a.group_names_by_key.values()) <= {"raw", "omop", "pseudo"}]
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(assets, partition_key=SITE, instance=instance, resources=dict(defs.resources or {}),
                                selection=selection, raise_on_error=False)
        mats = {m.asset_key.to_user_string(): m.metadata
                for node in ("pseudo", "pseudo_notes") for m in result.asset_materializations_for_node(node)}
        checks = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in result.get_asset_check_evaluations()}
    return result.success, mats, checks


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Any:
    mp = pytest.MonkeyPatch()
    base = tmp_path_factory.mktemp("notes")
    home = base / "home"
    mp.setenv("DS4H_HOME", str(home))
    mp.setenv("DS4H_KEYS", str(base / "keys"))
    mp.setenv("DAGSTER_HOME", str(home / "dagster"))
    mp.delenv("DS4H_CONFIG", raising=False)
    try:
        _invoke("init")
        _invoke("generate", "--patients", "60", "--sites", "1", "--seed", "5")
        yield home
    finally:
        mp.undo()


def _set_publish_notes(home: Path, on: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DS4H_HOME", str(home))  # the module's workspace, not the test's own
    monkeypatch.setenv("DS4H_KEYS", str(home.parent / "keys"))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    path = home / "ds4h.yaml"
    cfg = yaml.safe_load(path.read_text())
    cfg.setdefault("policy", {})["publish_notes"] = on
    path.write_text(yaml.safe_dump(cfg))


def test_notes_are_not_deidentified_when_no_release_publishes_them(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import anonymisation.deid as deid

    def refuse(*_: object, **__: object) -> list[str]:
        raise AssertionError("the notes were de-identified although publish_notes is off")

    monkeypatch.setattr(deid, "deidentify_batch", refuse)
    _set_publish_notes(home, False, monkeypatch)
    ok, mats, checks = _materialize(home, "*")
    assert ok, checks
    ws = Workspace(home)
    omop = read_partition(ws.lake("omop", "note", SITE))
    pseudo = read_partition(ws.lake("pseudo", "note", SITE))
    assert omop["note_text"].drop_nulls().len() > 20  # there were notes to de-identify
    assert pseudo.height == omop.height and pseudo["note_text"].null_count() == pseudo.height
    assert pseudo["note_title"].null_count() == pseudo.height
    md = mats["pseudo_note"]
    assert md["notes_deidentified"].value == 0 and md["publish_notes"].value is False
    assert md["notes_with_text"].value == omop["note_text"].drop_nulls().len()
    assert checks[("pseudo_note", "leak_scan")] and checks[("pseudo_person", "leak_scan")]
    acc = read_partition(ws.accounting("pseudo-notes", SITE))
    assert dict(acc.filter(pl.col("table") == "note").select("category", "rows").iter_rows()) == {
        "in": omop.height, "out": omop.height}
    assert "note" not in set(read_partition(ws.accounting("pseudo", SITE))["table"])


def test_notes_are_deidentified_by_their_own_asset_when_published(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _set_publish_notes(home, True, monkeypatch)
    ok, mats, checks = _materialize(home, "pseudo_note")  # the notes alone: the structured tables stay as they are
    assert ok, checks
    assert set(mats) == {"pseudo_note"}
    ws = Workspace(home)
    omop = read_partition(ws.lake("omop", "note", SITE))
    pseudo = read_partition(ws.lake("pseudo", "note", SITE))
    with_text = omop["note_text"].drop_nulls().len()
    assert pseudo["note_text"].drop_nulls().len() == with_text
    assert mats["pseudo_note"]["notes_deidentified"].value == with_text
    assert checks[("pseudo_note", "leak_scan")]
    names = read_partition(ws.identity(SITE))["last_name"].drop_nulls().unique().to_list()
    texts = "\n".join(pseudo["note_text"].drop_nulls().to_list())
    assert "[NOM]" in texts  # tags where names were
    assert not [n for n in names if len(n) > 3 and f" {n} " in f" {texts} "]


def test_workers_deidentify_the_notes_as_one_process_does(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DS4H_DEID_PROCESSES=2: the asset's notes go to two spawned workers; the written notes are the
    same as those de-identified in the asset's own process."""
    _set_publish_notes(home, True, monkeypatch)
    ws = Workspace(home)
    monkeypatch.setenv("DS4H_DEID_PROCESSES", "1")
    ok, mats, checks = _materialize(home, "pseudo_note")
    assert ok, checks
    assert mats["pseudo_note"]["deid_processes"].value == 1
    alone = read_partition(ws.lake("pseudo", "note", SITE))
    monkeypatch.setenv("DS4H_DEID_PROCESSES", "2")
    ok, mats, checks = _materialize(home, "pseudo_note")
    assert ok, checks
    assert mats["pseudo_note"]["deid_processes"].value == 2
    assert checks[("pseudo_note", "leak_scan")]
    workers = read_partition(ws.lake("pseudo", "note", SITE))
    assert alone["note_text"].drop_nulls().len() > 20
    assert workers.equals(alone)
