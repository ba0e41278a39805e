"""The scheduler on real Postgres with a driven clock: exactly-once fires, catch-up after an outage,
overlap policies, pause/resume, jitter, racing replicas and a replica killed mid-fire."""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from control_room.services import schedules
from control_room.services.errors import NotFound
from tests.jobs.conftest import JobWorld, end_run, make_world, run_async, tick

T0 = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def statuses(world: JobWorld, schedule_id: uuid.UUID) -> list[tuple[str, str]]:
    return [(f["fire_time"].strftime("%H:%M"), f["status"]) for f in world.fires(schedule_id)]


def test_a_due_schedule_fires_once_with_its_interval_params(world: JobWorld, jobs_db: str) -> None:
    schedule_id = world.schedule("*/5 * * * *", planned_from=T0)
    assert tick(jobs_db, T0 + timedelta(minutes=5) - SECOND).claimed == 0
    result = tick(jobs_db, T0 + timedelta(minutes=5, seconds=0.5))
    assert result.fires == {"fired": 1}
    assert tick(jobs_db, T0 + timedelta(minutes=5, seconds=1)).claimed == 0  # planned ahead: nothing twice
    [fire] = world.fires(schedule_id)
    assert fire["status"] == "fired" and fire["run_trigger"] == "schedule" and fire["template_version"] == 1
    assert fire["run_params"] == {
        "source": "orders",
        "full_refresh": False,
        "logical_date": "2026-06-01T10:05:00+00:00",
        "data_interval_start": "2026-06-01T10:00:00+00:00",
        "data_interval_end": "2026-06-01T10:05:00+00:00",
    }
    run = world.conn.execute(
        "select schedule_id, template_id from ops.runs where id = %s", (fire["run_id"],)
    ).fetchone()
    assert run == (schedule_id, world.template_id)
    nxt = world.conn.execute("select next_fire_at from ops.schedules where id = %s", (schedule_id,)).fetchone()
    assert nxt == (T0 + timedelta(minutes=10),)


def test_new_and_changed_schedules_are_planned_from_now(world: JobWorld, jobs_db: str) -> None:
    schedule_id = world.schedule("0 * * * *")
    result = tick(jobs_db, T0 + timedelta(minutes=20))
    assert result.planned == 1 and result.claimed == 0
    row = world.conn.execute("select next_fire_at from ops.schedules where id = %s", (schedule_id,)).fetchone()
    assert row == (T0 + timedelta(hours=1),)
    world.conn.execute("update ops.schedules set cron = '30 * * * *' where id = %s", (schedule_id,))
    assert tick(jobs_db, T0 + timedelta(minutes=21)).planned == 1
    row = world.conn.execute("select next_fire_at from ops.schedules where id = %s", (schedule_id,)).fetchone()
    assert row == (T0 + timedelta(minutes=30),)


# Catch-up after a 3-hour outage: planned at 09:00 for */15, back at 12:00:30 (12 fires owed) ----------

OUTAGE_START = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
BACK = datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC)


def test_catchup_none_fires_only_what_is_within_the_grace(world: JobWorld, jobs_db: str) -> None:
    schedule_id = world.schedule("*/15 * * * *", catchup="none", misfire_grace_s=60, planned_from=OUTAGE_START)
    result = tick(jobs_db, BACK)
    assert result.fires == {"fired": 1, "missed": 11}
    fires = world.fires(schedule_id)
    assert [f["status"] for f in fires] == ["missed"] * 11 + ["fired"]
    assert fires[-1]["fire_time"] == datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    assert "catch-up=none" in fires[0]["reason"] and "late" in fires[0]["reason"]


def test_catchup_none_after_the_grace_fires_nothing(world: JobWorld, jobs_db: str) -> None:
    schedule_id = world.schedule("*/15 * * * *", catchup="none", misfire_grace_s=60, planned_from=OUTAGE_START)
    assert tick(jobs_db, BACK + timedelta(minutes=4)).fires == {"missed": 12}
    assert world.conn.execute("select next_fire_at from ops.schedules where id = %s", (schedule_id,)).fetchone() == (
        datetime(2026, 6, 1, 12, 15, tzinfo=UTC),
    )


