"""The audit log: a hash chain in a real DuckDB file, its head outside it, every kind of tampering
named; and the events the pipeline, the approval workflow, exports and the registry record."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pytest

from clarion import audit
from clarion.audit import AuditLog, event_hash, verify
from clarion.config import load_settings
from clarion.warehouse import Warehouse

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def chain(tmp_path: Path) -> tuple[Warehouse, AuditLog]:
    """Five events in a fresh warehouse, appended in one connection."""
    wh = Warehouse(tmp_path / "var" / "warehouse.duckdb")
    log = AuditLog(tmp_path / "var")
    with wh.connect() as con:
        log.record(con, audit.RUN_STARTED, "r1", run_id="r1", details={"command": "clarion run"})
        log.record(con, audit.GATE_PASSED, "raw", run_id="r1", details={"passed": 12, "failed": 0})
        log.record(con, audit.MODEL_PROMOTED, "v0002", run_id="r1", details={"roc_auc": 0.71})
        log.record(con, audit.DRAFT_APPROVED, "d1", actor="marketing-lead", details={"via": "cli"})
        log.record(con, audit.RUN_FINISHED, "r1", run_id="r1", details={"status": "completed"})
    return wh, log


def _verify(wh: Warehouse, log: AuditLog) -> dict:
    with wh.connect() as con:
        return log.verify(con)


def _sql(wh: Warehouse, *statements: str) -> None:
    with wh.connect() as con:
        for sql in statements:
            con.execute(sql)


def _row(wh: Warehouse, seq: int) -> tuple:
    with wh.connect() as con:
        return con.execute(f"select {audit.COLUMNS} from audit.events where seq = ?", [seq]).fetchone()


# -- the chain -----------------------------------------------------------------------------------
def test_a_chain_of_events_verifies_and_the_head_names_its_end(chain) -> None:
    wh, log = chain
    result = _verify(wh, log)
    assert result["ok"] and result["problems"] == [] and result["events"] == 5
    with wh.connect() as con:
        rows = con.execute(
            "select seq, prev_hash, hash, actor, details from audit.events order by seq"
        ).fetchall()
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0][1] == audit.GENESIS
    assert all(rows[i][1] == rows[i - 1][2] for i in range(1, 5))  # each links to the one before
    assert rows[3][3] == "marketing-lead" and rows[0][3] == audit.default_actor()
    assert json.loads(rows[2][4]) == {"roc_auc": 0.71}
    head = json.loads(log.head_file.read_text())
    assert (head["seq"], head["hash"]) == (5, rows[4][2]) == (result["head"]["seq"], result["head"]["hash"])


def test_the_hash_is_sha256_of_the_canonical_event_with_microsecond_utc_time(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "w.duckdb")
    log = AuditLog(tmp_path / "var")
    with wh.connect() as con:
        event = log.record(
            con, audit.EXPORT_WRITTEN, "e1", details={"b": np.int64(3), "a": float("nan"), "z": [1.5]}
        )
        at_us, details = con.execute('select epoch_us("at"), details from audit.events').fetchone()
    assert event["details"] == {"a": None, "b": 3, "z": [1.5]} == json.loads(details)
    assert event["at"] == datetime.fromtimestamp(at_us / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    canonical = json.dumps(
        {
            "seq": 1,
            "at": event["at"],
            "actor": event["actor"],
            "action": "export.written",
            "run_id": None,
            "subject": "e1",
            "details": {"a": None, "b": 3, "z": [1.5]},
            "prev_hash": audit.GENESIS,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    assert event["hash"] == hashlib.sha256(canonical.encode()).hexdigest()
    with wh.connect() as con, pytest.raises(ValueError, match="unknown audit action"):
        log.record(con, "draft.deleted", "d1")


def test_an_empty_log_verifies_with_no_events(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "bare.duckdb"))  # not even the table
    try:
        assert verify(con, tmp_path / "var" / "audit" / "head.json") == {
            "ok": True,
            "events": 0,
            "problems": [],
            "head": None,
            "authenticity": {"keyed_events": 0, "checked": False, "note": None},
        }
        audit.ensure_table(con)
        assert verify(con, tmp_path / "var" / "audit" / "head.json")["ok"]
    finally:
        con.close()


def test_two_warehouse_connections_in_sequence_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "var" / "warehouse.duckdb"
    log = AuditLog(tmp_path / "var")
    for run in ("r1", "r2"):
        with Warehouse(path).connect(f"run {run}") as con:
            log.record(con, audit.RUN_STARTED, run, run_id=run)
            log.record(con, audit.RUN_FINISHED, run, run_id=run)
    with Warehouse(path).connect() as con:
        rows = con.execute("select seq, prev_hash, hash, run_id from audit.events order by seq").fetchall()
        assert log.verify(con)["ok"]
    assert [(r[0], r[3]) for r in rows] == [(1, "r1"), (2, "r1"), (3, "r2"), (4, "r2")]
    assert rows[2][1] == rows[1][2]


# -- tampering -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "change",
    [
        """update audit.events set details = '{"passed":12,"failed":3}' where seq = 2""",
        "update audit.events set actor = 'someone-else' where seq = 2",
        'update audit.events set "at" = "at" + interval 1 microsecond where seq = 2',
    ],
    ids=["details", "actor", "time"],
)
def test_an_edited_event_is_named(chain, change: str) -> None:
    wh, log = chain
    _sql(wh, change)
    result = _verify(wh, log)
    assert not result["ok"]
    assert result["problems"] == ["seq 2: hash does not match its content (edited)"]


def test_a_deleted_middle_event_is_named(chain) -> None:
    wh, log = chain
    _sql(wh, "delete from audit.events where seq = 3")
    result = _verify(wh, log)
    assert not result["ok"] and result["events"] == 4
    assert result["problems"] == ["seq 3 missing (deleted): the log jumps from seq 2 to 4"]


def test_deleted_last_events_are_caught_by_the_head_and_stay_visible_after_the_next_record(chain) -> None:
    wh, log = chain
    _sql(wh, "delete from audit.events where seq >= 4")
    result = _verify(wh, log)
    assert result["events"] == 3 and result["head"]["seq"] == 3
    assert result["problems"] == [
        "the log ends at seq 3 but the head file says 5 (events deleted at the end)"
    ]
    # the next event continues from the head, so a fresh, whole-looking chain cannot hide the cut
    with wh.connect() as con:
        event = log.record(con, audit.RUN_STARTED, "r2", run_id="r2")
    assert event["seq"] == 6
    assert _verify(wh, log)["problems"] == ["seq 4..5 missing (deleted): the log jumps from seq 3 to 6"]


def test_a_deleted_head_file_is_reported(chain) -> None:
    wh, log = chain
    log.head_file.unlink()
    result = _verify(wh, log)
    assert not result["ok"] and "no head file" in result["problems"][0] and "seq 5" in result["problems"][0]


def test_reordered_or_renumbered_events_are_named(chain) -> None:
    wh, log = chain
    _sql(  # swap 2 and 3
        wh,
        "update audit.events set seq = 100 where seq = 2",
        "update audit.events set seq = 2 where seq = 3",
        "update audit.events set seq = 3 where seq = 100",
    )
    assert _verify(wh, log)["problems"] == [
        "seq 2: hash does not match its content (edited)",
        "prev_hash of seq 2 does not match seq 1",
        "seq 3: hash does not match its content (edited)",
        "prev_hash of seq 3 does not match seq 2",
        "prev_hash of seq 4 does not match seq 3",
        "seq 2: its hash differs from the one Clarion recorded when it wrote the event "
        "(rewritten afterwards; 2 events up to seq 3 differ)",
    ]


def test_renumbering_to_close_the_gap_of_a_deletion_is_named(chain) -> None:
    wh, log = chain
    _sql(
        wh,
        "delete from audit.events where seq = 3",
        "update audit.events set seq = 3 where seq = 4",
        "update audit.events set seq = 4 where seq = 5",
    )
    problems = _verify(wh, log)["problems"]
    assert "seq 3: hash does not match its content (edited)" in problems
    assert "seq 4: hash does not match its content (edited)" in problems
    assert "prev_hash of seq 3 does not match seq 2" in problems
    assert "the log ends at seq 4 but the head file says 5 (events deleted at the end)" in problems


def _forge(wh: Warehouse, seq: int, prev_hash: str, actor: str = "forger") -> str:
    """An event with a correct hash of its own content."""
    at = datetime.now(UTC)
    at_us = audit._epoch_us(at)
    details = {"status": "completed"}
    digest = event_hash(seq, at_us, actor, audit.RUN_FINISHED, "rX", "rX", details, prev_hash)
    with wh.connect() as con:
        con.execute(
            "insert into audit.events values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [seq, at, actor, audit.RUN_FINISHED, "rX", "rX", json.dumps(details), prev_hash, digest],
        )
    return digest


def test_a_forged_replacement_with_its_own_hash_but_a_wrong_prev_hash_is_named(chain) -> None:
    wh, log = chain
    _sql(wh, "delete from audit.events where seq = 3")
    _forge(wh, 3, "f" * 64)
    assert _verify(wh, log)["problems"] == [
        "prev_hash of seq 3 does not match seq 2",
        "prev_hash of seq 4 does not match seq 3",
        "seq 3: its hash differs from the one Clarion recorded when it wrote the event "
        "(rewritten afterwards)",
    ]


def test_a_forged_event_at_the_end_is_named_even_with_the_right_prev_hash(chain) -> None:
    wh, log = chain
    last_hash = _row(wh, 5)[-1]
    _forge(wh, 6, "0" * 64)
    problems = _verify(wh, log)["problems"]
    assert problems[0] == "prev_hash of seq 6 does not match seq 5"
    assert "past the head file's seq 5" in problems[1]
    _sql(wh, "delete from audit.events where seq = 6")
    _forge(wh, 6, last_hash)  # a perfect link: only the head knows the log ended at 5
    assert ["past the head file's seq 5" in p for p in _verify(wh, log)["problems"]] == [True]


def test_a_replaced_last_event_with_a_recomputed_chain_is_caught_by_the_head(chain) -> None:
    wh, log = chain
    prev = _row(wh, 4)[-1]
    _sql(wh, "delete from audit.events where seq = 5")
    _forge(wh, 5, prev)
    assert _verify(wh, log)["problems"] == [
        "seq 5: its hash differs from the one Clarion recorded when it wrote the event "
        "(rewritten afterwards)",
        "seq 5: its hash differs from the head file's (the last event was replaced)",
    ]


def _rewrite_from(wh: Warehouse, seq: int, key: bytes | None = None) -> None:
    """An insider's rewrite: change the actor of event SEQ and recompute its hash and every later one."""
    with wh.connect() as con:
        rows = con.execute(f"select {audit.COLUMNS} from audit.events where seq >= ? order by seq", [seq])
        rows = rows.fetchall()
        prev = con.execute("select hash from audit.events where seq = ?", [seq - 1]).fetchone()
        prev = prev[0] if prev else audit.GENESIS
        for i, (s, at_us, actor, action, run_id, subject, details, _, _) in enumerate(rows):
            actor = "someone-else" if i == 0 else actor
            details = json.loads(details) if details else None
            digest = event_hash(s, at_us, actor, action, run_id, subject, details, prev, key=key)
            con.execute(
                "update audit.events set actor = ?, prev_hash = ?, hash = ? where seq = ?",
                [actor, prev, digest, s],
            )
            prev = digest


