with

source as (

    select * from {{ source('raw', 'contacts') }}

),

renamed as (

    select

        ----------  ids
        contact_id,

        ----------  attributes
        country,
        age_band,

        ----------  consent as exported (the consents log gives it as of any date)
        email_consent,
        sms_consent,
        marketing_objection,

        ----------  personal data: stays in staging, never in marts
        first_name,
        last_name,
        email,
        phone,

        ----------  dates
        signup_date,
        updated_at,

        ----------  lineage
        _source as source_system

    from source

)

select * from renamed