def test_catchup_latest_fires_the_newest_and_records_the_rest(world: JobWorld, jobs_db: str) -> None:
    schedule_id = world.schedule("*/15 * * * *", catchup="latest", planned_from=OUTAGE_START)
    assert tick(jobs_db, BACK + timedelta(minutes=5)).fires == {"fired": 1, "missed": 11}
    fires = world.fires(schedule_id)
    assert fires[-1]["status"] == "fired" and fires[-1]["fire_time"].hour == 12
    assert all("superseded by the fire at 2026-06-01T12:00:00+00:00" in f["reason"] for f in fires[:-1])
    # the run covers the last interval only
    assert fires[-1]["run_params"]["data_interval_start"] == "2026-06-01T11:45:00+00:00"


def test_catchup_all_fires_up_to_its_bound_in_order(world: JobWorld, jobs_db: str) -> None:
    schedule_id = world.schedule("*/15 * * * *", catchup="all", catchup_limit=5, planned_from=OUTAGE_START)
    assert tick(jobs_db, BACK).fires == {"fired": 5, "missed": 7}
    fires = world.fires(schedule_id)
    assert statuses(world, schedule_id)[-5:] == [
        ("11:00", "fired"),
        ("11:15", "fired"),
        ("11:30", "fired"),
        ("11:45", "fired"),
        ("12:00", "fired"),
    ]
    assert all("beyond the bound of 5" in f["reason"] for f in fires[:7])
    # each run gets its own data interval, back to back
    intervals = [
        (f["run_params"]["data_interval_start"][11:16], f["run_params"]["data_interval_end"][11:16]) for f in fires[-5:]
    ]
    assert intervals == [
        ("10:45", "11:00"),
        ("11:00", "11:15"),
        ("11:15", "11:30"),
        ("11:30", "11:45"),
        ("11:45", "12:00"),
    ]


def test_catchup_all_within_its_bound_fires_everything(world: JobWorld, jobs_db: str) -> None:
    schedule_id = world.schedule("*/15 * * * *", catchup="all", catchup_limit=100, planned_from=OUTAGE_START)
    assert tick(jobs_db, BACK).fires == {"fired": 12}
    runs = world.conn.execute("select count(*) from ops.runs where schedule_id = %s", (schedule_id,)).fetchone()
    assert runs == (12,)


def test_a_very_long_outage_records_a_bounded_number_of_misses(world: JobWorld, jobs_db: str) -> None:
    schedule_id = world.schedule("* * * * *", catchup="latest", planned_from=OUTAGE_START)
    result = tick(jobs_db, OUTAGE_START + timedelta(days=7))
    assert result.fires["fired"] == 1 and result.fires["missed"] == schedules.MISSED_RECORD_LIMIT - 1
    oldest = world.fires(schedule_id)[0]
    assert "earlier fires since 2026-06-01T09:01:00+00:00 were missed too" in oldest["reason"]


# Overlap policies: fires at 10:01, 10:02, 10:03 while the first run is still active -------------------


def fire_minutes(world: JobWorld, jobs_db: str, schedule_id: uuid.UUID, minutes: list[int]) -> None:
    for minute in minutes:
        tick(jobs_db, T0 + timedelta(minutes=minute, seconds=1))


def test_overlap_allow_starts_a_run_per_fire(world: JobWorld, jobs_db: str) -> None:
    schedule_id = world.schedule(overlap="allow", planned_from=T0)
    fire_minutes(world, jobs_db, schedule_id, [1, 2])
    assert [s for _, s in statuses(world, schedule_id)] == ["fired", "fired"]


