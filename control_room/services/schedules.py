"""Schedules: cron fire times in a time zone (DST rules below), the scheduler's tick, pause, resume, fire now.

Fire times are computed on the local wall clock of the schedule's zone, then mapped to instants:

* A wall time that does not exist (spring-forward gap, e.g. 02:30 on the last Sunday of March in
  Europe/Berlin) fires shifted forward by the gap's length (03:30 local), as Python's zoneinfo
  resolves it (PEP 495, fold=0). If the shifted instant coincides with another fire of the same
  schedule (an hourly ``15 * * * *`` at 02:15 -> 03:15), they are one fire.
* A wall time that happens twice (fall-back, e.g. 02:30 on the last Sunday of October in Europe/Berlin)
  fires once, at its first occurrence, unless the cron's hour field is ``*`` (hourly and finer
  schedules): those also fire in the repeated hour, so an hourly job still runs every real hour.

Each (schedule, fire time) fires at most once: ``ops.schedule_fires`` has a unique key on it and the
claim of due schedules (``FOR UPDATE SKIP LOCKED``) advances ``next_fire_at`` in the same
transaction, so any number of replicas may tick at once. Every function that depends on the time
takes it as an argument (``now``); nothing here reads the clock.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterError
from psycopg import AsyncConnection, sql

from control_room.db.rows import first_dict_row, first_model, scalar
from control_room.db.tables import JobTemplateVersion, Schedule
from control_room.services.errors import Invalid, the_only_id, visible
from control_room.services.jobs import validate_params
from control_room.services.pagination import ListQuery, fetch_rows
from control_room.services.row_detail import RowDetail

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
CATCHUP_POLICIES = ("none", "latest", "all")
OVERLAP_POLICIES = ("allow", "skip", "cancel_previous", "queue_one")
# After a long outage a minutely schedule would owe thousands of fires: only this many newest
# missed ones are recorded one by one (the oldest recorded says how far back the gap goes).
MISSED_RECORD_LIMIT = 100
_DST_MARGIN = timedelta(hours=3)  # larger than any DST shift in the tz database
_MINUTE = timedelta(minutes=1)


# Cron expressions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CronFields:
    """A parsed five-field expression; ``fast`` when every field is a plain set (no L, #, ...)."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # cron numbering: 0 = Sunday
    any_day: bool
    any_weekday: bool
    hour_wildcard: bool
    fast: bool


@lru_cache(maxsize=4096)
def parse_cron(expression: str) -> CronFields:
    """Parse (and validate) a cron expression or macro; raises Invalid naming ``cron``."""
    text = MACROS.get(expression.strip().lower(), expression.strip())
    if len(text.split()) != 5:
        raise Invalid(
            f'"{expression}" needs five fields (minute hour day-of-month month day-of-week) or a macro such as @hourly',
            field="cron",
        )
    try:
        expanded, nth = croniter.expand(text)
    except (CroniterError, ValueError) as exc:
        raise Invalid(f'"{expression}" is not a valid cron expression: {exc}', field="cron") from exc
    fast = not nth and all(all(isinstance(v, int) or v == "*" for v in values) for values in expanded)

    def as_set(values: list[Any], full: range) -> frozenset[int]:
        if values == ["*"]:
            return frozenset(full)
        return frozenset(v for v in values if isinstance(v, int))

    hour_field = text.split()[1]
    return CronFields(
        expression=text,
        minutes=as_set(expanded[0], range(60)),
        hours=as_set(expanded[1], range(24)),
        days=as_set(expanded[2], range(1, 32)),
        months=as_set(expanded[3], range(1, 13)),
        weekdays=frozenset((v % 7) for v in as_set(expanded[4], range(7))),
        any_day=expanded[2] == ["*"],
        any_weekday=expanded[4] == ["*"],
        hour_wildcard=hour_field in ("*", "*/1"),
        fast=fast,
    )


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise Invalid(f'"{name}" is not a time zone name such as "UTC" or "Europe/Paris"', field="timezone") from exc


def _day_matches(cron: CronFields, day: datetime) -> bool:
    dom = day.day in cron.days
    dow = ((day.weekday() + 1) % 7) in cron.weekdays
    if cron.any_day and cron.any_weekday:
        return True
    if cron.any_day:
        return dow
    if cron.any_weekday:
        return dom
    return dom or dow  # both restricted: cron fires when either matches


def _next_wall(cron: CronFields, after: datetime) -> datetime:
    """The first matching wall time strictly after ``after`` (naive, minute resolution)."""
    if not cron.fast:
        result: datetime = croniter(cron.expression, after).get_next(datetime)
        return result
    t = after.replace(second=0, microsecond=0) + _MINUTE
    limit = t + timedelta(days=366 * 8)  # 29 February on a Monday can take years
    while t < limit:
        if t.month not in cron.months:
            year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
            t = datetime(year, month, 1)
            continue
        if not _day_matches(cron, t):
            t = datetime(t.year, t.month, t.day) + timedelta(days=1)
            continue
        if t.hour not in cron.hours:
            later = [h for h in cron.hours if h > t.hour]
            t = t.replace(hour=min(later), minute=0) if later else datetime(t.year, t.month, t.day) + timedelta(days=1)
            continue
        if t.minute not in cron.minutes:
            later = [m for m in cron.minutes if m > t.minute]
            t = t.replace(minute=min(later)) if later else t.replace(minute=0) + timedelta(hours=1)
            continue
        return t
    raise Invalid(f'"{cron.expression}" never fires', field="cron")


def _prev_wall(cron: CronFields, before: datetime) -> datetime:
    """The last matching wall time strictly before ``before`` (naive, minute resolution)."""
    if not cron.fast:
        result: datetime = croniter(cron.expression, before).get_prev(datetime)
        return result
    t = before.replace(second=0, microsecond=0)
    t = t - _MINUTE if t == before else t
    limit = t - timedelta(days=366 * 8)
    while t > limit:
        if t.month not in cron.months:
            t = datetime(t.year, t.month, 1) - _MINUTE
            continue
        if not _day_matches(cron, t):
            t = datetime(t.year, t.month, t.day) - _MINUTE
            continue
        if t.hour not in cron.hours:
            earlier = [h for h in cron.hours if h < t.hour]
            t = t.replace(hour=max(earlier), minute=59) if earlier else datetime(t.year, t.month, t.day) - _MINUTE
            continue
        if t.minute not in cron.minutes:
            earlier = [m for m in cron.minutes if m < t.minute]
            t = t.replace(minute=max(earlier)) if earlier else t.replace(minute=59) - timedelta(hours=1)
            continue
        return t
    raise Invalid(f'"{cron.expression}" never fires', field="cron")


@dataclass(frozen=True)
class CronSchedule:
    """A cron expression read in a time zone; every instant in and out is an aware UTC datetime."""

    cron: CronFields
    zone: ZoneInfo

    @classmethod
    def of(cls, expression: str, timezone: str = "UTC") -> CronSchedule:
        return cls(parse_cron(expression), _zone(timezone))

    def _wall(self, t: datetime) -> datetime:
        return t.astimezone(self.zone).replace(tzinfo=None)

    def _near_transition(self, t: datetime) -> bool:
        before = (t - _DST_MARGIN).astimezone(self.zone).utcoffset()
        return before != (t + _DST_MARGIN).astimezone(self.zone).utcoffset()

    def instants(self, wall: datetime) -> list[datetime]:
        """The UTC instants a matching wall time fires at (see the module docstring for DST)."""
        first = wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
        second = wall.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
        if first >= second:  # one instant, or a gap: fold=0 is the time shifted forward
            return [first]
        return [first, second] if self.cron.hour_wildcard else [first]

    def next_after(self, t: datetime) -> datetime:
        """The first fire instant strictly after ``t``."""
        near = self._near_transition(t)
        wall = self._wall(t - _DST_MARGIN if near else t)
        best: datetime | None = None
        stop: datetime | None = None
        while True:
            wall = _next_wall(self.cron, wall)
            if stop is not None and wall > stop:
                return best  # type: ignore[return-value]
            for instant in self.instants(wall):
                if instant > t and (best is None or instant < best):
                    best = instant
            if best is not None and stop is None:
                if not near and not self._near_transition(best):
                    return best
                stop = wall + 2 * _DST_MARGIN

    def fires_between(self, lo: datetime, hi: datetime, *, limit: int) -> tuple[list[datetime], datetime | None, bool]:
        """Fire instants in ``[lo, hi]``: the newest ``limit`` of them ascending, the fire before the
        oldest one returned (its data interval start), and whether older ones in range were left out.

        Walks the wall clock backwards from ``hi``, so a long outage costs ``limit`` steps, not one per
        missed fire."""
        wall = self._wall(hi + _DST_MARGIN if self._near_transition(hi) else hi) + timedelta(microseconds=1)
        found: set[datetime] = set()
        stop_wall: datetime | None = None
        while True:
            wall = _prev_wall(self.cron, wall)
            instants = self.instants(wall)
            found.update(instants)
            enough = any(i < lo for i in found) or sum(1 for i in found if lo <= i <= hi) > limit
            if enough:
                # Earlier walls give earlier instants, unless a DST shift lies near: then walk on a bit.
                if not self._near_transition(min(instants)):
                    break
                stop_wall = stop_wall or wall - 2 * _DST_MARGIN
                if wall < stop_wall:
                    break
        in_range = sorted((i for i in found if lo <= i <= hi), reverse=True)
        below = [i for i in found if i < lo]
        truncated = len(in_range) > limit
        previous = in_range[limit] if truncated else (max(below) if below else None)
        return sorted(in_range[:limit]), previous, truncated

    def previous_before(self, t: datetime) -> datetime | None:
        """The last fire instant strictly before ``t``."""
        return self.fires_between(t, t, limit=1)[1]

    def upcoming(self, after: datetime, count: int) -> list[datetime]:
        """The next ``count`` fire instants after ``after``."""
        result = []
        t = after
        for _ in range(count):
            t = self.next_after(t)
            result.append(t)
        return result


def jitter_offset(schedule_id: uuid.UUID, fire_time: datetime, jitter_s: int) -> timedelta:
    """A stable pseudo-random delay in [0, jitter_s] seconds: every replica computes the same one."""
    if jitter_s <= 0:
        return timedelta(0)
    digest = hashlib.sha256(f"{schedule_id}|{fire_time.astimezone(UTC).isoformat()}".encode()).digest()
    return timedelta(seconds=int.from_bytes(digest[:8], "big") % (jitter_s + 1))


def interval_params(fire_time: datetime, interval_start: datetime | None) -> dict[str, str]:
    """The params a fire passes to its run: its logical date and the data interval it closes."""
    end = fire_time.astimezone(UTC).isoformat()
    start = (interval_start or fire_time).astimezone(UTC).isoformat()
    return {"logical_date": end, "data_interval_start": start, "data_interval_end": end}


# The scheduler's decisions (pure) -----------------------------------------------------------------


@dataclass(frozen=True)
class DueSchedule:
    """A claimed schedule whose next fire is due."""

    id: uuid.UUID
    cron: str
    timezone: str
    params: dict[str, Any]
    catchup: str
    catchup_limit: int
    jitter_s: int
    misfire_grace_s: int
    next_fire_at: datetime
    template_version: int | None = None
    params_schema: dict[str, Any] | None = None


@dataclass
class Plan:
    """What to record for one schedule: fires (status fire|missed|failed) and its next fire."""

    fires: list[dict[str, Any]] = field(default_factory=list)
    next_fire_at: datetime | None = None
    next_due_at: datetime | None = None


# A burst of due schedules is mostly a few cron expressions due at the same instant (every hourly
# schedule at :00): their fire instants are computed once per batch, not once per schedule.
@lru_cache(maxsize=4096)
def _fires_between(
    expression: str, timezone: str, lo: datetime, hi: datetime, limit: int
) -> tuple[tuple[datetime, ...], datetime | None, bool]:
    times, before_oldest, truncated = CronSchedule.of(expression, timezone).fires_between(lo, hi, limit=limit)
    return tuple(times), before_oldest, truncated


@lru_cache(maxsize=4096)
def _next_after(expression: str, timezone: str, t: datetime) -> datetime:
    return CronSchedule.of(expression, timezone).next_after(t)


def plan_due(schedule: DueSchedule, now: datetime) -> Plan:
    """Decide the fires of a due schedule at ``now`` by its catch-up policy, and plan its next fire."""
    bound = max(schedule.catchup_limit if schedule.catchup == "all" else 1, MISSED_RECORD_LIMIT)
    zone = schedule.timezone
    times, before_oldest, truncated = _fires_between(schedule.cron, zone, schedule.next_fire_at, now, bound)
    due = [t for t in times if t + jitter_offset(schedule.id, t, schedule.jitter_s) <= now]
    waiting = [t for t in times if t not in due]
    plan = Plan()
    plan.next_fire_at = min(waiting) if waiting else _next_after(schedule.cron, zone, now)
    plan.next_due_at = plan.next_fire_at + jitter_offset(schedule.id, plan.next_fire_at, schedule.jitter_s)
    if not due:
        return plan

    def due_at(t: datetime) -> datetime:
        return t + jitter_offset(schedule.id, t, schedule.jitter_s)

    firing: list[datetime]
    missed: dict[datetime, str] = {}
    if schedule.catchup == "all":
        firing = due[-schedule.catchup_limit :]
        for t in due[: -schedule.catchup_limit or None] if len(due) > schedule.catchup_limit else []:
            missed[t] = f"catch-up=all: beyond the bound of {schedule.catchup_limit} fires"
    elif schedule.catchup == "latest":
        firing = due[-1:]
        for t in due[:-1]:
            missed[t] = f"catch-up=latest: superseded by the fire at {due[-1].isoformat()}"
    else:
        firing = []
        for t in due:
            late = (now - due_at(t)).total_seconds()
            if late <= schedule.misfire_grace_s:
                firing.append(t)
            else:
                missed[t] = (
                    f"catch-up=none: {int(late)} s late, beyond misfire_grace_s={schedule.misfire_grace_s} "
                    "(was the control plane down?)"
                )
    if truncated and missed:
        oldest = min(missed)
        missed[oldest] += f"; earlier fires since {schedule.next_fire_at.isoformat()} were missed too (not listed)"

    failure: str | None = None
    params = dict(schedule.params)
    if schedule.params_schema is None:
        failure = "run not submitted: the job template has no version"
    else:
        try:
            params = validate_params(schedule.params_schema, params)
        except Invalid as exc:
            failure = f"run not submitted: params {exc.field}: {exc.message}"

    ordered = sorted(set(due))
    for index, t in enumerate(ordered):
        start = ordered[index - 1] if index > 0 else before_oldest
        record: dict[str, Any] = {
            "schedule_id": str(schedule.id),
            "fire_time": t.isoformat(),
            "due_at": due_at(t).isoformat(),
            "template_version": schedule.template_version,
        }
        if t in missed:
            record.update(status="missed", reason=missed[t])
        elif failure:
            record.update(status="failed", reason=failure)
        else:
            record.update(status="fire", params={**params, **interval_params(t, start)})
        plan.fires.append(record)
    return plan


# The scheduler's tick (database) ----------------------------------------------------------------------


@dataclass
class TickResult:
    """What one tick did."""

    planned: int = 0
    claimed: int = 0
    fires: dict[str, int] = field(default_factory=dict)
    released: int = 0
    backfill_runs: int = 0

    def add(self, counts: dict[str, int]) -> None:
        for status, n in counts.items():
            self.fires[status] = self.fires.get(status, 0) + n


PLAN_BATCH = 1000


async def plan_unplanned(conn: AsyncConnection, now: datetime, *, batch: int = PLAN_BATCH) -> int:
    """Give new, changed or resumed schedules their next fire after ``now``; returns how many."""
    async with conn.transaction():
        cur = await conn.execute(
            "select id, cron, timezone, jitter_s from ops.schedules "
            "where enabled and paused_at is null and next_due_at is null limit %s for update skip locked",
            (batch,),
        )
        rows = await cur.fetchall()
        if not rows:
            return 0
        ids, fires, dues = [], [], []
        for schedule_id, cron, timezone, jitter_s in rows:
            try:
                nxt = CronSchedule.of(cron, timezone).next_after(now)
            except Invalid:
                continue  # the bundle validates cron and zone; a bad row stays unplanned (and visible)
            ids.append(schedule_id)
            fires.append(nxt)
            dues.append(nxt + jitter_offset(schedule_id, nxt, jitter_s))
        await conn.execute(
            "update ops.schedules s set next_fire_at = p.f, next_due_at = p.d "
            "from unnest(%s::uuid[], %s::timestamptz[], %s::timestamptz[]) as p(id, f, d) where s.id = p.id",
            (ids, fires, dues),
        )
        return len(ids)


_CLAIM_DUE = """
select s.id, s.cron, s.timezone, s.params, s.catchup, s.catchup_limit, s.jitter_s, s.misfire_grace_s,
       s.next_fire_at, s.template_id, s.environment_id
from ops.schedules s
where s.enabled and s.paused_at is null and s.next_due_at <= %s
order by s.next_due_at
limit %s
for update of s skip locked
"""

# The version each (template, environment) of a batch runs: one ops.resolve_template_version call
# per distinct pair, not per schedule (a burst is thousands of schedules of a few templates). A pair a
# promotion gate refuses (nothing deployed there yet) is checked against the latest version's params and
# fired without a version: ops.apply_schedule_fire records the fire as failed with the gate's reason.
_BATCH_VERSIONS = """
select p.template_id, p.environment_id, case when g.refusal is null then v.version end, v.params_schema
from unnest(%s::uuid[], %s::uuid[]) as p(template_id, environment_id)
cross join lateral (select ops.template_version_refusal(p.template_id, p.environment_id, null) as refusal) g
join ops.job_template_versions v
  on v.id = case when g.refusal is null then ops.resolve_template_version(p.template_id, p.environment_id, null)
                 else (select x.id from ops.job_template_versions x where x.template_id = p.template_id
                       order by x.version desc limit 1) end
where exists (select 1 from ops.job_template_versions x where x.template_id = p.template_id)
"""


async def fire_due_batch(conn: AsyncConnection, now: datetime, *, batch: int = 500) -> tuple[int, dict[str, int]]:
    """Claim up to ``batch`` due schedules and record their fires in one transaction (fires to run
    are recorded as pending; ``submit_pending_fires`` submits their runs)."""
    async with conn.transaction():
        cur = await conn.execute(_CLAIM_DUE, (now, batch))
        rows = await cur.fetchall()
        if not rows:
            return 0, {}
        pairs = sorted({(row[9], row[10]) for row in rows})
        cur = await conn.execute(_BATCH_VERSIONS, ([p[0] for p in pairs], [p[1] for p in pairs]))
        versions = {(t, e): (version, schema) for t, e, version, schema in await cur.fetchall()}
        fires: list[dict[str, Any]] = []
        plans: list[dict[str, Any]] = []
        for row in rows:
            due = DueSchedule(
                id=row[0],
                cron=row[1],
                timezone=row[2],
                params=row[3],
                catchup=row[4],
                catchup_limit=row[5],
                jitter_s=row[6],
                misfire_grace_s=row[7],
                next_fire_at=row[8],
                template_version=versions.get((row[9], row[10]), (None, None))[0],
                params_schema=versions.get((row[9], row[10]), (None, None))[1],
            )
            plan = plan_due(due, now)
            fires.extend(plan.fires)
            assert plan.next_fire_at is not None
            assert plan.next_due_at is not None
            plans.append(
                {
                    "schedule_id": str(due.id),
                    "next_fire_at": plan.next_fire_at.isoformat(),
                    "next_due_at": plan.next_due_at.isoformat(),
                }
            )
        cur = await conn.execute(
            "select status, fires from ops.record_schedule_fires(%s::jsonb, %s::jsonb)",
            (json.dumps(fires), json.dumps(plans)),
        )
        counts = {str(status): int(n) for status, n in await cur.fetchall()}
        return len(rows), counts


async def submit_pending_fires(conn: AsyncConnection, *, limit: int = 50) -> dict[str, int]:
    """Submit the runs of up to ``limit`` recorded fires (one transaction); returns their new statuses."""
    cur = await conn.execute("select status, fires from ops.submit_pending_fires(%s)", (limit,))
    return {str(status): int(n) for status, n in await cur.fetchall()}


async def tick(
    conn: AsyncConnection,
    now: datetime,
    *,
    batch: int = 500,
    submit_batch: int = 50,
    submit_budget_s: float | None = None,
    max_batches: int = 1000,
) -> TickResult:
    """One pass of the scheduler at ``now``: plan new schedules, record what is due (fires first, in
    large batches), submit the recorded fires' runs (small batches), release queued fires and
    advance backfills. Safe to run on any number of replicas at once."""
    result = TickResult()
    for _ in range(max_batches):
        planned = await plan_unplanned(conn, now)
        result.planned += planned
        if planned < PLAN_BATCH:
            break
    # Recording comes first: every due schedule's fire is recorded (large batches, replicas share
    # them), then the recorded fires' runs are submitted (small batches) for at most
    # ``submit_budget_s`` seconds of work, so the next tick records newly due fires without
    # waiting behind a long queue of submissions (pending fires wait for any replica's next tick).
    for _ in range(max_batches):
        claimed, counts = await fire_due_batch(conn, now, batch=batch)
        result.claimed += claimed
        result.add({status: n for status, n in counts.items() if status != "pending"})
        if claimed < batch:
            break
    started = time.monotonic()
    for _ in range(max_batches):
        counts = await submit_pending_fires(conn, limit=submit_batch)
        result.add(counts)
        if sum(counts.values()) < submit_batch:
            break
        if submit_budget_s is not None and time.monotonic() - started > submit_budget_s:
            break
    result.released = int(await scalar(conn, "select ops.release_queued_fires()"))
    result.backfill_runs = int(await scalar(conn, "select ops.advance_backfills()"))
    return result


async def act_as_scheduler(conn: AsyncConnection) -> None:
    """Name the scheduler as the actor of what this session changes (the audit log's actor)."""
    await conn.execute("select set_config('lakehouse.actor', 'scheduler', false)")


async def next_due(conn: AsyncConnection) -> datetime | None:
    """When the earliest planned fire is due (None when nothing is planned)."""
    cur = await conn.execute("select min(next_due_at) from ops.schedules where enabled and paused_at is null")
    row = await cur.fetchone()
    return row[0] if row else None


# Schedules for clients --------------------------------------------------------------------------------


SCHEDULE_COLUMNS = """
    s.id, s.name, s.project_id, p.slug as project, s.template_id, t.name as template, e.name as environment,
    s.cron, s.timezone, s.params, s.enabled, s.paused_at, s.paused_by, s.catchup, s.catchup_limit, s.overlap,
    s.jitter_s, s.misfire_grace_s, s.next_fire_at, s.next_due_at, s.description
"""
SCHEDULE_FROM = """
    ops.schedules s join ops.projects p on p.id = s.project_id join ops.job_templates t on t.id = s.template_id
    join ops.environments e on e.id = s.environment_id
"""


async def resolve_schedule(conn: AsyncConnection, schedule: str) -> uuid.UUID:
    """A schedule id from an id, a name or ``project/name``."""
    try:
        return uuid.UUID(schedule)
    except ValueError:
        pass
    project, _, name = schedule.rpartition("/")
    if project:
        cur = await conn.execute(
            "select s.id from ops.schedules s join ops.projects p on p.id = s.project_id "
            "where p.slug = %s and s.name = %s limit 2",
            (project, name),
        )
    else:
        cur = await conn.execute("select id from ops.schedules where name = %s limit 2", (name,))
    return the_only_id(await cur.fetchall(), f'schedule "{schedule}"', field="schedule", hint="PROJECT/NAME")


async def list_schedules(
    conn: AsyncConnection, *, template_id: uuid.UUID | None = None, project_id: uuid.UUID | None = None
) -> list[dict[str, Any]]:
    """Schedules visible to the caller (of one template, of one project when given), with their latest fire."""
    query = ListQuery()
    query.equal("s.template_id", template_id)
    query.equal("s.project_id", project_id)
    latest_fire = """
        left join lateral (select f.status as last_fire_status, f.fire_time as last_fire_at, r.status as last_run_status
                           from ops.schedule_fires f left join ops.runs r on r.id = f.run_id
                           where f.schedule_id = s.id order by f.fire_time desc limit 1) lf on true
    """
    statement = sql.SQL("select {cols}, lf.* from {src} {fire} {where} order by p.slug, s.name").format(
        cols=sql.SQL(SCHEDULE_COLUMNS), src=sql.SQL(SCHEDULE_FROM), fire=sql.SQL(latest_fire), where=query.where()
    )
    return await fetch_rows(conn, statement, query.args)


SCHEDULE_DETAIL = RowDetail(
    SCHEDULE_COLUMNS, SCHEDULE_FROM, "s.id", what="schedule", field="schedule_id", children="fires",
    child_rows="""
        select f.id, f.fire_time, f.due_at, f.status, f.reason, f.run_id, f.trigger, f.fired_by,
               f.template_version, f.created_at, r.status as run_status
        from ops.schedule_fires f left join ops.runs r on r.id = f.run_id
        where f.schedule_id = %(id)s order by f.fire_time desc limit %(fires)s
    """,
)  # fmt: skip


async def get_schedule(
    conn: AsyncConnection, *, schedule_id: uuid.UUID, now: datetime, upcoming: int = 10, fires: int = 50
) -> dict[str, Any]:
    """A schedule with its next ``upcoming`` fire times and its latest fires."""
    schedule = await SCHEDULE_DETAIL.read(conn, schedule_id, fires=fires)
    start = schedule["next_fire_at"] - timedelta(microseconds=1) if schedule["next_fire_at"] else now
    schedule["upcoming"] = CronSchedule.of(schedule["cron"], schedule["timezone"]).upcoming(start, upcoming)
    return schedule


async def set_paused(conn: AsyncConnection, *, schedule_id: uuid.UUID, paused: bool, by: str | None) -> None:
    """Pause or resume (operators; checked in SQL). Resuming plans again from the next tick's time."""
    await conn.execute("select 1 from ops.set_schedule_paused(%s, %s, %s)", (schedule_id, paused, by))


async def schedule_row(conn: AsyncConnection, *, schedule_id: uuid.UUID, field: str = "schedule_id") -> Schedule:
    """The schedule's table row; NotFound (on ``field``) when it does not exist or is not visible to the caller."""
    found = await first_model(conn, Schedule, "select * from ops.schedules where id = %s", (schedule_id,))
    return visible(found, f"schedule {schedule_id}", field=field)


async def fire_now(conn: AsyncConnection, *, schedule_id: uuid.UUID, now: datetime, by: str | None) -> dict[str, Any]:
    """Fire a schedule at once (operators): its params plus interval params ending now."""
    schedule = await schedule_row(conn, schedule_id=schedule_id)
    version = await first_model(
        conn,
        JobTemplateVersion,
        "select * from ops.job_template_versions where id = ops.resolve_template_version(%s, %s, null)",
        (schedule.template_id, schedule.environment_id),
    )
    assert version is not None
    params = validate_params(version.params_schema, schedule.params)
    previous = CronSchedule.of(schedule.cron, schedule.timezone).previous_before(now)
    params.update(interval_params(now, previous))
    fired = await first_dict_row(
        conn,
        "select fire_id, status, run_id from ops.fire_schedule_now(%s, %s::jsonb, %s, %s)",
        (schedule_id, json.dumps(params), version.version, by),
    )
    assert fired is not None
    return fired


def check_schedule_fields(*, cron: str, timezone: str, catchup: str, overlap: str) -> None:
    """Validate what the scheduler needs from a schedule definition (used by the bundle and the API)."""
    parse_cron(cron)
    _zone(timezone)
    if catchup not in CATCHUP_POLICIES:
        raise Invalid(f"must be one of {', '.join(CATCHUP_POLICIES)}", field="catchup")
    if overlap not in OVERLAP_POLICIES:
        raise Invalid(f"must be one of {', '.join(OVERLAP_POLICIES)}", field="overlap")


def iter_steps(start: datetime, end: datetime, step: timedelta) -> Iterator[tuple[datetime, datetime]]:
    """Consecutive ``[a, a + step)`` intervals covering ``[start, end)`` (the last one may end after)."""
    a = start
    while a < end:
        yield a, a + step
        a += step
