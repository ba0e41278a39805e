with event_counts as (
    select
        customer_id,
        count(*) as event_count,
        sum(case when event_type = 'checkout' then 1 else 0 end) as checkout_count,
        max(occurred_at) as last_seen_at
    from {{ ref('fct_customer_events') }}
    group by customer_id
)

select
    d.customer_id,
    d.full_name,
    d.order_count,
    coalesce(e.event_count, 0) as event_count,
    coalesce(e.checkout_count, 0) as checkout_count,
    e.last_seen_at
from {{ ref('dim_customers') }} as d
left join event_counts as e on e.customer_id = d.customer_id
