"""What decoding does besides the model's forward pass: token masks, bans, stops and the sampler.

* :class:`Vocab` -- each token's raw bytes, with the masks for stopping at a newline and for bans;
* :func:`newline_stop` -- a row stops at its first newline after some text;
* :func:`span_ban` / :func:`copy_ban` -- a banned substring split across tokens, and a run of the
  seed's tokens handed back, are banned as they are being written;
* :func:`phrase_shape` -- a phrase slot is written inside its word range and does not stop on a
  dangling word (a small grammar for subject, headline, CTA and push);
* :class:`TopPSampler` -- temperature and top-p sampling as the last logits processor.

models/content/llm.py puts them around ``generate`` of transformers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# The top-p set is looked for among this many most likely tokens; a full sort is needed only where
# they hold less than top_p of the mass (at temperature 0.6 / top-p 0.8 on the demo: never seen).
TOP_CANDIDATES = 256


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """The inverse of GPT-2's byte-to-unicode table (byte-level BPE token strings -> raw bytes)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(keep)
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(keep, chars, strict=True)}


class Vocab:
    """Each token's raw bytes (lower-cased), and token masks for stopping and banning."""

    def __init__(self, tokenizer: Any, size: int) -> None:
        import torch

        special = set(tokenizer.all_special_ids) | {
            i
            for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items()
            if getattr(t, "special", True)
        }
        decoder = _byte_decoder()
        strings = tokenizer.convert_ids_to_tokens(list(range(min(size, len(tokenizer)))))
        pieces: list[bytes] = []
        for i, s in enumerate(strings):
            if i in special or s is None:
                pieces.append(b"")
            elif all(c in decoder for c in s):  # byte-level BPE: exact bytes, partial UTF-8 kept
                pieces.append(bytes(decoder[c] for c in s))
            else:
                pieces.append(tokenizer.decode([i]).encode("utf-8"))
        pieces += [b""] * (size - len(pieces))
        self.size = size
        self.special = special
        # Unicode lower-casing that keeps partial UTF-8 sequences byte for byte
        self.low = [
            p.decode("utf-8", "surrogateescape").lower().encode("utf-8", "surrogateescape") for p in pieces
        ]
        self.newline = torch.tensor([b"\n" in p for p in pieces])
        self.text_then_newline = torch.tensor(
            [b"\n" in p and p.split(b"\n")[0].strip() != b"" for p in pieces]
        )
        self.blank = torch.tensor([p.strip() == b"" for p in pieces])
        self._newline, self._text_then_newline, self._blank = (
            t.tolist() for t in (self.newline, self.text_then_newline, self.blank)
        )
        self._bans: dict[tuple[str, ...], tuple[list[list[int]], dict[bytes, Any], int]] = {}
        self._phrase: dict[str, Any] | None = None

    def phrase_masks(self) -> dict[str, Any]:
        """Token masks for :func:`phrase_shape`, built once: ``spaced`` (a space or tab first: what
        follows begins after the last word), ``word_start`` (a word character
        first: it begins a word after punctuation or a space, else it continues one), ``ending`` (a
        closing quote or a newline anywhere, or a stop such as '!' or ',' first: the phrase, or a
        clause of it, ends there) and ``dangling`` (a space and one of
        models/content/slots.py ``DANGLING``, whole)."""
        import torch

        from models.content.slots import DANGLING

        if self._phrase is None:
            texts = [p.decode("utf-8", "ignore") for p in self.low]
            word = re.compile(r"[^\W_]")
            self._phrase = {
                "spaced": torch.tensor([t[:1].isspace() for t in texts]),
                "word_start": torch.tensor([bool(word.match(t)) for t in texts]),
                "ending": torch.tensor([any(c in t for c in ENDING) or t[:1] in STOPS for t in texts]),
                "dangling": torch.tensor(
                    [t[:1] == " " and t[1:].replace("’", "'") in DANGLING for t in texts]
                ),
            }
        return self._phrase

    def bans(self, ban: tuple[str, ...]) -> tuple[list[list[int]], dict[bytes, Any], int]:
        """(bad_words_ids, {prefix of a ban: mask of tokens that would complete it}, longest ban), cached."""
        import torch

        if ban not in self._bans:
            needles = sorted({b.lower().encode("utf-8") for b in ban if b})
            banned = [
                [i]
                for i, p in enumerate(self.low)
                if p and i not in self.special and any(n in p for n in needles)
            ]
            completing: dict[bytes, Any] = {}
            for n in needles:
                for k in range(1, len(n)):
                    head, rest = n[:k], n[k:]
                    mask = torch.tensor([p.startswith(rest) for p in self.low])
                    completing[head] = completing[head] | mask if head in completing else mask
            self._bans[ban] = (banned, completing, max((len(n) for n in needles), default=0))
        return self._bans[ban]

    def stop_index(self, row: list[int], eos: set[int], at_newline: bool) -> int:
        """How many of a row's generated tokens count: up to and including EOS or the stopping newline."""
        content = False
        for i, t in enumerate(row):
            if t in eos:
                return i + 1
            if t >= self.size:
                continue
            if at_newline and self._newline[t] and (content or self._text_then_newline[t]):
                return i + 1
            if not self._blank[t]:
                content = True
        return len(row)


