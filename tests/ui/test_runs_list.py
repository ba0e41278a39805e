"""The UI's runs list: three sort orders paged by keyset, every filter, RLS as the signed-in user."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from control_room.services import runs
from control_room.services.auth import UserPrincipal, scoped
from control_room.services.errors import Invalid
from tests.ui.conftest import Team, run_async

BASE = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
NO_START = datetime.min.replace(tzinfo=UTC)


def _insert_runs(db: psycopg.Connection, team: Team, count: int) -> list[dict[str, Any]]:
    """Runs with spread-out times and every status, inserted directly (history, not live work)."""
    rng = random.Random(7)
    rows = []
    for i in range(count):
        created = BASE + timedelta(minutes=i * 3, seconds=rng.randint(0, 59))
        status = ["queued", "running", "succeeded", "failed", "cancelled"][i % 5]
        started = None if status == "queued" else created + timedelta(seconds=rng.randint(1, 30))
        finished = (
            started + timedelta(seconds=rng.choice([5, 50, 500, 5000]), microseconds=rng.randint(0, 999_999))
            if status in ("succeeded", "failed", "cancelled") and started
            else None
        )
        environment = ["dev", "staging", "prod"][i % 3]
        engine = ["shell", "python", "dbt"][i % 3]
        row = db.execute(
            "insert into ops.runs (org_id, project_id, environment_id, name, spec, engines, task_count, status, "
            "trigger, created_at, started_at, finished_at) values (%s, %s, %s, %s, %s, %s, 1, %s, %s, %s, %s, %s) "
            "returning id",
            (
                team.tenant.org_id,
                team.tenant.project_id,
                team.tenant.environments[environment],
                f"{'nightly' if i % 2 else 'hourly'}-load-{i:03d}",
                json.dumps({"tasks": [{"key": "a", "engine": engine}]}),
                [engine],
                status,
                "schedule" if i % 4 == 0 else "manual",
                created,
                started,
                finished,
            ),
        ).fetchone()
        assert row
        rows.append(
            {"id": row[0], "created": created, "started": started, "finished": finished, "status": status,
             "environment": environment, "engine": engine, "trigger": "schedule" if i % 4 == 0 else "manual",
             "name": f"{'nightly' if i % 2 else 'hourly'}-load-{i:03d}"}
        )  # fmt: skip
    return rows


def _page_through(database_url: str, principal: UserPrincipal, query: runs.RunsQuery, limit: int) -> list[uuid.UUID]:
    async def work(conn: psycopg.AsyncConnection) -> list[uuid.UUID]:
        seen: list[uuid.UUID] = []
        cursor = None
        while True:
            async with scoped(conn, principal):
                page, cursor = await runs.list_runs_sorted(conn, query=query, cursor=cursor, limit=limit)
            seen.extend(row["id"] for row in page)
            assert len(page) <= limit
            if cursor is None:
                return seen

    return run_async(database_url, work)


def _expected(rows: list[dict[str, Any]], sort: str, descending: bool) -> list[uuid.UUID]:
    def key(row: dict[str, Any]) -> tuple[Any, str]:
        if sort == "created":
            value: Any = row["created"]
        elif sort == "started":
            value = row["started"] or NO_START
        else:
            value = (row["finished"] - row["started"]) if row["finished"] else timedelta(microseconds=-1)
        return value, str(row["id"])

    return [row["id"] for row in sorted(rows, key=key, reverse=descending)]


@pytest.fixture
def history(db: psycopg.Connection, team: Team) -> list[dict[str, Any]]:
    return _insert_runs(db, team, 40)


@pytest.mark.parametrize("sort", ["created", "started", "duration"])
@pytest.mark.parametrize("descending", [True, False], ids=["desc", "asc"])
def test_keyset_pages_return_every_run_once_in_order(
    database_url: str, team: Team, history: list[dict[str, Any]], sort: str, descending: bool
) -> None:
    query = runs.RunsQuery(project_id=team.tenant.project_id, sort=sort, descending=descending)
    # uuids order differently in Python (str) and Postgres (bytes) only for equal keys, which never
    # happen here: times carry seconds and microseconds.
    assert _page_through(database_url, team.viewer.principal, query, limit=7) == _expected(history, sort, descending)


def test_filters_narrow_the_list(database_url: str, team: Team, history: list[dict[str, Any]]) -> None:
    base = runs.RunsQuery(project_id=team.tenant.project_id)
    viewer = team.viewer.principal

    def ids(query: runs.RunsQuery) -> set[uuid.UUID]:
        return set(_page_through(database_url, viewer, query, limit=50))

    def where(predicate: Any) -> set[uuid.UUID]:
        return {row["id"] for row in history if predicate(row)}

    assert ids(replace(base, statuses=("failed", "cancelled"))) == where(
        lambda r: r["status"] in ("failed", "cancelled")
    )
    assert ids(replace(base, environment="staging")) == where(lambda r: r["environment"] == "staging")
    assert ids(replace(base, engine="dbt")) == where(lambda r: r["engine"] == "dbt")
    assert ids(replace(base, trigger="schedule")) == where(lambda r: r["trigger"] == "schedule")
    assert ids(replace(base, text="NIGHTLY")) == where(lambda r: "nightly" in r["name"])
    assert ids(replace(base, text="load-01")) == where(lambda r: "load-01" in r["name"])
    cutoff = BASE + timedelta(minutes=60)
    assert ids(replace(base, created_after=cutoff)) == where(lambda r: r["created"] >= cutoff)
    assert ids(replace(base, created_before=cutoff, statuses=("queued",))) == where(
        lambda r: r["created"] < cutoff and r["status"] == "queued"
    )
    target = history[17]["id"]
    assert ids(replace(base, text=str(target)[:8])) >= {target}
    assert ids(replace(base, text=str(target).upper())) == {target}
    assert ids(replace(base, text="100%_sure")) == set()  # LIKE wildcards are matched literally


@pytest.mark.parametrize("sort", ["created", "duration"])
def test_rare_names_found_through_the_trigram_index_page_the_same(
    database_url: str, team: Team, history: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, sort: str
) -> None:
    query = runs.RunsQuery(project_id=team.tenant.project_id, text="nightly", sort=sort)
    walked = _page_through(database_url, team.viewer.principal, query, limit=6)
    monkeypatch.setattr(runs, "NAME_SEARCH_ORDERED_MS", 0)  # the path a slow walk falls back to
    assert _page_through(database_url, team.viewer.principal, query, limit=6) == walked
    nightly = [row for row in history if "nightly" in row["name"]]
    assert walked == _expected(nightly, sort, True)


def test_other_projects_runs_are_invisible(database_url: str, team: Team, history: list[dict[str, Any]]) -> None:
    query = runs.RunsQuery(project_id=team.tenant.project_id)
    assert _page_through(database_url, team.outsider.principal, query, limit=50) == []


def test_refresh_by_id_returns_current_rows(database_url: str, db: psycopg.Connection, team: Team) -> None:
    rows = _insert_runs(db, team, 3)
    db.execute("update ops.runs set status = 'failed', finished_at = now() where id = %s", (rows[1]["id"],))

    async def work(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
        async with scoped(conn, team.viewer.principal):
            return await runs.runs_by_id(conn, run_ids=[r["id"] for r in rows])

    fresh = {row["id"]: row for row in run_async(database_url, work)}
    assert fresh[rows[1]["id"]]["status"] == "failed"
    assert set(fresh) == {r["id"] for r in rows}
    assert fresh[rows[0]["id"]]["tasks_done"] == 0


def test_bad_input_names_the_field(database_url: str, team: Team) -> None:
    def call(query: runs.RunsQuery, cursor: str | None = None) -> object:
        async def work(conn: psycopg.AsyncConnection) -> object:
            async with scoped(conn, team.viewer.principal):
                return await runs.list_runs_sorted(conn, query=query, cursor=cursor)

        return run_async(database_url, work)

    base = runs.RunsQuery(project_id=team.tenant.project_id)
    for query, cursor, field in (
        (replace(base, sort="name"), None, "sort"),
        (replace(base, statuses=("done",)), None, "status"),
        (replace(base, trigger="cron"), None, "trigger"),
        (base, "garbage", "cursor"),
        (replace(base, sort="started"), runs._encode_sort_cursor("created", BASE.isoformat(), uuid.uuid4()), "cursor"),
    ):
        with pytest.raises(Invalid) as caught:
            call(query, cursor)
        assert caught.value.field == field
