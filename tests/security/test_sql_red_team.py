"""Org B's admin, acting as PostgREST would (role `authenticated` with JWT claims), against org A's rows in
every ops table: reads return nothing, writes are refused. The tables come from the catalog, so a new
table without a reviewed entry (tests/security/registry.py), RLS and policies fails here."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.security.conftest import RedWorld, as_member
from tests.security.registry import SECRET_COLUMNS, TABLES

pytestmark = pytest.mark.migrations

REFUSED = {"42501", "LH403"}  # insufficient_privilege (grants and RLS), our own "forbidden"
PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")


def ops_tables(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(
        "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
        "where n.nspname = 'ops' and c.relkind in ('r', 'p') order by 1"
    ).fetchall()
    return [r[0] for r in rows]


def granted(conn: psycopg.Connection, table: str) -> frozenset[str]:
    """What `authenticated` may do on the table, as the catalog says (column grants marked)."""
    found = set()
    for privilege in PRIVILEGES:
        by_column = privilege in ("SELECT", "INSERT", "UPDATE")
        row = conn.execute(
            "select has_table_privilege('authenticated', %s, %s), "
            "%s and has_any_column_privilege('authenticated', %s, %s)",
            (f"ops.{table}", privilege, by_column, f"ops.{table}", privilege if by_column else "SELECT"),
        ).fetchone()
        assert row
        if row[0]:
            found.add(privilege)
        elif row[1]:
            found.add(f"{privilege}(columns)")
    return frozenset(found)


def primary_key(conn: psycopg.Connection, table: str) -> list[str]:
    rows = conn.execute(
        "select a.attname from pg_index i join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey) "
        "where i.indrelid = %s::regclass and i.indisprimary order by array_position(i.indkey, a.attnum)",
        (f"ops.{table}",),
    ).fetchall()
    return [r[0] for r in rows]


@pytest.fixture(scope="module")
def owner(red_world: RedWorld) -> Any:
    with psycopg.connect(red_world.url, autocommit=True) as conn:
        yield conn


def test_every_ops_table_is_reviewed_with_rls_and_policies(owner: psycopg.Connection) -> None:
    problems = []
    for table in ops_tables(owner):
        entry = TABLES.get(table)
        if entry is None:
            problems.append(
                f"ops.{table}: no review entry in tests/security/registry.py (list its grants to authenticated, "
                "the predicate of another org's rows, and why)"
            )
            continue
        rls = owner.execute(
            "select relrowsecurity from pg_class where oid = %s::regclass", (f"ops.{table}",)
        ).fetchone()
        if not (rls and rls[0]):
            problems.append(f"ops.{table}: row level security is not enabled")
        actual = granted(owner, table)
        if actual != entry.grants:
            problems.append(
                f"ops.{table}: authenticated has {sorted(actual)}, the review says {sorted(entry.grants)}; "
                "revoke the extra grant or review it in tests/security/registry.py"
            )
        policies = {
            r[0]
            for r in owner.execute(
                "select cmd from pg_policies where schemaname = 'ops' and tablename = %s "
                "and ('authenticated' = any(roles) or 'public' = any(roles))",
                (table,),
            ).fetchall()
        }
        for privilege in actual:
            command = privilege.split("(")[0]
            if command != "TRUNCATE" and not ({command, "ALL"} & policies):
                problems.append(f"ops.{table}: authenticated may {command} but no policy covers it")
        if not primary_key(owner, table):
            problems.append(f"ops.{table}: no primary key (the red team addresses rows by it)")
    stale = set(TABLES) - set(ops_tables(owner))
    problems += [f"tests/security/registry.py reviews ops.{t}, which no longer exists" for t in sorted(stale)]
    assert problems == []


def test_secret_columns_are_unreadable_by_members(owner: psycopg.Connection) -> None:
    for table, columns in SECRET_COLUMNS.items():
        for column in columns:
            row = owner.execute(
                "select has_column_privilege('authenticated', %s, %s, 'SELECT')", (f"ops.{table}", column)
            ).fetchone()
            assert row == (False,), f"members can read ops.{table}.{column}"
            row = owner.execute(
                "select has_column_privilege('anon', %s, %s, 'SELECT')", (f"ops.{table}", column)
            ).fetchone()
            assert row == (False,), f"anonymous callers can read ops.{table}.{column}"


def _foreign_keys(owner: psycopg.Connection, world: RedWorld, table: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    entry = TABLES[table]
    pk = primary_key(owner, table)
    query = sql.SQL("select {cols} from ops.{t} x where {pred} limit 5").format(
        cols=sql.SQL(", ").join(sql.SQL("x.{}").format(sql.Identifier(c)) for c in pk),
        t=sql.Identifier(table),
        pred=sql.SQL(entry.foreign_rows),  # type: ignore[arg-type]  # reviewed literal from the registry
    )
    rows = owner.execute(query, {"a_org": world.a_org, "b_user": world.b_admin}).fetchall()
    return pk, rows


def _where_pk(pk: list[str], rows: list[tuple[Any, ...]]) -> tuple[sql.Composable, list[Any]]:
    clause = sql.SQL("({cols}) in ({vals})").format(
        cols=sql.SQL(", ").join(sql.Identifier(c) for c in pk),
        vals=sql.SQL(", ").join(
            sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() for _ in pk)) for _ in rows
        ),
    )
    return clause, [v for row in rows for v in row]


def _refused_or_none(conn: psycopg.Connection, statement: sql.Composable, params: list[Any]) -> str:
    """'refused' (privilege/RLS error) or 'none' (0 rows); anything else fails the test."""
    error: psycopg.Error | None = None
    count = 0
    try:
        with conn.transaction():
            cur = conn.execute(statement, params)
            count = cur.rowcount if cur.description is None else len(cur.fetchall())
    except psycopg.Error as exc:
        error = exc
    if error is not None:
        assert error.sqlstate in REFUSED, f"{statement.as_string(conn)}: unexpected {error.sqlstate} {error}"
        return "refused"
    assert count == 0, f"{statement.as_string(conn)} reached {count} of org A's rows"
    return "none"


@pytest.mark.parametrize("table", sorted(TABLES))
def test_org_b_admin_cannot_read_or_change_org_a_rows(
    owner: psycopg.Connection, red_world: RedWorld, table: str
) -> None:
    pk, rows = _foreign_keys(owner, red_world, table)
    assert rows, f"the red team's world has no row of org A in ops.{table}: seed one in tests/security/conftest.py"
    where, params = _where_pk(pk, rows)
    target = sql.Identifier("ops", table)
    columns = [
        r[0]
        for r in owner.execute(
            "select column_name from information_schema.columns where table_schema = 'ops' and table_name = %s "
            "order by ordinal_position",
            (table,),
        ).fetchall()
    ]
    updatable = [
        c
        for c in columns
        if owner.execute(
            "select has_column_privilege('authenticated', %s, %s, 'UPDATE')", (f"ops.{table}", c)
        ).fetchone()
        == (True,)
    ]
    column = sql.Identifier((updatable or [c for c in columns if c not in pk] or columns)[0])
    record = owner.execute(
        sql.SQL("select row_to_json(x)::text from ops.{} x where {} limit 1").format(sql.Identifier(table), where),
        params,
    ).fetchone()
    assert record
    copy = json.loads(record[0])
    if len(pk) == 1 and isinstance(copy.get(pk[0]), str):
        try:
            uuid.UUID(copy[pk[0]])
            copy[pk[0]] = str(uuid.uuid4())
        except ValueError:
            pass

    with psycopg.connect(red_world.url, autocommit=True) as attacker:
        with as_member(attacker, red_world.b_admin):
            _refused_or_none(attacker, sql.SQL("select 1 from {} where {}").format(target, where), params)
        with as_member(attacker, red_world.b_admin):
            _refused_or_none(
                attacker, sql.SQL("update {t} set {c} = {c} where {w}").format(t=target, c=column, w=where), params
            )
        with as_member(attacker, red_world.b_admin):
            _refused_or_none(attacker, sql.SQL("delete from {} where {}").format(target, where), params)
        with as_member(attacker, red_world.b_admin), pytest.raises(psycopg.Error) as inserted:
            attacker.execute(
                sql.SQL("insert into {t} select * from json_populate_record(null::{t}, %s::json)").format(t=target),
                (json.dumps(copy),),
            )
        assert inserted.value.sqlstate in REFUSED, (
            f"insert into ops.{table}: {inserted.value.sqlstate} {inserted.value}"
        )
    still = owner.execute(sql.SQL("select count(*) from {} where {}").format(target, where), params).fetchone()
    assert still == (len(rows),), f"org A's rows of ops.{table} changed"


def test_org_b_cannot_submit_into_or_cancel_org_a(owner: psycopg.Connection, red_world: RedWorld) -> None:
    run = owner.execute("select id from ops.runs where org_id = %s limit 1", (red_world.a_org,)).fetchone()
    assert run
    with psycopg.connect(red_world.url, autocommit=True) as attacker:
        with as_member(attacker, red_world.b_admin), pytest.raises(psycopg.Error) as submitted:
            attacker.execute(
                "select * from ops.submit_run(%s, 'dev', %s::jsonb)",
                (red_world.a_project, json.dumps({"tasks": [{"key": "x", "engine": "shell", "command": "id"}]})),
            )
        assert submitted.value.sqlstate == "LH403"
        with as_member(attacker, red_world.b_admin), pytest.raises(psycopg.Error) as cancelled:
            attacker.execute("select ops.cancel_run(%s)", (run[0],))
        assert cancelled.value.sqlstate in {"LH403", "LH404"}
        with as_member(attacker, red_world.b_admin), pytest.raises(psycopg.Error) as claimed:
            attacker.execute("select * from ops.claim_tasks(%s)", (uuid.uuid4(),))
        assert claimed.value.sqlstate == "42501", "members cannot call the executor-facing functions"
        with as_member(attacker, red_world.b_admin), pytest.raises(psycopg.Error) as shared:
            attacker.execute("select ops.set_pool_shared(%s, 'default', true)", (red_world.b.org_id,))
        assert shared.value.sqlstate in REFUSED
        dataset = owner.execute(
            "select d.id from ops.datasets d where d.project_id = %s limit 1", (red_world.a_project,)
        ).fetchone()
        assert dataset
        with as_member(attacker, red_world.b_admin), pytest.raises(psycopg.Error) as previewed:
            attacker.execute("select ops.start_policy_preview(%s, %s, 'group', 'x')", (run[0], dataset[0]))
        assert previewed.value.sqlstate in {"LH403", "LH404", "LH422"}, "org A's run never becomes B's preview"


def test_operators_cannot_insert_runs_around_submit(owner: psycopg.Connection, red_world: RedWorld) -> None:
    """Even in their own project, members create runs only through ops.submit_run (role and caps checked)."""
    b = red_world.b
    with psycopg.connect(red_world.url, autocommit=True) as attacker:
        with as_member(attacker, red_world.b_admin), pytest.raises(psycopg.errors.InsufficientPrivilege):
            attacker.execute(
                "insert into ops.runs (org_id, project_id, environment_id, name, spec, status) "
                "values (%s, %s, %s, 'x', '{}', 'succeeded')",
                (b.org_id, b.project_id, b.environments["dev"]),
            )
        with as_member(attacker, red_world.b_admin):
            submitted = attacker.execute(
                "select run_id from ops.submit_run(%s, 'dev', %s::jsonb)",
                (b.project_id, json.dumps({"tasks": [{"key": "x", "engine": "shell", "command": "id"}]})),
            ).fetchone()
            assert submitted and submitted[0]
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                attacker.execute("update ops.runs set status = 'succeeded' where id = %s", (submitted[0],))


def test_org_b_cannot_deploy_or_delete_org_a_serving_endpoints(owner: psycopg.Connection, red_world: RedWorld) -> None:
    """The bundle's serving functions check the project role like the page's (20261208000400_serving_bundle)."""
    endpoint = owner.execute(
        "select id from ops.serving_endpoints where org_id = %s and name = 'a-churn'", (red_world.a_org,)
    ).fetchone()
    assert endpoint
    routes = json.dumps([{"model": "a-model", "version": "2", "percent": 100}])
    with psycopg.connect(red_world.url, autocommit=True) as attacker:
        with as_member(attacker, red_world.b_admin), pytest.raises(psycopg.Error) as deployed:
            attacker.execute(
                "select ops.deploy_serving_endpoint(%s, 'dev', 'a-churn', %s::jsonb, 1, null, null, 'running')",
                (red_world.a_project, routes),
            )
        assert deployed.value.sqlstate == "LH403"
        with as_member(attacker, red_world.b_admin), pytest.raises(psycopg.Error) as deleted:
            attacker.execute("select ops.delete_serving_endpoint(%s)", (endpoint[0],))
        assert deleted.value.sqlstate == "LH403"
    still = owner.execute(
        "select r.routes ->> 0 from ops.serving_endpoints e join ops.serving_endpoint_revisions r "
        "on r.endpoint_id = e.id and r.revision = e.revision where e.id = %s",
        (endpoint[0],),
    ).fetchone()
    assert still and '"version": "1"' in still[0]


def test_org_b_cannot_ingest_openlineage_into_org_a(owner: psycopg.Connection, red_world: RedWorld) -> None:
    """ops.ingest_openlineage_to (the API's one call) sees projects through RLS; ingest checks the role again."""
    run_id = str(uuid.uuid4())
    event = {
        "eventType": "START",
        "eventTime": "2026-12-03T10:00:00Z",
        "producer": "https://example.com/red-team",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": run_id},
        "job": {"namespace": "red", "name": "exfiltrate"},
        "outputs": [{"namespace": "red", "name": "planted"}],
    }
    with psycopg.connect(red_world.url, autocommit=True) as attacker:
        with as_member(attacker, red_world.b_admin), pytest.raises(psycopg.Error) as named:
            attacker.execute(
                "select * from ops.ingest_openlineage_to(%s, %s::jsonb)", (str(red_world.a_project), json.dumps(event))
            )
        assert named.value.sqlstate == "LH404", "org A's project is not visible to org B"
        with as_member(attacker, red_world.b_admin), pytest.raises(psycopg.Error) as direct:
            attacker.execute("select ops.ingest_openlineage(%s, %s::jsonb)", (red_world.a_project, json.dumps(event)))
        assert direct.value.sqlstate == "LH403"
    stored = owner.execute(
        "select count(*) from ops.openlineage_events where openlineage_run_id = %s", (run_id,)
    ).fetchone()
    assert stored == (0,), "nothing of org B's event reached org A"


TRANSITIONS_OF = "select count(*) from unnest(%s::uuid[]) a(id) cross join lateral ops.task_transitions(a.id)"


def test_task_transitions_show_members_only_their_orgs_tasks(owner: psycopg.Connection, red_world: RedWorld) -> None:
    # ops.task_transitions runs with the caller's rights: the row policies of the audit log, the attempts
    # and the tasks decide what a member sees.
    a_tasks = [r[0] for r in owner.execute("select t.id from ops.tasks t where t.org_id = %s", (red_world.a_org,))]
    recorded = owner.execute(TRANSITIONS_OF, (a_tasks,)).fetchone()
    assert recorded and recorded[0] > 0, "the red team's world has no recorded move of an org A task"
    with psycopg.connect(red_world.url, autocommit=True) as conn:
        with as_member(conn, red_world.b_admin):
            seen_by_b = conn.execute(TRANSITIONS_OF, (a_tasks,)).fetchone()
        with as_member(conn, red_world.a_user):
            seen_by_a = conn.execute(TRANSITIONS_OF, (a_tasks,)).fetchone()
    assert seen_by_b == (0,)
    assert seen_by_a == recorded
