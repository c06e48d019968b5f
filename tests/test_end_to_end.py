"""The whole flow on a few hundred generated patients: init, generate, run twice, and what it must show."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from anonymisation.leakscan import normalise_text, public_place_names
from pipelines.cli import app
from schemas.extract import ENTITIES
from transforms.ingest import ingest_site
from transforms.storage import Workspace, read_partition

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
        # and, at k = 5, only by publishing the place of residence as one value for everyone (allow_removal)
        qis = [{"column": c, "hierarchy": h} for c, h in (("year_of_birth", "builtin:year5"), ("sex", "builtin:sex"),
                                                          ("death_year", "builtin:year5"))]
        qis.insert(2, {"column": "postcode", "hierarchy": "builtin:lu-postcode", "allow_removal": True})
        # with the generator's deaths (death year a quasi-identifier), year of birth keeps 20-year bands only
        # when 6% of persons may be suppressed (the utility guard blocks at 5%: tested in test_utility_guard)
        cfg["policy"] = {"thresholds": {"avg_risk": 0.2}, "publish_notes": True, "quasi_identifiers": qis,
                         "suppression": 0.06}
        cfg_path.write_text(yaml.safe_dump(cfg))
        code1, out1 = invoke("run")
        v1 = home / "dataspace" / "omop-demo" / "1"
        hashes1 = {p.relative_to(v1).as_posix(): sha(p) for p in v1.rglob("*") if p.is_file()}
        code_same, out_same = invoke("run")  # nothing changed: nothing published
        versions_after_same = sorted(p.name for p in (home / "dataspace" / "omop-demo").iterdir())
        code2, out2 = invoke("run", "--force")
        yield {"home": home, "code1": code1, "out1": out1, "code2": code2, "out2": out2, "hashes1": hashes1,
               "code_same": code_same, "out_same": out_same, "versions_after_same": versions_after_same}
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
    # the written files were audited before publishing: nobody at risk for up to 2 facts known
    km = m1["risk"]["km"]
    assert km["checked"] and km["passed"] and km["after"] == [0, 0, 0] and km["before"][2] > 0
    assert m1["mode"] == "anonymised"
    for f in m1["files"]:
        p = ds / "1" / f["path"]
        assert p.stat().st_size == f["bytes"]
        assert sha(p) == f["sha256"]
        if p.suffix == ".parquet":
            assert pl.read_parquet(p).height == f["rows"]
    # version 1 untouched by the second run
    v1 = ds / "1"
    assert {p.relative_to(v1).as_posix(): sha(p) for p in v1.rglob("*") if p.is_file()} == published["hashes1"]
    # same inputs and key: byte-identical Parquet
    m2 = json.loads((ds / "2" / "manifest.json").read_text())
    parquet = [(f["path"], f["sha256"]) for f in m1["files"] if f["path"].endswith(".parquet")]
    assert {p.split("/")[1] for p, _ in parquet} >= {
        "person", "location", "visit_occurrence", "visit_detail", "condition_occurrence", "drug_exposure",
        "measurement", "procedure_occurrence", "observation_period", "condition_era", "episode", "cdm_source"}
    assert parquet == [(f["path"], f["sha256"]) for f in m2["files"] if f["path"].endswith(".parquet")]
    # and the same data quality report (its samples of offending rows are ordered, not as the scan found them)
    assert sha(ds / "1" / "reports" / "dqd.html") == sha(ds / "2" / "reports" / "dqd.html")
    assert "Published omop-demo v1" in str(published["out1"])
    # without a terminal, progress is one line per step with its duration
    assert "hospital-a: omop done in" in str(published["out1"]) and "release: published_release" in str(published["out1"])


def test_runs_are_the_named_jobs(published: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    import dagster as dg

    monkeypatch.setenv("DAGSTER_HOME", str(Path(str(published["home"])) / "dagster"))
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
    names = {(r.job_name, r.tags.get("dagster/partition")) for r in runs}
    assert ("site_job", "hospital-a") in names and ("release_job", None) in names
    assert not any(r.job_name.startswith("__") for r in runs)


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
        rest = g.filter(~pl.col("category").is_in(["in", "produced", "generalised", "unlinked", "cascaded"]))["rows"].sum()
        assert rows_in == rest, (stage, site, table, g.to_dicts())
        # generalised rows and events kept without their visit (unlinked) are in out, counted besides;
        # cascades (the parent row was quarantined) are quarantined raw.orphan rows, counted besides
        out = g.filter(pl.col("category") == "out")["rows"].sum()
        assert g.filter(pl.col("category") == "generalised")["rows"].sum() <= out, (stage, site, table)
        assert g.filter(pl.col("category") == "unlinked")["rows"].sum() <= out, (stage, site, table)
        orphans = g.filter((pl.col("category") == "quarantined") & (pl.col("reason_code") == "raw.orphan"))["rows"].sum()
        assert g.filter(pl.col("category") == "cascaded")["rows"].sum() <= orphans, (stage, site, table)
    # raw stage "in" equals the data lines of the landing files
    raw_in = {(s, t): n for s, t, n in acc.filter((pl.col("stage") == "raw") & (pl.col("category") == "in"))
              .select("site", "table", "rows").iter_rows()}
    assert raw_in == _landing_rows(home)
    cats = set(acc["category"])
    assert {"out", "quarantined", "deduplicated", "merged", "suppressed", "fact_suppressed", "generalised"} <= cats


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


def test_manifests_of_two_runs_differ_only_in_time_and_catalog(published: dict[str, object]) -> None:
    ds = Path(str(published["home"])) / "dataspace" / "omop-demo"
    m1 = json.loads((ds / "1" / "manifest.json").read_text())
    m2 = json.loads((ds / "2" / "manifest.json").read_text())
    # version 2 knows version 1: its risk report checks the join with it
    assert m1["risk"]["summary"]["earlier_versions"] == [] and m2["risk"]["summary"]["earlier_versions"] == [1]
    for m in (m1, m2):
        m.pop("created")
        m.pop("version")
        m["risk"]["summary"].pop("earlier_versions")
        m["risk"]["km"].pop("earlier_versions")
        for key in ("after_joint", "persons_joint"):
            m["risk"]["km"].pop(key, None)
        m["risk"].pop("protection")
        m["files"] = [f for f in m["files"] if f["path"] not in (
            "catalog.duckdb", "metadata/healthdcat-ap.jsonld", "metadata/croissant.json", "README.md",
            "reports/risk-report.json", "reports/risk-report.html")]
    assert m1 == m2
    # the metadata files differ only through the version and the created time they carry
    for rel in ("metadata/healthdcat-ap.jsonld", "metadata/croissant.json", "README.md"):
        a = (ds / "1" / rel).read_text().replace(str(json.loads((ds / "1" / "manifest.json").read_text())["created"]), "T")
        b = (ds / "2" / rel).read_text().replace(str(json.loads((ds / "2" / "manifest.json").read_text())["created"]), "T")
        assert len(a) > 100 and abs(len(a) - len(b)) < 120  # v2 also names the earlier version it was checked with


def test_release_reads_everywhere_and_catalog_moves(published: dict[str, object], tmp_path: Path) -> None:
    import os
    import shutil

    import duckdb
    import pyarrow.parquet as pq

    v1 = Path(str(published["home"])) / "dataspace" / "omop-demo" / "1"
    copy = tmp_path / "copied-release"
    shutil.copytree(v1, copy)
    for t in ("person", "visit_occurrence", "condition_occurrence", "observation_period", "location", "measurement",
              "drug_exposure", "episode"):
        f = copy / "omop" / t / "part-0.parquet"
        n = pl.read_parquet(f).height
        assert pq.read_table(f).to_pandas().shape[0] == n
        assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{f}')").fetchall()[0][0] == n
    cwd = os.getcwd()
    try:
        os.chdir(copy)
        con = duckdb.connect("catalog.duckdb", read_only=True)
        assert con.sql("SELECT count(*) FROM person").fetchall()[0][0] > 0
        con.close()
    finally:
        os.chdir(cwd)
    con = duckdb.connect(str(copy / "catalog.duckdb"), read_only=True)
    con.execute(f"SET file_search_path = '{copy}'")
    assert con.sql("SELECT count(*) FROM condition_occurrence").fetchall()[0][0] > 0
    con.close()


@pytest.mark.filterwarnings("ignore:ConjunctiveGraph is deprecated:DeprecationWarning")  # rdflib's own parser
def test_jsonld_parses_offline_with_every_field(published: dict[str, object]) -> None:
    import rdflib

    ds = Path(str(published["home"])) / "dataspace"
    text = (ds / "omop-demo" / "1" / "metadata" / "healthdcat-ap.jsonld").read_text()
    assert "http" not in json.dumps(json.loads(text)["@context"]).replace("http://", "").replace("https://", "")  # inline IRIs only
    g = rdflib.Graph().parse(data=text, format="json-ld")
    dct = rdflib.Namespace("http://purl.org/dc/terms/")
    dcat = rdflib.Namespace("http://www.w3.org/ns/dcat#")
    hd = rdflib.Namespace("http://healthdataportal.eu/ns/health#")
    ds_node = next(g.subjects(rdflib.RDF.type, dcat.Dataset))
    for pred in (dct.title, dct.description, dct.identifier, dct.publisher, dcat.contactPoint, hd.hdab, dcat.theme,
                 dct.accessRights, rdflib.URIRef("http://data.europa.eu/r5r/applicableLegislation"),
                 rdflib.URIRef("https://w3id.org/dpv#hasPurpose"), rdflib.URIRef("https://w3id.org/dpv#hasTechnicalMeasure"),
                 dct.temporal, hd.numberOfRecords,
                 hd.numberOfUniqueIndividuals, hd.minTypicalAge, hd.maxTypicalAge, hd.hasCodingSystem, dcat.distribution):
        assert list(g.objects(ds_node, pred)), pred
    # an anonymised release: no personal data, listed, restricted access (obtained on request)
    assert not list(g.objects(ds_node, rdflib.URIRef("https://w3id.org/dpv#hasPersonalData")))
    assert str(next(g.objects(ds_node, dct.accessRights))).endswith("/access-right/RESTRICTED")
    assert str(next(g.objects(ds_node, rdflib.URIRef("https://w3id.org/dpv#hasTechnicalMeasure")))).endswith("#Anonymisation")
    assert "DEMO" in str(next(g.objects(ds_node, dct.title)))
    assert len(list(g.objects(ds_node, dcat.distribution))) == len(
        [f for f in json.loads((ds / "omop-demo" / "1" / "manifest.json").read_text())["files"] if f["path"].endswith(".parquet")])
    rdflib.Graph().parse(data=(ds / "catalog.jsonld").read_text(), format="json-ld")
    rdflib.Graph().parse(data=(ds / "omop-demo" / "1" / "metadata" / "croissant.json").read_text(), format="json-ld")


def test_verify_detects_a_flipped_byte_in_any_file(published: dict[str, object], tmp_path: Path) -> None:
    import shutil

    v1 = Path(str(published["home"])) / "dataspace" / "omop-demo" / "1"
    code, out = invoke("verify", str(v1))
    assert code == 0, out
    assert "matches the approval by demo" in out
    assert "k^m: k = 5, m = 2: persons at risk by facts known 0: 0, 1: 0, 2: 0" in " ".join(out.split())
    # version 2 is checked joined with version 1 (the versions it was published after)
    code, out = invoke("verify", str(v1.parent / "2"))
    assert code == 0 and "joined with versions 1: 0: 0, 1: 0, 2: 0" in " ".join(out.split()), out
    code, out = invoke("verify", str(v1), "--workspace", str(published["home"]))  # leak scan: the identity zone
    assert code == 0 and "leak scan: no identifier of" in out, out
    copy = tmp_path / "omop-demo" / "1"
    shutil.copytree(v1, copy)
    code, out = invoke("verify", str(copy))
    assert code == 0 and "unanchored" in out
    code, out = invoke("verify", str(copy), "--approval", str(v1.parent / "approvals" / "1.json"))
    assert code == 0 and "matches the approval" in out
    for f in sorted(p for p in copy.rglob("*") if p.is_file()):
        data = bytearray(f.read_bytes())
        original = bytes(data)
        data[len(data) // 2] ^= 0x01
        f.write_bytes(bytes(data))
        code, _out = invoke("verify", str(copy), "--approval", str(v1.parent / "approvals" / "1.json"))
        assert code == 1, f
        f.write_bytes(original)


def test_verify_leak_scan_reads_every_table_and_text_file(published: dict[str, object], tmp_path: Path) -> None:
    """``ds4h verify --workspace`` on a copy of a release with identifiers planted in a table (a surname
    in its person's rows, found through the persons recorded for that version in the identity zone),
    in the README and in a stray text file."""
    import shutil

    from pipelines.leaks import identity_sites, pseudonymous_identities

    home = Path(str(published["home"]))
    ws = Workspace(home)
    copy = tmp_path / "omop-demo" / "1"
    shutil.copytree(home / "dataspace" / "omop-demo" / "1", copy)
    record = read_partition(ws.published_persons("omop-demo", 1))
    identities = pseudonymous_identities(ws, identity_sites(ws))
    meas = copy / "omop" / "measurement" / "part-0.parquet"
    pid = pl.read_parquet(meas)["person_id"][0]
    pseudo = record.filter(pl.col("person_id") == pid)["pseudo_person_id"].item()
    who = identities.filter(pl.col("person_id") == pseudo).row(0, named=True)
    _plant(meas, "unit_source_value", {0: f"{_folded(str(who['last_name']))} est venue"})
    phone = identities.filter(pl.col("phone").str.count_matches(r"\d") >= 11)["phone"][0]
    readme = copy / "README.md"
    readme.write_text(readme.read_text() + f"\nQuestions: call {phone}\n")
    (copy / "reports" / "extra.txt").write_text(f"{who['first_name']} {who['last_name']}\n")
    code, out = invoke("verify", str(copy), "--workspace", str(home))
    assert code == 1, out
    flat = " ".join(out.split())
    assert ("BAD leak scan: README.md: phone 1; omop/measurement/part-0.parquet: name 1; "
            "reports/extra.txt: full_name 1") in flat, out
    assert str(who["last_name"]) not in out and str(phone) not in out


def test_publishing_fails_halfway_without_trace(published: dict[str, object]) -> None:
    from pipelines.publish import publish_release

    ds_root = Path(str(published["home"])) / "dataspace"
    ds = ds_root / "omop-demo"
    latest = (ds / "LATEST").read_text()
    before = sorted(p.name for p in ds.iterdir())
    tables = {t: pl.read_parquet(ds / "1" / "omop" / t / "part-0.parquet") for t in ("person", "visit_occurrence", "observation_period")}
    m1 = json.loads((ds / "1" / "manifest.json").read_text())
    extra = {k: m1[k] for k in ("project", "key_fingerprint", "risk", "policy")}
    calls = []

    def boom(path: Path) -> None:
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full (simulated)")

    with pytest.raises(OSError, match="simulated"):
        publish_release(ds_root, "omop-demo", tables, extra, demo=True, on_file_written=boom)
    assert sorted(p.name for p in ds.iterdir()) == before
    assert (ds / "LATEST").read_text() == latest
    pub = publish_release(ds_root, "omop-demo", tables, extra, demo=True)
    assert pub.version == 3 and (ds / "LATEST").read_text().strip() == "3"


def test_unchanged_inputs_publish_nothing(published: dict[str, object]) -> None:
    """A second run with the same landing files, config, code and key publishes nothing and says so;
    --force publishes (the determinism check above compares that forced version with the first)."""
    assert published["code_same"] == 0, published["out_same"]
    assert "nothing changed since version 1" in str(published["out_same"]), published["out_same"]
    assert published["versions_after_same"] == ["1", "LATEST", "approvals"]
    m1 = json.loads((Path(str(published["home"])) / "dataspace" / "omop-demo" / "1" / "manifest.json").read_text())
    assert len(m1["inputs"]["fingerprint"]) == 64 and m1["inputs"]["landing_files"] > 0


def test_changed_landing_file_changes_the_fingerprint(published: dict[str, object], tmp_path: Path) -> None:
    from pipelines.fingerprint import run_inputs
    from schemas.config import load_config

    home = Path(str(published["home"]))
    cfg = load_config(home / "ds4h.yaml")
    before = run_inputs(cfg, "k")["fingerprint"]
    assert run_inputs(cfg, "other key")["fingerprint"] != before
    landing = cfg.sources[0].path / "patients.csv"
    original = landing.read_bytes()
    try:
        landing.write_bytes(original + b"\n")
        assert run_inputs(cfg, "k")["fingerprint"] != before
    finally:
        landing.write_bytes(original)
    assert run_inputs(cfg, "k")["fingerprint"] == before
    policy_changed = cfg.model_copy(update={"policy": cfg.policy.model_copy(update={"date_shift_days": 90})})
    assert run_inputs(policy_changed, "k")["fingerprint"] != before


def test_approval_rules(published: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DS4H_HOME", str(published["home"]))
    code, out = invoke("approve", "omop-demo", "1", "--by", "Jane", "--yes")
    assert code == 1 and "DEMO" in out and "approved automatically" in out
    code, out = invoke("connector-export", "omop-demo", "1", "--out", str(Path(str(published["home"])) / "edc"))
    assert code == 1 and "DEMO" in out
    code, out = invoke("releases")
    assert code == 0 and "omop-demo" in out
    assert "approved (DEMO, automatic)" in out and "LATEST" in out


def test_verify_by_dataset_and_version(published: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DS4H_HOME", str(published["home"]))
    code, out = invoke("verify", "omop-demo", "1")
    assert code == 0, out
    assert "checksums" in out or "ok" in out
    code, out = invoke("verify", "omop-demo", "9")
    assert code == 1 and "its versions: 1, 2" in out
    code, out = invoke("verify", "no/such/folder")
    assert code == 1 and "a dataset and a version" in out


def test_z_engine_fault_is_caught_by_the_audit(published: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    """A k^m engine that does nothing (a bug) releases rare facts: the audit of the written files, which
    shares no code with it, blocks publishing and says why."""
    import anonymisation.kmanon as kmanon
    from anonymisation.kmanon import KmResult

    home = Path(str(published["home"]))
    monkeypatch.setenv("DS4H_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    monkeypatch.setenv("DS4H_KEYS", str(home.parent / "keys"))

    def lazy(units, person_class, parent, k, m, **_kw):  # type: ignore[no-untyped-def]
        return KmResult(units.facts.copy(), np.zeros(len(units.facts), dtype=bool), np.zeros(0, dtype=np.int64), 0, 0)

    monkeypatch.setattr(kmanon, "enforce_km", lazy)
    monkeypatch.setattr("anonymisation.release.enforce_km", lazy)
    monkeypatch.setattr("anonymisation.release.persons_at_risk", lambda *a, **kw: [0, 0, 0])  # hide it from the report
    ds = home / "dataspace" / "omop-demo"
    before = sorted(p.name for p in ds.iterdir())
    code, out = invoke("run", "--select", "group:release or group:publish")
    assert code == 2, out
    assert "k_anonymity_of_facts" in out and "nothing was published" in out, out
    assert sorted(p.name for p in ds.iterdir()) == before


def _env(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DS4H_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    monkeypatch.setenv("DS4H_KEYS", str(home.parent / "keys"))


def _folded(s: str) -> str:
    """Upper case without accents: how a planted value differs from the identity zone's."""
    import unicodedata

    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c)).upper()


