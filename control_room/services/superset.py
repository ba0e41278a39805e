"""Superset: push a project's dashboard to a Superset instance, and mint guest tokens to embed it.

Push builds Superset's asset bundle (a zip of YAML files: database, datasets, charts, dashboard) with uuids derived
from the project and the dashboard's slug, and imports it through ``/api/v1/assets/import/``, which overwrites every
object it names: pushing again updates the same dashboard, its datasets and charts, never adds one. (The dashboard
import endpoint keeps existing databases, datasets and charts as they are, so an edited chart or a changed reader
password would never reach Superset.) The database object is one per control plane (its uuid and name derive from
the server and database Superset reads), and so are the datasets on it (Superset never moves a dataset to another
database), so two control planes sharing a Superset never read each other's.

Superset reads the control plane's dashboard relations through the read-only role
``lakehouse_superset_reader`` (never the DuckDB warehouse, which allows one writer process), so only control-plane
datasets are pushed; warehouse datasets are left out and named in the result. Each pushed dataset is the template's
SQL with the project bound as a literal and the time range as ``now() - interval``.

A guest token is minted for a signed-in member of the dashboard's project only, with Superset row-level-security
clauses derived from the access policies the member is subject to (services/access_policies.py): for each dataset
the pushed SQL reads, a refused read becomes ``1 = 0``, a row filter becomes its predicate (when the pushed dataset
exposes every column it names), and what cannot be expressed in Superset (a filter on a column the dataset does not
show, a masked column it shows) fails closed as ``1 = 0``: a person never sees more there than here.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import yaml
from psycopg import AsyncConnection
from psycopg.conninfo import make_conninfo
from sqlglot import exp

from control_room.config import Settings, get_settings
from control_room.dashboards.models import Chart, DashboardFile, Dataset
from control_room.db.rows import scalar
from control_room.services import access_policies, dashboards
from control_room.services.errors import Forbidden, Invalid, NotFound, ServiceError
from control_room.services.sql_guard import bind_placeholders, parse_read_only, typed_literal, with_limit
from control_room.superset_server import reader_url

# uuids of everything pushed derive from this namespace (fixed forever: changing it duplicates every dashboard).
NAMESPACE = uuid.UUID("5b0f4c1e-2a7d-4f43-9d3e-7c1a8e6f2b90")
DATABASE_NAME = "Lakehouse control plane (read-only)"
DATABASE_FILE = "databases/lakehouse_control_plane.yaml"
ROW_LIMIT = 5_000
INTERVALS = {"24h": "24 hours", "7d": "7 days", "14d": "14 days", "30d": "30 days", "90d": "90 days"}
DENY_ALL = "1 = 0"
TIMEOUT = httpx.Timeout(120.0, connect=5.0)


class SupersetUnavailable(ServiceError, status=502):
    """Superset is not configured, or did not answer as expected."""


@dataclass(frozen=True)
class SupersetSettings:
    """Where Superset is and how the control room signs in to it."""

    url: str
    public_url: str
    username: str
    password: str = field(repr=False)
    reader_uri: str = field(repr=False)


def configured(settings: Settings | None = None, *, control_plane_url: str | None = None) -> SupersetSettings | None:
    """Superset's settings, or None when LAKEHOUSE_SUPERSET_URL (or the service password) is not set."""
    settings = settings or get_settings()
    url = control_plane_url or settings.database_url
    if not settings.superset_url or settings.superset_password is None or not url:
        return None
    reader_password = settings.superset_reader_password.get_secret_value() if settings.superset_reader_password else ""
    return SupersetSettings(
        url=settings.superset_url.rstrip("/"),
        public_url=(settings.superset_public_url or settings.superset_url).rstrip("/"),
        username=settings.superset_username,
        password=settings.superset_password.get_secret_value(),
        reader_uri=reader_url(url, reader_password, settings.superset_reader_host),
    )


def require_configured(settings: Settings | None = None) -> SupersetSettings:
    """Superset's settings, or an error saying which variables to set."""
    found = configured(settings)
    if found is None:
        raise SupersetUnavailable(
            "Superset is not configured: set LAKEHOUSE_SUPERSET_URL, LAKEHOUSE_SUPERSET_PASSWORD and "
            "LAKEHOUSE_SUPERSET_READER_PASSWORD (make superset prints them)"
        )
    return found


