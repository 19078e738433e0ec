"""`libra-model eval --paired NAME`: the fusion measured where modalities are really paired.

For each seed, on one paired set (`paired_data`), the same test rows are scored by:

- `unimodal`: each modality alone (its encoder + a linear head, `LateFusion` with one modality);
- `late-fusion`: the unimodal models' probabilities averaged, for every subset of 2+ modalities;
- `early-fusion`: concatenated encoder vectors + MLP (`EarlyFusion`), one model per 2+ subset;
- `ours`: one `DRKF` trained with modality sampling, evaluated on every subset;
- `ours-no-orl`: the same without the ORL losses (contrastive and separation weights 0);
- `ours-no-ed`: the same without the Emotion Discrimination head;
- `ours-subset-specific`: one `DRKF` per subset, trained with only that subset present.

Records (one per dataset, model and subset) hold the mean and sample standard deviation over
seeds of accuracy and weighted F1, plus the per-seed values; `write_records` merges them into
`docs/model-paired.json`, replacing that dataset's earlier records only. A logistic regression on
the standardised features (the scale anchors of SOURCES-paired.md, on our split) is written with
the dataset's metadata, not as a record.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from libra.forked import fork_map
from libra.training.drkf import LossWeights
from libra.training.features import REPO_ROOT
from libra.training.metrics import classification_metrics
from libra.training.paired_data import PairedDataset, PairedSplit
from libra.training.paired_train import (
    PairedConfig,
    Recipe,
    Subset,
    all_subsets,
    fit,
    subset_name,
)

DEFAULT_OUT = REPO_ROOT / "docs" / "model-paired.json"
MODELS: tuple[str, ...] = ("unimodal", "late-fusion", "early-fusion", "ours", "ours-no-orl",
                           "ours-no-ed", "ours-subset-specific")
NO_ORL = LossWeights(contrastive=0.0, separation=0.0)
DEFAULT_CONFIGS: dict[str, PairedConfig] = {
    "ravdess-av": PairedConfig(epochs=60, encoder_init="unimodal", encoder_lr_scale=0.3),
    "mosi": PairedConfig(epochs=40),
}
"""Per-set settings (`--epochs`, `--encoder-init`, `--encoder-lr-scale` override); chosen on
the validation split only. RAVDESS: `ours` started from the unimodal encoders at 0.3 x lr had
mean validation weighted F1 0.594 (seeds 0-4), against 0.580 at 1.0 x lr and 0.584 from
scratch. MOSI keeps training from scratch: its validation split is contaminated by the released
features (docs/model.md), so it cannot choose."""


def recipes(dataset: PairedDataset, models: Sequence[str] = MODELS,
            need_unimodal: bool = False) -> list[Recipe]:
    """What to train for `models`, unimodal models first (late fusion needs them and adds no
    model; so does `need_unimodal`, for encoders started from them)."""
    subsets = tuple(all_subsets(len(dataset.modalities)))
    fused = tuple(s for s in subsets if len(s) > 1)
    out: list[Recipe] = []
    if "unimodal" in models or "late-fusion" in models or need_unimodal:
        out += [Recipe("unimodal", "late-fusion", (m,), ((m,),))
                for m in range(len(dataset.modalities))]
    if "early-fusion" in models:
        out += [Recipe("early-fusion", "early-fusion", s, (s,)) for s in fused]
    if "ours" in models:
        out.append(Recipe("ours", "drkf", None, subsets))
    if "ours-no-orl" in models:
        out.append(Recipe("ours-no-orl", "drkf", None, subsets, loss_weights=NO_ORL))
    if "ours-no-ed" in models:
        out.append(Recipe("ours-no-ed", "drkf", None, subsets, emotion_discrimination=False))
    if "ours-subset-specific" in models:
        out += [Recipe("ours-subset-specific", "drkf", s, (s,)) for s in subsets]
    return out


def late_fusion_probs(unimodal: dict[Subset, np.ndarray], subsets: Sequence[Subset]
                      ) -> dict[Subset, np.ndarray]:
    """Averaged unimodal probabilities for each subset of 2+ modalities."""
    return {s: np.mean([unimodal[(m,)] for m in s], axis=0) for s in subsets if len(s) > 1}


def _metrics(split: PairedSplit, probs: np.ndarray, dataset: PairedDataset) -> dict[str, float]:
    m = classification_metrics(split.labels, probs.argmax(-1), dataset.class_names)
    return {"accuracy": float(m["accuracy"]), "weighted_f1": float(m["weighted_f1"])}


def _std(values: Sequence[float]) -> float | None:
    """Sample standard deviation over seeds; None with a single seed (no spread to report)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def logistic_anchors(dataset: PairedDataset) -> dict[str, dict[str, float]]:
    """Logistic regression on standardised feature vectors, fitted on train, scored on test:
    the scale anchors of SOURCES-paired.md, on this split. RAVDESS: AUs, the shipped MFCC
    series, both; MOSI: every modality subset."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train, test = dataset.splits["train"], dataset.splits["test"]

    def columns(split: PairedSplit) -> dict[str, np.ndarray]:
        cols = {m: split.inputs[m][0] for m in dataset.feature_dims}
        cols |= {f"{k} (shipped)": v for k, v in split.extra.items()}
        return cols

    tr, te = columns(train), columns(test)
    names = sorted(tr)
    out = {}
    for r in range(1, len(names) + 1):
        for combo in itertools.combinations(names, r):
            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
            model.fit(np.hstack([tr[c] for c in combo]), train.labels)
            probs = model.predict_proba(np.hstack([te[c] for c in combo]))
            out["+".join(combo)] = {k: round(v, 4) for k, v in
                                    _metrics(test, probs, dataset).items()}
    return out


@dataclass
class SeedRun:
    """What one seed's fits give: per (model, subset) test metrics, best epochs, validation."""

    metrics: dict[tuple[str, Subset], dict[str, float]] = field(default_factory=dict)
    epochs: dict[str, list[int]] = field(default_factory=dict)
    val_scores: dict[str, list[float]] = field(default_factory=dict)


