select
    o.order_id,
    o.customer_id,
    c.country_code,
    o.ordered_on,
    o.status,
    o.amount
from {{ ref('stg_orders') }} as o
join {{ ref('stg_customers') }} as c on c.customer_id = o.customer_id
