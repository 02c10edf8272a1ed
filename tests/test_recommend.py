"""The recommend stage on a real warehouse: the session's 2,000-contact CRM (crm_csv) through
extract, transform, segment and recommend as one `clarion` pipeline run (Prefect flow runs), then
every recommended row of every method checked against facts re-derived in SQL from the raw order
lines: the co-purchase shares, the favourite category, the popularity ranks, the filters. Also the
card in the registry, the CLI, a rerun replacing its rows, and a transactions-only shop.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner
from prefect_api import artifacts, child_flow_run
from project_helpers import query, run_pipeline_in

from clarion.cli import cli
from clarion.config import GenerateSettings, load_settings
from clarion.recommend import CANNOT
from clarion.recommend import run as recommend_stage
from clarion.synth.generator import generate

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]

CONFIG = "warehouse:\n  path: var/warehouse.duckdb\ncontent:\n  briefs: no-briefs\n"


@pytest.fixture(scope="module")
def shop(tmp_path_factory, crm_csv) -> dict:
    root = tmp_path_factory.mktemp("recommend_shop")
    shutil.copytree(crm_csv[0], root / "var" / "crm")
    (root / "clarion.yaml").write_text(CONFIG)
    result = run_pipeline_in(root, stages=["extract", "transform", "segment", "recommend"])
    assert result["status"] == "completed"
    settings = load_settings(root / "clarion.yaml", env={})
    extra = {}  # the two learnt methods, whichever auto chose, so every reason kind is checked
    for method in ("cooccurrence", "als"):
        r = settings.ml.recommendations.model_copy(update={"method": method})
        forced = settings.model_copy(update={"ml": settings.ml.model_copy(update={"recommendations": r})})
        extra[method] = recommend_stage(forced, f"check-{method}")
    return {"root": root, "settings": settings, "result": result, "extra": extra}


def _run_ids(shop: dict) -> list[str]:
    return [shop["result"]["run_id"], "check-cooccurrence", "check-als"]


LINES = """
    select o.contact_id, i.product_id, o.ordered_at
    from raw.order_items i join marts.fct_orders o on o.order_id = i.order_id
    where not coalesce(o.is_cancelled, false) and o.ordered_at < $as_of::timestamp at time zone 'UTC'
