"""The marketer report: built from a real warehouse, self-contained, true to the warehouse, free of
personal data, and delivered to a real SMTP server (aiosmtpd) with retries and clear failures.

One project (600 synthetic customers) runs the whole pipeline once; a second scoring run with
another risk threshold moves customers between segments, and one draft per case is written into
content.drafts by hand (no campaign folder, so no language model loads).
"""

from __future__ import annotations

import email
import hashlib
import json
import re
import smtplib
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import duckdb
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from click.testing import CliRunner
from project_helpers import run_pipeline_in
from pypdf import PdfReader

from clarion.cli import cli
from clarion.config import GenerateSettings, ReportSettings, Settings, load_settings
from clarion.content import runner as content_runner
from clarion.report import FILES, make_report, render
from clarion.report.build import FAMILY_TEXT, FEATURE_LABELS, ReportError, collect
from clarion.report.mail import MailError, credentials
from clarion.report.outbox import OutboxError, local_sink
from clarion.runs import new_run_id
from clarion.segment import runner as segment_runner
from clarion.synth.generator import generate

pytestmark = pytest.mark.usefixtures("prefect_server")

# 600 customers: an age band's true-positive rate can differ from another's by more than the fail
# gap (0.20) here, and the gate would then keep the model from scoring; this project is about the
# report, so a rate gap only warns (the gate has its own tests: test_fairness_gates.py)
CONFIG = (
    "warehouse:\n  path: var/warehouse.duckdb\ngenerate:\n  out: var/crm\nfairness:\n  rate_gap_fail: 0.5\n"
)
APPROVER = "Erika Mustermann-Approver"  # a member of staff: the report says a draft is approved, not by whom
LEAKED_EMAIL_IN_DRAFT = "leaked.person@example.org"


@dataclass
class Project:
    root: Path
    settings: Settings
    first_run: str
    second_run: str
    leaked: str  # a real customer's e-mail address, planted in a draft whose pii check failed


def _insert_draft(con: duckdb.DuckDBPyConnection, draft_id: str, scoring_run: str, **kw: Any) -> None:
    now = datetime.now(UTC)
    row = {
        "draft_id": draft_id,
        "run_id": scoring_run,
        "scoring_run_id": scoring_run,
        "campaign": "winback-test",
        "segment": "at_risk_high_value",
        "channel": "email",
        "variant": "A",
        "status": "pending",
        "content": {},
        "content_sha256": "0" * 64,
        "fallback": False,
        "ai_generated": True,
        "checks": [],
        "provenance": {},
        "created_at": now,
        "updated_at": now,
    } | kw
    for key in ("content", "checks", "provenance"):
        row[key] = json.dumps(row[key])
    con.execute(
        f"insert into content.drafts ({', '.join(row)}) values ({', '.join('?' * len(row))})",
        list(row.values()),
    )


MOVED_AT_RISK_BELOW = 0.8  # the second scoring run's wider at-risk threshold


@pytest.fixture(scope="module")
def project(tmp_path_factory, prefect_server) -> Project:
    root = tmp_path_factory.mktemp("report_project")
    (root / "clarion.yaml").write_text(CONFIG)
    generate(GenerateSettings(customers=600, seed=21, defects=0.0), out=root / "var" / "crm")
    result = run_pipeline_in(root)
    assert result["status"] == "completed"
    settings = load_settings(root / "clarion.yaml", env={})
    # a second scoring run (no gates of its own) where wider risk thresholds move customers
    moved = settings.model_copy(
        update={
            "segment": settings.segment.model_copy(
                update={"at_risk_below": MOVED_AT_RISK_BELOW, "safe_from": 1.2}
            )
        }
    )
    second = new_run_id()
    segment_runner.run(moved, second)
    with duckdb.connect(str(settings.warehouse.path)) as con:
        (leaked,) = con.execute("select email from raw.contacts where email is not null limit 1").fetchone()
        content_runner.ensure_tables(con)
        checks = [
            {"name": "pii", "severity": "block", "passed": True, "detail": "no personal data"},
            {"name": "near_duplicate", "severity": "warn", "passed": False, "detail": "0.91 similar to B"},
        ]
        _insert_draft(
            con,
            "dtest000001",
            second,
            status="approved",
            content={
                "email_subject": "We miss you: 15% off",
                "email_body": "Hi {first_name},\n\nCome back for 15% off: https://shop.example.com/back",
            },
            checks=checks,
        )
        con.execute(
            "insert into content.decisions values ('dtest000001', 'approve', ?, null, ?, 'cli', now())",
            [APPROVER, "0" * 64],
        )
        _insert_draft(
            con,
            "dtest000002",
            second,
            variant="B",
            status="blocked",
            content={"email_subject": "Hello", "email_body": f"Write to {leaked} or {LEAKED_EMAIL_IN_DRAFT}"},
            checks=[{"name": "pii", "severity": "block", "passed": False, "detail": f"found {leaked}"}],
        )
    return Project(root, settings, result["run_id"], second, leaked)


