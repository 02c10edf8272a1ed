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

{#- The fingerprints the last build of fct_campaign_exposures was computed from (kept by its
    post-hook, next to it in the build schema). -#}
{% macro exposures_inputs_kept() -%}
    {{ return(api.Relation.create(
        database=target.database, schema=target.schema, identifier='fct_campaign_exposures__inputs'
    )) }}
{%- endmacro %}

{#- The text of the logic, hashed into every fingerprint: the SQL as written of the two marts whose
    rows depend only on a customer's fingerprinted inputs (fct_campaign_exposures, built here
    incrementally, and fct_email_events, whose publication rewrites only the changed customers:
    clarion/transform/publish.py) and the macros the exposures call, rendered with this run's vars. -#}
{% macro exposures_logic() -%}
    {%- set code = [] -%}
    {%- if execute -%}
        {%- for name in ['fct_campaign_exposures', 'fct_email_events'] -%}
            {%- set node = graph.nodes.get('model.clarion.' ~ name) -%}
            {%- do code.append(node.raw_code if node is not none else '') -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return(local_md5(code | join('|') ~ '|' ~ attribution_end('exposed_at') ~ '|' ~ first_by('v', 'k', 'c'))) }}
{%- endmacro %}

{#- Pre-hook: forget the changed customers' exposures (every row when no fingerprints were kept:
    a table built before this scheme, or by hand). -#}
{% macro exposures_forget_changed() -%}
    {%- if is_incremental() -%}
        {%- if adapter.get_relation(this.database, this.schema, exposures_inputs_kept().identifier) is none -%}
            delete from {{ this }}
        {%- else -%}
            delete from {{ this }} where contact_id in (select contact_id from {{ ref('int_exposures_changed') }})
        {%- endif -%}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#- Post-hook: keep the fingerprints this build was computed from, for the next one. -#}
{% macro exposures_keep_inputs() -%}
    create or replace table {{ exposures_inputs_kept() }} as
    select contact_id, fingerprint from {{ ref('int_exposure_inputs') }}
{%- endmacro %}