def _digits(s: str) -> str:
    return "".join(c for c in s if c.isdigit())


def _plant(path: Path, column: str, values: dict[int, str | dt.date]) -> None:
    """Write ``values`` (row -> value) into ``column`` of the Parquet file ``path``."""
    df = pl.read_parquet(path)
    dtype = df.schema[column]
    rows = pl.DataFrame({"_r": list(values), "_v": pl.Series(list(values.values()), dtype=dtype)},
                        schema={"_r": pl.UInt32, "_v": dtype})
    df.with_row_index("_r").join(rows, on="_r", how="left").with_columns(
        pl.coalesce("_v", column).alias(column)).drop("_r", "_v").write_parquet(path)


def _reported(out: str, check: str, table: str) -> set[str]:
    """The identifier types a failed leak_scan check (one per stage) names for ``table`` in the run's message."""
    flat = " ".join(out.split())
    described = flat.split(f"{check} (identifiers found (cells by table and type): ", 1)[1].split(")", 1)[0]
    by_table = dict(part.split(": ", 1) for part in described.split("; "))
    return {kind.split()[0] for kind in by_table[table].split(", ")}


def _forms(p: dict[str, object], which: str) -> str:
    """A planted cell holding one identifier of the identity row ``p`` in another spelling."""
    birth = p["birth_date"]
    assert isinstance(birth, dt.date)
    return {
        "name": f"{_folded(str(p['last_name']))} est venue",
        "birth_date": f"né le {birth:%d/%m/%Y}",
        "address": f"domicile: {_folded(str(p['address']))}",
        "matricule": "matricule " + " ".join(_digits(str(p["matricule"]))[i:j] for i, j in ((0, 4), (4, 8), (8, 11), (11, 13))),
        "email": f"écrire à {str(p['email']).upper()} svp",
        "local_id": f"dossier {p['patient_id']} transmis",
        "full_name": f"vu {_folded(str(p['first_name']))} {p['last_name']}",
        "iban": "virement LU28 0019 4006 4475 0000",
    }[which]


