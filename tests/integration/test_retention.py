"""Event retention on real Postgres with a driven clock: exactly the old runs' events and attempts move to
verified Parquet and back, a crash at any point loses nothing, and two loops never archive a run twice."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from control_room.db.connection import connect_async
from control_room.db.migrate import migrate
from control_room.db.rows import model_rows
from control_room.db.tables import EventArchive
from control_room.loops.retention import run_retention
from control_room.services import retention, runs
from control_room.storage import LocalArtifactStore
from tests.conftest import PostgresServer
from tests.integration.factories import finished_run, make_tenant, submit, task

pytestmark = pytest.mark.migrations
T = TypeVar("T")
NOW = datetime.now(UTC)
DAY = timedelta(days=1)


@pytest.fixture(scope="module")
def retention_db(pg_server: PostgresServer) -> str:
    """A database of its own: a pass archives every due run, so no other test's runs may be in it."""
    url = pg_server.create_database("lh_retention")
    migrate(url)
    return url


@pytest.fixture
def conn(retention_db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(retention_db, autocommit=True) as c:
        yield c


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


def on_db(url: str, work: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
    async def run() -> T:
        async with await connect_async(url) as aconn:
            return await work(aconn)

    return asyncio.run(run())


def live_events(conn: psycopg.Connection, run_id: uuid.UUID) -> list[tuple[Any, ...]]:
    return conn.execute(
        "select e.id, t.key, e.attempt, e.seq, e.ts, e.type, e.level, e.message, e.data from ops.events e "
        "left join ops.tasks t on t.id = e.task_id where e.run_id = %s order by e.id",
        (run_id,),
    ).fetchall()


def counts(conn: psycopg.Connection, run_id: uuid.UUID) -> tuple[int, int]:
    row = conn.execute(
        "select (select count(*) from ops.events where run_id = %s), "
        "(select count(*) from ops.task_attempts where run_id = %s)",
        (run_id, run_id),
    ).fetchone()
    assert row
    return int(row[0]), int(row[1])


def archive_due(url: str, store: LocalArtifactStore, at: datetime, worker: str = "w1", **kw: Any) -> Any:
    return on_db(url, lambda c: retention.archive_due(c, now=lambda: at, worker=worker, store=store, **kw))


def test_exactly_the_old_runs_move_to_verified_parquet_and_read_back_in_order(
    conn: psycopg.Connection, retention_db: str, store: LocalArtifactStore
) -> None:
    tenant = make_tenant(conn)
    old = finished_run(conn, tenant, days_ago=31)
    recent = finished_run(conn, tenant, days_ago=29)
    keeper = make_tenant(conn)  # retention 0: kept forever
    conn.execute("update ops.projects set event_retention_days = 0 where id = %s", (keeper.project_id,))
    kept = finished_run(conn, keeper, days_ago=400)
    longer = make_tenant(conn)  # 90 days: a 31-day-old run stays
    conn.execute("update ops.projects set event_retention_days = 90 where id = %s", (longer.project_id,))
    young_for_90 = finished_run(conn, longer, days_ago=31)
    running = submit(conn, tenant, [task("still")])
    before = live_events(conn, old)
    untouched = {r: live_events(conn, r) for r in (recent, kept, young_for_90, running)}
    assert len(before) == 14 and counts(conn, old) == (14, 2)

    result = archive_due(retention_db, store, NOW, delete_batch=5)

    assert (result.runs_claimed, result.runs_done, result.events_archived, result.attempts_archived) == (1, 1, 14, 2)
    # 16 rows in batches of 5: 5 events, 5 events, 4 events + 1 attempt, the last attempt (and done).
    assert result.rows_deleted == 16 and len(result.batch_seconds) == 4
    assert counts(conn, old) == (0, 0)
    assert {r: live_events(conn, r) for r in untouched} == untouched
    archive = conn.execute(
        "select status, event_count, attempt_count, last_event_id, events_key, events_size_bytes, events_sha256, "
        "attempts_key, attempts_size_bytes, attempts_sha256 from ops.event_archives where run_id = %s",
        (old,),
    ).fetchone()
    assert archive and archive[:4] == ("done", 14, 2, before[-1][0])
    for key, size, sha in (archive[4:7], archive[7:10]):
        stored = b"".join(store.iter_bytes(key))
        assert len(stored) == size and hashlib.sha256(stored).hexdigest() == sha
        assert store.verify(key, size=size, sha256=sha).ok
    assert conn.execute("select count(*) from ops.event_archives").fetchone() == (1,)

    found, rows = on_db(retention_db, lambda c: retention.archived_events(c, run_id=old, store=store))
    assert found.event_count == 14
    assert [
        (r["id"], r["task_key"], r["attempt"], r["seq"], r["ts"], r["type"], r["level"], r["message"], r["data"])
        for r in rows
    ] == [tuple(e) for e in before]
    page, more = on_db(retention_db, lambda c: retention.archived_events(c, run_id=old, after_id=before[9][0],
                                                                          limit=3, store=store))  # fmt: skip
    assert [r["id"] for r in more] == [e[0] for e in before[10:13]] and page.run_id == old
    attempts = on_db(retention_db, lambda c: retention.archived_attempts(c, run_id=old, store=store))
    assert sorted((a["task_key"], a["attempt"], a["outcome"]) for a in attempts) == [
        ("extract", 1, "succeeded"),
        ("load", 1, "succeeded"),
    ]
    # The run page's attempts come back from the archive onto the run's tasks.

    async def run_with_attempts(c: psycopg.AsyncConnection) -> dict[str, Any]:
        run = await runs.get_run(c, run_id=old)
        assert all(t["attempts"] == [] for t in run["tasks"])
        await retention.fill_archived_attempts(c, run=run, store=store)
        return run

    filled = on_db(retention_db, run_with_attempts)
    assert sorted((t["key"], [(a["attempt"], a["outcome"]) for a in t["attempts"]]) for t in filled["tasks"]) == [
        ("extract", [(1, "succeeded")]),
        ("load", [(1, "succeeded")]),
    ]
    assert all(t["attempts"][0]["claimed_at"] <= t["attempts"][0]["finished_at"] for t in filled["tasks"])
    # Nothing is due any more: a second pass claims nothing.
    assert archive_due(retention_db, store, NOW).runs_claimed == 0


def test_a_tampered_archive_is_refused_on_read(
    conn: psycopg.Connection, retention_db: str, store: LocalArtifactStore
) -> None:
    tenant = make_tenant(conn)
    old = finished_run(conn, tenant, days_ago=45)
    archive_due(retention_db, store, NOW)
    row = conn.execute("select events_key from ops.event_archives where run_id = %s", (old,)).fetchone()
    assert row
    path = store.path(row[0])
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:-1] + b"\0")
    with pytest.raises(retention.StorageError, match="differ from the recorded"):
        on_db(retention_db, lambda c: retention.archived_events(c, run_id=old, store=store))


