"""Replicas: 3 control-room API processes on one Postgres, agents spread over them, one replica killed with
SIGKILL mid-run and restarted. Every task must end with exactly one recorded outcome, re-run only after a
lost or handed-back lease (the reapers of the surviving replicas never reap twice), and a run's event stream
read on one replica resumes by Last-Event-ID on another. Meanwhile the three replicas' scheduler loops share a
schedule firing every minute and a backfill of 30 intervals: every fire time and every interval gets exactly
one run, the kill notwithstanding; and their alert evaluators share a run_failed rule: the job's failed runs
make one incident, each run firing it exactly once, and its opening is delivered exactly once.
"""

from __future__ import annotations

import json
import os
import signal
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from control_room.db.migrate import migrate
from tests.agent.conftest import (
    operator_client,
    retried_shell_tasks,
    run_events,
    stop_agent_processes,
    submit,
    task_outcomes,
    wait_until,
)
from tests.agent.test_outage import agent_process
from tests.conftest import PostgresServer
from tests.live import LiveServer, Provisioner, live_server

pytestmark = pytest.mark.slow

REPLICAS = 3
RUNS, TASKS_PER_RUN = 3, 60
TASKS = RUNS * TASKS_PER_RUN
COMMAND = 'echo "task $LAKEHOUSE_TASK_KEY attempt $LAKEHOUSE_ATTEMPT"; sleep 0.2; echo done'
FINISHED = "('succeeded', 'failed', 'cancelled', 'timed_out', 'lost')"
BACKFILL_DAYS = 30
FAILING_RUNS = 3
# Per backfill interval submitted / per fire time fired: its run, counted (exactly one each).
BACKFILL_RUNS = (
    "select i.position, (select count(*) from ops.runs r where r.id = i.run_id) from ops.backfill_intervals i "
    "where i.backfill_id = %s and i.status = 'submitted'"
)
RULE_FIRINGS = (  # the rule's firings: its opening and re-firings, one per failed run
    "select 'fired', count(*) from ops.alert_incident_events where rule_id = %s and kind in ('fired', 'refired')"
)
SCHEDULE_FIRE_TIMES = "select fire_time, 1 from ops.schedule_fires where schedule_id = %s"
SCHEDULE_RUNS = (
    "select f.fire_time, (select count(*) from ops.runs r where r.id = f.run_id) from ops.schedule_fires f "
    "where f.schedule_id = %s and f.status = 'fired'"
)


def scheduled_job(project: str) -> dict[str, Any]:
    """A one-task job on the replicas' pool, as an admin saves it."""
    task = {"key": "tick", "engine": "shell", "pool": "replicas", "retry_backoff_s": 0,
            "config": {"command": "echo tick"}}  # fmt: skip
    return {"project": project, "definition": {"name": "replica-ticks", "tasks": [task]}}


def runs_per_key(database_url: str, query: str, *args: Any) -> dict[Any, int]:
    with psycopg.connect(database_url) as conn:
        return {row[0]: int(row[1]) for row in conn.execute(query, args)}


