"""`{recommended_product}` in campaign copy: each recipient's own product, filled at export.

A brief's templates may carry ``{recommended_product}`` (the product's name) and
``{recommended_product_url}`` (its link, from the setting ``ml.recommendations.product_url``: the
products table has no url column). Drafts keep the placeholders and are checked with a sample
product; the export fills them per consenting recipient from their rank-1 *active* row of the latest
``ml.recommendations`` run (the recommend stage, part REC of issue 19), and checks every product it
fills in with the guardrails again, with its real name: a catalogue name is not the brief's fact, so
"Free 50% off Sneakers" is caught as an invented offer. A recipient without a recommendation, or
whose product fails the checks, gets nothing: they are excluded with the reason counted, before the
arms are drawn (so the holdout is drawn from the same people as the treatment).

The reads of ``ml.recommendations`` are the small functions below, so a change of its schema is a
change here only.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from clarion.config import Settings
from clarion.content.store import ContentError
from clarion.recommend.views import PRODUCTS_NOW, latest_run
from models.content.brief import RECOMMENDATION_FIELDS, SAMPLE_RECIPIENT, Brief
from models.content.drafts import fill
from models.content.guardrails import check_copy

NO_RECOMMENDATION = "no recommendation"
PRODUCT_BLOCKED = "recommended product fails the guardrails"


@dataclass(frozen=True)
class Product:
    product_id: int
    sku: str
    name: str
    rank: int


def uses(content: dict[str, str]) -> bool:
    """Whether a draft's copy asks for the recipient's recommended product."""
    return any("{" + f + "}" in text for text in content.values() for f in RECOMMENDATION_FIELDS)


def top_active(con: duckdb.DuckDBPyConnection, run_id: str, contact_ids: list[int]) -> dict[int, Product]:
    """Per contact, their best-ranked recommendation of ``run_id`` whose product is active in the
    catalogue now (raw.products, latest version): a product taken off sale since the recommend run
    is skipped, not sent."""
    rows = con.execute(
        f"""
        with products as ({PRODUCTS_NOW})
        select r.contact_id, r.product_id, p.sku, p.name, r.rank
        from ml.recommendations r join products p using (product_id)
        where r.run_id = ? and p.active and r.contact_id in (select unnest(?::bigint[]))
        qualify row_number() over (partition by r.contact_id order by r.rank, r.product_id) = 1
        """,
        [run_id, contact_ids],
    ).fetchall()
    return {c: Product(int(pid), sku or "", name, int(rank)) for c, pid, sku, name, rank in rows}


def url(settings: Settings, product: Product) -> str:
    return settings.ml.recommendations.product_url.format(sku=product.sku, product_id=product.product_id)


def values(settings: Settings, product: Product | None) -> dict[str, str]:
    """The recommendation placeholders' text for one recipient (empty without a product)."""
    if product is None:
        return {}
    return {"recommended_product": product.name, "recommended_product_url": url(settings, product)}


def require(settings: Settings, con: duckdb.DuckDBPyConnection, campaign: str) -> str:
    """The recommend run to fill from, or a ContentError saying why the campaign cannot be sent."""
    if not settings.ml.recommendations.enabled:
        raise ContentError(
            f"campaign {campaign}: its approved copy uses {{recommended_product}} but recommendations are "
            "disabled (ml.recommendations.enabled: false in clarion.yaml): enable them and run "
            "`clarion recommend`, or draft the campaign from a brief without the placeholder"
        )
    run_id = latest_run(con)
    if run_id is None:
        raise ContentError(
            f"campaign {campaign}: its approved copy uses {{recommended_product}} but there are no "
            "recommendations yet (ml.recommendations is empty): run `clarion recommend` (or `clarion run`), "
            "then export again"
        )
    return run_id


def check_brief(settings: Settings, brief: Brief) -> None:
    """At drafting: a brief that asks for a recommended product while recommendations are off
    would draft copy that can never be sent; say so before spending the model's time."""
    if brief.uses_recommendations() and not settings.ml.recommendations.enabled:
        raise ContentError(
            f"campaign {brief.name}: its templates use {{recommended_product}} but recommendations are "
            "disabled (ml.recommendations.enabled: false in clarion.yaml): enable them, or remove the "
            "placeholder from the brief's templates"
        )


class FillChecks:
    """The guardrails on a draft with a real product filled in, once per (draft, product): the
    copy differs between recipients only by their first name (which the checks take out as the
    sample) and their product."""

    def __init__(self, settings: Settings, brief: Brief, channel: str, templates: dict[str, dict[str, str]]):
        self.settings, self.brief, self.channel, self.templates = settings, brief, channel, templates
        self._seen: dict[tuple[str, int], list[str]] = {}

    def problems(self, draft: dict, product: Product) -> list[str]:
        """The failed blocking checks of the draft's copy with ``product`` in it (empty: it may go)."""
        key = (draft["draft_id"], product.product_id)
        if key not in self._seen:
            filled = values(self.settings, product)
            rendered = {
                part: fill(text, {**SAMPLE_RECIPIENT, **filled}) for part, text in draft["content"].items()
            }
            report = check_copy(
                rendered,
                self.brief,
                self.channel,
                templates=self.templates[draft["draft_id"]],
                fills=(filled["recommended_product_url"],),
            )
            self._seen[key] = [f"{c.name}: {c.detail}" for c in report.failed if c.severity == "block"]
        return self._seen[key]

    def blocked(self) -> dict[str, list[str]]:
        """Per product id, what blocked it (for the export's summary: names and checks, no person)."""
        out: dict[str, list[str]] = {}
        for (_, pid), problems in self._seen.items():
            if problems:
                out.setdefault(str(pid), []).extend(p for p in problems if p not in out.get(str(pid), []))
        return out
