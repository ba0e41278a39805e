"""``AttemptContext``: the runner's implementation of ``TaskContext`` for one attempt of one task.

Everything an engine records goes to the spool first (events with their seq, staged artifact copies,
reports) and is sent from there by the runner's flusher and uploader, so an outage or a crash loses
nothing. A stop (cancel request, timeout, lost lease, shutdown) is one flag that ``run_process`` watches:
it stops the child's whole process group within ``kill_grace_s`` (at once for a lost lease).
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, cast

from executor_agent.client import ClientError
from executor_agent.engines.base import (
    CapKind,
    EngineError,
    Level,
    ProcessOutcome,
    ResourceLimits,
    TaskCancelled,
    cap_limit,
)
from executor_agent.events import clean_json, make_event
from executor_agent.generated.contract import TaskAssignment
from executor_agent.processes import child_setup, start_ticks, stop_group
from executor_agent.spool import Spool

log = logging.getLogger("executor_agent")

StopReason = Literal["cancelled", "timed_out", "lease_lost", "shutdown"]
# A line a task prints to hand the agent an event or an artifact (see executor_agent.task_output).
DIRECTIVE_PREFIX = "::lakehouse::"
_MAX_LINE_BYTES = 65536
_PARAM_NAME = re.compile(r"[^A-Za-z0-9]+")
_READER_JOIN_S = 5.0
# What a process prints when an allocation fails under its address-space limit (Python, glibc, C++, Java).
_OUT_OF_MEMORY = re.compile(
    r"MemoryError|Cannot allocate memory|out of memory|std::bad_alloc|OutOfMemoryError|memory allocation failed",
    re.IGNORECASE,
)


@dataclass
class _Waiter:
    done: threading.Event = field(default_factory=threading.Event)
    reply: Mapping[str, Any] | None = None
    error: ClientError | None = None


class PendingReports:
    """Engines waiting for the answer to a spooled report, by outbox id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[int, _Waiter] = {}

    def expect(self, item_id: int) -> _Waiter:
        with self._lock:
            return self._waiters.setdefault(item_id, _Waiter())

    def resolve(
        self, item_id: int, *, reply: Mapping[str, Any] | None = None, error: ClientError | None = None
    ) -> None:
        with self._lock:
            waiter = self._waiters.pop(item_id, None)
        if waiter is not None:
            waiter.reply, waiter.error = reply, error
            waiter.done.set()

    def forget(self, item_id: int) -> None:
        with self._lock:
            self._waiters.pop(item_id, None)


def positive_int(spec: Mapping[str, Any], name: str) -> int | None:
    """An optional positive integer field of a task spec; EngineError naming the field otherwise."""
    value = spec.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise EngineError(f"spec.{name} must be a positive integer, got {value!r}")
    return int(value)


