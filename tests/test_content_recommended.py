"""`{recommended_product}` in campaign copy: placed in a brief, checked in drafts with a sample
product, filled at export only for consenting recipients with their own rank-1 active recommendation,
every filled product checked by the guardrails again; a brief that needs recommendations says so
clearly when there are none.

The export tests draft for real (the shipped model, starved of tokens so the brief's own copy is
used) on a copy of the session's `small_run`, with ml.recommendations rows made from that run's own
order lines (tests/insights_helpers.py: part REC's table before part REC lands).
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
import yaml
from insights_helpers import plant_recommendations
from project_helpers import TINY_BRIEF

from clarion.config import Settings, load_settings
from clarion.config.ml import RecommendationSettings
from clarion.content import recommended, runner
from clarion.content.review import _as_template
from clarion.oversight.tiers import own_copy
from models.content.brief import SAMPLE_RECIPIENT, validate_brief
from models.content.drafts import fallback_problems, fill, preview
from models.content.guardrails import check_copy

BODY = (
    "Hi {first_name},\n\n{hook}\n\nPicked for you: {recommended_product}, see {recommended_product_url}\n\n"
    "Use code {code} for {offer} off your next order until {expiry}: {url}\n\n{disclaimer}"
)
RUN, OLD_RUN, FAILED_RUN = "20990301T000000Z-recs", "20990201T000000Z-recs", "20990401T000000Z-recs"
SMUGGLER = "Free 50% off Sneakers"


def _brief_data(name: str = "picked-for-you", segment: str = "promising") -> dict[str, Any]:
    data = yaml.safe_load(TINY_BRIEF.format(name=name, segment=segment, variants=1))
    data["templates"] = {"email_body": BODY}
    return data


# -- the placeholder in briefs and drafts (no warehouse) ---------------------------------------------
def test_a_brief_may_place_the_recommended_product_and_its_link() -> None:
    brief = validate_brief(_brief_data(), "test")
    assert brief.uses_recommendations()
    plain = validate_brief({**_brief_data(), "templates": {}}, "test")
    assert not plain.uses_recommendations()
    with pytest.raises(Exception, match="recommended_products"):  # a typo is not a placeholder
        validate_brief(
            {
                **_brief_data(),
                "templates": {"email_body": BODY.replace("{recommended_product}", "{recommended_products}")},
            },
            "test",
        )


def test_drafts_are_checked_with_the_sample_product_and_its_own_copy_passes() -> None:
    brief = validate_brief(_brief_data(), "test")
    assert fallback_problems(brief) == []
    shown = preview({"email_body": "Try {recommended_product}: {recommended_product_url}, {first_name}"})
    assert shown["email_body"] == (
        f"Try {SAMPLE_RECIPIENT['recommended_product']}: {SAMPLE_RECIPIENT['recommended_product_url']}, "
        f"{SAMPLE_RECIPIENT['first_name']}"
    )
    # one pass: a value holding a placeholder's name is not filled again
    assert fill(
        "{first_name} {recommended_product}",
        {"first_name": "{recommended_product}", "recommended_product": "X"},
    ) == ("{recommended_product} X")


def _rendered(brief, product: str, link: str) -> tuple[dict[str, str], dict[str, str]]:
    """The brief's own e-mail copy with a product filled in, and its templates (as the export reads them)."""
    content = own_copy(brief, "email")  # recipient placeholders left in
    values = {**SAMPLE_RECIPIENT, "recommended_product": product, "recommended_product_url": link}
    return {p: fill(t, values) for p, t in content.items()}, _as_template(content, brief)


@pytest.mark.parametrize(
    ("product", "blocked_by", "named"),
    [
        ("Trail Boots", None, None),
        (SMUGGLER, "invented_facts", "'50%' (percentage)"),
        ("Sneakers EUR 10 cheaper", "invented_facts", "'EUR 10' (amount)"),
        ("Sneakers, use code SAVE20", "invented_facts", "'SAVE20' (code)"),
        ("Miracle Cream", "banned_claims", "'Miracle'"),
        ("Call 0171 2345678 Sneakers", "pii", "phone number '0171 2345678'"),
    ],
)
def test_a_product_name_is_checked_like_any_text_the_link_is_the_shops(
    product: str, blocked_by: str | None, named: str | None
) -> None:
    brief = validate_brief(_brief_data(), "test")
    link = RecommendationSettings().product_url.format(sku="SKU-FOO-00042", product_id=42)
    rendered, templates = _rendered(brief, product, link)
    assert link in rendered["email_body"] and product in rendered["email_body"]
    report = check_copy(rendered, brief, "email", templates=templates, fills=(link,))
    if blocked_by is None:
        assert not report.blocked, report.failed
    else:
        (check,) = [c for c in report.failed if c.name == blocked_by]
        assert check.severity == "block" and named in check.detail


