{#- Ticket text can carry names, e-mails, phone numbers and prompt injections. It is read here only
    to score sentiment with a small lexicon; no text column leaves this model. -#}

{%- set negative = ["disappoint", "terrible", "not acceptable", "unhappy", "faulty", "broke",
                    "losing patience", "escalat", "misleading", "charged twice", "never works",
                    "still no", "hasn't arrived", "nobody", "soaked", "cheap quality",
                    "shopping elsewhere", "immediately", "complain", "ridiculous", "not happy",
                    "sort this out", "expect an answer", "still have not", "stopped working",
                    "never arrived", "heard nothing", "late again"] -%}
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

worded as (

    select
        *,
        case
            when negative_words > positive_words then 'negative'
            when positive_words > negative_words then 'positive'
            else 'neutral'
        end as text_sentiment
    from renamed

),

final as (

    {#- text_sentiment is known when the ticket is opened; the survey score only once recorded
        (updated_at), so features as of an earlier day use text_sentiment alone. -#}
    select
        *,
        {{ ticket_sentiment('satisfaction_score', 'text_sentiment') }} as sentiment
    from worded

)

select * from final
