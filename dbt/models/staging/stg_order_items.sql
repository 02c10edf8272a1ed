with

source as (

    select * from {{ source('raw', 'order_items') }}

),

renamed as (

    select

        ----------  ids
        order_item_id,
        order_id,
        product_id,

        ----------  numerics (order currency)
        quantity,
        cast(unit_price as double precision) as unit_price,
        cast(line_amount as double precision) as line_amount

    from source

)

select * from renamed
