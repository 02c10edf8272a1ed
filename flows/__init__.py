"""Prefect flows: the stages' orchestration (their logic lives in ``clarion`` and ``models``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

# Prefect's setting read by each flow run as it starts (prefect.settings: flows.heartbeat_frequency)
HEARTBEAT_SETTING = "flows.heartbeat_frequency"


@contextlib.contextmanager
def subflows_share_heartbeat() -> Iterator[None]:
    """Subflows started inside the block send no heartbeat of their own: the flow that encloses them
    already sends one from the same process, and that is what tells a crashed run.

    Prefect 3.8 starts a heartbeat thread for every flow run, subflows included, and ends each one by
    joining that thread, which sleeps in whole seconds: every subflow lasted a whole number of seconds,
    up to 1 s more than its work (a stage with nothing to do took 1.0 s instead of 0.1-0.2 s;
    bench/RESULTS.md, "End to end"). Enter the block inside the enclosing flow, after its own
    heartbeat started: the enclosing flow keeps its heartbeat (its thread copied the settings it
    started with), only the runs started within the block go without."""
    from prefect.settings import temporary_settings

    with temporary_settings(updates={HEARTBEAT_SETTING: None}):
        yield
