"""The daily digest: info messages of a user who chose it wait until 09:00 in their time zone and leave as
one e-mail, through a real SMTP server; the sender's clock is the test's."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import psycopg

from control_room.loops.alerts import AlertEvaluator
from tests.alerts.conftest import SmtpServer
from tests.alerts.test_alerts import BASE, add_rule, add_user, run_job, send, signal, smtp_settings
from tests.integration.factories import Tenant


def test_info_messages_wait_for_the_daily_digest_and_leave_as_one_email(
    db: psycopg.Connection, database_url: str, tenant: Tenant, smtp_server: SmtpServer
) -> None:
    user, email = add_user(db, tenant)
    prefs = {"channels": ["email"], "digest_info": True, "timezone": "Asia/Tokyo"}
    db.execute(
        "select ops.put_notification_preferences(%s, %s, %s, %s::jsonb)", (tenant.org_id, user, user, json.dumps(prefs))
    )
    rule = add_rule(db, tenant, "run_failed", severity="info", notify=[email])
    pool = f"pool-{uuid.uuid4().hex[:10]}"
    evaluator = AlertEvaluator(base_url=BASE)
    for name in ("digest-a", "digest-b", "digest-c"):
        run_id, _ = run_job(db, tenant, pool, name=name, outcome="failed")
        signal(database_url, evaluator, f"run:{run_id}", datetime.now(UTC))
    held = db.execute(
        "select distinct d.next_attempt_at, d.held_reason from ops.alert_deliveries d "
        "join ops.alert_incidents i on i.id = d.incident_id where i.rule_id = %s and d.target = %s",
        (rule, email),
    ).fetchall()
    assert len(held) == 1 and held[0][1] == "daily digest"
    due = held[0][0]
    assert due.astimezone(UTC).hour == 0 and due.minute == 0  # 09:00 in Tokyo
    assert timedelta(0) < due - datetime.now(UTC) <= timedelta(days=1)

    send(database_url, smtp_settings(smtp_server), due - timedelta(minutes=1))
    assert smtp_server.mailbox.to(email) == []
    assert send(database_url, smtp_settings(smtp_server), due + timedelta(seconds=1)) == {"sent": 3}
    [digest] = smtp_server.mailbox.to(email)
    assert digest["Subject"] == "[INFO] Daily digest: 3 notification(s)"
    body = digest.get_payload(decode=True).decode()
    assert all(f"/digest-{x}" in body for x in "abc") and body.count("[INFO] FIRING") == 3
    assert send(database_url, smtp_settings(smtp_server), due + timedelta(minutes=5)) == {}  # nothing twice
