"""The alert evaluator: fires incidents on task/run NOTIFYs and on a clock for time-based rules.

Every replica runs it; the same signal evaluated twice fires once (ops.fire_alert's unique
(rule, subject, window)), and the outbox rows of a firing commit with it. ``evaluate(now)`` and
``on_signal(..., now)`` take the time, so tests drive the clock instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from control_room.config import get_settings
from control_room.db import notify
from control_room.db.connection import connect_async
from control_room.db.tables import AlertRule
from control_room.services import alerts, notifications

log = logging.getLogger(__name__)

ALERTS_CHANNEL = "lakehouse_alerts"  # payload: task:<id> | run:<id> (20261203000500_alerts.sql)
EVENTS_CHANNEL = "lakehouse_events"  # payload: run id (append_events)
RULES_CHANGED = "rules"  # payload on ALERTS_CHANNEL when ops.alert_rules changes (20261204000510_*.sql)
RULES_TTL_SECONDS = 30.0
LEVEL_RANK = {"debug": 0, "info": 1, "warning": 2, "error": 3}
Row = dict[str, Any]


def utcnow() -> datetime:
    return datetime.now(UTC)


def _run_refs(run: Row) -> dict[str, Any]:
    """What an incident of a run signal refers to."""
    return {"project_id": run["project_id"], "run_id": run["id"], "job": run["job"],
            "route_rule_id": run["route_rule_id"]}  # fmt: skip


def _matches(rule: AlertRule, row: Row) -> bool:
    """Whether a run/task row is in a rule's scope (org, project, environment, template, pool)."""
    if rule.org_id != row["org_id"]:
        return False
    if rule.project_id is not None and rule.project_id != row.get("project_id"):
        return False
    if rule.match_environment is not None and rule.match_environment != row.get("environment"):
        return False
    if rule.match_template_id is not None and rule.match_template_id != row.get("template_id"):
        return False
    return rule.match_pool is None or rule.match_pool == row.get("pool")


@dataclass(frozen=True)
class Breach:
    """A subject a time-based rule finds in breach at this pass: fired once per ``window``."""

    subject: str
    window: str
    title: str
    summary: str
    refs: dict[str, Any] = field(default_factory=dict)


