"""Vectorised simulation of a CRM with planted behaviour, one chunk of contacts at a time.

The chunk's contacts (clarion/synth/personas.py) get a persona and, if declining or churned, one or
two planted churn drivers with an onset time. Their orders (orders.py), marketing e-mail
(campaigns.py) and support tickets (tickets.py) leave the drivers' traces before the onset; this
module runs those simulators in order and writes the consent log, the contacts table and the truth.
The process runs past the cutoff so the truth knows who really buys next; only the history before
the cutoff lands in the export.

Everything is numpy over whole chunks: no Python loop per order or event (tickets' text is the one
exception, at about 0.2 tickets per contact-year).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from clarion.contract import AGE_BANDS, CONSENT_SOURCES, COUNTRIES, ENTITIES, LAWFUL_BASES, PRODUCT_CATEGORIES
from clarion.synth.arrays import DAY, NEVER, Counters, Timeline, pick, ts_array
from clarion.synth.campaigns import Campaigns, assignment_table, plant_conversions, simulate_email
from clarion.synth.orders import Catalog, simulate_orders
from clarion.synth.personas import DRIVERS, PERSONAS, simulate_names, simulate_people
from clarion.synth.tickets import simulate_tickets


@dataclass
class ChunkResult:
    tables: dict[str, pa.Table]  # contract entities, history before the cutoff
    truth: pa.Table  # one row per contact
    ticket_truth: pa.Table
    assignment: pa.Table  # every experiment's arms (truth/campaign_assignment)
    future_orders: pa.Table  # orders after the cutoff, ids not yet assigned (see generator)
    future_items: pa.Table


class ChunkSimulator:
    """Simulates ``n`` contacts with ids ``first_id..first_id+n-1``. Deterministic for its seed."""

    def __init__(
        self,
        seed: np.random.SeedSequence,
        first_id: int,
        n: int,
        tl: Timeline,
        catalog: Catalog,
        campaigns: Campaigns,
    ) -> None:
        # a seventh stream came with experiments: the first six (spawned in this order) are unchanged
        streams = [np.random.default_rng(s) for s in seed.spawn(7)]
        self.rng_people, self.rng_orders, self.rng_items, self.rng_email, self.rng_tickets, self.rng_misc = (
            streams[:6]
        )
        self.rng_arms = streams[6]
        self.n = n
        self.ids = np.arange(first_id, first_id + n, dtype=np.int64)
        self.tl = tl
        self.catalog = catalog
        self.campaigns = campaigns

    def run(self, counters: Counters) -> ChunkResult:
        tl = self.tl
        self.people = simulate_people(self.rng_people, self.ids, tl)
        self.names = simulate_names(self.rng_misc, self.people)
        # e-mail first: the experiments' planted orders are made with the others
        email = simulate_email(self.rng_email, self.rng_arms, self.people, tl, self.campaigns, counters)
        self.unsub_at = email.unsub_at
        planted, planted_at = plant_conversions(self.rng_arms, self.people, self.campaigns, email.exposures)
        self.order_result = simulate_orders(
            self.rng_orders,
            self.rng_items,
            self.people,
            tl,
            self.catalog,
            counters,
            planted_owner=email.exposures.contact[planted],
            planted_time=planted_at,
        )
        assignment = assignment_table(
            self.people, self.campaigns, email.exposures, planted, self.order_result.planted_ids
        )
        tickets, ticket_truth = simulate_tickets(
            self.rng_tickets, self.people, self.names, self.order_result, tl, counters
        )
        consents = self._consents(counters)
        contacts = self._contacts_table()
        truth = self._truth()
        return ChunkResult(
            tables={
                "contacts": contacts,
                "orders": self.order_result.orders,
                "order_items": self.order_result.items,
                "email_events": email.table,
                "support_tickets": tickets,
                "consents": consents,
            },
            truth=truth,
            ticket_truth=ticket_truth,
            assignment=assignment,
            future_orders=self.order_result.future_orders,
            future_items=self.order_result.future_items,
        )

    # -- consents and contacts -------------------------------------------------------------------
    # -- consents and contacts -------------------------------------------------------------------
    def _consents(self, counters: Counters) -> pa.Table:
        unsub = self.unsub_at < NEVER
        src = CONSENT_SOURCES
        parts = [
            # (mask, time, channel, event, source index, basis index or -1)
            (
                self.people.optin,
                self.people.optin_at,
                "email",
                "opt_in",
                self.people.optin_source,
                self.people.optin_basis,
            ),
            (unsub, self.unsub_at, "email", "opt_out", np.full(self.n, src.index("unsubscribe_link")), None),
            (
                self.people.sms,
                self.people.sms_at,
                "sms",
                "opt_in",
                self.people.sms_source,
                np.zeros(self.n, dtype=np.int64),
            ),
            (
                self.people.sms_out,
                self.people.sms_out_at,
                "sms",
                "opt_out",
                np.full(self.n, src.index("preference_center")),
                None,
            ),
            (
                self.people.objection,
                self.people.objection_at,
                "all",
                "objection",
                self.people.objection_source,
                None,
            ),
        ]
        contact = np.concatenate([np.flatnonzero(m) for m, *_ in parts])
        when = np.concatenate([t[m] for m, t, *_ in parts])
        channel = np.concatenate([np.full(m.sum(), ch, dtype=object) for m, _, ch, *_ in parts])
        event = np.concatenate([np.full(m.sum(), ev, dtype=object) for m, _, _, ev, *_ in parts])
        source = np.concatenate([s[m] for m, _, _, _, s, _ in parts])
        basis = np.concatenate([b[m] if b is not None else np.full(m.sum(), -1) for m, *_, b in parts])
        order = np.lexsort((when, contact))
        contact, when, channel, event, source, basis = (
            x[order] for x in (contact, when, channel, event, source, basis)
        )
        ids = np.arange(counters.consents, counters.consents + len(contact))
        counters.consents += len(contact)
        return pa.table(
            {
                "consent_id": pa.array(ids, pa.int64()),
                "contact_id": pa.array(self.people.ids[contact]),
                "channel": pa.array(channel.astype(str)),
                "event": pa.array(event.astype(str)),
                "recorded_at": ts_array(when),
                "source": pick(src, source),
                "lawful_basis": pick(LAWFUL_BASES, np.maximum(basis, 0), mask=basis < 0),
            },
            schema=ENTITIES["consents"].arrow_schema(),
        )

    def _contacts_table(self) -> pa.Table:
        c = self.tl.cutoff
        unsub = self.unsub_at < NEVER
        email_consent = self.people.optin & ~unsub
        email_at = np.where(unsub, self.unsub_at, self.people.optin_at)
        email_src = np.where(unsub, CONSENT_SOURCES.index("unsubscribe_link"), self.people.optin_source)
        sms_consent = self.people.sms & ~self.people.sms_out
        sms_at = np.where(self.people.sms_out, self.people.sms_out_at, self.people.sms_at)
        sms_src = np.where(
            self.people.sms_out, CONSENT_SOURCES.index("preference_center"), self.people.sms_source
        )
        changed = np.maximum.reduce(
            [
                self.people.signup,
                np.where(self.people.optin, email_at, 0),
                np.where(self.people.sms, sms_at, 0),
                np.where(self.people.objection, self.people.objection_at, 0),
            ]
        )
        updated = np.minimum(changed + 1, c - 1)
        # phone numbers are optional: some people never gave one
        has_phone = self.rng_misc.random(self.n) < 0.7
        return pa.table(
            {
                "contact_id": pa.array(self.people.ids),
                "first_name": pa.array(self.names.first, pa.string()),
                "last_name": pa.array(self.names.last, pa.string()),
                "email": pa.array(self.names.emails, pa.string()),
                "phone": pa.array(self.names.phones, pa.string(), mask=~has_phone),
                "country": pick(COUNTRIES, self.people.country),
                "signup_date": pa.array((self.people.signup // DAY).astype(np.int32), pa.date32()),
                "email_consent": pa.array(email_consent),
                "email_consent_at": ts_array(email_at, mask=~self.people.optin),
                "email_consent_source": pick(CONSENT_SOURCES, email_src, mask=~self.people.optin),
                "email_lawful_basis": pick(LAWFUL_BASES, self.people.optin_basis, mask=~self.people.optin),
                "sms_consent": pa.array(sms_consent),
                "sms_consent_at": ts_array(sms_at, mask=~self.people.sms),
                "sms_consent_source": pick(CONSENT_SOURCES, sms_src, mask=~self.people.sms),
                "sms_lawful_basis": pick(
                    LAWFUL_BASES, np.zeros(self.n, dtype=np.int64), mask=~self.people.sms
                ),
                "marketing_objection": pa.array(self.people.objection),
                "age_band": pick(AGE_BANDS, self.people.age, mask=~self.people.age_known),
                "updated_at": ts_array(updated),
            },
            schema=ENTITIES["contacts"].arrow_schema(),
        )

    # -- truth -----------------------------------------------------------------------------------
    def _truth(self) -> pa.Table:
        n, c = self.n, self.tl.cutoff
        bought = ~self.order_result.future_cancelled
        in90 = bought & (self.order_result.future_time < c + 90 * DAY)
        orders_90 = np.bincount(self.order_result.future_owner[in90], minlength=n)
        spend_90 = np.bincount(
            self.order_result.future_owner[in90], weights=self.order_result.future_eur[in90], minlength=n
        )
        orders_all = np.bincount(self.order_result.future_owner[bought], minlength=n)
        spend_all = np.bincount(
            self.order_result.future_owner[bought], weights=self.order_result.future_eur[bought], minlength=n
        )
        names = [
            ";".join(d for i, d in enumerate(DRIVERS) if mask & (1 << i))
            for mask in self.people.drivers.tolist()
        ]
        planted = (self.people.onset < NEVER) & (self.people.drivers > 0)
        return pa.table(
            {
                "contact_id": pa.array(self.people.ids),
                "persona": pick(PERSONAS, self.people.persona),
                "drivers": pa.array(names),
                "onset_date": pa.array(
                    (np.where(planted, self.people.onset, 0) // DAY).astype(np.int32),
                    pa.date32(),
                    mask=~planted,
                ),
                "will_purchase_90d": pa.array(orders_90 > 0),
                "future_orders_90d": pa.array(orders_90, pa.int64()),
                "future_spend_90d_eur": pa.array(np.round(spend_90, 2)),
                "future_orders": pa.array(orders_all, pa.int64()),
                "future_spend_eur": pa.array(np.round(spend_all, 2)),
                "favourite_category": pick(PRODUCT_CATEGORIES, self.order_result.favourite),
            }
        )