class AttemptContext:
    """One attempt's view of the agent (implements ``executor_agent.engines.base.TaskContext``)."""

    def __init__(
        self,
        assignment: TaskAssignment,
        *,
        work_dir: Path,
        spool: Spool,
        reports: PendingReports,
        wake: Callable[[str], None],
        kill_grace_s: float = 2.0,
        report_wait_s: float = 10.0,
        fetch: Callable[..., Path] | None = None,
        task_user: str | None = None,
        policies: Callable[[uuid.UUID, uuid.UUID], Mapping[str, Any]] | None = None,
        ask: Callable[..., Mapping[str, Any]] | None = None,
    ) -> None:
        self.assignment = assignment
        self._task_user = task_user  # run_process drops to this user (LAKEHOUSE_EXECUTOR_TASK_USER)
        self.task_uuid = assignment.task_id
        self.lease_token = assignment.lease_token
        self.task_id = str(assignment.task_id)
        self.run_id = str(assignment.run_id)
        self.task_key = assignment.task_key
        self.attempt = assignment.attempt
        self.engine = assignment.engine
        self.spec: Mapping[str, Any] = assignment.spec
        self.params: Mapping[str, Any] = assignment.params
        self.project = assignment.project
        self.environment = assignment.environment
        self.work_dir = work_dir
        self.limits = ResourceLimits.from_claim(assignment.limits)
        self.timeout_s = assignment.timeout_s
        self._spool = spool
        self._reports = reports
        self._wake = wake
        self._kill_grace_s = kill_grace_s
        self._report_wait_s = report_wait_s
        self._fetch = fetch
        self._policies = policies
        self._ask = ask
        self._stop = threading.Event()
        self._state_lock = threading.Lock()
        self.stop_reason: StopReason | None = None
        self.stop_requested_at: float | None = None
        self._closed = False
        self._groups: dict[int, int | None] = {}
        self.events_dropped = 0

    # Stopping ----------------------------------------------------------------------------------------------

    def request_stop(self, reason: StopReason) -> bool:
        """Ask the attempt to stop; the first reason wins, except that a lost lease overrides any other."""
        with self._state_lock:
            if self.stop_reason is not None and not (reason == "lease_lost" and self.stop_reason != "lease_lost"):
                return False
            self.stop_reason = reason
            if self.stop_requested_at is None:
                self.stop_requested_at = time.monotonic()
        self._stop.set()
        return True

    @property
    def cancel_requested(self) -> bool:
        """True once the attempt must stop (cancel request, timeout, lost lease or agent shutdown)."""
        return self.stop_reason is not None

    def check_cancelled(self) -> None:
        if self.stop_reason is not None:
            raise TaskCancelled(f"task {self.task_key} attempt {self.attempt} was stopped: {self.stop_reason}")

    def close(self) -> None:
        """The attempt is over: later emits from a straggling engine thread are dropped."""
        with self._state_lock:
            self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    # Events ------------------------------------------------------------------------------------------------

    def emit(
        self, type: str, message: str = "", *, level: Level = "info", data: Mapping[str, Any] | None = None
    ) -> None:
        body = make_event(type, message, level=level, data=data)
        with self._state_lock:
            if self._closed:
                self.events_dropped += 1
                return
            try:
                self._spool.add_event(self.task_uuid, self.attempt, self.lease_token, body)
            except KeyError:
                # The lease was given up (lost) and forgotten: nothing more is recorded for it.
                self.events_dropped += 1
                return

    def log(self, line: str, *, level: Level = "info", stream: str = "stdout") -> None:
        self.emit("log", line, level=level, data={"stream": stream})

    def progress(self, message: str, **data: Any) -> None:
        self.emit("progress", message, data=data)

    # Artifacts ---------------------------------------------------------------------------------------------

    def upload_artifact(
        self,
        path: Path,
        *,
        name: str | None = None,
        content_type: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        source = Path(path)
        if not source.is_absolute():
            source = self.work_dir / source
        source = source.resolve()
        if not source.is_file():
            raise EngineError(f"artifact {path} does not exist or is not a file (looked at {source})")
        work_root = self.work_dir.resolve()
        if name is None:
            name = source.relative_to(work_root).as_posix() if source.is_relative_to(work_root) else source.name
        _check_artifact_name(name)
        kind = content_type or mimetypes.guess_type(source.name)[0] or "application/octet-stream"
        staged = self._spool.stage_file(source)
        body = {
            "name": name,
            "size_bytes": staged.size_bytes,
            "sha256": staged.sha256,
            "content_type": kind,
            "metadata": clean_json(dict(metadata or {})),
        }
        with self._state_lock:
            if self._closed:
                self._spool.unstage(staged.path)
                return
            self._spool.add_outbox(self.task_uuid, self.attempt, self.lease_token, "upload", body, staged.path)
        self.emit(
            "artifact",
            f"artifact {name} queued for upload ({staged.size_bytes} bytes)",
            data={"name": name, "size_bytes": staged.size_bytes, "sha256": staged.sha256, "content_type": kind},
        )
        self._wake("upload")

    # Reports -----------------------------------------------------------------------------------------------

    def report(self, operation: str, payload: Mapping[str, Any]) -> Mapping[str, Any]:
        """Spool the report, then wait up to ``report_wait_s`` for the answer; later it is still sent."""
        if not re.match(r"^[a-z][a-z0-9_-]{0,62}$", operation):
            raise ValueError(f"operation must be a lower-case name such as 'lineage', got {operation!r}")
        body = {"operation": operation, "payload": clean_json(dict(payload))}
        item_id = self._spool.add_outbox(self.task_uuid, self.attempt, self.lease_token, "report", body)
        waiter = self._reports.expect(item_id)
        self._wake("report")
        if not waiter.done.wait(self._report_wait_s):
            self._reports.forget(item_id)
            return {"spooled": True, "outbox_id": item_id}
        if waiter.error is not None:
            raise waiter.error
        return waiter.reply or {}

    def ask(self, operation: str, payload: Mapping[str, Any], *, timeout_s: float = 600.0) -> Mapping[str, Any]:
        """A lease-fenced operation whose answer the task needs now: sent at once under this attempt's lease
        (never spooled: a late answer is no answer); the client's errors propagate."""
        if self._ask is None:
            raise EngineError(f"this agent was started without a control-plane client: cannot ask for {operation}")
        return self._ask(self.task_uuid, self.lease_token, operation, dict(payload), timeout_s=timeout_s)

    def access_policies(self) -> Mapping[str, Any]:
        """The access policies this attempt is held to (asked of the control plane under the lease); an agent
        started without a client (tests' harness) has none."""
        if self._policies is None:
            return {"datasets": []}
        return self._policies(self.task_uuid, self.lease_token)

    def fetch_artifact(self, *, task_key: str, name: str, dest: Path, run_id: str | None = None) -> Path:
        if self._fetch is None:
            raise EngineError("this agent was started without a control-plane client: artifacts cannot be fetched")
        target = Path(dest)
        if not target.is_absolute():
            target = self.work_dir / target
        return self._fetch(self.task_uuid, self.lease_token, task_key=task_key, name=name, dest=target, run_id=run_id)

    # Child processes ---------------------------------------------------------------------------------------

    def environment_for_child(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        # The executor token and agent settings never reach task code.
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_EXECUTOR_")}
        env.update(
            {
                "LAKEHOUSE_TASK_ID": self.task_id,
                "LAKEHOUSE_RUN_ID": self.run_id,
                "LAKEHOUSE_TASK_KEY": self.task_key,
                "LAKEHOUSE_ATTEMPT": str(self.attempt),
                "LAKEHOUSE_PROJECT": self.project,
                "LAKEHOUSE_ENVIRONMENT": self.environment,
                "LAKEHOUSE_WORK_DIR": str(self.work_dir),
            }
        )
        if env.get("MLFLOW_TRACKING_URI"):
            # Training code logs to the project's experiment unless the task names another (spec.env).
            env.setdefault("MLFLOW_EXPERIMENT_NAME", self.project)
        for key, value in self.params.items():
            name = "LAKEHOUSE_PARAM_" + _PARAM_NAME.sub("_", str(key)).strip("_").upper()
            env[name] = value if isinstance(value, str) else json.dumps(value)
        env.update(extra or {})
        return env

    def resource_caps(self) -> tuple[int | None, int | None]:
        """(memory bytes, CPU seconds) for the child's rlimits, from the claim's limits and the spec."""
        memory_mb = [m for m in (self.limits.max_memory_mb, positive_int(self.spec, "max_memory_mb")) if m]
        cpu_s = positive_int(self.spec, "cpu_time_s")
        if cpu_s is None and self.limits.max_runtime_s and self.limits.max_cores:
            cpu_s = self.limits.max_runtime_s * self.limits.max_cores
        return (min(memory_mb) * 1024 * 1024 if memory_mb else None), cpu_s

    def run_process(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        on_line: Callable[[str, str], None] | None = None,
        rlimits: bool = True,
    ) -> ProcessOutcome:
        if not argv:
            raise EngineError("the command is empty")
        if self.stop_reason is not None:
            return ProcessOutcome(None, killed_for=self.stop_reason)
        memory, cpu = self.resource_caps() if rlimits else (None, None)
        out_of_memory = threading.Event()
        handler = on_line or self.handle_line

        def watched(stream: str, line: str) -> None:
            # How a child tells that its address space (RLIMIT_AS) ran out: the process only sees failed
            # allocations, so the words it prints are the only sign.
            if memory is not None and not out_of_memory.is_set() and _OUT_OF_MEMORY.search(line):
                out_of_memory.set()
            handler(stream, line)

        try:
            process = subprocess.Popen(
                list(argv),
                cwd=cwd or self.work_dir,
                env=dict(env) if env is not None else self.environment_for_child(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group: a stop reaches every descendant
                preexec_fn=child_setup(memory_bytes=memory, cpu_seconds=cpu),
                user=self._task_user,
                group=_primary_group(self._task_user),
                extra_groups=[] if self._task_user else None,
            )
        except FileNotFoundError as exc:
            raise EngineError(f"cannot start {argv[0]!r}: not found (is it installed and on PATH?)") from exc
        except PermissionError as exc:
            raise EngineError(f"cannot start {argv[0]!r}: permission denied") from exc
        self._track_group(process.pid, start_ticks(process.pid))
        readers = [
            threading.Thread(target=_pump, args=(pipe, name, watched), name=f"{self.task_key}-{name}", daemon=True)
            for pipe, name in ((process.stdout, "stdout"), (process.stderr, "stderr"))
            if pipe is not None
        ]
        for reader in readers:
            reader.start()
        killed_for: StopReason | None = None
        try:
            while process.poll() is None:
                if self._stop.wait(0.1):
                    killed_for = self.stop_reason
                    stop_group(process, grace_s=self._kill_grace_s, at_once=killed_for == "lease_lost")
                    break
        finally:
            # Whatever the leader left behind in its group (background jobs) ends with it.
            stop_group(process, grace_s=0, at_once=True)
            for reader in readers:
                reader.join(_READER_JOIN_S)
            self._untrack_group(process.pid)
        cap_exceeded: CapKind | None = None
        if killed_for is None and process.returncode not in (0, None):
            if process.returncode == -signal.SIGXCPU and cpu is not None:
                cap_exceeded = "max_cores" if cap_limit(self.limits, self.spec, "max_cores") else None
            elif out_of_memory.is_set() and cap_limit(self.limits, self.spec, "max_memory_mb"):
                cap_exceeded = "max_memory_mb"
        return ProcessOutcome(process.returncode, killed_for=killed_for, cap_exceeded=cap_exceeded)

    def handle_line(self, stream: str, line: str) -> None:
        """Default line handler: directives become events or artifacts, everything else a log line."""
        if line.startswith(DIRECTIVE_PREFIX):
            try:
                self._directive(json.loads(line[len(DIRECTIVE_PREFIX) :]))
                return
            except (ValueError, TypeError, EngineError) as exc:
                self.emit("log", line, level="warning", data={"stream": stream, "directive_error": str(exc)})
                return
        # stderr is where programs report trouble: shown as a warning, so "Warnings and up" finds it.
        self.log(line, level="warning" if stream == "stderr" else "info", stream=stream)

    def _directive(self, directive: Any) -> None:
        if not isinstance(directive, dict):
            raise ValueError("a directive is a JSON object")
        if "artifact" in directive:
            self.upload_artifact(
                Path(str(directive["artifact"])),
                name=directive.get("name"),
                content_type=directive.get("content_type"),
                metadata=directive.get("metadata"),
            )
            return
        level = directive.get("level", "info")
        self.emit(
            str(directive.get("type", "progress")),
            str(directive.get("message", "")),
            level=cast(Level, level) if level in ("debug", "info", "warning", "error") else "info",
            data=directive.get("data") if isinstance(directive.get("data"), dict) else None,
        )

    def _track_group(self, pgid: int, ticks: int | None) -> None:
        with self._state_lock:
            self._groups[pgid] = ticks
            groups = [{"pgid": p, "ticks": t} for p, t in self._groups.items() if t is not None]
        self._spool.set_process_groups(self.task_uuid, self.attempt, groups)

    def _untrack_group(self, pgid: int) -> None:
        with self._state_lock:
            self._groups.pop(pgid, None)
            groups = [{"pgid": p, "ticks": t} for p, t in self._groups.items() if t is not None]
        self._spool.set_process_groups(self.task_uuid, self.attempt, groups)


def _pump(pipe: IO[bytes], stream: str, handler: Callable[[str, str], None]) -> None:
    """Read a child's output line by line (long lines in 64 KiB pieces) into the handler."""
    try:
        for raw in iter(lambda: pipe.readline(_MAX_LINE_BYTES), b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            try:
                handler(stream, line)
            except Exception:  # one bad line must not stop the rest of the output
                log.exception("handling a line of %s failed", stream)
    finally:
        pipe.close()


def _check_artifact_name(name: str) -> None:
    if not name or len(name) > 512:
        raise EngineError(f"artifact name must be 1 to 512 characters, got {len(name)}")
    if name.startswith("/") or "\\" in name or any(part in ("", ".", "..") for part in name.split("/")):
        raise EngineError(f"artifact name {name!r} must be a relative path without '.', '..' or empty parts")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise EngineError(f"artifact name {name!r} contains a control character")


def _primary_group(user: str | None) -> int | None:
    if user is None:
        return None
    import pwd

    return pwd.getpwnam(user).pw_gid


def new_attempt_dir(root: Path, assignment: TaskAssignment, *, owner: str | None = None) -> Path:
    """A fresh work folder for the attempt under ``root`` (owned by ``owner`` when tasks run as another user)."""
    safe_key = re.sub(r"[^A-Za-z0-9_.-]", "_", assignment.task_key)[:60]
    path = root / f"{safe_key}-{str(assignment.task_id)[:8]}-a{assignment.attempt}-{uuid.uuid4().hex[:6]}"
    path.mkdir(parents=True, exist_ok=False)
    if owner is not None:
        import pwd

        entry = pwd.getpwnam(owner)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def iter_artifact_patterns(work_dir: Path, patterns: Iterable[str]) -> list[Path]:
    """Files under ``work_dir`` matching the spec's ``artifacts`` glob patterns, in a stable order."""
    found: dict[Path, None] = {}
    root = work_dir.resolve()
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern or pattern.startswith("/") or ".." in pattern.split("/"):
            raise EngineError(f"spec.artifacts entries must be relative glob patterns, got {pattern!r}")
        for match in sorted(root.glob(pattern)):
            if match.is_file():
                found[match] = None
    return list(found)