def test_a_rewritten_history_is_named_after_the_app_appends_a_genuine_event(chain) -> None:
    wh, log = chain
    _rewrite_from(wh, 2)
    with wh.connect() as con:
        log.record(con, audit.RUN_STARTED, "r2", run_id="r2")
    result = _verify(wh, log)
    assert not result["ok"]
    assert result["problems"] == [
        "prev_hash of seq 6 does not match seq 5",  # the genuine event continues from the head
        "seq 2: its hash differs from the one Clarion recorded when it wrote the event "
        "(rewritten afterwards; 4 events up to seq 5 differ)",
    ]


def test_a_rewritten_history_with_a_forged_extra_event_is_named_after_a_genuine_append(chain) -> None:
    """The forger also appends one linked event, so the table runs past the head; the app's next
    genuine event then moves the head to a chain that is whole from end to end."""
    wh, log = chain
    _rewrite_from(wh, 2)
    _forge(wh, 6, _row(wh, 5)[-1])
    with wh.connect() as con:
        log.record(con, audit.RUN_STARTED, "r2", run_id="r2")
    result = _verify(wh, log)
    assert not result["ok"]
    assert result["problems"][0] == (
        "seq 2: its hash differs from the one Clarion recorded when it wrote the event "
        "(rewritten afterwards; 4 events up to seq 5 differ)"
    )