"""


def _rows(con: duckdb.DuckDBPyConnection, run_id: str) -> list[dict]:
    cur = con.execute("select * from ml.recommendations where run_id = ? order by contact_id, rank", [run_id])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _percent(share: float) -> str:
    whole = int(share * 100 + 0.5) if share * 100 % 1 != 0.5 else round(share * 100)
    return "under 1%" if whole == 0 and share > 0 else f"{whole}%"


def test_the_stage_ran_as_a_flow_and_wrote_top_n_for_every_customer(shop) -> None:
    summary = shop["result"]["stages"]["recommend"]
    settings = shop["settings"]
    n = settings.ml.recommendations.top_n
    [(flow_run_id,)] = query(
        settings, "select flow_run_id from audit.runs where run_id = ?", [shop["result"]["run_id"]]
    )
    [artifact] = [
        a for a in artifacts(child_flow_run(flow_run_id, "recommend")) if a.key == "recommendations"
    ]
    assert f"{summary['recommended']:,} recommendations" in artifact.data
    customers = query(settings, "select count(*) from marts.dim_customers")[0][0]
    assert summary["customers"] == customers > 1900  # every published customer (none erased here)
    per = query(
        settings,
        "select contact_id, count(*), count(distinct product_id), list(rank order by rank) "
        "from ml.recommendations where run_id = ? group by 1",
        [shop["result"]["run_id"]],
    )
    assert len(per) == customers and summary["recommended"] == customers * n
    assert all(c == d == n and r == list(range(1, n + 1)) for _, c, d, r in per)
    manifest = json.loads(Path(shop["result"]["manifest"]).read_text())  # the run's lineage names them
    assert sum(r["rows"] for r in manifest["recommendations"]) == summary["recommended"]
    card = str(shop["root"] / "var" / "registry" / "recommender" / summary["model_version"] / "card.md")
    assert card in {o["path"] for o in manifest["outputs"]}
    e = summary["evaluation"]
    assert set(e["methods"]) == {"popularity", "category", "cooccurrence", "als"} and e["customers"] > 300
    best = max(f["ndcg_at_k"] for f in e["methods"].values())
    assert e["methods"][summary["method"]]["ndcg_at_k"] == best


@pytest.mark.parametrize("which", [0, 1, 2])
def test_every_reason_is_true_for_its_customer_and_every_filter_holds(shop, which) -> None:
    settings = shop["settings"]
    r = settings.ml.recommendations
    run_id = _run_ids(shop)[which]
    con = duckdb.connect(str(settings.warehouse.path), read_only=True)
    try:
        rows = _rows(con, run_id)
        as_of = rows[0]["as_of"]
        p = {"as_of": as_of}
        names = dict(con.execute("select product_id, name from raw.products").fetchall())
        active = dict(con.execute("select product_id, coalesce(active, false) from raw.products").fetchall())
        bought = {
            (c, i): last
            for c, i, last in con.execute(
                f"select contact_id, product_id, max(ordered_at)::date from ({LINES}) group by all", p
            ).fetchall()
        }
        buyers = dict(
            con.execute(
                f"select product_id, count(distinct contact_id) from ({LINES}) group by 1", p
            ).fetchall()
        )
        both = {
            (a, j): n
            for a, j, n in con.execute(
                f"""with b as (select distinct contact_id, product_id from ({LINES}))
                select x.product_id, y.product_id, count(*) from b x join b y using (contact_id)
                where x.product_id <> y.product_id group by all""",
                p,
            ).fetchall()
        }
        per_cat = con.execute(
            f"""select l.contact_id, p.category, count(*) from ({LINES}) l
            join raw.products p using (product_id) group by all""",
            p,
        ).fetchall()
        ranks = {
            pid: (recent, every, cat, pos)
            for pid, recent, every, cat, pos in con.execute(
                f"""with l as ({LINES}),
                counts as (
                    select p.product_id, p.category,
                           count(l.product_id) filter (
                               where l.ordered_at >= ($as_of - interval 90 day)::timestamp at time zone 'UTC'
                           ) as recent,
                           count(l.product_id) as every
                    from raw.products p left join l using (product_id) group by all
                )
                select product_id, recent, every, category,
                       row_number() over (partition by category order by recent desc, every desc, product_id)
                from counts""",
                p,
            ).fetchall()
        }
    finally:
        con.close()
    cats: dict[int, dict[str, int]] = {}
    for c, cat, n in per_cat:
        cats.setdefault(c, {})[cat] = n
    seen_kinds = set()
    for row in rows:
        c, j, kind, reason = row["contact_id"], row["product_id"], row["reason_kind"], row["reason"]
        seen_kinds.add(kind)
        assert active[j], row
        last = bought.get((c, j))
        assert last is None or (as_of - last).days > r.exclude_bought_days, row
        if kind == "bought_with":
            a = row["because_product_id"]
            assert (c, a) in bought, row  # they bought it themselves
            share = both.get((a, j), 0) / buyers[a]
            assert row["support"] == pytest.approx(share, abs=1e-12) and share > 0, row
            assert reason == f"bought with {names[a]} by {_percent(share)} of its buyers", row
            if row["method"] == "als":
                assert share >= 0.05, row
        elif kind == "category":
            cat = re.fullmatch(r"popular in (\w+), the category they buy most", reason).group(1)
            mine = cats[c]
            assert mine[cat] == max(mine.values()), row  # their most bought category (by lines)
            assert ranks[j][2] == cat and ranks[j][3] <= 10, (row, ranks[j])  # in its top 10
        else:
            assert kind == "popular", row
            m = re.fullmatch(
                r"one of the shop's (\d+) most bought products( in the last 90 days)?( \(no .*\))?", reason
            )
            assert m, row
            top, window, newcomer = int(m.group(1)), m.group(2), m.group(3)
            recent, every = ranks[j][0], ranks[j][1]
            if window:
                assert recent > 0 and sum(v[0] > recent for v in ranks.values()) < top, row
            else:
                assert sum(v[1] > every for v in ranks.values()) < top, row
            assert bool(newcomer) == (c not in cats), row
    if which:
        assert "bought_with" in seen_kinds


def test_the_card_is_in_the_registry_and_shown_by_the_cli(shop, monkeypatch) -> None:
    summary = shop["result"]["stages"]["recommend"]
    monkeypatch.chdir(shop["root"])
    out = CliRunner().invoke(cli, ["models", "show", "--model", "recommender", summary["model_version"]])
    assert out.exit_code == 0, out.output
    assert "# Recommender card" in out.output and "Evaluation by time" in out.output
    for method, f in summary["evaluation"]["methods"].items():
        assert f"{f['ndcg_at_k']:.4f}" in out.output, method
    card = json.loads(
        (
            shop["root"] / "var" / "registry" / "recommender" / summary["model_version"] / "card.json"
        ).read_text()
    )
    assert card["evaluation"] == summary["evaluation"] and card["method"] == summary["method"]
    missing = CliRunner().invoke(cli, ["models", "show", "--model", "nosuch"])
    assert missing.exit_code != 0 and "no model 'nosuch'" in missing.output


def test_recommend_show_prints_the_customers_latest_list(shop, monkeypatch) -> None:
    settings = shop["settings"]
    monkeypatch.chdir(shop["root"])
    [(contact,)] = query(settings, "select min(contact_id) from ml.recommendations")
    out = CliRunner().invoke(cli, ["recommend", "show", str(contact), "--json"])
    assert out.exit_code == 0, out.output
    shown = json.loads(out.output)
    latest = query(  # the check runs are not in audit.runs: they count as finished and are newer
        settings,
        "select product_id, reason from ml.recommendations where contact_id = ? and run_id = "
        "(select run_id from ml.recommendations group by 1 order by max(created_at) desc limit 1) "
        "order by rank",
        [contact],
    )
    assert [(r["product_id"], r["reason"]) for r in shown["recommendations"]] == latest
    text = CliRunner().invoke(cli, ["recommend", "show", str(contact)])
    assert text.exit_code == 0 and latest[0][1] in text.output
    unknown = CliRunner().invoke(cli, ["recommend", "show", "999999999"])
    assert unknown.exit_code == 2 and "no recommendations for contact 999999999" in unknown.output


def test_a_rerun_in_the_same_run_replaces_its_rows(shop) -> None:
    settings = shop["settings"]
    before = query(settings, "select count(*) from ml.recommendations where run_id = 'check-als'")[0][0]
    again = recommend_stage(settings, "check-als")
    after = query(settings, "select count(*) from ml.recommendations where run_id = 'check-als'")[0][0]
    assert after == again["recommended"] and before == shop["extra"]["als"]["recommended"] == after


def test_a_transactions_only_shop_is_told_it_cannot_be_recommended_for(tmp_path: Path) -> None:
    generate(GenerateSettings(customers=300, seed=3, profile="transactions"), out=tmp_path / "data")
    (tmp_path / "clarion.yaml").write_text(
        "warehouse:\n  path: var/warehouse.duckdb\n"
        "sources:\n  shop:\n    kind: files\n    path: data\n    transactions:\n"
        '      files: ["transactions*.csv"]\n'
        "      columns: {customer_id: contact_id, order_date: ordered_at, amount: total_amount}\n"
        "      currency: USD\n"
        "content:\n  briefs: no-briefs\n"
    )
    result = run_pipeline_in(tmp_path, stages=["extract", "transform", "recommend"])
    assert result["status"] == "completed"
    assert result["stages"]["recommend"]["recommended"] == 0
    assert result["stages"]["recommend"]["note"] == CANNOT
    settings = load_settings(tmp_path / "clarion.yaml", env={})
    assert query(settings, "select count(*) from ml.recommendations")[0][0] == 0


def test_what_the_rows_say_was_bought_together_is_mostly_the_planted_companions(shop) -> None:
    """The generator plants 2-3 companions per product (truth/product_companions.csv): the pairs the
    co-occurrence rows name (product bought, product recommended) are planted far above chance."""
    settings = shop["settings"]
    truth = shop["root"] / "var" / "crm" / "truth" / "product_companions.csv"
    [(stated, planted, pairs, products)] = query(
        settings,
        f"""
        with planted as (
            select product_id a, companion_product_id b from read_csv('{truth}')
            union select companion_product_id, product_id from read_csv('{truth}')
        )
        select count(*), count(*) filter (where exists (
                   select 1 from planted p where p.a = r.because_product_id and p.b = r.product_id)),
               (select count(*) from planted), (select count(*) from raw.products)
        from ml.recommendations r where run_id = 'check-cooccurrence' and reason_kind = 'bought_with'
        """,
    )
    chance = pairs / (products * (products - 1))  # a random (bought, recommended) pair is planted
    assert stated > 1000 and planted / stated > 5 * chance, (planted, stated, chance)


def test_the_chosen_method_predicts_the_future_purchases_better_than_popularity(shop) -> None:
    """Out of sample: the generator's truth holds what each customer buys after the export. The
    chosen method's top N (chosen on the time split, before that) hits more of those purchases than
    the popularity baseline's top N, computed here in SQL from the order lines."""
    settings = shop["settings"]
    r = settings.ml.recommendations
    summary = shop["result"]["stages"]["recommend"]
    truth = shop["root"] / "var" / "crm" / "truth"
    future = f"""
        select distinct o.contact_id, i.product_id from read_csv('{truth}/future_order_items.csv') i
        join read_csv('{truth}/future_orders.csv') o using (order_id)
    """
    [(chosen,)] = query(
        settings,
        f"select count(*) from ml.recommendations r join ({future}) f using (contact_id, product_id) "
        "where r.run_id = ?",
        [shop["result"]["run_id"]],
    )
    [(popular,)] = query(
        settings,
        f"""
        with l as ({LINES.replace("$as_of", "$1::date")}),
        counts as (
            select p.product_id,
                   count(l.product_id) filter (
                       where l.ordered_at >= ($1::date - interval 90 day)::timestamp at time zone 'UTC'
                   ) as recent,
                   count(l.product_id) as every
            from raw.products p left join l using (product_id) where p.active group by all
        ),
        recent_buys as (
            select distinct contact_id, product_id from l
            where l.ordered_at >= ($1::date - interval {r.exclude_bought_days} day)::timestamp
                  at time zone 'UTC'
        ),
        ranked as (
            select c.contact_id, k.product_id,
                   row_number() over (
                       partition by c.contact_id order by recent desc, every desc, k.product_id
                   ) n
            from marts.dim_customers c cross join counts k
            anti join recent_buys b on b.contact_id = c.contact_id and b.product_id = k.product_id
        )
        select count(*) from ranked join ({future}) f using (contact_id, product_id) where n <= $2
        """,
        [summary["as_of"], r.top_n],
    )
    assert summary["method"] != "popularity" and chosen > popular, (chosen, popular)


