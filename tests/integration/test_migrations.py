"""The migration runner: ordered, checksummed, forward-only, locked; the Supabase compat migration."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from control_room.config import MIGRATIONS_DIR
from control_room.db import migrate as migrations
from control_room.db.migrate import MigrationError, discover, migrate, status

pytestmark = pytest.mark.migrations


@pytest.fixture
def migrations_copy(tmp_path: Path) -> Path:
    target = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, target)
    return target


def test_applies_all_in_order_then_nothing(fresh_database: Callable[[], str]) -> None:
    url = fresh_database()
    applied = migrate(url)
    assert applied == [f.filename for f in discover()]
    assert migrate(url) == []
    assert {s.state for s in status(url)} == {"applied"}
    with psycopg.connect(url) as conn:
        rows = conn.execute("select filename, sha256 from ops.schema_migrations order by filename").fetchall()
    assert rows == [(f.filename, f.sha256) for f in discover()]


def test_edited_applied_migration_is_refused_naming_the_file(
    fresh_database: Callable[[], str], migrations_copy: Path
) -> None:
    url = fresh_database()
    migrate(url, migrations_copy)
    edited = sorted(migrations_copy.glob("*_ops_core.sql"))[0]
    edited.write_text(edited.read_text() + "\n-- a sneaky edit\n")
    (migrations_copy / "29991231000000_later.sql").write_text("create table ops.later (id int);")
    with pytest.raises(MigrationError) as err:
        migrate(url, migrations_copy)
    assert edited.name in str(err.value)
    assert "forward-only" in str(err.value)
    states = {s.filename: s.state for s in status(url, migrations_copy)}
    assert states[edited.name] == "edited"
    assert states["29991231000000_later.sql"] == "pending", "nothing after the refusal may be applied"


def test_failing_migration_rolls_back_and_names_the_file(
    fresh_database: Callable[[], str], migrations_copy: Path
) -> None:
    url = fresh_database()
    (migrations_copy / "29991231000000_broken.sql").write_text(
        "create table ops.half_done (id int);\nselect * from ops.no_such_table;"
    )
    with pytest.raises(MigrationError) as err:
        migrate(url, migrations_copy)
    assert "29991231000000_broken.sql" in str(err.value)
    with psycopg.connect(url) as conn:
        assert conn.execute("select to_regclass('ops.half_done')").fetchone() == (None,)
        assert conn.execute("select to_regclass('ops.runs')").fetchone() == ("ops.runs",)


def test_badly_named_file_is_refused(migrations_copy: Path) -> None:
    (migrations_copy / "add_stuff.sql").write_text("select 1;")
    with pytest.raises(MigrationError, match=r"add_stuff\.sql"):
        discover(migrations_copy)


def test_concurrent_replicas_migrate_once(fresh_database: Callable[[], str]) -> None:
    url = fresh_database()
    results: list[list[str]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def replica() -> None:
        try:
            barrier.wait()
            results.append(migrate(url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=replica) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert sorted(len(r) for r in results) == [0, 0, len(discover())]


@pytest.mark.parametrize("attempts", [1, migrations.COLLISION_ATTEMPTS])
def test_a_collision_with_another_databases_migration_on_a_role_is_applied_again(
    fresh_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch, attempts: int
) -> None:
    """Another database of the server alters the cluster-wide reader role while this one's migration does:
    with one attempt the file fails ("tuple concurrently updated"), with the runner's attempts it is applied."""
    monkeypatch.setattr(migrations, "COLLISION_ATTEMPTS", attempts)
    other, url = fresh_database(), fresh_database()
    migrate(other)
    database = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    outcome: list[object] = []
    worker = threading.Thread(target=lambda: outcome.append(_migrate_or_error(url)))
    with psycopg.connect(other) as holder, psycopg.connect(other, autocommit=True) as watcher:
        holder.execute("alter role lakehouse_superset_reader set statement_timeout = '30s'")  # uncommitted
        worker.start()
        deadline = time.monotonic() + 120
        while not watcher.execute(
            "select 1 from pg_stat_activity where datname = %s and wait_event_type = 'Lock'", (database,)
        ).fetchone():
            assert worker.is_alive() and time.monotonic() < deadline, f"the migration never waited: {outcome}"
            time.sleep(0.05)
        holder.commit()
    worker.join(timeout=120)
    if attempts == 1:
        assert isinstance(outcome[0], MigrationError) and "superset_reader" in str(outcome[0])
        assert "concurrently" in str(outcome[0])
    else:
        assert outcome == [[f.filename for f in discover()]]


def _migrate_or_error(url: str) -> list[str] | MigrationError:
    try:
        return migrate(url)
    except MigrationError as exc:
        return exc


def test_compat_migration_keeps_existing_auth_functions(fresh_database: Callable[[], str]) -> None:
    """On Supabase auth.uid() already exists: the compat migration must leave it alone."""
    url = fresh_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create schema auth")
        conn.execute(
            "create function auth.uid() returns uuid language sql stable "
            "as $$ select '11111111-1111-4111-8111-111111111111'::uuid $$"
        )
    migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("select auth.uid()::text").fetchone() == ("11111111-1111-4111-8111-111111111111",)
        conn.execute("select set_config('request.jwt.claims', '{\"role\": \"authenticated\"}', false)")
        assert conn.execute("select auth.role()").fetchone() == ("authenticated",)
        roles = {
            r[0]
            for r in conn.execute(
                "select rolname from pg_roles where rolname in ('anon', 'authenticated', 'service_role')"
            ).fetchall()
        }
    assert roles == {"anon", "authenticated", "service_role"}
