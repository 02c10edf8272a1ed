{#- One row per customer with a fingerprint of every row customer_features reads of them: their
    contact row, their orders (with the earlier states kept in history and their lines' category,
    quantity and amount), e-mail events, tickets (with their earlier survey scores and their voc
    topics) and consents, plus the features' logic and the shop's season for the day
    (macros/incremental.sql). The contact and order columns of dim_customers and fct_orders are in
    it too, so their publication can rewrite only these customers' rows (transform/publish.py).
    The sum of the rows' hashes does not depend on their order, and any added, removed or changed
    row changes it. Only for the published day's incremental build
    (DuckDB); empty for training snapshots and elsewhere. -#}

{% if features_incremental() %}

with

rows as (

    select
        contact_id,
        hash(
            'contact', signup_date, country, age_band, email_consent, sms_consent, marketing_objection,
            source_system
        ) as row_hash
    from {{ ref('stg_contacts') }}

    union all

    select
        contact_id,
        hash(
            'order', order_id, ordered_at, total_eur, has_discount, is_cancelled, is_returned,
            has_delivery_problem, updated_at, order_status, channel, currency, discount_eur, item_count,
            units, delivery_status
        ) as row_hash
    from {{ ref('int_orders') }}

    union all

    select
        orders.contact_id,
        hash(
            'order state', history.order_id, history.updated_at, history.is_cancelled,
            history.is_returned, history.has_delivery_problem
        ) as row_hash
    from {{ ref('stg_order_history') }} as history
    inner join {{ ref('int_orders') }} as orders on history.order_id = orders.order_id

    union all

    select contact_id, hash('line', order_item_id, order_id, category, quantity, line_eur) as row_hash
    from {{ ref('int_order_lines') }}

    union all

    select contact_id, hash('event', event_id, campaign_id, event_type, occurred_at) as row_hash
    from {{ ref('stg_email_events') }}

    union all

    select
        contact_id,
        hash('ticket', ticket_id, created_at, text_sentiment, satisfaction_score, updated_at) as row_hash
    from {{ ref('stg_support_tickets') }}

    union all

    select
        tickets.contact_id,
        hash('ticket state', history.ticket_id, history.satisfaction_score, history.updated_at) as row_hash
    from {{ ref('stg_ticket_history') }} as history
    inner join {{ ref('stg_support_tickets') }} as tickets on history.ticket_id = tickets.ticket_id

    union all

    select contact_id, hash('topic', ticket_id, topic, topic_id, sentiment, created_at) as row_hash
    from {{ ref('stg_ticket_topics') }}

    union all

    select contact_id, hash('consent', consent_id, channel, consent_event, recorded_at) as row_hash
    from {{ ref('stg_consents') }}

),

shared as (

    select cast(hash('{{ features_logic() }}', list(shop_season_index order by as_of)) as hugeint) as logic
    from {{ ref('int_shop_season') }}

),

fingerprints as (

    select
        rows.contact_id,
        sum(cast(rows.row_hash as hugeint)) + any_value(shared.logic) as fingerprint,
        count(*) as input_rows
    from rows
    cross join shared
    group by rows.contact_id

)

select * from fingerprints

{% else %}

select cast(null as bigint) as contact_id, cast(null as numeric) as fingerprint, 0 as input_rows
where false

{% endif %}
