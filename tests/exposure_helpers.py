"""fct_campaign_exposures by its definition, computed with pandas from the events and orders, sharing
no code with dbt: what any analyst would read from the export."""

from __future__ import annotations

import numpy as np
import pandas as pd

WINDOW = pd.Timedelta(days=7)  # experiments.attribution_days, and the generator's effect window
REACTIONS = (("open", "opened"), ("click", "clicked"), ("unsubscribe", "unsubscribed"), ("bounce", "bounced"))
KEY = ["campaign_id", "contact_id"]


def first_exposures(events: pd.DataFrame) -> pd.DataFrame:
    """(campaign, contact) -> arm, variant and time of the first sent/control event; a control
    enrolment wins a tie, then the lowest event id."""
    exp = events[events["event_type"].isin(["sent", "control"])].copy()
    exp["control_first"] = (exp["event_type"] != "control").astype(int)
    exp = exp.sort_values(["campaign_id", "contact_id", "occurred_at", "control_first", "event_id"])
    first = exp.drop_duplicates(KEY, keep="first").reset_index(drop=True)
    first["arm"] = np.where(first["event_type"] == "control", "control", "treatment")
    first.loc[first["arm"] == "control", "variant_id"] = None
    return first.rename(columns={"occurred_at": "exposed_at"})[
        ["campaign_id", "contact_id", "arm", "variant_id", "exposed_at"]
    ]


def converted_within(exposures: pd.DataFrame, orders: pd.DataFrame) -> pd.DataFrame:
    """Per exposure: orders (not cancelled) in [exposed_at, exposed_at + 7 days), and their EUR total."""
    stands = orders[orders["status"] != "cancelled"][["contact_id", "ordered_at", "total_eur"]]
    pairs = exposures[["campaign_id", "contact_id", "exposed_at"]].merge(stands, on="contact_id")
    inside = pairs[
        (pairs["ordered_at"] >= pairs["exposed_at"]) & (pairs["ordered_at"] < pairs["exposed_at"] + WINDOW)
    ]
    counted = inside.groupby(KEY).agg(conversions=("ordered_at", "size"), revenue_eur=("total_eur", "sum"))
    out = exposures.join(counted, on=KEY)
    out["conversions"] = out["conversions"].fillna(0).astype(int)
    out["revenue_eur"] = out["revenue_eur"].fillna(0.0)
    out["converted"] = out["conversions"] > 0
    return out


def exposures_by_definition(events: pd.DataFrame, orders: pd.DataFrame) -> pd.DataFrame:
    """Every column of the mart: the first exposure, the reactions of each kind within the window
    after it (every event of the pair looked at), delivered, contaminated and the conversions.
    ``events``: event_id, campaign_id, contact_id, event_type, variant_id, occurred_at (control
    enrolments as ``control`` events); ``orders``: contact_id, ordered_at, total_eur, status."""
    want = converted_within(first_exposures(events), orders)
    windowed = events.merge(want[[*KEY, "exposed_at"]], on=KEY)
    inside = windowed[
        (windowed["occurred_at"] >= windowed["exposed_at"])
        & (windowed["occurred_at"] < windowed["exposed_at"] + WINDOW)
    ]
    pair = want.set_index(KEY).index
    for kind, column in REACTIONS:
        want[column] = pair.isin(inside[inside["event_type"] == kind].set_index(KEY).index)
    was_sent = pair.isin(events[events["event_type"] == "sent"].set_index(KEY).index)
    want["delivered"] = was_sent & ~want["bounced"]
    want["contaminated"] = (want["arm"] == "control") & was_sent
    return want.sort_values(KEY).reset_index(drop=True)


def assert_mart_equals(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """The mart's rows (``got``) are the definition's (``want``), pair for pair, column for column."""
    got = got.sort_values(KEY).reset_index(drop=True)
    assert list(zip(got["campaign_id"], got["contact_id"], strict=True)) == list(
        zip(want["campaign_id"], want["contact_id"], strict=True)
    )
    flags = tuple(column for _, column in REACTIONS)
    for column in ("arm", *flags, "delivered", "conversions", "converted", "contaminated"):
        differ = got[column].to_numpy() != want[column].to_numpy()
        assert not differ.any(), (column, got.loc[differ, KEY].head(5).to_dict("records"))
    assert (got["variant_id"].fillna("-") == want["variant_id"].fillna("-")).all()
    assert (got["exposed_at"] == want["exposed_at"]).all()
    assert np.allclose(got["revenue_eur"], want["revenue_eur"], atol=0.01)
