"""Plan and deploy a loaded bundle against a live control plane: one transaction, idempotent.

``plan_bundle`` only reads. ``deploy_bundle`` locks the org, recomputes the plan inside its
transaction (so it applies exactly what it reports), writes the changes in dependency order and
audits each one; with nothing to change it writes nothing, so deploying twice is a no-op.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import psycopg

from control_room.bundle import access, store
from control_room.bundle.loader import LoadedBundle
from control_room.bundle.models import SECTIONS, AlertRule, JobTemplate, PromotionGate, Schedule, section_key
from control_room.bundle.plan import Change, Plan, diff_bundles
from control_room.bundle.source import InvalidInput, Problem
from control_room.bundle.store import OrgDirectory, UnknownOrg
from control_room.services import bundles, governance

# Sections whose rows point at job templates (each section deploys to the ops table of its name).
DEPENDENTS = ("schedules", "alert_rules", "promotion_gates")


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
    for _, policy, origin in loaded.items("access_policies"):
        org_id, target = directory.org_id, policy.target
        if policy.target_kind == "dataset" and bundles.dataset_id_by_name(conn, org_id, target) is None:
            problems.append(origin.problem(("target",), f'no dataset "{policy.target}" in org {directory.slug} '
                                           "(give its full name, e.g. warehouse.main.customers)"))  # fmt: skip
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
        bundles.lock_org(conn, loaded.bundle.org)
        directory = resolve(conn, loaded)
        live = store.read_live(conn, directory)
        plan = diff_bundles(loaded.bundle, live.bundle, live.template_versions)
        if not plan.is_empty:
            _apply(conn, loaded, directory, live, plan, actor=actor)
        # What is live now came from this bundle: edits made elsewhere later show as drift against it.
        governance.record_deployment(conn, org_id=directory.org_id, bundle=loaded.bundle, actor=actor)
    return plan


@dataclass
class _Deploy:
    """One deploy's writes, step by step, in dependency order; every write is audited."""

    conn: psycopg.Connection[Any]
    directory: OrgDirectory
    live: store.LiveState
    desired: dict[tuple[str, str], Any]
    changes: dict[str, list[Change]]
    actor: str

    def log(self, change: Change, row_id: uuid.UUID, project_id: uuid.UUID | None, **extra: Any) -> None:
        detail: dict[str, Any] = {"source": "bundle", "key": change.key}
        if change.fields:
            detail["changes"] = [{"field": f.field, "old": f.old, "new": f.new} for f in change.fields]
        detail.update(extra)
        bundles.audit(
            self.conn,
            actor=self.actor,
            entity=change.section,
            entity_id=row_id,
            project_id=project_id,
            action=change.action,
            detail=detail,
        )

    def of(self, section: str, action: str) -> list[Change]:
        """The section's changes with this action (``"write"``: creates and updates)."""
        wanted = ("create", "update") if action == "write" else (action,)
        return [change for change in self.changes[section] if change.action in wanted]

    def delete(self, sections: tuple[str, ...]) -> None:
        for section in sections:
            for change in self.of(section, "delete"):
                row_id = self.live.ids[(section, change.key)]
                bundles.delete_row(self.conn, section, row_id)
                self.log(change, row_id, None)

    def upsert(self, change: Change, values: dict[str, Any], project_id: uuid.UUID | None) -> None:
        if change.action == "update":
            row_id = self.live.ids[(change.section, change.key)]
            bundles.update_row(self.conn, change.section, row_id, values)
        else:
            row_id = bundles.insert_row(self.conn, change.section, values)
        self.log(change, row_id, project_id)

    def write_routing_and_caps(self) -> None:
        """Rules that move are parked on free positions first, so neither a rename nor a reordering
        trips the unique (org, name) and (org, position)."""
        moved = [
            self.live.ids[("routing_rules", c.key)]
            for c in self.of("routing_rules", "update")
            if any(f.field == "position" for f in c.fields)
        ]
        bundles.park_routing_positions(self.conn, moved)
        for section in ("routing_rules", "caps", "alert_channels"):
            for change in self.of(section, "write"):
                values = store.row_values(section, self.desired[(section, change.key)], self.directory)
                self.upsert(change, values, values.get("project_id") or values.get("match_project_id"))

    def write_template(self, change: Change) -> None:
        """Metadata in place; a definition change as a new immutable version."""
        template: JobTemplate = self.desired[("job_templates", change.key)]
        values = store.row_values("job_templates", template, self.directory)
        archived = self.live.archived_templates.get(change.key) if change.action == "create" else None
        if archived is not None:
            row_id = archived
            bundles.set_template_archived(self.conn, row_id, archived=False)
            bundles.update_row(self.conn, "job_templates", row_id, values)
            new_version = self.live.archived_definitions.get(change.key) != template.definition_sha256()
        elif change.action == "create":
            row_id = bundles.insert_row(self.conn, "job_templates", values)
            new_version = True
        else:
            row_id = self.live.ids[("job_templates", change.key)]
            bundles.update_row(self.conn, "job_templates", row_id, values)
            live_template = next(
                t for t in self.live.bundle.job_templates if section_key("job_templates", t) == change.key
            )
            new_version = live_template.definition() != template.definition()
        version = None
        if new_version:
            version = bundles.insert_template_version(
                self.conn, row_id, store.version_values(template), actor=self.actor
            )
        self.log(change, row_id, values["project_id"], **({"version": version} if version else {}))

    def write_dependents(self) -> None:
        """Schedules, alert rules and promotion gates, once every template they name exists."""
        templates = bundles.template_ids(self.conn, self.directory.org_id)
        for section in DEPENDENTS:
            for change in self.of(section, "write"):
                values = _dependent_values(section, self.desired[(section, change.key)], self.directory, templates)
                self.upsert(change, values, values.get("project_id"))

    def delete_access(self) -> None:
        """Policies, then groups, then service principals leave (each audited by its SQL function)."""
        for section in reversed(access.ACCESS_SECTIONS):
            for change in self.of(section, "delete"):
                access.delete(self.conn, self.directory.org_id, section, change.key, actor=self.actor)

    def write_access(self) -> None:
        """Service principals, then groups, then policies, through the functions the page and API use."""
        for section in access.ACCESS_SECTIONS:
            for change in self.of(section, "write"):
                row_id = self.live.ids.get((section, change.key)) if change.action == "update" else None
                item = self.desired[(section, change.key)]
                access.write(self.conn, self.directory.org_id, section, item, row_id, actor=self.actor)

    def archive_templates(self) -> None:
        """Templates removed from the bundle are archived; their versions stay as history."""
        for change in self.of("job_templates", "delete"):
            row_id = self.live.ids[("job_templates", change.key)]
            bundles.set_template_archived(self.conn, row_id, archived=True)
            self.log(change, row_id, None)


def _apply(
    conn: psycopg.Connection[Any],
    loaded: LoadedBundle,
    directory: OrgDirectory,
    live: store.LiveState,
    plan: Plan,
    *,
    actor: str,
) -> None:
    desired = {
        (section, section_key(section, item)): item for section in SECTIONS for item in getattr(loaded.bundle, section)
    }
    changes = {section: [c for c in plan.changes if c.section == section] for section in SECTIONS}
    deploy = _Deploy(conn, directory, live, desired, changes, actor)
    deploy.delete_access()
    deploy.delete(DEPENDENTS)  # rows that point at templates go first, so templates can be archived last
    deploy.delete(("routing_rules", "caps", "alert_channels"))
    deploy.write_routing_and_caps()
    for change in deploy.of("job_templates", "write"):
        deploy.write_template(change)
    deploy.write_dependents()
    deploy.archive_templates()
    deploy.write_access()


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
