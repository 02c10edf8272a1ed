"""Risk tiers of campaign content: which approvals a draft needs before export, and who it may reach.

A brief's ``risk_tier`` (low | standard | high, default standard) is read *at export*, from the brief
as it is then: raising a campaign's tier after its drafts were approved holds them back until they
have the approvals the new tier asks for (the tier is not part of the brief's sha256, so changing
it does not void the copy, only what the copy needs).

* **low**: a draft that is exactly the brief's own copy (its seed sentences in its templates, offer
  facts from the brief, no model-written words) and passed every check (no failed check of any
  severity) is approved *by policy* when its content run finishes drafting: a decision with
  ``decided_by = 'policy'``, ``via = 'policy'``, note ``risk_tier=low``. Model-written drafts of a
  low-tier brief need one approver, as standard ones do. A person may still reject or edit a
  policy-approved draft: that is an *override* of an automated decision (`clarion oversight`).
* **standard**: one approval by an approver named in the brief.
* **high**: two approvals by distinct principals, and the export never reaches customers flagged
  vulnerable by ``oversight.vulnerable_rule`` (counted in the export's ``excluded`` as
  ``vulnerable``).

A *principal* is who really approved: the operating-system account of the process (``os:NAME``,
from the real uid, not from $USER, which anyone can set) or, for the API, the authenticated
principal it passes. Approvals only count for the content they were given to (its sha256) and
after the draft's last edit.
"""

from __future__ import annotations

import getpass
import json
import os
from typing import Any

import duckdb

from clarion import audit
from clarion.config import Settings
from clarion.content.store import ContentError, ensure_tables, utc_now
from clarion.warehouse import Warehouse, relation_exists
from models.content.brief import Brief, BriefError, load_brief
from models.content.drafts import _Keep  # leaves {first_name} for the export

POLICY = "policy"  # decided_by and via of an approval given by the risk-tier policy
POLICY_NOTE = "risk_tier=low"
VULNERABLE = "vulnerable"  # the export's exclusion reason
APPROVALS_NEEDED = {"low": 1, "standard": 1, "high": 2}


class OversightError(ContentError):
    """An approval the risk tier does not allow, or an oversight setting that does not work."""

    exit_code = 2


def os_principal() -> str:
    """The operating-system account running this process, from the real uid (``os:NAME``).

    Not from $USER/$LOGNAME: those are ordinary environment variables, and the distinct-approvers
    rule must not be satisfied by setting one."""
    try:
        import pwd

        return f"os:{pwd.getpwuid(os.getuid()).pw_name}"
    except (ImportError, KeyError, AttributeError):  # no pwd database (Windows, a bare container)
        try:
            return f"os:{getpass.getuser()}"
        except (KeyError, OSError, ImportError):
            return "os:unknown"


def principal_for(settings: Settings, given: str | None) -> str:
    """The principal an approval is recorded under: the authenticated one when a caller (the API)
    passes it, else the OS account. With ``oversight.require_principal`` an unknown one is refused."""
    principal = (given or "").strip() or os_principal()
    if settings.oversight.require_principal and principal in ("os:unknown", "os:"):
        raise OversightError(
            "cannot tell which account approves (no user name for this process's uid): run Clarion as "
            "a named operating-system user, or set oversight.require_principal: false"
        )
    if principal.startswith(f"{POLICY}:") or principal == POLICY:
        raise OversightError(f"{principal!r} is reserved for approvals given by policy")
    return principal


def ensure_columns(con: duckdb.DuckDBPyConnection) -> None:
    """content.decisions records the OS user and the principal beside the claimed ``decided_by``
    (warehouses made before have neither column: added, empty for their old rows)."""
    have = {
        r[0]
        for r in con.execute(
            "select column_name from information_schema.columns "
            "where table_schema = 'content' and table_name = 'decisions'"
        ).fetchall()
    }
    for column in ("os_user", "principal"):
        if column not in have:  # only then: a read-only snapshot can still count approvals
            con.execute(f"alter table content.decisions add column {column} varchar")


