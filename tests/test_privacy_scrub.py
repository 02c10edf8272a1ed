"""Failure text leaves the warehouse scrubbed: no e-mail, phone or quoted personal field in
audit.runs.error, the Prefect failure state, Prefect's stored logs or any log handler."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from uuid import UUID

import pytest

from clarion.privacy.scrub import PII_FIELDS, ScrubFilter, install, scrub
from clarion.warehouse import Warehouse

EMAIL = "ada.canary+crm@example-shop.co.uk"
PHONES = [
    "+44 7700 900123",  # the generator's GB format
    "+1 212-555-0123",
    "0049 151 12345678",
    "(030) 1234 5678",
    "0171-1234567",
    "555-123-4567",
]
DRIVER_ERROR = (
    f"duplicate key value violates unique constraint: Key (email)=({EMAIL}) already exists; "
    f"first_name='Adaline' last_name=Canaryfield, body: \"my parcel never came, call {PHONES[0]}\""
)


def test_scrub_removes_emails_phones_and_personal_field_values() -> None:
    text = DRIVER_ERROR + " or " + " or ".join(PHONES)
    out = scrub(text)
    for value in [EMAIL, "Adaline", "Canaryfield", "my parcel never came", *PHONES]:
        assert value not in out, value
    # what replaced them says what kind of thing was there, so the message still reads
    assert "Key (email)=([redacted email])" in out
    assert "first_name='[redacted first_name]'" in out
    assert "last_name=[redacted last_name]" in out
    assert 'body: "[redacted body]"' in out
    assert out.count("[redacted phone]") == len(PHONES)


def test_scrub_keeps_what_a_message_needs_to_say_where_it_failed() -> None:
    keep = (
        "run 20261123T172301Z-1a2b3c4d, load 1733312345.123456 at 2026-08-31 12:30:01: 300 rows read, "
        "contact 123456789 (line 42 of contacts.csv), EUR 1234.56, "
        "postgresql://postgres@127.0.0.1:5432/test, "
        "http://127.0.0.1:4200/api/flow_runs, phone: null"
    )
    assert scrub(keep) == keep


def test_scrubbing_twice_changes_nothing_more() -> None:
    """The same message is scrubbed where it is raised and again by the log filter: no stutter."""
    once = scrub(DRIVER_ERROR)
    assert scrub(once) == once
    assert "first_name]" not in once.replace("[redacted first_name]", "")


def test_scrub_withholds_the_row_a_parser_echoes() -> None:
    parser = f"CSV parse error: Expected 9 columns, got 10: 17,Adaline,Canaryfield,{EMAIL},x"
    assert scrub(parser) == "CSV parse error: Expected 9 columns, got 10: [redacted row]"


def test_every_personal_column_of_the_contract_is_a_field_scrub_knows() -> None:
    from clarion.contract import ENTITIES

    personal = {c.name for e in ENTITIES.values() for c in e.columns if c.pii}
    assert personal and personal <= set(PII_FIELDS)
    for name in personal:
        assert "Adaline" not in scrub(f"{name}='Adaline'"), name


def test_the_log_filter_scrubs_messages_arguments_and_tracebacks_before_any_handler() -> None:
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(self.format(record))

    handler = Keep()
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in ("clarion", "prefect.flow_runs"):
        logging.getLogger(name).addHandler(handler)
    try:
        install()
        assert any(isinstance(f, ScrubFilter) for f in handler.filters)
        logging.getLogger("clarion.extract.runner").warning("refused row of %s", EMAIL)
        try:
            try:
                raise ValueError(f"cannot parse {PHONES[1]}")
            except ValueError as inner:
                raise RuntimeError("the load failed") from inner
        except RuntimeError:
            logging.getLogger("prefect.flow_runs").exception("flow failed")
    finally:
        for name in ("clarion", "prefect.flow_runs"):
            logging.getLogger(name).removeHandler(handler)
    assert len(seen) == 2
    assert seen[0] == "refused row of [redacted email]"
    # the cause quoted a phone number: its traceback is withheld, the exception named
    assert PHONES[1] not in seen[1] and "RuntimeError: the load failed" in seen[1]
    assert "traceback withheld" in seen[1]


def test_finish_run_keeps_a_scrubbed_error(project) -> None:
    from clarion import runs

    settings = project()
    warehouse = Warehouse.from_settings(settings)
    warehouse.ensure()
    with warehouse.connect("test") as con:
        runs.start_run(con, run_id="r1", command="clarion run", config_hash="x")
        runs.finish_run(con, "r1", status="failed", stages={}, error=f"IntegrityError: {DRIVER_ERROR}")
        (kept,) = con.execute("select error from audit.runs where run_id = 'r1'").fetchone()
    assert kept.startswith("IntegrityError: duplicate key value violates unique constraint")
    for value in (EMAIL, "Adaline", "Canaryfield", PHONES[0], "my parcel"):
        assert value not in kept


def test_a_failed_pipeline_run_leaves_no_personal_data_in_audit_prefect_state_or_logs(
    project, prefect_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stage failing with a driver's message that quotes a row (an external failure, injected as a
    stage that raises it: no real driver quotes on demand) fails the run with the message scrubbed
    everywhere it is kept outside the warehouse's data."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    import flows.pipeline as pipeline_module
    from flows.pipeline import Stage, pipeline

    def failing(settings, run_id, **_):
        try:
            raise ValueError(f"row 17: {EMAIL} {PHONES[0]}")
        except ValueError as cause:
            raise RuntimeError(DRIVER_ERROR) from cause

    project()
    stages = [*pipeline_module.STAGES[:1], Stage("extract", failing, "")]
    monkeypatch.setattr(pipeline_module, "STAGES", stages)
    with pytest.raises(RuntimeError) as raised:
        pipeline(config_path=str(Path.cwd() / "clarion.yaml"))
    assert EMAIL not in str(raised.value)
    settings = project()
    with Warehouse.from_settings(settings).read() as con:
        error, flow_run_id = con.execute(
            "select error, flow_run_id from audit.runs where status = 'failed'"
        ).fetchone()
    assert error.startswith("RuntimeError: duplicate key") and "[redacted email]" in error
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # logs reach the API in batches, from a background worker
    only_this_run = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(flow_run_id)]))
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(flow_run_id))
        for _ in range(50):  # the batch may still be on its way to the server
            logs = client.read_logs(log_filter=only_this_run)
            if any("duplicate key" in log.message for log in logs):
                break
            time.sleep(0.2)
    assert run.state.is_failed() and "duplicate key" in run.state.message
    text = run.state.message + "\n".join(log.message for log in logs)
    assert "duplicate key" in "\n".join(log.message for log in logs)  # the failure was logged
    for value in (EMAIL, "Adaline", "Canaryfield", PHONES[0], "my parcel"):
        assert value not in text, value
