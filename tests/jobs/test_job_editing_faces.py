"""The API and CLI faces of what the job editor and the schedule editor do (DESIGN decision 10): save a
job's next version, archive and restore it, create, change, enable and disable its schedules; admins
only (in SQL), each change audited, bad input named by field."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from control_room.cli import app
from control_room.config import get_settings
from tests.jobs.conftest import JobWorld
from tests.jobs.test_template_runs import api_token, call_api

DEFINITION = {
    "name": "api-made",
    "description": "Made through the API.",
    "owner": "data@test.example",
    "params_schema": {"type": "object", "properties": {"day": {"type": "string"}}},
    "tasks": [{"key": "land", "engine": "shell", "config": {"command": "echo $LAKEHOUSE_PARAM_DAY"}}],
}


def _slug(world: JobWorld) -> str:
    row = world.conn.execute("select slug from ops.projects where id = %s", (world.tenant.project_id,)).fetchone()
    assert row
    return str(row[0])


def _audits(world: JobWorld, entity: str) -> int:
    row = world.conn.execute(
        "select count(*) from ops.audit_log where project_id = %s and entity = %s", (world.tenant.project_id, entity)
    ).fetchone()
    assert row
    return int(row[0])


def test_admins_save_versions_archive_and_schedule_through_the_api(
    world: JobWorld, jobs_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin, operator = api_token(world, "admin"), api_token(world, "operator")
    project = _slug(world)
    body = {"project": project, "definition": DEFINITION}
    changed = {**DEFINITION, "tasks": [{"key": "land", "engine": "shell", "config": {"command": "echo v2"}}]}
    bad_task = {**DEFINITION, "tasks": [{"key": "land", "engine": "shell", "config": {"comand": "x"}}]}
    created, again, second, stale, refused, invalid = call_api(
        monkeypatch,
        jobs_db,
        [
            ("POST", "/api/v1/templates", admin, body),
            ("POST", "/api/v1/templates", admin, body),
            ("POST", "/api/v1/templates", admin, {**body, "definition": changed, "expected_version": 1}),
            ("POST", "/api/v1/templates", admin, {**body, "definition": DEFINITION, "expected_version": 1}),
            ("POST", "/api/v1/templates", operator, {**body, "definition": changed}),
            ("POST", "/api/v1/templates", admin, {**body, "definition": bad_task}),
        ],
    )
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 1 and created.json()["created"]
    assert again.status_code == 200 and again.json()["new_version"] is False
    assert second.status_code == 200 and second.json()["version"] == 2
    assert stale.status_code == 409, stale.text
    assert refused.status_code == 403, refused.text
    assert invalid.status_code == 422 and invalid.json()["field"].startswith("tasks[0].config"), invalid.text
    template_id = created.json()["template_id"]

    schedule = {"name": "hourly", "environment": "dev", "cron": "0 * * * *", "params": {"day": "2026-12-01"}}
    made, bad_cron, bad_param = call_api(
        monkeypatch,
        jobs_db,
        [
            ("POST", f"/api/v1/templates/{template_id}/schedules", admin, schedule),
            ("POST", f"/api/v1/templates/{template_id}/schedules", admin, {**schedule, "cron": "61 * * * *"}),
            ("POST", f"/api/v1/templates/{template_id}/schedules", admin, {**schedule, "params": {"day": 3}}),
        ],
    )
    assert made.status_code == 201, made.text
    assert made.json()["cron"] == "0 * * * *" and len(made.json()["upcoming"]) == 10
    assert bad_cron.status_code == 422 and bad_cron.json()["field"] == "cron", bad_cron.text
    assert bad_param.status_code == 422 and bad_param.json()["field"] == "/params/day", bad_param.text
    schedule_id = made.json()["id"]

    updated, disabled, operator_enable, enabled, archived, restored = call_api(
        monkeypatch,
        jobs_db,
        [
            ("PUT", f"/api/v1/schedules/{schedule_id}", admin, {**schedule, "timezone": "Europe/Berlin"}),
            ("POST", f"/api/v1/schedules/{schedule_id}/disable", admin, None),
            ("POST", f"/api/v1/schedules/{schedule_id}/enable", operator, None),
            ("POST", f"/api/v1/schedules/{schedule_id}/enable", admin, None),
            ("POST", f"/api/v1/templates/{template_id}/archive", admin, None),
            ("POST", f"/api/v1/templates/{template_id}/restore", admin, None),
        ],
    )
    assert updated.status_code == 200 and updated.json()["timezone"] == "Europe/Berlin", updated.text
    assert disabled.status_code == 200 and disabled.json()["enabled"] is False
    assert operator_enable.status_code == 403
    assert enabled.json()["enabled"] is True
    assert archived.status_code == 200 and archived.json()["archived_at"] is not None
    assert restored.json()["archived_at"] is None
    row = world.conn.execute("select enabled from ops.schedules where id = %s", (schedule_id,)).fetchone()
    assert row == (False,)  # archiving disabled it; restoring leaves it for an admin to enable
    assert _audits(world, "job_templates") >= 4 and _audits(world, "schedules") >= 3


def test_the_cli_saves_archives_and_schedules(
    world: JobWorld, jobs_db: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LAKEHOUSE_DATABASE_URL", jobs_db)
    get_settings.cache_clear()
    project, name = _slug(world), f"cli-{uuid.uuid4().hex[:6]}"
    job = tmp_path / "job.yaml"
    job.write_text(f"name: {name}\ntasks:\n  - key: a\n    engine: shell\n    config:\n      command: 'true'\n")
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text(f"template: {name}\nname: nightly\nenvironment: dev\ncron: '30 2 * * *'\n")
    runner = CliRunner()
    try:
        saved = runner.invoke(app, ["jobs", "save", str(job), "--project", project])
        assert saved.exit_code == 0 and "created: version 1" in saved.output, saved.output
        stale = runner.invoke(app, ["jobs", "save", str(job), "--project", project, "--expected-version", "0"])
        assert stale.exit_code != 0 and "version" in stale.output
        made = runner.invoke(app, ["jobs", "schedule-save", str(schedule), "--project", project])
        assert made.exit_code == 0, made.output
        schedule.write_text(schedule.read_text().replace("30 2", "45 3"))
        changed = runner.invoke(app, ["jobs", "schedule-save", str(schedule), "--project", project])
        assert changed.exit_code == 0, changed.output
        rows = world.conn.execute(
            "select s.cron from ops.schedules s join ops.job_templates t on t.id = s.template_id where t.name = %s",
            (name,),
        ).fetchall()
        assert rows == [("45 3 * * *",)]  # changed in place, not a second schedule
        assert runner.invoke(app, ["jobs", "disable", f"{project}/nightly"]).exit_code == 0
        assert runner.invoke(app, ["jobs", "archive", name, "--project", project]).exit_code == 0
        archived = world.conn.execute("select archived_at from ops.job_templates where name = %s", (name,)).fetchone()
        assert archived and archived[0] is not None
        assert runner.invoke(app, ["jobs", "restore", name, "--project", project]).exit_code == 0
        missing = runner.invoke(app, ["jobs", "save", str(tmp_path / "nope.yaml"), "--project", project])
        assert missing.exit_code != 0 and "cannot read" in missing.output
    finally:
        get_settings.cache_clear()
