{#- One row per customer and campaign they were exposed to: in the treatment arm from their first
    `sent` event (with its variant), in the control arm from their first `control` enrolment,
    whichever came first (a control enrolment wins a tie: it records the randomisation). Control
    enrolments come from the CRM (an ESP's own control group) and from Clarion's exports (the
    customers they held out, stg_clarion_holdouts, at their assignment). Reactions
    and orders count within the attribution window [exposed_at, exposed_at + attribution_days),
    the same for both arms, so treated minus control is the campaign's effect. -#}

with

crm_events as (

    select * from {{ ref('stg_email_events') }}

),

clarion_holdouts as (

    select * from {{ ref('stg_clarion_holdouts') }}

),

events as (

    select event_id, contact_id, campaign_id, event_type, variant_id, occurred_at
    from crm_events

    union all

    select
        cast(null as bigint) as event_id,
        contact_id,
        campaign_id,
        'control' as event_type,
        cast(null as varchar) as variant_id,
        occurred_at
    from clarion_holdouts

),

orders as (

    select * from {{ ref('int_orders') }}

),

ranked_exposures as (

    select
        campaign_id,
        contact_id,
        event_type,
        variant_id,
        occurred_at,
        row_number() over (
            partition by campaign_id, contact_id
            order by occurred_at, case when event_type = 'control' then 0 else 1 end, event_id
        ) as exposure_rank
    from events
    where event_type in ('sent', 'control')

),

exposures as (

    select
        campaign_id,
        contact_id,
        case when event_type = 'control' then 'control' else 'treatment' end as arm,
        case when event_type = 'sent' then variant_id end as variant_id,
        occurred_at as exposed_at
    from ranked_exposures
    where exposure_rank = 1

),

windowed_events as (

    select
        exposures.campaign_id,
        exposures.contact_id,
        events.event_type,
        events.occurred_at >= exposures.exposed_at
        and events.occurred_at < {{ attribution_end('exposures.exposed_at') }} as in_window
    from exposures
    inner join events
        on exposures.campaign_id = events.campaign_id
        and exposures.contact_id = events.contact_id

),

reactions as (

    select
        campaign_id,
        contact_id,
        bool_or(event_type = 'sent') as was_sent,
        bool_or(event_type = 'open' and in_window) as opened,
        bool_or(event_type = 'click' and in_window) as clicked,
        bool_or(event_type = 'unsubscribe' and in_window) as unsubscribed,
        bool_or(event_type = 'bounce' and in_window) as bounced
    from windowed_events
    group by campaign_id, contact_id

),

conversions as (

    select
        exposures.campaign_id,
        exposures.contact_id,
        count(*) as conversions,
        sum(orders.total_eur) as revenue_eur
    from exposures
    inner join orders
        on exposures.contact_id = orders.contact_id
        and orders.ordered_at >= exposures.exposed_at
        and orders.ordered_at < {{ attribution_end('exposures.exposed_at') }}
    where not orders.is_cancelled
    group by exposures.campaign_id, exposures.contact_id

),

final as (

    select
        exposures.campaign_id,
        exposures.contact_id,
        exposures.arm,
        exposures.variant_id,
        exposures.exposed_at,
        reactions.was_sent and not reactions.bounced as delivered,
        reactions.opened,
        reactions.clicked,
        reactions.unsubscribed,
        reactions.bounced,
        coalesce(conversions.conversions, 0) as conversions,
        cast(coalesce(conversions.revenue_eur, 0) as double precision) as revenue_eur,
        coalesce(conversions.conversions, 0) > 0 as converted,
        exposures.arm = 'control' and reactions.was_sent as contaminated
    from exposures
    inner join reactions
        on exposures.campaign_id = reactions.campaign_id
        and exposures.contact_id = reactions.contact_id
    left join conversions
        on exposures.campaign_id = conversions.campaign_id
        and exposures.contact_id = conversions.contact_id

)

select * from final
