"""Control-group assignment (clarion.experiments): a seeded sha256 of seed, campaign and customer, the
same in Python and in DuckDB SQL, stable across calls and honouring the share."""

from __future__ import annotations

import hashlib
import math

import duckdb
import numpy as np
import pytest

from clarion.experiments import GLOBAL, arm, global_control, held_out_sql, unit, unit_sql


def _position(seed: str, key: str, contact_id: int) -> float:
    """The definition of i18.md, written out again: first 8 bytes of the digest / 2**64."""
    digest = hashlib.sha256(f"{seed}:{key}:{contact_id}".encode()).hexdigest()
    return int(digest[:16], 16) / 2**64


def test_the_position_is_the_first_eight_bytes_of_the_sha256_over_two_to_the_64() -> None:
    ids = [0, 1, 7, 42, 123_456_789, 2**40 + 3]
    got = unit(ids, "winback-summer", "clarion")
    assert got.tolist() == [_position("clarion", "winback-summer", i) for i in ids]
    assert arm(ids, "winback-summer", 0.5, "clarion").tolist() == [
        _position("clarion", "winback-summer", i) < 0.5 for i in ids
    ]
    assert global_control(ids, 0.3, "s").tolist() == [_position("s", GLOBAL, i) < 0.3 for i in ids]


@pytest.mark.parametrize(
    ("key", "share", "seed"), [("winback-summer", 0.1, "clarion"), (GLOBAL, 0.05, "o'brien")]
)
def test_python_and_duckdb_sql_assign_every_customer_alike(key: str, share: float, seed: str) -> None:
    n = 200_000
    ids = np.arange(n, dtype=np.int64) * 7 + 3
    con = duckdb.connect()
    con.execute("create table c as select unnest(?::bigint[]) as contact_id", [ids.tolist()])
    positions, held = (
        np.asarray(col)
        for col in con.execute(
            f"select {unit_sql('contact_id', key, seed)}, {held_out_sql('contact_id', key, share, seed)} "
            "from c order by contact_id"
        )
        .fetchnumpy()
        .values()
    )
    assert np.array_equal(positions, unit(ids, key, seed))  # bit for bit, not approximately
    assert np.array_equal(held, arm(ids, key, share, seed))
    assert held.any() and not held.all()


def test_the_same_customer_and_campaign_get_the_same_arm_whatever_the_order_or_call() -> None:
    ids = np.arange(50_000)
    first = arm(ids, "vip-thank-you", 0.1, "clarion")
    shuffled = np.random.default_rng(1).permutation(ids)
    again = arm(shuffled, "vip-thank-you", 0.1, "clarion")
    assert np.array_equal(again, first[shuffled])
    other = arm(ids, "welcome-new", 0.1, "clarion")
    assert not np.array_equal(other, first)  # another campaign, another draw


@pytest.mark.parametrize("share", [0.02, 0.1, 0.25])
def test_the_held_out_share_is_honoured_within_sampling_error(share: float) -> None:
    n = 200_000
    held = arm(np.arange(n), "winback-summer", share, "clarion").mean()
    assert abs(held - share) < 4 * math.sqrt(share * (1 - share) / n)


def test_raising_the_share_only_adds_customers_to_the_holdout() -> None:
    ids = np.arange(20_000)
    small, large = arm(ids, "x", 0.05, "clarion"), arm(ids, "x", 0.15, "clarion")
    assert (small <= large).all() and large.sum() > small.sum()


def test_the_global_control_group_is_independent_of_each_campaigns_holdout() -> None:
    n = 200_000
    ids = np.arange(n)
    control = global_control(ids, 0.2, "clarion")
    holdout = arm(ids, "winback-summer", 0.1, "clarion")
    both = (control & holdout).mean()
    expected = 0.2 * 0.1
    assert abs(both - expected) < 4 * math.sqrt(expected * (1 - expected) / n)


def test_a_share_of_zero_holds_out_nobody() -> None:
    ids = np.arange(1000)
    assert not arm(ids, "x", 0.0, "clarion").any()
    assert not global_control(ids, 0.0, "clarion").any()
    assert held_out_sql("contact_id", "x", 0.0, "clarion") == "false"