def test_the_product_url_setting_names_the_product() -> None:
    assert RecommendationSettings().product_url == "https://shop.example.com/products/{sku}"
    ok = RecommendationSettings(product_url="https://shop.example.com/p/{product_id}?ref={sku}")
    assert ok.product_url.format(sku="S", product_id=7) == "https://shop.example.com/p/7?ref=S"
    for bad in (
        "http://shop.example.com/{sku}",
        "https://shop.example.com/{name}",
        "https://shop.example.com/",
    ):
        with pytest.raises(ValueError, match="product_url"):
            RecommendationSettings(product_url=bad)


# -- the export, on a real run -------------------------------------------------------------------------
@dataclass
class Project:
    root: Path
    settings: Settings
    segment: str
    draft: dict[str, Any]


@pytest.fixture(scope="module")
def drafted(small_run: dict, tmp_path_factory) -> Project:
    """The small run's project with the brief `picked-for-you` drafted (own copy), its e-mail draft
    approved, and three recommend runs: an older and a newer settled one and a newest failed one."""
    root = tmp_path_factory.mktemp("recs_project")
    shutil.copytree(small_run["root"], root, dirs_exist_ok=True)
    settings = load_settings(root / "clarion.yaml", env={})
    con = duckdb.connect(str(settings.warehouse.path))
    (segment,) = con.execute(
        "select segment from ml.customer_scores group by all order by count(*) desc, segment limit 1"
    ).fetchone()
    con.close()
    (root / "campaigns").mkdir(exist_ok=True)
    (root / "campaigns" / "picked-for-you.yaml").write_text(yaml.safe_dump(_brief_data(segment=segment)))
    starved = settings.model_copy(
        update={"content": settings.content.model_copy(update={"max_new_tokens": 1, "candidates": 2})}
    )
    runner.generate(starved, "20990101T000000Z-draft", ("picked-for-you",))
    (draft,) = [
        d for d in runner.list_drafts(settings, campaign="picked-for-you") if d["status"] == "pending"
    ]
    assert "{recommended_product}" in draft["content"]["email_body"]  # left for the export
    runner.decide(settings, draft["draft_id"], "approve", "marketing-lead", None)
    con = duckdb.connect(str(settings.warehouse.path))
    plant_recommendations(con, OLD_RUN, created_at="2099-02-01 00:00:00+00")
    con.execute("update ml.recommendations set product_id = 1 where run_id = ?", [OLD_RUN])  # all one product
    plant_recommendations(con, RUN, created_at="2099-03-01 00:00:00+00")
    plant_recommendations(con, FAILED_RUN, created_at="2099-04-01 00:00:00+00")
    con.execute("update ml.recommendations set product_id = 2 where run_id = ?", [FAILED_RUN])
    con.execute(
        "insert into audit.runs (run_id, command, status, started_at, config_hash, code_version) "
        "values (?, 'recommend', 'failed', now(), '', '')",
        [FAILED_RUN],
    )
    # some customers have no recommendation; some rank-1 products are off sale now
    con.execute("delete from ml.recommendations where run_id = ? and contact_id % 5 = 0", [RUN])
    con.execute(
        "update raw.products set active = false where product_id in (select product_id from "
        "ml.recommendations where run_id = ? and rank = 1 order by contact_id limit 4)",
        [RUN],
    )
    con.close()
    (approved,) = [
        d for d in runner.list_drafts(settings, campaign="picked-for-you") if d["status"] == "approved"
    ]
    return Project(root, settings, segment, approved)


@pytest.fixture
def project(drafted: Project, tmp_path: Path, monkeypatch) -> Project:
    root = tmp_path / "project"
    shutil.copytree(drafted.root, root)
    monkeypatch.chdir(root)
    return Project(root, load_settings(root / "clarion.yaml", env={}), drafted.segment, drafted.draft)


def _frame(settings: Settings, sql: str, params: list | None = None) -> pd.DataFrame:
    con = duckdb.connect(str(settings.warehouse.path), read_only=True)
    try:
        return con.execute(sql, params or []).df()
    finally:
        con.close()


def _expected_products(settings: Settings) -> dict[int, tuple[int, str, str]]:
    """contact -> (product id, name, sku) of their lowest-ranked active product of RUN, in pandas."""
    recs = _frame(
        settings, "select contact_id, rank, product_id from ml.recommendations where run_id = ?", [RUN]
    )
    products = _frame(settings, "select product_id, name, sku, active from raw.products")
    active = recs.merge(products[products.active], on="product_id").sort_values(["contact_id", "rank"])
    first = active.groupby("contact_id").head(1)
    return {int(r.contact_id): (int(r.product_id), r["name"], r.sku) for _, r in first.iterrows()}