def _cover_tracks(wh: Warehouse, log: AuditLog) -> None:
    """What an insider with write access to var/ does next: head file and journal made to agree."""
    with wh.connect() as con:
        rows = con.execute("select seq, hash from audit.events order by seq").fetchall()
        where = audit._database_path(con)
    log.journal.write_text(
        "".join(json.dumps({"seq": s, "hash": h, "warehouse": where}) + "\n" for s, h in rows)
    )
    head = json.loads(log.head_file.read_text())
    log.head_file.write_text(json.dumps({**head, "seq": rows[-1][0], "hash": rows[-1][1]}))


def test_an_anchor_kept_elsewhere_names_a_rewrite_that_head_and_journal_no_longer_show(
    chain, tmp_path
) -> None:
    wh, log = chain
    kept = AuditLog(log.head_file.parent.parent, anchor_file=tmp_path / "elsewhere" / "anchors.jsonl")
    with wh.connect() as con:
        anchored = kept.anchor(con)
    assert anchored["ok"] and (anchored["seq"], anchored["hash"]) == (5, _row(wh, 5)[-1])
    assert anchored["anchor"] == f"5:{_row(wh, 5)[-1]}"
    [line] = (tmp_path / "elsewhere" / "anchors.jsonl").read_text().splitlines()
    assert (json.loads(line)["seq"], json.loads(line)["hash"]) == (5, _row(wh, 5)[-1])

    _rewrite_from(wh, 2)
    _cover_tracks(wh, log)
    assert _verify(wh, log)["ok"]  # without an anchor the forgery is consistent
    with wh.connect() as con:
        expected = log.verify(con, expect_head=(5, anchored["hash"]))
        from_file = kept.verify(con)
    named = (
        f"seq 5: its hash differs from the anchor from --expect-head ({anchored['hash'][:16]}...; "
        "the log was rewritten since the anchor was taken)"
    )
    assert expected["problems"] == [named]
    assert from_file["problems"] == [named.replace("--expect-head", f"{kept.anchor_file} line 1")]
    with wh.connect() as con:  # a broken log is not anchored
        assert not kept.anchor(con)["ok"]
    assert len((tmp_path / "elsewhere" / "anchors.jsonl").read_text().splitlines()) == 1
    with kept.anchor_file.open("a") as fh:  # a damaged anchor is named, not skipped
        fh.write('{"seq": "five"}\n')
    with wh.connect() as con:
        damaged = kept.verify(con)["problems"]
    assert damaged[-1] == (
        f"the anchor in {kept.anchor_file} line 2 cannot be read (damaged): expected JSON with seq and hash"
    )