def test_events_and_attempts_of_a_run_not_archived_cannot_be_deleted(
    conn: psycopg.Connection, retention_db: str, store: LocalArtifactStore
) -> None:
    tenant = make_tenant(conn)
    run_id = finished_run(conn, tenant, days_ago=1)
    for statement in ("delete from ops.events where run_id = %s", "delete from ops.task_attempts where run_id = %s"):
        with pytest.raises(psycopg.Error) as err:
            conn.execute(statement, (run_id,))
        assert err.value.sqlstate == "LH423"
    # An archived run: events appended after the archive (ids beyond the last archived one) stay protected.
    old = finished_run(conn, tenant, days_ago=60)
    archive_due(retention_db, store, NOW)
    conn.execute(
        "insert into ops.events (run_id, type, message) values (%s, 'note', 'written after the archive')", (old,)
    )
    with pytest.raises(psycopg.Error) as err:
        conn.execute("delete from ops.events where run_id = %s", (old,))
    assert err.value.sqlstate == "LH423" and "not archived" in str(err.value)
    assert counts(conn, old) == (1, 0) and counts(conn, run_id) == (14, 2)


def test_a_crash_after_the_parquet_is_written_loses_nothing_and_a_rerun_finishes(
    conn: psycopg.Connection, retention_db: str, store: LocalArtifactStore
) -> None:
    tenant = make_tenant(conn)
    first = finished_run(conn, tenant, days_ago=40)
    second = finished_run(conn, tenant, days_ago=41)
    expected = {first: live_events(conn, first), second: live_events(conn, second)}

    async def crash(aconn: psycopg.AsyncConnection) -> None:
        """A replica that dies: the Parquet of one run stored but not recorded; the other recorded and one
        batch of its rows deleted."""
        async with aconn.cursor(row_factory=model_rows(EventArchive)) as cur:
            await cur.execute("select * from ops.claim_event_archives(%s, 'dying', 10, 300)", (NOW,))
            claims = {c.run_id: c for c in await cur.fetchall()}
        assert set(claims) == {first, second}
        tokens.append(claims[second].claim_token)
        events_bytes, _, last = await retention._events_parquet(aconn, first)
        retention._store(store, retention.archive_key(tenant.project_id, first, f"events-upto-{last}.parquet"),
                         events_bytes)  # fmt: skip
        assert await retention.write_archive(aconn, claim=claims[second], store=store, now=lambda: NOW) == (14, 2)
        cur2 = await aconn.execute("select * from ops.delete_archived_rows(%s, %s, 4, %s, 300)",
                                   (second, claims[second].claim_token, NOW))  # fmt: skip
        assert await cur2.fetchone() == (4, False, False)

    tokens: list[uuid.UUID] = []
    on_db(retention_db, crash)
    dead_token = tokens[0]
    assert counts(conn, first) == (14, 2) and counts(conn, second) == (10, 2)
    # Within the dead replica's lease nobody else takes its runs.
    assert archive_due(retention_db, store, NOW + timedelta(seconds=299), worker="w2").runs_claimed == 0
    result = archive_due(retention_db, store, NOW + timedelta(seconds=301), worker="w2")
    assert (result.runs_claimed, result.runs_done, result.claims_lost) == (2, 2, 0)
    for run_id, events in expected.items():
        assert counts(conn, run_id) == (0, 0)
        _, rows = on_db(retention_db, lambda c, r=run_id: retention.archived_events(c, run_id=r, store=store))
        assert [(r["id"], r["seq"], r["message"]) for r in rows] == [(e[0], e[3], e[7]) for e in events]
    # The dead replica's token no longer deletes anything; the new holder finished both.
    with psycopg.connect(retention_db, autocommit=True) as other:
        stale = other.execute(
            "select * from ops.delete_archived_rows(%s, %s, 4, %s, 300)", (second, dead_token, NOW)
        ).fetchone()
    assert stale == (0, False, True)
    assert conn.execute(
        "select count(*) from ops.event_archives where run_id = any(%s) and status = 'done' and claimed_by = 'w2'",
        ([first, second],),
    ).fetchone() == (2,)


