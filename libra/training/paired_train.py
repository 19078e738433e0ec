"""Training one model on a paired set (`paired_data`), with the same fusion classes as serving.

A `Recipe` names what is trained: the fusion class (`DRKF`, `LateFusion`, `EarlyFusion`, all
`ModalityModel`s with pluggable encoders), which modalities each training row carries (one fixed
subset, or modality sampling: every row draws a non-empty subset), DRKF's loss weights and whether
it keeps its Emotion Discrimination head. `fit` trains it with AdamW and a warm-up + cosine
schedule, keeps the epoch with the best validation weighted F1 (averaged over the subsets it is
evaluated on) and returns test probabilities for each of those subsets.

Encoders (`make_encoders`): our own `AudioEncoder` on log-mel inputs (RAVDESS audio, from the
FLACs), a `FeatureProjection` for each precomputed feature modality (action units, MOSI
features). Rows are batched with `batches.Batch`, so an absent modality's encoder never runs.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from libra.runtime.recognizer import AUDIO_CONTEXT_FRAMES
from libra.training.batches import Batch, mask_audio, run_batch
from libra.training.drkf import (
    DRKF,
    AudioEncoder,
    FeatureProjection,
    LossWeights,
    ModalityModel,
    ModelSpec,
    drkf_losses,
)
from libra.training.early_fusion import EarlyFusion, early_fusion_loss
from libra.training.late_fusion import LateFusion, late_fusion_loss
from libra.training.metrics import classification_metrics
from libra.training.paired_data import PairedDataset, PairedSplit
from libra.training.train import cosine_with_warmup, seed_everything

Subset = tuple[int, ...]
Kind = Literal["drkf", "late-fusion", "early-fusion"]
AUDIO_HOP = 8
"""The audio encoder downsamples time by 8: batches are cut to a multiple of it."""


def all_subsets(n_modalities: int) -> list[Subset]:
    """Every non-empty subset of modality indices, singles first."""
    return [s for r in range(1, n_modalities + 1)
            for s in itertools.combinations(range(n_modalities), r)]


def subset_name(dataset: PairedDataset, subset: Subset) -> str:
    """`audio+video`: the modalities' names, sorted, joined by '+'."""
    return "+".join(sorted(dataset.modalities[m] for m in subset))


@dataclass(frozen=True)
class Recipe:
    """One trained model: `train_subset` None means modality sampling over every subset."""

    model: str
    kind: Kind
    train_subset: Subset | None
    eval_subsets: tuple[Subset, ...]
    loss_weights: LossWeights = field(default_factory=LossWeights)
    emotion_discrimination: bool = True


@dataclass(frozen=True)
class PairedConfig:
    """Optimisation and size settings shared by every recipe of one dataset."""

    epochs: int = 60
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    grad_clip_norm: float = 1.0
    d_model: int = 128
    n_heads: int = 4
    dropout: float = 0.1
    full_fraction: float = 0.5
    """Modality sampling: the share of rows with every modality; the rest draw one of the other
    non-empty subsets uniformly."""
    augment: bool = True
    """SpecAugment-style masks on log-mel audio during training."""
    eval_batch_size: int = 256
    encoder_init: Literal["scratch", "unimodal"] = "scratch"
    """Fused models' encoders: trained from scratch with the fusion, or started from the same
    seed's unimodal models (each encoder first trained on its own modality, then fine-tuned with
    the fusion): joint training from scratch lets the stronger modality leave the other's
    encoder under-trained."""
    encoder_lr_scale: float = 1.0
    """Learning rate of encoders started from unimodal models, relative to `lr`."""

    def spec(self) -> ModelSpec:
        return ModelSpec(d_model=self.d_model, n_heads=self.n_heads, dropout=self.dropout)


@dataclass
class FitResult:
    best_epoch: int
    val_score: float
    test_probs: dict[Subset, np.ndarray] = field(default_factory=dict)
    history: list[float] = field(default_factory=list)
    encoder_states: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    """The best epoch's encoders of the modalities it was trained on (a unimodal model's
    encoder is what `encoder_init="unimodal"` starts fused models from)."""


