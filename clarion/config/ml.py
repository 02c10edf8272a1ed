"""The settings of the learning stages beside the churn model: product recommendations
(`ml.recommendations`, `clarion recommend`) and voice of the customer from support tickets
(`ml.voc`, `clarion voc`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

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
    als_factors: int = Field(64, ge=2, le=512, description="implicit ALS: latent factors")
    als_iterations: int = Field(15, ge=1, le=200, description="implicit ALS: alternating passes")
    num_threads: int = Field(0, ge=0, description="implicit ALS threads (0: every core)")


class VocSettings(Section):
    """Voice of the customer: topics and sentiment of support tickets (`clarion voc`)."""

    enabled: bool = Field(True, description="run the voc stage in `clarion run`")
    k_min: int = Field(4, ge=2, le=50, description="fewest topics tried")
    k_max: int = Field(12, ge=2, le=80, description="most topics tried; k is the best silhouette between")
    min_customers_per_phrase: int = Field(
        5, ge=2, description="an example phrase is shown only when this many distinct customers wrote it"
    )


class MlSettings(Section):
    recommendations: RecommendationSettings = RecommendationSettings()
    voc: VocSettings = VocSettings()
