"""Product recommendations (`clarion recommend`, the `recommend` stage of `clarion run`): each
customer's top products with a reason that is a fact about their own purchases.

Modules: ``stage`` (read the warehouse, evaluate by time, choose, recommend, write
``ml.recommendations``, register the recommender card) and ``views`` (the card, summaries, one
customer's list). The methods and the evaluation are pure, in models/recommend.py and
models/recommend_evaluation.py.
"""

from clarion.recommend.stage import CANNOT, run
from clarion.recommend.views import customer, customer_text, latest_for, summary_markdown, summary_text

__all__ = ["CANNOT", "customer", "customer_text", "latest_for", "run", "summary_markdown", "summary_text"]
