"""Recommendation verbs: `clarion recommend` (the stage) and `clarion recommend show ID` (one list)."""

from __future__ import annotations

import click

from clarion.cli.app import WAIT_OPTION, AppContext, _emit, cli
from clarion.cli.pipeline import _run_pipeline
from clarion.cli.text import _run_text
from clarion.errors import ClarionError


class NoRecommendationsError(ClarionError):
    exit_code = 2
    http_status = 404


@cli.group(invoke_without_command=True)
@WAIT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
@click.pass_context
def recommend(ctx: click.Context, wait_seconds: float | None, as_json: bool) -> None:
    """Recommend each customer's top products (ml.recommendations.top_n), with a reason each.

    Order lines (raw.order_items with the published marts.fct_orders; cancelled orders do not
    count) are split by time: every method is fitted on the lines before (latest order day -
    ml.recommendations.eval_holdout_days) and measured on the purchases after it (recall@10,
    NDCG@10, catalogue coverage): popularity, the favourite category's popular products,
    item-item co-occurrence and implicit ALS. `method: auto` takes the best NDCG@10 (ties: the
    simpler), refits it on every line before the day (the latest scoring run's as_of) and writes
    ml.recommendations. Inactive products and products bought within
    ml.recommendations.exclude_bought_days are never recommended. The figures go to the
    recommender card (clarion models show --model recommender). A daily run reuses the promoted
    recommender's evaluation while it is under ml.recommendations.evaluate_every_days (7) old and
    the order lines changed by 10% or less, and says so; the chosen method is refitted every run.

    Data without order lines (a transactions-only export) is told it cannot be recommended for;
    the rest of the run goes on.

    \b
    Examples:
      clarion recommend
      clarion recommend --json
      clarion recommend show 1042                 # one customer's list and why
      clarion models show --model recommender     # the evaluation and the choice
    """
    if ctx.invoked_subcommand is not None:
        return
    app: AppContext = ctx.obj
    result = _run_pipeline(app, wait_seconds, stages=["recommend"])
    _emit(result, as_json, _run_text(result))


@recommend.command("show")
@click.argument("contact_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@click.pass_obj
def recommend_show(app: AppContext, contact_id: int, as_json: bool) -> None:
    """CONTACT_ID's latest recommendations, best first, each with its reason."""
    from clarion.recommend import customer, customer_text

    found = customer(app.settings(), contact_id)
    if found is None:
        raise NoRecommendationsError(
            f"no recommendations for contact {contact_id}: run `clarion recommend` (or `clarion run`) "
            "first, and check the id (`clarion explain ID` shows what is known of them)"
        )
    _emit(found, as_json, customer_text(found))
