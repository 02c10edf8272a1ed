"""`clarion generate --profile transactions`: a US online shop that exports nothing but its purchases.

The point of this profile is to test purchase models honestly. Repeat buying here is *mostly* the
BG/NBD story (Poisson purchases at a heterogeneous rate until a silent, unrecorded dropout), plus
the deviations real shops show, each of which a BG/NBD model cannot see by construction. If the data
were exactly BG/NBD, BG/NBD would be the best possible model and nothing could beat it.

Behaviour and its parameters (:class:`ShopParameters`, recorded in ``manifest.json``); times are
days, rates are per year:

Acquisition
    Each customer exists from their first purchase, drawn over ``start..cutoff`` with density
    ``exp(growth_per_year * years since start) * season(t)``: mild growth (``growth_per_year=0.25``)
    and more newcomers in the holiday season. Everyone in the file has bought at least once.
Purchase rate
    ``lambda_i ~ Gamma(rate_shape=0.6)`` with mean ``rate_mean_per_year=2.6``: most customers buy
    rarely, a few very often. While active, a customer buys at ``lambda_i * season(t) *
    window_i(t) * fade_i(t)``.
Shop-wide seasonality
    ``season(t) = 1 + season_amplitude * cos(2 pi (day_of_year - season_peak_day) / 365.25)``:
    ``season_amplitude=0.28`` (+/-28 %), peak ``season_peak_day=340`` (early December), trough in
    early June.
Seasonal (gift) buyers
    ``seasonal_share=0.23`` of customers buy mostly in a personal window each year:
    ``window_i(t) = window_floor + (1 - window_floor) * vonMises(day_of_year; peak_i,
    window_concentration)``, which averages 1 over a year (their yearly rate is still lambda_i);
    ``window_floor=0.1``, ``window_concentration=6`` (about +/-25 days). The peak is near Christmas
    (day-of-year ~ N(345, 10)) for ``christmas_share=0.4`` of them and anywhere in the year
    (birthdays, anniversaries) for the rest, so buying in last year's window predicts this year's.
Replenishment buyers (regular timing)
    ``regular_share=0.35`` of the other customers re-buy on a rhythm (consumables): the gaps
    between their purchases are Gamma with shape ``U(regular_gap_shape=(2, 5))`` and mean
    1/lambda_i on the seasonal clock (time running at ``season(t)``), not exponential. For them
    "days since the last purchase compared with the usual gap" carries information that a Poisson
    model ignores; everyone else buys as a Poisson process (simulated by thinning).
Abrupt dropout (BG-like, with tenure)
    After each purchase a customer silently stops for good with probability
    ``p_i * (1 + early_dropout_boost * exp(-tenure / early_dropout_days))``, with
    ``p_i ~ Beta(dropout_beta=(1, 8))`` (mean 0.11), ``early_dropout_boost=1.2``,
    ``early_dropout_days=120``. Unlike BG/NBD, a customer can stop right after the first purchase
    (at 2.2 p_i) and the hazard falls as the customer becomes established.
Slowing down before stopping
    Independently, each customer starts to drift away at a random time (hazard
    ``fade_hazard_per_year=0.5`` from the first purchase). From then on their rate halves every
    ``H ~ U(fade_half_life_days=(90, 180))`` days, and they stop for good ``H * U(1.5, 2.5)`` days
    after it began (``fade_length_half_lives``), by then buying at a fifth to a third of their old
    rate. Whichever comes first, the abrupt or the faded stop, ends the customer. No dropout is
    ever recorded in the export.
Spend
    A customer's mean order value is ``spend_median * exp(spend_customer_sigma * z +
    spend_rate_elasticity * standardised log lambda_i)`` (median USD 55, sigma 0.55, a mild positive
    link to frequency); each order is that times ``lognormal(sigma=spend_order_sigma=0.4, mean 1)``,
    rounded to cents and kept within USD 2.00..5,000.00. Amounts are always positive: no refunds,
    and no defects in this profile (``generate.defects`` is ignored with a warning; the manifest
    records it under ``defects.ignored_setting``).

What that gives (defaults, 50,000 customers, seed 7): 57 % of customers buy exactly once before
the cutoff, the top 10 % of customers by orders make 39 % of the orders, 45 % are still active at
the cutoff and 11 % are slowing down then, and a day in November-December has about twice the
orders of a day in June-July (shop season, gift buyers and holiday newcomers together).

The process runs ``future_days`` past the cutoff so ``truth/customers`` knows who buys next; only
purchases before the cutoff are in the export. Output folder::

    transactions.csv                customer_id,order_date,amount (YYYY-MM-DD, USD with 2 decimals),
                                    sorted by date then customer
    truth/customers.csv             one row per customer, see below
    truth/future_transactions.csv   the purchases after the cutoff, same columns and order
    manifest.json                   generator, profile, parameters, row counts, sha256 of every file

``truth/customers`` columns: customer_id, first_purchase_date, purchases_before_cutoff,
spend_before_cutoff; base_rate_per_year (lambda_i) and rate_at_cutoff_per_year (lambda_i times
season, window and fade on the day after the cutoff, 0 once inactive; for replenishment buyers the
long-run rate); dropout_probability (p_i); alive_at_cutoff, inactive_from and dropout_kind
(abrupt/fade, empty while active to the end of the simulation); slowing_down (fading at the
cutoff) and slowing_since; seasonal_buyer and window_peak_day (day of the year, 1-366);
replenishment_buyer; will_purchase_90d, future_orders_90d, future_spend_90d, and the same over all
``future_days`` (will_purchase_future, future_orders, future_spend).

Customers are simulated in fixed chunks of 50,000, each from its own seed, and their purchases
spill to disk; the files are then written one month at a time across all chunks, so memory stays
bounded and the same seed and size give byte-identical files.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

import clarion
from clarion.config import GenerateSettings
from clarion.errors import GenerateError
from clarion.synth.arrays import cents_to_decimal
from clarion.synth.generator import (
    GENERATOR,
    GENERATOR_VERSION,
    MANIFEST_FILE,
    GenerateResult,
    Progress,
    _check_target,
)
from clarion.synth.sinks import FileSink

log = logging.getLogger(__name__)

PROFILE = "transactions"
CHUNK_CUSTOMERS = 50_000  # fixed: changing it changes the data a seed produces
CURRENCY = "USD"
DATA_FILE = "transactions"
TRUTH_CUSTOMERS = "truth/customers"
TRUTH_FUTURE = "truth/future_transactions"
COLUMNS = {"customer_id": "contact_id", "order_date": "ordered_at", "amount": "total_amount"}
SOURCE_NAME = "shop"
YEAR_DAYS = 365.25
BLOCK_DAYS = 31  # days of purchases merged across chunks per write
WRITE_ROWS = 1 << 18  # rows gathered before a write (one Parquet row group)
EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class ShopParameters:
    """Every behaviour constant of the shop (see the module docstring for what each one does)."""

    growth_per_year: float = 0.25
    season_amplitude: float = 0.28
    season_peak_day: float = 340.0  # day of year: December 6
    rate_shape: float = 0.6
    rate_mean_per_year: float = 2.6
    dropout_beta: tuple[float, float] = (1.0, 8.0)
    early_dropout_boost: float = 1.2
    early_dropout_days: float = 120.0
    fade_hazard_per_year: float = 0.5
    fade_half_life_days: tuple[float, float] = (90.0, 180.0)
    fade_length_half_lives: tuple[float, float] = (1.5, 2.5)
    seasonal_share: float = 0.23
    christmas_share: float = 0.4
    christmas_peak_day: float = 345.0
    christmas_peak_sd_days: float = 10.0
    window_concentration: float = 6.0
    window_floor: float = 0.10
    regular_share: float = 0.35
    regular_gap_shape: tuple[float, float] = (2.0, 5.0)
    spend_median: float = 55.0
    spend_customer_sigma: float = 0.55
    spend_order_sigma: float = 0.40
    spend_rate_elasticity: float = 0.08
    amount_min: float = 2.00
    amount_max: float = 5000.00


PARAMETERS = ShopParameters()


@dataclass(frozen=True)
class ShopTimeline:
    """Days since 1970-01-01: history is [start, cutoff_end), the simulation runs to future_end."""

    start: int
    cutoff_end: int
    future_end: int

    @classmethod
    def from_settings(cls, g: GenerateSettings) -> ShopTimeline:
        if (g.cutoff - g.start).days < 400:
            raise GenerateError(
                f"generate.start ({g.start}) must be at least 400 days before generate.cutoff ({g.cutoff})"
            )
        cutoff_end = (g.cutoff - EPOCH).days + 1
        return cls((g.start - EPOCH).days, cutoff_end, cutoff_end + g.future_days)


# --------------------------------------------------------------------------------------------------
# the shop's rate functions


def season(t: np.ndarray, p: ShopParameters = PARAMETERS) -> np.ndarray:
    """Shop-wide demand multiplier; t in days since the epoch (1970-01-01 is day-of-year 0)."""
    doy = np.mod(t, YEAR_DAYS)
    return 1.0 + p.season_amplitude * np.cos(2 * np.pi * (doy - p.season_peak_day) / YEAR_DAYS)


def window(t: np.ndarray, peak: np.ndarray, p: ShopParameters = PARAMETERS) -> np.ndarray:
    """A seasonal buyer's personal multiplier (mean 1 over a year); peak is NaN for everyone else."""
    k = p.window_concentration
    bump = np.exp(k * np.cos(2 * np.pi * (np.mod(t, YEAR_DAYS) - peak) / YEAR_DAYS)) / np.i0(k)
    return np.where(np.isnan(peak), 1.0, p.window_floor + (1 - p.window_floor) * bump)