def run_seed(dataset: PairedDataset, seed: int, config: PairedConfig, models: Sequence[str],
             log: Callable[[str], None] = print) -> SeedRun:
    """Every recipe of `models` for one seed, unimodal models first (late fusion averages them;
    `encoder_init="unimodal"` starts every other model's encoders from them)."""
    test = dataset.splits["test"]
    run = SeedRun()
    unimodal: dict[Subset, np.ndarray] = {}
    encoders: dict[str, dict[str, torch.Tensor]] = {}
    from_unimodal = config.encoder_init == "unimodal"
    for recipe in recipes(dataset, models, need_unimodal=from_unimodal):
        t0 = time.perf_counter()
        start = None
        if from_unimodal and recipe.model != "unimodal":
            uses = recipe.train_subset or range(len(dataset.modalities))
            start = {dataset.modalities[m]: encoders[dataset.modalities[m]] for m in uses}
        result = fit(dataset, recipe, config, seed, start)
        if recipe.model == "unimodal":
            encoders |= result.encoder_states
        run.epochs.setdefault(recipe.model, []).append(result.best_epoch)
        run.val_scores.setdefault(recipe.model, []).append(round(result.val_score, 4))
        shown = []
        for s, probs in result.test_probs.items():
            if recipe.model == "unimodal":
                unimodal[s] = probs
            if recipe.model == "unimodal" and "unimodal" not in models:
                continue
            m = _metrics(test, probs, dataset)
            run.metrics[(recipe.model, s)] = m
            shown.append(f"{subset_name(dataset, s)} {m['accuracy']:.4f}")
        log(f"{dataset.name} seed {seed} {recipe.model:21} best epoch {result.best_epoch:3} "
            f"({time.perf_counter() - t0:.0f} s): {', '.join(shown)}")
    if "late-fusion" in models:
        subsets = all_subsets(len(dataset.modalities))
        for s, probs in late_fusion_probs(unimodal, subsets).items():
            run.metrics[("late-fusion", s)] = _metrics(test, probs, dataset)
    return run