def _with_recommendations(settings, **update):
    r = settings.ml.recommendations.model_copy(update=update)
    return settings.model_copy(update={"ml": settings.ml.model_copy(update={"recommendations": r})})


@pytest.fixture
def shop_copy(shop, tmp_path: Path) -> dict:
    """The shop's warehouse and registry copied, for tests that run the stage again."""
    shutil.copytree(shop["root"] / "var", tmp_path / "var", ignore=shutil.ignore_patterns("crm"))
    (tmp_path / "clarion.yaml").write_text(CONFIG)
    return {"root": tmp_path, "settings": load_settings(tmp_path / "clarion.yaml", env={})}


def test_a_daily_run_reuses_the_evaluation_and_recommends_what_a_fresh_evaluation_would(shop_copy) -> None:
    """Within evaluate_every_days the stage reuses the promoted recommender's evaluation: the same
    figures and choice a fresh evaluation gives on the same data (computed here with
    evaluate_every_days 0), the same rows, and the card, summary and CLI say where it came from."""
    settings = shop_copy["settings"]
    first = recommend_stage(settings, "daily-1")  # the pipeline run's recommender is promoted: reused
    assert first["evaluation_reused"]["age_days"] == 0
    made_in = first["evaluation_reused"]["version"]
    second = recommend_stage(settings, "daily-2")  # reuses through daily-1's version: still made_in
    assert second["evaluation_reused"]["version"] == made_in != second["model_version"]
    fresh = recommend_stage(_with_recommendations(settings, evaluate_every_days=0), "fresh")
    assert "evaluation_reused" not in fresh
    assert second["evaluation"] == fresh["evaluation"]
    assert second["method"] == fresh["method"] and second["why"] == fresh["why"]
    rows = {
        run: query(
            settings,
            "select contact_id, rank, product_id, reason from ml.recommendations where run_id = ? "
            "order by contact_id, rank",
            [run],
        )
        for run in ("daily-2", "fresh")
    }
    assert len(rows["fresh"]) > 1000 and rows["daily-2"] == rows["fresh"]
    card = (shop_copy["root"] / "var/registry/recommender" / second["model_version"] / "card.md").read_text()
    assert f"Evaluation reused from recommender {made_in} (0 days old" in card
    assert f"Fitted on the order lines before {fresh['evaluation']['cut']}" in card
    from clarion.recommend import summary_text

    assert f"evaluation reused from recommender {made_in}" in summary_text(second)
    assert "reused" not in summary_text(fresh)
    helped = CliRunner().invoke(cli, ["recommend", "--help"])
    assert "reuses the promoted" in helped.output and "evaluate_every_days" in helped.output


