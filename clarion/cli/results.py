"""clarion results: what each campaign did against its control group."""

from __future__ import annotations

import click

from clarion.cli.app import WAIT_OPTION, AppContext, _emit, cli


@cli.command()
@click.argument("campaign", required=False)
@click.option("--no-measure", is_flag=True, help="Show the latest stored results; measure nothing.")
@click.option("--all", "every", is_flag=True, help="Also list campaigns without a control group or variants.")
@WAIT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def results(
    app: AppContext,
    campaign: str | None,
    no_measure: bool,
    every: bool,
    wait_seconds: float | None,
    as_json: bool,
) -> None:
    """What each campaign did against its control group [or CAMPAIGN's alone].

    A customer is exposed at their first send (treatment, with its variant) or control-group
    enrolment (control) of a campaign; orders within experiments.attribution_days after it convert.
    Per variant: customers, delivered, opened, clicked, unsubscribed, converted, the conversion rate
    with its interval, uplift against the control group (percentage points, with its interval),
    and incremental revenue. Variants are tested against the leader with an always-valid sequential
    test (safe to read every day): a challenger is retired when it is worse at p < experiments.alpha,
    the leader wins when every challenger is retired. A sample-ratio check flags a control group that
    is not the planned share. Stored in ml.campaign_results; ml.campaign_uplift feeds `clarion nba`.

    The uplift model (who is moved, from every campaign's treated and control customers) is fitted
    and validated against random targeting; it is kept in the registry with its verdict (`clarion
    models show --model uplift`) and reused by later runs for experiments.uplift_refit_every_days days
    (7) while the exposures change by less than 10%. A validated one scores the customers with each
    day's features. The larger arm is fitted and validated on at most experiments.uplift_arm_ratio
    (10) exposures per exposure of the smaller arm, a sample kept by a hash of campaign and customer.

    \b
    Examples:
      clarion results
      clarion results CMP-20260602 --json
      clarion results --no-measure          # the latest stored figures
      clarion results --all                 # campaigns without a control group too (counts only)
    """
    from clarion import results as campaign_results
    from clarion.results.views import results_text

    if not no_measure:
        from clarion.cli.pipeline import _run_pipeline

        _run_pipeline(app, wait_seconds, stages=["results"])
    summary = campaign_results.load(app.settings(), campaign)
    _emit(summary, as_json, results_text(summary, every=every or campaign is not None))
