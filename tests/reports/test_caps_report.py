"""`lakehouse caps report`: caps against the usage the real lifecycle SQL recorded, in Markdown and CSV."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import date, timedelta

import psycopg
import pytest
from typer.testing import CliRunner

from control_room.cli import app
from control_room.config import get_settings
from control_room.reports.caps import CapUsageRow, caps_usage
from tests.integration.factories import Tenant, claim, finalize, make_executor, make_tenant


def utc_today(conn: psycopg.Connection) -> date:
    row = conn.execute("select ops.utc_today()").fetchone()
    assert row
    return row[0]  # type: ignore[no-any-return]


@pytest.fixture
def used(db: psycopg.Connection) -> tuple[Tenant, str]:
    """A tenant with five caps and a day of real usage: two runs, a refused third, one claim, one finish."""
    tenant = make_tenant(db)
    pool = f"caps-{uuid.uuid4().hex[:8]}"
    caps = [
        ("runs", "org", None, None, None, "runs_per_day", 2),
        ("slots", "project", tenant.project_id, None, None, "concurrent_tasks", 1),
        ("runtime", "environment", None, tenant.environments["dev"], None, "max_runtime_s", 3600),
        ("compute", "engine", None, None, "shell", "compute_seconds_per_day", 100000),
        ("memory", "engine", None, None, "shell", "max_memory_mb", 512),
    ]
    for name, scope, project, environment, engine, kind, limit in caps:
        db.execute(
            "insert into ops.caps (org_id, name, scope, project_id, environment_id, engine, kind, limit_value) "
            "values (%s, %s, %s, %s, %s, %s, %s, %s)",
            (tenant.org_id, name, scope, project, environment, engine, kind, limit),
        )
    spec = '{"tasks": [%s]}'
    outcomes = []
    for _ in range(3):
        row = db.execute(
            "select run_id, refusal from ops.submit_run(%s, 'dev', %s::jsonb)",
            (tenant.project_id, spec % f'{{"key": "a", "engine": "shell", "pool": "{pool}"}}'),
        ).fetchone()
        assert row
        outcomes.append(row)
    assert [run is not None for run, _ in outcomes] == [True, True, False]
    assert 'cap "runs" (runs_per_day = 2' in str(outcomes[2][1])
    executor = make_executor(db, tenant, pool=pool, engines=("shell",))
    [claimed] = claim(db, executor, max_tasks=5)
    assert claim(db, executor, max_tasks=5) == [], "the concurrency cap of 1 holds the second task back"
    finalize(db, claimed["task_id"], claimed["lease_token"])
    return tenant, pool


def by_name(rows: list[CapUsageRow]) -> dict[str, CapUsageRow]:
    return {row.name: row for row in rows}


def slug_of(db: psycopg.Connection, tenant: Tenant) -> str:
    row = db.execute("select slug from ops.orgs where id = %s", (tenant.org_id,)).fetchone()
    assert row
    return str(row[0])


def test_report_shows_usage_against_each_cap(db: psycopg.Connection, used: tuple[Tenant, str]) -> None:
    tenant, _ = used
    today = utc_today(db)
    slug = slug_of(db, tenant)

    rows = by_name(caps_usage(db, org=slug, start=today - timedelta(days=29), end=today))

    runs = rows["runs"]
    assert (runs.scope_name, runs.runs, runs.breaches, runs.peak, runs.peak_day) == ("(org)", 2, 1, 2.0, today)
    assert (runs.utilisation, runs.status) == (1.0, "breached")
    slots = rows["slots"]
    assert (slots.scope_name, slots.peak_concurrency, slots.utilisation, slots.status) == (slug, 1, 1.0, "near")
    assert rows["runtime"].scope_name == f"{slug}/dev"
    assert rows["runtime"].status == "ok" and rows["runtime"].max_runtime_s < 3600
    compute = rows["compute"]
    assert compute.scope_name == "shell" and compute.runs == 2 and compute.compute_seconds >= 0
    memory = rows["memory"]
    assert (memory.peak, memory.utilisation, memory.status) == (None, None, "ok"), "memory use is not recorded"


def test_the_period_selects_the_days(db: psycopg.Connection, used: tuple[Tenant, str]) -> None:
    tenant, _ = used
    today = utc_today(db)
    slug = slug_of(db, tenant)
    db.execute(
        "insert into ops.cap_usage (cap_id, day, runs, breaches) "
        "select id, %s, 50, 3 from ops.caps where org_id = %s and name = 'runs'",
        (today - timedelta(days=40), tenant.org_id),
    )

    recent = by_name(caps_usage(db, org=slug, start=today - timedelta(days=29), end=today))["runs"]
    longer = by_name(caps_usage(db, org=slug, start=today - timedelta(days=60), end=today))["runs"]
    then = by_name(caps_usage(db, org=slug, start=today - timedelta(days=45), end=today - timedelta(days=35)))["slots"]

    assert (recent.runs, recent.breaches, recent.days_with_usage) == (2, 1, 1)
    assert (longer.runs, longer.breaches, longer.days_with_usage, longer.peak, longer.peak_day) == (
        52,
        4,
        2,
        50.0,
        today - timedelta(days=40),
    )
    assert (then.days_with_usage, then.status) == (0, "idle")
    with pytest.raises(ValueError, match="ends"):
        caps_usage(db, org=slug, start=today, end=today - timedelta(days=1))


def test_cli_markdown_and_csv(
    db: psycopg.Connection, used: tuple[Tenant, str], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant, _ = used
    slug = slug_of(db, tenant)
    today = utc_today(db).isoformat()
    monkeypatch.setenv("LAKEHOUSE_DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        markdown = CliRunner().invoke(app, ["caps", "report", "--org", slug, "--to", today])
        as_csv = CliRunner().invoke(app, ["caps", "report", "--org", slug, "--to", today, "--format", "csv"])
        missing = CliRunner().invoke(app, ["caps", "report", "--org", "no-such-org"])
    finally:
        get_settings.cache_clear()

    assert markdown.exit_code == 0, markdown.stderr
    assert f"# Caps report: org {slug}," in markdown.stdout
    assert "5 cap(s): 1 breached, 1 at 80% or more of the limit." in markdown.stdout
    assert f"| org (org) | runs | runs_per_day | 2 | 2 ({today}) | 100% | 2 |" in markdown.stdout
    assert as_csv.exit_code == 0, as_csv.stderr
    table = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [row["cap"] for row in table] == ["runs", "slots", "runtime", "compute", "memory"]
    runs = table[0]
    assert (runs["runs"], runs["breaches"], runs["utilisation"], runs["status"]) == ("2", "1", "1.0", "breached")
    assert missing.exit_code == 1 and 'org "no-such-org" does not exist' in missing.stderr
