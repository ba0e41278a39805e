"""The contract API against a real server and Postgres: leases, long-poll, reaping, SSE, artifacts, auth."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.live import LiveServer, Provisioner, refused_soon

API = "/api/v1"


def client(server: LiveServer, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.base_url + API, headers={"Authorization": f"Bearer {token}"}, timeout=30)


@pytest.fixture
def pool() -> str:
    return f"pool-{uuid.uuid4().hex[:8]}"


SHELL_TASK = {"engine": "shell", "command": "true"}
PYTHON_TASK = {"engine": "python", "function": "executor_agent.examples.demo_pipeline:summarize"}


def submit(c: httpx.Client, tasks: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    body = {"project": extra.pop("project"), "environment": "dev", "spec": {"name": "t", "tasks": tasks}, **extra}
    response = c.post("/runs", json=body)
    assert response.status_code in (200, 201), response.text
    return response.json()


def register(c: httpx.Client, engines: tuple[str, ...] = ("shell",), capacity: int = 50) -> dict[str, Any]:
    response = c.post("/executors/register", json={"engines": list(engines), "max_concurrency": capacity})
    assert response.status_code == 200, response.text
    return response.json()


def claim(c: httpx.Client, max_tasks: int = 1, wait_s: float = 0) -> list[dict[str, Any]]:
    response = c.post("/tasks/claim", json={"max_tasks": max_tasks, "wait_s": wait_s})
    assert response.status_code == 200, response.text
    return response.json()["tasks"]


def test_long_polling_agents_of_one_pool_never_share_a_task(
    live_api: LiveServer, provision: Provisioner, pool: str
) -> None:
    operator = client(live_api, provision.user_token("operator")[1])
    agents = [client(live_api, provision.executor_token(pool)) for _ in range(2)]
    for agent in agents:
        register(agent)
    received: list[list[str]] = [[], []]
    stop = threading.Event()
    first_claim_started = threading.Barrier(3)

    def poll(i: int) -> None:
        first_claim_started.wait()
        while not stop.is_set():
            for task in claim(agents[i], max_tasks=3, wait_s=2):
                received[i].append(task["task_id"])

    threads = [threading.Thread(target=poll, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    first_claim_started.wait()  # both agents are (about to be) waiting in a long poll with nothing queued
    project = provision.tenant().project_id
    for _ in range(10):
        submit(
            operator,
            [{"key": f"t{i}", "engine": "shell", "command": "true", "pool": pool} for i in range(4)],
            project=str(project),
        )
    deadline = time.monotonic() + 20
    while sum(map(len, received)) < 40 and time.monotonic() < deadline:
        time.sleep(0.05)  # the agents' threads are the ones waiting on the server
    stop.set()
    for t in threads:
        t.join(timeout=10)
    everything = received[0] + received[1]
    assert len(everything) == 40
    assert len(set(everything)) == 40, "a task was handed to two agents"


def test_long_poll_is_woken_by_a_submit(live_api: LiveServer, provision: Provisioner, pool: str) -> None:
    operator = client(live_api, provision.user_token("operator")[1])
    agent = client(live_api, provision.executor_token(pool))
    register(agent)
    result: dict[str, Any] = {}

    def waiter() -> None:
        started = time.monotonic()
        result["tasks"] = claim(agent, wait_s=8)
        result["waited"] = time.monotonic() - started

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.5)  # let the claim reach its wait: the point is that it is already waiting
    submitted = time.monotonic()
    submit(
        operator,
        [{"key": "a", "engine": "shell", "command": "true", "pool": pool}],
        project=str(provision.tenant().project_id),
    )
    thread.join(timeout=15)
    assert len(result["tasks"]) == 1
    assert result["waited"] < 8, "the claim waited for its timeout instead of being woken"
    assert time.monotonic() - submitted < 3


def claims_answered(server: LiveServer, pool: str) -> float:
    """The server's count of claim checks answered for the pool (its Prometheus counter)."""
    for line in httpx.get(f"{server.base_url}{API}/metrics").text.splitlines():
        if line.startswith(f'lakehouse_claims_total{{pool="{pool}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_wake_up_is_handed_on_to_the_waiting_agent_that_can_run_the_task(
    live_api: LiveServer, provision: Provisioner, pool: str
) -> None:
    """A task notification wakes one waiting claim, first in line. Here the first two in line run only Python;
    they hand the wake-up on, and the shell agent behind them claims the shell task at once, not at its
    5-second re-check."""
    operator = client(live_api, provision.user_token("operator")[1])
    waiting: list[tuple[httpx.Client, tuple[str, ...]]] = [
        (client(live_api, provision.executor_token(pool)), ("python",)),
        (client(live_api, provision.executor_token(pool)), ("python",)),
        (client(live_api, provision.executor_token(pool)), ("shell",)),
    ]
    results: list[dict[str, Any]] = [{} for _ in waiting]

    def wait_for_work(i: int) -> None:
        agent = waiting[i][0]
        started = time.monotonic()
        results[i]["tasks"] = claim(agent, wait_s=4)  # under the 5-second re-check
        results[i]["waited"] = time.monotonic() - started

    threads = []
    for i, (agent, engines) in enumerate(waiting):
        register(agent, engines=engines)
        threads.append(threading.Thread(target=wait_for_work, args=(i,)))
        threads[-1].start()
        deadline = time.monotonic() + 10
        while claims_answered(live_api, pool) < i + 1:  # its first check came back empty: it is in line
            assert time.monotonic() < deadline, "the agent's long poll never reached its wait"
            time.sleep(0.02)
    submitted = time.monotonic()
    submit(
        operator,
        [{"key": "a", "engine": "shell", "command": "true", "pool": pool}],
        project=str(provision.tenant().project_id),
    )
    threads[2].join(timeout=15)
    assert len(results[2]["tasks"]) == 1
    assert time.monotonic() - submitted < 2.5, "the shell agent waited for its re-check, not a handed-on wake-up"
    for t in threads[:2]:
        t.join(timeout=15)
    assert results[0]["tasks"] == [] and results[1]["tasks"] == []


