"""The API's read routes against the warehouse of a real run (api_project): every figure is counted
here independently, in SQL on the published snapshot, and every customer's reasons are compared with
what `clarion explain` gives for the same contact id."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from api_helpers import LiveServer

from clarion import snapshot
from clarion.privacy import pseudonym
from clarion.privacy.pseudonym import Pseudonymizer
from clarion.segment.views import explanation
from clarion.warehouse import Warehouse


def _sql(api_project, sql: str, params: list | None = None) -> list[tuple]:
    """Rows of ``sql`` on the published snapshot (opened as the in-process server opens it)."""
    w = api_project["settings"].warehouse
    wh = Warehouse(snapshot.current(w.path), threads=w.threads, memory_limit=w.memory_limit)
    with wh.read() as con:
        return con.execute(sql, params or []).fetchall()


def _pseudonyms(api_project) -> Pseudonymizer:
    """The project's pseudonym function (the HMAC in Python; the API computes it in SQL)."""
    return pseudonym.for_settings(api_project["settings"])


def _copy_project(api_project, root: Path) -> None:
    """The project without its read snapshots."""

    def skipped(folder: str, names: list[str]) -> list[str]:
        return [n for n in names if n.endswith(".snapshots")]

    shutil.copytree(api_project["root"], root, ignore=skipped)


def _no_contact_id(body) -> None:
    assert "contact_id" not in json.dumps(body), "a role without read:contact_id saw a contact id"


