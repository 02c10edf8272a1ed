"""Human oversight of what Clarion drafts and decides (docs/privacy.md, "Human oversight").

* ``tiers``: a campaign brief's ``risk_tier`` says how much human approval its content needs
  before export (low: the brief's own copy goes out after its checks, approved by policy;
  standard: one approver; high: two approvals by distinct principals and never to customers
  flagged vulnerable by ``oversight.vulnerable_rule``). Approvals are counted by *principal* (the
  operating-system account, or the API's authenticated principal), not by the name typed with
  ``--by``, so one person cannot be two approvers.
* ``rates``: how often people override what was generated or decided automatically (drafts
  edited or rejected; policy approvals a person reversed), per campaign, brief version, content
  model and scoring model version, with a trend over runs. Read by `clarion oversight`, the report
  and the model card.
"""

from __future__ import annotations

from clarion.oversight.rates import card_figures, summary
from clarion.oversight.tiers import (
    POLICY,
    VULNERABLE,
    OversightError,
    approve_by_policy,
    os_principal,
    unmet,
    vulnerable_ids,
)

__all__ = [
    "POLICY",
    "VULNERABLE",
    "OversightError",
    "approve_by_policy",
    "card_figures",
    "os_principal",
    "summary",
    "unmet",
    "vulnerable_ids",
]
