"""Evaluation: per source (MELD text, RAVDESS audio, FER-2013 faces) and per modality subset.

Per source, each example carries its one modality (the sources are not paired), so these are the
unimodal numbers the model card compares with published ones. Modality subsets of two or three
are evaluated on label-matched pseudo-pairs: each example of the smallest source in the subset is
joined with a random same-label example of each other source (fixed seed). That shows whether the
fusion uses several modalities at once; it is not a result on real paired clips.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from libra.training.batches import make_batch, run_batch
from libra.training.checkpoint import load_checkpoint
from libra.training.drkf import DRKF, N_CLASSES
from libra.training.features import SOURCE_MODALITY, FeatureSet, load_features
from libra.training.late_fusion import LateFusion
from libra.training.metrics import classification_metrics

PAIR_SEED = 0


@torch.no_grad()
def predict(model: DRKF | LateFusion, features: Sequence[FeatureSet],
            index: Sequence[np.ndarray], batch_size: int = 256) -> np.ndarray:
    """Class probabilities (N, C) for rows made of example `index[k][i]` of `features[k]`, each
    source's modality present (one source: unimodal; several: pseudo-pairs)."""
    model.eval()
    n = len(index[0])
    out = np.zeros((n, N_CLASSES), dtype=np.float32)
    for start in range(0, n, batch_size):
        rows = np.arange(start, min(start + batch_size, n))
        parts = [(f, rows - start, idx[rows]) for f, idx in zip(features, index, strict=True)]
        labels = features[0].labels[index[0][rows]]
        batch = make_batch(parts, labels)
        out[rows] = torch.softmax(run_batch(model, batch)["logits"], -1).numpy()
    return out


def evaluate_sources(model: DRKF | LateFusion, features: Sequence[FeatureSet],
                     batch_size: int = 256) -> dict[str, dict[str, Any]]:
    """Metrics per source, keyed by source name, each example with its own modality only."""
    results = {}
    for f in features:
        probs = predict(model, [f], [np.arange(len(f))], batch_size)
        results[f.source] = {"modality": f.modality,
                             **classification_metrics(f.labels, probs.argmax(-1))}
    return results


def pseudo_pairs(features: Sequence[FeatureSet], seed: int = PAIR_SEED) -> list[np.ndarray]:
    """Example indices per source: every example of the smallest, each joined with a random
    same-label example of the others (anchors whose label another source lacks are dropped)."""
    anchor = min(range(len(features)), key=lambda k: (len(features[k]), k))
    rng = np.random.default_rng(seed)
    pools = [{int(y): np.flatnonzero(f.labels == y) for y in np.unique(f.labels)}
             for f in features]
    keep = [i for i, y in enumerate(features[anchor].labels)
            if all(int(y) in pools[k] for k in range(len(features)))]
    index = []
    for k, _ in enumerate(features):
        if k == anchor:
            index.append(np.array(keep, dtype=np.int64))
        else:
            index.append(np.array(
                [rng.choice(pools[k][int(features[anchor].labels[i])]) for i in keep],
                dtype=np.int64))
    return index


def evaluate_subsets(model: DRKF | LateFusion, features: Sequence[FeatureSet],
                     batch_size: int = 256) -> dict[str, dict[str, Any]]:
    """Metrics on label-matched pseudo-pairs for every subset of two or more sources."""
    results = {}
    for r in range(2, len(features) + 1):
        for combo in itertools.combinations(features, r):
            index = pseudo_pairs(combo)
            probs = predict(model, combo, index, batch_size)
            name = "+".join(sorted(SOURCE_MODALITY[f.source] for f in combo))
            labels = combo[0].labels[index[0]]
            results[name] = {"protocol": "label-matched pseudo-pairs (not real paired clips)",
                             **classification_metrics(labels, probs.argmax(-1))}
    return results


def evaluate(run_dir: Path | str, split: str = "test", *, data_dir: Path | str | None = None,
             cache_dir: Path | str | None = None, subsets: bool = True,
             progress: bool = True) -> dict[str, Any]:
    """Metrics of a trained run on one split: {"sources": {source: {...}}, "subsets": {...}}.

    Uses the run's `config.json` for its sources, data and cache folders and eval subset size,
    and `model.pt` for the weights; `data_dir` and `cache_dir` override the config's.
    """
    run_dir = Path(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    model, _ = load_checkpoint(run_dir / "model.pt")
    features = [
        load_features(source, split, limit=config.get("max_eval_examples_per_source"),
                      root=data_dir or config.get("data_dir"),
                      cache_dir=cache_dir or config.get("cache_dir"), progress=progress)
        for source in config["sources"]
    ]
    batch_size = int(config.get("eval_batch_size", 256))
    result: dict[str, Any] = {"split": split,
                              "sources": evaluate_sources(model, features, batch_size)}
    if subsets and len(features) > 1:
        result["subsets"] = evaluate_subsets(model, features, batch_size)
    return result
