"""Put a brand adapter (models.content.tune) into a loaded local model, and say which one it was.

The adapter's low-rank updates are merged into the model's weights (peft's ``merge_and_unload``):
drafting then runs the same plain model at the same speed, and ``LocalLM.generate`` does not know an
adapter is there. What it does record is ``lm.adapter = {version, sha256}``, which every draft's
provenance carries under ``model.adapter``, so an approved text can be traced to the exact adapter.

An adapter is refused when it was trained on other base weights than the loaded ones: the deltas
only mean something on the weights they were learnt against.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from clarion.errors import ClarionError
from models.content.tune import ADAPTER_META

FILES = ("adapter_config.json", "adapter_model.safetensors")


class AdapterError(ClarionError):
    exit_code = 2


def adapter_sha256(folder: Path) -> str:
    """The adapter's identity: its config and weights, hashed together."""
    digest = hashlib.sha256()
    for name in FILES:
        digest.update(name.encode())
        digest.update((Path(folder) / name).read_bytes())
    return digest.hexdigest()


def check_folder(folder: Path) -> dict[str, Any]:
    """The adapter's clarion-adapter.json, after checking the folder holds an adapter at all."""
    folder = Path(folder)
    missing = [n for n in (*FILES, ADAPTER_META) if not (folder / n).is_file()]
    if missing:
        raise AdapterError(
            f"content.adapter {folder} is not a brand adapter (missing {', '.join(missing)}): give a folder "
            "written by `clarion content tune`, or set content.adapter to auto or none"
        )
    return json.loads((folder / ADAPTER_META).read_text())


def apply_adapter(lm: Any, folder: Path, version: str | None = None) -> dict[str, str]:
    """Merge the adapter in ``folder`` into ``lm`` (a models.content.llm.LocalLM) and return the
    provenance record ``{version, sha256}``; ``version`` is the registry's (else the folder's name)."""
    from peft import PeftModel

    folder = Path(folder)
    meta = check_folder(folder)
    base = meta.get("base_weights_sha256")
    if base and base != lm.weights_sha256:
        raise AdapterError(
            f"content.adapter {folder} was trained on model weights {base[:12]}, but the loaded model "
            f"{lm.name} has weights {lm.weights_sha256[:12]}: tune again for this model "
            "(`clarion content tune`) or set content.adapter to none"
        )
    record = {"version": version or folder.name, "sha256": adapter_sha256(folder)}
    peft_model = PeftModel.from_pretrained(lm.model, str(folder), is_trainable=False)
    lm.model = peft_model.merge_and_unload().eval()
    lm.adapter = record
    return record
