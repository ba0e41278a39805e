"""Approvers hear of promotion requests through the alert channels on real Postgres and a real SMTP server
(aiosmtpd): e-mail when a request opens and when it is decided, following each person's preferences, the
gate's notify targets too; planned once however many loops plan at the same time (DESIGN decision 8)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import Message

import psycopg
import pytest

from control_room.config import Settings
from control_room.loops.deliveries import DeliverySender
from control_room.services import promotion_notices
from tests.alerts.conftest import Mailbox, SmtpServer, free_port
from tests.jobs.conftest import JobWorld, run_async
from tests.jobs.test_promotions import decide, evaluate, gate, request, succeed

BASE_URL = "https://control.test.example"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer(free_port(), Mailbox())
    server.start()
    yield server
    server.stop()


def plan(database_url: str, now: datetime, replicas: int = 1) -> int:
    """``replicas`` promotion loops planning at once, each on its own connection; messages queued in all."""

    async def one() -> int:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            return await promotion_notices.plan_due(conn, now=now, base_url=BASE_URL)

    async def all_of_them() -> list[int]:
        return list(await asyncio.gather(*(one() for _ in range(replicas))))

    return sum(asyncio.run(all_of_them()))


def send(database_url: str, server: SmtpServer, now: datetime) -> dict[str, int]:
    settings = Settings(smtp_host="127.0.0.1", smtp_port=server.port, smtp_starttls=False, smtp_from="lh@test")

    async def go(conn: psycopg.AsyncConnection) -> dict[str, int]:
        sender = DeliverySender(settings)
        try:
            return await sender.send_due(conn, now)
        finally:
            await sender.aclose()

    return run_async(database_url, go)


def subject(mail: Message) -> str:
    """The Subject header unfolded (long headers arrive folded over lines)."""
    return " ".join(str(mail["Subject"]).split())


def email(world: JobWorld, user: uuid.UUID) -> str:
    row = world.conn.execute("select email from ops.users where id = %s", (user,)).fetchone()
    assert row
    return str(row[0])


def test_approvers_are_told_once_when_a_request_opens_and_when_it_is_decided(
    world: JobWorld, jobs_db: str, smtp: SmtpServer
) -> None:
    approver, quiet_admin = world.user("admin"), world.user("admin")
    requester, viewer = world.user("operator"), world.user("viewer")
    world.conn.execute(
        "insert into ops.notification_preferences (org_id, user_id, channels) values (%s, %s, '{in_app}')",
        (world.tenant.org_id, quiet_admin),
    )  # this admin reads the bell only
    gate_id = gate(world, "staging", required_approvals=1, approvers=["role:admin"])
    world.conn.execute(
        "update ops.promotion_gates set notify = '{releases@test.example}' where id = %s", (gate_id,)
    )
    v2 = world.add_version()
    now = datetime.now(UTC)
    req = request(world, jobs_db, v2, "staging", user=requester)

    # Three loops plan at once: the opening is planned once (the approver and the gate's notify address).
    assert plan(jobs_db, now, replicas=3) == 2
    assert plan(jobs_db, now) == 0
    assert send(jobs_db, smtp, now) == {"sent": 2}
    assert send(jobs_db, smtp, now + timedelta(minutes=1)) == {}
    [asked] = smtp.mailbox.to(email(world, approver))
    job = f"{req['project']}/{req['job']}"
    assert subject(asked) == f"[PROMOTION] {job} v{v2} to staging: your approval is requested"
    body = asked.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert f"{email(world, requester)} asks to promote {job} v{v2} (dev -> staging, gate dev-to-staging)." in body
    assert "[ ] 1 successful run of v2 in dev (last 30 days): 0 of 1" in body
    assert f"Review: {BASE_URL}/promotions/{req['id']}" in body
    assert len(smtp.mailbox.to("releases@test.example")) == 1
    for nobody in (requester, viewer, quiet_admin):  # not the requester, not a viewer, not by e-mail
        assert smtp.mailbox.to(email(world, nobody)) == []

    # The approver approves once the checks pass: approvers, the requester and notify hear the outcome.
    succeed(world, jobs_db, "dev")
    evaluate(jobs_db)  # the checks pass now (approvals given before would expire with that change)
    assert decide(jobs_db, req["id"], "approve", approver) == "promoted"
    assert plan(jobs_db, now, replicas=2) == 3 + 3  # e-mail to three, and three bells
    send(jobs_db, smtp, now)
    [told] = smtp.mailbox.to(email(world, requester))
    assert subject(told) == f"[PROMOTION] {job} v{v2} to staging: promoted"
    assert len(smtp.mailbox.to(email(world, approver))) == 2
    assert smtp.mailbox.to(email(world, quiet_admin)) == []
    bell = world.conn.execute(
        "select user_id, title, link from ops.notifications where promotion_notice_id is not null order by title"
    ).fetchall()
    assert {row[0] for row in bell} == {approver, quiet_admin, requester}
    assert {row[2] for row in bell} == {f"/promotions/{req['id']}"}
    outbox = run_async(jobs_db, lambda c: promotion_notices.deliveries_of(c, request_id=req["id"]))
    assert [(d["event"], d["channel"], d["target"], d["state"]) for d in outbox] == sorted(
        [
            ("opened", "email", email(world, approver), "sent"),
            ("opened", "email", "releases@test.example", "sent"),
            ("promoted", "email", email(world, approver), "sent"),
            ("promoted", "email", email(world, requester), "sent"),
            ("promoted", "email", "releases@test.example", "sent"),
        ],
        key=lambda d: (d[0] != "opened", d[1], d[2]),
    )
    assert json.dumps(outbox[0]["payload"]).count("/promotions/") == 1


def test_events_from_before_the_notices_or_seen_only_after_the_decision_ask_nobody(
    world: JobWorld, jobs_db: str, smtp: SmtpServer
) -> None:
    gate(world, "staging", required_approvals=0)
    v2 = world.add_version()
    succeed(world, jobs_db, "dev")
    req = request(world, jobs_db, v2, "staging", user=world.user("operator"))
    assert req["status"] == "promoted"  # no approval needed: promoted as it opened
    assert plan(jobs_db, datetime.now(UTC)) >= 1  # the outcome is told (to the requester at least)
    planned = world.conn.execute(
        "select event, planned from ops.promotion_notices where request_id = %s order by id", (req["id"],)
    ).fetchall()
    assert planned == [("opened", False), ("promoted", True)]
