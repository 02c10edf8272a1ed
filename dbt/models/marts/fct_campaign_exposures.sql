{#- One row per customer and campaign they were exposed to: in the treatment arm from their first
    `sent` event (with its variant), in the control arm from their first `control` enrolment,
    whichever came first (a control enrolment wins a tie: it records the randomisation). Control
    enrolments come from the CRM (an ESP's own control group) and from Clarion's exports (the
    customers they held out, stg_clarion_holdouts, at their assignment). Reactions
    and orders count within the attribution window [exposed_at, exposed_at + attribution_days),
    the same for both arms, so treated minus control is the campaign's effect.

    One aggregate over the events, no window: a pair's exposure is its first `sent` or `control`
    time, and a reaction kind counts if its first event at or after the exposure falls inside the
    window. A kind's first and last time settle that: a first event at or after the exposure is the
    one to look at; a last event before it means none. Where a kind has events on both sides
    (rare), the flag is left NULL here and the post-hook settle_exposures (macros/exposures.sql)
    reads those pairs' events again. Orders are joined by customer and attribution period
    (macros/time.sql), not by customer alone: a customer's 30-odd exposures meet their orders of
    two periods, not all of them.
    At 1,000,000 customers (32 million exposures) the full build takes 29 s where the window over
    the events and the join on the customer took 44 s (bench/RESULTS.md).

    On DuckDB the table is built incrementally (macros/incremental.sql): a build computes only the
    customers whose inputs changed since the last one (int_exposures_changed), after its pre-hook
    deleted their rows; the result equals a full build (tests/test_transform_incremental.py). -#}

{{ config(
    materialized=('incremental' if exposures_incremental() else 'table'),
    incremental_strategy='append',
    pre_hook=("{{ forget_changed('int_exposures_changed') }}" if exposures_incremental() else []),
    post_hook=(
        ["{{ settle_exposures(this, ref('stg_email_events')) }}"]
        + (["{{ keep_inputs('int_exposure_inputs') }}"] if exposures_incremental() else [])
    ),
) }}
-- depends_on: {{ ref('int_exposures_changed') }}

{#- an incremental build reads only the changed customers' rows -#}
{%- set only_changed -%}
    {%- if is_incremental() -%}
    where contact_id in (select contact_id from {{ ref('int_exposures_changed') }})
    {%- endif -%}
{%- endset %}

{%- set reactions = exposure_reactions() %}

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

pairs as (

    -- one pass over the events of each pair: its exposure (first `sent` or `control`), its first
    -- control enrolment, the variant of its first `sent` event (the lowest event id wins a tie),
    -- and each reaction kind's first and last time
    select
        campaign_id,
        contact_id,
        min(case when event_type in ('sent', 'control') then occurred_at end) as exposed_at,
        min(case when event_type = 'control' then occurred_at end) as first_control_at,
        {{ first_at('variant_id', 'occurred_at', 'event_id', "event_type = 'sent'") }}
            as first_sent_variant_id,
        bool_or(event_type = 'sent') as was_sent,
        {%- for kind, flag in reactions %}
        min(case when event_type = '{{ kind }}' then occurred_at end) as first_{{ kind }}_at,
        max(case when event_type = '{{ kind }}' then occurred_at end) as last_{{ kind }}_at{{ ',' if not loop.last }}
        {%- endfor %}
    from events
    group by campaign_id, contact_id

),

exposures as (

    -- the arm of the first exposure (a control enrolment wins a tie), and each reaction within the
    -- attribution window: NULL where the kind's events lie on both sides of the exposure (settled
    -- by the post-hook)
    select
        campaign_id,
        contact_id,
        case when first_control_at = exposed_at then 'control' else 'treatment' end as arm,
        first_sent_variant_id,
        exposed_at,
        was_sent,
        {%- for kind, flag in reactions %}
        case
            when first_{{ kind }}_at >= exposed_at then first_{{ kind }}_at < {{ attribution_end('exposed_at') }}
            when first_{{ kind }}_at is null or last_{{ kind }}_at < exposed_at then false
        end as {{ flag }}{{ ',' if not loop.last }}
        {%- endfor %}
    from pairs
    where exposed_at is not null  -- a pair with reactions only was never exposed

),

exposure_periods as (

    select campaign_id, contact_id, exposed_at, {{ attribution_period('exposed_at') }} as period
    from exposures

),

order_periods as (

    -- each order in its own attribution period and in the one before: an exposure of either
    -- period may count it
    select
        orders.contact_id,
        orders.ordered_at,
        orders.total_eur,
        {{ attribution_period('orders.ordered_at') }} - shifts.back as period
    from orders
    cross join (values (0), (1)) as shifts (back)
    where not orders.is_cancelled

),

conversions as (

    select
        exposure_periods.campaign_id,
        exposure_periods.contact_id,
        count(*) as conversions,
        sum(order_periods.total_eur) as revenue_eur
    from exposure_periods
    inner join order_periods
        on exposure_periods.contact_id = order_periods.contact_id
        and exposure_periods.period = order_periods.period
        and order_periods.ordered_at >= exposure_periods.exposed_at
        and order_periods.ordered_at < {{ attribution_end('exposure_periods.exposed_at') }}
    group by exposure_periods.campaign_id, exposure_periods.contact_id

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
