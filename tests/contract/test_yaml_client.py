"""A client built from the YAML alone drives a real server through a whole task."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from tests.contract.yaml_client import ContractClient, run_one_task, task_spec
from tests.live import LiveServer, Provisioner


def test_yaml_only_client_runs_a_task_end_to_end(live_api: LiveServer, provision: Provisioner) -> None:
    pool = f"yaml-{uuid.uuid4().hex[:6]}"
    user = ContractClient(live_api.base_url, provision.user_token("operator")[1])
    executor = ContractClient(live_api.base_url, provision.executor_token(pool))
    submitted = user.call(
        "submitRun",
        {
            "project": str(provision.tenant().project_id),
            "environment": "dev",
            "spec": {
                "name": "yaml-client",
                "tasks": [{"key": "only", "engine": "shell", "command": "true", "pool": pool}],
            },
        },
    )
    assert submitted.status_code == 201, submitted.text
    run_id = submitted.json()["id"]

    artifact = b"rows,3\n"
    outcome = run_one_task(executor, ["started", "working", "done"], artifact)

    assert outcome["task"]["run_id"] == run_id
    assert outcome["events"] == {"accepted": 3, "duplicates": 0}
    assert outcome["artifact"]["sha256"] == hashlib.sha256(artifact).hexdigest()
    assert outcome["final"] == {"task_status": "succeeded", "run_status": "succeeded", "replayed": False}
    run = user.call("getRun", run_id=run_id).json()
    assert run["status"] == "succeeded" and run["tasks"][0]["attempts"][0]["outcome"] == "succeeded"
    events = user.call("listRunEvents", run_id=run_id).json()["items"]
    assert [e["message"] for e in events] == ["started", "working", "done"]
    listed = user.call("listRunArtifacts", run_id=run_id).json()["items"]
    assert [a["name"] for a in listed] == ["result.txt"]
    assert user.call("downloadArtifact", artifact_id=listed[0]["id"]).content == artifact


def test_yaml_only_client_builds_and_submits_dbt_and_spark_tasks(live_api: LiveServer, provision: Provisioner) -> None:
    user = ContractClient(live_api.base_url, provision.user_token("operator")[1])
    dbt = task_spec("dbt", key="build", select=["path:models/marts+"])
    spark = task_spec("spark", key="daily_sales", depends_on=["build"], driver_memory="1g")
    with pytest.raises(ValueError, match="threads"):
        task_spec("dbt", threads="4")  # the client's own check, from the YAML, catches a wrong type
    submitted = user.call(
        "submitRun",
        {"project": str(provision.tenant().project_id), "spec": {"name": "yaml-typed", "tasks": [dbt, spark]}},
    )
    assert submitted.status_code == 201, submitted.text
    assert sorted(submitted.json()["engines"]) == ["dbt", "spark"]
