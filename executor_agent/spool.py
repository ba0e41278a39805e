"""The on-disk spool: everything the control plane has not acknowledged yet survives a crash or an outage.

One SQLite database (WAL) per agent under ``spool_dir``, plus copies of artifact files waiting to be
uploaded. It holds:

* ``attempts``: leases this agent holds (running, or finished with an outcome not yet acknowledged),
  each with its next event sequence number and the process groups its engine started;
* ``events``: events not yet accepted, each with its per-attempt ``seq`` (assigned here, so a re-send
  after a crash carries the same numbers and the server deduplicates it);
* ``outbox``: artifact uploads, reports, and the attempt's final word (finalize or release), sent in
  order per attempt after its events.

A committed row survives the agent being killed (``kill -9``); a restarted agent resends what it finds.
A lock file keeps two agents from sharing one spool.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

_SCHEMA = """
create table if not exists attempts (
    task_id text not null,
    attempt integer not null,
    lease_token text not null,
    run_id text not null,
    task_key text not null,
    engine text not null,
    state text not null default 'running',
    next_seq integer not null default 0,
    process_groups text not null default '[]',
    upload_error text,
    claimed_at real not null,
    primary key (task_id, attempt)
);
create table if not exists events (
    id integer primary key autoincrement,
    task_id text not null,
    attempt integer not null,
    lease_token text not null,
    seq integer not null,
    body text not null
);
create index if not exists events_by_attempt on events (task_id, attempt, seq);
create table if not exists outbox (
    id integer primary key autoincrement,
    task_id text not null,
    attempt integer not null,
    lease_token text not null,
    kind text not null,
    body text not null,
    file text,
    tries integer not null default 0,
    not_before real not null default 0,
    last_error text
);
create index if not exists outbox_by_attempt on outbox (task_id, attempt, id);
"""

FINAL_KINDS = ("finalize", "release")


class SpoolBusy(Exception):
    """Another agent process holds this spool folder."""


@dataclass(frozen=True)
class AttemptRecord:
    """A lease this agent holds, as the spool remembers it."""

    task_id: uuid.UUID
    attempt: int
    lease_token: uuid.UUID
    run_id: uuid.UUID
    task_key: str
    engine: str
    state: str
    next_seq: int
    process_groups: list[dict[str, int]]
    upload_error: str | None


@dataclass(frozen=True)
class SpooledEvent:
    id: int
    seq: int
    body: dict[str, Any]


@dataclass(frozen=True)
class OutboxItem:
    """An upload, report, finalize or release waiting to be sent."""

    id: int
    task_id: uuid.UUID
    attempt: int
    lease_token: uuid.UUID
    kind: str
    body: dict[str, Any]
    file: Path | None
    tries: int
    not_before: float
    last_error: str | None


@dataclass(frozen=True)
class StagedFile:
    """A copy of an artifact inside the spool, with the size and SHA-256 of the copied bytes."""

    path: Path
    size_bytes: int
    sha256: str


class Spool:
    """Durable, thread-safe queue of what the control plane has not acknowledged."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.expanduser().resolve()
        self.files_dir = self.directory / "artifacts"
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self._lock_handle = self._take_folder_lock()
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            self.directory / "spool.sqlite3", check_same_thread=False, isolation_level=None, timeout=30
        )
        self._db.execute("pragma journal_mode = wal")
        # NORMAL in WAL mode: a committed row survives the process being killed (not a power cut).
        self._db.execute("pragma synchronous = normal")
        self._db.executescript(_SCHEMA)

    def _take_folder_lock(self) -> IO[str]:
        handle = (self.directory / "agent.lock").open("a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise SpoolBusy(
                f"the spool folder {self.directory} is in use by {holder}; give every agent its own "
                "LAKEHOUSE_EXECUTOR_SPOOL_DIR"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        return handle

    def close(self) -> None:
        with self._lock:
            self._db.close()
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_handle.fileno(), fcntl.LOCK_UN)
            self._lock_handle.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("begin immediate")
            try:
                yield self._db
            except BaseException:
                self._db.execute("rollback")
                raise
            self._db.execute("commit")

    # Attempts ------------------------------------------------------------------------------------------

    def record_attempt(
        self, *, task_id: uuid.UUID, attempt: int, lease_token: uuid.UUID, run_id: uuid.UUID, task_key: str, engine: str
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "insert or ignore into attempts (task_id, attempt, lease_token, run_id, task_key, engine, claimed_at) "
                "values (?, ?, ?, ?, ?, ?, ?)",
                (str(task_id), attempt, str(lease_token), str(run_id), task_key, engine, time.time()),
            )

    def attempts(self) -> list[AttemptRecord]:
        """Every lease held, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "select task_id, attempt, lease_token, run_id, task_key, engine, state, next_seq, process_groups, "
                "upload_error from attempts order by claimed_at"
            ).fetchall()
        return [
            AttemptRecord(
                task_id=uuid.UUID(r[0]),
                attempt=r[1],
                lease_token=uuid.UUID(r[2]),
                run_id=uuid.UUID(r[3]),
                task_key=r[4],
                engine=r[5],
                state=r[6],
                next_seq=r[7],
                process_groups=json.loads(r[8]),
                upload_error=r[9],
            )
            for r in rows
        ]

    def set_process_groups(self, task_id: uuid.UUID, attempt: int, groups: list[dict[str, int]]) -> None:
        """Remember the process groups an attempt runs, so a restarted agent can stop orphans."""
        with self._transaction() as db:
            db.execute(
                "update attempts set process_groups = ? where task_id = ? and attempt = ?",
                (json.dumps(groups), str(task_id), attempt),
            )

    def note_upload_error(self, task_id: uuid.UUID, attempt: int, error: str) -> None:
        with self._transaction() as db:
            db.execute(
                "update attempts set upload_error = coalesce(upload_error || '; ', '') || ? "
                "where task_id = ? and attempt = ?",
                (error, str(task_id), attempt),
            )

    def upload_error(self, task_id: uuid.UUID, attempt: int) -> str | None:
        with self._lock:
            row = self._db.execute(
                "select upload_error from attempts where task_id = ? and attempt = ?", (str(task_id), attempt)
            ).fetchone()
        return row[0] if row else None

    def finish_attempt(
        self, task_id: uuid.UUID, attempt: int, lease_token: uuid.UUID, kind: str, body: Mapping[str, Any]
    ) -> int:
        """Queue the attempt's final word (finalize or release); it is sent after the attempt's events and uploads."""
        if kind not in FINAL_KINDS:
            raise ValueError(f"kind must be one of {FINAL_KINDS}, got {kind!r}")
        with self._transaction() as db:
            db.execute(
                "update attempts set state = 'finishing', process_groups = '[]' where task_id = ? and attempt = ?",
                (str(task_id), attempt),
            )
            return self._insert_outbox(db, task_id, attempt, lease_token, kind, body, None)

    def forget_attempt(self, task_id: uuid.UUID, attempt: int, *, drop_final: bool = True) -> None:
        """The lease ended (acknowledged, or lost): stop holding it. Its events and uploads stay queued."""
        with self._transaction() as db:
            db.execute("delete from attempts where task_id = ? and attempt = ?", (str(task_id), attempt))
            if drop_final:
                db.execute(
                    "delete from outbox where task_id = ? and attempt = ? and kind in ('finalize', 'release')",
                    (str(task_id), attempt),
                )

    # Events ----------------------------------------------------------------------------------------------

    def add_event(self, task_id: uuid.UUID, attempt: int, lease_token: uuid.UUID, body: Mapping[str, Any]) -> int:
        """Store one event with the attempt's next ``seq`` (contiguous from 0); returns that seq."""
        with self._transaction() as db:
            row = db.execute(
                "update attempts set next_seq = next_seq + 1 where task_id = ? and attempt = ? returning next_seq - 1",
                (str(task_id), attempt),
            ).fetchone()
            if row is None:
                raise KeyError(f"attempt {attempt} of task {task_id} is not held by this agent")
            seq = int(row[0])
            db.execute(
                "insert into events (task_id, attempt, lease_token, seq, body) values (?, ?, ?, ?, ?)",
                (str(task_id), attempt, str(lease_token), seq, json.dumps({**body, "seq": seq})),
            )
        return seq

    def pending_event_attempts(self) -> list[tuple[uuid.UUID, int, uuid.UUID]]:
        """(task, attempt, lease) of every attempt with unsent events."""
        with self._lock:
            rows = self._db.execute(
                "select task_id, attempt, lease_token, min(id) from events group by task_id, attempt, lease_token "
                "order by 4"
            ).fetchall()
        return [(uuid.UUID(r[0]), r[1], uuid.UUID(r[2])) for r in rows]

    def events_of(self, task_id: uuid.UUID, attempt: int, limit: int) -> list[SpooledEvent]:
        with self._lock:
            rows = self._db.execute(
                "select id, seq, body from events where task_id = ? and attempt = ? order by seq limit ?",
                (str(task_id), attempt, limit),
            ).fetchall()
        return [SpooledEvent(id=r[0], seq=r[1], body=json.loads(r[2])) for r in rows]

    def delete_events(self, ids: list[int]) -> None:
        with self._transaction() as db:
            db.executemany("delete from events where id = ?", [(i,) for i in ids])

    def count_events(self, task_id: uuid.UUID | None = None, attempt: int | None = None) -> int:
        with self._lock:
            if task_id is None:
                row = self._db.execute("select count(*) from events").fetchone()
            else:
                row = self._db.execute(
                    "select count(*) from events where task_id = ? and attempt = ?", (str(task_id), attempt)
                ).fetchone()
        return int(row[0])

    # Outbox ----------------------------------------------------------------------------------------------

    @staticmethod
    def _insert_outbox(
        db: sqlite3.Connection,
        task_id: uuid.UUID,
        attempt: int,
        lease_token: uuid.UUID,
        kind: str,
        body: Mapping[str, Any],
        file: Path | None,
    ) -> int:
        cur = db.execute(
            "insert into outbox (task_id, attempt, lease_token, kind, body, file) values (?, ?, ?, ?, ?, ?)",
            (str(task_id), attempt, str(lease_token), kind, json.dumps(dict(body)), str(file) if file else None),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def add_outbox(
        self,
        task_id: uuid.UUID,
        attempt: int,
        lease_token: uuid.UUID,
        kind: str,
        body: Mapping[str, Any],
        file: Path | None = None,
    ) -> int:
        with self._transaction() as db:
            return self._insert_outbox(db, task_id, attempt, lease_token, kind, body, file)

    def outbox(self, kinds: tuple[str, ...] | None = None) -> list[OutboxItem]:
        """Queued items in order (of the given kinds)."""
        query = "select id, task_id, attempt, lease_token, kind, body, file, tries, not_before, last_error from outbox"
        args: tuple[Any, ...] = ()
        if kinds:
            query += f" where kind in ({', '.join('?' for _ in kinds)})"
            args = kinds
        with self._lock:
            rows = self._db.execute(query + " order by id", args).fetchall()
        return [
            OutboxItem(
                id=r[0],
                task_id=uuid.UUID(r[1]),
                attempt=r[2],
                lease_token=uuid.UUID(r[3]),
                kind=r[4],
                body=json.loads(r[5]),
                file=Path(r[6]) if r[6] else None,
                tries=r[7],
                not_before=r[8],
                last_error=r[9],
            )
            for r in rows
        ]

    def blocks_final(self, task_id: uuid.UUID, attempt: int, final_id: int) -> bool:
        """Whether events or earlier outbox items of the attempt still wait (the final word goes last)."""
        with self._lock:
            event = self._db.execute(
                "select 1 from events where task_id = ? and attempt = ? limit 1", (str(task_id), attempt)
            ).fetchone()
            earlier = self._db.execute(
                "select 1 from outbox where task_id = ? and attempt = ? and id < ? limit 1",
                (str(task_id), attempt, final_id),
            ).fetchone()
        return event is not None or earlier is not None

    def update_final_body(self, item_id: int, body: Mapping[str, Any]) -> None:
        with self._transaction() as db:
            db.execute("update outbox set body = ? where id = ?", (json.dumps(dict(body)), item_id))

    def postpone(self, item_id: int, *, delay_s: float, error: str, count_try: bool = False) -> None:
        """Try the item again later (a transient error), optionally counting a rejected try."""
        with self._transaction() as db:
            db.execute(
                "update outbox set not_before = ?, last_error = ?, tries = tries + ? where id = ?",
                (time.time() + delay_s, error[:2000], 1 if count_try else 0, item_id),
            )

    def remove_outbox(self, item_id: int) -> None:
        """The item is done (acknowledged, or given up); its staged file goes with it."""
        with self._transaction() as db:
            row = db.execute("select file from outbox where id = ?", (item_id,)).fetchone()
            db.execute("delete from outbox where id = ?", (item_id,))
        if row and row[0]:
            with contextlib.suppress(FileNotFoundError):
                Path(row[0]).unlink()

    def count_outbox(self, kinds: tuple[str, ...] | None = None) -> int:
        return len(self.outbox(kinds))

    def is_empty(self) -> bool:
        """Nothing left to send (events or outbox items)."""
        with self._lock:
            events = self._db.execute("select count(*) from events").fetchone()
            items = self._db.execute("select count(*) from outbox").fetchone()
        return int(events[0]) == 0 and int(items[0]) == 0

    # Files -----------------------------------------------------------------------------------------------

    def stage_file(self, source: Path) -> StagedFile:
        """Copy a file into the spool, hashing the bytes copied (the task may change or delete its own copy)."""
        target = self.files_dir / f"{uuid.uuid4().hex}{''.join(source.suffixes[-1:])}"
        digest = hashlib.sha256()
        size = 0
        with source.open("rb") as reader, target.open("wb") as writer:
            while block := reader.read(1 << 20):
                digest.update(block)
                writer.write(block)
                size += len(block)
            writer.flush()
            os.fsync(writer.fileno())
        return StagedFile(path=target, size_bytes=size, sha256=digest.hexdigest())

    def unstage(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def orphan_files(self) -> list[Path]:
        """Staged files no outbox item refers to (a crash between copying and queueing)."""
        referenced = {str(item.file) for item in self.outbox(("upload",)) if item.file}
        return [path for path in self.files_dir.iterdir() if str(path) not in referenced]

    def remove_orphan_files(self) -> int:
        orphans = self.orphan_files()
        for path in orphans:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        return len(orphans)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in blocks."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
