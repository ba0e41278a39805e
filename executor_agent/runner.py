"""The agent: register, claim, run engines, keep leases, send the spool, and stop cleanly.

Threads, each a small loop delegating to one function per concern and never dying on an error:

* ``claimer``: long-polls ``claimTasks`` for as many tasks as there are free slots and starts a worker
  thread per task (concurrency N);
* ``heartbeats``: extends every held lease in one ``heartbeatTasks`` call at a third of the lease,
  sends the executor heartbeat (drain, cancel and lost signals), and stops engines that ignore a stop;
* ``flusher``: sends spooled events at least every ``flush_interval_s`` (200 ms), then reports, then
  each attempt's final word (batched ``finalizeTasks``, or ``releaseTask``) once its events and uploads
  are through;
* ``uploader``: artifact uploads from the spool (initiate, PUT, complete), re-sent when refused.

Guarantees: a lost lease stops the work at once and its outcome is never sent; nothing is sent before
it is in the spool, so an outage or a crash loses nothing, and a restarted agent resends what its spool
holds and hands back the leases it held (their work died with the old process).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from executor_agent.client import (
    ClientError,
    Conflict,
    ControlPlaneUnavailable,
    ExecutorClient,
    Forbidden,
    InvalidRequest,
    LeaseLost,
    NotFound,
    Unauthorized,
)
from executor_agent.config import AgentSettings
from executor_agent.context import AttemptContext, PendingReports, new_attempt_dir
from executor_agent.engines import discover_engines
from executor_agent.engines.base import Engine, EngineError, EngineResult, TaskCancelled
from executor_agent.events import MAX_MESSAGE_CHARS, MAX_RESULT_BYTES, bounded_json, clean_text, make_event
from executor_agent.generated.contract import ArtifactPublic, ExecutorPublic, TaskAssignment
from executor_agent.processes import kill_recorded_group
from executor_agent.spool import FINAL_KINDS, OutboxItem, Spool, file_sha256

log = logging.getLogger("executor_agent")

EVENTS_PER_BATCH = 500
FINALIZES_PER_BATCH = 100
LEASES_PER_BATCH = 1000
MAX_UPLOAD_TRIES = 5
# An engine that ignores a stop (no run_process, no check_cancelled) is left behind this long after the
# kill grace: its outcome is recorded without it and its slot is freed.
ABANDON_AFTER_S = 5.0
SHUTDOWN_FLUSH_S = 10.0
OUTAGE_LOG_EVERY_S = 30.0


class FatalAgentError(Exception):
    """The agent cannot go on (token revoked, executor unknown, pool mismatch); the message says what to do."""


@dataclass
class HeldLease:
    """A lease this agent holds, from claim (or restart) until the control plane acknowledges its end."""

    task_id: uuid.UUID
    attempt: int
    lease_token: uuid.UUID
    task_key: str
    context: AttemptContext | None = None
    worker: threading.Thread | None = None
    concluded: bool = False  # the final word is queued (or the lease was lost): no more work


@dataclass
class AgentStats:
    """What this agent process did; logged when it stops (and read by tests)."""

    claimed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    released: int = 0
    leases_lost: int = 0
    events_sent: int = 0
    events_duplicate: int = 0
    events_dropped: int = 0
    artifacts_stored: int = 0
    uploads_rejected: int = 0
    uploads_failed: int = 0
    reports_sent: int = 0
    recovered_attempts: int = 0


class _OutageLog:
    """Logs an unreachable control plane once, then every 30 s, and when it answers again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: float | None = None
        self._last_logged = 0.0

    def failed(self, what: str, exc: Exception) -> None:
        now = time.monotonic()
        with self._lock:
            if self._since is None:
                self._since = now
            elif now - self._last_logged < OUTAGE_LOG_EVERY_S:
                return
            self._last_logged = now
            down_for = now - self._since
        log.warning("control plane unreachable (%s, for %.0f s): %s; retrying, nothing is lost", what, down_for, exc)

    def ok(self) -> None:
        with self._lock:
            if self._since is None:
                return
            down_for = time.monotonic() - self._since
            self._since = None
        log.info("control plane reachable again after %.1f s; sending what was spooled", down_for)


