"""Job templates and schedules edited in the UI: YAML checked by the bundle's own validators, saved as new
immutable versions, archived and restored, schedules created and changed (admins; audited in SQL).

The YAML of the editor is one template as the bundle writes it (``job_templates/<project>/<name>.yaml``
holds a list of these), without ``project``: the page's project is used. What is saved here is what
``lakehouse bundle export`` writes back (same models, same content hash).
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from pydantic import ValidationError

from control_room.bundle.export import dump_yaml, item_document
from control_room.bundle.loader import template_problems
from control_room.bundle.models import JobTemplate, Schedule, TaskTemplate
from control_room.bundle.source import InvalidInput, Problem, format_path, parse_yaml, validate_document
from control_room.bundle.store import template_fields, version_fields, version_values
from control_room.db.rows import one_row, returned_id
from control_room.db.tables import JobTemplateVersion
from control_room.services.bundles import version_args
from control_room.services.errors import Invalid
from control_room.services.jobs import validate_params, version_schema
from control_room.services.schedules import CronSchedule, check_schedule_fields

EDITOR_FILE = "job.yaml"
NEW_JOB_YAML = """\
name: my-new-job
description: What this job does.
owner: data-team@example.com
tags: [example]
params_schema:
  type: object
  properties:
    day:
      type: string
      description: The day to process (YYYY-MM-DD).
    full_refresh:
      type: boolean
      default: false
  required: [day]
  additionalProperties: false
retries:
  max_attempts: 2
  backoff_s: 10
tasks:
  - key: extract
    engine: shell
    config:
      command: echo "extract $LAKEHOUSE_PARAM_DAY"
  - key: load
    engine: shell
    depends_on: [extract]
    config:
      command: echo "load (full refresh $LAKEHOUSE_PARAM_FULL_REFRESH)"
"""


def parse_template(text: str, *, project: str) -> tuple[JobTemplate | None, list[Problem]]:
    """The template the editor's YAML defines in ``project``, or None and every problem (line, path, message)."""
    try:
        document = parse_yaml(text, EDITOR_FILE)
    except InvalidInput as exc:
        return None, exc.problems
    if isinstance(document.data, dict):
        given = document.data.get("project", project)
        if given != project:
            return None, [document.problem(("project",), f'must be "{project}", the project this page edits')]
        document.data = {**document.data, "project": project}
    try:
        template = validate_document(document, JobTemplate)
    except InvalidInput as exc:
        return None, exc.problems
    problems = template_problems(template, document)
    return (None, problems) if problems else (template, [])


def problem_line(problem: Problem) -> str:
    """A problem as the editor lists it: ``line 12 · tasks[1].depends_on[0]: unknown task key "x"``."""
    return f"line {problem.line} · {problem.path}: {problem.message}"


def template_yaml(template: dict[str, Any], version: JobTemplateVersion | None) -> str:
    """The editor's YAML of a template (a row of ``jobs.get_template``) at one of its versions."""
    data = template_fields(template) | {"tasks": [{"key": "todo", "engine": "shell"}]}
    if version is not None:
        data.update(version_fields(version.model_dump()))
    model = JobTemplate.model_validate({k: v for k, v in data.items() if v is not None})
    document = item_document(model)
    document.pop("project", None)
    return dump_yaml(document)


def definition_text(definition: dict[str, Any]) -> str:
    """The editor's YAML of a template given as data (the API's body), so both are checked the same way."""
    return dump_yaml({k: v for k, v in definition.items() if k != "project"})


async def save_template(
    conn: AsyncConnection,
    *,
    project_id: uuid.UUID,
    project: str,
    text: str,
    expected_version: int | None,
    by: str,
) -> dict[str, Any]:
    """Validate the editor's YAML and save it (admins, checked in SQL): a changed definition becomes the
    next version. Raises Invalid naming the first problem's path (its line in the message)."""
    template, problems = parse_template(text, project=project)
    if template is None:
        first = problems[0]
        raise Invalid(f"line {first.line}: {first.message}", field=first.path)
    row = await one_row(
        conn,
        "select template_id, version, new_version, created from ops.save_job_template("
        "%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            project_id,
            template.name,
            template.description,
            template.owner,
            list(template.tags),
            *version_args(version_values(template)),
            expected_version,
            by,
        ),
    )
    return {"template_id": row[0], "name": template.name, "version": row[1], "new_version": row[2], "created": row[3]}


async def set_archived(conn: AsyncConnection, *, template_id: uuid.UUID, archived: bool, by: str) -> None:
    """Archive a template (its schedules are disabled) or restore it (admins, checked in SQL)."""
    await conn.execute("select 1 from ops.set_job_template_archived(%s, %s, %s)", (template_id, archived, by))


