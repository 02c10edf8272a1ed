with

orders as (

    select * from {{ ref('int_orders') }}

)

select
    order_id,
    contact_id,
    ordered_at,
    order_status,
    channel,
    currency,
    total_eur,
    discount_eur,
    item_count,
    units,
    has_discount,
    is_returned,
    is_cancelled,
    delivery_status,
    has_delivery_problem
from orders