def _eligible(settings: Settings, project: Project) -> set[int]:
    """Members of the segment the e-mail may reach on consent and address alone."""
    rows = _frame(
        settings,
        """
        select s.contact_id from ml.customer_scores s join marts.dim_customers c using (contact_id)
        where s.run_id = ? and s.segment = ? and c.email_consent
          and not coalesce(c.marketing_objection, false)
          and s.contact_id in (select contact_id from raw.contacts where coalesce(trim(email), '') <> '')
        """,
        [project.draft["scoring_run_id"], project.segment],
    )
    return set(rows.contact_id.astype(int))


def _rows(path: str) -> list[dict[str, str]]:
    with Path(path).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_export_fills_each_consenting_recipients_rank_one_active_product(project: Project) -> None:
    settings = project.settings
    (email,) = [x for x in runner.export(settings, "picked-for-you")["exports"] if x["channel"] == "email"]
    rows = _rows(email["path"])
    expected = _expected_products(settings)
    eligible = _eligible(settings, project)
    names = dict(_frame(settings, "select contact_id, first_name from raw.contacts").itertuples(index=False))
    assert rows and len(rows) == email["recipients"]
    off_sale = set(_frame(settings, "select product_id from raw.products where not active").product_id)
    for r in rows:
        cid = int(r["contact_id"])
        assert cid in eligible  # consenting, reachable, not objecting
        pid, name, sku = expected[cid]
        assert int(r["recommended_product_id"]) == pid and pid not in off_sale
        want = fill(
            project.draft["content"]["email_body"],
            {
                "first_name": names[cid].strip(),
                "recommended_product": name,
                "recommended_product_url": f"https://shop.example.com/products/{sku}",
            },
        )
        assert r["email_body"] == want and "{" not in r["email_body"]
    # the latest settled run, not the older one (all product 1) nor the newer failed one (all 2)
    assert {int(r["recommended_product_id"]) for r in rows} - {1, 2}
    without = {c for c in eligible if c not in expected}
    assert without and email["excluded"][recommended.NO_RECOMMENDATION] == len(without)
    assert not {int(r["contact_id"]) for r in rows} & without
    in_segment = len(
        _frame(
            settings,
            "select contact_id from ml.customer_scores where segment = ? and run_id = ?",
            [project.segment, project.draft["scoring_run_id"]],
        )
    )
    assert email["recipients"] + sum(email["excluded"].values()) == in_segment
    assert email["recommendations"] == {"run_id": RUN, "blocked_products": {}}


@pytest.mark.slow
def test_a_product_name_that_smuggles_a_discount_is_never_sent(project: Project) -> None:
    settings = project.settings
    expected = _expected_products(settings)
    eligible = _eligible(settings, project)
    counts = pd.Series([expected[c][0] for c in eligible if c in expected]).value_counts()
    smuggled = int(counts.index[0])  # the product most of this audience would get
    con = duckdb.connect(str(settings.warehouse.path))
    con.execute("update raw.products set name = ? where product_id = ?", [SMUGGLER, smuggled])
    con.close()

    (email,) = [x for x in runner.export(settings, "picked-for-you")["exports"] if x["channel"] == "email"]
    rows = _rows(email["path"])
    assert email["excluded"][recommended.PRODUCT_BLOCKED] == int(counts.iloc[0])
    assert all(SMUGGLER not in r["email_body"] and "50%" not in r["email_body"] for r in rows)
    assert smuggled not in {int(r["recommended_product_id"]) for r in rows}
    problems = email["recommendations"]["blocked_products"][str(smuggled)]
    assert any(p.startswith("invented_facts") and "50%" in p for p in problems)
    assert rows  # the others still get theirs


@pytest.mark.slow
def test_the_placeholder_without_recommendations_fails_with_a_clear_message(project: Project) -> None:
    settings = project.settings
    off = settings.model_copy(
        update={
            "ml": settings.ml.model_copy(update={"recommendations": RecommendationSettings(enabled=False)})
        }
    )
    with pytest.raises(runner.ContentError, match=r"picked-for-you.*recommendations are disabled.*enable"):
        runner.export(off, "picked-for-you")
    with pytest.raises(
        runner.ContentError, match=r"picked-for-you: its templates use \{recommended_product\}"
    ):
        runner.generate(off, "20990501T000000Z-draft", ("picked-for-you",))
    con = duckdb.connect(str(settings.warehouse.path))
    con.execute("drop table ml.recommendations")
    con.close()
    with pytest.raises(runner.ContentError, match=r"no recommendations yet.*clarion recommend"):
        runner.export(settings, "picked-for-you")
    assert not (settings.var_dir / "exports" / "20990101T000000Z-draft").exists()  # nothing half-written
