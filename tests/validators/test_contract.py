"""`lakehouse validate contract`: breaking changes against the previous commit fail, naming them; additions pass."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from control_room.api.contract import load_contract
from control_room.cli import app
from control_room.validators.contract import breaking_changes, check_contract
from tests.validators.conftest import GitRepo

CONTRACT = "contracts/api.openapi.yaml"
Edit = Callable[[dict[str, Any]], None]


@functools.cache
def _contract_once() -> dict[str, Any]:
    return load_contract()


def the_contract() -> dict[str, Any]:
    """A copy of the committed contract (read once: each test edits its own copy)."""
    return copy.deepcopy(_contract_once())


def dump(document: dict[str, Any]) -> str:
    # libyaml's dumper: these copies only need to be valid YAML, written 5x faster than pure Python's.
    return yaml.dump(document, Dumper=yaml.CSafeDumper, sort_keys=False)


def two_commits(repo: GitRepo, change: Edit) -> None:
    """Commit 1: the real contract. Commit 2: the same with ``change`` applied."""
    document = the_contract()
    repo.write(CONTRACT, dump(document))
    repo.commit("contract as merged")
    changed = copy.deepcopy(document)
    change(changed)
    repo.write(CONTRACT, dump(changed))
    repo.commit("the pull request")


def schema(document: dict[str, Any], name: str) -> dict[str, Any]:
    found = document["components"]["schemas"][name]
    assert isinstance(found, dict)
    return found


def remove_cancel(document: dict[str, Any]) -> None:
    del document["paths"]["/api/v1/runs/{run_id}/cancel"]["post"]


def require_tags(document: dict[str, Any]) -> None:
    schema(document, "RunCreate")["required"].append("tags")


def test_removed_operation_fails_naming_it(repo: GitRepo) -> None:
    two_commits(repo, remove_cancel)

    result = check_contract(repo.root / CONTRACT, "HEAD~1")

    assert result.status == "failed"
    assert result.summary == "api.openapi.yaml: 1 breaking change(s) against HEAD~1"
    assert result.details == ["POST /api/v1/runs/{run_id}/cancel (cancelRun): operation removed"]


def test_required_request_field_fails_naming_it(repo: GitRepo) -> None:
    def change(document: dict[str, Any]) -> None:
        require_tags(document)
        run_create = schema(document, "RunCreate")
        run_create["properties"]["owner"] = {"type": "string"}
        run_create["required"].append("owner")

    two_commits(repo, change)

    result = check_contract(repo.root / CONTRACT, "HEAD~1")

    assert result.status == "failed"
    assert result.details == [
        'POST /api/v1/runs (submitRun): request field "owner" is new and required',
        'POST /api/v1/runs (submitRun): request field "tags" is now required',
    ]


def test_removed_response_field_enum_value_and_type_change_fail(repo: GitRepo) -> None:
    def change(document: dict[str, Any]) -> None:
        run = schema(document, "RunPublic")
        del run["properties"]["tags"]
        run["properties"]["status"]["enum"].remove("cancelled")
        schema(document, "RunCreate")["properties"]["priority"] = {"type": "string"}

    two_commits(repo, change)

    details = check_contract(repo.root / CONTRACT, "HEAD~1").details

    assert 'GET /api/v1/runs (listRuns) -> 200: response field "items[].tags" was removed' in details
    assert (
        'GET /api/v1/runs (listRuns) -> 200: response field "items[].status" no longer allows '
        "enum value(s) 'cancelled'" in details
    )
    assert 'POST /api/v1/runs (submitRun) -> 201: response field "tags" was removed' in details
    assert 'POST /api/v1/runs (submitRun): request field "priority" changed type from integer to string' in details


def test_additive_change_passes(repo: GitRepo) -> None:
    def change(document: dict[str, Any]) -> None:
        document["paths"]["/api/v1/runs/{run_id}/labels"] = {
            "parameters": [{"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {
                "operationId": "listRunLabels",
                "responses": {
                    "200": {
                        "description": "labels",
                        "content": {"application/json": {"schema": {"type": "array", "items": {"type": "string"}}}},
                    }
                },
            },
        }
        schema(document, "RunCreate")["properties"]["note"] = {"type": "string"}
        schema(document, "RunPublic")["properties"]["note"] = {"type": "string"}
        schema(document, "RunPublic")["properties"]["status"]["enum"].append("paused")

    two_commits(repo, change)

    result = check_contract(repo.root / CONTRACT, "HEAD~1")

    assert result.status == "passed", result.details
    assert result.summary == "api.openapi.yaml is valid and backward compatible with HEAD~1"


def test_invalid_openapi_fails_before_comparing(repo: GitRepo) -> None:
    def change(document: dict[str, Any]) -> None:
        del document["info"]
        document["paths"]["/api/v1/runs"]["post"]["responses"] = "none"

    two_commits(repo, change)

    result = check_contract(repo.root / CONTRACT, "HEAD~1")

    assert result.status == "failed"
    assert result.summary.startswith("api.openapi.yaml is not valid OpenAPI")
    # jsonschema quotes the property name differently across versions
    assert any(d.startswith("(document):") and "info" in d and "required property" in d for d in result.details)


def test_unknown_base_ref_is_a_clear_failure(repo: GitRepo) -> None:
    two_commits(repo, lambda _document: None)

    result = check_contract(repo.root / CONTRACT, "origin/main")

    assert result.status == "failed"
    assert 'git ref "origin/main" does not name a commit' in result.details[0]
    assert "fetch-depth: 0" in result.details[0]


def test_path_parameter_renames_are_not_breaking() -> None:
    old = the_contract()
    new = copy.deepcopy(old)
    item = new["paths"].pop("/api/v1/runs/{run_id}/cancel")
    new["paths"]["/api/v1/runs/{id}/cancel"] = item
    assert breaking_changes(old, new) == []


def test_cli_exit_codes_and_result_file(repo: GitRepo, tmp_path: Any) -> None:
    two_commits(repo, remove_cancel)
    runner = CliRunner()

    failed = runner.invoke(
        app,
        [
            "validate",
            "contract",
            "--file",
            str(repo.root / CONTRACT),
            "--base",
            "HEAD~1",
            "--json-out",
            str(tmp_path / "c.json"),
        ],
    )
    assert failed.exit_code == 1
    assert "POST /api/v1/runs/{run_id}/cancel (cancelRun): operation removed" in failed.stderr
    assert '"status": "failed"' in (tmp_path / "c.json").read_text()

    passed = runner.invoke(app, ["validate", "contract", "--file", str(repo.root / CONTRACT), "--base", "HEAD"])
    assert passed.exit_code == 0, passed.stderr
    assert "backward compatible with HEAD" in passed.stdout


@pytest.mark.parametrize("operation", ["submitRun", "cancelRun"])
def test_the_repository_contract_names_the_operations_used_above(operation: str) -> None:
    # Guards the tests above against a renamed operation id silently changing what they exercise.
    ids = {
        op.get("operationId")
        for item in the_contract()["paths"].values()
        for op in item.values()
        if isinstance(op, dict)
    }
    assert operation in ids


def test_engine_spec_changes_that_break_clients_fail_naming_the_engine_and_field(repo: GitRepo) -> None:
    def change(document: dict[str, Any]) -> None:
        dbt = schema(document, "DbtTaskSpec")["properties"]
        del dbt["docs"]  # removed field of a closed schema: a client sending it now gets 422
        dbt["threads"]["maximum"] = 16  # narrowed bound
        dbt["select"]["anyOf"] = [o for o in dbt["select"]["anyOf"] if o.get("type") != "array"]  # narrowed type
        mapping = schema(document, "TaskSpec")["discriminator"]["mapping"]
        del mapping["trino"]  # an engine no longer accepted

    two_commits(repo, change)

    details = check_contract(repo.root / CONTRACT, "HEAD~1").details
    submit = "POST /api/v1/runs (submitRun)"
    dbt = f'{submit}: request field "spec.tasks[](engine=dbt)'
    assert f'{dbt}.docs" was removed (clients sending it get 422)' in details
    assert f'{submit}: request field "spec.tasks[](engine=dbt).threads" maximum narrowed from 64 to 16' in details
    assert f'{submit}: request field "spec.tasks[](engine=dbt).select" no longer accepts array' in details
    assert f"{submit}: request field \"spec.tasks[]\" no longer accepts engine 'trino'" in details


def test_engine_spec_additions_pass(repo: GitRepo) -> None:
    def change(document: dict[str, Any]) -> None:
        schema(document, "DbtTaskSpec")["properties"]["fail_fast"] = {"type": "boolean", "default": False}
        schema(document, "DbtTaskSpec")["properties"]["threads"]["maximum"] = 128

    two_commits(repo, change)

    result = check_contract(repo.root / CONTRACT, "HEAD~1")
    assert result.status == "passed", result.details
