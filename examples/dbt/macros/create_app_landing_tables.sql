{#
  The app's landing schema (`<target schema>_app`): the shop app writes its events there, outside
  dbt. This macro stands in for the app on an empty warehouse: it creates the table and loads a
  first batch of events once. New events arrive later by plain inserts (as the tests do), and the
  incremental model fct_customer_events picks up only those.
#}
{% macro create_app_landing_tables() %}
    {%- set app_schema = target.schema ~ '_app' -%}
    create schema if not exists {{ app_schema }};
    create table if not exists {{ app_schema }}.events (
        event_id integer not null primary key,
        customer_id integer not null,
        event_type varchar(40) not null,
        occurred_at timestamp not null
    );
    insert into {{ app_schema }}.events (event_id, customer_id, event_type, occurred_at)
    select v.event_id, v.customer_id, v.event_type, cast(v.occurred_at as timestamp)
    from (values
        (1, 1, 'page_view', '2026-03-01 09:00:00'),
        (2, 1, 'add_to_cart', '2026-03-01 09:02:10'),
        (3, 1, 'checkout', '2026-03-01 09:05:42'),
        (4, 2, 'page_view', '2026-03-06 14:11:00'),
        (5, 2, 'checkout', '2026-03-06 14:20:31'),
        (6, 3, 'page_view', '2026-03-07 08:45:00'),
        (7, 4, 'page_view', '2026-03-09 19:03:12'),
        (8, 4, 'checkout', '2026-03-09 19:09:55'),
        (9, 5, 'page_view', '2026-03-12 11:30:00'),
        (10, 6, 'checkout', '2026-03-14 16:00:00')
    ) as v (event_id, customer_id, event_type, occurred_at)
    where not exists (select 1 from {{ app_schema }}.events)
{% endmacro %}
