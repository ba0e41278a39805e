-- Orders never have a negative amount (refunds are booked elsewhere); returns the offending rows.
select order_id, amount
from {{ ref('fct_orders') }}
where amount < 0