def run_seeds(dataset: PairedDataset, seeds: Sequence[int], config: PairedConfig,
              models: Sequence[str], log: Callable[[str], None], jobs: int) -> list[SeedRun]:
    """Seeds are independent: with `jobs` > 1 each runs in a forked process with one torch
    thread; results are the same as in one process with one thread, in seed order."""

    def one(seed: int) -> SeedRun:
        return run_seed(dataset, seed, config, models, log)

    def in_child(seed: int) -> SeedRun:
        # one thread: a parallel region in a forked child of a process that already ran OpenMP
        # threads can hang (GNU libgomp); one thread per job also keeps `jobs` cores busy
        torch.set_num_threads(1)
        return one(seed)

    return fork_map(one, seeds, jobs, in_child=in_child)


def run_paired(dataset: PairedDataset, seeds: Sequence[int], config: PairedConfig,
               models: Sequence[str] = MODELS, log: Callable[[str], None] = print,
               jobs: int = 1) -> dict[str, Any]:
    """Train every recipe for every seed; records and the dataset's metadata."""
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        raise ValueError(f"unknown models {unknown}; valid: {', '.join(MODELS)}")
    if not seeds:
        raise ValueError("give at least one seed")
    started = time.perf_counter()
    workers = max(1, min(jobs, len(seeds)))  # as fork_map clamps it
    test = dataset.splits["test"]
    subsets = all_subsets(len(dataset.modalities))
    per_seed: dict[tuple[str, Subset], list[dict[str, float]]] = {}
    epochs: dict[str, list[int]] = {}
    val_scores: dict[str, list[float]] = {}
    for run in run_seeds(dataset, seeds, config, models, log, workers):
        for key, m in run.metrics.items():
            per_seed.setdefault(key, []).append(m)
        for model, values in run.epochs.items():
            epochs.setdefault(model, []).extend(values)
        for model, scores in run.val_scores.items():
            val_scores.setdefault(model, []).extend(scores)
    records = []
    for model in MODELS:
        for s in subsets:
            runs = per_seed.get((model, s))
            if not runs:
                continue
            acc = [r["accuracy"] for r in runs]
            f1 = [r["weighted_f1"] for r in runs]
            records.append({
                "dataset": dataset.name, "model": model, "subset": subset_name(dataset, s),
                "seeds": list(seeds), "accuracy_mean": float(np.mean(acc)),
                "accuracy_std": _std(acc), "weighted_f1_mean": float(np.mean(f1)),
                "weighted_f1_std": _std(f1), "n_test": len(test),
                "accuracy_per_seed": acc, "weighted_f1_per_seed": f1})
    meta = {
        "derived": derived(records),
        "classes": list(dataset.class_names),
        "modalities": list(dataset.modalities),
        "notes": dataset.notes,
        "splits": {s: {"rows": len(v), "groups": len(np.unique(v.groups))}
                   for s, v in dataset.splits.items()},
        "config": asdict(config),
        "seeds": list(seeds),
        "best_epochs": epochs,
        "best_val_weighted_f1": val_scores,
        "logistic_regression": logistic_anchors(dataset),
        "wall_s": round(time.perf_counter() - started, 1),
        "jobs": workers,
        "threads": 1 if workers > 1 else torch.get_num_threads(),  # per process
    }
    return {"dataset": dataset.name, "meta": meta, "records": records}


