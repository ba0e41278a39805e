"""The Artifacts page's list (services.artifacts.list_project_artifacts): newest first, keyset pages, filters."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from control_room.services import artifacts
from control_room.services.auth import scoped
from control_room.services.errors import Invalid
from tests.integration.factories import submit, task
from tests.ui.conftest import Team, run_async


def _artifacts(db: psycopg.Connection, team: Team, names: list[str]) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """A fresh run with one artifact per name, created in that order a second apart."""
    run_id = submit(db, team.tenant, [task("t")])
    task_row = db.execute("select id from ops.tasks where run_id = %s", (run_id,)).fetchone()
    assert task_row
    ids = []
    for n, name in enumerate(names):
        row = db.execute(
            "insert into ops.artifacts (run_id, project_id, task_id, attempt, name, uri, size_bytes, sha256, "
            "created_at) values (%s, %s, %s, 1, %s, %s, 1, %s, now() - make_interval(secs => %s)) returning id",
            (run_id, team.tenant.project_id, task_row[0], name, f"file:///{name}", "0" * 64, len(names) - n),
        ).fetchone()
        assert row
        ids.append(uuid.UUID(str(row[0])))
    return run_id, ids


def _page(database_url: str, team: Team, **kwargs: Any) -> tuple[list[dict[str, Any]], str | None]:
    async def work(conn: psycopg.AsyncConnection) -> tuple[list[dict[str, Any]], str | None]:
        async with scoped(conn, team.viewer.principal):
            return await artifacts.list_project_artifacts(conn, project_id=team.tenant.project_id, **kwargs)

    return run_async(database_url, work)


def test_pages_newest_first_by_run_and_by_name(database_url: str, db: psycopg.Connection, team: Team) -> None:
    run_id, ids = _artifacts(db, team, ["a.csv", "b_1.json", "b%1.json", "c.txt", "d.csv"])
    other_run, _ = _artifacts(db, team, ["elsewhere.csv"])

    seen, cursor, pages = [], None, 0
    while True:
        rows, cursor = _page(database_url, team, run_id=run_id, cursor=cursor, limit=2)
        seen += [row["id"] for row in rows]
        pages += 1
        if cursor is None:
            break
        assert "|" in cursor  # created_at|id, as the Artifacts page hands it back
    assert seen == list(reversed(ids)) and pages == 3

    everything, last = _page(database_url, team, limit=50)
    assert last is None and len(everything) == 6
    assert all(row["run_name"] for row in everything)
    # Wildcards are taken literally: "b%1" matches one name, "b_1" the other only.
    assert [row["name"] for row in _page(database_url, team, text=" b%1 ")[0]] == ["b%1.json"]
    assert [row["name"] for row in _page(database_url, team, text="b_1")[0]] == ["b_1.json"]
    assert [row["name"] for row in _page(database_url, team, text="   ", run_id=other_run)[0]] == ["elsewhere.csv"]


def test_a_foreign_cursor_is_refused(database_url: str, team: Team) -> None:
    with pytest.raises(Invalid) as refused:
        _page(database_url, team, cursor="not-a-cursor")
    assert refused.value.field == "cursor"
    assert refused.value.message == "not a cursor of this list; start from the first page"