# Schedules ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleDraft:
    """A schedule as the editor holds it (the bundle's ``Schedule`` fields without project and template)."""

    name: str
    environment: str
    cron: str
    timezone: str = "UTC"
    params: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    catchup: str = "latest"
    catchup_limit: int = 10
    overlap: str = "allow"
    jitter_s: int = 0
    misfire_grace_s: int = 60
    description: str = ""


def check_schedule(draft: ScheduleDraft, *, project: str, template: str, params_schema: dict[str, Any]) -> None:
    """The bundle's checks of a schedule, then the scheduler's (cron, zone, policies) and the template's
    params schema; raises Invalid naming the first field at fault."""
    try:
        Schedule.model_validate({**asdict(draft), "project": project, "template": template})
    except ValidationError as exc:
        error = exc.errors()[0]
        raise Invalid(error["msg"], field=format_path([p for p in error["loc"] if isinstance(p, str | int)])) from exc
    check_schedule_fields(cron=draft.cron, timezone=draft.timezone, catchup=draft.catchup, overlap=draft.overlap)
    validate_params(params_schema, draft.params)


def preview_fires(
    cron: str, timezone: str, *, viewer_zone: str, now: datetime, count: int = 10
) -> list[tuple[datetime, datetime]]:
    """The next ``count`` fires after ``now``, each in the schedule's zone and in the viewer's."""
    try:
        viewer = ZoneInfo(viewer_zone)
    except (KeyError, ValueError):
        viewer = ZoneInfo("UTC")
    fires = CronSchedule.of(cron, timezone).upcoming(now, count)
    zone = ZoneInfo(timezone)
    return [(t.astimezone(zone), t.astimezone(viewer)) for t in fires]


async def save_schedule(
    conn: AsyncConnection,
    *,
    template_id: uuid.UUID,
    template: str,
    project: str,
    schedule_id: uuid.UUID | None,
    draft: ScheduleDraft,
    by: str,
) -> uuid.UUID:
    """Create (``schedule_id`` None) or change a schedule of a template (admins, checked in SQL)."""
    schema = await version_schema(conn, template_id=template_id, version=None)
    check_schedule(draft, project=project, template=template, params_schema=schema)
    return await returned_id(
        conn,
        "select ops.save_schedule(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            schedule_id,
            template_id,
            draft.name,
            draft.environment,
            draft.cron,
            draft.timezone,
            Jsonb(draft.params),
            draft.enabled,
            draft.catchup,
            draft.catchup_limit,
            draft.overlap,
            draft.jitter_s,
            draft.misfire_grace_s,
            draft.description,
            by,
        ),
    )


async def set_schedule_enabled(conn: AsyncConnection, *, schedule_id: uuid.UUID, enabled: bool, by: str) -> None:
    """Enable or disable a schedule (admins, checked in SQL; operators pause and resume instead)."""
    await conn.execute("select 1 from ops.set_schedule_enabled(%s, %s, %s)", (schedule_id, enabled, by))


# The task form of the editor ------------------------------------------------------------------------

_TEMPLATE_TASK_FIELDS = frozenset(TaskTemplate.model_fields) - {"config"}


def editor_spec(text: str) -> dict[str, Any]:
    """The run spec the editor's YAML stands for (each task's ``config`` flattened into it, as a run
    carries it), for the task form; ValueError saying why the YAML cannot be read."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"The YAML cannot be read ({exc.__class__.__name__}): fix it to use the form.") from exc
    if not isinstance(data, dict):
        raise ValueError("The YAML is not a mapping: fix it to use the form.")
    tasks = data.get("tasks")
    flat = [
        {**(t.get("config") or {}), **{k: v for k, v in t.items() if k != "config"}} if isinstance(t, dict) else t
        for t in (tasks if isinstance(tasks, list) else [])
    ]
    return {"name": data.get("name"), "tasks": flat}


def with_spec_tasks(text: str, spec: dict[str, Any]) -> str:
    """The editor's YAML with its tasks replaced by the form's (engine fields back under ``config``)."""
    data = yaml.safe_load(text)
    tasks = []
    for task in spec.get("tasks") or []:
        common = {k: v for k, v in task.items() if k in _TEMPLATE_TASK_FIELDS}
        config = {k: v for k, v in task.items() if k not in _TEMPLATE_TASK_FIELDS}
        tasks.append({**common, **({"config": config} if config else {})})
    return dump_yaml({**data, "tasks": tasks})
