{#- One row per customer known before the day, built only from what was known before it. The day
    is var `as_of` (a published run) or each day of var `as_of_days` (training snapshots, one row
    per customer and day): the same code for both. Every feature has a plain meaning; the models in
    models/ explain scores through them.

    Point in time: an order counts from the moment it was placed, but its status (cancelled,
    returned, delivery problem) only from the moment that status was recorded (`updated_at`). An
    order changed on or after the day counts in its latest state recorded before the day (from
    the extract's history), or, with none, as placed: not cancelled, not returned, no known delivery
    problem. A ticket's survey score likewise counts only once recorded; until then its sentiment
    is the text's.

    On DuckDB the published day's table is built incrementally (macros/incremental.sql): a build
    computes only the customers whose rows changed since the last one (int_features_changed), after
    its pre-hook deleted their rows; a new day, a new season figure or a changed model recomputes
    everyone. The result equals a full build (tests/test_transform_incremental.py). -#}

{{ config(
    materialized=('incremental' if features_incremental() else 'table'),
    incremental_strategy='append',
    on_schema_change='sync_all_columns',
    pre_hook=("{{ forget_changed('int_features_changed') }}" if features_incremental() else []),
    post_hook=("{{ keep_inputs('int_feature_inputs') }}" if features_incremental() else []),
) }}
{%- set categories = var('categories') %}
-- depends_on: {{ ref('int_features_changed') }}
-- depends_on: {{ ref('int_feature_inputs') }}

with

days as (

    {{ snapshot_days_table() }}

),

customers as (

    select
        days.*,
        contacts.contact_id,
        contacts.signup_date
    from {{ ref('stg_contacts') }} as contacts
    inner join days on contacts.signup_date < days.as_of
    {%- if sample_per_mille() < 1000 %}
    where {{ in_sample('contacts.contact_id', 'days.as_of') }}
    {%- elif is_incremental() %}
    {# an incremental build: only the customers whose rows changed #}
    where contacts.contact_id in (select contact_id from {{ ref('int_features_changed') }})
    {%- endif %}

),

placed as (

    {#- every order placed before the day, with its current state and whether that state was
        already recorded then -#}
    select
        customers.as_of,
        customers.as_of_ts,
        customers.d30_ts,
        customers.d90_ts,
        customers.d180_ts,
        customers.d360_ts,
        customers.d365_ts,
        customers.last_year_horizon_end_ts,
        orders.order_id,
        orders.contact_id,
        orders.ordered_at,
        orders.total_eur,
        orders.has_discount,
        orders.is_cancelled,
        orders.is_returned,
        orders.has_delivery_problem,
        orders.updated_at < customers.as_of_ts as state_known
    from {{ ref('int_orders') }} as orders
    inner join customers
        on orders.contact_id = customers.contact_id
        and orders.ordered_at < customers.as_of_ts

),

earlier_states as (

    {#- for orders changed on or after the day: their newest state recorded before it -#}
    select
        as_of,
        order_id,
        is_cancelled,
        is_returned,
        has_delivery_problem
    from (
        select
            placed.as_of,
            history.order_id,
            history.is_cancelled,
            history.is_returned,
            history.has_delivery_problem,
            row_number() over (
                partition by placed.as_of, history.order_id order by history.updated_at desc
            ) as newest_first
        from placed
        inner join {{ ref('stg_order_history') }} as history
            on placed.order_id = history.order_id
            and history.updated_at < placed.as_of_ts
        where not placed.state_known
    ) as ranked
    where newest_first = 1

),

orders_as_known as (

    select
        placed.as_of,
        placed.as_of_ts,
        placed.d30_ts,
        placed.d90_ts,
        placed.d180_ts,
        placed.d360_ts,
        placed.d365_ts,
        placed.last_year_horizon_end_ts,
        placed.order_id,
        placed.contact_id,
        placed.ordered_at,
        placed.total_eur,
        placed.has_discount,
        case
            when placed.state_known then placed.is_cancelled else coalesce(earlier_states.is_cancelled, false)
        end as is_cancelled,
        case
            when placed.state_known then placed.is_returned else coalesce(earlier_states.is_returned, false)
        end as is_returned,
        case
            when placed.state_known then placed.has_delivery_problem
            else coalesce(earlier_states.has_delivery_problem, false)
        end as has_delivery_problem
    from placed
    left join earlier_states
        on placed.as_of = earlier_states.as_of
        and placed.order_id = earlier_states.order_id

),

orders as (

    select * from orders_as_known
    where not is_cancelled

),

order_stats as (

    select
        as_of,
        contact_id,
        count(*) as orders_lifetime,
        sum(case when ordered_at >= d30_ts then 1 else 0 end) as orders_30d,
        sum(case when ordered_at >= d90_ts then 1 else 0 end) as orders_90d,
        sum(case when ordered_at >= d180_ts then 1 else 0 end) as orders_180d,
        sum(case when ordered_at >= d365_ts then 1 else 0 end) as orders_365d,
        sum(
            case when ordered_at >= d365_ts and ordered_at < last_year_horizon_end_ts then 1 else 0 end
        ) as orders_same_window_last_year,
        sum(cast(exp(-{{ days_between('ordered_at', 'as_of_ts') }} / 90.0) as decimal(18, 9))) as orders_decayed_90d,
        sum(case when not is_returned then total_eur else 0 end) as spend_lifetime_eur,
        sum(case when not is_returned and ordered_at >= d90_ts then total_eur else 0 end) as spend_90d_eur,
        sum(case when not is_returned and ordered_at >= d180_ts then total_eur else 0 end) as spend_180d_eur,
        sum(
            case when not is_returned and ordered_at >= d360_ts and ordered_at < d180_ts then total_eur else 0 end
        ) as spend_prior_180d_eur,
        sum(case when not is_returned and ordered_at >= d365_ts then total_eur else 0 end) as spend_365d_eur,
        avg(total_eur) as avg_order_value_eur,
        min(ordered_at) as first_order_at,
        max(ordered_at) as last_order_at,
        avg(case when has_discount then cast(1 as double precision) else 0 end) as discount_share,
        avg(
            case when ordered_at >= d180_ts then case when has_discount then 1.0 else 0.0 end end
        ) as discount_share_180d,
        avg(case when is_returned then cast(1 as double precision) else 0 end) as return_rate,
        sum(
            case when has_delivery_problem and ordered_at >= d180_ts then 1 else 0 end
        ) as delivery_problems_180d
    from orders
    group by as_of, contact_id

),

gaps as (

    {#- each order with the time since the customer's previous one, and whether it fell on a new UTC
        day: the orders in time order, so a day count needs no count(distinct), whose per-customer
        sets DuckDB keeps in memory (it ran out of 4 GB at 1,000,000 customers) -#}
    select
        as_of,
        contact_id,
        {{ seconds_between('lag(ordered_at) over by_time', 'ordered_at') }} as gap_seconds,
        case
            when floor(extract(epoch from ordered_at) / 86400)
                = floor(extract(epoch from lag(ordered_at) over by_time) / 86400)
                then 0
            else 1
        end as new_day,
        row_number() over (partition by as_of, contact_id order by ordered_at desc) as newest_first
    from orders
    window by_time as (partition by as_of, contact_id order by ordered_at)

),

gap_stats as (

    {#- one row per customer with an order; the gaps are NULL for a customer with a single order -#}
    select
        as_of,
        contact_id,
        sum(new_day) as purchase_days,
        avg(gap_seconds) / 86400.0 as mean_gap_days,
        avg(case when newest_first <= 3 then gap_seconds end) / 86400.0 as recent_gap_days
    from gaps
    group by as_of, contact_id

),

lines as (

    select
        orders.as_of,
        orders.contact_id,
        order_lines.category,
        order_lines.line_eur
    from {{ ref('int_order_lines') }} as order_lines
    inner join orders on order_lines.order_id = orders.order_id

),

category_stats as (

    select
        as_of,
        contact_id,
        {#- how many of the categories they bought from (a sum of flags, not a count(distinct): see gaps;
            the raw gate and stg_products' accepted_values keep every category in this list) #}
        {%- for category in categories %}
        max(case when category = '{{ category }}' then 1 else 0 end){{ " +" if not loop.last else " as n_categories," }}
        {%- endfor %}
        {%- for category in categories %}
        {{ ratio("sum(case when category = '" ~ category ~ "' then line_eur else 0 end)", "sum(line_eur)") }}
            as share_{{ category }}{{ "," if not loop.last }}
        {%- endfor %}
    from lines
    group by as_of, contact_id

),

email_recent_events as (

    {#- Engagement belongs to the send it answers: an open on day 59 of an e-mail sent on day 61 is
        the older window's. So a window counts its sends and, of those, the ones opened or clicked
        (before the day); rates are shares of sends and never exceed 1. The windows reach back 180
        days, so only the sends with an event in those days are grouped (a third of the events
        at 1,000,000 customers); their earlier events are looked up below. -#}
    select
        customers.as_of,
        customers.d60_ts,
        customers.d180_ts,
        events.contact_id,
        events.campaign_id,
        events.event_type,
        events.occurred_at
    from {{ ref('stg_email_events') }} as events
    inner join customers
        on events.contact_id = customers.contact_id
        and events.occurred_at < customers.as_of_ts
        and events.occurred_at >= customers.d180_ts

),

recent_sends as (

    select
        as_of,
        contact_id,
        campaign_id,
        min(d60_ts) as d60_ts,
        min(d180_ts) as d180_ts,
        min(case when event_type = 'sent' then occurred_at end) as sent_at,
        max(case when event_type = 'open' then 1 else 0 end) as opened,
        max(case when event_type = 'click' then 1 else 0 end) as clicked
    from email_recent_events
    group by as_of, contact_id, campaign_id

),

earlier_events as (

    {#- the same sends' events from before the 180 days: an earlier `sent` makes it an older send
        (outside both windows), an earlier open or click still counts as one -#}
    select
        recent_sends.as_of,
        recent_sends.contact_id,
        recent_sends.campaign_id,
        min(case when events.event_type = 'sent' then events.occurred_at end) as sent_at,
        max(case when events.event_type = 'open' then 1 else 0 end) as opened,
        max(case when events.event_type = 'click' then 1 else 0 end) as clicked
    from {{ ref('stg_email_events') }} as events
    inner join recent_sends
        on events.contact_id = recent_sends.contact_id
        and events.campaign_id = recent_sends.campaign_id
        and events.occurred_at < recent_sends.d180_ts
    group by recent_sends.as_of, recent_sends.contact_id, recent_sends.campaign_id

),

email_per_send as (

    select
        recent_sends.as_of,
        recent_sends.contact_id,
        recent_sends.d60_ts,
        recent_sends.d180_ts,
        coalesce(earlier_events.sent_at, recent_sends.sent_at) as sent_at,
        greatest(recent_sends.opened, coalesce(earlier_events.opened, 0)) as opened,
        greatest(recent_sends.clicked, coalesce(earlier_events.clicked, 0)) as clicked
    from recent_sends
    left join earlier_events
        on recent_sends.as_of = earlier_events.as_of
        and recent_sends.contact_id = earlier_events.contact_id
        and recent_sends.campaign_id = earlier_events.campaign_id

),

email as (

    select
        as_of,
        contact_id,
        sum(case when sent_at >= d60_ts then 1 else 0 end) as sends_60d,
        sum(case when sent_at >= d60_ts then opened else 0 end) as opens_60d,
        sum(case when sent_at >= d60_ts then clicked else 0 end) as clicks_60d,
        sum(case when sent_at < d60_ts and sent_at >= d180_ts then 1 else 0 end) as sends_prior_120d,
        sum(case when sent_at < d60_ts and sent_at >= d180_ts then opened else 0 end) as opens_prior_120d,
        sum(case when sent_at < d60_ts and sent_at >= d180_ts then clicked else 0 end) as clicks_prior_120d
    from email_per_send
    group by as_of, contact_id

),

email_ever as (

    {#- the latest open and any unsubscribe before the day, however long ago -#}
    select
        customers.as_of,
        events.contact_id,
        max(case when events.event_type = 'open' then events.occurred_at end) as last_open_at,
        max(case when events.event_type = 'unsubscribe' then 1 else 0 end) as unsubscribed
    from {{ ref('stg_email_events') }} as events
    inner join customers
        on events.contact_id = customers.contact_id
        and events.occurred_at < customers.as_of_ts
    where events.event_type in ('open', 'unsubscribe')
    group by customers.as_of, events.contact_id

),

tickets_opened as (

    select
        customers.as_of,
        customers.as_of_ts,
        customers.d90_ts,
        customers.d365_ts,
        tickets.ticket_id,
        tickets.contact_id,
        tickets.created_at,
        tickets.text_sentiment,
        tickets.satisfaction_score,
        tickets.updated_at < customers.as_of_ts as state_known
    from {{ ref('stg_support_tickets') }} as tickets
    inner join customers
        on tickets.contact_id = customers.contact_id
        and tickets.created_at < customers.as_of_ts

),

earlier_scores as (

    {#- for tickets changed on or after the day: the survey score recorded before it, if any -#}
    select
        as_of,
        ticket_id,
        satisfaction_score
    from (
        select
            tickets_opened.as_of,
            history.ticket_id,
            history.satisfaction_score,
            row_number() over (
                partition by tickets_opened.as_of, history.ticket_id order by history.updated_at desc
            ) as newest_first
        from tickets_opened
        inner join {{ ref('stg_ticket_history') }} as history
            on tickets_opened.ticket_id = history.ticket_id
            and history.updated_at < tickets_opened.as_of_ts
        where not tickets_opened.state_known
    ) as ranked
    where newest_first = 1

),

tickets_as_known as (

    select
        tickets_opened.*,
        case
            when tickets_opened.state_known then tickets_opened.satisfaction_score
            else earlier_scores.satisfaction_score
        end as known_score
    from tickets_opened
    left join earlier_scores
        on tickets_opened.as_of = earlier_scores.as_of
        and tickets_opened.ticket_id = earlier_scores.ticket_id

),

tickets as (

    select
        as_of,
        contact_id,
        sum(case when created_at >= d90_ts then 1 else 0 end) as tickets_90d,
        sum(case when created_at >= d365_ts then 1 else 0 end) as tickets_365d,
        sum(
            case
                when {{ ticket_sentiment('known_score', 'text_sentiment') }} = 'negative' and created_at >= d90_ts
                    then 1
                else 0
            end
        ) as negative_tickets_90d,
        sum(
            case
                when {{ ticket_sentiment('known_score', 'text_sentiment') }} = 'negative' and created_at >= d365_ts
                    then 1
                else 0
            end
        ) as negative_tickets_365d,
        avg(case when created_at >= d365_ts then cast(known_score as double precision) end)
            as avg_satisfaction_365d
    from tickets_as_known
    group by as_of, contact_id

),

topics_opened as (

    {#- each ticket's topic and classifier sentiment (voc): text-derived, known from creation -#}
    select
        customers.as_of,
        customers.d90_ts,
        customers.d365_ts,
        topics.contact_id,
        topics.topic,
        topics.topic_id,
        topics.created_at,
        case when topics.sentiment = 'negative' then 1 else 0 end as is_negative
    from {{ ref('stg_ticket_topics') }} as topics
    inner join customers
        on topics.contact_id = customers.contact_id
        and topics.created_at < customers.as_of_ts

),

complaint_topics as (

    select
        as_of,
        contact_id,
        topic,
        topic_id,
        count(*) as complaints,
        max(created_at) as latest_at
    from topics_opened
    where is_negative = 1 and created_at >= d90_ts
    group by as_of, contact_id, topic, topic_id

),

top_complaint as (

    {#- the topic with the most complaints in 90 days; ties: the latest complaint, then the name -#}
    select
        as_of,
        contact_id,
        topic,
        topic_id,
        complaints
    from (
        select
            complaint_topics.*,
            row_number() over (
                partition by as_of, contact_id order by complaints desc, latest_at desc, topic
            ) as most_first
        from complaint_topics
    ) as ranked
    where most_first = 1

),

topic_year as (

    select
        as_of,
        contact_id,
        topic,
        count(*) as tickets
    from topics_opened
    where created_at >= d365_ts
    group by as_of, contact_id, topic

),

topic_stats as (

    select
        topic_year.as_of,
        topic_year.contact_id,
        cast(max(topic_year.tickets) as double precision) / sum(topic_year.tickets) as top_topic_share_365d,
        max(complaints_90d.complaints) as complaints_90d
    from topic_year
    left join (
        select
            as_of,
            contact_id,
            sum(complaints) as complaints
        from complaint_topics
        group by as_of, contact_id
    ) as complaints_90d
        on topic_year.as_of = complaints_90d.as_of and topic_year.contact_id = complaints_90d.contact_id
    group by topic_year.as_of, topic_year.contact_id

),

consent_log as (

    select
        customers.as_of,
        consents.contact_id,
        consents.channel,
        consents.consent_event,
        row_number() over (
            partition by customers.as_of, consents.contact_id, consents.channel
            order by consents.recorded_at desc, consents.consent_id desc
        ) as newest_first
    from {{ ref('stg_consents') }} as consents
    inner join customers
        on consents.contact_id = customers.contact_id
        and consents.recorded_at < customers.as_of_ts

),

consent as (

    select
        as_of,
        contact_id,
        bool_or(channel = 'email' and newest_first = 1 and consent_event = 'opt_in') as email_consent,
        bool_or(channel = 'sms' and newest_first = 1 and consent_event = 'opt_in') as sms_consent,
        bool_or(consent_event = 'objection') as marketing_objection
    from consent_log
    group by as_of, contact_id

),

final as (

    select
        ----------  ids
        customers.contact_id,
        customers.as_of,

        ----------  relationship
        cast(customers.as_of - customers.signup_date as double precision) as tenure_days,
        {{ days_between('order_stats.first_order_at', 'customers.as_of_ts') }} as first_order_days,

        ----------  purchases: recency, frequency, monetary
        order_stats.contact_id is not null as has_ordered,
        {{ days_between('order_stats.last_order_at', 'customers.as_of_ts') }} as recency_days,
        coalesce(order_stats.orders_lifetime, 0) as orders_lifetime,
        coalesce(gap_stats.purchase_days, 0) as purchase_days,
        coalesce(order_stats.orders_30d, 0) as orders_30d,
        coalesce(order_stats.orders_90d, 0) as orders_90d,
        coalesce(order_stats.orders_180d, 0) as orders_180d,
        coalesce(order_stats.orders_365d, 0) as orders_365d,
        cast(coalesce(order_stats.orders_decayed_90d, 0) as double precision) as orders_decayed_90d,
        coalesce(order_stats.orders_same_window_last_year, 0) as orders_same_window_last_year,
        cast(coalesce(order_stats.spend_lifetime_eur, 0) as double precision) as spend_lifetime_eur,
        cast(coalesce(order_stats.spend_90d_eur, 0) as double precision) as spend_90d_eur,
        cast(coalesce(order_stats.spend_180d_eur, 0) as double precision) as spend_180d_eur,
        cast(coalesce(order_stats.spend_prior_180d_eur, 0) as double precision) as spend_prior_180d_eur,
        cast(coalesce(order_stats.spend_365d_eur, 0) as double precision) as spend_365d_eur,
        cast(order_stats.avg_order_value_eur as double precision) as avg_order_value_eur,

        ----------  rhythm: time between purchases, and how the latest compares
        gap_stats.mean_gap_days,
        gap_stats.recent_gap_days,
        {{ ratio('gap_stats.recent_gap_days', 'gap_stats.mean_gap_days') }} as gap_trend_ratio,
        {{ ratio(days_between('order_stats.last_order_at', 'customers.as_of_ts'), 'gap_stats.mean_gap_days') }}
            as recency_vs_usual,

        ----------  what and how they buy
        coalesce(category_stats.n_categories, 0) as n_categories,
        greatest(
            {%- for category in categories %}
            coalesce(category_stats.share_{{ category }}, 0){{ "," if not loop.last }}
            {%- endfor %}
        ) as top_category_share,
        {%- for category in categories %}
        coalesce(category_stats.share_{{ category }}, 0) as share_{{ category }},
        {%- endfor %}
        coalesce(order_stats.discount_share, 0) as discount_share,
        order_stats.discount_share_180d,
        order_stats.discount_share_180d - coalesce(order_stats.discount_share, 0) as discount_share_change_180d,
        coalesce(order_stats.return_rate, 0) as return_rate,
        coalesce(order_stats.delivery_problems_180d, 0) as delivery_problems_180d,
        coalesce({{ ratio('order_stats.delivery_problems_180d', 'order_stats.orders_180d') }}, 0)
            as delivery_problem_share_180d,

        ----------  e-mail engagement, recent 60 days against the 120 before
        coalesce(email.sends_60d, 0) as email_sends_60d,
        coalesce(email.opens_60d, 0) as email_opens_60d,
        coalesce(email.clicks_60d, 0) as email_clicks_60d,
        coalesce(email.sends_prior_120d, 0) as email_sends_prior_120d,
        {{ ratio('email.opens_60d', 'email.sends_60d') }} as open_rate_60d,
        {{ ratio('email.opens_prior_120d', 'email.sends_prior_120d') }} as open_rate_prior_120d,
        {{ ratio('email.opens_60d', 'email.sends_60d') }} - {{ ratio('email.opens_prior_120d', 'email.sends_prior_120d') }}
            as open_rate_change,
        {{ ratio('email.clicks_60d', 'email.sends_60d') }} as click_rate_60d,
        {{ ratio('email.clicks_prior_120d', 'email.sends_prior_120d') }} as click_rate_prior_120d,
        {{ ratio('email.clicks_60d', 'email.sends_60d') }} - {{ ratio('email.clicks_prior_120d', 'email.sends_prior_120d') }}
            as click_rate_change,
        {{ days_between('email_ever.last_open_at', 'customers.as_of_ts') }} as days_since_last_open,
        coalesce(email_ever.unsubscribed, 0) = 1 as unsubscribed,

        ----------  service
        coalesce(tickets.tickets_90d, 0) as tickets_90d,
        coalesce(tickets.tickets_365d, 0) as tickets_365d,
        coalesce(tickets.negative_tickets_90d, 0) as negative_tickets_90d,
        coalesce(tickets.negative_tickets_365d, 0) as negative_tickets_365d,
        tickets.avg_satisfaction_365d,

        ----------  what they complain about (voc topics and classifier sentiment of the ticket text)
        coalesce(topic_stats.complaints_90d, 0) as complaints_90d,
        top_complaint.topic as top_complaint_topic_90d,
        top_complaint.topic_id as top_complaint_topic_id_90d,
        coalesce(top_complaint.complaints, 0) as top_complaint_topic_count_90d,
        topic_stats.top_topic_share_365d,

        ----------  the shop's season: context for calibration, the same for every customer of a day
        season.shop_season_index,

        ----------  consent as of the day (from the consents log)
        coalesce(consent.email_consent, false) as email_consent,
        coalesce(consent.sms_consent, false) as sms_consent,
        coalesce(consent.marketing_objection, false) as marketing_objection

    from customers
    left join order_stats
        on customers.contact_id = order_stats.contact_id and customers.as_of = order_stats.as_of
    left join gap_stats
        on customers.contact_id = gap_stats.contact_id and customers.as_of = gap_stats.as_of
    left join category_stats
        on customers.contact_id = category_stats.contact_id and customers.as_of = category_stats.as_of
    left join email
        on customers.contact_id = email.contact_id and customers.as_of = email.as_of
    left join email_ever
        on customers.contact_id = email_ever.contact_id and customers.as_of = email_ever.as_of
    left join tickets
        on customers.contact_id = tickets.contact_id and customers.as_of = tickets.as_of
    left join consent
        on customers.contact_id = consent.contact_id and customers.as_of = consent.as_of
    left join topic_stats
        on customers.contact_id = topic_stats.contact_id and customers.as_of = topic_stats.as_of
    left join top_complaint
        on customers.contact_id = top_complaint.contact_id and customers.as_of = top_complaint.as_of
    left join {{ ref('int_shop_season') }} as season on customers.as_of = season.as_of

)

select * from final
