"""The `clarion` command line. One verb per stage; `--json` wherever a command reports results.

Heavy libraries (Prefect, pyarrow...) are imported inside the commands, so `clarion --help` is instant.
Errors a user can meet print one clear message (no traceback) and exit non-zero; `-v` shows more.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from datetime import datetime
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
      clarion generate        write a synthetic CRM with planted truth (var/crm)
      clarion run             run the pipeline (a Prefect flow) into var/warehouse.duckdb
      clarion status          what the warehouse holds and how the last runs went
    \b
    One stage at a time:
      clarion extract         CRM sources into raw; rejected rows into quarantine
      clarion transform       dbt features, quality gates, publish to marts
      clarion check           the quality gates alone
      clarion segment         score, explain and segment every customer (trains if needed)
      clarion quarantine      what was rejected, where from, and why
    \b
    Why is a customer where they are:
      clarion explain ID      score, segment, reasons and model version of one customer
      clarion models list     model versions, their validation, which one is promoted
    """
    ctx.obj = AppContext(config_path, verbose)


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


def _generate_text(result) -> str:
    m = result.manifest
    lines = [
        f"Generated a synthetic CRM: {m['customers']:,} contacts, seed {m['seed']}, "
        f"{m['format'] if m['destination'] == 'files' else m['destination'].split(':')[0]}, "
        f"in {result.seconds:.1f} s",
        f"  data      {result.destination if m['destination'] != 'files' else result.out}",
    ]
    for entity, info in m["entities"].items():
        extra = info["rows"] - info["clean_rows"]
        added = f"  (+{extra:,} defective rows)" if extra else ""
        lines.append(f"    {entity:<16} {info['rows']:>12,} rows{added}")
    lines += [
        f"  truth     {result.out / m['truth']['contacts']}  "
        f"(persona, drivers, purchases after {m['cutoff']})",
        f"  defects   {result.out / m['defects']['file']}  ({m['defects']['rows']:,} rows of "
        f"{len({k.split('/')[1] for k in m['defects']['by_kind']})} kinds)",
        f"  manifest  {result.out / 'manifest.json'}",
    ]
    return "\n".join(lines)


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


WAIT_OPTION = click.option(
    "--wait",
    "wait_seconds",
    type=click.FloatRange(0),
    help="If another run is writing the warehouse, wait up to SECONDS for it instead of stopping "
    "[config warehouse.lock_wait_seconds; 0].",
)


def _run_pipeline(app: AppContext, wait_seconds: float | None, **params: Any) -> dict[str, Any]:
    """Run the pipeline flow (all stages, or some), holding the writer lock from before Prefect starts:
    a busy warehouse is then a message, not a failed flow run with a traceback, and no server start."""
    from clarion.runtime import prepare_prefect
    from clarion.warehouse import Warehouse

    settings = app.settings()
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
        from clarion.runtime import configure_logging
        from flows.pipeline import pipeline

        configure_logging("DEBUG" if app.verbose else settings.logging.level)  # Prefect's import reset it
        return pipeline(config_path=str(file) if file else None, wait_seconds=wait_seconds, **params)


