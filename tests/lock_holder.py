"""Run as a separate process by the warehouse tests: take the writer lock, write, hold, release.

    python lock_holder.py DB PURPOSE HOLD_SECONDS ROWS [WAIT_SECONDS]

Prints LOCKED once it holds the lock (the tests wait for that line), then inserts ROWS rows into
``raw.lock_test`` one by one across HOLD_SECONDS, so a second writer would overlap real writes.
Exits 3 with the error message on stderr if the lock is busy.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from clarion.errors import WarehouseBusyError
from clarion.warehouse import Warehouse


def main() -> int:
    db, purpose, hold, rows = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    wait = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    warehouse = Warehouse(db, lock_wait_seconds=wait)
    try:
        with warehouse.connect(purpose) as con:
            print("LOCKED", flush=True)
            con.execute("create table if not exists raw.lock_test (writer varchar, i integer)")
            for i in range(rows):
                con.execute("insert into raw.lock_test values (?, ?)", [purpose, i])
                time.sleep(hold / max(rows, 1))
    except WarehouseBusyError as exc:
        print(str(exc), file=sys.stderr, flush=True)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
