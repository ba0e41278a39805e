"""A test harness for engines: a faithful ``TaskContext`` without the agent's spool and HTTP client.

Child processes really run in their own process group and are stopped (the whole group) on cancel,
timeout or a lost lease; events are recorded in memory with a per-attempt seq; artifacts are copied
to a folder with their SHA-256; reports go to an optional sink (e.g. a real control plane under a
real lease). It also offers ``fetch_artifact`` (artifacts of earlier harness tasks), which the real
agent's context does not have yet.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import psutil

from executor_agent.engines.base import Level, ProcessOutcome, ResourceLimits, TaskCancelled

StopReason = Literal["cancelled", "timed_out", "lease_lost", "shutdown"]
Reporter = Callable[[str, Mapping[str, Any]], Mapping[str, Any]]


@dataclass(frozen=True)
class RecordedEvent:
    seq: int
    ts: float
    type: str
    level: str
    message: str
    data: dict[str, Any]


@dataclass(frozen=True)
class StoredArtifact:
    id: uuid.UUID
    run_id: str
    task_key: str
    attempt: int
    name: str
    path: Path
    size_bytes: int
    sha256: str
    content_type: str
    metadata: dict[str, Any]


class ArtifactShelf:
    """Artifacts of harness tasks in one folder, findable by id or by (run, task key, name)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.items: list[StoredArtifact] = []
        self._lock = threading.Lock()

    def put(
        self,
        source: Path,
        *,
        run_id: str,
        task_key: str,
        attempt: int,
        name: str,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, Any] | None = None,
    ) -> StoredArtifact:
        artifact_id = uuid.uuid4()
        target = self.root / str(artifact_id) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with source.open("rb") as reader, target.open("wb") as writer:
            for chunk in iter(lambda: reader.read(1 << 20), b""):
                digest.update(chunk)
                writer.write(chunk)
        stored = StoredArtifact(
            artifact_id,
            run_id,
            task_key,
            attempt,
            name,
            target,
            target.stat().st_size,
            digest.hexdigest(),
            content_type,
            dict(metadata or {}),
        )
        with self._lock:
            self.items.append(stored)
        return stored

    def find(self, *, run_id: str, task_key: str, name: str) -> StoredArtifact:
        """The newest artifact ``name`` of task ``task_key`` in run ``run_id``."""
        with self._lock:
            for item in reversed(self.items):
                if (item.run_id, item.task_key, item.name) == (run_id, task_key, name):
                    return item
        raise LookupError(f'no artifact "{name}" of task "{task_key}" in run {run_id}')


