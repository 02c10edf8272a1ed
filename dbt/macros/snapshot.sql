{#- Snapshot days. customer_features and customer_labels describe customers as of one day (var
    `as_of`, what a run publishes) or, for training, as of several days at once (var `as_of_days`, a
    list), each computed exactly as the single day is. Every window boundary is worked out here as
    a literal 00:00 UTC timestamp, so no engine's session time zone (DST) moves it. -#}

{% macro snapshot_days() -%}
    {%- set days = var('as_of_days', none) -%}
    {%- if days is none or days | length == 0 -%}
        {%- set days = [var('as_of')] -%}
    {%- endif -%}
    {{ return(days | map('string') | list) }}
{%- endmacro %}

{% macro _day_ts(day, offset) -%}
    {%- set d = modules.datetime.date.fromisoformat(day) + modules.datetime.timedelta(days=offset | int) -%}
    cast('{{ d.isoformat() }} 00:00:00+00:00' as timestamp with time zone)
{%- endmacro %}

{#- One row per snapshot day with the boundaries every feature window and label uses. -#}
{% macro snapshot_days_table() -%}
    {%- set h = var('horizon_days') | int -%}
    select * from (
        values
        {%- for day in snapshot_days() %}
        (
            cast('{{ day }}' as date),
            {{ _day_ts(day, 0) }},
            {{ _day_ts(day, -30) }},
            {{ _day_ts(day, -60) }},
            {{ _day_ts(day, -90) }},
            {{ _day_ts(day, -180) }},
            {{ _day_ts(day, -360) }},
            {{ _day_ts(day, -365) }},
            {{ _day_ts(day, -365 + h) }},
            {{ _day_ts(day, -365 + h // 2 - 182) }},
            {{ _day_ts(day, -365 + h // 2 + 182) }},
            {{ _day_ts(day, h) }}
        ){{ "," if not loop.last }}
        {%- endfor %}
    ) as days (
        as_of, as_of_ts, d30_ts, d60_ts, d90_ts, d180_ts, d360_ts, d365_ts, last_year_horizon_end_ts,
        season_year_start_ts, season_year_end_ts, horizon_end_ts
    )
{%- endmacro %}

{#- Training snapshots may take a sample of customers per day (var `sample_per_mille`, 1-1000),
    picked by a hash of the customer and the day: the same sample for the same data, every time. -#}
{% macro sample_per_mille() -%}
    {{ return(var('sample_per_mille', 1000) | int) }}
{%- endmacro %}

{% macro in_sample(contact_id, day) -%}
    {{ return(adapter.dispatch('in_sample', 'clarion')(contact_id, day)) }}
{%- endmacro %}

{% macro default__in_sample(contact_id, day) -%}
    (abs(hashtext(cast({{ contact_id }} as text) || '/' || cast({{ day }} as text))) % 1000) < {{ sample_per_mille() }}
{%- endmacro %}

{% macro duckdb__in_sample(contact_id, day) -%}
    (hash({{ contact_id }}, {{ day }}) % 1000) < {{ sample_per_mille() }}
{%- endmacro %}

{#- An order's status flags, from its status columns: one definition for the current row and for
    the earlier states the extract keeps in history. -#}
{% macro order_status_flags(status, delivery_status) -%}
        {{ status }} = 'cancelled' as is_cancelled,
        {{ status }} = 'returned' as is_returned,
        coalesce({{ delivery_status }} in ('late', 'lost'), false) as has_delivery_problem
{%- endmacro %}

{#- A ticket's sentiment: the survey score when there is one (1-2 negative, 4-5 positive), else the
    lexicon's reading of the text. -#}
{% macro ticket_sentiment(score, text_sentiment) -%}
    case
        when {{ score }} <= 2 then 'negative'
        when {{ score }} >= 4 then 'positive'
        else {{ text_sentiment }}
    end
{%- endmacro %}
