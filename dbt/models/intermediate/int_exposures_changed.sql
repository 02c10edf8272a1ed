{#- The customers whose exposures must be computed again: their fingerprint (int_exposure_inputs)
    differs from the one the last build kept, or they gained or lost every input row. Every
    customer when no fingerprints were kept. Empty where the exposures are built whole (not DuckDB). -#}

{% if not exposures_incremental() %}

select cast(null as bigint) as contact_id where false

{% else %}

{{ changed_customers('int_exposure_inputs', 'fct_campaign_exposures') }}

{% endif %}
