"""Plain-text renderings of command results (what a command prints without --json)."""

from __future__ import annotations

import json
from typing import Any


def _generate_text(result) -> str:
    m = result.manifest
    lines = [
        f"Generated a synthetic CRM: {m['customers']:,} contacts, seed {m['seed']}, "
        f"{m['format'] if m['destination'] == 'files' else m['destination'].split(':')[0]}, "
        f"in {result.seconds:.1f} s",
        f"  data      {result.destination if m['destination'] != 'files' else result.out}",
    ]
    for entity, info in m["entities"].items():
        extra = info["rows"] - info["clean_rows"]
        added = f"  (+{extra:,} defective rows)" if extra else ""
        lines.append(f"    {entity:<16} {info['rows']:>12,} rows{added}")
    lines += [
        f"  truth     {result.out / m['truth']['contacts']}  "
        f"(persona, drivers, purchases after {m['cutoff']})",
        f"  defects   {result.out / m['defects']['file']}  ({m['defects']['rows']:,} rows of "
        f"{len({k.split('/')[1] for k in m['defects']['by_kind']})} kinds)",
        f"  manifest  {result.out / 'manifest.json'}",
    ]
    return "\n".join(lines)


def _run_text(result: dict[str, Any]) -> str:
    lines = [
        f"Run {result['run_id']} ({result['command']}) {result['status']}",
        f"  warehouse  {result['warehouse']}",
    ]
    if result.get("resumed"):
        kept = ", ".join(result["kept_stages"]) or "none"
        lines.append(f"  resumed    stages kept from before the interruption: {kept}")
    for name, summary in result["stages"].items():
        if name == "extract":
            lines.append("  extract")
            lines += ["    " + line for line in accounting_text(summary["accounting"]).splitlines()]
        elif name in ("transform", "check"):
            lines.append(
                f"  {name}" + (f"   features as of {summary['as_of']}" if "as_of" in summary else "")
            )
            lines += ["    " + line for line in gates_text(summary["gates"]).splitlines()]
            from clarion.transform.incremental import scope_text

            lines += [f"    {scope_text(summary[m], m)}" for m in ("features", "exposures") if summary.get(m)]
            if summary.get("published"):
                shown = ", ".join(f"{t} {n:,}" for t, n in summary["published"].items())
                lines.append(f"    published to marts: {shown}")
        elif name == "segment":
            lines += ["  " + line for line in segment_text(summary).splitlines()]
        elif name == "results":
            from clarion.results.views import stage_text

            lines += ["  " + line for line in stage_text(summary).splitlines()]
        elif name == "nba":
            from clarion.nba.views import summary_text

            lines += ["  " + line for line in summary_text(summary).splitlines()]
        elif name == "voc":
            from clarion.voc.views import summary_text as voc_text

            lines += ["  " + line for line in voc_text(summary).splitlines()]
        elif name == "recommend":
            from clarion.recommend import summary_text as recommend_text

            lines += ["  " + line for line in recommend_text(summary).splitlines()]
        elif name == "content":
            lines += ["  " + line for line in content_text(summary).splitlines()]
        elif name == "report":
            lines += ["  " + line for line in report_text(summary).splitlines()]
        else:
            shown = {k: v for k, v in summary.items() if k != "meter"}
            lines.append(f"  {name:<10} {json.dumps(shown, default=str, sort_keys=True)}")
    earlier = set(result.get("kept_stages") or ())  # measured by the interrupted run, not this one
    meters = {n: s["meter"] for n, s in result["stages"].items() if s.get("meter") and n not in earlier}
    if meters:  # each stage's own wall time and, over all of them, the largest peak memory
        times = ", ".join(f"{name} {m['wall_s']:.1f} s" for name, m in meters.items())
        peak = max(m["peak_rss_mb"] for m in meters.values())
        lines.append(f"  time       {times}; peak RSS {peak:,.0f} MB")
    if result.get("manifest"):
        lines.append(f"  lineage    {result['manifest']}  (clarion lineage verify {result['run_id']})")
    if "alerts" in result:
        lines.append(f"  alerts     {alerts_text(result['alerts'])}")
    lines.append("  see it:    clarion status")
    return "\n".join(lines)


def alerts_text(told: dict[str, Any]) -> str:
    """One line on what the run's alerts did (the pipeline's ``alerts`` summary)."""
    if not told.get("configured"):
        return "off (no alerts.email or alerts.webhooks in clarion.yaml; see docs/alerts.md)"
    if "events" not in told:
        return "on; nothing to tell"
    failed = f", {told['failed']} FAILED (clarion alerts list)" if told.get("failed") else ""
    return f"on; sent {', '.join(told['events'])}: {told['sent']} delivery(ies){failed}"