def _run_text(result: dict[str, Any]) -> str:
    lines = [
        f"Run {result['run_id']} ({result['command']}) {result['status']}",
        f"  warehouse  {result['warehouse']}",
    ]
    if result.get("resumed"):
        kept = ", ".join(result["kept_stages"]) or "none"
        lines.append(f"  resumed    stages kept from before the interruption: {kept}")
    for name, summary in result["stages"].items():
        if name == "extract":
            lines.append("  extract")
            lines += ["    " + line for line in accounting_text(summary["accounting"]).splitlines()]
        elif name in ("transform", "check"):
            lines.append(
                f"  {name}" + (f"   features as of {summary['as_of']}" if "as_of" in summary else "")
            )
            lines += ["    " + line for line in gates_text(summary["gates"]).splitlines()]
            if summary.get("published"):
                shown = ", ".join(f"{t} {n:,}" for t, n in summary["published"].items())
                lines.append(f"    published to marts: {shown}")
        elif name == "segment":
            lines += ["  " + line for line in segment_text(summary).splitlines()]
        elif name == "content":
            lines += ["  " + line for line in content_text(summary).splitlines()]
        elif name == "report":
            lines += ["  " + line for line in report_text(summary).splitlines()]
        else:
            shown = {k: v for k, v in summary.items() if k != "meter"}
            lines.append(f"  {name:<10} {json.dumps(shown, default=str, sort_keys=True)}")
    earlier = set(result.get("kept_stages") or ())  # measured by the interrupted run, not this one
    meters = {n: s["meter"] for n, s in result["stages"].items() if s.get("meter") and n not in earlier}
    if meters:  # each stage's own wall time and, over all of them, the largest peak memory
        times = ", ".join(f"{name} {m['wall_s']:.1f} s" for name, m in meters.items())
        peak = max(m["peak_rss_mb"] for m in meters.values())
        lines.append(f"  time       {times}; peak RSS {peak:,.0f} MB")
    if result.get("manifest"):
        lines.append(f"  lineage    {result['manifest']}  (clarion lineage verify {result['run_id']})")
    lines.append("  see it:    clarion status")
    return "\n".join(lines)


def segment_text(s: dict[str, Any]) -> str:
    lines = [f"segment     {s['customers']:,} customers as of {s['as_of']}, model {s['model_version']}"]
    t = s.get("trained")
    if t:
        v, b, c = t["validation"], t["baseline"], t.get("customer_base") or {}
        lines.append(
            f"  trained {t['version']} on {t.get('rows', 0):,} customer-days of {t.get('days', 1)} days: "
            f"out-of-time ROC AUC {v['roc_auc']:.3f} (recency/frequency baseline {b['roc_auc']:.3f}, "
            f"BG/NBD alone {c.get('roc_auc') or float('nan'):.3f}), PR AUC {v['pr_auc']:.3f}, "
            f"Brier {v['brier']:.3f}, ECE {v['ece']:.3f}, top-10% lift {v['lift_top10']:.1f}x; "
            f"calibration {t['calibration']}"
        )
        lines.append(f"  {t['decision']}")
    th = s.get("thresholds")
    if th and th.get("shop_purchase_rate") is not None:
        lines.append(
            f"  expected purchase rate {th['shop_purchase_rate']:.1%} in the horizon; "
            f"at risk from churn risk {th['at_risk_from_churn_risk']:.2f}, safe below "
            f"{th['safe_below_churn_risk']:.2f} ({th['basis']} thresholds)"
        )
    lines.append(f"  {'segment':<20} {'customers':>10} {'share':>7} {'churn risk':>11}  typical first reason")
    for g in s["segments"]:
        drivers = ", ".join(d["family"] for d in g["top_drivers"])
        size = f"{g['customers']:>10,} {g['share']:>7.1%}"
        lines.append(f"  {g['segment']:<20} {size} {g['mean_churn_risk']:>11.2f}  {drivers}")
    if s.get("moves_since_previous"):
        moved = ", ".join(
            f"{m['from']} -> {m['to']} {m['customers']:,}" for m in s["moves_since_previous"][:5]
        )
        lines.append(f"  moved since the previous run: {moved}")
    lines.append("  every customer's score and reasons: ml.customer_scores; one customer: clarion explain ID")
    return "\n".join(lines)


def content_text(s: dict[str, Any]) -> str:
    if not s.get("campaigns"):
        return f"content     {s.get('note', 'no campaigns')}"
    lines = [
        f"content     drafts for the segments of run {s['scoring_run_id']} (as of {s['as_of']}), "
        f"model {s['model']} (loaded in {s['load_seconds']:.1f} s)"
    ]
    lines.append(
        f"  {'campaign':<18} {'drafts':>6} {'pending':>8} {'blocked':>8} {'model slots':>12}  seconds"
    )
    for c in s["campaigns"]:
        if not c["drafts"]:
            lines.append(f"  {c['campaign']:<18} {0:>6}  {c.get('note', '')}")
            continue
        used = f"{c['model_slots']}/{c['slots']}"
        lines.append(
            f"  {c['campaign']:<18} {c['drafts']:>6} {c['pending']:>8} {c['blocked']:>8} {used:>12}  "
            f"{c['seconds']:>7.1f}"
        )
    lines.append(
        "  model slots: headline/hook slots the model wrote that passed checks and kept the seed's meaning; "
        "the rest use the brief's own copy"
    )
    lines.append("  review: clarion drafts list; clarion drafts show ID; clarion approve ID --by NAME")
    return "\n".join(lines)


