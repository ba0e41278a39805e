"""NL→SQL: the built-in translator on the bench set, guardrails for a restricted reader, the LLM provider's
replies checked the same way, and the questions stored as an evaluation set."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import duckdb
import httpx
import psycopg
import pytest
from sqlglot import exp, parse_one

from bench.nl2sql import QUESTIONS, REFUSALS, score, warehouse_policy
from control_room.services import nl2sql
from control_room.services.errors import Forbidden, Invalid
from tests.analytics.conftest import AnalyticsWorld
from tests.analytics.shop_warehouse import build_shop_warehouse


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_shop_warehouse(tmp_path_factory.mktemp("shop") / "shop.duckdb")


def test_the_bench_set_meets_its_targets(warehouse: Path) -> None:
    attempted, correct, _unanswered, refused, refusals = score(
        warehouse_policy(warehouse), lambda q, p: nl2sql.Translator(p).translate(q), verbose=False
    )
    assert len(QUESTIONS) >= 60 and len(REFUSALS) == 10
    assert attempted >= 50 and correct / attempted >= 0.7
    assert refused / refusals >= 0.9


def test_top_customers_joins_orders_to_customers(warehouse: Path) -> None:
    translation = nl2sql.Translator(warehouse_policy(warehouse)).translate("top 5 customers by total order amount")
    assert translation.sql is not None
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        rows = conn.execute(translation.sql).fetchall()
    assert rows[0] == ("Margaret Hamilton", 150.0) and len(rows) == 5


def test_an_unmapped_word_is_named_with_suggestions(warehouse: Path) -> None:
    translation = nl2sql.Translator(warehouse_policy(warehouse)).translate("what is the churn rate by country")
    assert translation.refused
    assert translation.message.startswith("I can't map 'churn' to a column")


def test_a_restricted_reader_never_gets_sql_on_what_they_may_not_read(warehouse: Path) -> None:
    policy = warehouse_policy(warehouse, readable=("fct_orders", "stg_events"), masked={"fct_orders.country_code"})
    answered = 0
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        for question in [q for q, _gold in QUESTIONS] + [q for q, _kind in REFUSALS]:
            translation = nl2sql.Translator(policy).translate(question)
            if translation.sql is None:
                continue
            answered += 1
            tree = parse_one(translation.sql, read="duckdb")
            assert {t.name for t in tree.find_all(exp.Table)} <= {"fct_orders", "stg_events"}, translation.sql
            assert "country_code" not in {c.name for c in tree.find_all(exp.Column)}, translation.sql
            assert isinstance(tree, exp.Select) and tree.args.get("limit") is not None
            conn.execute(translation.sql).fetchall()
    assert answered >= 20


@pytest.mark.parametrize(
    "sql",
    ["delete from fct_orders", "select * from raw_orders", "select country_code from fct_orders",
     "select 1; drop table fct_orders", "copy fct_orders to '/tmp/x.csv'", "select * from read_csv('/etc/passwd')"],
)  # fmt: skip
def test_guardrails_refuse_writes_unreadable_tables_and_masked_columns(warehouse: Path, sql: str) -> None:
    policy = warehouse_policy(warehouse, readable=("fct_orders",), masked={"fct_orders.country_code"})
    with pytest.raises(Invalid):
        nl2sql.guard(sql, policy)


def _llm(reply: str) -> httpx.Client:
    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert request.url.path == "/v1/chat/completions" and body["model"] == "tiny"
        assert "TABLE fct_orders" in body["messages"][0]["content"]
        return httpx.Response(200, json={"choices": [{"message": {"content": reply}}]})

    return httpx.Client(transport=httpx.MockTransport(answer))


def test_an_llm_reply_goes_through_the_same_guardrails(warehouse: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEHOUSE_NL2SQL_URL", "http://llm.test/v1")
    monkeypatch.setenv("LAKEHOUSE_NL2SQL_MODEL", "tiny")
    policy = warehouse_policy(warehouse, readable=("fct_orders",), masked=set())
    good = nl2sql.translate_with_llm(
        "how many orders", policy, client=_llm("```sql\nSELECT count(*) FROM fct_orders\n```")
    )
    assert good.sql is not None and "LIMIT" in good.sql and good.provider == "tiny"
    bad = nl2sql.translate_with_llm("clean up", policy, client=_llm("DELETE FROM fct_orders"))
    assert bad.refused and "read-only" in bad.message
    other = nl2sql.translate_with_llm("salaries", policy, client=_llm("SELECT * FROM raw_customers"))
    assert other.refused and "not a dataset you may read" in other.message


def test_questions_and_feedback_are_stored_per_project(world: AnalyticsWorld) -> None:
    translation = nl2sql.Translation("SELECT count(*) FROM fct_orders LIMIT 1000", "review it")

    async def ask(conn: psycopg.AsyncConnection) -> uuid.UUID:
        return await nl2sql.record_question(conn, project_id=world.project, question="how many orders",
                                            translation=translation)  # fmt: skip

    question = world.call("viewer", ask)

    async def feedback(conn: psycopg.AsyncConnection) -> None:
        await nl2sql.give_feedback(conn, question_id=question, correct=False, fixed_sql="SELECT 8")

    world.call("viewer", feedback)

    async def read(conn: psycopg.AsyncConnection) -> list[Any]:
        cur = await conn.execute(
            "select feedback, fixed_sql, outcome from ops.nl2sql_questions where id = %s", (question,)
        )
        return await cur.fetchall()

    assert world.call("viewer", read) == [("wrong", "SELECT 8", "translated")]
    assert world.call("b_admin", read) == []
    with pytest.raises(Forbidden):
        world.call("b_admin", ask)


# Relationships from dbt tests and lineage: a catalog whose orders reference customers through buyer_id, a column
# no shared-key guess matches; only the dbt relationships test on the staging models (carried to the marts along
# column lineage) says how fct_orders joins dim_customers.
BUYER_TABLES = {
    "stg_customers": [("customer_id", "INTEGER"), ("full_name", "VARCHAR")],
    "stg_orders": [("order_id", "INTEGER"), ("buyer_id", "INTEGER"), ("amount", "DOUBLE")],
    "dim_customers": [("customer_id", "INTEGER"), ("full_name", "VARCHAR")],
    "fct_orders": [("order_id", "INTEGER"), ("buyer_id", "INTEGER"), ("amount", "DOUBLE")],
}
BUYER_TEST = {"column": "buyer_id", "to": "shop.main.stg_customers", "field": "customer_id",
              "test": "test.shop.relationships_stg_orders_buyer_id__customer_id__ref_stg_customers_.1"}  # fmt: skip
BUYER_LINEAGE = [
    ("stg_orders", "fct_orders", [("order_id", "order_id"), ("buyer_id", "buyer_id"), ("amount", "amount")]),
    ("stg_customers", "dim_customers", [("customer_id", "customer_id"), ("full_name", "full_name")]),
]


def _buyer_catalog(world: AnalyticsWorld, *, with_test: bool) -> None:
    def write(conn: psycopg.Connection) -> None:
        conn.execute("delete from ops.lineage_edges where project_id = %s", (world.b_project,))
        conn.execute("delete from ops.datasets where project_id = %s", (world.b_project,))
        ids = {}
        for name, columns in BUYER_TABLES.items():
            metadata = {"relationships": [BUYER_TEST]} if with_test and name == "stg_orders" else {}
            row = conn.execute(
                "insert into ops.datasets (project_id, namespace, name, kind, columns, metadata) "
                "values (%s, 'duckdb:///data/shop.duckdb', %s, 'model', %s, %s) returning id",
                (world.b_project, f"shop.main.{name}", json.dumps([{"name": c, "type": t} for c, t in columns]),
                 json.dumps(metadata)),
            ).fetchone()  # fmt: skip
            assert row is not None
            ids[name] = row[0]
        for upstream, downstream, pairs in BUYER_LINEAGE:
            conn.execute(
                "insert into ops.lineage_edges (project_id, upstream_id, downstream_id, job_name, column_lineage) "
                "values (%s, %s, %s, %s, %s)",
                (world.b_project, ids[upstream], ids[downstream], f"model.shop.{downstream}",
                 json.dumps([{"upstream_column": u, "downstream_column": d} for u, d in pairs])),
            )  # fmt: skip

    with psycopg.connect(world.url, autocommit=True) as conn:
        write(conn)


def test_joins_follow_dbt_relationships_tests_and_lineage(world: AnalyticsWorld) -> None:
    async def policy(conn: psycopg.AsyncConnection) -> nl2sql.AccessPolicy:
        return await nl2sql.access_policy(conn, project_id=world.b_project)

    question = "total order amount by customer name"
    _buyer_catalog(world, with_test=False)
    refused = nl2sql.Translator(world.call("b_admin", policy)).translate(question)
    assert refused.refused and "no relationship between fct_orders and dim_customers" in refused.message

    _buyer_catalog(world, with_test=True)
    found = world.call("b_admin", policy)
    assert {(r.child, r.column, r.parent, r.parent_column, r.source) for r in found.relationships} >= {
        ("stg_orders", "buyer_id", "stg_customers", "customer_id", "dbt"),
        ("fct_orders", "buyer_id", "dim_customers", "customer_id", "lineage"),
    }
    translation = nl2sql.Translator(found).translate(question)
    assert translation.sql is not None, translation.message
    assert "JOIN dim_customers AS j0\n  ON j0.customer_id = t.buyer_id" in translation.sql, translation.sql
    assert "RELATIONSHIP fct_orders.buyer_id -> dim_customers.customer_id" in nl2sql.schema_context(found)
    with duckdb.connect() as conn:
        conn.execute("create table dim_customers as select * from (values (1, 'Ada'), (2, 'Grace')) v(customer_id, "
                     "full_name)")  # fmt: skip
        conn.execute("create table fct_orders as select * from (values (10, 1, 5.0), (11, 1, 7.0), (12, 2, 1.0)) "
                     "v(order_id, buyer_id, amount)")  # fmt: skip
        assert sorted(conn.execute(translation.sql).fetchall()) == [("Ada", 12.0), ("Grace", 1.0)]
    assert world.call("viewer", lambda conn: nl2sql.access_policy(conn, project_id=world.b_project)).tables == {}
