"""The dbt engine's parts without dbt: profiles and secrets, lineage of a manifest, OpenLineage delivery."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from executor_agent.engines.base import EngineError
from executor_agent.engines.dbt_support.column_lineage import trace_columns
from executor_agent.engines.dbt_support.lineage import ProjectGraph
from executor_agent.engines.dbt_support.openlineage import OpenLineageEndpoint, ParentRun, RunEventBuilder
from executor_agent.engines.dbt_support.profiles import dataset_namespace, write_profile
from executor_agent.engines.duckdb import DuckdbSettings
from tests.engines.dbt.conftest import OpenLineageCollector
from tests.engines.dbt.openlineage_schema import validation_errors


def test_secrets_become_env_var_references_and_relative_duckdb_paths_land_in_the_work_folder(tmp_path: Path) -> None:
    profile = {
        "target": "ci",
        "outputs": {
            "ci": {"type": "postgres", "host": "db", "port": 5432, "user": "dbt", "password": {"env": "PG_PW"}},
            "local": {"type": "duckdb", "path": "shop.duckdb"},
        },
    }

    generated = write_profile(
        profile,
        target=None,
        env={"PG_PW": "hunter2"},
        directory=tmp_path / "p",
        warehouse=DuckdbSettings(database=tmp_path / "w.duckdb", data_dir=tmp_path / "w"),
    )

    text = generated.path.read_text()
    assert "hunter2" not in text
    outputs = yaml.safe_load(text)["lakehouse"]["outputs"]
    assert outputs["ci"]["password"] == '{{ env_var("DBT_ENV_SECRET_PG_PW") }}'
    assert outputs["local"]["path"] == str((tmp_path / "w" / "shop.duckdb").resolve())
    assert generated.target == "ci" and generated.secret_env == {"DBT_ENV_SECRET_PG_PW": "hunter2"}
    assert generated.secrets == ["hunter2"]
    assert dataset_namespace(generated.output) == "postgres://db:5432"
    assert dataset_namespace({"type": "duckdb", "path": "/data/shop.duckdb"}) == "duckdb:///data/shop.duckdb"


@pytest.mark.parametrize(
    ("profile", "target", "message"),
    [
        ({"host": "db"}, None, "spec.profile.type:"),
        ({"outputs": {"a": {"type": "duckdb"}}}, "b", "spec.target: 'b' is not an output"),
        ({"outputs": {"a": {"host": "x"}}}, None, "spec.profile.outputs.a.type:"),
        ({"outputs": {"a": {"type": "duckdb"}}, "extra": 1}, None, "spec.profile.extra:"),
        ({"type": "postgres", "password": {"env": "not a name"}}, None, "spec.profile.password.env:"),
        ({"type": "postgres", "password": {"env": "MISSING"}}, None, "spec.profile.password: environment variable"),
    ],
)
def test_bad_profiles_are_refused_naming_the_field(
    profile: dict[str, Any], target: str | None, message: str, tmp_path: Path
) -> None:
    with pytest.raises(EngineError) as raised:
        write_profile(profile, target=target, env={}, directory=tmp_path, warehouse=DuckdbSettings())
    assert str(raised.value).startswith(message), str(raised.value)


def manifest() -> dict[str, Any]:
    def node(kind: str, name: str, parents: list[str], **extra: Any) -> dict[str, Any]:
        return {
            "resource_type": kind,
            "name": name,
            "database": "wh",
            "schema": "main",
            "alias": name,
            "depends_on": {"nodes": parents, "macros": []},
            "columns": {},
            "config": {"materialized": "table", "meta": {}},
            **extra,
        }

    return {
        "metadata": {"project_name": "shop", "dbt_version": "1.11.0"},
        "nodes": {
            "seed.shop.raw": node("seed", "raw", []),
            "model.shop.a": node("model", "a", ["seed.shop.raw", "source.shop.app.raw"]),
            "model.shop.b": node("model", "b", ["model.shop.a", "model.shop.a"], description="B."),
            "test.shop.not_null_b": node("test", "not_null_b", ["model.shop.b"]),
        },
        # A source declared over the seed's table: one dataset, and no edge from it to itself.
        "sources": {
            "source.shop.app.raw": {
                "resource_type": "source",
                "name": "raw",
                "identifier": "raw",
                "database": "wh",
                "schema": "main",
                "depends_on": {},
                "columns": {},
            }
        },
        "exposures": {
            "exposure.shop.dash": {
                "name": "dash",
                "depends_on": {"nodes": ["model.shop.b"]},
                "owner": {"name": "BI", "email": "bi@shop.example"},
            }
        },
    }


def test_lineage_of_a_manifest_has_one_dataset_per_relation_and_no_tests() -> None:
    report = ProjectGraph(manifest(), None, namespace="duckdb:///wh.duckdb").report()

    names = {(d["name"], d["kind"]) for d in report["datasets"]}
    assert names == {("wh.main.raw", "seed"), ("wh.main.a", "model"), ("wh.main.b", "model"), ("dash", "exposure")}
    edges = {(e["upstream"]["name"], e["downstream"]["name"], e["job_name"]) for e in report["edges"]}
    assert edges == {
        ("wh.main.raw", "wh.main.a", "model.shop.a"),
        ("wh.main.a", "wh.main.b", "model.shop.b"),
        ("wh.main.b", "dash", "exposure.shop.dash"),
    }
    dash = next(d for d in report["datasets"] if d["kind"] == "exposure")
    assert dash["namespace"] == "dbt://shop" and dash["owner"] == "bi@shop.example"
    # The tests on a dataset are named in its metadata (the catalog shows their results).
    by_name = {d["name"]: d for d in report["datasets"]}
    assert by_name["wh.main.b"]["metadata"]["tests"] == ["test.shop.not_null_b"]
    assert "tests" not in by_name["wh.main.a"]["metadata"]


def test_a_relationships_test_names_the_join_in_the_child_datasets_metadata() -> None:
    """The test node as dbt 1.11 writes it for examples/dbt's stg_orders.customer_id (checked against `dbt parse`)."""
    graph = manifest()
    graph["nodes"]["model.shop.c"] = {**graph["nodes"]["model.shop.b"], "name": "c", "alias": "c"}
    test_id = "test.shop.relationships_b_customer_id__customer_id__ref_c_.430bf21500"
    graph["nodes"][test_id] = {
        "resource_type": "test", "name": "relationships_b_customer_id__customer_id__ref_c_",
        "attached_node": "model.shop.b", "column_name": "customer_id",
        "depends_on": {"nodes": ["model.shop.c", "model.shop.b"], "macros": ["macro.dbt.test_relationships"]},
        "test_metadata": {"name": "relationships", "namespace": None, "kwargs": {
            "column_name": "customer_id", "to": "ref('c')", "field": "customer_id",
            "model": "{{ get_where_subquery(ref('b')) }}"}},
    }  # fmt: skip
    by_name = {d["name"]: d for d in ProjectGraph(graph, None, namespace="duckdb:///wh.duckdb").report()["datasets"]}
    assert by_name["wh.main.b"]["metadata"]["relationships"] == [
        {"column": "customer_id", "to": "wh.main.c", "field": "customer_id", "test": test_id}
    ]
    assert "relationships" not in by_name["wh.main.c"]["metadata"]
    assert test_id in by_name["wh.main.b"]["metadata"]["tests"]


