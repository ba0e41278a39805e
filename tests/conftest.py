"""Shared fixtures: one real Postgres per test session, fresh databases on demand."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from control_room.db.migrate import migrate


class PostgresServer:
    """A Postgres server the tests may create databases on."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.created: list[str] = []

    def url_for(self, database: str) -> str:
        params = conninfo_to_dict(self.admin_url)
        params["dbname"] = database
        return make_conninfo(**params)  # type: ignore[arg-type]

    def create_database(self, prefix: str = "lh_test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        self.created.append(name)
        return self.url_for(name)

    def drop_all(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for name in self.created:
                conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """LAKEHOUSE_TEST_DATABASE_URL's server when set (CI: Debian's PostgreSQL 15), else embedded."""
    external = os.environ.get("LAKEHOUSE_TEST_DATABASE_URL")
    if external:
        server = PostgresServer(external)
        yield server
        server.drop_all()
        return
    from control_room.db.embedded import start_embedded

    pgdata = Path(tmp_path_factory.mktemp("embedded-pg")) / "pgdata"
    embedded = start_embedded(pgdata)
    try:
        yield PostgresServer(embedded.url("postgres"))
    finally:
        embedded.stop()


@pytest.fixture
def fresh_database(pg_server: PostgresServer) -> Callable[[], str]:
    """Factory: a new, empty database URL each call (dropped at the end of the session)."""
    return pg_server.create_database


@pytest.fixture(scope="session")
def database_url(pg_server: PostgresServer) -> str:
    """One database with every migration applied, shared by the session's tests."""
    url = pg_server.create_database("lh_shared")
    migrate(url)
    return url


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the shared migrated database."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn
