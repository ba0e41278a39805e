"""dbt engine fixtures: the example project, warehouses on dbt-duckdb and dbt-postgres, harness contexts
reporting lineage to a real control plane under a real lease, an OpenLineage collector, and one build per
adapter shared by the session (dbt starts slowly: every scenario reuses it where it can)."""

from __future__ import annotations

import json
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from executor_agent.engines.base import EngineResult
from executor_agent.engines.dbt import DbtEngine
from tests.agent.conftest import start_agent  # noqa: F401 (the fixture, for the test through an agent)
from tests.conftest import PostgresServer
from tests.engines.harness import ArtifactShelf, ContextFactory, HarnessContext, Reporter
from tests.live import LiveServer, Provisioner

EXAMPLE_PROJECT = Path(__file__).resolve().parents[3] / "examples" / "dbt"
API = "/api/v1"
PG_PASSWORD_ENV = "LH_TEST_PG_PASSWORD"


class Warehouse:
    """Where a dbt build writes, the profile that reaches it, and SQL to check what is there."""

    adapter: str
    schema: str

    def profile(self) -> dict[str, Any]:
        raise NotImplementedError

    def query(self, statement: str) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def execute(self, statement: str) -> None:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {}

    def secrets(self) -> list[str]:
        return []


class DuckdbWarehouse(Warehouse):
    adapter = "duckdb"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.schema = "main"

    def profile(self) -> dict[str, Any]:
        return {"type": "duckdb", "path": str(self.path), "threads": 1}

    def query(self, statement: str) -> list[tuple[Any, ...]]:
        # One writer at a time: dbt is not running while a test looks.
        with duckdb.connect(str(self.path)) as conn:
            return conn.execute(statement).fetchall()

    def execute(self, statement: str) -> None:
        with duckdb.connect(str(self.path)) as conn:
            conn.execute(statement)


