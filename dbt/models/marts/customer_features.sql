{#- One row per customer known before as_of, built only from what happened before it. Every
    feature has a plain meaning; the models in models/ explain scores through them. -#}
{%- set categories = var('categories') -%}

with

customers as (

    select
        contact_id,
        signup_date
    from {{ ref('stg_contacts') }}
    where signup_date < {{ as_of_date() }}

),

orders as (

    select *
    from {{ ref('int_orders') }}
    where ordered_at < {{ as_of_ts() }}
        and not is_cancelled

),

order_stats as (

    select
        contact_id,
        count(*) as orders_lifetime,
        sum(case when ordered_at >= {{ days_before_as_of(90) }} then 1 else 0 end) as orders_90d,
        sum(case when ordered_at >= {{ days_before_as_of(365) }} then 1 else 0 end) as orders_365d,
        sum(case when not is_returned then total_eur else 0 end) as spend_lifetime_eur,
        sum(
            case when not is_returned and ordered_at >= {{ days_before_as_of(90) }} then total_eur else 0 end
        ) as spend_90d_eur,
        sum(
            case when not is_returned and ordered_at >= {{ days_before_as_of(365) }} then total_eur else 0 end
        ) as spend_365d_eur,
        avg(total_eur) as avg_order_value_eur,
        max(ordered_at) as last_order_at,
        avg(case when has_discount then cast(1 as double precision) else 0 end) as discount_share,
        avg(case when is_returned then cast(1 as double precision) else 0 end) as return_rate,
        sum(case when ordered_at >= {{ days_before_as_of(180) }} then 1 else 0 end) as orders_180d,
        sum(
            case when has_delivery_problem and ordered_at >= {{ days_before_as_of(180) }} then 1 else 0 end
        ) as delivery_problems_180d
    from orders
    group by contact_id

),

gaps as (

    select
        contact_id,
        {{ days_between('lag(ordered_at) over (partition by contact_id order by ordered_at)', 'ordered_at') }}
            as gap_days,
        row_number() over (partition by contact_id order by ordered_at desc) as newest_first
    from orders

),

gap_stats as (

    select
        contact_id,
        avg(gap_days) as mean_gap_days,
        avg(case when newest_first <= 3 then gap_days end) as recent_gap_days
    from gaps
    where gap_days is not null
    group by contact_id

),

lines as (

    select
        contact_id,
        category,
        line_eur
    from {{ ref('int_order_lines') }}
    where ordered_at < {{ as_of_ts() }}
        and not is_cancelled

),

category_stats as (

    select
        contact_id,
        count(distinct category) as n_categories,
        {%- for category in categories %}
        {{ ratio("sum(case when category = '" ~ category ~ "' then line_eur else 0 end)", "sum(line_eur)") }}
            as share_{{ category }}{{ "," if not loop.last }}
        {%- endfor %}
    from lines
    group by contact_id

),

email_per_send as (

    {#- Engagement belongs to the send it answers: an open on day 59 of an e-mail sent on day 61 is
        the older window's. So a window counts its sends and, of those, the ones opened or clicked
        (before as_of); rates are shares of sends and never exceed 1. -#}
    select
        contact_id,
        campaign_id,
        min(case when event_type = 'sent' then occurred_at end) as sent_at,
        max(case when event_type = 'open' then 1 else 0 end) as opened,
        max(case when event_type = 'click' then 1 else 0 end) as clicked,
        max(case when event_type = 'open' then occurred_at end) as last_open_at,
        max(case when event_type = 'unsubscribe' then 1 else 0 end) as unsubscribed
    from {{ ref('stg_email_events') }}
    where occurred_at < {{ as_of_ts() }}
    group by contact_id, campaign_id

),

email as (

    select
        contact_id,
        sum(case when sent_at >= {{ days_before_as_of(60) }} then 1 else 0 end) as sends_60d,
        sum(case when sent_at >= {{ days_before_as_of(60) }} then opened else 0 end) as opens_60d,
        sum(case when sent_at >= {{ days_before_as_of(60) }} then clicked else 0 end) as clicks_60d,
        sum(
            case when sent_at < {{ days_before_as_of(60) }} and sent_at >= {{ days_before_as_of(180) }} then 1 else 0 end
        ) as sends_prior_120d,
        sum(
            case
                when sent_at < {{ days_before_as_of(60) }} and sent_at >= {{ days_before_as_of(180) }} then opened else 0
            end
        ) as opens_prior_120d,
        sum(
            case
                when sent_at < {{ days_before_as_of(60) }} and sent_at >= {{ days_before_as_of(180) }} then clicked else 0
            end
        ) as clicks_prior_120d,
        max(last_open_at) as last_open_at,
        max(unsubscribed) as unsubscribed
    from email_per_send
    group by contact_id

),

tickets as (

    select
        contact_id,
        sum(case when created_at >= {{ days_before_as_of(90) }} then 1 else 0 end) as tickets_90d,
        sum(case when created_at >= {{ days_before_as_of(365) }} then 1 else 0 end) as tickets_365d,
        sum(case when sentiment = 'negative' and created_at >= {{ days_before_as_of(90) }} then 1 else 0 end)
            as negative_tickets_90d,
        sum(case when sentiment = 'negative' and created_at >= {{ days_before_as_of(365) }} then 1 else 0 end)
            as negative_tickets_365d,
        avg(
            case when created_at >= {{ days_before_as_of(365) }} then cast(satisfaction_score as double precision) end
        ) as avg_satisfaction_365d
    from {{ ref('stg_support_tickets') }}
    where created_at < {{ as_of_ts() }}
    group by contact_id

),

consent_log as (

    select
        contact_id,
        channel,
        consent_event,
        row_number() over (partition by contact_id, channel order by recorded_at desc, consent_id desc) as newest_first
    from {{ ref('stg_consents') }}
    where recorded_at < {{ as_of_ts() }}

),

consent as (

    select
        contact_id,
        bool_or(channel = 'email' and newest_first = 1 and consent_event = 'opt_in') as email_consent,
        bool_or(channel = 'sms' and newest_first = 1 and consent_event = 'opt_in') as sms_consent,
        bool_or(consent_event = 'objection') as marketing_objection
    from consent_log
    group by contact_id

),

final as (

    select
        ----------  ids
        customers.contact_id,
        {{ as_of_date() }} as as_of,

        ----------  relationship
        cast({{ as_of_date() }} - customers.signup_date as double precision) as tenure_days,

        ----------  purchases: recency, frequency, monetary
        order_stats.contact_id is not null as has_ordered,
        {{ days_between('order_stats.last_order_at', as_of_ts()) }} as recency_days,
        coalesce(order_stats.orders_lifetime, 0) as orders_lifetime,
        coalesce(order_stats.orders_90d, 0) as orders_90d,
        coalesce(order_stats.orders_365d, 0) as orders_365d,
        coalesce(order_stats.spend_lifetime_eur, 0) as spend_lifetime_eur,
        coalesce(order_stats.spend_90d_eur, 0) as spend_90d_eur,
        coalesce(order_stats.spend_365d_eur, 0) as spend_365d_eur,
        order_stats.avg_order_value_eur,

        ----------  rhythm: time between purchases, and how the latest compares
        gap_stats.mean_gap_days,
        gap_stats.recent_gap_days,
        {{ ratio('gap_stats.recent_gap_days', 'gap_stats.mean_gap_days') }} as gap_trend_ratio,
        {{ ratio(days_between('order_stats.last_order_at', as_of_ts()), 'gap_stats.mean_gap_days') }}
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
        coalesce(order_stats.return_rate, 0) as return_rate,
        coalesce(order_stats.delivery_problems_180d, 0) as delivery_problems_180d,
        coalesce({{ ratio('order_stats.delivery_problems_180d', 'order_stats.orders_180d') }}, 0)
            as delivery_problem_share_180d,

        ----------  e-mail engagement, recent 60 days against the 120 before
        coalesce(email.sends_60d, 0) as email_sends_60d,
        coalesce(email.opens_60d, 0) as email_opens_60d,
        coalesce(email.clicks_60d, 0) as email_clicks_60d,
        {{ ratio('email.opens_60d', 'email.sends_60d') }} as open_rate_60d,
        {{ ratio('email.opens_prior_120d', 'email.sends_prior_120d') }} as open_rate_prior_120d,
        {{ ratio('email.opens_60d', 'email.sends_60d') }} - {{ ratio('email.opens_prior_120d', 'email.sends_prior_120d') }}
            as open_rate_change,
        {{ ratio('email.clicks_60d', 'email.sends_60d') }} as click_rate_60d,
        {{ ratio('email.clicks_prior_120d', 'email.sends_prior_120d') }} as click_rate_prior_120d,
        {{ ratio('email.clicks_60d', 'email.sends_60d') }} - {{ ratio('email.clicks_prior_120d', 'email.sends_prior_120d') }}
            as click_rate_change,
        {{ days_between('email.last_open_at', as_of_ts()) }} as days_since_last_open,
        coalesce(email.unsubscribed, 0) = 1 as unsubscribed,

        ----------  service
        coalesce(tickets.tickets_90d, 0) as tickets_90d,
        coalesce(tickets.tickets_365d, 0) as tickets_365d,
        coalesce(tickets.negative_tickets_90d, 0) as negative_tickets_90d,
        coalesce(tickets.negative_tickets_365d, 0) as negative_tickets_365d,
        tickets.avg_satisfaction_365d,

        ----------  consent as of as_of (from the consents log)
        coalesce(consent.email_consent, false) as email_consent,
        coalesce(consent.sms_consent, false) as sms_consent,
        coalesce(consent.marketing_objection, false) as marketing_objection

    from customers
    left join order_stats on customers.contact_id = order_stats.contact_id
    left join gap_stats on customers.contact_id = gap_stats.contact_id
    left join category_stats on customers.contact_id = category_stats.contact_id
    left join email on customers.contact_id = email.contact_id
    left join tickets on customers.contact_id = tickets.contact_id
    left join consent on customers.contact_id = consent.contact_id

)

select * from final
