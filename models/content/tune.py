"""Teach the local model the brand's voice: (slot prompt -> approved text) examples -> a LoRA adapter.

A marketer approves or edits copy; the shop keeps a corpus of its approved lines. Both say how the
brand writes, in exactly the task the model is given (the slot prompt as drafting builds it, the
approved text as the answer). Low-rank adapters (LoRA, peft) on the attention projections learn that
in a few minutes on a CPU: a few hundred examples, rank 8, one or two epochs, the base weights frozen.
The adapter is a small folder (``adapter_config.json``, ``adapter_model.safetensors`` and
``clarion-adapter.json``: the base weights it was trained on, the examples' hash, the settings) that
``models.content.adapter`` merges into a loaded model.

Only the answer's tokens carry the loss (the prompt is context), and each answer ends with the
chat turn's end token, so the tuned model stops where drafting expects it to. Training is
deterministic for a given seed (example order, dropout, initial adapter weights).
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from models.content.llm import _cpu_has_native_bf16
from models.content.slots import SPECS

ADAPTER_META = "clarion-adapter.json"
SOURCES = ("approved", "edit", "checked", "corpus")  # where an example comes from, in the card's data counts


@dataclass(frozen=True)
class Example:
    """One thing the brand would write: the slot's prompt (system and user turns) and the answer."""

    source: str  # approved | edit | checked | corpus
    slot: str
    system: str
    user: str
    text: str
    shots: tuple[tuple[str, str], ...] = ()  # the few-shot turns drafting shows before ``user``

    def key(self) -> str:
        return json.dumps([self.slot, self.system, self.user, self.text, self.shots], ensure_ascii=False)


@dataclass(frozen=True)
class TuneParams:
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    learning_rate: float = 1e-4  # 1e-3 and 3e-4 made the demo's adapters repeat lines (bench/RESULTS.md)
    epochs: int = 1
    batch_size: int = 8
    upper_layers: float = 0.5  # LoRA on this share of the decoder's top layers: backward stops below them
    max_steps: int | None = None  # stop after this many optimiser steps (tests, quick tries)
    seed: int = 7
    max_length: int = 256  # prompt + answer tokens; longer examples are cut from the prompt's start
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass
class TuneResult:
    folder: Path
    examples: int
    steps: int
    seconds: float
    train_tokens: int
    loss_first: float
    loss_last: float
    params: dict[str, Any] = field(default_factory=dict)


