"""The agent's models are generated from contracts/lakehouse-executor.openapi.yaml, and its request bodies fit it."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from control_room.config import PROJECT_ROOT
from executor_agent.client import ExecutorClient
from executor_agent.generated import build
from executor_agent.generated.contract import DbtTaskSpec, SparkTaskSpec, TaskSpec, UploadTicket

CONTRACT = yaml.safe_load((PROJECT_ROOT / "contracts" / "lakehouse-executor.openapi.yaml").read_text())


def test_the_generated_module_matches_the_contract() -> None:
    # The generator runs here as `make contract` runs it: a hand edit, or a contract changed without
    # regenerating, fails.
    assert build.OUTPUT.read_text(encoding="utf-8") == build.generate(), (
        "executor_agent/generated/contract.py is out of date: run python -m executor_agent.generated.build"
    )


def test_the_generator_covers_every_reply_the_client_reads_and_every_engine() -> None:
    from executor_agent.generated import contract

    schemas = CONTRACT["components"]["schemas"]
    for name in build.ROOTS:
        assert hasattr(contract, name), name
    engines = set(schemas["TaskSpec"]["discriminator"]["mapping"])
    assert engines == {"shell", "python", "dbt", "spark", "delta", "duckdb", "trino", "catalog_sync", "serving"}


def test_generated_specs_check_what_the_server_checks() -> None:
    spec = TaskSpec.model_validate(
        {"key": "b", "engine": "dbt", "command": "build", "project": {"path": "examples/dbt"}, "threads": 4}
    ).root
    assert isinstance(spec, DbtTaskSpec) and spec.threads == 4
    spark = TaskSpec.model_validate({"key": "s", "engine": "spark", "application": "a.py"}).root
    assert isinstance(spark, SparkTaskSpec) and spark.deploy_mode == "client" and spark.progress_interval_s == 1.0
    for bad, where in [
        ({"key": "b", "engine": "dbt", "command": "build", "project": "p", "threads": "4"}, "threads"),
        ({"key": "b", "engine": "dbt", "command": "build", "project": "p", "thread": 4}, "thread"),
        ({"key": "b", "engine": "cobol"}, "cobol"),
    ]:
        with pytest.raises(ValidationError, match=where):
            TaskSpec.model_validate(bad)


def test_each_generated_spec_has_its_contract_fields_in_the_contracts_order_though_shared_ones_sit_on_bases() -> None:
    from executor_agent.generated import contract

    schemas = CONTRACT["components"]["schemas"]
    for option in schemas["TaskSpec"]["oneOf"]:
        name = option["$ref"].rsplit("/", 1)[1]
        model = getattr(contract, name)
        declared = schemas[name]
        fields = {info.alias or field: info for field, info in model.model_fields.items()}  # schema_: "schema"
        assert list(fields) == list(declared["properties"]), name
        required = {field for field, info in fields.items() if info.is_required()}
        assert required == set(declared.get("required", [])), name
    # A shared field the build has no base name for stops it with a message, not a silently different module.
    specs = build.agent_schemas(CONTRACT)
    bare = copy.deepcopy({name: schema for name, schema in CONTRACT["components"]["schemas"].items() if name in specs})
    bare["ShellTaskSpec"]["properties"] = {**bare["ShellTaskSpec"]["properties"], "shared_new": {"type": "string"}}
    bare["DbtTaskSpec"]["properties"] = {**bare["DbtTaskSpec"]["properties"], "shared_new": {"type": "string"}}
    with pytest.raises(ValueError, match="shared_new: name their base in SHARED_SPEC_FIELDS"):
        build.shared_bases(bare)


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