def count_tasks(database_url: str, where: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(f"select count(*) from ops.tasks where status in {where}").fetchone()
    assert row is not None
    return int(row[0])


def stream_events(server: LiveServer, token: str, run_id: str, last_event_id: int | None) -> list[dict[str, Any]]:
    """The run's SSE stream on one replica, from Last-Event-ID to its `end` event, as EventPublic dicts."""
    headers = {"Authorization": f"Bearer {token}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    events: list[dict[str, Any]] = []
    event_type = ""
    with httpx.stream(
        "GET", f"{server.base_url}/api/v1/runs/{run_id}/events/stream", headers=headers, timeout=30
    ) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("event:"):
                event_type = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                if event_type == "end":
                    return events
                events.append(json.loads(line.split(":", 1)[1]))
    raise AssertionError(f"stream of run {run_id} on {server.base_url} closed without an end event")


def test_three_replicas_one_killed_mid_run(pg_server: PostgresServer, tmp_path: Path) -> None:
    database_url = pg_server.create_database("lh_replicas")
    migrate(database_url)
    provision = Provisioner(database_url)
    settings = {"lease_seconds": "10", "reaper_interval_seconds": "0.5", "claim_wait_max_seconds": "3"}
    with ExitStack() as stack:
        servers = [
            stack.enter_context(live_server(database_url, tmp_path / f"data-{i}", **settings)) for i in range(REPLICAS)
        ]
        token = provision.user_token("operator")[1]
        operator = operator_client(servers[0], token)
        agent_tokens = [provision.executor_token("replicas", name=f"replica-agent-{i}") for i in range(REPLICAS)]
        logs = [tmp_path / f"agent-{i}.log" for i in range(REPLICAS)]
        agents = [
            agent_process(
                servers[i].base_url, agent_tokens[i], tmp_path / f"spool-{i}", tmp_path / f"work-{i}", logs[i]
            )
            for i in range(REPLICAS)
        ]
        try:
            admin = operator_client(servers[2], provision.user_token("admin")[1])
            with psycopg.connect(database_url) as conn:
                (slug,) = conn.execute(
                    "select slug from ops.projects where id = %s", (provision.tenant().project_id,)
                ).fetchone() or ("",)
            saved = admin.post("/templates", json=scheduled_job(slug))
            assert saved.status_code == 201, saved.text
            template_id = saved.json()["template_id"]
            schedule = admin.post(
                f"/templates/{template_id}/schedules", json={"name": "every-minute", "cron": "* * * * *"}
            )
            assert schedule.status_code == 201, schedule.text
            backfill = admin.post(
                "/backfills",
                json={"template": template_id, "start": "2026-01-01T00:00:00Z", "end": "2026-01-31T00:00:00Z",
                      "step": "1d", "max_concurrency": 4},
            )  # fmt: skip
            assert backfill.status_code == 201, backfill.text

            tenant = provision.tenant()
            rule = admin.post(
                "/alerts/rules",
                json={"org_id": str(tenant.org_id), "name": "replica-failures", "kind": "run_failed",
                      "project_id": str(tenant.project_id), "notify": ["oncall@example.com"]},
            )  # fmt: skip
            assert rule.status_code == 201, rule.text
            failing = [
                submit(operator, tenant.project_id, [{"key": "fails", "engine": "shell", "pool": "replicas",
                                                      "command": "exit 3", "max_attempts": 1}])["id"]
                for _ in range(FAILING_RUNS)
            ]  # fmt: skip

            run_ids = []
            for r in range(RUNS):
                tasks = retried_shell_tasks(r, TASKS_PER_RUN, "replicas", COMMAND)
                run_ids.append(submit(operator, provision.tenant().project_id, tasks)["id"])

            wait_until(lambda: count_tasks(database_url, FINISHED) >= TASKS // 4, timeout=180, what="a quarter done")
            killed = servers[1]
            assert killed.proc is not None
            os.killpg(killed.proc.pid, signal.SIGKILL)  # no shutdown: its connections and loops just vanish
            killed.proc.wait(10)
            killed.proc = None
            wait_until(lambda: count_tasks(database_url, FINISHED) >= TASKS // 2, timeout=180, what="half done")
            killed.start()  # the same port: its agent reconnects
            wait_until(lambda: count_tasks(database_url, FINISHED) >= TASKS, timeout=300, what="every task finished")
            # Every interval of the backfill submitted (by whichever replica), and the schedule's fires up to a
            # minute boundary after the restart (the loops tick every second).
            backfill_id = backfill.json()["id"]
            wait_until(
                lambda: sum(runs_per_key(database_url, BACKFILL_RUNS, backfill_id).values()) >= BACKFILL_DAYS,
                timeout=300, what="every backfill interval submitted",
            )  # fmt: skip
            with psycopg.connect(database_url) as conn:
                (created,) = conn.execute(
                    "select created_at from ops.schedules where id = %s", (schedule.json()["id"],)
                ).fetchone() or (None,)
                (restarted,) = conn.execute("select now()").fetchone() or (None,)
            assert created is not None and restarted is not None
            # Every minute boundary from the schedule's first fire, up to one after the restart. The scheduler
            # plans a new schedule at its next tick, a moment after the save: the first fire is the boundary after
            # the save, or the one after that when the save came within those moments before a boundary.
            fire_times = wait_until(
                lambda: runs_per_key(database_url, SCHEDULE_FIRE_TIMES, schedule.json()["id"]),
                timeout=120, what="the schedule's first fire",
            )  # fmt: skip
            first = min(fire_times)
            after_save = created.replace(second=0, microsecond=0) + timedelta(minutes=1)
            assert first == after_save or (
                first == after_save + timedelta(minutes=1) and after_save - created < timedelta(seconds=10)
            ), f"saved at {created}, first fired for {first}"
            due = {first + timedelta(minutes=m) for m in range(int((restarted - first).total_seconds() // 60) + 2)}
            wait_until(
                lambda: set(runs_per_key(database_url, SCHEDULE_RUNS, schedule.json()["id"])) >= due,
                timeout=180, what="every minute's fire since the first",
            )  # fmt: skip
            wait_until(
                lambda: runs_per_key(database_url, RULE_FIRINGS, rule.json()["id"]).get("fired", 0) == FAILING_RUNS,
                timeout=120, what="every failed run firing the rule",
            )  # fmt: skip
            disabled = admin.post(f"/schedules/{schedule.json()['id']}/disable")
            assert disabled.status_code == 200, disabled.text  # no fire after this: every task can be counted
            fired = runs_per_key(database_url, SCHEDULE_RUNS, schedule.json()["id"])
            wait_until(lambda: count_tasks(database_url, FINISHED) >= TASKS + BACKFILL_DAYS + len(fired) + FAILING_RUNS,
                       timeout=300,
                       what="the scheduled and backfilled runs finished")  # fmt: skip
        finally:
            codes, output = stop_agent_processes(agents, logs)
        assert codes == [0] * REPLICAS, output

        with psycopg.connect(database_url) as conn:
            statuses, per_task = task_outcomes(conn)
            run_statuses = [
                r[0] for r in conn.execute("select status from ops.runs where id = any(%s::uuid[])", (run_ids,))
            ]
            # A reaped attempt is requeued once: one recorded move per lost attempt's way back to the queue.
            lost = conn.execute("select count(*) from ops.task_attempts where outcome = 'lost'").fetchone()
            requeued = conn.execute(
                "select count(*) from ops.tasks t cross join lateral ops.task_transitions(t.id) h "
                "where h.new_status = 'queued' and h.old_status in ('claimed', 'running')"
            ).fetchone()
            released = conn.execute("select count(*) from ops.task_attempts where outcome = 'released'").fetchone()
        everything = TASKS + BACKFILL_DAYS + len(fired)
        assert statuses == {"succeeded": everything, "failed": FAILING_RUNS}, (statuses, output)
        assert run_statuses == ["succeeded"] * RUNS
        assert len(per_task) == everything + FAILING_RUNS
        for _, key, attempts, outcomes, successes, history in per_task:
            assert outcomes == 1 and successes == (key != "fails"), f"{key}: recorded outcomes {history}"
            assert attempts == len(history) <= 3, f"{key}: attempts {history}"
            assert all(h in ("lost", "released") for h in history[:-1]), (
                f"{key} re-ran without losing its lease: {history}"
            )
        assert lost is not None and requeued is not None and released is not None
        assert requeued[0] == lost[0] + released[0], "every lost or handed-back lease is requeued exactly once"

        # The stream of a finished run read on replica 0, then resumed on replica 2 after its 5th event.
        every = run_events(operator, run_ids[0])
        assert len(every) > 10
        first = stream_events(servers[0], token, run_ids[0], None)
        assert [e["id"] for e in first] == [e["id"] for e in every]
        resumed = stream_events(servers[2], token, run_ids[0], first[4]["id"])
        assert [e["id"] for e in resumed] == [e["id"] for e in every[5:]]

        # The scheduler loops of three replicas (one killed and restarted): one run per interval and per fire.
        intervals = runs_per_key(database_url, BACKFILL_RUNS, backfill_id)
        assert sorted(intervals) == list(range(1, BACKFILL_DAYS + 1))
        assert set(intervals.values()) == {1}
        fires = runs_per_key(database_url, SCHEDULE_RUNS, schedule.json()["id"])
        assert set(fires) >= due and set(fires.values()) == {1}
        with psycopg.connect(database_url) as conn:
            by_origin = conn.execute(
                "select count(*) filter (where backfill_id = %s), count(*) filter (where schedule_id = %s) "
                "from ops.runs",
                (backfill_id, schedule.json()["id"]),
            ).fetchone()
        assert by_origin == (BACKFILL_DAYS, len(fires)), "no run beside the one recorded for its interval or fire"

        # The alert evaluators of the three replicas: one incident for the job, each failed run firing it once
        # (its own window), and no message twice.
        with psycopg.connect(database_url) as conn:
            incidents = conn.execute(
                "select id, count from ops.alert_incidents where rule_id = %s", (rule.json()["id"],)
            ).fetchall()
            windows = conn.execute(
                "select window_key, count(*) from ops.alert_incident_events where rule_id = %s "
                "and kind in ('fired', 'refired') group by 1",
                (rule.json()["id"],),
            ).fetchall()
            deliveries = conn.execute(
                "select e.kind, d.target, count(*) from ops.alert_deliveries d "
                "join ops.alert_incident_events e on e.id = d.event_id where d.incident_id = %s "
                "group by e.id, e.kind, d.target",
                (incidents[0][0] if incidents else None,),
            ).fetchall()
        assert [i[1] for i in incidents] == [FAILING_RUNS], incidents
        assert dict(windows) == {f"run:{run_id}": 1 for run_id in failing}
        assert ("fired", "oncall@example.com", 1) in deliveries
        assert {d[2] for d in deliveries} == {1}, deliveries
