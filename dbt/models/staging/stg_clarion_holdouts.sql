{#- Clarion's own control groups: the customers its exports held out of a campaign (its holdout and
    the global control group, content.assignments), as control-group enrolments at the moment they
    were assigned. The CRM never hears of them (they were not sent anything), so without this the
    campaigns Clarion exports would have no control group to be measured against. Before the first
    export the table does not exist yet, and this model is empty. -#}

-- depends_on: {{ ref('stg_contacts') }}

{%- set assignments = adapter.get_relation(
    database=target.database, schema='content', identifier='assignments'
) -%}

{% if assignments is not none %}

with

source as (

    select * from {{ assignments }}

),

contacts as (

    select contact_id from {{ ref('stg_contacts') }}

),

renamed as (

    select

        ----------  ids
        campaign as campaign_id,
        contact_id,

        ----------  timestamps
        min(assigned_at) as occurred_at

    from source
    where arm in ('holdout', 'global_control')
        -- a customer no longer in the CRM (erased, merged away) is not followed
        and contact_id in (select contact_id from contacts)
    group by campaign, contact_id

)

select * from renamed

{% else %}

select
    cast(null as varchar) as campaign_id,
    cast(null as bigint) as contact_id,
    cast(null as timestamp with time zone) as occurred_at
where false

{% endif %}
