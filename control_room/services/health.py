"""Control-plane health: is the database reachable, and which schema version does it run."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Literal

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import PoolTimeout

from control_room.db.connection import DatabaseNotConfigured, database_url, get_pool
from control_room.db.migrate import latest_applied_async

HEALTH_TIMEOUT_SECONDS = 2.0
# Share of the budget spent waiting for a pooled connection; the rest goes to finding out why none came.
_POOL_WAIT_SHARE = 0.6
_URL_PASSWORD = re.compile(r"(?P<prefix>://[^:/@\s]*:)[^@\s]*@")

DatabaseState = Literal["ok", "unreachable", "unmigrated"]


@dataclass(frozen=True)
class DatabaseHealth:
    """Outcome of one health check; ``detail`` is safe to show (never contains a password)."""

    database: DatabaseState
    schema_version: str | None = None
    detail: str | None = None

    @property
    def ok(self) -> bool:
        """True when the database answered and has the control-plane schema."""
        return self.database == "ok"


async def check_database(*, timeout_seconds: float = HEALTH_TIMEOUT_SECONDS) -> DatabaseHealth:
    """Ask the pooled database for its newest applied migration, giving up after ``timeout_seconds``."""
    try:
        url = database_url()
    except DatabaseNotConfigured as exc:
        return DatabaseHealth("unreachable", detail=str(exc))

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    pool_wait = timeout_seconds * _POOL_WAIT_SHARE
    try:
        async with asyncio.timeout(pool_wait):
            pool = await get_pool()
            async with pool.connection(timeout=pool_wait) as conn:
                version = await latest_applied_async(conn)
    except psycopg.errors.UndefinedTable:
        return _unmigrated()
    except (PoolTimeout, TimeoutError):
        # The pool only says "no connection in time"; one direct attempt tells the operator why.
        budget = max(deadline - loop.time(), 0.2)
        reason = await _connect_failure_reason(url, budget=budget, waited=timeout_seconds)
        return DatabaseHealth("unreachable", detail=_redact(reason, url))
    except psycopg.Error as exc:
        return DatabaseHealth("unreachable", detail=_redact(_first_line(exc), url))
    if version is None:
        return _unmigrated()
    return DatabaseHealth("ok", schema_version=version)


def _unmigrated() -> DatabaseHealth:
    return DatabaseHealth(
        "unmigrated",
        detail="the database has no applied migrations: run `lakehouse db migrate` (or `lakehouse run`)",
    )


async def _connect_failure_reason(url: str, *, budget: float, waited: float) -> str:
    try:
        async with asyncio.timeout(budget):
            conn = await psycopg.AsyncConnection.connect(url, connect_timeout=max(int(budget), 1))
            await conn.close()
    except TimeoutError:
        return f"no answer from the database within {waited:.1f} s (host down or blocked by a firewall?)"
    except psycopg.Error as exc:
        return _first_line(exc)
    return "the database accepts connections but the pool could not hand one out in time (pool exhausted?)"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _redact(message: str, url: str) -> str:
    """Remove the URL's password from a driver message (libpq echoes parts of bad connection strings)."""
    try:
        password = conninfo_to_dict(url).get("password")
    except psycopg.Error:
        password = None
    if password:
        message = message.replace(str(password), "***")
    return _URL_PASSWORD.sub(r"\g<prefix>***@", message)
