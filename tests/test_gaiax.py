"""Gaia-X 25.11 credentials of a real DEMO release: export, offline verify (signatures, then SHACL), and
what must fail: a mandatory property removed (re-signed, so only the shapes catch it), a tampered token,
an unapproved or revoked real-project release; the participant key stays private."""

from __future__ import annotations

import base64
import json
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from pipelines import gaiax
from pipelines.cli import app
from pipelines.publish import approve, revoke

runner = CliRunner()
OUTPUTS: list[str] = []  # everything the CLI printed in this module


def invoke(*args: str) -> tuple[int, str]:
    r = runner.invoke(app, list(args), catch_exceptions=False)
    OUTPUTS.append(r.output)
    return r.exit_code, r.output


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One DEMO release (ds4h demo, 2,000 patients) and its exported credentials."""
    mp = pytest.MonkeyPatch()
    base = tmp_path_factory.mktemp("gaiax")
    home, keys = base / "home", base / "keys"
    env = {"DS4H_HOME": str(home), "DS4H_KEYS": str(keys), "DAGSTER_HOME": str(home / "dagster")}
    for k, v in env.items():
        mp.setenv(k, v)
    mp.delenv("DS4H_CONFIG", raising=False)
    try:
        code, output = invoke("demo")
        assert code == 0, output
        out_dir = base / "gx"
        code, output = invoke("gaiax", "export", "omop-demo", "1", "--out", str(out_dir))
        assert code == 0, output
        assert "DEMO" in output
        yield {"home": home, "keys": keys, "out": out_dir, "base": base, "env": env}
    finally:
        mp.undo()


@pytest.fixture(autouse=True)
def _in_the_module_workspace(isolated_env: Path, demo: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """conftest gives every test a fresh $DS4H_HOME: these tests work in the module's workspace."""
    for k, v in demo["env"].items():
        monkeypatch.setenv(k, v)


