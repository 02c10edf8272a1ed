"""The simulators' time axis and vectorised building blocks (money, timestamps, draws, ragged groups).

Times are int64 seconds since the epoch, UTC; money is integer cents. Shared by every part of the
CRM simulation (people, orders, campaigns, tickets) and by the transactions profile.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clarion.config import GenerateSettings

DAY = 86_400
YEAR = 365.25 * DAY
NEVER = np.iinfo(np.int64).max // 4  # "no such time": far beyond any horizon, safe to add to


@dataclass(frozen=True)
class Timeline:
    """All times are int64 seconds since the epoch, UTC."""

    start: int
    cutoff: int  # first second after the export's last day: history is [start, cutoff)
    future_end: int
    email_start: int

    @classmethod
    def from_settings(cls, g: GenerateSettings) -> Timeline:
        if g.cutoff <= g.start:
            raise ValueError(f"generate.cutoff ({g.cutoff}) must be after generate.start ({g.start})")

        def ts(d: date) -> int:
            return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())

        cutoff = ts(g.cutoff) + DAY
        start = ts(g.start)
        if cutoff - start < 400 * DAY:
            raise ValueError("generate.start must be at least 400 days before generate.cutoff")
        return cls(
            start=start,
            cutoff=cutoff,
            future_end=cutoff + g.future_days * DAY,
            email_start=max(start, cutoff - g.email_history_days * DAY),
        )


@dataclass
class Counters:
    """Next id per entity; chunks run in order so ids are contiguous and deterministic."""

    orders: int = 1
    order_items: int = 1
    email_events: int = 1
    support_tickets: int = 1
    consents: int = 1


def cents_to_decimal(cents: np.ndarray) -> pa.Array:
    """Exact money: a decimal128 value *is* its unscaled integer, so cents become decimal(14,2) as is."""
    cents = np.ascontiguousarray(cents, dtype=np.int64)
    words = np.empty((len(cents), 2), dtype=np.int64)
    words[:, 0] = cents
    words[:, 1] = cents >> 63  # sign extension into the high word
    return pa.Array.from_buffers(pa.decimal128(14, 2), len(cents), [None, pa.py_buffer(words.tobytes())])


def ts_array(seconds: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    return pa.array(np.asarray(seconds, dtype=np.int64), type=pa.timestamp("s", tz="UTC"), mask=mask)


def pick(values: tuple[str, ...] | list[str], idx: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    return pa.array(values, pa.string()).take(pa.array(idx, type=pa.int64(), mask=mask))


def choice_cdf(rng: np.random.Generator, weights: np.ndarray, size: int) -> np.ndarray:
    cdf = np.cumsum(weights / weights.sum())
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(weights) - 1)


def season(t: np.ndarray) -> np.ndarray:
    """Demand multiplier in [0.75, 1.25], highest in mid-December."""
    doy = (t / DAY) % 365.25
    return 1.0 + 0.25 * np.cos(2 * np.pi * (doy - 350) / 365.25)


def uniform_between(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.maximum(np.asarray(hi, dtype=np.float64), lo)
    return (lo + rng.random(len(lo)) * (hi - lo)).astype(np.int64)


def group_positions(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ragged groups of the given sizes: each element's group and its position in the group."""
    group = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    pos = np.arange(int(counts.sum())) - np.repeat(starts, counts)
    return group, pos


def fill_digits(rng: np.random.Generator, pattern: str, size: int) -> pa.Array:
    """'+44 7700 900###' -> random digits in place of each #, vectorised per run of #."""
    parts: list[pa.Array | str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] != "#":
            j = pattern.find("#", i)
            j = len(pattern) if j < 0 else j
            parts.append(pattern[i:j])
            i = j
            continue
        j = i
        while j < len(pattern) and pattern[j] == "#":
            j += 1
        width = j - i
        digits = pa.array(rng.integers(0, 10**width, size=size)).cast(pa.string())
        parts.append(pc.utf8_lpad(digits, width=width, padding="0"))
        i = j
    return pc.binary_join_element_wise(*parts, "")
