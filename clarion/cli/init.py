"""`clarion init`: profile a foreign export (or a database) and write a proposed clarion.yaml."""

from __future__ import annotations

import os
from pathlib import Path

import click

from clarion.cli.app import AppContext, cli


@cli.command("init")
@click.option(
    "--from",
    "from_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder holding the export files (CSV/TSV/semicolon, Parquet, JSON lines, .gz).",
)
@click.option(
    "--from-dsn-env",
    "dsn_env",
    metavar="VAR",
    help="Environment variable holding a PostgreSQL/MariaDB DSN: profile the tables of --schema.",
)
@click.option("--schema", default="public", show_default=True, help="Schema (database for MariaDB).")
@click.option("--yes", is_flag=True, help="Write the proposal without asking (for scripts).")
@click.option("--force", is_flag=True, help="Replace an existing config file.")
@click.option(
    "--config-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write [the --config file, else ./clarion.yaml].",
)
@click.option("--source-name", default="shop", show_default=True, help="Name of the source in sources:.")
@click.pass_obj
def init(
    app: AppContext,
    from_dir: Path | None,
    dsn_env: str | None,
    schema: str,
    yes: bool,
    force: bool,
    config_out: Path | None,
    source_name: str,
) -> None:
    """Profile an export and propose how Clarion reads it: which file is which entity, how its columns
    map (with a confidence and the evidence for each), written as a commented `sources:` section.
    What init cannot decide is marked `# QUESTION:` in the file and listed at the end.

    \b
    Examples:
      clarion init --from ~/exports/shop            # asks before writing ./clarion.yaml
      clarion init --from exports --yes --config-out shop.yaml
      CRM_DSN=postgresql://... clarion init --from-dsn-env CRM_DSN --schema crm --yes
    Then: clarion extract --dry-run (what would load), clarion run. See docs/onboarding.md.
    """
    from clarion.onboard.write import InitError, summary, write_config

    if (from_dir is None) == (dsn_env is None):
        raise InitError("give exactly one of --from DIR or --from-dsn-env VAR (see clarion init --help)")
    out = config_out or Path(app.config_path or "clarion.yaml")
    if out.exists() and not force:
        raise InitError(f"{out} exists; init will not overwrite it. Use --force, or --config-out OTHER.yaml")
    if from_dir is not None:
        prop = _from_files(from_dir.resolve(), out.resolve().parent, source_name)
    else:
        prop = _from_database(dsn_env, schema, source_name)
    click.echo(summary(prop))
    if not prop.entities:
        raise InitError("nothing to propose: no file looks like contacts or orders (see the questions above)")
    if not yes and not click.confirm(f"Write this proposal to {out}?", default=True):
        click.echo("Nothing written.")
        return
    write_config(prop, out, force=force)
    click.echo(
        f"Wrote {out} ({len(prop.questions)} question(s) marked QUESTION). Next: clarion extract --dry-run"
    )


def _from_files(folder: Path, config_dir: Path, source_name: str):
    from clarion.onboard.check import check_proposal
    from clarion.onboard.profile import profile_folder
    from clarion.onboard.propose import propose_files
    from clarion.onboard.write import InitError

    profiles = profile_folder(folder)
    if not profiles:
        raise InitError(f"{folder} holds no data files (.csv, .tsv, .txt, .parquet, .jsonl, .ndjson, .gz)")
    try:
        location = str(folder.relative_to(config_dir))
    except ValueError:
        location = str(folder)
    prop = propose_files(profiles, location, source_name)
    check_proposal(prop, folder)
    return prop


def _from_database(var: str, schema: str, source_name: str):
    from clarion.onboard.database import profile_database, propose_database
    from clarion.onboard.write import InitError

    dsn = os.environ.get(var)
    if not dsn:
        raise InitError(f"environment variable {var} is not set; put the database DSN in it")
    return propose_database(profile_database(dsn, schema), dsn, var, schema, source_name)
