"""Campaign triggers end to end, against a real Prefect server: a small project scored twice by the
pipeline, the event its segment stage emits, the deployment trigger `clarion serve` registers from
the repository's prefect.yaml, and the triggered campaign's export (see tests/test_triggers.py for
the rules, customer by customer)."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import duckdb
import pytest
from serve_helpers import registered, serving, wait_for
from trigger_helpers import reachable, sent_to, write_brief, write_drafts

from clarion.content import runner
from clarion.warehouse import Warehouse
from models.content.brief import load_brief

RISING = {  # the test project's own brief: everyone at some risk, fired by a rise of ten points
    "name": "rising-risk",
    "audience": {"rule": "churn_risk >= 0.2"},
    "trigger": {"churn_jump": 0.1},
}


@pytest.mark.slow
def test_a_churn_jump_between_two_pipeline_runs_starts_the_triggered_campaign_through_a_real_prefect_server(
    tmp_path: Path, prefect_server, monkeypatch
) -> None:
    """A real small project (300 generated contacts) scored twice by the pipeline, two months apart.
    The second run's segment stage stores who fired and emits the event; the server keeps it; the
    deployment trigger that `clarion serve` registers from the repository's prefect.yaml starts
    triggered-campaign with the event's trigger id; it waits for the pipeline to release the
    warehouse, and its export holds exactly the customers who fired, less those no export may reach."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
    from project_helpers import run_pipeline_in, small_project

    from clarion.config import load_settings

    root = tmp_path / "shop"
    root.mkdir()
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    small_project(root)
    with (root / "clarion.yaml").open("a") as fh:
        # no holdouts: the export is the whole reachable audience; one model scores both days
        fh.write(
            "experiments:\n  holdout_share: 0.0\n  global_control_share: 0.0\n"
            "segment:\n  max_model_age_days: 365\n"
        )
    write_brief(root / "campaigns", RISING["name"], RISING["audience"], RISING["trigger"])
    log = tmp_path / "serve.log"
    with serving(root, log) as server:  # registers while the project builds
        assert run_pipeline_in(root, stages=["extract", "transform"])["status"] == "completed"
        first = run_pipeline_in(
            root, stages=["segment"], as_of=date(2026, 5, 1)
        )  # the marts stay as of today
        assert "no earlier settled scoring run" in first["stages"]["segment"]["triggers"]["note"]
        settings = load_settings(root / "clarion.yaml", env={})
        brief = load_brief(root / "campaigns" / "rising-risk.yaml")
        with Warehouse.from_settings(settings).connect("test") as con:
            drafts = write_drafts(con, brief, "content-a", first["run_id"], ["rule"])
        for did in drafts:
            runner.decide(settings, did, "approve", "marketing-lead", None)

        with get_client(sync_client=True) as client:
            dep, _ = wait_for(
                "the triggered-campaign deployment and its automation",
                lambda: registered(client, "triggered-campaign/triggered-campaign", root / "clarion.yaml", 1),
                120,
                log,
                server,
            )
            time.sleep(2)  # the triggers service takes up the new automation

            second = run_pipeline_in(root, stages=["segment"])  # scored as of the day after the last order

            [fired] = second["stages"]["segment"]["triggers"]["fired"]
            assert fired["previous_run_id"] == first["run_id"] and fired["scoring_run_id"] == second["run_id"]

            def event():
                page = client.read_events(
                    filter=EventFilter(
                        event=EventNameFilter(name=["clarion.trigger.fired"]),
                        resource=EventResourceFilter(id=["clarion.campaign.rising-risk"]),
                    ),
                    limit=50,  # the server's maximum (the client's default, 100, is refused)
                )
                return [e for e in page.events if e.payload.get("trigger_id") == fired["trigger_id"]]

            [seen] = wait_for("the event clarion.trigger.fired on the server", event, 60, log, server)

            def finished_run():
                flow_runs = client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id]))
                )
                mine = [r for r in flow_runs if r.parameters.get("trigger_id") == fired["trigger_id"]]
                failed = [
                    r.state for r in mine if r.state and r.state.is_final() and not r.state.is_completed()
                ]
                assert not failed, f"triggered-campaign failed: {failed}\n{log.read_text()[-4000:]}"
                return [r for r in mine if r.state and r.state.is_completed()]

            [flow_run] = wait_for(
                "a completed triggered-campaign run for the trigger", finished_run, 150, log, server
            )
        assert flow_run.parameters["config_path"] == str(root / "clarion.yaml")

        # only now, with the triggered run finished, is the warehouse free to read
        with duckdb.connect(str(settings.warehouse.path), read_only=True) as con:
            scores = {
                run: con.execute(
                    "select contact_id, churn_risk, segment from ml.customer_scores where run_id = ?", [run]
                ).df()
                for run in (first["run_id"], second["run_id"])
            }
            hits = con.execute(
                "select contact_id from ml.trigger_hits where trigger_id = ?", [fired["trigger_id"]]
            ).fetchnumpy()["contact_id"]
            people = con.execute(
                "select d.contact_id, coalesce(d.email_consent, false) email_consent, "
                "coalesce(d.sms_consent, false) sms_consent, coalesce(d.marketing_objection, false) "
                "marketing_objection, c.email, c.phone from marts.dim_customers d left join ("
                "select contact_id, any_value(email) email, any_value(phone) phone from raw.contacts "
                "group by contact_id) c using (contact_id)"
            ).df()
            exports = con.execute(
                "select channel, path, recipients from content.exports where export_id like ?",
                [f"%-trigger-{second['run_id']}"],
            ).fetchall()
            [(status,)] = con.execute(
                "select details->>'status' from audit.events where action = 'trigger.run' and subject = ?",
                [fired["trigger_id"]],
            ).fetchall()
        before, now = scores[first["run_id"]], scores[second["run_id"]]
        both = now.merge(before, on="contact_id", suffixes=("_now", "_before"))
        assert len(both) > 250  # every customer compared, each against their own earlier score
        rise = (both["churn_risk_now"] - both["churn_risk_before"]).round(9)
        expected = set(both.loc[(rise >= 0.1) & (both["churn_risk_now"] >= 0.2), "contact_id"].astype(int))
        assert set(hits) == expected and len(hits) == len(expected) >= 3
        assert seen.payload == {  # counts, the rule and run ids: no customer
            "trigger_id": fired["trigger_id"],
            "campaign": "rising-risk",
            "customers": len(expected),
            "by_rule": {"churn_jump": len(expected)},
            "rule": {"churn_jump": 0.1},
            "scoring_run_id": second["run_id"],
            "previous_run_id": first["run_id"],
        }
        assert str(seen.id) == fired["event_id"]
        assert status == "exported" and {c for c, _, _ in exports} == {"email", "sms"}
        for channel, path, recipients in exports:
            sent = sent_to(path)
            assert set(sent) == expected & reachable(people, channel), channel
            assert len(sent) == recipients
        assert sum(r for _, _, r in exports) > 0