def _window_max(p: ShopParameters) -> float:
    k = p.window_concentration
    return p.window_floor + (1 - p.window_floor) * np.exp(k) / np.i0(k)


# --------------------------------------------------------------------------------------------------
# one chunk of customers


@dataclass
class ChunkOutput:
    history: pa.RecordBatch  # day, customer_id, cents, sorted by (day, customer, time)
    future: pa.RecordBatch
    truth: pa.Table


def simulate_chunk(
    seed: np.random.SeedSequence, first_id: int, n: int, tl: ShopTimeline, p: ShopParameters = PARAMETERS
) -> ChunkOutput:
    """Customers ``first_id..first_id+n-1``, every purchase up to the end of the future. Vectorised
    over the chunk: no loop per customer or per purchase."""
    r_people, r_buy, r_drop, r_spend = (np.random.default_rng(s) for s in seed.spawn(4))
    ids = np.arange(first_id, first_id + n, dtype=np.int64)
    c, end = float(tl.cutoff_end), float(tl.future_end)

    # acquisition: a daily grid weighted by growth and season, then a uniform time within the day
    days = np.arange(tl.start, tl.cutoff_end, dtype=np.float64)
    weight = np.exp(p.growth_per_year * (days - tl.start) / YEAR_DAYS) * season(days + 0.5, p)
    cdf = np.cumsum(weight / weight.sum())
    day = np.minimum(np.searchsorted(cdf, r_people.random(n), side="right"), len(days) - 1)
    first = days[day] + r_people.random(n)

    lam = r_people.gamma(p.rate_shape, p.rate_mean_per_year / p.rate_shape, n)
    lam = np.maximum(lam, 1e-4) / YEAR_DAYS  # per day; the floor keeps logs and gaps finite
    drop_p = r_people.beta(*p.dropout_beta, n)
    seasonal = r_people.random(n) < p.seasonal_share
    christmas = r_people.random(n) < p.christmas_share
    peak = np.where(
        christmas,
        r_people.normal(p.christmas_peak_day, p.christmas_peak_sd_days, n),
        r_people.uniform(0, YEAR_DAYS, n),
    )
    peak = np.where(seasonal, np.mod(peak, YEAR_DAYS), np.nan)
    regular = ~seasonal & (r_people.random(n) < p.regular_share)
    shape = r_people.uniform(*p.regular_gap_shape, n)
    fade_start = first + r_people.exponential(YEAR_DAYS / p.fade_hazard_per_year, n)
    half_life = r_people.uniform(*p.fade_half_life_days, n)
    fade_end = fade_start + half_life * r_people.uniform(*p.fade_length_half_lives, n)
    log_lam = np.log(lam * YEAR_DAYS)
    z_rate = (log_lam - log_lam.mean()) / max(float(log_lam.std()), 1e-9)
    mean_value = p.spend_median * np.exp(
        p.spend_customer_sigma * r_people.standard_normal(n) + p.spend_rate_elasticity * z_rate
    )

    def rate_factor(owner: np.ndarray, t: np.ndarray) -> np.ndarray:
        fading = np.clip((t - fade_start[owner]) / half_life[owner], 0.0, None)
        alive = t < fade_end[owner]
        return season(t, p) * window(t, peak[owner], p) * np.exp2(-fading) * alive

    # irregular buyers: a Poisson process, by thinning one at each customer's highest possible rate
    bound = np.where(seasonal, _window_max(p), 1.0) * (1 + p.season_amplitude)
    k = r_buy.poisson(np.where(regular, 0.0, lam * bound * (end - first)))
    owner = np.repeat(np.arange(n), k)
    t = first[owner] + r_buy.random(len(owner)) * (end - first)[owner]
    keep = r_buy.random(len(t)) * bound[owner] < rate_factor(owner, t)
    # replenishment buyers: Gamma(k) gaps in the shop's seasonal clock, then the same fade
    r_owner, r_t = _renewals(r_buy, np.flatnonzero(regular), first, end, lam, shape, p)
    fading = np.clip((r_t - fade_start[r_owner]) / half_life[r_owner], 0.0, None)
    r_keep = (r_buy.random(len(r_t)) < np.exp2(-fading)) & (r_t < fade_end[r_owner])
    owner = np.concatenate([np.arange(n), owner[keep], r_owner[r_keep]])
    t = np.concatenate([first, t[keep], r_t[r_keep]])
    order = np.lexsort((t, owner))
    owner, t = owner[order], t[order]

    # abrupt dropout after a purchase, likelier early in tenure; the first one that happens ends it
    counts = np.bincount(owner, minlength=n)
    starts = np.cumsum(counts) - counts
    pos = np.arange(len(owner)) - starts[owner]
    tenure = t - first[owner]
    p_drop = np.minimum(
        drop_p[owner] * (1 + p.early_dropout_boost * np.exp(-tenure / p.early_dropout_days)), 1.0
    )
    dropped = r_drop.random(len(t)) < p_drop
    big = np.iinfo(np.int64).max
    stop_pos = np.minimum.reduceat(np.where(dropped, pos, big), starts)
    abrupt_at = np.full(n, np.inf)
    has_drop = stop_pos < big
    abrupt_at[has_drop] = t[starts[has_drop] + stop_pos[has_drop]]
    kept = (pos <= stop_pos[owner]) & (t < fade_end[owner])
    owner, t = owner[kept], t[kept]

    sigma = p.spend_order_sigma
    cents = np.round(100 * mean_value[owner] * r_spend.lognormal(-(sigma**2) / 2, sigma, len(t)))
    cents = np.clip(cents, round(100 * p.amount_min), round(100 * p.amount_max)).astype(np.int64)

    inactive_at = np.minimum(abrupt_at, fade_end)
    hist = t < c
    truth = _truth_table(
        ids,
        tl,
        p,
        first=first,
        lam=lam,
        drop_p=drop_p,
        peak=peak,
        regular=regular,
        fade_start=fade_start,
        half_life=half_life,
        inactive_at=inactive_at,
        abrupt=abrupt_at < fade_end,
        owner=owner,
        t=t,
        cents=cents,
    )
    return ChunkOutput(
        history=_day_sorted(ids[owner[hist]], t[hist], cents[hist]),
        future=_day_sorted(ids[owner[~hist]], t[~hist], cents[~hist]),
        truth=truth,
    )