def test_overlap_skip_skips_while_the_previous_run_is_active(world: JobWorld, jobs_db: str) -> None:
    schedule_id = world.schedule(overlap="skip", planned_from=T0)
    fire_minutes(world, jobs_db, schedule_id, [1, 2])
    fires = world.fires(schedule_id)
    assert [f["status"] for f in fires] == ["fired", "skipped"]
    assert f"run {fires[0]['run_id']} of this schedule is still queued" in fires[1]["reason"]
    end_run(world.conn, fires[0]["run_id"])
    fire_minutes(world, jobs_db, schedule_id, [3])
    assert [s for _, s in statuses(world, schedule_id)] == ["fired", "skipped", "fired"]


def test_overlap_cancel_previous_cancels_the_active_run(world: JobWorld, jobs_db: str) -> None:
    schedule_id = world.schedule(overlap="cancel_previous", planned_from=T0)
    fire_minutes(world, jobs_db, schedule_id, [1, 2])
    first, second = world.fires(schedule_id)
    assert first["status"] == second["status"] == "fired"
    run_statuses = dict(world.conn.execute("select id, status from ops.runs where schedule_id = %s", (schedule_id,)))
    assert run_statuses == {first["run_id"]: "cancelled", second["run_id"]: "queued"}


def test_overlap_queue_one_holds_one_fire_and_releases_it(world: JobWorld, jobs_db: str) -> None:
    schedule_id = world.schedule(overlap="queue_one", planned_from=T0)
    fire_minutes(world, jobs_db, schedule_id, [1, 2, 3])
    fires = world.fires(schedule_id)
    assert [f["status"] for f in fires] == ["fired", "queued", "skipped"]
    assert "already queued" in fires[2]["reason"]
    assert tick(jobs_db, T0 + timedelta(minutes=3, seconds=30)).released == 0  # first run still active
    end_run(world.conn, fires[0]["run_id"], "failed")
    assert tick(jobs_db, T0 + timedelta(minutes=3, seconds=40)).released == 1
    released = world.fires(schedule_id)[1]
    assert released["status"] == "fired" and released["run_id"] is not None
    assert "released" in released["reason"]
    assert released["run_params"]["logical_date"] == "2026-06-01T10:02:00+00:00"  # its own fire time


# Pause, resume, jitter, fire now, bad params ------------------------------------------------------------


def test_paused_schedules_do_not_fire_and_resume_without_catch_up(world: JobWorld, jobs_db: str) -> None:
    schedule_id = world.schedule(catchup="all", planned_from=T0)
    run_async(jobs_db, lambda c: schedules.set_paused(c, schedule_id=schedule_id, paused=True, by="op@test"))
    assert tick(jobs_db, T0 + timedelta(minutes=10)).claimed == 0
    run_async(jobs_db, lambda c: schedules.set_paused(c, schedule_id=schedule_id, paused=False, by="op@test"))
    result = tick(jobs_db, T0 + timedelta(minutes=10, seconds=5))
    assert result.planned == 1 and result.claimed == 0 and world.fires(schedule_id) == []
    assert tick(jobs_db, T0 + timedelta(minutes=11, seconds=1)).fires == {"fired": 1}
    audit = world.conn.execute(
        "select action from ops.audit_log where entity = 'schedules' and entity_id = %s order by id", (schedule_id,)
    ).fetchall()
    assert audit == [("pause",), ("resume",)]


def test_jitter_delays_the_fire_but_keeps_its_logical_time(world: JobWorld, jobs_db: str) -> None:
    schedule_id = world.schedule("0 * * * *", jitter_s=600, planned_from=T0)
    fire_time = T0 + timedelta(hours=1)
    offset = schedules.jitter_offset(schedule_id, fire_time, 600)
    due = world.conn.execute("select next_due_at from ops.schedules where id = %s", (schedule_id,)).fetchone()
    assert due == (fire_time + offset,)
    if offset > SECOND:
        assert tick(jobs_db, fire_time + offset - SECOND).claimed == 0
    assert tick(jobs_db, fire_time + offset).fires == {"fired": 1}
    [fire] = world.fires(schedule_id)
    assert fire["fire_time"] == fire_time and fire["due_at"] == fire_time + offset


