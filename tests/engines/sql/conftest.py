"""Fixtures of the SQL engine tests: a recording task context, the warehouse folders, one Trino test server.

``HarnessContext`` implements ``TaskContext`` the way the runner does where it matters to an engine:
events are recorded in order with a sequence number, artifacts are copied (and their SHA-256 computed
from the copied bytes) at the moment they are queued, reports must be JSON, a cancel request flips
the flag a watcher reads, and ``run_process`` runs a real child in its own process group.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from executor_agent.engines.base import EngineResult, Level, ProcessOutcome, ResourceLimits, TaskCancelled
from tests.trino_server.process import TrinoTestServer, trino_test_server


@dataclass(frozen=True)
class RecordedArtifact:
    """A copy of a queued artifact and what was declared for it."""

    name: str
    path: Path
    sha256: str
    size_bytes: int
    content_type: str | None
    metadata: dict[str, Any]


@dataclass
class HarnessContext:
    """A TaskContext for engine tests (see the module docstring)."""

    spec: Mapping[str, Any]
    work_dir: Path
    artifact_dir: Path
    engine: str = "duckdb"
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    timeout_s: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    task_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    task_key: str = "query"
    attempt: int = 1
    project: str = "demo"
    environment: str = "dev"
    events: list[dict[str, Any]] = field(default_factory=list)
    artifacts: dict[str, RecordedArtifact] = field(default_factory=dict)
    reports: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    stop_reason: str | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.artifact_dir.mkdir(parents=True, exist_ok=True)

    # TaskContext --------------------------------------------------------------------------------------

    def emit(
        self, type: str, message: str = "", *, level: Level = "info", data: Mapping[str, Any] | None = None
    ) -> None:
        body = {"type": type, "message": message, "level": level, "data": json.loads(json.dumps(dict(data or {})))}
        with self._lock:
            body["seq"] = len(self.events)
            self.events.append(body)

    def log(self, line: str, *, level: Level = "info", stream: str = "stdout") -> None:
        self.emit("log", line, level=level, data={"stream": stream})

    def progress(self, message: str, **data: Any) -> None:
        self.emit("progress", message, data=data)

    def upload_artifact(
        self,
        path: Path,
        *,
        name: str | None = None,
        content_type: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        source = Path(path)
        name = name or source.name
        copy = self.artifact_dir / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with source.open("rb") as reader, copy.open("wb") as writer:
            for block in iter(lambda: reader.read(1 << 20), b""):
                digest.update(block)
                writer.write(block)
        with self._lock:
            assert name not in self.artifacts, f"artifact {name} queued twice"
            self.artifacts[name] = RecordedArtifact(
                name, copy, digest.hexdigest(), copy.stat().st_size, content_type,
                json.loads(json.dumps(dict(metadata or {}))),
            )  # fmt: skip

    @property
    def cancel_requested(self) -> bool:
        return self._stop.is_set()

    def check_cancelled(self) -> None:
        if self._stop.is_set():
            raise TaskCancelled(f"task {self.task_key} was stopped: {self.stop_reason}")

    def environment_for_child(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_EXECUTOR_")}
        env.update({"LAKEHOUSE_TASK_ID": self.task_id, "LAKEHOUSE_WORK_DIR": str(self.work_dir)})
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
        process = subprocess.Popen(
            list(argv), cwd=cwd or self.work_dir, env=dict(env) if env else self.environment_for_child(),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        assert process.stdout is not None
        for line in process.stdout:
            (on_line or (lambda _stream, text: self.log(text)))("stdout", line.rstrip("\n"))
            if self._stop.is_set():
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                return ProcessOutcome(process.returncode, killed_for="cancelled")
        return ProcessOutcome(process.wait())

    def report(self, operation: str, payload: Mapping[str, Any]) -> Mapping[str, Any]:
        with self._lock:
            self.reports.append((operation, json.loads(json.dumps(dict(payload), allow_nan=False))))
        return {"accepted": len(payload.get("queries", []))}

    # Test controls ------------------------------------------------------------------------------------

    def request_cancel(self, reason: str = "cancelled") -> None:
        self.stop_reason = reason
        self._stop.set()

    def history(self) -> dict[int, dict[str, Any]]:
        """The latest reported history row of each statement."""
        latest: dict[int, dict[str, Any]] = {}
        for operation, payload in self.reports:
            assert operation == "queries"
            for row in payload["queries"]:
                latest[row["statement_index"]] = row
        return latest

    def events_of(self, type: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == type]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked real_trino need a real cluster: without TRINO_URL they are deselected, not skipped.

    A hook instead of ``-m "not real_trino"`` in addopts, which would clash with ``PYTEST_ARGS="-m …"``.
    """
    if os.environ.get("TRINO_URL"):
        return
    deselected = [item for item in items if item.get_closest_marker("real_trino") is not None]
    if deselected:
        items[:] = [item for item in items if item.get_closest_marker("real_trino") is None]
        config.hook.pytest_deselected(items=deselected)


MakeContext = Callable[..., HarnessContext]
UNANALYZED_TABLE = "unanalyzed"  # the session's test server has no statistics for it (IO plan estimates NaN)


@pytest.fixture
def make_context(tmp_path: Path) -> MakeContext:
    """``make_context(spec, engine=..., limits=..., timeout_s=...)``: a fresh HarnessContext under tmp_path."""
    counter = iter(range(1_000_000))

    def make(spec: Mapping[str, Any], **options: Any) -> HarnessContext:
        n = next(counter)
        return HarnessContext(
            spec=spec, work_dir=tmp_path / f"work-{n}", artifact_dir=tmp_path / f"artifacts-{n}", **options
        )

    return make


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A lake folder and a warehouse file of the test's own, set through the engine's settings."""
    lake = tmp_path / "lake"
    lake.mkdir()
    monkeypatch.setenv("LAKEHOUSE_EXECUTOR_DUCKDB_DATA_DIR", str(lake))
    monkeypatch.setenv("LAKEHOUSE_EXECUTOR_DUCKDB_DATABASE", str(tmp_path / "warehouse.duckdb"))
    return lake


@pytest.fixture(scope="session")
def trino_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrinoTestServer]:
    """One protocol-faithful Trino test server process for the session (no authentication)."""
    with trino_test_server(
        tmp_path_factory.mktemp("trino-server"), tables_without_stats=(f"lakehouse.default.{UNANALYZED_TABLE}",)
    ) as server:
        yield server


def assert_outcome(result: EngineResult, outcome: str) -> None:
    assert result.outcome == outcome, f"expected {outcome}, got {result.outcome}: {result.error} {result.result}"