class PostgresWarehouse(Warehouse):
    adapter = "postgres"

    def __init__(self, url: str, schema: str) -> None:
        self.url = url
        self.schema = schema
        params = conninfo_to_dict(url)
        # With a password in the server's URL it is the real one; the embedded server trusts local
        # connections, so a made-up secret still travels through the profile exactly as a real one.
        self.password = str(params.get("password") or f"pg-secret-{uuid.uuid4().hex}")
        self.params = params

    def profile(self) -> dict[str, Any]:
        return {
            "type": "postgres",
            "host": str(self.params.get("host") or "localhost"),
            "port": int(self.params.get("port") or 5432),
            "user": str(self.params.get("user") or "postgres"),
            "password": {"env": PG_PASSWORD_ENV},
            "dbname": str(self.params["dbname"]),
            "schema": self.schema,
            "threads": 2,
        }

    def query(self, statement: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(statement).fetchall()

    def execute(self, statement: str) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(statement)

    def env(self) -> dict[str, str]:
        return {PG_PASSWORD_ENV: self.password}

    def secrets(self) -> list[str]:
        return [self.password]


@dataclass
class ClaimedTask:
    """A real task of a real run, claimed on the live API: the harness reports under its lease."""

    task_id: str
    run_id: str
    task_key: str
    lease_token: str
    project_id: uuid.UUID
    agent: httpx.Client
    viewer: httpx.Client

    def reporter(self) -> Reporter:
        def send(operation: str, payload: Mapping[str, Any]) -> Mapping[str, Any]:
            response = self.agent.post(
                f"/tasks/{self.task_id}/{operation}", json={"lease_token": self.lease_token, **payload}
            )
            assert response.status_code == 200, response.text
            return dict(response.json())

        return send


@pytest.fixture(scope="session")
def claim_dbt_task(live_api: LiveServer, provision: Provisioner) -> Callable[[str, str], ClaimedTask]:
    """Factory: ``claim(task_key, tenant)`` submits a one-task dbt run in the tenant's project and claims
    it (pool of its own), returning the lease. One tenant per warehouse: the example's exposure is the
    same dataset wherever the project runs, so two warehouses in one project would share it."""

    def client(token: str, timeout: float = 30) -> httpx.Client:
        return httpx.Client(
            base_url=live_api.base_url + API, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )

    def claim(task_key: str, tenant_name: str) -> ClaimedTask:
        tenant = provision.tenant(tenant_name)
        operator = client(provision.user_token("operator", tenant)[1])
        viewer = client(provision.user_token("viewer", tenant)[1])
        pool = f"dbt-{uuid.uuid4().hex[:8]}"
        spec = {
            "name": f"dbt {task_key}",
            "tasks": [{"key": task_key, "engine": "dbt", "command": "build", "project": "examples/dbt", "pool": pool}],
        }
        submitted = operator.post("/runs", json={"project": str(tenant.project_id), "spec": spec})
        assert submitted.status_code == 201, submitted.text
        agent = client(provision.executor_token(pool, tenant=tenant), timeout=60)
        assert agent.post("/executors/register", json={"engines": ["dbt"]}).status_code == 200
        tasks = agent.post("/tasks/claim", json={"max_tasks": 1}).json()["tasks"]
        assert len(tasks) == 1
        task = tasks[0]
        return ClaimedTask(
            task["task_id"], task["run_id"], task_key, task["lease_token"], tenant.project_id, agent, viewer
        )

    return claim


class OpenLineageCollector:
    """An OpenLineage HTTP endpoint that keeps what it receives (POST /api/v1/lineage)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.authorizations: list[str | None] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path != "/api/v1/lineage":
                    self.send_response(404)
                    self.end_headers()
                    return
                collector.events.append(json.loads(body))
                collector.authorizations.append(self.headers.get("Authorization"))
                self.send_response(201)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def openlineage_collector() -> Iterator[OpenLineageCollector]:
    collector = OpenLineageCollector()
    yield collector
    collector.close()


@pytest.fixture(scope="session")
def dbt_shelf(tmp_path_factory: pytest.TempPathFactory) -> ArtifactShelf:
    return ArtifactShelf(tmp_path_factory.mktemp("dbt-artifacts"))


def copy_project(destination: Path) -> Path:
    shutil.copytree(EXAMPLE_PROJECT, destination, ignore=shutil.ignore_patterns("target", "logs", "*.duckdb*"))
    return destination


@pytest.fixture
def make_dbt_context(tmp_path: Path, dbt_shelf: ArtifactShelf) -> Iterator[ContextFactory]:
    """``make_dbt_context(spec, task_key=...)``: a fresh harness context for one test, on the session's shelf."""
    with ContextFactory(tmp_path / "contexts", shelf=dbt_shelf, engine="dbt", project="shop") as factory:
        yield factory


RunDbt = Callable[..., tuple[HarnessContext, EngineResult]]


@pytest.fixture(scope="session")
def run_dbt(tmp_path_factory: pytest.TempPathFactory, dbt_shelf: ArtifactShelf) -> Iterator[RunDbt]:
    """Factory: run the dbt engine once on a harness context; returns the context and the result."""
    contexts = ContextFactory(tmp_path_factory.mktemp("dbt"), shelf=dbt_shelf, engine="dbt", project="shop")

    def run(
        spec: Mapping[str, Any],
        *,
        warehouse: Warehouse,
        claimed: ClaimedTask | None = None,
        params: Mapping[str, Any] | None = None,
        task_key: str = "dbt",
        extra_env: Mapping[str, str] | None = None,
        **context_fields: Any,
    ) -> tuple[HarnessContext, EngineResult]:
        lease: dict[str, Any] = {}
        if claimed is not None:
            lease = {
                "task_id": claimed.task_id,
                "run_id": claimed.run_id,
                "lease_token": claimed.lease_token,
                "project_id": claimed.project_id,
                "reporter": claimed.reporter(),
            }
            task_key = claimed.task_key
        context = contexts(
            {"key": task_key, "engine": "dbt", "profile": warehouse.profile(), **spec},
            params=dict(params or {}),
            task_key=task_key,
            extra_env={**warehouse.env(), **(extra_env or {})},
            **lease,
            **context_fields,
        )
        return context, DbtEngine().run(context)

    with contexts:
        yield run


@dataclass
class Built:
    """The session's build of the example project on one adapter."""

    warehouse: Warehouse
    project: Path
    context: HarnessContext
    result: EngineResult
    claimed: ClaimedTask


@pytest.fixture(scope="session", params=["duckdb", "postgres"])
def warehouse_adapter(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_warehouse(adapter: str, pg_server: PostgresServer, folder: Path, name: str) -> Warehouse:
    if adapter == "duckdb":
        return DuckdbWarehouse(folder / f"{name}.duckdb")
    url = pg_server.create_database("lh_dbt")
    return PostgresWarehouse(url, name)


@pytest.fixture(scope="session")
def built(
    warehouse_adapter: str,
    pg_server: PostgresServer,
    tmp_path_factory: pytest.TempPathFactory,
    run_dbt: RunDbt,
    claim_dbt_task: Callable[[str, str], ClaimedTask],
    openlineage_collector: OpenLineageCollector,
) -> Built:
    """``dbt build`` of the example project (docs generated too), reported to the live control plane
    and to the OpenLineage collector. Later scenarios run on the same warehouse."""
    folder = tmp_path_factory.mktemp(f"shop-{warehouse_adapter}")
    warehouse = make_warehouse(warehouse_adapter, pg_server, folder, "shop")
    project = copy_project(folder / "project")
    claimed = claim_dbt_task(f"build-{warehouse_adapter}", f"dbt-engine-{warehouse_adapter}")
    context, result = run_dbt(
        {"command": "build", "project": {"path": str(project)}, "docs": True},
        warehouse=warehouse,
        claimed=claimed,
        extra_env={"OPENLINEAGE_URL": openlineage_collector.url, "OPENLINEAGE_API_KEY": "ol-key-123"},
    )
    return Built(warehouse, project, context, result, claimed)


@pytest.fixture(scope="session")
def bad_data_warehouse(
    warehouse_adapter: str, pg_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Warehouse:
    """A warehouse of its own for the deliberately failing build (its bad rows must not leak)."""
    return make_warehouse(warehouse_adapter, pg_server, tmp_path_factory.mktemp("bad-data"), "shop_bad")
