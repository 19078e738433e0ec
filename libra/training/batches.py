"""Batches in the incomplete-multimodal setting: each row carries only the modalities it has.

A `Batch` holds, per modality, which rows have it and their encoder inputs; `encode_batch` runs
each encoder on its rows only (an absent modality costs nothing and never reaches BatchNorm
statistics) and leaves zeros, masked by the presence mask, everywhere else.

`BalancedSampler` is the MCULoRA-style balancing for unpaired sources: every batch takes the same
number of rows from each source (the small RAVDESS is drawn many times per epoch, FER-2013 about
once), each source cycling through its own reshuffled order. With `pair_fraction` > 0 some rows
also get examples of the other sources with the same label (pseudo-pairs: the sources are not
paired, the label is the bridge), so the fusion encoder learns to combine 2 and 3 modalities;
the fraction ramps up over training (progressive modality augmentation).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

from libra.training.drkf import AUDIO, N_MODALITIES, TEXT, ModalityModel
from libra.training.features import FeatureSet

FACE_SHIFT_PX = 4
FREQ_MASK_BANDS = 8
TIME_MASK_FRAMES = 40


@dataclass(frozen=True, eq=False)
class Batch:
    """`labels` (B,), `presence` (B, 3); `rows[m]` the rows having modality m, `inputs[m]` their
    encoder arguments in row order."""

    labels: Tensor
    presence: Tensor
    rows: dict[int, Tensor]
    inputs: dict[int, tuple[Tensor, ...]]

    def __len__(self) -> int:
        return len(self.labels)


def gather(features: FeatureSet, idx: np.ndarray,
           augment: torch.Generator | None = None) -> tuple[Tensor, ...]:
    """Encoder inputs of rows `idx` of one source; `augment` (a seeded generator) perturbs them
    the way training does (faces: flip and shift; audio: one frequency and one time mask)."""
    m = features.modality_index
    if m == TEXT:
        return (torch.from_numpy(features.arrays["text_emb"][idx]),)
    if m == AUDIO:
        mel = torch.from_numpy(features.arrays["audio_mel"][idx].astype(np.float32))
        frames = torch.from_numpy(features.arrays["audio_frames"][idx])
        if augment is not None:
            mel = mask_audio(mel, frames, augment)
        return mel, frames
    faces = torch.from_numpy(features.arrays["faces"][idx])
    if augment is not None:
        faces = _shift_and_flip(faces, augment)
    return (faces,)


def _shift_and_flip(faces: Tensor, g: torch.Generator) -> Tensor:
    b, _, h, w = faces.shape
    flip = torch.rand(b, generator=g) < 0.5
    faces = torch.where(flip[:, None, None, None], faces.flip(-1), faces)
    s = FACE_SHIFT_PX
    padded = F.pad(faces, (s, s, s, s), mode="replicate")
    dy, dx = (torch.randint(0, 2 * s + 1, (b,), generator=g) for _ in range(2))
    return torch.stack([padded[i, :, int(dy[i]):int(dy[i]) + h, int(dx[i]):int(dx[i]) + w]
                        for i in range(b)])


def mask_audio(mel: Tensor, frames: Tensor, g: torch.Generator) -> Tensor:
    """SpecAugment-style masks filled with the clip's band means (0 after the encoder's own
    per-utterance normalisation), inside the valid frames only."""
    mel = mel.clone()
    n_mels = mel.shape[1]
    for i in range(mel.shape[0]):
        valid = int(frames[i])
        band_mean = mel[i, :, :valid].mean(-1)
        f = int(torch.randint(0, FREQ_MASK_BANDS + 1, (1,), generator=g))
        f0 = int(torch.randint(0, n_mels - f + 1, (1,), generator=g))
        mel[i, f0:f0 + f, :valid] = band_mean[f0:f0 + f, None]
        t = min(int(torch.randint(0, TIME_MASK_FRAMES + 1, (1,), generator=g)), valid // 4)
        t0 = int(torch.randint(0, valid - t + 1, (1,), generator=g))
        mel[i, :, t0:t0 + t] = band_mean[:, None]
    return mel


def make_batch(parts: Sequence[tuple[FeatureSet, np.ndarray, np.ndarray]], labels: np.ndarray,
               augment: torch.Generator | None = None) -> Batch:
    """A batch from (features, rows, example indices) per source; `labels` (B,) per row."""
    presence = torch.zeros(len(labels), N_MODALITIES)
    rows: dict[int, Tensor] = {}
    inputs: dict[int, tuple[Tensor, ...]] = {}
    for features, row_idx, example_idx in parts:
        if len(row_idx) == 0:
            continue
        m = features.modality_index
        if m in rows:
            raise ValueError(f"two sources give modality {m} in one batch")
        rows[m] = torch.from_numpy(np.asarray(row_idx, dtype=np.int64))
        inputs[m] = gather(features, np.asarray(example_idx), augment)
        presence[rows[m], m] = 1.0
    return Batch(torch.from_numpy(np.asarray(labels, dtype=np.int64)), presence, rows, inputs)


def encode_batch(model: ModalityModel, batch: Batch) -> Tensor:
    """(B, M, d) encoder vectors: each encoder on its present rows only, zeros elsewhere."""
    encoders = model.encoders()
    features = torch.zeros(len(batch), model.n_modalities, model.spec.d_model)
    for m, row_idx in batch.rows.items():
        encoded = encoders[m](*batch.inputs[m])
        features = features.index_put((row_idx, torch.full_like(row_idx, m)),
                                       encoded.to(features.dtype))
    return features


def run_batch(model: ModalityModel, batch: Batch) -> dict[str, Tensor]:
    return model.fuse(encode_batch(model, batch), batch.presence)


class BalancedSampler:
    """`steps` batches of `per_source` rows from each source, plus label-matched pseudo-pairs."""

    def __init__(self, sources: Sequence[FeatureSet], per_source: int, seed: int,
                 pair_fraction: float = 0.0, pair_ramp_steps: int = 0) -> None:
        if per_source < 1:
            raise ValueError(f"per_source ({per_source}) must be at least 1")
        if not 0.0 <= pair_fraction <= 1.0:
            raise ValueError(f"pair_fraction ({pair_fraction}) must be within [0, 1]")
        self.sources = list(sources)
        self.per_source = per_source
        self.pair_fraction = pair_fraction
        self.pair_ramp_steps = pair_ramp_steps
        self.rng = np.random.default_rng(seed)
        self.augment = torch.Generator().manual_seed(seed)
        self._orders: list[np.ndarray] = [np.empty(0, np.int64) for _ in self.sources]
        self._by_label = [{int(y): np.flatnonzero(s.labels == y) for y in np.unique(s.labels)}
                          for s in self.sources]
        self.step = 0

    def _draw(self, s: int, n: int) -> np.ndarray:
        """The next n examples of source s, reshuffling each time its order runs out."""
        out = []
        while n > 0:
            if len(self._orders[s]) == 0:
                self._orders[s] = self.rng.permutation(len(self.sources[s]))
            take, self._orders[s] = self._orders[s][:n], self._orders[s][n:]
            out.append(take)
            n -= len(take)
        return np.concatenate(out)

    def current_pair_fraction(self) -> float:
        if self.pair_ramp_steps <= 0:
            return self.pair_fraction
        return self.pair_fraction * min(1.0, self.step / self.pair_ramp_steps)

    def next_batch(self, augment: bool = True) -> Batch:
        n_src = len(self.sources)
        own = [self._draw(s, self.per_source) for s in range(n_src)]
        labels = np.concatenate([self.sources[s].labels[own[s]] for s in range(n_src)])
        rows: list[list[int]] = [[] for _ in range(n_src)]
        examples: list[list[int]] = [[] for _ in range(n_src)]
        for s in range(n_src):
            start = s * self.per_source
            rows[s].extend(range(start, start + self.per_source))
            examples[s].extend(int(i) for i in own[s])
        fraction = self.current_pair_fraction()
        if n_src > 1 and fraction > 0:
            for r in np.flatnonzero(self.rng.random(len(labels)) < fraction):
                home = int(r) // self.per_source
                others = [s for s in range(n_src) if s != home]
                # a random non-empty set of the other sources joins this row
                chosen = [s for s in others if self.rng.random() < 0.5] or [
                    others[int(self.rng.integers(len(others)))]]
                for s in chosen:
                    pool = self._by_label[s].get(int(labels[r]))
                    if pool is not None and len(pool):
                        rows[s].append(int(r))
                        examples[s].append(int(pool[self.rng.integers(len(pool))]))
        self.step += 1
        parts = [(self.sources[s], np.array(rows[s]), np.array(examples[s]))
                 for s in range(n_src)]
        return make_batch(parts, labels, self.augment if augment else None)

    def batches(self, steps: int, augment: bool = True) -> Iterator[Batch]:
        for _ in range(steps):
            yield self.next_batch(augment)
