"""Every table of the ops schema, reviewed: what the `authenticated` role may do on it, and which rows
of it belong to someone else (org A) from the point of view of org B's attacker.

A new table fails tests/security until it has an entry here: RLS enabled, a policy for every privilege
granted, and a reviewed grant set. Grants are written as the catalog reports them: ``SELECT`` for the
whole table, ``SELECT(columns)`` when only some columns are granted (secret columns hidden).
"""

from __future__ import annotations

from dataclasses import dataclass

A_PROJECTS = "(select p.id from ops.projects p where p.org_id = %(a_org)s)"
A_RUNS = "(select r.id from ops.runs r where r.org_id = %(a_org)s)"


@dataclass(frozen=True)
class Review:
    """One table's reviewed grants to `authenticated` and the SQL predicate (on alias x) of org A's rows."""

    grants: frozenset[str]
    foreign_rows: str
    why: str


def review(grants: str, foreign_rows: str, why: str) -> Review:
    return Review(frozenset(g for g in grants.split() if g), foreign_rows, why)


TABLES: dict[str, Review] = {
    # Tenancy: admins manage members and environments through RLS-checked writes.
    "orgs": review("SELECT", "x.id = %(a_org)s", "members read their orgs"),
    "projects": review("SELECT UPDATE(columns)", "x.org_id = %(a_org)s", "project admins rename/describe"),
    "environments": review(
        "SELECT INSERT UPDATE DELETE", f"x.project_id in {A_PROJECTS}", "project admins (policy environments_admin)"
    ),
    "org_members": review(
        "SELECT INSERT UPDATE DELETE", "x.org_id = %(a_org)s", "org admins (policy org_members_admin)"
    ),
    "project_members": review(
        "SELECT INSERT UPDATE DELETE", f"x.project_id in {A_PROJECTS}", "project admins (policy project_members_admin)"
    ),
    # Executors and pools: read by the org's members; token hashes hidden; written by the API only.
    "executors": review("SELECT(columns)", "x.org_id = %(a_org)s", "token_hash not granted"),
    "pools": review("SELECT", "x.org_id = %(a_org)s", "shared only via ops.set_pool_shared (trusted callers)"),
    # Lifecycle: read only; every write through SECURITY DEFINER functions (submit_run, cancel_run, ...).
    "runs": review("SELECT", "x.org_id = %(a_org)s", "ops.submit_run / ops.cancel_run"),
    "tasks": review("SELECT", "x.org_id = %(a_org)s", "lifecycle functions only"),
    "task_attempts": review("SELECT", f"x.run_id in {A_RUNS}", "lifecycle functions only"),
    "events": review("SELECT", f"x.run_id in {A_RUNS}", "append_events only"),
    "artifacts": review(
        "SELECT(columns)", f"x.project_id in {A_PROJECTS}", "upload functions only; uri via ops.artifact_location"
    ),
    "artifact_uploads": review("", f"x.project_id in {A_PROJECTS}", "API only"),
    "cap_usage": review(
        "SELECT", "x.cap_id in (select c.id from ops.caps c where c.org_id = %(a_org)s)", "lifecycle functions only"
    ),
    "audit_log": review("SELECT", f"x.project_id in {A_PROJECTS}", "written by triggers and definer functions"),
    # Governance: admins configure through RLS-checked writes (GitOps bundle and pages).
    # Routing and caps (20261205000300_governance_edits): ops.apply_routing_rules / ops.save_cap / ops.delete_cap.
    "routing_rules": review("SELECT", "x.org_id = %(a_org)s", "ops.apply_routing_rules (org admins, audited)"),
    "caps": review("SELECT", "x.org_id = %(a_org)s", "ops.save_cap / ops.delete_cap (admins, audited)"),
    "governance_settings": review("SELECT", "x.org_id = %(a_org)s", "ops.set_governance_lock (org admins)"),
    "bundle_deployments": review("SELECT", "x.org_id = %(a_org)s", "the bundle deploy records; members read"),
    "job_templates": review("SELECT INSERT UPDATE DELETE", "x.org_id = %(a_org)s", "policy job_templates_admin"),
    "job_template_versions": review(
        "SELECT INSERT",
        "x.template_id in (select t.id from ops.job_templates t where t.org_id = %(a_org)s)",
        "policy job_template_versions_admin; versions are immutable",
    ),
    "schedules": review("SELECT INSERT UPDATE DELETE", "x.org_id = %(a_org)s", "policy schedules_admin"),
    "alert_rules": review("SELECT INSERT UPDATE DELETE", "x.org_id = %(a_org)s", "policy alert_rules_admin"),
    "promotion_gates": review("SELECT INSERT UPDATE DELETE", "x.org_id = %(a_org)s", "policy promotion_gates_admin"),
    # Scheduler and backfills (20261203000300_jobs): written by the scheduler and definer functions.
    "schedule_fires": review("SELECT", "x.org_id = %(a_org)s", "the scheduler writes; members read"),
    "backfills": review("SELECT", "x.org_id = %(a_org)s", "ops.start_backfill-style definer functions only"),
    "backfill_intervals": review(
        "SELECT",
        "x.backfill_id in (select b.id from ops.backfills b where b.org_id = %(a_org)s)",
        "the scheduler writes; members read",
    ),
    # Alerts (20261203000500_alerts): written by the evaluator, the sender and definer functions.
    "alert_channels": review("SELECT", "x.org_id = %(a_org)s", "the bundle deploy writes; members read"),
    "alert_incidents": review("SELECT", "x.org_id = %(a_org)s", "ops.fire_alert / ops.act_on_incident"),
    "alert_incident_events": review("SELECT", "x.org_id = %(a_org)s", "ops.fire_alert / ops.act_on_incident"),
    "alert_deliveries": review("SELECT", "x.org_id = %(a_org)s", "ops.enqueue_delivery / ops.finish_delivery"),
    "notifications": review("SELECT", "x.org_id = %(a_org)s", "ops.add_notification; own rows only"),
    "notification_preferences": review(
        "SELECT", "x.org_id = %(a_org)s", "ops.put_notification_preferences by the user only"
    ),
    "alert_mutes": review("SELECT", "x.org_id = %(a_org)s", "ops.set_job_mute (operators)"),
    # Promotions (20261205000200_promotions): written by ops.request_promotion, ops.decide_promotion,
    # ops.rollback_deployment, ops.report_version_check and the promotion loop only.
    "deployments": review("SELECT", "x.org_id = %(a_org)s", "promotions and rollbacks (definer functions)"),
    "promotion_requests": review("SELECT", "x.org_id = %(a_org)s", "ops.request_promotion / ops.decide_promotion"),
    "promotion_decisions": review("SELECT", "x.org_id = %(a_org)s", "ops.decide_promotion only"),
    "version_check_reports": review("SELECT", "x.org_id = %(a_org)s", "ops.report_version_check only"),
    "promotion_notices": review("SELECT", "x.org_id = %(a_org)s", "ops.open_promotion_notice (the loop) only"),
    # Lineage and query history: written by the API for executors.
    "datasets": review("SELECT", f"x.project_id in {A_PROJECTS}", "API only"),
    "lineage_edges": review("SELECT", f"x.project_id in {A_PROJECTS}", "API only"),
    "openlineage_events": review("SELECT", f"x.project_id in {A_PROJECTS}", "API only"),
    "lineage_jobs": review("SELECT", f"x.project_id in {A_PROJECTS}", "ops.ingest_openlineage only"),
    "lineage_job_datasets": review(
        "SELECT",
        "x.job_id in (select j.id from ops.lineage_jobs j join ops.projects p on p.id = j.project_id "
        "where p.org_id = %(a_org)s)",
        "ops.ingest_openlineage only",
    ),
    "dataset_schema_changes": review("SELECT", f"x.project_id in {A_PROJECTS}", "trigger on ops.datasets only"),
    "query_history": review("SELECT", f"x.project_id in {A_PROJECTS}", "API only"),
    # Dashboards and NL->SQL (issue 24): saved and asked through ops.save_dashboard / ops.record_nl2sql_question.
    "dashboards": review("SELECT", "x.org_id = %(a_org)s", "ops.save_dashboard only"),
    "dashboard_versions": review("SELECT", "x.org_id = %(a_org)s", "ops.save_dashboard only"),
    "nl2sql_questions": review("SELECT", "x.org_id = %(a_org)s", "ops.record_nl2sql_question / nl2sql_feedback"),
    # Model serving (20261207000400_serving_endpoints): ops.create_serving_endpoint / update_serving_endpoint.
    "serving_endpoints": review("SELECT", "x.org_id = %(a_org)s", "ops.create/update_serving_endpoint only"),
    "serving_endpoint_revisions": review("SELECT", "x.org_id = %(a_org)s", "ops.update_serving_endpoint only"),
    "serving_replicas": review("SELECT", "x.org_id = %(a_org)s", "reconcile / restart / report functions only"),
    "serving_tokens": review("SELECT(columns)", "x.org_id = %(a_org)s", "token_hash not granted"),
    "serving_request_stats": review("SELECT", "x.org_id = %(a_org)s", "ops.record_serving_requests (API only)"),
    # Identities and secrets: people read their own row, never a hash; sessions are invisible.
    "users": review("SELECT(columns)", "x.id <> %(b_user)s", "password_hash not granted"),
    "api_tokens": review("SELECT(columns)", "x.user_id <> %(b_user)s", "token_hash not granted"),
    "user_sessions": review("", "x.user_id <> %(b_user)s", "never readable by members"),
    "sign_in_failures": review("", "true", "throttling counters: trusted callers only"),
    "schema_migrations": review("", "true", "the migration runner's ledger"),
    # Access policies (20261206000200_access_policies): ops.save_* / ops.delete_* (org admins, dataset owners).
    "principal_groups": review("SELECT", "x.org_id = %(a_org)s", "ops.save_principal_group (org admins, audited)"),
    "principal_group_members": review("SELECT", "x.org_id = %(a_org)s", "ops.save_principal_group only"),
    "service_principals": review("SELECT", "x.org_id = %(a_org)s", "ops.save_service_principal (org admins)"),
    "access_policies": review("SELECT", "x.org_id = %(a_org)s", "ops.save_access_policy (admins, owners; audited)"),
    "access_refusals": review("SELECT", "x.org_id = %(a_org)s", "trigger on ops.events (org admins, own refusals)"),
    # Policy previews and task inputs (20261208000300, 20261208000310).
    "policy_previews": review("SELECT", "x.org_id = %(a_org)s", "ops.start_policy_preview (policy editors; audited)"),
    "task_datasets": review("SELECT", f"x.project_id in {A_PROJECTS}", "lineage reports under a task's lease (API)"),
    # Event retention (20261208000600_event_retention): written by the retention loop's definer functions only.
    "event_archives": review("SELECT", "x.org_id = %(a_org)s", "ops.claim_event_archives / record / delete (loop)"),
    # Caps' refusals (20261208000100): ops.submit_run / ops.record_submit_refusal (checked) and the claim.
    "cap_refusal_events": review(
        "SELECT", "x.org_id = %(a_org)s", "ops.submit_run, ops.record_submit_refusal and ops.claim_tasks only"
    ),
}

# Columns no member may ever read.
SECRET_COLUMNS = {
    "executors": ("token_hash",),
    "users": ("password_hash",),
    "api_tokens": ("token_hash",),
    "user_sessions": ("token_hash",),
    "serving_tokens": ("token_hash",),
    "artifacts": ("uri",),  # store locations: admins get them through ops.artifact_location
}