def write_records(path: Path, result: dict[str, Any], command: str) -> dict[str, Any]:
    """Merge one dataset's run into the JSON at `path` (other datasets' entries are kept)."""
    doc: dict[str, Any] = {"records": [], "datasets": {}}
    if path.is_file():
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{exc.lineno}: not JSON ({exc.msg}); move it away") from None
    name = result["dataset"]
    doc["about"] = ("Paired-modality evaluation written by `libra-model eval --paired`; one "
                    "record per (dataset, model, subset), mean and sample std over seeds.")
    doc["datasets"] = {**doc.get("datasets", {}), name: {"command": command, **result["meta"]}}
    doc["records"] = [r for r in doc.get("records", []) if r.get("dataset") != name]
    doc["records"] += result["records"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return doc


def format_records(records: Sequence[dict[str, Any]]) -> str:
    """A table: one row per model and subset, accuracy and weighted F1 as mean +- std."""

    def pm(mean: float, std: float | None) -> str:
        return f"{mean:.4f} +- {std:.4f}" if std is not None else f"{mean:.4f}"

    lines = [f"{'model':22} {'subset':18} {'accuracy':>17} {'weighted F1':>17}"]
    lines += [f"{r['model']:22} {r['subset']:18} {pm(r['accuracy_mean'], r['accuracy_std']):>17} "
              f"{pm(r['weighted_f1_mean'], r['weighted_f1_std']):>17}" for r in records]
    return "\n".join(lines)


def _by_key(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["model"], r["subset"]): r for r in records}


def _paired_difference(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float | None]:
    """a - b in accuracy, seed by seed (same seeds, same test rows): mean and sample std."""
    diff = np.subtract(a["accuracy_per_seed"], b["accuracy_per_seed"])
    return {"mean": round(float(diff.mean()), 4),
            "std": None if len(diff) < 2 else round(float(diff.std(ddof=1)), 4)}


def derived(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The figures the model card quotes, computed from the records (accuracy):

    - `fusion_gain`: best fused record minus best single-modality record (means);
    - `ours_minus`: on the full set, ours minus each other model, seed by seed;
    - `robust_minus_specific`: per subset, the one robust model minus the model trained on that
      subset alone, seed by seed.
    """
    by = _by_key(records)
    out: dict[str, Any] = {}
    singles = [r for r in records if "+" not in r["subset"]]
    fused = [r for r in records if "+" in r["subset"]]
    if singles and fused:
        best_single = max(singles, key=lambda r: r["accuracy_mean"])
        best_fused = max(fused, key=lambda r: r["accuracy_mean"])
        out["fusion_gain"] = {
            "accuracy": round(best_fused["accuracy_mean"] - best_single["accuracy_mean"], 4),
            "best_fused": f"{best_fused['model']} {best_fused['subset']}",
            "best_single": f"{best_single['model']} {best_single['subset']}"}
    full = max((r["subset"] for r in records), key=lambda s: s.count("+"), default=None)
    if full is not None and ("ours", full) in by:
        out["ours_minus"] = {m: _paired_difference(by[("ours", full)], by[(m, full)])
                             for m, s in by if s == full and m != "ours"}
        out["ours_minus"] |= {f"unimodal {s}": _paired_difference(by[("ours", full)], r)
                              for (m, s), r in by.items() if m == "unimodal"}
    out["robust_minus_specific"] = {
        s: _paired_difference(r, by[("ours-subset-specific", s)])
        for (m, s), r in by.items() if m == "ours" and ("ours-subset-specific", s) in by}
    return out


def markdown_tables(records: Sequence[dict[str, Any]], subsets: Sequence[str]) -> str:
    """Accuracy and weighted F1 tables (mean +- sample std over seeds), models x subsets."""
    by = _by_key(records)
    models = [m for m in MODELS if any((m, s) in by for s in subsets)]
    lines = []
    for metric, title in (("accuracy", "accuracy"), ("weighted_f1", "weighted F1")):
        lines += [f"| {title} | " + " | ".join(subsets) + " |",
                  "|---|" + "---|" * len(subsets)]
        for m in models:
            cells = []
            for s in subsets:
                r = by.get((m, s))
                std = r and r[f"{metric}_std"]
                cells.append("" if r is None else f"{r[f'{metric}_mean']:.3f}"
                             + (f" ± {std:.3f}" if std is not None else ""))
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
