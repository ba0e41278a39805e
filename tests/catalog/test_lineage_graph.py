"""The lineage graph service: layered layout (upstream left, cycles in one layer), jobs drawn between
their inputs and outputs, N-hop focus with in-place expansion, a column's path through column lineage,
and the cache keyed by the graph's version on real Postgres (an ingested event moves it)."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import psycopg

from control_room.components.lineage_figure import DATASET_CURVE, JOB_CURVE, lineage_figure
from control_room.services import catalog, lineage_graph
from control_room.services.auth import ServicePrincipal
from tests.catalog.test_catalog import run_async
from tests.integration.factories import make_tenant

NOW = datetime(2026, 12, 4, tzinfo=UTC)


def ds(name: str, columns: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"id": name, "namespace": "duckdb:///lake.duckdb", "name": name, "kind": "model",
            "columns": [{"name": c} for c in columns], "updated_at": NOW, "outcome": "succeeded"}  # fmt: skip


def edge(up: str, down: str, *pairs: tuple[str, str]) -> dict[str, Any]:
    return {"upstream_id": up, "downstream_id": down, "job_name": f"build {down}",
            "column_lineage": [{"upstream_column": u, "downstream_column": d} for u, d in pairs]}  # fmt: skip


def shop() -> lineage_graph.LineageGraph:
    """seed -> stg_orders -> fct_orders -> report, stg_customers -> fct_orders, and an external job
    `export` reading fct_orders and writing crm_orders."""
    datasets = [ds("seed_orders", ("id", "amount")), ds("stg_orders", ("order_id", "amount")),
                ds("stg_customers", ("customer_id",)), ds("fct_orders", ("order_id", "customer_id", "amount")),
                ds("report", ("total",)), ds("crm_orders", ("amount",))]  # fmt: skip
    edges = [
        edge("seed_orders", "stg_orders", ("id", "order_id"), ("amount", "amount")),
        edge("stg_orders", "fct_orders", ("order_id", "order_id"), ("amount", "amount")),
        edge("stg_customers", "fct_orders", ("customer_id", "customer_id")),
        edge("fct_orders", "report", ("amount", "total")),
        edge("fct_orders", "crm_orders", ("amount", "amount")),
    ]
    jobs = [{"id": "export", "namespace": "airflow", "name": "export", "outcome": "COMPLETE", "updated_at": NOW,
             "inputs": ["fct_orders"], "outputs": ["crm_orders"]}]  # fmt: skip
    return lineage_graph.build_graph("v1", datasets, edges, jobs)


def test_layers_put_every_node_right_of_its_upstream_and_jobs_between_inputs_and_outputs() -> None:
    graph = shop()
    drawn = lineage_graph.view(graph)
    x = {node: position[0] for node, position in drawn.positions.items()}

    assert all(x[up] < x[down] for up, down in drawn.edges)
    assert x == {"seed_orders": 0, "stg_customers": 0, "stg_orders": 1, "fct_orders": 2, "report": 3,
                 "export": 3, "crm_orders": 4}  # fmt: skip
    # The external job stands between its input and output instead of a direct edge beside it.
    assert ("fct_orders", "crm_orders") not in drawn.edges
    assert {("fct_orders", "export"), ("export", "crm_orders")} <= set(drawn.edges)
    # No two nodes of a layer share a place.
    assert len(set(drawn.positions.values())) == len(drawn.positions)


def test_a_cycle_collapses_into_one_layer_and_stays_drawable() -> None:
    graph = lineage_graph.build_graph(
        "v", [ds("a"), ds("b"), ds("c")], [edge("a", "b"), edge("b", "a"), edge("b", "c")], []
    )
    positions = lineage_graph.layered_layout(graph.graph)
    assert positions["a"][0] == positions["b"][0] < positions["c"][0]


def test_focus_keeps_n_hops_each_way_and_expanding_adds_a_nodes_neighbours() -> None:
    graph = shop()
    one_hop = lineage_graph.view(graph, focus="stg_orders", hops=1)
    assert {n.id for n in one_hop.nodes} == {"seed_orders", "stg_orders", "fct_orders"}
    # Downstream only from a downstream node: stg_customers is a sibling, not within hops of stg_orders.
    two_hops = lineage_graph.view(graph, focus="stg_orders", hops=2)
    assert {n.id for n in two_hops.nodes} == {"seed_orders", "stg_orders", "fct_orders", "report", "export"}
    expanded = lineage_graph.view(graph, focus="stg_orders", hops=1, expanded=["fct_orders"])
    assert {"stg_customers", "report", "export"} <= {n.id for n in expanded.nodes}


def test_a_columns_path_follows_column_lineage_both_ways_and_through_jobs() -> None:
    graph = shop()
    drawn_edges, datasets = lineage_graph.column_path(graph, "fct_orders", "amount")
    assert datasets == {"seed_orders", "stg_orders", "fct_orders", "report", "crm_orders"}
    assert drawn_edges == {("seed_orders", "stg_orders"), ("stg_orders", "fct_orders"), ("fct_orders", "report"),
                           ("fct_orders", "export"), ("export", "crm_orders")}  # fmt: skip
    # customer_id comes from stg_customers only and goes nowhere further.
    edges_of_customer, on_customer_path = lineage_graph.column_path(graph, "fct_orders", "customer_id")
    assert on_customer_path == {"stg_customers", "fct_orders"}
    assert edges_of_customer == {("stg_customers", "fct_orders")}


def test_the_figure_draws_svg_with_every_edge_in_one_path_and_maps_clicks_to_nodes() -> None:
    graph = shop()
    drawn = lineage_graph.view(graph)
    figure = lineage_figure(drawn, mode="outcome", focus="fct_orders", now=NOW)
    assert {trace.type for trace in figure.data} == {"scatter"}
    (edges,) = figure.layout.shapes
    assert edges.type == "path" and edges.layer == "below"
    assert edges.path.count("M") == edges.path.count("L") == len(drawn.edges) > 0
    x, y = drawn.positions["stg_orders"]
    x2, y2 = drawn.positions["fct_orders"]
    assert f"M{round(x, 2)},{round(y, 2)}L{round(x2, 2)},{round(y2, 2)}" in edges.path
    datasets = figure.data[DATASET_CURVE]
    jobs = figure.data[JOB_CURVE]
    assert len(datasets.x) == 6 and len(jobs.x) == 1 and jobs.marker.symbol == "diamond"
    assert set(datasets.marker.color) == {"#46A758"}  # every dataset's last run succeeded
    assert "fct_orders" in datasets.hovertext[[n.id for n in drawn.nodes if n.kind == "dataset"].index("fct_orders")]


def test_the_unvalidated_figure_is_the_one_plotly_validates() -> None:
    # The page builds its figure without plotly's per-element checks (speed at 5,000 nodes): what it
    # sends the browser must pass them (plotly raises ValueError naming a refused value) unchanged.
    graph = shop()
    drawn = lineage_graph.view(graph)
    highlight, on_path = lineage_graph.column_path(graph, "fct_orders", "amount")

    sent = json.loads(pio.to_json(lineage_figure(drawn, focus="fct_orders", highlight=highlight, on_path=on_path)))
    checked = go.Figure(sent)

    assert json.loads(pio.to_json(checked)) == sent
    # Numbers travel as typed arrays (plotly.js decodes them); a NaN ends each highlighted segment.
    lit_x = np.frombuffer(base64.b64decode(sent["data"][0]["x"]["bdata"]), dtype=sent["data"][0]["x"]["dtype"])
    assert len(lit_x) == 3 * len(highlight) and np.isnan(lit_x[2]) and not np.isnan(lit_x[0])


def test_the_graph_is_cached_per_version_and_a_new_event_moves_it(db: psycopg.Connection, database_url: str) -> None:
    tenant = make_tenant(db)

    def ingest(output: str) -> None:
        event = {
            "eventType": "COMPLETE", "eventTime": datetime.now(UTC).isoformat(), "run": {"runId": str(uuid.uuid4())},
            "producer": "https://example.com/airflow",
            "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
            "job": {"namespace": "airflow", "name": f"load_{output}"},
            "inputs": [{"namespace": "s3://lake", "name": "raw.orders"}],
            "outputs": [{"namespace": "s3://lake", "name": output}],
        }  # fmt: skip
        run_async(
            database_url,
            lambda c: catalog.ingest_openlineage(c, ServicePrincipal(), event, project=str(tenant.project_id)),
        )

    ingest("clean.orders")
    first = run_async(database_url, lambda c: lineage_graph.load_graph(c, tenant.project_id))
    again = run_async(database_url, lambda c: lineage_graph.load_graph(c, tenant.project_id))
    assert again is first
    assert sorted(n.name for n in first.nodes.values()) == ["clean.orders", "load_clean.orders", "raw.orders"]

    ingest("mart.orders")
    moved = run_async(database_url, lambda c: lineage_graph.load_graph(c, tenant.project_id))
    assert moved is not first and moved.version != first.version
    assert {n.name for n in moved.nodes.values()} >= {"mart.orders", "load_mart.orders"}
    raw = next(n.id for n in moved.nodes.values() if n.name == "raw.orders")
    assert {n.name for n in lineage_graph.view(moved, focus=raw, hops=2).nodes} == {
        "raw.orders", "load_clean.orders", "clean.orders", "load_mart.orders", "mart.orders"
    }  # fmt: skip
