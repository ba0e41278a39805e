"""Run actions as the UI calls them: cancel and retry go through the services as the signed-in user,
and the SQL refuses them below operator whatever a page showed (a forged event or request)."""

from __future__ import annotations

import psycopg
import pytest

from control_room.services import runs
from control_room.services.auth import UserPrincipal, scoped
from control_room.services.errors import Forbidden, from_db_error
from tests.integration.factories import run_status, submit, task
from tests.ui.conftest import Team, run_async


def _cancel(database_url: str, who: UserPrincipal, run_id: object) -> object:
    async def work(conn: psycopg.AsyncConnection) -> object:
        async with scoped(conn, who):
            return await runs.cancel_run(conn, run_id=run_id, by=who.email)  # type: ignore[arg-type]

    return run_async(database_url, work)


def test_a_viewers_forged_cancel_is_refused_and_changes_nothing(
    database_url: str, db: psycopg.Connection, team: Team
) -> None:
    run_id = submit(db, team.tenant, [task("a"), task("b", depends_on=["a"])])
    with pytest.raises(psycopg.Error) as caught:
        _cancel(database_url, team.viewer.principal, run_id)
    refusal = from_db_error(caught.value)
    assert isinstance(refusal, Forbidden) and "operator role" in refusal.message
    assert run_status(db, run_id) == "queued"
    assert db.execute("select cancel_requested_at from ops.runs where id = %s", (run_id,)).fetchone() == (None,)


def test_an_operator_cancels_and_retries(database_url: str, db: psycopg.Connection, team: Team) -> None:
    run_id = submit(db, team.tenant, [task("a")])
    cancelled = _cancel(database_url, team.operator.principal, run_id)
    assert isinstance(cancelled, dict) and cancelled["status"] == "cancelled"

    async def retry(conn: psycopg.AsyncConnection) -> dict[str, object]:
        async with scoped(conn, team.operator.principal):
            return await runs.retry_run(
                conn, run_id=run_id, requested_by=team.operator.user_id, requested_by_name=team.operator.email
            )

    again = run_async(database_url, retry)
    assert again["retry_of"] == run_id and again["status"] == "queued"


def test_someone_from_another_project_cannot_even_see_the_run(
    database_url: str, db: psycopg.Connection, team: Team
) -> None:
    run_id = submit(db, team.tenant, [task("a")])
    with pytest.raises(Exception, match="does not exist or is not visible"):
        _cancel(database_url, team.outsider.principal, run_id)
    assert run_status(db, run_id) == "queued"