def seasonal_clock(t: np.ndarray, p: ShopParameters = PARAMETERS) -> np.ndarray:
    """The integral of season(t): time that runs faster in the holiday season."""
    w = 2 * np.pi / YEAR_DAYS
    return t + p.season_amplitude / w * np.sin(w * (t - p.season_peak_day))


def seasonal_clock_inverse(u: np.ndarray, p: ShopParameters = PARAMETERS) -> np.ndarray:
    """Newton's method; the clock's slope is at least 1 - season_amplitude, so a few steps suffice."""
    t = u.copy()
    for _ in range(8):
        t -= (seasonal_clock(t, p) - u) / season(t, p)
    return t


def _renewals(
    rng: np.random.Generator,
    who: np.ndarray,
    first: np.ndarray,
    end: float,
    lam: np.ndarray,
    shape: np.ndarray,
    p: ShopParameters,
) -> tuple[np.ndarray, np.ndarray]:
    """Purchases after the first of each customer in ``who``: gaps ~ Gamma(shape, mean 1/lambda) on
    the seasonal clock. Enough gaps are drawn to pass ``end`` but for a 4-sigma shortfall."""
    u0, u_end = seasonal_clock(first[who], p), float(seasonal_clock(np.array([end]), p)[0])
    mean = lam[who] * (u_end - u0)
    draws = np.ceil(mean + 4 * np.sqrt(mean / shape[who]) + 3).astype(np.int64)
    owner = np.repeat(who, draws)
    gaps = rng.gamma(shape[owner], 1.0 / (shape[owner] * lam[owner]))
    total = np.cumsum(gaps)
    starts = np.cumsum(draws) - draws
    before = np.repeat(total[starts] - gaps[starts], draws)  # the running sum before each group
    u = np.repeat(u0, draws) + (total - before)
    inside = u < u_end
    return owner[inside], seasonal_clock_inverse(u[inside], p)


