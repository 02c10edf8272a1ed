{#- fct_campaign_exposures is built incrementally on DuckDB: only the customers whose inputs changed
    since the last build are computed again. A customer's exposures depend only on their own rows
    (their e-mail events, Clarion's holdouts of them, their orders), so each customer's inputs are
    fingerprinted (int_exposure_inputs); the customers whose fingerprint differs from the one kept
    after the last build, or that appear or vanish, are the changed set (int_exposures_changed).
    The fingerprint also carries the exposures' own logic (this model's SQL, the macros it uses,
    attribution_days), so a change of any of them changes every customer's: a full rebuild.
    `dbt build --full-refresh` (clarion transform --full-refresh) rebuilds everything regardless. -#}

{% macro exposures_incremental() -%}
    {{ return(target.type == 'duckdb') }}
{%- endmacro %}

{#- The fingerprints the last build of `model` was computed from (kept by its post-hook, next to it
    in the build schema, as `<model>__inputs`). -#}
{% macro inputs_kept(model) -%}
    {{ return(api.Relation.create(database=target.database, schema=target.schema, identifier=model ~ '__inputs')) }}
{%- endmacro %}

{#- The body of a changed-customers model (int_exposures_changed, int_features_changed): the
    customers whose fingerprint in `inputs` differs from the one the last build of `model` kept, or
    who gained or lost every input row; every customer when nothing was kept. -#}
{% macro changed_customers(inputs, model) -%}
    {%- set kept = adapter.get_relation(
        database=target.database, schema=target.schema, identifier=inputs_kept(model).identifier
    ) -%}
    {%- if kept is none -%}
select contact_id from {{ ref(inputs) }}
    {%- else -%}
{{ fingerprints_differ(ref(inputs), kept) }}
    {%- endif -%}
{%- endmacro %}

{#- The customers whose fingerprint in `built` differs from the one in `kept` (both relations of
    contact_id and fingerprint), or who are in only one of them. -#}
{% macro fingerprints_differ(built, kept) -%}
select coalesce(built.contact_id, kept.contact_id) as contact_id
from {{ built }} as built
full outer join {{ kept }} as kept
    on built.contact_id = kept.contact_id
where built.fingerprint is distinct from kept.fingerprint
{%- endmacro %}

{#- The text of the logic, hashed into every fingerprint: the SQL as written of the two marts whose
    rows depend only on a customer's fingerprinted inputs (fct_campaign_exposures, built here
    incrementally, and fct_email_events, whose publication rewrites only the changed customers:
    clarion/transform/publish.py) and the macros the exposures call (their post-hook's among them),
    rendered with this run's vars. -#}
{% macro exposures_logic() -%}
    {%- set code = models_code(['fct_campaign_exposures', 'fct_email_events']) -%}
    {{ return(local_md5(code | join('|') ~ '|' ~ attribution_end('exposed_at') ~ '|' ~ first_at('v', 't', 'k', 'c')
        ~ '|' ~ attribution_period('t') ~ '|' ~ settle_exposures_sql('x', 'e'))) }}
{%- endmacro %}

{#- The SQL as written of the project's models `names` (empty while dbt parses). -#}
{% macro models_code(names) -%}
    {%- set code = [] -%}
    {%- if execute -%}
        {%- for name in names -%}
            {%- set node = graph.nodes.get('model.clarion.' ~ name) -%}
            {%- do code.append(node.raw_code if node is not none else '') -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return(code) }}
{%- endmacro %}

{#- Pre-hook: forget the changed customers' rows (every row when no fingerprints were kept: a table
    built before this scheme, or by hand). `changed`: the model listing them. -#}
{% macro forget_changed(changed) -%}
    {%- if is_incremental() -%}
        {%- if adapter.get_relation(this.database, this.schema, inputs_kept(this.identifier).identifier) is none -%}
            delete from {{ this }}
        {%- else -%}
            delete from {{ this }} where contact_id in (select contact_id from {{ ref(changed) }})
        {%- endif -%}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#- Post-hook: keep the fingerprints this build was computed from (`inputs`), for the next one. -#}
{% macro keep_inputs(inputs) -%}
    create or replace table {{ inputs_kept(this.identifier) }} as
    select contact_id, fingerprint from {{ ref(inputs) }}
{%- endmacro %}

{#- customer_features is built incrementally too, on DuckDB, for the published day (var `as_of`):
    a customer's features depend on their own rows (contact, orders with their history and lines,
    e-mail events, tickets with their history and topics, consents), on the day, and on one
    shop-wide figure (int_shop_season). Each customer's rows are fingerprinted (int_feature_inputs)
    together with that logic: the model's SQL, the macros it calls rendered with this run's vars
    (the day among them) and the season. So a new day, a new season figure or a changed model
    recomputes everyone; a load of late rows recomputes only the customers it touched. Training
    snapshots (var `as_of_days`, a sample) are always built whole. -#}
{% macro features_incremental() -%}
    {{ return(target.type == 'duckdb' and var('as_of_days', none) is none and sample_per_mille() == 1000) }}
{%- endmacro %}

{% macro features_logic() -%}
    {%- set code = models_code(['customer_features', 'int_shop_season']) -%}
    {%- do code.append(snapshot_days_table()) -%}
    {%- do code.append(days_between('a', 'b') ~ seconds_between('a', 'b') ~ ratio('a', 'b')) -%}
    {%- do code.append(ticket_sentiment('a', 'b') ~ var('categories') | join(',')) -%}
    {{ return(local_md5(code | join('|'))) }}
{%- endmacro %}
