"""Issue 16 over HTTP: re-run from failure (`POST /runs/{id}/retry` with a mode), the run-level error
summary, and a NUL byte in the runs search answered as a 422 problem naming `q`."""

from __future__ import annotations

import uuid

from tests.api.test_executor_flow import SHELL_TASK, claim, client, register, submit
from tests.live import LiveServer, Provisioner

PROBLEM = "application/problem+json"


def test_rerun_failed_over_http_reuses_what_succeeded(live_api: LiveServer, provision: Provisioner) -> None:
    pool = f"rerun-{uuid.uuid4().hex[:8]}"
    operator = client(live_api, provision.user_token("operator")[1])
    tasks = [{"key": "a", **SHELL_TASK, "pool": pool, "max_attempts": 1},
             {"key": "b", **SHELL_TASK, "pool": pool, "max_attempts": 1, "depends_on": ["a"]}]  # fmt: skip
    run = submit(operator, tasks, project=str(provision.tenant().project_id))
    agent = client(live_api, provision.executor_token(pool))
    register(agent)
    for outcome in ("succeeded", "failed"):
        (task,) = claim(agent)
        body = {
            "lease_token": task["lease_token"],
            "outcome": outcome,
            "error": "b broke" if outcome == "failed" else None,
        }
        assert agent.post(f"/tasks/{task['task_id']}/finalize", json=body).status_code == 200
    failed = operator.get(f"/runs/{run['id']}").json()
    assert failed["status"] == "failed" and failed["error"] == 'task "b" failed: b broke'

    bad = operator.post(f"/runs/{run['id']}/retry", json={"mode": "sideways"})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith(PROBLEM)
    missing = operator.post(f"/runs/{run['id']}/retry", json={"mode": "from_task"})
    assert missing.status_code == 422 and missing.json()["field"] == "from_task"

    rerun = operator.post(f"/runs/{run['id']}/retry", json={"mode": "failed"})
    assert rerun.status_code == 201, rerun.text
    detail = operator.get(f"/runs/{rerun.json()['id']}").json()
    by_key = {t["key"]: t for t in detail["tasks"]}
    assert by_key["a"]["status"] == "succeeded" and by_key["a"]["attempts"] == []
    assert by_key["a"]["reused_from_run"] == run["id"] and by_key["b"]["status"] == "queued"
    assert detail["retry_of"] == run["id"]
    assert operator.get(f"/runs/{run['id']}").json()["reruns"] == [detail["id"]]
    (again,) = claim(agent)
    assert again["task_key"] == "b"


def test_a_nul_byte_in_the_runs_search_is_a_422_naming_q(live_api: LiveServer, provision: Provisioner) -> None:
    viewer = client(live_api, provision.user_token("viewer")[1])
    refused = viewer.get("/runs", params={"q": "demo\x00"})
    assert refused.status_code == 422 and refused.headers["content-type"].startswith(PROBLEM)
    assert refused.json()["field"] == "q" and "NUL" in refused.json()["detail"]
