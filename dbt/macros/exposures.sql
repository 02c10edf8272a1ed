{#- Post-hook of fct_campaign_exposures: the reactions its one pass could not settle. The model
    reads each reaction kind's first and last time in a pair; a kind with events both before the
    exposure and at or after it leaves its flag NULL there (was the first one after the exposure
    inside the window? only the events say). This reads those pairs' events again and sets the four
    flags (and `delivered`, which waits for `bounced`) from every event, as the definition says.
    The pairs are rare (an open logged before its send, a reaction to an earlier send of a campaign
    re-sent): none in the generated data; tests/test_transform_incremental.py plants them. Where
    there are none, the hook is a count (0.1 s at 32 million exposures, where the update with
    nothing to do still took 1.5-2.2 s). -#}
{% macro settle_exposures(exposures, events) -%}
    {%- if execute and run_query(
        "select count(*) from " ~ exposures ~ " where " ~ unsettled_exposures()
    ).columns[0].values()[0] > 0 -%}
        {{ settle_exposures_sql(exposures, events) }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#- The reaction kinds the mart flags, each (event_type, column): the model and the hook share them. -#}
{% macro exposure_reactions() -%}
    {{ return([('open', 'opened'), ('click', 'clicked'), ('unsubscribe', 'unsubscribed'), ('bounce', 'bounced')]) }}
{%- endmacro %}

{% macro unsettled_exposures() -%}
    {%- for _, flag in exposure_reactions() -%}
        {{ flag }} is null{{ ' or ' if not loop.last }}
    {%- endfor -%}
{%- endmacro %}

{#- The update itself (also hashed into the exposures' logic: macros/incremental.sql). -#}
{% macro settle_exposures_sql(exposures, events) -%}
update {{ exposures }} as exposures
set
    opened = settled.opened,
    clicked = settled.clicked,
    unsubscribed = settled.unsubscribed,
    bounced = settled.bounced,
    delivered = coalesce(exposures.delivered, not settled.bounced)
from (
    select
        unsettled.campaign_id,
        unsettled.contact_id,
        {%- for kind, flag in exposure_reactions() %}
        bool_or(
            events.event_type = '{{ kind }}'
            and events.occurred_at >= unsettled.exposed_at
            and events.occurred_at < {{ attribution_end('unsettled.exposed_at') }}
        ) as {{ flag }}{{ ',' if not loop.last }}
        {%- endfor %}
    from (
        select campaign_id, contact_id, exposed_at
        from {{ exposures }}
        where {{ unsettled_exposures() }}
    ) as unsettled
    inner join {{ events }} as events
        on unsettled.campaign_id = events.campaign_id and unsettled.contact_id = events.contact_id
    group by unsettled.campaign_id, unsettled.contact_id
) as settled
where exposures.campaign_id = settled.campaign_id and exposures.contact_id = settled.contact_id
{%- endmacro %}
