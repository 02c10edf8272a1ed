"""Pipeline verbs: generate, run, serve and one stage at a time (extract, transform, check,
segment, explain)."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from clarion.cli.app import WAIT_OPTION, AppContext, _emit, cli, log
from clarion.cli.text import (
    _generate_text,
    _run_text,
    _serve_list_text,
)
from clarion.errors import ClarionError

FULL_REFRESH_OPTION = click.option(
    "--full-refresh",
    "full_refresh",
    is_flag=True,
    help="Compute everything for every customer, not only for those whose data changed since the last "
    "build: the incremental dbt models (customer features, campaign exposures) and, where the segment "
    "stage runs, the day's lifecycle fit and every customer's score, explanation and reasons.",
)

# --------------------------------------------------------------------------------------------------
# generate


@cli.command()
@click.option(
    "--profile",
    type=click.Choice(["crm", "transactions"]),
    help="What to generate: crm (the full CRM export) or transactions (a US shop's purchases only: "
    "customer_id, order_date, amount) [config generate.profile; crm].",
)
@click.option("--customers", type=int, help="Contacts to simulate [config generate.customers; 2000].")
@click.option("--seed", type=int, help="Random seed; the same seed and size give identical files [7].")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Output folder [var/crm].")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), help="File format [csv].")
@click.option("--defects", type=float, help="Extra defective rows as a share of each entity, e.g. 0.01 [0].")
@click.option("--cutoff", type=click.DateTime(["%Y-%m-%d"]), help="Last day in the export [2026-06-30].")
@click.option(
    "--postgres",
    "dsn",
    metavar="DSN",
    help="Load the CRM into PostgreSQL instead of files, e.g. postgresql://postgres@127.0.0.1:5432/test "
    "(put a password in PGPASSWORD, not here). Truth and defects manifests still go to --out.",
)
@click.option("--pg-schema", default="crm", show_default=True, help="PostgreSQL schema to (re)create.")
@click.option(
    "--mariadb",
    "mariadb_dsn",
    metavar="DSN",
    help="Load the CRM into MariaDB (or MySQL) instead of files, e.g. mysql://root@127.0.0.1:3306/test "
    "(put a password in MYSQL_PWD, not here). Truth and defects manifests still go to --out.",
)
@click.option(
    "--mariadb-database",
    default="crm",
    show_default=True,
    help="MariaDB database to load into (created if missing; its CRM tables are replaced).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_obj
def generate(
    app: AppContext,
    profile: str | None,
    customers: int | None,
    seed: int | None,
    out: Path | None,
    fmt: str | None,
    defects: float | None,
    cutoff: datetime | None,
    dsn: str | None,
    pg_schema: str,
    mariadb_dsn: str | None,
    mariadb_database: str,
    as_json: bool,
) -> None:
    """Write a synthetic CRM with planted behaviour, its truth, and a manifest of injected defects.

    Contacts, products, orders, order items, e-mail events, support tickets and consents, simulated
    past the cutoff so that truth/contacts.* knows who buys next. Personas (loyal high value, regular,
    discount seeker, declining, churned, new) and planted churn drivers (engagement drop, negative
    support, delivery problems, price sensitivity) leave traces in the data before their onset.
    One campaign every four weeks is an experiment: a 10% control group (`control` events), A/B/C
    variants and a planted uplift per persona and variant (truth/campaign_effects.*,
    truth/campaign_assignment.*).

    \b
    Examples:
      clarion generate                                  # config defaults: 2,000 contacts -> var/crm
      clarion generate --customers 10000 --seed 7 --out /tmp/crm
      clarion generate --customers 1000000 --format parquet --out /tmp/crm-1m
      clarion generate --defects 0.01                   # + duplicates, orphans, bad dates... (defects.csv)
      clarion generate --postgres postgresql://postgres@127.0.0.1/test --pg-schema crm
      clarion generate --mariadb mysql://root@127.0.0.1:3306/test --mariadb-database crm
      clarion generate --profile transactions --customers 100000 --out var/shop

    \b
    --profile transactions writes a transactions-only shop instead: transactions.csv
    (customer_id,order_date,amount in USD), truth/customers.csv (dropout, slowing down, seasonal
    window, purchases after the cutoff) and manifest.json, and prints the `sources:` block that
    loads it. Its repeat buying is BG/NBD-like plus what real shops add (seasonality, gift and
    replenishment rhythms, slowing down before leaving, early-tenure dropout); no defects.
    """
    from clarion.synth.generator import generate as run_generate

    overrides = {
        "generate": {
            "profile": profile,
            "customers": customers,
            "seed": seed,
            "format": fmt,
            "defects": defects,
            "cutoff": cutoff.date() if cutoff else None,
            "out": str(out.resolve()) if out else None,  # a path typed on the command line is from the cwd
        }
    }
    settings = app.settings(overrides)
    g = settings.generate
    who = "customers" if g.profile == "transactions" else "contacts"
    with Progress(f"simulating {g.customers:,} {who}") as advance:
        result = run_generate(
            g,
            postgres_dsn=dsn,
            pg_schema=pg_schema,
            mariadb_dsn=mariadb_dsn,
            mariadb_database=mariadb_database,
            progress=advance,
        )
    if g.profile == "transactions":
        shown = _project_path(app, result.out)
        _emit(result.summary(source_path=shown), as_json, result.text(source_path=shown))
        return
    summary = result.summary()
    _emit(summary, as_json, _generate_text(result))


def _project_path(app: AppContext, path: Path) -> str:
    """How clarion.yaml names a folder: relative to the file's folder when inside it, else absolute."""
    file = app.config_file()
    root = file.resolve().parent if file else Path.cwd().resolve()
    path = path.resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


