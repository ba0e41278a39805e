"""What the job page shows, as serializable rows: header, versions, schedules, fires, backfills, diff lines."""

from __future__ import annotations

from typing import Any

from control_room import routes
from control_room.components.job_figures import fire_outcome
from control_room.db.tables import JobTemplateVersion
from control_room.state import formatting
from control_room.state.rows import BackfillRow, FireRow, JobHeader, ScheduleRow, VersionRow


def job_header(template: dict[str, Any]) -> JobHeader:
    """The header of a template as ``jobs.get_template`` returns it."""
    return JobHeader(
        id=str(template["id"]),
        name=template["name"],
        project=template["project"],
        project_id=str(template["project_id"]),
        description=template["description"] or "",
        owner=template["owner"] or "",
        tags=list(template["tags"]),
        latest_version=template["latest_version"] or 0,
        archived=template["archived_at"] is not None,
        created=formatting.timestamp(template["created_at"]),
        runs_href=routes.runs_of_job(str(template["id"]), template["name"]),
    )


def version_row(version: JobTemplateVersion) -> VersionRow:
    return VersionRow(
        version=version.version,
        number=str(version.version),
        label=f"v{version.version}",
        created=formatting.timestamp(version.created_at),
        created_by=version.created_by or "",
        tasks=len(version.tasks),
        sha=version.content_sha256[:12],
    )


def schedule_row(schedule: dict[str, Any]) -> ScheduleRow:
    paused = schedule["paused"] if "paused" in schedule else schedule["paused_at"] is not None
    state = "disabled" if not schedule["enabled"] else "paused" if paused else "enabled"
    return ScheduleRow(
        id=str(schedule["id"]),
        name=schedule["name"],
        environment=schedule["environment"],
        cron=schedule["cron"],
        timezone=schedule["timezone"],
        state=state,
        enabled=schedule["enabled"],
        paused=paused,
        next_fire=formatting.timestamp(schedule["next_fire_at"]) if state == "enabled" else "",
        policies=f"catch-up {schedule['catchup']} · overlap {schedule['overlap']}",
        params=formatting.scalar(schedule["params"]),
        job=schedule.get("template", ""),
        job_href=routes.job_detail(str(schedule["template_id"]), tab="schedules") if "template_id" in schedule else "",
        last_fire=_last_fire(schedule),
    )


def _last_fire(schedule: dict[str, Any]) -> str:
    """The latest fire and what it came to (``list_schedules`` rows), e.g. ``2026-12-04 03:00:00 · succeeded``."""
    if not schedule.get("last_fire_status"):
        return ""
    outcome = fire_outcome({"status": schedule["last_fire_status"], "run_status": schedule["last_run_status"]})
    return f"{formatting.timestamp(schedule['last_fire_at'])} · {outcome.replace('failed_fire', 'failed to fire')}"


def fire_row(fire: dict[str, Any]) -> FireRow:
    return FireRow(
        fire_time=formatting.timestamp(fire["fire_time"]),
        outcome=fire_outcome(fire).replace("failed_fire", "failed to fire"),
        reason=fire["reason"] or "",
        trigger=fire["trigger"],
        run_href=routes.run_detail(str(fire["run_id"])) if fire["run_id"] else "",
    )


def backfill_row(backfill: dict[str, Any]) -> BackfillRow:
    total = backfill["total"] or 0
    progress = backfill["progress"]
    summary = ", ".join(f"{n} {status}" for status, n in sorted(progress.items()))
    return BackfillRow(
        id=str(backfill["id"]),
        status=backfill["status"],
        environment=backfill["environment"],
        span=f"{formatting.timestamp(backfill['range_start'])} → {formatting.timestamp(backfill['range_end'])}",
        step=backfill["step"],
        order=backfill["run_order"].replace("_", " "),
        concurrency=backfill["max_concurrency"],
        total=total,
        done=backfill["done"],
        percent=round(100 * backfill["done"] / total) if total else 0,
        summary=summary,
        created=formatting.timestamp(backfill["created_at"]),
        requested_by=backfill["requested_by_name"] or "",
    )