def gates_text(gates: list[dict[str, Any]]) -> str:
    lines = []
    for g in gates:
        verdict = "passed" if g["ok"] else "FAILED"
        warned = len(g["warnings"])
        failed = g["failed"] - warned
        counts = f"{g['passed']} passed, {warned} warning(s), {failed} failed, {g['skipped']} skipped"
        lines.append(f"gate {g['suite']:<6} {verdict}: {counts}")
        lines += [f"  fail  {x}" for x in g["failures"]]
        lines += [f"  warn  {x}" for x in g["warnings"]]
    if gates and gates[-1].get("data_docs"):
        lines.append(f"Data Docs: {gates[-1]['data_docs']}")
    return "\n".join(lines)


COUNTS = ("read", "loaded", "quarantined", "inserted", "updated", "unchanged")


def accounting_text(rows: list[dict[str, Any]]) -> str:
    """The extract accounting as a table; every row read is loaded or quarantined."""
    header = f"{'source':<10} {'entity':<16} {'status':<9}" + "".join(f"{c:>12}" for c in COUNTS)
    lines = [header]
    notes = []
    for r in rows:
        counts = "".join(f"{r.get(c, 0):>12,}" for c in COUNTS)
        lines.append(f"{r['source']:<10} {r['entity']:<16} {r['status']:<9}{counts}")
        where = f"{r['source']}/{r['entity']}"
        if r.get("reasons"):
            notes.append(
                f"{where}: quarantined " + ", ".join(f"{k} {v:,}" for k, v in sorted(r["reasons"].items()))
            )
        if r.get("message") and r.get("status") != "unchanged":
            notes.append(f"{where}: {r['message']}")
        if r.get("new_columns"):
            notes.append(f"{where}: new columns kept in raw: {', '.join(r['new_columns'])}")
    if notes:
        lines.append("")
        lines += notes
    if any(r.get("quarantined") for r in rows):
        lines.append("Rejected rows are in quarantine.<entity> with their reason, field and file/row or key:")
        lines.append("  clarion quarantine ENTITY [--reason REASON]")
    return "\n".join(lines)


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
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
@click.pass_obj
def run(
    app: AppContext, wait_seconds: float | None, resume: bool, resume_run: str | None, as_json: bool
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
      PREFECT_HOME=var/prefect prefect server start    # then open http://127.0.0.1:4200 to see runs
    """
    target = resume_run or ("latest" if resume else None)
    result = _run_pipeline(app, wait_seconds, **({"resume": target} if target else {}))
    _emit(result, as_json, _run_text(result))


# --------------------------------------------------------------------------------------------------
# serve


def _serve_list_text(listing: dict[str, Any]) -> str:
    import textwrap

    lines = [f"{len(listing['deployments'])} deployments from {listing['source']}", ""]
    for d in listing["deployments"]:
        when = ", ".join(f"{s['cron']} ({s.get('timezone') or 'UTC'})" for s in d["schedules"])
        params = ", ".join(
            f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in d["parameters"].items()
        )
        lines += [
            d["full_name"],
            f"  entrypoint  {d['entrypoint']}",
            f"  schedule    {when or 'none: on demand'}",
            f"  parameters  {params or '-'}",
        ]
        if d["description"]:
            lines += textwrap.wrap(d["description"], 96, initial_indent="  ", subsequent_indent="  ")
        lines.append("")
    first = listing["deployments"][0]["full_name"]
    lines.append(f"Serve them with `clarion serve`; start one by hand: prefect deployment run '{first}'")
    return "\n".join(lines)


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
@click.pass_obj
def extract(app: AppContext, source: str | None, wait_seconds: float | None, as_json: bool) -> None:
    """Bring CRM data into the warehouse's raw schema; quarantine rows that break the contract.

    Sources (clarion.yaml `sources:`): CSV/Parquet/JSON-lines files with a column mapping, a
    PostgreSQL or MariaDB CRM database (incremental by its updated_at-style cursor), or a
    HubSpot-v3-style API. Every row read is either loaded into raw.<entity> (inserted, updated or
    unchanged) or put in quarantine.<entity> with a reason; the accounting table shows both.
    Running it again only reads what changed: new or modified files, rows past the cursor.

    \b
    Examples:
      clarion extract
      clarion extract --source crm --json
      clarion quarantine orders --reason orphan      # what was rejected, and why
    """
    result = _run_pipeline(app, wait_seconds, stages=["extract"], source=source)
    _emit(result, as_json, _run_text(result))


@cli.command()
@click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(["%Y-%m-%d"]),
    help="The day the features describe [transform.as_of; the day after the latest order].",
)
@WAIT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the run summary (with gate results) as JSON.")
@click.pass_obj
def transform(app: AppContext, as_of: datetime | None, wait_seconds: float | None, as_json: bool) -> None:
    """Build customer features with dbt, gate them, and publish them to marts.

    Write-audit-publish: the raw gate (expectations/raw.yml) runs first; dbt builds every model
    into the staging schema and runs its tests; the marts gate (expectations/marts.yml) judges that
    build; only then is it copied into marts, in one transaction. A failing `fail` check stops it
    with the check, what it observed and samples, exit code 4; marts keep the last good build.

    \b
    Examples:
      clarion transform
      clarion transform --as-of 2026-04-01          # features as of another day (a backtest)
      clarion check                                 # the gates alone
    """
    params: dict[str, Any] = {"stages": ["transform"]}
    if as_of:
        params["as_of"] = as_of.date()
    result = _run_pipeline(app, wait_seconds, **params)
    _emit(result, as_json, _run_text(result))


@cli.command()
@WAIT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the gate results as JSON.")
@click.pass_obj
def check(app: AppContext, wait_seconds: float | None, as_json: bool) -> None:
    """Run the quality gates alone: raw, and the latest staging build. Exit 4 if a `fail` check fails.

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
@WAIT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the run summary (segments, model) as JSON.")
@click.pass_obj
def segment(
    app: AppContext,
    as_of: datetime | None,
    horizon_days: int | None,
    retrain: bool,
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

    \b
    Examples:
      clarion segment
      clarion segment --retrain --horizon-days 60
      clarion explain 1042                       # one customer's score and reasons
      clarion models show v0001                  # the model card
    """
    params: dict[str, Any] = {"stages": ["segment"], "retrain": retrain or None, "horizon_days": horizon_days}
    if as_of:
        params["as_of"] = as_of.date()
    result = _run_pipeline(app, wait_seconds, **params)
    _emit(result, as_json, _run_text(result))


@cli.command()
@click.argument("contact_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def explain(app: AppContext, contact_id: int, as_json: bool) -> None:
    """Why a customer is where they are: the latest score, segment, reasons and model version.

    Says whether the customer is less likely to buy than the average customer (the reasons are what
    raises the risk), more likely (what keeps them), or close to average; amounts in the shop's
    currency.

    \b
    Examples:
      clarion explain 1042
      clarion explain 1042 --json    # reasons as fields: feature, family, direction, effect, value, text
    """
    from clarion.segment.views import explanation, explanation_text

    e = explanation(app.settings(), contact_id)
    _emit(e, as_json, explanation_text(e))


@cli.group()
def models() -> None:
    """The model registry (var/registry): versions, model cards, promotion and rollback."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def models_list(app: AppContext, as_json: bool) -> None:
    """Every version with its out-of-time validation; * marks the promoted one."""
    from clarion.segment.views import models_listing, models_text

    listing = models_listing(app.settings())
    _emit(listing, as_json, models_text(listing))


@models.command("show")
@click.argument("version", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the card as JSON.")
@click.pass_obj
def models_show(app: AppContext, version: str | None, as_json: bool) -> None:
    """The model card of VERSION [the promoted one]: use, data, metrics, calibration, drivers, fairness."""
    from models.registry import Registry, RegistryError

    reg = Registry(app.settings().var_dir / "registry")
    chosen = reg.get(version) if version else reg.promoted()
    if chosen is None:
        raise RegistryError("no model is promoted yet: `clarion segment` trains and promotes the first")
    if as_json:
        click.echo((chosen.path / "card.json").read_text())
    else:
        click.echo((chosen.path / "card.md").read_text())
        click.echo(f"(files: {chosen.path})")


def _change_registry(app: AppContext, verb: str, change: Any) -> Any:
    """Change which version is promoted, as a writer: never while a run is scoring with it."""
    from clarion.audit import record_registry_change
    from clarion.warehouse import Warehouse
    from models.registry import Registry

    settings = app.settings()
    with Warehouse.from_settings(settings).writing(f"clarion models {verb}"):
        version = change(Registry(settings.var_dir / "registry"))
        record_registry_change(settings, verb, version.name)
        return version


@models.command("promote")
@click.argument("version")
@click.pass_obj
def models_promote(app: AppContext, version: str) -> None:
    """Make VERSION the one that scores customers (from the next `clarion segment`)."""
    v = _change_registry(app, "promote", lambda reg: reg.promote(version, "by hand (clarion models promote)"))
    click.echo(f"promoted {v.name}; the next `clarion segment` scores with it")


@models.command("rollback")
@click.pass_obj
def models_rollback(app: AppContext) -> None:
    """Promote again the version that was promoted before the current one.

    The promotion history is a stack: after v1, v2 and v3 were promoted, rollback reaches v2, and a
    second rollback v1."""
    v = _change_registry(app, "rollback", lambda reg: reg.rollback())
    click.echo(f"rolled back: {v.name} is promoted again; the next `clarion segment` scores with it")


@cli.command()
@click.option("--campaign", "campaigns", multiple=True, metavar="NAME", help="Only this brief (repeatable).")
@WAIT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def content(app: AppContext, campaigns: tuple[str, ...], wait_seconds: float | None, as_json: bool) -> None:
    """Draft campaign copy for the latest segments: per brief, target segment, channel and variant.

    The local language model (content.source; the embedded SmolLM2-135M-Instruct by default) only
    rewrites the brief's headline and hook for each segment's audience; offer facts come from the
    brief. Every draft is checked (invented facts, banned words and claims, lengths, PII,
    placeholders, disclaimer, language, readability, near-duplicates), carries its provenance and
    an AI-generated label, and waits in content.drafts for a person's approval.

    \b
    Examples:
      clarion content
      clarion content --campaign winback-summer
      clarion drafts list --status pending
      clarion approve d1a2b3c4d5 --by marketing-lead --note "fine for July"
      clarion export --campaign winback-summer
    """
    result = _run_pipeline(app, wait_seconds, stages=["content"], campaigns=list(campaigns) or None)
    _emit(result, as_json, _run_text(result))


@cli.group()
def drafts() -> None:
    """Drafted campaign copy (content.drafts): list, read, edit."""


@drafts.command("list")
@click.option(
    "--status", type=click.Choice(["pending", "approved", "rejected", "blocked"]), help="Only this status."
)
@click.option("--campaign", metavar="NAME", help="Only this campaign.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def drafts_list(app: AppContext, status: str | None, campaign: str | None, as_json: bool) -> None:
    """Drafts, newest run first, with status and failed checks."""
    from clarion.content.runner import list_drafts
    from clarion.content.views import drafts_text

    rows = list_drafts(app.settings(), status, campaign)
    _emit(rows, as_json, drafts_text(rows))


@drafts.command("show")
@click.argument("draft_id")
@click.option(
    "--json", "as_json", is_flag=True, help="Print as JSON (content, checks, provenance, decisions)."
)
@click.pass_obj
def drafts_show(app: AppContext, draft_id: str, as_json: bool) -> None:
    """One draft: its copy, check report, provenance and decisions."""
    from clarion.content.runner import show_draft
    from clarion.content.views import draft_text

    d = show_draft(app.settings(), draft_id)
    _emit(d, as_json, draft_text(d))


@drafts.command("edit")
@click.argument("draft_id")
@click.option("--part", required=True, help="email_subject, email_body, sms or push.")
@click.option("--text", required=True, help="The new text ({first_name} is filled at export).")
@click.option("--by", required=True, metavar="NAME", help="Who edits.")
@click.pass_obj
def drafts_edit(app: AppContext, draft_id: str, part: str, text: str, by: str) -> None:
    """Change one part of a draft: checked again, and it needs a (new) approval."""
    from clarion.content.runner import edit

    r = edit(app.settings(), draft_id, part, text, by)
    failed = [c["name"] for c in r["checks"] if not c["passed"]]
    click.echo(
        f"{draft_id} is {r['status']} (content {r['content_sha256'][:12]})"
        + (f"; failed: {failed}" if failed else "")
    )


@cli.command()
@click.argument("draft_id")
@click.option(
    "--by", required=True, metavar="NAME", help="Who approves (an approver in the campaign's brief)."
)
@click.option("--note", help="Why, or under which conditions.")
@click.pass_obj
def approve(app: AppContext, draft_id: str, by: str, note: str | None) -> None:
    """Approve a draft for export. The approval is bound to the draft's current content."""
    from clarion.content.runner import decide

    r = decide(app.settings(), draft_id, "approve", by, note)
    click.echo(
        f"{draft_id} approved by {r['by']} (content {r['content_sha256'][:12]}); export: clarion export"
    )


@cli.command()
@click.argument("draft_id")
@click.option("--by", required=True, metavar="NAME", help="Who rejects.")
@click.option("--reason", required=True, help="Why (kept with the decision).")
@click.pass_obj
def reject(app: AppContext, draft_id: str, by: str, reason: str) -> None:
    """Reject a draft; it is never exported."""
    from clarion.content.runner import decide

    decide(app.settings(), draft_id, "reject", by, reason)
    click.echo(f"{draft_id} rejected by {by}")


@cli.command("export")
@click.option("--campaign", metavar="NAME", help="Only this campaign.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def export_cmd(app: AppContext, campaign: str | None, as_json: bool) -> None:
    """Approved drafts to var/exports: one row per consenting recipient, merge fields filled.

    Contacts without consent for the channel, with a marketing objection, or erased get nothing;
    the counts left out and why are printed and kept in content.exports.
    """
    from clarion.content.runner import export
    from clarion.content.views import export_text
    from clarion.warehouse import Warehouse

    settings = app.settings()
    with Warehouse.from_settings(settings).writing("clarion export"):
        result = export(settings, campaign)
    _emit(result, as_json, export_text(result))


@cli.group()
def lineage() -> None:
    """Each run's lineage manifest (var/runs/RUN_ID/manifest.json): inputs, code, settings, outputs."""


@lineage.command("show")
@click.argument("run_id")
@click.pass_obj
def lineage_show(app: AppContext, run_id: str) -> None:
    """Print the manifest of RUN_ID (JSON)."""
    from clarion.lineage import LineageError, manifest_path

    path = manifest_path(app.settings(), run_id)
    if not path.exists():
        raise LineageError(f"no manifest for run {run_id} at {path}: it is written when a run ends")
    click.echo(path.read_text())


@lineage.command("verify")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def lineage_verify(app: AppContext, run_id: str, as_json: bool) -> None:
    """Re-hash every output file the manifest of RUN_ID lists; exit 6 naming any that changed."""
    from clarion.lineage import verify

    result = verify(app.settings(), run_id)
    human = (
        f"run {run_id}: {result['outputs']} output files "
        + ("match the manifest" if result["ok"] else "checked, MISMATCH")
        + "".join(f"\n  {p}" for p in result["problems"])
    )
    _emit(result, as_json, human)
    if not result["ok"]:
        raise SystemExit(6)


@cli.command()
@click.option("--run", "run_id", metavar="RUN_ID", help="The scoring run to report on [the latest].")
@click.option("--no-send", is_flag=True, help="Write the HTML and PDF, do not e-mail them.")
@click.option(
    "--outbox",
    metavar="DIR",
    type=click.Path(path_type=Path),
    help="Send the e-mail to a local SMTP server inside Clarion that saves it as DIR/<timestamp>-<n>.eml "
    "(created if missing) instead of to report.smtp_host [report.outbox].",
)
@click.option("--json", "as_json", is_flag=True, help="Print paths, hashes and delivery as JSON.")
@click.pass_obj
def report(app: AppContext, run_id: str | None, no_send: bool, outbox: Path | None, as_json: bool) -> None:
    """The marketer report (HTML + PDF, aggregates only) of a scoring run, e-mailed to report.recipients.

    With --outbox (or report.outbox) the e-mail goes through the same SMTP code to a server Clarion
    starts on 127.0.0.1 for the moment, which writes it to a folder: no mail server needed, and any
    mail client opens the .eml. The recipients are report.recipients, or marketing@localhost.

    \b
    Examples:
      clarion report --no-send                 # write var/reports/RUN_ID/report.html|pdf
      clarion report --outbox var/outbox       # and the e-mail into var/outbox/<timestamp>-<n>.eml
      CLARION_REPORT__RECIPIENTS=team@example.com clarion report
    """
    from clarion.report import make_report

    if outbox is not None and no_send:
        raise click.UsageError("--outbox sends the report and --no-send does not: give one or the other")
    settings = app.settings()
    if outbox is not None:
        report_settings = settings.report.model_copy(update={"outbox": outbox.absolute()})
        settings = settings.model_copy(update={"report": report_settings})
    result = make_report(settings, run_id, send=not no_send)
    _emit(result, as_json, report_text(result))


def report_text(r: dict[str, Any]) -> str:
    lines = [
        f"report of scoring run {r['run_id']} (as of {r['as_of']}, model {r['model_version']}, "
        f"{r['customers']:,} customers)",
        f"  html  {r['paths']['html']}  ({r['bytes']['html'] / 1024:,.0f} KiB)",
        f"  pdf   {r['paths']['pdf']}  ({r['bytes']['pdf'] / 1024:,.0f} KiB)",
    ]
    if r.get("outbox"):
        lines.append(f"  {r['note']}")
        lines.append(f"  to {', '.join(r['recipients'])}: {r['subject']}")
    elif r["sent"]:
        tries = "" if r["attempts"] == 1 else f" after {r['attempts']} attempts"
        lines.append(f"  sent to {', '.join(r['recipients'])}{tries}: {r['subject']}")
        if r["refused"]:
            lines.append(
                "  refused by the server: " + "; ".join(f"{k} ({v})" for k, v in r["refused"].items())
            )
    else:
        lines.append(f"  {r['note']}")
    return "\n".join(lines)


@cli.group()
def compliance() -> None:
    """What compliance reviews: per-customer explanations, model card, lineage, audit, consent."""


@compliance.command("export")
@click.argument("run_id", required=False)
@click.option("--no-zip", is_flag=True, help="Write the folder only.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def compliance_export(app: AppContext, run_id: str | None, no_zip: bool, as_json: bool) -> None:
    """Write var/compliance/RUN_ID/ and RUN_ID.zip [the latest completed run]: model card,
    explanations of every customer (pseudonymous ids), lineage manifest, audit events and their
    verification, quality results, consent and exclusion summary, provenance of every exported
    draft, SHA256SUMS."""
    from clarion.compliance import export_pack, latest_run

    settings = app.settings()
    run_id = run_id or latest_run(settings)
    r = export_pack(settings, run_id, make_zip=not no_zip)
    human = (
        f"compliance pack of run {run_id}: {r['folder']}"
        + (f" (zip {r['zip']})" if r["zip"] else "")
        + f"\n  {r.get('customers_explained', 0):,} customers explained, {r['audit_events']} audit events "
        f"(chain {'verified' if r['audit_ok'] else 'BROKEN'}), "
        f"{r['exported_drafts']} exported drafts with provenance"
        + "".join(f"\n  {name}" for name in r["files"])
    )
    _emit(r, as_json, human)


@cli.group()
def audit() -> None:
    """The audit log (audit.events): append-only, each event chained to the one before by its hash."""


@audit.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def audit_verify(app: AppContext, as_json: bool) -> None:
    """Re-hash every event: report any edited, deleted, reordered or forged one. Exit 5 if any."""
    from clarion.audit import AuditLog
    from clarion.warehouse import Warehouse

    settings = app.settings()
    with Warehouse.from_settings(settings).read() as con:
        result = AuditLog.for_settings(settings).verify(con)
    head = result["head"]
    human = (
        f"audit log {'verified' if result['ok'] else 'BROKEN'}: {result['events']:,} events"
        + (f", head seq {head['seq']} {head['hash'][:16]}" if head else "")
        + "".join(f"\n  {p}" for p in result["problems"])
    )
    _emit(result, as_json, human)
    if not result["ok"]:
        raise SystemExit(5)


@audit.command("log")
@click.option("--limit", default=20, show_default=True, help="Newest events to show.")
@click.option("--action", help="Only this action (run.started, draft.approved, model.promoted, ...).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def audit_log(app: AppContext, limit: int, action: str | None, as_json: bool) -> None:
    """The newest events: when, who, what, on which subject and run."""
    from clarion.warehouse import Warehouse, relation_exists

    with Warehouse.from_settings(app.settings()).read() as con:
        rows = (
            con.execute(
                'select seq, "at"::varchar, actor, action, subject, run_id, details from audit.events '
                "where (? is null or action = ?) order by seq desc limit ?",
                [action, action, limit],
            ).fetchall()
            if relation_exists(con, "audit", "events")
            else []
        )
    keys = ("seq", "at", "actor", "action", "subject", "run_id", "details")
    events = [dict(zip(keys, r, strict=True)) for r in rows]
    lines = [
        f"{e['seq']:>6}  {e['at'][:19]}  {e['actor']:<18} {e['action']:<16} {e['subject']}" for e in events
    ]
    _emit(events, as_json, "\n".join(lines) or "no events yet")


@cli.command()
@click.argument("entity", required=False)
@click.option("--reason", help="Only this reason (orphan, invalid_date, duplicate_key, ...).")
@click.option("--source", metavar="NAME", help="Only rows from this source.")
@click.option("--limit", default=20, show_default=True, help="Rows to list (0: counts only).")
@click.option("--values", "show_values", is_flag=True, help="Also print each row's values (may hold PII).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def quarantine(
    app: AppContext,
    entity: str | None,
    reason: str | None,
    source: str | None,
    limit: int,
    show_values: bool,
    as_json: bool,
) -> None:
    """List rejected rows: where they came from (file and row, or key), the reason and the field.

    Without ENTITY, counts per entity and reason. Values are left out unless --values is given:
    quarantined rows are real CRM data and can hold names, e-mails and phone numbers.
    """
    from clarion.quarantine import listing, render

    settings = app.settings()
    report = listing(settings, entity, reason=reason, source=source, limit=limit, values=show_values)
    _emit(report, as_json, render(report))


# --------------------------------------------------------------------------------------------------
# status


@cli.command()
@click.option("--runs", "n_runs", default=5, show_default=True, help="How many recent runs to list.")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_obj
def status(app: AppContext, n_runs: int, as_json: bool) -> None:
    """What the warehouse holds, who is writing it, the last runs, and where the generated data is."""
    from clarion.status import collect, render

    settings = app.settings()
    report = collect(settings, config_file=app.config_file(), n_runs=n_runs)
    _emit(report, as_json, render(report))


# --------------------------------------------------------------------------------------------------
# config


@cli.command("config")
@click.option("--keys", is_flag=True, help="List every key with its environment variable and meaning.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def config_cmd(app: AppContext, keys: bool, as_json: bool) -> None:
    """Show the effective settings (file + CLARION_* overrides), validated; or every key with --keys."""
    import yaml

    from clarion.config import describe

    if keys:
        rows = describe()
        text = "\n".join(
            f"{r['key']:<34} {r['env']:<44} {r['default']!s:<22} {r['description']}" for r in rows
        )
        _emit(rows, as_json, text)
        return
    settings = app.settings()
    data = settings.model_dump(mode="json")
    file = app.config_file()
    header = f"# from {file if file else 'built-in defaults'}; fingerprint {settings.fingerprint()}\n"
    _emit(data, as_json, header + yaml.safe_dump(data, sort_keys=False).rstrip())


def main() -> None:
    import atexit

    from clarion.runtime import quiet_shutdown

    atexit.register(quiet_shutdown)  # registered first, so it runs last
    cli(prog_name="clarion")


if __name__ == "__main__":
    main()
