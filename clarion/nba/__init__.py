"""Next best action (`clarion nba`, the `nba` stage of `clarion run`): at most one message per
customer per run, among the active campaign briefs and "no action", by expected incremental value.

Modules: ``eligibility`` (the facts about each customer and the rules), ``value`` (measured uplift,
order values, offer costs), ``decide`` (the stage: arbitration and ``ml.next_best_action``),
``approvals`` (a person's approval of a high-risk campaign's audience), ``views`` (what the CLI and
the flow show). The arithmetic and the arbitration are pure, in models/nba.py.
"""

from clarion.nba.approvals import approve
from clarion.nba.decide import decide
from clarion.nba.eligibility import NbaError
from clarion.nba.views import decision, decision_text, summary_markdown, summary_text

__all__ = ["NbaError", "approve", "decide", "decision", "decision_text", "summary_markdown", "summary_text"]
