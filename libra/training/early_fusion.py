"""The early-fusion baseline: concatenate the encoder vectors, then one MLP classifies.

The same pluggable encoders as `DRKF` and `LateFusion`; an absent modality contributes zeros to
the concatenation (its slot is masked by the presence mask). There is no per-modality structure
after the concatenation, so it is the plain "feature-level fusion" that DRKF's decoupled
representations and knowledge fusion are measured against.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from libra.training.drkf import ModalityModel, ModelSpec


class EarlyFusion(ModalityModel):
    """Concatenation of the present modalities' vectors (B, M * d) -> MLP -> logits (B, C)."""

    def __init__(self, spec: ModelSpec, encoders: Mapping[str, nn.Module], n_classes: int) -> None:
        super().__init__(spec, encoders, n_classes)
        width = self.n_modalities * spec.d_model
        self.classify = nn.Sequential(nn.LayerNorm(width), nn.Dropout(spec.dropout),
                                      nn.Linear(width, spec.d_model), nn.GELU(),
                                      nn.Dropout(spec.dropout), nn.Linear(spec.d_model, n_classes))
        self._check_encoders()

    def fuse(self, features: Tensor, presence: Tensor) -> dict[str, Tensor]:
        present = presence.to(features.dtype)
        joined = (features * present.unsqueeze(-1)).flatten(1)
        return {"logits": self.classify(joined), "presence": present}


def early_fusion_loss(out: dict[str, Tensor], labels: Tensor) -> dict[str, Tensor]:
    loss = F.cross_entropy(out["logits"], labels)
    return {"ce": loss, "total": loss}
