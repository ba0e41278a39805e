"""Fixtures of the alert tests: a real SMTP server (aiosmtpd) on a free port, async connections."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller

from control_room.db.migrate import migrate
from tests.conftest import PostgresServer
from tests.integration.factories import Tenant, make_tenant


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Mailbox:
    """What the SMTP server received."""

    messages: list[Message] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        return [m for m in self.messages if m["To"] == address]


@dataclass
class SmtpServer:
    port: int
    mailbox: Mailbox
    controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer(free_port(), Mailbox())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def alerts_database_url(pg_server: PostgresServer) -> str:
    """A migrated database of the alert tests' own: the sender drains every org's outbox."""
    url = pg_server.create_database("lh_alerts")
    migrate(url)
    return url


@pytest.fixture
def database_url(alerts_database_url: str) -> str:
    """The alert database, with no deliveries left pending by an earlier test."""
    with psycopg.connect(alerts_database_url, autocommit=True) as conn:
        conn.execute(
            "update ops.alert_deliveries set state = 'dead', last_error = 'test cleanup' where state = 'pending'"
        )
    return alerts_database_url


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def tenant(db: psycopg.Connection) -> Tenant:
    """A fresh org with one project (and its environments) for one test."""
    return make_tenant(db)


@pytest.fixture
def pool() -> str:
    """A pool of the test's own, so no other test's executor claims its tasks."""
    return f"pool-{uuid.uuid4().hex[:10]}"
