"""Loads the demo organisation, project, environments, routing and caps once."""

from __future__ import annotations

import importlib.util
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from control_room.bundle import DEMO_BUNDLE_DIR
from control_room.bundle.deploy import deploy_bundle
from control_room.bundle.loader import load_bundle
from control_room.config import PROJECT_ROOT, SEED_FILE, get_settings
from control_room.services.backfills import backfill_intervals
from control_room.supervisor import local_lake_dir, local_warehouse_file

DEMO_ORG_SLUG = "demo"


def load_demo_data(database_url: str) -> bool:
    """Apply supabase/seed.sql, then deploy examples/bundle, unless the demo org exists; True when loaded now."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        found = conn.execute("select 1 from ops.orgs where slug = %s", (DEMO_ORG_SLUG,)).fetchone()
        if found:
            return False
        with conn.transaction():
            conn.execute(SEED_FILE.read_text(encoding="utf-8").encode())
            # Routing, caps, job templates, schedules, alerts and promotion gates: the example bundle.
            deploy_bundle(conn, load_bundle(DEMO_BUNDLE_DIR), actor="demo-data")
            for spec, key in DEMO_RUNS:
                _submit_demo_run(conn, spec, key)
            submit_demo_dbt_build(conn)
            submit_demo_backfill(conn)
            open_demo_promotion(conn)
            set_up_demo_access_policies(conn)
    return True


DEMO_PROJECT_ID = "00000000-0000-4000-8000-000000000101"


def _one_task_job(name: str, task: dict[str, object]) -> dict[str, object]:
    """The run spec of a demo job of one task."""
    return {"name": name, "tasks": [task]}


def _submit_demo_run(conn: psycopg.Connection, spec: Mapping[str, object], key: str) -> uuid.UUID | None:
    """Queue a demo run in dev; its idempotency ``key`` makes a repeat return the same run. Its id, or None
    when a cap refused it."""
    row = conn.execute(
        "select run_id from ops.submit_run(%s, 'dev', %s::jsonb, '{}'::jsonb, 'demo', null, 'demo data', %s)",
        (DEMO_PROJECT_ID, json.dumps(spec), key),
    ).fetchone()
    run_id: uuid.UUID | None = row[0] if row is not None else None
    return run_id


DEMO_PIPELINE_KEY = "demo-pipeline-shell-python-shell"
# shell -> python -> shell, each producing an artifact; the local agent of `lakehouse run` runs it.
DEMO_PIPELINE_SPEC: dict[str, object] = {
    "name": "demo pipeline: extract -> summarize -> publish",
    "tasks": [
        {
            "key": "extract",
            "engine": "shell",
            "timeout_s": 300,
            "command": (
                "mkdir -p out && echo 'order_id,region,amount' > out/orders.csv && i=1; "
                'while [ $i -le 200 ]; do echo "$i,region$((i % 4)),$((i * 37 % 500))" >> out/orders.csv; '
                "i=$((i + 1)); done; "
                'echo \'::lakehouse::{"type": "progress", "message": "orders extracted", '
                '"data": {"rows": 200}}\'; '
                'echo "extracted $(($(wc -l < out/orders.csv) - 1)) orders"'
            ),
            "artifacts": ["out/orders.csv"],
        },
        {
            "key": "summarize",
            "engine": "python",
            "depends_on": ["extract"],
            "timeout_s": 300,
            "function": "executor_agent.examples.demo_pipeline:summarize",
            "params": {"rows": 200, "seed": 7},
        },
        {
            "key": "publish",
            "engine": "shell",
            "depends_on": ["summarize"],
            "timeout_s": 300,
            "command": (
                "printf '# Demo pipeline report\\n\\nRun %s, task %s, attempt %s: orders extracted and "
                'summarized.\\n\' "$LAKEHOUSE_RUN_ID" "$LAKEHOUSE_TASK_KEY" "$LAKEHOUSE_ATTEMPT" > report.md && '
                "echo 'published report.md'"
            ),
            "artifacts": ["report.md"],
        },
    ],
}


DEMO_WAREHOUSE_KEY = "demo-warehouse-duckdb"
# The SQL task type on the embedded DuckDB warehouse: a table, an aggregate and a result worth paging.
DEMO_WAREHOUSE_SPEC = _one_task_job(
    "demo warehouse: orders by region (DuckDB)",
    {
        "key": "orders_by_region",
        "engine": "duckdb",
        "timeout_s": 300,
        "sql": (
            "create or replace table demo_orders as select range + 1 as order_id, "
            "'region' || (range % 4) as region, (range * 37) % 500 as amount, "
            "date '2026-01-01' + cast(range % 90 as integer) as order_date from range(100000);\n"
            "select region, count(*) as orders, sum(amount) as revenue, min(order_date) as first_day, "
            "max(order_date) as last_day from demo_orders group by region order by region;\n"
            "select * from demo_orders where amount > 400 order by order_id"
        ),
        "output": {"formats": ["parquet", "csv"], "preview_rows": 50},
    },
)


DEMO_DBT_KEY = "demo-dbt-build-shop"


def demo_dbt_spec(data_dir: Path) -> dict[str, object]:
    """``dbt build`` of examples/dbt (with docs, for column types) on a DuckDB file under the data folder, then
    the lake steps that carry its fct_orders mart on, so the lineage graph runs seeds -> staging -> marts ->
    a DuckDB export -> a Delta table -> a DuckDB table: DuckDB copies the mart to Parquet, the Delta engine
    writes that into a Delta table in the local agent's lake, and DuckDB sums the Delta table per day into
    the warehouse. The tasks run one after another: one process at a time may write a DuckDB file, and the
    dbt build runs in a child process of its own."""
    warehouse = str(data_dir / "dbt-demo" / "shop.duckdb")
    export = str(data_dir / "dbt-demo" / "orders_export.parquet")
    delta_table = str(local_lake_dir(data_dir) / "shop_orders")
    return {
        "name": "demo dbt: build the example shop project",
        "tasks": [
            {
                "key": "dbt_build",
                "engine": "dbt",
                "timeout_s": 900,
                "command": "build",
                "project": {"path": str(PROJECT_ROOT / "examples" / "dbt")},
                "profile": {"type": "duckdb", "path": warehouse},
                "docs": True,
            },
            {
                "key": "export_orders",
                "engine": "duckdb",
                "depends_on": ["dbt_build"],
                "timeout_s": 300,
                "database": warehouse,
                "sql": (
                    "copy (select order_id, customer_id, country_code, ordered_on, status, amount "
                    f"from main.fct_orders) to '{export}' (format parquet)"
                ),
            },
            {
                "key": "orders_to_delta",
                "engine": "delta",
                "depends_on": ["export_orders"],
                "timeout_s": 300,
                "delta": {"operation": "overwrite", "table": delta_table, "source": {"path": export}},
            },
            {
                "key": "daily_revenue",
                "engine": "duckdb",
                "depends_on": ["orders_to_delta"],
                "timeout_s": 300,
                "database": warehouse,
                "tables": {"shop_orders": {"path": delta_table, "format": "delta"}},
                "sql": (
                    "create or replace table main.daily_revenue as select ordered_on, count(*) as orders, "
                    "sum(amount) as revenue from shop_orders group by ordered_on;\n"
                    "select * from main.daily_revenue order by ordered_on desc"
                ),
                "output": {"formats": ["parquet"], "preview_rows": 50},
            },
        ],
    }


def submit_demo_dbt_build(conn: psycopg.Connection) -> None:
    """Queue the demo dbt build once, when dbt is installed here: the local agent runs from this same
    environment, and without dbt no agent of `make run` could ever take the task."""
    if importlib.util.find_spec("dbt") is None:
        return
    _submit_demo_run(conn, demo_dbt_spec(get_settings().data_dir), DEMO_DBT_KEY)


DEMO_FAILING_KEY = "demo-failing-job"
# A job that fails on purpose (one attempt, exit 3): the demo bundle's alert rule demo-run-failed
# (examples/bundle/alerts.yaml) fires on it, so the bell has something to show.
DEMO_FAILING_SPEC = _one_task_job(
    "demo failing job: validate orders",
    {
        "key": "validate",
        "engine": "shell",
        "timeout_s": 60,
        "max_attempts": 1,
        "command": "echo 'validating orders: 3 rows with a negative amount' >&2; exit 3",
    },
)


DEMO_BACKFILL_DAYS = 6


def submit_demo_backfill(conn: psycopg.Connection) -> None:
    """Backfill the nightly-ingest job over the last days in dev (one run per day, two at a time), so the
    Jobs page shows run history, success per day and task durations as soon as the local agent has run them."""
    row = conn.execute(
        "select t.id from ops.job_templates t where t.project_id = %s and t.name = 'nightly-ingest'",
        (DEMO_PROJECT_ID,),
    ).fetchone()
    if row is None:  # the example bundle no longer has it
        return
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    intervals = backfill_intervals(end - timedelta(days=DEMO_BACKFILL_DAYS), end, "1d")
    conn.execute(
        "select ops.create_backfill(%s, 'dev', %s, %s, '1d', 'UTC', %s::jsonb, null, 2, 'oldest_first', %s::jsonb, "
        "null, null, 'demo data')",
        (
            row[0],
            end - timedelta(days=DEMO_BACKFILL_DAYS),
            end,
            json.dumps({"source": "orders", "full_refresh": False}),
            json.dumps([[a.isoformat(), b.isoformat()] for a, b in intervals]),
        ),
    )


def open_demo_promotion(conn: psycopg.Connection) -> None:
    """Show the promotion gates at work: CI's pr-gate reported for the lakehouse jobs' versions, and a request
    to promote nightly-ingest v1 from dev to staging. Its checks turn green as the backfill's dev runs succeed,
    and the promotion loop then deploys it to staging; until a version is promoted to prod, the prod schedules'
    fires fail, naming the gate."""
    templates = conn.execute(
        "select t.id, t.name, max(v.version) from ops.job_templates t "
        "join ops.job_template_versions v on v.template_id = t.id where t.project_id = %s group by t.id, t.name",
        (DEMO_PROJECT_ID,),
    ).fetchall()
    for template_id, _name, version in templates:
        conn.execute(
            "select ops.report_version_check(%s, %s, 'pr-gate', 'passed', null, %s, 'ci (demo data)')",
            (template_id, version, "lakehouse validate passed on the bundle's pull request"),
        )
    ingest = next((row for row in templates if row[1] == "nightly-ingest"), None)
    if ingest is None:  # the example bundle no longer has it
        return
    conn.execute(
        "select ops.request_promotion(%s, 1, 'staging', %s, null, 'demo data')",
        (ingest[0], "first release of the nightly ingest: promote once it ran in dev"),
    )


DEMO_TRAINING_KEY = "demo-training-churn-classifier"
# A python task that logs three MLflow runs (params, per-epoch metrics, the model) and registers the best
# as `churn-classifier`: the Experiments and Models pages show it once the local agent has run it.
DEMO_TRAINING_SPEC = _one_task_job(
    "demo training: churn classifier (MLflow)",
    {
        "key": "train",
        "engine": "python",
        "timeout_s": 900,
        "function": "executor_agent.examples.train_model:train",
        "params": {"rows": 2000, "epochs": 12, "alphas": [0.1, 0.01, 0.0001], "model_name": "churn-classifier"},
    },
)


DEMO_CUSTOMERS_KEY = "demo-customers-duckdb"
DEMO_ANALYST_EMAIL = "analyst@demo.example"
# A small customers table on the DuckDB warehouse whose email column access policies mask for group
# analysts (issue 22): `lakehouse users create --email analyst@demo.example --project lakehouse --role operator`
# gives the analyst a password; their query tasks then see the masked values. Group analysts and the
# mask come with the example bundle (examples/bundle/access.yaml).
DEMO_CUSTOMERS_SPEC = _one_task_job(
    "demo warehouse: customers (email masked for analysts)",
    {
        "key": "customers",
        "engine": "duckdb",
        "timeout_s": 300,
        "sql": (
            "create or replace table demo_customers as select * from (values "
            "(1, 'Ada Lovelace', 'ada@shop.example', 'GB'), (2, 'Grace Hopper', 'grace@shop.example', 'US'), "
            "(3, 'Alan Turing', 'alan@shop.example', 'GB'), (4, 'Hedy Lamarr', 'hedy@shop.example', 'AT')) "
            "t(customer_id, full_name, email, country);\n"
            "select customer_id, full_name, email, country from demo_customers order by customer_id"
        ),
    },
)


def set_up_demo_access_policies(conn: psycopg.Connection) -> None:
    """The demo customers table: its run queued, its dataset registered with email tagged pii (the example
    bundle's policy mask-customer-email masks it for group analysts)."""
    run_id = _submit_demo_run(conn, DEMO_CUSTOMERS_SPEC, DEMO_CUSTOMERS_KEY)
    columns = [
        {"name": "customer_id", "type": "INTEGER"},
        {"name": "full_name", "type": "VARCHAR"},
        {"name": "email", "type": "VARCHAR", "tags": ["pii"]},
        {"name": "country", "type": "VARCHAR"},
    ]
    # Under the namespace of the local agent's warehouse, where the task writes it: its lineage report then
    # updates this dataset (keeping the pii tag) rather than registering a second one.
    namespace = f"duckdb://{local_warehouse_file(get_settings().data_dir)}"
    conn.execute(
        "insert into ops.datasets (project_id, namespace, name, kind, columns, description, first_run_id, "
        "last_run_id, last_task_id) select %s, %s, 'warehouse.main.demo_customers', 'table', "
        "%s::jsonb, 'Demo customers; email is masked for group analysts', r.id, r.id, t.id "
        "from ops.runs r join ops.tasks t on t.run_id = r.id where r.id = %s "
        "on conflict do nothing",
        (DEMO_PROJECT_ID, namespace, json.dumps(columns), run_id),
    )


# The demo runs queued as they are (the dbt build, which needs dbt, and the customers run, whose dataset is
# registered beside it, are queued by their own functions).
DEMO_RUNS: tuple[tuple[dict[str, object], str], ...] = (
    (DEMO_PIPELINE_SPEC, DEMO_PIPELINE_KEY),
    (DEMO_WAREHOUSE_SPEC, DEMO_WAREHOUSE_KEY),
    (DEMO_FAILING_SPEC, DEMO_FAILING_KEY),
    (DEMO_TRAINING_SPEC, DEMO_TRAINING_KEY),
)
