"""What `clarion drafts`, `clarion export` print: aggregates and the drafts' own copy, never recipients."""

from __future__ import annotations

from typing import Any


def _failed(d: dict[str, Any]) -> str:
    return ", ".join(f"{c['name']}({c['severity']})" for c in d["checks"] if not c["passed"]) or "-"


def drafts_text(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no drafts: `clarion content` writes them (after `clarion segment`)"
    lines = [
        f"{'draft':<12} {'campaign':<16} {'segment':<19} {'channel':<7} {'var':<3} {'status':<9} "
        f"{'source':<9} failed checks"
    ]
    for d in rows:
        source = "fallback" if d["fallback"] else "model"
        lines.append(
            f"{d['draft_id']:<12} {d['campaign']:<16} {d['segment']:<19} {d['channel']:<7} {d['variant']:<3} "
            f"{d['status']:<9} {source:<9} {_failed(d)}"
        )
    lines.append(
        "read one: clarion drafts show ID; decide: clarion approve ID --by NAME / clarion reject ID ..."
    )
    return "\n".join(lines)


def draft_text(d: dict[str, Any]) -> str:
    p = d["provenance"] or {}
    lines = [
        f"Draft {d['draft_id']}  {d['campaign']} / {d['segment']} / {d['channel']} variant {d['variant']}  "
        f"[{d['status']}]",
        f"  content sha256 {d['content_sha256']}",
        f"  ai_generated: {str(d['ai_generated']).lower()}"
        + ("  (the brief's own copy: the model's candidates did not pass)" if d["fallback"] else ""),
    ]
    for part, text in d["content"].items():
        lines.append(f"  --- {part} ---")
        lines += ["  " + line for line in text.splitlines()]
    lines.append("  checks:")
    for c in d["checks"]:
        mark = "ok  " if c["passed"] else ("FAIL" if c["severity"] == "block" else "warn")
        lines.append(f"    {mark} {c['name']:<15} {c['detail']}")
    model = p.get("model", {})
    lines.append("  provenance:")
    sha = str(model.get("weights_sha256"))[:16]
    if model.get("endpoint"):  # a model server shows no weights: the hash names endpoint and model
        lines.append(f"    model {model.get('name')} on the model server {model['endpoint']} (id {sha})")
    else:
        lines.append(f"    model {model.get('name')} (weights sha256 {sha})")
    tpl = p.get("prompt_template", {})
    lines.append(f"    prompt template {tpl.get('version')} ({str(tpl.get('sha256'))[:16]})")
    brief = p.get("brief", {})
    lines.append(f"    brief {brief.get('name')} ({str(brief.get('sha256'))[:16]})")
    lines.append(
        f"    run {p.get('run_id')}, segments of run {p.get('scoring_run_id')} as of {p.get('as_of')}"
    )
    gen = p.get("generation", {})
    lines.append(
        f"    seed {gen.get('seed')}, temperature {gen.get('temperature')}, top_p {gen.get('top_p')}, "
        f"{gen.get('candidates_per_slot')} candidates per slot, meaning >= {gen.get('min_meaning')}"
    )
    for name, slot in (p.get("slots") or {}).items():
        if slot["fallback"]:
            origin = "brief (fallback)"
        else:
            origin = f"model, meaning {slot['meaning']:.2f}"
            origin += f", score {slot['score']:.2f}" if slot.get("score") is not None else ""
        usable = slot.get("usable", slot.get("passing"))
        failed = ", ".join(f"{k} {v}" for k, v in sorted((slot.get("findings") or {}).items()))
        lines.append(
            f"    {name}: {origin}; {usable} of {slot['candidates']} candidates usable"
            + (f" (failed: {failed})" if failed else "")
        )
    for dec in d.get("decisions", []):
        lines.append(
            f"  {dec['decision']} by {dec['by']} via {dec['via']} at {dec['at']}"
            + (f": {dec['note']}" if dec["note"] else "")
        )
    return "\n".join(lines)


def export_text(result: dict[str, Any]) -> str:
    lines = []
    for e in result["exports"]:
        lines.append(
            f"{e['campaign']:<16} {e['channel']:<6} {e['recipients']:>8,} recipients  "
            f"{len(e['drafts_exported'])} approved draft(s)  -> {e['path']}"
        )
        for why, n in sorted(e["excluded"].items()):
            lines.append(f"    left out: {why:<40} {n:>8,}")
        for what, n in sorted(e.get("notes", {}).items()):
            lines.append(f"    note: {what:<44} {n:>8,}")
        if e.get("arms") and any(e["arms"].values()):
            arms = ", ".join(f"{arm.replace('_', ' ')} {n:,}" for arm, n in e["arms"].items())
            lines.append(f"    arms (content.assignments): {arms}")
        for did, why in e["drafts_held"].items():
            lines.append(f"    not exported: {did} ({why})")
    return "\n".join(lines) or "nothing exported"


def tune_text(result: dict[str, Any]) -> str:
    """`clarion content tune` in a few lines: data, training, before/after, the decision."""
    by = result["examples"]["by_source"]
    b, a, t = result["before"], result["after"], result["training"]
    return "\n".join(
        [
            f"brand adapter {result['version']}: {result['examples']['examples']} examples "
            f"({by['approved']} approved, {by['edit']} edited, {by['corpus']} corpus), "
            f"{t['steps']} steps in {t['seconds']:.0f} s",
            f"held out: {', '.join(result['held_out'])}",
            f"usable-candidate rate {b['usable_rate']:.1%} ({b['usable']}/{b['candidates']}) -> "
            f"{a['usable_rate']:.1%} ({a['usable']}/{a['candidates']}); "
            f"guardrail findings {b['findings']} -> {a['findings']}",
            ("promoted: content.adapter auto drafts with it" if result["promoted"] else "not promoted")
            + f" ({result['reason']})",
            f"card: clarion models show {result['version']} --model content_adapter",
        ]
    )