class Progress:
    """A progress bar on a terminal; a log line per chunk elsewhere (CI logs, pipes)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._bar = None

    def __enter__(self):
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self._bar = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._bar.start()
            task = self._bar.add_task(self.label, total=None)

            def advance(done: int, total: int) -> None:
                self._bar.update(task, completed=done, total=total)

            return advance

        def log_line(done: int, total: int) -> None:
            log.info("%s: %s/%s", self.label, f"{done:,}", f"{total:,}")

        return log_line

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


# --------------------------------------------------------------------------------------------------
# run


def _run_pipeline(app: AppContext, wait_seconds: float | None, **params: Any) -> dict[str, Any]:
    """Run the pipeline flow (all stages, or some), holding the writer lock from before Prefect starts:
    a busy warehouse is then a message, not a failed flow run with a traceback, and no server start."""
    from clarion.runtime import check_writable, prepare_prefect
    from clarion.warehouse import Warehouse

    settings = app.settings()
    check_writable(settings)  # a read-only var/ is one message, before Prefect or the lock touch it
    prepare_prefect(settings)
    file = app.config_file()
    stages = params.get("stages")
    command = "clarion " + (" ".join(stages) if stages else "run")
    warehouse = Warehouse.from_settings(settings)
    with warehouse.writing(command, wait_seconds):
        if params.get("resume"):  # refused here: a message, not a failed flow run with a traceback
            from clarion import runs

            if not warehouse.path.exists():
                raise ClarionError(
                    f"nothing to resume: no warehouse at {warehouse.path} yet; run `clarion run`"
                )
            with warehouse.read() as con:
                target = params["resume"]
                runs.resumable(con, None if target == "latest" else target, settings.fingerprint())
        from clarion.runtime import configure_logging, quiet_known_errors
        from flows.pipeline import pipeline

        configure_logging("DEBUG" if app.verbose else settings.logging.level)  # Prefect's import reset it
        if not app.verbose:  # a gate that fails is one message, not Prefect's tracebacks (-v: them too)
            quiet_known_errors()
        return pipeline(config_path=str(file) if file else None, wait_seconds=wait_seconds, **params)


@cli.command()
@WAIT_OPTION
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the latest run if it failed or was interrupted: keep the stages it completed, "
    "run the rest under its run id.",
)
@click.option(
    "--resume-run",
    "resume_run",
    metavar="RUN_ID",
    help="Continue this failed or interrupted run (see `clarion status`).",
)
@FULL_REFRESH_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
@click.pass_obj
def run(
    app: AppContext,
    wait_seconds: float | None,
    resume: bool,
    resume_run: str | None,
    full_refresh: bool,
    as_json: bool,
) -> None:
    """Run the pipeline: every stage in order, as one Prefect flow run.

    Without PREFECT_API_URL, Prefect starts a temporary local server for the run (10-20 s) and keeps
    its history under var/prefect; with it, the run reports to that server. Only one run writes the
    warehouse at a time: a second one stops with a message naming the first (or waits, with --wait).

    If a run is killed or fails, the next `clarion run` marks it interrupted and redoes every stage;
    `clarion run --resume` instead keeps the stages it completed and runs the rest. Either way the
    outputs equal those of a run that was never interrupted, and the unfinished run's scores never
    count as "the previous run".

    \b
    Examples:
      clarion run
      clarion run --resume                             # after a kill, a crash or a failed stage
      clarion run --wait 600 --json
      clarion run --full-refresh                       # features, exposures, scores redone for everyone
      PREFECT_HOME=var/prefect prefect server start    # then open http://127.0.0.1:4200 to see runs
    """
    target = resume_run or ("latest" if resume else None)
    params: dict[str, Any] = {"resume": target} if target else {}
    if full_refresh:
        params["full_refresh"] = True
    result = _run_pipeline(app, wait_seconds, **params)
    _emit(result, as_json, _run_text(result))


# --------------------------------------------------------------------------------------------------
# serve


@cli.command()
@click.option(
    "--limit",
    type=click.IntRange(1),
    metavar="N",
    help="At most N flow runs at the same time [Prefect's PREFECT_RUNNER_PROCESS_LIMIT; 5].",
)
@click.option("--paused", is_flag=True, help="Register the schedules paused: runs start only on demand.")
@click.option("--list", "list_only", is_flag=True, help="Print the deployments that would be served; exit.")
@click.option("--json", "as_json", is_flag=True, help="With --list: print them as JSON.")
@click.pass_obj
def serve(app: AppContext, limit: int | None, paused: bool, list_only: bool, as_json: bool) -> None:
    """Serve the deployments of prefect.yaml from this process: no work pool, no worker.

    The deployments (names, parameters, schedules) come from prefect.yaml, the file `prefect deploy`
    reads, so both ways run the same thing; their runs use this project's settings file. A
    prefect.yaml beside clarion.yaml replaces the repository's.

    Serving needs a Prefect API to register with: start one in another terminal with
    `PREFECT_HOME=var/prefect prefect server start` and set PREFECT_API_URL=http://127.0.0.1:4200/api.
    Without PREFECT_API_URL, Prefect starts a temporary server for this process alone that disappears
    with it (a warning says so). Ctrl-C stops serving; Prefect then pauses the schedules until the
    next `clarion serve`. --list needs no server.

    \b
    Examples:
      clarion serve --list
      clarion serve                                       # Ctrl-C to stop
      clarion serve --paused --limit 1                    # only runs started by hand, one at a time
      prefect deployment run 'clarion-pipeline/daily'     # in another terminal
    """
    from clarion.runtime import configure_logging, prepare_prefect

    settings = app.settings()
    prepare_prefect(settings)
    file = app.config_file()
    from clarion import serve as serving

    configure_logging("DEBUG" if app.verbose else settings.logging.level)  # Prefect's import reset it
    if list_only:
        listing = {
            "source": str(serving.find_prefect_yaml(file)),
            "deployments": [spec.as_dict() for spec in serving.specs(file)],
        }
        _emit(listing, as_json, _serve_list_text(listing))
        return
    if as_json:
        raise click.UsageError("--json goes with --list; serving prints Prefect's own log lines")
    serving.serve(settings, file, limit=limit, pause_schedules=paused)


# --------------------------------------------------------------------------------------------------
# extract


@cli.command()
@click.option("--source", metavar="NAME", help="Only this source from clarion.yaml `sources:` [all].")
@WAIT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the run summary (with accounting) as JSON.")
@click.option(
    "--dry-run",
    "dry_run",
    is_flag=True,
    help="Show what would load and what would be quarantined (per entity, reason, sample rows); "
    "write nothing: the extract runs on a temporary copy of the warehouse.",
)
@click.option(
    "--values", is_flag=True, help="With --dry-run: show the sample rows' values of personal fields too."
)
@click.option(
    "--fresh", is_flag=True, help="With --dry-run: read every file as new (e.g. to check a changed mapping)."
)
@click.pass_obj
def extract(
    app: AppContext,
    source: str | None,
    wait_seconds: float | None,
    as_json: bool,
    dry_run: bool,
    values: bool,
    fresh: bool,
) -> None:
    """Bring CRM data into the warehouse's raw schema; quarantine rows that break the contract.

    Sources (clarion.yaml `sources:`): CSV/Parquet/JSON-lines files with a column mapping, value
    maps or a SQL mapping over the files (`clarion init --from DIR` proposes one), a PostgreSQL or
    MariaDB CRM database (incremental by its updated_at-style cursor; a table or a SELECT), or a
    HubSpot-v3-style API. Every row read is either loaded into raw.<entity> (inserted, updated or
    unchanged) or put in quarantine.<entity> with a reason; the accounting table shows both.
    Running it again only reads what changed: new or modified files, rows past the cursor.

    \b
    Examples:
      clarion extract
      clarion extract --source crm --json
      clarion quarantine orders --reason orphan      # what was rejected, and why
      clarion extract --dry-run --source crm         # what would load; writes nothing
    """
    if dry_run:
        from clarion.extract.dry_run import dry_run as run_dry
        from clarion.extract.dry_run import dry_run_text

        report = run_dry(app.settings(), source, values=values, fresh=fresh, wait_seconds=wait_seconds)
        _emit(report, as_json, dry_run_text(report))
        return
    if values or fresh:
        raise click.UsageError("--values and --fresh go with --dry-run")
    result = _run_pipeline(app, wait_seconds, stages=["extract"], source=source)
    _emit(result, as_json, _run_text(result))


@cli.command()
@click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(["%Y-%m-%d"]),
    help="The day the features describe [transform.as_of; the day after the latest order].",
)
@FULL_REFRESH_OPTION
@WAIT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the run summary (with gate results) as JSON.")
@click.pass_obj
def transform(
    app: AppContext, as_of: datetime | None, full_refresh: bool, wait_seconds: float | None, as_json: bool
) -> None:
    """Build customer features with dbt, gate them, and publish them to marts.

    Write-audit-publish: the raw gate (expectations/raw.yml) runs first; dbt builds every model
    into the staging schema and runs its tests; the marts gate (expectations/marts.yml) judges that
    build; only then is it copied into marts, in one transaction. A failing `fail` check stops it
    with the check, what it observed and samples, exit code 4; marts keep the last good build.

    The customer features (customer_features) and campaign exposures (fct_campaign_exposures) are
    built incrementally: only the customers whose rows changed since the last build are computed
    again (a new day, or a change of the models' SQL, recomputes everyone's features; a change of
    the exposures' SQL or attribution_days everyone's exposures); --full-refresh rebuilds them for
    every customer. Every other model is rebuilt whole.

    \b
    Examples:
      clarion transform
      clarion transform --as-of 2026-04-01          # features as of another day (a backtest)
      clarion transform --full-refresh              # features and exposures rebuilt for everyone
      clarion check                                 # the gates alone
    """
    params: dict[str, Any] = {"stages": ["transform"]}
    if as_of:
        params["as_of"] = as_of.date()
    if full_refresh:
        params["full_refresh"] = True
    result = _run_pipeline(app, wait_seconds, **params)
    _emit(result, as_json, _run_text(result))


@cli.command()
@WAIT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the gate results as JSON.")
@click.pass_obj
def check(app: AppContext, wait_seconds: float | None, as_json: bool) -> None:
    """Run the quality gates alone: raw, and the build. Exit 4 if a `fail` check fails.

    The build is the staging build if it was never published (compared with the last publication),
    else the published marts (compared with the publication before them).

    Results are kept in audit.quality_results and rendered as Great Expectations Data Docs
    (var/gx/uncommitted/data_docs/local_site/index.html).
    """
    result = _run_pipeline(app, wait_seconds, stages=["check"])
    _emit(result, as_json, _run_text(result))


@cli.command()
@click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Score customers as of this day [the published features' day].",
)
@click.option(
    "--horizon-days",
    type=click.IntRange(14, 365),
    help="Predict purchases in this many days [segment.horizon_days; 90].",
)
@click.option("--retrain", is_flag=True, help="Train a new model version even if a promoted one fits.")
@FULL_REFRESH_OPTION
@WAIT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the run summary (segments, model) as JSON.")
@click.pass_obj
def segment(
    app: AppContext,
    as_of: datetime | None,
    horizon_days: int | None,
    retrain: bool,
    full_refresh: bool,
    wait_seconds: float | None,
    as_json: bool,
) -> None:
    """Score, explain and segment every customer with the promoted model (training one if needed).

    The first run (or --retrain, a new horizon, or a promoted version older than
    segment.max_model_age_days) trains: LightGBM on customer_features as of 13 past days (one dbt
    build, each day's labels complete) with BG/NBD and Gamma-Gamma features fitted per day;
    validated by time (fitted on the days up to as_of - 2 x horizon, measured on as_of - horizon
    beside a recency/frequency model and BG/NBD alone), then refitted up to as_of - horizon;
    calibrated with the season; registered under var/registry with a model card, and promoted if it
    beats the baseline and is no worse than the promoted version on the same customers (ROC AUC,
    ECE). Every customer gets purchase probability, churn risk, expected spend, a segment
    (thresholds relative to the shop's purchase rate) and up to 4 reasons from SHAP values: what
    raises the risk for customers less likely to buy than the average one, what keeps the others,
    amounts in the shop's currency; all in ml.customer_scores.

    A customer whose inputs are those of the previous scoring run (same day, model and wording:
    only other customers' rows changed) keeps that run's score, explanation and reasons; the
    segments are assigned again for everyone. Later runs of a day reuse its lifecycle fit.
    --full-refresh (or segment.rescore: all) fits and scores everyone again.

    \b
    Examples:
      clarion segment
      clarion segment --retrain --horizon-days 60
      clarion segment --full-refresh             # every customer scored and explained again
      clarion explain 1042                       # one customer's score and reasons
      clarion models show v0001                  # the model card
    """
    params: dict[str, Any] = {"stages": ["segment"], "retrain": retrain or None, "horizon_days": horizon_days}
    if as_of:
        params["as_of"] = as_of.date()
    if full_refresh:
        params["full_refresh"] = True
    result = _run_pipeline(app, wait_seconds, **params)
    _emit(result, as_json, _run_text(result))


@cli.command()
@click.argument("contact_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def explain(app: AppContext, contact_id: int, as_json: bool) -> None:
    """Why a customer is where they are: the latest score, segment, reasons and model version,
    their latest next best action with the figures that decided it (`clarion nba`), and the products
    recommended to them with the reason for each (`clarion recommend`).

    Says whether the customer is less likely to buy than the average customer (the reasons are what
    raises the risk), more likely (what keeps them), or close to average; amounts in the shop's
    currency.

    \b
    Examples:
      clarion explain 1042
      clarion explain 1042 --json    # reasons as fields: feature, family, direction, effect, value, text
    """
    from clarion.nba.views import decision, decision_text
    from clarion.recommend import customer, customer_text
    from clarion.segment.views import explanation, explanation_text

    settings = app.settings()
    e = explanation(settings, contact_id)
    d = decision(settings, contact_id)
    recs = customer(settings, contact_id)
    text = explanation_text(e) + ("\n" + decision_text(d) if d else "") + "\n" + customer_text(recs)
    # privileged and raw (the contact id), but it names the pseudonym that packs and reports use
    data = {
        **e,
        "pseudonym": pseudonym_of(settings, contact_id),
        "next_best_action": d,
        "recommendations": recs["recommendations"] if recs else [],
        "recommendations_run_id": recs["run_id"] if recs else None,
    }
    _emit(data, as_json, text)


def pseudonym_of(settings: Any, contact_id: int) -> str:
    """The contact's pseudonym, read from a snapshot when the key is already kept (no writer lock)."""
    from clarion.privacy import pseudonym
    from clarion.warehouse import Warehouse

    try:
        with Warehouse.from_settings(settings).read() as con:
            return pseudonym.for_settings(settings, con)(contact_id)
    except Exception:  # no key kept yet (or no snapshot): the writer creates it
        return pseudonym.for_settings(settings)(contact_id)