def _problem(r, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return r.json()


# -- customers ------------------------------------------------------------------------------------
def test_every_customer_by_pseudonym_has_their_stored_reasons(api_project, live_api) -> None:
    """For every scored customer: the reasons and segment of their latest score as stored (read here
    in one SQL query), and for a sample the very answer of `clarion explain` (explanation())."""
    name = _pseudonyms(api_project)
    stored = _sql(
        api_project,
        "select contact_id, segment, model_version, to_json(reasons) from ml.customer_scores "
        "qualify row_number() over (partition by contact_id order by scored_at desc) = 1 order by 1",
    )
    assert len(stored) > 250
    recommended: dict[int, list] = {}  # the newest recommend run's lists, read here in SQL
    for cid, rank, product_id, reason in _sql(
        api_project,
        "select contact_id, rank, product_id, reason from ml.recommendations where run_id = "
        "(select run_id from ml.recommendations group by 1 order by max(created_at) desc limit 1) "
        "order by contact_id, rank",
    ):
        recommended.setdefault(cid, []).append([rank, product_id, reason])
    assert len(recommended) > 250
    with live_api.client(api_project["keys"]["marketer"]) as c:
        for cid, segment, version, reasons in stored:
            r = c.get(f"/api/v1/customers/{name(cid)}")
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["reasons"] == json.loads(reasons), cid
            assert body["segment"] == segment and body["score"]["model_version"] == version
            assert body["pseudonym"] == name(cid) and body["profiled"] is True
            assert [[r["rank"], r["product_id"], r["reason"]] for r in body["recommendations"]] == (
                recommended.get(cid, [])
            )
            assert body["recommendations_available"] is (cid in recommended)
            _no_contact_id(body)
        for cid, *_ in stored[::30]:
            expected = explanation(api_project["settings"], cid)
            body = c.get(f"/api/v1/customers/{name(cid)}").json()
            assert body["reasons"] == expected["reasons"] and body["segment"] == expected["segment"]
            assert body["score"]["purchase_probability"] == pytest.approx(expected["purchase_probability"])
            assert body["score"]["expected_value"] == pytest.approx(expected["expected_value"])


def test_by_contact_id_is_the_same_customer_with_the_contact_id(api_project, live_api) -> None:
    name = _pseudonyms(api_project)
    ids = [
        cid
        for (cid,) in _sql(
            api_project, "select distinct contact_id from ml.customer_scores order by 1 limit 25"
        )
    ]
    with live_api.client(api_project["keys"]["engineer"]) as c:
        for cid in ids:
            by_id = c.get(f"/api/v1/customers/by-contact-id/{cid}").json()
            by_name = c.get(f"/api/v1/customers/{name(cid)}").json()
            assert by_id["contact_id"] == cid and by_name["contact_id"] == cid
            assert by_id == by_name
    with live_api.client(api_project["keys"]["marketer"]) as c:
        detail = _problem(c.get(f"/api/v1/customers/by-contact-id/{ids[0]}"), 403)["detail"]
        assert "read:contact_id" in detail and "marketer" in detail


def test_unknown_customers_are_404_without_echoing_the_id(api_project, live_api) -> None:
    (top,) = _sql(api_project, "select max(contact_id) from marts.dim_customers")[0]
    missing = top + 1000
    name = _pseudonyms(api_project)(missing)
    with live_api.client(api_project["keys"]["compliance"]) as c:
        for path in (
            f"/api/v1/customers/{name}",
            f"/api/v1/customers/by-contact-id/{missing}",
            "/api/v1/customers/p_zz",
        ):
            body = _problem(c.get(path), 404)
            assert name not in json.dumps(body) and str(missing) not in json.dumps(body)
    with live_api.client() as c:
        _problem(c.get(f"/api/v1/customers/{name}"), 401)


def test_customers_who_are_not_scored_are_said_to_be_not_profiled(api_project, live_api) -> None:
    """Objectors (and anyone not scored) answer 200 with no score, not a 404 or a 500."""
    unscored = _sql(
        api_project,
        "select contact_id from marts.dim_customers where contact_id not in "
        "(select contact_id from ml.customer_scores) order by 1",
    )
    assert unscored, "the demo project has customers who were not scored (objectors, late sign-ups)"
    name = _pseudonyms(api_project)
    with live_api.client(api_project["keys"]["marketer"]) as c:
        for (cid,) in unscored[:20]:
            body = c.get(f"/api/v1/customers/{name(cid)}").json()
            assert body["profiled"] is False and body["score"] is None and body["reasons"] == []
            assert body["not_profiled_reason"] and body["next_best_action"] is None


# -- aggregates -----------------------------------------------------------------------------------
def test_segments_are_the_latest_runs_counts(api_project, live_api) -> None:
    ((run_id,),) = _sql(
        api_project,
        "select run_id from ml.customer_scores group by run_id order by max(scored_at) desc limit 1",
    )
    counted = dict(
        _sql(
            api_project,
            "select segment, count(*) from ml.customer_scores where run_id = ? group by 1",
            [run_id],
        )
    )
    with live_api.client(api_project["keys"]["marketer"]) as c:
        body = c.get("/api/v1/segments").json()
        assert body["run_id"] == run_id
        assert {s["segment"]: s["customers"] for s in body["segments"]} == counted
        assert sum(s["share"] for s in body["segments"]) == pytest.approx(1.0)
        one = c.get(f"/api/v1/segments/{api_project['segment']}").json()
        assert one["customers"] == counted[api_project["segment"]] and one["run_id"] == run_id
        assert "no segment 'nope'" in _problem(c.get("/api/v1/segments/nope"), 404)["detail"]


def test_runs_and_their_lineage(api_project, live_api) -> None:
    recorded = _sql(api_project, "select run_id, status from audit.runs order by started_at desc")
    with live_api.client(api_project["keys"]["service"]) as c:
        body = c.get("/api/v1/runs", params={"limit": 100}).json()
        assert [(r["run_id"], r["status"]) for r in body["runs"]] == recorded
        second = c.get("/api/v1/runs", params={"limit": 1, "offset": 1}).json()["runs"]
        assert [r["run_id"] for r in second] == [recorded[1][0]]
        ((finished, stages),) = _sql(
            api_project,
            "select run_id, json_keys(stages::json) from audit.runs where command = 'clarion run' "
            "and status = 'completed' order by started_at desc limit 1",
        )
        one = c.get(f"/api/v1/runs/{finished}").json()
        assert one["status"] == "completed" and sorted(one["stages"]) == sorted(stages)
        lineage = c.get(f"/api/v1/runs/{finished}/lineage").json()
        folder = api_project["settings"].var_dir / "runs" / finished
        revisions = sorted(p.name for p in folder.glob("manifest*.json"))
        assert (
            lineage["revision"] == revisions[-1] if len(revisions) < 10 else lineage["revision"] in revisions
        )
        assert lineage["manifest"] == json.loads((folder / lineage["revision"]).read_text())
        _problem(c.get("/api/v1/runs/20990101T000000Z-00000000"), 404)
        _problem(c.get("/api/v1/runs/20990101T000000Z-00000000/lineage"), 404)
        assert _problem(c.get("/api/v1/runs", params={"limit": 0}), 422)["errors"][0]["field"].endswith(
            "limit"
        )


def test_models_and_cards_are_the_registrys(api_project, live_api) -> None:
    from models.registry import Registry

    registry = Registry(api_project["settings"].var_dir / "registry").root  # the folder of the model
    versions = sorted(p.name for p in registry.glob("v[0-9]*") if (p / "meta.json").exists())
    promoted = json.loads((registry / "index.json").read_text())["promoted"]
    with live_api.client(api_project["keys"]["approver"]) as c:
        body = c.get("/api/v1/models").json()
        assert sorted(v["version"] for v in body["versions"]) == versions and body["promoted"] == promoted
        card = c.get(f"/api/v1/models/{promoted}").json()
        assert card["promoted"] is True
        assert card["card"] == json.loads((registry / promoted / "card.json").read_text())
        _problem(c.get("/api/v1/models/v9999"), 404)
        _problem(c.get("/api/v1/models/.."), 404)


def test_quality_is_the_latest_gate_run_with_customers_by_pseudonym_only(api_project, live_api) -> None:
    ((run_id,),) = _sql(
        api_project,
        "select run_id from audit.quality_results group by 1 order by max(evaluated_at) desc limit 1",
    )
    counts = dict(
        _sql(
            api_project,
            "select suite, count(*) filter (where status = 'passed') from audit.quality_results "
            "where run_id = ? group by 1",
            [run_id],
        )
    )
    not_passed = _sql(
        api_project,
        "select count(*) from audit.quality_results where run_id = ? and status not in ('passed', 'skipped')",
        [run_id],
    )[0][0]
    with live_api.client(api_project["keys"]["marketer"]) as c:
        body = c.get("/api/v1/quality").json()
    assert body["run_id"] == run_id and {s["suite"]: s["passed"] for s in body["suites"]} == counts
    assert len(body["problems"]) == not_passed
    _no_contact_id(body)


def test_results_are_the_latest_measurement(api_project, live_api) -> None:
    ((results_run,),) = _sql(
        api_project, "select results_run_id from ml.campaign_experiments order by measured_at desc limit 1"
    )
    every = [c for (c,) in _sql(
        api_project,
        "select campaign from ml.campaign_experiments where results_run_id = ? order by 1",
        [results_run],
    )]  # fmt: skip
    # measured: a control group, or more than one variant (what `clarion results` lists)
    measured = [c for (c,) in _sql(
        api_project,
        "select campaign from ml.campaign_results where results_run_id = ? group by 1 "
        "having bool_or(arm = 'control') or count(*) filter (where arm = 'treatment') > 1 order by 1",
        [results_run],
    )]  # fmt: skip
    with live_api.client(api_project["keys"]["marketer"]) as c:
        body = c.get("/api/v1/results").json()
        assert body["results_run_id"] == results_run and body["total"] == len(measured)
        assert [x["campaign"] for x in body["campaigns"]] == measured[:50]
        listed, offset = [], 0
        while True:
            page = c.get("/api/v1/results", params={"all": "true", "limit": 100, "offset": offset}).json()
            listed += [x["campaign"] for x in page["campaigns"]]
            offset += 100
            if offset >= page["total"]:
                break
        assert listed == every
        one = c.get("/api/v1/results", params={"campaign": every[0]}).json()
        assert [x["campaign"] for x in one["campaigns"]] == [every[0]] and one["campaigns"][0]["arms"]
        _problem(c.get("/api/v1/results", params={"campaign": "no-such-campaign"}), 404)
        _no_contact_id(body)


# -- drafts ---------------------------------------------------------------------------------------
def test_drafts_list_and_detail(api_project, live_api) -> None:
    campaign = api_project["campaign"]
    stored = _sql(
        api_project,
        "select draft_id, status, content_sha256 from content.drafts where campaign = ? order by 1",
        [campaign],
    )
    assert stored
    with live_api.client(api_project["keys"]["marketer"]) as c:
        body = c.get("/api/v1/drafts", params={"campaign": campaign}).json()
        assert sorted((d["draft_id"], d["status"], d["content_sha256"]) for d in body["drafts"]) == stored
        assert body["total"] == len(stored)
        pending = c.get("/api/v1/drafts", params={"campaign": campaign, "status": "pending"}).json()
        assert pending["total"] == sum(s == "pending" for _, s, _ in stored)
        page = c.get("/api/v1/drafts", params={"campaign": campaign, "limit": 1}).json()
        assert len(page["drafts"]) == 1 and page["total"] == len(stored)
        did = stored[0][0]
        one = c.get(f"/api/v1/drafts/{did}").json()
        assert one["draft_id"] == did and one["checks"] and one["provenance"]["brief"]["name"] == campaign
        assert isinstance(one["ai_generated"], bool) and one["brief"]["name"] == campaign
        assert one["brief"]["unchanged"] is True
        _no_contact_id(one)
        _problem(c.get("/api/v1/drafts/nope"), 404)
    with live_api.client(api_project["keys"]["service"]) as c:
        assert "read:drafts" in _problem(c.get("/api/v1/drafts"), 403)["detail"]


# -- snapshot isolation ---------------------------------------------------------------------------
def test_a_write_in_progress_never_shows_and_a_published_one_does(api_project, tmp_path: Path) -> None:
    """While a writer holds the lock and has changed tables, the API serves the snapshot before; once
    the session ends the new snapshot is served, including a customer removed from it (404)."""
    from clarion.api import create_app
    from clarion.config import load_settings

    root = tmp_path / "project"
    _copy_project(api_project, root)
    settings = load_settings(root / "clarion.yaml", env={})
    wh = Warehouse.from_settings(settings)
    wh.ensure()  # publishes this copy's first snapshot
    name = _pseudonyms({"settings": settings})
    seg = api_project["segment"]
    (gone,) = _sql({"settings": settings}, "select min(contact_id) from ml.customer_scores")[0]
    with LiveServer(create_app(settings)) as server, server.client(api_project["keys"]["engineer"]) as c:
        before = {s["segment"]: s["customers"] for s in c.get("/api/v1/segments").json()["segments"]}
        assert c.get(f"/api/v1/customers/{name(gone)}").status_code == 200
        with wh.writing("test writer"):
            with wh.connect("change") as con:
                con.execute("update ml.segments set customers = customers + 1000 where segment = ?", [seg])
            with wh.connect("erase one") as con:
                con.execute("delete from ml.customer_scores where contact_id = ?", [gone])
                con.execute("delete from marts.dim_customers where contact_id = ?", [gone])
            time.sleep(0.7)  # longer than the reader's look at CURRENT
            during = {s["segment"]: s["customers"] for s in c.get("/api/v1/segments").json()["segments"]}
            assert during == before, "a write in progress showed in the API"
            assert c.get(f"/api/v1/customers/{name(gone)}").status_code == 200
        deadline = time.monotonic() + 5
        while True:
            after = {s["segment"]: s["customers"] for s in c.get("/api/v1/segments").json()["segments"]}
            if after != before or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert after == {**before, seg: before[seg] + 1000}
        assert c.get(f"/api/v1/customers/{name(gone)}").status_code == 404
        assert c.get(f"/api/v1/customers/by-contact-id/{gone}").status_code == 404


@pytest.mark.slow
def test_next_best_action_is_the_stored_decision_with_its_reasons(api_project, tmp_path: Path) -> None:
    """After `clarion nba` on a copy of the project: every customer's next best action in the API is
    their stored decision, explained in the words `clarion explain` prints."""
    from project_helpers import run_pipeline_in

    from clarion.api import create_app
    from clarion.config import load_settings
    from clarion.nba.views import decision

    root = tmp_path / "project"
    _copy_project(api_project, root)
    assert run_pipeline_in(root, stages=["nba"])["status"] == "completed"
    settings = load_settings(root / "clarion.yaml", env={})
    project = {"settings": settings}
    stored = _sql(
        project,
        "select contact_id, action, channel, nba_run_id, reason from ml.next_best_action "
        "qualify row_number() over (partition by contact_id order by decided_at desc) = 1 order by 1",
    )
    assert len({reason for *_, reason in stored}) > 1  # decided for several reasons
    name = _pseudonyms(project)
    with LiveServer(create_app(settings)) as server, server.client(api_project["keys"]["marketer"]) as c:
        for cid, action, channel, nba_run, _ in stored:
            got = c.get(f"/api/v1/customers/{name(cid)}").json()["next_best_action"]
            assert (got["action"], got["channel"], got["nba_run_id"]) == (action, channel, nba_run)
            assert got["explanation"] == decision(settings, cid)["explanation"]
            _no_contact_id(got)


def test_a_request_keeps_its_snapshot_while_a_newer_one_is_published(project) -> None:
    """A cursor taken before a snapshot switch keeps working (the switch used to close it under the
    request: "Connection already closed")."""
    from clarion.api.reads import Reader

    settings = project()
    wh = Warehouse.from_settings(settings)
    with wh.connect() as con:
        con.execute("create table audit.t as select 1 as x")
    reader = Reader(settings)
    first = reader.path
    with reader.cursor() as cur:
        with wh.connect() as con:
            con.execute("insert into audit.t values (2)")
        time.sleep(0.6)  # the reader looks at CURRENT at most twice a second
        with reader.cursor() as fresh:
            assert fresh.execute("select count(*) from audit.t").fetchone() == (2,)
        assert cur.execute("select count(*) from audit.t").fetchone() == (1,)
        assert not first.exists()  # pruned, and still readable while open
    reader.close()
