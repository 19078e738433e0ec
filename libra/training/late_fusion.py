"""The plain late-fusion baseline: the same pluggable encoders, one linear head per modality,
probabilities averaged.

Each present modality's encoder vector goes through its own linear classifier; the prediction is
the mean of the present modalities' probabilities. Nothing is shared between modalities, so it
measures what DRKF's decoupled representations and knowledge fusion add over the same encoders.
Trained on one source (or with one modality present) it is the unimodal model (encoder plus
linear head).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from libra.training.drkf import N_CLASSES, ModalityModel, ModelSpec


class LateFusion(ModalityModel):
    """Same inputs and `fuse` contract as `DRKF`; `logits` are log mean probabilities."""

    def __init__(self, spec: ModelSpec | None = None,
                 encoders: Mapping[str, nn.Module] | None = None,
                 n_classes: int = N_CLASSES) -> None:
        spec = spec or ModelSpec()
        super().__init__(spec, encoders, n_classes)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Dropout(spec.dropout), nn.Linear(spec.d_model, n_classes))
            for _ in range(self.n_modalities)
        )
        self._check_encoders()

    def fuse(self, features: Tensor, presence: Tensor) -> dict[str, Tensor]:
        """Per-modality logits (B, M, C) and the log of the present modalities' mean probability."""
        present = presence.to(features.dtype)
        present = torch.where(present.sum(-1, keepdim=True) > 0, present,
                              torch.ones_like(present))  # nothing present: average all (finite)
        unimodal = torch.stack([head(features[:, m]) for m, head in enumerate(self.heads)], dim=1)
        probs = (torch.softmax(unimodal, -1) * present.unsqueeze(-1)).sum(1)
        probs = probs / present.sum(-1, keepdim=True)
        return {"logits": torch.log(probs.clamp(min=1e-12)), "unimodal_logits": unimodal,
                "presence": present}


def late_fusion_loss(out: dict[str, Tensor], labels: Tensor) -> dict[str, Tensor]:
    """Each present modality's head trained on its own (cross-entropy averaged over them)."""
    n_modalities, n_classes = out["unimodal_logits"].shape[1:]
    uni = nn.functional.cross_entropy(out["unimodal_logits"].reshape(-1, n_classes),
                                      labels.repeat_interleave(n_modalities), reduction="none")
    mask = out["presence"].reshape(-1)
    loss = (uni * mask).sum() / mask.sum().clamp(min=1)
    return {"unimodal": loss, "total": loss}
