"""The uplift model's features by their definition, one row at a time (correlated subqueries: slow,
and obviously what the docstring of ``clarion.results.uplift`` says). The stage computes them with
running totals and as-of joins; tests compare the two."""

from __future__ import annotations

import duckdb
import pandas as pd

from clarion.results.uplift import FEATURES


def features_by_definition(con: duckdb.DuckDBPyConnection, anchors: str) -> pd.DataFrame:
    """FEATURES of every (contact_id, anchor) row of the query ``anchors``, ordered as the stage's."""
    orders = (
        "from marts.fct_orders o where o.contact_id = a.contact_id and not o.is_cancelled "
        "and o.ordered_at < a.anchor"
    )
    events = (
        "from marts.fct_email_events e where e.contact_id = a.contact_id and e.occurred_at < a.anchor "
        "and e.occurred_at >= a.anchor - interval 180 day"
    )
    return con.execute(
        f"""
        select a.contact_id, a.anchor,
          coalesce(date_diff('day', (select max(o.ordered_at) {orders}), a.anchor), 3650)::double
              as recency_days,
          (select count(*) {orders} and o.ordered_at >= a.anchor - interval 365 day)::double
              as orders_365d,
          coalesce((select sum(o.total_eur) {orders} and o.ordered_at >= a.anchor - interval 365 day), 0)
              ::double as spend_365d_eur,
          coalesce((select avg(o.total_eur) {orders}), 0)::double as avg_order_eur,
          coalesce(date_diff('day', (select min(o.ordered_at) {orders}), a.anchor), 0)::double
              as tenure_days,
          (select count(*) {events} and e.event_type = 'open')::double as opens_180d,
          (select count(*) {events} and e.event_type = 'click')::double as clicks_180d
        from ({anchors}) a
        order by a.contact_id, a.anchor
        """
    ).df()[["contact_id", *FEATURES]]
