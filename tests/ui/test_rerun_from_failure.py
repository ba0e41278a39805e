"""Re-execute from failure (issue 16) through the services as the signed-in user, on real Postgres: a
re-run reuses the succeeded tasks' outcomes (no new attempt) and runs the failed and downstream tasks;
"from task" runs a task and its downstream; the runs are linked both ways; and a failed run says why."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from control_room.services import runs
from control_room.services.auth import scoped
from control_room.services.errors import Conflict, Invalid, from_db_error
from tests.integration.factories import claim, finalize, make_executor, submit, task, task_status
from tests.ui.conftest import Person, Team, run_async

PIPELINE = [
    task("extract", max_attempts=1),
    task("load", depends_on=["extract"], max_attempts=1),
    task("publish", depends_on=["load"], max_attempts=1),
]


def _work_through(db: psycopg.Connection, executor: uuid.UUID, outcomes: dict[str, str]) -> None:
    """Claim and finalize tasks until none is claimable, each with its outcome in ``outcomes``."""
    while found := claim(db, executor, max_tasks=10):
        for assignment in found:
            outcome = outcomes.get(assignment["task_key"], "succeeded")
            finalize(db, assignment["task_id"], assignment["lease_token"], outcome,
                     result={"rows": 3} if outcome == "succeeded" else None,
                     error=None if outcome == "succeeded" else f"{assignment['task_key']} broke")  # fmt: skip


def _rerun(database_url: str, who: Person, run_id: uuid.UUID, mode: str, from_task: str | None = None) -> Any:
    async def work(conn: psycopg.AsyncConnection) -> dict[str, Any]:
        async with scoped(conn, who.principal):
            return await runs.retry_run(conn, run_id=run_id, requested_by=who.user_id, requested_by_name=who.email,
                                        mode=mode, from_task=from_task)  # fmt: skip

    return run_async(database_url, work)


def _get(database_url: str, who: Person, run_id: uuid.UUID) -> dict[str, Any]:
    async def work(conn: psycopg.AsyncConnection) -> dict[str, Any]:
        async with scoped(conn, who.principal):
            return await runs.get_run(conn, run_id=run_id)

    return run_async(database_url, work)


def _attempts(db: psycopg.Connection, run_id: uuid.UUID) -> dict[str, int]:
    rows = db.execute(
        "select t.key, count(a.attempt) from ops.tasks t left join ops.task_attempts a on a.task_id = t.id "
        "where t.run_id = %s group by t.key",
        (run_id,),
    ).fetchall()
    return {str(key): int(count) for key, count in rows}


def test_rerun_failed_reuses_succeeded_tasks_and_runs_the_rest(
    database_url: str, db: psycopg.Connection, team: Team
) -> None:
    executor = make_executor(db, team.tenant)
    source = submit(db, team.tenant, PIPELINE)
    _work_through(db, executor, {"load": "failed"})
    assert task_status(db, source) == {"extract": "succeeded", "load": "failed", "publish": "skipped"}

    failed = _get(database_url, team.viewer, source)
    assert failed["status"] == "failed"
    assert failed["error"] == 'task "load" failed: load broke; 1 downstream task skipped'

    rerun = _rerun(database_url, team.operator, source, "failed")
    assert rerun["retry_of"] == source and rerun["trigger"] == "retry" and rerun["status"] == "queued"
    assert task_status(db, rerun["id"]) == {"extract": "succeeded", "load": "queued", "publish": "pending"}
    _work_through(db, executor, {})
    assert task_status(db, rerun["id"]) == {"extract": "succeeded", "load": "succeeded", "publish": "succeeded"}
    # The upstream task ran once, in the source run; the re-run reused its outcome.
    assert _attempts(db, source) == {"extract": 1, "load": 1, "publish": 0}
    assert _attempts(db, rerun["id"]) == {"extract": 0, "load": 1, "publish": 1}

    detail = _get(database_url, team.viewer, rerun["id"])
    extract = next(t for t in detail["tasks"] if t["key"] == "extract")
    assert extract["reused_from_run"] == source and extract["result"] == {"rows": 3}
    assert detail["status"] == "succeeded" and detail["error"] is None
    assert _get(database_url, team.viewer, source)["reruns"] == [rerun["id"]]


def test_rerun_from_a_task_runs_it_and_its_downstream_only(
    database_url: str, db: psycopg.Connection, team: Team
) -> None:
    executor = make_executor(db, team.tenant)
    source = submit(db, team.tenant, PIPELINE)
    _work_through(db, executor, {})
    rerun = _rerun(database_url, team.operator, source, "from_task", "load")
    assert task_status(db, rerun["id"]) == {"extract": "succeeded", "load": "queued", "publish": "pending"}
    # A reuse of a reuse still points at the task that produced the outcome.
    _work_through(db, executor, {})
    again = _rerun(database_url, team.operator, rerun["id"], "from_task", "publish")
    original = db.execute("select id from ops.tasks where run_id = %s and key = 'extract'", (source,)).fetchone()
    reused = db.execute(
        "select reused_from_task from ops.tasks where run_id = %s and key = 'extract'", (again["id"],)
    ).fetchone()
    assert original == reused


def test_rerun_refusals_name_what_to_do(database_url: str, db: psycopg.Connection, team: Team) -> None:
    executor = make_executor(db, team.tenant)
    source = submit(db, team.tenant, PIPELINE)
    with pytest.raises(Conflict, match="only failed or cancelled runs"):
        _rerun(database_url, team.operator, source, "failed")  # still queued
    _work_through(db, executor, {"load": "failed"})
    with pytest.raises(Invalid) as caught:
        _rerun(database_url, team.operator, source, "from_task")
    assert caught.value.field == "from_task"
    with pytest.raises(psycopg.Error) as refused:
        _rerun(database_url, team.operator, source, "from_task", "nope")
    mapped = from_db_error(refused.value)
    assert isinstance(mapped, Invalid) and mapped.field == "from_task" and 'no task "nope"' in mapped.message
    with pytest.raises(psycopg.Error) as forbidden:
        _rerun(database_url, team.viewer, source, "failed")
    assert "operator" in str(forbidden.value)
    assert db.execute("select count(*) from ops.runs where retry_of = %s", (source,)).fetchone() == (0,)


def test_outcomes_cannot_be_reused_once_a_run_started(database_url: str, db: psycopg.Connection, team: Team) -> None:
    executor = make_executor(db, team.tenant)
    source = submit(db, team.tenant, PIPELINE)
    _work_through(db, executor, {"load": "failed"})
    rerun = _rerun(database_url, team.operator, source, "all")
    claim(db, executor)
    with pytest.raises(psycopg.Error, match="has started"):
        db.execute("select ops.reuse_succeeded_tasks(%s, null)", (rerun["id"],))


def test_a_nul_byte_in_the_search_is_a_clear_refusal(database_url: str, team: Team) -> None:
    async def work(conn: psycopg.AsyncConnection) -> object:
        async with scoped(conn, team.viewer.principal):
            query = runs.RunsQuery(project_id=team.tenant.project_id, text="demo\x00")
            return await runs.list_runs_sorted(conn, query=query)

    with pytest.raises(Invalid) as caught:
        run_async(database_url, work)
    assert caught.value.field == "text" and "NUL" in caught.value.message
