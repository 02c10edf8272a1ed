"""Voice of the customer (`clarion voc`, the `voc` stage of `clarion run`): what customers write
to support, as topics and sentiment, from tickets scrubbed of personal data before embedding.

Modules: ``scrub`` (names, e-mails, phones, order numbers out of the text), ``stage`` (read,
embed with a cache, cluster, classify, write ``ml.ticket_topics`` / ``ml.voc_topics`` /
``ml.voc_trend``), ``card`` (the "voc" card in the registry), ``views`` (what the CLI, the flow
and the report show). The clustering, naming and the classifier are pure, in models/voc.py.
"""

from clarion.voc.stage import VocError, run
from clarion.voc.views import summary_markdown, summary_text, topics, topics_text

__all__ = ["VocError", "run", "summary_markdown", "summary_text", "topics", "topics_text"]
