"""Chaos: the reply of a claim that leased a task is lost on the way back; the agent's retry (same claim id)
gets the same lease, so the task runs on its first attempt and no attempt is burnt."""

from __future__ import annotations

import threading
import uuid

import httpx
import psycopg

from tests.agent.conftest import StartAgent, operator_client, submit, wait_for_run
from tests.live import LiveServer, Provisioner


class DropFirstNonEmptyClaimReply(httpx.BaseTransport):
    """A real transport that lets the server lease tasks, then loses the first claim reply carrying any."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.dropped: list[bytes] = []
        self.claim_bodies: list[bytes] = []
        self.lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.url.path.endswith("/tasks/claim"):
            response.read()
            with self.lock:
                self.claim_bodies.append(request.read())
                if not self.dropped and b'"task_id"' in response.content:
                    self.dropped.append(request.read())
                    raise httpx.ReadError("connection reset while reading the claim reply (test fault)")
        return response

    def close(self) -> None:
        self.inner.close()


def test_a_lost_claim_reply_burns_no_attempt(
    live_api: LiveServer, provision: Provisioner, api_database_url: str, start_agent: StartAgent
) -> None:
    pool = f"lost-reply-{uuid.uuid4().hex[:6]}"
    operator = operator_client(live_api, provision.user_token("operator")[1])
    transport = DropFirstNonEmptyClaimReply()
    start_agent(live_api, provision.executor_token(pool), transport=transport)
    run = submit(
        operator, provision.tenant().project_id, [{"key": "once", "engine": "shell", "pool": pool, "command": "true"}]
    )
    detail = wait_for_run(operator, run["id"], timeout=60)
    assert detail["status"] == "succeeded", detail
    assert len(transport.dropped) == 1, "the fault fired"
    retried = [b for b in transport.claim_bodies if b == transport.dropped[0]]
    assert len(retried) >= 2, "the retry sent the same claim (same claim id)"
    (task,) = detail["tasks"]
    assert task["attempt"] == 1 and [a["outcome"] for a in task["attempts"]] == ["succeeded"]
    with psycopg.connect(api_database_url) as conn:
        attempts = conn.execute("select count(*) from ops.task_attempts where task_id = %s", (task["id"],)).fetchone()
    assert attempts == (1,)
