"""What `clarion drafts`, `clarion export` print: aggregates and the drafts' own copy, never recipients."""

from __future__ import annotations

from typing import Any

from models.content.drafts import floor_words


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
        f"{gen.get('candidates_per_slot')} candidates per slot, "
        f"meaning >= {floor_words(gen.get('min_meaning'))}"
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
            f"({by['approved']} approved, {by['edit']} edited, {by.get('checked', 0)} checked, "
            f"{by['corpus']} corpus pairs), "
            f"{t['steps']} steps in {t['seconds']:.0f} s",
            f"held out: {', '.join(result['held_out'])}",
            f"usable-candidate rate {b['usable_rate']:.1%} ({b['usable']}/{b['candidates']}) -> "
            f"{a['usable_rate']:.1%} ({a['usable']}/{a['candidates']}); "
            f"distinct usable {b.get('distinct', '-')} -> {a.get('distinct', '-')}; "
            f"guardrail findings {b['findings']} -> {a['findings']}",
            ("promoted: content.adapter auto drafts with it" if result["promoted"] else "not promoted")
            + f" ({result['reason']})",
            f"card: clarion models show {result['version']} --model content_adapter",
        ]
    )


def _of(part: int, whole: int, rate: float | None) -> str:
    return f"{part}/{whole} " + (f"{rate:.0%}" if rate is not None else "-")


def _num(value: float | None, fmt: str = ".1f") -> str:
    return "-" if value is None else format(value, fmt)


def stats_text(s: dict[str, Any]) -> str:
    """`clarion drafts stats`: one line per campaign, the slots, the checks and the decisions by week."""
    state = "finished" if s["finished"] else "NOT finished: its drafts are never offered for review"
    lines = [
        f"Content run {s['run_id']} ({state}; drafted {s['created_at'][:19]}): "
        f"{s['totals']['drafts']} drafts, {len(s['campaigns'])} campaign(s)",
        "",
        f"{'campaign':<18} {'drafts':>6}  {'usable candidates':<17}  {'model e-mail words':<18}  "
        f"{'diversity':>9}  {'near-dup':<9}  {'body Flesch':>11}  {'blocked':>7}  invented facts",
    ]
    for c in [*s["campaigns"], {"campaign": "all", **s["totals"]}]:
        u, m, v, r, f = c["usable"], c["model_written"], c["diversity"], c["readability"], c["findings"]
        usable = _of(u["usable"], u["candidates"], u["usable_rate"])
        lines.append(
            f"{c['campaign']:<18} {c['drafts']:>6}  {usable:<17}  "
            f"{_of(m['model_words'], m['words'], m['share']):<18}  {_num(v['diversity'], '.2f'):>9}  "
            f"{_of(v['near_duplicate_pairs'], v['pairs'], v['near_duplicate_share']):<9}  "
            f"{_num(r['email_body']['mean']):>11}  {f['blocked']:>7}  {f['invented_facts']}"
        )
    lines += ["", "per slot (usable candidates / generated; slot texts the model wrote; mean Flesch)"]
    for c in s["campaigns"]:
        flesch = c["readability"]["slots"]
        for i, (slot, x) in enumerate(c["slots"].items()):
            lines.append(
                f"  {c['campaign'] if i == 0 else '':<18} {slot:<10} "
                f"{_of(x['usable'], x['candidates'], x['usable_rate']):<14} "
                f"written {_of(x['model_written'], x['slot_texts'], x['model_written_rate']):<12} "
                f"Flesch {_num(flesch.get(slot, {}).get('mean'))}"
            )
    t = s["totals"]
    lines += ["", "guardrail findings on final drafts (drafts failing each check)"]
    lines += [
        f"  {name:<16} {f['severity']:<6} {f['drafts']:>4}" for name, f in t["findings"]["by_check"].items()
    ]
    if not t["findings"]["by_check"]:
        lines.append("  none")
    slot_findings = {slot: x["findings"] for slot, x in t["slots"].items() if x["findings"] is not None}
    if slot_findings:
        lines.append("slot candidates failing each check")
        for slot, found in slot_findings.items():
            shown = ", ".join(f"{k} {n}" for k, n in sorted(found.items(), key=lambda kv: -kv[1])) or "none"
            lines.append(f"  {slot:<10} {shown}")
    else:
        lines.append("slot candidates failing each check: not recorded by this run (older provenance)")
    d = s["decisions"]
    lines += [
        "",
        "marketers' decisions per ISO week (all finished runs; approvals by the low-tier policy apart)",
    ]
    if not d["weeks"]:
        lines.append("  no decisions yet: clarion approve / clarion reject / clarion drafts edit")
    else:
        lines.append(f"  {'week':<9} {'decisions':>9}  {'approve':<10} {'edit':<10} {'reject':<10} policy")
        for w in [*d["weeks"], {"week": "all", **d["totals"]}]:
            lines.append(
                f"  {w['week']:<9} {w['decisions']:>9}  "
                + " ".join(
                    f"{w[k]:>3} {_num(w[k + '_rate'] and 100 * w[k + '_rate'], '.0f'):>4}%" + " "
                    for k in ("approve", "edit", "reject")
                )
                + f"{w['policy_approvals']:>4}"
            )
    lines.append('definitions: docs/content.md, "Measuring content"; as JSON: clarion drafts stats --json')
    return "\n".join(lines)
