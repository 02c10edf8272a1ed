{#- The latest voc run's topic and sentiment per ticket (run ids sort by start time). Both come from
    the ticket's text alone, so they are known from the moment the ticket was created. Where the
    table does not exist (a PostgreSQL build, a warehouse that never ran voc) the model is empty,
    with the same columns. -#}
{%- set topics = source('ml', 'ticket_topics') -%}
{%- set found = adapter.get_relation(
        database=topics.database, schema=topics.schema, identifier=topics.identifier
    ) if execute else none -%}

with

{% if found is not none -%}
source as (

    select * from {{ topics }}

),

latest_run as (

    select max(run_id) as run_id from source

),

renamed as (

    select

        ----------  ids
        source.ticket_id,
        source.contact_id,
        source.topic_id,

        ----------  text-derived (categorical only)
        source.topic,
        source.sentiment,

        ----------  numerics
        source.p_negative,

        ----------  timestamps
        source.created_at,

        ----------  lineage
        source.run_id as voc_run_id,
        source.model_version

    from source
    inner join latest_run on source.run_id = latest_run.run_id

)
{%- else -%}
renamed as (

    select
        cast(null as bigint) as ticket_id,
        cast(null as bigint) as contact_id,
        cast(null as integer) as topic_id,
        cast(null as varchar) as topic,
        cast(null as varchar) as sentiment,
        cast(null as double precision) as p_negative,
        cast(null as timestamp with time zone) as created_at,
        cast(null as varchar) as voc_run_id,
        cast(null as varchar) as model_version
    where 1 = 0

)
{%- endif %}

select * from renamed
