{#- One row per customer with a fingerprint of every row fct_campaign_exposures reads of them: their
    e-mail events, Clarion's holdouts of them and their orders (the columns the exposures use), plus
    the exposures' logic (macros/incremental.sql). The sum of the rows' hashes does not depend on
    their order, and any added, removed or changed row changes it. DuckDB only: elsewhere the
    exposures are built whole every time, and this model is empty. -#}

{% if exposures_incremental() %}

with

rows as (

    select
        contact_id,
        hash(event_id, campaign_id, event_type, variant_id, occurred_at) as row_hash
    from {{ ref('stg_email_events') }}

    union all

    select
        contact_id,
        hash('control', campaign_id, occurred_at) as row_hash
    from {{ ref('stg_clarion_holdouts') }}

    union all

    select
        contact_id,
        hash(order_id, ordered_at, total_eur, is_cancelled) as row_hash
    from {{ ref('int_orders') }}

),

fingerprints as (

    select
        contact_id,
        sum(cast(row_hash as hugeint))
            + cast(hash('{{ exposures_logic() }}') as hugeint) as fingerprint,
        count(*) as input_rows
    from rows
    group by contact_id

)

select * from fingerprints

{% else %}

select cast(null as bigint) as contact_id, cast(null as numeric) as fingerprint, 0 as input_rows
where false

{% endif %}
