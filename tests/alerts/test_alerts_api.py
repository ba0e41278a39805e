"""The alerts API on a live server: its evaluator loop fires on a real failing run (NOTIFY), the bell
shows it, operators ack, rules are for admins, preferences are the user's own; problems name the field."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import psycopg

from tests.integration.factories import claim, finalize, make_executor, submit, task
from tests.live import LiveServer, Provisioner

API = "/api/v1"


def client(server: LiveServer, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.base_url + API, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def poll(fn: Any, deadline_s: float = 60.0) -> Any:
    end = time.monotonic() + deadline_s
    while True:
        value = fn()
        if value or time.monotonic() > end:
            return value
        time.sleep(0.1)


def test_rule_fires_on_a_failing_run_and_operators_ack(live_api: LiveServer, provision: Provisioner) -> None:
    tenant = provision.tenant(f"alerts-{uuid.uuid4().hex[:6]}")
    admin_id, admin_token = provision.user_token("admin", tenant)
    _, operator_token = provision.user_token("operator", tenant)
    _, viewer_token = provision.user_token("viewer", tenant)
    with psycopg.connect(provision.database_url, autocommit=True) as db:
        db.execute(
            "insert into ops.org_members (org_id, user_id, role) values (%s, %s, 'admin')", (tenant.org_id, admin_id)
        )
    admin, operator, viewer = (client(live_api, t) for t in (admin_token, operator_token, viewer_token))

    bad = admin.post("/alerts/rules", json={"org_id": str(tenant.org_id), "name": "x", "kind": "nope"})
    assert bad.status_code == 422 and bad.json()["field"] == "kind"
    refused = operator.post(
        "/alerts/rules", json={"org_id": str(tenant.org_id), "name": "op-rule", "kind": "run_failed"}
    )
    assert refused.status_code == 403, refused.text
    created = admin.post(
        "/alerts/rules",
        json={"org_id": str(tenant.org_id), "name": "api-run-failed", "kind": "run_failed", "severity": "critical"},
    )
    assert created.status_code == 201, created.text
    rule = created.json()
    assert rule["escalate_after_s"] == 900 and rule["baseline_runs"] == 20  # new fields have defaults

    pool = f"pool-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(provision.database_url, autocommit=True) as db:
        run_id = submit(db, tenant, [task("main", pool=pool, max_attempts=1)], name="api-failing")
        [claimed] = claim(db, make_executor(db, tenant, pool=pool))
        finalize(db, claimed["task_id"], claimed["lease_token"], "failed", error="exit 3")

    def fired() -> list[dict[str, Any]]:
        items = admin.get("/alerts/incidents", params={"state": "open"}).json()["items"]
        return [i for i in items if i["rule_id"] == rule["id"]]

    [incident] = poll(fired)
    assert incident["run_id"] == str(run_id) and incident["severity"] == "critical"
    bell = poll(lambda: admin.get("/notifications", params={"unread": True}).json())
    assert bell["unread"] >= 1 and any(n["incident_id"] == incident["id"] for n in bell["items"])

    assert viewer.post(f"/alerts/incidents/{incident['id']}/ack").status_code == 403
    acked = operator.post(f"/alerts/incidents/{incident['id']}/ack")
    assert acked.status_code == 200, acked.text
    detail = acked.json()
    assert detail["state"] == "acked" and [e["kind"] for e in detail["events"]] == ["fired", "acked"]
    snooze = operator.post(f"/alerts/incidents/{incident['id']}/snooze", json={"until": "yesterday"})
    assert snooze.status_code == 422 and snooze.json()["field"] == "until"
    assert operator.post(f"/alerts/incidents/{incident['id']}/resolve").json()["state"] == "resolved"
    assert operator.post(f"/alerts/incidents/{incident['id']}/ack").status_code == 409

    assert admin.post("/notifications/read", json={}).json()["marked"] >= 1
    assert admin.get("/notifications").json()["unread"] == 0

    rules = admin.get("/alerts/rules").json()["items"]
    mine = next(r for r in rules if r["id"] == rule["id"])
    assert mine["incidents"] == 1 and mine["last_fired_at"] is not None
    patched = admin.patch(f"/alerts/rules/{rule['id']}", json={"enabled": False})
    assert patched.status_code == 200 and patched.json()["enabled"] is False
    assert operator.delete(f"/alerts/rules/{rule['id']}").status_code == 404
    assert admin.delete(f"/alerts/rules/{rule['id']}").status_code == 204


def test_preferences_are_the_users_own(live_api: LiveServer, provision: Provisioner) -> None:
    tenant = provision.tenant(f"prefs-{uuid.uuid4().hex[:6]}")
    user_id, token = provision.user_token("operator", tenant)
    with psycopg.connect(provision.database_url, autocommit=True) as db:
        db.execute(
            "insert into ops.org_members (org_id, user_id, role) values (%s, %s, 'viewer')", (tenant.org_id, user_id)
        )
    me = client(live_api, token)
    params = {"org_id": str(tenant.org_id)}
    assert me.get("/notifications/preferences", params=params).json()["channels"] == ["email", "in_app"]
    bad = me.put("/notifications/preferences", params=params, json={"timezone": "Mars/Olympus"})
    assert bad.status_code == 422 and bad.json()["field"] == "timezone"
    put = me.put(
        "/notifications/preferences",
        params=params,
        json={
            "channels": ["in_app"],
            "min_severity": "warning",
            "quiet_start": "22:00",
            "quiet_end": "07:00",
            "timezone": "Europe/Paris",
            "muted_jobs": ["x/y"],
        },
    )
    assert put.status_code == 200, put.text
    got = me.get("/notifications/preferences", params=params).json()
    assert got["timezone"] == "Europe/Paris" and got["muted_jobs"] == ["x/y"] and got["quiet_start"] == "22:00:00"


def test_job_mutes_and_audited_rule_edits(live_api: LiveServer, provision: Provisioner) -> None:
    tenant = provision.tenant(f"mutes-{uuid.uuid4().hex[:6]}")
    admin_id, admin_token = provision.user_token("admin", tenant)
    viewer_id, viewer_token = provision.user_token("viewer", tenant)
    with psycopg.connect(provision.database_url, autocommit=True) as db:
        db.execute(
            "insert into ops.org_members (org_id, user_id, role) values (%s, %s, 'admin'), (%s, %s, 'viewer')",
            (tenant.org_id, admin_id, tenant.org_id, viewer_id),
        )
    admin, viewer = client(live_api, admin_token), client(live_api, viewer_token)
    org = str(tenant.org_id)

    muted = admin.post("/alerts/mutes", json={"org_id": org, "job": "proj/nightly", "until": "2099-01-01T00:00:00Z"})
    assert muted.status_code == 200, muted.text
    assert muted.json()["job"] == "proj/nightly" and muted.json()["muted_by"].startswith("admin")
    assert viewer.post("/alerts/mutes", json={"org_id": org, "job": "proj/other"}).status_code == 403
    assert [m["job"] for m in viewer.get("/alerts/mutes").json()["items"] if m["org_id"] == org] == ["proj/nightly"]
    bad = admin.post("/alerts/mutes", json={"org_id": org, "job": "proj/x", "until": "soon"})
    assert bad.status_code == 422 and bad.json()["field"] == "until"
    assert admin.delete("/alerts/mutes", params={"org_id": org, "job": "proj/nightly"}).status_code == 204
    assert [m for m in admin.get("/alerts/mutes").json()["items"] if m["org_id"] == org] == []

    created = admin.post(
        "/alerts/rules", json={"org_id": org, "name": "audited", "kind": "queue_wait", "threshold": 300}
    ).json()
    assert admin.patch(f"/alerts/rules/{created['id']}", json={"threshold": 600}).status_code == 200
    with psycopg.connect(provision.database_url, autocommit=True) as db:
        rows = db.execute(
            "select action, actor, detail -> 'changes' from ops.audit_log where entity = 'alert_rules' "
            "and entity_id = %s order by id",
            (created["id"],),
        ).fetchall()
    assert [r[0] for r in rows] == ["create", "update"] and {r[1] for r in rows} == {rows[0][1]}
    assert rows[0][1].startswith("admin") and {"field": "threshold", "old": 300, "new": 600} in rows[1][2]
