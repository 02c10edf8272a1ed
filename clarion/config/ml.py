"""The settings of the learning stages beside the churn model: product recommendations
(`ml.recommendations`, `clarion recommend`) and voice of the customer from support tickets
(`ml.voc`, `clarion voc`)."""

from __future__ import annotations

import string
from typing import Literal

from pydantic import Field, field_validator, model_validator

from clarion.config.base import Section


class RecommendationSettings(Section):
    """Which products to put in front of each customer (`clarion recommend`)."""

    enabled: bool = Field(True, description="run the recommend stage in `clarion run`")
    top_n: int = Field(5, ge=1, le=50, description="products recommended per customer")
    method: Literal["auto", "cooccurrence", "als", "category", "popularity"] = Field(
        "auto",
        description="the recommender: item-item co-occurrence, implicit ALS, popular in the customer's "
        "favourite category, or popularity; auto takes the best NDCG@10 of the time-split evaluation",
    )
    exclude_bought_days: int = Field(
        180, ge=0, description="a product the customer bought within this many days is not recommended"
    )
    eval_holdout_days: int = Field(
        60, ge=7, le=365, description="the evaluation fits before (latest order - this) and measures after"
    )
    eval_max_customers: int = Field(
        200_000,
        ge=0,
        description="the time-split evaluation draws at most this many customers at random (seeded) and "
        "fits and measures every method on them alone; fitting ALS costs time in proportion to the "
        "customers (80 s of a 120 s evaluation at a million). 0: every customer",
    )
    evaluate_every_days: int = Field(
        7,
        ge=0,
        le=365,
        description="the time-split evaluation (every method fitted and measured, most of the stage's time "
        "on a large shop) is reused from the promoted recommender until it is this many days old or the "
        "order lines changed by more than 10%; the chosen method is refitted on every run's data. "
        "0: evaluate on every run",
    )
    als_factors: int = Field(64, ge=2, le=512, description="implicit ALS: latent factors")
    als_iterations: int = Field(15, ge=1, le=200, description="implicit ALS: alternating passes")
    num_threads: int = Field(0, ge=0, description="implicit ALS threads (0: every core)")
    product_url: str = Field(
        "https://shop.example.com/products/{sku}",
        pattern=r"^https://[^\s]+$",
        description="the link a brief's {recommended_product_url} is filled with at export: the products "
        "table has no url column, so it is built from this pattern with {sku} and/or {product_id}",
    )

    @field_validator("product_url")
    @classmethod
    def _url(cls, v: str) -> str:
        """Only {sku} and {product_id} may be filled in: anything else would stay a brace in the copy."""
        names = {f for _, f, _, _ in string.Formatter().parse(v) if f is not None}
        if names - {"sku", "product_id"} or not names:
            raise ValueError(
                f"product_url {v!r} must name the product with {{sku}} and/or {{product_id}} and nothing "
                "else, e.g. https://shop.example.com/products/{sku}"
            )
        return v


class VocSettings(Section):
    """Voice of the customer: topics and sentiment of support tickets (`clarion voc`)."""

    enabled: bool = Field(True, description="run the voc stage in `clarion run`")
    k_min: int = Field(4, ge=2, le=50, description="fewest topics tried")
    k_max: int = Field(12, ge=2, le=80, description="most topics tried; k is the best silhouette between")
    min_customers_per_phrase: int = Field(
        5, ge=2, description="an example phrase is shown only when this many distinct customers wrote it"
    )
    reselect_every_days: int = Field(
        7,
        ge=0,
        le=365,
        description="k (the number of topics, by silhouette over k_min..k_max) and C (the sentiment "
        "classifier's regularisation, by cross-validation) are chosen again when the promoted voc "
        "version's choice is this many days old, the ticket count changed by more than 10% or k_min/k_max "
        "changed; in between, topics and classifier are refitted on every ticket at the chosen k and C. "
        "0: choose on every run",
    )

    @model_validator(mode="after")
    def _k_range(self) -> VocSettings:
        if self.k_min > self.k_max:
            raise ValueError(
                f"ml.voc.k_min ({self.k_min}) is above ml.voc.k_max ({self.k_max}): "
                "set k_min <= k_max (the topics tried are k_min..k_max)"
            )
        return self


class MlSettings(Section):
    recommendations: RecommendationSettings = RecommendationSettings()
    voc: VocSettings = VocSettings()
