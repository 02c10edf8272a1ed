"""Pseudonym -> contact id, for `GET /api/v1/customers/{pseudonym}`, built once per read snapshot.

A pseudonym is ``p_`` + 16 hex digits of a keyed HMAC (clarion.privacy.pseudonym): it cannot be
inverted, so the API computes the pseudonym of every known customer (in DuckDB, with the SQL twin of
the function, vectorised) and keeps the pairs as two sorted numpy arrays (the 16 hex digits as an
unsigned 64-bit integer, 16 bytes per customer: 16 MB at 1M). A lookup is a binary search (a few
microseconds). When a new snapshot is published only the customers it adds are hashed, and those it
no longer holds (erased) are dropped, so a switch costs one scan of the contact ids, not a rehash.

Who is a known customer: everyone in ``marts.dim_customers`` (objectors included: they are not
scored, and the API says so) and everyone ever scored in ``ml.customer_scores``.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from clarion.privacy import pseudonym
from clarion.privacy.pseudonym import DIGITS, PREFIX
from clarion.warehouse import relation_exists

log = logging.getLogger(__name__)

_HEX = set("0123456789abcdef")


def parse(value: str) -> int | None:
    """The 64-bit number a well-formed pseudonym stands for, else None."""
    if len(value) != len(PREFIX) + DIGITS or not value.startswith(PREFIX):
        return None
    digits = value[len(PREFIX) :]
    return int(digits, 16) if set(digits) <= _HEX else None


def pseudonymizer(app_settings: Any, snapshot_settings: Any, cur: duckdb.DuckDBPyConnection) -> Any:
    """The project's pseudonym function. Its key comes from the environment, a Prefect Secret or the
    warehouse; a warehouse that keeps none yet gets one made once in the writer's file, with the
    writer lock (as `clarion explain` does), and the next snapshot carries it. While a run holds the
    lock that answers 409 (retry)."""
    try:
        return pseudonym.for_settings(snapshot_settings, cur)
    except duckdb.Error:  # no key kept, and the snapshot is read-only
        return pseudonym.for_settings(app_settings)


def universe_sql(con: duckdb.DuckDBPyConnection) -> str:
    """A SELECT of every contact id the snapshot knows as a customer."""
    parts = [
        f"select contact_id from {schema}.{table}"
        for schema, table in (("marts", "dim_customers"), ("ml", "customer_scores"))
        if relation_exists(con, schema, table)
    ]
    return " union ".join(parts) if parts else "select cast(null as bigint) as contact_id where false"


class CustomerIndex:
    """The pseudonym index of the snapshot a Reader serves. Built on first use; when a new snapshot is
    published it is brought up to date in a background thread while lookups go on with the previous
    one (a stale entry is harmless: the customer is then looked up in the new snapshot, where an
    erased one is not found; a customer new in it is found once the update is in, within a second)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._path: Path | None = None
        self._key_id: str | None = None
        # (sorted hashes, the contact id of each, the contact ids sorted): replaced as one
        self._state: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._updating = False
        self._made: tuple[Path, Any] | None = None  # (snapshot, its pseudonym function)

    def pseudonymizer(self, app_settings: Any, settings: Any, cur: duckdb.DuckDBPyConnection) -> Any:
        """The pseudonym function of the snapshot ``settings`` name, made once per snapshot (its key
        is read from the snapshot) rather than once per request."""
        made = self._made
        if made is not None and made[0] == settings.warehouse.path:
            return made[1]
        p = pseudonymizer(app_settings, settings, cur)
        self._made = (settings.warehouse.path, p)
        return p

    def contact_id(self, reader: Any, value: str, app_settings: Any) -> int | None:
        """The contact id of a pseudonym in the reader's current snapshot (or the one before while
        the index catches up), or None."""
        wanted = parse(value)
        if wanted is None:
            return None
        if self._state is None:
            self.refresh(reader, app_settings)
        elif self._path != reader.path and not self._updating:
            self._updating = True
            threading.Thread(target=self._background, args=(reader, app_settings), daemon=True).start()
        assert self._state is not None
        hashes, ids, _ = self._state
        i = int(np.searchsorted(hashes, np.uint64(wanted)))
        return int(ids[i]) if i < len(hashes) and int(hashes[i]) == wanted else None

    def _background(self, reader: Any, app_settings: Any) -> None:
        try:
            self.refresh(reader, app_settings)
        except Exception:  # the next lookup tries again; lookups go on with the previous index
            log.warning("could not update the pseudonym index to the new snapshot", exc_info=True)
        finally:
            self._updating = False

    def refresh(self, reader: Any, app_settings: Any) -> None:
        """Bring the index to the reader's current snapshot: hash the customers it adds, drop those
        it no longer has."""
        with self._lock, reader.pinned() as (settings, cur):
            path = settings.warehouse.path
            if path == self._path:
                return
            p = self.pseudonymizer(app_settings, settings, cur)
            now = cur.execute(
                f"select distinct contact_id from ({universe_sql(cur)}) order by 1"
            ).fetchnumpy()
            current = np.asarray(now["contact_id"], dtype=np.int64)
            if self._state is None or p.key_id != self._key_id:
                hashes, ids, known = np.empty(0, np.uint64), np.empty(0, np.int64), np.empty(0, np.int64)
            else:
                hashes, ids, known = self._state
            gone = np.setdiff1d(known, current, assume_unique=True)
            if len(gone):
                keep = ~np.isin(ids, gone)
                hashes, ids = hashes[keep], ids[keep]
            new = np.setdiff1d(current, known, assume_unique=True)
            if len(new):
                new_hashes, new_ids = _hash(cur, p, new)
                hashes = np.concatenate([hashes, new_hashes])
                ids = np.concatenate([ids, new_ids])
                order = np.argsort(hashes, kind="stable")
                hashes, ids = hashes[order], ids[order]
            self._state = (hashes, ids, current)
            self._key_id, self._path = p.key_id, path


def _hash(cur: duckdb.DuckDBPyConnection, p: pseudonym.Pseudonymizer, ids: np.ndarray) -> tuple:
    """The pseudonyms of ``ids`` as 64-bit numbers with their ids, computed in DuckDB (the key is
    bound, never spelled in the query)."""
    import pyarrow as pa

    expr, params = p.sql("contact_id")
    cur.register("_clarion_new_ids", pa.table({"contact_id": pa.array(ids, pa.int64())}))
    try:
        out = cur.execute(
            f"select contact_id, ('0x' || substr({expr}, {len(PREFIX) + 1}))::ubigint as h "
            "from _clarion_new_ids",
            params,
        ).fetchnumpy()
    finally:
        cur.unregister("_clarion_new_ids")
    return np.asarray(out["h"], dtype=np.uint64), np.asarray(out["contact_id"], dtype=np.int64)