def newline_stop(vocab: Vocab, prompt_len: int) -> Any:
    """Stops a row at the first newline that follows some text (a leading blank line does not stop it)."""
    from transformers import StoppingCriteria

    class NewlineStop(StoppingCriteria):
        def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
            import torch

            new = input_ids[:, prompt_len:].clamp(max=vocab.size - 1).cpu()
            if new.shape[1] == 0:
                return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
            last = new[:, -1]
            before = (~vocab.blank[new[:, :-1]]).any(dim=1)
            stop = vocab.newline[last] & (vocab.text_then_newline[last] | before)
            return stop.to(input_ids.device)

    return NewlineStop()


def span_ban(vocab: Vocab, completing: dict[bytes, Any], longest: int, prompt_len: int) -> Any:
    """Bans the token that would complete a banned substring begun by the row's previous tokens."""
    from transformers import LogitsProcessor

    masks: dict[tuple[bytes, Any], Any] = {}

    class SpanBan(LogitsProcessor):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            new = input_ids[:, prompt_len:]
            if new.shape[1] == 0 or not completing:
                return scores
            tails = new[:, -(longest - 1) :].tolist()
            for r, tail_ids in enumerate(tails):
                tail = b"".join(vocab.low[t] if t < vocab.size else b"" for t in tail_ids)
                for head, mask in completing.items():
                    if tail.endswith(head):
                        key = (head, scores.device)
                        if key not in masks:
                            full = mask.new_zeros(scores.shape[-1])
                            full[: mask.shape[0]] = mask[: scores.shape[-1]]
                            masks[key] = full.to(scores.device)
                        scores[r, masks[key]] = float("-inf")
            return scores

    return SpanBan()


def copy_ban(runs: dict[tuple[int, ...], set[int]], n: int, prompt_len: int) -> Any:
    """Bans the token that would make the row's last ``n`` tokens a run of the text to avoid (the
    seed): the model may reuse the seed's words, not hand a long stretch of it back."""
    from transformers import LogitsProcessor

    class CopyBan(LogitsProcessor):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            new = input_ids[:, prompt_len:]
            if new.shape[1] < n - 1:
                return scores
            for r, tail in enumerate(new[:, new.shape[1] - (n - 1) :].tolist()):
                banned = runs.get(tuple(tail))
                if banned:
                    scores[r, list(banned)] = float("-inf")
            return scores

    return CopyBan()


def copy_runs(tokenizer: Any, texts: Sequence[str], n: int) -> dict[tuple[int, ...], set[int]]:
    """Every run of ``n - 1`` tokens of ``texts`` (as written mid-sentence, after a space, and at the
    start) -> the tokens that follow it there."""
    runs: dict[tuple[int, ...], set[int]] = {}
    for text in texts:
        for form in {f for t in (text, text.lower(), text.title()) for f in (t, " " + t)}:
            ids = tokenizer(form, add_special_tokens=False)["input_ids"]
            for i in range(len(ids) - n + 1):
                runs.setdefault(tuple(ids[i : i + n - 1]), set()).add(ids[i + n - 1])
    return runs


@dataclass(frozen=True)
class Phrase:
    """What :func:`phrase_shape` holds a row to: ``fewest`` to ``most`` words, ``chars`` characters
    at most (0: any)."""

    fewest: int
    most: int
    chars: int = 0


ENDING = '"“”\n'  # a closing quote ends a prefilled answer; a newline stops the row
STOPS = tuple(".,!?;:")  # a token opening with one of these ends the phrase or a clause of it


