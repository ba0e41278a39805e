{#
  Incremental: each run appends only events newer than the newest one already loaded. The
  invocation id records which dbt invocation loaded each row, so a run's share can be counted.
#}
{{ config(materialized='incremental', unique_key='event_id') }}

select
    event_id,
    customer_id,
    event_type,
    occurred_at,
    '{{ invocation_id }}' as loaded_by_invocation
from {{ ref('stg_events') }}
{% if is_incremental() %}
where occurred_at > (select max(occurred_at) from {{ this }})
{% endif %}
