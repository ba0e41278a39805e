"""A client written only from contracts/lakehouse-executor.openapi.yaml: plain httpx, no project imports.

Operations are looked up by operationId; paths, methods and parameter locations come from the file,
so this client breaks when the contract stops describing the server.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import yaml

CONTRACT = Path(__file__).resolve().parents[2] / "contracts" / "lakehouse-executor.openapi.yaml"


class ContractClient:
    def __init__(self, base_url: str, token: str, contract: Path = CONTRACT) -> None:
        document = yaml.safe_load(contract.read_text(encoding="utf-8"))
        self.operations: dict[str, tuple[str, str, dict[str, Any]]] = {}
        for path, item in document["paths"].items():
            for method, operation in item.items():
                self.operations[operation["operationId"]] = (method.upper(), path, operation)
        self.http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def call(self, operation_id: str, body: Any = None, **params: Any) -> httpx.Response:
        method, path, operation = self.operations[operation_id]
        query: dict[str, Any] = {}
        for parameter in operation.get("parameters", []):
            name = parameter["name"]
            if name not in params:
                if parameter.get("required"):
                    raise TypeError(f"{operation_id} needs {name}")
                continue
            if parameter["in"] == "path":
                path = path.replace("{" + name + "}", str(params.pop(name)))
            elif parameter["in"] == "query":
                query[name] = params.pop(name)
        if params:
            raise TypeError(f"{operation_id} has no parameters {sorted(params)}")
        content = operation.get("requestBody", {}).get("content", {})
        if body is not None and "application/json" not in content:
            raise TypeError(f"{operation_id} takes no JSON body")
        return self.http.request(method, path, params=query, json=body)


def run_one_task(executor: ContractClient, events: list[str], artifact: bytes) -> dict[str, Any]:
    """register → claim → heartbeat → events → artifact → finalize; returns what the server answered."""
    registered = executor.call("registerExecutor", {"engines": ["shell"], "max_concurrency": 1, "version": "yaml"})
    registered.raise_for_status()
    claimed = executor.call("claimTasks", {"max_tasks": 1, "wait_s": 5})
    claimed.raise_for_status()
    (task,) = claimed.json()["tasks"]
    lease = task["lease_token"]
    beat = executor.call("heartbeatTask", {"lease_token": lease}, task_id=task["task_id"])
    beat.raise_for_status()
    batch = [{"seq": i, "type": "log", "level": "info", "message": m} for i, m in enumerate(events)]
    appended = executor.call("appendEvents", {"lease_token": lease, "events": batch}, task_id=task["task_id"])
    appended.raise_for_status()
    ticket = executor.call(
        "initiateArtifact",
        {
            "lease_token": lease,
            "name": "result.txt",
            "size_bytes": len(artifact),
            "sha256": hashlib.sha256(artifact).hexdigest(),
            "content_type": "text/plain",
        },
        task_id=task["task_id"],
    )
    ticket.raise_for_status()
    upload = ticket.json()
    put = executor.http.request(upload["method"], upload["upload_url"], headers=upload["headers"], content=artifact)
    put.raise_for_status()
    completed = executor.call(
        "completeArtifact", {"lease_token": lease}, task_id=task["task_id"], upload_id=upload["upload_id"]
    )
    completed.raise_for_status()
    final = executor.call(
        "finalizeTask", {"lease_token": lease, "outcome": "succeeded", "result": {"rows": 3}}, task_id=task["task_id"]
    )
    final.raise_for_status()
    return {"task": task, "events": appended.json(), "artifact": completed.json(), "final": final.json()}


def task_spec(engine: str, **fields: Any) -> dict[str, Any]:
    """A task of ``engine`` built from the YAML alone: the engine schema's first example, with ``fields`` over it,
    checked against the contract's TaskSpec (JSON Schema, the discriminator's oneOf) before it is sent."""
    import jsonschema

    document = yaml.safe_load(CONTRACT.read_text(encoding="utf-8"))
    schemas = document["components"]["schemas"]
    target = schemas["TaskSpec"]["discriminator"]["mapping"][engine].rsplit("/", 1)[1]
    task = {**schemas[target]["examples"][0], **fields}
    root = {"$ref": "#/components/schemas/TaskSpec", "components": {"schemas": schemas}}
    validator = jsonschema.Draft202012Validator(root)
    errors = [f"/{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(task)]
    if errors:
        raise ValueError(f"not a valid {engine} task for the contract: {errors}")
    return task
