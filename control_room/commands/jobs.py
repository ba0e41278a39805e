"""`lakehouse jobs ...`: list and run job templates, pause/resume/fire schedules, backfill a date range."""

from __future__ import annotations

import getpass
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import psycopg
import typer
import yaml

from control_room.commands.on_database import on_database
from control_room.services import backfills, job_editing, jobs, runs, schedules
from control_room.services.errors import Invalid, ServiceError

app = typer.Typer(help="Job templates: run them, their schedules, backfills.", no_args_is_help=True)

T = TypeVar("T")


ScheduleName = typer.Argument(..., help="Schedule name, PROJECT/NAME or id.")
TemplateName = typer.Argument(..., help="Template name, PROJECT/NAME or id.")
TemplateProject = typer.Option(None, "--project", help="Project slug, when the name is ambiguous.")
BackfillId = typer.Argument(..., help="The backfill's id.")
EnvOption = typer.Option("dev", "--env", help="Environment: dev, staging or prod.")
ParamOption = Annotated[list[str] | None, typer.Option("--param", help="A parameter KEY=VALUE (repeatable).")]


def _on_schedule(name: str, act: Callable[[psycopg.AsyncConnection, uuid.UUID], Awaitable[T]]) -> T:
    """Run ``act`` on the database with the id of the schedule NAME names (a name, PROJECT/NAME or an id)."""

    async def work(conn: psycopg.AsyncConnection) -> T:
        return await act(conn, await schedules.resolve_schedule(conn, name))

    return on_database(work)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def parse_params(pairs: list[str], params_json: str | None) -> dict[str, Any]:
    """``k=v`` pairs (a value is read as JSON when it parses, e.g. 10, true, ["a"]; else as text)."""
    params: dict[str, Any] = {}
    if params_json:
        try:
            loaded = json.loads(params_json)
        except json.JSONDecodeError as exc:
            raise Invalid(f"not JSON: {exc.msg}", field="--params-json") from exc
        if not isinstance(loaded, dict):
            raise Invalid('must be a JSON object such as {"source": "orders"}', field="--params-json")
        params.update(loaded)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise Invalid(f'"{pair}" is not KEY=VALUE (e.g. --param source=orders)', field="--param")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def _when(value: str, option: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise Invalid("use an ISO 8601 time such as 2026-11-01T00:00:00Z", field=option) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _fail(exc: ServiceError) -> typer.Exit:
    field = f" ({exc.field})" if exc.field else ""
    typer.echo(f"error{field}: {exc.message}", err=True)
    return typer.Exit(2)


@app.command("list")
def list_command(
    project: str | None = typer.Option(None, "--project", help="Project slug or id."),
    archived: bool = typer.Option(False, "--archived", help="Include archived templates."),
) -> None:
    """Job templates with their latest version, last run, success rate, p50/p95 duration and next fire."""
    rows = on_database(lambda c: jobs.list_templates(c, project=project, include_archived=archived))
    if not rows:
        typer.echo("no job templates (deploy a bundle with job_templates: lakehouse bundle deploy DIR)")
        return
    typer.echo(f"{'TEMPLATE':40} {'VER':>3} {'RUNS':>5} {'OK%':>5} {'P50 S':>7} {'P95 S':>7} {'LAST':10} NEXT FIRE")
    for row in rows:
        rate = "-" if row["success_rate"] is None else f"{100 * row['success_rate']:.0f}"
        p50 = "-" if row["p50_s"] is None else f"{row['p50_s']:.1f}"
        p95 = "-" if row["p95_s"] is None else f"{row['p95_s']:.1f}"
        nxt = row["next_fire_at"].isoformat(timespec="minutes") if row["next_fire_at"] else "-"
        name = f"{row['project']}/{row['name']}"
        typer.echo(
            f"{name:40} {row['latest_version'] or '-':>3} {row['runs']:>5} {rate:>5} {p50:>7} {p95:>7} "
            f"{row['last_status'] or '-':10} {nxt}"
        )


@app.command("run")
def run_command(
    name: str = TemplateName,
    env: str = EnvOption,
    param: ParamOption = None,
    params_json: str | None = typer.Option(None, "--params-json", help="Parameters as one JSON object."),
    version: int | None = typer.Option(None, "--version", min=1, help="Template version (default: the latest)."),
    project: str | None = TemplateProject,
) -> None:
    """Run a job template; its params are checked against the version's params schema."""
    if env not in ("dev", "staging", "prod"):
        raise _fail(Invalid("use dev, staging or prod", field="--env"))
    try:
        params = parse_params(param or [], params_json)
    except Invalid as exc:
        raise _fail(exc) from exc

    async def work(conn: psycopg.AsyncConnection) -> tuple[dict[str, Any], bool]:
        template_id = await jobs.resolve_template(conn, name, project=project)
        return await jobs.run_template(
            conn,
            template_id=template_id,
            environment=env,
            params=params,
            version=version,
            trigger="manual",
            requested_by_name=_actor(),
        )

    run, _ = on_database(work)
    typer.echo(f"run {run['id']} of {run['name']} v{run['template_version']} in {env}: {run['status']}")


@app.command("schedules")
def schedules_command() -> None:
    """Schedules with their policies and next fire."""
    rows = on_database(lambda c: schedules.list_schedules(c))
    for row in rows:
        state = "paused" if row["paused_at"] else ("enabled" if row["enabled"] else "disabled")
        nxt = row["next_fire_at"].isoformat(timespec="minutes") if row["next_fire_at"] else "-"
        typer.echo(
            f"{row['project']}/{row['name']:30} {row['cron']:15} {row['timezone']:18} {state:8} "
            f"catchup={row['catchup']} overlap={row['overlap']} next={nxt}"
        )


# Sets a schedule's switch (paused, enabled) to a value as the actor: (conn, schedule id, value, actor).
ScheduleSwitch = Callable[[psycopg.AsyncConnection, uuid.UUID, bool, str], Awaitable[object]]


def _switch_commands(switch: ScheduleSwitch, *commands: tuple[str, bool, str, str]) -> None:
    """A command per (command, value, what the reply says was done, help): it sets the switch of the schedule
    NAME names to the value, then says `schedule NAME <done>`."""
    for command_name, value, done, help_text in commands:
        app.command(command_name, help=help_text)(_switch_command(switch, value, done))


def _switch_command(switch: ScheduleSwitch, value: bool, done: str) -> Callable[[str], None]:
    def command(name: str = ScheduleName) -> None:
        _on_schedule(name, lambda conn, schedule_id: switch(conn, schedule_id, value, _actor()))
        typer.echo(f"schedule {name} {done}")

    return command


def _set_paused(conn: psycopg.AsyncConnection, schedule_id: uuid.UUID, paused: bool, by: str) -> Awaitable[None]:
    return schedules.set_paused(conn, schedule_id=schedule_id, paused=paused, by=by)


_switch_commands(
    _set_paused,
    ("pause", True, "paused", "Pause a schedule: it fires nothing until resumed."),
    ("resume", False, "resumed",
     "Resume a schedule from its next fire time (fires that fell in the pause are not caught up)."),
)  # fmt: skip


@app.command("fire")
def fire_command(name: str = ScheduleName) -> None:
    """Fire a schedule now, whatever its overlap policy."""
    fired = _on_schedule(name, lambda conn, schedule_id: schedules.fire_now(
        conn, schedule_id=schedule_id, now=datetime.now(UTC), by=_actor()
    ))  # fmt: skip
    typer.echo(f"schedule {name}: {fired['status']}, run {fired['run_id'] or '-'}")


@app.command("backfill")
def backfill_command(
    name: str = TemplateName,
    start: str = typer.Option(..., "--start", help="Range start, ISO 8601 (UTC when no offset is given)."),
    end: str = typer.Option(..., "--end", help="Range end, ISO 8601."),
    step: str | None = typer.Option(None, "--step", help="15m, 6h, 1d, 1w or a cron expression."),
    schedule: str | None = typer.Option(None, "--schedule", help="Use this schedule's cron, zone and params."),
    env: str = EnvOption,
    param: ParamOption = None,
    max_concurrency: int = typer.Option(1, "--max-concurrency", min=1, max=100, help="Runs at a time."),
    newest_first: bool = typer.Option(False, "--newest-first", help="Run the newest interval first."),
    project: str | None = TemplateProject,
) -> None:
    """One run per interval of a date range, with interval params, a few at a time, as one backfill."""
    try:
        params = parse_params(param or [], None)
        range_start, range_end = _when(start, "--start"), _when(end, "--end")
    except Invalid as exc:
        raise _fail(exc) from exc

    async def work(conn: psycopg.AsyncConnection) -> dict[str, Any]:
        template_id = await jobs.resolve_template(conn, name, project=project)
        schedule_id = await schedules.resolve_schedule(conn, schedule) if schedule else None
        return await backfills.create_backfill(
            conn,
            template_id=template_id,
            environment=env,
            start=range_start,
            end=range_end,
            step=step,
            schedule_id=schedule_id,
            params=params,
            max_concurrency=max_concurrency,
            run_order="newest_first" if newest_first else "oldest_first",
            requested_by_name=_actor(),
        )

    backfill = on_database(work)
    started = sum(backfill["progress"].get(status, 0) for status in ("queued", "running"))
    typer.echo(
        f"backfill {backfill['id']}: {backfill['total']} interval(s) of {backfill['step']}, "
        f"{backfill['max_concurrency']} at a time; {started} run(s) started"
    )


@app.command("backfill-status")
def backfill_status_command(backfill: str = BackfillId) -> None:
    """A backfill's progress and its intervals."""
    found = _on_backfill(backfill, lambda conn, backfill_id: backfills.get_backfill(conn, backfill_id=backfill_id))
    typer.echo(
        f"backfill {found['id']} of {found['template']} in {found['environment']}: {found['status']}, "
        f"{found['done']}/{found['total']} done {dict(sorted(found['progress'].items()))}"
    )
    for interval in found["intervals"]:
        typer.echo(
            f"  {interval['position']:>4} {interval['data_interval_start'].isoformat()} -> "
            f"{interval['data_interval_end'].isoformat()}  {interval['run_status'] or interval['status']}"
        )


@app.command("backfill-cancel")
def backfill_cancel_command(backfill: str = BackfillId) -> None:
    """Cancel a backfill as a group: pending intervals never run, active runs are cancelled."""
    found = _on_backfill(
        backfill, lambda conn, backfill_id: backfills.cancel_backfill(conn, backfill_id=backfill_id, by=_actor())
    )
    typer.echo(f"backfill {found['id']}: {found['status']}")


def _on_backfill(backfill: str, act: Callable[[psycopg.AsyncConnection, uuid.UUID], Awaitable[T]]) -> T:
    """Run ``act`` on the database with the backfill id BACKFILL gives; refused before connecting when it is
    not an id."""
    backfill_id = _backfill_id(backfill)
    return on_database(lambda conn: act(conn, backfill_id))


def _backfill_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError as exc:
        raise _fail(Invalid(f'"{text}" is not a backfill id (see lakehouse jobs backfill)', field="backfill")) from exc


# Editing: the same as the job editor, the schedule editor and the API (admins; every change audited) ----------


def _read_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _fail(Invalid(f"cannot read {path}: {exc.strerror}", field="FILE")) from exc


@app.command("save")
def save_command(
    file: Annotated[Path, typer.Argument(help="One job template as YAML (the job editor's text; project optional).")],
    project: str = typer.Option(..., "--project", help="Project slug."),
    expected_version: int | None = typer.Option(
        None, "--expected-version", min=0, help="Refuse unless this is the latest version (0: the job must be new)."
    ),
) -> None:
    """Create a job or save its next immutable version, checked as the bundle checks it."""
    text = _read_file(file)

    async def work(conn: psycopg.AsyncConnection) -> dict[str, Any]:
        project_id = await runs.resolve_project(conn, project)
        return await job_editing.save_template(
            conn, project_id=project_id, project=project, text=text, expected_version=expected_version, by=_actor()
        )

    saved = on_database(work)
    what = "created" if saved["created"] else ("saved" if saved["new_version"] else "unchanged")
    typer.echo(f"job {project}/{saved['name']} {what}: version {saved['version']} ({saved['template_id']})")


def _set_archived(name: str, project: str | None, archived: bool) -> None:
    async def work(conn: psycopg.AsyncConnection) -> None:
        template_id = await jobs.resolve_template(conn, name, project=project)
        await job_editing.set_archived(conn, template_id=template_id, archived=archived, by=_actor())

    on_database(work)
    typer.echo(f"job {name} {'archived (its schedules are disabled)' if archived else 'restored'}")


def _archive_command(archived: bool) -> Callable[[str, str | None], None]:
    def command(name: str = TemplateName, project: str | None = TemplateProject) -> None:
        _set_archived(name, project, archived)

    return command


app.command("archive", help="Archive a job: it no longer runs and its schedules are disabled.")(_archive_command(True))
app.command("restore", help="Restore an archived job (its schedules stay disabled until enabled).")(
    _archive_command(False)
)


@app.command("schedule-save")
def schedule_save_command(
    file: Annotated[Path, typer.Argument(help="One schedule as YAML, as in the bundle (template:, name:, cron:...).")],
    project: str = typer.Option(..., "--project", help="Project slug."),
) -> None:
    """Create a schedule of a job, or change the job's schedule of that name."""
    try:
        data = yaml.safe_load(_read_file(file))
    except yaml.YAMLError as exc:
        raise _fail(Invalid(f"{file} is not valid YAML: {exc}", field="FILE")) from exc
    if not isinstance(data, dict) or not isinstance(data.get("template"), str):
        raise _fail(
            Invalid("give one schedule as a mapping with template:, name:, environment: and cron:", field="FILE")
        )
    template_name = data.pop("template")
    data.pop("project", None)
    try:
        draft = job_editing.ScheduleDraft(**data)
    except TypeError as exc:
        raise _fail(Invalid(f"unknown or missing field: {exc}", field="FILE")) from exc

    async def work(conn: psycopg.AsyncConnection) -> uuid.UUID:
        template_id = await jobs.resolve_template(conn, template_name, project=project)
        existing = {s["name"]: s["id"] for s in await schedules.list_schedules(conn, template_id=template_id)}
        return await job_editing.save_schedule(
            conn, template_id=template_id, template=template_name, project=project,
            schedule_id=existing.get(draft.name), draft=draft, by=_actor(),
        )  # fmt: skip

    schedule_id = on_database(work)
    typer.echo(f"schedule {project}/{draft.name} of {template_name} saved ({schedule_id})")


def _set_enabled(conn: psycopg.AsyncConnection, schedule_id: uuid.UUID, enabled: bool, by: str) -> Awaitable[None]:
    return job_editing.set_schedule_enabled(conn, schedule_id=schedule_id, enabled=enabled, by=by)


_switch_commands(
    _set_enabled,
    ("enable", True, "enabled", "Enable a schedule."),
    ("disable", False, "disabled", "Disable a schedule: it fires nothing until enabled."),
)
