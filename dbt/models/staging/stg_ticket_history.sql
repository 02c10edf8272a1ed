{#- Earlier states of support tickets (a survey score recorded later replaces the row): what a
    ticket looked like at each update, for features as of a day. -#}

with

source as (

    select * from {{ source('raw', 'support_tickets_history') }}

),

renamed as (

    select

        ----------  ids
        ticket_id,

        ----------  numerics
        satisfaction_score,

        ----------  timestamps
        updated_at

    from source

)

select * from renamed
