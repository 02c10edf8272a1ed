{#- No two rows share the same values of `columns` (a key of several columns), grouped on the
    columns themselves: about half the time of `unique` on a concatenated string key.

    `inputs` (a model of per-customer fingerprints, contact_id and fingerprint) and `published` (the
    fingerprints the last publication kept in `marts`, clarion/transform/publish.py) narrow the test
    to the customers whose inputs differ from the published ones, when the key holds contact_id:
    then two rows can share a key only within one customer, a customer's rows are computed together
    from their fingerprinted inputs, and a customer whose fingerprint equals the published one has
    the rows that were published, which this test passed before they were. Everything is tested on
    a first build, with no published fingerprints, and under --full-refresh. -#}
{% test unique_combination(model, columns, inputs=none, published=none) %}

{%- set kept = none -%}
{%- if execute and inputs is not none and published is not none and 'contact_id' in columns
      and exposures_incremental() and not flags.FULL_REFRESH -%}
    {%- set kept = adapter.get_relation(database=target.database, schema='marts', identifier=published) -%}
{%- endif %}

select {{ columns | join(', ') }}, count(*) as rows_with_key
from {{ model }}
{%- if kept is not none %}
where contact_id in ({{ fingerprints_differ(inputs, kept) }})
{%- endif %}
group by {{ columns | join(', ') }}
having count(*) > 1

{% endtest %}