def test_the_evaluation_is_redone_when_old_changed_by_settings_or_data_or_flagged(shop_copy) -> None:
    from clarion.recommend.stage import reused_evaluation
    from models.registry import Registry

    settings = shop_copy["settings"]
    reg = Registry(settings.var_dir / "registry", model="recommender")
    meta = reg.promoted().meta
    day = date.fromisoformat(meta["evaluation"]["end"])
    lines = meta["evaluation"]["order_lines"]
    assert lines == meta["data"]["order_lines"] > 1000  # measured on the day's lines
    every = settings.ml.recommendations.evaluate_every_days
    assert reused_evaluation(settings, day + timedelta(days=every - 1), lines) is not None
    assert reused_evaluation(settings, day + timedelta(days=every), lines) is None  # too old
    assert reused_evaluation(settings, day - timedelta(days=1), lines) is None  # a day before it
    assert reused_evaluation(settings, day, int(lines * 1.09)) is not None
    assert reused_evaluation(settings, day, int(lines * 1.11)) is None  # the lines grew by 11%
    assert reused_evaluation(settings, day, int(lines * 0.89)) is None
    assert reused_evaluation(_with_recommendations(settings, evaluate_every_days=0), day, lines) is None
    changed = [("eval_holdout_days", 30), ("exclude_bought_days", 90), ("als_factors", 32)]
    for name, value in [*changed, ("eval_max_customers", 500)]:
        assert reused_evaluation(_with_recommendations(settings, **{name: value}), day, lines) is None, name
    assert reused_evaluation(_with_recommendations(settings, top_n=3), day, lines) is not None
    promoted = reg.promoted()
    flagged = {**promoted.meta, "retrain_required": {"reason": "erasure"}}
    (promoted.path / "meta.json").write_text(json.dumps(flagged))
    assert reused_evaluation(settings, day, lines) is None
    again = recommend_stage(settings, "after-erasure")  # evaluates afresh, and the next run reuses that
    assert "evaluation_reused" not in again
    assert recommend_stage(settings, "next")["evaluation_reused"]["version"] == again["model_version"]


