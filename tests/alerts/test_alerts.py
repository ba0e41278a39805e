"""Alerts on a real Postgres: rules fire on real runs and resolve, exactly once under two evaluators,
escalate, respect quiet hours, and deliver through a real SMTP server and a real webhook receiver."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from control_room.config import Settings
from control_room.loops.alerts import ALERTS_CHANNEL, AlertEvaluator
from control_room.loops.deliveries import SIGNATURE_HEADER, TIMESTAMP_HEADER, DeliverySender, verify
from control_room.services import notifications
from tests.alerts.conftest import SmtpServer, free_port
from tests.integration.factories import Tenant, claim, finalize, make_executor, submit, task

T = TypeVar("T")
BASE = "http://control-room.test"


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def with_conn(url: str, fn: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await fn(conn)


def signal(url: str, evaluator: AlertEvaluator, payload: str, now: datetime) -> int:
    return run(with_conn(url, lambda c: evaluator.on_signal(c, ALERTS_CHANNEL, payload, now)))


def evaluate(url: str, evaluator: AlertEvaluator, now: datetime) -> int:
    return run(with_conn(url, lambda c: evaluator.evaluate(c, now)))


def send(url: str, settings: Settings, now: datetime) -> dict[str, int]:
    async def go(conn: psycopg.AsyncConnection) -> dict[str, int]:
        sender = DeliverySender(settings)
        try:
            return await sender.send_due(conn, now)
        finally:
            await sender.aclose()

    return run(with_conn(url, go))


def smtp_settings(server: SmtpServer) -> Settings:
    return Settings(smtp_host="127.0.0.1", smtp_port=server.port, smtp_starttls=False, smtp_from="lh@test")


def add_user(db: psycopg.Connection, tenant: Tenant, role: str = "operator") -> tuple[uuid.UUID, str]:
    email = f"u-{uuid.uuid4().hex[:8]}@test.example"
    row = db.execute("insert into ops.users (email) values (%s) returning id", (email,)).fetchone()
    assert row
    db.execute("insert into ops.org_members (org_id, user_id, role) values (%s, %s, %s)", (tenant.org_id, row[0], role))
    return row[0], email


def add_rule(db: psycopg.Connection, tenant: Tenant, kind: str, **cols: Any) -> uuid.UUID:
    cols = {"org_id": tenant.org_id, "name": f"r-{uuid.uuid4().hex[:8]}", "kind": kind, **cols}
    names = ", ".join(cols)
    marks = ", ".join(["%s"] * len(cols))
    row = db.execute(
        f"insert into ops.alert_rules ({names}) values ({marks}) returning id", list(cols.values())
    ).fetchone()
    assert row
    return row[0]


def run_job(
    db: psycopg.Connection, tenant: Tenant, pool: str, *, name: str, outcome: str
) -> tuple[uuid.UUID, uuid.UUID]:
    """A one-task run of job ``name`` claimed and finalized with ``outcome``; returns (run id, task id)."""
    run_id = submit(db, tenant, [task("main", pool=pool, max_attempts=1)], name=name)
    executor = make_executor(db, tenant, pool=pool)
    [claimed] = claim(db, executor)
    finalize(db, claimed["task_id"], claimed["lease_token"], outcome, error="boom" if outcome == "failed" else None)
    return run_id, claimed["task_id"]


def incidents(db: psycopg.Connection, rule: uuid.UUID) -> list[tuple[Any, ...]]:
    return db.execute(
        "select state, count, subject from ops.alert_incidents where rule_id = %s order by created_at", (rule,)
    ).fetchall()


def test_run_failed_fires_once_under_two_evaluators_emails_and_resolves_on_success(
    db: psycopg.Connection, database_url: str, tenant: Tenant, pool: str, smtp_server: SmtpServer
) -> None:
    user, email = add_user(db, tenant)
    rule = add_rule(db, tenant, "run_failed", severity="critical", notify=["oncall@test.example"])
    run_id, _ = run_job(db, tenant, pool, name="nightly", outcome="failed")
    now = datetime.now(UTC)

    replicas = [AlertEvaluator(base_url=BASE), AlertEvaluator(base_url=BASE)]
    results: list[int] = []

    def replica(ev: AlertEvaluator) -> None:
        results.append(signal(database_url, ev, f"run:{run_id}", now))

    threads = [threading.Thread(target=replica, args=(ev,)) for ev in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0, 1]  # one replica won the firing
    assert incidents(db, rule) == [("open", 1, f"job:{tenant_slug(db, tenant)}/nightly")]

    # Replaying the same signal does nothing; a second failure counts on the open incident.
    assert signal(database_url, replicas[0], f"run:{run_id}", now) == 0
    run2, _ = run_job(db, tenant, pool, name="nightly", outcome="failed")
    assert signal(database_url, replicas[1], f"run:{run2}", now) == 1
    assert incidents(db, rule)[0][:2] == ("open", 2)

    outcomes = send(database_url, smtp_settings(smtp_server), now)
    assert outcomes == {"sent": 1}  # the re-fire is grouped: no second e-mail
    [mail] = smtp_server.mailbox.to("oncall@test.example")
    assert "FIRING" in mail["Subject"] and "nightly" in mail["Subject"]
    assert f"{BASE}/runs/" in mail.get_payload()
    bell = run(with_conn(database_url, lambda c: notifications.list_notifications(c, user_id=user)))
    assert len(bell) == 1 and bell[0].severity == "critical"

    ok, _ = run_job(db, tenant, pool, name="nightly", outcome="succeeded")
    signal(database_url, replicas[0], f"run:{ok}", now + timedelta(minutes=1))
    assert incidents(db, rule)[0][0] == "resolved"
    send(database_url, smtp_settings(smtp_server), now + timedelta(minutes=1))
    assert any("RESOLVED" in m["Subject"] for m in smtp_server.mailbox.to("oncall@test.example"))
    assert email  # the member got in-app only (not a rule target)


def tenant_slug(db: psycopg.Connection, tenant: Tenant) -> str:
    row = db.execute("select slug from ops.projects where id = %s", (tenant.project_id,)).fetchone()
    assert row
    return str(row[0])


def test_terminal_transitions_notify_the_alerts_channel(
    db: psycopg.Connection, database_url: str, tenant: Tenant, pool: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute(f"listen {ALERTS_CHANNEL}")
        run_id, task_id = run_job(db, tenant, pool, name="notify", outcome="failed")
        payloads = {n.payload for n in listener.notifies(timeout=5, stop_after=2)}
    assert payloads == {f"task:{task_id}", f"run:{run_id}"}


def test_a_batch_notifies_failed_tasks_and_the_run_but_not_succeeded_tasks(
    db: psycopg.Connection, database_url: str, tenant: Tenant, pool: str
) -> None:
    # The evaluator acts on task failures only, so a succeeded task sends nothing; the run still does.
    run_id = submit(db, tenant, [task("ok", pool=pool), task("bad", pool=pool, max_attempts=1)], name="batch")
    claimed = {c["task_key"]: c for c in claim(db, make_executor(db, tenant, pool=pool), max_tasks=2)}
    items = [
        {
            "task_id": str(claimed["ok"]["task_id"]),
            "lease_token": str(claimed["ok"]["lease_token"]),
            "outcome": "succeeded",
        },
        {
            "task_id": str(claimed["bad"]["task_id"]),
            "lease_token": str(claimed["bad"]["lease_token"]),
            "outcome": "failed",
        },
    ]
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute(f"listen {ALERTS_CHANNEL}")
        db.execute("select * from ops.finalize_tasks(%s::jsonb)", (json.dumps(items),)).fetchall()
        # Delivered in the order sent: a succeeded task's signal would come before the run's.
        payloads = [n.payload for n in listener.notifies(timeout=5, stop_after=2)]
    assert payloads == [f"task:{claimed['bad']['task_id']}", f"run:{run_id}"]


def test_task_failed_and_event_match_fire_on_real_runs(
    db: psycopg.Connection, database_url: str, tenant: Tenant, pool: str
) -> None:
    task_rule = add_rule(db, tenant, "task_failed")
    event_rule = add_rule(
        db,
        tenant,
        "event_match",
        event_type="quality.check",
        event_level="warning",
        event_attributes=json.dumps({"check": "nulls"}),
    )
    run_id = submit(db, tenant, [task("load", pool=pool, max_attempts=1)], name="ev")
    executor = make_executor(db, tenant, pool=pool)
    [claimed] = claim(db, executor)
    events = [
        {"seq": 1, "type": "quality.check", "level": "info", "data": {"check": "nulls"}},
        {"seq": 2, "type": "quality.check", "level": "error", "data": {"check": "dupes"}},
        {"seq": 3, "type": "quality.check", "level": "error", "message": "12 nulls", "data": {"check": "nulls"}},
    ]
    db.execute(
        "select ops.append_events(%s, %s, %s::jsonb)", (claimed["task_id"], claimed["lease_token"], json.dumps(events))
    )
    ev = AlertEvaluator(base_url=BASE)
    now = datetime.now(UTC)
    assert run(with_conn(database_url, lambda c: ev.on_signal(c, "lakehouse_events", str(run_id), now))) == 1
    assert incidents(db, event_rule) == [("open", 1, f"run:{run_id}")]
    finalize(db, claimed["task_id"], claimed["lease_token"], "failed", error="exit 1")
    assert signal(database_url, ev, f"task:{claimed['task_id']}", now) == 1
    assert incidents(db, task_rule)[0][0] == "open"
    signal(database_url, ev, f"run:{run_id}", now)
    assert incidents(db, event_rule)[0][0] == "resolved"  # the run ended


def test_run_duration_over_k_times_p95(db: psycopg.Connection, database_url: str, tenant: Tenant, pool: str) -> None:
    rule = add_rule(db, tenant, "run_duration", factor=3.0, baseline_runs=5)
    ev = AlertEvaluator(base_url=BASE)
    for _ in range(3):
        quick, _ = run_job(db, tenant, pool, name="timed", outcome="succeeded")
    slow, _ = run_job(db, tenant, pool, name="timed", outcome="succeeded")
    db.execute("alter table ops.runs disable trigger runs_immutable")
    try:
        db.execute("update ops.runs set started_at = finished_at - interval '1 hour' where id = %s", (slow,))
    finally:
        db.execute("alter table ops.runs enable trigger runs_immutable")
    assert signal(database_url, ev, f"run:{quick}", datetime.now(UTC)) == 0
    assert signal(database_url, ev, f"run:{slow}", datetime.now(UTC)) == 1
    assert incidents(db, rule)[0][0] == "open"


def test_sla_fires_after_the_time_of_day_and_resolves_the_next_day(
    db: psycopg.Connection, database_url: str, tenant: Tenant
) -> None:
    template = db.execute(
        "insert into ops.job_templates (org_id, project_id, name) values (%s, %s, 'daily-load') returning id",
        (tenant.org_id, tenant.project_id),
    ).fetchone()
    assert template
    rule = add_rule(db, tenant, "sla", project_id=tenant.project_id, sla_time="06:00", sla_timezone="Europe/Paris")
    ev = AlertEvaluator(base_url=BASE)
    before = datetime(2026, 12, 3, 4, 59, tzinfo=UTC)  # 05:59 in Paris
    assert evaluate(database_url, ev, before) == 0
    after = datetime(2026, 12, 3, 5, 1, tzinfo=UTC)
    assert evaluate(database_url, ev, after) == 1
    assert evaluate(database_url, ev, after + timedelta(minutes=5)) == 0  # same window: no second firing
    assert incidents(db, rule)[0][:2] == ("open", 1)
    evaluate(database_url, ev, datetime(2026, 12, 4, 0, 30, tzinfo=UTC))  # a new local day, before the SLA time
    assert incidents(db, rule)[0][0] == "resolved"


def test_executor_offline_and_queue_wait(db: psycopg.Connection, database_url: str, tenant: Tenant, pool: str) -> None:
    # The module shares one database: other tests' time-dependent rules (an SLA due at a real time of day)
    # would fire here too, so only this test's rules count.
    db.execute("update ops.alert_rules set enabled = false where org_id <> %s", (tenant.org_id,))
    offline = add_rule(db, tenant, "executor_offline", threshold=90, match_pool=pool)
    waiting = add_rule(db, tenant, "queue_wait", threshold=60, match_pool=pool)
    executor = make_executor(db, tenant, pool=pool)
    db.execute("update ops.executors set last_heartbeat_at = now() where id = %s", (executor,))
    submit(db, tenant, [task("stuck", pool=pool, engine="spark")], name="stuck")
    ev = AlertEvaluator(base_url=BASE)
    now = datetime.now(UTC)
    assert evaluate(database_url, ev, now) == 0
    later = now + timedelta(minutes=5)
    fired = evaluate(database_url, ev, later)
    assert fired == 3  # the executor, its pool, the waiting task
    subjects = {s for _, _, s in incidents(db, offline)}
    assert subjects == {
        f"pool:{pool}",
        next(
            f"executor:{n}"
            for (n,) in db.execute("select name from ops.executors where id = %s", (executor,)).fetchall()
        ),
    }
    [(state, _, _)] = incidents(db, waiting)
    assert state == "open"
    summary = db.execute("select summary from ops.alert_incidents where rule_id = %s", (waiting,)).fetchone()
    assert summary and "stuck" in summary[0]
    db.execute("update ops.executors set last_heartbeat_at = %s, status = 'online' where id = %s", (later, executor))
    evaluate(database_url, ev, later + timedelta(seconds=10))
    assert {s for s, _, _ in incidents(db, offline)} == {"resolved"}


def test_escalation_after_the_delay_follows_the_routing_chain(
    db: psycopg.Connection, database_url: str, tenant: Tenant, pool: str, smtp_server: SmtpServer
) -> None:
    db.execute(
        "insert into ops.routing_rules (org_id, name, position, match_project_id, pool, owner, escalation, "
        "allow_pool_override) values (%s, 'owned', 10, %s, 'default', 'owner@test.example', "
        '\'["second@test.example", "third@test.example"]\', true)',
        (tenant.org_id, tenant.project_id),
    )
    rule = add_rule(db, tenant, "run_failed", escalate_after_s=600)
    run_id, _ = run_job(db, tenant, pool, name="esc", outcome="failed")
    ev = AlertEvaluator(base_url=BASE)
    t0 = datetime.now(UTC)
    assert signal(database_url, ev, f"run:{run_id}", t0) == 1
    evaluate(database_url, ev, t0 + timedelta(minutes=5))
    send(database_url, smtp_settings(smtp_server), t0 + timedelta(minutes=5))
    assert smtp_server.mailbox.to("owner@test.example") and not smtp_server.mailbox.to("second@test.example")
    evaluate(database_url, ev, t0 + timedelta(minutes=11))
    send(database_url, smtp_settings(smtp_server), t0 + timedelta(minutes=11))
    [mail] = smtp_server.mailbox.to("second@test.example")
    assert "ESCALATED" in mail["Subject"]
    # Acknowledged: no further escalation.
    [(incident,)] = db.execute("select id from ops.alert_incidents where rule_id = %s", (rule,)).fetchall()
    db.execute("select * from ops.act_on_incident(%s, 'ack', null, 'tester')", (incident,))
    evaluate(database_url, ev, t0 + timedelta(minutes=30))
    kinds = [
        k
        for (k,) in db.execute(
            "select kind from ops.alert_incident_events where incident_id = %s order by id", (incident,)
        )
    ]
    assert kinds == ["fired", "escalated", "acked"]


def test_quiet_hours_hold_a_warning_and_let_a_critical_through(
    db: psycopg.Connection, database_url: str, tenant: Tenant, pool: str
) -> None:
    user, email = add_user(db, tenant)
    prefs = {
        "channels": ["email"],
        "quiet_start": "22:00",
        "quiet_end": "07:00",
        "timezone": "UTC",
        "critical_overrides_quiet": True,
    }
    db.execute(
        "select ops.put_notification_preferences(%s, %s, %s, %s::jsonb)", (tenant.org_id, user, user, json.dumps(prefs))
    )
    warn = add_rule(db, tenant, "run_failed", severity="warning", notify=[email])
    crit = add_rule(db, tenant, "task_failed", severity="critical", notify=[email])
    night = datetime(2026, 12, 3, 23, 30, tzinfo=UTC)
    run_id, task_id = run_job(db, tenant, pool, name="quiet", outcome="failed")
    # An incident is dated by when its run ended: make that inside the quiet hours, whatever the real time.
    db.execute("update ops.runs set finished_at = %s where id = %s", (night, run_id))
    db.execute("update ops.tasks set finished_at = %s where id = %s", (night, task_id))
    ev = AlertEvaluator(base_url=BASE)
    signal(database_url, ev, f"run:{run_id}", night)
    signal(database_url, ev, f"task:{task_id}", night)
    rows = dict(
        db.execute(
            "select r.severity, d.next_attempt_at from ops.alert_deliveries d "
            "join ops.alert_incidents i on i.id = d.incident_id "
            "join ops.alert_rules r on r.id = i.rule_id where r.id in (%s, %s)",
            (warn, crit),
        ).fetchall()
    )
    assert rows["warning"] == datetime(2026, 12, 4, 7, 0, tzinfo=UTC)  # held until quiet hours end
    assert rows["critical"] <= datetime.now(UTC)  # sent right away


def test_admins_cannot_change_another_users_preferences(db: psycopg.Connection, tenant: Tenant) -> None:
    user, _ = add_user(db, tenant)
    admin, _ = add_user(db, tenant, role="admin")
    with pytest.raises(psycopg.Error, match="changed by their user only"):
        db.execute(
            "select ops.put_notification_preferences(%s, %s, %s, %s::jsonb)",
            (tenant.org_id, user, admin, json.dumps({"min_severity": "critical"})),
        )


def test_smtp_down_is_retried_and_delivered_when_back(
    db: psycopg.Connection, database_url: str, tenant: Tenant, pool: str, smtp_server: SmtpServer
) -> None:
    add_rule(db, tenant, "run_failed", notify=["ops@test.example"])
    run_id, _ = run_job(db, tenant, pool, name="smtp-down", outcome="failed")
    ev = AlertEvaluator(base_url=BASE)
    now = datetime.now(UTC)
    signal(database_url, ev, f"run:{run_id}", now)
    smtp_server.stop()
    assert send(database_url, smtp_settings(smtp_server), now) == {"pending": 1}
    [(attempts, error, due)] = db.execute(
        "select attempts, last_error, next_attempt_at from ops.alert_deliveries where target = 'ops@test.example' "
        "and incident_id in (select id from ops.alert_incidents where run_id = %s)",
        (run_id,),
    ).fetchall()
    assert attempts == 1 and "SMTP" in error and due > now
    assert send(database_url, smtp_settings(smtp_server), now) == {}  # not due yet: backoff
    smtp_server.start()
    assert send(database_url, smtp_settings(smtp_server), due + timedelta(seconds=1)) == {"sent": 1}
    assert len(smtp_server.mailbox.to("ops@test.example")) == 1


def test_deliveries_go_dead_after_the_last_attempt(
    db: psycopg.Connection, database_url: str, tenant: Tenant, pool: str
) -> None:
    add_rule(db, tenant, "run_failed", notify=["webhook:nowhere"])
    run_id, _ = run_job(db, tenant, pool, name="dead", outcome="failed")
    signal(database_url, AlertEvaluator(base_url=BASE), f"run:{run_id}", datetime.now(UTC))
    db.execute(
        "update ops.alert_deliveries set max_attempts = 2 where incident_id in "
        "(select id from ops.alert_incidents where run_id = %s)",
        (run_id,),
    )
    at = datetime.now(UTC)
    states = [send(database_url, Settings(), at + timedelta(hours=i)) for i in range(3)]
    assert states[:2] == [{"pending": 1}, {"dead": 1}] and states[2] == {}
    [(error,)] = db.execute(
        "select last_error from ops.alert_deliveries where incident_id in "
        "(select id from ops.alert_incidents where run_id = %s)",
        (run_id,),
    ).fetchall()
    assert "no alert channel named 'nowhere'" in error


class Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.received = []
    server = HTTPServer(("127.0.0.1", free_port()), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()


def test_signed_webhook_verifies_with_the_documented_recipe(
    db: psycopg.Connection, database_url: str, tenant: Tenant, pool: str, receiver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LH_TEST_HOOK_URL", receiver)
    monkeypatch.setenv("LH_TEST_HOOK_SECRET", "s3cret-for-test")
    db.execute(
        "insert into ops.alert_channels (org_id, name, kind, url_env, secret_env) "
        "values (%s, 'ops-hook', 'webhook', 'LH_TEST_HOOK_URL', 'LH_TEST_HOOK_SECRET')",
        (tenant.org_id,),
    )
    add_rule(db, tenant, "run_failed", notify=["webhook:ops-hook"])
    run_id, _ = run_job(db, tenant, pool, name="hooked", outcome="failed")
    signal(database_url, AlertEvaluator(base_url=BASE), f"run:{run_id}", datetime.now(UTC))
    assert send(database_url, Settings(), datetime.now(UTC)) == {"sent": 1}
    [(headers, body)] = Receiver.received
    assert verify("s3cret-for-test", headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER], now=time.time())
    assert not verify("wrong", headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER], now=time.time())
    assert json.loads(body)["type"] == "incident.fired"
    # The receiver's recipe exactly as the README documents it.
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    recipe = readme.split("Verifying a webhook", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(recipe, namespace)  # our own README code
    assert namespace["verify"]("s3cret-for-test", headers, body) is True
    assert namespace["verify"]("s3cret-for-test", headers, body + b" ") is False


def test_the_alerts_commands(
    db: psycopg.Connection, database_url: str, tenant: Tenant, pool: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from control_room.cli import app
    from control_room.config import get_settings

    rule = add_rule(db, tenant, "run_failed", name=f"cli-{uuid.uuid4().hex[:6]}")
    run_id, _ = run_job(db, tenant, pool, name="cli-job", outcome="failed")
    signal(database_url, AlertEvaluator(base_url=BASE), f"run:{run_id}", datetime.now(UTC))
    [(incident,)] = db.execute("select id from ops.alert_incidents where rule_id = %s", (rule,)).fetchall()
    monkeypatch.setenv("LAKEHOUSE_DATABASE_URL", database_url)
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        listed = runner.invoke(app, ["alerts", "incidents", "--state", "open"])
        assert listed.exit_code == 0 and str(incident) in listed.output
        rules = runner.invoke(app, ["alerts", "rules", "--json"])
        assert rules.exit_code == 0 and any(r["id"] == str(rule) for r in json.loads(rules.output))
        snoozed = runner.invoke(app, ["alerts", "snooze", str(incident), "--until", "2h"])
        assert snoozed.exit_code == 0 and "until" in snoozed.output
        bad = runner.invoke(app, ["alerts", "snooze", str(incident), "--until", "soon"])
        assert bad.exit_code == 2 and "30m, 2h, 1d" in bad.output
        assert "acked" in runner.invoke(app, ["alerts", "ack", str(incident)]).output
        assert "resolved" in runner.invoke(app, ["alerts", "resolve", str(incident)]).output
        again = runner.invoke(app, ["alerts", "ack", str(incident)])
        assert again.exit_code == 1 and "already resolved" in again.output
        missing = runner.invoke(app, ["alerts", "ack", str(uuid.uuid4())])
        assert missing.exit_code == 1 and "does not exist" in missing.output
        org = str(tenant.org_id)
        assert (
            "muted until" in runner.invoke(app, ["alerts", "mute", "p/cli-job", "--org", org, "--until", "1d"]).output
        )
        listed_mutes = json.loads(runner.invoke(app, ["alerts", "mutes", "--json"]).output)
        assert [m["job"] for m in listed_mutes if m["org_id"] == org] == ["p/cli-job"]
        assert "unmuted" in runner.invoke(app, ["alerts", "unmute", "p/cli-job", "--org", org]).output
        unknown = runner.invoke(app, ["alerts", "mute", "p/x", "--org", "no-such-org"])
        assert unknown.exit_code == 1 and 'no org "no-such-org"' in unknown.output
    finally:
        get_settings.cache_clear()
    kinds = [
        k
        for (k,) in db.execute(
            "select kind from ops.alert_incident_events where incident_id = %s order by id", (incident,)
        )
    ]
    assert kinds == ["fired", "snoozed", "acked", "resolved"]


def test_cap_usage_and_refusals(db: psycopg.Connection, database_url: str, tenant: Tenant) -> None:
    rule = add_rule(db, tenant, "cap_breach", cap_percent=80)
    cap = db.execute(
        "insert into ops.caps (org_id, name, scope, kind, limit_value) values (%s, %s, 'org', 'runs_per_day', 10) "
        "returning id",
        (tenant.org_id, f"cap-{uuid.uuid4().hex[:6]}"),
    ).fetchone()
    assert cap
    now = datetime.now(UTC)
    ev = AlertEvaluator(base_url=BASE)
    db.execute("insert into ops.cap_usage (cap_id, day, runs) values (%s, %s, 5)", (cap[0], now.date()))
    assert evaluate(database_url, ev, now) == 0
    db.execute("update ops.cap_usage set runs = 9 where cap_id = %s", (cap[0],))
    assert evaluate(database_url, ev, now) == 1  # 90 % of the limit
    db.execute("update ops.cap_usage set runs = 10, breaches = 1 where cap_id = %s", (cap[0],))
    assert evaluate(database_url, ev, now) == 1  # a refusal: counted on the same incident
    assert [(s, c) for s, c, _ in incidents(db, rule)] == [("open", 2)]
    evaluate(database_url, ev, now + timedelta(days=1))  # a new day: no usage, cleared
    assert incidents(db, rule)[0][0] == "resolved"


def test_schedule_missed_and_dataset_freshness(
    db: psycopg.Connection, database_url: str, tenant: Tenant, pool: str
) -> None:
    template = db.execute(
        "insert into ops.job_templates (org_id, project_id, name) values (%s, %s, 'probe') returning id",
        (tenant.org_id, tenant.project_id),
    ).fetchone()
    assert template
    schedule = db.execute(
        "insert into ops.schedules (org_id, project_id, name, template_id, environment_id, cron) "
        "values (%s, %s, 'probe-hourly', %s, %s, '0 * * * *') returning id",
        (tenant.org_id, tenant.project_id, template[0], tenant.environments["dev"]),
    ).fetchone()
    assert schedule
    missed_rule = add_rule(db, tenant, "schedule_missed")
    db.execute(
        "insert into ops.schedule_fires (schedule_id, org_id, project_id, fire_time, due_at, status, reason) "
        "values (%s, %s, %s, now() - interval '1 hour', now() - interval '1 hour', 'missed', 'control room down')",
        (schedule[0], tenant.org_id, tenant.project_id),
    )
    ev = AlertEvaluator(base_url=BASE)
    now = datetime.now(UTC)
    assert evaluate(database_url, ev, now) >= 1
    [(state, count, subject)] = incidents(db, missed_rule)
    assert state == "open" and subject == f"schedule:{schedule[0]}" and count == 1

    run_id, task_id = run_job(db, tenant, pool, name="writer", outcome="succeeded")
    name = f"sales_{uuid.uuid4().hex[:6]}"
    db.execute(
        "insert into ops.datasets (project_id, namespace, name, kind, first_run_id, last_run_id, last_task_id) "
        "values (%s, 'duckdb:///w', %s, 'table', %s, %s, %s)",
        (tenant.project_id, name, run_id, run_id, task_id),
    )
    fresh = add_rule(db, tenant, "dataset_freshness", dataset_name=name, threshold=3600)
    # Rules of earlier tests (an SLA time of day) may fire in the same passes: count this rule's incidents.
    evaluate(database_url, ev, now + timedelta(minutes=30))
    assert incidents(db, fresh) == []
    evaluate(database_url, ev, now + timedelta(hours=2))
    assert [i[:2] for i in incidents(db, fresh)] == [("open", 1)]
    later, later_task = run_job(db, tenant, pool, name="writer", outcome="succeeded")
    db.execute("update ops.datasets set last_run_id = %s, last_task_id = %s where name = %s", (later, later_task, name))
    db.execute("alter table ops.runs disable trigger runs_immutable")
    try:
        db.execute("update ops.runs set finished_at = %s where id = %s", (now + timedelta(hours=2), later))
    finally:
        db.execute("alter table ops.runs enable trigger runs_immutable")
    evaluate(database_url, ev, now + timedelta(hours=2, minutes=1))
    assert incidents(db, fresh)[0][0] == "resolved"