def settings_for(conn: AsyncConnection, settings: Settings | None = None) -> SupersetSettings:
    """Superset's settings, the read-only URL pointing at the database ``conn`` is on (or an error to act on)."""
    info = conn.info
    found = configured(settings, control_plane_url=make_conninfo(host=info.host, port=info.port, dbname=info.dbname))
    return found if found is not None else require_configured(settings)


def stable_uuid(project_id: uuid.UUID, slug: str, *parts: str) -> uuid.UUID:
    """The uuid of a pushed object: the same project, dashboard and part always give the same uuid."""
    return uuid.uuid5(NAMESPACE, "/".join([str(project_id), slug, *parts]))


def database_of(reader_uri: str) -> tuple[uuid.UUID, str]:
    """Superset's database object for the control plane ``reader_uri`` reads: its uuid and its (unique) name, both
    from the server and database it reads, so each control plane sharing a Superset has its own."""
    from sqlalchemy.engine import make_url

    url = make_url(reader_uri)
    where = f"{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"
    return uuid.uuid5(NAMESPACE, f"database/{where}"), f"{DATABASE_NAME} {where}"


def superset_slug(project_id: uuid.UUID, slug: str) -> str:
    """The pushed dashboard's slug in Superset (unique per project and dashboard)."""
    return f"lh-{stable_uuid(project_id, slug, 'dashboard')}"


def dataset_table_name(project_id: uuid.UUID, slug: str, name: str) -> str:
    """The pushed dataset's name in Superset (unique per project, dashboard and dataset)."""
    return f"{slug}__{name}__{project_id.hex[:8]}"


# The client --------------------------------------------------------------------------------------------------------


