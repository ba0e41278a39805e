"""Connections to the control-plane database: the URL in use and one async pool per process."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import psycopg
from psycopg import sql as psql
from psycopg_pool import AsyncConnectionPool

from control_room.config import get_settings

_pool: AsyncConnectionPool | None = None
_pool_lock = asyncio.Lock()


class DatabaseNotConfigured(RuntimeError):
    """No database URL: the process was started outside `lakehouse run` without LAKEHOUSE_DATABASE_URL."""


def database_url() -> str:
    """The control plane's Postgres URL (``lakehouse run`` sets it for the embedded server)."""
    url = get_settings().database_url
    if not url:
        raise DatabaseNotConfigured(
            "LAKEHOUSE_DATABASE_URL is not set: start the control room with `make run` "
            "(which starts the embedded Postgres) or point the variable at a Postgres/Supabase database."
        )
    return url


def connect(url: str, *, connect_timeout: int | None = None) -> psycopg.Connection[Any]:
    """An autocommit connection for commands and reports (close it, e.g. with ``with``)."""
    return psycopg.connect(url, autocommit=True, connect_timeout=connect_timeout)


async def connect_async(url: str) -> psycopg.AsyncConnection[Any]:
    """An autocommit async connection outside the pool, for loops and one-shot commands."""
    return await psycopg.AsyncConnection.connect(url, autocommit=True)


async def get_pool() -> AsyncConnectionPool:
    """The process-wide async pool, opened on first use."""
    global _pool
    if _pool is None:
        async with _pool_lock:
            if _pool is None:
                settings = get_settings()
                pool = AsyncConnectionPool(
                    database_url(),
                    min_size=settings.db_pool_min,
                    max_size=settings.db_pool_max,
                    kwargs={"autocommit": True, "connect_timeout": 5},
                    open=False,
                    name="lakehouse",
                )
                await pool.open(wait=False)
                _pool = pool
    return _pool


async def close_pool() -> None:
    """Close the pool (lifespan shutdown)."""
    global _pool
    if _pool is not None:
        await _pool.close(timeout=1)
        _pool = None


def ensure_database(server_url: str, name: str) -> None:
    """Create database ``name`` on the server of ``server_url`` when missing (another process creating it at
    the same moment is fine). Raises psycopg.errors.InsufficientPrivilege when the user may not create it."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        if conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone():
            return
        with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # another process created it meanwhile
            conn.execute(psql.SQL("create database {}").format(psql.Identifier(name)))


def database_exists(server_url: str, name: str) -> bool:
    """Whether database ``name`` exists on the server of ``server_url``."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        return conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone() is not None


def recreate_database(server_url: str, name: str) -> None:
    """Drop database ``name`` when it exists and create it empty (a scratch database being built)."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(psql.SQL("drop database if exists {}").format(psql.Identifier(name)))
        conn.execute(psql.SQL("create database {}").format(psql.Identifier(name)))


def publish_database(server_url: str, building: str, name: str) -> None:
    """Rename the finished database ``building`` to ``name``; when another process published ``name`` first,
    theirs wins and ``building`` is dropped."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        try:
            conn.execute(psql.SQL("alter database {} rename to {}").format(
                psql.Identifier(building), psql.Identifier(name)))  # fmt: skip
        except psycopg.errors.DuplicateDatabase:
            conn.execute(psql.SQL("drop database {}").format(psql.Identifier(building)))


def copy_database(server_url: str, template: str, name: str) -> None:
    """Create database ``name`` as a copy of database ``template``."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(psql.SQL("create database {} template {}").format(
            psql.Identifier(name), psql.Identifier(template)))  # fmt: skip


def set_login_password(server_url: str, role: str, password: str) -> None:
    """Let ``role`` log in with ``password`` (the role itself comes from the migrations)."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(psql.SQL("alter role {} login password {}").format(
            psql.Identifier(role), psql.Literal(password)))  # fmt: skip
