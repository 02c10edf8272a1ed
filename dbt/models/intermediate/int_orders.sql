with

orders as (

    select * from {{ ref('stg_orders') }}

),

fx_rates as (

    select * from {{ ref('fx_rates') }}

),

items as (

    select
        order_id,
        count(*) as item_count,
        sum(quantity) as units
    from {{ ref('stg_order_items') }}
    group by order_id

),

joined as (

    select
        orders.order_id,
        orders.contact_id,
        orders.ordered_at,
        orders.order_status,
        orders.channel,
        orders.currency,
        orders.delivery_status,
        {{ eur('orders.total_amount', 'fx_rates.units_per_eur') }} as total_eur,
        {{ eur('orders.discount_amount', 'fx_rates.units_per_eur') }} as discount_eur,
        orders.is_cancelled,
        orders.is_returned,
        orders.has_discount,
        orders.has_delivery_problem,
        coalesce(items.item_count, 0) as item_count,
        coalesce(items.units, 0) as units,
        orders.updated_at
    from orders
    left join fx_rates on orders.currency = fx_rates.currency
    left join items on orders.order_id = items.order_id

)

select * from joined