class SupersetClient:
    """Superset's REST API as the control room's service account (a bearer token from /api/v1/security/login)."""

    def __init__(self, config: SupersetSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self._http = httpx.AsyncClient(base_url=config.url, timeout=TIMEOUT, transport=transport, trust_env=False)
        self._token: str | None = None

    async def __aenter__(self) -> SupersetClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._http.aclose()

    async def _headers(self) -> dict[str, str]:
        if self._token is None:
            response = await self._send("POST", "/api/v1/security/login", json={
                "username": self.config.username, "password": self.config.password, "provider": "db",
                "refresh": False})  # fmt: skip
            self._token = str(response.json()["access_token"])
        return {"Authorization": f"Bearer {self._token}"}

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise SupersetUnavailable(f"Superset at {self.config.url} did not answer {method} {path}: {exc}") from exc
        if response.status_code >= 400 and response.status_code != 404:
            raise SupersetUnavailable(
                f"Superset refused {method} {path}: HTTP {response.status_code} {response.text[:400]}"
            )
        return response

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One authenticated call; 404 comes back as is, other errors as SupersetUnavailable."""
        return await self._send(method, path, headers=await self._headers(), **kwargs)

    async def import_assets(self, bundle: bytes, passwords: dict[str, str]) -> None:
        """POST /api/v1/assets/import/: every object of the bundle is created or overwritten (found by its uuid)."""
        await self.call(
            "POST", "/api/v1/assets/import/",
            files={"bundle": ("assets.zip", bundle, "application/zip")}, data={"passwords": json.dumps(passwords)},
        )  # fmt: skip

    async def dashboard(self, slug: str) -> dict[str, Any] | None:
        """A dashboard by id or slug, or None."""
        response = await self.call("GET", f"/api/v1/dashboard/{slug}")
        return None if response.status_code == 404 else dict(response.json()["result"])

    async def dashboard_datasets(self, dashboard_id: int) -> list[dict[str, Any]]:
        """The datasets a dashboard's charts use (id, table_name, columns)."""
        response = await self.call("GET", f"/api/v1/dashboard/{dashboard_id}/datasets")
        return list(response.json()["result"]) if response.status_code == 200 else []

    async def embedded_uuid(self, dashboard_id: int) -> str:
        """The dashboard's embedding id (created on first use; kept afterwards)."""
        response = await self.call("GET", f"/api/v1/dashboard/{dashboard_id}/embedded")
        if response.status_code == 200:
            return str(response.json()["result"]["uuid"])
        response = await self.call("POST", f"/api/v1/dashboard/{dashboard_id}/embedded", json={"allowed_domains": []})
        return str(response.json()["result"]["uuid"])

    async def guest_token(self, *, user: dict[str, str], embedded: str, rls: list[dict[str, Any]]) -> str:
        """A guest token for one embedded dashboard with row-level-security clauses."""
        response = await self.call("POST", "/api/v1/security/guest_token/", json={
            "user": user, "resources": [{"type": "dashboard", "id": embedded}], "rls": rls})  # fmt: skip
        return str(response.json()["token"])


# Push --------------------------------------------------------------------------------------------------------------


def superset_sql(dataset: Dataset, *, project_id: uuid.UUID, time_range: str, filters: list[str], at: str) -> str:
    """A control-plane dataset's SQL as Superset runs it: checked, the project bound, the window ending now."""
    statement = parse_read_only(dataset.sql, dialect="postgres", field=at,
                                table_allowed=dashboards._control_plane_table)  # fmt: skip
    interval = INTERVALS.get(time_range, INTERVALS["7d"])
    values: dict[str, exp.Expression] = {
        "project_id": typed_literal(str(project_id), "uuid"),
        "since": exp.maybe_parse(f"now() - interval '{interval}'", dialect="postgres"),
        "until": exp.maybe_parse("now()", dialect="postgres"),
    }
    values.update({name: typed_literal(None, "text") for name in filters})
    return with_limit(bind_placeholders(statement, values, field=at), ROW_LIMIT).sql("postgres", pretty=True)


def tables_read(sql_text: str) -> set[str]:
    """The relations a statement reads, lower-case and qualified as written (``ops.runs``)."""
    tree = parse_read_only(sql_text, dialect="postgres", field="sql", table_allowed=lambda _t: None)
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    names = set()
    for table in tree.find_all(exp.Table):
        if table.name.lower() in ctes and not table.db:
            continue
        names.add(f"{table.db}.{table.name}".lower() if table.db else table.name.lower())
    return names


async def _columns(conn: AsyncConnection, sql_text: str) -> list[tuple[str, str]]:
    """The statement's output columns and Postgres types (run with LIMIT 0, read-only, as the caller)."""
    async with conn.transaction():
        await conn.execute("set local transaction_read_only = on")
        await conn.execute(f"set local statement_timeout = '{dashboards.DATASET_TIMEOUT}'")
        async with conn.cursor() as cur:
            await cur.execute(f"select * from ({sql_text}) as pushed limit 0".encode())
            found = []
            for column in cur.description or []:
                info = conn.adapters.types.get(column.type_code)
                found.append((column.name, info.name if info else "text"))
    return found


TEMPORAL = ("timestamp", "timestamptz", "date", "time")
NUMERIC = ("int2", "int4", "int8", "numeric", "float4", "float8", "money")


def _column_yaml(name: str, pg_type: str) -> dict[str, Any]:
    return {
        "column_name": name, "verbose_name": None, "is_dttm": pg_type in TEMPORAL, "is_active": True,
        "type": {"timestamptz": "TIMESTAMP WITH TIME ZONE", "int8": "BIGINT", "int4": "INTEGER",
                 "numeric": "NUMERIC", "float8": "DOUBLE PRECISION"}.get(pg_type, pg_type.upper()),
        "advanced_data_type": None, "groupby": True, "filterable": True, "expression": None, "description": None,
        "python_date_format": None, "extra": None,
    }  # fmt: skip


def _metric(column: str) -> dict[str, Any]:
    return {"expressionType": "SQL", "sqlExpression": f'SUM("{column}")', "label": column}


def chart_params(chart: Chart, columns: list[str]) -> tuple[str, dict[str, Any]]:
    """Superset's viz type and form data for one of our charts.

    A guest (an embedded viewer) may only run the queries a chart was saved with: Superset compares the columns,
    metrics and order of each query its frontend builds with the chart's stored form data (JSON equality). The
    form data therefore also lists them exactly as the frontend builds them (``columns``, ``metrics``,
    ``orderby``), since an imported chart has no stored query context."""
    base: dict[str, Any] = {"adhoc_filters": [], "row_limit": ROW_LIMIT}
    if chart.type in ("bar", "line", "area", "scatter"):
        viz = {"bar": "echarts_timeseries_bar", "line": "echarts_timeseries_line", "area": "echarts_area",
               "scatter": "echarts_timeseries_scatter"}[chart.type]  # fmt: skip
        metrics = [_metric(y) for y in chart.y]
        groupby = [chart.color] if chart.color else []
        axis = {"columnType": "BASE_AXIS", "sqlExpression": chart.x, "label": chart.x, "expressionType": "SQL"}
        return viz, base | {
            "x_axis": chart.x, "metrics": metrics, "groupby": groupby, "columns": [axis, *groupby],
            "orderby": [[m, ascending] for m in metrics[:1] for ascending in (True, False)],
            "x_axis_sort_asc": True, "orientation": "vertical", "show_legend": True, "rich_tooltip": True,
            "truncate_metric": True, "show_empty_columns": True,
        }  # fmt: skip
    if chart.type == "pie":
        metric = _metric(chart.y[0])
        return "pie", base | {"groupby": [chart.x], "metric": metric, "metrics": [metric], "show_labels": True,
                              "label_type": "key_value", "show_legend": True}  # fmt: skip
    if chart.type == "number":
        metric = _metric(chart.y[0])
        return "big_number_total", base | {"metric": metric, "metrics": [metric], "header_font_size": 0.4}
    return "table", base | {"query_mode": "raw", "all_columns": columns, "columns": columns, "order_by_cols": [],
                            "server_pagination": False}  # fmt: skip


def _position(spec: DashboardFile, chart_uuids: dict[str, uuid.UUID]) -> dict[str, Any]:
    """The dashboard's layout (Superset's position JSON): our layout's rows, each chart an equal share of 12."""
    position: dict[str, Any] = {
        "DASHBOARD_VERSION_KEY": "v2",
        "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]},
        "GRID_ID": {"type": "GRID", "id": "GRID_ID", "children": [], "parents": ["ROOT_ID"]},
        "HEADER_ID": {"id": "HEADER_ID", "type": "HEADER", "meta": {"text": spec.title}},
    }
    placeholder = 0  # Superset's importer maps each chart's uuid to a chartId, then replaces it with the real id
    for index, row in enumerate(row for row in spec.rows() if any(c.id in chart_uuids for c in row)):
        charts = [c for c in row if c.id in chart_uuids]
        row_id = f"ROW-{index}"
        position["GRID_ID"]["children"].append(row_id)
        position[row_id] = {"type": "ROW", "id": row_id, "children": [], "parents": ["ROOT_ID", "GRID_ID"],
                            "meta": {"background": "BACKGROUND_TRANSPARENT"}}  # fmt: skip
        for chart in charts:
            chart_id = f"CHART-{chart.id}"
            placeholder += 1
            position[row_id]["children"].append(chart_id)
            position[chart_id] = {
                "type": "CHART", "id": chart_id, "children": [], "parents": ["ROOT_ID", "GRID_ID", row_id],
                "meta": {"width": 12 // len(charts), "height": 50, "uuid": str(chart_uuids[chart.id]),
                         "chartId": placeholder, "sliceName": chart.title},
            }  # fmt: skip
    return position


@dataclass
class PushPlan:
    """What a push sends: the bundle's files, and the datasets left out (with why)."""

    files: dict[str, dict[str, Any]]
    dashboard_uuid: uuid.UUID
    slug: str
    skipped: dict[str, str] = field(default_factory=dict)
    charts: list[str] = field(default_factory=list)


async def plan_push(
    conn: AsyncConnection, *, project_id: uuid.UUID, slug: str, spec: DashboardFile, reader_uri: str
) -> PushPlan:
    """The import bundle of a dashboard (datasets' columns read with LIMIT 0 on ``conn``, as the caller)."""
    database_uuid, database_name = database_of(reader_uri)
    dashboard_uuid = stable_uuid(project_id, slug, "dashboard")
    # A Superset dataset belongs to one database object for good (its import never moves it), so datasets are per
    # control plane too; the charts and the dashboard are the project's, repointed to this push's datasets.
    def dataset_uuid(name: str) -> uuid.UUID:
        return stable_uuid(project_id, slug, "dataset", name, str(database_uuid))

    version = {"version": "1.0.0"}
    files: dict[str, dict[str, Any]] = {
        "metadata.yaml": {"version": "1.0.0", "type": "assets", "timestamp": datetime.now(UTC).isoformat()},
        DATABASE_FILE: version | {
            "database_name": database_name, "sqlalchemy_uri": reader_uri, "cache_timeout": None,
            "expose_in_sqllab": False, "allow_run_async": False, "allow_ctas": False, "allow_cvas": False,
            "allow_dml": False, "allow_file_upload": False, "extra": {"allows_virtual_table_explore": True},
            "uuid": str(database_uuid),
        },
    }
    plan = PushPlan(files=files, dashboard_uuid=dashboard_uuid, slug=superset_slug(project_id, slug))
    filters = [f.name for f in spec.filters]
    dataset_columns: dict[str, list[str]] = {}
    for name, dataset in spec.datasets.items():
        if dataset.source != "control_plane":
            plan.skipped[name] = "a warehouse dataset: Superset reads the control plane only (DuckDB has one writer)"
            continue
        at = f"datasets.{name}.sql"
        text = superset_sql(dataset, project_id=project_id, time_range=spec.time_range, filters=filters, at=at)
        columns = await _columns(conn, text)
        dataset_columns[name] = [c for c, _ in columns]
        table = dataset_table_name(project_id, slug, name)
        files[f"datasets/lakehouse_control_plane/{table}.yaml"] = version | {
            "table_name": table, "main_dttm_col": next((c for c, t in columns if t in TEMPORAL), None),
            "description": dataset.description or None, "default_endpoint": None, "offset": 0, "cache_timeout": None,
            "schema": None, "sql": text, "params": None, "template_params": None, "filter_select_enabled": True,
            "fetch_values_predicate": None, "extra": None, "normalize_columns": False, "always_filter_main_dttm": False,
            "uuid": str(dataset_uuid(name)), "metrics": [],
            "columns": [_column_yaml(c, t) for c, t in columns], "database_uuid": str(database_uuid),
        }  # fmt: skip
    chart_uuids: dict[str, uuid.UUID] = {}
    for chart in spec.charts:
        if chart.dataset not in dataset_columns:
            plan.skipped[f"chart {chart.id}"] = f"its dataset {chart.dataset} is not pushed"
            continue
        viz, params = chart_params(chart, dataset_columns[chart.dataset])
        chart_uuids[chart.id] = stable_uuid(project_id, slug, "chart", chart.id)
        files[f"charts/{chart.id}.yaml"] = version | {
            "slice_name": chart.title, "description": chart.description or None, "certified_by": None,
            "certification_details": None, "viz_type": viz, "params": params | {"viz_type": viz},
            "query_context": None, "cache_timeout": None, "uuid": str(chart_uuids[chart.id]),
            "dataset_uuid": str(dataset_uuid(chart.dataset)),
        }  # fmt: skip
        plan.charts.append(chart.id)
    if not chart_uuids:
        raise Invalid("no chart of this dashboard reads the control plane: Superset cannot draw any of it "
                      f"({'; '.join(f'{k}: {v}' for k, v in plan.skipped.items())})", field="datasets")  # fmt: skip
    files[f"dashboards/{plan.slug}.yaml"] = version | {
        "dashboard_title": spec.title, "description": spec.description or None, "css": "", "slug": plan.slug,
        "certified_by": None, "certification_details": None, "published": True, "uuid": str(dashboard_uuid),
        "position": _position(spec, chart_uuids),
        "metadata": {"color_scheme": "", "refresh_frequency": spec.refresh_seconds, "expanded_slices": {},
                     "label_colors": {}, "timed_refresh_immune_slices": [], "cross_filters_enabled": True,
                     "native_filter_configuration": [], "chart_configuration": {}, "shared_label_colors": [],
                     "color_scheme_domain": []},
    }  # fmt: skip
    return plan


def bundle_zip(plan: PushPlan) -> bytes:
    """The import bundle as Superset reads it (every file under one root folder)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, content in plan.files.items():
            archive.writestr(f"lakehouse_dashboard/{path}", yaml.safe_dump(content, sort_keys=False))
    return buffer.getvalue()


async def _acting_user(conn: AsyncConnection) -> bool:
    return bool(await scalar(conn, "select current_user = 'authenticated'"))


async def push_dashboard(
    conn: AsyncConnection, *, project_id: uuid.UUID, slug: str, config: SupersetSettings | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Create or update the dashboard in Superset (operators; the CLI as a trusted caller). Idempotent.
    ``config`` defaults to the settings' Superset, looked up after the caller was authorised."""
    if await _acting_user(conn):
        await conn.execute("select ops.require_project_role(%s, 'operator')", (project_id,))
    saved = await dashboards.get_dashboard(conn, project_id=project_id, slug=slug)
    spec = dashboards.dashboard_of(saved["source_yaml"])
    config = config or settings_for(conn)
    plan = await plan_push(conn, project_id=project_id, slug=slug, spec=spec, reader_uri=config.reader_uri)
    async with SupersetClient(config, transport) as client:
        await client.import_assets(bundle_zip(plan), {DATABASE_FILE: _password(config)})
        found = await client.dashboard(plan.slug)
        if found is None:
            raise SupersetUnavailable(f"Superset accepted the import but has no dashboard {plan.slug}")
        embedded = await client.embedded_uuid(int(found["id"]))
    return {
        "superset_id": int(found["id"]), "uuid": plan.dashboard_uuid, "slug": plan.slug, "embedded_uuid": embedded,
        "url": f"{config.public_url}/superset/dashboard/{plan.slug}/", "charts": plan.charts, "skipped": plan.skipped,
        "version": saved["version"],
    }  # fmt: skip


def _password(config: SupersetSettings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(config.reader_uri).password or ""


# Guest tokens ------------------------------------------------------------------------------------------------------


def _predicate_columns(predicate: str) -> set[str] | None:
    try:
        tree: exp.Expression = exp.maybe_parse(predicate, dialect="postgres")
    except Exception:  # an unparsable predicate cannot be carried over: fail closed
        return None
    return {column.name.lower() for column in tree.find_all(exp.Column)}


def rls_clause(decisions: list[dict[str, Any]], *, tables: set[str], columns: list[str]) -> str | None:
    """The clause a dataset reading ``tables`` and showing ``columns`` gets for a person with these decisions
    (None: nothing held back). Catalog datasets match a relation by qualified name or, outside the warehouse, by
    bare name; what Superset cannot express fails closed (``1 = 0``)."""
    shown = {c.lower() for c in columns}
    clauses: list[str] = []
    for decision in decisions:
        name = str(decision.get("name") or "").lower()
        bare_ok = not str(decision.get("namespace") or "").startswith("duckdb://")
        if name not in tables and not (bare_ok and name.split(".")[-1] in {t.split(".")[-1] for t in tables}):
            continue
        if not decision.get("read"):
            return DENY_ALL
        if any(str(mask.get("column", "")).lower() in shown for mask in decision.get("masks") or []):
            return DENY_ALL
        for row_filter in decision.get("row_filters") or []:
            predicate = str(row_filter.get("predicate") or "")
            needed = _predicate_columns(predicate)
            if not predicate or needed is None or not needed <= shown:
                return DENY_ALL
            clauses.append(f"({predicate})")
    return " and ".join(clauses) or None


async def guest_token(
    conn: AsyncConnection, *, project_id: uuid.UUID, slug: str, email: str, config: SupersetSettings | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> dict[str, Any]:  # fmt: skip
    """A guest token to embed the pushed dashboard for the connection's user (a member of the project: RLS finds
    the dashboard or says it does not exist), carrying the row-level-security clauses of their access policies."""
    if not await _acting_user(conn):
        raise Forbidden("guest tokens are minted for a signed-in user only")
    await conn.execute("select ops.require_project_role(%s, 'viewer')", (project_id,))
    saved = await dashboards.get_dashboard(conn, project_id=project_id, slug=slug)
    spec = dashboards.dashboard_of(saved["source_yaml"])
    decisions = await access_policies.decisions(conn, project_id=project_id, principal_kind="user", principal=email)
    config = config or settings_for(conn)
    async with SupersetClient(config, transport) as client:
        found = await client.dashboard(superset_slug(project_id, slug))
        if found is None:
            raise NotFound(f'dashboard "{slug}" is not in Superset yet: push it first '
                           f"(lakehouse dashboards push --to superset {slug})", field="slug")  # fmt: skip
        embedded = await client.embedded_uuid(int(found["id"]))
        rls: list[dict[str, Any]] = []
        by_table = {dataset_table_name(project_id, slug, name): name for name in spec.datasets}
        for dataset in await client.dashboard_datasets(int(found["id"])):
            name = by_table.get(str(dataset.get("table_name")))
            if name is None:  # a dataset this dashboard no longer has: nothing of it is shown
                rls.append({"dataset": int(dataset["id"]), "clause": DENY_ALL})
                continue
            columns = [str(c.get("column_name")) for c in dataset.get("columns") or []]
            clause = rls_clause(decisions, tables=tables_read(spec.datasets[name].sql), columns=columns)
            if clause is not None:
                rls.append({"dataset": int(dataset["id"]), "clause": clause})
        token = await client.guest_token(
            user={"username": email, "first_name": email.split("@")[0], "last_name": ""}, embedded=embedded, rls=rls
        )
    return {"token": token, "embedded_uuid": embedded, "superset_url": config.public_url, "rls": rls,
            "dashboard": slug}  # fmt: skip


