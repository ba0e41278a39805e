"""DuckDB tasks report lineage: the warehouse tables, lake tables and files their statements read and wrote,
named as dbt-duckdb and the Delta engine name them, with edges, column pairs and one OpenLineage run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from control_room.services.demo import demo_dbt_spec
from control_room.supervisor import local_lake_dir
from executor_agent.engines.delta import DeltaEngine
from executor_agent.engines.duckdb import DuckdbEngine, duckdb_namespace
from tests.engines.sql.conftest import MakeContext, assert_outcome


def _by_name(payload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in payload["datasets"]}


def test_statements_report_the_tables_they_read_and_wrote_with_column_lineage(
    warehouse: Path, make_context: MakeContext
) -> None:
    write_deltalake(warehouse / "orders_lake", pa.table({"order_id": [1, 2, 3], "amount": [10.0, 450.0, 20.0]}))
    export = warehouse.parent / "exports" / "big_orders.parquet"
    export.parent.mkdir()
    context = make_context(
        {
            "sql": (
                "create or replace table customers as select * from (values (1, 'Ada'), (2, 'Grace')) t(id, name);\n"
                "create or replace table big_orders as\n"
                "  with o as (select order_id, amount * 2 as doubled from orders_lake)\n"
                "  select o.order_id, c.name as customer, o.doubled from o join customers c on c.id = o.order_id;\n"
                f"copy (select customer, doubled from big_orders) to '{export}' (format parquet);\n"
                "select count(*) from big_orders"
            )
        }
    )

    result = DuckdbEngine().run(context)

    assert_outcome(result, "succeeded")
    payload = context.report_of("lineage")
    namespace = duckdb_namespace(str((warehouse.parent / "warehouse.duckdb").resolve()))
    datasets = _by_name(payload)
    assert set(datasets) == {
        "warehouse.main.customers", "warehouse.main.big_orders", str(warehouse / "orders_lake"), str(export),
    }  # fmt: skip
    big = datasets["warehouse.main.big_orders"]
    assert big["namespace"] == namespace and not big.get("read_only")
    assert big["columns"] == [
        {"name": "order_id", "type": "BIGINT"}, {"name": "customer", "type": "VARCHAR"},
        {"name": "doubled", "type": "DOUBLE"},
    ]  # fmt: skip
    lake = datasets[str(warehouse / "orders_lake")]
    assert lake["namespace"] == "file" and lake["read_only"] is True  # read only: its writer's facts stand
    assert [c["name"] for c in lake["columns"]] == ["order_id", "amount"]
    assert datasets[str(export)]["namespace"] == "file"
    assert [c["name"] for c in datasets[str(export)]["columns"]] == ["customer", "doubled"]

    edges = {(e["upstream"]["name"], e["downstream"]["name"]): e for e in payload["edges"]}
    assert set(edges) == {
        (str(warehouse / "orders_lake"), "warehouse.main.big_orders"),
        ("warehouse.main.customers", "warehouse.main.big_orders"),
        ("warehouse.main.big_orders", str(export)),
    }
    pairs = {k: {(p["upstream_column"], p["downstream_column"]) for p in e.get("column_lineage", [])}
             for k, e in edges.items()}  # fmt: skip
    assert pairs[(str(warehouse / "orders_lake"), "warehouse.main.big_orders")] == {
        ("order_id", "order_id"), ("amount", "doubled"),
    }  # fmt: skip
    assert pairs[("warehouse.main.customers", "warehouse.main.big_orders")] == {("name", "customer")}
    assert pairs[("warehouse.main.big_orders", str(export))] == {("customer", "customer"), ("doubled", "doubled")}
    assert edges[("warehouse.main.customers", "warehouse.main.big_orders")]["job_name"] == "query (statement 2)"

    start, complete = payload["openlineage_events"]
    assert (start["eventType"], complete["eventType"]) == ("START", "COMPLETE")
    assert start["run"]["runId"] == complete["run"]["runId"] and complete["job"]["name"] == "query"
    assert [o["name"] for o in complete["outputs"]] == [
        "warehouse.main.customers", "warehouse.main.big_orders", str(export),
    ]  # fmt: skip
    assert [i["name"] for i in complete["inputs"]] == [str(warehouse / "orders_lake")]
    big_out = complete["outputs"][1]
    assert big_out["outputFacets"]["outputStatistics"]["rowCount"] == 2
    assert big_out["facets"]["columnLineage"]["fields"]["doubled"]["inputFields"] == [
        {"namespace": "file", "name": str(warehouse / "orders_lake"), "field": "amount"}
    ]


def test_a_query_that_only_reads_reports_its_tables_read_only_and_no_edge(
    warehouse: Path, make_context: MakeContext
) -> None:
    setup = make_context({"sql": "create table sales as select range as id, range * 3 as amount from range(10)"})
    assert_outcome(DuckdbEngine().run(setup), "succeeded")
    context = make_context({"sql": "select sum(amount) from main.sales; select 42"})

    assert_outcome(DuckdbEngine().run(context), "succeeded")

    payload = context.report_of("lineage")
    assert payload["edges"] == []
    (sales,) = payload["datasets"]
    assert sales["name"] == "warehouse.main.sales" and sales["read_only"] is True
    assert payload["openlineage_events"][1]["outputs"] == []


def test_an_in_memory_database_reports_no_lineage(warehouse: Path, make_context: MakeContext) -> None:
    context = make_context({"sql": "create table t as select 1 as x; select * from t", "database": ":memory:"})
    assert_outcome(DuckdbEngine().run(context), "succeeded")
    assert all(op != "lineage" for op, _ in context.reports)


def test_the_demo_lake_steps_carry_the_dbt_mart_into_delta_and_duckdb(
    tmp_path: Path, make_context: MakeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tasks after the demo's dbt build, on a warehouse holding a stand-in fct_orders: one lineage chain
    fct_orders -> Parquet export -> Delta table -> daily_revenue, the amount column followed all the way."""
    data_dir = tmp_path / "data"
    monkeypatch.setenv("LAKEHOUSE_EXECUTOR_DUCKDB_DATA_DIR", str(local_lake_dir(data_dir)))
    tasks = {t["key"]: t for t in demo_dbt_spec(data_dir)["tasks"]}  # type: ignore[attr-defined]
    warehouse = Path(tasks["export_orders"]["database"])
    warehouse.parent.mkdir(parents=True)
    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            "create table fct_orders as select * from (values (101, 1, 'GB', date '2026-03-01', 'completed', 42.0), "
            "(102, 1, 'GB', date '2026-03-01', 'placed', 12.5), (103, 2, 'US', date '2026-03-02', 'shipped', 7.0)) "
            "t(order_id, customer_id, country_code, ordered_on, status, amount)"
        )
    edges: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for key, engine in (("export_orders", DuckdbEngine()), ("orders_to_delta", DeltaEngine()),
                        ("daily_revenue", DuckdbEngine())):  # fmt: skip
        spec = {k: v for k, v in tasks[key].items() if k not in ("key", "depends_on", "timeout_s")}
        context = make_context(spec, engine=tasks[key]["engine"], task_key=key)
        assert_outcome(engine.run(context), "succeeded")
        for edge in context.report_of("lineage")["edges"]:
            pairs = {(p["upstream_column"], p["downstream_column"]) for p in edge.get("column_lineage", [])}
            edges[(edge["upstream"]["name"], edge["downstream"]["name"])] = pairs

    export = str(data_dir / "dbt-demo" / "orders_export.parquet")
    lake = str(local_lake_dir(data_dir) / "shop_orders")
    assert set(edges) == {
        ("shop.main.fct_orders", export), (export, lake), (lake, "shop.main.daily_revenue"),
    }  # fmt: skip
    assert ("amount", "amount") in edges[("shop.main.fct_orders", export)]
    assert ("amount", "amount") in edges[(export, lake)]
    assert ("amount", "revenue") in edges[(lake, "shop.main.daily_revenue")]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute("select ordered_on::varchar, orders, revenue from daily_revenue order by 1").fetchall()
    assert rows == [("2026-03-01", 2, 54.5), ("2026-03-02", 1, 7.0)]
