"""Backfills: one run per interval with its interval params, a concurrency limit, oldest or newest
first, cancellable as a group, progress; and the `lakehouse jobs` commands on a real database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from control_room.cli import app
from control_room.config import get_settings
from control_room.services import backfills
from control_room.services.auth import UserPrincipal, scoped
from control_room.services.errors import Invalid
from tests.jobs.conftest import JobWorld, end_run, run_async, tick

DAY0 = datetime(2026, 11, 1, tzinfo=UTC)


def create(jobs_db: str, world: JobWorld, **options: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "template_id": world.template_id,
        "environment": "dev",
        "start": DAY0,
        "end": DAY0 + timedelta(days=5),
        "step": "1d",
        "params": {"source": "orders"},
        "max_concurrency": 2,
    }
    arguments.update(options)
    return run_async(jobs_db, lambda c: backfills.create_backfill(c, **arguments))


def submitted(world: JobWorld, backfill_id: uuid.UUID) -> list[tuple[str, str]]:
    rows = world.conn.execute(
        "select r.params ->> 'data_interval_start', r.status from ops.backfill_intervals i "
        "join ops.runs r on r.id = i.run_id where i.backfill_id = %s order by i.submitted_at, i.position",
        (backfill_id,),
    ).fetchall()
    return [(start[5:10], status) for start, status in rows]


def test_intervals_from_a_step_or_a_cron() -> None:
    daily = backfills.backfill_intervals(DAY0, DAY0 + timedelta(days=3, hours=5), "1d")
    assert [(a.day, b.day) for a, b in daily] == [(1, 2), (2, 3), (3, 4)]  # whole intervals only
    berlin = backfills.backfill_intervals(
        datetime(2026, 10, 24, tzinfo=UTC), datetime(2026, 10, 27, tzinfo=UTC), "0 6 * * *", "Europe/Berlin"
    )
    assert [b - a for a, b in berlin] == [timedelta(hours=25), timedelta(hours=24)]  # the DST day is longer
    with pytest.raises(Invalid) as err:
        backfills.backfill_intervals(DAY0, DAY0 + timedelta(hours=1), "1d")
    assert err.value.field == "step"
    with pytest.raises(Invalid):
        backfills.backfill_intervals(DAY0, DAY0 + timedelta(days=400), "1m")
    with pytest.raises(Invalid) as err2:
        backfills.backfill_intervals(DAY0, DAY0, "1d")
    assert err2.value.field == "end"


def test_a_backfill_runs_its_intervals_oldest_first_within_its_concurrency(world: JobWorld, jobs_db: str) -> None:
    backfill = create(jobs_db, world)
    assert backfill["total"] == 5 and backfill["status"] == "running"
    assert submitted(world, backfill["id"]) == [("11-01", "queued"), ("11-02", "queued")]
    assert tick(jobs_db, DAY0).backfill_runs == 0  # two runs active: the limit
    run_ids = [i["run_id"] for i in backfill["intervals"] if i["run_id"]]
    first = world.conn.execute(
        "select trigger, backfill_id, template_id, params from ops.runs where id = %s", (run_ids[0],)
    ).fetchone()
    assert first is not None
    assert first[:3] == ("backfill", backfill["id"], world.template_id)
    assert first[3] == {
        "source": "orders",
        "full_refresh": False,
        "logical_date": "2026-11-02T00:00:00+00:00",
        "data_interval_start": "2026-11-01T00:00:00+00:00",
        "data_interval_end": "2026-11-02T00:00:00+00:00",
    }
    for run_id in run_ids:
        end_run(world.conn, run_id)
    assert tick(jobs_db, DAY0).backfill_runs == 2
    for _ in range(3):
        for row in world.conn.execute(
            "select id from ops.runs where backfill_id = %s and status = 'queued'", (backfill["id"],)
        ).fetchall():
            end_run(world.conn, row[0])
        tick(jobs_db, DAY0)
    done = run_async(jobs_db, lambda c: backfills.get_backfill(c, backfill_id=backfill["id"]))
    assert done["status"] == "succeeded" and done["done"] == 5 and done["progress"] == {"succeeded": 5}
    assert [s[0] for s in submitted(world, backfill["id"])] == ["11-01", "11-02", "11-03", "11-04", "11-05"]


def test_newest_first_and_a_failed_run_fails_the_backfill(world: JobWorld, jobs_db: str) -> None:
    backfill = create(jobs_db, world, run_order="newest_first", max_concurrency=1, end=DAY0 + timedelta(days=2))
    assert submitted(world, backfill["id"]) == [("11-02", "queued")]
    end_run(world.conn, backfill["intervals"][0]["run_id"], "failed")
    tick(jobs_db, DAY0)
    assert [s[0] for s in submitted(world, backfill["id"])] == ["11-02", "11-01"]
    second = world.conn.execute(
        "select run_id from ops.backfill_intervals where backfill_id = %s and position = 2", (backfill["id"],)
    ).fetchone()
    assert second is not None
    end_run(world.conn, second[0])
    tick(jobs_db, DAY0)
    done = run_async(jobs_db, lambda c: backfills.get_backfill(c, backfill_id=backfill["id"]))
    assert done["status"] == "failed" and done["progress"] == {"failed": 1, "succeeded": 1}


def test_a_backfill_is_cancelled_as_a_group(world: JobWorld, jobs_db: str) -> None:
    backfill = create(jobs_db, world)
    cancelled = run_async(jobs_db, lambda c: backfills.cancel_backfill(c, backfill_id=backfill["id"], by="op@test"))
    assert cancelled["status"] == "cancelled" and cancelled["cancelled_by"] == "op@test"
    assert cancelled["progress"] == {"cancelled": 5}  # 2 runs cancelled, 3 intervals never started
    assert tick(jobs_db, DAY0).backfill_runs == 0
    assert world.conn.execute("select count(*) from ops.runs where backfill_id = %s", (backfill["id"],)).fetchone() == (
        2,
    )


def test_a_backfill_follows_a_schedules_cron_zone_and_params(world: JobWorld, jobs_db: str) -> None:
    schedule_id = world.schedule("0 6 * * *", timezone="Europe/Berlin", params={"source": "customers"})
    backfill = create(
        jobs_db, world, step=None, schedule_id=schedule_id, params={}, start=DAY0, end=DAY0 + timedelta(days=2)
    )
    assert backfill["step"] == "0 6 * * *" and backfill["timezone"] == "Europe/Berlin"
    assert [i["data_interval_start"] for i in backfill["intervals"]] == [datetime(2026, 11, 1, 5, tzinfo=UTC)]
    run = world.conn.execute(
        "select params, schedule_id from ops.runs where backfill_id = %s", (backfill["id"],)
    ).fetchone()
    assert run is not None and run[0]["source"] == "customers" and run[1] == schedule_id


def test_viewers_cannot_backfill_and_bad_params_are_refused(world: JobWorld, jobs_db: str) -> None:
    viewer = UserPrincipal(world.user("viewer"), "viewer@test.example")

    async def as_viewer(conn: psycopg.AsyncConnection) -> dict[str, Any]:
        async with scoped(conn, viewer):
            return await backfills.create_backfill(
                conn,
                template_id=world.template_id,
                environment="dev",
                start=DAY0,
                end=DAY0 + timedelta(days=1),
                step="1d",
                params={"source": "orders"},
            )

    with pytest.raises(psycopg.Error) as err:
        run_async(jobs_db, as_viewer)
    assert err.value.sqlstate == "LH403"
    with pytest.raises(Invalid) as bad:
        create(jobs_db, world, params={"source": 3})
    assert bad.value.field == "/params/source"


# The CLI ------------------------------------------------------------------------------------------------


def test_the_jobs_commands(world: JobWorld, jobs_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEHOUSE_DATABASE_URL", jobs_db)
    get_settings.cache_clear()
    runner = CliRunner()
    name = world.conn.execute("select name from ops.job_templates where id = %s", (world.template_id,)).fetchone()
    assert name is not None
    try:
        ran = runner.invoke(
            app, ["jobs", "run", name[0], "--env", "staging", "--param", "source=customers", "--param", "limit=10"]
        )
        assert ran.exit_code == 0, ran.output
        assert "v1 in staging: queued" in ran.output
        params = world.conn.execute(
            "select params, trigger, requested_by_name from ops.runs where template_id = %s", (world.template_id,)
        ).fetchone()
        assert params is not None
        assert params[0] == {"source": "customers", "limit": 10, "full_refresh": False}
        assert params[1] == "manual" and params[2].startswith("cli:")
        bad = runner.invoke(app, ["jobs", "run", name[0], "--param", "limit=10"])
        assert bad.exit_code == 1 and "error (/params/source)" in bad.output
        unknown = runner.invoke(app, ["jobs", "run", "no-such-job"])
        assert unknown.exit_code == 1 and 'job template "no-such-job" does not exist' in unknown.output
        listed = runner.invoke(app, ["jobs", "list"])
        assert listed.exit_code == 0 and name[0] in listed.output
        filled = runner.invoke(
            app,
            [
                "jobs",
                "backfill",
                name[0],
                "--start",
                "2026-11-01",
                "--end",
                "2026-11-04",
                "--step",
                "1d",
                "--param",
                "source=orders",
                "--max-concurrency",
                "3",
            ],
        )
        assert filled.exit_code == 0, filled.output
        assert "3 interval(s) of 1d, 3 at a time; 3 run(s) started" in filled.output
        backfill_id = filled.output.split()[1].rstrip(":")
        status = runner.invoke(app, ["jobs", "backfill-status", backfill_id])
        assert status.exit_code == 0 and "0/3 done" in status.output
        cancelled = runner.invoke(app, ["jobs", "backfill-cancel", backfill_id])
        assert cancelled.exit_code == 0 and "cancelled" in cancelled.output
    finally:
        get_settings.cache_clear()
