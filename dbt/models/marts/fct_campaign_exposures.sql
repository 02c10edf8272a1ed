{#- One row per customer and campaign they were exposed to: in the treatment arm from their first
    `sent` event (with its variant), in the control arm from their first `control` enrolment,
    whichever came first (a control enrolment wins a tie: it records the randomisation). Control
    enrolments come from the CRM (an ESP's own control group) and from Clarion's exports (the
    customers they held out, stg_clarion_holdouts, at their assignment). Reactions
    and orders count within the attribution window [exposed_at, exposed_at + attribution_days),
    the same for both arms, so treated minus control is the campaign's effect.

    On DuckDB the table is built incrementally (macros/incremental.sql): a build computes only the
    customers whose inputs changed since the last one (int_exposures_changed), after its pre-hook
    deleted their rows; the result equals a full build (tests/test_transform_incremental.py). -#}

{{ config(
    materialized=('incremental' if exposures_incremental() else 'table'),
    incremental_strategy='append',
    pre_hook=("{{ forget_changed('int_exposures_changed') }}" if exposures_incremental() else []),
    post_hook=("{{ keep_inputs('int_exposure_inputs') }}" if exposures_incremental() else []),
) }}
-- depends_on: {{ ref('int_exposures_changed') }}

{#- an incremental build reads only the changed customers' rows -#}
{%- set only_changed -%}
    {%- if is_incremental() -%}
    where contact_id in (select contact_id from {{ ref('int_exposures_changed') }})
    {%- endif -%}
{%- endset %}

{%- set in_window -%}
    occurred_at >= exposed_at and occurred_at < {{ attribution_end('exposed_at') }}
{%- endset %}

with

crm_events as (

    select * from {{ ref('stg_email_events') }}
    {{ only_changed }}

),

clarion_holdouts as (

    select * from {{ ref('stg_clarion_holdouts') }}
    {{ only_changed }}

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
    {{ only_changed }}

),

stamped_events as (

    -- every event of a (campaign, customer) carries that pair's exposure instant: its first
    -- `sent` or `control` event
    select
        campaign_id,
        contact_id,
        event_id,
        event_type,
        variant_id,
        occurred_at,
        min(case when event_type in ('sent', 'control') then occurred_at end) over (
            partition by campaign_id, contact_id
        ) as exposed_at
    from events

),

exposures as (

    -- one pass over the events of each exposed pair: the arm of its first exposure (a control
    -- enrolment wins a tie), the variant of its first `sent` event (the lowest event id wins a
    -- tie), and what the customer did within the attribution window
    select
        campaign_id,
        contact_id,
        case
            when bool_or(event_type = 'control' and occurred_at = exposed_at) then 'control'
            else 'treatment'
        end as arm,
        {{ first_by('variant_id', 'event_id', "event_type = 'sent' and occurred_at = exposed_at") }}
            as first_sent_variant_id,
        min(exposed_at) as exposed_at,
        bool_or(event_type = 'sent') as was_sent,
        bool_or(event_type = 'open' and {{ in_window }}) as opened,
        bool_or(event_type = 'click' and {{ in_window }}) as clicked,
        bool_or(event_type = 'unsubscribe' and {{ in_window }}) as unsubscribed,
        bool_or(event_type = 'bounce' and {{ in_window }}) as bounced
    from stamped_events
    where exposed_at is not null
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
        case when exposures.arm = 'treatment' then exposures.first_sent_variant_id end as variant_id,
        exposures.exposed_at,
        exposures.was_sent and not exposures.bounced as delivered,
        exposures.opened,
        exposures.clicked,
        exposures.unsubscribed,
        exposures.bounced,
        coalesce(conversions.conversions, 0) as conversions,
        cast(coalesce(conversions.revenue_eur, 0) as double precision) as revenue_eur,
        coalesce(conversions.conversions, 0) > 0 as converted,
        exposures.arm = 'control' and exposures.was_sent as contaminated
    from exposures
    left join conversions
        on exposures.campaign_id = conversions.campaign_id
        and exposures.contact_id = conversions.contact_id

)

select * from final