def make_encoders(dataset: PairedDataset, spec: ModelSpec) -> dict[str, nn.Module]:
    """One encoder per modality in the dataset's order: ours for log-mel audio, a projection for
    each precomputed feature vector."""
    encoders: dict[str, nn.Module] = {}
    for m in dataset.modalities:
        if m in dataset.feature_dims:
            encoders[m] = FeatureProjection(f"{m}_features", dataset.feature_dims[m],
                                            spec.d_model, spec.dropout)
        elif m == "audio":
            encoders[m] = AudioEncoder(spec)
        else:
            raise ValueError(f"{dataset.name}: no encoder for raw modality {m!r}")
    return encoders


def build(recipe: Recipe, dataset: PairedDataset, config: PairedConfig) -> ModalityModel:
    spec = config.spec()
    encoders = make_encoders(dataset, spec)
    if recipe.kind == "drkf":
        return DRKF(spec, encoders, dataset.n_classes, recipe.emotion_discrimination)
    if recipe.kind == "late-fusion":
        return LateFusion(spec, encoders, dataset.n_classes)
    if recipe.kind == "early-fusion":
        return EarlyFusion(spec, encoders, dataset.n_classes)
    raise ValueError(f"unknown model kind {recipe.kind!r}")


def loss_fn(recipe: Recipe) -> Callable[[dict[str, Tensor], Tensor], dict[str, Tensor]]:
    if recipe.kind == "drkf":
        return lambda out, labels: drkf_losses(out, labels, recipe.loss_weights)
    if recipe.kind == "late-fusion":
        return late_fusion_loss
    return early_fusion_loss


def gather(split: PairedSplit, modality: str, idx: np.ndarray,
           augment: torch.Generator | None) -> tuple[Tensor, ...]:
    """Encoder inputs of rows `idx`. Log-mel is cut after the longest valid part in the batch
    plus the convolutions' reach (`AUDIO_CONTEXT_FRAMES`, as serving cuts it), rounded up to the
    encoder's hop: the embedding is the same and the convolutions run on half the frames."""
    arrays = split.inputs[modality]
    if len(arrays) == 2:  # (log-mel, valid frames)
        frames = torch.from_numpy(arrays[1][idx].astype(np.int64))
        longest = int(frames.max()) + AUDIO_CONTEXT_FRAMES
        width = min(arrays[0].shape[-1], math.ceil(longest / AUDIO_HOP) * AUDIO_HOP)
        mel = torch.from_numpy(arrays[0][idx, :, :width].astype(np.float32))
        if augment is not None:
            mel = mask_audio(mel, frames, augment)
        return mel, frames
    return tuple(torch.from_numpy(a[idx].astype(np.float32)) for a in arrays)


def make_batch(dataset: PairedDataset, split: PairedSplit, idx: np.ndarray, presence: np.ndarray,
               augment: torch.Generator | None = None) -> Batch:
    """Rows `idx` with presence (B, M): each modality's inputs only for the rows that have it."""
    rows: dict[int, Tensor] = {}
    inputs: dict[int, tuple[Tensor, ...]] = {}
    for m, name in enumerate(dataset.modalities):
        have = np.flatnonzero(presence[:, m] > 0)
        if len(have):
            rows[m] = torch.from_numpy(have.astype(np.int64))
            inputs[m] = gather(split, name, idx[have], augment)
    return Batch(torch.from_numpy(split.labels[idx]), torch.from_numpy(presence.astype(np.float32)),
                 rows, inputs)


def sample_presence(rng: np.random.Generator, n_rows: int, n_modalities: int,
                    full_fraction: float) -> np.ndarray:
    """Modality sampling: (n_rows, M) presence, the full set with probability `full_fraction`,
    otherwise one of the other non-empty subsets, uniformly."""
    subsets = all_subsets(n_modalities)
    full, others = subsets[-1], subsets[:-1]
    out = np.zeros((n_rows, n_modalities), dtype=np.float32)
    for r in range(n_rows):
        chosen = full if not others or rng.random() < full_fraction else others[
            int(rng.integers(len(others)))]
        out[r, list(chosen)] = 1.0
    return out


def fixed_presence(n_rows: int, n_modalities: int, subset: Subset) -> np.ndarray:
    out = np.zeros((n_rows, n_modalities), dtype=np.float32)
    out[:, list(subset)] = 1.0
    return out


