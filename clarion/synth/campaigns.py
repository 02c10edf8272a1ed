"""Marketing e-mail: the campaign calendar, who is sent what, how each contact reacts, and the
measured campaigns (experiments) with a planted causal effect on buying.

Campaigns go out on fixed weekdays to a random share of the subscribed contacts. Reactions follow
the persona, and an engagement-driven decline shows as opens falling 20-60 days before its onset.

Every EXPERIMENT_EVERY-th campaign (one every four weeks, over the whole e-mail history, the newest
being the last whose effect window ends before the cutoff) is an experiment: CONTROL_SHARE of its
audience is drawn into a control group (a `control` event at the send time, never sent anything), and the rest
is sent one of 2 or 3 variants (A/B[/C]) at random, one of them a dud. A treated customer's chance
of buying within EFFECT_DAYS of the send rises by exactly the planted uplift of their persona and
variant: with the right probability they place one extra order in that window (the order machinery
makes it, so orders and items stay consistent). Control and treated customers otherwise follow the
same purchase process, so treated minus control recovers the planted uplift without bias. The truth
(truth/campaign_effects, truth/campaign_assignment) records the uplifts and every assignment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from clarion.contract import EMAIL_EVENT_TYPES, ENTITIES
from clarion.synth.arrays import DAY, NEVER, Counters, Timeline, group_positions, pick, ts_array
from clarion.synth.orders import p_no_order
from clarion.synth.personas import CHURNED, CLICK_RATE, ENGAGEMENT, OPEN_RATE, PERSONAS, People

CAMPAIGN_WEEKDAYS = (1, 4)  # Tuesday and Friday sends
P_TARGETED = 0.35  # chance a subscribed contact is in a given campaign's audience
SEND_SPREAD = 7200  # a send goes out up to 2 h after the campaign's slot

# A steady rhythm, not a recent burst: campaigns that add orders only in the last months would make
# the model's validation day (90 days before the cutoff) unlike the days it learnt from (tested: the
# ECE of tests/test_segment_quality.py rose from 0.016 to 0.039 with every campaign of the last 120
# days an experiment); one experiment every four weeks adds the same few orders to every window.
EXPERIMENT_EVERY = 8
EFFECT_DAYS = 7  # a planted order falls within this many days after the send (experiments.attribution_days)
CONTROL_SHARE = 0.10  # of each experiment's audience (experiments.holdout_share)
VARIANTS = ("A", "B", "C")
# The best variant's lift of the 7-day conversion probability, by persona (PERSONAS order): lapsing
# customers respond most, loyal ones (who buy anyway) hardly.
BEST_UPLIFT = np.array([0.01, 0.04, 0.06, 0.08, 0.03, 0.05])
# Each variant's share of the best variant's lift; one of them does nothing (it is "clearly worse").
VARIANT_STRENGTH = {2: (1.0, 0.0), 3: (1.0, 0.6, 0.0)}
RESPONSE_DAYS = 2.0  # planted orders come soon after the send: exponential, truncated to the window
SENT, CONTROL = EMAIL_EVENT_TYPES.index("sent"), EMAIL_EVENT_TYPES.index("control")


@dataclass(frozen=True)
class Campaigns:
    times: np.ndarray  # send times, sorted
    ids: pa.Array
    n_variants: np.ndarray  # per campaign: 0 = not an experiment (no variants, no control group)
    uplift: np.ndarray  # [campaign, variant, persona]: planted lift of the 7-day conversion probability

    @property
    def experiment(self) -> np.ndarray:
        return self.n_variants > 0

    def effects_table(self) -> pa.Table:
        """truth/campaign_effects: one row per experiment, variant and persona."""
        c, v, p = np.nonzero(np.broadcast_to(self.experiment[:, None, None], self.uplift.shape))
        real = v < self.n_variants[c]
        c, v, p = c[real], v[real], p[real]
        return pa.table(
            {
                "campaign_id": self.ids.take(pa.array(c)),
                "variant_id": pick(VARIANTS, v),
                "persona": pick(PERSONAS, p),
                "planted_uplift": pa.array(np.round(self.uplift[c, v, p], 6)),
            }
        )


@dataclass(frozen=True)
class Exposures:
    """Each contact's place in each experiment they were in, by index into people and campaigns."""

    contact: np.ndarray
    campaign: np.ndarray
    control: np.ndarray  # in the control group (a `control` event), else sent a variant
    variant: np.ndarray  # index into VARIANTS; -1 for the control group
    at: np.ndarray  # the send (or, for the control group, enrolment) time


