{#- Tickets without their text: sentiment and category only. -#}

with

tickets as (

    select * from {{ ref('stg_support_tickets') }}

)

select
    ticket_id,
    contact_id,
    created_at,
    channel,
    category,
    ticket_status,
    satisfaction_score,
    sentiment
from tickets
