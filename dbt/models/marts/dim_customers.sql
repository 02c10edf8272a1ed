{#- One row per customer, without personal data: the id is pseudonymous; names, e-mails and phone
    numbers stay in staging for the consented export only. -#}

with

contacts as (

    select * from {{ ref('stg_contacts') }}

),

orders as (

    select
        contact_id,
        count(*) as orders_count,
        min(ordered_at) as first_order_at,
        max(ordered_at) as last_order_at,
        sum(case when not is_returned then total_eur else 0 end) as lifetime_spend_eur
    from {{ ref('int_orders') }}
    where not is_cancelled
    group by contact_id

),

final as (

    select
        contacts.contact_id,
        contacts.country,
        contacts.age_band,
        contacts.signup_date,
        contacts.email_consent,
        contacts.sms_consent,
        contacts.marketing_objection,
        contacts.email_consent and not contacts.marketing_objection as can_email,
        contacts.source_system,
        orders.first_order_at,
        orders.last_order_at,
        coalesce(orders.orders_count, 0) as orders_count,
        cast(coalesce(orders.lifetime_spend_eur, 0) as double precision) as lifetime_spend_eur
    from contacts
    left join orders on contacts.contact_id = orders.contact_id

)

select * from final