def test_two_loops_racing_archive_every_run_exactly_once(
    conn: psycopg.Connection, retention_db: str, store: LocalArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = make_tenant(conn)
    runs = [finished_run(conn, tenant, days_ago=35 + i, events_per_task=25) for i in range(12)]
    total = sum(len(live_events(conn, r)) for r in runs)
    monkeypatch.setattr(retention, "get_store", lambda: store)
    monkeypatch.setenv("LAKEHOUSE_RETENTION_RUNS_PER_PASS", "3")
    monkeypatch.setenv("LAKEHOUSE_RETENTION_DELETE_BATCH", "10")
    from control_room.config import get_settings

    get_settings.cache_clear()
    try:
        a: list[retention.PassResult] = []
        b: list[retention.PassResult] = []

        async def race() -> None:
            await asyncio.gather(
                *(run_retention(retention_db, clock=lambda: NOW, interval=0, passes=6, worker=w, results=r)
                  for w, r in (("replica-a", a), ("replica-b", b)))
            )  # fmt: skip

        asyncio.run(race())
    finally:
        get_settings.cache_clear()
    done = sum(p.runs_done for p in a + b)
    archived = sum(p.events_archived for p in a + b)
    assert done == 12 and archived == total
    rows = conn.execute(
        "select run_id, status, event_count from ops.event_archives where run_id = any(%s)", (runs,)
    ).fetchall()
    assert len(rows) == 12 and {r[1] for r in rows} == {"done"}
    assert sum(r[2] for r in rows) == total
    assert all(counts(conn, r) == (0, 0) for r in runs)
    # Each run's Parquet was written once: one events file per run in the store.
    files = sorted(p.name for p in (store.root / "retention" / str(tenant.project_id)).rglob("events-*.parquet"))
    assert len(files) == 12
