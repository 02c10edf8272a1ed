"""What the models read from ``customer_features``, grouped into families a person recognises.

Consent columns are not model inputs (consent decides who may be contacted, not who will buy), nor
is the protected attribute (it is only used to report fairness), nor per-category shares (the
category mix is summarised by ``n_categories`` and ``top_category_share``). The shop's season
(``shop_season_index``, the same for every customer of a day) is not a forest input either: it
calibrates probabilities to the time of year (models.train.Calibrator), so reasons stay about
the person. The ``lifecycle`` family is not in the marts: a BG/NBD and a Gamma-Gamma model fitted
on each day's customers (models.clv) add it, as of that day.
"""

from __future__ import annotations

FAMILIES: dict[str, tuple[str, ...]] = {
    "recency": ("recency_days", "recency_vs_usual", "has_ordered"),
    "frequency": (
        "orders_lifetime",
        "orders_30d",
        "orders_90d",
        "orders_180d",
        "orders_365d",
        "orders_decayed_90d",
    ),
    "monetary": (
        "spend_lifetime_eur",
        "spend_90d_eur",
        "spend_180d_eur",
        "spend_prior_180d_eur",
        "spend_365d_eur",
        "avg_order_value_eur",
    ),
    "rhythm": ("mean_gap_days", "recent_gap_days", "gap_trend_ratio"),
    "seasonality": ("orders_same_window_last_year",),
    "lifecycle": ("p_alive", "expected_orders_horizon", "expected_order_value_eur"),
    "tenure": ("tenure_days", "first_order_days"),
    "assortment": ("n_categories", "top_category_share"),
    "price": ("discount_share", "discount_share_180d", "discount_share_change_180d"),
    "returns": ("return_rate",),
    "delivery": ("delivery_problems_180d", "delivery_problem_share_180d"),
    "engagement": (
        "email_sends_60d",
        "open_rate_60d",
        "open_rate_prior_120d",
        "open_rate_change",
        "click_rate_60d",
        "click_rate_prior_120d",
        "click_rate_change",
        "days_since_last_open",
        "unsubscribed",
    ),
    "support": (
        "tickets_90d",
        "negative_tickets_90d",
        "negative_tickets_365d",
        "avg_satisfaction_365d",
    ),
}

FEATURES: tuple[str, ...] = tuple(f for family in FAMILIES.values() for f in family)
FAMILY_OF: dict[str, str] = {f: family for family, fs in FAMILIES.items() for f in fs}
LIFECYCLE = FAMILIES["lifecycle"]

# columns reasons may quote beside the model's features (never model inputs themselves); the voc
# complaint figures name the topic a customer complains about most (the names: Wording.topics)
CONTEXT = (
    "purchase_days",
    "email_sends_prior_120d",
    "tickets_365d",
    "complaints_90d",
    "top_complaint_topic_count_90d",
    "top_complaint_topic_id_90d",
)
TOPIC_ID, TOPIC_NAME = "top_complaint_topic_id_90d", "top_complaint_topic_90d"  # the name: text, not a figure
SEASON = "shop_season_index"  # the calibrator's covariate

# the synthetic CRM's planted churn drivers and the feature family that should reveal each
DRIVER_FAMILY = {
    "engagement_drop": "engagement",
    "negative_support": "support",
    "delivery_problems": "delivery",
    "price_sensitivity": "price",
}

# the simple baseline every model must beat: recency and frequency alone
BASELINE_FEATURES = ("recency_days", "orders_365d", "orders_lifetime")
