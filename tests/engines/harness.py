"""One harness for engine tests: the agent's real ``AttemptContext`` whose outbox a recording transport drains.

An engine under test gets exactly what the runner hands it: an ``AttemptContext`` on a real ``Spool`` (in
a folder of the test's own) with real ``PendingReports`` and a ``TaskAssignment`` of the generated wire
models. Only the network is replaced: ``RecordingTransport`` plays the runner's flusher and uploader.
Reports are recorded and answered (by an optional reporter, e.g. a real control plane under a real
lease), uploads land on an ``ArtifactShelf`` with their SHA-256, and ``fetch_artifact`` is served from
that shelf. Events are read back from the spool in ``seq`` order. As the runner does, a timer stops the
attempt as ``timed_out`` after the assignment's ``timeout_s`` (the lower of the task's timeout and the
pool's ``max_runtime_s``, as the control plane computes it).

What the harness adds for tests only observes: the argv, environment and process group of each child
``run_process`` starts (for the kill tests), and ``extra_env``, which stands for the agent's own
environment (a warehouse password the agent holds, say) without touching ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil

from executor_agent.client import ClientError, NotFound
from executor_agent.context import AttemptContext, PendingReports
from executor_agent.engines.base import ProcessOutcome, ResourceLimits
from executor_agent.generated.contract import TaskAssignment
from executor_agent.spool import Spool
from tests.agent.conftest import wait_until

__all__ = [
    "ArtifactShelf",
    "ContextFactory",
    "HarnessContext",
    "ProcessRecord",
    "RecordedEvent",
    "RecordingTransport",
    "Reporter",
    "StoredArtifact",
    "group_is_gone",
    "live_group_members",
    "wait_until",
]

# Answers a report as the control plane would; raising a ClientError is a refusal the engine sees.
Reporter = Callable[[str, Mapping[str, Any]], Mapping[str, Any]]


@dataclass(frozen=True)
class RecordedEvent:
    """An event as the spool holds it (and the control plane will receive it)."""

    seq: int
    ts: datetime
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
    """Artifacts of harness tasks in one folder, findable by (run, task key, name)."""

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
        shutil.copyfile(source, target)
        stored = StoredArtifact(
            artifact_id,
            run_id,
            task_key,
            attempt,
            name,
            target,
            target.stat().st_size,
            hashlib.sha256(target.read_bytes()).hexdigest(),
            content_type,
            dict(metadata or {}),
        )
        with self._lock:
            self.items.append(stored)
        return stored

    def find(self, *, run_id: str, task_key: str, name: str) -> StoredArtifact:
        """The newest artifact ``name`` of task ``task_key`` in run ``run_id``; NotFound as the API answers."""
        with self._lock:
            for item in reversed(self.items):
                if (item.run_id, item.task_key, item.name) == (run_id, task_key, name):
                    return item
        raise NotFound(f'no artifact "{name}" of task "{task_key}" in run {run_id}', status=404)


class RecordingTransport:
    """The runner's flusher and uploader for one attempt, recording instead of sending.

    ``wake`` drains the outbox at once, in the calling thread: a report is answered before the engine
    starts waiting for it, and an artifact is on the shelf when ``upload_artifact`` returns.
    """

    def __init__(
        self, assignment: TaskAssignment, *, spool: Spool, pending: PendingReports, shelf: ArtifactShelf
    ) -> None:
        self.assignment = assignment
        self.spool = spool
        self.pending = pending
        self.shelf = shelf
        self.reporter: Reporter | None = None
        self.reports: list[tuple[str, dict[str, Any]]] = []
        self.artifacts: list[StoredArtifact] = []
        self._lock = threading.Lock()

    def wake(self, kind: str) -> None:
        with self._lock:
            for item in self.spool.outbox(("report", "upload")):
                if item.kind == "upload":
                    self._store(item.body, item.file)
                else:
                    self._answer(item.id, str(item.body["operation"]), dict(item.body["payload"]))
                self.spool.remove_outbox(item.id)

    def _answer(self, item_id: int, operation: str, payload: dict[str, Any]) -> None:
        self.reports.append((operation, payload))
        try:
            reply = self.reporter(operation, payload) if self.reporter is not None else {}
        except ClientError as exc:
            self.pending.resolve(item_id, error=exc)
            return
        self.pending.resolve(item_id, reply=reply)

    def _store(self, body: Mapping[str, Any], staged: Path | None) -> None:
        assert staged is not None and staged.is_file(), f"the spooled copy of {body['name']} is missing"
        stored = self.shelf.put(
            staged,
            run_id=str(self.assignment.run_id),
            task_key=self.assignment.task_key,
            attempt=self.assignment.attempt,
            name=str(body["name"]),
            content_type=str(body["content_type"]),
            metadata=body.get("metadata"),
        )
        assert stored.sha256 == body["sha256"] and stored.size_bytes == body["size_bytes"], (
            f"artifact {stored.name}: the upload does not match the size and SHA-256 taken when it was queued"
        )
        self.artifacts.append(stored)

    def fetch(self, *lease: uuid.UUID, task_key: str, name: str, dest: Path, run_id: str | None = None) -> Path:
        """``ArtifactsResource.fetch`` (task id and lease token first) served from the shelf, verified by SHA-256."""
        stored = self.shelf.find(run_id=run_id or str(self.assignment.run_id), task_key=task_key, name=name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(stored.path, dest)
        assert hashlib.sha256(dest.read_bytes()).hexdigest() == stored.sha256, f"artifact {name} arrived corrupted"
        return dest


@dataclass
class ProcessRecord:
    """A child the context started: what it ran, with which environment, in which process group."""

    argv: list[str]
    env: dict[str, str]
    started_at: datetime
    pgid: int = 0
    ended_at: datetime | None = None
    outcome: ProcessOutcome | None = None


class HarnessContext(AttemptContext):
    """The agent's ``AttemptContext`` for one task of a test, with what it recorded readable."""

    def __init__(
        self,
        spec: Mapping[str, Any],
        *,
        root: Path,
        shelf: ArtifactShelf,
        engine: str | None = None,
        task_key: str | None = None,
        params: Mapping[str, Any] | None = None,
        limits: ResourceLimits | None = None,
        timeout_s: int | None = None,
        task_id: str | None = None,
        run_id: str | None = None,
        lease_token: str | None = None,
        project_id: uuid.UUID | None = None,
        attempt: int = 1,
        project: str = "demo",
        environment: str = "dev",
        reporter: Reporter | None = None,
        extra_env: Mapping[str, str] | None = None,
        kill_grace_s: float = 2.0,
        policies: Mapping[str, Any] | None = None,
        ask: Reporter | None = None,
    ) -> None:
        caps = {k: v for k, v in dataclasses.asdict(limits or ResourceLimits()).items() if v is not None}
        runtime = [t for t in (timeout_s, caps.get("max_runtime_s")) if t]
        assignment = TaskAssignment(
            task_id=uuid.UUID(task_id) if task_id else uuid.uuid4(),
            run_id=uuid.UUID(run_id) if run_id else uuid.uuid4(),
            task_key=task_key or str(spec.get("key", "task")),
            engine=engine or str(spec.get("engine", "shell")),
            spec=dict(spec),
            params=dict(params or {}),
            attempt=attempt,
            max_attempts=attempt,
            lease_token=uuid.UUID(lease_token) if lease_token else uuid.uuid4(),
            lease_expires_at=datetime.now(UTC) + timedelta(hours=1),
            heartbeat_interval_s=10.0,
            timeout_s=min(runtime) if runtime else None,
            limits=caps,
            project_id=project_id or uuid.uuid4(),
            project=project,
            environment=environment,
        )
        spool = Spool(root / "spool")
        spool.record_attempt(  # as the runner records a claimed lease before it starts the engine
            **{k: getattr(assignment, k) for k in ("task_id", "attempt", "lease_token", "run_id", "task_key", "engine")}
        )
        pending = PendingReports()
        self.transport = RecordingTransport(assignment, spool=spool, pending=pending, shelf=shelf)
        self.transport.reporter = reporter
        work_dir = root / "work"
        work_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(
            assignment,
            work_dir=work_dir,
            spool=spool,
            reports=pending,
            wake=self.transport.wake,
            kill_grace_s=kill_grace_s,
            fetch=self.transport.fetch,
            policies=(lambda _task, _lease: policies) if policies is not None else None,
            ask=(lambda _task, _lease, operation, payload, **_: ask(operation, payload)) if ask is not None else None,
        )
        self.harness_spool = spool
        self.extra_env = dict(extra_env or {})
        self.processes: list[ProcessRecord] = []
        self._starting = threading.local()
        # The runner's timer, started when the attempt is handed to the engine.
        self._timer: threading.Timer | None = None
        if assignment.timeout_s:
            self._timer = threading.Timer(assignment.timeout_s, self.request_stop, args=("timed_out",))
            self._timer.daemon = True
            self._timer.start()

    def dispose(self) -> None:
        """Stop the timer and close the spool (what was recorded stays readable until then)."""
        if self._timer is not None:
            self._timer.cancel()
        self.harness_spool.close()

    # The agent's environment -------------------------------------------------------------------------------

    def environment_for_child(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return super().environment_for_child({**self.extra_env, **(extra or {})})

    # Observing children ------------------------------------------------------------------------------------

    def run_process(self, argv: Sequence[str], **options: Any) -> ProcessOutcome:
        env = options.pop("env", None)
        child_env = dict(env) if env is not None else self.environment_for_child()
        record = ProcessRecord(list(argv), child_env, datetime.now(UTC))
        self._starting.record = record
        try:
            outcome = super().run_process(argv, env=child_env, **options)
        finally:
            self._starting.record = None
            record.ended_at = datetime.now(UTC)
        record.outcome = outcome
        return outcome

    def _track_group(self, pgid: int, ticks: int | None) -> None:
        record: ProcessRecord | None = getattr(self._starting, "record", None)
        if record is not None:  # a child really started: the record counts from now on
            record.pgid = pgid
            self.processes.append(record)
        super()._track_group(pgid, ticks)

    @property
    def process_groups(self) -> list[int]:
        """Process groups of every child started, in order (each child leads its own group)."""
        return [p.pgid for p in self.processes]

    # What was recorded -------------------------------------------------------------------------------------

    @property
    def events(self) -> list[RecordedEvent]:
        """Every event of the attempt so far, in ``seq`` order, as the spool holds it."""
        spooled = self.harness_spool.events_of(self.task_uuid, self.attempt, limit=1 << 30)
        return [
            RecordedEvent(
                e.seq,
                datetime.fromisoformat(e.body["ts"]),
                e.body["type"],
                e.body["level"],
                e.body["message"],
                e.body["data"],
            )
            for e in spooled
        ]

    def events_of(self, type: str) -> list[RecordedEvent]:
        return [e for e in self.events if e.type == type]

    @property
    def artifacts(self) -> list[StoredArtifact]:
        return list(self.transport.artifacts)

    def artifact(self, name: str) -> StoredArtifact:
        """The newest artifact ``name`` of this attempt."""
        found = [a for a in self.transport.artifacts if a.name == name]
        assert found, f"no artifact {name!r}; have {[a.name for a in self.transport.artifacts]}"
        return found[-1]

    @property
    def reports(self) -> list[tuple[str, dict[str, Any]]]:
        """(operation, payload) of every report, in the order the engine made them."""
        return list(self.transport.reports)

    def report_of(self, operation: str) -> dict[str, Any]:
        found = [payload for op, payload in self.transport.reports if op == operation]
        assert found, f"no {operation} report; have {[op for op, _ in self.transport.reports]}"
        return found[-1]

    # Test controls -----------------------------------------------------------------------------------------

    def cancel(self) -> None:
        """A cancel request, as the heartbeat thread passes it on."""
        self.request_stop("cancelled")

    def wait_for_event(self, type: str, *, timeout: float = 30) -> RecordedEvent:
        """The first event of ``type``, once an engine running in another thread has emitted it."""
        found: list[RecordedEvent] = wait_until(lambda: self.events_of(type), timeout=timeout, what=f"a {type} event")
        return found[0]


class ContextFactory:
    """``factory(spec, **options)``: a fresh ``HarnessContext`` in a folder of its own under ``root``.

    ``defaults`` are options every context gets unless the call names them (a reporter, say). Closing
    the factory (or leaving its ``with`` block) disposes of every context it made.
    """

    def __init__(self, root: Path, *, shelf: ArtifactShelf | None = None, **defaults: Any) -> None:
        self.root = root
        self.shelf = shelf or ArtifactShelf(root / "shelf")
        self.defaults = defaults
        self.made: list[HarnessContext] = []

    def __call__(self, spec: Mapping[str, Any], **options: Any) -> HarnessContext:
        context = HarnessContext(
            spec, root=self.root / f"task-{len(self.made)}", shelf=self.shelf, **{**self.defaults, **options}
        )
        self.made.append(context)
        return context

    def close(self) -> None:
        for context in self.made:
            context.dispose()

    def __enter__(self) -> ContextFactory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