def test_a_large_shops_evaluation_draws_its_customers_and_says_so(shop_copy) -> None:
    """With more customers than eval_max_customers, the evaluation fits and measures every method
    on a random draw of that many (counted against the customers known to the stage, counted here
    in SQL); everyone is still recommended for, and the card and the summary say it was a sample."""
    settings = _with_recommendations(shop_copy["settings"], evaluate_every_days=0)
    whole = recommend_stage(settings, "whole")
    drawn = recommend_stage(_with_recommendations(settings, eval_max_customers=600), "drawn")
    [(known,)] = query(
        settings,
        f"select count(*) from (select contact_id from marts.dim_customers union "
        f"select contact_id from ({LINES.replace('$as_of', '$1::date')}) where contact_id is not null)",
        [drawn["as_of"]],
    )
    e = drawn["evaluation"]
    assert (e["sampled_customers"], e["all_customers"]) == (600, known)
    assert whole["evaluation"]["sampled_customers"] == whole["evaluation"]["all_customers"] == known
    assert 0 < e["customers"] < whole["evaluation"]["customers"] / 2
    assert drawn["recommended"] == whole["recommended"] and drawn["customers"] == whole["customers"]
    from clarion.recommend import summary_text

    said = f"a random sample of 600 of the {known:,} customers"
    cards = shop_copy["root"] / "var/registry/recommender"
    card = (cards / drawn["model_version"] / "card.md").read_text()
    assert f"The evaluation ran on {said}" in card and said in summary_text(drawn)
    whole_card = (cards / whole["model_version"] / "card.md").read_text()
    assert "random sample" not in whole_card and "random sample" not in summary_text(whole)
    se = e["methods"]["popularity"]["ndcg_se"]
    assert 0 < se < 0.1 and f"{e['methods']['popularity']['ndcg_at_k']:.4f} ± {se:.4f}" in card


def test_each_line_finds_its_customer_whether_or_not_it_is_a_target() -> None:
    """The customer index of the lines: ``targets`` itself when every line's contact is one (no
    sort of the lines), else the union; in both cases each line maps back to its own contact."""
    import numpy as np

    from clarion.recommend.stage import _customer_index

    targets = np.array([3, 8, 21, 40], dtype=np.int64)
    inside = np.array([21, 3, 3, 40, 8, 21], dtype=np.int64)
    contact_id, at = _customer_index(targets, inside)
    assert contact_id is targets and contact_id[at].tolist() == inside.tolist()
    outside = np.array([21, 2, 50, 8, 30, 2], dtype=np.int64)  # below, above and between the targets
    contact_id, at = _customer_index(targets, outside)
    assert contact_id.tolist() == [2, 3, 8, 21, 30, 40, 50]
    assert contact_id[at].tolist() == outside.tolist()
