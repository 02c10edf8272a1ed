"""What the flows publish as Prefect artifacts (stored in Prefect's database, outside the warehouse)
names customers by keyed pseudonym only and never quotes a blocked draft."""

from __future__ import annotations

import hashlib
import hmac

from clarion.privacy.pseudonym import for_settings
from clarion.quality.gate import CheckResult, GateResult
from clarion.warehouse import Warehouse
from flows.content import drafts_markdown
from flows.transform import gates_markdown

EMAIL = "zq.artifact@canary-mail.test"


def _draft(draft_id: str, status: str, text: str, pii_passed: bool = True) -> dict:
    return {
        "draft_id": draft_id,
        "campaign": "comeback",
        "segment": "promising",
        "channel": "email",
        "variant": "A",
        "status": status,
        "fallback": False,
        "checks": [
            {"name": "pii", "severity": "block", "passed": pii_passed},
            {"name": "length", "severity": "block", "passed": True},
        ],
        "content": {"subject": "Hello again", "body": text},
    }


def test_the_drafts_artifact_lists_a_blocked_draft_without_its_copy() -> None:
    drafts = [
        _draft("d-ok", "pending", "We saved something for you."),
        _draft("d-pii", "blocked", f"Write to {EMAIL} for your parcel", pii_passed=False),
        _draft("d-len", "blocked", "A sentence far too long to send BLOCKEDCOPYMARK"),
    ]
    md = drafts_markdown(drafts)
    assert "We saved something for you." in md  # a pending draft is shown for review
    assert "`d-pii`" in md and "`d-len`" in md  # blocked ones are listed, with their failed checks
    assert "pii (block)" in md
    assert EMAIL not in md and "BLOCKEDCOPYMARK" not in md
    assert "2 blocked draft(s)" in md


def test_a_failing_gate_sample_names_the_customer_by_pseudonym_and_withholds_personal_values(
    project,
) -> None:
    settings = project()
    Warehouse.from_settings(settings).ensure()
    sample = [{"contact_id": 424242, "email": EMAIL}, {"contact_id": 515151, "email": None}]
    gate = GateResult(
        "raw",
        2,
        [
            CheckResult("raw.email", "fail", "failed", "expect_x", "contacts", "email", {}, sample),
            CheckResult("raw.amount", "warn", "failed", "expect_y", "orders", "amount", {}, [{"value": 3.5}]),
        ],
    )
    md = gates_markdown([gate], settings)
    with Warehouse.from_settings(settings).read() as con:
        key = bytes(con.execute("select key from privacy.keys where name = 'pseudonym'").fetchone()[0])
    for cid in (424242, 515151):
        assert str(cid) not in md
        want = "p_" + hmac.new(key, f"contact:{cid}".encode(), hashlib.sha256).hexdigest()[:16]
        assert want in md
        assert for_settings(settings)(cid) == want
    assert EMAIL not in md and "[withheld]" in md
    assert "'value': 3.5" in md  # a measurement that is not personal stays readable


def test_a_failing_gate_message_names_no_contact_id_and_withholds_personal_values() -> None:
    """The message leaves the warehouse (CLI, Prefect's failure state, logs): no ids, no e-mails."""
    sample = [{"contact_id": 424242, "email": EMAIL}, {"contact_id": 515151, "value": 7}]
    text = CheckResult("raw.email", "fail", "failed", "expect_x", "contacts", "email", {}, sample).describe()
    assert "424242" not in text and "515151" not in text and EMAIL not in text
    assert "email=[withheld]" in text
    plain = CheckResult("marts.x", "fail", "failed", "expect_y", "customer_features", "recency", {}, sample)
    assert "value=7" in plain.describe()  # a feature's value still says what failed
    single = CheckResult(
        "raw.phone", "fail", "failed", "expect_z", "contacts", "phone", {}, ["+44 7700 900123"]
    )
    assert "7700" not in single.describe() and "[withheld]" in single.describe()
