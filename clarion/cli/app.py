"""The `clarion` command group and what every verb shares: one verb per stage, `--json` for results.

Heavy libraries (Prefect, pyarrow...) are imported inside the commands, so `clarion --help` is instant.
Errors a user can meet print one clear message (no traceback) and exit non-zero; `-v` shows more.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

import clarion
from clarion.errors import ClarionError

log = logging.getLogger("clarion.cli")


@dataclass
class AppContext:
    config_path: str | None
    verbose: bool
    _settings: Any = field(default=None, repr=False)

    def settings(self, overrides: dict[str, Any] | None = None):
        from clarion.config import load_settings
        from clarion.runtime import configure_logging

        settings = load_settings(self.config_path, overrides=overrides)
        configure_logging("DEBUG" if self.verbose else settings.logging.level)
        return settings

    def config_file(self) -> Path | None:
        from clarion.config import find_config_file

        return find_config_file(self.config_path)


class ClarionGroup(click.Group):
    """Turns ClarionError into a one-line message and its exit code instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ClarionError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            ctx.exit(exc.exit_code)


def _emit(data: Any, as_json: bool, human: str) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str, sort_keys=True))
    else:
        click.echo(human)


@click.group(
    cls=ClarionGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.option(
    "--config",
    "config_path",
    metavar="FILE",
    envvar="CLARION_CONFIG",
    help="Settings file [default: ./clarion.yaml, else built-in defaults]. Any key can also be set "
    "with CLARION_<SECTION>__<KEY>, e.g. CLARION_WAREHOUSE__LOCK_WAIT_SECONDS=30.",
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.version_option(clarion.__version__, prog_name="clarion")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: bool) -> None:
    """Clarion: marketing automation you own, from CRM extract to approved campaign content.

    \b
    Start here:
      clarion init --from DIR profile your own CRM export and write a proposed clarion.yaml
      clarion generate        write a synthetic CRM with planted truth (var/crm)
      clarion run             run the pipeline (a Prefect flow) into var/warehouse.duckdb
      clarion status          what the warehouse holds and how the last runs went
    \b
    One stage at a time:
      clarion extract         CRM sources into raw; rejected rows into quarantine
      clarion transform       dbt features, quality gates, publish to marts
      clarion check           the quality gates alone
      clarion segment         score, explain and segment every customer (trains if needed)
      clarion nba             the next best action of every customer (or none), and why
      clarion recommend       each customer's top products with reasons (show ID: one list)
      clarion quarantine      what was rejected, where from, and why
    \b
    Why is a customer where they are:
      clarion explain ID      score, segment, reasons, model version and next best action of one customer
      clarion models list     model versions, their validation, which one is promoted
    """
    ctx.obj = AppContext(config_path, verbose)


WAIT_OPTION = click.option(
    "--wait",
    "wait_seconds",
    type=click.FloatRange(0),
    help="If another run is writing the warehouse, wait up to SECONDS for it instead of stopping "
    "[config warehouse.lock_wait_seconds; 0].",
)
