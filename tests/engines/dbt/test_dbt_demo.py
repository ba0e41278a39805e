"""The demo data queues a dbt build of the example project (dbt is installed in this environment)."""

from __future__ import annotations

from collections.abc import Callable

import psycopg

from control_room.db.migrate import migrate
from control_room.services.demo import DEMO_DBT_KEY, load_demo_data
from executor_agent.engines.dbt_support.spec import DbtTaskSpec
from tests.engines.dbt.conftest import EXAMPLE_PROJECT


def test_demo_data_queues_a_dbt_build_of_the_example_project(fresh_database: Callable[[], str]) -> None:
    url = fresh_database()
    migrate(url)

    assert load_demo_data(url) is True

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select t.engine, t.status, t.spec from ops.runs r join ops.tasks t on t.run_id = r.id "
            "where r.idempotency_key = %s",
            (DEMO_DBT_KEY,),
        ).fetchall()
    by_engine = {engine: (status, spec) for engine, status, spec in rows}
    # The build, then the lake steps that carry its fct_orders mart into Parquet, Delta and DuckDB (waiting for it).
    assert sorted(engine for engine, _, _ in rows) == ["dbt", "delta", "duckdb", "duckdb"]
    status, spec = by_engine["dbt"]
    assert status == "queued" and {s for e, s, _ in rows if e != "dbt"} == {"pending"}
    parsed = DbtTaskSpec.parse(spec, {})
    assert parsed.command == "build" and parsed.docs
    assert parsed.project.path == str(EXAMPLE_PROJECT)
