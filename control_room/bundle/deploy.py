"""Plan and deploy a loaded bundle against a live control plane: one transaction, idempotent.

``plan_bundle`` only reads. ``deploy_bundle`` locks the org, recomputes the plan inside its
transaction (so it applies exactly what it reports), writes the changes in dependency order and
audits each one; with nothing to change it writes nothing, so deploying twice is a no-op.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from control_room.bundle import store
from control_room.bundle.loader import LoadedBundle
from control_room.bundle.models import AlertRule, JobTemplate, PromotionGate, Schedule, section_key
from control_room.bundle.plan import Change, Plan, diff_bundles
from control_room.bundle.source import InvalidInput, Problem
from control_room.bundle.store import OrgDirectory, UnknownOrg

# The tables behind each section.
TABLES: dict[str, str] = {
    "routing_rules": "routing_rules",
    "caps": "caps",
    "job_templates": "job_templates",
    "schedules": "schedules",
    "alert_rules": "alert_rules",
    "promotion_gates": "promotion_gates",
}


def resolve(conn: psycopg.Connection[Any], loaded: LoadedBundle) -> OrgDirectory:
    """The org's directory; ``InvalidInput`` naming each unknown org, project or environment reference."""
    try:
        directory = store.org_directory(conn, loaded.bundle.org)
    except UnknownOrg as exc:
        raise InvalidInput([loaded.manifest.problem(("org",), str(exc))]) from exc
    problems: list[Problem] = []
    known = ", ".join(sorted(directory.projects)) or "none"

    def check_project(origin: Any, path: tuple[str, ...], slug: str | None) -> bool:
        if slug is None or slug in directory.projects:
            return True
        problems.append(origin.problem(path, f'unknown project "{slug}" in org {directory.slug} (projects: {known})'))
        return False

    def check_environment(origin: Any, path: tuple[str, ...], project: str, environment: str) -> None:
        if (project, environment) not in directory.environments:
            problems.append(origin.problem(path, f'project "{project}" has no environment "{environment}"'))

    for _, rule, origin in loaded.items("routing_rules"):
        check_project(origin, ("match", "project"), rule.match.project)
    for _, cap, origin in loaded.items("caps"):
        if check_project(origin, ("project",), cap.project) and cap.scope == "environment":
            assert cap.project is not None
            assert cap.environment is not None
            check_environment(origin, ("environment",), cap.project, cap.environment)
    for _, template, origin in loaded.items("job_templates"):
        check_project(origin, ("project",), template.project)
    for _, schedule, origin in loaded.items("schedules"):
        if check_project(origin, ("project",), schedule.project):
            check_environment(origin, ("environment",), schedule.project, schedule.environment)
    for _, alert, origin in loaded.items("alert_rules"):
        check_project(origin, ("match", "project"), alert.match.project)
    for _, gate, origin in loaded.items("promotion_gates"):
        if check_project(origin, ("project",), gate.project):
            check_environment(origin, ("from_environment",), gate.project, gate.from_environment)
            check_environment(origin, ("to_environment",), gate.project, gate.to_environment)
    if problems:
        raise InvalidInput(problems)
    return directory


def plan_bundle(conn: psycopg.Connection[Any], loaded: LoadedBundle) -> Plan:
    """What deploying ``loaded`` would change (reads only)."""
    directory = resolve(conn, loaded)
    live = store.read_live(conn, directory)
    return diff_bundles(loaded.bundle, live.bundle, live.template_versions)


def deploy_bundle(conn: psycopg.Connection[Any], loaded: LoadedBundle, *, actor: str) -> Plan:
    """Make the org's live configuration equal to the bundle in one transaction; returns what changed."""
    with conn.transaction():
        store.lock_org(conn, loaded.bundle.org)
        directory = resolve(conn, loaded)
        live = store.read_live(conn, directory)
        plan = diff_bundles(loaded.bundle, live.bundle, live.template_versions)
        if not plan.is_empty:
            _apply(conn, loaded, directory, live, plan, actor=actor)
    return plan