def rescored_text(r: dict[str, Any], customers: int) -> str:
    """How many customers were scored and explained again, and why the others were not."""
    if r["full_refresh"]:
        how = "full refresh"
    elif r["rescore"] == "all":
        how = "segment.rescore: all"
    elif r["kept"]:
        how = f"{r['kept']:,} kept from {r['from_run']}: their inputs did not change"
    else:
        how = "every customer: no earlier scoring run of this day, model, wording and code"
    return f"scored and explained {r['customers']:,} of {customers:,} customers ({how})"


def segment_text(s: dict[str, Any]) -> str:
    lines = [f"segment     {s['customers']:,} customers as of {s['as_of']}, model {s['model_version']}"]
    r = s.get("rescored")
    if r:
        lines.append(f"  {rescored_text(r, s['customers'])}")
    left_out = {k: n for k, n in (s.get("not_profiled") or {}).items() if n}
    if left_out:  # objectors (Art. 21): neither scored nor training data
        lines.append("  not profiled: " + ", ".join(f"{k} {n:,}" for k, n in left_out.items()))
    t = s.get("trained")
    if t:
        v, b, c = t["validation"], t["baseline"], t.get("customer_base") or {}
        lines.append(
            f"  trained {t['version']} on {t.get('rows', 0):,} customer-days of {t.get('days', 1)} days: "
            f"out-of-time ROC AUC {v['roc_auc']:.3f} (recency/frequency baseline {b['roc_auc']:.3f}, "
            f"BG/NBD alone {c.get('roc_auc') or float('nan'):.3f}), PR AUC {v['pr_auc']:.3f}, "
            f"Brier {v['brier']:.3f}, ECE {v['ece']:.3f}, top-10% lift {v['lift_top10']:.1f}x; "
            f"calibration {t['calibration']}"
        )
        lines.append(f"  {t['decision']}")
    th = s.get("thresholds")
    if th and th.get("shop_purchase_rate") is not None:
        lines.append(
            f"  expected purchase rate {th['shop_purchase_rate']:.1%} in the horizon; "
            f"at risk from churn risk {th['at_risk_from_churn_risk']:.2f}, safe below "
            f"{th['safe_below_churn_risk']:.2f} ({th['basis']} thresholds)"
        )
    lines.append(f"  {'segment':<20} {'customers':>10} {'share':>7} {'churn risk':>11}  typical first reason")
    for g in s["segments"]:
        drivers = ", ".join(d["family"] for d in g["top_drivers"])
        size = f"{g['customers']:>10,} {g['share']:>7.1%}"
        lines.append(f"  {g['segment']:<20} {size} {g['mean_churn_risk']:>11.2f}  {drivers}")
    if s.get("moves_since_previous"):
        moved = ", ".join(
            f"{m['from']} -> {m['to']} {m['customers']:,}" for m in s["moves_since_previous"][:5]
        )
        lines.append(f"  moved since the previous run: {moved}")
    for f in (s.get("triggers") or {}).get("fired", []):
        lines.append(
            f"  trigger of {f['campaign']} fired for {f['customers']:,} customers ({f['trigger_id']}): "
            "its triggered-campaign run exports the approved copy to them"
        )
    lines.append("  every customer's score and reasons: ml.customer_scores; one customer: clarion explain ID")
    return "\n".join(lines)


def content_text(s: dict[str, Any]) -> str:
    if not s.get("campaigns"):
        return f"content     {s.get('note', 'no campaigns')}"
    lines = [
        f"content     drafts for the segments of run {s['scoring_run_id']} (as of {s['as_of']}), "
        f"model {s['model']} (loaded in {s['load_seconds']:.1f} s)"
    ]
    lines.append(
        f"  {'campaign':<18} {'drafts':>6} {'pending':>8} {'blocked':>8} {'model slots':>12}  seconds"
    )
    for c in s["campaigns"]:
        if not c["drafts"]:
            lines.append(f"  {c['campaign']:<18} {0:>6}  {c.get('note', '')}")
            continue
        used = f"{c['model_slots']}/{c['slots']}"
        lines.append(
            f"  {c['campaign']:<18} {c['drafts']:>6} {c['pending']:>8} {c['blocked']:>8} {used:>12}  "
            f"{c['seconds']:>7.1f}"
        )
    lines.append(
        "  model slots: slots (subject, preheader, headline, body, cta, sms, push) the model wrote that "
        "passed checks and kept the seed's meaning; "
        "the rest use the brief's own copy"
    )
    lines.append("  review: clarion drafts list; clarion drafts show ID; clarion approve ID --by NAME")
    return "\n".join(lines)


def gates_text(gates: list[dict[str, Any]]) -> str:
    lines = []
    for g in gates:
        verdict = "passed" if g["ok"] else "FAILED"
        warned = len(g["warnings"])
        failed = g["failed"] - warned
        counts = f"{g['passed']} passed, {warned} warning(s), {failed} failed, {g['skipped']} skipped"
        lines.append(f"gate {g['suite']:<6} {verdict}: {counts}")
        lines += [f"  fail  {x}" for x in g["failures"]]
        lines += [f"  warn  {x}" for x in g["warnings"]]
    if gates and gates[-1].get("data_docs"):
        lines.append(f"Data Docs: {gates[-1]['data_docs']}")
    return "\n".join(lines)


