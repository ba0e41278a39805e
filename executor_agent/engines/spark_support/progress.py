"""Progress of a Spark application: polled from its REST API while it runs, summed from its event log after.

The REST API (``/api/v1/applications/<id>/stages``) lives only as long as the driver, so a job that
finishes between two polls would leave no trace; the event log, written by the driver into the
task's work dir, gives the final counts whatever happened.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx


@dataclass(frozen=True)
class StageProgress:
    """Counts across an application's stages; skipped stages (reused shuffle output) are not in the totals."""

    stages_done: int = 0
    stages_total: int = 0
    stages_failed: int = 0
    stages_skipped: int = 0
    tasks_done: int = 0
    tasks_total: int = 0
    tasks_failed: int = 0
    input_bytes: int = 0
    output_bytes: int = 0

    def as_data(self) -> dict[str, int]:
        return asdict(self)

    def describe(self) -> str:
        return (
            f"stages {self.stages_done}/{self.stages_total}, tasks {self.tasks_done}/{self.tasks_total}, "
            f"input {self.input_bytes} B, output {self.output_bytes} B"
        )


def summarize_stages(stages: Iterable[Mapping[str, Any]]) -> StageProgress:
    """Sum the REST API's stage list; a retried stage counts once, by its latest attempt."""
    latest: dict[int, Mapping[str, Any]] = {}
    for stage in stages:
        stage_id = int(stage["stageId"])
        if stage_id not in latest or int(stage.get("attemptId", 0)) >= int(latest[stage_id].get("attemptId", 0)):
            latest[stage_id] = stage
    counted = [s for s in latest.values() if s.get("status") != "SKIPPED"]
    return StageProgress(
        stages_done=sum(1 for s in counted if s.get("status") == "COMPLETE"),
        stages_total=len(counted),
        stages_failed=sum(1 for s in counted if s.get("status") == "FAILED"),
        stages_skipped=len(latest) - len(counted),
        tasks_done=sum(int(s.get("numCompleteTasks", 0)) for s in counted),
        tasks_total=sum(int(s.get("numTasks", 0)) for s in counted),
        tasks_failed=sum(int(s.get("numFailedTasks", 0)) for s in counted),
        input_bytes=sum(int(s.get("inputBytes", 0)) for s in counted),
        output_bytes=sum(int(s.get("outputBytes", 0)) for s in counted),
    )


@dataclass(frozen=True)
class EventLogSummary:
    """What an application's event log says about it."""

    app_id: str | None
    app_name: str | None
    progress: StageProgress
    files: tuple[Path, ...]


def event_log_files(event_dir: Path) -> list[Path]:
    """The event log files Spark wrote under ``event_dir`` (single or rolling, finished or in progress)."""
    if not event_dir.is_dir():
        return []
    return sorted(
        path
        for path in event_dir.rglob("*")
        if path.is_file() and not path.name.startswith(".") and not path.name.startswith("appstatus")
    )


def summarize_event_log(event_dir: Path) -> EventLogSummary:
    """Read every event log file under ``event_dir``; a line cut short by a kill is skipped."""
    app_id: str | None = None
    app_name: str | None = None
    submitted: dict[int, int] = {}  # stage id -> number of tasks of its latest attempt
    completed: set[int] = set()
    failed: set[int] = set()
    tasks_done = tasks_failed = input_bytes = output_bytes = 0
    files = event_log_files(event_dir)
    for path in files:
        with path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue
                kind = event.get("Event")
                if kind == "SparkListenerApplicationStart":
                    app_id = event.get("App ID", app_id)
                    app_name = event.get("App Name", app_name)
                elif kind == "SparkListenerStageSubmitted":
                    info = event.get("Stage Info", {})
                    submitted[int(info.get("Stage ID", -1))] = int(info.get("Number of Tasks", 0))
                elif kind == "SparkListenerStageCompleted":
                    info = event.get("Stage Info", {})
                    stage_id = int(info.get("Stage ID", -1))
                    submitted.setdefault(stage_id, int(info.get("Number of Tasks", 0)))
                    if info.get("Failure Reason"):
                        failed.add(stage_id)
                        completed.discard(stage_id)
                    else:
                        completed.add(stage_id)
                        failed.discard(stage_id)
                elif kind == "SparkListenerTaskEnd":
                    if event.get("Task End Reason", {}).get("Reason") == "Success":
                        tasks_done += 1
                    else:
                        tasks_failed += 1
                    metrics = event.get("Task Metrics") or {}
                    input_bytes += int((metrics.get("Input Metrics") or {}).get("Bytes Read", 0))
                    output_bytes += int((metrics.get("Output Metrics") or {}).get("Bytes Written", 0))
    progress = StageProgress(
        stages_done=len(completed),
        stages_total=len(submitted),
        stages_failed=len(failed),
        tasks_done=tasks_done,
        tasks_total=sum(submitted.values()),
        tasks_failed=tasks_failed,
        input_bytes=input_bytes,
        output_bytes=output_bytes,
    )
    return EventLogSummary(app_id, app_name, progress, tuple(files))


@dataclass(kw_only=True, eq=False)
class SparkRestPoller:
    """A background thread that follows one driver's REST API while the job runs.

    It calls ``on_ui(url, app_id)`` once the UI answers, ``on_progress(progress)`` whenever the
    stage counts change, and ``on_tick()`` on every round (the engine checks output size there).
    A driver that is not up yet, or already gone, is simply asked again next round.
    """

    ui_port: int
    interval_s: float
    on_ui: Callable[[str, str], None]
    on_progress: Callable[[StageProgress], None]
    on_tick: Callable[[], None] | None = None
    on_error: Callable[[BaseException], None] | None = None
    host: str = "127.0.0.1"
    app_id: str | None = field(default=None, init=False)
    ui_url: str | None = field(default=None, init=False)
    last: StageProgress | None = field(default=None, init=False)
    polls: int = field(default=0, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _thread: threading.Thread = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, name="spark-progress", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.ui_port}"

    def use_port(self, port: int) -> None:
        """Follow the UI to another port (Spark moves to the next free one when ours was taken)."""
        if port != self.ui_port:
            self.ui_port = port
            self.app_id = None
            self.ui_url = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def __enter__(self) -> SparkRestPoller:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        # Generous: a client giving up mid-response makes the driver log a broken-pipe stack trace.
        with httpx.Client(timeout=httpx.Timeout(15.0), trust_env=False) as client:
            while not self._stop.is_set():
                try:
                    if self.on_tick is not None:
                        self.on_tick()
                    self.poll_once(client)
                except Exception as exc:  # one bad round must not end the polling
                    if self.on_error is not None:
                        self.on_error(exc)
                self._stop.wait(self.interval_s)

    def poll_once(self, client: httpx.Client) -> None:
        """One round: find the application, then read its stages."""
        self.polls += 1
        try:
            if self.app_id is None:
                response = client.get(f"{self.base_url}/api/v1/applications")
                applications = response.json() if response.status_code == 200 else None
                if not applications:
                    return
                self.app_id = str(applications[0]["id"])
                self.ui_url = self.base_url
                self.on_ui(self.ui_url, self.app_id)
            response = client.get(f"{self.base_url}/api/v1/applications/{self.app_id}/stages")
            stages = response.json() if response.status_code == 200 else None
        except (httpx.TransportError, ValueError):
            return  # the driver is starting (the UI answers before its API does) or has stopped
        if stages is None:
            return
        progress = summarize_stages(stages)
        if progress != self.last and progress.stages_total > 0:
            self.last = progress
            self.on_progress(progress)
