"""A real agent stops a task over its memory cap and says so: the task fails naming the cap's limit, the
`limits.memory_exceeded` event carries the cap it broke, and the cap lists the stop among its refusals."""

from __future__ import annotations

import sys

import psycopg

from control_room.config import PROJECT_ROOT
from tests.agent.conftest import StartAgent, operator_client, run_events, submit, wait_for_run
from tests.live import LiveServer, Provisioner


def test_a_memory_cap_stop_is_attributed_to_the_cap(
    live_api: LiveServer, provision: Provisioner, pool: str, start_agent: StartAgent
) -> None:
    tenant = provision.tenant("memory-cap")  # an org of its own: its cap limits no other test's tasks
    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        conn.execute(
            "insert into ops.caps (org_id, name, scope, project_id, kind, limit_value) "
            "values (%s, 'small-memory', 'project', %s, 'max_memory_mb', 256), "
            "       (%s, 'roomy-memory', 'org', null, 'max_memory_mb', 8192)",
            (tenant.org_id, tenant.project_id, tenant.org_id),
        )
        slug = conn.execute("select slug from ops.orgs where id = %s", (tenant.org_id,)).fetchone()
    assert slug
    operator = operator_client(live_api, provision.user_token("operator", tenant)[1])
    start_agent(live_api, provision.executor_token(pool, tenant=tenant), concurrency=2)
    greedy = [sys.executable, "-c", "x = bytearray(800 * 1024 * 1024)"]
    tasks = [
        {"key": "shell-greedy", "engine": "shell", "argv": greedy, "pool": pool, "max_attempts": 1},
        {"key": "python-greedy", "engine": "python", "function": "tests.agent.task_functions:allocate",
         "params": {"megabytes": 800}, "python_path": [str(PROJECT_ROOT)], "pool": pool, "max_attempts": 1},
        # Its own, tighter ceiling stops it: that is the spec's doing, not the cap's.
        {"key": "own-ceiling", "engine": "shell", "argv": greedy, "max_memory_mb": 128, "pool": pool,
         "max_attempts": 1},
    ]  # fmt: skip
    run = submit(operator, tenant.project_id, tasks)
    detail = wait_for_run(operator, run["id"], timeout=90)
    by_key = {t["key"]: t for t in detail["tasks"]}
    for key in ("shell-greedy", "python-greedy"):
        assert by_key[key]["status"] == "failed", by_key[key]
        assert "memory cap (max_memory_mb = 256)" in by_key[key]["error"], by_key[key]["error"]
    assert by_key["own-ceiling"]["status"] == "failed" and "memory cap" not in by_key["own-ceiling"]["error"]

    stops = [e for e in run_events(operator, run["id"]) if e["type"] == "limits.memory_exceeded"]
    assert sorted(e["task_key"] for e in stops) == ["python-greedy", "shell-greedy"], "one stop each, none for own"
    for stop in stops:
        cap = stop["data"]["cap"]
        assert (cap["name"], cap["kind"], cap["scope"], cap["limit"]) == (
            "small-memory", "max_memory_mb", "project", 256
        )  # fmt: skip

    got = operator.get("/caps", params={"org": slug[0]})
    assert got.status_code == 200, got.text
    org = got.json()["items"]
    listed = {c["name"]: c["recent_refusals"] for c in org}
    assert sorted(r["task_key"] for r in listed["small-memory"]) == ["python-greedy", "shell-greedy"]
    assert all(r["layer"] == "agent" and r["run_id"] == run["id"] for r in listed["small-memory"])
    assert listed["roomy-memory"] == []
