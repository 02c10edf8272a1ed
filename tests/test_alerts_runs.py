"""Alerts fired by real pipeline runs (copies of the shared 300-contact `small_run`), received by a real
SMTP server and a real HTTP receiver: a model held back by the fairness gate, a failed quality gate,
a failed run; each event once, no personal data of the run's customers, and a broken channel that
neither fails the run nor hides its own error."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from alert_helpers import alerts_yaml, free_port, http_receiver, smtp_server
from project_helpers import SMALL_CUSTOMERS, SMALL_SEED, query, run_pipeline_in
from test_alerts import BODY_KEYS

from clarion.config import GenerateSettings, load_settings
from clarion.ops.alerts_send import log_path
from clarion.quality.gate import QualityGateError
from clarion.synth.generator import generate

pytestmark = [pytest.mark.usefixtures("prefect_server")]
STRICT = "fairness:\n  min_group: 20\n  ece_gap_warn: 0.001\n  ece_gap_fail: 0.002\n  significance: 1\n"


def _copy(small_run: dict, to: Path, extra: str):
    shutil.copytree(small_run["root"], to)
    with (to / "clarion.yaml").open("a") as fh:
        fh.write(extra)
    return load_settings(to / "clarion.yaml", env={})


def _people(settings) -> set[str]:
    """Every name, e-mail and phone number of the run's customers, as they are in the warehouse."""
    rows = query(settings, "select first_name, last_name, email, phone from raw.contacts")
    needles = {f"{f} {last}" for f, last, _, _ in rows if f and last}
    needles |= {x for _, _, mail, phone in rows for x in (mail, phone) if x}
    assert len(needles) > SMALL_CUSTOMERS
    return needles


def _no_pii(texts: list[str], people: set[str]) -> None:
    for text in texts:
        found = sorted(p for p in people if p in text)
        assert not found, f"personal data in an alert: {found[:3]}"
        assert "contact_id" not in text


@pytest.mark.slow  # retrains on a copy of the small run (about 30 s)
def test_a_model_held_by_the_fairness_gate_alerts_model_not_promoted_and_the_fairness_flag_once_each(
    small_run: dict, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("ALERT_SECRET", "s")
    with smtp_server() as (inbox, port), http_receiver() as (received, url):
        root = tmp_path / "p"
        settings = _copy(small_run, root, STRICT + alerts_yaml(port, [url], "ALERT_SECRET"))
        result = run_pipeline_in(root, stages=["segment"], retrain=True)
    assert result["status"] == "completed"  # v0001 scores on; v0002 is held
    assert sorted(received.events()) == ["fairness_flag", "model_not_promoted"]
    assert sorted(" ".join(m["Subject"].split()).split(":")[0] for m in inbox.messages) == [
        f"[Clarion] fairness finding {result['run_id']}",
        f"[Clarion] model not promoted {result['run_id']}",
    ]
    assert result["alerts"] == {
        "configured": True,
        "sent": 4,
        "failed": 0,
        "events": ["fairness_flag", "model_not_promoted"],
    }
    bodies = {b["event"]: b for b in received.bodies()}
    assert all(set(b) == BODY_KEYS and b["run_id"] == result["run_id"] for b in bodies.values())
    kept = bodies["model_not_promoted"]
    assert kept["details"]["candidate"] == "v0002" and kept["details"]["promoted"] == "v0001"
    assert "fairness finding" in kept["details"]["reason"]
    flag = bodies["fairness_flag"]
    assert flag["counts"]["fail"] >= 1 and "age_band" in flag["details"]["attributes"]
    [(flow_run_id,)] = query(
        settings, "select flow_run_id from audit.runs where run_id = ?", [result["run_id"]]
    )
    assert flow_run_id and all(b["flow_run_id"] == flow_run_id for b in bodies.values())
    texts = [raw.decode() for _, _, raw in received.requests] + [m.get_content() for m in inbox.messages]
    _no_pii(texts, _people(settings))


@pytest.mark.slow  # two runs of extract and the raw gate on a copy of the small run (about 30 s)
def test_a_failed_gate_alerts_once_and_a_broken_smtp_server_neither_fails_nor_hides_the_run(
    small_run: dict, tmp_path: Path
) -> None:
    root = tmp_path / "p"
    crm = GenerateSettings(customers=SMALL_CUSTOMERS, seed=SMALL_SEED, defects=0.15)
    with http_receiver() as (received, url):
        settings = _copy(small_run, root, alerts_yaml(free_port(), [url]))  # nobody listens on the SMTP port
        generate(crm, out=root / "var" / "crm")  # the next export is broken
        with pytest.raises(QualityGateError, match="quality gate 'raw' failed"):
            run_pipeline_in(root, stages=["extract", "transform"])
        assert received.events() == ["gate_failed"]  # the gate's alert, not a second one for the run
        (gate,) = received.bodies()
        assert gate["stage"] == "transform" and gate["details"]["suite"] == "raw"
        assert any(c.startswith("raw.quarantine-rate-stop") for c in gate["details"]["checks"])
        with (root / "clarion.yaml").open("a") as fh:
            fh.write("  events: [failed_run]\n")  # no gate_failed: the same failure is a failed run
        with pytest.raises(QualityGateError):
            run_pipeline_in(root, stages=["extract", "transform"])
        assert received.events() == ["gate_failed", "failed_run"]
        failed = received.bodies()[1]
        assert failed["details"]["error"] == "QualityGateError" and failed["stage"] == "transform"
        assert failed["details"]["message"].startswith("quality gate 'raw' failed:")
    runs = query(settings, "select run_id, status from audit.runs order by started_at desc limit 2")
    assert [s for _, s in runs] == ["failed", "failed"]
    assert {b["run_id"] for b in received.bodies()} == {r for r, _ in runs}
    with sqlite3.connect(log_path(settings)) as db:
        rows = db.execute("select event, channel, status from alerts order by id").fetchall()
    assert rows == [
        ("gate_failed", "email", "failed"),
        ("gate_failed", "webhook", "sent"),
        ("failed_run", "email", "failed"),
        ("failed_run", "webhook", "sent"),
    ]
    _no_pii([raw.decode() for _, _, raw in received.requests], _people(settings))