def test_fire_now_runs_whatever_the_overlap_policy(world: JobWorld, jobs_db: str) -> None:
    schedule_id = world.schedule(overlap="skip", planned_from=T0)
    first = run_async(jobs_db, lambda c: schedules.fire_now(c, schedule_id=schedule_id, now=T0, by="op@test"))
    second = run_async(jobs_db, lambda c: schedules.fire_now(c, schedule_id=schedule_id, now=T0, by="op@test"))
    assert first["status"] == second["status"] == "fired"
    fires = world.fires(schedule_id)
    assert {f["trigger"] for f in fires} == {"manual"} and len({f["run_id"] for f in fires}) == 2


def test_params_the_template_refuses_fail_the_fire_but_not_the_schedule(world: JobWorld, jobs_db: str) -> None:
    schedule_id = world.schedule(params={"source": "weather"}, planned_from=T0)
    assert tick(jobs_db, T0 + timedelta(minutes=1, seconds=1)).fires == {"failed": 1}
    [fire] = world.fires(schedule_id)
    assert fire["run_id"] is None and "/params/source" in fire["reason"]
    assert world.conn.execute("select next_fire_at from ops.schedules where id = %s", (schedule_id,)).fetchone() == (
        T0 + timedelta(minutes=2),
    )


# Replicas ----------------------------------------------------------------------------------------------


