"""Write a proposal as a commented clarion.yaml (only its `sources:` section).

Every proposed key carries a comment with its confidence and the evidence (``# 0.95: 100% of values
look like e-mails``); what the proposal could not decide is a ``# QUESTION:`` comment beside the key.
Values are written as JSON strings (valid YAML), SQL as a literal block. No value of the files is
written except status words and column names.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from clarion.errors import ClarionError
from clarion.onboard.propose import Key, Proposal


class InitError(ClarionError):
    """`clarion init` cannot go on (the config exists, the folder has no data files...)."""


def _scalar(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(str(value), ensure_ascii=False)


def _comment(key: Key) -> str:
    bits = []
    if key.confidence is not None:
        bits.append(f"{key.confidence:.2f}: {key.evidence}" if key.evidence else f"{key.confidence:.2f}")
    return f"  # {'; '.join(bits)}" if bits else ""


def _emit(lines: list[str], name: str, key: Key, indent: int) -> None:
    pad = " " * indent
    if key.question:
        for q in key.question.split("\n"):
            lines.append(f"{pad}# QUESTION: {q}")
    head = f"{pad}{_scalar(name) if not name.isidentifier() else name}:"
    if key.sql:
        if key.confidence is not None:
            lines.append(f"{pad}# {key.confidence:.2f}: {key.evidence}")
        lines.append(f"{head} |")
        lines += [f"{pad}  {ln}".rstrip() for ln in str(key.value).rstrip("\n").split("\n")]
    elif isinstance(key.value, dict):
        lines.append(head + _comment(key))
        for k, v in key.value.items():
            _emit(lines, k, v if isinstance(v, Key) else Key(v), indent + 2)
    elif isinstance(key.value, list):
        lines.append(f"{head} [{', '.join(_scalar(v) for v in key.value)}]{_comment(key)}")
    else:
        lines.append(f"{head} {_scalar(key.value)}{_comment(key)}")


def render(prop: Proposal, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    files = ", ".join(f"{p.path} ({p.rows} rows)" for p in prop.profiles)
    lines = [
        f"# Written by `clarion init` on {now:%Y-%m-%d %H:%M} UTC from {prop.location}.",
        f"# Profiled: {files or 'nothing'}.",
        "# Each key says how sure init is (0-1) and why. Answer the QUESTION comments, then check with",
        "# `clarion extract --dry-run` (what would load, what would be quarantined). docs/onboarding.md",
    ]
    for f in prop.files:
        lines.append(f"#   {f.path}: {f.role} ({f.confidence:.2f}: {f.reason})")
    if prop.questions:
        lines.append(f"# {len(prop.questions)} question(s) are marked QUESTION below or listed here:")
        lines += [f"#   - {q}" for q in prop.questions]
    lines += ["sources:", f"  {prop.source_name}:", f"    kind: {prop.kind}"]
    if prop.kind == "files":
        lines.append(f"    path: {_scalar(prop.location)}")
    for k, v in prop.settings.items():
        _emit(lines, k, v, 4)
    if prop.entities:
        lines.append("    entities:")
    for plan in prop.entities:
        lines.append(f"      # {plan.confidence:.2f}: {plan.reason}")
        lines.append(f"      {plan.entity}:")
        for k, v in plan.keys.items():
            _emit(lines, k, v, 8)
    return "\n".join(lines) + "\n"


def write_config(prop: Proposal, out: Path, force: bool = False) -> Path:
    if out.exists() and not force:
        raise InitError(f"{out} exists; init will not overwrite it. Use --force, or --config-out OTHER.yaml")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(prop))
    return out


def summary(prop: Proposal) -> str:
    """What init found, for the terminal: files, entities with confidence, questions. No values."""
    lines = [f"Profiled {len(prop.profiles)} file(s) in {prop.location}:"]
    for p, f in zip(prop.profiles, prop.files, strict=False):
        sep = f", delimiter {p.delimiter!r}" if p.delimiter else ""
        enc = f", {p.encoding}" if p.encoding else ""
        lines.append(
            f"  {p.path}: {p.rows} rows, {len(p.columns)} columns{sep}{enc} -> {f.role} ({f.confidence:.2f})"
        )
        for c in p.columns:
            lines.append(f"      {c.name}: {c.summary()}")
    lines.append("Proposed entities:")
    for plan in prop.entities:
        lines.append(f"  {plan.entity}: {plan.confidence:.2f} ({plan.reason})")
    if prop.questions:
        lines.append(f"Questions ({len(prop.questions)}):")
        lines += [f"  - {q}" for q in prop.questions]
    return "\n".join(lines)
