"""Red team of the SQL access guard: bypass attempts against real DuckDB and the Trino test server, each
refused (naming the dataset and the missing privilege where one is missing) or answered only with what the
policies let through: EU customers only, e-mails masked, payroll never.

The policies: ``customers`` readable with ``email`` masked and rows filtered to region EU, not writable;
``payroll`` denied; ``orders`` open (not listed). Every allowed answer is checked for leaks: no raw e-mail,
no US customer, no salary."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
import trino

from executor_agent.policy import AccessGuard, PolicyRefused
from tests.trino_server.process import TrinoTestServer, trino_test_server

EMAILS = ("a@x.example", "b@x.example", "c@x.example")
SETUP = [
    "create table customers (id integer, email varchar, region varchar)",
    f"insert into customers values (1, '{EMAILS[0]}', 'EU'), (2, '{EMAILS[1]}', 'US'), (3, '{EMAILS[2]}', 'EU')",
    "create table payroll (id integer, salary integer)",
    "insert into payroll values (1, 987654)",
    "create table orders (id integer, customer_id integer, amount integer)",
    "insert into orders values (10, 1, 5), (20, 2, 6), (30, 3, 7)",
]
LEAKS = (*EMAILS, "US", "987654")


def policies(mask: str, *, catalog: str, schema: str) -> dict[str, Any]:
    def dataset(table: str, **fields: Any) -> dict[str, Any]:
        return {"dataset_id": table, "name": f"{catalog}.{schema}.{table}", "namespace": "test", "admin": False,
                "row_filters": [], "masks": [], **fields}  # fmt: skip

    return {
        "principal": {"kind": "user", "name": "ann@shop.example"},
        "groups": ["analysts"],
        "datasets": [
            dataset("customers", columns=["id", "email", "region"], read=True, write=False,
                    reasons={"write": "no policy grants write on this dataset to ann@shop.example"},
                    row_filters=[{"policy": "eu-only", "predicate": "region = 'EU'"}],
                    masks=[{"policy": "mask-pii", "column": "email", "kind": mask, "expression": None}]),
            dataset("payroll", columns=["id", "salary"], read=False, write=False,
                    reasons=dict.fromkeys(("read", "write"), 'denied by policy "payroll-closed"')),
        ],
    }  # fmt: skip


@dataclass(frozen=True)
class Attempt:
    """One bypass attempt: refused (the message holds ``refused``), or its rows as ``rows`` says."""

    sql: str
    refused: str | None = None
    rows: list[tuple[Any, ...]] | None = None
    duckdb_only: bool = False


def masked(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()


PAYROLL = "may not read dataset lakehouse.main.payroll (missing privilege read"
WRITE = "may not {} dataset lakehouse.main.customers (missing privilege write"
EU = [(1,), (3,)]
ATTEMPTS: dict[str, Attempt] = {
    # Reads of the masked and filtered dataset, however spelled: only EU rows, e-mails masked.
    "select-star": Attempt("select id from customers order by id", rows=EU),
    "masked-column": Attempt("select email from customers order by id", rows=[("M1",), ("M3",)]),
    "alias": Attempt("select c.email from customers c order by c.id", rows=[("M1",), ("M3",)]),
    "alias-as": Attempt("select c.email from customers as c where c.id = 3", rows=[("M3",)]),
    "quoted-identifiers": Attempt('select "email" from "customers" order by "id"', rows=[("M1",), ("M3",)]),
    "upper-case": Attempt("SELECT EMAIL FROM CUSTOMERS ORDER BY ID", rows=[("M1",), ("M3",)]),
    "mixed-case-quoted": Attempt('select email from "Customers" order by id', rows=[("M1",), ("M3",)]),
    "schema-qualified": Attempt("select email from main.customers order by id", rows=[("M1",), ("M3",)]),
    "other-catalog": Attempt(
        "select email from memory.main.customers order by id", rows=[("M1",), ("M3",)], duckdb_only=True
    ),
    "cte": Attempt("with x as (select * from customers) select email from x order by id", rows=[("M1",), ("M3",)]),
    "cte-shadowing": Attempt(
        "with customers as (select * from main.customers) select email from customers order by id",
        rows=[("M1",), ("M3",)],
    ),
    "nested-cte": Attempt(
        "with a as (select * from customers), b as (select * from a) select count(*) from b", rows=[(2,)]
    ),
    "subquery": Attempt("select t.email from (select * from customers) t order by t.id", rows=[("M1",), ("M3",)]),
    "scalar-subquery": Attempt("select (select count(*) from customers)", rows=[(2,)]),
    "where-on-masked": Attempt(f"select id from customers where email = '{EMAILS[0]}'", rows=[]),
    "where-on-filtered": Attempt("select id from customers where region = 'US'", rows=[]),
    "in-subquery": Attempt(
        "select id from orders where customer_id in (select id from customers) order by id", rows=[(10,), (30,)]
    ),
    "exists-correlated": Attempt(
        "select o.id from orders o where exists (select 1 from customers c where c.id = o.customer_id) order by o.id",
        rows=[(10,), (30,)],
    ),
    "join": Attempt(
        "select o.id, c.email from orders o join customers c on c.id = o.customer_id order by o.id",
        rows=[(10, "M1"), (30, "M3")],
    ),
    "left-join": Attempt(
        "select o.id, c.email from orders o left join customers c on c.id = o.customer_id order by o.id",
        rows=[(10, "M1"), (20, None), (30, "M3")],
    ),
    "self-join": Attempt(
        "select a.email from customers a join customers b on a.id = b.id order by a.id", rows=[("M1",), ("M3",)]
    ),
    "union": Attempt("select email from customers union all select 'x' order by 1", rows=[("M1",), ("M3",), ("x",)]),
    "count": Attempt("select count(*) from customers", rows=[(2,)]),
    "group-by": Attempt("select region, count(*) from customers group by region", rows=[("EU", 2)]),
    "window": Attempt(
        "select email, row_number() over (order by id) from customers order by id", rows=[("M1", 1), ("M3", 2)]
    ),
    "string-function": Attempt("select substr(email, 1, 64) from customers where id = 1", rows=[("M1",)]),
    "struct-of-row": Attempt("select customers.email from customers where id = 1", rows=[("M1",)]),
    "star-exclude": Attempt(
        "select * exclude (region) from customers where id = 3", rows=[(3, "M3")], duckdb_only=True
    ),
    "columns-regex": Attempt("select columns('^e.*') from customers where id = 3", rows=[("M3",)], duckdb_only=True),
    "from-first": Attempt("from customers select email where id = 1", rows=[("M1",)], duckdb_only=True),
    # Refused: the denied dataset, however reached.
    "denied": Attempt("select * from payroll", refused=PAYROLL),
    "denied-alias": Attempt("select p.salary from payroll p", refused=PAYROLL),
    "denied-quoted-case": Attempt('select * from "PAYROLL"', refused=PAYROLL),
    "denied-in-cte": Attempt("with x as (select * from payroll) select 1", refused=PAYROLL),
    "denied-in-subquery": Attempt("select (select max(salary) from payroll)", refused=PAYROLL),
    "denied-in-union": Attempt("select id from customers union select id from payroll", refused=PAYROLL),
    "denied-in-exists": Attempt("select 1 where exists (select 1 from payroll where salary > 0)", refused=PAYROLL),
    "denied-behind-comment": Attempt("select * from /* harmless */ payroll", refused=PAYROLL),
    "denied-into-open-table": Attempt("insert into orders select id, id, salary from payroll", refused=PAYROLL),
    "denied-describe": Attempt("describe payroll", refused=PAYROLL, duckdb_only=True),
    "denied-table-statement": Attempt("table payroll", refused=PAYROLL, duckdb_only=True),
    "denied-other-catalog": Attempt("select * from memory.main.payroll", refused=PAYROLL, duckdb_only=True),
    # Refused: writes without the write privilege, or to filtered/masked data.
    "insert": Attempt("insert into customers values (9, 'z', 'EU')", refused=WRITE.format("write")),
    "update": Attempt("update customers set email = 'z'", refused=WRITE.format("update")),
    "delete": Attempt("delete from customers where region = 'US'", refused=WRITE.format("delete from")),
    "drop": Attempt("drop table customers", refused=WRITE.format("drop")),
    "cte-named-like-later-cte": Attempt(
        "with a as (select * from payroll), payroll as (select 1 as id) select * from a", refused=PAYROLL
    ),
    "recursive-cte": Attempt(
        "with recursive r(n) as (select 1 union all select n + 1 from r where n < 3) select count(*) from r, customers",
        rows=[(6,)],
        duckdb_only=True,
    ),
    "create-or-replace": Attempt(
        "create or replace table customers as select 1 as id", refused=WRITE.format("write"), duckdb_only=True
    ),
    # Refused: storage and metadata around the catalog, statements that cannot be checked.
    "read-parquet": Attempt("select * from read_parquet('/lake/payroll.parquet')", refused="function read_parquet"),
    "read-csv": Attempt(
        "select * from read_csv_auto('/lake/payroll.csv')", refused="function read_csv_auto", duckdb_only=True
    ),
    "file-path": Attempt("select * from '/lake/payroll.parquet'", refused="reading the file", duckdb_only=True),
    "query-function": Attempt(
        "select * from query('select * from payroll')", refused="function query", duckdb_only=True
    ),
    "glob": Attempt("select * from glob('/lake/*')", refused="function glob", duckdb_only=True),
    "information-schema": Attempt("select table_name from information_schema.tables", refused="metadata catalog"),
    "information-schema-columns": Attempt(
        "select column_name from information_schema.columns where table_name = 'payroll'", refused="metadata catalog"
    ),
    "duckdb-tables": Attempt("select * from duckdb_tables()", refused="function duckdb_tables", duckdb_only=True),
    "pg-catalog": Attempt("select * from pg_catalog.pg_class", refused="metadata catalog", duckdb_only=True),
    "trino-system": Attempt("select * from system.runtime.queries", refused="metadata catalog"),
    "show-tables": Attempt("show tables", refused="not allowed under access policies"),
    "pragma": Attempt("pragma table_info('payroll')", refused="not allowed under access policies", duckdb_only=True),
    "summarize": Attempt("summarize customers", refused="not allowed under access policies", duckdb_only=True),
    "explain-analyze": Attempt("explain analyze select * from payroll", refused="not allowed under access policies"),
    "attach": Attempt(
        "attach '/tmp/other.duckdb' as other", refused="not allowed under access policies", duckdb_only=True
    ),
    "getenv": Attempt("select getenv('HOME')", refused="function getenv", duckdb_only=True),
    "unparseable": Attempt("selec * fro payroll where (", refused="cannot be parsed"),
    # Views: one reading a restricted dataset is refused; data copied out is already masked.
    "view-over-denied": Attempt("select * from payroll_view", refused=PAYROLL, duckdb_only=True),
    "view-over-masked": Attempt(
        "select * from customers_view", refused="view customers_view reads dataset", duckdb_only=True
    ),
    "copy-out": Attempt("create table stolen as select * from customers", rows=[(2,)], duckdb_only=True),
    # Control: open datasets and harmless table functions run untouched.
    "open-dataset": Attempt("select count(*) from orders", rows=[(3,)]),
    "range": Attempt("select count(*) from range(3)", rows=[(3,)], duckdb_only=True),
}


def expected(rows: list[tuple[Any, ...]], mask: str) -> list[tuple[Any, ...]]:
    def value(v: Any) -> Any:
        if v in ("M1", "M3"):
            email = EMAILS[0] if v == "M1" else EMAILS[2]
            return masked(email) if mask == "hash" else email[:2] + "****"
        return v

    return [tuple(value(v) for v in row) for row in rows]


def no_leak(rows: list[tuple[Any, ...]]) -> None:
    flat = repr(rows)
    assert not [leak for leak in LEAKS if leak in flat], f"leaked: {flat}"


def assert_attempt(attempt: Attempt, guard: AccessGuard, run: Any, mask: str) -> None:
    if attempt.refused is not None:
        with pytest.raises(PolicyRefused) as caught:
            guard.check(attempt.sql)
        assert attempt.refused in str(caught.value)
        return
    rows = run(guard.check(attempt.sql))
    no_leak(rows)
    assert sorted(rows, key=repr) == sorted(expected(attempt.rows or [], mask), key=repr)


# DuckDB ---------------------------------------------------------------------------------------------------


@pytest.fixture
def duck(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    for statement in SETUP:
        con.execute(statement)
    # Views made by someone else before the task: the guard looks through them.
    con.execute("create view payroll_view as select * from payroll")
    con.execute("create view customers_view as select * from customers")
    yield con
    con.close()


def duck_guard(con: duckdb.DuckDBPyConnection) -> AccessGuard:
    def views(parts: tuple[str, ...]) -> str | None:
        found = con.execute(
            "select sql from duckdb_views() where not internal and lower(view_name) = ?", [parts[-1]]
        ).fetchone()
        return str(found[0]) if found else None

    return AccessGuard(policies("hash", catalog="lakehouse", schema="main"), dialect="duckdb", views=views)


@pytest.mark.parametrize("name", sorted(ATTEMPTS))
def test_duckdb_bypass_attempt(name: str, duck: duckdb.DuckDBPyConnection) -> None:
    attempt = ATTEMPTS[name]

    def run(sql: str) -> list[tuple[Any, ...]]:
        result = duck.execute(sql)
        return result.fetchall() if result.description else []

    assert_attempt(attempt, duck_guard(duck), run, "hash")


def test_copied_data_stays_masked_and_filtered(duck: duckdb.DuckDBPyConnection) -> None:
    guard = duck_guard(duck)
    duck.execute(guard.check("create table stolen as select * from customers"))
    rows = duck.execute("select id, email, region from stolen order by id").fetchall()
    assert rows == [(1, masked(EMAILS[0]), "EU"), (3, masked(EMAILS[2]), "EU")]


def test_there_are_at_least_forty_attempts_per_engine() -> None:
    assert len(ATTEMPTS) >= 40
    assert len([a for a in ATTEMPTS.values() if not a.duckdb_only]) >= 40


def test_without_restrictions_statements_pass_untouched() -> None:
    guard = AccessGuard({"principal": {"kind": "user", "name": "x"}, "datasets": []}, dialect="duckdb")
    assert not guard.active and guard.check("selec garbage") == "selec garbage"


@pytest.mark.parametrize(
    "sql",
    [
        "create table stolen as select * from customers",
        "insert into orders select 1, 1, 1",
        "copy (select * from customers) to 'out.csv'",
        "select * into stolen from customers",
        "set threads = 1",
        "drop table orders",
    ],
)
def test_a_policy_preview_only_reads(sql: str) -> None:
    payload = {**policies("hash", catalog="lakehouse", schema="main"), "read_only": True}
    guard = AccessGuard(payload, dialect="duckdb")
    with pytest.raises(PolicyRefused, match=r"a policy preview runs as ann@shop\.example and may only read"):
        guard.check(sql)
    assert "SHA256" in guard.check("select email from customers union select email from customers").upper()
    open_payload = {"principal": {"kind": "user", "name": "x"}, "datasets": [], "read_only": True}
    empty = AccessGuard(open_payload, dialect="duckdb")
    assert empty.active and empty.check("select 1") == "select 1"


# Trino (the protocol-faithful test server) ------------------------------------------------------------------


@pytest.fixture(scope="module")
def trino_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrinoTestServer]:
    with trino_test_server(tmp_path_factory.mktemp("trino-acl")) as server:
        cursor = trino.dbapi.connect(host=server.host, port=server.port, user="setup", catalog="lakehouse",
                                     schema="main").cursor()  # fmt: skip
        cursor.execute("create schema if not exists main")
        cursor.fetchall()
        for statement in SETUP:
            cursor.execute(statement.replace("table ", "table main.", 1).replace("into ", "into main.", 1))
            cursor.fetchall()
        yield server


@pytest.mark.parametrize("name", sorted(n for n, a in ATTEMPTS.items() if not a.duckdb_only))
def test_trino_bypass_attempt(name: str, trino_server: TrinoTestServer) -> None:
    guard = AccessGuard(policies("partial", catalog="lakehouse", schema="main"), dialect="trino")
    cursor = trino.dbapi.connect(host=trino_server.host, port=trino_server.port, user="ann", catalog="lakehouse",
                                 schema="main").cursor()  # fmt: skip

    def run(sql: str) -> list[tuple[Any, ...]]:
        cursor.execute(sql)
        return [tuple(row) for row in cursor.fetchall()]

    assert_attempt(ATTEMPTS[name], guard, run, "partial")