@dataclass(frozen=True)
class EmailResult:
    table: pa.Table  # email_events
    unsub_at: np.ndarray  # per contact: when they unsubscribed, NEVER if they did not
    exposures: Exposures


def make_campaigns(tl: Timeline) -> Campaigns:
    first_day = tl.email_start // DAY
    days = np.arange(first_day, tl.cutoff // DAY)
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    send_days = days[np.isin(weekday, CAMPAIGN_WEEKDAYS)]
    times = (send_days * DAY + 9 * 3600).astype(np.int64)  # 09:00 UTC
    ids = [f"CMP-{datetime.fromtimestamp(int(t), UTC):%Y%m%d}" for t in times]
    window_end = times + SEND_SPREAD + EFFECT_DAYS * DAY  # every planted order lies before the cutoff
    ends_in_time = np.flatnonzero(window_end <= tl.cutoff)
    measured = np.zeros(len(times), dtype=bool)
    if len(ends_in_time):
        measured[ends_in_time[(ends_in_time[-1] - ends_in_time) % EXPERIMENT_EVERY == 0]] = True
    n_variants = np.zeros(len(times), dtype=np.int64)
    uplift = np.zeros((len(times), len(VARIANTS), len(PERSONAS)))
    for k, c in enumerate(np.flatnonzero(measured)):  # alternately 3 and 2 variants; the dud moves
        strength = np.roll(VARIANT_STRENGTH[3 if k % 2 == 0 else 2], k)
        n_variants[c] = len(strength)
        uplift[c, : len(strength)] = np.outer(strength, BEST_UPLIFT)
    return Campaigns(times=times, ids=pa.array(ids), n_variants=n_variants, uplift=uplift)


def simulate_email(
    rng: np.random.Generator,
    rng_arms: np.random.Generator,
    people: People,
    tl: Timeline,
    campaigns: Campaigns,
    counters: Counters,
) -> EmailResult:
    """Every send, reaction and control-group enrolment of the chunk's contacts; event ids continue
    from ``counters``. ``rng_arms`` draws the experiments' arms and variants (its own stream, so the
    reactions of campaigns without a control group are what they were before experiments existed)."""
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
    sent_at = times[campaign] + rng.integers(0, SEND_SPREAD, len(contact))
    # the send goes out up to 2 h after the campaign's slot: never after an objection
    legal = sent_at < people.objection_at[contact]
    contact, campaign, sent_at = contact[legal], campaign[legal], sent_at[legal]
    # experiments: a random control group, and a random variant for everybody else
    control = campaigns.experiment[campaign] & (rng_arms.random(len(contact)) < CONTROL_SHARE)
    variant = (rng_arms.random(len(contact)) * campaigns.n_variants[campaign]).astype(np.int64)
    variant = np.where(campaigns.experiment[campaign] & ~control, variant, -1)

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

    # the control group gets nothing, so it cannot unsubscribe from it
    unsub_flag = (rng.random(len(contact)) < p_unsub) & ~control
    # nothing is sent after an unsubscribe: keep each contact's sends up to the first one
    group_start = np.searchsorted(contact, contact, side="left")
    keep = _earlier_in_group(unsub_flag, group_start) == 0
    # a bad address bounces on its first send and is never mailed (nor enrolled) again
    first_send = ~control & (_earlier_in_group(~control, group_start) == 0)
    bounce = people.bad_address[contact] & first_send
    keep &= ~people.bad_address[contact] | (_earlier_in_group(~control, group_start) == 0)
    contact, campaign, sent_at, control, variant = (
        x[keep] for x in (contact, campaign, sent_at, control, variant)
    )
    p_open, p_click, unsub_flag, bounce = p_open[keep], p_click[keep], unsub_flag[keep], bounce[keep]
    unsub_flag &= ~bounce

    k = len(contact)
    opened = ~bounce & ~control & (rng.random(k) < p_open)
    open_at = sent_at + rng.exponential(5 * 3600, k).astype(np.int64) + 60
    clicked = opened & (rng.random(k) < p_click)
    click_at = open_at + rng.exponential(600, k).astype(np.int64) + 5
    unsub_at = np.where(opened, open_at, sent_at) + rng.exponential(3600, k).astype(np.int64) + 30
    opened &= open_at < tl.cutoff
    clicked &= opened & (click_at < tl.cutoff)
    unsub_flag &= unsub_at < tl.cutoff
    unsub_at_of[contact[unsub_flag]] = unsub_at[unsub_flag]

    kinds = [  # (which rows, when, index into EMAIL_EVENT_TYPES)
        (~control, sent_at, SENT),
        (opened, open_at, EMAIL_EVENT_TYPES.index("open")),
        (clicked, click_at, EMAIL_EVENT_TYPES.index("click")),
        (unsub_flag, unsub_at, EMAIL_EVENT_TYPES.index("unsubscribe")),
        (bounce, sent_at + 5, EMAIL_EVENT_TYPES.index("bounce")),
        (control, sent_at, CONTROL),
    ]
    ev_contact = np.concatenate([contact[m] for m, _, _ in kinds])
    ev_campaign = np.concatenate([campaign[m] for m, _, _ in kinds])
    ev_time = np.concatenate([ts[m] for m, ts, _ in kinds])
    ev_type = np.concatenate([np.full(m.sum(), code) for m, _, code in kinds])
    # only the send carries its variant (as ESPs export it); reactions have none
    ev_variant = np.where(ev_type == SENT, np.concatenate([variant[m] for m, _, _ in kinds]), -1)
    order = np.lexsort((ev_type, ev_time))
    ev_contact, ev_campaign, ev_time, ev_type, ev_variant = (
        x[order] for x in (ev_contact, ev_campaign, ev_time, ev_type, ev_variant)
    )
    ids = np.arange(counters.email_events, counters.email_events + len(ev_time))
    counters.email_events += len(ev_time)
    table = pa.table(
        {
            "event_id": pa.array(ids, pa.int64()),
            "contact_id": pa.array(people.ids[ev_contact]),
            "campaign_id": campaigns.ids.take(pa.array(ev_campaign)),
            "event_type": pick(EMAIL_EVENT_TYPES, ev_type),
            "occurred_at": ts_array(ev_time),
            "variant_id": pick(VARIANTS, np.maximum(ev_variant, 0), mask=ev_variant < 0),
        },
        schema=ENTITIES["email_events"].arrow_schema(),
    )
    measured = campaigns.experiment[campaign]
    exposures = Exposures(
        contact=contact[measured],
        campaign=campaign[measured],
        control=control[measured],
        variant=variant[measured],
        at=sent_at[measured],
    )
    return EmailResult(table=table, unsub_at=unsub_at_of, exposures=exposures)


def _earlier_in_group(flag: np.ndarray, group_start: np.ndarray) -> np.ndarray:
    """For rows sorted by group: how many earlier rows of the same group have ``flag`` set."""
    cum = np.cumsum(flag)
    return cum - flag - np.where(group_start > 0, cum[np.maximum(group_start - 1, 0)], 0)


def plant_conversions(
    rng: np.random.Generator, people: People, campaigns: Campaigns, exposures: Exposures
) -> tuple[np.ndarray, np.ndarray]:
    """The extra orders the experiments cause: (index into exposures, order time) for each.

    An extra order with probability uplift / P(no order in the window anyway) lifts the treated
    customer's chance of buying in the window by exactly the uplift (an order the customer would
    have placed anyway adds no conversion); the chance comes from the order process's own rates
    (orders.p_no_order). What it leaves out, other campaigns' planted orders landing in this
    campaign's window, reaches treated and control customers alike."""
    treated = np.flatnonzero(~exposures.control)
    contact, at = exposures.contact[treated], exposures.at[treated]
    lift = campaigns.uplift[exposures.campaign[treated], exposures.variant[treated], people.persona[contact]]
    window = EFFECT_DAYS * DAY
    p_none = p_no_order(people, contact, at, at + window)
    extra = rng.random(len(treated)) < np.minimum(lift / np.maximum(p_none, 1e-9), 1.0)
    # an exponential delay truncated to the window, by inverting its distribution function
    tau = RESPONSE_DAYS * DAY
    u = rng.random(len(treated))
    delay = -tau * np.log1p(-u * -np.expm1(-window / tau))
    when = at + np.minimum(delay.astype(np.int64), window - 1)
    return treated[extra], when[extra]


def assignment_table(
    people: People, campaigns: Campaigns, exposures: Exposures, planted: np.ndarray, order_ids: np.ndarray
) -> pa.Table:
    """truth/campaign_assignment: every experiment's every audience member, their arm and variant,
    and the planted order (``order_ids`` of the ``planted`` exposures), if any."""
    extra = np.zeros(len(exposures.contact), dtype=np.int64)
    extra[planted] = order_ids
    return pa.table(
        {
            "campaign_id": campaigns.ids.take(pa.array(exposures.campaign)),
            "contact_id": pa.array(people.ids[exposures.contact]),
            "arm": pa.array(np.where(exposures.control, "control", "treatment")),
            "variant_id": pick(VARIANTS, np.maximum(exposures.variant, 0), mask=exposures.control),
            "exposed_at": ts_array(exposures.at),
            "extra_order_id": pa.array(extra, pa.int64(), mask=extra == 0),
        }
    )
