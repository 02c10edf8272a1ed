"""Deterministic assignment to control groups: a customer's arm is a hash, not a coin toss.

A customer's position in [0, 1) for a key (a campaign's name, or ``global``) is the first 8 bytes
of ``sha256(f"{seed}:{key}:{contact_id}")`` read as a big-endian unsigned integer, divided by 2**64.
They are held out when that position is below the share. So:

* the same customer and campaign land in the same arm on every export and every run (nothing to
  store to stay consistent, and a re-export is identical);
* campaigns are independent of each other (the key differs), and the global control group is
  independent of every campaign's holdout;
* raising a share only adds customers to the held-out side (positions do not move).

sha256 rather than a database hash: DuckDB's ``hash`` changes between versions, sha256 does not.
`unit_sql` / `held_out_sql` are the same definition as a DuckDB SQL expression, for joins over a
million customers without a round trip through Python; tests check both give the same answer.
"""

from __future__ import annotations

import hashlib

import numpy as np
from numpy.typing import ArrayLike

GLOBAL = "global"  # the key of the global control group
_SCALE = 2.0**64


def unit(contact_ids: ArrayLike, key: str, seed: str) -> np.ndarray:
    """Each customer's position in [0, 1) for `key` (a campaign's name, or GLOBAL)."""
    prefix = f"{seed}:{key}:"
    sha = hashlib.sha256
    ids = np.asarray(contact_ids, dtype=np.int64).tolist()
    return np.fromiter(
        (int.from_bytes(sha(f"{prefix}{c}".encode()).digest()[:8], "big") / _SCALE for c in ids),
        dtype=np.float64,
        count=len(ids),
    )


def arm(contact_ids: ArrayLike, campaign: str, share: float, seed: str) -> np.ndarray:
    """True where the customer is in `campaign`'s holdout (recorded, never contacted)."""
    if share <= 0:
        return np.zeros(len(np.asarray(contact_ids)), dtype=bool)
    return unit(contact_ids, campaign, seed) < share


def global_control(contact_ids: ArrayLike, share: float, seed: str) -> np.ndarray:
    """True where the customer is in the global control group: no campaign ever contacts them."""
    return arm(contact_ids, GLOBAL, share, seed)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def unit_sql(contact_id: str, key: str, seed: str) -> str:
    """`unit` as a DuckDB SQL expression over the column (or expression) `contact_id`."""
    prefix = _literal(f"{seed}:{key}:")
    return (
        f"(('0x' || left(sha256({prefix} || cast({contact_id} as bigint)::varchar), 16))::ubigint::double "
        f"/ {_SCALE!r})"
    )


def held_out_sql(contact_id: str, key: str, share: float, seed: str) -> str:
    """`arm` (key: a campaign) or `global_control` (key: GLOBAL) as a boolean SQL expression."""
    if share <= 0:
        return "false"
    return f"({unit_sql(contact_id, key, seed)} < {float(share)!r})"
