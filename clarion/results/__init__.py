"""Campaign results: what each campaign did against its control group, and which variant won.

`measure` counts and tests (statistics in ``models.experiments``); `run` stores a results run in
``ml.campaign_results`` (one row per campaign and arm, the figures as JSON) and the measured uplift
that next-best-action reads in ``ml.campaign_uplift`` (per campaign, every variant pooled, overall
and per segment). Nothing here names a person: results are counts and rates.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import duckdb

from clarion import runs
from clarion.config import Settings
from clarion.errors import ClarionError
from clarion.results import uplift
from clarion.results.measure import EXPOSURES, CampaignResult, measure
from clarion.warehouse import Warehouse, relation_exists

DDL = (
    """
    create table if not exists ml.campaign_results (
        results_run_id varchar, campaign varchar, arm varchar, variant varchar, customers bigint,
        converters bigint, conversion_rate double, verdict varchar, figures json, measured_at timestamptz
    )
    """,
    """
    create table if not exists ml.campaign_experiments (
        results_run_id varchar, campaign varchar, first_exposure varchar, last_exposure varchar,
        srm_p double, srm_variants_p double, experiment json, segments json, notes json,
        measured_at timestamptz
    )
    """,
    """
    create table if not exists ml.campaign_uplift (
        campaign varchar, segment varchar, uplift double, low double, high double, treated bigint,
        control bigint, source varchar, results_run_id varchar, measured_at timestamptz
    )
    """,
)


class ResultsError(ClarionError):
    """Results cannot be measured as asked."""


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists ml")
    for ddl in DDL:
        con.execute(ddl)


def latest_scoring(con: duckdb.DuckDBPyConnection) -> tuple[str, date] | None:
    """The latest settled scoring run and its day (None before the first one)."""
    if not relation_exists(con, "ml", "customer_scores"):
        return None
    return con.execute(
        "select run_id, any_value(as_of) from ml.customer_scores "
        f"where run_id not in ({runs.NOT_SETTLED}) group by run_id order by max(scored_at) desc limit 1"
    ).fetchone()


def retired_variants(con: duckdb.DuckDBPyConnection, campaign: str) -> list[str]:
    """The variants of CAMPAIGN that its latest measured experiment retired (worse than the leader at
    the always-valid p < alpha): the next drafts of the campaign leave them out."""
    if not relation_exists(con, "ml", "campaign_results"):
        return []
    rows = con.execute(
        "select variant from ml.campaign_results where campaign = ? and verdict = 'retired' and "
        "results_run_id = (select arg_max(results_run_id, measured_at) from ml.campaign_results "
        "where campaign = ?) order by 1",
        [campaign, campaign],
    ).fetchall()
    return [v for (v,) in rows]


def run(settings: Settings, run_id: str | None = None, campaign: str | None = None) -> dict[str, Any]:
    """Measure every campaign with exposures (or CAMPAIGN) and store the results run."""
    wh = Warehouse.from_settings(settings)
    results_run_id = run_id or runs.new_run_id()
    exp = settings.experiments
    with wh.connect("results") as con:
        if not relation_exists(con, "marts", "fct_campaign_exposures"):
            raise ResultsError(
                f"{EXPOSURES} does not exist yet: run `clarion transform` (or `clarion run`) to build it"
            )
        ensure_tables(con)
        scoring = latest_scoring(con)
        found = measure(con, campaign, exp.alpha, exp.holdout_share, scoring[0] if scoring else None)
        if campaign and not found:
            known = [
                c
                for (c,) in con.execute(f"select distinct campaign_id from {EXPOSURES} order by 1").fetchall()
            ]
            raise ResultsError(
                f"campaign {campaign!r} has no sends or control group on record; campaigns with results: "
                + (", ".join(known[:20]) or "none yet")
            )
        _store(con, results_run_id, found, replace_all=campaign is None)
        model = (
            uplift.train(con, results_run_id, exp, settings.var_dir / "registry", latest_scoring(con))
            if campaign is None
            else None
        )
    return {**summary(results_run_id, found, exp.alpha), "uplift_model": model}


def _store(
    con: duckdb.DuckDBPyConnection, results_run_id: str, found: list[CampaignResult], replace_all: bool
) -> None:
    now = datetime.now(UTC)
    con.execute("begin")
    try:
        con.execute("delete from ml.campaign_results where results_run_id = ?", [results_run_id])
        con.execute("delete from ml.campaign_experiments where results_run_id = ?", [results_run_id])
        if replace_all:  # the uplift table holds the latest measurement of each campaign only
            con.execute("delete from ml.campaign_uplift")
        for r in found:
            con.execute("delete from ml.campaign_uplift where campaign = ?", [r.campaign])
            for a in r.arms:
                figures = {k: v for k, v in a.__dict__.items() if k not in ("campaign", "arm", "variant")}
                con.execute(
                    "insert into ml.campaign_results values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [results_run_id, r.campaign, a.arm, a.variant, a.customers, a.converters,
                     a.conversion_rate, a.verdict, json.dumps(figures), now],
                )  # fmt: skip
            con.execute(
                "insert into ml.campaign_experiments values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [results_run_id, r.campaign, r.first_exposure, r.last_exposure, r.srm_p, r.srm_variants_p,
                 json.dumps(r.experiment), json.dumps(r.segments), json.dumps(r.notes), now],
            )  # fmt: skip
            control = next((a for a in r.arms if a.arm == "control"), None)
            pooled = next((a for a in r.arms if a.variant == "all"), None) or next(
                (a for a in r.arms if a.arm == "treatment"), None
            )
            if control is None or pooled is None or pooled.uplift is None:
                continue
            trusted = r.srm_p is None or r.srm_p >= 0.001
            source = "measured" if trusted else "measured, sample-ratio mismatch"
            rows = [("all", pooled.uplift, pooled.customers, control.customers)]
            rows += [(s["segment"], s, s["treated"], s["control"]) for s in r.segments]
            for segment, u, treated, held in rows:
                con.execute(
                    "insert into ml.campaign_uplift values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [r.campaign, segment, u["absolute"], u["low"], u["high"], treated, held, source,
                     results_run_id, now],
                )  # fmt: skip
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def summary(results_run_id: str, found: list[CampaignResult], alpha: float) -> dict[str, Any]:
    return {
        "results_run_id": results_run_id,
        "alpha": alpha,
        "campaigns": [r.as_dict() for r in found],
    }


def load(settings: Settings, campaign: str | None = None) -> dict[str, Any]:
    """The latest stored results run (or its CAMPAIGN), as `run` returned it."""
    wh = Warehouse.from_settings(settings)
    with wh.read() as con:
        if not relation_exists(con, "ml", "campaign_experiments"):
            raise ResultsError("no results measured yet: run `clarion results` or `clarion run`")
        latest = con.execute(
            "select results_run_id from ml.campaign_experiments order by measured_at desc limit 1"
        ).fetchone()
        if latest is None:
            return summary("", [], settings.experiments.alpha)
        (results_run_id,) = latest
        heads = con.execute(
            "select campaign, first_exposure, last_exposure, srm_p, srm_variants_p, experiment, segments, "
            "notes from ml.campaign_experiments where results_run_id = ? and (? is null or campaign = ?) "
            "order by campaign",
            [results_run_id, campaign, campaign],
        ).fetchall()
        if campaign and not heads:
            known = [c for (c,) in con.execute(
                "select campaign from ml.campaign_experiments where results_run_id = ? order by 1",
                [results_run_id],
            ).fetchall()]  # fmt: skip
            raise ResultsError(
                f"campaign {campaign!r} has no sends or control group on record; campaigns with results: "
                + (", ".join(known[:20]) or "none yet")
            )
        arms = con.execute(
            "select campaign, arm, variant, figures from ml.campaign_results where results_run_id = ? "
            "order by campaign, arm = 'treatment', variant = 'all', variant",
            [results_run_id],
        ).fetchall()
    campaigns = []
    for name, first, last, srm_p, srm_v, experiment, segments, notes in heads:
        campaigns.append(
            {
                "campaign": name,
                "first_exposure": first,
                "last_exposure": last,
                "arms": [
                    {"campaign": c, "arm": arm, "variant": v, **json.loads(f)}
                    for c, arm, v, f in arms
                    if c == name
                ],
                "srm_p": srm_p,
                "srm_variants_p": srm_v,
                "experiment": json.loads(experiment),
                "segments": json.loads(segments),
                "notes": json.loads(notes),
            }
        )
    return {"results_run_id": results_run_id, "alpha": settings.experiments.alpha, "campaigns": campaigns}
