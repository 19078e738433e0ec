"""Export a trained checkpoint to one FP32 ONNX graph that takes what
`libra.runtime.inputs` produces.

The graph puts the frozen all-MiniLM-L6-v2 in front of the recognizer, so it takes token ids
rather than sentence embeddings, and ends in a softmax. Its inputs, in this order:

- `audio_mel` (batch, 64, mel_frames) float32 and `audio_frames` (batch,) int64 valid frames;
- `faces` (batch, face_frames, 48, 48) float32 in [0, 1];
- `input_ids` and `attention_mask` (batch, tokens) int64;
- `presence` (batch, 3) float32, 1 where the row has the modality (`MODALITIES` order).

Outputs: `probabilities` (batch, 7) and `logits` (batch, 7) in `EMOTIONS` order. Every axis but
the feature sizes is dynamic: a batch with no audio can send 8 mel frames instead of 798, and one
without text a single token, so an absent modality costs next to nothing.

Exported with `torch.onnx.export(dynamo=True)` at opset 18: the legacy TorchScript exporter
mis-traces MiniLM's attention mask.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from libra.runtime.labels import MODALITIES
from libra.training.drkf import DRKF
from libra.training.late_fusion import LateFusion
from libra.training.text_encoder import MiniLMEncoder

OPSET = 18
INPUT_NAMES = ("audio_mel", "audio_frames", "faces", "input_ids", "attention_mask", "presence")
OUTPUT_NAMES = ("probabilities", "logits")
EXAMPLE_SIZES = {"batch": 2, "mel_frames": 96, "face_frames": 3, "tokens": 12}
"""Sizes of the tracing example: above 1, so torch.export keeps every axis symbolic."""


class ServingGraph(nn.Module):
    """Token ids in, MiniLM sentence embedding, then the recognizer; softmax at the end."""

    def __init__(self, model: DRKF | LateFusion, text_encoder: MiniLMEncoder) -> None:
        super().__init__()
        self.model = model.eval()
        self.text_encoder = text_encoder.eval()

    def forward(self, audio_mel: Tensor, audio_frames: Tensor, faces: Tensor, input_ids: Tensor,
                attention_mask: Tensor, presence: Tensor) -> tuple[Tensor, Tensor]:
        text_emb = self.text_encoder(input_ids, attention_mask)
        logits = self.model(audio_mel, audio_frames, faces, text_emb, presence)["logits"]
        return torch.softmax(logits, dim=-1), logits


def example_inputs(model: DRKF | LateFusion, seed: int = 0) -> tuple[Tensor, ...]:
    """A small random batch with every axis above 1, in `INPUT_NAMES` order."""
    g = torch.Generator().manual_seed(seed)
    b, f, n, t = (EXAMPLE_SIZES[k] for k in ("batch", "mel_frames", "face_frames", "tokens"))
    mask = torch.ones(b, t, dtype=torch.int64)
    mask[0, t // 2:] = 0
    return (
        torch.randn(b, model.spec.n_mels, f, generator=g),
        torch.tensor([f, f // 2], dtype=torch.int64)[:b],
        torch.rand(b, n, 48, 48, generator=g),
        torch.randint(1000, 5000, (b, t), generator=g),
        mask,
        torch.ones(b, len(MODALITIES)),
    )


def export_fp32(model: DRKF | LateFusion, path: Path, text_encoder: MiniLMEncoder | None = None
                ) -> Path:
    """Write the FP32 serving graph to `path` (weights inside the file) and return the path."""
    graph = ServingGraph(model, text_encoder or MiniLMEncoder())
    batch = torch.export.Dim("batch", min=1, max=4096)
    mel = torch.export.Dim("mel_frames", min=8, max=4096)
    frames = torch.export.Dim("face_frames", min=1, max=64)
    tokens = torch.export.Dim("tokens", min=1, max=512)
    dynamic = (
        {0: batch, 2: mel}, {0: batch}, {0: batch, 1: frames}, {0: batch, 1: tokens},
        {0: batch, 1: tokens}, {0: batch},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # exporter chatter about unused symbols and versions
        program = torch.onnx.export(
            graph, example_inputs(model), dynamo=True, opset_version=OPSET,
            input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
            dynamic_shapes=dynamic, optimize=True, verbose=False,
        )
    assert program is not None
    program.save(str(path), external_data=False)
    return path
