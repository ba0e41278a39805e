select
    order_id,
    customer_id,
    cast(ordered_on as date) as ordered_on,
    status,
    amount_cents / 100.0 as amount
from {{ ref('raw_orders') }}
{% if var('inject_bad_order') %}
-- Deliberately bad data (var inject_bad_order): a refund booked as a negative order.
union all
select 999 as order_id, 1 as customer_id, cast('2026-03-20' as date) as ordered_on, 'completed' as status,
    -12.5 as amount
{% endif %}
