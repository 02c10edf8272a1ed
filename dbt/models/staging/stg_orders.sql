with

source as (

    select * from {{ source('raw', 'orders') }}

),

renamed as (

    select

        ----------  ids
        order_id,
        contact_id,

        ----------  text
        status as order_status,
        channel,
        currency,
        discount_code,
        delivery_status,

        ----------  numerics (order currency)
        cast(subtotal_amount as double precision) as subtotal_amount,
        cast(discount_amount as double precision) as discount_amount,
        cast(total_amount as double precision) as total_amount,

        ----------  booleans
        {{ order_status_flags('status', 'delivery_status') }},
        coalesce(discount_amount > 0, false) or discount_code is not null as has_discount,

        ----------  timestamps
        ordered_at,
        updated_at

    from source

)

select * from renamed
