{#- Earlier states of orders: the rows an extract replaced when an order changed (a return, a
    cancellation, a delivery update), each with the time it was recorded. Features as of a day
    read an order's state as it was known then, not as it is now. -#}

with

source as (

    select * from {{ source('raw', 'orders_history') }}

),

renamed as (

    select

        ----------  ids
        order_id,

        ----------  booleans
        {{ order_status_flags('status', 'delivery_status') }},

        ----------  timestamps
        updated_at

    from source

)

select * from renamed
