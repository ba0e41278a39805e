"""`lakehouse policies ...` against real Postgres: groups, policies by dataset name, the simulator's verdict
and reason, errors naming the field, and `export --format trino` validated against the rules.json format
documented for Trino's file-based access control (system-level file: catalog and table rules, row filters,
column masks), with every filter and mask parsing as Trino SQL."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlglot
from jsonschema import Draft202012Validator
from typer.testing import CliRunner

from control_room.cli import app
from control_room.config import get_settings
from tests.access.world import govern, make_shop
from tests.bundle.conftest import CliResult

ENVIRONMENT = {"type": "object", "properties": {"user": {"type": "string"}}}
PRINCIPAL_FIELDS = {"user": {"type": "string"}, "role": {"type": "string"}, "group": {"type": "string"}}
# https://trino.io/docs/current/security/file-system-access-control.html: rules are matched top to bottom;
# table rules name the privileges (SELECT, INSERT, DELETE, UPDATE, OWNERSHIP, GRANT_SELECT), column rules
# (allow, mask, mask_environment), a row filter (filter, filter_environment).
TRINO_RULES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "catalogs": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["allow"],
            "properties": {**PRINCIPAL_FIELDS, "catalog": {"type": "string"},
                           "allow": {"enum": ["all", "read-only", "none"]}}}},
        "schemas": {"type": "array"},
        "tables": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["privileges"],
            "properties": {
                **PRINCIPAL_FIELDS, "catalog": {"type": "string"}, "schema": {"type": "string"},
                "table": {"type": "string"},
                "privileges": {"type": "array", "uniqueItems": True, "items": {
                    "enum": ["SELECT", "INSERT", "DELETE", "UPDATE", "OWNERSHIP", "GRANT_SELECT"]}},
                "columns": {"type": "array", "items": {
                    "type": "object", "additionalProperties": False, "required": ["name"],
                    "properties": {"name": {"type": "string"}, "allow": {"type": "boolean"},
                                   "mask": {"type": "string"},
                                   "mask_environment": ENVIRONMENT}}},
                "filter": {"type": "string"},
                "filter_environment": ENVIRONMENT,
            }}},
    },
}  # fmt: skip


@pytest.fixture
def lakehouse(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[Callable[..., CliResult]]:
    def invoke(*args: str) -> CliResult:
        monkeypatch.setenv("LAKEHOUSE_DATABASE_URL", database_url)
        get_settings.cache_clear()
        result = CliRunner().invoke(app, list(args))
        return CliResult(result.exit_code, result.stdout, result.stderr)

    yield invoke
    get_settings.cache_clear()


def test_groups_policies_simulate_and_trino_export(
    db: psycopg.Connection, lakehouse: Callable[..., CliResult], tmp_path: Path
) -> None:
    shop = make_shop(db)
    org = db.execute("select slug from ops.orgs where id = %s", (shop.tenant.org_id,)).fetchone()
    assert org
    slug = str(org[0])
    project = str(shop.tenant.project_id)

    def ok(*args: str) -> CliResult:
        result = lakehouse(*args, "--org", slug)
        assert result.exit_code == 0, result.stderr
        return result

    ok("policies", "group", "analysts", "--member", f"user:{shop.analyst.email}")
    ok(
        "policies",
        "set",
        "analysts-read",
        "--kind",
        "grant",
        "--target",
        "main.customers",
        "--group",
        "analysts",
        "--privilege",
        "read",
    )
    ok(
        "policies",
        "set",
        "mask-email",
        "--kind",
        "column_mask",
        "--target",
        "customers",
        "--group",
        "analysts",
        "--mask-column",
        "email",
        "--mask",
        "partial",
    )
    ok(
        "policies",
        "set",
        "eu-only",
        "--kind",
        "row_filter",
        "--target",
        "customers",
        "--group",
        "analysts",
        "--row-filter",
        "region = 'EU' or contains(current_principal_groups(), 'auditors')",
    )
    ok("policies", "set", "payroll-closed", "--kind", "deny", "--target", "payroll", "--group", "analysts",
       "--privilege", "read")  # fmt: skip
    listed = ok("policies", "list").stdout
    assert "mask-email" in listed and "warehouse.main.customers" in listed and "partial email" in listed

    masked = lakehouse("policies", "simulate", "--org", slug, "--project", project, "--group", "analysts",
                       "--dataset", "customers", "--column", "email")  # fmt: skip
    assert masked.exit_code == 0 and 'masked (partial) by policy "mask-email"' in masked.stdout
    denied = lakehouse("policies", "simulate", "--org", slug, "--project", project, "--group", "analysts",
                       "--dataset", "payroll")  # fmt: skip
    assert denied.exit_code == 3 and denied.stdout.startswith('DENIED: denied by policy "payroll-closed"')
    bad = lakehouse("policies", "set", "x", "--kind", "grant", "--target", "orders", "--privilege", "all",
                    "--org", slug)  # fmt: skip
    assert bad.exit_code == 1 and "error (privilege): one of read, write, admin" in bad.stderr
    refusal = {"seq": 1, "type": "sql.statement.refused", "message": "access denied", "data": {"access": {
        "dataset": "warehouse.main.payroll", "privilege": "read", "reason": 'denied by policy "payroll-closed"'}}}
    db.execute("select ops.append_events(%s, %s, %s::jsonb)", (shop.task_id, shop.lease, json.dumps([refusal])))
    refusals = json.loads(ok("policies", "refusals", "--json").stdout)
    assert [(r["principal"], r["dataset"], r["policy"]) for r in refusals] == [
        (shop.analyst.email, "warehouse.main.payroll", "payroll-closed")
    ]

    out = tmp_path / "rules.json"
    ok("policies", "export", "--format", "trino", "--catalog", "lakehouse", "--output", str(out))
    rules = json.loads(out.read_text())
    errors = [e.message for e in Draft202012Validator(TRINO_RULES_SCHEMA).iter_errors(rules)]
    assert errors == []
    tables = rules["tables"]
    analysts = [t for t in tables if t.get("group") == "analysts"]
    customers = next(t for t in analysts if t["table"] == "customers")
    assert customers["privileges"] == ["SELECT"]
    assert customers["columns"] == [
        {"name": "email", "mask": "concat(substr(CAST(\"email\" AS varchar), 1, 2), '****')"}
    ]
    assert customers["filter"] == "(region = 'EU' or contains(current_groups(), 'auditors'))"
    assert next(t for t in analysts if t["table"] == "payroll")["privileges"] == []
    everyone_customers = next(
        t for t in tables if "group" not in t and "user" not in t and t.get("table") == "customers"
    )
    assert everyone_customers["privileges"] == []  # governed: nobody else reads it
    assert tables[-1] == {"privileges": ["SELECT", "INSERT", "DELETE", "UPDATE"]}
    for rule in tables:
        for sql in [rule.get("filter"), *(c["mask"] for c in rule.get("columns", []))]:
            if sql:
                sqlglot.parse_one(sql, read="trino")


def test_preview_submits_a_run_acting_as_the_principal(
    db: psycopg.Connection, lakehouse: Callable[..., CliResult]
) -> None:
    shop = make_shop(db)
    govern(db, shop)
    org = db.execute("select slug from ops.orgs where id = %s", (shop.tenant.org_id,)).fetchone()
    assert org
    started = lakehouse("policies", "preview", "--as", "group:analysts", "--sql", "select email from main.customers",
                        "--no-wait", "--org", str(org[0]))  # fmt: skip
    assert started.exit_code == 0, started.stderr
    assert "of warehouse.main.customers as group analysts" in started.stdout
    run_id = started.stdout.split()[2]
    row = db.execute(
        "select pv.principal_kind, pv.principal, pv.requested_by_name, a.kind, a.name from ops.policy_previews pv "
        "join ops.tasks t on t.run_id = pv.run_id cross join lateral ops.task_acts_as(t.id) a where pv.run_id = %s",
        (run_id,),
    ).fetchone()
    assert row and row[:2] == ("group", "analysts") and str(row[2]).startswith("cli:")
    assert row[3:] == ("service_principal", "(a member of group analysts)")
    # No agent serves this pool here: waiting ends at the deadline, saying where the run is.
    waited = lakehouse("policies", "preview", "--as", shop.analyst.email, "--dataset", "main.customers",
                       "--timeout", "1", "--org", str(org[0]))  # fmt: skip
    assert waited.exit_code == 1 and "is still queued after 1 s" in waited.stderr
    refused = lakehouse("policies", "preview", "--as", "group:analysts", "--sql", "drop table main.customers",
                        "--org", str(org[0]))  # fmt: skip
    assert refused.exit_code == 1 and "one SELECT query" in refused.stderr
    assert lakehouse("policies", "preview", "--as", "role:x", "--sql", "select 1").exit_code == 2
