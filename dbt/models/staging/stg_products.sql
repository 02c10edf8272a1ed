with

source as (

    select * from {{ source('raw', 'products') }}

),

renamed as (

    select

        ----------  ids
        product_id,
        sku,

        ----------  text
        name as product_name,
        category,

        ----------  numerics
        cast(price as double precision) as price_eur,

        ----------  booleans
        active as is_active

    from source

)

select * from renamed
