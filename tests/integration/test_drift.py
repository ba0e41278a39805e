"""control_room/db/tables.py against the schema the real migrations create, and drift being reported."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import Column, Integer, MetaData, Table
from sqlmodel import SQLModel

from control_room.config import MIGRATIONS_DIR
from control_room.db.drift import TABLES_FILE, check_schema_drift, schema_drift, sqlalchemy_url
from control_room.db.migrate import migrate
from control_room.db.tables import OPS_METADATA

pytestmark = pytest.mark.migrations

PROBE_MIGRATION = "29991231000000_drift_probe.sql"


def _migrated_with_probe(fresh_database: Callable[[], str], tmp_path: Path, probe_sql: str) -> str:
    """A new database migrated from a copy of supabase/migrations plus one probe migration."""
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    (directory / PROBE_MIGRATION).write_text(probe_sql, encoding="utf-8")
    url = fresh_database()
    applied = migrate(url, directory)
    assert applied[-1] == PROBE_MIGRATION
    return url


def test_tables_py_mirrors_the_migrations(database_url: str) -> None:
    assert schema_drift(database_url) == []


def test_every_ops_table_is_mirrored_outside_sqlmodels_global_metadata() -> None:
    # Reflex's create_all/alembic work on SQLModel.metadata; the ops tables must never be in it.
    assert set(OPS_METADATA.tables).isdisjoint(SQLModel.metadata.tables)
    assert {t.schema for t in OPS_METADATA.tables.values()} == {"ops"}


def test_a_column_added_by_a_migration_only_is_reported(fresh_database: Callable[[], str], tmp_path: Path) -> None:
    url = _migrated_with_probe(fresh_database, tmp_path, "alter table ops.runs add column drift_probe text;\n")

    assert schema_drift(url) == [f"ops.runs.drift_probe: column exists in the database but not in {TABLES_FILE}"]


def test_type_nullability_key_and_table_changes_are_reported(fresh_database: Callable[[], str], tmp_path: Path) -> None:
    url = _migrated_with_probe(
        fresh_database,
        tmp_path,
        """
        alter table ops.cap_usage alter column runs type bigint;
        alter table ops.task_attempts alter column finished_at type timestamp without time zone;
        alter table ops.orgs alter column name type varchar(200);
        alter table ops.runs alter column error set not null;
        alter table ops.runs alter column name drop not null;
        alter table ops.executors drop column hostname;
        alter table ops.org_members drop constraint org_members_pkey,
            add primary key (org_id, user_id, role);
        alter table ops.runs add constraint runs_name_unique unique (name);
        alter table ops.tasks add foreign key (route_rule_id) references ops.routing_rules (id);
        create table ops.drift_probe_table (id integer primary key);
        """,
    )

    assert schema_drift(url) == [
        f"ops.cap_usage.runs: type is BIGINT in the database but INTEGER in {TABLES_FILE}",
        f"ops.drift_probe_table: table exists in the database but not in {TABLES_FILE}",
        f"ops.executors.hostname: column is in {TABLES_FILE} but not in the database",
        f"ops.org_members: primary key is (org_id, user_id, role) in the database but (org_id, user_id) "
        f"in {TABLES_FILE}",
        f"ops.orgs.name: type is VARCHAR(200) in the database but TEXT in {TABLES_FILE}",
        f"ops.runs.name: column is nullable in the database but NOT NULL in {TABLES_FILE}",
        f"ops.runs.error: column is NOT NULL in the database but nullable in {TABLES_FILE}",
        f"ops.runs: unique (name) exists in the database but not in {TABLES_FILE}",
        f"ops.task_attempts.finished_at: type is TIMESTAMP WITHOUT TIME ZONE in the database but "
        f"TIMESTAMP WITH TIME ZONE in {TABLES_FILE}",
        f"ops.tasks: foreign key (route_rule_id) -> ops.routing_rules (id) exists in the database but not "
        f"in {TABLES_FILE}",
    ]
    assert check_schema_drift(url, echo=lambda _line: None) == 1


def test_a_table_mirrored_but_not_migrated_is_reported(database_url: str) -> None:
    metadata = MetaData()
    for table in OPS_METADATA.tables.values():
        table.to_metadata(metadata)
    Table("ghost", metadata, Column("id", Integer, primary_key=True), schema="ops")

    assert schema_drift(database_url, metadata) == [f"ops.ghost: table is in {TABLES_FILE} but not in the database"]


def test_check_schema_drift_exit_status_is_zero_without_drift(database_url: str) -> None:
    lines: list[str] = []
    assert check_schema_drift(database_url, echo=lines.append) == 0
    assert lines == [f"{TABLES_FILE} matches the ops schema of the database."]


def test_socket_url_and_conninfo_forms_both_reach_the_database(database_url: str) -> None:
    params = conninfo_to_dict(database_url)
    user, password = params.get("user", "postgres"), params.get("password", "")
    host = str(params.get("host", ""))
    if host.startswith("/"):  # the embedded server: a Unix-socket URL
        url = f"postgresql://{user}:{password}@/{params['dbname']}?host={host}" + (
            f"&port={params['port']}" if params.get("port") else ""
        )
    else:  # a TCP server (CI's PostgreSQL 15): a host:port URL
        url = f"postgresql://{user}:{password}@{host}:{params.get('port', 5432)}/{params['dbname']}"
    assert schema_drift(url) == []
    assert schema_drift(database_url) == []


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            "postgresql://postgres:@/lakehouse?host=/tmp/pg",
            {"database": "lakehouse", "query": {"user": "postgres", "host": "/tmp/pg"}},
        ),
        (
            "host=/run/pg port=5433 dbname=lh user=postgres",
            {"database": "lh", "query": {"host": "/run/pg", "port": "5433", "user": "postgres"}},
        ),
        (
            "postgres://u:p%40ss@db.example.com:6543/postgres?sslmode=require",
            {
                "database": "postgres",
                "query": {
                    "user": "u",
                    "password": "p@ss",
                    "host": "db.example.com",
                    "port": "6543",
                    "sslmode": "require",
                },
            },
        ),
    ],
)
def test_sqlalchemy_url_keeps_every_libpq_parameter(given: str, expected: dict[str, object]) -> None:
    url = sqlalchemy_url(given)
    assert url.drivername == "postgresql+psycopg"
    assert url.database == expected["database"]
    assert dict(url.query) == expected["query"]


def test_sqlalchemy_url_only_sets_the_driver_of_a_sqlalchemy_url() -> None:
    url = sqlalchemy_url("postgresql+psycopg2://u:p@h:5432/db")
    assert (url.drivername, url.username, url.password, url.host, url.port, url.database) == (
        "postgresql+psycopg",
        "u",
        "p",
        "h",
        5432,
        "db",
    )
