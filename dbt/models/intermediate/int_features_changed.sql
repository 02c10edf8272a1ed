{#- The customers whose features the build computes again: their fingerprint (int_feature_inputs)
    differs from the one the last build of customer_features kept, or they gained or lost every
    input row. Every customer when no fingerprints were kept, or on a new day. Empty where the
    features are built whole (training snapshots, not DuckDB). -#}

{% if not features_incremental() %}

select cast(null as bigint) as contact_id where false

{% else %}

{{ changed_customers('int_feature_inputs', 'customer_features') }}

{% endif %}
