"""On-demand drafts: one brief, one audience, one channel, drafted by the real shipped model while
someone waits, through the batch stage's grounding, guardrails, provenance and approval states.

One copy of the session's small project (a real run: segments, scores, consent) with the
repository's briefs; one `Drafter` for the module, loaded once and kept warm, as the API holds it.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from project_helpers import query

from clarion.config import Settings, load_settings
from clarion.content import runner
from clarion.content.ondemand import COMMAND, Drafter, OnDemandError
from clarion.content.review import decide
from clarion.content.store import ContentError
from clarion.privacy import pseudonym as pseudonyms
from clarion.subject import objection
from models.content.brief import load_brief, load_briefs
from models.content.drafts import AI_DISCLOSURE, content_hash

# the real model drafts in every test (about a minute in all): in the slow set, run by CI
pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def project(small_run: dict, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("ondemand") / "project"
    shutil.copytree(small_run["root"], root)
    shutil.copytree(REPO / "campaigns", root / "campaigns", dirs_exist_ok=True)
    return load_settings(root / "clarion.yaml", env={})


@pytest.fixture(scope="module")
def drafter(project: Settings) -> Drafter:
    d = Drafter(project)
    d.warm()
    return d


def _scoring_run(settings: Settings) -> str:
    (run,) = query(settings, "select run_id from ml.segments order by scored_at desc limit 1")[0]
    return run


def _sizes(settings: Settings) -> dict[str, int]:
    run = _scoring_run(settings)
    return dict(query(settings, "select segment, customers from ml.segments where run_id = ?", [run]))


def _target(settings: Settings) -> tuple[str, str]:
    """A campaign of the repository and its largest segment in this project (e-mail, so that some of
    its customers consent and some do not)."""
    sizes = _sizes(settings)
    targets = [
        (sizes.get(seg, 0), name, seg)
        for name in ("winback-summer", "vip-thank-you")
        for seg in load_brief(settings.content.briefs / f"{name}.yaml").audience.segments
    ]
    size, name, seg = max(targets)
    assert size >= 10, sizes
    return name, seg


def _pseudonym(settings: Settings, contact_id: int) -> str:
    """As the API shows the customer (the project's kept key, created on first use)."""
    return pseudonyms.for_settings(settings)(contact_id)


def _customer(settings: Settings, segment: str, consent: bool = True) -> int:
    rows = query(
        settings,
        "select s.contact_id from ml.customer_scores s join marts.dim_customers d using (contact_id) "
        "where s.run_id = ? and s.segment = ? and coalesce(d.email_consent, false) = ? "
        "order by s.contact_id limit 1",
        [_scoring_run(settings), segment, consent],
    )
    assert rows, (segment, consent)
    return int(rows[0][0])


def _inline(settings: Settings, name: str, segment: str, **changes: Any) -> dict[str, Any]:
    data = yaml.safe_load((settings.content.briefs / "winback-summer.yaml").read_text())
    data.update(name=name, audience={"segments": [segment]}, **changes)
    return data


# -- drafting -----------------------------------------------------------------------------------
def test_a_draft_for_a_segment_is_checked_stored_pending_with_its_provenance(
    project: Settings, drafter: Drafter
) -> None:
    campaign, segment = _target(project)
    out = drafter.draft(project, brief=campaign, segment=segment, channel="email", by="api:marketer")
    brief = load_brief(project.content.briefs / f"{campaign}.yaml")

    assert out["status"] == "pending", [c for c in out["checks"] if not c["passed"]]
    assert (out["campaign"], out["segment"], out["channel"], out["variant"]) == (
        campaign,
        segment,
        "email",
        "A",
    )
    assert set(out["content"]) == {"email_subject", "email_preheader", "email_body"}
    assert (
        brief.offer.code in out["content"]["email_body"] and brief.offer.url in out["content"]["email_body"]
    )
    assert out["content_sha256"] == content_hash(out["content"])
    assert all(c["passed"] for c in out["checks"] if c["severity"] == "block")
    assert (out["ai_label"] == AI_DISCLOSURE) == out["ai_generated"]
    p = out["provenance"]
    assert p["brief"]["sha256"] == brief.sha256()
    assert p["model"]["weights_sha256"] == drafter._lm.weights_sha256
    assert p["generation"]["candidates_per_slot"] == project.content.on_demand_candidates
    assert {q["slot"] for q in p["prompts"]} == set(brief.slots(("email",)))
    assert p["on_demand"]["requested_by"] == "api:marketer"
    assert out["timings"]["tokens"] > 0

    stored = runner.show_draft(project, out["draft_id"])
    assert stored["status"] == "pending" and stored["content"] == out["content"]
    assert stored["content_sha256"] == out["content_sha256"] and stored["checks"] == out["checks"]
    # its own content run, finished: offered for review like a batch draft
    (row,) = query(
        project, "select command, status, stages from audit.runs where run_id = ?", [out["run_id"]]
    )
    assert row[:2] == (COMMAND, "completed") and json.loads(row[2])["content"]["draft_id"] == out["draft_id"]
    assert out["draft_id"] in {d["draft_id"] for d in runner.list_drafts(project, status="pending")}
    prompts = query(project, "select slot from content.prompts where run_id = ?", [out["run_id"]])
    assert sorted(r[0] for r in prompts) == sorted(brief.slots(("email",)))


def test_a_pseudonym_drafts_for_that_customers_segment_and_no_personal_data_reaches_the_prompt(
    project: Settings, drafter: Drafter
) -> None:
    campaign, segment = _target(project)
    contact = _customer(project, segment)
    (first, last, email, phone) = query(
        project,
        "select first_name, last_name, email, phone from raw.contacts where contact_id = ?",
        [contact],
    )[0]
    pseudonym = _pseudonym(project, contact)

    out = drafter.draft(project, brief=campaign, pseudonym=pseudonym, channel="email", by="api:svc")

    assert out["segment"] == segment and out["target"]["pseudonym"] == pseudonym
    sent = query(project, "select system, prompt from content.prompts where run_id = ?", [out["run_id"]])
    texts = [t for row in sent for t in row] + [
        q[k] for q in out["provenance"]["prompts"] for k in ("system", "user")
    ]
    # one prompt per slot the e-mail's templates use, each sent (content.prompts) and recorded
    email_slots = load_briefs(project.content.briefs, (campaign,))[0].slots(("email",))
    assert {"subject", "headline", "body"} <= set(email_slots)
    assert len(sent) == len(email_slots)
    assert sorted(q["slot"] for q in out["provenance"]["prompts"]) == sorted(email_slots)
    assert len(texts) == 4 * len(email_slots)
    for value in (first, last, email, phone, pseudonym):
        assert value and not any(value in t for t in texts), "customer data in a prompt"
    assert not any(re.search(rf"\b{contact}\b", t) for t in texts), "a contact id in a prompt"
    # the same prompts a segment request sends: the person only chose the segment
    by_segment = drafter.draft(project, brief=campaign, segment=segment, channel="email", by="api:svc")
    assert [q["user"] for q in out["provenance"]["prompts"]] == [
        q["user"] for q in by_segment["provenance"]["prompts"]
    ]


def test_a_brief_whose_template_forces_a_forbidden_word_is_stored_blocked_with_its_failed_check(
    project: Settings, drafter: Drafter
) -> None:
    _, segment = _target(project)
    brief = _inline(
        project,
        "ondemand-hurry",
        segment,
        templates={"email_subject": "{headline}: {offer} off, hurry"},
    )
    out = drafter.draft(project, brief=brief, segment=segment, channel="email", by="api:marketer")

    assert out["status"] == "blocked"
    failed = [c for c in out["checks"] if not c["passed"] and c["severity"] == "block"]
    assert failed and "hurry" in json.dumps(failed)
    assert runner.show_draft(project, out["draft_id"])["status"] == "blocked"
    with pytest.raises(ContentError, match="failed blocking checks"):
        decide(project, out["draft_id"], "approve", "marketing-lead", None)


def _exported_ids(project: Settings, campaign: str) -> set[str]:
    """The draft ids the campaign's export sends (none when it has nothing approved to export)."""
    from clarion.content.store import ContentError

    ids: set[str] = set()
    try:
        exports = runner.export(project, campaign)["exports"]
    except ContentError:
        return ids
    for exported in exports:
        with Path(exported["path"]).open(newline="", encoding="utf-8") as fh:
            ids |= {r["draft_id"] for r in csv.DictReader(fh)}
    return ids


def test_an_on_demand_draft_is_approved_as_a_batch_draft_is_and_never_displaces_the_batch_export(
    project: Settings, drafter: Drafter, tmp_path: Path
) -> None:
    campaign, segment = _target(project)
    before = _exported_ids(project, campaign)
    out = drafter.draft(project, brief=campaign, segment=segment, channel="email", by="api:marketer")
    assert out["status"] == "pending"
    # pending: the campaign's export is what it was (a pending on-demand draft holds nothing back)
    assert _exported_ids(project, campaign) == before

    decided = decide(
        project, out["draft_id"], "approve", "marketing-lead", None, via="api", principal="api:lead"
    )
    assert decided["status"] == "approved" and decided["content_sha256"] == out["content_sha256"]
    assert query(project, "select status from content.drafts where draft_id = ?", [out["draft_id"]]) == [
        ("approved",)
    ]
    after = _exported_ids(project, campaign)
    assert out["draft_id"] not in after and after == before
    from clarion.content.export import held_back
    from clarion.content.store import get_draft
    from clarion.warehouse import Warehouse

    with Warehouse.from_settings(project).read() as con:  # what the web app's draft page says of it
        assert "drafted on demand" in (held_back(con, None, get_draft(con, out["draft_id"])) or "")


def test_an_inline_brief_is_drafted_and_reviewed_from_the_brief_stored_with_the_draft(
    project: Settings, drafter: Drafter
) -> None:
    _, segment = _target(project)
    brief = _inline(project, "ondemand-inline", segment, approvers=["inline-approver"])
    assert not (project.content.briefs / "ondemand-inline.yaml").exists()

    out = drafter.draft(project, brief=brief, segment=segment, channel="sms", by="api:marketer")

    assert out["status"] == "pending" and set(out["content"]) == {"sms"}
    assert out["provenance"]["on_demand"]["inline_brief"] is True
    with pytest.raises(ContentError, match="not an approver"):
        decide(project, out["draft_id"], "approve", "marketing-lead", None)
    assert decide(project, out["draft_id"], "approve", "inline-approver", None)["status"] == "approved"


# -- refusals (no model work) -------------------------------------------------------------------
def _refused(drafter: Drafter, settings: Settings, **request: Any) -> OnDemandError:
    request.setdefault("by", "api:marketer")
    with pytest.raises(OnDemandError) as caught:
        drafter.draft(settings, **request)
    return caught.value


def test_unknown_campaign_segment_and_channel_are_refused_naming_the_field(
    project: Settings, drafter: Drafter
) -> None:
    campaign, segment = _target(project)
    e = _refused(drafter, project, brief="no-such-campaign", segment=segment, channel="email")
    assert e.field == "brief" and "no-such-campaign" in str(e) and "winback-summer" in str(e)
    e = _refused(drafter, project, brief=campaign, segment="big_spenders", channel="email")
    assert e.field == "segment" and "big_spenders" in str(e) and "champions" in str(e)
    e = _refused(drafter, project, brief="winback-summer", segment="champions", channel="email")
    assert e.field == "segment" and "at_risk_high_value" in str(e)
    e = _refused(drafter, project, brief="winback-summer", segment=segment, channel="push")
    assert e.field == "channel" and "'email', 'sms'" in str(e)
    e = _refused(drafter, project, brief=campaign, segment=segment, pseudonym="p_0", channel="email")
    assert e.field == "segment" and "not both" in str(e)
    before = query(project, "select count(*) from audit.runs where command = ?", [COMMAND])
    assert _refused(drafter, project, brief=campaign, channel="email").field == "segment"
    assert query(project, "select count(*) from audit.runs where command = ?", [COMMAND]) == before


def test_an_invalid_inline_brief_lists_each_field_and_what_to_write(
    project: Settings, drafter: Drafter
) -> None:
    _, segment = _target(project)
    bad = _inline(project, "Bad Name", segment, variants=9, colour="red")
    bad["offer"] = {**bad["offer"], "code": "lower"}
    e = _refused(drafter, project, brief=bad, segment=segment, channel="email")
    fields = {p["field"] for p in e.problems}
    assert {"brief.name", "brief.variants", "brief.colour", "brief.offer.code"} <= fields, e.problems
    assert "lower-case letters" in str(e) and "not a field of a brief" in str(e)
    # an inline brief may not pose as a brief file with other content
    clash = _inline(project, "winback-summer", segment, tone="shouty")
    assert _refused(drafter, project, brief=clash, segment=segment, channel="email").field == "brief.name"


def test_a_pseudonym_of_nobody_or_of_someone_who_may_not_be_mailed_is_refused_without_their_data(
    project: Settings, drafter: Drafter
) -> None:
    campaign, segment = _target(project)
    e = _refused(drafter, project, brief=campaign, pseudonym="not-a-pseudonym", channel="email")
    assert e.field == "pseudonym" and "hex digits" in str(e)
    nobody = _refused(drafter, project, brief=campaign, pseudonym="p_" + "0" * 16, channel="email")
    assert nobody.field == "pseudonym"

    no_consent = _customer(project, segment, consent=False)
    e = _refused(drafter, project, brief=campaign, pseudonym=_pseudonym(project, no_consent), channel="email")
    assert str(e) == str(nobody)  # the same answer: it does not say which reason applies
    objector = _customer(project, segment)
    objection.record(project, str(objector), reference="test-objection")
    e = _refused(drafter, project, brief=campaign, pseudonym=_pseudonym(project, objector), channel="email")
    assert str(e) == str(nobody)
    (email,) = query(project, "select email from raw.contacts where contact_id = ?", [objector])[0]
    assert str(objector) not in str(e) and email not in str(e)
