"""Dashboard templates, their schema, running datasets as the viewer (no leak across orgs), saved versions."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from control_room.components.dashboard_figures import chart_figure
from control_room.dashboards import DASHBOARD_SCHEMA_PATH
from control_room.dashboards.loader import parse_dashboard, shipped_templates
from control_room.dashboards.models import Dataset, dashboard_json_schema
from control_room.services import dashboards
from control_room.services.errors import Conflict, Forbidden, Invalid
from tests.analytics.conftest import AnalyticsWorld

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def test_published_schema_is_current_and_every_template_validates() -> None:
    assert json.loads(DASHBOARD_SCHEMA_PATH.read_text(encoding="utf-8")) == dashboard_json_schema()
    assert set(shipped_templates()) == {"run-health", "caps-and-cost", "data-freshness", "ml", "shop-sales"}
    health = shipped_templates()["run-health"].dashboard
    assert {c.id for c in health.charts} >= {"runs_per_day", "duration_p95", "queue_wait"}


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("title: x\ndatasets: {a: {sql: select 1}}\ncharts: [{id: c, title: t, type: donut, dataset: a}]",
         "charts[0].type"),
        ("title: x\ndatasets: {a: {sql: select 1, colour: red}}\ncharts: [{id: c, title: t, type: table, dataset: a}]",
         "datasets.a"),
        ("title: x\nrefresh_seconds: 7\ndatasets: {a: {sql: select 1}}\ncharts: [{id: c, title: t, type: table, "
         "dataset: a}]", "refresh_seconds"),
    ],
)  # fmt: skip
def test_errors_name_the_path(text: str, path: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_dashboard(text)
    assert caught.value.field == path


def test_a_chart_on_an_unknown_dataset_is_refused_by_name() -> None:
    with pytest.raises(Invalid, match="uses dataset 'b', which is not defined"):
        parse_dashboard(
            "title: x\ndatasets: {a: {sql: select 1}}\ncharts: [{id: c, title: t, type: table, dataset: b}]"
        )


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("delete from ops.runs", "read-only"),
        ("select 1; select 2", "exactly one statement"),
        ("select set_config('request.jwt.claims', '{}', true)", r"set_config\(\) is not allowed"),
        ("select * from ops.users", "ops.users is not readable"),
        ("select * from pg_catalog.pg_authid", "is not readable"),
        ("select * from ops.runs where project_id = :nope", "unknown parameter :nope"),
    ],
)
def test_guardrails_refuse_what_a_dashboard_may_not_do(sql: str, reason: str) -> None:
    with pytest.raises(Invalid, match=reason):
        dashboards.control_plane_statement(Dataset(sql=sql), dashboards.DatasetScope(uuid.uuid4(), NOW, NOW))


def _run_template(world: AnalyticsWorld, who: str, template: str, dataset: str, project: uuid.UUID) -> list[list[Any]]:
    spec = shipped_templates()[template].dashboard
    since, until = dashboards.window("7d")

    async def work(conn: psycopg.AsyncConnection) -> list[list[Any]]:
        filters: dict[str, str | None] = {f.name: None for f in spec.filters}
        result = await dashboards.run_dataset(
            conn, spec.datasets[dataset], dashboards.DatasetScope(project, since, until, filters)
        )
        return result.rows

    return world.call(who, work)


def test_run_health_draws_the_demo_runs_for_a_viewer(world: AnalyticsWorld) -> None:
    rows = _run_template(world, "viewer", "run-health", "runs_per_day", world.project)
    assert rows and sum(int(str(r[1])) for r in rows) >= 4  # the demo's pipeline, warehouse, failing, training runs


def test_org_b_sees_none_of_org_a_rows(world: AnalyticsWorld) -> None:
    assert _run_template(world, "b_admin", "run-health", "runs_per_day", world.project) == []
    projects = [r[0] for r in _run_template(world, "b_admin", "caps-and-cost", "compute_by_project", world.project)]
    assert "demo" not in projects


def test_datasets_are_never_read_as_the_owner(world: AnalyticsWorld) -> None:
    spec = shipped_templates()["run-health"].dashboard

    async def work(conn: psycopg.AsyncConnection) -> object:
        scope = dashboards.DatasetScope(world.project, NOW, NOW, {"environment": None})
        return await dashboards.run_dataset(conn, spec.datasets["runs_per_day"], scope)

    with pytest.raises(Forbidden):
        world.call_unscoped(work)


def test_clone_edit_and_versions(world: AnalyticsWorld) -> None:
    async def clone(conn: psycopg.AsyncConnection) -> dict[str, Any]:
        return await dashboards.clone_template(conn, project_id=world.project, template="run-health", slug="my-health")

    first = world.call("operator", clone)
    assert (first["version"], first["created"]) == (1, True)
    edited = dashboards.template_yaml("run-health").replace("title: Run health", "title: My run health", 1)

    def save(expected: int | None) -> Callable[[psycopg.AsyncConnection], Awaitable[dict[str, Any]]]:
        async def work(conn: psycopg.AsyncConnection) -> dict[str, Any]:
            return await dashboards.save_dashboard(conn, project_id=world.project, slug="my-health",
                                                   source_yaml=edited, expected_version=expected)  # fmt: skip

        return work

    assert world.call("operator", save(1))["version"] == 2
    assert world.call("operator", save(None))["new_version"] is False  # the same content adds no version
    with pytest.raises(Conflict):
        world.call("operator", save(1))  # edited from version 1, but it is at 2 now

    async def read(conn: psycopg.AsyncConnection) -> dict[str, Any]:
        return await dashboards.get_dashboard(conn, project_id=world.project, slug="my-health")

    saved = world.call("viewer", read)
    assert saved["title"] == "My run health" and [v["version"] for v in saved["versions"]] == [2, 1]
    with pytest.raises(Forbidden):
        world.call("viewer", save(None))
    assert world.call("b_admin", lambda conn: dashboards.list_dashboards(conn, project_id=world.project)) == []


@pytest.mark.parametrize(
    ("template", "dataset"),
    [(name, key) for name, t in sorted(shipped_templates().items()) for key, d in sorted(t.dashboard.datasets.items())
     if d.source == "control_plane"],
)  # fmt: skip
def test_every_shipped_dataset_runs_as_a_viewer(world: AnalyticsWorld, template: str, dataset: str) -> None:
    rows = _run_template(world, "viewer", template, dataset, world.project)
    assert isinstance(rows, list)


def test_warehouse_datasets_name_what_the_catalog_lacks(world: AnalyticsWorld) -> None:
    """Without the dbt build's tables in the catalog (no warehouse here), each warehouse panel says why it is empty;
    the warehouse runs themselves are tested on a real agent in test_warehouse_on_agent.py."""
    spec = shipped_templates()["shop-sales"].dashboard
    since, until = dashboards.window("90d")

    async def work(conn: psycopg.AsyncConnection) -> dict[str, dashboards.DatasetResult]:
        scope = dashboards.DatasetScope(world.project, since, until, {"country": None})
        return await dashboards.run_datasets(conn, spec, scope)

    results = world.call("operator", work)
    assert results["revenue_by_country"].error == (
        "table fct_orders is not a dataset you may read (readable: demo_customers) "
        "(datasets.revenue_by_country.sql)"
    )
    assert all("is not a dataset you may read" in r.error and not r.rows for r in results.values()), results


def test_figures_keep_a_lone_day_readable() -> None:
    bars = chart_figure("bar", ["day", "runs"], [["2026-12-04T00:00:00+00:00", 3]], x="day", y=["runs"], color=None)
    assert list(bars.data[0].x) == ["Dec 04"]  # a category: a lone bar on a date axis is drawn 0 px wide
    line = chart_figure("line", ["hour", "wait"], [["2026-12-04T12:00:00+00:00", 2.5]], x="hour", y=["wait"],
                        color=None)  # fmt: skip
    assert line.layout.xaxis.type == "date" and line.layout.xaxis.range is not None
    pie = chart_figure("pie", ["status", "runs"], [["failed", 1], ["succeeded", 2]], x="status", y=["runs"], color=None)
    assert pie.data[0].marker.colors[0] != pie.data[0].marker.colors[1]


def test_long_category_labels_are_cut_on_the_axis_only() -> None:
    rows = [["demo pipeline: extract -> summarize -> publish", 2.5], ["nightly-ingest", 1.0]]
    figure = chart_figure("bar", ["job", "p95"], rows, x="job", y=["p95"], color=None)
    assert list(figure.data[0].x) == [rows[0][0], "nightly-ingest"]  # the hover and a cross-filter get the full name
    assert list(figure.layout.xaxis.tickvals) == [rows[0][0], "nightly-ingest"]
    assert list(figure.layout.xaxis.ticktext) == ["demo pipeline: ex…", "nightly-ingest"]
    short = chart_figure("bar", ["env", "runs"], [["dev", 3], ["prod", 1]], x="env", y=["runs"], color=None)
    assert short.layout.xaxis.tickvals is None  # short labels: plotly's own ticks


def _axis(kind: str, rows: list[list[Any]], grain: str | None = None) -> tuple[list[Any], Any]:
    figure = chart_figure(kind, ["at", "n"], rows, x="at", y=["n"], color=None, grain=grain)
    return list(figure.data[0].x), figure.layout.xaxis


def test_time_axes_follow_the_dataset_grain() -> None:
    # Months (DuckDB's strftime '%Y-%m', or date_trunc('month') timestamps) read "2026-03", never "Mar 1, 2026".
    xs, axis = _axis("bar", [["2026-03", 3], ["2026-04", 5]])
    assert xs == ["2026-03", "2026-04"] and axis.type == "category"  # "2026-03" alone would be read as a date
    xs, axis = _axis("bar", [["2026-03-01T00:00:00+00:00", 3]], grain="month")
    assert xs == ["2026-03"] and axis.type == "category"
    xs, axis = _axis("line", [["2026-03-01T00:00:00+00:00", 3], ["2026-04-01T00:00:00+00:00", 5]])
    assert (axis.type, axis.tickformat, axis.hoverformat, axis.dtick) == ("date", "%Y-%m", "%Y-%m", "M1")
    _, axis = _axis("line", [["2026-03", 3]])  # a lone month: half a month either side, one "2026-03" tick
    assert axis.tickformat == "%Y-%m" and axis.range == ("2026-02-13T00:00:00", "2026-03-17T00:00:00")
    # Weeks: one tick a week from the first week's Monday; days: a day a tick, fewer when there are many.
    weeks = [[f"2026-03-{day:02d}T00:00:00+00:00", day] for day in (2, 9, 16)]
    xs, axis = _axis("line", weeks)
    assert (axis.tickformat, axis.dtick, axis.tick0) == ("%b %d", 7 * 86_400_000, "2026-03-02T00:00:00+00:00")
    assert _axis("bar", weeks)[0] == ["Mar 02", "Mar 09", "Mar 16"]
    days = [[f"2026-03-{day:02d}T00:00:00+00:00", day] for day in range(1, 31)]
    assert _axis("line", days[:5])[1].dtick == 86_400_000
    assert _axis("line", days)[1].dtick == 2 * 86_400_000
    # The dataset's declared grain wins over what the values look like (two 1sts of a month, daily data).
    assert _axis("line", [days[0], ["2026-04-01T00:00:00+00:00", 1]], grain="day")[1].tickformat == "%b %d"
    assert _axis("line", [["2026-03-01T09:00:00+00:00", 1]])[1].tickformat == "%b %d %H:%M"
    hours = _axis("line", [["2026-03-01T09:00:00+00:00", 1], ["2026-03-01T10:00:00+00:00", 2]])[1]
    assert hours.dtick == 3_600_000  # an hour a tick, not plotly's ten minutes
    assert _axis("bar", [["GB", 1], ["NL", 2]])[1].type is None  # not times: plotly's own axis


def test_shipped_time_buckets_declare_their_grain() -> None:
    grains = {
        (name, key): dataset.time_grain
        for name, template in shipped_templates().items()
        for key, dataset in template.dashboard.datasets.items()
        if dataset.time_grain is not None
    }
    assert grains[("run-health", "runs_per_day")] == "day"
    assert grains[("run-health", "queue_wait")] == "hour"
    assert grains[("shop-sales", "orders_per_month")] == "month"