def test_stale_finalize_is_409_and_silent_agent_is_reaped(
    live_api: LiveServer, provision: Provisioner, pool: str
) -> None:
    operator = client(live_api, provision.user_token("operator")[1])
    run = submit(
        operator,
        [{"key": "a", "engine": "shell", "command": "true", "pool": pool, "retry_backoff_s": 0}],
        project=str(provision.tenant().project_id),
    )
    silent, rescuer = (client(live_api, provision.executor_token(pool)) for _ in range(2))
    register(silent)
    register(rescuer)
    (first,) = claim(silent)
    # The silent agent never heartbeats: its 3 s lease expires, the reaper requeues, the rescuer gets it.
    (second,) = claim(rescuer, wait_s=10)
    assert second["task_id"] == first["task_id"] and second["attempt"] == 2
    stale = silent.post(
        f"/tasks/{first['task_id']}/finalize", json={"lease_token": first["lease_token"], "outcome": "succeeded"}
    )
    assert stale.status_code == 409
    assert stale.headers["content-type"].startswith("application/problem+json")
    assert "lease" in stale.json()["detail"]
    detail = operator.get(f"/runs/{run['id']}").json()
    assert detail["tasks"][0]["status"] == "claimed"
    assert [a["outcome"] for a in detail["tasks"][0]["attempts"]] == ["lost", None]
    done = rescuer.post(
        f"/tasks/{second['task_id']}/finalize", json={"lease_token": second["lease_token"], "outcome": "succeeded"}
    )
    assert done.json() == {"task_status": "succeeded", "run_status": "succeeded", "replayed": False}
    again = rescuer.post(
        f"/tasks/{second['task_id']}/finalize", json={"lease_token": second["lease_token"], "outcome": "succeeded"}
    )
    assert again.json()["replayed"] is True


