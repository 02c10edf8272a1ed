with

events as (

    select * from {{ ref('stg_email_events') }}

)

select
    event_id,
    contact_id,
    campaign_id,
    variant_id,
    event_type,
    occurred_at
from events
