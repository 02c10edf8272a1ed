"""Voice-of-the-customer verbs: `clarion voc` (the stage) and `clarion voc topics` (what it found)."""

from __future__ import annotations

import click

from clarion.cli.app import WAIT_OPTION, AppContext, _emit, cli
from clarion.cli.pipeline import _run_pipeline
from clarion.cli.text import _run_text


@cli.group(invoke_without_command=True)
@WAIT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
@click.pass_context
def voc(ctx: click.Context, wait_seconds: float | None, as_json: bool) -> None:
    """Group the support tickets into topics and tell their sentiment.

    Each ticket's subject and body is scrubbed first (its writer's name, e-mails, phones and order
    numbers become [name], [email], [phone], [order]), then embedded with the shipped MiniLM
    model (cached in ml.ticket_embeddings: an unchanged ticket is not embedded again). k-means
    topics for k in ml.voc.k_min..k_max, the best silhouette wins; each topic is named by its most
    characteristic words. A classifier learnt from the tickets with a satisfaction score gives
    every ticket a sentiment, compared with the staging lexicon on the newest 20% of them.
    Writes ml.ticket_topics, ml.voc_topics and ml.voc_trend, and the "voc" card in the registry.
    A daily run reuses the promoted card's k and the classifier's regularisation while they are
    under ml.voc.reselect_every_days (7) old and the ticket count changed by 10% or less, and says
    so; topics and classifier are refitted on every ticket every run.

    \b
    Examples:
      clarion voc
      clarion voc --json
      clarion voc topics            # name, terms, tickets, customers, negative share, trend
      clarion models show --model voc   # the card: k, silhouettes, F1s
    """
    if ctx.invoked_subcommand is not None:
        return
    app: AppContext = ctx.obj
    result = _run_pipeline(app, wait_seconds, stages=["voc"])
    _emit(result, as_json, _run_text(result))


@voc.command("topics")
@click.option("--json", "as_json", is_flag=True, help="Print the topics as JSON.")
@click.pass_obj
def voc_topics(app: AppContext, as_json: bool) -> None:
    """The topics of the latest voc run: name, terms, tickets, customers, negative share, average
    satisfaction, example phrases (written by at least ml.voc.min_customers_per_phrase customers)
    and tickets per month."""
    from clarion.voc import topics, topics_text
    from clarion.warehouse import Warehouse

    with Warehouse.from_settings(app.settings()).read() as con:
        rows = topics(con)
    _emit(rows, as_json, topics_text(rows))