def approvals(con: duckdb.DuckDBPyConnection, draft: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The approvals that count for the draft's current content: (principal, decided_by, via),
    given to this content sha256 after the draft's last edit. Old rows without a principal count
    under their OS user, else their typed name."""
    ensure_columns(con)
    rows = con.execute(
        """
        select coalesce(principal, 'os:' || os_user, 'name:' || decided_by), decided_by, coalesce(via, '')
        from content.decisions
        where draft_id = ? and decision = 'approve' and content_sha256 = ?
          and decided_at > coalesce((select max(decided_at) from content.decisions
                                     where draft_id = ? and decision = 'edit'), '-infinity'::timestamptz)
        order by decided_at
        """,
        [draft["draft_id"], draft["content_sha256"], draft["draft_id"]],
    ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def own_copy(brief: Brief, channel: str) -> dict[str, str]:
    """The brief's own copy on a channel: its seed sentences in its templates with its offer facts
    (``{first_name}`` left for the export). What its approvers wrote, so no model words in it."""
    words = {**brief.seeds.all(), **brief.facts()}
    return {part: brief.template(part).format_map(_Keep(words)) for part in brief.parts(channel)}


def policy_refusal(brief: Brief, draft: dict[str, Any]) -> str | None:
    """Why the low-tier policy may not approve this draft, or None if it may."""
    if brief.risk_tier != "low":
        return f"risk_tier is {brief.risk_tier}"
    if draft["ai_generated"] or draft["content"] != own_copy(brief, draft["channel"]):
        return "not the brief's own copy"
    failed = [c["name"] for c in draft["checks"] or [] if not c["passed"]]
    if failed:
        return f"failed checks ({', '.join(failed)})"
    return None


def unmet(con: duckdb.DuckDBPyConnection, brief: Brief | None, draft: dict[str, Any]) -> str | None:
    """What the draft's risk tier (the brief's as it is now) still asks for before export, or None.
    Without a readable brief its tier is unknown: nothing goes out."""
    if brief is None:
        return f"the brief {draft['campaign']}.yaml cannot be read: its risk tier is unknown"
    given = approvals(con, draft)
    people = {p for p, _, via in given if via != POLICY}
    if brief.risk_tier == "low" and any(via == POLICY for *_, via in given):
        why = policy_refusal(brief, draft)
        if why is None or people:
            return None
    need = APPROVALS_NEEDED[brief.risk_tier]
    if len(people) >= need:
        return None
    if brief.risk_tier == "high":
        return f"risk_tier high needs approvals by 2 distinct people; has {len(people)}" + (
            " (the same account approving twice counts once)" if len(given) > len(people) else ""
        )
    return f"risk_tier {brief.risk_tier} needs an approval by a person; has none"


def refuse_repeat(con: duckdb.DuckDBPyConnection, draft: dict[str, Any], principal: str, by: str) -> None:
    """The same principal approving the same content twice is one approval, whatever --by says."""
    for p, name, _ in approvals(con, draft):
        if p == principal:
            raise OversightError(
                f"draft {draft['draft_id']} was already approved by {principal} (as {name!r}); a second "
                f"approval, as {by!r} or any other name, must come from a different account: its "
                "campaign's risk tier needs distinct people"
            )


def policy_only(con: duckdb.DuckDBPyConnection, draft: dict[str, Any]) -> bool:
    """Whether every approval on record for the draft's content was given by policy (so a person
    may override it: reject it)."""
    given = approvals(con, draft)
    return bool(given) and all(via == POLICY for *_, via in given)


def approve_by_policy(settings: Settings, run_id: str) -> dict[str, int]:
    """Approve, by the low-tier policy, the pending drafts of ``run_id`` that are their brief's own
    copy and passed every check; per campaign, how many. Called when drafting finished."""
    done: dict[str, int] = {}
    ran_by = audit.os_identity()
    with Warehouse.from_settings(settings).connect("content policy approval") as con:
        ensure_tables(con)
        ensure_columns(con)
        rows = con.execute(
            "select draft_id, campaign, channel, variant, content, content_sha256, ai_generated, checks "
            "from content.drafts where run_id = ? and status = 'pending' order by draft_id",
            [run_id],
        ).fetchall()
        briefs: dict[str, Brief | None] = {}
        for did, campaign, channel, variant, content, sha, ai, checks in rows:
            if campaign not in briefs:
                briefs[campaign] = current_brief(settings, campaign)
            brief = briefs[campaign]
            draft = {
                "draft_id": did,
                "channel": channel,
                "content": json.loads(content),
                "ai_generated": ai,
                "checks": json.loads(checks) if checks else [],
            }
            if brief is None or policy_refusal(brief, draft) is not None:
                continue
            now = utc_now()
            con.execute(
                "insert into content.decisions (draft_id, decision, decided_by, note, content_sha256, via, "
                "decided_at, os_user, principal) values (?, 'approve', ?, ?, ?, ?, ?, ?, ?)",
                [did, POLICY, POLICY_NOTE, sha, POLICY, now, ran_by["os_user"], f"{POLICY}:{POLICY_NOTE}"],
            )
            con.execute(
                "update content.drafts set status = 'approved', updated_at = ? where draft_id = ?", [now, did]
            )
            audit.AuditLog.for_settings(settings).record(
                con,
                audit.DRAFT_APPROVED,
                did,
                actor=POLICY,
                run_id=run_id,
                details={
                    "content_sha256": sha,
                    "via": POLICY,
                    "policy": POLICY_NOTE,
                    "campaign": campaign,
                    "channel": channel,
                    "variant": variant,
                    **ran_by,
                },
            )
            done[campaign] = done.get(campaign, 0) + 1
    return done


def vulnerable_ids(con: duckdb.DuckDBPyConnection, settings: Settings, brief: Brief | None) -> set[int]:
    """The customers a high-risk campaign must never reach (``oversight.vulnerable_rule`` over
    marts.dim_customers c and marts.customer_features f); empty for other tiers or without a rule."""
    rule = settings.oversight.vulnerable_rule
    if brief is None or brief.risk_tier != "high" or not rule:
        return set()
    features = relation_exists(con, "marts", "customer_features")
    join = "left join marts.customer_features f on f.contact_id = c.contact_id" if features else ""
    if not features:
        join = "left join (select null::bigint contact_id) f on false"
    try:
        rows = con.execute(
            f"select c.contact_id from marts.dim_customers c {join} where coalesce(({rule}), false)"
        ).fetchall()
    except duckdb.Error as exc:
        raise OversightError(
            f"oversight.vulnerable_rule does not run over marts.dim_customers c and "
            f"marts.customer_features f: {str(exc).splitlines()[0]}; fix the condition in clarion.yaml "
            "(e.g. 'f.negative_tickets_90d >= 2'), or set it to null"
        ) from None
    return {int(r[0]) for r in rows}


def current_brief(settings: Settings, campaign: str) -> Brief | None:
    """The campaign's brief as it is now, or None when it cannot be read (removed, invalid)."""
    try:
        return load_brief(settings.content.briefs / f"{campaign}.yaml")
    except BriefError:
        return None  # nothing is approved by policy or exported against it
