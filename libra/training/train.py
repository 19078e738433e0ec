"""Training in the incomplete-multimodal setting: `train(config) -> run_dir`.

Each source gives one modality (MELD text, RAVDESS audio, FER-2013 faces); every batch takes the
same number of rows from each source (`BalancedSampler`), some rows joined with label-matched
examples of the other sources so the fusion sees 2- and 3-modality inputs. AdamW with a linear
warm-up and cosine decay per step, gradients clipped; after each epoch the model is scored on the
val splits and the best epoch (mean over sources of `select_metric`) is kept. The run folder gets
`config.json`, `metrics.json` (history, val and test metrics per source and per modality subset,
wall times) and `model.pt` (weights + kind + `ModelSpec`), next to each other.

One "epoch" is one pass over the largest selected training source (`steps_per_epoch` overrides).
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from tqdm.auto import tqdm

from libra.runtime.home import artifacts_dir
from libra.training.batches import BalancedSampler, run_batch
from libra.training.checkpoint import build_model, save_checkpoint
from libra.training.drkf import LossWeights, ModelSpec, drkf_losses
from libra.training.evaluate import evaluate_sources, evaluate_subsets
from libra.training.features import (
    MODALITY_SOURCE,
    SOURCE_MODALITY,
    SOURCES,
    FeatureSet,
    Source,
    load_features,
)
from libra.training.late_fusion import late_fusion_loss

DEFAULT_RUNS_DIR = artifacts_dir() / "runs"  # libra.runtime.home: never site-packages
QUICK = {"max_train_examples_per_source": 300, "max_eval_examples_per_source": 200, "epochs": 1}
"""What `--quick` sets: a smoke run of a few hundred examples per source, one epoch."""


class TrainConfig(BaseModel):
    """Everything a run depends on; written to `config.json` and enough to repeat the run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field("drkf", min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    model: Literal["drkf", "late-fusion"] = "drkf"
    sources: tuple[Source, ...] = SOURCES
    seed: int = 0
    epochs: int = Field(8, ge=1)
    batch_size: int = Field(96, ge=1)
    """Rows per batch, split equally between the sources."""
    steps_per_epoch: int | None = Field(None, ge=1)
    """None: one pass over the largest training source."""
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_fraction: float = Field(0.03, ge=0, lt=1)
    grad_clip_norm: float = Field(1.0, gt=0)
    loss_weights: LossWeights = LossWeights()
    """DRKF's auxiliary losses (the late-fusion baseline has only per-modality cross-entropy)."""
    pair_fraction: float = Field(0.25, ge=0, le=1)
    """Rows joined with label-matched examples of other sources, reached after the ramp."""
    pair_ramp_fraction: float = Field(0.5, ge=0, le=1)
    """Part of training over which `pair_fraction` ramps up from 0 (progressive augmentation)."""
    augment: bool = True
    max_train_examples_per_source: int | None = Field(None, ge=1)
    max_eval_examples_per_source: int | None = Field(None, ge=1)
    select_metric: Literal["weighted_f1", "macro_f1", "accuracy"] = "weighted_f1"
    eval_batch_size: int = Field(256, ge=1)
    spec: ModelSpec = ModelSpec()
    out_dir: Path = DEFAULT_RUNS_DIR
    data_dir: Path | None = None
    """None: $LIBRA_DATA_DIR, else ../shared/data."""
    cache_dir: Path | None = None
    """None: artifacts/cache/."""
    bf16: bool = False
    """Train under CPU bfloat16 autocast (about 1.5x faster on CPUs with AVX512-BF16); weights,
    optimizer and evaluation stay float32."""
    threads: int | None = Field(None, ge=1)
    """torch intra-op threads; None keeps torch's default (one per core)."""
    progress: bool = True

    @field_validator("sources")
    @classmethod
    def _sources_unique(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError(f"sources must name at least one of {', '.join(SOURCES)}")
        if len(set(v)) != len(v):
            raise ValueError(f"sources ({', '.join(v)}) must not repeat a source")
        return tuple(s for s in SOURCES if s in v)  # canonical order: runs compare equal

    @model_validator(mode="after")
    def _batch_fits_sources(self) -> TrainConfig:
        if self.batch_size < len(self.sources):
            raise ValueError(f"batch_size ({self.batch_size}) must be at least the number of "
                             f"sources ({len(self.sources)}): each batch takes every source")
        return self

    @property
    def run_dir(self) -> Path:
        return self.out_dir / self.name

    @property
    def modalities(self) -> list[str]:
        return [SOURCE_MODALITY[s] for s in self.sources]

    @classmethod
    def only(cls, modality: str, **kwargs: Any) -> TrainConfig:
        """A unimodal run: the one source that carries `modality`."""
        if modality not in MODALITY_SOURCE:
            raise ValueError(f"unknown modality {modality!r}; valid: {', '.join(MODALITY_SOURCE)}")
        return cls(sources=(MODALITY_SOURCE[modality],), **kwargs)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # sampling uses its own Generator; this is for third-party code
    torch.manual_seed(seed)


def cosine_with_warmup(total_steps: int, warmup_steps: int) -> Any:
    """Multiplier on the base lr: linear from 0 over `warmup_steps`, then cosine down to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _load(config: TrainConfig, split: str, limit: int | None) -> list[FeatureSet]:
    return [load_features(s, split, limit=limit, root=config.data_dir,
                          cache_dir=config.cache_dir, progress=config.progress)
            for s in config.sources]


def _select_score(metrics: dict[str, dict[str, Any]], key: str) -> float:
    return float(np.mean([m[key] for m in metrics.values()]))


def _summary(metrics: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    keys = ("accuracy", "weighted_f1", "macro_f1")
    return {s: {k: round(float(m[k]), 4) for k in keys} for s, m in metrics.items()}


def train(config: TrainConfig, overwrite: bool = False) -> Path:
    """Train one run and write config.json, metrics.json and model.pt under `config.run_dir`."""
    run_dir = config.run_dir
    if (run_dir / "model.pt").exists() and not overwrite:
        raise FileExistsError(f"{run_dir} already holds a trained model; pick another name or "
                              f"pass overwrite=True (--overwrite)")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(config.model_dump_json(indent=2) + "\n")
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    started = time.perf_counter()

    t0 = time.perf_counter()
    train_sets = _load(config, "train", config.max_train_examples_per_source)
    val_sets = _load(config, "val", config.max_eval_examples_per_source)
    test_sets = _load(config, "test", config.max_eval_examples_per_source)
    features_s = time.perf_counter() - t0

    seed_everything(config.seed)
    model = build_model(config.model, config.spec)
    # NHWC convolutions are faster in oneDNN on CPU; same weights, only their memory layout
    model.face.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    per_source = config.batch_size // len(config.sources)
    steps = config.steps_per_epoch or math.ceil(max(len(f) for f in train_sets) / per_source)
    total_steps = steps * config.epochs
    sampler = BalancedSampler(train_sets, per_source, config.seed, config.pair_fraction,
                              round(config.pair_ramp_fraction * total_steps))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_with_warmup(total_steps, round(config.warmup_fraction * total_steps)))

    history: list[dict[str, Any]] = []
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    t_train = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        t_epoch = time.perf_counter()
        model.train()
        sums: dict[str, float] = {}
        bar = tqdm(sampler.batches(steps, augment=config.augment), total=steps,
                   desc=f"epoch {epoch}/{config.epochs}", unit="step",
                   disable=not config.progress)
        for step, batch in enumerate(bar, start=1):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
                out = run_batch(model, batch)
                losses = (drkf_losses(out, batch.labels, config.loss_weights)
                          if config.model == "drkf" else late_fusion_loss(out, batch.labels))
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
            optimizer.step()
            schedule.step()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            if step % 10 == 0 or step == steps:
                bar.set_postfix(loss=f"{sums['total'] / step:.3f}")
        train_s = time.perf_counter() - t_epoch
        val = evaluate_sources(model, val_sets, config.eval_batch_size)
        score = _select_score(val, config.select_metric)
        history.append({"epoch": epoch, "loss": {k: v / steps for k, v in sums.items()},
                        "val": _summary(val), "val_score": score,
                        "train_s": round(train_s, 2),
                        "eval_s": round(time.perf_counter() - t_epoch - train_s, 2)})
        if config.progress:
            tqdm.write(f"epoch {epoch}: loss {sums['total'] / steps:.4f}  val "
                       f"{config.select_metric} {score:.4f}  "
                       + "  ".join(f"{s} {m[config.select_metric]:.3f}" for s, m in val.items()))
        if best is None or score > best[0]:
            best = (score, epoch, copy.deepcopy(model.state_dict()))
    training_s = time.perf_counter() - t_train

    assert best is not None
    model.load_state_dict(best[2])
    model.eval()
    t_eval = time.perf_counter()
    metrics: dict[str, Any] = {
        "model": config.model,
        "sources": list(config.sources),
        "modalities": config.modalities,
        "select_metric": config.select_metric,
        "best_epoch": best[1],
        "best_val_score": best[0],
        "steps_per_epoch": steps,
        "rows_per_source_per_batch": per_source,
        "train_examples": {f.source: len(f) for f in train_sets},
        "history": history,
        "val": evaluate_sources(model, val_sets, config.eval_batch_size),
        "test": evaluate_sources(model, test_sets, config.eval_batch_size),
    }
    if len(config.sources) > 1:
        metrics["subsets"] = {"val": evaluate_subsets(model, val_sets, config.eval_batch_size),
                              "test": evaluate_subsets(model, test_sets, config.eval_batch_size)}
    metrics["wall_s"] = {"features": round(features_s, 2), "training": round(training_s, 2),
                         "final_eval": round(time.perf_counter() - t_eval, 2),
                         "total": round(time.perf_counter() - started, 2)}
    metrics["threads"] = torch.get_num_threads()
    save_checkpoint(run_dir / "model.pt", model, config.modalities,
                    extra={"best_epoch": best[1], "seed": config.seed})
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return run_dir
