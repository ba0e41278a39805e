"""Event retention over HTTP: a project's retention read by members and set by admins (audited), and a run's
archived events and attempts read back from the artifact store; org B sees none of it."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import psycopg

from control_room.db.connection import connect_async
from control_room.services import retention
from control_room.storage import LocalArtifactStore
from tests.api.test_executor_flow import client
from tests.integration.factories import finished_run
from tests.live import LiveServer, Provisioner


def archive_now(server: LiveServer, run_id: uuid.UUID) -> None:
    """Archive the run as the retention loop does (the server's own loop may get there first: either way
    exactly one archive comes out), into the server's artifact store; wait until it is done."""
    store = LocalArtifactStore(server.data_dir / "artifacts")

    async def one_pass() -> None:
        async with await connect_async(server.database_url) as conn:
            await retention.archive_due(conn, now=lambda: datetime.now(UTC), worker="test", store=store)

    deadline = time.monotonic() + 60
    with psycopg.connect(server.database_url, autocommit=True) as conn:
        while True:
            asyncio.run(one_pass())
            row = conn.execute("select status from ops.event_archives where run_id = %s", (run_id,)).fetchone()
            if row and row[0] == "done":
                return
            assert time.monotonic() < deadline, f"run {run_id} was not archived within 60 s ({row})"
            time.sleep(0.2)


def test_members_read_the_retention_and_only_admins_change_it(live_api: LiveServer, provision: Provisioner) -> None:
    a, b = provision.tenant("ret-a"), provision.tenant("ret-b")
    admin = client(live_api, provision.user_token("admin", a)[1])
    operator = client(live_api, provision.user_token("operator", a)[1])
    viewer = client(live_api, provision.user_token("viewer", a)[1])
    admin_b = client(live_api, provision.user_token("admin", b)[1])
    path = f"/projects/{a.project_id}/retention"
    assert viewer.get(path).json() == {"project_id": str(a.project_id), "event_retention_days": 30}
    assert viewer.put(path, json={"event_retention_days": 7}).status_code == 403
    assert operator.put(path, json={"event_retention_days": 7}).status_code == 403
    assert admin.put(path, json={"event_retention_days": 4000}).status_code == 422
    changed = admin.put(path, json={"event_retention_days": 7})
    assert changed.status_code == 200 and changed.json()["event_retention_days"] == 7
    assert viewer.get(path).json()["event_retention_days"] == 7
    # Org B's admin neither reads nor changes it.
    assert admin_b.get(path).status_code == 404
    assert admin_b.put(path, json={"event_retention_days": 1}).status_code == 404
    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        audited = conn.execute(
            "select detail from ops.audit_log where entity = 'projects' and entity_id = %s "
            "and action = 'event_retention'",
            (a.project_id,),
        ).fetchall()
        assert [r[0] for r in audited] == [{"old": 30, "new": 7}]
        assert conn.execute(
            "select event_retention_days from ops.projects where id = %s", (a.project_id,)
        ).fetchone() == (7,)


def test_archived_events_and_attempts_read_back_over_http(live_api: LiveServer, provision: Provisioner) -> None:
    a, b = provision.tenant("ret-read-a"), provision.tenant("ret-read-b")
    viewer = client(live_api, provision.user_token("viewer", a)[1])
    admin_b = client(live_api, provision.user_token("admin", b)[1])
    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        old = finished_run(conn, a, days_ago=31, events_per_task=6)
        recent = finished_run(conn, a, days_ago=2)
    live = viewer.get(f"/runs/{old}/events", params={"limit": 100}).json()["items"]
    assert len(live) == 12
    assert viewer.get(f"/runs/{old}/events/archived").status_code == 404  # not archived yet

    archive_now(live_api, old)

    assert viewer.get(f"/runs/{old}/events").json()["items"] == []
    page = viewer.get(f"/runs/{old}/events/archived").json()
    assert page["items"] == live and page["next_after_id"] == live[-1]["id"]
    assert page["archive"]["event_count"] == 12 and page["archive"]["status"] == "done"
    assert len(page["archive"]["events_sha256"]) == 64
    second = viewer.get(f"/runs/{old}/events/archived", params={"after_id": live[4]["id"], "limit": 3}).json()
    assert [e["id"] for e in second["items"]] == [e["id"] for e in live[5:8]]
    attempts = viewer.get(f"/runs/{old}/attempts/archived").json()["items"]
    assert sorted((x["task_key"], x["attempt"], x["outcome"]) for x in attempts) == [
        ("extract", 1, "succeeded"),
        ("load", 1, "succeeded"),
    ]
    assert viewer.get(f"/runs/{recent}/events/archived").status_code == 404
    # Org B's admin learns nothing of org A's archive.
    assert admin_b.get(f"/runs/{old}/events/archived").status_code == 404
    assert admin_b.get(f"/runs/{old}/attempts/archived").status_code == 404
