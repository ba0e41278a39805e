"""Loops woken by NOTIFY: the deliveries sender e-mails a firing at once, long before its interval (set to
ten minutes here) would have let it look again; an evaluator's copy of the rules is dropped when they change."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
import pytest

from control_room.config import get_settings
from control_room.loops.alerts import ALERTS_CHANNEL, RULES_CHANGED, AlertEvaluator
from control_room.loops.deliveries import run_delivery_sender
from tests.alerts.conftest import SmtpServer
from tests.alerts.test_alerts import BASE, add_rule, incidents, run, run_job, signal, with_conn
from tests.integration.factories import Tenant

DEADLINE_SECONDS = 60.0


async def _wait_for(check: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not check():
        assert time.monotonic() < deadline, f"{what} within {DEADLINE_SECONDS:.0f} s"
        await asyncio.sleep(0.05)


def test_the_sender_wakes_when_the_outbox_gets_rows(
    db: psycopg.Connection,
    database_url: str,
    tenant: Tenant,
    pool: str,
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp_server.port), "SMTP_STARTTLS": "false",
                        "ALERTS_DELIVERY_INTERVAL_SECONDS": "600"}.items():  # fmt: skip
        monkeypatch.setenv(f"LAKEHOUSE_{name}", value)
    get_settings.cache_clear()
    add_rule(db, tenant, "run_failed", notify=["wake@test.example"])

    def listening() -> bool:
        rows = db.execute(
            "select 1 from pg_stat_activity where datname = current_database() and query ilike %s",
            ('listen "lakehouse_deliveries"%',),
        ).fetchall()
        return bool(rows)

    async def scenario() -> None:
        sender = asyncio.create_task(run_delivery_sender(database_url))
        try:
            await _wait_for(listening, "the sender listens")
            await asyncio.sleep(0)  # let its first (empty) pass start its wait
            run_id, _ = await asyncio.to_thread(run_job, db, tenant, pool, name="wake", outcome="failed")
            await asyncio.to_thread(
                signal, database_url, AlertEvaluator(base_url=BASE), f"run:{run_id}", datetime.now(UTC)
            )
            await _wait_for(lambda: smtp_server.mailbox.to("wake@test.example"), "the e-mail arrives")
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    try:
        asyncio.run(scenario())
    finally:
        get_settings.cache_clear()
    [mail] = smtp_server.mailbox.to("wake@test.example")
    assert "FIRING" in mail["Subject"]


def test_an_evaluators_copy_of_the_rules_is_dropped_when_they_change(
    db: psycopg.Connection, database_url: str, tenant: Tenant, pool: str
) -> None:
    evaluator = AlertEvaluator(base_url=BASE, rules_ttl=3600)
    first, _ = run_job(db, tenant, pool, name="copy-a", outcome="failed")
    signal(database_url, evaluator, f"run:{first}", datetime.now(UTC))  # reads (and keeps) the rules
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute(f"listen {ALERTS_CHANNEL}")
        rule = add_rule(db, tenant, "run_failed")
        heard = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
    assert heard == [RULES_CHANGED]
    second, _ = run_job(db, tenant, pool, name="copy-b", outcome="failed")
    assert signal(database_url, evaluator, f"run:{second}", datetime.now(UTC)) == 0  # the copy predates the rule
    run(with_conn(database_url, lambda c: evaluator.on_signal(c, ALERTS_CHANNEL, RULES_CHANGED, datetime.now(UTC))))
    assert signal(database_url, evaluator, f"run:{second}", datetime.now(UTC)) == 1
    assert [i[0] for i in incidents(db, rule)] == ["open"]