def test_heartbeat_extends_lease_and_carries_cancel(live_api: LiveServer, provision: Provisioner, pool: str) -> None:
    operator = client(live_api, provision.user_token("operator")[1])
    viewer = client(live_api, provision.user_token("viewer")[1])
    run = submit(
        operator,
        [{"key": "long", "engine": "shell", "command": "true", "pool": pool}],
        project=str(provision.tenant().project_id),
    )
    agent = client(live_api, provision.executor_token(pool))
    register(agent)
    (task,) = claim(agent)
    beat = agent.post(f"/tasks/{task['task_id']}/heartbeat", json={"lease_token": task["lease_token"]})
    assert beat.status_code == 200 and beat.json()["cancel_requested"] is False
    forged = viewer.post(f"/runs/{run['id']}/cancel")
    assert forged.status_code == 403
    assert operator.get(f"/runs/{run['id']}").json()["cancel_requested"] is False
    assert operator.post(f"/runs/{run['id']}/cancel").status_code == 200
    beat = agent.post(f"/tasks/{task['task_id']}/heartbeat", json={"lease_token": task["lease_token"]})
    assert beat.json()["cancel_requested"] is True
    hb = agent.post("/executors/heartbeat", json={"running_task_ids": [task["task_id"]]}).json()
    assert hb["cancel_task_ids"] == [task["task_id"]] and hb["drain"] is False
    agent.post(f"/tasks/{task['task_id']}/finalize", json={"lease_token": task["lease_token"], "outcome": "cancelled"})
    assert operator.get(f"/runs/{run['id']}").json()["status"] == "cancelled"
    retried = operator.post(f"/runs/{run['id']}/retry")
    assert retried.status_code == 201 and retried.json()["retry_of"] == run["id"]


def test_pool_scoped_tokens(live_api: LiveServer, provision: Provisioner) -> None:
    pool_a, pool_b = f"a-{uuid.uuid4().hex[:6]}", f"b-{uuid.uuid4().hex[:6]}"
    operator = client(live_api, provision.user_token("operator")[1])
    submit(
        operator,
        [{"key": "b-only", "engine": "shell", "command": "true", "pool": pool_b}],
        project=str(provision.tenant().project_id),
    )
    agent_a, agent_b = (
        client(live_api, provision.executor_token(pool_a)),
        client(live_api, provision.executor_token(pool_b)),
    )
    register(agent_a)
    register(agent_b)
    assert claim(agent_a, max_tasks=10) == []
    assert [t["task_key"] for t in claim(agent_b, max_tasks=10)] == ["b-only"]
    # Executor tokens are not user tokens and the other way round.
    assert agent_a.get("/runs").status_code == 403
    assert operator.post("/tasks/claim", json={}).status_code == 403


def test_unknown_and_revoked_tokens_get_401_without_echo(
    live_api: LiveServer, provision: Provisioner, api_database_url: str, pool: str
) -> None:
    import psycopg

    token = provision.executor_token(pool, name=f"to-revoke-{pool}")
    agent = client(live_api, token)
    assert agent.post("/executors/register", json={}).status_code == 200
    with psycopg.connect(api_database_url, autocommit=True) as conn:
        conn.execute(
            "update ops.executors set token_revoked_at = now(), status = 'revoked' where name = %s",
            (f"to-revoke-{pool}",),
        )
    revoked = refused_soon(lambda: agent.post("/tasks/claim", json={}))
    assert revoked.status_code == 401
    assert token not in revoked.text
    nobody = client(live_api, "lhx_not-a-real-token").get("/runs")
    assert nobody.status_code == 401 and "lhx_not-a-real-token" not in nobody.text
    assert httpx.get(live_api.base_url + API + "/runs").status_code == 401


def test_invalid_input_is_problem_json_naming_the_field(live_api: LiveServer, provision: Provisioner) -> None:
    operator = client(live_api, provision.user_token("operator")[1])
    project = str(provision.tenant().project_id)
    dup = operator.post(
        "/runs",
        json={
            "project": project,
            "spec": {
                "tasks": [
                    {"key": "a", "engine": "shell", "command": "true"},
                    {"key": "a", "engine": "shell", "command": "true"},
                ]
            },
        },
    )
    assert dup.status_code == 422
    assert dup.headers["content-type"].startswith("application/problem+json")
    assert dup.json()["field"] == "spec.tasks[1].key"
    bad_env = operator.post(
        "/runs",
        json={
            "project": project,
            "environment": "qa",
            "spec": {"tasks": [{"key": "a", "engine": "shell", "command": "true"}]},
        },
    )
    assert bad_env.status_code == 422 and bad_env.json()["field"] == "environment"
    unknown = operator.post(
        "/runs",
        json={
            "project": project,
            "spec": {"tasks": [{"key": "a", "engine": "shell", "command": "true"}]},
            "priorty": 5,
        },
    )
    assert unknown.status_code == 422 and unknown.json()["field"] == "priorty"
    missing = operator.post(
        "/runs",
        json={"project": "no-such-project", "spec": {"tasks": [{"key": "a", "engine": "shell", "command": "true"}]}},
    )
    assert missing.status_code == 404 and missing.json()["field"] == "project"


