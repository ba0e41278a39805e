"""Issue 16's task drill-down over HTTP and the CLI: events filtered by task and attempt, the whole log of one
attempt (or all of them) downloaded as a file, and `lakehouse runs logs` printing the same lines."""

from __future__ import annotations

import uuid

import pytest
from typer.testing import CliRunner

from control_room.cli import app
from control_room.config import get_settings
from tests.api.test_executor_flow import SHELL_TASK, claim, client, register, submit
from tests.live import LiveServer, Provisioner

PROBLEM = "application/problem+json"


def test_a_tasks_log_by_attempt_over_http_and_the_cli(
    live_api: LiveServer, provision: Provisioner, api_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = f"log-{uuid.uuid4().hex[:8]}"
    operator = client(live_api, provision.user_token("operator")[1])
    tasks = [{"key": "flaky", **SHELL_TASK, "pool": pool, "max_attempts": 2, "retry_backoff_s": 0},
             {"key": "other", **SHELL_TASK, "pool": pool, "max_attempts": 1}]  # fmt: skip
    run = submit(operator, tasks, project=str(provision.tenant().project_id))
    agent = client(live_api, provision.executor_token(pool))
    register(agent)
    claimed = {t["task_key"]: t for t in claim(agent, max_tasks=2)}
    assert set(claimed) == {"flaky", "other"}

    def report(task: dict[str, object], lines: list[tuple[str, str]], outcome: str) -> None:
        events = [{"seq": n, "level": level, "message": text} for n, (level, text) in enumerate(lines)]
        sent = agent.post(
            f"/tasks/{task['task_id']}/events", json={"lease_token": task["lease_token"], "events": events}
        )
        assert sent.status_code == 200, sent.text
        body = {
            "lease_token": task["lease_token"],
            "outcome": outcome,
            "error": "boom" if outcome == "failed" else None,
        }
        assert agent.post(f"/tasks/{task['task_id']}/finalize", json=body).status_code == 200

    report(claimed["flaky"], [("info", "first try starts"), ("error", "first try\nbroke")], "failed")
    report(claimed["other"], [("info", "other task line")], "succeeded")
    (second,) = claim(agent)
    assert second["task_key"] == "flaky" and second["attempt"] == 2
    report(second, [("info", "second try starts"), ("info", "second try done")], "succeeded")

    flaky_id = claimed["flaky"]["task_id"]
    page = operator.get(f"/runs/{run['id']}/events", params={"task_id": flaky_id, "attempt": 2}).json()["items"]
    assert [e["message"] for e in page if e["type"] == "log"] == ["second try starts", "second try done"]
    assert {e["attempt"] for e in page} == {2}
    bad = operator.get(f"/runs/{run['id']}/events", params={"attempt": 0})
    assert (
        bad.status_code == 422 and bad.headers["content-type"].startswith(PROBLEM) and bad.json()["field"] == "attempt"
    )

    first = operator.get(f"/runs/{run['id']}/tasks/flaky/log", params={"attempt": 1})
    assert first.status_code == 200 and first.headers["content-type"].startswith("text/plain")
    assert first.headers["content-disposition"].endswith('-flaky-attempt-1.log"')
    assert "first try starts" in first.text and "ERROR" in first.text and "first try\n    broke" in first.text
    assert "second try" not in first.text and "other task line" not in first.text
    whole = operator.get(f"/runs/{run['id']}/tasks/{flaky_id}/log")  # by id too; every attempt
    assert whole.status_code == 200
    assert whole.text.index("first try starts") < whole.text.index("second try done")
    missing = operator.get(f"/runs/{run['id']}/tasks/nope/log")
    assert missing.status_code == 404 and missing.json()["field"] == "task"
    outsider = client(live_api, provision.user_token("viewer", tenant=provision.tenant("outsider"))[1])
    assert outsider.get(f"/runs/{run['id']}/tasks/flaky/log").status_code == 404

    monkeypatch.setenv("LAKEHOUSE_DATABASE_URL", api_database_url)
    get_settings.cache_clear()
    try:
        printed = CliRunner().invoke(app, ["runs", "logs", run["id"], "flaky", "--attempt", "2"])
        assert printed.exit_code == 0, printed.stderr
        assert "second try starts" in printed.stdout and "first try" not in printed.stdout
        unknown = CliRunner().invoke(app, ["runs", "logs", run["id"], "nope"])
        assert unknown.exit_code == 1 and "(task)" in unknown.stderr
        not_an_id = CliRunner().invoke(app, ["runs", "logs", "yesterday", "flaky"])
        assert not_an_id.exit_code == 2 and "is not a run id" in not_an_id.stderr
    finally:
        get_settings.cache_clear()