@torch.no_grad()
def predict(model: ModalityModel, dataset: PairedDataset, split: PairedSplit, subset: Subset,
            batch_size: int = 256) -> np.ndarray:
    """Class probabilities (N, C) of every row of `split` with the modalities of `subset`."""
    model.eval()
    out = np.zeros((len(split), dataset.n_classes), dtype=np.float32)
    for start in range(0, len(split), batch_size):
        idx = np.arange(start, min(start + batch_size, len(split)))
        batch = make_batch(dataset, split, idx,
                           fixed_presence(len(idx), len(dataset.modalities), subset))
        out[idx] = torch.softmax(run_batch(model, batch)["logits"], -1).numpy()
    return out


def _batches(rng: np.random.Generator, n: int, size: int) -> Iterator[np.ndarray]:
    order = rng.permutation(n)
    for start in range(0, n, size):
        yield order[start:start + size]


def val_score(model: ModalityModel, dataset: PairedDataset, subsets: Sequence[Subset],
              batch_size: int) -> float:
    """Mean validation weighted F1 over `subsets`: what picks the epoch."""
    split = dataset.splits["val"]
    scores = []
    for s in subsets:
        probs = predict(model, dataset, split, s, batch_size)
        scores.append(classification_metrics(split.labels, probs.argmax(-1),
                                             dataset.class_names)["weighted_f1"])
    return float(np.mean(scores))


def _param_groups(model: ModalityModel, started: Sequence[str], config: PairedConfig
                  ) -> list[dict[str, object]]:
    """Encoders in `started` (begun from unimodal models) learn at `encoder_lr_scale` x lr; the
    rest at the optimizer's lr."""
    pretrained = [p for name in started for p in model.get_submodule(name).parameters()]
    ids = {id(p) for p in pretrained}
    groups: list[dict[str, object]] = [
        {"params": [p for p in model.parameters() if id(p) not in ids]}]
    if pretrained:
        groups.append({"params": pretrained, "lr": config.lr * config.encoder_lr_scale})
    return groups


def fit(dataset: PairedDataset, recipe: Recipe, config: PairedConfig, seed: int,
        encoder_init: Mapping[str, Mapping[str, Tensor]] | None = None) -> FitResult:
    """Train `recipe` with `seed` (weights, batch order, modality sampling, augmentation) and
    return the best validation epoch's test probabilities for each evaluated subset.
    `encoder_init` maps encoder names to state dicts the model's encoders start from."""
    seed_everything(seed)
    model = build(recipe, dataset, config)
    for name, state in (encoder_init or {}).items():
        model.get_submodule(name).load_state_dict(state)
    train = dataset.splits["train"]
    n_mod = len(dataset.modalities)
    rng = np.random.default_rng(seed)
    augment = torch.Generator().manual_seed(seed) if config.augment else None
    steps = math.ceil(len(train) / config.batch_size)
    total = steps * config.epochs
    optimizer = torch.optim.AdamW(_param_groups(model, list(encoder_init or {}), config),
                                  lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_with_warmup(total, round(config.warmup_fraction * total)))
    losses = loss_fn(recipe)
    best: tuple[float, int, dict[str, Tensor]] | None = None
    history = []
    for epoch in range(1, config.epochs + 1):
        model.train()
        for idx in _batches(rng, len(train), config.batch_size):
            presence = (sample_presence(rng, len(idx), n_mod, config.full_fraction)
                        if recipe.train_subset is None
                        else fixed_presence(len(idx), n_mod, recipe.train_subset))
            batch = make_batch(dataset, train, idx, presence, augment)
            loss = losses(run_batch(model, batch), batch.labels)["total"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
            optimizer.step()
            schedule.step()
        score = val_score(model, dataset, recipe.eval_subsets, config.eval_batch_size)
        history.append(round(score, 4))
        if best is None or score > best[0]:
            best = (score, epoch, copy.deepcopy(model.state_dict()))
    assert best is not None
    model.load_state_dict(best[2])
    test = dataset.splits["test"]
    trained_on = range(n_mod) if recipe.train_subset is None else recipe.train_subset
    return FitResult(best_epoch=best[1], val_score=best[0], history=history,
                     test_probs={s: predict(model, dataset, test, s, config.eval_batch_size)
                                 for s in recipe.eval_subsets},
                     encoder_states={  # the model is done with: no copy needed
                         name: model.get_submodule(name).state_dict()
                         for name in (model.encoder_names[m] for m in trained_on)})