def test_idempotent_submit_and_keyset_listing(live_api: LiveServer, provision: Provisioner) -> None:
    tenant = provision.tenant(f"list-{uuid.uuid4().hex[:6]}")
    operator = client(live_api, provision.user_token("operator", tenant)[1])
    project = str(tenant.project_id)
    first = operator.post(
        "/runs",
        json={
            "project": project,
            "idempotency_key": "k1",
            "spec": {"name": "nightly", "tasks": [{"key": "a", "engine": "shell", "command": "true"}]},
        },
    )
    again = operator.post(
        "/runs",
        json={
            "project": project,
            "idempotency_key": "k1",
            "spec": {"name": "nightly", "tasks": [{"key": "a", "engine": "shell", "command": "true"}]},
        },
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    for i in range(6):
        submit(
            operator,
            [{"key": "a", "pool": "nobody", **(PYTHON_TASK if i % 2 else SHELL_TASK)}],
            project=project,
            tags=["batch"],
        )
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"project": project, "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = operator.get("/runs", params=params).json()
        seen.extend(r["id"] for r in page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 7 and len(set(seen)) == 7
    python_runs = operator.get("/runs", params={"project": project, "engine": "python"}).json()["items"]
    assert len(python_runs) == 3 and all(r["engines"] == ["python"] for r in python_runs)
    assert (
        operator.get("/runs", params={"project": project, "q": "nightly"}).json()["items"][0]["id"]
        == first.json()["id"]
    )
    outsider = client(live_api, provision.user_token("viewer", provision.tenant(f"other-{uuid.uuid4().hex[:6]}"))[1])
    assert outsider.get("/runs", params={"project": project}).status_code == 404
    assert outsider.get(f"/runs/{first.json()['id']}").status_code == 404


def test_sse_resumes_from_last_event_id_without_gaps(live_api: LiveServer, provision: Provisioner, pool: str) -> None:
    user_token = provision.user_token("viewer")[1]
    operator = client(live_api, provision.user_token("operator")[1])
    run = submit(
        operator,
        [{"key": "a", "engine": "shell", "command": "true", "pool": pool}],
        project=str(provision.tenant().project_id),
    )
    agent = client(live_api, provision.executor_token(pool))
    register(agent)
    (task,) = claim(agent)

    def send(seqs: range) -> None:
        events = [{"seq": s, "message": f"line {s}"} for s in seqs]
        assert (
            agent.post(
                f"/tasks/{task['task_id']}/events", json={"lease_token": task["lease_token"], "events": events}
            ).status_code
            == 200
        )

    send(range(0, 10))
    headers = {"Authorization": f"Bearer {user_token}", "Accept": "text/event-stream"}
    url = f"{live_api.base_url}{API}/runs/{run['id']}/events/stream"
    first_ids = _read_sse(url, headers, count=5)
    assert len(first_ids) == 5
    send(range(10, 20))
    send(range(15, 20))  # a re-send: must not be doubled
    agent.post(f"/tasks/{task['task_id']}/finalize", json={"lease_token": task["lease_token"], "outcome": "succeeded"})
    rest = _read_sse(url, {**headers, "Last-Event-ID": str(first_ids[-1])}, count=None)
    all_ids = first_ids + rest
    listed = [e["id"] for e in operator.get(f"/runs/{run['id']}/events", params={"limit": 1000}).json()["items"]]
    assert all_ids == listed and len(listed) == 20


def _read_sse(url: str, headers: dict[str, str], count: int | None) -> list[int]:
    """Read event ids from an SSE stream: `count` of them, or until the `end` event."""
    ids: list[int] = []
    with httpx.stream("GET", url, headers=headers, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event: dict[str, str] = {}
        for line in response.iter_lines():
            if line == "":
                if event.get("event") == "end":
                    return ids
                if "id" in event:
                    ids.append(int(event["id"]))
                    if count is not None and len(ids) == count:
                        return ids
                event = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                event[name] = value.strip()
    return ids


def test_artifact_with_wrong_sha_is_rejected_and_right_one_verifies(
    live_api: LiveServer, provision: Provisioner, pool: str
) -> None:
    operator = client(live_api, provision.user_token("operator")[1])
    run = submit(
        operator,
        [{"key": "a", "engine": "shell", "command": "true", "pool": pool}],
        project=str(provision.tenant().project_id),
    )
    agent = client(live_api, provision.executor_token(pool))
    register(agent)
    (task,) = claim(agent)
    body = b"hello artifact\n" * 100
    sha = hashlib.sha256(body).hexdigest()
    lease = task["lease_token"]
    ticket = agent.post(
        f"/tasks/{task['task_id']}/artifacts",
        json={
            "lease_token": lease,
            "name": "logs/out.txt",
            "size_bytes": len(body),
            "sha256": sha,
            "content_type": "text/plain",
        },
    ).json()
    corrupted = body[:-1] + b"X"
    put = agent.request(ticket["method"], ticket["upload_url"], content=corrupted, headers=ticket["headers"])
    assert put.status_code == 422 and "checksum" in put.text.lower()
    complete = agent.post(
        f"/tasks/{task['task_id']}/artifacts/{ticket['upload_id']}/complete", json={"lease_token": lease}
    )
    assert complete.status_code == 422
    assert operator.get(f"/runs/{run['id']}/artifacts").json()["items"] == []
    # The agent retries from its spool with the right bytes.
    put = agent.request(ticket["method"], ticket["upload_url"], content=body, headers=ticket["headers"])
    assert put.status_code == 204, put.text
    complete = agent.post(
        f"/tasks/{task['task_id']}/artifacts/{ticket['upload_id']}/complete", json={"lease_token": lease}
    )
    assert complete.status_code == 200, complete.text
    artifact = complete.json()
    assert artifact["sha256"] == sha and artifact["size_bytes"] == len(body)
    download = operator.get(f"/artifacts/{artifact['id']}/content")
    assert download.content == body and download.headers["etag"] == f'"{sha}"'
    again = agent.post(
        f"/tasks/{task['task_id']}/artifacts",
        json={"lease_token": lease, "name": "logs/out.txt", "size_bytes": len(body), "sha256": sha},
    )
    assert again.json()["artifact"]["id"] == artifact["id"], "an identical re-upload is a no-op"
    clash = agent.post(
        f"/tasks/{task['task_id']}/artifacts",
        json={"lease_token": lease, "name": "logs/out.txt", "size_bytes": 3, "sha256": "0" * 64},
    )
    assert clash.status_code == 409


def test_batch_heartbeat_and_finalize(live_api: LiveServer, provision: Provisioner, pool: str) -> None:
    operator = client(live_api, provision.user_token("operator")[1])
    submit(
        operator,
        [{"key": f"t{i}", "engine": "shell", "command": "true", "pool": pool} for i in range(5)],
        project=str(provision.tenant().project_id),
    )
    agent = client(live_api, provision.executor_token(pool))
    register(agent)
    tasks = claim(agent, max_tasks=5)
    assert len(tasks) == 5
    items = [{"task_id": t["task_id"], "lease_token": t["lease_token"]} for t in tasks]
    items.append({"task_id": tasks[0]["task_id"], "lease_token": str(uuid.uuid4())})
    beats = agent.post("/tasks/heartbeat", json={"items": items}).json()["items"]
    assert [b["ok"] for b in beats] == [True] * 5 + [False]
    final = agent.post("/tasks/finalize", json={"items": [{**i, "outcome": "succeeded"} for i in items]}).json()[
        "items"
    ]
    assert [f["status"] for f in final] == [200] * 5 + [409]
    assert final[-2]["run_status"] == "succeeded"


def test_metrics_expose_queue_depth(live_api: LiveServer, provision: Provisioner, pool: str) -> None:
    operator = client(live_api, provision.user_token("operator")[1])
    submit(
        operator,
        [{"key": f"t{i}", "engine": "shell", "command": "true", "pool": pool} for i in range(3)],
        project=str(provision.tenant().project_id),
    )
    text = httpx.get(f"{live_api.base_url}{API}/metrics").text
    assert f'lakehouse_queue_depth{{pool="{pool}"}} 3.0' in text
    assert "lakehouse_event_append_seconds_bucket" in text


def test_s3_upload_with_wrong_sha_is_rejected_by_seaweedfs(live_api_s3: LiveServer, provision: Provisioner) -> None:
    pool = f"s3-{uuid.uuid4().hex[:6]}"
    operator = client(live_api_s3, provision.user_token("operator")[1])
    run = submit(
        operator,
        [{"key": "a", "engine": "shell", "command": "true", "pool": pool}],
        project=str(provision.tenant().project_id),
    )
    agent = client(live_api_s3, provision.executor_token(pool))
    register(agent)
    (task,) = claim(agent)
    body = b"parquet-ish bytes " * 1000
    sha = hashlib.sha256(body).hexdigest()
    ticket = agent.post(
        f"/tasks/{task['task_id']}/artifacts",
        json={"lease_token": task["lease_token"], "name": "data/part-0.bin", "size_bytes": len(body), "sha256": sha},
    ).json()
    assert ticket["upload_url"].startswith("http") and "/api/v1/uploads/" not in ticket["upload_url"]
    with httpx.Client(timeout=30) as s3:
        tampered = s3.request(
            ticket["method"], ticket["upload_url"], headers=ticket["headers"], content=body[:-1] + b"!"
        )
        assert tampered.status_code in (400, 403), tampered.text
        refused = agent.post(
            f"/tasks/{task['task_id']}/artifacts/{ticket['upload_id']}/complete",
            json={"lease_token": task["lease_token"]},
        )
        assert refused.status_code == 422
        assert operator.get(f"/runs/{run['id']}/artifacts").json()["items"] == []
        retry = agent.post(
            f"/tasks/{task['task_id']}/artifacts",
            json={
                "lease_token": task["lease_token"],
                "name": "data/part-0.bin",
                "size_bytes": len(body),
                "sha256": sha,
            },
        ).json()
        good = s3.request(retry["method"], retry["upload_url"], headers=retry["headers"], content=body)
        assert good.status_code == 200, good.text
    done = agent.post(
        f"/tasks/{task['task_id']}/artifacts/{retry['upload_id']}/complete", json={"lease_token": task["lease_token"]}
    )
    assert done.status_code == 200, done.text
    assert done.json()["uri"].startswith("s3://lakehouse-api-test/")
    assert operator.get(f"/artifacts/{done.json()['id']}/content").content == body


def test_released_task_is_requeued_without_using_an_attempt(
    live_api: LiveServer, provision: Provisioner, pool: str
) -> None:
    operator = client(live_api, provision.user_token("operator")[1])
    run = submit(
        operator,
        [{"key": "a", "engine": "shell", "command": "true", "pool": pool, "max_attempts": 1}],
        project=str(provision.tenant().project_id),
    )
    leaving, staying = (client(live_api, provision.executor_token(pool)) for _ in range(2))
    register(leaving)
    register(staying)
    (task,) = claim(leaving)
    released = leaving.post(f"/tasks/{task['task_id']}/release", json={"lease_token": task["lease_token"]})
    assert released.json() == {"task_status": "queued"}
    (again,) = claim(staying)
    assert again["attempt"] == 2 and again["max_attempts"] == 2
    late = leaving.post(
        f"/tasks/{task['task_id']}/finalize", json={"lease_token": task["lease_token"], "outcome": "succeeded"}
    )
    assert late.status_code == 409
    staying.post(
        f"/tasks/{again['task_id']}/finalize", json={"lease_token": again["lease_token"], "outcome": "succeeded"}
    )
    detail = operator.get(f"/runs/{run['id']}").json()
    assert [a["outcome"] for a in detail["tasks"][0]["attempts"]] == ["released", "succeeded"]


def test_executor_fetches_an_earlier_tasks_artifact_of_its_run(
    live_api: LiveServer, provision: Provisioner, pool: str
) -> None:
    operator = client(live_api, provision.user_token("operator")[1])
    submit(
        operator,
        [
            {"key": "build", "engine": "shell", "command": "true", "pool": pool},
            {"key": "use", "engine": "shell", "command": "true", "pool": pool, "depends_on": ["build"]},
        ],
        project=str(provision.tenant().project_id),
    )
    agent = client(live_api, provision.executor_token(pool))
    register(agent)
    (build,) = claim(agent)
    payload = b"print('hello from an artifact')\n"
    ticket = agent.post(
        f"/tasks/{build['task_id']}/artifacts",
        json={
            "lease_token": build["lease_token"],
            "name": "app/job.py",
            "size_bytes": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
        },
    ).json()
    agent.request(ticket["method"], ticket["upload_url"], content=payload, headers=ticket["headers"])
    agent.post(
        f"/tasks/{build['task_id']}/artifacts/{ticket['upload_id']}/complete",
        json={"lease_token": build["lease_token"]},
    ).raise_for_status()
    agent.post(
        f"/tasks/{build['task_id']}/finalize", json={"lease_token": build["lease_token"], "outcome": "succeeded"}
    )
    (use,) = claim(agent)
    fetched = agent.post(
        f"/tasks/{use['task_id']}/artifacts/fetch",
        json={"lease_token": use["lease_token"], "task_key": "build", "name": "app/job.py"},
    )
    assert fetched.status_code == 200
    assert fetched.content == payload
    assert fetched.headers["x-artifact-sha256"] == hashlib.sha256(payload).hexdigest()
    missing = agent.post(
        f"/tasks/{use['task_id']}/artifacts/fetch",
        json={"lease_token": use["lease_token"], "task_key": "build", "name": "nope.py"},
    )
    assert missing.status_code == 404 and missing.json()["field"] == "name"
    stale = agent.post(
        f"/tasks/{use['task_id']}/artifacts/fetch",
        json={"lease_token": str(uuid.uuid4()), "task_key": "build", "name": "app/job.py"},
    )
    assert stale.status_code == 409
    other_project = client(live_api, provision.user_token("operator", provision.tenant(f"x-{pool}"))[1])
    foreign = submit(
        other_project,
        [{"key": "z", "engine": "shell", "command": "true", "pool": pool}],
        project=str(provision.tenant(f"x-{pool}").project_id),
    )
    cross = agent.post(
        f"/tasks/{use['task_id']}/artifacts/fetch",
        json={"lease_token": use["lease_token"], "task_key": "build", "name": "app/job.py", "run_id": foreign["id"]},
    )
    assert cross.status_code == 404, "artifacts of another project are not readable"


def test_download_of_bytes_missing_from_the_store_is_a_404_problem(
    live_api: LiveServer, provision: Provisioner, pool: str
) -> None:
    operator = client(live_api, provision.user_token("operator")[1])
    submit(
        operator,
        [{"key": "a", "engine": "shell", "command": "true", "pool": pool}],
        project=str(provision.tenant().project_id),
    )
    agent = client(live_api, provision.executor_token(pool))
    register(agent)
    (task,) = claim(agent)
    body = b"soon gone\n"
    ticket = agent.post(
        f"/tasks/{task['task_id']}/artifacts",
        json={
            "lease_token": task["lease_token"],
            "name": f"gone-{pool}.txt",
            "size_bytes": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
        },
    ).json()
    agent.request(ticket["method"], ticket["upload_url"], content=body, headers=ticket["headers"])
    artifact = agent.post(
        f"/tasks/{task['task_id']}/artifacts/{ticket['upload_id']}/complete", json={"lease_token": task["lease_token"]}
    ).json()
    (stored,) = list(live_api.data_dir.rglob(f"gone-{pool}.txt"))
    stored.unlink()
    missing = operator.get(f"/artifacts/{artifact['id']}/content")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert "not in this store" in missing.json()["detail"]