def _b64(part: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # type: ignore[no-any-return]


def _types(vc: dict[str, Any]) -> set[str]:
    t = vc["credentialSubject"]["type"]
    return set(t if isinstance(t, list) else [t])


def test_export_then_verify(demo: dict[str, Any]) -> None:
    out_dir: Path = demo["out"]
    code, output = invoke("gaiax", "verify", str(out_dir))
    assert code == 0, output
    assert "Gaia-X 25.11 shapes" in output and "conform" in output
    types: set[str] = set()
    did = json.loads((out_dir / "did.json").read_text())["id"]
    assert did.startswith("did:web:")
    for name in gaiax.CREDENTIALS:
        token = (out_dir / f"{name}.vc.jwt").read_text().strip()
        header, payload, _ = token.split(".")
        h = _b64(header)
        assert h["typ"] == "vc+jwt" and h["alg"] == "ES256"
        vc = json.loads((out_dir / f"{name}.json").read_text())
        assert _b64(payload) == vc  # the decoded JSON beside the token is the token's payload
        assert {"@context", "type", "issuer", "validFrom", "credentialSubject"} <= set(vc)
        if name == "registration-number":
            assert vc["issuer"] == gaiax.MOCK_NOTARY_DID and "MOCK" in vc["description"]
            assert h["kid"] == f"{gaiax.MOCK_NOTARY_DID}#key-1"
        else:
            assert h["kid"] == f"{did}#key-1" and vc["issuer"] == did
            assert "DEMO" in vc["description"]
        types |= _types(vc)
    assert {"gx:LegalPerson", "gx:RegistrationNumber", "gx:Issuer", "gx:ServiceOffering", "gx:DataProduct"} <= types
    issuer = json.loads((out_dir / "issuer-terms.json").read_text())["credentialSubject"]
    assert issuer["gaiaxTermsAndConditions"]
    # the data product points at the release's HealthDCAT-AP dcat:Dataset (read with json, not our code)
    dcat = json.loads((demo["home"] / "dataspace" / "omop-demo" / "1" / "metadata" / "healthdcat-ap.jsonld").read_text())
    assert dcat["@type"] == "dcat:Dataset"
    product = json.loads((out_dir / "data-product.json").read_text())["credentialSubject"]
    assert product["dataProductDescription"]["dcat:Dataset"] == dcat["@id"]
    # the presentation envelops exactly the credentials
    vp_token = (out_dir / "presentation.vp.jwt").read_text().strip()
    assert _b64(vp_token.split(".")[0])["typ"] == "vp+jwt"
    enveloped = _b64(vp_token.split(".")[1])["verifiableCredential"]
    assert all(c["type"] == "EnvelopedVerifiableCredential" for c in enveloped)
    assert {c["id"] for c in enveloped} == {
        "data:application/vc+jwt," + (out_dir / f"{n}.vc.jwt").read_text().strip() for n in gaiax.CREDENTIALS}


def _copy(demo: dict[str, Any], name: str) -> Path:
    target: Path = demo["base"] / name
    shutil.copytree(demo["out"], target)
    return target


def test_missing_mandatory_property_fails_shacl(demo: dict[str, Any]) -> None:
    folder = _copy(demo, "no-legal-address")
    vc = json.loads((folder / "legal-person.json").read_text())
    del vc["credentialSubject"]["legalAddress"]
    key = gaiax.load_participant_key("demo")
    token = gaiax.sign(vc, key, f"{vc['issuer']}#key-1")  # re-signed: only the shapes can catch it
    (folder / "legal-person.vc.jwt").write_text(token + "\n")
    code, output = invoke("gaiax", "verify", str(folder))
    assert code == 1
    assert "ok  legal-person.vc.jwt" in output  # the signature holds
    assert "gx:legalAddress on <" in output and "legal-person.json#subject" in output
    assert "Traceback" not in output


def test_tampered_token_rejected(demo: dict[str, Any]) -> None:
    folder = _copy(demo, "tampered")
    header, payload, sig = (folder / "data-product.vc.jwt").read_text().strip().split(".")
    i = len(payload) // 2
    payload = payload[:i] + ("A" if payload[i] != "A" else "B") + payload[i + 1:]
    (folder / "data-product.vc.jwt").write_text(f"{header}.{payload}.{sig}\n")
    code, output = invoke("gaiax", "verify", str(folder))
    assert code == 1
    assert "BAD data-product.vc.jwt: signature does not verify" in output
    (folder / "service-offering.vc.jwt").write_text("not a token\n")
    code, output = invoke("gaiax", "verify", str(folder))
    assert code == 1 and "BAD service-offering.vc.jwt" in output and "Traceback" not in output


def test_user_mistakes_are_one_line(demo: dict[str, Any]) -> None:
    code, output = invoke("gaiax", "verify", str(demo["base"] / "nowhere"))
    assert code == 1 and "is not a folder" in output and "Traceback" not in output
    code, output = invoke("gaiax", "export", "omop-demo", "7", "--out", str(demo["base"] / "x"))
    assert code == 1 and "no release omop-demo version 7" in output


def test_real_project_exports_approved_releases_only(demo: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A second workspace, project 'hospital-lu', holding a copy of the release as a pending real release."""
    home = demo["base"] / "real"
    src = demo["home"] / "dataspace" / "omop-demo" / "1"
    dst = home / "dataspace" / "omop-lu" / "1"
    shutil.copytree(src, dst)
    m = json.loads((dst / "manifest.json").read_text())
    m.update(demo=False, dataset="omop-lu", project="hospital-lu")
    (dst / "manifest.json").write_text(json.dumps(m))
    cfg = yaml.safe_load((demo["home"] / "ds4h.yaml").read_text())
    cfg["project"] = "hospital-lu"
    cfg.pop("participant")
    (home / "ds4h.yaml").write_text(yaml.safe_dump(cfg))
    monkeypatch.setenv("DS4H_HOME", str(home))
    out_dir = demo["base"] / "real-gx"
    code, output = invoke("gaiax", "export", "omop-lu", "1", "--out", str(out_dir))
    assert code == 1 and "not approved" in output and not out_dir.exists()
    approve(home / "dataspace", "omop-lu", 1, "Jane Steward", reason="test")
    code, output = invoke("gaiax", "export", "omop-lu", "1", "--out", str(out_dir))
    assert code == 1 and "no 'participant:' block" in output
    cfg["participant"] = {
        "legal_name": "Hôpital Test", "registration_number": {"type": "vatID", "value": "LU12345678"},
        "legal_address": {"country_code": "LU", "street_address": "4 rue Barblé", "locality": "Luxembourg",
                          "postal_code": "L-1210"},
        "headquarters_address": {"country_code": "LU", "street_address": "4 rue Barblé", "locality": "Luxembourg",
                                 "postal_code": "L-1210"},
        "did_web_domain": "ds4h.hopital-test.lu"}
    (home / "ds4h.yaml").write_text(yaml.safe_dump(cfg))
    code, output = invoke("gaiax", "export", "omop-lu", "1", "--out", str(out_dir))
    assert code == 1 and "ds4h keys participant --project hospital-lu" in output  # no key is made for a real project
    code, output = invoke("keys", "participant")
    assert code == 0 and "hospital-lu.participant.pem" in output
    code, output = invoke("gaiax", "export", "omop-lu", "1", "--out", str(out_dir))
    assert code == 0 and "DEMO" not in output, output
    code, output = invoke("gaiax", "verify", str(out_dir))
    assert code == 0, output
    vc = json.loads((out_dir / "legal-person.json").read_text())
    assert vc["issuer"] == "did:web:ds4h.hopital-test.lu" and "description" not in vc
    assert json.loads((out_dir / "registration-number.json").read_text())["credentialSubject"]["vatID"] == "LU12345678"
    revoke(home / "dataspace", "omop-lu", 1, "Jane Steward", "test")
    code, output = invoke("gaiax", "export", "omop-lu", "1", "--out", str(demo["base"] / "revoked-gx"))
    assert code == 1 and "revoked" in output


def test_participant_key_private(demo: dict[str, Any]) -> None:
    path = gaiax.participant_key_path("demo")
    assert path.parent == demo["keys"] and not path.resolve().is_relative_to(demo["home"].resolve())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    pem = path.read_text()
    private_d = json.loads(gaiax.load_participant_key("demo").export_private())["d"]
    code, output = invoke("keys", "participant", "--project", "demo")
    assert code == 1 and "never replaced" in output  # the existing key stays
    assert path.read_text() == pem
    code, output = invoke("keys", "participant", "--project", "other")
    assert code == 0 and "thumbprint" in output
    for text in OUTPUTS:
        assert private_d not in text and "PRIVATE KEY" not in text
    written = [p for p in demo["base"].iterdir() if p.is_dir() and p.name not in ("home", "real", "keys")]
    for root in [*written, demo["home"] / "dataspace"]:
        for f in root.rglob("*"):
            if f.is_file() and f.suffix in (".json", ".jwt", ".txt", ".yaml", ".jsonld"):
                text = f.read_text(errors="replace")
                assert private_d not in text and "PRIVATE KEY" not in text, f
