"""The brand adapter's card in the model registry (var/registry/content_adapter/vNNNN/card.md), laid out
as the other cards: intended use, data, training, evaluation against the base model, limitations.
Counts, hashes and settings only: no copy text, no prompt.
"""

from __future__ import annotations

from typing import Any


def card_markdown(meta: dict[str, Any]) -> str:
    d, t, e, g, p = meta["data"], meta["training"], meta["evaluation"], meta["gate"], meta["params"]
    by = d["by_source"]
    before, after = e["before"], e["after"]
    rows = [
        f"| {slot} | {before['per_slot'].get(slot, {}).get('usable_rate', 0):.1%} | "
        f"{after['per_slot'].get(slot, {}).get('usable_rate', 0):.1%} |"
        for slot in sorted(set(before["per_slot"]) | set(after["per_slot"]))
    ]
    return "\n".join(
        [
            f"# Brand adapter: {meta['version']}",
            "",
            "## Intended use",
            f"Merged into {meta['base_model']} (weights {meta['base_weights_sha256'][:12]}) when drafting",
            "campaign copy, so the slots read like the shop's approved copy. Every draft still passes the",
            "guardrails and waits for a person's approval. Not for any other model's weights.",
            "",
            "## Data",
            f"{d['examples']} examples (slot prompt -> approved text): {by['approved']} from approved",
            f"drafts, {by['edit']} from marketers' edits, {by.get('checked', 0)} brand-corpus seed lines "
            "answered by a candidate of",
            f"the base model that passed every check, {by['corpus']} brand-corpus line pairs "
            f"({d['corpus_themes']} themes).",
            f"Per slot: {d['by_slot']}. sha256 of the examples: {d['examples_sha256']}.",
            "",
            "## Training",
            f"LoRA r={p['rank']}, alpha={p['alpha']}, dropout={p['dropout']}, "
            f"on {', '.join(p['target_modules'])} of the upper {p['upper_layers']:.0%} of the layers;",
            f"learning rate {p['learning_rate']}, batch {p['batch_size']}, {p['epochs']} epoch(s), "
            f"seed {p['seed']}, autocast {p.get('autocast') or 'none'}:",
            f"{t['steps']} steps in {t['seconds']} s, loss {t['loss_first']} -> {t['loss_last']}.",
            "",
            "## Evaluation on held-out briefs",
            f"Held out: {', '.join(e['held_out'])} (no training example came from their drafts or seeds).",
            f"Drafted as `clarion content` does ({e['draft_params']['candidates']} candidates per slot and",
            f"variant, seed {e['draft_params']['seed']}), with the base model and with the adapter.",
            "",
            "| | base | adapter |",
            "|---|---:|---:|",
            f"| usable-candidate rate | {before['usable_rate']:.1%} | {after['usable_rate']:.1%} |",
            *rows,
            f"| distinct usable candidates | {before.get('distinct', '-')} | {after.get('distinct', '-')} |",
            f"| guardrail findings | {before['findings']} | {after['findings']} |",
            "",
            f"Gate: {'promoted' if g['passed'] else 'not promoted'}: {g['reason']}.",
            "",
            "## Limitations",
            "A few hundred examples teach wording, not facts: offers still come from the brief's",
            "templates. The held-out briefs are few, so a small rise can be chance; the gate only keeps",
            "an adapter that does not add guardrail findings.",
            "",
        ]
    )