def examples_sha256(examples: Sequence[Example]) -> str:
    """The training data's fingerprint: the same examples in any order hash the same."""
    digest = hashlib.sha256()
    for key in sorted(e.key() for e in examples):
        digest.update(key.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def counts_by_source(examples: Sequence[Example]) -> dict[str, int]:
    return {s: sum(e.source == s for e in examples) for s in SOURCES}


def train_adapter(lm: Any, examples: Sequence[Example], params: TuneParams, out: Path) -> TuneResult:
    """Fit a LoRA adapter on ``lm`` (a models.content.llm.LocalLM loaded in float32) and save it to
    ``out``. ``lm.model`` is wrapped in place: load a fresh model to draft with the result."""
    import torch
    from peft import LoraConfig, get_peft_model

    if not examples:
        raise ValueError("no training examples")
    if str(getattr(lm.model, "dtype", "torch.float32")) != "torch.float32":
        raise ValueError(f"train on float32 weights (content.dtype float32), not {lm.model.dtype}")
    torch.manual_seed(params.seed)
    rows = [_encode(lm, e, params.max_length) for e in examples]
    layers = lm.model.config.num_hidden_layers
    config = LoraConfig(
        layers_to_transform=list(range(layers - max(1, round(layers * params.upper_layers)), layers)),
        r=params.rank,
        lora_alpha=params.alpha,
        lora_dropout=params.dropout,
        target_modules=list(params.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(lm.model, config)
    model.train()
    inner = model.get_base_model()
    bf16 = _cpu_has_native_bf16() and lm.device == "cpu"  # autocast: float32 weights, bf16 matmuls
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=params.learning_rate, weight_decay=0.0)
    order = random.Random(params.seed)
    per_epoch = (len(rows) + params.batch_size - 1) // params.batch_size
    total = max(1, per_epoch * params.epochs if params.max_steps is None else params.max_steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: max(0.05, 1 - s / max(total, 1)))
    started = time.perf_counter()
    steps, tokens, losses = 0, 0, []
    while steps < total:
        shuffled = list(range(len(rows)))
        order.shuffle(shuffled)
        for at in range(0, len(shuffled), params.batch_size):
            batch = [rows[i] for i in shuffled[at : at + params.batch_size]]
            ids, mask, labels = _pad(batch, lm.pad_id)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = _answer_loss(inner, ids, mask, labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimiser.step()
            schedule.step()
            optimiser.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            tokens += int(mask.sum())
            steps += 1
            if steps >= total:
                break
    seconds = time.perf_counter() - started
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    (out / "README.md").unlink(missing_ok=True)  # peft's empty model-card template; the registry has the card
    _clean_config(out)
    hyper = {
        **asdict(params),
        "target_modules": list(params.target_modules),
        "autocast": "bfloat16" if bf16 else None,
    }
    meta = {
        "base_model": lm.name,
        "base_weights_sha256": lm.weights_sha256,
        "examples": len(examples),
        "examples_sha256": examples_sha256(examples),
        "by_source": counts_by_source(examples),
        "slots": sorted({e.slot for e in examples}),
        "params": hyper,
        "steps": steps,
        "seconds": round(seconds, 1),
        "loss_first": round(losses[0], 4),
        "loss_last": round(sum(losses[-5:]) / len(losses[-5:]), 4),
    }
    (out / ADAPTER_META).write_text(json.dumps(meta, indent=2) + "\n")
    return TuneResult(
        folder=out,
        examples=len(examples),
        steps=steps,
        seconds=seconds,
        train_tokens=tokens,
        loss_first=meta["loss_first"],
        loss_last=meta["loss_last"],
        params=hyper,
    )


def _answer_loss(model: Any, ids: Any, mask: Any, labels: Any) -> Any:
    """Next-token cross-entropy on the answer's tokens only. The output layer (49k-word vocabulary)
    runs on those positions alone: a fifth of a forward pass saved, as prompts are most tokens."""
    import torch

    hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]
    target = labels[:, 1:]
    keep = target != -100
    logits = model.lm_head(hidden[keep]).float()
    return torch.nn.functional.cross_entropy(logits, target[keep])


def _encode(lm: Any, example: Example, max_length: int) -> tuple[list[int], list[int]]:
    """(token ids, labels): the chat prompt as drafting sends it (its few-shot turns, and the slot's
    prefill: an opening quote), then the answer, its closing quote and the turn's end."""
    prefill = SPECS[example.slot].prefill
    prompt = lm._encode(lm.chat_prompt(example.system, example.user, example.shots) + prefill)
    closing = {'"': '"', "“": "”", "«": "»"}.get(prefill, "")
    answer = lm.tokenizer(example.text + closing, add_special_tokens=False)["input_ids"]
    end = lm.tokenizer.eos_token_id if lm.tokenizer.eos_token_id is not None else lm.eos_ids[0]
    answer = [*answer, end]
    prompt = prompt[-max(1, max_length - len(answer)) :]
    return [*prompt, *answer], [-100] * len(prompt) + answer


def _pad(batch: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[Any, Any, Any]:
    import torch

    width = max(len(ids) for ids, _ in batch)
    ids = [r + [pad_id] * (width - len(r)) for r, _ in batch]
    mask = [[1] * len(r) + [0] * (width - len(r)) for r, _ in batch]
    labels = [lab + [-100] * (width - len(lab)) for _, lab in batch]
    return torch.tensor(ids), torch.tensor(mask), torch.tensor(labels)


def _clean_config(out: Path) -> None:
    """peft writes the base model's local path into the config; it is a cache path on this machine
    (var/models/<hash>), meaningless elsewhere. The base is named by hash in clarion-adapter.json."""
    path = out / "adapter_config.json"
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = None
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