def phrase_shape(vocab: Vocab, phrases: Sequence[Phrase | None], eos: Sequence[int], prompt_len: int) -> Any:
    """Keeps each row that has a :class:`Phrase` (``phrases[row]``, None = free) a well-formed phrase
    while it is written, until its closing quote:

    * fewer than ``fewest`` words, or a last word in slots.py ``DANGLING`` ("the", "our", "and")
      while another word fits: no closing quote, newline, stop ('!', ',') or end of sequence (the
      phrase is not finished);
    * ``most`` words written, or no room for another word within ``chars``: no token that begins
      with a space or, after punctuation, a word (the current word may still grow; punctuation,
      the closing quote or a newline may follow);
    * one word left: that word is not a dangling one.

    Words are counted as guardrails.py counts them (copy_patterns.py ``WORD``), on the decoded text."""
    import torch
    from transformers import LogitsProcessor

    from models.content.copy_patterns import WORD
    from models.content.slots import dangling

    masks = vocab.phrase_masks()
    stops = torch.zeros(vocab.size, dtype=torch.bool)
    stops[[e for e in eos if e < vocab.size]] = True
    ending = masks["ending"] | stops
    spaced = masks["spaced"] & ~ending  # a space first opens what follows the last word; ' "' ends it
    placed: dict[tuple[str, Any, int], Any] = {}

    def mask(name: str, base: Any, scores: Any) -> Any:
        key = (name, scores.device, scores.shape[-1])
        if key not in placed:
            full = torch.zeros(scores.shape[-1], dtype=torch.bool)
            n = min(base.shape[0], scores.shape[-1])
            full[:n] = base[:n]
            placed[key] = full.to(scores.device)
        return placed[key]

    class PhraseShape(LogitsProcessor):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            new = input_ids[:, prompt_len:].tolist()
            for r, row in enumerate(new):
                phrase = phrases[r] if r < len(phrases) else None
                if phrase is None:
                    continue
                text = b"".join(vocab.low[t] for t in row if t < vocab.size).decode("utf-8", "ignore")
                if any(c in text for c in ENDING):
                    continue  # the phrase is closed: what follows is cut off by slots.clean
                fewest, most = phrase.fewest, phrase.most
                found = WORD.findall(text)
                in_word = bool(text) and (text[-1].isalnum() or text[-1] in "-'’")
                stop = dangling(text) if text.rstrip()[-1:].isalnum() else None  # a word, then spaces
                room = len(found) < most and not (phrase.chars and len(text.strip()) + 2 > phrase.chars)
                # a dangling last word must be followed by another, where one still fits; where none
                # does, the phrase may close, and the slot checks refuse it (forcing it on would glue
                # letters to the word: "what'sInside")
                if len(found) < fewest or (stop and room):
                    scores[r, mask("ending", ending, scores)] = float("-inf")
                if not room:
                    grows = mask("spaced", spaced, scores)
                    if not in_word:
                        grows = grows | mask("word_start", masks["word_start"], scores)
                    scores[r, grows] = float("-inf")
                elif len(found) == most - 1 and in_word:
                    scores[r, mask("dangling", masks["dangling"], scores)] = float("-inf")
            return scores

    return PhraseShape()


class TopPSampler:
    """Temperature, then top-p (nucleus) sampling, as the last logits processor of a greedy ``generate``.

    transformers' own warpers sort the whole vocabulary (49,152 tokens for SmolLM2) and draw from it
    on every step; on 2 CPU cores at 32 rows that was 40% of the drafting time (bench/RESULTS.md,
    "Content: the drafting path"). Here the top-p set is found among the ``top`` most likely tokens
    (``torch.topk``), which is the same set whenever those hold at least ``top_p`` of the mass (a row
    where they do not is sorted in full), and the token is drawn among them only. The processor
    returns scores that are -inf except at the drawn token, so greedy decoding takes it.

    The set kept is transformers' ``TopPLogitsWarper`` set: the most likely tokens whose mass *before*
    them is below ``top_p`` (so at least one), drawn in proportion to their temperature-scaled
    probabilities (:meth:`distribution` gives them; tests/test_content_decoding.py compares it with
    transformers' warpers). Draws use torch's generator, so a seed repeats them.
    """

    def __init__(self, temperature: float, top_p: float, top: int = TOP_CANDIDATES) -> None:
        if temperature <= 0:
            raise ValueError("temperature must be above 0 (greedy decoding has its own switch)")
        if not 0 < top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        self.temperature = temperature
        self.top_p = top_p
        self.top = top

    def candidates(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(probabilities, token ids) of each row's top-p set, most likely first, zeros past the set (at
        top_p 1: every token, in vocabulary order)."""
        import torch

        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        if self.top_p >= 1:  # no nucleus: every token, as transformers (it adds no top-p warper then)
            return probs, torch.arange(probs.shape[-1], device=probs.device).expand_as(probs)
        k = min(self.top, probs.shape[-1])
        p, ids = probs.topk(k, dim=-1)
        if bool((p.sum(dim=-1) < self.top_p).any()):
            p, ids = probs.sort(dim=-1, descending=True)  # the set reaches past the top k
        before = p.cumsum(dim=-1) - p
        return p.masked_fill(before >= self.top_p, 0.0), ids

    def distribution(self, scores: torch.Tensor) -> torch.Tensor:
        """The probability of each vocabulary token being drawn, per row (rows sum to 1)."""
        p, ids = self.candidates(scores)
        p = p / p.sum(dim=-1, keepdim=True)
        return p.new_zeros(scores.shape).scatter_(-1, ids, p)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        import torch

        p, ids = self.candidates(scores)
        drawn = ids.gather(-1, torch.multinomial(p, 1))
        return torch.full_like(scores, float("-inf")).scatter_(-1, drawn, 0.0)
