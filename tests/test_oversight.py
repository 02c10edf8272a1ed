"""Risk tiers of campaign content on a copy of a real run (the session's `small_run`): standard
needs one approver, high two distinct principals (the same account twice is refused, whatever
--by or $USER says) and never reaches customers flagged vulnerable; the low tier's policy approval
only takes the brief's own copy after its checks passed, and a person may override it.

Drafts are the briefs' own copy written as the content stage stores them (tests/trigger_helpers),
so no language model is loaded; approvals and exports go through the real review and export code.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from click.testing import CliRunner
from trigger_helpers import WINBACK, held_out, sent_to, write_drafts

from clarion.cli import cli
from clarion.config import Settings, load_settings
from clarion.content import runner
from clarion.oversight import tiers
from clarion.warehouse import Warehouse
from models.content.brief import load_brief
from models.content.drafts import content_hash

CONTENT_RUN = "20990101T000000Z-oversight"
RULE = "f.orders_lifetime <= 2 or c.country = 'DE'"  # some of any audience, not all of it


@pytest.fixture
def copy(small_run: dict, tmp_path: Path, monkeypatch) -> Settings:
    """A copy of the small run's project with three one-variant e-mail briefs (one per tier) on the
    same audience (the scoring run's largest segment), and their pending own-copy drafts."""
    root = tmp_path / "project"
    shutil.copytree(small_run["root"], root)
    monkeypatch.chdir(root)
    settings = load_settings(root / "clarion.yaml", env={})
    con = duckdb.connect(str(settings.warehouse.path))
    scoring, segment = con.execute(
        "select run_id, segment from ml.customer_scores group by all order by count(*) desc limit 1"
    ).fetchone()
    data = yaml.safe_load(WINBACK.read_text())
    data.pop("trigger", None)
    for tier in ("low", "standard", "high"):
        data.update(
            name=f"tier-{tier}",
            audience={"segments": [segment]},
            channels=["email"],
            variants=1,
            risk_tier=tier,
        )
        (root / "campaigns").mkdir(exist_ok=True)
        (root / "campaigns" / f"tier-{tier}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        write_drafts(
            con, load_brief(root / "campaigns" / f"tier-{tier}.yaml"), CONTENT_RUN, scoring, [segment]
        )
    con.close()
    return settings


def _draft(settings: Settings, campaign: str, run_id: str = CONTENT_RUN) -> dict[str, Any]:
    (d,) = runner.list_drafts(settings, campaign=campaign, run_id=run_id)
    return d


def _query(settings: Settings, sql: str, params: list | None = None) -> list[tuple]:
    with Warehouse.from_settings(settings).read() as con:
        return con.execute(sql, params or []).fetchall()


def _export(settings: Settings, campaign: str) -> dict[str, Any]:
    (e,) = runner.export(settings, campaign)["exports"]
    return e


def test_a_standard_draft_goes_out_after_one_approval(copy: Settings) -> None:
    d = _draft(copy, "tier-standard")
    assert _export(copy, "tier-standard")["drafts_held"] == {d["draft_id"]: "status pending"}
    r = runner.decide(copy, d["draft_id"], "approve", "marketing-lead", None)
    assert r["status"] == "approved" and r["principal"] == tiers.os_principal() and r["waiting_for"] is None
    e = _export(copy, "tier-standard")
    assert e["drafts_exported"] == [d["draft_id"]] and e["recipients"] > 0
    row = _query(
        copy,
        "select principal, os_user, decided_by from content.decisions where draft_id = ?",
        [d["draft_id"]],
    )
    assert row == [(tiers.os_principal(), r["os_user"], "marketing-lead")]


def test_a_high_draft_needs_two_distinct_principals(copy: Settings, monkeypatch) -> None:
    d = _draft(copy, "tier-high")
    first = runner.decide(copy, d["draft_id"], "approve", "marketing-lead", None)
    assert first["status"] == "pending" and "2 distinct people; has 1" in first["waiting_for"]
    assert _export(copy, "tier-high")["drafts_held"] == {d["draft_id"]: "status pending"}
    # the same account under another --by name, and with $USER/$LOGNAME claiming someone else: refused
    monkeypatch.setenv("USER", "compliance-officer")
    monkeypatch.setenv("LOGNAME", "compliance-officer")
    with pytest.raises(tiers.OversightError, match="different account"):
        runner.decide(copy, d["draft_id"], "approve", "compliance-officer", None)
    assert _query(copy, "select count(*) from content.decisions where draft_id = ?", [d["draft_id"]]) == [
        (1,)
    ]
    # a second, authenticated principal (as the API passes it) completes the approval
    second = runner.decide(copy, d["draft_id"], "approve", "compliance-officer", None, principal="api:carol")
    assert second["status"] == "approved" and second["principal"] == "api:carol"
    e = _export(copy, "tier-high")
    assert e["drafts_exported"] == [d["draft_id"]]


def test_raising_a_tier_after_approval_holds_the_draft_until_it_has_what_the_new_tier_needs(
    copy: Settings,
) -> None:
    d = _draft(copy, "tier-standard")
    runner.decide(copy, d["draft_id"], "approve", "marketing-lead", None)
    path = copy.content.briefs / "tier-standard.yaml"
    path.write_text(path.read_text().replace("risk_tier: standard", "risk_tier: high"))
    held = _export(copy, "tier-standard")
    assert held["recipients"] == 0 and "2 distinct people; has 1" in held["drafts_held"][d["draft_id"]]
    runner.decide(copy, d["draft_id"], "approve", "compliance-officer", None, principal="api:dana")
    assert _export(copy, "tier-standard")["drafts_exported"] == [d["draft_id"]]


def _audience(settings: Settings, campaign: str) -> dict[int, tuple]:
    """Independently of the export: every audience member with (consent, objection, e-mail, vulnerable)."""
    brief = load_brief(settings.content.briefs / f"{campaign}.yaml")
    rows = _query(
        settings,
        f"""
        select s.contact_id, coalesce(c.email_consent, false), coalesce(c.marketing_objection, false),
               p.email is not null, coalesce(({RULE}), false)
        from ml.customer_scores s
        left join marts.dim_customers c using (contact_id)
        left join marts.customer_features f using (contact_id)
        left join (select contact_id, any_value(email) email from raw.contacts group by 1) p
            using (contact_id)
        where s.run_id = (select scoring_run_id from content.drafts where run_id = ? limit 1)
          and s.segment = ?
        """,
        [CONTENT_RUN, brief.audience.segments[0]],
    )
    return {r[0]: r[1:] for r in rows}


def test_a_high_campaign_never_reaches_vulnerable_customers(copy: Settings) -> None:
    settings = copy.model_copy(
        update={"oversight": copy.oversight.model_copy(update={"vulnerable_rule": RULE})}
    )
    for campaign in ("tier-high", "tier-standard"):
        d = _draft(settings, campaign)
        runner.decide(settings, d["draft_id"], "approve", "marketing-lead", None, principal="api:alice")
        if campaign == "tier-high":
            runner.decide(settings, d["draft_id"], "approve", "compliance-officer", None, principal="api:bob")
    members = _audience(settings, "tier-high")
    flagged = {cid for cid, (_, objection, _, vulnerable) in members.items() if vulnerable and not objection}
    reachable = {
        cid for cid, (consent, objection, email, _) in members.items() if consent and not objection and email
    }
    x = settings.experiments
    assert flagged & reachable and reachable - flagged  # the rule bites, and leaves some to reach

    high = _export(settings, "tier-high")
    sent = set(sent_to(high["path"]))
    keep = reachable - flagged
    assert sent == keep - held_out(keep, "tier-high", x.seed, x.holdout_share, x.global_control_share)
    assert high["excluded"]["vulnerable"] == len(flagged)
    assert high["recipients"] + sum(high["excluded"].values()) == len(members)
    assigned = {
        r[0]
        for r in _query(settings, "select contact_id from content.assignments where campaign = 'tier-high'")
    }
    assert not assigned & flagged  # not in the experiment either: the campaign never concerns them

    standard = _export(
        settings, "tier-standard"
    )  # the same audience, a standard tier: nobody is left out for it
    assert "vulnerable" not in standard["excluded"]
    assert set(sent_to(standard["path"])) == reachable - held_out(
        reachable, "tier-standard", x.seed, x.holdout_share, x.global_control_share
    )
    event = _query(
        settings,
        "select details from audit.events where action = 'export.written' and subject like '%tier-high%'",
    )
    assert json.loads(event[-1][0])["excluded"]["vulnerable"] == len(flagged)


def test_a_vulnerable_rule_that_does_not_run_names_the_setting(copy: Settings) -> None:
    bad = copy.model_copy(
        update={"oversight": copy.oversight.model_copy(update={"vulnerable_rule": "f.no_such_feature > 1"})}
    )
    d = _draft(bad, "tier-high")
    runner.decide(bad, d["draft_id"], "approve", "marketing-lead", None, principal="api:alice")
    runner.decide(bad, d["draft_id"], "approve", "compliance-officer", None, principal="api:bob")
    with pytest.raises(
        tiers.OversightError, match=r"oversight.vulnerable_rule does not run.*no_such_feature"
    ):
        runner.export(bad, "tier-high")
    with pytest.raises(Exception, match="one SQL condition"):
        copy.oversight.model_validate({"vulnerable_rule": "true; drop table raw.contacts"})


def test_low_policy_approves_the_briefs_own_copy_and_a_person_may_override_it(copy: Settings) -> None:
    d = _draft(copy, "tier-low")
    assert tiers.approve_by_policy(copy, CONTENT_RUN) == {"tier-low": 1}  # standard and high: never
    assert tiers.approve_by_policy(copy, CONTENT_RUN) == {}  # once only
    rows = _query(
        copy, "select draft_id, decided_by, via, note, principal from content.decisions where via = 'policy'"
    )
    assert rows == [(d["draft_id"], "policy", "policy", "risk_tier=low", "policy:risk_tier=low")]
    low = _export(copy, "tier-low")  # out without a person: the low tier's own copy after its checks
    assert low["drafts_exported"] == [d["draft_id"]] and low["recipients"] > 0
    # a person overrides the policy: rejects it; nothing goes out from then on
    runner.decide(copy, d["draft_id"], "reject", "compliance-officer", "not for this audience")
    again = _export(copy, "tier-low")
    assert again["recipients"] == 0 and again["drafts_held"] == {d["draft_id"]: "status rejected"}
    with pytest.raises(runner.ContentError, match="already rejected"):
        runner.decide(copy, d["draft_id"], "reject", "marketing-lead", "again")


def test_low_policy_skips_copy_that_failed_a_check_or_is_not_the_briefs_own(copy: Settings) -> None:
    """write_drafts stores the brief's own copy with an empty check list: plant a failed (warn)
    check on one and a different subject on another; the policy approves only the intact own copy."""
    con = duckdb.connect(str(copy.warehouse.path))
    scoring, segment = con.execute(
        "select scoring_run_id, segment from content.drafts where run_id = ? limit 1", [CONTENT_RUN]
    ).fetchone()
    brief = load_brief(copy.content.briefs / "tier-low.yaml")
    ids = {}
    for run in ("20990102T000000Z-checked", "20990103T000000Z-failed", "20990104T000000Z-other"):
        (ids[run],) = write_drafts(con, brief, run, scoring, [segment])
    checks = {
        "20990102T000000Z-checked": [{"name": "pii", "passed": True, "severity": "block", "detail": ""}],
        "20990103T000000Z-failed": [
            {"name": "readability", "passed": False, "severity": "warn", "detail": ""}
        ],
    }
    for run, planted in checks.items():
        con.execute(
            "update content.drafts set checks = ? where draft_id = ?", [json.dumps(planted), ids[run]]
        )
    other = ids["20990104T000000Z-other"]
    content = json.loads(
        con.execute("select content from content.drafts where draft_id = ?", [other]).fetchone()[0]
    )
    content["email_subject"] = "Something else: 15% off"
    con.execute(
        "update content.drafts set content = ?, content_sha256 = ? where draft_id = ?",
        [json.dumps(content), content_hash(content), other],
    )
    con.close()
    done = {run: tiers.approve_by_policy(copy, run) for run in ids}
    assert done == {
        "20990102T000000Z-checked": {"tier-low": 1},
        "20990103T000000Z-failed": {},
        "20990104T000000Z-other": {},
    }
    status = dict(_query(copy, "select run_id, status from content.drafts where campaign = 'tier-low'"))
    assert status == {
        CONTENT_RUN: "pending",
        "20990102T000000Z-checked": "approved",
        "20990103T000000Z-failed": "pending",
        "20990104T000000Z-other": "pending",
    }


def test_a_human_approval_cannot_be_rejected_but_a_policy_one_can(copy: Settings) -> None:
    d = _draft(copy, "tier-standard")
    runner.decide(copy, d["draft_id"], "approve", "marketing-lead", None)
    with pytest.raises(runner.ContentError, match="already approved"):
        runner.decide(copy, d["draft_id"], "reject", "marketing-lead", "changed my mind")


def test_cli_approve_records_the_principal_and_says_what_is_still_needed(copy: Settings) -> None:
    d = _draft(copy, "tier-high")
    out = CliRunner().invoke(cli, ["approve", d["draft_id"], "--by", "marketing-lead"])
    assert out.exit_code == 0, out.output
    assert "1 more approval" in out.output and tiers.os_principal() in out.output
    again = CliRunner().invoke(cli, ["approve", d["draft_id"], "--by", "compliance-officer"])
    assert again.exit_code == 2 and "different account" in again.output


def test_a_policy_principal_cannot_be_claimed(copy: Settings) -> None:
    d = _draft(copy, "tier-standard")
    with pytest.raises(tiers.OversightError, match="reserved"):
        runner.decide(
            copy, d["draft_id"], "approve", "marketing-lead", None, principal="policy:risk_tier=low"
        )
    assert Warehouse.from_settings(copy).path.exists()


def test_report_and_model_card_carry_the_oversight_section(copy: Settings) -> None:
    from clarion.oversight import card_figures, summary
    from clarion.report import make_report
    from models.card import render
    from models.registry import Registry

    std, high = _draft(copy, "tier-standard"), _draft(copy, "tier-high")
    runner.decide(copy, std["draft_id"], "approve", "marketing-lead", None)
    runner.decide(copy, high["draft_id"], "reject", "marketing-lead", "not now")
    tiers.approve_by_policy(copy, CONTENT_RUN)
    with Warehouse.from_settings(copy).read() as con:
        s = summary(con)
    assert (s["totals"]["reviewed"], s["totals"]["overridden"], s["automated"]["policy_approvals"]) == (
        2,
        1,
        1,
    )

    report_json = Path(make_report(copy, send=False)["paths"]["json"])
    data = json.loads(report_json.read_text())
    assert data["oversight"]["totals"] == s["totals"]
    assert [c["campaign"] for c in data["oversight"]["by_campaign"]] == [
        "tier-high",
        "tier-low",
        "tier-standard",
    ]
    page = report_json.with_name("report.html").read_text()
    assert (
        '<section id="oversight"><h2>Human oversight</h2>' in page and "override rate of <b>50%</b>" in page
    )

    version = Registry(copy.var_dir / "registry").promoted()
    files = render({**version.meta, "oversight": card_figures(copy)})
    md = files["card.md"]
    assert md.index("## Human oversight") < md.index("## Limitations")
    assert "edited or rejected: 1 (override rate 50%)" in md
    assert json.loads(files["card.json"])["oversight"]["totals"] == s["totals"]


def test_a_draft_whose_brief_cannot_be_read_is_held_not_exported(copy: Settings) -> None:
    d = _draft(copy, "tier-standard")
    runner.decide(copy, d["draft_id"], "approve", "marketing-lead", None)
    (copy.content.briefs / "tier-standard.yaml").unlink()
    e = _export(copy, "tier-standard")
    assert e["recipients"] == 0 and "cannot be read" in e["drafts_held"][d["draft_id"]]