class AlertEvaluator:
    """Evaluates alert rules against signals; one instance per replica, any number of replicas."""

    def __init__(
        self, *, base_url: str | None = None, catch_up: timedelta = timedelta(minutes=10), rules_ttl: float = 0.0
    ) -> None:
        self.base_url = base_url or get_settings().alerts_public_url
        self.catch_up = catch_up
        self._event_marks: dict[str, int] = {}
        # With a TTL, the enabled rules are read once per TTL instead of once per signal; a change of
        # ops.alert_rules NOTIFYs "rules" on the alerts channel and drops the copy at once.
        self.rules_ttl = rules_ttl
        self._rules: tuple[float, list[AlertRule]] | None = None

    async def rules(self, conn: psycopg.AsyncConnection, kinds: tuple[str, ...]) -> list[AlertRule]:
        """The enabled rules of these kinds (from the copy while it is fresh)."""
        if self.rules_ttl <= 0:
            return await alerts.enabled_rules(conn, kinds)
        now = time.monotonic()
        if self._rules is None or now - self._rules[0] > self.rules_ttl:
            self._rules = (now, await alerts.enabled_rules(conn))
        return [rule for rule in self._rules[1] if rule.kind in kinds]

    def forget_rules(self) -> None:
        """Read the rules again at the next signal (they changed, or the NOTIFYs may have been missed)."""
        self._rules = None

    # Firing and resolving ----------------------------------------------------------------------

    async def fire(
        self,
        conn: psycopg.AsyncConnection,
        rule: AlertRule,
        *,
        subject: str,
        window: str,
        now: datetime,
        title: str,
        summary: str,
        **refs: Any,
    ) -> bool:
        """Fire once and queue its messages in the same transaction; True when this call fired."""
        async with conn.transaction():
            firing = await alerts.fire(
                conn, rule_id=rule.id, subject=subject, window=window, at=now, title=title, summary=summary, **refs
            )
            if firing is None:
                return False
            if (
                firing.kind == "fired"
                and not firing.snoozed
                and not await alerts.active_mute(conn, org_id=rule.org_id, job=refs.get("job"), now=now)
            ):
                incident = await alerts.incident(conn, firing.incident_id)
                assert incident is not None
                await self._announce(conn, incident, event_id=firing.event_id, event_kind="fired", now=now)
        return True

    async def resolve(
        self, conn: psycopg.AsyncConnection, rule: AlertRule, *, subject: str, now: datetime, reason: str
    ) -> bool:
        """Resolve (rule, subject) when its condition cleared, telling whoever heard of it."""
        async with conn.transaction():
            done = await alerts.resolve(conn, rule_id=rule.id, subject=subject, at=now, reason=reason)
            if done is None:
                return False
            incident = await alerts.incident(conn, done[0])
            assert incident is not None
            if not await alerts.active_mute(conn, org_id=rule.org_id, job=incident["job"], now=now):
                await self._announce(conn, incident, event_id=done[1], event_kind="resolved", now=now)
        return True

    async def _announce(
        self,
        conn: psycopg.AsyncConnection,
        incident: Row,
        *,
        event_id: int,
        event_kind: str,
        now: datetime,
        targets: list[str] | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Queue the messages of one incident event (to its rule's targets and routing owner unless told)."""
        await notifications.plan_and_enqueue(
            conn,
            incident=incident,
            event_id=event_id,
            event_kind=event_kind,
            now=now,
            base_url=self.base_url,
            targets=targets if targets is not None else await self._targets(conn, incident),
            detail=detail,
        )

    async def _targets(self, conn: psycopg.AsyncConnection, incident: Row) -> list[str]:
        targets = list(incident["notify"])
        if incident["escalate"]:
            owner = await alerts.route_owner(conn, incident["route_rule_id"])
            if owner:
                targets.append(owner)
        return targets

    # Event-driven signals --------------------------------------------------------------------------

    async def on_signal(self, conn: psycopg.AsyncConnection, channel: str, payload: str, now: datetime) -> int:
        """Evaluate one NOTIFY: a task or run that ended, or new events of a run; returns firings made."""
        if channel == EVENTS_CHANNEL:
            return await self._on_events(conn, payload, now)
        if payload == RULES_CHANGED:
            self.forget_rules()
            return 0
        kind, _, ident = payload.partition(":")
        if kind == "run":
            return await self._on_run(conn, ident, now)
        if kind == "task":
            return await self._on_task(conn, ident, now)
        return 0

    async def _on_run(self, conn: psycopg.AsyncConnection, run_id: str, now: datetime) -> int:
        run = await alerts.run_signal(conn, run_id, now)
        if run is None or run["status"] not in ("succeeded", "failed", "cancelled"):
            return 0
        return await self._evaluate_run(conn, run, now)

    async def _evaluate_run(self, conn: psycopg.AsyncConnection, run: Row, now: datetime) -> int:
        fired = 0
        job, refs = run["job"], _run_refs(run)
        at = run["finished_at"] or now
        for rule in await self.rules(conn, ("run_failed", "task_failed", "run_duration", "event_match")):
            if not _matches(rule, run):
                continue
            kind = rule.kind
            if kind == "run_failed":
                if run["status"] == "failed":
                    failed = ", ".join(run["failed_tasks"] or [])
                    fired += await self.fire(
                        conn,
                        rule,
                        subject=f"job:{job}",
                        window=f"run:{run['id']}",
                        now=at,
                        title=f"Run of {job} failed ({run['environment']})",
                        summary=f"Run {run['name']} failed"
                        + (f": task(s) {failed}" if failed else "")
                        + (f" - {run['error']}" if run["error"] else ""),
                        **refs,
                    )
                elif run["status"] == "succeeded":
                    await self.resolve(conn, rule, subject=f"job:{job}", now=at, reason=f"run {run['id']} succeeded")
            elif kind == "task_failed" and run["status"] == "succeeded":
                for subject in await alerts.open_subjects(conn, rule_id=rule.id):
                    if subject.startswith(f"task:{job}/"):
                        await self.resolve(conn, rule, subject=subject, now=at, reason=f"run {run['id']} succeeded")
            elif kind == "run_duration" and run["status"] in ("succeeded", "failed"):
                fired += await self._check_duration(conn, rule, run, now, finished=True)
            elif kind == "event_match":
                await self.resolve(conn, rule, subject=f"run:{run['id']}", now=at, reason=f"run ended {run['status']}")
        return fired

    async def _check_duration(
        self, conn: psycopg.AsyncConnection, rule: AlertRule, run: Row, now: datetime, *, finished: bool
    ) -> int:
        limit = float(rule.threshold) if rule.threshold else None
        basis = f"{limit:.0f} s" if limit else ""
        if rule.factor:
            p95 = await alerts.job_duration_p95(
                conn, project_id=run["project_id"], job=run["job"], last=rule.baseline_runs, before=run["id"]
            )
            if p95 is not None:
                by_p95 = float(rule.factor) * p95
                if limit is None or by_p95 < limit:
                    limit, basis = by_p95, f"{rule.factor} x p95 ({p95:.1f} s) of the last runs"
        subject = f"job:{run['job']}"
        if limit is None:
            return 0
        if run["duration_s"] > limit:
            return int(
                await self.fire(
                    conn,
                    rule,
                    subject=subject,
                    window=f"run:{run['id']}",
                    now=now,
                    title=f"Run of {run['job']} is slow: {run['duration_s']:.0f} s",
                    summary=f"Run {run['name']} took {run['duration_s']:.0f} s, over {basis}",
                    **_run_refs(run),
                )
            )
        if finished:
            await self.resolve(conn, rule, subject=subject, now=now, reason=f"run {run['id']} within {basis}")
        return 0

    async def _on_task(self, conn: psycopg.AsyncConnection, task_id: str, now: datetime) -> int:
        task = await alerts.task_signal(conn, task_id)
        if task is None or task["status"] not in alerts.TERMINAL_FAILURES:
            return 0
        fired = 0
        for rule in await self.rules(conn, ("task_failed",)):
            if _matches(rule, task):
                fired += await self.fire(
                    conn,
                    rule,
                    subject=f"task:{task['job']}/{task['key']}",
                    window=f"task:{task['id']}",
                    now=task["finished_at"] or now,
                    title=f"Task {task['key']} of {task['job']} {task['status']} after {task['attempt']} attempt(s)",
                    summary=task["error"] or f"task {task['key']} ended {task['status']}",
                    project_id=task["project_id"],
                    run_id=task["run_id"],
                    task_id=task["id"],
                    job=task["job"],
                    route_rule_id=task["route_rule_id"],
                )
        return fired

    async def _on_events(self, conn: psycopg.AsyncConnection, run_id: str, now: datetime) -> int:
        rules = await self.rules(conn, ("event_match",))
        if not rules:
            return 0
        run = await alerts.run_signal(conn, run_id, now)
        if run is None:
            return 0
        fired = 0
        events = await alerts.events_after(conn, run_id=run_id, after_id=self._event_marks.get(run_id, 0))
        for event in events:
            for rule in rules:
                if not _matches(rule, run) or event["type"] != rule.event_type:
                    continue
                if LEVEL_RANK[event["level"]] < LEVEL_RANK[rule.event_level or "debug"]:
                    continue
                if any(event["data"].get(k) != v for k, v in rule.event_attributes.items()):
                    continue
                fired += await self.fire(
                    conn,
                    rule,
                    subject=f"run:{run_id}",
                    window=f"event:{event['id']}",
                    now=event["ts"],
                    title=f"{event['type']} ({event['level']}) in run of {run['job']}",
                    summary=event["message"],
                    task_id=event["task_id"],
                    **_run_refs(run),
                )
        if events:
            self._event_marks[run_id] = events[-1]["id"]
        return fired

    async def catch_up_since(self, conn: psycopg.AsyncConnection, since: datetime, now: datetime) -> int:
        """Re-evaluate what ended while no NOTIFY could be heard (start, reconnect); firing is idempotent."""
        fired = 0
        for task in await alerts.recently_failed_tasks(conn, since):
            fired += await self._on_task(conn, str(task["id"]), now)
        for run in await alerts.recently_finished_runs(conn, since, now):
            fired += await self._evaluate_run(conn, run, now)
        return fired

    # Time-based rules ------------------------------------------------------------------------------

    async def evaluate(self, conn: psycopg.AsyncConnection, now: datetime) -> int:
        """One periodic pass at ``now``: SLA, queue wait, offline, caps, schedules, freshness, slow running
        runs, then escalations. Each rule is evaluated on its own: one failing never stops the others."""
        fired = 0
        for rule in await self.rules(
            conn,
            (
                "sla",
                "queue_wait",
                "executor_offline",
                "cap_breach",
                "schedule_missed",
                "dataset_freshness",
                "run_duration",
            ),
        ):
            try:
                fired += await getattr(self, f"_periodic_{rule.kind}")(conn, rule, now)
            except Exception:
                log.exception("alert rule %s (%s) failed to evaluate", rule.name, rule.kind)
        await self.escalate(conn, now)
        return fired

    async def escalate(self, conn: psycopg.AsyncConnection, now: datetime) -> int:
        """Page the next level of the routing owner's chain for incidents nobody acknowledged in time."""
        async with conn.transaction():
            rows = await alerts.escalate_due(conn, now=now)
            for row in rows:
                incident = await alerts.incident(conn, row["incident_id"])
                assert incident is not None
                await self._announce(
                    conn, incident, event_id=row["event_id"], event_kind="escalated", now=now,
                    targets=[row["target"]], detail={"level": row["level"]},
                )  # fmt: skip
        return len(rows)

    async def _fire_breaches(
        self,
        conn: psycopg.AsyncConnection,
        rule: AlertRule,
        now: datetime,
        breaches: Iterable[Breach],
        *,
        cleared: str | None,
    ) -> int:
        """Fire every breach found at this pass; with a ``cleared`` reason, also resolve the rule's open
        incidents whose subject is in breach no more."""
        fired, firing = 0, set()
        for breach in breaches:
            firing.add(breach.subject)
            fired += await self.fire(
                conn, rule, subject=breach.subject, window=breach.window, now=now, title=breach.title,
                summary=breach.summary, **breach.refs,
            )  # fmt: skip
        if cleared is not None:
            for subject in await alerts.open_subjects(conn, rule_id=rule.id):
                if subject not in firing:
                    await self.resolve(conn, rule, subject=subject, now=now, reason=cleared)
        return fired

    async def _periodic_run_duration(self, conn: psycopg.AsyncConnection, rule: AlertRule, now: datetime) -> int:
        fired = 0
        for run in await alerts.running_runs(conn, now):
            if _matches(rule, run):
                fired += await self._check_duration(conn, rule, run, now, finished=False)
        return fired

    async def _periodic_sla(self, conn: psycopg.AsyncConnection, rule: AlertRule, now: datetime) -> int:
        due, day = await alerts.local_day_start(conn, now=now, timezone=rule.sla_timezone, at=rule.sla_time)
        day_start, _ = await alerts.local_day_start(conn, now=now, timezone=rule.sla_timezone, at="00:00")
        late = [
            Breach(
                subject=f"job:{job['job']}",
                window=f"sla:{day}",
                title=f"{job['job']} has not succeeded by {rule.sla_time} {rule.sla_timezone}",
                summary=f"Last success: {job['last_success'] or 'never'}",
                refs={"project_id": job["project_id"], "job": job["job"]},
            )
            for job in await alerts.job_last_success(conn, org_id=rule.org_id, rule=rule)
            if now >= due and (job["last_success"] is None or job["last_success"] < day_start)
        ]
        return await self._fire_breaches(conn, rule, now, late, cleared="the job succeeded (or a new SLA day began)")

    async def _periodic_queue_wait(self, conn: psycopg.AsyncConnection, rule: AlertRule, now: datetime) -> int:
        assert rule.threshold is not None  # a check of ops.alert_rules for queue_wait rules
        tasks = await alerts.queued_too_long(
            conn, org_id=rule.org_id, seconds=rule.threshold, pool=rule.match_pool, now=now
        )
        waiting = [
            Breach(
                subject=f"pool:{task['pool']}",
                window=f"task:{task['id']}",
                title=f"Tasks wait over {rule.threshold} s in pool {task['pool']}",
                summary=f"Task {task['key']} queued {task['waited_s']:.0f} s: {task['why']}",
                refs={
                    "project_id": task["project_id"],
                    "run_id": task["run_id"],
                    "task_id": task["id"],
                    "route_rule_id": task["route_rule_id"],
                },
            )
            for task in tasks
            if rule.project_id is None or task["project_id"] == rule.project_id
        ]
        return await self._fire_breaches(conn, rule, now, waiting, cleared="no task waits over the threshold")

    async def _periodic_executor_offline(self, conn: psycopg.AsyncConnection, rule: AlertRule, now: datetime) -> int:
        after = timedelta(seconds=rule.threshold or get_settings().executor_offline_after_seconds)
        offline: list[Breach] = []
        pools: dict[str, list[Row]] = {}
        for ex in await alerts.executors_of_org(conn, org_id=rule.org_id, pool=rule.match_pool):
            pools.setdefault(ex["pool"], []).append(ex)
            silent = ex["last_heartbeat_at"] is None or now - ex["last_heartbeat_at"] > after
            if ex["status"] in ("online", "draining", "offline") and silent and ex["status"] != "pending":
                offline.append(
                    Breach(
                        subject=f"executor:{ex['name']}",
                        window=f"hb:{ex['last_heartbeat_at']}",
                        title=f"Executor {ex['name']} is offline (pool {ex['pool']})",
                        summary=f"Last heartbeat: {ex['last_heartbeat_at'] or 'never'}",
                    )
                )
        for pool, members in pools.items():
            alive = [
                m
                for m in members
                if m["status"] in ("online", "draining")
                and m["last_heartbeat_at"]
                and now - m["last_heartbeat_at"] <= after
            ]
            if not alive:
                last = max((m["last_heartbeat_at"] for m in members if m["last_heartbeat_at"]), default=None)
                offline.append(
                    Breach(
                        subject=f"pool:{pool}",
                        window=f"hb:{last}",
                        title=f"Pool {pool} has no online executor",
                        summary=f"{len(members)} executor(s), none online",
                    )
                )
        return await self._fire_breaches(conn, rule, now, offline, cleared="executors are back online")

    async def _periodic_cap_breach(self, conn: psycopg.AsyncConnection, rule: AlertRule, now: datetime) -> int:
        day = now.astimezone(UTC).date()
        over = [
            breach
            for cap in await alerts.cap_levels(conn, org_id=rule.org_id, day=day)
            if (breach := _cap_breach(cap, day, rule.cap_percent)) is not None
        ]
        return await self._fire_breaches(conn, rule, now, over, cleared="caps are below their thresholds")

    async def _periodic_schedule_missed(self, conn: psycopg.AsyncConnection, rule: AlertRule, now: datetime) -> int:
        since = now - timedelta(seconds=rule.window_s or 86_400)
        missed = [
            Breach(
                subject=f"schedule:{fire['schedule_id']}",
                window=f"fire:{fire['id']}",
                title=f"Schedule {fire['schedule']} {fire['status']} its {fire['fire_time']:%Y-%m-%d %H:%M} fire",
                summary=fire["reason"] or "",
                refs={"project_id": fire["project_id"]},
            )
            for fire in await alerts.schedule_fires_missed(
                conn, org_id=rule.org_id, project_id=rule.project_id, since=since
            )
        ]
        return await self._fire_breaches(conn, rule, now, missed, cleared=None)

    async def _periodic_dataset_freshness(self, conn: psycopg.AsyncConnection, rule: AlertRule, now: datetime) -> int:
        stale: list[Breach] = []
        for ds in await alerts.dataset_writes(conn, org_id=rule.org_id, rule=rule):
            age = (now - ds["last_write"]).total_seconds()
            if age > rule.threshold:
                stale.append(
                    Breach(
                        subject=f"dataset:{ds['id']}",
                        window=f"write:{ds['last_run_id']}",
                        title=f"Dataset {ds['name']} is stale ({age / 3600:.1f} h old)",
                        summary=f"Expected a write every {rule.threshold} s; last written by run {ds['last_run_id']}",
                        refs={"project_id": ds["project_id"], "run_id": ds["last_run_id"]},
                    )
                )
        return await self._fire_breaches(conn, rule, now, stale, cleared="the dataset was written again")



def _cap_breach(cap: Row, day: date, cap_percent: int | None) -> Breach | None:
    """A per-day cap that refused work today, or whose usage reached the rule's share of its limit; else None."""
    name, kind, limit, used = cap["name"], cap["kind"], cap["limit_value"], cap["used"]
    share = float(used) * 100 / limit if used is not None and limit else None
    if cap["breaches"] > 0:
        window = f"{day}:refusals:{cap['breaches']}"
        title, summary = f"Cap {name} refused work ({cap['breaches']} today)", f"{kind} limit {limit}"
    elif cap_percent and share is not None and share >= cap_percent:
        window = f"{day}:usage"
        title, summary = f"Cap {name} at {share:.0f} % of its limit", f"{kind}: {used} of {limit}"
    else:
        return None
    return Breach(f"cap:{name}", window, title, summary, refs={"project_id": cap["project_id"]})

async def run_alert_evaluator(database_url: str, *, clock: Callable[[], datetime] = utcnow) -> None:
    """Forever: LISTEN for task/run endings and run events, evaluate each; evaluate time-based rules
    every interval. Reconnects (and catches up on what ended meanwhile) after a lost connection."""
    settings = get_settings()
    evaluator = AlertEvaluator(rules_ttl=RULES_TTL_SECONDS)
    interval = settings.alerts_evaluate_interval_seconds
    since = clock() - evaluator.catch_up
    while True:
        try:
            async with await connect_async(database_url) as listen, await connect_async(database_url) as conn:
                await notify.listen(listen, ALERTS_CHANNEL, EVENTS_CHANNEL)
                evaluator.forget_rules()  # changes made while not listening were not heard
                await evaluator.catch_up_since(conn, since, clock())
                next_tick = 0.0
                loop = asyncio.get_running_loop()
                while True:
                    if loop.time() >= next_tick:
                        await evaluator.evaluate(conn, clock())
                        next_tick = loop.time() + interval
                    with contextlib.suppress(TimeoutError):
                        async for note in listen.notifies(timeout=max(0.05, next_tick - loop.time())):
                            try:
                                await evaluator.on_signal(conn, note.channel, note.payload, clock())
                            except Exception:
                                log.exception("alert evaluation of %s %s failed", note.channel, note.payload)
                    since = clock() - timedelta(seconds=interval)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("alert evaluator failed; reconnecting in %.1fs", interval)
            await asyncio.sleep(min(interval, 5))
