"""Plan and deploy a loaded bundle against a live control plane: one transaction, idempotent.

``plan_bundle`` only reads. ``deploy_bundle`` locks the org, recomputes the plan inside its
transaction (so it applies exactly what it reports), writes the changes in dependency order and
audits each one; with nothing to change it writes nothing, so deploying twice is a no-op.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any

import psycopg

from control_room.bundle import access, store
from control_room.bundle.export import dump_yaml, item_document
from control_room.bundle.loader import LoadedBundle
from control_room.bundle.models import (
    ENVIRONMENT_ORDER,
    SECTIONS,
    AlertRule,
    Dashboard,
    JobTemplate,
    ProjectSettings,
    PromotionGate,
    Schedule,
    ServingEndpoint,
    section_key,
)
from control_room.bundle.plan import Change, Plan, TargetOutcome, TargetStep, diff_bundles
from control_room.bundle.source import InvalidInput, Problem
from control_room.bundle.store import OrgDirectory, UnknownOrg
from control_room.dashboards.loader import content_sha256
from control_room.services import bundles, governance
from control_room.services.errors import from_db_error

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
    for _, endpoint, origin in loaded.items("serving_endpoints"):
        if check_project(origin, ("project",), endpoint.project):
            check_environment(origin, ("environment",), endpoint.project, endpoint.environment)
    for _, dashboard, origin in loaded.items("dashboards"):
        check_project(origin, ("project",), dashboard.project)
    for _, settings, origin in loaded.items("settings"):
        check_project(origin, ("project",), settings.project)
    for _, policy, origin in loaded.items("access_policies"):
        org_id, target = directory.org_id, policy.target
        if policy.target_kind == "dataset" and bundles.dataset_id_by_name(conn, org_id, target) is None:
            problems.append(origin.problem(("target",), f'no dataset "{policy.target}" in org {directory.slug} '
                                           "(give its full name, e.g. warehouse.main.customers)"))  # fmt: skip
    if problems:
        raise InvalidInput(problems)
    return directory


def plan_bundle(conn: psycopg.Connection[Any], loaded: LoadedBundle, *, target: str | None = None) -> Plan:
    """What deploying ``loaded`` would change (reads only); with ``target``, also what would happen to each
    job's version in that environment (a gated one gets promotion requests, never the version itself)."""
    directory = resolve(conn, loaded)
    live = store.read_live(conn, directory)
    plan = diff_bundles(loaded.bundle, live.bundle, live.template_versions, live.dashboard_versions)
    if target is None:
        return plan
    return replace(plan, target=target, targets=tuple(_planned_targets(conn, loaded, directory, plan, target)))


def deploy_bundle(
    conn: psycopg.Connection[Any],
    loaded: LoadedBundle,
    *,
    actor: str,
    target: str | None = None,
    user_id: uuid.UUID | None = None,
) -> Plan:
    """Make the org's live configuration equal to the bundle in one transaction; returns what changed.

    With ``target`` (``lakehouse bundle deploy --target prod``) the bundle's job versions are meant to run
    there too. An environment a promotion gate leads into is itself subject to that gate: a version of the
    bundle that is not the one deployed there opens a promotion request instead of being applied (its
    checks start at once; it runs there once promoted). Ungated environments run the latest version anyway.
    ``user_id`` is the person deploying (the CLI's ``--as``): the requester of those requests, so the four-eyes
    rule refuses their own approval.
    """
    if target is not None and target not in ENVIRONMENT_ORDER:
        raise InvalidInput([loaded.manifest.problem(("target",), f'"{target}" is not dev, staging or prod')])
    with conn.transaction():
        bundles.lock_org(conn, loaded.bundle.org)
        directory = resolve(conn, loaded)
        live = store.read_live(conn, directory)
        plan = diff_bundles(loaded.bundle, live.bundle, live.template_versions, live.dashboard_versions)
        if not plan.is_empty:
            _apply(conn, loaded, directory, live, plan, actor=actor)
        # What is live now came from this bundle: edits made elsewhere later show as drift against it.
        governance.record_deployment(conn, org_id=directory.org_id, bundle=loaded.bundle, actor=actor)
        if target is not None:
            steps = _deploy_targets(conn, loaded, directory, target, actor=actor, user_id=user_id)
            plan = replace(plan, target=target, targets=tuple(steps))
    return plan


def _bundle_templates(loaded: LoadedBundle) -> list[str]:
    return sorted(section_key("job_templates", t) for t in loaded.bundle.job_templates)


def _planned_targets(
    conn: psycopg.Connection[Any], loaded: LoadedBundle, directory: OrgDirectory, plan: Plan, target: str
) -> list[TargetStep]:
    states = bundles.target_states(conn, directory.org_id, target)
    project_gates = bundles.project_gates_into(conn, directory.org_id, target)
    new_versions = {c.key: c.note for c in plan.changes if c.section == "job_templates"}
    steps: list[TargetStep] = []
    for key in _bundle_templates(loaded):
        state = states.get(key)
        note = new_versions.get(key, "")
        version = int(note.rsplit(" ", 1)[1]) if note.startswith(("new version", "version")) else None
        if state is None:  # a new template: only a project-wide gate can guard it
            gate, deployed, latest = project_gates.get(key.split("/", 1)[0]), None, 0
        else:
            gate, deployed, latest = state["gate"], state["deployed"], state["latest"] or 0
        version = version or latest
        if gate is None:
            steps.append(TargetStep(key, target, version, deployed, "not gated"))
        elif version == deployed:
            steps.append(TargetStep(key, target, version, deployed, "current", gate))
        elif state is not None and state["request_version"] == version:
            steps.append(TargetStep(key, target, version, deployed, "pending", gate, str(state["request_id"])))
        else:
            steps.append(TargetStep(key, target, version, deployed, "request", gate))
    return steps