def test_two_schedulers_racing_fire_everything_exactly_once(conn: psycopg.Connection, jobs_db: str) -> None:
    worlds = [make_world(conn) for _ in range(3)]
    ids = [w.schedule("*/5 * * * *", planned_from=T0) for w in worlds for _ in range(100)]
    barrier = threading.Barrier(2)
    results: list[schedules.TickResult] = []

    def replica() -> None:
        async def work(c: psycopg.AsyncConnection) -> schedules.TickResult:
            barrier.wait()
            return await schedules.tick(c, T0 + timedelta(minutes=5, seconds=1), batch=25)

        results.append(run_async(jobs_db, work))

    threads = [threading.Thread(target=replica) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == 2
    assert sum(r.fires.get("fired", 0) for r in results) == 300
    assert all(r.claimed > 0 for r in results)  # both replicas took a share
    counts = conn.execute(
        "select count(*), count(distinct schedule_id), count(distinct run_id) from ops.schedule_fires "
        "where schedule_id = any(%s)",
        (ids,),
    ).fetchone()
    assert counts == (300, 300, 300)
    assert conn.execute("select count(*) from ops.runs where schedule_id = any(%s)", (ids,)).fetchone() == (300,)


def test_a_replica_killed_mid_fire_leaves_its_fires_to_another(world: JobWorld, jobs_db: str) -> None:
    ids = [world.schedule(planned_from=T0) for _ in range(20)]
    now = T0 + timedelta(minutes=1, seconds=1)
    victim = psycopg.connect(jobs_db)
    pid = victim.info.backend_pid
    # The victim claims every due schedule and records its fires, then dies before committing.
    rows = victim.execute(schedules._CLAIM_DUE, (now, 100)).fetchall()
    assert len(rows) == 20
    victim.execute(
        "select * from ops.record_schedule_fires(%s::jsonb, '[]'::jsonb)",
        (
            psycopg.types.json.Jsonb(
                [
                    {
                        "schedule_id": str(r[0]),
                        "fire_time": "2026-06-01T10:01:00+00:00",
                        "due_at": "2026-06-01T10:01:00+00:00",
                        "status": "fire",
                        "params": {"source": "orders"},
                        "template_version": 1,
                    }
                    for r in rows
                ]
            ),
        ),
    )
    # Meanwhile another replica finds them locked and skips them: no duplicate, no wait.
    assert tick(jobs_db, now).claimed == 0
    world.conn.execute("select pg_terminate_backend(%s)", (pid,))
    with pytest.raises(psycopg.OperationalError):
        victim.execute("select 1")
    victim.close()
    result = tick(jobs_db, now + SECOND)
    assert result.fires == {"fired": 20}
    counts = world.conn.execute(
        "select count(*), count(distinct schedule_id) from ops.schedule_fires where schedule_id = any(%s)", (ids,)
    ).fetchone()
    assert counts == (20, 20)
    assert world.conn.execute("select count(*) from ops.runs where schedule_id = any(%s)", (ids,)).fetchone() == (20,)


def test_the_loop_ticks_with_the_injected_clock(world: JobWorld, jobs_db: str) -> None:
    from control_room.loops.scheduler import run_scheduler

    schedule_id = world.schedule(planned_from=T0)
    times = iter(
        [T0 + timedelta(seconds=30), T0 + timedelta(minutes=1, seconds=2), T0 + timedelta(minutes=1, seconds=3)]
    )
    asyncio.run(run_scheduler(jobs_db, clock=lambda: next(times), interval=0, ticks=3))
    assert statuses(world, schedule_id) == [("10:01", "fired")]


def test_a_replica_killed_while_submitting_leaves_the_recorded_fires_pending(world: JobWorld, jobs_db: str) -> None:
    ids = [world.schedule(planned_from=T0) for _ in range(10)]
    now = T0 + timedelta(minutes=1, seconds=1)
    claimed, counts = run_async(jobs_db, lambda c: schedules.fire_due_batch(c, now))
    assert claimed == 10 and counts == {"pending": 10}  # recorded and committed; no run yet
    victim = psycopg.connect(jobs_db)
    pid = victim.info.backend_pid
    assert victim.execute("select sum(fires) from ops.submit_pending_fires(50)").fetchone() == (10,)
    world.conn.execute("select pg_terminate_backend(%s)", (pid,))  # dies before committing its runs
    victim.close()
    assert world.conn.execute("select count(*) from ops.runs where schedule_id = any(%s)", (ids,)).fetchone() == (0,)
    assert tick(jobs_db, now + SECOND).fires == {"fired": 10}
    counts2 = world.conn.execute(
        "select count(*), count(distinct run_id), count(*) filter (where status = 'fired') from ops.schedule_fires "
        "where schedule_id = any(%s)",
        (ids,),
    ).fetchone()
    assert counts2 == (10, 10, 10)
    assert world.conn.execute("select count(*) from ops.runs where schedule_id = any(%s)", (ids,)).fetchone() == (10,)


def test_a_submit_budget_leaves_the_rest_pending_for_the_next_tick(world: JobWorld, jobs_db: str) -> None:
    for _ in range(6):
        world.schedule(planned_from=T0)
    now = T0 + timedelta(minutes=1, seconds=1)
    first = run_async(jobs_db, lambda c: schedules.tick(c, now, submit_batch=2, submit_budget_s=0))
    assert first.claimed == 6 and first.fires == {"fired": 2}  # every fire recorded, one batch of runs
    second = run_async(jobs_db, lambda c: schedules.tick(c, now + SECOND, submit_batch=2))
    assert second.claimed == 0 and second.fires == {"fired": 4}


def test_a_schedules_detail_has_its_latest_fires_newest_first_up_to_the_limit(world: JobWorld, jobs_db: str) -> None:
    schedule_id = world.schedule(overlap="allow", planned_from=T0)
    fire_minutes(world, jobs_db, schedule_id, [1, 2, 3])
    detail = run_async(jobs_db, lambda c: schedules.get_schedule(c, schedule_id=schedule_id, now=T0, fires=2))
    assert detail["id"] == schedule_id and detail["cron"] == "* * * * *"
    assert [f["fire_time"] for f in detail["fires"]] == [T0 + timedelta(minutes=3), T0 + timedelta(minutes=2)]
    assert [f["run_status"] for f in detail["fires"]] == ["queued", "queued"]  # each fire's run, joined
    assert detail["upcoming"][0] == detail["next_fire_at"]
    missing = uuid.uuid4()
    with pytest.raises(NotFound, match=f"schedule {missing} does not exist or is not visible to you"):
        run_async(jobs_db, lambda c: schedules.get_schedule(c, schedule_id=missing, now=T0))
