"""`clarion fairness`: per-group figures and findings of a scoring run; `accept` signs a finding off."""

from __future__ import annotations

from typing import Any

import click

from clarion.cli.app import AppContext, _emit, cli

EXAMPLE = """
\b
Examples:
  clarion fairness                      # the latest scoring run
  clarion fairness --run 20261204T123939Z-98246b10 --json
  clarion fairness accept audience:RUN:winback:at_risk_high_value:age_band:di:65+ \\
      --by "Dana Ruiz" --because "the offer is for lapsed customers; age mix reviewed"
"""


@cli.group(invoke_without_command=True, epilog=EXAMPLE)
@click.option("--run", "run_id", metavar="RUN_ID", help="Scoring run [default: the latest settled one].")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def fairness(ctx: click.Context, run_id: str | None, as_json: bool) -> None:
    """Is any group of a protected attribute (settings.fairness.attributes) treated differently?

    For one scoring run: the model's calibration (ECE) and true/false positive rates per group on its
    validation customers, and the share of each group selected into every segment, campaign audience
    and next-best action, with the disparate-impact ratio (group rate / highest group rate). Small
    groups (< fairness.min_group) are suppressed. Findings beyond the warn/fail limits are listed
    with their ids: a fail keeps a model from automatic promotion and an audience from export until
    someone signs it off with `clarion fairness accept`. See docs/privacy.md#fairness."""
    if ctx.invoked_subcommand is not None:
        return
    from clarion.fairness import report

    app: AppContext = ctx.obj
    data = report(app.settings(), run_id)
    _emit(data, as_json, _text(data))


@fairness.command("accept", epilog=EXAMPLE)
@click.argument("finding_id")
@click.option("--by", required=True, help="Your name: who signs the finding off.")
@click.option("--because", required=True, help="Why the difference is acceptable (kept with the sign-off).")
@click.pass_obj
def fairness_accept(app: AppContext, finding_id: str, by: str, because: str) -> None:
    """Sign off FINDING_ID (as `clarion fairness` lists it) by name, with a reason.

    The sign-off is kept in privacy.fairness_signoffs with the operating-system user and recorded in
    the audit log; an audience whose fail finding is signed off may then be exported. A model
    finding is recorded the same way; promote that version by hand (`clarion models promote`)."""
    from clarion.fairness import accept

    done = accept(app.settings(), finding_id, by, because)
    s = done["signed_off"]
    click.echo(
        f"signed off {finding_id} ({done['severity']}, value {done['value']:.3f}) by {by} "
        f"(os user {s['os_user']})"
    )


def _pct(v: Any) -> str:
    return "-" if v is None else f"{v:.1%}"


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"


def _text(d: dict[str, Any]) -> str:
    lim = d["limits"]
    out = [
        f"fairness of scoring run {d['run_id']} (model {d['model_version']}); attributes: "
        f"{', '.join(d['attributes']) or 'none configured'}; groups under {lim['min_group']} suppressed",
    ]
    if d.get("missing_attributes"):
        out.append(f"not judged (not columns of marts.dim_customers): {', '.join(d['missing_attributes'])}")
    model = d["model"]
    if "attributes" in model:
        out.append(f"\nmodel {d['model_version']}: {model['decision']}")
        for a in model["attributes"]:
            out.append(f"  {a['attribute']}: group, customers, ECE (gap), TPR (gap), FPR (gap)")
            for r in a["groups"]:
                if r["suppressed"]:
                    out.append(f"    {r['group']:<12} suppressed")
                    continue
                mark = "" if r["judged"] else " (not judged)"
                out.append(
                    f"    {r['group']:<12} {r['customers']:>7,}  {_num(r['ece'])} ({_num(r['ece_gap'])})  "
                    f"{_num(r['tpr'])} ({_num(r['tpr_gap'])})  {_num(r['fpr'])} ({_num(r['fpr_gap'])}){mark}"
                )
    else:
        out.append(f"\nmodel {d['model_version']}: registered before per-group findings (see its card)")
    for s in d["selections"]:
        for a in s["attributes"]:
            cells = [
                f"{r['group']} suppressed"
                if r["suppressed"]
                else f"{r['group']} {_pct(r['rate'])} (DI {_num(r['di'])}){'' if r['judged'] else '*'}"
                for r in a["groups"]
            ]
            out.append(f"{s['kind']} {s['name']} by {a['attribute']}: " + "; ".join(cells))
    if any(s["selections"] for s in [d]):
        out.append("(* shown, not judged: no value recorded)")
    findings = d["findings"]
    out.append(f"\nfindings: {len(findings) or 'none'}" + (f" ({d['worst']} at worst)" if findings else ""))
    for f in findings:
        signed = f["signed_off"]
        note = f"  signed off by {signed['by']} at {signed['at']}" if signed else ""
        out.append(
            f"  {f['severity'].upper():<4} {f['id']}  {f['metric']} {f['value']:.3f} "
            f"(limit {f['limit']:g}, vs {f['reference']}"
            + (f", p {f['p_value']:.2g}" if f.get("p_value") is not None else "")
            + f"){note}"
        )
    return "\n".join(out)
