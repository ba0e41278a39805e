"""The YAML contract and the served API must not drift apart (paths, methods, parameters, schemas)."""

from __future__ import annotations

import copy

from openapi_spec_validator import validate

from control_room.api.contract import CONTRACT_PATH, contract_diff, load_contract, render, served_contract


def test_contract_file_is_valid_openapi_31() -> None:
    document = load_contract()
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_served_api_matches_contract_file() -> None:
    diff = contract_diff(load_contract(), served_contract())
    assert diff == [], (
        f"{CONTRACT_PATH.name} and the served API differ; run `lakehouse contract export` if the change is "
        "intended:\n" + "\n".join(diff[:40])
    )


def test_file_is_exactly_the_rendered_served_contract() -> None:
    assert CONTRACT_PATH.read_text(encoding="utf-8") == render(served_contract())


def test_drift_is_detected_in_each_part() -> None:
    served = served_contract()
    changed = copy.deepcopy(served)
    del changed["paths"]["/api/v1/runs/{run_id}/cancel"]
    changed["paths"]["/api/v1/runs"]["get"]["parameters"][0]["name"] = "state"
    changed["components"]["schemas"]["ClaimRequest"]["properties"]["max_tasks"]["maximum"] = 5
    changed["paths"]["/api/v1/tasks/claim"]["put"] = changed["paths"]["/api/v1/tasks/claim"]["post"]
    diff = "\n".join(contract_diff(changed, served))
    assert "paths./api/v1/runs/{run_id}/cancel: served but not in the contract file" in diff
    assert "parameters[0].name" in diff
    assert "ClaimRequest.properties.max_tasks.maximum" in diff
    assert "paths./api/v1/tasks/claim.put: in the contract file but not served" in diff


def test_every_operation_has_an_operation_id_and_problem_errors() -> None:
    for path, item in load_contract()["paths"].items():
        for method, operation in item.items():
            assert operation.get("operationId"), f"{method.upper()} {path} has no operationId"
            errors = {c: r for c, r in operation["responses"].items() if c.startswith(("4", "5")) and c != "503"}
            assert errors, f"{method.upper()} {path} documents no error responses"
            for code, response in errors.items():
                assert "application/problem+json" in response["content"], f"{method.upper()} {path} {code}"
