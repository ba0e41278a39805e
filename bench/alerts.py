"""Alerts: from a failing task's finalize to the SMTP server receiving the e-mail, with 100 rules and
1,000 failing tasks per minute (each its own job, so each opens its own incident); prints p50/p95/p99
and duplicates per incident. Two evaluator replicas and one sender run the real loops in-process
against an embedded Postgres and a real SMTP server (aiosmtpd). Prints figures, asserts nothing.

    .venv/bin/python bench/alerts.py            # ALERTS_BENCH_TASKS=1000 ALERTS_BENCH_SECONDS=60
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
import threading
import time
from collections import Counter
from email import message_from_bytes
from pathlib import Path
from typing import Any

from _harness import fmt, percentiles

TASKS = int(os.environ.get("ALERTS_BENCH_TASKS", "1000"))
SECONDS = float(os.environ.get("ALERTS_BENCH_SECONDS", "60"))
RULES = 100
JOB = re.compile(r"bench-job-(\d+)")


class Mailbox:
    def __init__(self) -> None:
        self.received: list[tuple[float, str, str]] = []  # (time, subject, body)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd hook)
        msg = message_from_bytes(envelope.content)
        self.received.append((time.time(), str(msg["Subject"]), str(msg.get_payload())))
        return "250 OK"


def seed(url: str) -> tuple[Any, str]:
    import psycopg

    from tests.integration.factories import make_executor, make_tenant

    with psycopg.connect(url, autocommit=True) as conn:
        tenant = make_tenant(conn, "bench")
        other = make_tenant(conn, "bench-other")
        # One rule matches the bench's failures; 99 others are evaluated and do not (other project/env).
        conn.execute(
            "insert into ops.alert_rules (org_id, name, kind, notify, escalate) "
            "values (%s, 'bench-run-failed', 'run_failed', '{oncall@bench.example}', false)",
            (tenant.org_id,),
        )
        for i in range(RULES - 1):
            conn.execute(
                "insert into ops.alert_rules (org_id, name, kind, project_id, match_environment, notify) "
                "values (%s, %s, %s, %s, 'prod', '{nobody@bench.example}')",
                (other.org_id, f"noise-{i}", ("run_failed", "task_failed")[i % 2], other.project_id),
            )
        make_executor(conn, tenant, pool="bench", max_concurrency=10_000)
    return tenant, "bench"


def produce(url: str, tenant: Any, pool: str, finalized: dict[int, float]) -> None:
    """Submit, claim and fail TASKS one-task runs, evenly over SECONDS."""
    import psycopg

    from tests.integration.factories import claim, finalize, submit, task

    with psycopg.connect(url, autocommit=True) as conn:
        executor = conn.execute("select id from ops.executors where pool = %s", (pool,)).fetchone()
        assert executor
        start = time.time()
        for n in range(TASKS):
            due = start + n * SECONDS / TASKS
            if due > time.time():
                time.sleep(due - time.time())
            submit(conn, tenant, [task("main", pool=pool, max_attempts=1)], name=f"bench-job-{n}")
            [claimed] = claim(conn, executor[0])
            finalize(conn, claimed["task_id"], claimed["lease_token"], "failed", error="bench failure")
            finalized[n] = time.time()


async def run_loops(url: str, stop: asyncio.Event) -> None:
    from control_room.loops.alerts import run_alert_evaluator
    from control_room.loops.deliveries import run_delivery_sender

    tasks = [
        asyncio.create_task(run_alert_evaluator(url)),
        asyncio.create_task(run_alert_evaluator(url)),  # a second replica: firing stays exactly-once
        asyncio.create_task(run_delivery_sender(url)),
    ]
    await stop.wait()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def main() -> None:
    from aiosmtpd.controller import Controller

    from control_room.config import get_settings
    from control_room.db.embedded import start_embedded
    from control_room.db.migrate import migrate
    from tests.alerts.conftest import free_port

    root = Path(tempfile.mkdtemp(prefix="lh-bench-alerts-"))
    pg = start_embedded(root / "pgdata")
    mailbox = Mailbox()
    port = free_port()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=port)
    smtp.start()
    os.environ.update(
        {
            "LAKEHOUSE_SMTP_HOST": "127.0.0.1",
            "LAKEHOUSE_SMTP_PORT": str(port),
            "LAKEHOUSE_SMTP_STARTTLS": "false",
            "LAKEHOUSE_ALERTS_DELIVERY_INTERVAL_SECONDS": "0.1",
        }
    )
    get_settings.cache_clear()
    try:
        url = pg.ensure_database("bench")
        migrate(url)
        tenant, pool = seed(url)
        finalized: dict[int, float] = {}

        async def scenario() -> None:
            stop = asyncio.Event()
            loops = asyncio.create_task(run_loops(url, stop))
            await asyncio.sleep(1.0)  # LISTEN in place
            producer = threading.Thread(target=produce, args=(url, tenant, pool, finalized))
            producer.start()
            await asyncio.to_thread(producer.join)
            deadline = time.time() + 60
            while (  # noqa: ASYNC110 (the mailbox is filled by the SMTP server's thread)
                time.time() < deadline
                and len({JOB.search(s).group(1) for _, s, _ in mailbox.received if JOB.search(s)}) < TASKS
            ):
                await asyncio.sleep(0.2)
            stop.set()
            await loops

        asyncio.run(scenario())
        first: dict[int, float] = {}
        per_incident: Counter[str] = Counter()
        for at, subject, body in mailbox.received:
            match = JOB.search(subject)
            if match:
                first.setdefault(int(match.group(1)), at)
            incident = re.search(r"incident=([0-9a-f-]{36})", body)
            if incident:
                per_incident[incident.group(1)] += 1
        latencies = [(first[n] - finalized[n]) * 1000 for n in first if n in finalized]
        print(f"alerts: {RULES} rules, {TASKS} failing tasks over {SECONDS:.0f} s, 2 evaluator replicas, 1 sender")
        print(f"  e-mails received: {len(mailbox.received)} for {len(first)}/{TASKS} incidents")
        if len(latencies) >= 2:
            print(f"  finalize -> SMTP received: {fmt(percentiles(latencies))}")
        print(f"  duplicate e-mails per incident: {sum(c - 1 for c in per_incident.values())}")
    finally:
        smtp.stop()
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
