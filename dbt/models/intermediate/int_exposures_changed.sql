{#- The customers whose exposures must be computed again: their fingerprint (int_exposure_inputs)
    differs from the one the last build kept, or they gained or lost every input row. Every
    customer when no fingerprints were kept. Empty where the exposures are built whole (not DuckDB). -#}

{%- set kept = adapter.get_relation(
    database=target.database, schema=target.schema, identifier=exposures_inputs_kept().identifier
) %}

{% if not exposures_incremental() %}

select cast(null as bigint) as contact_id where false

{% elif kept is none %}

select contact_id from {{ ref('int_exposure_inputs') }}

{% else %}

select coalesce(current.contact_id, kept.contact_id) as contact_id
from {{ ref('int_exposure_inputs') }} as current
full outer join {{ kept }} as kept
    on current.contact_id = kept.contact_id
where current.fingerprint is distinct from kept.fingerprint

{% endif %}
