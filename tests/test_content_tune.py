"""Learning the brand (`clarion content tune`): the shipped corpus, examples from approved and edited
drafts, a real LoRA adapter on the embedded model, merging it, the registry card and the gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from clarion.cli import cli
from clarion.content.corpus import CORPUS_SLOTS, checked_examples, corpus_examples, load_corpus, shot_lines
from clarion.content.tune import adapter_folder, draft_examples, gate, slot_texts
from clarion.errors import ClarionError
from models.content.adapter import AdapterError, adapter_sha256, apply_adapter
from models.content.brief import SLOTS, load_brief, load_briefs
from models.content.drafts import AI_DISCLOSURE, DraftParams, _Keep
from models.content.guardrails import check_slot
from models.content.llm import LMSettings, LocalLM
from models.content.meaning import default_meaning_model
from models.content.prompts import audience_words, slot_prompt
from models.content.slots import SPECS
from models.content.tune import ADAPTER_META, Example, TuneParams, examples_sha256, train_adapter
from models.registry import Registry

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "campaigns" / "brand"
WINBACK = REPO / "campaigns" / "winback-summer.yaml"


def test_the_shipped_corpus_has_every_slot_and_a_few_hundred_lines_of_plain_approved_copy() -> None:
    themes = load_corpus(CORPUS)
    assert len(themes) >= 8
    lines = [line for t in themes for slot in CORPUS_SLOTS for line in t.lines[slot]]
    assert len(lines) >= 250
    for t in themes:
        assert all(len(t.lines[slot]) >= 3 for slot in CORPUS_SLOTS), t.name
    for brief in load_briefs(REPO / "campaigns"):
        for slot in SLOTS:  # the slots drafting has, read from the corpus as tuning reads them
            for ex in corpus_examples(themes, brief, (slot,), per_slot=10_000):
                report = check_slot(ex.text, brief, slot)
                assert not report.blocked, (brief.name, slot, ex.text, [c.detail for c in report.failed])


def test_the_corpus_folder_is_not_read_as_briefs() -> None:
    names = {b.name for b in load_briefs(REPO / "campaigns")}
    assert names == {"winback-summer", "welcome-new", "vip-thank-you"}


def test_a_corpus_file_with_an_unknown_field_is_named_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("theme: x\nheadlines: [Hello there]\n")
    with pytest.raises(ClarionError, match=r"bad.yaml: \['headlines'\] not known"):
        load_corpus(tmp_path)


def test_corpus_examples_pair_lines_of_a_theme_and_leave_held_out_seeds_out() -> None:
    brief = load_brief(WINBACK)
    themes = load_corpus(CORPUS)
    examples = corpus_examples(themes, brief, ("headline",), per_slot=10_000)
    theme = themes[0]
    n = sum(len(t.lines["headline"]) * (len(t.lines["headline"]) - 1) for t in themes)
    assert len(examples) == n  # every ordered pair of different lines of one theme
    one = next(e for e in examples if e.text == theme.lines["headline"][0])
    assert f"Tone: {theme.tone}." in one.user and one.text not in one.user  # the seed is another line
    assert any(line in one.user for line in theme.lines["headline"][1:])
    held = theme.lines["headline"][1].lower()
    kept = corpus_examples(themes, brief, ("headline",), exclude={held}, per_slot=10_000)
    assert all(held not in e.user.lower() and e.text.lower() != held for e in kept)
    assert len(kept) < len(examples)


def test_corpus_examples_carry_the_few_shot_turns_drafting_shows_and_never_their_own_theme() -> None:
    brief = load_brief(WINBACK)
    themes = load_corpus(CORPUS)
    examples = corpus_examples(themes, brief, ("cta", "body"), per_slot=60)
    ctas = [e for e in examples if e.slot == "cta"]
    assert ctas and all(len(e.shots) == SPECS["cta"].shots for e in ctas)
    assert all(e.shots == () for e in examples if e.slot == "body")  # the body is asked without examples
    for e in ctas:
        own = next(t for t in themes if e.text in t.lines["cta"] and any(x in e.user for x in t.lines["cta"]))
        shown = {line for asked, answered in e.shots for line in (asked.split('"')[1], answered.strip('"'))}
        assert not shown & set(own.lines["cta"]), (e.text, shown)  # its own theme would give the answer away
    stored = _stored(brief, "approved", _slots(), "d1")
    stored["provenance"]["prompts"][0]["examples"] = [['Rewrite "A"', '"B"']]
    (first, *_) = draft_examples([stored], set(), {brief.name: brief}, set())
    assert first.shots == (('Rewrite "A"', '"B"'),)


def test_with_the_meaning_model_only_pairs_that_keep_the_seeds_meaning_are_examples() -> None:
    brief = load_brief(WINBACK)
    themes = load_corpus(CORPUS)
    model = default_meaning_model()
    every = corpus_examples(themes, brief, ("body", "cta"), per_slot=10_000)
    kept = corpus_examples(themes, brief, ("body", "cta"), per_slot=10_000, meaning=model)
    assert 0 < len(kept) < len(every)
    for slot in ("body", "cta"):
        ask = SPECS[slot].ask.split("{seed}")[0]
        mine = [e for e in every if e.slot == slot]
        seeds = [e.user.split(ask, 1)[1].split('"')[0] for e in mine]
        vectors = model.embed([e.text for e in mine]), model.embed(seeds)
        scored = [(float(a @ b), e in kept) for a, b, e in zip(*vectors, mine, strict=True)]
        assert all(cos >= SPECS[slot].min_meaning for cos, k in scored if k)
        assert all(cos < SPECS[slot].min_meaning for cos, k in scored if not k)


def test_checked_examples_are_the_base_models_own_candidates_that_pass_every_check() -> None:
    """Each checked answer is re-judged here from its own prompt's seed: the slot checks pass, the
    meaning floor holds (a cosine computed again), it is no copy of the seed or of an example shown,
    and the prompt is the one drafting would send for that seed. A floor nothing can reach leaves no
    example (a prompt whose candidates all fail teaches nothing)."""
    brief = load_brief(WINBACK)
    themes = load_corpus(CORPUS)[:3]
    lm = LocalLM.load(LMSettings())
    model = default_meaning_model()
    held = themes[0].lines["cta"][0].lower()
    params = DraftParams(candidates=3)
    slots = ("headline", "cta")
    examples = checked_examples(themes, brief, lm, model, params, slots, exclude={held}, per_slot=6)
    assert examples and {e.source for e in examples} == {"checked"}
    assert all(sum(e.slot == s for e in examples) <= 6 for s in slots)
    shots = shot_lines(themes, slots)
    for e in examples:
        ask = SPECS[e.slot].ask.split("{seed}")[0]
        seed = e.user.split(ask, 1)[1].split('"')[0]
        theme = next(t for t in themes if seed in t.lines[e.slot])
        assert seed.lower() != held
        seeded = brief.model_copy(
            update={"tone": theme.tone, "seeds": brief.seeds.model_copy(update={e.slot: seed})}
        )
        segment = e.user.split("Audience: ", 1)[1].split(".\n", 1)[0]
        expected = slot_prompt(
            seeded, next(s for s in theme.segments if audience_words(s) == segment), e.slot, None, shots
        )
        assert (e.system, e.user, e.shots) == (expected.system, expected.user, expected.shots)
        assert not check_slot(e.text, seeded, e.slot).blocked, e.text
        (cos,) = model.embed([e.text]) @ model.embed([seed]).T
        assert float(cos[0]) >= SPECS[e.slot].min_meaning, (e.text, seed)
        shown = {line.lower() for line in expected.shown()} | {seed.lower()}
        assert e.text.lower() not in shown
    strict = DraftParams(candidates=3, min_meaning=0.999)
    assert checked_examples(themes, brief, lm, model, strict, ("cta",), per_slot=3) == []


def _stored(brief, status: str, slots: dict[str, str], did: str, segment: str = "at_risk_high_value") -> dict:
    facts = brief.facts()
    content = {}
    for part in brief.parts("email"):
        text = brief.template(part).format_map(_Keep({**slots, **facts}))
        content[part] = f"{text}\n\n{AI_DISCLOSURE}" if part == "email_body" else text
    prompts = [{"slot": s, "system": "sys", "user": f"rewrite the {s}"} for s in slots]
    provenance = {
        "prompts": prompts,
        "slots": {s: {"text": t, "fallback": False} for s, t in slots.items()},
    }
    return {
        "draft_id": did,
        "campaign": brief.name,
        "segment": segment,
        "status": status,
        "content": content,
        "provenance": provenance,
    }


def _slots(**changed: str) -> dict[str, str]:
    return {
        "subject": "We kept something for you",
        "preheader": "Your favourites are still here.",
        "headline": "A gift for you",
        "body": "We miss you around here. Come and see what is new.",
        "cta": "Take a look",
        **changed,
    }


def test_slot_texts_are_read_back_out_of_an_edited_part() -> None:
    brief = load_brief(WINBACK)
    d = _stored(brief, "pending", _slots(), "d1")
    body = d["content"]["email_body"].replace("We miss you around here.", "It has been too long.")
    found = slot_texts({**d["content"], "email_body": body}, brief)
    assert found == _slots(body="It has been too long. Come and see what is new.")
    assert slot_texts({"email_body": "Completely rewritten by hand."}, brief) == {}
    hook = brief.model_copy(update={"templates": {"email_body": "{hook}\n\n{code} {url}\n\n{disclaimer}"}})
    facts = hook.facts()
    text = f"Old words.\n\n{facts['code']} {facts['url']}\n\n{facts['disclaimer']}"
    assert slot_texts({"email_body": text}, hook) == {"body": "Old words."}  # {hook} is the body


def test_examples_come_from_approved_slots_and_edits_not_from_rejected_or_held_out_drafts() -> None:
    brief = load_brief(WINBACK)
    approved = _stored(brief, "approved", {**_slots(), "cta": "Come and see"}, "d1")
    edited = _stored(brief, "pending", _slots(subject="Old subject line"), "d2")
    edited["content"]["email_subject"] = edited["content"]["email_subject"].replace(
        "Old subject line", "New one"
    )
    rejected = _stored(brief, "rejected", _slots(headline="Bad one"), "d3")
    held = _stored(brief, "approved", _slots(headline="Held"), "d4", segment="at_risk_low_value")
    examples = draft_examples(
        [approved, edited, rejected, held],
        {"d2", "d3"},
        {brief.name: brief},
        {(brief.name, "at_risk_low_value")},
    )
    got = {(e.source, e.slot, e.text) for e in examples}
    assert got == {("approved", slot, text) for slot, text in {**_slots(), "cta": "Come and see"}.items()} | {
        ("edit", "subject", "New one")
    }
    assert all(e.user == f"rewrite the {e.slot}" for e in examples)  # the prompt the model was given


def _eval(rate: float, findings: int) -> dict:
    return {"usable_rate": rate, "findings": findings}


def test_the_gate_promotes_only_a_higher_usable_rate_without_more_findings() -> None:
    assert gate(_eval(0.5, 3), _eval(0.6, 3))[0]
    refused, why = gate({**_eval(0.5, 3), "distinct": 40}, {**_eval(0.8, 1), "distinct": 31})
    assert not refused and "distinct usable candidates fell (40 -> 31)" in why
    passed, why = gate({**_eval(0.5, 3), "distinct": 40}, {**_eval(0.8, 1), "distinct": 40})
    assert passed and "distinct usable 40 -> 40" in why
    refused, why = gate(_eval(0.5, 3), _eval(0.5, 2))
    assert not refused and "did not rise" in why
    refused, why = gate(_eval(0.5, 3), _eval(0.45, 0))
    assert not refused
    refused, why = gate(_eval(0.5, 3), _eval(0.7, 4))
    assert not refused and "findings rose (3 -> 4)" in why


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, list[Example], dict]:
    """A real adapter: a few steps on twenty corpus examples, on the embedded model."""
    brief = load_brief(WINBACK)
    examples = corpus_examples(load_corpus(CORPUS), brief, ("headline", "body"), per_slot=10)
    lm = LocalLM.load(LMSettings(dtype="float32"))
    out = tmp_path_factory.mktemp("adapter") / "adapter"
    result = train_adapter(lm, examples, TuneParams(max_steps=2, batch_size=4, learning_rate=5e-3), out)
    return out, examples, {"result": result}


@pytest.mark.slow  # trains a real LoRA adapter (make test stays under 15 minutes)
def test_training_saves_an_adapter_with_its_data_hash_and_settings(trained) -> None:
    out, examples, info = trained
    assert {"adapter_config.json", "adapter_model.safetensors", ADAPTER_META} <= {
        p.name for p in out.iterdir()
    }
    meta = json.loads((out / ADAPTER_META).read_text())
    assert meta["examples"] == 20
    assert meta["by_source"] == {"approved": 0, "edit": 0, "checked": 0, "corpus": 20}
    assert meta["examples_sha256"] == examples_sha256(list(reversed(examples)))  # order does not matter
    assert meta["examples_sha256"] != examples_sha256(examples[1:])
    assert meta["params"]["rank"] == 8 and meta["steps"] == 2 and meta["seconds"] > 0
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["base_model_name_or_path"] is None  # no local path in the artifact
    assert info["result"].loss_first > 0


@pytest.mark.slow  # trains a real LoRA adapter (make test stays under 15 minutes)
def test_applying_the_adapter_changes_the_model_and_drafting_still_generates(trained) -> None:
    import torch

    out, examples, _ = trained
    lm = LocalLM.load(LMSettings(dtype="float32"))
    prompt = lm.chat_prompt(examples[0].system, examples[0].user)
    ids = torch.tensor([lm._encode(prompt)])
    with torch.inference_mode():
        before = lm.model(input_ids=ids).logits[0, -1].clone()
    record = apply_adapter(lm, out, "v0007")
    assert record == {"version": "v0007", "sha256": adapter_sha256(out)} and lm.adapter == record
    with torch.inference_mode():
        after = lm.model(input_ids=ids).logits[0, -1]
    assert (after - before).abs().max() > 1e-3
    assert not any("lora" in name for name, _ in lm.model.named_parameters())  # merged, not wrapped
    [[g]] = lm.generate([prompt], max_new_tokens=8, greedy=True)
    assert g.new_tokens > 0


@pytest.mark.slow  # trains a real LoRA adapter (make test stays under 15 minutes)
def test_an_adapter_for_other_weights_is_refused_with_what_to_do(trained, tmp_path: Path) -> None:
    import shutil

    out, _, _ = trained
    other = tmp_path / "other"
    shutil.copytree(out, other)
    meta = json.loads((other / ADAPTER_META).read_text())
    (other / ADAPTER_META).write_text(json.dumps({**meta, "base_weights_sha256": "0" * 64}))
    lm = LocalLM.load(LMSettings())
    with pytest.raises(AdapterError, match=r"trained on model weights 000000000000.*content tune"):
        apply_adapter(lm, other)
    with pytest.raises(AdapterError, match="not a brand adapter"):
        apply_adapter(lm, tmp_path)


@pytest.mark.slow  # trains a real LoRA adapter (make test stays under 15 minutes)
def test_content_adapter_auto_takes_the_promoted_registry_version(trained, project) -> None:
    out, _, _ = trained
    settings = project()
    assert adapter_folder(settings) is None  # nothing promoted yet
    reg = Registry(settings.var_dir / "registry", model="content_adapter")
    v = reg.register_files({"gate": {"passed": True}}, {"card.md": "# {version}"}, out)
    assert adapter_sha256(v.path) == adapter_sha256(out) and (v.path / "card.md").read_text() == f"# {v.name}"
    assert adapter_folder(settings) is None  # registered, not promoted
    reg.promote(v.name)
    assert adapter_folder(settings) == (v.path, v.name)
    none = project("content:\n  adapter: none\n")
    assert adapter_folder(none) is None
    folder = project(f"content:\n  adapter: {out}\n")
    assert adapter_folder(folder) == (out, out.name)


def test_clarion_content_still_drafts_and_tune_is_its_subcommand() -> None:
    group = CliRunner().invoke(cli, ["content", "--help"])
    assert group.exit_code == 0 and "--campaign NAME" in group.output and "tune" in group.output
    tune = CliRunner().invoke(cli, ["content", "tune", "--help"])
    assert tune.exit_code == 0 and "clarion content tune" in tune.output and "held-out" in tune.output


def test_read_drafts_takes_approved_and_edited_drafts_from_the_warehouse_tables() -> None:
    import duckdb

    from clarion.content.store import CONTENT_DDL
    from clarion.content.tune import read_drafts

    brief = load_brief(WINBACK)
    con = duckdb.connect()
    con.execute("create schema content")
    for ddl in CONTENT_DDL[:3]:  # drafts, decisions, prompts
        con.execute(ddl)
    rows = {
        "d1": _stored(brief, "approved", _slots(headline="A"), "d1"),
        "d2": _stored(brief, "pending", _slots(headline="C"), "d2"),
        "d3": _stored(brief, "pending", _slots(headline="E"), "d3"),
    }
    for did, d in rows.items():
        con.execute(
            "insert into content.drafts (draft_id, campaign, segment, status, content, provenance, "
            "created_at) values (?, ?, ?, ?, ?, ?, now())",
            [
                did,
                d["campaign"],
                d["segment"],
                d["status"],
                json.dumps(d["content"]),
                json.dumps(d["provenance"]),
            ],
        )
    con.execute("insert into content.decisions (draft_id, decision) values ('d2', 'edit'), ('d3', 'reject')")
    drafts, edited = read_drafts(con)
    assert [d["draft_id"] for d in drafts] == ["d1", "d2"] and edited == {"d2"}
    assert (
        drafts[1]["content"] == rows["d2"]["content"] and drafts[1]["provenance"] == rows["d2"]["provenance"]
    )


def test_the_card_states_the_data_hash_counts_settings_and_before_after() -> None:
    from clarion.content.adapter_card import card_markdown

    per = {"body": {"usable_rate": 0.5}, "cta": {"usable_rate": 0.25}}
    meta = {
        "version": "v0003",
        "base_model": "SmolLM2",
        "base_weights_sha256": "ab" * 32,
        "data": {
            "examples": 37,
            "by_source": {"approved": 4, "edit": 2, "checked": 7, "corpus": 24},
            "by_slot": {"body": 15, "cta": 15},
            "examples_sha256": "cd" * 32,
            "corpus_themes": 10,
        },
        "params": {**TuneParams().__dict__, "target_modules": ["q_proj"], "autocast": "bfloat16"},
        "training": {"steps": 4, "seconds": 12.5, "loss_first": 3.2, "loss_last": 2.9},
        "evaluation": {
            "held_out": ["winback-summer/at_risk_high_value"],
            "draft_params": {"candidates": 3, "seed": 7},
            "before": {"usable_rate": 0.375, "distinct": 11, "findings": 9, "per_slot": per},
            "after": {
                "usable_rate": 0.5,
                "distinct": 12,
                "findings": 8,
                "per_slot": {**per, "cta": {"usable_rate": 0.5}},
            },
        },
        "gate": {"passed": True, "reason": "usable-candidate rate 37.5% -> 50.0%, findings 9 -> 8"},
    }
    card = card_markdown(meta)
    assert "# Brand adapter: v0003" in card and "cd" * 32 in card and "ab" * 6 in card
    assert (
        "4 from approved" in card
        and "2 from marketers' edits" in card
        and "24 brand-corpus line pairs" in card
    )
    assert "7 brand-corpus seed lines answered by a candidate of the base model" in " ".join(card.split())
    assert "LoRA r=8" in card and "4 steps in 12.5 s" in card
    assert "| usable-candidate rate | 37.5% | 50.0% |" in card and "| cta | 25.0% | 50.0% |" in card
    assert "| guardrail findings | 9 | 8 |" in card and "Gate: promoted" in card
    assert "| distinct usable candidates | 11 | 12 |" in card


def test_the_tune_summary_says_sources_rates_distinct_counts_and_the_decision() -> None:
    from clarion.content.views import tune_text

    result = {
        "version": "v0004",
        "promoted": False,
        "reason": "distinct usable candidates fell (234 -> 150): the adapter repeats lines",
        "examples": {"examples": 294, "by_source": {"approved": 3, "edit": 1, "checked": 290, "corpus": 0}},
        "training": {"steps": 37, "seconds": 125.6},
        "before": {"usable_rate": 0.6757, "usable": 300, "distinct": 234, "candidates": 444, "findings": 153},
        "after": {"usable_rate": 0.8536, "usable": 379, "distinct": 150, "candidates": 444, "findings": 65},
        "held_out": ["winback-summer/at_risk_high_value"],
    }
    text = tune_text(result)
    assert "294 examples (3 approved, 1 edited, 290 checked, 0 corpus pairs), 37 steps in 126 s" in text
    assert (
        "67.6% (300/444) -> 85.4% (379/444); distinct usable 234 -> 150; guardrail findings 153 -> 65" in text
    )
    assert "not promoted (distinct usable candidates fell (234 -> 150)" in text


@pytest.mark.slow  # drafts with the real model, trains and judges a real adapter (about a minute)
def test_clarion_content_tune_end_to_end_on_a_scored_project(small_run, tmp_path: Path, monkeypatch) -> None:
    """The verb on a copy of the session's small run: a tiny brief for its largest segment, the shipped
    corpus, checked answers drafted by the real model, two training steps, the held-out judgement and
    the registry entry; the decision is the gate's on the figures it reports."""
    import shutil

    from project_helpers import query, write_tiny_brief

    from clarion.config import load_settings

    root = tmp_path / "project"
    shutil.copytree(small_run["root"], root)
    shutil.copytree(CORPUS, root / "campaigns" / "brand")
    settings = load_settings(root / "clarion.yaml", env={})
    ((segment, _),) = query(
        settings,
        "select segment, count(*) n from ml.customer_scores where run_id = (select max(run_id) from "
        "ml.customer_scores) group by 1 order by n desc, segment limit 1",
    )
    brief = load_brief(write_tiny_brief(root / "campaigns", "tune-test", segment, variants=1))
    monkeypatch.chdir(root)
    bad = CliRunner().invoke(cli, ["content", "tune", "--corpus-answers", "theirs"])
    assert bad.exit_code == 2 and "'checked', 'pairs', 'both'" in bad.output
    out = CliRunner().invoke(cli, ["content", "tune", "--max-examples", "14", "--candidates", "1", "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.output[out.output.index("{") :])
    by = result["examples"]["by_source"]
    assert by["checked"] > 0 and by["corpus"] > 0  # the default: half checked answers, half theme-mate pairs
    assert by["checked"] + by["corpus"] == result["examples"]["examples"] <= 14
    assert result["held_out"] == [f"tune-test/{segment}"] and result["version"] == "v0001"
    meta = json.loads((Path(result["path"]) / "meta.json").read_text())
    assert meta["data"]["corpus_answers"] == "both" and meta["data"]["checked_seconds"] > 0
    assert meta["params"]["learning_rate"] == 1e-4
    before, after = result["before"], result["after"]
    slots = brief.slots(("email",))  # one candidate each: one variant, --candidates 1
    assert before["candidates"] == after["candidates"] == len(slots)
    assert set(meta["evaluation"]["before"]["per_slot"]) == set(slots)
    assert 0 <= before["distinct"] <= before["usable"] <= before["candidates"]
    better = (
        after["usable_rate"] > before["usable_rate"]
        and after["distinct"] >= before["distinct"]
        and after["findings"] <= before["findings"]
    )
    assert result["promoted"] is better
    assert (adapter_folder(settings) is not None) is better
