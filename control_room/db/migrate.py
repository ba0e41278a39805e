"""The one migration runner: applies supabase/migrations/*.sql in order, forward-only, checksummed."""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg

from control_room.config import MIGRATIONS_DIR
from control_room.db.rows import scalar

MIGRATION_NAME = re.compile(r"^(?P<version>\d{14})_(?P<name>[a-z0-9_]+)\.sql$")
# Any constant works as long as every replica uses the same one.
MIGRATION_LOCK_KEY = 7_245_118_900_301
# Roles are cluster-wide, but the lock above is per database: two databases of one server migrated at once (a
# second control plane on the server, the test suite on two cores) can collide on a role statement. The file's
# transaction is rolled back whole, so it is applied again; a handful of attempts outlasts any such collision.
COLLISION_ATTEMPTS = 5
COLLISION_BACKOFF_SECONDS = 0.2

_BOOTSTRAP = """
create schema if not exists ops;
create table if not exists ops.schema_migrations (
    filename text primary key,
    sha256 text not null check (sha256 ~ '^[0-9a-f]{64}$'),
    applied_at timestamptz not null default now(),
    duration_ms integer not null default 0
);
"""


class MigrationError(RuntimeError):
    """A migration cannot be applied; the message names the file and what to do."""


@dataclass(frozen=True)
class MigrationFile:
    """One forward-only migration file on disk."""

    filename: str
    path: Path
    sha256: str

    @property
    def version(self) -> str:
        """The file name without `.sql`, e.g. ``20261126000100_ops_core``."""
        return self.filename.removesuffix(".sql")

    def sql(self) -> str:
        """The file's SQL text."""
        return self.path.read_text(encoding="utf-8")


@dataclass(frozen=True)
class MigrationStatus:
    """One row of ``lakehouse db status``."""

    filename: str
    state: str  # applied | pending | edited | missing
    applied_at: datetime | None


def discover(directory: Path = MIGRATIONS_DIR) -> list[MigrationFile]:
    """Migration files in apply order; refuses badly named files so none is silently skipped."""
    files: list[MigrationFile] = []
    for path in sorted(directory.glob("*.sql")):
        if not MIGRATION_NAME.match(path.name):
            raise MigrationError(f"{path.name}: migration files must be named <14-digit timestamp>_<snake_name>.sql")
        files.append(MigrationFile(path.name, path, hashlib.sha256(path.read_bytes()).hexdigest()))
    return files


def _applied(conn: psycopg.Connection) -> dict[str, tuple[str, datetime]]:
    rows = conn.execute("select filename, sha256, applied_at from ops.schema_migrations").fetchall()
    return {name: (sha, at) for name, sha, at in rows}


def _check_not_edited(files: list[MigrationFile], applied: dict[str, tuple[str, datetime]]) -> None:
    for f in files:
        if f.filename in applied and applied[f.filename][0] != f.sha256:
            raise MigrationError(
                f"{f.filename} was edited after it was applied (checksum differs from the one recorded "
                "in ops.schema_migrations). Migrations are forward-only: restore the file and add a new "
                "migration with the change."
            )


def _collided(exc: psycopg.Error) -> bool:
    """A concurrent change to a cluster-wide catalog row (a role) by another database's migration."""
    catalog_duplicate = isinstance(exc, psycopg.errors.UniqueViolation) and (exc.diag.constraint_name or "").startswith(
        "pg_"
    )
    return catalog_duplicate or (exc.sqlstate == "XX000" and "concurrently" in str(exc))


def _apply(conn: psycopg.Connection, f: MigrationFile) -> None:
    """One file and its ``schema_migrations`` row in one transaction, again when it collided with another
    database's migration on a role."""
    for attempt in range(1, COLLISION_ATTEMPTS + 1):
        started = time.monotonic()
        try:
            with conn.transaction():
                conn.execute(f.sql().encode())
                conn.execute(
                    "insert into ops.schema_migrations (filename, sha256, duration_ms) values (%s, %s, %s)",
                    (f.filename, f.sha256, int((time.monotonic() - started) * 1000)),
                )
            return
        except psycopg.Error as exc:
            if attempt < COLLISION_ATTEMPTS and _collided(exc):
                time.sleep(COLLISION_BACKOFF_SECONDS * attempt)
                continue
            raise MigrationError(f"{f.filename} failed and was rolled back: {exc}") from exc


def migrate(database_url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every pending migration, each in its own transaction; returns the files applied."""
    files = discover(directory)
    done: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        # Session-level lock: a second replica waits here, then finds nothing pending.
        conn.execute("select pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            conn.execute(_BOOTSTRAP)
            applied = _applied(conn)
            _check_not_edited(files, applied)
            for f in files:
                if f.filename in applied:
                    continue
                _apply(conn, f)
                done.append(f.filename)
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return done


def status(database_url: str, directory: Path = MIGRATIONS_DIR) -> list[MigrationStatus]:
    """Every migration on disk or in the database with its state."""
    files = discover(directory)
    with psycopg.connect(database_url, autocommit=True) as conn:
        exists = conn.execute("select to_regclass('ops.schema_migrations') is not null").fetchone()
        applied = _applied(conn) if exists and exists[0] else {}
    rows: list[MigrationStatus] = []
    for f in files:
        if f.filename not in applied:
            rows.append(MigrationStatus(f.filename, "pending", None))
        else:
            sha, at = applied[f.filename]
            rows.append(MigrationStatus(f.filename, "applied" if sha == f.sha256 else "edited", at))
    on_disk = {f.filename for f in files}
    rows.extend(
        MigrationStatus(name, "missing", at) for name, (_, at) in sorted(applied.items()) if name not in on_disk
    )
    return rows


_LATEST_APPLIED = "select filename from ops.schema_migrations order by filename desc limit 1"


def latest_applied(conn: psycopg.Connection) -> str | None:
    """Version of the newest applied migration (for health), or None on an empty database."""
    row = conn.execute(_LATEST_APPLIED).fetchone()
    return str(row[0]).removesuffix(".sql") if row else None


async def latest_applied_async(conn: psycopg.AsyncConnection) -> str | None:
    """``latest_applied`` over an async connection (the server's pool is async)."""
    latest = await scalar(conn, _LATEST_APPLIED)
    return None if latest is None else str(latest).removesuffix(".sql")
