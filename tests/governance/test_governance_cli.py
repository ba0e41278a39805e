"""`lakehouse routing`, `lakehouse caps list|set|delete` and `lakehouse governance` against real Postgres:
the matrix with warnings, explain, cap edits audited with the local user, drift after an edit, the bundle-only
lock refusing edits with the bundle's location, and errors that say what to do."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests.bundle.conftest import CliResult
from tests.governance.conftest import GovWorld, add_executor
from tests.integration.factories import Tenant, submit, task

pytestmark = pytest.mark.migrations

Cli = Callable[..., CliResult]


def test_routing_rules_and_explain(gov: GovWorld, db: psycopg.Connection, lakehouse: Cli) -> None:
    add_executor(db, gov.org, pool="default", engines=["shell", "dbt"])
    listed = lakehouse("routing", "rules", "--org", gov.org.slug)
    assert listed.exit_code == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["POSITION", "NAME", "MATCH", "POOL", "LABELS", "OWNER", "ENABLED"]
    assert lines[1].split()[:3] == ["10", "prod-spark", "environment=prod,"]
    assert "warning: prod-spark: no executor in pool default offers engine spark" in lines
    explained = lakehouse(
        "routing", "explain", "--org", gov.org.slug, "--project", "ml", "--environment", "dev", "--engine", "shell",
        "--tag", "training",
    )  # fmt: skip
    assert explained.exit_code == 0, explained.stderr
    out = explained.stdout.splitlines()
    assert out[:4] == [
        "skip  prod-spark: environment is dev, the rule wants prod; engine is shell, the rule wants spark",
        "skip  dbt-models: engine is shell, the rule wants dbt",
        "skip  sql-warehouse: engine is shell, the rule wants duckdb",
        "MATCH ml-training",
    ]
    assert out[4] == "-> pool default (rule ml-training)"
    assert out[5].startswith("executors that could claim it now: gov-")
    bad = lakehouse(
        "routing", "explain", "--org", gov.org.slug, "--project", "ml", "--environment", "qa", "--engine", "x"
    )
    assert bad.exit_code == 2 and "--environment must be dev, staging or prod" in bad.stderr


def test_caps_edits_drift_and_the_bundle_only_lock(
    gov: GovWorld, db: psycopg.Connection, lakehouse: Cli, tmp_path: Path
) -> None:
    org = ("--org", gov.org.slug)
    assert "no drift" in lakehouse("governance", "drift", *org).stdout
    saved = lakehouse("caps", "set", "etl-pool", "--scope", "pool", "--pool", "etl", "--kind", "concurrent_tasks",
                      "--limit", "4", *org)  # fmt: skip
    assert saved.exit_code == 0 and saved.stdout.strip() == "saved cap etl-pool", saved.stderr
    listed = json.loads(lakehouse("caps", "list", "--json", *org).stdout)
    cap = next(c for c in listed if c["name"] == "etl-pool")
    assert (cap["target"], cap["limit"], cap["layer"], cap["used_label"]) == ("pool etl", 4, "claim", "0 running")
    actor = db.execute(
        "select actor from ops.audit_log where entity = 'caps' and detail ->> 'name' = 'etl-pool' "
        "and detail ->> 'org_id' = %s",
        (str(gov.org.org_id),),
    ).fetchone()
    assert actor and actor[0].startswith("cli:")
    drift = lakehouse("governance", "drift", *org)
    assert "  + caps etl-pool" in drift.stdout.splitlines(), drift.stdout
    zipped = tmp_path / "bundle.zip"
    assert lakehouse("governance", "export-zip", "--out", str(zipped), *org).exit_code == 0
    assert f"{gov.org.slug}-bundle/caps.yaml" in zipfile.ZipFile(zipped).namelist()
    bad = lakehouse("caps", "set", "x", "--scope", "pool", "--kind", "max_cores", "--limit", "2", *org)
    assert bad.exit_code == 1 and bad.stderr.startswith("error (pool):"), bad.stderr
    assert lakehouse("governance", "lock", "--location", "https://git.test/gov.git", *org).exit_code == 0
    refused = lakehouse("caps", "delete", "etl-pool", *org)
    assert refused.exit_code == 1
    assert "managed by its bundle only (https://git.test/gov.git)" in refused.stderr
    assert lakehouse("governance", "unlock", *org).exit_code == 0
    assert lakehouse("caps", "delete", "etl-pool", *org).stdout.strip() == "deleted cap etl-pool"
    missing = lakehouse("caps", "delete", "etl-pool", *org)
    assert missing.exit_code == 1 and 'no cap named "etl-pool"' in missing.stderr


def test_caps_effective_for_a_spec_or_template_and_the_refusals(
    gov: GovWorld, db: psycopg.Connection, lakehouse: Cli, tmp_path: Path
) -> None:
    org = ("--org", gov.org.slug)
    spec = tmp_path / "spec.yaml"
    spec.write_text("tasks:\n  - key: train\n    engine: spark\n    application: job.py\n    timeout_s: 600\n")
    shown = lakehouse("caps", "effective", "--project", "lakehouse", "--environment", "prod", "--spec", str(spec), *org)
    assert shown.exit_code == 0, shown.stderr
    assert shown.stdout.splitlines() == [
        "task train (spark) -> pool default (rule prod-spark)",
        "  TIGHTEST concurrent_tasks <= 16 tasks: lakehouse-concurrency (project lakehouse, claim)",
        "  TIGHTEST max_runtime_s <= 600 s: spec timeout_s (this task, agent)",
        "           max_runtime_s <= 3,600 s: prod-max-runtime (lakehouse/prod, agent)",
        "  TIGHTEST runs_per_day <= 100,000 runs/day: org-runs-per-day (whole org, submit)",
        "  TIGHTEST max_memory_mb <= 4,096 MB: spark-memory (engine spark, agent)",
    ]
    templated = lakehouse(
        "caps", "effective", "--project", "lakehouse", "--environment", "dev", "--template", "warehouse-report",
        "--json", *org,
    )  # fmt: skip
    assert templated.exit_code == 0, templated.stderr
    (planned,) = json.loads(templated.stdout)
    assert (planned["engine"], planned["pool"], planned["rule"]) == ("duckdb", "default", "sql-warehouse")
    assert {x["source"] for x in planned["limits"] if x["tightest"]} >= {"sql-scan-limit", "lakehouse-concurrency"}
    missing = lakehouse(
        "caps", "effective", "--project", "lakehouse", "--environment", "dev", "--template", "nope", *org
    )
    assert missing.exit_code == 1 and 'project lakehouse has no job template "nope"' in missing.stderr
    both = lakehouse("caps", "effective", "--project", "lakehouse", "--environment", "dev", *org)
    assert both.exit_code == 2 and "either --spec FILE or --template NAME" in both.stderr

    # A full pool cap holds a queued task: `caps refusals` names it with its run.
    assert lakehouse("caps", "set", "one-slot", "--scope", "pool", "--pool", "default", "--kind", "concurrent_tasks",
                     "--limit", "0", *org).exit_code == 0  # fmt: skip
    assert lakehouse("caps", "refusals", "one-slot", *org).stdout.startswith("no refusals in the projects you can see")
    project = db.execute(
        "select id from ops.projects where org_id = %s and slug = 'lakehouse'", (gov.org.org_id,)
    ).fetchone()
    assert project
    envs = dict(db.execute("select name, id from ops.environments where project_id = %s", (project[0],)).fetchall())
    run = submit(db, Tenant(org_id=gov.org.org_id, project_id=project[0], environments=envs), [task("w")])
    listed = json.loads(lakehouse("caps", "refusals", "one-slot", "--json", *org).stdout)["items"]
    assert [(r["cap"], r["layer"], r["run"], r["task"]) for r in listed] == [("one-slot", "claim", str(run), "w")]
    assert listed[0]["message"] == 'held in the queue: pool at its concurrency cap "one-slot" (0 running of 0)'
