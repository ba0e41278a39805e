"""Typed task specs at submit: every example spec is accepted; a bad one is a 422 naming the JSON pointer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from control_room.bundle.loader import load_bundle
from control_room.config import PROJECT_ROOT
from control_room.services.demo import DEMO_PIPELINE_SPEC
from control_room.services.ui_examples import EXAMPLES
from tests.live import LiveServer, Provisioner

API = "/api/v1"


def example_specs() -> dict[str, dict[str, Any]]:
    """Every run spec the repository offers as an example: files under examples/, the job templates of the
    example bundle (as the run they submit: config flattened into the task), and the Submit dialog's."""
    specs: dict[str, dict[str, Any]] = {}
    for path in sorted((PROJECT_ROOT / "examples").rglob("*.json")):
        loaded = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(loaded, dict) and "tasks" in loaded:
            specs[str(path.relative_to(PROJECT_ROOT))] = loaded
    bundle = load_bundle(PROJECT_ROOT / "examples" / "bundle").bundle
    for template in bundle.job_templates:
        tasks = [
            {**task.config, **task.model_dump(mode="json", exclude_none=True, exclude={"config"})}
            for task in template.tasks
        ]
        specs[f"job template {template.name}"] = {"name": template.name, "tasks": tasks}
    for example in EXAMPLES:
        specs[f"submit dialog {example.key}"] = example.spec()
    specs["demo pipeline"] = DEMO_PIPELINE_SPEC
    return specs


def test_the_examples_cover_every_kind_of_source() -> None:
    names = set(example_specs())
    assert "examples/spark/demo_run.json" in names
    assert any(name.startswith("job template") for name in names)
    assert any(name.startswith("submit dialog") for name in names)


def test_every_example_spec_submits(live_api: LiveServer, provision: Provisioner) -> None:
    operator = httpx.Client(
        base_url=live_api.base_url + API,
        headers={"Authorization": f"Bearer {provision.user_token('operator')[1]}"},
        timeout=30,
    )
    project = str(provision.tenant().project_id)
    engines: set[str] = set()
    for name, spec in example_specs().items():
        response = operator.post("/runs", json={"project": project, "spec": spec})
        assert response.status_code == 201, f"{name}: {response.text}"
        engines.update(response.json()["engines"])
    assert {"shell", "python", "dbt", "spark", "duckdb"} <= engines


@pytest.mark.parametrize(
    ("task", "pointer", "fragment"),
    [
        ({"key": "a", "engine": "cobol"}, "/spec/tasks/0/engine", "unknown engine 'cobol'"),
        ({"key": "a"}, "/spec/tasks/0/engine", "required: one of shell, python, dbt"),
        (
            {"key": "a", "engine": "dbt", "command": "build", "project": "examples/dbt", "thread": 4},
            "/spec/tasks/0/thread",
            "Extra inputs",
        ),
        (
            {"key": "a", "engine": "dbt", "command": "build", "project": "examples/dbt", "threads": "4"},
            "/spec/tasks/0/threads",
            "valid integer",
        ),
        ({"key": "a", "engine": "dbt", "project": "examples/dbt"}, "/spec/tasks/0/command", "Field required"),
        (
            {"key": "a", "engine": "spark", "application": "job.py", "conf": {"spark.x": [1]}},
            "/spec/tasks/0/conf/spark.x",
            "",
        ),
        ({"key": "a", "engine": "shell", "command": "true", "timeout_s": 0}, "/spec/tasks/0/timeout_s", "greater than"),
        ({"key": "a", "engine": "shell"}, "/spec/tasks/0", "exactly one of command, argv"),
        (
            {"key": "a", "engine": "delta", "delta": {"operation": "merge", "table": "t", "source": {"rows": []}}},
            "/spec/tasks/0/delta",
            "merge needs keys",
        ),
    ],
)
def test_a_bad_task_spec_is_422_naming_the_json_pointer(
    live_api: LiveServer, provision: Provisioner, task: dict[str, Any], pointer: str, fragment: str
) -> None:
    operator = httpx.Client(
        base_url=live_api.base_url + API,
        headers={"Authorization": f"Bearer {provision.user_token('operator')[1]}"},
        timeout=30,
    )
    response = operator.post("/runs", json={"project": str(provision.tenant().project_id), "spec": {"tasks": [task]}})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["pointer"] == pointer, problem
    assert any(e["pointer"] == pointer and fragment in e["message"] for e in problem["errors"]), problem
    assert problem["field"].startswith("spec.tasks[0]")


def test_contract_publishes_every_engine_with_examples() -> None:
    from control_room.api.contract import load_contract
    from control_room.specs.tasks import ENGINES

    schemas = load_contract()["components"]["schemas"]
    task_spec = schemas["TaskSpec"]
    assert task_spec["discriminator"]["propertyName"] == "engine"
    assert set(task_spec["discriminator"]["mapping"]) == set(ENGINES)
    for target in task_spec["discriminator"]["mapping"].values():
        engine_schema = schemas[target.rsplit("/", 1)[1]]
        assert engine_schema["additionalProperties"] is False
        assert engine_schema.get("examples"), target
        assert all("description" in p or "$ref" in p or "anyOf" in p for p in engine_schema["properties"].values())


def test_readme_shows_a_dbt_task_and_the_demo_project_slug() -> None:
    readme = Path(PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    api_section = readme.split("## Calling the API", 1)[1].split("\n## ", 1)[0]
    assert '"engine": "dbt"' in api_section
    assert '"project": "lakehouse"' in api_section and "slug" in api_section


def test_submit_warns_when_no_live_executor_offers_the_engine_and_refuses_when_the_project_requires_one(
    live_api: LiveServer, provision: Provisioner
) -> None:
    import uuid

    import psycopg

    tenant = provision.tenant(f"engines-{uuid.uuid4().hex[:6]}")
    operator = httpx.Client(
        base_url=live_api.base_url + API,
        headers={"Authorization": f"Bearer {provision.user_token('operator', tenant)[1]}"},
        timeout=30,
    )
    pool = f"live-{uuid.uuid4().hex[:8]}"

    def submit(engine_task: dict[str, Any]) -> httpx.Response:
        task = {"key": "t", "pool": pool, **engine_task}
        return operator.post("/runs", json={"project": str(tenant.project_id), "spec": {"tasks": [task]}})

    shell = {"engine": "shell", "command": "true"}
    nobody = submit(shell)
    assert nobody.status_code == 201, nobody.text
    (warning,) = nobody.json()["warnings"]
    assert f"pool {pool}" in warning and "engine shell" in warning
    assert operator.get(f"/runs/{nobody.json()['id']}").json()["warnings"] == [warning]

    agent = httpx.Client(
        base_url=live_api.base_url + API,
        headers={"Authorization": f"Bearer {provision.executor_token(pool, tenant=tenant)}"},
        timeout=30,
    )
    assert agent.post("/executors/register", json={"engines": ["shell"]}).status_code == 200
    assert submit(shell).json()["warnings"] == []
    dbt = {"engine": "dbt", "command": "build", "project": "examples/dbt"}
    assert "engine dbt" in submit(dbt).json()["warnings"][0]  # the live executor offers shell only

    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        conn.execute("update ops.projects set require_available_engine = true where id = %s", (tenant.project_id,))
    refused = submit(dbt)
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == "spec.tasks[0].engine" and refused.json()["pointer"] == "/spec/tasks/0/engine"
    assert "require_available_engine" in refused.json()["detail"]
    listed = operator.get("/runs", params={"project": str(tenant.project_id)}).json()["items"]
    assert len(listed) == 3, "the refused submit left no run behind"
