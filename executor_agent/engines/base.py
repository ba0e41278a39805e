"""The engine interface: one abstract ``run(context) -> EngineResult``; the runner supplies the context.

An engine turns one claimed task into work on a real system (a process, a query, a dbt invocation).
It reports through the context only: events, log lines, progress, artifacts and contract reports
(lineage, query history). It never talks HTTP itself and never imports ``control_room``.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

Outcome = Literal["succeeded", "failed", "cancelled", "timed_out"]
CapKind = Literal["max_memory_mb", "max_cores"]
Level = Literal["debug", "info", "warning", "error"]


class TaskCancelled(Exception):
    """Raised by ``check_cancelled`` when the control plane asked to cancel the task."""


class EngineError(Exception):
    """A task-level failure with a message a person can act on (becomes the task's error)."""


@dataclass(frozen=True)
class ResourceLimits:
    """Caps that apply to the task (from the claim's ``limits``); None means no cap."""

    max_runtime_s: int | None = None
    max_memory_mb: int | None = None
    max_cores: int | None = None
    scanned_bytes_per_query: int | None = None
    max_output_bytes: int | None = None

    @classmethod
    def from_claim(cls, limits: Mapping[str, Any]) -> ResourceLimits:
        """Build from the claim response's ``limits`` object, ignoring kinds this agent does not know."""
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{k: int(v) for k, v in limits.items() if k in known and v is not None})


@dataclass
class EngineResult:
    """What the engine reports when it is done; ``result`` is stored on the task (small JSON)."""

    outcome: Outcome
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @classmethod
    def ok(cls, **result: Any) -> EngineResult:
        return cls("succeeded", dict(result))

    @classmethod
    def failed(cls, error: str, **result: Any) -> EngineResult:
        return cls("failed", dict(result), error)


@dataclass(frozen=True)
class ProcessOutcome:
    """How a child process ended: exit code, and whether the runner killed it and why."""

    returncode: int | None
    # "shutdown": the agent stopped it while shutting down (its lease is handed back, not finalized).
    killed_for: Literal["cancelled", "timed_out", "lease_lost", "shutdown"] | None = None
    # The cap whose rlimit stopped it (the claim's limit, not the spec's own): it ran out of memory under
    # max_memory_mb, or used up the CPU time max_runtime_s x max_cores allows.
    cap_exceeded: CapKind | None = None

    @property
    def succeeded(self) -> bool:
        return self.killed_for is None and self.returncode == 0


class TaskContext(Protocol):
    """Everything an engine may use; implemented by the runner (and by test harnesses)."""

    task_id: str
    run_id: str
    task_key: str
    attempt: int
    engine: str
    spec: Mapping[str, Any]
    params: Mapping[str, Any]
    project: str
    environment: str
    work_dir: Path
    limits: ResourceLimits
    timeout_s: int | None

    def emit(
        self, type: str, message: str = "", *, level: Level = "info", data: Mapping[str, Any] | None = None
    ) -> None:
        """Record an event (buffered, flushed at least every 200 ms, never lost)."""

    def log(self, line: str, *, level: Level = "info", stream: str = "stdout") -> None:
        """Record one log line as a ``log`` event."""

    def progress(self, message: str, **data: Any) -> None:
        """Record a ``progress`` event (e.g. stages done/total)."""

    def upload_artifact(
        self,
        path: Path,
        *,
        name: str | None = None,
        content_type: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Queue a file as an artifact of this attempt (spooled; uploaded with its SHA-256 verified)."""

    @property
    def cancel_requested(self) -> bool:
        """True once the control plane asked to cancel (or the lease was lost)."""

    def check_cancelled(self) -> None:
        """Raise TaskCancelled when a cancel was requested."""

    def environment_for_child(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for child processes: the agent's, plus task params as LAKEHOUSE_PARAM_*, plus extra."""

    def run_process(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        on_line: Callable[[str, str], None] | None = None,
        rlimits: bool = True,
    ) -> ProcessOutcome:
        """Run a child in its own process group, streaming its stdout/stderr lines (to ``on_line(stream,
        line)`` when given, else as log events). A cancel request, the task timeout or a lost lease kills
        the whole group within a deadline; the outcome says which."""

    def report(self, operation: str, payload: Mapping[str, Any]) -> Mapping[str, Any]:
        """Call a reporting operation of the contract for this task (e.g. "lineage", "queries")."""

    def ask(self, operation: str, payload: Mapping[str, Any], *, timeout_s: float = 600.0) -> Mapping[str, Any]:
        """Call a lease-fenced operation of the contract whose answer the task needs now (e.g. "catalog-sync"):
        sent at once, never spooled; raises when the control plane refuses it or cannot be reached."""

    def access_policies(self) -> Mapping[str, Any]:
        """The access policies the task is held to: ``{"principal", "groups", "datasets": [...]}`` (see
        executor_agent/policy/guard.py); datasets not listed are open to the task."""

    def fetch_artifact(self, *, task_key: str, name: str, dest: Path, run_id: str | None = None) -> Path:
        """Download artifact ``name`` of task ``task_key`` of this run (or of ``run_id``, same project) to
        ``dest``, verified by SHA-256; returns ``dest``."""


def cap_limit(limits: ResourceLimits, spec: Mapping[str, Any], kind: CapKind) -> int | None:
    """The cap's limit of this kind when the cap, not the spec's own ceiling, sets the process's rlimit."""
    if kind == "max_memory_mb":
        own = spec.get("max_memory_mb")
        capped = limits.max_memory_mb
        if capped is None or (isinstance(own, int) and not isinstance(own, bool) and 0 < own < capped):
            return None
        return capped
    if spec.get("cpu_time_s") or not limits.max_runtime_s:
        return None
    return limits.max_cores


def report_cap_exceeded(context: TaskContext, kind: CapKind) -> str:
    """Record that a cap stopped the process (a ``limits.memory_exceeded`` or ``limits.cores_exceeded`` event;
    the control plane attaches the cap it names); returns the words for the task's error."""
    limit = cap_limit(context.limits, context.spec, kind)
    if kind == "max_memory_mb":
        words = f"it ran out of memory under its memory cap (max_memory_mb = {limit})"
        context.emit("limits.memory_exceeded", words, level="error", data={"kind": kind, "limit": limit})
    else:
        cpu_s = (context.limits.max_runtime_s or 0) * (limit or 0)
        words = f"it used up its CPU time under its cores cap (max_cores = {limit}: {cpu_s} CPU seconds)"
        context.emit("limits.cores_exceeded", words, level="error", data={"kind": kind, "limit": limit,
                                                                          "cpu_seconds": cpu_s})  # fmt: skip
    return words


def importable(*modules: str) -> bool:
    """Whether every one of these modules imports (an engine's optional libraries are installed)."""
    try:
        for module in modules:
            importlib.import_module(module)
    except ImportError:
        return False
    return True


class Engine(abc.ABC):
    """One kind of work. Subclasses set ``name`` and implement ``run``."""

    name: ClassVar[str]

    @classmethod
    def available(cls) -> bool:
        """Whether this machine can run the engine (its libraries or binaries are installed)."""
        return True

    @abc.abstractmethod
    def run(self, context: TaskContext) -> EngineResult:
        """Do the task's work and say how it ended; raise EngineError for a failure with a clear message."""