class Agent:
    """One executor agent process: ``run()`` blocks until stopped; ``request_stop()`` is what SIGTERM calls."""

    def __init__(
        self,
        settings: AgentSettings,
        *,
        engines: Mapping[str, type[Engine]] | None = None,
        transport: httpx.BaseTransport | None = None,
        hostname: str | None = None,
    ) -> None:
        self.settings = settings
        self.engines = dict(engines) if engines is not None else discover_engines(settings.engines)
        if not self.engines:
            raise FatalAgentError("no engine is available on this machine; `lakehouse-executor check` lists them")
        self.hostname = hostname or socket.gethostname()
        self.client = ExecutorClient(
            settings.url,
            settings.require_token(),
            timeout_s=settings.request_timeout_s,
            retry_attempts=settings.retry_attempts,
            backoff_s=settings.retry_backoff_s,
            backoff_max_s=settings.retry_backoff_max_s,
            transport=transport,
        )
        self.spool = Spool(settings.spool_dir)
        self.settings.work_dir.mkdir(parents=True, exist_ok=True)
        self.reports = PendingReports()
        self.stats = AgentStats()
        self.registration: ExecutorPublic | None = None
        self.fatal_error: Exception | None = None
        self._held: dict[tuple[uuid.UUID, int], HeldLease] = {}
        self._lock = threading.RLock()
        self._slots = threading.Condition()
        self._draining = threading.Event()
        self._forced = threading.Event()
        self._threads_stop = threading.Event()
        self._wake_flush = threading.Event()
        self._wake_upload = threading.Event()
        self._server_drain = False
        self._claim_id: uuid.UUID | None = None
        self._task_heartbeat_s = 20.0
        self._outage = _OutageLog()
        self._threads: list[threading.Thread] = []
        self.started = threading.Event()

    # Lifecycle ----------------------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """First call: stop claiming and let running tasks finish within the grace period. Second: stop them now."""
        if not self._draining.is_set():
            log.info(
                "stopping: no new tasks; running tasks have %.0f s to finish (stop again to end them now)",
                self.settings.grace_period_s,
            )
            self._draining.set()
        elif not self._forced.is_set():
            log.info("stopping now: running tasks are stopped and their leases handed back")
            self._forced.set()
        with self._slots:
            self._slots.notify_all()

    def run(self) -> int:
        """Register, resend what the spool holds, work until stopped; the process exit code."""
        try:
            try:
                self.registration = self._register()
            except FatalAgentError as exc:
                log.error("%s", exc)
                return 1
            if self.registration is None:  # stopped before the control plane ever answered
                return 0
            self._task_heartbeat_s = self.registration.heartbeat_interval_s
            self._recover()
            self._start_threads()
            self.started.set()
            while not self._draining.wait(1.0):
                pass
            self._shutdown()
        finally:
            self.client.close()
            self.spool.close()
        if self.fatal_error is not None:
            log.error("stopped: %s", self.fatal_error)
            return 1
        return 0

    def _register(self) -> ExecutorPublic | None:
        attempt = 0
        while not self._draining.is_set():
            try:
                registration = self.client.executors.register(
                    engines=sorted(self.engines),
                    labels=self.settings.labels,
                    max_concurrency=self.settings.concurrency,
                    hostname=self.hostname,
                    metadata={"pid": os.getpid(), "python": sys.version.split()[0], "platform": sys.platform},
                )
            except ControlPlaneUnavailable as exc:
                attempt += 1
                self._outage.failed("register", exc)
                self._draining.wait(self.client.backoff_delay(min(attempt, 6)) + 0.5)
                continue
            except (Unauthorized, Forbidden, NotFound) as exc:
                raise FatalAgentError(
                    f"the control plane at {self.settings.url} refused the executor token ({exc.detail}); "
                    "create a new one with `lakehouse executors token create --name <name> --pool <pool>` "
                    "and set LAKEHOUSE_EXECUTOR_TOKEN"
                ) from exc
            except ClientError as exc:
                raise FatalAgentError(f"registering failed: {exc}") from exc
            self._outage.ok()
            if self.settings.pool and registration.pool != self.settings.pool:
                raise FatalAgentError(
                    f"the token belongs to pool {registration.pool!r}, but pool {self.settings.pool!r} was asked "
                    "for; use a token of that pool or drop --pool"
                )
            log.info(
                "registered as %s in pool %s (engines %s; labels %s; concurrency %d; lease %d s, heartbeat %.1f s)",
                registration.name,
                registration.pool,
                ", ".join(sorted(self.engines)),
                ", ".join(self.settings.labels) or "none",
                self.settings.concurrency,
                registration.lease_seconds,
                registration.heartbeat_interval_s,
            )
            return registration
        return None

    def _start_threads(self) -> None:
        for name, target in (
            ("heartbeats", self._heartbeat_loop),
            ("flusher", self._flush_loop),
            ("uploader", self._upload_loop),
            ("claimer", self._claim_loop),
        ):
            thread = threading.Thread(target=target, name=f"executor-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _fatal(self, exc: Exception) -> None:
        if self.fatal_error is None:
            self.fatal_error = FatalAgentError(
                f"the control plane refuses this executor ({exc}); its token was probably revoked: "
                "create a new one with `lakehouse executors token create --name <name>`"
            )
            log.error("%s", self.fatal_error)
        self._draining.set()
        self._forced.set()

    def _pass_stopped(self, what: str, exc: Exception) -> bool:
        """A pass sending to the control plane stops at ``exc``: an outage (noted against ``what``) or a refusal
        of this executor's token (fatal). Returns False, the pass's answer that it did not get through."""
        if isinstance(exc, ControlPlaneUnavailable):
            self._outage.failed(what, exc)
        else:
            self._fatal(exc)
        return False

    # Restart recovery ---------------------------------------------------------------------------------------

    def _recover(self) -> None:
        """Leases held by this spool's previous process: their work died with it, so hand them back."""
        interrupted = stopped_groups = 0
        for record in self.spool.attempts():
            lease = HeldLease(record.task_id, record.attempt, record.lease_token, record.task_key, concluded=True)
            if record.state == "running":
                interrupted += 1
                stopped_groups += sum(
                    kill_recorded_group(int(g["pgid"]), g.get("ticks")) for g in record.process_groups
                )
                body = make_event(
                    "finish",
                    "interrupted: the executor restarted while this attempt ran; its lease is handed back",
                    level="warning",
                    data={"outcome": "released", "interrupted": True},
                )
                self.spool.add_event(record.task_id, record.attempt, record.lease_token, body)
                self.spool.finish_attempt(
                    record.task_id,
                    record.attempt,
                    record.lease_token,
                    "release",
                    {"reason": "the executor restarted while this attempt ran"},
                )
            with self._lock:
                self._held[(record.task_id, record.attempt)] = lease
        self.stats.recovered_attempts = len(self._held)
        orphans = self.spool.remove_orphan_files()
        pending = self.spool.count_events()
        uploads = self.spool.count_outbox(("upload",))
        if self._held or pending or uploads or orphans:
            log.info(
                "spool: %d leases from before the restart (%d interrupted, %d process groups stopped); "
                "resending %d events and %d uploads",
                len(self._held),
                interrupted,
                stopped_groups,
                pending,
                uploads,
            )

    # Claiming -----------------------------------------------------------------------------------------------

    def _held_count(self) -> int:
        # The control plane counts a lease against this executor's concurrency until its outcome is
        # acknowledged, so a slot frees up then, not when the engine returns.
        with self._lock:
            return len(self._held)

    def _working_count(self) -> int:
        with self._lock:
            return sum(1 for lease in self._held.values() if lease.context is not None and not lease.concluded)

    def _claim_loop(self) -> None:
        failures = 0
        while not self._draining.is_set():
            try:
                free = self.settings.concurrency - self._held_count()
                if free <= 0:
                    with self._slots:
                        self._slots.wait(timeout=1.0)
                    continue
                if self._server_drain:
                    self._draining.wait(self._task_heartbeat_s)
                    continue
                assert self.registration is not None
                wait_s = min(self.settings.claim_wait_s, self.registration.claim_wait_max_s)
                # One id per claim until its reply is read: a retry after a lost reply gets the same leases.
                if self._claim_id is None:
                    self._claim_id = uuid.uuid4()
                assignments = self.client.tasks.claim(max_tasks=min(free, 100), wait_s=wait_s, claim_id=self._claim_id)
                self._claim_id = None
                failures = 0
                self._outage.ok()
                for assignment in assignments:
                    self._accept(assignment)
            except ControlPlaneUnavailable as exc:
                failures += 1
                self._outage.failed("claim", exc)
                self._draining.wait(self.client.backoff_delay(min(failures, 6)) + 0.2)
            except (Unauthorized, Forbidden) as exc:
                self._fatal(exc)
            except Exception as exc:  # one bad claim must never stop the loop
                failures += 1
                log.exception("claiming failed: %s", exc)
                self._draining.wait(min(30.0, 2.0 * failures))

    def _accept(self, assignment: TaskAssignment) -> None:
        self.spool.record_attempt(
            task_id=assignment.task_id,
            attempt=assignment.attempt,
            lease_token=assignment.lease_token,
            run_id=assignment.run_id,
            task_key=assignment.task_key,
            engine=assignment.engine,
        )
        self.stats.claimed += 1
        lease = HeldLease(assignment.task_id, assignment.attempt, assignment.lease_token, assignment.task_key)
        refusal = "the executor is shutting down" if self._draining.is_set() else None
        if refusal is None:
            try:
                work_dir = new_attempt_dir(self.settings.work_dir, assignment, owner=self.settings.task_user)
            except OSError as exc:
                log.error("cannot create a work folder under %s: %s", self.settings.work_dir, exc)
                refusal = f"the executor cannot create a work folder: {exc}"
            else:
                # Complete before the lease is visible to the heartbeat thread.
                lease.context = AttemptContext(
                    assignment,
                    work_dir=work_dir,
                    spool=self.spool,
                    reports=self.reports,
                    wake=self._wake,
                    kill_grace_s=self.settings.kill_grace_s,
                    report_wait_s=self.settings.report_wait_s,
                    fetch=self.client.artifacts.fetch,
                    task_user=self.settings.task_user,
                    policies=self.client.tasks.policies,
                    ask=self.client.tasks.report,
                )
                lease.worker = threading.Thread(
                    target=self._work,
                    args=(lease,),
                    name=f"task-{assignment.task_key}-{assignment.attempt}",
                    daemon=True,
                )
        with self._lock:
            self._held[(assignment.task_id, assignment.attempt)] = lease
            self._task_heartbeat_s = min(self._task_heartbeat_s, assignment.heartbeat_interval_s)
        if refusal is not None or lease.worker is None:
            # Claimed while stopping (a long poll answered late), or unable to run it: hand it straight back.
            self._queue_release(lease, refusal or "the executor cannot run it")
            return
        lease.worker.start()

    def _queue_release(self, lease: HeldLease, reason: str) -> None:
        lease.concluded = True
        self.spool.finish_attempt(lease.task_id, lease.attempt, lease.lease_token, "release", {"reason": reason})
        self._wake("final")

    def _wake(self, kind: str) -> None:
        (self._wake_upload if kind == "upload" else self._wake_flush).set()

    # Running one task ---------------------------------------------------------------------------------------

    def _work(self, lease: HeldLease) -> None:
        context = lease.context
        assert context is not None
        assignment = context.assignment
        started = time.monotonic()
        timer: threading.Timer | None = None
        if assignment.timeout_s:
            timer = threading.Timer(assignment.timeout_s, context.request_stop, args=("timed_out",))
            timer.daemon = True
            timer.start()
        result: EngineResult | None = None
        try:
            context.emit(
                "start",
                f"attempt {assignment.attempt} of {assignment.task_key} started on "
                f"{self.registration.name if self.registration else self.hostname}",
                data={
                    "engine": assignment.engine,
                    "attempt": assignment.attempt,
                    "executor": self.registration.name if self.registration else None,
                    "host": self.hostname,
                    "timeout_s": assignment.timeout_s,
                },
            )
            engine = self.engines.get(assignment.engine)
            if engine is None:
                result = EngineResult.failed(f"engine {assignment.engine!r} is not available on this executor")
            else:
                result = engine().run(context)
                if not isinstance(result, EngineResult):
                    result = EngineResult.failed(
                        f"engine {assignment.engine} returned {type(result).__name__}, not an EngineResult"
                    )
        except TaskCancelled:
            result = None
        except EngineError as exc:
            # A problem a person must fix (bad spec, missing input): another attempt would fail the same way.
            result = EngineResult.failed(str(exc), retryable=False)
        except Exception as exc:
            for line in traceback.format_exc().splitlines()[-100:]:
                context.log(line, level="error", stream="agent")
            result = EngineResult.failed(f"engine {assignment.engine} crashed: {type(exc).__name__}: {exc}")
        finally:
            if timer is not None:
                timer.cancel()
        self._conclude(lease, result, time.monotonic() - started)

    def _conclude(self, lease: HeldLease, result: EngineResult | None, duration_s: float) -> None:
        """Decide the attempt's final word and queue it (once, from the worker or on its behalf)."""
        with self._lock:
            if lease.concluded:
                return
            lease.concluded = True
        context = lease.context
        assert context is not None
        reason = context.stop_reason
        try:
            if reason == "lease_lost":
                context.emit(
                    "finish",
                    "stopped: the lease was lost, so this attempt's outcome is not recorded",
                    level="warning",
                    data={"outcome": None, "lease_lost": True, "duration_s": round(duration_s, 3)},
                )
                context.close()
                self.spool.forget_attempt(lease.task_id, lease.attempt)
                self._drop(lease)
            elif reason == "shutdown" and not (result is not None and result.outcome == "succeeded"):
                context.emit(
                    "finish",
                    "handed back: the executor shut down before the task finished",
                    level="warning",
                    data={"outcome": "released", "duration_s": round(duration_s, 3)},
                )
                context.close()
                self.spool.finish_attempt(
                    lease.task_id,
                    lease.attempt,
                    lease.lease_token,
                    "release",
                    {"reason": "the executor shut down before the task finished"},
                )
            else:
                outcome, result_body, error = self._decide(context, result)
                summary = f"{outcome} after {duration_s:.1f} s" + (f": {error[:500]}" if error else "")
                context.emit(
                    "finish",
                    summary,
                    level="info" if outcome == "succeeded" else "error",
                    data={"outcome": outcome, "duration_s": round(duration_s, 3), "error": error},
                )
                context.close()
                self.spool.finish_attempt(
                    lease.task_id,
                    lease.attempt,
                    lease.lease_token,
                    "finalize",
                    {"outcome": outcome, "result": result_body, "error": error},
                )
        except Exception:
            log.exception("recording the end of task %s attempt %s failed", lease.task_key, lease.attempt)
        finally:
            if not self.settings.keep_work_dirs:
                shutil.rmtree(context.work_dir, ignore_errors=True)
            self._wake("final")
            with self._slots:
                self._slots.notify_all()

    @staticmethod
    def _decide(context: AttemptContext, result: EngineResult | None) -> tuple[str, dict[str, Any], str | None]:
        """(outcome, result, error) to finalize with: a stop overrides anything but a success."""
        reason = context.stop_reason
        body = bounded_json(result.result if result else {}, limit=MAX_RESULT_BYTES, what="the task's result")
        if result is not None and result.outcome == "succeeded":
            return "succeeded", body, None
        if reason == "timed_out":
            error = (
                f"timed out: the task ran longer than its timeout of {context.timeout_s} s; its processes were stopped"
            )
            return "timed_out", body, error
        if reason == "cancelled":
            return "cancelled", body, "cancelled on request; its processes were stopped"
        if result is None:
            return "failed", body, "the engine stopped (TaskCancelled) although no stop was requested"
        error = result.error or f"the task ended {result.outcome}"
        return result.outcome, body, clean_text(error, limit=MAX_MESSAGE_CHARS)

    def _label(self, task_id: uuid.UUID, attempt: int) -> str:
        """``task key (id prefix) attempt n`` for log lines, while the lease is still known."""
        with self._lock:
            lease = self._held.get((task_id, attempt))
        name = f"{lease.task_key} ({str(task_id)[:8]})" if lease else str(task_id)
        return f"task {name} attempt {attempt}"

    def _drop(self, lease: HeldLease) -> None:
        with self._lock:
            self._held.pop((lease.task_id, lease.attempt), None)
        with self._slots:
            self._slots.notify_all()

    def _lease_lost(self, lease: HeldLease, why: str) -> None:
        self.stats.leases_lost += 1
        log.warning("task %s attempt %s: lease lost (%s); its work stops now", lease.task_key, lease.attempt, why)
        if lease.context is not None and not lease.concluded:
            lease.context.request_stop("lease_lost")  # the worker concludes: no outcome is sent
            return
        self.spool.forget_attempt(lease.task_id, lease.attempt)
        self._drop(lease)

    # Heartbeats ---------------------------------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        next_leases = next_executor = time.monotonic()
        while not self._threads_stop.is_set():
            try:
                now = time.monotonic()
                if now >= next_leases:
                    healthy = self._beat_leases()
                    interval = self._task_heartbeat_s
                    next_leases = time.monotonic() + (interval if healthy else min(interval, 1.0))
                if now >= next_executor:
                    self._beat_executor()
                    next_executor = time.monotonic() + min(self.settings.executor_heartbeat_s, self._task_heartbeat_s)
                self._abandon_stuck_workers()
            except Exception:
                log.exception("heartbeat round failed; trying again")
            delay = min(next_leases, next_executor) - time.monotonic()
            self._threads_stop.wait(min(0.5, max(0.05, delay)))

    def _leases(self) -> list[HeldLease]:
        with self._lock:
            return list(self._held.values())

    def _beat_leases(self) -> bool:
        leases = self._leases()
        for start in range(0, len(leases), LEASES_PER_BATCH):
            chunk = leases[start : start + LEASES_PER_BATCH]
            try:
                items = self.client.tasks.heartbeat_many([(lease.task_id, lease.lease_token) for lease in chunk])
            except (ControlPlaneUnavailable, Unauthorized, Forbidden) as exc:
                return self._pass_stopped("lease heartbeat", exc)
            self._outage.ok()
            for lease, item in zip(chunk, items, strict=False):
                if item.task_id != lease.task_id:
                    log.error("heartbeat reply out of order (%s for %s); ignoring it", item.task_id, lease.task_id)
                    break
                if not item.ok and lease.concluded and (item.error or "").startswith("finalized"):
                    continue  # the heartbeat raced this attempt's own finalize: nothing was lost
                if not item.ok:
                    self._lease_lost(lease, item.error or "heartbeat refused")
                elif item.cancel_requested:
                    self._cancel(lease)
        return True

    def _beat_executor(self) -> None:
        leases = self._leases()
        try:
            reply = self.client.executors.heartbeat([lease.task_id for lease in leases])
        except ControlPlaneUnavailable as exc:
            self._outage.failed("executor heartbeat", exc)
            return
        except (Unauthorized, Forbidden, NotFound) as exc:
            self._fatal(exc)
            return
        if reply.drain != self._server_drain:
            log.info("control plane %s draining this executor", "started" if reply.drain else "stopped")
            self._server_drain = reply.drain
        cancel, lost = set(reply.cancel_task_ids), set(reply.lost_task_ids)
        for lease in leases:
            if lease.task_id in cancel:
                self._cancel(lease)
            elif lease.task_id in lost and lease.context is not None and not lease.concluded:
                self._lease_lost(lease, "the control plane says this executor no longer holds the task")

    def _cancel(self, lease: HeldLease) -> None:
        context = lease.context
        if context is None or lease.concluded:
            return
        if context.request_stop("cancelled"):
            log.info("task %s attempt %s: cancel requested; stopping it", lease.task_key, lease.attempt)
            context.emit("cancel", "cancel requested: stopping the task's processes", level="warning")

    def _abandon_stuck_workers(self) -> None:
        now = time.monotonic()
        for lease in self._leases():
            context = lease.context
            if context is None or lease.concluded or context.stop_requested_at is None:
                continue
            if now - context.stop_requested_at < self.settings.kill_grace_s + ABANDON_AFTER_S:
                continue
            if lease.worker is not None and lease.worker.is_alive():
                log.error(
                    "task %s attempt %s: the %s engine did not stop within %.0f s of a %s; "
                    "recording the end without it",
                    lease.task_key,
                    lease.attempt,
                    context.engine,
                    now - context.stop_requested_at,
                    context.stop_reason,
                )
                self._conclude(lease, None, now - context.stop_requested_at)

    # Sending the spool --------------------------------------------------------------------------------------

    def _flush_loop(self) -> None:
        failures = 0
        while not self._threads_stop.is_set():
            try:
                healthy = self._send_events() and self._send_reports() and self._send_finals()
            except Exception:
                log.exception("sending the spool failed; trying again")
                healthy = False
            failures = 0 if healthy else failures + 1
            delay = self.settings.flush_interval_s if healthy else self.client.backoff_delay(min(failures, 5)) + 0.2
            self._wake_flush.wait(delay)
            self._wake_flush.clear()

    def _send_events(self) -> bool:
        for task_id, attempt, lease_token in self.spool.pending_event_attempts():
            while True:
                batch = self.spool.events_of(task_id, attempt, EVENTS_PER_BATCH)
                if not batch:
                    break
                try:
                    reply = self.client.tasks.append_events(task_id, lease_token, [event.body for event in batch])
                except (ControlPlaneUnavailable, Unauthorized, Forbidden) as exc:
                    return self._pass_stopped("events", exc)
                except ClientError as exc:
                    # Cannot be accepted ever (unknown lease, or refused content): keeping it would block the rest.
                    log.error("dropping %d events of task %s attempt %s: %s", len(batch), task_id, attempt, exc)
                    self.stats.events_dropped += len(batch)
                    self.spool.delete_events([event.id for event in batch])
                    break
                self._outage.ok()
                self.spool.delete_events([event.id for event in batch])
                self.stats.events_sent += reply.accepted
                self.stats.events_duplicate += reply.duplicates
                if len(batch) < EVENTS_PER_BATCH:
                    break
        return True

    def _send_reports(self) -> bool:
        now = time.time()
        for item in self.spool.outbox(("report",)):
            if item.not_before > now:
                continue
            try:
                reply = self.client.tasks.report(
                    item.task_id, item.lease_token, str(item.body["operation"]), dict(item.body["payload"])
                )
            except ControlPlaneUnavailable as exc:
                self._outage.failed("report", exc)
                self.spool.postpone(item.id, delay_s=0, error=str(exc))
                return False
            except ClientError as exc:
                log.warning(
                    "report %s of %s refused: %s",
                    item.body.get("operation"),
                    self._label(item.task_id, item.attempt),
                    exc,
                )
                self.reports.resolve(item.id, error=exc)
                self.spool.remove_outbox(item.id)
                if isinstance(exc, Unauthorized | Forbidden):
                    self._fatal(exc)
                    return False
                if isinstance(exc, LeaseLost):
                    with self._lock:
                        lease = self._held.get((item.task_id, item.attempt))
                    if lease is not None and lease.context is not None and not lease.concluded:
                        self._lease_lost(lease, f"a report was refused: {exc.detail}")
                continue
            self.stats.reports_sent += 1
            self.reports.resolve(item.id, reply=reply)
            self.spool.remove_outbox(item.id)
        return True

    def _ready_finals(self) -> list[OutboxItem]:
        now = time.time()
        return [
            item
            for item in self.spool.outbox(FINAL_KINDS)
            if item.not_before <= now and not self.spool.blocks_final(item.task_id, item.attempt, item.id)
        ]

    def _finalize_body(self, item: OutboxItem) -> dict[str, Any]:
        body = dict(item.body)
        upload_error = self.spool.upload_error(item.task_id, item.attempt)
        if upload_error and body.get("outcome") == "succeeded":
            body["outcome"] = "failed"
            body["error"] = clean_text(
                f"the task succeeded but artifacts could not be stored: {upload_error}", limit=MAX_MESSAGE_CHARS
            )
        return {"task_id": str(item.task_id), "lease_token": str(item.lease_token), **body}

    def _send_finals(self) -> bool:
        ready = self._ready_finals()
        finalizes = [item for item in ready if item.kind == "finalize"]
        for start in range(0, len(finalizes), FINALIZES_PER_BATCH):
            chunk = finalizes[start : start + FINALIZES_PER_BATCH]
            bodies = [self._finalize_body(item) for item in chunk]
            try:
                replies = self.client.tasks.finalize_many(bodies)
            except (ControlPlaneUnavailable, Unauthorized, Forbidden) as exc:
                return self._pass_stopped("finalize", exc)
            except ClientError as exc:
                log.warning("a finalize batch was refused as a whole (%s); sending its items one by one", exc)
                if not self._finalize_one_by_one(chunk, bodies):
                    return False
                continue
            self._outage.ok()
            for item, body, reply in zip(chunk, bodies, replies, strict=False):
                self._finalized(
                    item,
                    body,
                    ok=reply.ok,
                    status=reply.status,
                    task_status=reply.task_status,
                    replayed=reply.replayed,
                    error=reply.error,
                )
        if self._draining.is_set() and self._claimer_alive():
            # A long poll still in flight would be woken by the requeue and claim the task right back.
            return True
        releases = [item for item in ready if item.kind == "release"]
        return all(self._send_release(item) for item in releases)

    def _claimer_alive(self) -> bool:
        return any(thread.name == "executor-claimer" and thread.is_alive() for thread in self._threads)

    def _finalize_one_by_one(self, chunk: list[OutboxItem], bodies: list[dict[str, Any]]) -> bool:
        for item, body in zip(chunk, bodies, strict=True):
            try:
                reply = self.client.tasks.finalize(
                    item.task_id,
                    item.lease_token,
                    outcome=body["outcome"],
                    result=body.get("result"),
                    error=body.get("error"),
                )
            except ControlPlaneUnavailable as exc:
                self._outage.failed("finalize", exc)
                return False
            except ClientError as exc:
                self._finalized(
                    item, body, ok=False, status=exc.status, task_status=None, replayed=False, error=exc.detail
                )
                continue
            self._finalized(
                item, body, ok=True, status=200, task_status=reply.task_status, replayed=reply.replayed, error=None
            )
        return True

    def _finalized(
        self,
        item: OutboxItem,
        body: Mapping[str, Any],
        *,
        ok: bool,
        status: int,
        task_status: str | None,
        replayed: bool,
        error: str | None,
    ) -> None:
        outcome = str(body.get("outcome"))
        if ok:
            self.stats.outcomes[outcome] = self.stats.outcomes.get(outcome, 0) + 1
            log.info(
                "%s: %s recorded (task now %s)%s",
                self._label(item.task_id, item.attempt),
                outcome,
                task_status,
                " (repeat)" if replayed else "",
            )
        elif status == 422 and item.tries == 0:
            # The result was refused (it cannot be stored): keep the outcome, drop the result.
            label = self._label(item.task_id, item.attempt)
            log.warning("%s: the result was refused (%s); finalizing without it", label, error)
            self.spool.update_final_body(
                item.id,
                {
                    "outcome": outcome,
                    "result": {"result_refused": clean_text(error or "", limit=2000)},
                    "error": body.get("error"),
                },
            )
            self.spool.postpone(item.id, delay_s=0, error=error or "refused", count_try=True)
            return
        else:
            if status == 409:
                self.stats.leases_lost += 1
            log.warning(
                "%s: outcome %s not recorded (%s: %s)",
                self._label(item.task_id, item.attempt),
                outcome,
                status,
                error,
            )
        self._acknowledged(item)

    def _send_release(self, item: OutboxItem) -> bool:
        try:
            reply = self.client.tasks.release(item.task_id, item.lease_token, reason=item.body.get("reason"))
        except ControlPlaneUnavailable as exc:
            self._outage.failed("release", exc)
            return False
        except (LeaseLost, NotFound) as exc:
            log.info("%s: nothing to hand back (%s)", self._label(item.task_id, item.attempt), exc.detail)
        except ClientError as exc:
            log.warning("%s: handing the lease back failed: %s", self._label(item.task_id, item.attempt), exc)
        else:
            self.stats.released += 1
            log.info("%s: lease handed back (task now %s)", self._label(item.task_id, item.attempt), reply.task_status)
        self._acknowledged(item)
        return True

    def _acknowledged(self, item: OutboxItem) -> None:
        self.spool.forget_attempt(item.task_id, item.attempt)
        with self._lock:
            self._held.pop((item.task_id, item.attempt), None)
        with self._slots:
            self._slots.notify_all()

    # Uploads ------------------------------------------------------------------------------------------------

    def _upload_loop(self) -> None:
        failures = 0
        while not self._threads_stop.is_set():
            healthy = True
            now = time.time()
            for item in self.spool.outbox(("upload",)):
                if self._threads_stop.is_set():
                    break
                if item.not_before > now:
                    continue
                try:
                    self._upload(item)
                except ControlPlaneUnavailable as exc:
                    self._outage.failed("artifact upload", exc)
                    self.spool.postpone(item.id, delay_s=0, error=str(exc))
                    healthy = False
                    break
                except Exception as exc:
                    log.exception("uploading artifact %s failed; trying again", item.body.get("name"))
                    self.spool.postpone(item.id, delay_s=5.0, error=f"{type(exc).__name__}: {exc}")
            failures = 0 if healthy else failures + 1
            self._wake_upload.wait(1.0 if healthy else self.client.backoff_delay(min(failures, 5)) + 0.2)
            self._wake_upload.clear()

    def _upload(self, item: OutboxItem) -> None:
        body = item.body
        name = str(body["name"])
        staged = item.file
        if staged is None or not staged.is_file():
            self._give_up(item, "its copy in the spool is missing")
            return
        if file_sha256(staged) != body["sha256"]:
            self._give_up(item, "its copy in the spool no longer has the SHA-256 taken when it was queued")
            return
        try:
            ticket = self.client.artifacts.initiate(
                item.task_id,
                item.lease_token,
                name=name,
                size_bytes=int(body["size_bytes"]),
                sha256=str(body["sha256"]),
                content_type=str(body["content_type"]),
                metadata=body.get("metadata") or {},
            )
        except (LeaseLost, Conflict, InvalidRequest, NotFound, Forbidden) as exc:
            self._give_up(item, exc.detail)
            return
        if ticket.artifact is not None:
            self._stored(item, ticket.artifact)
            return
        if ticket.upload_id is None or ticket.upload_url is None:
            self._rejected(item, "the control plane returned no upload URL")
            return
        try:
            self.client.artifacts.send_bytes(ticket, staged)
        except Conflict:
            pass  # the bytes arrived on an earlier try: completing verifies them
        except (InvalidRequest, Forbidden, NotFound) as exc:
            self._rejected(item, f"the bytes were refused: {exc.detail}")
            return
        try:
            artifact = self.client.artifacts.complete(item.task_id, ticket.upload_id, item.lease_token)
        except (InvalidRequest, Conflict, NotFound) as exc:
            self._rejected(item, f"completing was refused: {exc.detail}")
            return
        self._stored(item, artifact)

    def _stored(self, item: OutboxItem, artifact: ArtifactPublic) -> None:
        self.stats.artifacts_stored += 1
        log.info(
            "artifact %s of %s stored (%d bytes, sha256 %s)",
            artifact.name,
            self._label(item.task_id, item.attempt),
            artifact.size_bytes,
            artifact.sha256[:12],
        )
        self.spool.remove_outbox(item.id)
        self._wake("final")

    def _rejected(self, item: OutboxItem, why: str) -> None:
        self.stats.uploads_rejected += 1
        name = item.body.get("name")
        if item.tries + 1 >= MAX_UPLOAD_TRIES:
            self._give_up(item, f"refused {MAX_UPLOAD_TRIES} times; last: {why}")
            return
        label = self._label(item.task_id, item.attempt)
        log.warning("artifact %s of %s: %s; sending it again from the spool", name, label, why)
        self._attempt_event(item, "artifact.retry", f"artifact {name}: {why}; sending it again", "warning")
        self.spool.postpone(item.id, delay_s=0, error=why, count_try=True)
        self._wake("upload")

    def _give_up(self, item: OutboxItem, why: str) -> None:
        self.stats.uploads_failed += 1
        name = item.body.get("name")
        log.error("artifact %s of %s cannot be stored: %s", name, self._label(item.task_id, item.attempt), why)
        self._attempt_event(item, "artifact.failed", f"artifact {name} cannot be stored: {why}", "error")
        self.spool.note_upload_error(item.task_id, item.attempt, f"{name}: {why}")
        self.spool.remove_outbox(item.id)
        self._wake("final")

    def _attempt_event(self, item: OutboxItem, type: str, message: str, level: str) -> None:
        # When the attempt's lease is gone, only the agent log has it.
        with contextlib.suppress(KeyError):
            self.spool.add_event(
                item.task_id, item.attempt, item.lease_token, make_event(type, message, level=level, data=None)
            )

    # Shutdown -----------------------------------------------------------------------------------------------

    def _shutdown(self) -> None:
        grace_deadline = time.monotonic() + self.settings.grace_period_s
        while self._working_count() and not self._forced.is_set() and time.monotonic() < grace_deadline:
            self._forced.wait(0.1)
        working = [lease for lease in self._leases() if lease.context is not None and not lease.concluded]
        if working:
            log.info("stopping %d running task(s); their leases are handed back", len(working))
            for lease in working:
                assert lease.context is not None
                lease.context.request_stop("shutdown")
            deadline = time.monotonic() + self.settings.kill_grace_s + ABANDON_AFTER_S
            while self._working_count() and time.monotonic() < deadline:
                with self._slots:
                    self._slots.wait(timeout=0.1)
            for lease in working:
                if not lease.concluded:
                    self._conclude(lease, None, 0.0)
        claimer = next((t for t in self._threads if t.name == "executor-claimer"), None)
        if claimer is not None:
            # A long poll in flight may still hand us tasks; they are released as they arrive.
            claimer.join(timeout=self.settings.claim_wait_s + self.settings.request_timeout_s)
        flush_deadline = time.monotonic() + SHUTDOWN_FLUSH_S
        while not self.spool.is_empty() and time.monotonic() < flush_deadline and not self.fatal_error:
            self._wake_flush.set()
            self._wake_upload.set()
            self._threads_stop.wait(0.1)
        self._threads_stop.set()
        self._wake_flush.set()
        self._wake_upload.set()
        for thread in self._threads:
            thread.join(timeout=self.settings.request_timeout_s)
        left_events, left_items = self.spool.count_events(), self.spool.count_outbox()
        if left_events or left_items:
            log.warning(
                "%d events and %d uploads/outcomes are still in the spool at %s; an agent started with this "
                "spool sends them",
                left_events,
                left_items,
                self.spool.directory,
            )
        log.info("stopped: %s", self.stats)
