"""Throwaway databases for checking migrations from scratch, and the server version they ran on."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo


@contextmanager
def scratch_database(admin_url: str | None) -> Iterator[str]:
    """An empty database, dropped afterwards: on ``admin_url``'s server, else on a throwaway embedded Postgres."""
    if admin_url:
        name = f"lh_validate_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        params = conninfo_to_dict(admin_url)
        params["dbname"] = name
        try:
            yield make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})
        finally:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        return
    from control_room.db.embedded import start_embedded

    # Not under the project: the embedded server may run as another user and needs its own folder.
    root = Path(tempfile.mkdtemp(prefix="lh-validate-pg-"))
    server = start_embedded(root / "pgdata")
    try:
        yield server.ensure_database("lh_validate")
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def server_version(url: str) -> str:
    """The PostgreSQL version of the server behind ``url`` (``15.8``), "?" when it does not say."""
    with psycopg.connect(url) as conn:
        row = conn.execute("show server_version").fetchone()
    return str(row[0]).split()[0] if row else "?"
