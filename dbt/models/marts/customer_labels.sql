{#- What each customer of customer_features did in the horizon after their day. For training and
    backtests only: never a feature, never shown as a reason.

    A label is only known once its horizon has ended within the data: when the day + horizon_days
    lies beyond the day after the latest order loaded, nobody can know yet who will buy, so the
    labels are NULL (not "false") and `horizon_complete` says so. A run's published day is the day
    after the latest order, so its labels are always NULL; training reads older days. -#}

with

days as (

    {{ snapshot_days_table() }}

),

customers as (

    select
        features.as_of,
        features.contact_id,
        days.as_of_ts,
        days.horizon_end_ts
    from {{ ref('customer_features') }} as features
    inner join days on features.as_of = days.as_of

),

data_end as (

    {#- the first instant the loaded orders do not cover: 00:00 UTC after the latest order's day -#}
    select
        cast(max(ordered_at) as timestamp with time zone) as latest_order_at
    from {{ ref('int_orders') }}

),

future_orders as (

    select
        customers.as_of,
        orders.contact_id,
        count(*) as orders,
        sum(case when not orders.is_returned then orders.total_eur else 0 end) as spend_eur
    from {{ ref('int_orders') }} as orders
    inner join customers
        on orders.contact_id = customers.contact_id
        and orders.ordered_at >= customers.as_of_ts
        and orders.ordered_at < customers.horizon_end_ts
    where not orders.is_cancelled
    group by customers.as_of, orders.contact_id

),

labelled as (

    select
        customers.contact_id,
        customers.as_of,
        {{ var('horizon_days') }} as horizon_days,
        coalesce(
            {{ days_between('customers.horizon_end_ts', 'data_end.latest_order_at') }} >= -1,
            false
        ) as horizon_complete,
        coalesce(future_orders.orders, 0) as orders,
        coalesce(future_orders.spend_eur, 0) as spend_eur
    from customers
    cross join data_end
    left join future_orders
        on customers.contact_id = future_orders.contact_id
        and customers.as_of = future_orders.as_of

),

final as (

    select
        contact_id,
        as_of,
        horizon_days,
        horizon_complete,
        case when horizon_complete then orders > 0 end as purchased_in_horizon,
        case when horizon_complete then orders end as orders_in_horizon,
        case when horizon_complete then cast(spend_eur as double precision) end as spend_in_horizon_eur
    from labelled

)

select * from final
