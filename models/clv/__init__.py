"""Probabilistic customer-base models: BG/NBD (who is still a customer, how often they will buy) and
Gamma-Gamma (how much they spend per order).

Both are fitted by maximum likelihood on a vectorised closed-form likelihood with an analytic gradient
(scipy's L-BFGS-B on log-parameters), so a snapshot of a million customers fits in seconds on two cores
without a probabilistic-programming stack. They are the "classic" baseline the churn model is compared
with, and their predictions are features of that model, each fitted as of one snapshot day.

Units: every duration is in days (floats). ``frequency`` is the number of *repeat* purchases (the first
purchase is not counted), ``recency`` is the time from the first to the last purchase, ``T`` is the time
from the first purchase to the snapshot day.

References: Fader, Hardie & Lee (2005), "Counting your customers the easy way: an alternative to the
Pareto/NBD model", Marketing Science 24(2); Fader & Hardie (2008), "Computing P(alive) using the BG/NBD
model"; Fader & Hardie (2013), "Overcoming the BG/NBD model's #NUM! error problem"; Fader, Hardie & Lee
(2005), "RFM and CLV: using iso-value curves for customer base analysis", JMR 42(4), and Fader & Hardie
(2013), "The Gamma-Gamma model of monetary value".

The package: ``base`` (inputs and their checks, the optimiser, persistence), ``bgnbd`` (BetaGeo) and
``gamma_gamma`` (GammaGamma).
"""

from models.clv.base import FORMAT, ConvergenceWarning
from models.clv.bgnbd import BetaGeo
from models.clv.gamma_gamma import GammaGamma

__all__ = ["FORMAT", "BetaGeo", "ConvergenceWarning", "GammaGamma"]
