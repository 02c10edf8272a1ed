"""The `clarion` command line (`clarion.cli:main`).

`app` holds the command group and what every verb shares; the verbs live by concern in `pipeline`
(generate, run, serve, one stage at a time), `models`, `content`, `governance`, `nba` and `results`;
`text` renders results as plain text. Importing the verb modules registers their commands on the group.
"""

from __future__ import annotations

from clarion.cli import (  # noqa: F401  (importing the verb modules registers their commands)
    alerts,
    api,
    content,
    erase,
    fairness,
    governance,
    init,
    models,
    nba,
    ops,
    oversight,
    pipeline,
    recommend,
    results,
    retention,
    subject,
    voc,
)
from clarion.cli.app import AppContext, cli
from clarion.cli.text import _run_text

__all__ = ["AppContext", "_run_text", "cli", "main"]


def main() -> None:
    import atexit

    from clarion.runtime import quiet_shutdown

    atexit.register(quiet_shutdown)  # registered first, so it runs last
    cli(prog_name="clarion")
