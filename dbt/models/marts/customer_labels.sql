{#- What each customer of customer_features did in the horizon after as_of. For training and
    backtests only: never a feature, never shown as a reason. -#}

with

customers as (

    select contact_id from {{ ref('customer_features') }}

),

future_orders as (

    select
        contact_id,
        count(*) as orders,
        sum(case when not is_returned then total_eur else 0 end) as spend_eur
    from {{ ref('int_orders') }}
    where ordered_at >= {{ as_of_ts() }}
        and ordered_at < {{ horizon_end_ts() }}
        and not is_cancelled
    group by contact_id

),

final as (

    select
        customers.contact_id,
        {{ as_of_date() }} as as_of,
        {{ var('horizon_days') }} as horizon_days,
        coalesce(future_orders.orders, 0) > 0 as purchased_in_horizon,
        coalesce(future_orders.orders, 0) as orders_in_horizon,
        coalesce(future_orders.spend_eur, 0) as spend_in_horizon_eur
    from customers
    left join future_orders on customers.contact_id = future_orders.contact_id

)

select * from final
