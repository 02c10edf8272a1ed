{#- The shop's season, one row per snapshot day (var `as_of`, or each of var `as_of_days`): how busy
    the coming horizon was a year earlier against the year around it (centred on that window, so a
    growing shop does not read as a quiet season). Above 1, a busier season than average; NULL
    without orders over that whole year. The same for every customer of a day: customer_features
    joins it, and its incremental build (macros/incremental.sql) recomputes everyone when it moves. -#}

with

days as (

    {{ snapshot_days_table() }}

),

shop_daily_orders as (

    {#- the shop's demand per UTC day: every order placed, whatever became of it -#}
    select
        floor(extract(epoch from ordered_at) / 86400) as day_number,
        count(*) as orders
    from {{ ref('int_orders') }}
    group by 1

),

season as (

    select
        days.as_of,
        case
            when min(shop_daily_orders.day_number) <= floor(extract(epoch from days.season_year_start_ts) / 86400)
                then {{ ratio(
                    "sum(case when shop_daily_orders.day_number >= floor(extract(epoch from days.d365_ts) / 86400)
                        and shop_daily_orders.day_number < floor(extract(epoch from days.last_year_horizon_end_ts) / 86400)
                        then shop_daily_orders.orders else 0 end) * 364.0",
                    "sum(case when shop_daily_orders.day_number >= floor(extract(epoch from days.season_year_start_ts) / 86400)
                        then shop_daily_orders.orders else 0 end) * " ~ var('horizon_days')
                ) }}
        end as shop_season_index
    from days
    inner join shop_daily_orders
        on shop_daily_orders.day_number < floor(extract(epoch from days.season_year_end_ts) / 86400)
    group by days.as_of, days.d365_ts, days.last_year_horizon_end_ts, days.season_year_start_ts

)

select * from season