def _day_sorted(customer: np.ndarray, t: np.ndarray, cents: np.ndarray) -> pa.RecordBatch:
    day = np.floor(t).astype(np.int32)
    order = np.lexsort((t, customer, day))
    return pa.record_batch(
        {
            "day": pa.array(day[order], pa.int32()),
            "customer_id": pa.array(customer[order], pa.int64()),
            "cents": pa.array(cents[order], pa.int64()),
        }
    )


def _truth_table(
    ids: np.ndarray,
    tl: ShopTimeline,
    p: ShopParameters,
    *,
    first: np.ndarray,
    lam: np.ndarray,
    drop_p: np.ndarray,
    peak: np.ndarray,
    regular: np.ndarray,
    fade_start: np.ndarray,
    half_life: np.ndarray,
    inactive_at: np.ndarray,
    abrupt: np.ndarray,
    owner: np.ndarray,
    t: np.ndarray,
    cents: np.ndarray,
) -> pa.Table:
    n, c = len(ids), float(tl.cutoff_end)
    hist = t < c
    in90 = ~hist & (t < c + 90)

    def per_customer(mask: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        w = None if weights is None else weights[mask]
        return np.bincount(owner[mask], weights=w, minlength=n)

    alive = inactive_at > c
    slowing = alive & (fade_start <= c)
    c_arr = np.full(n, c)
    fading = np.clip((c - fade_start) / half_life, 0.0, None)
    rate_now = lam * YEAR_DAYS * season(c_arr, p) * window(c_arr, peak, p) * np.exp2(-fading) * alive
    orders_90 = per_customer(in90).astype(np.int64)
    orders_all = per_customer(~hist).astype(np.int64)
    ended = inactive_at < tl.future_end
    began_fading = (fade_start < inactive_at) & (fade_start < tl.future_end)
    seasonal = ~np.isnan(peak)

    def dates(days: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
        values = np.where(mask, days, 0) if mask is not None else days
        return pa.array(np.floor(values).astype(np.int32), pa.date32(), mask=None if mask is None else ~mask)

    return pa.table(
        {
            "customer_id": pa.array(ids, pa.int64()),
            "first_purchase_date": dates(first),
            "purchases_before_cutoff": pa.array(per_customer(hist).astype(np.int64)),
            "spend_before_cutoff": cents_to_decimal(per_customer(hist, cents).astype(np.int64)),
            "base_rate_per_year": pa.array(np.round(lam * YEAR_DAYS, 4)),
            "rate_at_cutoff_per_year": pa.array(np.round(rate_now, 4)),
            "dropout_probability": pa.array(np.round(drop_p, 4)),
            "alive_at_cutoff": pa.array(alive),
            "inactive_from": dates(inactive_at, ended),
            "dropout_kind": pa.array(np.where(abrupt, "abrupt", "fade"), pa.string(), mask=~ended),
            "slowing_down": pa.array(slowing),
            "slowing_since": dates(fade_start, began_fading),
            "seasonal_buyer": pa.array(seasonal),
            "window_peak_day": pa.array(
                np.where(seasonal, np.floor(np.nan_to_num(peak)) + 1, 0).astype(np.int64), mask=~seasonal
            ),
            "replenishment_buyer": pa.array(regular),
            "will_purchase_90d": pa.array(orders_90 > 0),
            "future_orders_90d": pa.array(orders_90),
            "future_spend_90d": cents_to_decimal(per_customer(in90, cents).astype(np.int64)),
            "will_purchase_future": pa.array(orders_all > 0),
            "future_orders": pa.array(orders_all),
            "future_spend": cents_to_decimal(per_customer(~hist, cents).astype(np.int64)),
        }
    )


# --------------------------------------------------------------------------------------------------
# writing


class _DaySpill:
    """Each chunk's purchases wait on disk, sorted by day; written out a month at a time across all
    chunks, so the file is sorted by date then customer without holding it in memory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: pa.ipc.RecordBatchFileWriter | None = None

    def add(self, batch: pa.RecordBatch) -> None:
        if self._writer is None:
            self._writer = pa.ipc.new_file(str(self.path), batch.schema)
        self._writer.write_batch(batch)

    def write_sorted(self, sink: FileSink, name: str, first_day: int, end_day: int) -> None:
        if self._writer is None:
            return
        self._writer.close()
        with pa.memory_map(str(self.path)) as source:
            spill = pa.ipc.open_file(source)
            chunks = [spill.get_batch(i) for i in range(spill.num_record_batches)]
            day_of = [b.column("day").to_numpy() for b in chunks]
            pending: list[pa.Table] = []
            rows = 0
            wrote = False
            for lo in range(first_day, end_day, BLOCK_DAYS):
                hi = min(lo + BLOCK_DAYS, end_day)
                parts = []
                for batch, d in zip(chunks, day_of, strict=True):
                    a, b = np.searchsorted(d, [lo, hi])
                    if b > a:
                        parts.append(batch.slice(a, b - a))
                if not parts:
                    continue
                block = pa.Table.from_batches(parts).combine_chunks()
                # chunks hold ascending customer ids, so a stable sort by day keeps customer order
                order = np.argsort(block.column("day").to_numpy(), kind="stable")
                pending.append(_rows(block.take(pa.array(order))))
                rows += block.num_rows
                if rows >= WRITE_ROWS:
                    sink.write(name, pa.concat_tables(pending))
                    pending, rows, wrote = [], 0, True
            if pending or not wrote:
                sink.write(name, pa.concat_tables(pending) if pending else _rows(chunks[0].slice(0, 0)))
        self.path.unlink()


def _rows(block: pa.Table | pa.RecordBatch) -> pa.Table:
    day = block.column("day")
    cents = block.column("cents").to_numpy(zero_copy_only=False)
    return pa.table(
        {
            "customer_id": block.column("customer_id"),
            "order_date": day.cast(pa.date32()) if len(day) else pa.array([], pa.date32()),
            "amount": cents_to_decimal(cents),
        }
    )


def sources_block(path: str, fmt: str) -> dict[str, Any]:
    """The ``sources:`` entry that loads this folder with Clarion's transactions extract."""
    return {
        SOURCE_NAME: {
            "kind": "files",
            "path": path,
            "transactions": {
                "files": [f"{DATA_FILE}*.{fmt}"],
                "columns": dict(COLUMNS),
                "currency": CURRENCY,
            },
        }
    }


def sources_yaml(path: str, fmt: str) -> str:
    """The block as a person pastes it into clarion.yaml (flow style for the short mappings)."""
    shown = path if re.fullmatch(r"[A-Za-z0-9_./-]+", path) else json.dumps(path)
    columns = ", ".join(f"{k}: {v}" for k, v in COLUMNS.items())
    return (
        "sources:\n"
        f"  {SOURCE_NAME}:\n"
        "    kind: files\n"
        f"    path: {shown}\n"
        "    transactions:\n"
        f'      files: ["{DATA_FILE}*.{fmt}"]\n'
        f"      columns: {{{columns}}}\n"
        f"      currency: {CURRENCY}\n"
    )


@dataclass
class TransactionsResult(GenerateResult):
    def summary(self, source_path: str | None = None) -> dict[str, Any]:
        """``source_path``: how the folder is named in the printed sources block [the absolute path]."""
        m = self.manifest
        path = source_path or str(self.out)
        return {
            "out": str(self.out),
            "profile": PROFILE,
            "destination": self.destination,
            "customers": m["customers"],
            "seed": m["seed"],
            "format": m["format"],
            "rows": {e: v["rows"] for e, v in m["entities"].items()},
            "truth": str(self.out / m["truth"]["customers"]),
            "one_time_buyers": m["truth"]["one_time_buyers"],
            "sources": sources_block(path, m["format"]),
            "sources_yaml": sources_yaml(path, m["format"]),
            "seconds": round(self.seconds, 2),
        }

    def text(self, source_path: str | None = None) -> str:
        m, s = self.manifest, self.summary(source_path)
        t = m["truth"]
        customers = m["customers"]
        lines = [
            f"Generated a transactions-only shop: {customers:,} customers, seed {m['seed']}, "
            f"{m['format']}, USD, in {self.seconds:.1f} s",
            f"  data      {self.out / m['entities']['transactions']['files'][0]}  "
            f"({m['entities']['transactions']['rows']:,} purchases up to {m['cutoff']})",
            f"  truth     {s['truth']}  (dropout, slowing down, season window, purchases after "
            f"{m['cutoff']})",
            f"            {t['one_time_buyers'] / customers:.0%} bought once, "
            f"{t['alive_at_cutoff'] / customers:.0%} still active at the cutoff, "
            f"{t['slowing_down']:,} slowing down, {t['seasonal_buyers']:,} seasonal buyers",
            f"  manifest  {self.out / MANIFEST_FILE}",
            "",
            "Load it with this in clarion.yaml:",
            "",
            s["sources_yaml"].rstrip(),
        ]
        return "\n".join(lines)


def generate_transactions(
    g: GenerateSettings, out: Path, progress: Progress | None = None
) -> TransactionsResult:
    started = time.perf_counter()
    tl = ShopTimeline.from_settings(g)
    _check_target(out)
    if g.defects:
        log.warning(
            "generate.defects is %s, but the transactions profile writes clean data only: ignored", g.defects
        )
    staging = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        manifest = _run(g, tl, staging, progress)
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return TransactionsResult(out, "files", manifest, time.perf_counter() - started)


def _run(g: GenerateSettings, tl: ShopTimeline, staging: Path, progress: Progress | None) -> dict[str, Any]:
    p = PARAMETERS
    sink = FileSink(staging, g.format)
    history = _DaySpill(staging / ".history.arrows")
    future = _DaySpill(staging / ".future.arrows")
    totals = {"one_time_buyers": 0, "alive_at_cutoff": 0, "slowing_down": 0, "seasonal_buyers": 0}
    n_chunks = -(-g.customers // CHUNK_CUSTOMERS)
    for chunk in range(n_chunks):
        first_id = chunk * CHUNK_CUSTOMERS + 1
        n = min(CHUNK_CUSTOMERS, g.customers - chunk * CHUNK_CUSTOMERS)
        result = simulate_chunk(np.random.SeedSequence([g.seed, 11, chunk]), first_id, n, tl, p)
        history.add(result.history)
        future.add(result.future)
        sink.write(TRUTH_CUSTOMERS, result.truth)
        truth = result.truth
        totals["one_time_buyers"] += int(np.sum(truth.column("purchases_before_cutoff").to_numpy() == 1))
        for key, column in (
            ("alive_at_cutoff", "alive_at_cutoff"),
            ("slowing_down", "slowing_down"),
            ("seasonal_buyers", "seasonal_buyer"),
        ):
            totals[key] += int(np.sum(truth.column(column).to_numpy(zero_copy_only=False)))
        if progress:
            progress(min(g.customers, (chunk + 1) * CHUNK_CUSTOMERS), g.customers)
    history.write_sorted(sink, DATA_FILE, tl.start, tl.cutoff_end)
    future.write_sorted(sink, TRUTH_FUTURE, tl.cutoff_end, tl.future_end)
    infos = sink.close()
    data_path = sink.path_of(DATA_FILE)
    return {
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "profile": PROFILE,
        "clarion_version": clarion.__version__,
        "seed": g.seed,
        "customers": g.customers,
        "format": g.format,
        "currency": CURRENCY,
        "defect_rate": 0.0,
        "start": g.start.isoformat(),
        "cutoff": g.cutoff.isoformat(),
        "future_days": g.future_days,
        "future_end": (EPOCH + timedelta(days=tl.future_end - 1)).isoformat(),
        "chunk_customers": CHUNK_CUSTOMERS,
        "parameters": asdict(p),
        "destination": "files",
        "entities": {
            "transactions": {
                "files": [data_path],
                "rows": infos[data_path].rows,
                "clean_rows": infos[data_path].rows,
                "columns": list(COLUMNS),
                "sorted_by": ["order_date", "customer_id"],
            }
        },
        "files": {k: asdict(v) for k, v in sorted(infos.items())},
        "truth": {
            "customers": sink.path_of(TRUTH_CUSTOMERS),
            "future_transactions": sink.path_of(TRUTH_FUTURE),
            **totals,
        },
        "defects": {
            "rows": 0,
            "note": "the transactions profile writes no defects; generate.defects is ignored",
            "ignored_setting": g.defects,
        },
    }
