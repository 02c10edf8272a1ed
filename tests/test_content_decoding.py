"""The sampler of the drafting path (models/content/decoding.py ``TopPSampler``) against transformers' own
temperature and top-p warpers: the same tokens kept, in the same proportions, and draws that follow them.

The reference is transformers' ``TemperatureLogitsWarper`` then ``TopPLogitsWarper`` (what
``generate(do_sample=True)`` applied before), computed here on the same logits: nothing is written by hand.
"""

from __future__ import annotations

import pytest
import torch
from transformers import TemperatureLogitsWarper, TopPLogitsWarper

from models.content.decoding import TopPSampler

VOCAB = 49_152  # SmolLM2's


def _reference(scores: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    ids = torch.zeros((scores.shape[0], 1), dtype=torch.long)
    warped = TemperatureLogitsWarper(temperature)(ids, scores.clone())
    if top_p < 1:
        warped = TopPLogitsWarper(top_p)(ids, warped)
    return torch.softmax(warped, dim=-1)


def _logits(rows: int, seed: int, spread: float) -> torch.Tensor:
    """Model-like logits: a few likely tokens over a long tail; some tokens banned (-inf)."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn((rows, VOCAB), generator=g) * spread
    scores[:, torch.randint(0, VOCAB, (500,), generator=g)] = float("-inf")  # bans, as bad_words_ids sets
    return scores


@pytest.mark.parametrize(
    ("temperature", "top_p", "spread"),
    [(0.6, 0.8, 4.0), (0.8, 0.95, 4.0), (1.0, 0.5, 3.0), (0.6, 1.0, 4.0), (0.7, 0.9, 1.0)],
)
def test_the_distribution_is_transformers_temperature_then_top_p(
    temperature: float, top_p: float, spread: float
) -> None:
    scores = _logits(16, seed=int(temperature * 100 + top_p * 10), spread=spread)
    ours = TopPSampler(temperature, top_p).distribution(scores)
    theirs = _reference(scores, temperature, top_p)
    assert torch.equal(ours > 0, theirs > 0)  # the same tokens kept, row by row
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-4)
    assert torch.all(ours[torch.isinf(scores)] == 0)  # a banned token is never drawn


def test_a_set_wider_than_the_top_tokens_is_found_by_a_full_sort() -> None:
    """Flat logits (spread 0.5): 256 tokens hold far less than top_p of the mass; the set is the same."""
    scores = _logits(4, seed=3, spread=0.5)
    sampler = TopPSampler(0.8, 0.95, top=256)
    p, _ = sampler.candidates(scores)
    assert int((p > 0).sum(dim=-1).min()) > 256  # past the top-k window, so the sorted path ran
    torch.testing.assert_close(
        sampler.distribution(scores), _reference(scores, 0.8, 0.95), atol=1e-7, rtol=1e-4
    )


def test_draws_follow_the_distribution_and_never_leave_the_set() -> None:
    vocab = 1_000  # 40,000 rows of the real vocabulary would take 8 GB a copy; the sampler is the same
    row = torch.full((vocab,), -30.0)
    row[[7, 70, 700, 999, 42]] = torch.tensor([3.0, 2.5, 2.0, 1.0, 0.0])
    scores = row.repeat(40_000, 1)
    sampler = TopPSampler(0.6, 0.8)
    expected = sampler.distribution(row.unsqueeze(0))[0]
    torch.manual_seed(5)
    out = sampler(torch.zeros((40_000, 1), dtype=torch.long), scores.clone())
    assert torch.all(torch.isfinite(out).sum(dim=-1) == 1)  # one token per row, the rest -inf
    drawn = out.argmax(dim=-1)  # what greedy decoding then takes
    counts = torch.bincount(drawn, minlength=vocab).float() / len(drawn)
    kept = set(torch.nonzero(expected).flatten().tolist())
    assert set(torch.nonzero(counts).flatten().tolist()) <= kept
    assert kept == {7, 70}  # at 0.6: 7 holds 0.69 of the mass, so 70 completes 0.8; 700 is past it
    for token in kept:
        assert abs(float(counts[token]) - float(expected[token])) < 0.01, (
            token,
            counts[token],
            expected[token],
        )


def test_a_seed_repeats_the_draws() -> None:
    scores = _logits(64, seed=9, spread=3.0)
    sampler = TopPSampler(0.6, 0.8)
    ids = torch.zeros((64, 1), dtype=torch.long)
    torch.manual_seed(1)
    first = sampler(ids, scores.clone()).argmax(dim=-1)
    torch.manual_seed(1)
    again = sampler(ids, scores.clone()).argmax(dim=-1)
    torch.manual_seed(2)
    other = sampler(ids, scores.clone()).argmax(dim=-1)
    assert torch.equal(first, again) and not torch.equal(first, other)


@pytest.mark.parametrize(("temperature", "top_p"), [(0.0, 0.8), (-1.0, 0.8), (0.6, 0.0), (0.6, 1.5)])
def test_settings_outside_their_range_are_refused(temperature: float, top_p: float) -> None:
    with pytest.raises(ValueError, match=r"^(temperature|top_p) "):
        TopPSampler(temperature, top_p)