COUNTS = ("read", "loaded", "quarantined", "inserted", "updated", "unchanged")


def accounting_text(rows: list[dict[str, Any]]) -> str:
    """The extract accounting as a table; every row read is loaded or quarantined."""
    from clarion.extract.advice import rejected_files_advice

    header = f"{'source':<10} {'entity':<16} {'status':<9}" + "".join(f"{c:>12}" for c in COUNTS)
    lines = [header]
    notes = []
    for r in rows:
        counts = "".join(f"{r.get(c, 0):>12,}" for c in COUNTS)
        lines.append(f"{r['source']:<10} {r['entity']:<16} {r['status']:<9}{counts}")
        where = f"{r['source']}/{r['entity']}"
        if r.get("reasons"):
            notes.append(
                f"{where}: quarantined " + ", ".join(f"{k} {v:,}" for k, v in sorted(r["reasons"].items()))
            )
        if r.get("suppressed"):
            notes.append(
                f"{where}: suppressed {r['suppressed']:,} rows of erased people (see docs/privacy.md)"
            )
        if r.get("findings"):
            notes.append(
                f"{where}: loaded with a field nulled "
                + ", ".join(f"{k} {v:,}" for k, v in sorted(r["findings"].items()))
            )
        if r.get("rejected_files"):  # which columns a whole file lacks, and how to supply them
            notes += rejected_files_advice(r["source"], r["entity"], r["rejected_files"])
        message = "; ".join(
            m for m in (r.get("message") or "").split("; ") if not m.endswith("(missing_column)")
        )
        if message and r.get("status") != "unchanged":
            notes.append(f"{where}: {message}")
        if r.get("new_columns"):
            notes.append(f"{where}: new columns kept in raw: {', '.join(r['new_columns'])}")
    if notes:
        lines.append("")
        lines += notes
    if any(r.get("quarantined") or r.get("findings") for r in rows):
        lines.append("Rejected rows are in quarantine.<entity> with their reason, field and file/row or key;")
        lines.append("fields nulled on loaded rows are in quarantine.field_findings:")
        lines.append("  clarion quarantine ENTITY [--reason REASON]")
    return "\n".join(lines)


def _serve_list_text(listing: dict[str, Any]) -> str:
    import textwrap

    lines = [f"{len(listing['deployments'])} deployments from {listing['source']}", ""]
    for d in listing["deployments"]:
        on_demand = "none: by its trigger or on demand" if d.get("triggers") else "none: on demand"
        when = ", ".join(f"{s['cron']} ({s.get('timezone') or 'UTC'})" for s in d["schedules"])
        params = ", ".join(
            f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in d["parameters"].items()
        )
        lines += [
            d["full_name"],
            f"  entrypoint  {d['entrypoint']}",
            f"  schedule    {when or on_demand}",
            f"  parameters  {params or '-'}",
        ]
        for t in d.get("triggers", []):
            expect = ", ".join(t.get("expect", [])) or "any event"
            passed = ", ".join(f"{k}={v}" for k, v in (t.get("parameters") or {}).items())
            lines.append(f"  trigger     on {expect}" + (f" with {passed}" if passed else ""))
        if d["description"]:
            lines += textwrap.wrap(d["description"], 96, initial_indent="  ", subsequent_indent="  ")
        lines.append("")
    first = listing["deployments"][0]["full_name"]
    lines.append(f"Serve them with `clarion serve`; start one by hand: prefect deployment run '{first}'")
    return "\n".join(lines)


def report_text(r: dict[str, Any]) -> str:
    lines = [
        f"report of scoring run {r['run_id']} (as of {r['as_of']}, model {r['model_version']}, "
        f"{r['customers']:,} customers)",
        f"  html  {r['paths']['html']}  ({r['bytes']['html'] / 1024:,.0f} KiB)",
        f"  pdf   {r['paths']['pdf']}  ({r['bytes']['pdf'] / 1024:,.0f} KiB)",
    ]
    if r.get("outbox"):
        lines.append(f"  {r['note']}")
        lines.append(f"  to {', '.join(r['recipients'])}: {r['subject']}")
    elif r["sent"]:
        tries = "" if r["attempts"] == 1 else f" after {r['attempts']} attempts"
        lines.append(f"  sent to {', '.join(r['recipients'])}{tries}: {r['subject']}")
        if r["refused"]:
            lines.append(
                "  refused by the server: " + "; ".join(f"{k} ({v})" for k, v in r["refused"].items())
            )
    else:
        lines.append(f"  {r['note']}")
    return "\n".join(lines)
