"""The agent's wire models and request bodies agree with contracts/lakehouse-executor.openapi.yaml."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from jsonschema import Draft202012Validator
from pydantic import BaseModel

from control_room.config import PROJECT_ROOT
from executor_agent import wire
from executor_agent.client import ExecutorClient
from executor_agent.wire import UploadTicket

CONTRACT = yaml.safe_load((PROJECT_ROOT / "contracts" / "lakehouse-executor.openapi.yaml").read_text())
SCHEMAS: dict[str, Any] = CONTRACT["components"]["schemas"]
MODELS = [
    wire.HealthPublic,
    wire.ExecutorPublic,
    wire.ExecutorHeartbeatReply,
    wire.TaskAssignment,
    wire.ClaimReply,
    wire.TaskHeartbeatReply,
    wire.LeaseBatchItem,
    wire.LeaseBatchReply,
    wire.EventBatchReply,
    wire.FinalizeReply,
    wire.FinalizeBatchItem,
    wire.FinalizeBatchReply,
    wire.ReleaseReply,
    wire.ArtifactPublic,
    wire.UploadTicket,
]


def json_types(schema: dict[str, Any], defs: dict[str, Any]) -> set[str]:
    """The JSON types a (contract or pydantic) schema allows."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        target = defs.get(name) or SCHEMAS.get(name) or {}
        return json_types(target, defs) if target else {"object"}
    if "anyOf" in schema:
        return set().union(*(json_types(s, defs) for s in schema["anyOf"]))
    if "const" in schema and "type" not in schema:
        return {type(schema["const"]).__name__.replace("str", "string")}
    if "enum" in schema and "type" not in schema:
        return {"string"}
    kind = schema.get("type")
    if kind is None:
        return {"any"}
    return set(kind) if isinstance(kind, list) else {kind}


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_field_the_agent_reads_is_in_the_contract_with_a_compatible_type(model: type[BaseModel]) -> None:
    contract = SCHEMAS[model.__name__]
    ours = model.model_json_schema()
    defs = ours.get("$defs", {})
    required = set(contract.get("required", []))
    for name, field in model.model_fields.items():
        assert name in contract["properties"], f"{model.__name__}.{name} is not in the contract"
        if field.is_required():
            assert name in required, f"{model.__name__}.{name} is required by the agent but optional in the contract"
        theirs = json_types(contract["properties"][name], {})
        accepted = json_types(ours["properties"][name], defs)
        if "number" in accepted:
            accepted.add("integer")
        assert "any" in accepted or theirs <= accepted, f"{model.__name__}.{name}: contract {theirs}, agent {accepted}"


def request_schema(method: str, path: str) -> dict[str, Any]:
    operation = CONTRACT["paths"][path][method.lower()]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    return {**schema, "components": CONTRACT["components"]}


TASK = uuid.uuid4()
LEASE = uuid.uuid4()


def captured_requests(tmp_path: Path) -> list[tuple[str, str, Any]]:
    """Every JSON request body the client sends, with the contract path it is for."""
    seen: list[tuple[str, str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        path = request.url.path.replace(str(TASK), "{task_id}")
        if request.method == "POST":
            segments = path.split("/")
            if len(segments) > 6 and segments[5] == "artifacts":
                segments[6] = "{upload_id}"
            seen.append((request.method, "/".join(segments), json.loads(request.content)))
        return httpx.Response(599)  # nothing is parsed: the bodies are what this test checks

    client = ExecutorClient("http://cr.test", "lhx_x", transport=httpx.MockTransport(handler), retry_attempts=1)
    calls = [
        lambda: client.executors.register(
            engines=["shell"], labels=["a"], max_concurrency=2, hostname="h", metadata={"pid": 1}
        ),
        lambda: client.executors.heartbeat([TASK]),
        lambda: client.tasks.claim(max_tasks=3, wait_s=10),
        lambda: client.tasks.heartbeat(TASK, LEASE),
        lambda: client.tasks.heartbeat_many([(TASK, LEASE)]),
        lambda: client.tasks.append_events(
            TASK,
            LEASE,
            [
                {
                    "seq": 0,
                    "ts": "2026-11-26T08:00:00+00:00",
                    "type": "start",
                    "level": "info",
                    "message": "m",
                    "data": {"k": 1},
                }
            ],
        ),
        lambda: client.tasks.finalize(TASK, LEASE, outcome="failed", result={"retryable": False}, error="e"),
        lambda: client.tasks.finalize_many(
            [{"task_id": str(TASK), "lease_token": str(LEASE), "outcome": "succeeded", "result": {}, "error": None}]
        ),
        lambda: client.tasks.release(TASK, LEASE, reason="shutting down"),
        lambda: client.artifacts.initiate(
            TASK, LEASE, name="a/b.csv", size_bytes=3, sha256="a" * 64, content_type="text/csv", metadata={"rows": 1}
        ),
        lambda: client.artifacts.complete(TASK, uuid.uuid4(), LEASE),
    ]
    for call in calls:
        with pytest.raises(Exception):  # noqa: B017 - the 599 answer; only the request matters here
            call()
    assert len(seen) == len(calls)
    return seen


def test_every_request_body_the_agent_sends_is_valid_for_the_contract(tmp_path: Path) -> None:
    for method, path, body in captured_requests(tmp_path):
        errors = list(Draft202012Validator(request_schema(method, path)).iter_errors(body))
        assert errors == [], f"{method} {path}: {[e.message for e in errors]}"


def test_an_upload_ticket_without_bytes_to_send_parses() -> None:
    ticket = UploadTicket.model_validate(
        {
            "upload_id": None,
            "upload_url": None,
            "method": None,
            "headers": {},
            "expires_at": None,
            "artifact": {
                "id": str(uuid.uuid4()),
                "run_id": str(uuid.uuid4()),
                "task_id": None,
                "task_key": None,
                "attempt": None,
                "name": "a",
                "uri": "file:///a",
                "size_bytes": 1,
                "sha256": "a" * 64,
                "content_type": "text/plain",
                "metadata": {},
                "created_at": "2026-11-26T08:00:00Z",
            },
        }
    )
    assert ticket.artifact is not None and ticket.upload_url is None