def test_node_run_events_validate_for_success_failure_and_a_start_only_node() -> None:
    graph = ProjectGraph(manifest(), None, namespace="duckdb:///wh.duckdb")
    builder = RunEventBuilder(
        graph, ParentRun("lakehouse/shop", "build", "6f1c3a52-6a43-4c1e-9a57-2d0f3c4b8e11"), dbt_version="1.11.0",
        adapter="duckdb",
    )  # fmt: skip
    base = {"resource_type": "model", "started_at": "2026-11-26T08:00:00Z", "finished_at": "2026-11-26T08:00:01Z"}

    ok = builder.node_events(
        {**base, "unique_id": "model.shop.a", "status": "success", "rows_affected": 3}, compiled_code="select 1"
    )
    failed = builder.node_events(
        {**base, "unique_id": "model.shop.b", "status": "error", "message": "boom"}, compiled_code=None
    )
    started = builder.node_events({**base, "unique_id": "model.shop.b", "status": None}, compiled_code=None)
    skipped = builder.node_events(
        {**base, "unique_id": "model.shop.b", "status": "skipped", "message": "SKIP"}, compiled_code=None
    )

    assert [e["eventType"] for e in ok] == ["START", "COMPLETE"]
    assert ok[1]["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 3
    assert [e["eventType"] for e in failed] == ["START", "FAIL"]
    assert failed[1]["run"]["facets"]["errorMessage"]["message"] == "boom"
    assert [e["eventType"] for e in started] == ["START"]
    assert [e["eventType"] for e in skipped] == ["START", "ABORT"]
    assert skipped[1]["run"]["facets"]["errorMessage"]["message"] == "SKIP"
    assert ok[0]["run"]["runId"] == ok[1]["run"]["runId"] != failed[0]["run"]["runId"]
    for event in ok + failed + started + skipped:
        assert validation_errors(event) == []


def test_openlineage_delivery_reports_problems_instead_of_failing(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    nowhere = OpenLineageEndpoint(url=f"http://127.0.0.1:{closed_port}")
    collector = OpenLineageCollector()
    try:
        wrong_path = OpenLineageEndpoint(url=collector.url, endpoint="api/v2/lineage")
        events = [{"eventType": "START", "n": i} for i in range(5)]

        unreachable = nowhere.send(events, timeout_s=2)
        refused = wrong_path.send(events[:2])
    finally:
        collector.close()

    assert len(unreachable) == 4 and "3 network errors in a row; 2 events not sent" in unreachable[-1]
    assert len(refused) == 2 and refused[0].startswith("HTTP 404")
    assert OpenLineageEndpoint.from_environment({}) is None
    configured = OpenLineageEndpoint.from_environment(
        {"OPENLINEAGE_URL": "http://ol:5000/", "OPENLINEAGE_API_KEY": "k"}
    )
    assert configured == OpenLineageEndpoint("http://ol:5000", "api/v1/lineage", "k")


def test_column_tracing_expands_stars_follows_ctes_and_gives_up_on_sql_it_cannot_parse() -> None:
    upstream = {
        ("wh", "main", "orders"): ["order_id", "customer_id", "amount"],
        ("wh", "main", "customers"): ["customer_id", "country"],
    }
    star = 'select * from "wh"."main"."orders"'
    through_cte = (
        "with totals as (select customer_id, sum(amount) as spent from wh.main.orders group by customer_id) "
        "select c.customer_id, upper(c.country) as country_code, t.spent, 1 as one "
        "from wh.main.customers c left join totals t on t.customer_id = c.customer_id"
    )

    assert trace_columns(star, upstream=upstream, dialect="duckdb") == {
        ("wh", "main", "orders"): [("order_id", "order_id"), ("customer_id", "customer_id"), ("amount", "amount")]
    }
    assert trace_columns(through_cte, upstream=upstream, dialect="postgres") == {
        ("wh", "main", "customers"): [("customer_id", "customer_id"), ("country", "country_code")],
        ("wh", "main", "orders"): [("amount", "spent")],
    }
    assert trace_columns("selec nothing from (", upstream=upstream, dialect="duckdb") == {}
