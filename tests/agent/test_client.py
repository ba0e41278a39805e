"""The agent's HTTP client against ``httpx.MockTransport`` handlers that check method, path and body."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from executor_agent.client import (
    CORRELATION_HEADER,
    Conflict,
    ControlPlaneUnavailable,
    ExecutorClient,
    Forbidden,
    InvalidRequest,
    LeaseLost,
    NotFound,
    Unauthorized,
)
from executor_agent.generated.contract import UploadTicket

BASE = "http://control-room.test:3000"
TOKEN = "lhx_test-token"
TASK = uuid.UUID("11111111-1111-4111-8111-111111111111")
LEASE = uuid.UUID("22222222-2222-4222-8222-222222222222")
RUN = uuid.UUID("33333333-3333-4333-8333-333333333333")
NOW = "2026-11-26T08:00:00+00:00"

Handler = Callable[[httpx.Request], httpx.Response]


def problem(status: int, title: str, detail: str, field: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if field:
        body["field"] = field
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json"})


class Recorder:
    """A MockTransport handler answering from a script of responses, keeping every request."""

    def __init__(self, *answers: httpx.Response | Exception | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer) and not isinstance(answer, httpx.Response):
            return answer(request)
        return answer

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


def make_client(recorder: Recorder, sleeps: list[float] | None = None, **options: Any) -> ExecutorClient:
    record = sleeps if sleeps is not None else []
    return ExecutorClient(
        BASE, TOKEN, transport=httpx.MockTransport(recorder), sleep=record.append, backoff_s=0.5, **options
    )


def assignment(**overrides: Any) -> dict[str, Any]:
    return {
        "task_id": str(TASK),
        "run_id": str(RUN),
        "task_key": "extract",
        "engine": "shell",
        "spec": {"key": "extract", "engine": "shell", "command": "true"},
        "params": {"day": "2026-11-26"},
        "attempt": 1,
        "max_attempts": 3,
        "lease_token": str(LEASE),
        "lease_expires_at": NOW,
        "heartbeat_interval_s": 20.0,
        "timeout_s": None,
        "limits": {"max_runtime_s": 600},
        "project_id": str(uuid.uuid4()),
        "project": "lakehouse",
        "environment": "dev",
        **overrides,
    }


def test_register_sends_engines_labels_capacity_and_the_bearer_token() -> None:
    reply = {
        "id": str(uuid.uuid4()),
        "name": "agent-1",
        "pool": "default",
        "labels": ["gpu"],
        "engines": ["python", "shell"],
        "max_concurrency": 4,
        "status": "online",
        "lease_seconds": 60,
        "heartbeat_interval_s": 20.0,
        "claim_wait_max_s": 25.0,
    }
    recorder = Recorder(httpx.Response(200, json=reply))
    registration = make_client(recorder).executors.register(
        engines=["python", "shell"], labels=["gpu"], max_concurrency=4, hostname="host-1"
    )
    request = recorder.requests[0]
    assert (request.method, request.url.path) == ("POST", "/api/v1/executors/register")
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert len(request.headers[CORRELATION_HEADER]) == 32
    body = recorder.body()
    assert body["engines"] == ["python", "shell"] and body["labels"] == ["gpu"]
    assert body["max_concurrency"] == 4 and body["hostname"] == "host-1" and body["version"]
    assert registration.pool == "default" and registration.heartbeat_interval_s == 20.0


def test_claim_long_polls_with_a_read_timeout_beyond_the_wait() -> None:
    seen: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["timeout"] = request.extensions["timeout"]
        return httpx.Response(200, json={"tasks": [assignment()]})

    recorder = Recorder(handler)
    claim_id = uuid.uuid4()
    tasks = make_client(recorder, timeout_s=30).tasks.claim(max_tasks=3, wait_s=20, claim_id=claim_id)
    assert recorder.requests[0].url.path == "/api/v1/tasks/claim"
    assert recorder.body() == {"max_tasks": 3, "wait_s": 20, "claim_id": str(claim_id)}
    assert seen["timeout"]["read"] == 50
    assert [t.task_id for t in tasks] == [TASK] and tasks[0].lease_token == LEASE
    assert tasks[0].limits == {"max_runtime_s": 600}


def test_batch_heartbeat_reports_each_lease() -> None:
    other = uuid.uuid4()
    recorder = Recorder(
        httpx.Response(
            200,
            json={
                "items": [
                    {
                        "task_id": str(TASK),
                        "ok": True,
                        "lease_expires_at": NOW,
                        "cancel_requested": True,
                        "error": None,
                    },
                    {
                        "task_id": str(other),
                        "ok": False,
                        "lease_expires_at": None,
                        "cancel_requested": False,
                        "error": "lease lost",
                    },
                ]
            },
        )
    )
    items = make_client(recorder).tasks.heartbeat_many([(TASK, LEASE), (other, LEASE)])
    assert recorder.requests[0].url.path == "/api/v1/tasks/heartbeat"
    assert recorder.body() == {
        "items": [{"task_id": str(TASK), "lease_token": str(LEASE)}, {"task_id": str(other), "lease_token": str(LEASE)}]
    }
    assert [(i.ok, i.cancel_requested) for i in items] == [(True, True), (False, False)]


def test_events_go_to_the_task_with_the_lease_token() -> None:
    recorder = Recorder(httpx.Response(200, json={"accepted": 1, "duplicates": 1}))
    events = [
        {"seq": 0, "type": "start", "level": "info", "message": "go", "data": {}},
        {"seq": 1, "type": "log", "level": "info", "message": "line", "data": {"stream": "stdout"}},
    ]
    reply = make_client(recorder).tasks.append_events(TASK, LEASE, events)
    request = recorder.requests[0]
    assert (request.method, request.url.path) == ("POST", f"/api/v1/tasks/{TASK}/events")
    assert recorder.body() == {"lease_token": str(LEASE), "events": events}
    assert (reply.accepted, reply.duplicates) == (1, 1)


def test_finalize_many_sends_items_and_reads_each_status() -> None:
    recorder = Recorder(
        httpx.Response(
            200,
            json={
                "items": [
                    {
                        "task_id": str(TASK),
                        "ok": False,
                        "status": 409,
                        "task_status": None,
                        "run_status": None,
                        "replayed": False,
                        "error": "lease lost",
                    }
                ]
            },
        )
    )
    items = make_client(recorder).tasks.finalize_many(
        [
            {
                "task_id": str(TASK),
                "lease_token": str(LEASE),
                "outcome": "succeeded",
                "result": {"rows": 3},
                "error": None,
            }
        ]
    )
    assert recorder.requests[0].url.path == "/api/v1/tasks/finalize"
    assert recorder.body()["items"][0]["result"] == {"rows": 3}
    assert items[0].status == 409 and not items[0].ok


def test_release_and_report_bodies() -> None:
    recorder = Recorder(httpx.Response(200, json={"task_status": "queued"}))
    client = make_client(recorder)
    assert client.tasks.release(TASK, LEASE, reason="shutting down").task_status == "queued"
    assert recorder.requests[-1].url.path == f"/api/v1/tasks/{TASK}/release"
    assert recorder.body() == {"lease_token": str(LEASE), "reason": "shutting down"}

    recorder.answers = [httpx.Response(201, json={"stored": 2})]
    reply = client.tasks.report(TASK, LEASE, "lineage", {"inputs": ["a"], "outputs": ["b"]})
    assert recorder.requests[-1].url.path == f"/api/v1/tasks/{TASK}/lineage"
    assert recorder.body() == {"lease_token": str(LEASE), "inputs": ["a"], "outputs": ["b"]}
    assert reply == {"stored": 2}
    with pytest.raises(ValueError, match="operation"):
        client.tasks.report(TASK, LEASE, "../runs", {})


def test_5xx_is_retried_with_growing_jittered_backoff_and_one_correlation_id() -> None:
    recorder = Recorder(
        problem(503, "Server fault", "database down"),
        problem(502, "Bad gateway", "proxy"),
        httpx.Response(200, json={"task_status": "succeeded", "run_status": "running", "replayed": False}),
    )
    sleeps: list[float] = []
    reply = make_client(recorder, sleeps).tasks.finalize(TASK, LEASE, outcome="succeeded")
    assert reply.task_status == "succeeded"
    assert len(recorder.requests) == 3
    assert len({r.headers[CORRELATION_HEADER] for r in recorder.requests}) == 1, "retries share the call's id"
    assert all(r.content == recorder.requests[0].content for r in recorder.requests)
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0


def test_network_errors_are_retried_then_reported_as_unavailable() -> None:
    recorder = Recorder(httpx.ConnectError("connection refused"))
    sleeps: list[float] = []
    client = make_client(recorder, sleeps, retry_attempts=4, backoff_max_s=0.8)
    with pytest.raises(ControlPlaneUnavailable, match="failed 4 times") as caught:
        client.executors.heartbeat([TASK])
    assert len(recorder.requests) == 4 and len(sleeps) == 3
    assert all(0 <= s <= 0.8 for s in sleeps)
    assert caught.value.correlation_id == recorder.requests[0].headers[CORRELATION_HEADER]


def test_a_timeout_is_retried_and_the_next_try_succeeds() -> None:
    recorder = Recorder(
        httpx.ReadTimeout("slow"),
        httpx.Response(200, json={"lease_expires_at": NOW, "cancel_requested": False}),
    )
    reply = make_client(recorder).tasks.heartbeat(TASK, LEASE)
    assert reply.cancel_requested is False and len(recorder.requests) == 2


@pytest.mark.parametrize(
    ("response", "error", "lease_op"),
    [
        (problem(409, "Lease lost", "lease lost: task is no longer held"), LeaseLost, True),
        (problem(409, "Conflict", "already exists"), LeaseLost, True),
        (problem(401, "Unauthorized", "the bearer token is unknown"), Unauthorized, True),
        (problem(403, "Forbidden", "executor revoked"), Forbidden, True),
        (problem(404, "Not found", "task does not exist", field="task_id"), NotFound, True),
        (problem(422, "Invalid request", "outcome: must be one of ...", field="outcome"), InvalidRequest, True),
    ],
)
def test_4xx_is_never_retried_and_becomes_a_typed_error(
    response: httpx.Response, error: type[Exception], lease_op: bool
) -> None:
    recorder = Recorder(response)
    sleeps: list[float] = []
    with pytest.raises(error) as caught:
        make_client(recorder, sleeps).tasks.finalize(TASK, LEASE, outcome="succeeded")
    assert len(recorder.requests) == 1 and sleeps == []
    if isinstance(caught.value, InvalidRequest):
        assert caught.value.field == "outcome" and "outcome" in str(caught.value)


def test_a_409_outside_lease_operations_is_a_conflict_unless_the_lease_is_lost() -> None:
    recorder = Recorder(problem(409, "Conflict", 'artifact "a.csv" exists with other content', field="name"))
    client = make_client(recorder)
    with pytest.raises(Conflict) as caught:
        client.artifacts.initiate(TASK, LEASE, name="a.csv", size_bytes=3, sha256="0" * 64, content_type="text/csv")
    assert not isinstance(caught.value, LeaseLost) and caught.value.field == "name"
    recorder.answers = [problem(409, "Lease lost", "lease token does not belong to task")]
    with pytest.raises(LeaseLost):
        client.artifacts.initiate(TASK, LEASE, name="a.csv", size_bytes=3, sha256="0" * 64, content_type="text/csv")


def test_upload_bytes_go_to_a_presigned_url_without_the_token(tmp_path: Path) -> None:
    payload = tmp_path / "a.csv"
    payload.write_bytes(b"a,b\n1,2\n")
    recorder = Recorder(httpx.Response(200))
    ticket = UploadTicket(
        upload_id=uuid.uuid4(),
        upload_url="http://s3.test:8333/bucket/key?X-Amz-Signature=abc",
        method="PUT",
        headers={"Content-Type": "text/csv", "Content-Length": "8", "x-amz-checksum-sha256": "xyz"},
        expires_at=None,
        artifact=None,
    )
    make_client(recorder).artifacts.send_bytes(ticket, payload)
    request = recorder.requests[0]
    assert (request.method, request.url.host, request.url.path) == ("PUT", "s3.test", "/bucket/key")
    assert "Authorization" not in request.headers, "the executor token must never reach the object store"
    assert request.content == b"a,b\n1,2\n"
    assert request.headers["x-amz-checksum-sha256"] == "xyz" and request.headers["Content-Length"] == "8"
    assert "transfer-encoding" not in request.headers


def test_upload_to_the_control_plane_carries_the_token_and_retries_resend_every_byte(tmp_path: Path) -> None:
    payload = tmp_path / "big.bin"
    payload.write_bytes(bytes(range(256)) * 8192)  # 2 MiB: two chunks
    recorder = Recorder(problem(503, "Server fault", "busy"), httpx.Response(204))
    upload_id = uuid.uuid4()
    ticket = UploadTicket(
        upload_id=upload_id,
        upload_url=f"{BASE}/api/v1/uploads/{upload_id}",
        method="PUT",
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(payload.stat().st_size)},
        expires_at=None,
        artifact=None,
    )
    make_client(recorder).artifacts.send_bytes(ticket, payload)
    assert len(recorder.requests) == 2
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in recorder.requests)
    assert recorder.requests[1].content == payload.read_bytes()


def test_a_refused_upload_is_an_invalid_request_naming_the_store_error(tmp_path: Path) -> None:
    payload = tmp_path / "a.txt"
    payload.write_bytes(b"hello")
    xml = "<Error><Code>BadDigest</Code><Message>The sha256 you specified did not match.</Message></Error>"
    recorder = Recorder(httpx.Response(400, text=xml, headers={"content-type": "application/xml"}))
    ticket = UploadTicket(
        upload_id=uuid.uuid4(),
        upload_url="http://s3.test/b/k",
        method="PUT",
        headers={},
        expires_at=None,
        artifact=None,
    )
    with pytest.raises(InvalidRequest, match="BadDigest"):
        make_client(recorder).artifacts.send_bytes(ticket, payload)
    assert len(recorder.requests) == 1


def test_an_answer_that_is_not_the_contract_is_reported() -> None:
    from executor_agent.client import UnexpectedResponse

    recorder = Recorder(httpx.Response(200, text="<html>proxy login</html>"))
    with pytest.raises(UnexpectedResponse, match="ClaimReply"):
        make_client(recorder).tasks.claim(max_tasks=1)
