with

order_items as (

    select * from {{ ref('stg_order_items') }}

),

orders as (

    select * from {{ ref('int_orders') }}

),

products as (

    select * from {{ ref('stg_products') }}

),

fx_rates as (

    select * from {{ ref('fx_rates') }}

),

joined as (

    select
        order_items.order_item_id,
        order_items.order_id,
        orders.contact_id,
        orders.ordered_at,
        orders.is_cancelled,
        products.category,
        order_items.quantity,
        {{ eur('order_items.line_amount', 'fx_rates.units_per_eur') }} as line_eur
    from order_items
    inner join orders on order_items.order_id = orders.order_id
    left join products on order_items.product_id = products.product_id
    left join fx_rates on orders.currency = fx_rates.currency

)

select * from joined
