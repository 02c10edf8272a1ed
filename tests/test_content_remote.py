"""A model server as the content model (models/content/remote.py, content.source = an http(s) URL).

The drafting tests run against the real `transformers serve` with the embedded weights (the
session's `model_server`), behind a local proxy that can fail first (a flaky network in front of a
real model). The protocol details a real small server cannot be made to show on demand (429 with
Retry-After, a 401, n honoured or not, logprobs, a banned word) are checked against a local server
speaking the same protocol (tests/model_server.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from pathlib import Path

import pytest
from model_server import ProtocolServer, chat_answer, free_port
from project_helpers import write_tiny_brief

from clarion.config import load_settings
from clarion.errors import ConfigError
from models.content.llm import DEFAULT_BANS
from models.content.remote import ModelServerError, RemoteLM, ServerSettings, endpoint

KEY_ENV = "CONTENT_API_KEY"


def _key() -> str:
    return f"sk-test-{uuid.uuid4().hex}"


def _settings(url: str, **content: object):
    env = {"CLARION_CONTENT__SOURCE": url}
    env.update({f"CLARION_CONTENT__{k.upper()}": str(v) for k, v in content.items()})
    return load_settings(None, env=env)


# -- settings ------------------------------------------------------------------------------------


def test_source_takes_a_server_url_and_keeps_paths_as_paths(tmp_path: Path) -> None:
    assert _settings("http://127.0.0.1:8000/v1/").content.source == "http://127.0.0.1:8000/v1"
    pasted = _settings("https://models.example.net/v1/chat/completions").content.source
    assert pasted == "https://models.example.net/v1"
    (tmp_path / "clarion.yaml").write_text("content:\n  source: models/my-model\n")
    local = load_settings(tmp_path / "clarion.yaml", env={}).content.source
    assert local == tmp_path / "models" / "my-model" and isinstance(local, Path)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("127.0.0.1:8000/v1", "without its scheme: write http://127.0.0.1:8000/v1"),
        ("localhost:11434", "without its scheme: write http://localhost:11434"),
        ("ftp://models.example.net/v1", "is not an http(s) URL"),
        ("http://:8000/v1", "has no host"),
        ("http://models.example.net:eighty/v1", "port that is not a number"),
        ("http://models.example.net/v1?key=abc", "query or fragment"),
    ],
)
def test_bad_server_urls_are_refused_with_the_fix(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"content\.source") as err:
        _settings(value)
    assert message in str(err.value)


def test_credentials_in_the_url_are_refused_and_never_echoed() -> None:
    with pytest.raises(ConfigError, match="api_key_env") as err:
        _settings("http://user:hunter2secret@models.example.net/v1")
    assert "hunter2secret" not in str(err.value)


def test_the_key_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="without that prefix"):
        _settings("http://127.0.0.1:8000/v1", api_key_env="CLARION_MODEL_KEY")
    with pytest.raises(ConfigError, match="both set"):
        _settings("http://127.0.0.1:8000/v1", api_key_env=KEY_ENV, api_key_secret="model-key")


# -- failures ------------------------------------------------------------------------------------


def test_nothing_listening_fails_naming_the_endpoint_after_the_retries(caplog) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # a port nobody listens on
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING), pytest.raises(ModelServerError) as err:
        RemoteLM.connect(ServerSettings(endpoint=url, retries=2, backoff=0.05))
    text = str(err.value)
    assert url in text and "cannot connect" in text and "after 3 attempts" in text
    assert "content.source" in text  # what to do
    assert sum(url in r.getMessage() for r in caplog.records) == 2
    assert time.perf_counter() - started < 5


def test_load_generator_connects_to_the_server_and_fails_early_when_it_is_down() -> None:
    from clarion.content.runner import load_generator

    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(ModelServerError, match=url.replace(".", r"\.")):
        load_generator(_settings(url, retries=0))


def test_an_unknown_model_names_what_the_server_serves() -> None:
    with ProtocolServer(models=["big-model", "small-model"]) as server:
        with pytest.raises(ModelServerError) as err:
            RemoteLM.connect(ServerSettings(endpoint=server.url, model="nope"))
        assert "'nope'" in str(err.value) and "'big-model', 'small-model'" in str(err.value)
        assert server.url in str(err.value) and "content.model" in str(err.value)
        first = RemoteLM.connect(ServerSettings(endpoint=server.url))
        assert first.name == "big-model"  # no content.model: the first one listed


def test_a_server_without_the_api_at_that_path_says_where_it_should_be() -> None:
    with ProtocolServer(models=["m"]) as server:
        lm = RemoteLM.connect(ServerSettings(endpoint=server.url.removesuffix("/v1") + "/api", model="m"))
        with pytest.raises(ModelServerError, match="usually ending in /v1"):
            lm.generate([lm.chat_prompt("s", "u")])


def test_a_missing_key_variable_says_which(monkeypatch) -> None:
    from clarion.content import server

    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ModelServerError, match=f"{KEY_ENV}, which is not set"):
        server.connect(_settings("http://127.0.0.1:9/v1", api_key_env=KEY_ENV))


def test_the_key_may_come_from_a_prefect_secret(prefect_server) -> None:
    from prefect.blocks.system import Secret

    from clarion.content.server import api_key

    key = _key()
    Secret(value=key).save("content-model-key-test", overwrite=True)
    assert api_key(_settings("http://127.0.0.1:9/v1", api_key_secret="content-model-key-test")) == key
    with pytest.raises(ModelServerError, match="'no-such-block', which does not exist"):
        api_key(_settings("http://127.0.0.1:9/v1", api_key_secret="no-such-block"))


# -- the protocol --------------------------------------------------------------------------------


def test_connection_errors_429_and_5xx_are_retried_with_backoff_then_the_answer_is_used(caplog) -> None:
    script = [
        (503, {"error": {"message": "loading the model"}}, {}),
        (429, {"error": {"message": "slow down"}}, {"Retry-After": "0"}),
    ]
    with ProtocolServer(script=script) as server:
        lm = RemoteLM.connect(ServerSettings(endpoint=server.url, retries=2, backoff=0.2, seed=11))
        started = time.perf_counter()
        with caplog.at_level(logging.WARNING):
            out = lm.generate([lm.chat_prompt("system", "user")], 1)
        waited = time.perf_counter() - started
    assert [g.text for g in out[0]] == ["Reply 11-0"]  # the third request's answer
    assert len(server.chat_requests()) == 3 and lm.stats()["retries"] == 2
    assert waited >= 0.2 + 0.4  # exponential: 0.2 s, then 0.4 s
    logged = [r.getMessage() for r in caplog.records if r.name == "models.content.remote"]
    assert any("HTTP 503" in m and "loading the model" in m for m in logged)
    assert any("HTTP 429" in m for m in logged) and all(server.url in m for m in logged)


def test_retries_run_out_with_a_clear_message() -> None:
    with ProtocolServer(script=[(502, "bad gateway", {})] * 3) as server:
        lm = RemoteLM.connect(ServerSettings(endpoint=server.url, retries=2, backoff=0.01))
        with pytest.raises(ModelServerError, match=r"HTTP 502.*after 3 attempts"):
            lm.generate([lm.chat_prompt("s", "u")])


def test_the_first_failure_ends_the_call_without_sending_the_rest() -> None:
    with ProtocolServer(script=[(400, {"error": {"message": "context too long"}}, {})]) as server:
        lm = RemoteLM.connect(ServerSettings(endpoint=server.url, concurrency=1))
        prompts = [lm.chat_prompt("s", f"u{k}") for k in range(6)]
        with pytest.raises(ModelServerError, match=r"HTTP 400\): context too long"):
            lm.generate(prompts, 1)
        assert len(server.chat_requests()) == 1  # of 6: the worker stops before taking the next one


def test_a_request_that_outlives_the_timeout_fails_at_once_with_what_to_change() -> None:
    def slow(body: dict) -> tuple:
        time.sleep(1.0)
        return chat_answer(body)

    with ProtocolServer(answer=slow) as server:
        lm = RemoteLM.connect(ServerSettings(endpoint=server.url, request_timeout=0.3, retries=3))
        with pytest.raises(ModelServerError, match=r"within 0\.3 s: raise content\.request_timeout"):
            lm.generate([lm.chat_prompt("s", "u")])
        assert len(server.chat_requests()) == 1  # not sent again: the server is still busy with it


def test_a_server_that_ignores_n_gets_one_request_per_candidate_with_the_next_seeds() -> None:
    with ProtocolServer(answer=lambda body: chat_answer(body, honour_n=False)) as server:
        lm = RemoteLM.connect(ServerSettings(endpoint=server.url, concurrency=1, seed=100))
        out = lm.generate([lm.chat_prompt("s", "a"), lm.chat_prompt("s", "b")], 3)
        sent = server.chat_requests()
    assert [len(row) for row in out] == [3, 3]
    assert sorted(r["body"]["seed"] for r in sent) == [100, 101, 102, 103, 104, 105]
    assert len({g.text for row in out for g in row}) == 6  # every candidate its own seed
    assert lm.provenance()["parameters"]["n_per_request"] == 1
    assert lm.provenance()["parameters"]["logprobs"] == "asked for, not returned"
    assert all("n" not in r["body"] for r in sent[1:])  # learnt from the first answer


def test_a_server_that_honours_n_gets_one_request_per_prompt() -> None:
    with ProtocolServer() as server:
        lm = RemoteLM.connect(ServerSettings(endpoint=server.url, seed=5))
        out = lm.generate([lm.chat_prompt("s", "a"), lm.chat_prompt("s", "b")], 4, max_new_tokens=9)
        sent = server.chat_requests()
    assert [len(row) for row in out] == [4, 4] and len(sent) == 2
    (body,) = [r["body"] for r in sent if r["body"]["messages"][1]["content"] == "a"]  # concurrent: any order
    assert body["n"] == 4 and body["stop"] == ["\n"] and body["max_tokens"] == 9 and body["logprobs"] is True
    assert body["messages"] == [{"role": "system", "content": "s"}, {"role": "user", "content": "a"}]


def test_banned_candidates_are_dropped_and_logprobs_become_the_mean_per_token() -> None:
    texts = ["Save 20% today", "We kept a seat for you\nsecond line", "Visit www.shop.example"]
    with ProtocolServer(
        answer=lambda body: chat_answer(body, texts, logprobs=[-0.5, -1.5, -1.0, -3.0])
    ) as server:
        lm = RemoteLM.connect(ServerSettings(endpoint=server.url))
        (row,) = lm.generate([lm.chat_prompt("s", "u")], 3, ban=DEFAULT_BANS)
    assert [g.text for g in row] == ["", "We kept a seat for you", ""]  # counted, never usable
    assert row[1].logprob == pytest.approx((-0.5 - 1.5 - 1.0 - 3.0) / 4) and row[1].new_tokens == 4
    assert lm.stats()["dropped_for_bans"] == 2
    assert lm.provenance()["parameters"]["logprobs"] == "returned"


def test_the_key_is_sent_but_never_logged_shown_or_recorded(monkeypatch, caplog) -> None:
    from clarion.content import server as content_server

    key = _key()
    monkeypatch.setenv(KEY_ENV, key)
    echo = (401, {"error": {"message": f"Incorrect API key provided: {key}"}}, {})
    with ProtocolServer(script=[(503, {"error": {"message": f"busy, key {key}"}}, {})]) as server:
        settings = _settings(server.url, api_key_env=KEY_ENV)
        with caplog.at_level(logging.DEBUG):
            lm = content_server.connect(settings)
            lm.generate([lm.chat_prompt("s", "u")], 2)
            server.script.append(echo)
            with pytest.raises(ModelServerError, match="HTTP 401") as err:
                lm.generate([lm.chat_prompt("s", "u")], 1)
        seen = {r["headers"].get("Authorization") for r in server.requests}
    assert seen == {f"Bearer {key}"}  # every request carried it
    shown = [
        caplog.text,
        str(err.value),
        repr(lm),
        repr(lm.settings),
        json.dumps(lm.provenance()),
        str(lm.stats()),
    ]
    assert all(key not in text for text in shown)
    assert "***" in caplog.text  # the 503's echo was masked, not dropped


def test_provenance_names_the_endpoint_and_model_and_says_the_hash_is_no_weights_hash() -> None:
    from models.content.drafts import model_provenance

    with ProtocolServer(models=["org/big-model"]) as server:
        lm = RemoteLM.connect(ServerSettings(endpoint=server.url + "/", temperature=0.7, top_p=0.9))
    p = model_provenance(lm)
    assert p["backend"] == "openai" and p["endpoint"] == server.url and p["name"] == "org/big-model"
    assert p["weights_sha256"] == hashlib.sha256(f"{server.url}|org/big-model".encode()).hexdigest()
    assert "does not expose its weights" in p["weights_sha256_is"]
    assert p["parameters"]["temperature"] == 0.7 and p["parameters"]["top_p"] == 0.9
    assert endpoint(server.url + "/chat/completions") == server.url


# -- the real server -----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_brief_drafted_through_a_real_model_server_behind_a_flaky_network(
    model_server, tmp_path: Path, monkeypatch, caplog
) -> None:
    from clarion.content.runner import load_generator
    from models.content.brief import load_brief
    from models.content.drafts import DraftParams, draft_brief
    from models.content.meaning import default_meaning_model

    key = _key()
    monkeypatch.setenv(KEY_ENV, key)
    segment = "at_risk_high_value"
    brief = load_brief(write_tiny_brief(tmp_path / "campaigns", "remote-test", segment, variants=1))
    failures = [(503, {"detail": "warming up"}, {}), (500, {"detail": "oops"}, {})]
    model = model_server["model"]
    with ProtocolServer(models=[model], script=failures, upstream=model_server["url"]) as proxy:
        settings = _settings(proxy.url, api_key_env=KEY_ENV, concurrency=2, max_new_tokens=12)
        lm = load_generator(settings)
        params = DraftParams(candidates=2, max_new_tokens=12)
        with caplog.at_level(logging.INFO):
            drafts, prompts = draft_brief(
                brief, [{"segment": segment, "top_drivers": []}], lm, default_meaning_model(), params, {}
            )
        sent = proxy.chat_requests()
    assert isinstance(lm, RemoteLM) and lm.name == model
    assert len(drafts) == len(brief.channels) * brief.variants
    # transformers serve ignores n: one request per candidate, plus the two that failed and were retried
    assert len(sent) == 2 + len(prompts) * params.candidates and lm.stats()["retries"] == 2
    assert {r["headers"].get("Authorization") for r in sent} == {f"Bearer {key}"}
    generated = lm.stats()
    assert generated["generations"] == len(prompts) * params.candidates and generated["generated_tokens"] > 0
    for d in drafts:
        p = d.provenance
        assert p["model"]["backend"] == "openai" and p["model"]["endpoint"] == proxy.url
        assert p["model"]["name"] == model and p["model"]["parameters"]["max_tokens"] == 12
        assert key not in json.dumps(p)
        for slot in p["slots"].values():
            assert slot["candidates"] >= 1
            if not slot["fallback"]:  # a model-written slot never holds a banned substring
                assert not any(b in slot["text"].lower() for b in DEFAULT_BANS)
    assert key not in caplog.text


@pytest.mark.slow
def test_the_same_seed_gives_the_same_candidates_through_the_server(model_server) -> None:
    lm = RemoteLM.connect(ServerSettings(endpoint=model_server["url"], max_new_tokens=10, concurrency=1))
    prompt = lm.chat_prompt("You are a copywriter. Answer with one short sentence.", "Rewrite: We miss you.")
    first = lm.generate([prompt], 2, seed=3)
    again = lm.generate([prompt], 2, seed=3)
    assert [g.text for g in first[0]] == [g.text for g in again[0]]
    assert all(g.text and g.new_tokens > 0 for g in first[0])


@pytest.mark.slow
def test_clarion_content_drafts_through_the_model_server(small_run, model_server, tmp_path: Path) -> None:
    import shutil

    from project_helpers import query, run_pipeline_in

    root = tmp_path / "project"
    shutil.copytree(small_run["root"], root)
    settings = load_settings(root / "clarion.yaml", env={})
    ((segment, _),) = query(
        settings,
        "select segment, count(*) n from ml.customer_scores where run_id = (select max(run_id) from "
        "ml.customer_scores) group by 1 order by n desc, segment limit 1",
    )
    write_tiny_brief(root / "campaigns", "remote-e2e", segment, variants=1)
    with (root / "clarion.yaml").open("a") as f:
        f.write(f"content:\n  source: {model_server['url']}\n  candidates: 1\n  max_new_tokens: 12\n")
    result = run_pipeline_in(root, stages=["content"])
    assert result["status"] == "completed", result
    rows = query(
        settings,
        "select status, provenance from content.drafts where run_id = ? and campaign = 'remote-e2e'",
        [result["run_id"]],
    )
    assert rows and all(status in ("pending", "blocked") for status, _ in rows)
    for _, provenance in rows:
        model = json.loads(provenance)["model"]
        assert model["backend"] == "openai" and model["endpoint"] == model_server["url"]
        assert model["name"] == model_server["model"]
