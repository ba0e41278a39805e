"""Contract conformance found by fuzzing (issue 15, item 7): errors answer before a stream starts, states
the contract lists, 409 for a state conflict."""

from __future__ import annotations

import uuid

from tests.api.test_executor_flow import SHELL_TASK, claim, client, register, submit
from tests.live import LiveServer, Provisioner

API = "/api/v1"
PROBLEM = "application/problem+json"


def test_the_event_stream_of_an_unknown_run_or_a_bad_last_event_id_is_a_problem_before_streaming(
    live_api: LiveServer, provision: Provisioner
) -> None:
    operator = client(live_api, provision.user_token("operator")[1])
    unknown = operator.get(f"/runs/{uuid.uuid4()}/events/stream")
    assert unknown.status_code == 404 and unknown.headers["content-type"].startswith(PROBLEM)
    run = submit(operator, [{"key": "a", **SHELL_TASK, "pool": "nobody"}], project=str(provision.tenant().project_id))
    for bad in ("not-a-number", "-5"):
        response = operator.get(f"/runs/{run['id']}/events/stream", headers={"Last-Event-ID": bad})
        assert response.status_code == 422, (bad, response.text)
        assert response.headers["content-type"].startswith(PROBLEM)
        assert response.json()["field"] == "Last-Event-ID"


def test_retrying_a_succeeded_run_is_a_409_conflict(live_api: LiveServer, provision: Provisioner) -> None:
    pool = f"conf-{uuid.uuid4().hex[:8]}"
    operator = client(live_api, provision.user_token("operator")[1])
    run = submit(operator, [{"key": "a", **SHELL_TASK, "pool": pool}], project=str(provision.tenant().project_id))
    agent = client(live_api, provision.executor_token(pool))
    register(agent)
    (task,) = claim(agent)
    done = agent.post(
        f"/tasks/{task['task_id']}/finalize", json={"lease_token": task["lease_token"], "outcome": "succeeded"}
    )
    assert done.json()["run_status"] == "succeeded"
    retried = operator.post(f"/runs/{run['id']}/retry")
    assert retried.status_code == 409 and retried.headers["content-type"].startswith(PROBLEM)
    assert "only failed or cancelled runs" in retried.json()["detail"]


def test_an_unknown_query_state_is_refused_and_the_contract_lists_the_states(
    live_api: LiveServer, provision: Provisioner
) -> None:
    from control_room.api.contract import load_contract

    operator = client(live_api, provision.user_token("operator")[1])
    assert operator.get("/queries", params={"state": "finished"}).status_code == 200
    refused = operator.get("/queries", params={"state": "bogus"})
    assert refused.status_code == 422 and refused.json()["field"].startswith("state")
    parameter = next(p for p in load_contract()["paths"][f"{API}/queries"]["get"]["parameters"] if p["name"] == "state")
    assert "refused" in parameter["schema"]["anyOf"][0]["items"]["enum"]


def test_unknown_paths_and_unserved_methods_answer_problem_json(live_api: LiveServer, provision: Provisioner) -> None:
    operator = client(live_api, provision.user_token("operator")[1])
    missing = operator.get("/no-such-operation")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith(PROBLEM)
    options = operator.request("OPTIONS", "/runs")
    assert options.status_code == 405 and options.headers["content-type"].startswith(PROBLEM)
    assert {"GET", "POST"} <= {m.strip() for m in options.headers["allow"].split(",")}
