with

source as (

    select * from {{ source('raw', 'email_events') }}

),

renamed as (

    select

        ----------  ids
        event_id,
        contact_id,
        campaign_id,
        variant_id,

        ----------  text
        event_type,

        ----------  timestamps
        occurred_at

    from source

)

select * from renamed
