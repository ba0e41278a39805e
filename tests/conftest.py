"""Shared fixtures: one real Postgres per test session, fresh databases on demand."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from xdist.scheduler import LoadScopeScheduling

from control_room.db.migrate import migrate
from tests.live import LiveServer, Provisioner, live_server
from tests.seaweedfs import SeaweedS3, seaweedfs_s3
from tests.superset_server import pytest_collection_finish, superset_instance  # noqa: F401  (one shared Superset)


class PostgresServer:
    """A Postgres server the tests may create databases on."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.created: list[str] = []

    def url_for(self, database: str) -> str:
        params = conninfo_to_dict(self.admin_url)
        params["dbname"] = database
        return make_conninfo(**params)  # type: ignore[arg-type]

    def create_database(self, prefix: str = "lh_test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        self.created.append(name)
        return self.url_for(name)

    def drop_all(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for name in self.created:
                conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


LONGEST_FOLDERS = ("tests/e2e", "tests/ml", "tests/engines/spark", "tests/contract", "tests/agent")


class FolderScheduling(LoadScopeScheduling):
    """`make test` runs on two cores (pytest-xdist): a folder's tests go to one worker, so a folder's shared servers
    (its session fixtures: Spark, dbt's projects, the e2e control room) start once, not once per worker."""

    def _split_scope(self, nodeid: str) -> str:
        folder = nodeid.split("::", 1)[0].rpartition("/")[0]
        # All of e2e together: each of its packages starts `lakehouse run`, which builds the UI in one .web/.
        # tests/superset with them: they share one Superset (started once per worker).
        return "tests/e2e" if folder.startswith(("tests/e2e", "tests/superset")) else folder

    def _assign_work_unit(self, node: Any) -> None:
        # The longest folders first (by their tests' total time, not their count): none is left for the end.
        for folder in reversed(LONGEST_FOLDERS):
            if folder in self.workqueue:
                self.workqueue.move_to_end(folder, last=False)
        super()._assign_work_unit(node)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> FolderScheduling:
    return FolderScheduling(config, log)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """LAKEHOUSE_TEST_DATABASE_URL's server when set (CI: Debian's PostgreSQL 15), else embedded."""
    external = os.environ.get("LAKEHOUSE_TEST_DATABASE_URL")
    if external:
        server = PostgresServer(external)
        yield server
        server.drop_all()
        return
    from control_room.db.embedded import start_embedded

    # Not under pytest's tmp dir: pytest re-restricts that folder, and the server runs as another user.
    root = Path(tempfile.mkdtemp(prefix="lh-test-pg-"))
    embedded = start_embedded(root / "pgdata")
    try:
        yield PostgresServer(embedded.url("postgres"))
    finally:
        embedded.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fresh_database(pg_server: PostgresServer) -> Callable[[], str]:
    """Factory: a new, empty database URL each call (dropped at the end of the session)."""
    return pg_server.create_database


@pytest.fixture(scope="session")
def database_url(pg_server: PostgresServer) -> str:
    """One database with every migration applied, shared by the session's tests."""
    url = pg_server.create_database("lh_shared")
    migrate(url)
    return url


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the shared migrated database."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def api_database_url(pg_server: PostgresServer) -> str:
    """A migrated database of its own for the live API server (its reaper must not touch other tests' rows)."""
    url = pg_server.create_database("lh_api")
    migrate(url)
    return url


@pytest.fixture(scope="session")
def live_api(api_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One real API server for the session: short leases and a fast reaper so expiry tests finish quickly."""
    with live_server(
        api_database_url,
        tmp_path_factory.mktemp("lakehouse-data"),
        lease_seconds="3",
        reaper_interval_seconds="0.2",
        claim_wait_max_seconds="10",
    ) as server:
        yield server


@pytest.fixture(scope="session")
def provision(api_database_url: str) -> Provisioner:
    return Provisioner(api_database_url)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """One real SeaweedFS S3 endpoint per session (verifies signatures and checksums)."""
    with seaweedfs_s3(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture(scope="session")
def live_api_s3(
    api_database_url: str, seaweedfs: SeaweedS3, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A second API server on the same database whose artifact store is S3 (SeaweedFS)."""
    with live_server(
        api_database_url,
        tmp_path_factory.mktemp("lakehouse-data-s3"),
        artifact_store="s3",
        s3_endpoint_url=seaweedfs.endpoint_url,
        s3_access_key_id=seaweedfs.access_key_id,
        s3_secret_access_key=seaweedfs.secret_access_key,
        s3_region=seaweedfs.region,
        s3_bucket="lakehouse-api-test",
        lease_seconds="30",
    ) as server:
        yield server
