"""Control groups: who is held out of a campaign (and of every campaign), decided by a seeded hash.

`assign` holds the one definition, in Python and as its DuckDB SQL twin (tested equal), so that the
export (``content.assignments``) and next-best-action (``clarion nba``) hold out the same customers.
"""

from clarion.experiments.assign import (
    GLOBAL,
    arm,
    global_control,
    held_out_sql,
    unit,
    unit_sql,
)

__all__ = ["GLOBAL", "arm", "global_control", "held_out_sql", "unit", "unit_sql"]
