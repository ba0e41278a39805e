"""A DuckDB copy of the demo warehouse (examples/dbt's seeds and models, rebuilt in plain SQL) for fast tests;
bench/nl2sql.py builds the real one with `dbt build`."""

from __future__ import annotations

from pathlib import Path

import duckdb

from control_room.config import PROJECT_ROOT

SEEDS = PROJECT_ROOT / "examples" / "dbt" / "seeds"
EVENTS = """(1, 1, 'page_view', '2026-03-01 09:00:00'), (2, 1, 'add_to_cart', '2026-03-01 09:02:10'),
    (3, 1, 'checkout', '2026-03-01 09:05:42'), (4, 2, 'page_view', '2026-03-06 14:11:00'),
    (5, 2, 'checkout', '2026-03-06 14:20:31'), (6, 3, 'page_view', '2026-03-07 08:45:00'),
    (7, 4, 'page_view', '2026-03-09 19:03:12'), (8, 4, 'checkout', '2026-03-09 19:09:55'),
    (9, 5, 'page_view', '2026-03-12 11:30:00'), (10, 6, 'checkout', '2026-03-14 16:00:00')"""
MODELS = f"""
create table raw_customers as select * from read_csv('{SEEDS / "raw_customers.csv"}');
create table raw_orders as select * from read_csv('{SEEDS / "raw_orders.csv"}');
create table stg_customers as select customer_id, full_name, upper(country) as country_code,
    cast(signed_up_on as date) as signed_up_on from raw_customers;
create table stg_orders as select order_id, customer_id, cast(ordered_on as date) as ordered_on, status,
    amount_cents / 100.0 as amount from raw_orders;
create table stg_events as select event_id, customer_id, event_type, cast(occurred_at as timestamp) as occurred_at
    from (values {EVENTS}) as v (event_id, customer_id, event_type, occurred_at);
create table fct_customer_events as select *, 'tests' as loaded_by_invocation from stg_events;
create table fct_orders as select o.order_id, o.customer_id, c.country_code, o.ordered_on, o.status, o.amount
    from stg_orders o join stg_customers c on c.customer_id = o.customer_id;
create table dim_customers as with t as (select customer_id, count(*) as order_count, sum(amount) as lifetime_amount,
    min(ordered_on) as first_ordered_on from stg_orders where status <> 'returned' group by customer_id)
    select c.customer_id, c.full_name, c.country_code, c.signed_up_on, coalesce(t.order_count, 0) as order_count,
    coalesce(t.lifetime_amount, 0) as lifetime_amount, t.first_ordered_on
    from stg_customers c left join t on t.customer_id = c.customer_id;
create table customer_activity as with e as (select customer_id, count(*) as event_count,
    sum(case when event_type = 'checkout' then 1 else 0 end) as checkout_count, max(occurred_at) as last_seen_at
    from fct_customer_events group by customer_id)
    select d.customer_id, d.full_name, d.order_count, coalesce(e.event_count, 0) as event_count,
    coalesce(e.checkout_count, 0) as checkout_count, e.last_seen_at
    from dim_customers d left join e on e.customer_id = d.customer_id;
"""


def build_shop_warehouse(path: Path) -> Path:
    """The demo warehouse's tables in a DuckDB file at ``path``."""
    with duckdb.connect(str(path)) as conn:
        conn.execute(MODELS)
    return path