@dataclass
class HarnessContext:
    """Implements executor_agent.engines.base.TaskContext for tests."""

    spec: Mapping[str, Any]
    work_dir: Path
    shelf: ArtifactShelf
    params: Mapping[str, Any] = field(default_factory=dict)
    task_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    task_key: str = "dbt"
    attempt: int = 1
    engine: str = "dbt"
    project: str = "shop"
    environment: str = "dev"
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    timeout_s: int | None = None
    reporter: Reporter | None = None
    on_event: Callable[[RecordedEvent], None] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    kill_grace_s: float = 2.0

    def __post_init__(self) -> None:
        self.events: list[RecordedEvent] = []
        self.artifacts: list[StoredArtifact] = []
        self.reports: list[tuple[str, dict[str, Any]]] = []
        self.process_groups: list[int] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.stop_reason: StopReason | None = None
        self.work_dir.mkdir(parents=True, exist_ok=True)

    # Events --------------------------------------------------------------------------------------------

    def emit(
        self, type: str, message: str = "", *, level: Level = "info", data: Mapping[str, Any] | None = None
    ) -> None:
        # Round-trip through JSON as the wire would: an engine must only record JSON-able data.
        payload = json.loads(json.dumps(dict(data or {})))
        with self._lock:
            event = RecordedEvent(len(self.events), time.time(), type, level, message, payload)
            self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    def log(self, line: str, *, level: Level = "info", stream: str = "stdout") -> None:
        self.emit("log", line, level=level, data={"stream": stream})

    def progress(self, message: str, **data: Any) -> None:
        self.emit("progress", message, data=data)

    def events_of(self, type: str) -> list[RecordedEvent]:
        return [e for e in self.events if e.type == type]

    # Artifacts -----------------------------------------------------------------------------------------

    def upload_artifact(
        self,
        path: Path,
        *,
        name: str | None = None,
        content_type: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        stored = self.shelf.put(
            path,
            run_id=self.run_id,
            task_key=self.task_key,
            attempt=self.attempt,
            name=name or path.name,
            content_type=content_type or "application/octet-stream",
            metadata=metadata,
        )
        self.artifacts.append(stored)
        self.emit("artifact", f"artifact {stored.name} stored", data={"name": stored.name, "sha256": stored.sha256})

    def artifact(self, name: str) -> StoredArtifact:
        found = [a for a in self.artifacts if a.name == name]
        assert found, f"no artifact {name!r}; have {[a.name for a in self.artifacts]}"
        return found[-1]

    def fetch_artifact(self, *, task_key: str, name: str, dest: Path, run_id: str | None = None) -> Path:
        """An earlier task's artifact at ``dest`` (relative: in the work folder), verified by its SHA-256."""
        stored = self.shelf.find(run_id=run_id or self.run_id, task_key=task_key, name=name)
        target = dest if dest.is_absolute() else self.work_dir / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(stored.path, target)
        if hashlib.sha256(target.read_bytes()).hexdigest() != stored.sha256:
            raise ValueError(f"artifact {stored.name} does not match its SHA-256")
        return target

    # Stopping --------------------------------------------------------------------------------------------

    def request_stop(self, reason: StopReason) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stop.set()

    def cancel(self) -> None:
        self.request_stop("cancelled")

    @property
    def cancel_requested(self) -> bool:
        return self._stop.is_set()

    def check_cancelled(self) -> None:
        if self._stop.is_set():
            raise TaskCancelled(f"task {self.task_key}: {self.stop_reason}")

    # Processes -------------------------------------------------------------------------------------------

    def environment_for_child(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_EXECUTOR_")}
        env.update(self.extra_env)
        env.update(
            {
                "LAKEHOUSE_TASK_ID": self.task_id,
                "LAKEHOUSE_RUN_ID": self.run_id,
                "LAKEHOUSE_TASK_KEY": self.task_key,
                "LAKEHOUSE_WORK_DIR": str(self.work_dir),
            }
        )
        for key, value in self.params.items():
            env["LAKEHOUSE_PARAM_" + str(key).upper()] = value if isinstance(value, str) else json.dumps(value)
        env.update(extra or {})
        return env

    def run_process(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        on_line: Callable[[str, str], None] | None = None,
        rlimits: bool = True,
    ) -> ProcessOutcome:
        if self._stop.is_set():
            return ProcessOutcome(None, killed_for=self.stop_reason)
        process = subprocess.Popen(
            list(argv),
            cwd=cwd or self.work_dir,
            env=dict(env) if env is not None else self.environment_for_child(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.process_groups.append(process.pid)
        handler = on_line or (lambda stream, line: self.log(line, stream=stream))
        readers = [
            threading.Thread(target=_pump, args=(pipe, name, handler), daemon=True)
            for pipe, name in ((process.stdout, "stdout"), (process.stderr, "stderr"))
            if pipe is not None
        ]
        for reader in readers:
            reader.start()
        deadline = time.monotonic() + self.timeout_s if self.timeout_s else None
        killed_for: StopReason | None = None
        while process.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                self.request_stop("timed_out")
            if self._stop.wait(0.05):
                killed_for = self.stop_reason
                _stop_group(process, self.kill_grace_s)
                break
        _stop_group(process, 0)
        for reader in readers:
            reader.join(10)
        return ProcessOutcome(process.returncode, killed_for=killed_for)

    # Reports ---------------------------------------------------------------------------------------------

    def report(self, operation: str, payload: Mapping[str, Any]) -> Mapping[str, Any]:
        copied = json.loads(json.dumps(dict(payload)))
        self.reports.append((operation, copied))
        if self.reporter is None:
            return {}
        return self.reporter(operation, copied)

    def report_of(self, operation: str) -> dict[str, Any]:
        found = [payload for op, payload in self.reports if op == operation]
        assert found, f"no {operation} report; have {[op for op, _ in self.reports]}"
        return found[-1]


def _pump(pipe: IO[bytes], stream: str, handler: Callable[[str, str], None]) -> None:
    try:
        for raw in iter(pipe.readline, b""):
            handler(stream, raw.decode("utf-8", "replace").rstrip("\r\n"))
    finally:
        pipe.close()


def _stop_group(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM the child's process group, SIGKILL it after ``grace_s``; reap the leader."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM if grace_s > 0 else signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_s if grace_s > 0 else 10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def live_group_members(pgid: int) -> list[int]:
    """Processes of the group that still run (zombies waiting for a reaper do not count)."""
    members = []
    for process in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(process.pid) == pgid and process.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(process.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


def group_is_gone(pgid: int, *, timeout: float = 5.0) -> bool:
    """True once no process of the group runs (signals are delivered asynchronously: wait a little)."""
    deadline = time.monotonic() + timeout
    while live_group_members(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)  # polling the kernel's process table; there is nothing to await
    return True
