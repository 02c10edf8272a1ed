with

source as (

    select * from {{ source('raw', 'consents') }}

),

renamed as (

    select

        ----------  ids
        consent_id,
        contact_id,

        ----------  text
        channel,
        event as consent_event,
        source as consent_source,
        lawful_basis,

        ----------  timestamps
        recorded_at

    from source

)

select * from renamed