def _apply(
    conn: psycopg.Connection[Any],
    loaded: LoadedBundle,
    directory: OrgDirectory,
    live: store.LiveState,
    plan: Plan,
    *,
    actor: str,
) -> None:
    desired: dict[tuple[str, str], Any] = {}
    for section in TABLES:
        for item in getattr(loaded.bundle, section):
            desired[(section, section_key(section, item))] = item
    by_section: dict[str, list[Change]] = {
        section: [c for c in plan.changes if c.section == section] for section in TABLES
    }

    def log(change: Change, row_id: uuid.UUID, project_id: uuid.UUID | None, **extra: Any) -> None:
        detail: dict[str, Any] = {"source": "bundle", "key": change.key}
        if change.fields:
            detail["changes"] = [{"field": f.field, "old": f.old, "new": f.new} for f in change.fields]
        detail.update(extra)
        store.audit(
            conn,
            actor=actor,
            entity=TABLES[change.section],
            entity_id=row_id,
            project_id=project_id,
            action=change.action,
            detail=detail,
        )

    # 1. Rows that point at templates go first when deleted, so templates can be archived last.
    for section in ("schedules", "alert_rules", "promotion_gates"):
        for change in by_section[section]:
            if change.action == "delete":
                row_id = live.ids[(section, change.key)]
                store.delete_row(conn, TABLES[section], row_id)
                log(change, row_id, None)

    # 2. Routing matrix and caps: deletes first, then rules that move are parked on free positions,
    #    so neither a rename nor a reordering trips the unique (org, name) and (org, position).
    for section in ("routing_rules", "caps"):
        for change in by_section[section]:
            if change.action == "delete":
                row_id = live.ids[(section, change.key)]
                store.delete_row(conn, TABLES[section], row_id)
                log(change, row_id, None)
    moved = [
        live.ids[("routing_rules", c.key)]
        for c in by_section["routing_rules"]
        if c.action == "update" and any(f.field == "position" for f in c.fields)
    ]
    store.park_routing_positions(conn, moved)
    for section in ("routing_rules", "caps"):
        for change in by_section[section]:
            if change.action == "delete":
                continue
            values = store.row_values(section, desired[(section, change.key)], directory)
            project_id = values.get("project_id") or values.get("match_project_id")
            if change.action == "update":
                row_id = live.ids[(section, change.key)]
                store.update_row(conn, TABLES[section], row_id, values)
            else:
                row_id = store.insert_row(conn, TABLES[section], values)
            log(change, row_id, project_id)

    # 3. Job templates: metadata in place, a definition change as a new immutable version.
    for change in by_section["job_templates"]:
        if change.action == "delete":
            continue
        template: JobTemplate = desired[("job_templates", change.key)]
        values = store.row_values("job_templates", template, directory)
        version: int | None = None
        if change.action == "create" and change.key in live.archived_templates:
            row_id = live.archived_templates[change.key]
            store.restore_template(conn, row_id)
            store.update_row(conn, "job_templates", row_id, values)
            if live.archived_definitions.get(change.key) != template.definition_sha256():
                version = store.insert_template_version(conn, row_id, template, actor=actor)
        elif change.action == "create":
            row_id = store.insert_row(conn, "job_templates", values)
            version = store.insert_template_version(conn, row_id, template, actor=actor)
        else:
            row_id = live.ids[("job_templates", change.key)]
            store.update_row(conn, "job_templates", row_id, values)
            live_template = next(t for t in live.bundle.job_templates if section_key("job_templates", t) == change.key)
            if live_template.definition() != template.definition():
                version = store.insert_template_version(conn, row_id, template, actor=actor)
        log(change, row_id, values["project_id"], **({"version": version} if version else {}))

    # 4. Schedules, alert rules and promotion gates, now that every template they name exists.
    templates = store.template_ids(conn, directory.org_id)
    for section in ("schedules", "alert_rules", "promotion_gates"):
        for change in by_section[section]:
            if change.action == "delete":
                continue
            item = desired[(section, change.key)]
            values = _dependent_values(section, item, directory, templates)
            if change.action == "update":
                row_id = live.ids[(section, change.key)]
                store.update_row(conn, TABLES[section], row_id, values)
            else:
                row_id = store.insert_row(conn, TABLES[section], values)
            log(change, row_id, values.get("project_id"))

    # 5. Templates removed from the bundle are archived; their versions stay as history.
    for change in by_section["job_templates"]:
        if change.action == "delete":
            row_id = live.ids[("job_templates", change.key)]
            store.archive_template(conn, row_id)
            log(change, row_id, None)


def _dependent_values(
    section: str, item: Any, directory: OrgDirectory, templates: dict[str, uuid.UUID]
) -> dict[str, Any]:
    if section == "schedules":
        schedule: Schedule = item
        return store.schedule_values(schedule, directory, templates[f"{schedule.project}/{schedule.template}"])
    if section == "alert_rules":
        alert: AlertRule = item
        template_id = templates[f"{alert.match.project}/{alert.match.template}"] if alert.match.template else None
        return store.alert_values(alert, directory, template_id)
    gate: PromotionGate = item
    template_id = templates[f"{gate.project}/{gate.template}"] if gate.template else None
    return store.gate_values(gate, directory, template_id)