def test_an_anchor_past_the_end_names_events_cut_with_their_head_and_journal(chain) -> None:
    wh, log = chain
    digest = _row(wh, 5)[-1]
    _sql(wh, "delete from audit.events where seq >= 4")
    _cover_tracks(wh, log)
    assert _verify(wh, log)["ok"]
    with wh.connect() as con:
        result = log.verify(con, expect_head=(5, digest))
    assert result["problems"] == [
        "the log ends at seq 3 but the anchor from --expect-head says seq 5 (events deleted at the end)"
    ]


def test_an_anchor_is_seq_colon_full_hash() -> None:
    assert audit.parse_anchor(" 12:" + "a" * 64) == (12, "a" * 64)
    for bad in ("12", "x:" + "a" * 64, "0:" + "a" * 64, "12:abc", "12:" + "A" * 64):
        with pytest.raises(ValueError, match="not an anchor: give SEQ:HASH"):
            audit.parse_anchor(bad)


KEY = b"correct horse battery staple"


@pytest.fixture
def keyed(tmp_path: Path) -> tuple[Warehouse, AuditLog]:
    """Two events written before a key was set, then three with it."""
    wh = Warehouse(tmp_path / "var" / "warehouse.duckdb")
    with wh.connect() as con:
        plain = AuditLog(tmp_path / "var")
        plain.record(con, audit.RUN_STARTED, "r1", run_id="r1")
        plain.record(con, audit.RUN_FINISHED, "r1", run_id="r1")
        log = AuditLog(tmp_path / "var", key=KEY, key_env="TEST_AUDIT_HMAC_KEY")
        log.record(con, audit.RUN_STARTED, "r2", run_id="r2")
        log.record(con, audit.DRAFT_APPROVED, "d1", actor="marketing-lead", details={"via": "cli"})
        log.record(con, audit.RUN_FINISHED, "r2", run_id="r2")
    return wh, log


