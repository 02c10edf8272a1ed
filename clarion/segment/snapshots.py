"""Feature snapshots: customers as of a day, with what they did in the horizon after it.

The published ``marts.customer_features`` describes customers as of the published day. Training
reads many past days at once ("stacked snapshots"): the same dbt models, built for a list of days
(var ``as_of_days``) into a scratch schema, read, and dropped. Only ``customer_features`` and
``customer_labels`` read the day (tested), so one dbt call builds every day, computed exactly as a
published day is, from what was known before that day only.

A training day needs complete labels: its horizon must end within the loaded orders. The days go
back from the newest complete one every ``segment.snapshot_every_days``; the customers of each day
may be sampled (by a hash of the customer and the day) so that training reads about
``segment.training_rows`` rows whatever the size of the shop.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import duckdb
import pandas as pd

from clarion.config import Settings
from clarion.errors import ClarionError
from clarion.subject import objection
from clarion.transform import reuse
from clarion.transform.dbt import run_dbt
from clarion.warehouse import Warehouse, relation_exists

log = logging.getLogger(__name__)
SNAPSHOT_SCHEMA = "ml_snapshot"
# the dbt models that read the day: the features and labels, the shop's season they join, and the
# fingerprints of the published day's incremental build (empty in a snapshot's)
AS_OF_MODELS = ("customer_features", "customer_labels", "int_shop_season", "int_feature_inputs")


class SegmentError(ClarionError):
    pass


@dataclass
class Plan:
    as_of: date
    horizon_days: int
    published_as_of: date | None


@dataclass(frozen=True)
class TrainingDays:
    """Which past days train and validate a model scoring `as_of` with horizon h.

    * validation: the recipe fitted on days up to ``as_of - 2h`` (their labels end by ``as_of - h``)
      and measured on the customers of ``as_of - h`` (labels up to ``as_of``): out of time.
    * production: the same recipe fitted on days up to ``as_of - h``, scoring ``as_of``.
    """

    production: tuple[date, ...]  # newest first
    validation_fit: tuple[date, ...]
    validation_day: date

    @property
    def all(self) -> tuple[date, ...]:
        return tuple(sorted(set(self.production) | set(self.validation_fit) | {self.validation_day}))


def training_days(as_of: date, horizon_days: int, snapshots: int, every_days: int) -> TrainingDays:
    newest = as_of - timedelta(days=horizon_days)
    production = tuple(newest - timedelta(days=k * every_days) for k in range(snapshots))
    cutoff = newest - timedelta(days=horizon_days)
    first = math.ceil(horizon_days / every_days)  # the first grid day whose labels end by as_of - h
    validation = tuple(newest - timedelta(days=k * every_days) for k in range(first, first + snapshots))
    assert validation[0] <= cutoff
    return TrainingDays(production, validation, newest)


def plan(settings: Settings, as_of: date | None, horizon_days: int | None) -> Plan:
    with Warehouse.from_settings(settings).connect("segment plan") as con:
        published = published_as_of(con)
    if as_of is None and published is None:
        raise SegmentError("no published customer features: run `clarion transform` (or `clarion run`) first")
    return Plan(as_of or published, horizon_days or settings.segment.horizon_days, published)


def published_as_of(con: duckdb.DuckDBPyConnection) -> date | None:
    if not relation_exists(con, "marts", "customer_features"):
        return None
    (day,) = con.execute("select max(as_of) from marts.customer_features").fetchone()
    return day


def sample_per_mille(settings: Settings, days: Sequence[date], rows: int) -> int:
    """The share (per mille) of each day's customers to read so that all days hold about `rows`."""
    with Warehouse.from_settings(settings).connect("segment sample size") as con:
        total = 0
        for day in days:
            (n,) = con.execute("select count(*) from raw.contacts where signup_date < ?", [day]).fetchone()
            total += n
    if total <= rows:
        return 1000
    return max(1, min(1000, math.ceil(1000 * rows / total)))


def build(
    settings: Settings,
    days: Sequence[date],
    horizon_days: int,
    per_mille: int = 1000,
    reuse_staging: bool = True,
) -> pd.DataFrame:
    """Features and labels of every customer (or the sample) as of each day, one row per customer
    and day, in the order of the days then customers. Built in a scratch schema, dropped after.
    The day-independent tables come from the staging build when it was built from what raw and the
    dbt project hold now (clarion/transform/reuse.py), unless ``reuse_staging`` is false."""
    days = sorted(set(days))
    wh = Warehouse.from_settings(settings)
    shifted = settings.model_copy(
        update={"transform": settings.transform.model_copy(update={"horizon_days": horizon_days})}
    )
    extra = {"as_of_days": [d.isoformat() for d in days], "sample_per_mille": per_mille}
    with wh.connect("segment snapshot reuse") as con:
        lent = reuse.deferrable(settings, con) if reuse_staging else []
    try:
        run_dbt(
            shifted,
            "build",
            days[-1],
            "--select",
            *(f"+{m}" for m in AS_OF_MODELS),
            "--exclude-resource-type",
            "test",
            *reuse.defer_args(settings, lent),
            schema=SNAPSHOT_SCHEMA,
            extra_vars=extra,
        )
        if lent:
            log.info(
                "the snapshot read the staging build's %s (built from what raw holds now)", ", ".join(lent)
            )
        with wh.connect("segment read") as con:
            return read(con, SNAPSHOT_SCHEMA)
    finally:
        with wh.connect("segment drop snapshot") as con:
            con.execute(f"drop schema if exists {SNAPSHOT_SCHEMA} cascade")


def read(con: duckdb.DuckDBPyConnection, schema: str) -> pd.DataFrame:
    """Customers as of each day, without those who object to profiling (Art. 21): they are neither
    scored nor training data. ``attrs["not_profiled"]`` counts the rows left out, by reason."""
    frame = con.execute(
        f"""
        select f.*, l.horizon_complete, l.purchased_in_horizon, l.orders_in_horizon,
               l.spend_in_horizon_eur, c.age_band
        from {schema}.customer_features f
        join {schema}.customer_labels l using (contact_id, as_of)
        left join raw.contacts c using (contact_id)
        where {objection.profiled_filter(con, "f")}
        order by f.as_of, f.contact_id
        """
    ).df()
    left_out = objection.not_profiled(con, f"{schema}.customer_features")
    frame.attrs["not_profiled"] = {objection.NOT_PROFILED_OBJECTION: left_out}
    return frame


def scoring(settings: Settings, p: Plan) -> pd.DataFrame:
    """The customers to score: the published marts when they describe the day, else a build."""
    if p.as_of == p.published_as_of:
        with Warehouse.from_settings(settings).connect("segment read") as con:
            frame = read(con, "marts")
    else:
        frame = build(settings, [p.as_of], p.horizon_days)
    if frame.empty:
        raise SegmentError(f"no customers had signed up before {p.as_of}: nothing to score")
    return frame


def labelled(frame: pd.DataFrame, day: date) -> pd.DataFrame:
    """The rows of one day, which must have complete labels."""
    rows = frame[frame["as_of"] == pd.Timestamp(day)]
    if not rows.empty and not rows["horizon_complete"].all():
        raise SegmentError(f"the labels of {day} are not complete: its horizon ends after the latest order")
    return rows
