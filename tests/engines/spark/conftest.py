"""A faithful TaskContext for the Spark engine's tests, and the session's shared Spark runs.

``HarnessContext`` does what the agent's context does, for real: children run in their own process
group (with RLIMIT_AS when asked, as the agent applies it), their lines are streamed from reader
threads, a stop (cancel or timeout) SIGTERMs the group and SIGKILLs it after a grace, artifacts are
copied at upload time with their SHA-256, and reports are checked against the lineage payload shape
the control plane accepts. Events carry the monotonic time they were recorded at.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from executor_agent.engines.base import Level, ProcessOutcome, ResourceLimits, TaskCancelled

KILL_GRACE_S = 2.0


@dataclass(frozen=True)
class RecordedEvent:
    type: str
    message: str
    level: str
    data: dict[str, Any]
    at: float


@dataclass(frozen=True)
class RecordedArtifact:
    name: str
    path: Path
    sha256: str
    size_bytes: int
    content_type: str | None
    metadata: dict[str, Any]


@dataclass
class ProcessRecord:
    argv: list[str]
    env: dict[str, str]
    pgid: int
    started_at: float
    ended_at: float | None = None
    outcome: ProcessOutcome | None = None


def check_lineage_payload(payload: Mapping[str, Any]) -> None:
    """The shape POST /api/v1/tasks/{task_id}/lineage takes; ValueError naming the field otherwise."""

    def ref(value: Any, where: str) -> None:
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected an object")
        for key in ("namespace", "name"):
            if not isinstance(value.get(key), str) or not value[key]:
                raise ValueError(f"{where}.{key}: expected a non-empty string")

    datasets = payload.get("datasets")
    edges = payload.get("edges")
    if not isinstance(datasets, list) or not isinstance(edges, list):
        raise ValueError("datasets and edges: expected lists")
    for index, dataset in enumerate(datasets):
        ref(dataset, f"datasets[{index}]")
        if dataset.get("kind") != "table":
            raise ValueError(f"datasets[{index}].kind: expected 'table'")
        columns = dataset.get("columns")
        if not isinstance(columns, list) or not all(
            isinstance(c, Mapping) and isinstance(c.get("name"), str) and isinstance(c.get("type"), str)
            for c in columns
        ):
            raise ValueError(f"datasets[{index}].columns: expected a list of {{name, type}}")
    for index, edge in enumerate(edges):
        ref(edge.get("upstream") if isinstance(edge, Mapping) else None, f"edges[{index}].upstream")
        ref(edge.get("downstream"), f"edges[{index}].downstream")


class HarnessContext:
    """Implements ``executor_agent.engines.base.TaskContext`` for tests, with everything recorded."""

    def __init__(
        self,
        root: Path,
        spec: Mapping[str, Any],
        *,
        limits: ResourceLimits | None = None,
        timeout_s: int | None = None,
        params: Mapping[str, Any] | None = None,
        fail_reports: bool = False,
    ) -> None:
        self.task_id = str(uuid.uuid4())
        self.run_id = str(uuid.uuid4())
        self.task_key = str(spec.get("key", "task"))
        self.attempt = 1
        self.engine = str(spec.get("engine", "spark"))
        self.spec: Mapping[str, Any] = dict(spec)
        self.params: Mapping[str, Any] = dict(params or {})
        self.project = "demo"
        self.environment = "dev"
        self.work_dir = root / "work"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.artifact_dir = root / "artifacts"
        self.artifact_dir.mkdir(parents=True, exist_ok=True)
        self.limits = limits or ResourceLimits()
        self.timeout_s = timeout_s
        self.events: list[RecordedEvent] = []
        self.artifacts: list[RecordedArtifact] = []
        self.reports: list[tuple[str, dict[str, Any]]] = []
        self.processes: list[ProcessRecord] = []
        self.fail_reports = fail_reports
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.stop_reason: str | None = None
        self.started_at = time.monotonic()
        limit = [x for x in (timeout_s, self.limits.max_runtime_s) if x]
        self._deadline = self.started_at + min(limit) if limit else None

    # events
    def emit(
        self, type: str, message: str = "", *, level: Level = "info", data: Mapping[str, Any] | None = None
    ) -> None:
        # Events go over the wire as JSON: a payload that does not serialise is a bug the agent would hit.
        body = json.loads(json.dumps(dict(data or {})))
        with self._lock:
            self.events.append(RecordedEvent(type, message, level, body, time.monotonic()))

    def log(self, line: str, *, level: Level = "info", stream: str = "stdout") -> None:
        self.emit("log", line, level=level, data={"stream": stream})

    def progress(self, message: str, **data: Any) -> None:
        self.emit("progress", message, data=data)

    # artifacts
    def upload_artifact(
        self,
        path: Path,
        *,
        name: str | None = None,
        content_type: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"artifact {path} does not exist")
        name = name or source.name
        target = self.artifact_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)  # spooled at once, as the agent does: later changes do not count
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        with self._lock:
            self.artifacts.append(
                RecordedArtifact(name, target, digest, target.stat().st_size, content_type, dict(metadata or {}))
            )

    # cancellation
    def request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stop.set()

    @property
    def cancel_requested(self) -> bool:
        return self.stop_reason is not None

    def check_cancelled(self) -> None:
        if self.stop_reason is not None:
            raise TaskCancelled(self.stop_reason)

    # children
    def environment_for_child(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_EXECUTOR_")}
        env["LAKEHOUSE_TASK_ID"] = self.task_id
        env["LAKEHOUSE_WORK_DIR"] = str(self.work_dir)
        for key, value in self.params.items():
            env[f"LAKEHOUSE_PARAM_{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
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
        memory = self.limits.max_memory_mb * 1024 * 1024 if rlimits and self.limits.max_memory_mb else None

        def limit_memory() -> None:
            if memory is not None:
                resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

        child_env = dict(env) if env is not None else self.environment_for_child()
        process = subprocess.Popen(
            list(argv),
            cwd=cwd or self.work_dir,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=limit_memory,
        )
        record = ProcessRecord(list(argv), child_env, process.pid, time.monotonic())
        self.processes.append(record)
        handler = on_line or (lambda stream, line: self.log(line, stream=stream))

        def pump(pipe: Any, stream: str) -> None:
            with pipe:
                for raw in iter(pipe.readline, b""):
                    handler(stream, raw.decode("utf-8", "replace").rstrip("\r\n"))

        readers = [
            threading.Thread(target=pump, args=(process.stdout, "stdout"), daemon=True),
            threading.Thread(target=pump, args=(process.stderr, "stderr"), daemon=True),
        ]
        for reader in readers:
            reader.start()
        killed_for = None
        while process.poll() is None:
            if self._deadline is not None and time.monotonic() >= self._deadline:
                self.request_stop("timed_out")
            if self._stop.wait(0.1):
                killed_for = self.stop_reason
                self._stop_group(process)
                break
        self._stop_group(process, at_once=True)  # what the leader left behind in its group ends with it
        for reader in readers:
            reader.join(5)
        record.ended_at = time.monotonic()
        record.outcome = ProcessOutcome(process.returncode, killed_for=killed_for)  # type: ignore[arg-type]
        return record.outcome

    @staticmethod
    def _stop_group(process: subprocess.Popen[bytes], *, at_once: bool = False) -> None:
        if not at_once:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=KILL_GRACE_S)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    # artifacts of earlier tasks: this harness has none, like an agent whose run produced none
    def fetch_artifact(self, *, task_key: str, name: str, dest: Path, run_id: str | None = None) -> Path:
        raise FileNotFoundError(f"no artifact {name!r} of task {task_key!r} in this run")

    # reports
    def report(self, operation: str, payload: Mapping[str, Any]) -> Mapping[str, Any]:
        if operation == "lineage":
            check_lineage_payload(payload)
            # And the control plane's own request model, so a drift between the two fails here.
            from control_room.api.lineage import LineageReport

            LineageReport.model_validate({"lease_token": str(uuid.uuid4()), **payload})
        body = json.loads(json.dumps(dict(payload)))
        self.reports.append((operation, body))
        if self.fail_reports:
            raise ConnectionError("control plane unreachable (test)")
        return {"accepted": True}

    # queries used by the tests
    def of_type(self, type_: str) -> list[RecordedEvent]:
        return [e for e in self.events if e.type == type_]

    def artifact(self, name: str) -> RecordedArtifact:
        for artifact in self.artifacts:
            if artifact.name == name:
                return artifact
        raise AssertionError(f"no artifact {name!r}; have {[a.name for a in self.artifacts]}")


@dataclass
class HarnessFactory:
    root: Path
    made: list[HarnessContext] = field(default_factory=list)

    def __call__(self, spec: Mapping[str, Any], **kwargs: Any) -> HarnessContext:
        context = HarnessContext(self.root / f"task-{len(self.made)}", spec, **kwargs)
        self.made.append(context)
        return context


@pytest.fixture
def harness(tmp_path: Path) -> HarnessFactory:
    """``harness(spec, limits=..., timeout_s=...)``: a fresh HarnessContext under tmp_path."""
    return HarnessFactory(tmp_path)


@pytest.fixture(scope="session")
def harness_session(tmp_path_factory: pytest.TempPathFactory) -> HarnessFactory:
    """A HarnessContext factory for session-scoped runs (one JVM start shared by several tests)."""
    return HarnessFactory(tmp_path_factory.mktemp("spark-harness"))


def wait_for(condition: Callable[[], Any], *, timeout: float, what: str) -> Any:
    """Poll ``condition`` until it is truthy or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)  # polling process state: there is nothing to await
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
