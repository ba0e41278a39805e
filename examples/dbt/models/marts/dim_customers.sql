with order_totals as (
    select
        customer_id,
        count(*) as order_count,
        sum(amount) as lifetime_amount,
        min(ordered_on) as first_ordered_on
    from {{ ref('stg_orders') }}
    where status <> 'returned'
    group by customer_id
)

select
    c.customer_id,
    c.full_name,
    c.country_code,
    c.signed_up_on,
    coalesce(o.order_count, 0) as order_count,
    coalesce(o.lifetime_amount, 0) as lifetime_amount,
    o.first_ordered_on
from {{ ref('stg_customers') }} as c
left join order_totals as o on o.customer_id = c.customer_id
