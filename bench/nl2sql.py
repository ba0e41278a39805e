"""NL→SQL bench: questions with gold SQL over the demo warehouse (examples/dbt built with dbt-duckdb), and
questions that must be refused (writes, tables of other projects, masked columns).

Prints the built-in translator's execution accuracy on the questions it attempts (its rows equal the gold
SQL's rows, order-insensitive, numbers rounded to 2 places) and its refusal correctness; with
LAKEHOUSE_NL2SQL_URL and _MODEL set, the configured LLM's too. The warehouse is built once into a temp
folder by running `dbt build` on examples/dbt (about a minute); pass --warehouse FILE to reuse one.

    .venv/bin/python bench/nl2sql.py [--warehouse /path/shop.duckdb] [-v]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402

from control_room.services import nl2sql  # noqa: E402

# The restricted reader of the bench: the marts and staging models, not the raw seeds, the snapshot or the
# app's landing schema (another team's); the customers' sign-up dates are masked.
READABLE = ("dim_customers", "fct_orders", "fct_customer_events", "customer_activity", "stg_customers",
            "stg_orders", "stg_events")  # fmt: skip
MASKED = {"dim_customers.signed_up_on", "stg_customers.signed_up_on"}
ORDERS_BY_CUSTOMER = "FROM fct_orders o JOIN dim_customers c ON c.customer_id = o.customer_id"
EVENTS_BY_CUSTOMER = "FROM fct_customer_events e JOIN dim_customers c ON c.customer_id = e.customer_id"

QUESTIONS: list[tuple[str, str]] = [
    ("how many orders are there", "SELECT count(*) FROM fct_orders"),
    ("count of orders", "SELECT count(*) FROM fct_orders"),
    ("Number of orders?", "SELECT count(*) FROM fct_orders"),
    ("How many customers do we have?", "SELECT count(*) FROM dim_customers"),
    ("how many events", "SELECT count(*) FROM fct_customer_events"),
    ("total amount of orders", "SELECT sum(amount) FROM fct_orders"),
    ("What is the total order amount?", "SELECT sum(amount) FROM fct_orders"),
    ("total revenue", "SELECT sum(amount) FROM fct_orders"),
    ("sum of amount", "SELECT sum(amount) FROM fct_orders"),
    ("average order amount", "SELECT avg(amount) FROM fct_orders"),
    ("mean order value", "SELECT avg(amount) FROM fct_orders"),
    ("highest order amount", "SELECT max(amount) FROM fct_orders"),
    ("smallest order amount", "SELECT min(amount) FROM fct_orders"),
    ("minimum amount", "SELECT min(amount) FROM fct_orders"),
    ("orders by status", "SELECT status, count(*) FROM fct_orders GROUP BY 1"),
    ("number of orders per status", "SELECT status, count(*) FROM fct_orders GROUP BY 1"),
    ("how many orders for each status", "SELECT status, count(*) FROM fct_orders GROUP BY 1"),
    ("count orders by country", "SELECT country_code, count(*) FROM fct_orders GROUP BY 1"),
    ("total amount by country", "SELECT country_code, sum(amount) FROM fct_orders GROUP BY 1"),
    ("revenue per country", "SELECT country_code, sum(amount) FROM fct_orders GROUP BY 1"),
    ("average amount by status", "SELECT status, avg(amount) FROM fct_orders GROUP BY 1"),
    ("customers by country", "SELECT country_code, count(*) FROM dim_customers GROUP BY 1"),
    ("how many customers per country", "SELECT country_code, count(*) FROM dim_customers GROUP BY 1"),
    ("number of customers in each country", "SELECT country_code, count(*) FROM dim_customers GROUP BY 1"),
    (
        "how many orders in March 2026",
        "SELECT count(*) FROM fct_orders WHERE ordered_on >= DATE '2026-03-01' AND ordered_on < DATE '2026-04-01'",
    ),
    ("total amount in 2026", "SELECT sum(amount) FROM fct_orders WHERE year(ordered_on) = 2026"),
    ("orders since 2026-03-08", "SELECT * FROM fct_orders WHERE ordered_on >= DATE '2026-03-08'"),
    ("how many orders before 2026-03-07", "SELECT count(*) FROM fct_orders WHERE ordered_on < DATE '2026-03-07'"),
    (
        "total amount between 2026-03-05 and 2026-03-10",
        "SELECT sum(amount) FROM fct_orders WHERE ordered_on BETWEEN DATE '2026-03-05' AND DATE '2026-03-10'",
    ),
    ("how many completed orders", "SELECT count(*) FROM fct_orders WHERE status = 'completed'"),
    ("total amount of shipped orders", "SELECT sum(amount) FROM fct_orders WHERE status = 'shipped'"),
    ("number of returned orders", "SELECT count(*) FROM fct_orders WHERE status = 'returned'"),
    ("average amount of completed orders", "SELECT avg(amount) FROM fct_orders WHERE status = 'completed'"),
    ("how many orders with status placed", "SELECT count(*) FROM fct_orders WHERE status = 'placed'"),
    ("how many customers from US", "SELECT count(*) FROM dim_customers WHERE country_code = 'US'"),
    ("how many orders in GB", "SELECT count(*) FROM fct_orders WHERE country_code = 'GB'"),
    ("total amount of orders from US", "SELECT sum(amount) FROM fct_orders WHERE country_code = 'US'"),
    (
        "top 5 customers by total order amount",
        f"SELECT c.full_name, sum(o.amount) {ORDERS_BY_CUSTOMER} GROUP BY 1 ORDER BY 2 DESC LIMIT 5",
    ),
    (
        "top 3 customers by amount",
        f"SELECT c.full_name, sum(o.amount) {ORDERS_BY_CUSTOMER} GROUP BY 1 ORDER BY 2 DESC LIMIT 3",
    ),
    (
        "top 2 countries by revenue",
        "SELECT country_code, sum(amount) FROM fct_orders GROUP BY 1 ORDER BY 2 DESC LIMIT 2",
    ),
    (
        "bottom 3 customers by total amount",
        f"SELECT c.full_name, sum(o.amount) {ORDERS_BY_CUSTOMER} GROUP BY 1 ORDER BY 2 ASC LIMIT 3",
    ),
    (
        "top 2 customers by number of orders",
        f"SELECT c.full_name, count(*) {ORDERS_BY_CUSTOMER} GROUP BY 1 ORDER BY 2 DESC LIMIT 2",
    ),
    ("top 3 orders by amount", "SELECT * FROM fct_orders ORDER BY amount DESC LIMIT 3"),
    ("how many events by event type", "SELECT event_type, count(*) FROM fct_customer_events GROUP BY 1"),
    ("number of checkout events", "SELECT count(*) FROM fct_customer_events WHERE event_type = 'checkout'"),
    ("events per customer", f"SELECT c.full_name, count(*) {EVENTS_BY_CUSTOMER} GROUP BY 1"),
    ("orders per customer", f"SELECT c.full_name, count(*) {ORDERS_BY_CUSTOMER} GROUP BY 1"),
    ("total amount per customer", f"SELECT c.full_name, sum(o.amount) {ORDERS_BY_CUSTOMER} GROUP BY 1"),
    ("average order amount per customer", f"SELECT c.full_name, avg(o.amount) {ORDERS_BY_CUSTOMER} GROUP BY 1"),
    (
        "how many orders does Ada Lovelace have",
        f"SELECT count(*) {ORDERS_BY_CUSTOMER} WHERE c.full_name = 'Ada Lovelace'",
    ),
    (
        "total amount for Barbara Liskov",
        f"SELECT sum(o.amount) {ORDERS_BY_CUSTOMER} WHERE c.full_name = 'Barbara Liskov'",
    ),
    ("orders by month", "SELECT strftime(ordered_on, '%Y-%m'), count(*) FROM fct_orders GROUP BY 1"),
    ("total amount per day", "SELECT ordered_on, sum(amount) FROM fct_orders GROUP BY 1"),
    ("number of orders per day", "SELECT ordered_on, count(*) FROM fct_orders GROUP BY 1"),
    ("average lifetime value of customers", "SELECT avg(lifetime_amount) FROM dim_customers"),
    ("total lifetime spend by country", "SELECT country_code, sum(lifetime_amount) FROM dim_customers GROUP BY 1"),
    ("maximum checkout count", "SELECT max(checkout_count) FROM customer_activity"),
    (
        "how many orders per country in March 2026",
        "SELECT country_code, count(*) FROM fct_orders WHERE ordered_on >= DATE '2026-03-01' "
        "AND ordered_on < DATE '2026-04-01' GROUP BY 1",
    ),
    (
        "total amount of completed orders by country",
        "SELECT country_code, sum(amount) FROM fct_orders WHERE status = 'completed' GROUP BY 1",
    ),
    ("list the orders", "SELECT * FROM fct_orders"),
    (
        "show all customers",
        "SELECT customer_id, full_name, country_code, order_count, lifetime_amount, first_ordered_on "
        "FROM dim_customers",
    ),
    ("sales by status in 2026", "SELECT status, sum(amount) FROM fct_orders WHERE year(ordered_on) = 2026 GROUP BY 1"),
    (
        "how many checkout events per customer",
        f"SELECT c.full_name, count(*) {EVENTS_BY_CUSTOMER} WHERE e.event_type = 'checkout' GROUP BY 1",
    ),
]
REFUSALS: list[tuple[str, str]] = [
    ("delete all orders", "write"),
    ("drop table fct_orders", "write"),
    ("update the status of order 101 to shipped", "write"),
    ("insert a new customer named Alan Turing", "write"),
    ("how many rows are in raw_orders", "other project"),
    ("count the rows of customers_snapshot", "other project"),
    ("show me the salaries from hr.payroll", "other project"),
    ("when did customers sign up", "masked"),
    ("how many customers signed up in 2026", "masked"),
    ("list customer signup dates by country", "masked"),
]


def build_warehouse(folder: Path) -> Path:
    """`dbt build` of examples/dbt on a DuckDB file in ``folder`` (in a child process: dbt keeps it open)."""
    profiles = folder / "profiles"
    profiles.mkdir(parents=True, exist_ok=True)
    database = folder / "shop.duckdb"
    (profiles / "profiles.yml").write_text(
        f"lakehouse_shop:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: {database}\n"
        "      threads: 1\n", encoding="utf-8",
    )  # fmt: skip
    project = folder / "dbt"
    subprocess.run(["cp", "-r", str(ROOT / "examples" / "dbt"), str(project)], check=True)
    dbt = Path(sys.executable).with_name("dbt")
    subprocess.run([str(dbt), "build", "--project-dir", str(project), "--profiles-dir", str(profiles), "--quiet"],
                   check=True)  # fmt: skip
    return database


def warehouse_policy(
    database: Path, readable: tuple[str, ...] = READABLE, masked: set[str] | None = None
) -> nl2sql.AccessPolicy:
    """The policy of the bench's reader over the warehouse: columns and types from DuckDB, the values of
    short text columns (statuses, countries, event types, names) as the sample values a catalog holds."""
    tables: dict[str, nl2sql.Table] = {}
    with duckdb.connect(str(database), read_only=True) as conn:
        for name in readable:
            columns = {c: nl2sql.numeric_type(t) for c, t in conn.execute(
                "select column_name, data_type from information_schema.columns where table_schema = 'main' "
                "and table_name = ? order by ordinal_position", [name]).fetchall()}  # fmt: skip
            values: dict[str, list[str]] = {}
            for column, kind in columns.items():
                if kind == "VARCHAR":
                    found = [r[0] for r in conn.execute(f'select distinct "{column}" from main."{name}" limit 13')
                             .fetchall() if r[0] is not None]  # fmt: skip
                    if len(found) <= 12 and all(len(v) <= 40 for v in found):
                        values[column] = sorted(found)
            first = next(iter(columns))
            tables[name] = nl2sql.Table(name, columns, key=first if first.endswith("_id") else None, values=values)
    return nl2sql.AccessPolicy(tables, nl2sql.infer_relationships(tables), set(MASKED if masked is None else masked),
                               str(database))  # fmt: skip


def _normalise(rows: list[tuple[Any, ...]]) -> list[tuple[str, ...]]:
    def cell(value: Any) -> str:
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    return sorted(tuple(cell(v) for v in row) for row in rows)


def score(policy: nl2sql.AccessPolicy, translate: Any, verbose: bool) -> tuple[int, int, int, int, int]:
    """(attempted, correct, unanswered, refusals right, refusals asked) for one translator."""
    attempted = correct = unanswered = 0
    with duckdb.connect(str(policy.database), read_only=True) as conn:
        for question, gold in QUESTIONS:
            translation = translate(question, policy)
            if translation.refused:
                unanswered += 1
                if verbose:
                    print(f"  -      {question!r}: {translation.message}")
                continue
            attempted += 1
            try:
                ok = _normalise(conn.execute(translation.sql).fetchall()) == _normalise(conn.execute(gold).fetchall())
            except duckdb.Error as exc:
                ok = False
                translation.message = str(exc)
            correct += ok
            if verbose or not ok:
                print(f"  {'ok   ' if ok else 'WRONG'}  {question!r}: {' '.join(str(translation.sql).split())}")
    refused_right = 0
    for question, kind in REFUSALS:
        translation = translate(question, policy)
        refused_right += translation.refused
        if verbose or not translation.refused:
            print(f"  {'refused' if translation.refused else 'ANSWERED'} ({kind}) {question!r}: "
                  f"{translation.message if translation.refused else translation.sql}")  # fmt: skip
    return attempted, correct, unanswered, refused_right, len(REFUSALS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warehouse", type=Path, help="a built shop.duckdb (default: build one now)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lh-nl2sql-") as folder:
        database = args.warehouse or build_warehouse(Path(folder))
        policy = warehouse_policy(database)
        providers = [("built-in", lambda q, p: nl2sql.Translator(p).translate(q))]
        if nl2sql.llm_configured():
            providers.append(("llm", nl2sql.translate_with_llm))
        print(f"NL→SQL bench: {len(QUESTIONS)} questions with gold SQL, {len(REFUSALS)} to refuse "
              f"({len(policy.tables)} readable tables, {len(policy.masked)} masked columns)")  # fmt: skip
        for name, translate in providers:
            attempted, correct, unanswered, refused, refusals = score(policy, translate, args.verbose)
            accuracy = correct / attempted if attempted else 0.0
            print(f"{name}: execution accuracy {correct}/{attempted} attempted = {accuracy:.1%} "
                  f"(target >= 70%); not attempted {unanswered}/{len(QUESTIONS)}; "
                  f"refusals right {refused}/{refusals} = {refused / refusals:.1%} (target >= 90%)")  # fmt: skip


if __name__ == "__main__":
    main()
