"""Services behind the Jobs pages, on real Postgres: the keyset-paged, filtered templates list; run history;
templates saved from YAML as new versions (admins only, audited, exported back by `lakehouse bundle export`);
archive and restore; schedules saved and enabled by admins, previewed in two time zones."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from control_room.bundle.deploy import plan_bundle
from control_room.bundle.loader import load_bundle
from control_room.db.tables import JobTemplateVersion
from control_room.services import job_editing, job_history, jobs
from control_room.services.auth import UserPrincipal, scoped
from control_room.services.errors import Conflict, Forbidden, Invalid, NotFound, from_db_error
from tests.jobs.conftest import JobWorld, end_run, make_world, run_async

EDITED = """\
name: {name}
description: Made in the UI.
owner: ui-team@test.example
tags: [ui, nightly]
params_schema:
  type: object
  properties:
    day: {{type: string}}
    mode: {{type: string, enum: [full, delta], default: delta}}
  required: [day]
  additionalProperties: false
tasks:
  - key: extract
    engine: shell
    config: {{command: echo {command}}}
  - key: load
    engine: shell
    depends_on: [extract]
    config: {{command: echo load}}
"""


def _as(world: JobWorld, jobs_db: str, role: str, work: Any) -> Any:
    principal = UserPrincipal(user_id=world.user(role), email=f"{role}@test.example")

    async def scoped_work(conn: psycopg.AsyncConnection) -> Any:
        try:
            async with scoped(conn, principal):
                return await work(conn)
        except psycopg.Error as exc:  # as the API and the pages see it: LH403 -> Forbidden, ...
            raise from_db_error(exc) or exc from exc

    return run_async(jobs_db, scoped_work)


def _project_slug(world: JobWorld) -> str:
    row = world.conn.execute("select slug from ops.projects where id = %s", (world.tenant.project_id,)).fetchone()
    assert row
    return str(row[0])


def _save(world: JobWorld, jobs_db: str, text: str, *, role: str = "admin", expected: int | None = None) -> Any:
    project = _project_slug(world)
    return _as(
        world,
        jobs_db,
        role,
        lambda c: job_editing.save_template(
            c, project_id=world.tenant.project_id, project=project, text=text, expected_version=expected, by="ui-test"
        ),
    )


def test_the_jobs_list_filters_and_pages_by_name_with_run_figures(world: JobWorld, jobs_db: str) -> None:
    for name in ("alpha-load", "beta-report", "gamma-export"):
        _save(world, jobs_db, EDITED.format(name=name, command=name))
    beta = jobs.resolve_template  # the list is read as a viewer, through RLS
    viewer_rows: list[dict[str, Any]] = []

    async def run_twice(conn: psycopg.AsyncConnection) -> None:
        template_id = await beta(conn, "beta-report")
        for outcome in ("succeeded", "failed"):
            run, _ = await jobs.run_template(conn, template_id=template_id, environment="dev", params={"day": "d"})
            end_run(world.conn, run["id"], outcome)

    run_async(jobs_db, run_twice)

    def page(**filters: Any) -> Any:
        query = jobs.TemplatesQuery(project_id=world.tenant.project_id, **filters)

        async def work(conn: psycopg.AsyncConnection) -> Any:
            first, cursor = await jobs.templates_page(conn, query=query, limit=2)
            rest, end = await jobs.templates_page(conn, query=query, cursor=cursor, limit=2) if cursor else ([], None)
            return first, rest, end

        return _as(world, jobs_db, "viewer", work)

    first, rest, end = page()
    names = [r["name"] for r in first + rest]
    assert names == sorted(names) and len(names) == 4 and end is None  # three saved + the fixture's template
    viewer_rows = first + rest
    beta_row = next(r for r in viewer_rows if r["name"] == "beta-report")
    assert (beta_row["runs"], beta_row["success_rate"], beta_row["last_status"]) == (2, 0.5, "failed")
    assert beta_row["owner"] == "ui-team@test.example" and beta_row["tags"] == ["ui", "nightly"]
    assert [r["name"] for r in page(text="gamma")[0]] == ["gamma-export"]
    assert [r["name"] for r in page(text="NIGHTLY")[0]][:1] == ["alpha-load"]
    assert [r["name"] for r in page(last_status="failed")[0]] == ["beta-report"]
    assert "beta-report" not in [r["name"] for r in page(last_status="never")[0] + page(last_status="never")[1]]
    assert page(tag="nightly", owner="nobody@test.example")[0] == []
    with pytest.raises(Invalid) as bad:
        run_async(jobs_db, lambda c: jobs.templates_page(c, query=jobs.TemplatesQuery(world.tenant.project_id),
                                                          cursor="nonsense"))  # fmt: skip
    assert bad.value.field == "cursor"


def test_run_history_has_durations_daily_success_and_task_durations(world: JobWorld, jobs_db: str) -> None:
    async def three_runs(conn: psycopg.AsyncConnection) -> list[uuid.UUID]:
        ids = []
        for _ in range(3):
            run, _ = await jobs.run_template(
                conn, template_id=world.template_id, environment="dev", params={"source": "orders"}
            )
            ids.append(run["id"])
        return ids

    ids = run_async(jobs_db, three_runs)
    end_run(world.conn, ids[0], "succeeded")
    end_run(world.conn, ids[1], "failed")
    world.conn.execute(
        "update ops.tasks set started_at = finished_at - interval '90 seconds' where run_id = %s", (ids[0],)
    )
    world.conn.execute("select ops.refresh_run_status(%s)", (ids[0],))

    async def history(conn: psycopg.AsyncConnection) -> Any:
        since = datetime.now(UTC) - timedelta(days=1)
        return (
            await job_history.run_durations(conn, template_id=world.template_id),
            await job_history.daily_success(conn, template_id=world.template_id, since=since),
            await job_history.task_durations(conn, template_id=world.template_id),
        )

    durations, daily, tasks = run_async(jobs_db, history)
    assert [r["id"] for r in durations] == ids  # oldest first
    assert [r["status"] for r in durations] == ["succeeded", "failed", "queued"]
    assert durations[2]["duration_s"] is None and durations[0]["version"] == 1
    assert [(d["finished"], d["succeeded"], d["rate"]) for d in daily] == [(2, 1, 0.5)]
    first_tasks = {(t["key"], round(t["duration_s"])) for t in tasks if t["run_id"] == ids[0]}
    assert first_tasks == {("land", 90), ("report", 90)}
    with pytest.raises(Invalid):
        run_async(jobs_db, lambda c: job_history.run_durations(c, template_id=world.template_id, limit=0))


def test_a_template_saved_from_yaml_is_versioned_audited_and_admin_only(world: JobWorld, jobs_db: str) -> None:
    text = EDITED.format(name="ui-made", command="v1")
    with pytest.raises(Forbidden):
        _save(world, jobs_db, text, role="operator")
    saved = _save(world, jobs_db, text)
    assert (saved["version"], saved["new_version"], saved["created"]) == (1, True, True)
    again = _save(world, jobs_db, text.replace("Made in the UI.", "Made in the UI, renamed."), expected=1)
    assert (again["version"], again["new_version"]) == (1, False)  # metadata only: no new version
    changed = _save(world, jobs_db, EDITED.format(name="ui-made", command="v2"), expected=1)
    assert (changed["version"], changed["new_version"]) == (2, True)
    with pytest.raises(Conflict) as stale:
        _save(world, jobs_db, EDITED.format(name="ui-made", command="v3"), expected=1)
    assert "version 2" in stale.value.message
    audit = world.conn.execute(
        "select action, actor, detail ->> 'source', detail ->> 'version' from ops.audit_log "
        "where entity = 'job_templates' and entity_id = %s order by id",
        (saved["template_id"],),
    ).fetchall()
    assert audit == [
        ("create", "ui-test", "ui", "1"),
        ("update", "ui-test", "ui", None),
        ("update", "ui-test", "ui", "2"),
    ]
    with pytest.raises(Invalid) as bad:
        _save(world, jobs_db, text.replace("depends_on: [extract]", "depends_on: [nowhere]"))
    assert bad.value.field == "tasks[1].depends_on[0]" and "unknown task key" in bad.value.message


def test_the_editor_reports_problems_with_lines_as_the_bundle_does(world: JobWorld) -> None:
    template, problems = job_editing.parse_template("name: x\ntasks: []\n", project="p")
    assert template is None and problems[0].path == "tasks" and problems[0].line == 2
    template, problems = job_editing.parse_template("name: [oops\n", project="p")
    assert template is None and "invalid YAML" in job_editing.problem_line(problems[0])
    template, problems = job_editing.parse_template("project: other\nname: x\ntasks: []\n", project="p")
    assert template is None and problems[0].path == "project"
    template, problems = job_editing.parse_template(job_editing.NEW_JOB_YAML, project="p")
    assert template is not None and problems == []
    # The YAML the editor opens with is the version itself: parsing it back gives the same definition.
    detail = {"project": "p", "name": "n", "description": "", "owner": None, "tags": []}
    version = JobTemplateVersion(params_schema={"type": "object"}, max_attempts=2, retry_backoff_s=5, timeout_s=None,
                                 tasks=[{"key": "a", "engine": "shell", "config": {"command": "echo"}}])  # fmt: skip
    reparsed, _ = job_editing.parse_template(job_editing.template_yaml(detail, version), project="p")
    assert reparsed is not None and reparsed.retries.max_attempts == 2 and reparsed.tasks[0].key == "a"


def test_what_the_ui_saved_round_trips_through_bundle_export(world: JobWorld, jobs_db: str, tmp_path: Path) -> None:
    _save(world, jobs_db, EDITED.format(name="ui-round-trip", command="v1"))
    _save(world, jobs_db, EDITED.format(name="ui-round-trip", command="v2"), expected=1)
    org = world.conn.execute("select slug from ops.orgs where id = %s", (world.tenant.org_id,)).fetchone()
    assert org
    target = tmp_path / "exported"
    env = {**os.environ, "LAKEHOUSE_DATABASE_URL": jobs_db}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "lakehouse"), "bundle", "export", str(target), "--org", str(org[0])],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    exported = (target / "job_templates" / _project_slug(world) / "ui-round-trip.yaml").read_text()
    assert "echo v2" in exported and "ui-team@test.example" in exported
    loaded = load_bundle(target)
    assert plan_bundle(world.conn, loaded).is_empty  # deploying the export changes nothing


def test_archive_and_restore_are_admin_only_audited_and_stop_schedules(world: JobWorld, jobs_db: str) -> None:
    schedule_id = world.schedule("*/5 * * * *")
    with pytest.raises(Forbidden):
        _as(world, jobs_db, "operator",
            lambda c: job_editing.set_archived(c, template_id=world.template_id, archived=True, by="op"))  # fmt: skip
    _as(world, jobs_db, "admin",
        lambda c: job_editing.set_archived(c, template_id=world.template_id, archived=True, by="ad"))  # fmt: skip
    row = world.conn.execute(
        "select t.archived_at is not null, s.enabled from ops.job_templates t join ops.schedules s "
        "on s.template_id = t.id where s.id = %s",
        (schedule_id,),
    ).fetchone()
    assert row == (True, False)
    with pytest.raises(Invalid) as refused:
        _as(world, jobs_db, "operator", lambda c: jobs.run_template(
            c, template_id=world.template_id, environment="dev", params={"source": "orders"}))  # fmt: skip
    assert "archived" in refused.value.message
    _as(world, jobs_db, "admin",
        lambda c: job_editing.set_archived(c, template_id=world.template_id, archived=False, by="ad"))  # fmt: skip
    actions = world.conn.execute(
        "select action from ops.audit_log where entity = 'job_templates' and entity_id = %s order by id",
        (world.template_id,),
    ).fetchall()
    assert [a[0] for a in actions] == ["archive", "restore"]


def test_schedules_saved_by_admins_are_checked_planned_again_and_audited(world: JobWorld, jobs_db: str) -> None:
    project = _project_slug(world)
    template = world.conn.execute("select name from ops.job_templates where id = %s", (world.template_id,)).fetchone()
    assert template
    draft = job_editing.ScheduleDraft(name="every-hour", environment="dev", cron="0 * * * *",
                                      timezone="Europe/Berlin", params={"source": "orders"})  # fmt: skip

    def save(role: str, what: job_editing.ScheduleDraft, schedule_id: uuid.UUID | None = None) -> Any:
        return _as(world, jobs_db, role, lambda c: job_editing.save_schedule(
            c, template_id=world.template_id, template=str(template[0]), project=project, schedule_id=schedule_id,
            draft=what, by="ui-test"))  # fmt: skip

    with pytest.raises(Forbidden):
        save("operator", draft)
    schedule_id = save("admin", draft)
    world.plan(schedule_id, datetime.now(UTC))
    save("admin", job_editing.ScheduleDraft(**{**draft.__dict__, "cron": "30 2 * * *"}), schedule_id)
    row = world.conn.execute("select cron, next_fire_at from ops.schedules where id = %s", (schedule_id,)).fetchone()
    assert row == ("30 2 * * *", None)  # a changed cron is planned again by the scheduler
    for bad, field in (
        ({"cron": "61 * * * *"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"params": {"source": "elsewhere"}}, "/params/source"),
        ({"name": "Bad Name"}, "name"),
        ({"jitter_s": -1}, "jitter_s"),
    ):
        with pytest.raises(Invalid) as refused:
            save("admin", job_editing.ScheduleDraft(**{**draft.__dict__, **bad}), schedule_id)
        assert refused.value.field == field
    with pytest.raises(Forbidden):
        _as(world, jobs_db, "operator",
            lambda c: job_editing.set_schedule_enabled(c, schedule_id=schedule_id, enabled=False, by="op"))  # fmt: skip
    _as(world, jobs_db, "admin",
        lambda c: job_editing.set_schedule_enabled(c, schedule_id=schedule_id, enabled=False, by="ad"))  # fmt: skip
    actions = world.conn.execute(
        "select action from ops.audit_log where entity = 'schedules' and entity_id = %s order by id", (schedule_id,)
    ).fetchall()
    assert [a[0] for a in actions] == ["create", "update", "disable"]


def test_the_fire_preview_shows_the_schedule_zone_and_the_viewer_zone_across_dst() -> None:
    now = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)  # Berlin springs forward on the 29th at 02:00
    fires = job_editing.preview_fires("30 2 * * *", "Europe/Berlin", viewer_zone="America/New_York", now=now, count=3)
    assert [local.strftime("%d %H:%M %Z") for local, _ in fires] == ["29 03:30 CEST", "30 02:30 CEST", "31 02:30 CEST"]
    assert [viewer.strftime("%d %H:%M") for _, viewer in fires] == ["28 21:30", "29 20:30", "30 20:30"]
    assert job_editing.preview_fires("@daily", "UTC", viewer_zone="Not/AZone", now=now, count=1)[0][1].hour == 0


def test_the_demo_backfills_a_job_so_the_jobs_page_has_history(jobs_db: str) -> None:
    from control_room.services.demo import DEMO_BACKFILL_DAYS, load_demo_data

    assert load_demo_data(jobs_db) is True
    with psycopg.connect(jobs_db, autocommit=True) as conn:
        row = conn.execute(
            "select t.name, b.total, b.status, b.max_concurrency, "
            "(select count(*) from ops.runs r where r.backfill_id = b.id and r.template_id = t.id) "
            "from ops.backfills b join ops.job_templates t on t.id = b.template_id"
        ).fetchall()
    assert row == [("nightly-ingest", DEMO_BACKFILL_DAYS, "running", 2, 2)]  # two at a time, the rest as they end


def test_an_admin_of_another_org_cannot_edit_archive_or_schedule_this_orgs_job(
    world: JobWorld, jobs_db: str, conn: psycopg.Connection
) -> None:
    other = make_world(conn)
    intruder = UserPrincipal(user_id=other.user("admin"), email="intruder@test.example")
    project = _project_slug(world)
    draft = job_editing.ScheduleDraft(name="intrusion", environment="dev", cron="@daily", params={"source": "orders"})
    attempts = [
        lambda c: job_editing.save_template(c, project_id=world.tenant.project_id, project=project,
                                            text=EDITED.format(name="planted", command="x"), expected_version=None,
                                            by="intruder"),
        lambda c: job_editing.set_archived(c, template_id=world.template_id, archived=True, by="intruder"),
        lambda c: job_editing.save_schedule(c, template_id=world.template_id, template="t", project=project,
                                            schedule_id=None, draft=draft, by="intruder"),
    ]  # fmt: skip
    for attempt in attempts:

        async def work(c: psycopg.AsyncConnection, attempt: Any = attempt) -> Any:
            try:
                async with scoped(c, intruder):
                    return await attempt(c)
            except psycopg.Error as exc:
                raise from_db_error(exc) or exc from exc

        with pytest.raises((Forbidden, NotFound)):
            run_async(jobs_db, work)
    assert world.conn.execute("select count(*) from ops.job_templates where name = 'planted'").fetchone() == (0,)
    assert world.conn.execute(
        "select archived_at is null from ops.job_templates where id = %s", (world.template_id,)
    ).fetchone() == (True,)


def test_a_projects_schedules_list_with_their_latest_fire(
    world: JobWorld, jobs_db: str, conn: psycopg.Connection
) -> None:
    from control_room.services import schedules

    other = make_world(conn)
    other.schedule("@daily")
    schedule_id = world.schedule("*/5 * * * *")

    async def work(c: psycopg.AsyncConnection) -> Any:
        before = await schedules.list_schedules(c, project_id=world.tenant.project_id)
        await schedules.fire_now(c, schedule_id=schedule_id, now=datetime.now(UTC), by="test")
        return before, await schedules.list_schedules(c, project_id=world.tenant.project_id)

    before, after = run_async(jobs_db, work)
    assert [s["id"] for s in before] == [schedule_id] and before[0]["last_fire_status"] is None
    assert (after[0]["last_fire_status"], after[0]["last_run_status"]) == ("fired", "queued")


def test_an_operator_fires_a_schedule_now_and_a_viewer_may_not(world: JobWorld, jobs_db: str) -> None:
    from control_room.services import schedules

    schedule_id = world.schedule("0 3 * * *")

    def fire(role: str) -> Any:
        now = datetime.now(UTC)
        return _as(world, jobs_db, role, lambda c: schedules.fire_now(c, schedule_id=schedule_id, now=now, by=role))

    with pytest.raises(Forbidden):
        fire("viewer")
    fired = fire("operator")
    assert fired["status"] == "fired" and fired["run_id"] is not None
