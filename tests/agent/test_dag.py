"""The demo pipeline (shell -> python -> shell) end to end: events, artifacts verified, on local and S3 stores."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

from control_room.services.demo import DEMO_PIPELINE_SPEC
from tests.agent.conftest import StartAgent, operator_client, run_events, submit, wait_for_run
from tests.live import LiveServer, Provisioner


def pipeline_tasks(pool: str) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = copy.deepcopy(DEMO_PIPELINE_SPEC["tasks"])  # type: ignore[arg-type]
    for task in tasks:
        task["pool"] = pool
    return tasks


def run_pipeline_and_verify(server: LiveServer, provision: Provisioner, pool: str, start_agent: StartAgent) -> None:
    operator = operator_client(server, provision.user_token("operator")[1])
    start_agent(server, provision.executor_token(pool))
    run = submit(operator, provision.tenant().project_id, pipeline_tasks(pool))
    detail = wait_for_run(operator, run["id"], timeout=90)
    assert detail["status"] == "succeeded", detail
    by_key = {task["key"]: task for task in detail["tasks"]}
    assert [a["outcome"] for a in by_key["summarize"]["attempts"]] == ["succeeded"]
    assert by_key["summarize"]["result"] == {"rows": 200, "regions": 4, "total": by_key["summarize"]["result"]["total"]}
    assert by_key["extract"]["result"] == {"returncode": 0, "artifacts": ["out/orders.csv"]}

    events = run_events(operator, run["id"])
    for key, task in by_key.items():
        own = [e for e in events if e["task_id"] == task["id"]]
        types = [e["type"] for e in own]
        assert types[0] == "start" and types[-1] == "finish", (key, types)
        assert "progress" in types, (key, types)
        assert [e["seq"] for e in own] == list(range(len(own))), f"{key}: seq not contiguous from 0"
        assert own[-1]["data"]["outcome"] == "succeeded"
    assert any(e["message"] == "extracted 200 orders" for e in events), "the shell output is not in the events"

    artifacts = operator.get(f"/runs/{run['id']}/artifacts").json()["items"]
    assert sorted(a["name"] for a in artifacts) == ["out/orders.csv", "report.md", "summary.json"]
    for artifact in artifacts:
        content = operator.get(f"/artifacts/{artifact['id']}/content")
        assert content.status_code == 200
        assert hashlib.sha256(content.content).hexdigest() == artifact["sha256"]
        assert len(content.content) == artifact["size_bytes"]
    orders = next(a for a in artifacts if a["name"] == "out/orders.csv")
    lines = operator.get(f"/artifacts/{orders['id']}/content").text.splitlines()
    assert lines[0] == "order_id,region,amount" and len(lines) == 201
    report = next(a for a in artifacts if a["name"] == "report.md")
    assert f"Run {run['id']}, task publish, attempt 1" in operator.get(f"/artifacts/{report['id']}/content").text


def test_pipeline_on_the_local_store(
    live_api: LiveServer, provision: Provisioner, pool: str, start_agent: StartAgent
) -> None:
    run_pipeline_and_verify(live_api, provision, pool, start_agent)


def test_pipeline_on_s3(live_api_s3: LiveServer, provision: Provisioner, pool: str, start_agent: StartAgent) -> None:
    run_pipeline_and_verify(live_api_s3, provision, pool, start_agent)