def test_with_a_key_each_event_hash_is_the_hmac_sha256_of_the_canonical_event(keyed) -> None:
    wh, log = keyed
    seq, at_us, actor, action, run_id, subject, details, prev_hash, digest = _row(wh, 4)
    canonical = json.dumps(
        {
            "seq": seq,
            "at": datetime.fromtimestamp(at_us / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "actor": actor,
            "action": action,
            "run_id": run_id,
            "subject": subject,
            "details": json.loads(details),
            "prev_hash": prev_hash,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    assert digest == "hmac:" + hmac.new(KEY, canonical.encode(), hashlib.sha256).hexdigest()
    assert prev_hash == _row(wh, 3)[-1] and _row(wh, 3)[-1].startswith("hmac:")
    assert len(_row(wh, 2)[-1]) == 64  # written before the key: plain sha256
    result = _verify(wh, log)
    assert result["ok"], result["problems"]
    assert result["authenticity"] == {"keyed_events": 3, "checked": True, "note": None}


def test_a_writer_without_the_key_cannot_forge_keyed_events(keyed) -> None:
    wh, log = keyed
    _rewrite_from(wh, 4)  # plain sha256 for 4 and 5, a whole chain
    _cover_tracks(wh, log)
    assert _verify(wh, log)["problems"] == [
        "seq 4: a plain sha256 after seq 3's HMAC (written without the key; 2 such events)"
    ]
    _rewrite_from(wh, 4, key=b"a guess")
    _cover_tracks(wh, log)
    assert _verify(wh, log)["problems"] == [
        "seq 4: its HMAC does not match with the key in $TEST_AUDIT_HMAC_KEY (edited, or written with "
        "another key; 2 keyed events fail, up to seq 5)"
    ]


def test_a_whole_log_rewritten_as_plain_sha256_is_reported_when_a_key_is_set(keyed) -> None:
    wh, log = keyed
    _rewrite_from(wh, 1)
    _cover_tracks(wh, log)
    assert _verify(wh, log)["problems"] == [
        "none of the 5 events carries an HMAC of the key in $TEST_AUDIT_HMAC_KEY: written before the key "
        "was set, or rewritten without it (the next event Clarion records is keyed)"
    ]


def test_verify_without_the_key_says_it_cannot_check_authenticity(keyed) -> None:
    wh, _ = keyed
    log = AuditLog(wh.path.parent, key_env="TEST_AUDIT_HMAC_KEY")  # the variable is not set
    result = _verify(wh, log)
    assert result["ok"] and result["authenticity"]["checked"] is False
    assert result["authenticity"]["note"] == (
        "3 events carry an HMAC that cannot be checked without the key (set $TEST_AUDIT_HMAC_KEY): "
        "their links are checked, their authenticity and content are not"
    )
    with (
        wh.connect() as con,
        pytest.raises(audit.AuditKeyError, match="TEST_AUDIT_HMAC_KEY, which is not"),
    ):
        log.record(con, audit.RUN_STARTED, "r3", run_id="r3")


@pytest.mark.usefixtures("prefect_server")
def test_the_key_can_live_in_a_prefect_secret_block(tmp_path: Path) -> None:
    from prefect.blocks.system import Secret

    Secret(value=KEY.decode()).save("clarion-test-audit-key", overwrite=True)
    wh = Warehouse(tmp_path / "var" / "warehouse.duckdb")
    log = AuditLog(tmp_path / "var", key_secret="clarion-test-audit-key")
    with wh.connect() as con:
        event = log.record(con, audit.RUN_STARTED, "r1", run_id="r1")
    checked = _verify(wh, AuditLog(tmp_path / "var", key=KEY))
    assert event["hash"].startswith("hmac:") and checked["ok"] and checked["authenticity"]["checked"]
    missing = AuditLog(tmp_path / "var", key_secret="no-such-block")
    with wh.connect() as con, pytest.raises(audit.AuditKeyError, match="'no-such-block', which is not set"):
        missing.record(con, audit.RUN_FINISHED, "r1", run_id="r1")
    assert "1 events carry an HMAC that cannot be checked" in _verify(wh, missing)["authenticity"]["note"]


def test_a_wrong_key_names_the_first_keyed_event(keyed, caplog) -> None:
    wh, _ = keyed
    wrong = AuditLog(wh.path.parent, key=b"not the key", key_env="TEST_AUDIT_HMAC_KEY")
    caplog.set_level("DEBUG")
    result = _verify(wh, wrong)
    assert result["problems"] == [
        "seq 3: its HMAC does not match with the key in $TEST_AUDIT_HMAC_KEY (edited, or written with "
        "another key; 3 keyed events fail, up to seq 5)"
    ]
    seen = json.dumps(result) + caplog.text + repr(wrong) + json.dumps(_verify(wh, keyed[1]))
    assert "not the key" not in seen and KEY.decode() not in seen


# -- where events are recorded -------------------------------------------------------------------
def _events(settings, action: str | None = None) -> list[dict]:
    con = duckdb.connect(str(settings.warehouse.path), read_only=True)
    try:
        rows = con.execute(
            "select seq, actor, action, run_id, subject, details from audit.events "
            "where ? is null or action = ? order by seq",
            [action, action],
        ).fetchall()
    finally:
        con.close()
    keys = ("seq", "actor", "action", "run_id", "subject", "details")
    return [dict(zip(keys, (*r[:5], json.loads(r[5]) if r[5] else None), strict=True)) for r in rows]


def _verified(settings) -> dict:
    with Warehouse.from_settings(settings).connect() as con:
        return AuditLog.for_settings(settings).verify(con)


@pytest.fixture
def content_project(tmp_path: Path, monkeypatch):
    """A warehouse holding three hand-made drafts of the repository's briefs (no model, no pipeline)."""
    from clarion.content import runner
    from models.content.drafts import content_hash

    shutil.copytree(REPO / "campaigns", tmp_path / "campaigns")
    (tmp_path / "clarion.yaml").write_text("warehouse:\n  path: var/warehouse.duckdb\n")
    monkeypatch.chdir(tmp_path)
    settings = load_settings(tmp_path / "clarion.yaml", env={})
    content = {
        "email_subject": "We saved something for you",
        "email_body": "Hi {first_name}, 15% off your next order. Unsubscribe any time.",
    }
    now = datetime.now(UTC)
    with Warehouse.from_settings(settings).connect() as con:
        runner.ensure_tables(con)
        for did, campaign in (
            ("d-approve", "winback-summer"),
            ("d-reject", "winback-summer"),
            ("d-held", "welcome-new"),
        ):
            con.execute(
                "insert into content.drafts values (?, 'c1', 's1', ?, 'loyal', 'email', 'a', 'pending', "
                "?, ?, false, true, '[]', '{}', ?, ?)",
                [did, campaign, json.dumps(content), content_hash(content), now, now],
            )
    return settings, content_hash(content)


def test_decisions_edits_and_exports_are_recorded_with_who_and_what_but_no_free_text(content_project) -> None:
    from clarion.content import runner

    settings, sha = content_project
    runner.decide(
        settings, "d-approve", "approve", "compliance-officer", "ok for July, call Jane on 0171 555"
    )
    runner.decide(
        settings, "d-reject", "reject", "marketing-lead", "tone is off, Jane Doe said", via="prefect"
    )
    edited = runner.edit(
        settings, "d-approve", "email_subject", "We kept something for you", "marketing-lead"
    )
    result = runner.export(settings, "welcome-new")
    [approved] = _events(settings, audit.DRAFT_APPROVED)
    assert (approved["actor"], approved["subject"]) == ("compliance-officer", "d-approve")
    assert approved["details"]["content_sha256"] == sha and approved["details"]["via"] == "cli"
    [rejected] = _events(settings, audit.DRAFT_REJECTED)
    assert (rejected["actor"], rejected["subject"], rejected["details"]["via"]) == (
        "marketing-lead",
        "d-reject",
        "prefect",
    )
    [edit] = _events(settings, audit.DRAFT_EDITED)
    assert edit["actor"] == "marketing-lead" and edit["details"]["part"] == "email_subject"
    assert (edit["details"]["previous_sha256"], edit["details"]["content_sha256"]) == (
        sha,
        edited["content_sha256"],
    )
    [written] = _events(settings, audit.EXPORT_WRITTEN)
    [export] = result["exports"]
    assert written["subject"] == "c1-welcome-new-email"
    assert written["details"]["recipients"] == export["recipients"] == 0
    assert written["details"]["drafts_held"] == ["d-held"]
    assert written["details"]["file_sha256"] == hashlib.sha256(Path(export["path"]).read_bytes()).hexdigest()
    everything = json.dumps(_events(settings))
    assert "Jane" not in everything and "0171" not in everything and "kept something" not in everything
    assert _verified(settings)["ok"]


def test_the_operating_system_user_is_recorded_beside_the_claimed_approver(content_project) -> None:
    import getpass
    import os

    from clarion.content import runner

    settings, _ = content_project
    me, uid = getpass.getuser(), os.getuid()
    assert me != "compliance-officer"  # the claimed name and the account differ
    runner.decide(settings, "d-approve", "approve", "compliance-officer", None)
    runner.decide(settings, "d-reject", "reject", "marketing-lead", "too long")
    runner.edit(settings, "d-approve", "email_subject", "A new subject for you", "marketing-lead")
    events = {e["action"]: e for e in _events(settings)}
    for action, claimed in (
        (audit.DRAFT_APPROVED, "compliance-officer"),
        (audit.DRAFT_REJECTED, "marketing-lead"),
        (audit.DRAFT_EDITED, "marketing-lead"),
    ):
        event = events[action]
        assert (event["actor"], event["details"]["os_user"], event["details"]["os_uid"]) == (claimed, me, uid)
    with duckdb.connect(str(settings.warehouse.path), read_only=True) as con:
        rows = con.execute(
            "select decision, decided_by, os_user from content.decisions order by decided_at"
        ).fetchall()
        provenance = json.loads(
            con.execute("select provenance from content.drafts where draft_id = 'd-approve'").fetchone()[0]
        )
    assert rows == [
        ("approve", "compliance-officer", me),
        ("reject", "marketing-lead", me),
        ("edit", "marketing-lead", me),
    ]
    assert [(e["by"], e["os_user"]) for e in provenance["edits"]] == [("marketing-lead", me)]


def test_a_registry_change_by_hand_is_recorded(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "clarion.yaml").write_text("warehouse:\n  path: var/warehouse.duckdb\n")
    monkeypatch.chdir(tmp_path)
    settings = load_settings(tmp_path / "clarion.yaml", env={})
    audit.record_registry_change(settings, "promote", "v0003")
    audit.record_registry_change(settings, "rollback", "v0002")
    assert [(e["action"], e["subject"], e["details"]["via"]) for e in _events(settings)] == [
        ("model.promoted", "v0003", "clarion models promote"),
        ("model.rollback", "v0002", "clarion models rollback"),
    ]
    assert _verified(settings)["ok"]
    with pytest.raises(ValueError, match="promote or rollback"):
        audit.record_registry_change(settings, "delete", "v0002")


@pytest.mark.usefixtures("prefect_server")
def test_pipeline_runs_record_start_finish_failure_and_config_changes(project, monkeypatch) -> None:
    from flows import pipeline as pipeline_module
    from flows.pipeline import Stage, pipeline

    settings = project()
    first = pipeline(config_path="clarion.yaml", stages=["prepare"])
    [started] = _events(settings, audit.RUN_STARTED)
    assert started["run_id"] == started["subject"] == first["run_id"]
    assert started["details"]["command"] == first["command"]
    assert started["details"]["config_hash"] == settings.fingerprint()
    [finished] = _events(settings, audit.RUN_FINISHED)
    assert finished["run_id"] == first["run_id"] and finished["details"]["status"] == "completed"
    assert _events(settings, audit.CONFIG_CHANGED) == []  # the first run has nothing to differ from

    pipeline(config_path="clarion.yaml", stages=["prepare"])  # the same config again: no change
    assert _events(settings, audit.CONFIG_CHANGED) == []

    config = Path("clarion.yaml")
    config.write_text(
        config.read_text().replace(
            "  path: var/warehouse.duckdb\n", "  path: var/warehouse.duckdb\n  threads: 1\n"
        )
    )
    third = pipeline(config_path="clarion.yaml", stages=["prepare"])
    new = load_settings("clarion.yaml", env={}).fingerprint()
    [change] = _events(settings, audit.CONFIG_CHANGED)
    assert change["run_id"] == third["run_id"]
    assert change["details"]["from"] == settings.fingerprint() and change["details"]["to"] == new

    def broken(settings, run_id, **options):
        raise RuntimeError("customer jane@example.com broke it")

    monkeypatch.setattr(pipeline_module, "STAGES", [Stage("prepare", broken, "fails")])
    with pytest.raises(RuntimeError):
        pipeline(config_path="clarion.yaml", stages=["prepare"])
    [failed] = _events(settings, audit.RUN_FAILED)
    assert failed["details"] == {"status": "failed", "error": "RuntimeError", "stage": "prepare"}
    assert "jane" not in json.dumps(_events(settings))
    assert [e["action"] for e in _events(settings)].count(audit.RUN_STARTED) == 4
    assert _verified(settings)["ok"]


def test_the_cli_lists_events_and_verify_exits_5_on_tampering(chain, monkeypatch) -> None:
    from click.testing import CliRunner

    from clarion.cli import cli

    wh, _ = chain
    root = wh.path.parent.parent
    (root / "clarion.yaml").write_text("warehouse:\n  path: var/warehouse.duckdb\n")
    monkeypatch.chdir(root)
    ok = CliRunner().invoke(cli, ["audit", "verify"])
    assert ok.exit_code == 0 and "verified: 5 events" in ok.output
    listed = CliRunner().invoke(cli, ["audit", "log", "--action", "draft.approved", "--json"])
    assert listed.exit_code == 0, listed.output
    [event] = json.loads(listed.output)
    assert (event["seq"], event["actor"], event["subject"]) == (4, "marketing-lead", "d1")
    _sql(wh, "update audit.events set actor = 'someone-else' where seq = 4")
    broken = CliRunner().invoke(cli, ["audit", "verify"])
    assert broken.exit_code == 5
    assert "BROKEN" in broken.output and "seq 4: hash does not match its content (edited)" in broken.output


def test_the_cli_anchors_the_head_and_verify_checks_an_expected_head(chain, monkeypatch) -> None:
    from click.testing import CliRunner

    from clarion.cli import cli

    wh, log = chain
    root = wh.path.parent.parent
    (root / "clarion.yaml").write_text(
        "warehouse:\n  path: var/warehouse.duckdb\naudit:\n  anchor_file: anchors/audit.jsonl\n"
    )
    monkeypatch.chdir(root)
    out = CliRunner().invoke(cli, ["audit", "anchor", "--json"])
    assert out.exit_code == 0, out.output
    anchor = json.loads(out.output)
    assert anchor["anchor"] == f"5:{_row(wh, 5)[-1]}"
    assert Path(anchor["appended_to"]) == root / "anchors" / "audit.jsonl"
    text = CliRunner().invoke(cli, ["audit", "anchor"])
    assert text.exit_code == 0 and text.output.splitlines()[0] == anchor["anchor"]
    assert len((root / "anchors" / "audit.jsonl").read_text().splitlines()) == 2
    ok = CliRunner().invoke(cli, ["audit", "verify", "--expect-head", anchor["anchor"]])
    assert ok.exit_code == 0 and "extends the anchor seq 5" in ok.output
    bad = CliRunner().invoke(cli, ["audit", "verify", "--expect-head", "5:abc"])
    assert bad.exit_code == 2 and "not an anchor: give SEQ:HASH" in bad.output
    _rewrite_from(wh, 3)
    _cover_tracks(wh, log)
    broken = CliRunner().invoke(cli, ["audit", "verify"])  # the anchors in audit.anchor_file
    assert broken.exit_code == 5
    assert "seq 5: its hash differs from the anchor from" in broken.output and "line 1" in broken.output


def test_the_cli_signs_events_with_the_key_named_in_settings(tmp_path: Path, monkeypatch) -> None:
    from click.testing import CliRunner

    from clarion.cli import cli

    (tmp_path / "clarion.yaml").write_text(
        "warehouse:\n  path: var/warehouse.duckdb\naudit:\n  hmac_key_env: TEST_AUDIT_HMAC_KEY\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TEST_AUDIT_HMAC_KEY", KEY.decode())
    settings = load_settings(tmp_path / "clarion.yaml", env={})
    audit.record_registry_change(settings, "promote", "v0003")
    [event] = _events(settings)
    listed = CliRunner().invoke(cli, ["audit", "log", "--json"])
    assert json.loads(listed.output)[0]["seq"] == event["seq"], listed.output
    ok = CliRunner().invoke(cli, ["audit", "verify"])
    assert ok.exit_code == 0 and ok.output.startswith("audit log verified: 1 events"), ok.output
    assert "authenticity checked with the key" in ok.output
    monkeypatch.delenv("TEST_AUDIT_HMAC_KEY")
    unchecked = CliRunner().invoke(cli, ["audit", "verify"])
    assert unchecked.exit_code == 0 and "cannot be checked without the key" in unchecked.output
    monkeypatch.setenv("TEST_AUDIT_HMAC_KEY", "s3cr3t-wrong")
    wrong = CliRunner().invoke(cli, ["audit", "verify"])
    assert wrong.exit_code == 5 and "seq 1: its HMAC does not match" in wrong.output
    assert "s3cr3t-wrong" not in wrong.output and KEY.decode() not in wrong.output
    (tmp_path / "clarion.yaml").write_text("audit:\n  hmac_key_env: CLARION_AUDIT_KEY\n")
    with pytest.raises(Exception, match="starts with CLARION_, which Clarion reads as a setting override"):
        load_settings(tmp_path / "clarion.yaml", env={})
