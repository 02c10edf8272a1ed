{#- Ticket text can carry names, e-mails, phone numbers and prompt injections. It is read here only
    to score sentiment with a small lexicon; no text column leaves this model. -#}

{%- set negative = ["disappoint", "terrible", "not acceptable", "unhappy", "faulty", "broke",
                    "losing patience", "escalat", "misleading", "charged twice", "never works",
                    "still no", "hasn't arrived", "nobody", "soaked", "cheap quality",
                    "shopping elsewhere", "immediately"] -%}
{%- set positive = ["thank", "love", "great", "arrived a day early", "went through fine"] -%}

with

source as (

    select * from {{ source('raw', 'support_tickets') }}

),

scored as (

    select
        *,
        lower(coalesce(subject, '') || ' ' || coalesce(body, '')) as text_lower
    from source

),

renamed as (

    select

        ----------  ids
        ticket_id,
        contact_id,

        ----------  text (categorical only)
        channel,
        category,
        status as ticket_status,

        ----------  numerics
        satisfaction_score,
        (
            {%- for word in negative %}
            case when text_lower like '%{{ word | replace("'", "''") }}%' then 1 else 0 end{{ " +" if not loop.last }}
            {%- endfor %}
        ) as negative_words,
        (
            {%- for word in positive %}
            case when text_lower like '%{{ word | replace("'", "''") }}%' then 1 else 0 end{{ " +" if not loop.last }}
            {%- endfor %}
        ) as positive_words,

        ----------  timestamps
        created_at,
        updated_at

    from scored

),

final as (

    select
        *,
        case
            when satisfaction_score <= 2 then 'negative'
            when satisfaction_score >= 4 then 'positive'
            when negative_words > positive_words then 'negative'
            when positive_words > negative_words then 'positive'
            else 'neutral'
        end as sentiment
    from renamed

)

select * from final
