"""Marketing e-mail: the campaign calendar, who is sent what, and how each contact reacts.

Campaigns go out on fixed weekdays to a random share of the subscribed contacts. Reactions follow
the persona, and an engagement-driven decline shows as opens falling 20-60 days before its onset.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from clarion.contract import ENTITIES
from clarion.synth.arrays import DAY, NEVER, Counters, Timeline, group_positions, pick, ts_array
from clarion.synth.personas import CHURNED, CLICK_RATE, ENGAGEMENT, OPEN_RATE, People

CAMPAIGN_WEEKDAYS = (1, 4)  # Tuesday and Friday sends
P_TARGETED = 0.35  # chance a subscribed contact is in a given campaign's audience


@dataclass(frozen=True)
class Campaigns:
    times: np.ndarray  # send times, sorted
    ids: pa.Array


@dataclass(frozen=True)
class EmailResult:
    table: pa.Table  # email_events
    unsub_at: np.ndarray  # per contact: when they unsubscribed, NEVER if they did not


def make_campaigns(tl: Timeline) -> Campaigns:
    first_day = tl.email_start // DAY
    days = np.arange(first_day, tl.cutoff // DAY)
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    send_days = days[np.isin(weekday, CAMPAIGN_WEEKDAYS)]
    times = send_days * DAY + 9 * 3600  # 09:00 UTC
    ids = [f"CMP-{datetime.fromtimestamp(int(t), UTC):%Y%m%d}" for t in times]
    return Campaigns(times=times.astype(np.int64), ids=pa.array(ids))


def simulate_email(
    rng: np.random.Generator, people: People, tl: Timeline, campaigns: Campaigns, counters: Counters
) -> EmailResult:
    """Every send and reaction of the chunk's contacts; event ids continue from ``counters``."""
    n = people.n
    unsub_at_of = np.full(n, NEVER, dtype=np.int64)
    times = campaigns.times
    win_lo = np.maximum(people.optin_at, tl.email_start)
    win_hi = np.minimum(people.objection_at, tl.cutoff)
    win_hi = np.where(people.optin, win_hi, win_lo)
    lo = np.searchsorted(times, win_lo, side="left")
    hi = np.maximum(np.searchsorted(times, win_hi, side="left"), lo)
    contact, pos = group_positions(hi - lo)
    campaign = lo[contact] + pos
    targeted = rng.random(len(contact)) < P_TARGETED
    contact, campaign = contact[targeted], campaign[targeted]
    sent_at = times[campaign] + rng.integers(0, 7200, len(contact))
    # the send goes out up to 2 h after the campaign's slot: never after an objection
    legal = sent_at < people.objection_at[contact]
    contact, campaign, sent_at = contact[legal], campaign[legal], sent_at[legal]

    persona = people.persona[contact]
    onset = people.onset[contact]
    drop_lead = rng.integers(20, 61, n) * DAY
    drop_at = np.where((people.drivers & ENGAGEMENT) > 0, people.onset - drop_lead, NEVER)
    dropped = sent_at >= drop_at[contact]
    faded = (persona == CHURNED) & (sent_at >= onset)
    base_open = np.clip(OPEN_RATE[people.persona] + rng.normal(0, 0.08, n), 0.02, 0.95)
    p_open = base_open[contact] * np.where(dropped, 0.12, 1.0) * np.where(faded, 0.4, 1.0)
    p_click = CLICK_RATE[persona] * np.where(dropped, 0.3, 1.0)
    p_unsub = np.where(dropped, 0.03, np.where(faded, 0.01, 0.003))

    unsub_flag = rng.random(len(contact)) < p_unsub
    # nothing is sent after an unsubscribe: keep each contact's sends up to the first one
    cum = np.cumsum(unsub_flag)
    group_start = np.searchsorted(contact, contact, side="left")
    before = cum - unsub_flag - np.where(group_start > 0, cum[group_start - 1], 0)
    keep = before == 0
    # a bad address bounces on its first send and is never mailed again
    first_send = np.r_[True, contact[1:] != contact[:-1]]
    bounce = people.bad_address[contact] & first_send
    keep &= ~people.bad_address[contact] | first_send
    contact, campaign, sent_at = contact[keep], campaign[keep], sent_at[keep]
    p_open, p_click, unsub_flag, bounce = p_open[keep], p_click[keep], unsub_flag[keep], bounce[keep]
    unsub_flag &= ~bounce

    k = len(contact)
    opened = ~bounce & (rng.random(k) < p_open)
    open_at = sent_at + rng.exponential(5 * 3600, k).astype(np.int64) + 60
    clicked = opened & (rng.random(k) < p_click)
    click_at = open_at + rng.exponential(600, k).astype(np.int64) + 5
    unsub_at = np.where(opened, open_at, sent_at) + rng.exponential(3600, k).astype(np.int64) + 30
    opened &= open_at < tl.cutoff
    clicked &= opened & (click_at < tl.cutoff)
    unsub_flag &= unsub_at < tl.cutoff
    unsub_at_of[contact[unsub_flag]] = unsub_at[unsub_flag]

    kinds = [
        (np.ones(k, dtype=bool), sent_at, 0),
        (opened, open_at, 1),
        (clicked, click_at, 2),
        (unsub_flag, unsub_at, 3),
        (bounce, sent_at + 5, 4),
    ]
    ev_contact = np.concatenate([contact[m] for m, _, _ in kinds])
    ev_campaign = np.concatenate([campaign[m] for m, _, _ in kinds])
    ev_time = np.concatenate([ts[m] for m, ts, _ in kinds])
    ev_type = np.concatenate([np.full(m.sum(), code) for m, _, code in kinds])
    order = np.lexsort((ev_type, ev_time))
    ev_contact, ev_campaign, ev_time, ev_type = (
        ev_contact[order],
        ev_campaign[order],
        ev_time[order],
        ev_type[order],
    )
    ids = np.arange(counters.email_events, counters.email_events + len(ev_time))
    counters.email_events += len(ev_time)
    table = pa.table(
        {
            "event_id": pa.array(ids, pa.int64()),
            "contact_id": pa.array(people.ids[ev_contact]),
            "campaign_id": campaigns.ids.take(pa.array(ev_campaign)),
            "event_type": pick(("sent", "open", "click", "unsubscribe", "bounce"), ev_type),
            "occurred_at": ts_array(ev_time),
        },
        schema=ENTITIES["email_events"].arrow_schema(),
    )
    return EmailResult(table=table, unsub_at=unsub_at_of)