@pytest.fixture(scope="module")
def report(project: Project) -> dict[str, Any]:
    return make_report(project.settings, send=False)


def _query(settings: Settings, sql: str, params: list[Any] | None = None) -> list[tuple]:
    with duckdb.connect(str(settings.warehouse.path), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def _with_report(settings: Settings, **kw: Any) -> Settings:
    return settings.model_copy(update={"report": ReportSettings(**kw)})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the files ------------------------------------------------------------------------------------
@pytest.mark.slow  # needs the module's pipeline run
def test_files_are_written_with_their_hashes_and_the_pdf_is_a_pdf(project: Project, report) -> None:
    folder = project.settings.var_dir / "reports" / project.second_run
    assert report["run_id"] == project.second_run  # the latest scoring run by default
    for kind, name in FILES.items():
        path = Path(report["paths"][kind])
        assert path == folder / name and path.stat().st_size > 1000
        assert report["sha256"][kind] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert Path(report["paths"]["pdf"]).read_bytes().startswith(b"%PDF")
    assert report["sent"] is False and report["attempts"] == 0 and "no-send" in report["note"]


@pytest.mark.slow  # needs the module's pipeline run
def test_the_html_is_self_contained(report) -> None:
    page = Path(report["paths"]["html"]).read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page and "<svg" in page
    assert not re.search(r"""\b(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    for needle in ("<script", "<link", "<img", "<iframe", "@import", "url("):
        assert needle not in page.lower(), needle


@pytest.mark.slow  # needs the module's pipeline run
def test_the_numbers_agree_with_the_warehouse(project: Project, report) -> None:
    page = Path(report["paths"]["html"]).read_text(encoding="utf-8")
    data = json.loads(Path(report["paths"]["json"]).read_text())
    run, before = project.second_run, project.first_run
    expected = dict(
        _query(
            project.settings,
            "select segment, count(*) from ml.customer_scores where run_id = ? group by 1",
            [run],
        )
    )
    rows = re.findall(r'<tr data-segment="([a-z_]+)" data-customers="(\d+)">', page)
    shown = {s: int(n) for s, n in rows if int(n)}  # a segment empty now but not before shows 0
    assert shown == expected and len(rows) == len({s for s, _ in rows})
    total = sum(expected.values())
    [(objecting,)] = _query(project.settings, "select count(*) from raw.contacts where marketing_objection")
    assert data["headline"]["customers"] == total == 600 - objecting  # objectors are not profiled
    (at_risk,) = _query(
        project.settings,
        "select count(*) from ml.customer_scores s where run_id = ? and churn_risk >= ("
        "  select 1 - ? * avg(purchase_probability) from ml.customer_scores where run_id = s.run_id)",
        [run, MOVED_AT_RISK_BELOW],
    )[0]  # relative thresholds: at risk below this share of the run's mean purchase probability
    assert data["thresholds"]["risk_high"] == pytest.approx(
        1
        - MOVED_AT_RISK_BELOW
        * _query(
            project.settings,
            "select avg(purchase_probability) from ml.customer_scores where run_id = ?",
            [run],
        )[0][0]
    )
    assert data["headline"]["at_risk_customers"] == at_risk
    # movement between the two runs: every cell is the warehouse's count, and customers did move
    moves = {
        (a, b): n
        for a, b, n in _query(
            project.settings,
            "select a.segment, b.segment, count(*) from ml.customer_scores a join ml.customer_scores b "
            "using (contact_id) where a.run_id = ? and b.run_id = ? group by 1, 2",
            [before, run],
        )
    }
    cells = {
        (a, b): int(n.replace(",", "") or 0)
        for a, b, n in re.findall(r'data-from="([^"]+)" data-to="([^"]+)">([\d,]*)</td>', page)
    }
    assert {k: v for k, v in cells.items() if v} == moves
    assert data["movement"]["moved"] == sum(n for (a, b), n in moves.items() if a != b) > 0
    assert data["change"]["customers"] == 0 and data["previous_run"]["run_id"] == before
    # value x risk and the score histogram count every customer once
    assert sum(map(sum, data["value_risk"]["counts"])) == total
    assert sum(b["customers"] for b in data["score_distribution"]["bins"]) == total
    (in_top_bin,) = _query(
        project.settings,
        "select count(*) from ml.customer_scores where run_id = ? and purchase_probability >= 0.5",
        [run],
    )[0]
    assert sum(b["customers"] for b in data["score_distribution"]["bins"][5:]) == in_top_bin
    # model figures come from the version that scored the run
    (version,) = _query(
        project.settings, "select any_value(model_version) from ml.segments where run_id = ?", [run]
    )[0]
    assert data["model"]["version"] == version and len(data["calibration"]["points"]) >= 5
    assert data["drivers"] and data["drivers"][0]["mean_abs_shap"] >= data["drivers"][-1]["mean_abs_shap"]
    # the second run had no gates of its own: the report says whose gates it shows
    assert data["quality"]["run_id"] == before and data["quality"]["same_run"] is False
    assert data["quality"]["verdict"].startswith("passed") and f"run {before}" in page


@pytest.mark.slow  # needs the module's pipeline run
def test_profiles_reasons_and_drafts_are_in_plain_language(project: Project, report) -> None:
    page = Path(report["paths"]["html"]).read_text(encoding="utf-8")
    data = json.loads(Path(report["paths"]["json"]).read_text())
    described = [p for p in data["profiles"] if not p["suppressed"]]
    assert described and all(p["reasons"] and len(p["profile"]) == 8 for p in described)
    assert all(p["customers"] < 5 for p in data["profiles"] if p["suppressed"])
    # each segment's typical reasons in words, whichever families they are
    for profile in described:
        for reason in profile["reasons"]:
            assert reason["text"] in page, reason
    assert {r["family"] for p in described for r in p["reasons"]} <= set(FAMILY_TEXT)
    # the approved draft: company copy with its placeholder kept, checks and status shown
    (campaign,) = data["content"]["campaigns"]
    approved, blocked = campaign["drafts"]
    assert approved["status"] == "approved" and approved["decision"] == "approve"
    assert "Hi {first_name}," in page and "We miss you: 15% off" in page
    assert "near_duplicate" in page and "1 of 2 checks passed" in page
    # the draft whose pii check failed is listed, but its copy is not
    assert blocked["withheld"] and blocked["parts"] == {} and "Copy withheld" in page


@pytest.mark.slow  # needs the module's pipeline run
def test_an_earlier_run_and_an_unknown_run(project: Project) -> None:
    data = collect(project.settings, project.first_run)
    expected = dict(
        _query(
            project.settings,
            "select segment, count(*) from ml.customer_scores where run_id = ? group by 1",
            [project.first_run],
        )
    )
    assert {s["segment"]: s["customers"] for s in data["segments"] if s["customers"]} == expected
    assert data["previous_run"] is None and data["movement"] is None and data["change"] is None
    assert data["quality"]["same_run"] is True and data["content"]["campaigns"] == []
    assert "No earlier scoring run" in render.html(data)
    with pytest.raises(ReportError, match=f"no scoring run 'nope'.*{project.second_run}"):
        collect(project.settings, "nope")


def _pdf_text(path: str | Path) -> str:
    """The PDF's text as a reader would copy it (pypdf: WeasyPrint's PDF streams are compressed)."""
    return "\n".join(page.extract_text() for page in PdfReader(path).pages)


@pytest.mark.slow  # needs the module's pipeline run
def test_no_personal_data_in_the_report(project: Project, report) -> None:
    people = _query(project.settings, "select first_name, last_name, email, phone from raw.contacts")
    assert len(people) == 600
    data = json.loads(Path(report["paths"]["json"]).read_text())
    pdf = _pdf_text(report["paths"]["pdf"])
    texts = {
        "html": Path(report["paths"]["html"]).read_text(encoding="utf-8"),
        "json": Path(report["paths"]["json"]).read_text(encoding="utf-8"),
        "mail text": render.text(data),
        "mail html": render.email_html(data),
        "pdf": pdf,
    }
    # a name or phone number can wrap onto the next line of a PDF, and text extraction can add or
    # drop a space inside a word: the PDF is also compared with every run of whitespace as one space,
    # and with none
    spaced, tight = " ".join(pdf.split()), "".join(pdf.split())
    # the extraction works: the PDF's text holds the headline count and each segment with its size
    assert "Clarion segment report" in spaced and f"{data['headline']['customers']:,}" in spaced
    shown = [s for s in data["segments"] if s["customers"]]
    assert len(shown) >= 3
    for s in shown:
        assert f"{render.label(s['segment'])} {s['customers']:,} (" in spaced, s
    needles = {LEAKED_EMAIL_IN_DRAFT, APPROVER}
    for first, last, mail, phone in people:
        needles |= {f"{first} {last}", mail, phone} - {None}
    needles = {x for x in needles if x and "None" not in x}
    assert project.leaked in needles
    for where, text in texts.items():
        found = sorted(x for x in needles if x in text)
        assert not found, f"personal data in the report's {where}: {found[:5]}"
        assert "contact_id" not in text
    found = sorted(x for x in needles if " ".join(x.split()) in spaced or "".join(x.split()) in tight)
    assert not found, f"personal data in the report's pdf: {found[:5]}"


# -- delivery --------------------------------------------------------------------------------------
class Inbox:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []
        self.logins: list[tuple[bytes, bytes]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.envelopes.append(envelope)
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            self.logins.append((auth_data.login, auth_data.password))
            ok = auth_data.password == b"s3cret-pw"
            return AuthResult(success=ok, handled=False)  # handled=False: the server itself answers 535
        return AuthResult(success=False, handled=False)


@pytest.fixture
def smtp_server():
    """A real SMTP server on a free localhost port; `auth=True` requires a login."""
    started: list[Controller] = []

    def start(auth: bool = False) -> tuple[Inbox, int]:
        inbox, port = Inbox(), _free_port()
        kw: dict[str, Any] = {}
        if auth:
            kw = {"authenticator": inbox.authenticate, "auth_required": True, "auth_require_tls": False}
        controller = Controller(inbox, hostname="127.0.0.1", port=port, **kw)
        controller.start()
        started.append(controller)
        return inbox, port

    yield start
    for controller in started:
        controller.stop()


def _profiled(project) -> int:
    """The project's customers less those who objected (counted in the CRM rows, not by the report)."""
    [(objecting,)] = _query(project.settings, "select count(*) from raw.contacts where marketing_objection")
    return 600 - objecting


def _parts(msg: EmailMessage) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for part in msg.walk():
        if part.is_multipart():
            continue
        kind = "attachment" if part.get_content_disposition() == "attachment" else part.get_content_type()
        out.setdefault(kind, []).append(part)
    return out


@pytest.mark.slow  # needs the module's pipeline run
def test_the_report_is_delivered_to_a_real_smtp_server(project: Project, smtp_server) -> None:
    inbox, port = smtp_server()
    recipients = ["marketing@example.com", "Head of CRM <crm.lead@example.net>"]
    settings = _with_report(
        project.settings,
        recipients=recipients,
        sender="clarion@example.com",
        smtp_host="127.0.0.1",
        smtp_port=port,
    )
    result = make_report(settings)
    assert result["sent"] is True and result["attempts"] == 1 and result["recipients"] == recipients
    (envelope,) = inbox.envelopes
    assert envelope.mail_from == "clarion@example.com"
    assert sorted(envelope.rcpt_tos) == ["crm.lead@example.net", "marketing@example.com"]
    msg = email.message_from_bytes(
        envelope.original_content, _class=EmailMessage, policy=email.policy.default
    )
    assert msg["From"] == "clarion@example.com"
    assert msg["To"] == "marketing@example.com, Head of CRM <crm.lead@example.net>"
    assert msg["Subject"] == result["subject"]
    scored = _profiled(project)  # objectors are not profiled
    assert re.fullmatch(
        rf"Clarion segment report 2026-07-01: {scored} customers, \d+\.\d% at risk", msg["Subject"]
    )
    parts = _parts(msg)
    (plain,) = parts["text/plain"]
    (body,) = parts["text/html"]
    assert f"{scored} customers scored" in plain.get_content() and "<table" in body.get_content()
    attachments = {p.get_filename(): p for p in parts["attachment"]}
    (pdf_name,) = [n for n in attachments if n.endswith(".pdf")]
    assert attachments[pdf_name].get_content_type() == "application/pdf"
    assert attachments[pdf_name].get_content() == Path(result["paths"]["pdf"]).read_bytes()
    (html_name,) = [n for n in attachments if n.endswith(".html")]
    assert attachments[html_name].get_content_charset() == "utf-8"
    assert attachments[html_name].get_content().encode() == Path(result["paths"]["html"]).read_bytes()


@pytest.mark.slow  # needs the module's pipeline run
def test_starttls_demanded_but_not_offered_fails_at_once_with_a_clear_error(
    project: Project, smtp_server
) -> None:
    inbox, port = smtp_server()
    settings = _with_report(
        project.settings,
        recipients=["marketing@example.com"],
        smtp_host="127.0.0.1",
        smtp_port=port,
        starttls=True,
        retries=3,
        retry_seconds=5,  # would make the test slow if this were retried
    )
    with pytest.raises(MailError) as err:
        make_report(settings)
    message = str(err.value)
    assert f"127.0.0.1:{port} does not offer STARTTLS" in message and "report.starttls" in message
    assert err.value.attempts == 1 and inbox.envelopes == []
    assert (project.settings.var_dir / "reports" / project.second_run / "report.pdf").exists()


@pytest.mark.slow  # needs the module's pipeline run
def test_a_closed_port_is_retried_then_reported_and_the_files_stay(project: Project, monkeypatch) -> None:
    port = _free_port()  # nothing listens there
    connects: list[tuple[str, int]] = []
    real_connect = smtplib.SMTP.connect

    def counting_connect(self, host="localhost", port=0, source_address=None):
        connects.append((host, port))
        return real_connect(self, host, port, source_address)

    monkeypatch.setattr(smtplib.SMTP, "connect", counting_connect)
    folder = project.settings.var_dir / "reports" / project.second_run
    for name in FILES.values():
        (folder / name).unlink(missing_ok=True)
    settings = _with_report(
        project.settings,
        recipients=["marketing@example.com"],
        smtp_host="127.0.0.1",
        smtp_port=port,
        retries=2,
        retry_seconds=0.05,
    )
    with pytest.raises(MailError) as err:
        make_report(settings)
    assert connects == [("127.0.0.1", port)] * 3  # the first try and two retries
    assert err.value.attempts == 3 and err.value.exit_code == 5
    message = str(err.value)
    assert f"127.0.0.1:{port} after 3 attempt(s)" in message
    assert "report.smtp_host" in message and "report.smtp_port" in message
    assert str(folder / "report.pdf") in message  # where the unsent report is
    assert all((folder / name).stat().st_size > 0 for name in FILES.values())


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
@pytest.mark.slow  # needs the module's pipeline run
def test_login_comes_from_the_named_environment_variables(project: Project, smtp_server, monkeypatch) -> None:
    inbox, port = smtp_server(auth=True)
    base = {
        "recipients": ["marketing@example.com"],
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "retries": 0,
    }
    # no login configured: the server's 530 becomes a hint to configure one
    with pytest.raises(MailError, match=r"wants a login: set report\.username_env"):
        make_report(_with_report(project.settings, **base))
    settings = _with_report(
        project.settings, username_env="CLARION_TEST_SMTP_USER", password_env="CLARION_TEST_SMTP_PW", **base
    )
    # a variable that is not set fails before any connection, naming it
    monkeypatch.delenv("CLARION_TEST_SMTP_USER", raising=False)
    monkeypatch.delenv("CLARION_TEST_SMTP_PW", raising=False)
    logins_before = len(inbox.logins)
    with pytest.raises(
        MailError, match="CLARION_TEST_SMTP_USER, CLARION_TEST_SMTP_PW, which are not set"
    ) as err:
        make_report(settings)
    assert err.value.attempts == 0 and len(inbox.logins) == logins_before
    # a wrong password is refused and not retried
    monkeypatch.setenv("CLARION_TEST_SMTP_USER", "reporter")
    monkeypatch.setenv("CLARION_TEST_SMTP_PW", "wrong")
    with pytest.raises(MailError, match=r"refused the login .*\$CLARION_TEST_SMTP_USER"):
        make_report(settings)
    # the right one is used for AUTH and the report arrives
    monkeypatch.setenv("CLARION_TEST_SMTP_PW", "s3cret-pw")
    result = make_report(settings)
    assert result["sent"] and inbox.logins[-1] == (b"reporter", b"s3cret-pw") and len(inbox.envelopes) == 1
    assert credentials(ReportSettings(), {}) is None  # no login configured: none is attempted


# -- the local outbox --------------------------------------------------------------------------------
def _eml(path: Path) -> EmailMessage:
    return email.message_from_bytes(path.read_bytes(), _class=EmailMessage, policy=email.policy.default)


def test_the_local_sink_saves_each_message_whole_under_a_new_name(tmp_path: Path) -> None:
    folder = tmp_path / "not" / "yet" / "there"
    saved: list[Path] = []
    with local_sink(folder, on_message=saved.append) as (host, port):
        assert host == "127.0.0.1"
        with smtplib.SMTP(host, port, timeout=10) as smtp:
            smtp.ehlo()
            assert not smtp.has_extn("starttls") and not smtp.has_extn("auth")
            for n in (1, 2):
                smtp.sendmail("a@localhost", ["b@localhost"], f"Subject: message {n}\r\n\r\nbody\r\n")
            assert len(saved) == 2  # saved before the server acknowledged each message
    assert sorted(folder.iterdir()) == sorted(saved)  # no temporary file left behind
    assert [re.fullmatch(r"\d{8}T\d{6}Z-(\d+)\.eml", p.name) is not None for p in saved] == [True, True]
    assert [_eml(p)["Subject"] for p in saved] == ["message 1", "message 2"]
    with pytest.raises(OSError):  # the server lives only as long as the block
        smtplib.SMTP(host, port, timeout=2)


@pytest.mark.slow  # needs the module's pipeline run
def test_report_outbox_delivers_the_real_message_into_a_folder(project: Project, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"  # missing: created
    result = CliRunner().invoke(
        cli, ["--config", str(project.root / "clarion.yaml"), "report", "--outbox", str(outbox)]
    )
    assert result.exit_code == 0, result.output
    (eml,) = outbox.iterdir()
    assert eml.suffix == ".eml"
    assert f"sent to the local outbox {eml}; open it with any mail client" in result.stdout
    msg = _eml(eml)
    assert msg["From"] == "clarion@localhost" and msg["To"] == "marketing@localhost"  # no recipients set
    scored = _profiled(project)  # objectors are not profiled
    assert re.fullmatch(
        rf"Clarion segment report 2026-07-01: {scored} customers, \d+\.\d% at risk", msg["Subject"]
    )
    assert f"to marketing@localhost: {msg['Subject']}" in result.stdout
    parts = _parts(msg)
    (plain,) = parts["text/plain"]
    (body,) = parts["text/html"]
    assert f"{scored} customers scored" in plain.get_content() and "<table" in body.get_content()
    (pdf,) = [p for p in parts["attachment"] if p.get_content_type() == "application/pdf"]
    folder = project.settings.var_dir / "reports" / project.second_run
    assert pdf.get_content() == (folder / "report.pdf").read_bytes()


@pytest.mark.slow  # needs the module's pipeline run
def test_an_outbox_that_is_a_file_fails_clearly_and_the_report_stays(
    project: Project, tmp_path: Path
) -> None:
    folder = project.settings.var_dir / "reports" / project.second_run
    for name in FILES.values():
        (folder / name).unlink(missing_ok=True)
    not_a_folder = tmp_path / "outbox.txt"
    not_a_folder.write_text("a file")
    config = ["--config", str(project.root / "clarion.yaml")]
    result = CliRunner().invoke(cli, [*config, "report", "--outbox", str(not_a_folder)])
    assert result.exit_code == OutboxError.exit_code != 0
    assert f"the outbox {not_a_folder} is a file, not a folder: give a folder" in result.stderr
    assert str(folder / "report.pdf") in result.stderr  # where the unsent report is
    assert all((folder / name).stat().st_size > 0 for name in FILES.values())
    assert not_a_folder.read_text() == "a file"
    # --outbox sends, --no-send does not: asking for both is a usage error
    both = CliRunner().invoke(cli, [*config, "report", "--no-send", "--outbox", str(tmp_path / "o")])
    assert both.exit_code == 2 and "--no-send" in both.stderr and not (tmp_path / "o").exists()


@pytest.mark.slow  # needs the module's pipeline run
def test_the_pipeline_report_stage_uses_report_outbox(project: Project) -> None:
    from flows.report import report as report_flow

    # recipients are kept; STARTTLS and the login are not used (the local sink offers neither)
    path = project.root / "outbox.yaml"
    path.write_text(
        CONFIG + "report:\n  outbox: var/outbox\n  recipients: [crm.lead@example.net]\n  starttls: true\n"
        "  username_env: CLARION_TEST_UNSET_USER\n  password_env: CLARION_TEST_UNSET_PW\n"
    )
    settings = load_settings(path, env={})
    assert settings.report.outbox == project.root / "var" / "outbox"  # relative to the settings file
    result = report_flow(settings, project.second_run)
    (eml,) = (project.root / "var" / "outbox").iterdir()
    assert result["sent"] is True and result["outbox"] == str(eml)
    assert result["recipients"] == ["crm.lead@example.net"] and _eml(eml)["To"] == "crm.lead@example.net"
    assert _eml(eml)["Subject"] == result["subject"]


def test_report_settings_are_validated(tmp_path: Path) -> None:
    from clarion.errors import ConfigError

    path = tmp_path / "clarion.yaml"
    path.write_text("report:\n  recipients: [nobody]\n  subject: '{customers} {secret}'\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    message = str(err.value)
    assert "'nobody' is not an e-mail address" in message
    assert "unknown field(s) ['secret']" in message
    path.write_text("report:\n  username_env: SMTP_USER\n")
    with pytest.raises(ConfigError, match="give both username_env and password_env"):
        load_settings(path, env={})
    path.write_text("warehouse:\n  threads: 2\n")
    settings = load_settings(path, env={"CLARION_REPORT__RECIPIENTS": "a@x.com, Ops <ops@y.org>"})
    assert settings.report.recipients == ["a@x.com", "Ops <ops@y.org>"] and settings.report.smtp_port == 25


def test_every_family_and_feature_has_words_in_the_report() -> None:
    from models.features import FAMILIES, FEATURES

    assert set(FAMILIES) <= set(FAMILY_TEXT)
    assert set(FEATURES) <= set(FEATURE_LABELS)