def _deploy_targets(
    conn: psycopg.Connection[Any],
    loaded: LoadedBundle,
    directory: OrgDirectory,
    target: str,
    *,
    actor: str,
    user_id: uuid.UUID | None,
) -> list[TargetStep]:
    """After the bundle is applied (each template's latest version is the bundle's definition): request
    the promotion of every version not yet deployed into a gated ``target``."""
    states = bundles.target_states(conn, directory.org_id, target)
    steps: list[TargetStep] = []
    for key in _bundle_templates(loaded):
        state = states[key]
        version, deployed, gate = int(state["latest"]), state["deployed"], state["gate"]
        if gate is None:
            steps.append(TargetStep(key, target, version, deployed, "not gated"))
        elif version == deployed:
            steps.append(TargetStep(key, target, version, deployed, "current", gate))
        elif state["request_version"] == version:
            steps.append(TargetStep(key, target, version, deployed, "pending", gate, str(state["request_id"])))
        else:
            steps.append(_request(conn, state, key, target, actor=actor, user_id=user_id))
    return steps


def _request(
    conn: psycopg.Connection[Any],
    state: dict[str, Any],
    key: str,
    target: str,
    *,
    actor: str,
    user_id: uuid.UUID | None,
) -> TargetStep:
    version, deployed, gate = int(state["latest"]), state["deployed"], state["gate"]
    try:
        with conn.transaction():  # a savepoint: a refused request leaves the deploy itself intact
            request_id, status = bundles.request_promotion(
                conn,
                template_id=state["template_id"],
                version=version,
                environment=target,
                comment=f"bundle deploy --target {target} by {actor}",
                by=actor,
                user_id=user_id,
            )
    except psycopg.Error as exc:
        refusal = from_db_error(exc)
        if refusal is None:  # a fault, not a refusal: the deploy fails as a whole
            raise
        return TargetStep(key, target, version, deployed, "refused", gate, detail=refusal.message)
    outcome: TargetOutcome = "promoted" if status == "promoted" else "requested"
    return TargetStep(key, target, version, deployed, outcome, gate, str(request_id))


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

    def delete_endpoints(self) -> None:
        """Endpoints the bundle no longer lists: replicas cancelled, the endpoint deleted (audited in SQL)."""
        for change in self.of("serving_endpoints", "delete"):
            endpoint_id = self.live.ids[("serving_endpoints", change.key)]
            bundles.delete_serving_endpoint(self.conn, endpoint_id, actor=self.actor)

    def write_endpoints(self) -> None:
        """Endpoints created or made equal to the bundle, after the caps that bound their replicas."""
        for change in self.of("serving_endpoints", "write"):
            endpoint: ServingEndpoint = self.desired[("serving_endpoints", change.key)]
            bundles.deploy_serving_endpoint(
                self.conn, self.directory.projects[endpoint.project], store.endpoint_values(endpoint), actor=self.actor
            )

    def write_dashboards(self) -> None:
        """Dashboards removed from the bundle are archived; the others saved (a new version when changed)."""
        for change in self.of("dashboards", "delete"):
            project, slug = change.key.split("/", 1)
            bundles.archive_dashboard(self.conn, project_id=self.directory.projects[project], slug=slug,
                                      actor=self.actor)  # fmt: skip
        for change in self.of("dashboards", "write"):
            item: Dashboard = self.desired[("dashboards", change.key)]
            bundles.save_dashboard(
                self.conn, project_id=self.directory.projects[item.project], slug=item.name,
                title=item.dashboard.title, spec=item.dashboard.model_dump(mode="json"),
                source_yaml=dump_yaml(item_document(item.dashboard)), content_sha256=content_sha256(item.dashboard),
                actor=self.actor,
            )  # fmt: skip

    def write_settings(self) -> None:
        """Projects' settings made equal to the bundle's (a project it does not list: the defaults)."""
        for change in self.of("settings", "update"):
            settings = self.desired.get(("settings", change.key)) or ProjectSettings(project=change.key)
            project_id = self.directory.projects[change.key]
            bundles.set_project_settings(self.conn, self.directory.org_id, project_id, settings.model_dump())
            self.log(change, project_id, project_id)

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
    deploy.delete_endpoints()  # first: the replicas they free count against a serving cap written below
    deploy.delete(DEPENDENTS)  # rows that point at templates go first, so templates can be archived last
    deploy.delete(("routing_rules", "caps", "alert_channels"))
    deploy.write_routing_and_caps()
    for change in deploy.of("job_templates", "write"):
        deploy.write_template(change)
    deploy.write_dependents()
    deploy.archive_templates()
    deploy.write_access()
    deploy.write_endpoints()
    deploy.write_dashboards()
    deploy.write_settings()


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
