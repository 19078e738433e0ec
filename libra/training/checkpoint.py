"""`model.pt`: weights plus what rebuilds the module (its kind and `ModelSpec`), one format.

Loaded with `torch.load(weights_only=True)`: the file holds tensors and plain values only, so
reading a checkpoint never runs code from it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from libra.runtime.labels import EMOTIONS, MODALITIES
from libra.training.drkf import DRKF, ModelSpec
from libra.training.late_fusion import LateFusion

FORMAT_VERSION = 1
MODELS: dict[str, type[DRKF] | type[LateFusion]] = {"drkf": DRKF, "late-fusion": LateFusion}


def build_model(kind: str, spec: ModelSpec | None = None) -> DRKF | LateFusion:
    """A fresh model by registry name; an unknown name lists the valid ones."""
    try:
        cls = MODELS[kind]
    except KeyError:
        raise ValueError(f"unknown model {kind!r}; valid: {', '.join(MODELS)}") from None
    return cls(spec or ModelSpec())


def model_kind(model: nn.Module) -> str:
    for kind, cls in MODELS.items():
        if type(model) is cls:
            return kind
    raise TypeError(f"{type(model).__name__} is not a registered model ({', '.join(MODELS)})")


def save_checkpoint(path: Path, model: DRKF | LateFusion, trained_modalities: Sequence[str],
                    extra: dict[str, Any] | None = None) -> None:
    """Write weights, kind, spec and which modality branches saw labeled data."""
    state = {k: v.detach().clone(memory_format=torch.contiguous_format)
             for k, v in model.state_dict().items()}
    torch.save({
        "format_version": FORMAT_VERSION,
        "kind": model_kind(model),
        "spec": dataclasses.asdict(model.spec),
        "emotions": list(EMOTIONS),
        "modalities": list(MODALITIES),
        "trained_modalities": list(trained_modalities),
        "state_dict": state,
        **(extra or {}),
    }, path)


def load_checkpoint(path: Path) -> tuple[DRKF | LateFusion, dict[str, Any]]:
    """The model in eval mode and the checkpoint's metadata (everything but the weights)."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if blob.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format {blob.get('format_version')!r}, expected "
                         f"{FORMAT_VERSION}; retrain or convert it")
    if list(blob["emotions"]) != list(EMOTIONS) or list(blob["modalities"]) != list(MODALITIES):
        raise ValueError(f"{path}: label set or modality order differs from this code's")
    model = build_model(blob["kind"], ModelSpec(**blob["spec"]))
    model.load_state_dict(blob.pop("state_dict"))
    return model.eval(), blob