def test_z_identifiers_planted_after_the_pseudo_stage_block_the_release(
        published: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    """The release's own leak_scan checks: identifiers written into the pseudo zone after its checks
    passed (each form in the rows of the person it belongs to, found through the pseudonyms of the
    identity zone; a date column holding the birth date) stop the release: exit 2, nothing published."""
    import shutil

    home = Path(str(published["home"]))
    _env(home, monkeypatch)
    ws = Workspace(home)
    site = "hospital-b"
    pseudonyms = read_partition(ws.pseudonyms(site))
    assert set(pseudonyms.columns) == {"person_id", "pseudo_person_id", "birth_date_coincidence"}
    ident = read_partition(ws.identity(site)).join(pseudonyms, on="person_id").filter(
        pl.all_horizontal(pl.col("matricule", "email", "address", "phone").is_not_null()))
    deaths = read_partition(ws.lake("pseudo", "death", site))["person_id"]
    meas = ws.lake("pseudo", "measurement", site) / "part-0.parquet"
    backup = meas.with_suffix(".bak")
    shutil.copy(meas, backup)
    rows = pl.read_parquet(meas).with_row_index("_r").filter(~pl.col("person_id").is_in(deaths.implode()))
    first_row = dict(rows.group_by("person_id").agg(pl.col("_r").min()).iter_rows())
    persons = [p for p in ident.sort("person_id").iter_rows(named=True) if p["pseudo_person_id"] in first_row][:120]
    kinds = ["name", "birth_date", "address", "matricule", "email", "local_id", "full_name", "iban"]
    # each form in the rows of 15 persons (the release may suppress a few persons, or a row's facts)
    units = {first_row[p["pseudo_person_id"]]: _forms(p, kinds[n % len(kinds)]) for n, p in enumerate(persons)}
    births = {first_row[p["pseudo_person_id"]]: p["birth_date"] for p in persons[:15]}
    _plant(meas, "unit_source_value", units)  # type: ignore[arg-type]
    _plant(meas, "measurement_date", births)  # type: ignore[arg-type]
    ds = home / "dataspace" / "omop-demo"
    before = sorted(p.name for p in ds.iterdir())
    try:
        code, out = invoke("run", "--select", "group:release or group:publish")
    finally:
        shutil.move(backup, meas)
    assert code == 2, out
    flat = " ".join(out.split())
    assert "release_person:leak_scan" in flat and "nothing was published" in flat, out
    assert _reported(out, "release_person:leak_scan", "measurement") == {*kinds, "birth_date"}, out
    assert sorted(p.name for p in ds.iterdir()) == before
    assert not any(str(p["last_name"]) in out or _digits(str(p["matricule"])) in _digits(out) for p in persons)


def test_z_identifier_in_a_published_text_file_blocks_publication(
        published: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    """A steward writes a patient's name into the release title: the README, manifest and metadata would
    carry it; publishing stops (exit 2, the files and type named, never the name) and nothing is published."""
    home = Path(str(published["home"]))
    _env(home, monkeypatch)
    p = read_partition(Workspace(home).identity("hospital-c")).filter(pl.col("first_name").is_not_null()).row(0, named=True)
    cfg_path = home / "ds4h.yaml"
    original = cfg_path.read_text()
    cfg = yaml.safe_load(original)
    cfg["release"] = {"title": f"Cohort of {str(p['last_name']).upper()}, {p['first_name']}"}
    cfg_path.write_text(yaml.safe_dump(cfg))
    ds = home / "dataspace" / "omop-demo"
    before = sorted(q.name for q in ds.iterdir())
    try:
        code, out = invoke("run", "--select", "group:release or group:publish")
    finally:
        cfg_path.write_text(original)
    flat = " ".join(out.split())
    assert code == 2, out
    assert "published_release:leak_scan" in flat and "nothing was published" in flat, out
    for file in ("README.md", "manifest.json", "metadata/healthdcat-ap.jsonld"):
        assert f"{file}: full_name" in flat, (file, out)
    assert str(p["last_name"]) not in out
    assert sorted(q.name for q in ds.iterdir()) == before  # not even a temporary folder left


def test_zz_planted_identifier_blocks_publication(published: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs last in this module: it plants identifiers of every form, each in its person's rows, in
    several tables of the identifiable zone; the pseudo stage's checks name each table and type."""
    home = Path(str(published["home"]))
    _env(home, monkeypatch)
    ws = Workspace(home)
    site = "hospital-a"
    ident = read_partition(ws.identity(site))
    by_id = {p["person_id"]: p for p in ident.iter_rows(named=True)}

    def omop(table: str) -> Path:
        return home / "lake" / "omop" / table / f"site={site}" / "part-0.parquet"

    def own_rows(table: str, n: int, where: pl.Expr = pl.lit(True)) -> list[tuple[int, dict[str, object]]]:
        """The first row of ``n`` persons of ``table`` whose identity row satisfies ``where``."""
        ok = ident.filter(where & pl.all_horizontal(pl.col("matricule", "email", "address").is_not_null()))["person_id"]
        df = pl.read_parquet(omop(table)).with_row_index("_r").filter(pl.col("person_id").is_in(ok.implode()))
        firsts = df.group_by("person_id", maintain_order=True).agg(pl.col("_r").first()).head(n)
        return [(int(r), by_id[pid]) for pid, r in firsts.iter_rows()]

    other = ident.filter(pl.col("phone").is_not_null() & (pl.col("phone").str.count_matches(r"\d") >= 11)).row(0, named=True)
    phone = str(other["phone"])
    digits = _digits(phone)[3:]  # +352 621 123 456 -> 621123456, in other groups and with 00352
    spaced = f"tél. 00352 {digits[:3]} {digits[3:5]} {digits[5:7]} {digits[7:]}"
    procs = own_rows("procedure_occurrence", 1)
    _plant(omop("procedure_occurrence"), "procedure_source_value", {procs[0][0]: spaced})
    conds = own_rows("condition_occurrence", 2)
    _plant(omop("condition_occurrence"), "condition_source_value",
           {conds[0][0]: _forms(conds[0][1], "name"), conds[1][0]: _forms(conds[1][1], "birth_date")})
    drugs = own_rows("drug_exposure", 2)
    _plant(omop("drug_exposure"), "route_source_value",
           {drugs[0][0]: _forms(drugs[0][1], "address"), drugs[1][0]: _forms(drugs[1][1], "iban")})
    landline = pl.col("phone").str.replace_all(r"\D", "").str.len_chars() == 9  # +352 44 12 34
    meas = own_rows("measurement", 4)  # then a landline's person among the others (one row, one identifier)
    meas += own_rows("measurement", 1, landline & ~pl.col("person_id").is_in([m[1]["person_id"] for m in meas]))
    six = str(meas[4][1]["phone"])
    _plant(omop("measurement"), "unit_source_value", {
        meas[0][0]: _forms(meas[0][1], "matricule"), meas[1][0]: _forms(meas[1][1], "email"),
        meas[2][0]: _forms(meas[2][1], "local_id"), meas[3][0]: _forms(meas[3][1], "full_name"),
        meas[4][0]: f"rappeler au {' '.join(_digits(six)[3:][i:i + 2] for i in (0, 2, 4))}",
    })
    ds = home / "dataspace" / "omop-demo"
    before = sorted(p.name for p in ds.iterdir())
    code, out = invoke("run", "--select", "group:pseudo or group:release or group:publish")
    assert code == 2, out
    flat = " ".join(out.split())
    assert "nothing was published" in flat, out
    expect = {"procedure_occurrence": {"phone"}, "condition_occurrence": {"name", "birth_date"},
              "drug_exposure": {"address", "iban"},
              "measurement": {"matricule", "email", "local_id", "full_name", "phone"}}
    for table, kinds in expect.items():
        assert _reported(out, "pseudo_person:leak_scan", table) >= kinds, (table, out)
    assert phone not in out and _digits(phone)[-6:] not in _digits(out)
    assert sorted(p.name for p in ds.iterdir()) == before


def test_cohort_count_of_the_shipped_type_2_diabetes_set(published: dict[str, object],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """On a real release: `ds4h cohort count` equals the same count written apart in DuckDB SQL over
    the release's tables and its own vocabulary rows."""
    from tests.test_conceptsets import SHIPPED, _duckdb_count

    home = Path(str(published["home"]))
    monkeypatch.setenv("DS4H_HOME", str(home))
    code, out = invoke("cohort", "count", str(SHIPPED), "--release", "omop-demo/1", "--json")
    assert code == 0, out
    got = json.loads(out)
    expected = _duckdb_count(home / "dataspace" / "omop-demo" / "1", 201826, 201254)
    k = json.loads((home / "dataspace" / "omop-demo" / "1" / "manifest.json").read_text())["policy"]["k"]
    assert got["suppressed"] == (0 < expected < k)
    assert got["persons"] == (None if got["suppressed"] else expected)
    assert 201826 in got["concepts"] and 201254 not in got["concepts"]


def test_the_oncology_product_is_published_under_disclosure_control(published: dict[str, object]) -> None:
    """Read from the written release, with no engine code: the product is listed in the manifest, the
    HealthDCAT-AP metadata and the README; no published count lies between 1 and k-1; every total
    that is published equals the sum of its parts when all of them are published."""
    v1 = Path(str(published["home"])) / "dataspace" / "omop-demo" / "1"
    m = json.loads((v1 / "manifest.json").read_text())
    products = {p["name"]: p for p in m["products"]}
    assert set(products) == {"oncology", "t2dm-complications"}
    product = products["oncology"]
    assert product["path"] == "products/oncology/"
    k = product["disclosure"]["k"]
    assert k == m["policy"]["k"]
    files = {f["path"] for f in m["files"]}
    assert {"products/oncology/product.json", "products/oncology/stage.parquet"} <= files
    dcat = json.loads((v1 / "metadata" / "healthdcat-ap.jsonld").read_text())
    assert any("data product oncology" in d["dct:title"] for d in dcat["dcat:distribution"])
    assert "products/oncology/" in (v1 / "README.md").read_text()
    for name in ("incidence", "stage", "lines"):
        df = pl.read_parquet(v1 / "products" / "oncology" / f"{name}.parquet")
        counts = df["persons"].drop_nulls()
        assert not counts.filter(counts.is_between(1, k - 1)).len(), name
        assert (df["persons"].is_null() == df["suppressed"]).all()
        dims = [c for c in df.columns if c not in ("persons", "suppressed", "reason")]
        for i, d in enumerate(dims):  # each published total over d, against its parts
            others = [o for o in dims if o != d]
            for key, grp in df.filter(pl.col(d) != "ALL").group_by(others):
                total = df.filter(pl.col(d) == "ALL")
                for o, v in zip(others, key, strict=True):
                    total = total.filter(pl.col(o) == v)
                if total.height and total["persons"][0] is not None and grp["persons"].null_count() == 0:
                    assert grp["persons"].sum() == total["persons"][0], (name, d, key)
                # never exactly one withheld member in a relation whose total is published
                if total.height and total["persons"][0] is not None:
                    assert grp["persons"].null_count() != 1, (name, d, key, i)
    survival = pl.read_parquet(v1 / "products" / "oncology" / "survival.parquet")
    shown = pl.concat([survival["at_risk"], survival["deaths"]]).drop_nulls()
    assert not shown.filter(shown.is_between(1, k - 1)).len()


def test_the_t2dm_product_follows_feature_extraction_and_withholds_small_counts(published: dict[str, object]) -> None:
    v1 = Path(str(published["home"])) / "dataspace" / "omop-demo" / "1"
    m = json.loads((v1 / "manifest.json").read_text())
    (product,) = [p for p in m["products"] if p["name"] == "t2dm-complications"]
    k = product["disclosure"]["k"]
    cov = pl.read_parquet(v1 / "products" / "t2dm-complications" / "covariates.parquet")
    assert set(cov["analysis_id"].to_list()) <= {1, 3, 102, 302, 702, 706}
    concept_based = cov.filter(~pl.col("analysis_id").is_in([3, 706]))
    assert (concept_based["covariate_id"] == concept_based["concept_id"] * 1000 + concept_based["analysis_id"]).all()
    values = cov.filter(pl.col("analysis_id") == 706)  # the last HbA1c: conceptId * 1000000 + unit * 1000 + 706
    assert (values["covariate_id"] // 1_000_000 == values["concept_id"]).all()
    assert (values["average_value"].is_null() == values["persons"].is_null()).all()
    assert (cov["persons"].is_null() == cov["suppressed"]).all()
    for frame, cols in ((cov, ["persons"]), (pl.read_parquet(v1 / "products" / "t2dm-complications" / "outcomes.parquet"),
                                             ["persons_with_onset", "persons_with_prior_outcome"])):
        for c in cols:
            shown = frame[c].drop_nulls()
            assert not shown.filter(shown.is_between(1, k - 1)).len(), c
