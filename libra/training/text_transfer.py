"""The text branch trained for transfer and judged leave-one-corpus-out (issue 17).

For each of the five text corpora (`text_corpora.CORPORA`), a head is trained on the other four
(their train splits) and tested on the held-out one (its test split), with a temperature fitted on
the other four's validation splits. A configuration is chosen by the mean of these five scores,
never by a corpus's own test split.

Heads, all on the frozen all-MiniLM-L6-v2 sentence embedding except the anchors:
- `majority`: the held-out test split's own most frequent class (an oracle constant);
- `tfidf`: TF-IDF of word 1-2-grams + logistic regression, the simple anchor;
- `served-meld`: the bundled model's text answer as it was trained (MELD only), unchanged;
- `logreg`: a linear probe on the embedding;
- `drkf-text`: the served DRKF's own text path retrained: the text projection and the text
  token's shared, specific and unimodal layers learn, every part shared with audio and faces
  (fusion encoder, dominance, classifier, modality embeddings) stays frozen. So an audio-only or
  face-only answer is bit for bit what it was, and the graph keeps its shape: this head is what
  `libra-model train-text` puts into the bundle.

The training mix (`Recipe`): per corpus at most `neutral_cap` times its largest emotion's count of
neutral rows (DailyDialog is 83 % neutral), each corpus weighing the same in the loss, and each
class weighted by its share to the power `-class_power` (0: as found, 1: balanced).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from libra.runtime.labels import EMOTIONS
from libra.training.text_corpora import CORPORA, NEUTRAL, TextSet, load

N_CLASSES = len(EMOTIONS)
TEXT = 2  # the text slot of the presence mask (MODALITIES order: audio, video, text)
HEADS = ("majority", "tfidf", "served-meld", "logreg", "drkf-text")
TEXT_PARAMETER_PREFIXES = ("text.", "shared.2.", "specific.2.", "unimodal.2.")
"""The DRKF parameters only the text modality reads: what `drkf-text` trains."""


@dataclass(frozen=True)
class Recipe:
    """How a training mix is drawn and weighted, and how the DRKF text path is trained."""

    neutral_cap: float = 1.0
    class_power: float = 0.5
    epochs: int = 4
    lr: float = 1e-3
    batch_size: int = 512
    weight_decay: float = 0.01
    unimodal_weight: float = 0.5
    logreg_c: float = 1.0
    seed: int = 0


CHOSEN = Recipe(neutral_cap=1.0, class_power=0.0)
"""The recipe `train-text` uses: `choose` over `SWEEP` leave-one-corpus-out
(docs/model-text-transfer.json, `sweep`)."""
SWEEP: tuple[dict[str, Any], ...] = (
    {"neutral_cap": 1.0, "class_power": 0.0},
    {"neutral_cap": 1.0, "class_power": 0.5},
    {"neutral_cap": 1.0, "class_power": 1.0},
    {"neutral_cap": 0.5, "class_power": 0.5},
)
"""What `text-transfer --sweep` tries for drkf-text, around `CHOSEN`."""


# ------------------------------------------------------------------------------ data and metrics


@dataclass(frozen=True, eq=False)
class Mix:
    """Training rows of several corpora with per-row loss weights (mean 1)."""

    emb: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    texts: tuple[str, ...]
    corpora: tuple[str, ...]


def training_mix(parts: Sequence[TextSet], recipe: Recipe) -> Mix:
    """Cap each corpus's neutral rows, weigh corpora equally and classes by `class_power`."""
    rng = np.random.default_rng(recipe.seed)
    embs: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    source_w: list[np.ndarray] = []
    texts: list[str] = []
    for part in parts:
        counts = np.bincount(part.labels, minlength=N_CLASSES)
        emotional = np.delete(counts, NEUTRAL)
        cap = int(recipe.neutral_cap * emotional.max()) if emotional.max() else counts[NEUTRAL]
        neutral = np.flatnonzero(part.labels == NEUTRAL)
        keep = np.sort(np.concatenate([np.flatnonzero(part.labels != NEUTRAL),
                                       rng.permutation(neutral)[:cap]]))
        embs.append(part.emb[keep])
        labels.append(part.labels[keep])
        source_w.append(np.full(len(keep), 1.0 / len(keep)))
        texts.extend(part.texts[i] for i in keep)
    y = np.concatenate(labels)
    w = np.concatenate(source_w)
    mass = np.bincount(y, weights=w, minlength=N_CLASSES)
    share = mass / mass.sum()
    class_w = np.where(share > 0, np.maximum(share, 1e-9) ** -recipe.class_power, 0.0)
    w = w * class_w[y]
    return Mix(np.concatenate(embs), y, w / w.mean(), tuple(texts),
               tuple(p.corpus for p in parts))


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    from libra.training.calibration import ece as calibration_ece

    return calibration_ece(probs, labels, n_bins)


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    from libra.runtime.calibration import temper as runtime_temper

    return runtime_temper(probs, temperature)


def fit_temperature(parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> float:
    from libra.training.calibration import fit_temperature as fit

    return fit(parts)


def score(probs: np.ndarray, labels: np.ndarray, temperature: float | None) -> dict[str, Any]:
    """Accuracy, macro and weighted F1, "neutral" on emotional rows, ECE before and after T."""
    from libra.training.metrics import classification_metrics

    pred = probs.argmax(1)
    m = classification_metrics(labels, pred)
    emotional = labels != NEUTRAL
    out = {"n": len(labels), "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
           "weighted_f1": m["weighted_f1"],
           "neutral_on_emotional": float((pred[emotional] == NEUTRAL).mean())
           if emotional.any() else float("nan"),
           "n_emotional": int(emotional.sum()),
           "ece_before": ece(probs, labels)}
    if temperature is not None:
        out |= {"temperature": temperature, "ece_after": ece(temper(probs, temperature), labels),
                "mean_confidence_after": float(temper(probs, temperature).max(1).mean())}
    return out


# ----------------------------------------------------------------------------------------- heads


class Head:
    """A text classifier: `fit` on a mix, `predict` probabilities (N, 7)."""

    def fit(self, mix: Mix) -> Head:
        raise NotImplementedError

    def predict(self, part: TextSet) -> np.ndarray:
        raise NotImplementedError


class TfidfHead(Head):
    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe

    def fit(self, mix: Mix) -> TfidfHead:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        self.vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True,
                                   max_features=200_000)
        x = self.vec.fit_transform(mix.texts)
        self.clf = LogisticRegression(C=4.0, max_iter=300)
        self.clf.fit(x, mix.labels, sample_weight=mix.weights)
        return self

    def predict(self, part: TextSet) -> np.ndarray:
        return _full_probs(self.clf.predict_proba(self.vec.transform(part.texts)),
                           self.clf.classes_)


class LogRegHead(Head):
    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe

    def fit(self, mix: Mix) -> LogRegHead:
        from sklearn.linear_model import LogisticRegression

        self.clf = LogisticRegression(C=self.recipe.logreg_c, max_iter=500)
        self.clf.fit(mix.emb, mix.labels, sample_weight=mix.weights)
        return self

    def predict(self, part: TextSet) -> np.ndarray:
        return _full_probs(self.clf.predict_proba(part.emb), self.clf.classes_)


def _full_probs(probs: np.ndarray, classes: np.ndarray) -> np.ndarray:
    out = np.zeros((len(probs), N_CLASSES))
    out[:, classes] = probs
    return out


def text_only_logits(model: Any, emb: Any) -> dict[str, Any]:
    """The DRKF's outputs for text-only rows, from sentence embeddings: what `DRKF.fuse`
    computes when the presence mask is (0, 0, 1), written for one token (absent modalities
    are masked out of attention, pooling and the disagreement, so they change nothing; a
    test checks this against the model's own forward). Three times less work than `fuse`."""
    import torch

    text = model.text(emb)
    shared = model.shared[TEXT](text)
    specific = model.specific[TEXT](text)
    token = model.fusion((shared + model.modality_embedding[TEXT])[:, None])[:, 0]
    unimodal = model.unimodal[TEXT](torch.cat([shared, specific], -1))
    mean_probs = torch.softmax(unimodal, -1)
    disagreement = torch.cat([mean_probs, torch.zeros_like(mean_probs)], dim=-1)
    logits = model.classify(torch.cat([token, specific, disagreement], dim=-1))
    return {"logits": logits, "unimodal_logits": unimodal}


class DRKFTextHead(Head):
    """The served model's text path retrained, everything shared with other modalities frozen."""

    def __init__(self, recipe: Recipe, base: Path, log: Callable[[str], None] | None = None
                 ) -> None:
        self.recipe, self.base, self.log = recipe, base, log

    def fit(self, mix: Mix) -> DRKFTextHead:
        import torch
        import torch.nn.functional as F  # noqa: N812

        from libra.training.checkpoint import load_checkpoint

        torch.manual_seed(self.recipe.seed)
        torch.set_num_threads(1)  # a model this small only loses to threads on a shared CPU
        model, self.meta = load_checkpoint(self.base)
        trainable = [p for name, p in model.named_parameters()
                     if name.startswith(TEXT_PARAMETER_PREFIXES)]
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith(TEXT_PARAMETER_PREFIXES))
        model.eval()  # frozen parts stay deterministic (no dropout) ...
        train_parts = [model.get_submodule(p.rstrip(".")) for p in TEXT_PARAMETER_PREFIXES]
        opt = torch.optim.AdamW(trainable, lr=self.recipe.lr,
                                weight_decay=self.recipe.weight_decay)
        n = len(mix.labels)
        steps = self.recipe.epochs * math.ceil(n / self.recipe.batch_size)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / max(1, steps // 20))
            * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
        x = torch.from_numpy(mix.emb)
        y = torch.from_numpy(mix.labels)
        w = torch.from_numpy(mix.weights.astype(np.float32))
        g = torch.Generator().manual_seed(self.recipe.seed)
        t0 = time.perf_counter()
        for epoch in range(self.recipe.epochs):
            for part in train_parts:  # ... while the text layers learn with dropout
                part.train()
            order = torch.randperm(n, generator=g)
            total = 0.0
            for start in range(0, n, self.recipe.batch_size):
                rows = order[start:start + self.recipe.batch_size]
                out = text_only_logits(model, x[rows])
                ce = (F.cross_entropy(out["logits"], y[rows], reduction="none") * w[rows]).mean()
                uni = (F.cross_entropy(out["unimodal_logits"], y[rows],
                                       reduction="none") * w[rows]).mean()
                loss = ce + self.recipe.unimodal_weight * uni
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trainable, 1.0)
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(rows)
            if self.log is not None:
                self.log(f"    epoch {epoch + 1}: loss {total / n:.4f} "
                         f"({time.perf_counter() - t0:.0f} s)")
        self.model = model.eval()
        return self

    def predict(self, part: TextSet) -> np.ndarray:
        return drkf_text_probs(self.model, part.emb)


def drkf_text_probs(model: Any, emb: np.ndarray, batch: int = 4096) -> np.ndarray:
    import torch

    with torch.no_grad():
        return np.concatenate([
            torch.softmax(text_only_logits(model, torch.from_numpy(emb[i:i + batch]))["logits"],
                          -1).numpy() for i in range(0, len(emb), batch)]).astype(np.float64)


class ServedHead(Head):
    """The bundled model as it is (trained on MELD alone): `fit` does nothing."""

    def __init__(self, base: Path) -> None:
        from libra.training.checkpoint import load_checkpoint

        self.model, _ = load_checkpoint(base)

    def fit(self, mix: Mix) -> ServedHead:
        return self

    def predict(self, part: TextSet) -> np.ndarray:
        return drkf_text_probs(self.model, part.emb)


def make_head(name: str, recipe: Recipe, base: Path, log: Callable[[str], None] | None = None
              ) -> Head:
    if name == "tfidf":
        return TfidfHead(recipe)
    if name == "logreg":
        return LogRegHead(recipe)
    if name == "drkf-text":
        return DRKFTextHead(recipe, base, log)
    if name == "served-meld":
        return ServedHead(base)
    raise ValueError(f"unknown head {name!r}; valid: {', '.join(HEADS)}")


# ------------------------------------------------------------------------- leave one corpus out


_LOADED: dict[str, dict[str, dict[str, TextSet]]] = {}


def all_splits(root: Path | str | None, log: Callable[[str], None] | None = None
               ) -> dict[str, dict[str, TextSet]]:
    """Every corpus and split, embedded; kept in memory for the rest of the process (a sweep
    reads them a dozen times)."""
    key = str(root)
    if key not in _LOADED:
        _LOADED[key] = {c: {s: load(c, s, root, log) for s in ("train", "val", "test")}
                        for c in CORPORA}
    return _LOADED[key]


def majority_row(test: TextSet) -> dict[str, Any]:
    probs = np.zeros((len(test), N_CLASSES))
    probs[:, np.bincount(test.labels, minlength=N_CLASSES).argmax()] = 1.0
    row = score(probs, test.labels, None)
    row.pop("ece_before")
    return row


def leave_one_out(heads: Sequence[str], recipe: Recipe, base: Path,
                  corpora: Sequence[str] = CORPORA, root: Path | str | None = None,
                  log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """One row per (head, held-out corpus): trained on the others' train splits, T fitted on the
    others' validation splits, scored on the held-out test split."""
    data = all_splits(root, log)
    rows = []
    for held in corpora:
        others = [c for c in CORPORA if c != held]
        mix = training_mix([data[c]["train"] for c in others], recipe)
        test = data[held]["test"]
        for name in heads:
            t0 = time.perf_counter()
            if name == "majority":
                row = majority_row(test)
            else:
                log(f"  {held}: {name} on {len(mix.labels)} rows of {', '.join(others)}")
                head = make_head(name, recipe, base, log).fit(mix)
                temperature = fit_temperature([(head.predict(data[c]["val"]),
                                                data[c]["val"].labels) for c in others])
                row = score(head.predict(test), test.labels, temperature)
            row |= {"held_out": held, "head": name, "trained_on": others,
                    "seconds": round(time.perf_counter() - t0, 1)}
            rows.append(row)
            log(f"  {held:13} {name:12} acc {row['accuracy']:.3f} wF1 {row['weighted_f1']:.3f} "
                f"mF1 {row['macro_f1']:.3f} neutral@emo {row['neutral_on_emotional']:.3f} "
                f"ECE {row.get('ece_after', float('nan')):.3f}")
    return rows


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per head: the mean over held-out corpora of each figure, and how many goals it meets."""
    out: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(r["head"] for r in rows):
        mine = [r for r in rows if r["head"] == name]
        means = {k: float(np.nanmean([r[k] for r in mine])) for k in
                 ("accuracy", "macro_f1", "weighted_f1", "neutral_on_emotional", "ece_after")
                 if all(k in r for r in mine)}
        means["corpora_meeting_wf1"] = float(sum(r["weighted_f1"] >= 0.5 for r in mine))
        out[name] = means
    return out


def in_corpus(heads: Sequence[str], recipe: Recipe, base: Path, root: Path | str | None = None,
              log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Every corpus trained on, each test split scored (T fitted on all validation splits): the
    model `train-text` ships, measured where it was trained (MELD's 0.60 goal)."""
    data = all_splits(root, log)
    mix = training_mix([data[c]["train"] for c in CORPORA], recipe)
    rows = []
    for name in heads:
        head = make_head(name, recipe, base, log).fit(mix)
        temperature = fit_temperature([(head.predict(data[c]["val"]), data[c]["val"].labels)
                                       for c in CORPORA])
        for c in CORPORA:
            row = score(head.predict(data[c]["test"]), data[c]["test"].labels, temperature)
            rows.append(row | {"corpus": c, "head": name})
    return rows


def recipe_from(base: Recipe, values: dict[str, Any]) -> Recipe:
    return replace(base, **values)


def recipe_dict(recipe: Recipe) -> dict[str, Any]:
    return asdict(recipe)


def train_text(base: Path, out: Path, recipe: Recipe, root: Path | str | None = None,
               log: Callable[[str], None] = print) -> dict[str, Any]:
    """Retrain the text path of the checkpoint `base` on all five corpora; write `out`."""
    from libra.training.checkpoint import save_checkpoint

    parts = [load(c, "train", root, log) for c in CORPORA]
    mix = training_mix(parts, recipe)
    head = DRKFTextHead(recipe, base, log).fit(mix)
    meta = copy.deepcopy(head.meta)
    trained = list(dict.fromkeys([*meta["trained_modalities"], "text"]))
    extra = {k: v for k, v in meta.items() if k not in
             ("format_version", "kind", "spec", "emotions", "modalities", "trained_modalities")}
    extra["text_transfer"] = {"recipe": recipe_dict(recipe), "base": str(base),
                              "corpora": list(CORPORA), "rows": len(mix.labels)}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, head.model, trained, extra)
    return extra["text_transfer"]


GOALS = {"weighted_f1": 0.50, "neutral_on_emotional": 0.25, "ece_after": 0.08,
         "meld_in_corpus_weighted_f1": 0.60}
"""Issue 17's goals for text, on each held-out corpus (MELD's own test split for the last)."""


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [f"{'held out':13} {'head':14} {'n':>5} {'acc':>6} {'mF1':>6} {'wF1':>6} "
             f"{'neu@emo':>7} {'ECE':>6} {'T':>6} {'ECE T':>6}"]
    for r in rows:
        lines.append(
            f"{r.get('held_out', r.get('corpus', '')):13} {r['head']:14} {r['n']:>5} "
            f"{r['accuracy']:>6.3f} {r['macro_f1']:>6.3f} {r['weighted_f1']:>6.3f} "
            f"{r['neutral_on_emotional']:>7.3f} {r.get('ece_before', float('nan')):>6.3f} "
            f"{r.get('temperature', float('nan')):>6.2f} {r.get('ece_after', float('nan')):>6.3f}")
    return "\n".join(lines)


def choose(sweep: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The sweep entry meeting the issue's per-corpus goals (weighted F1 and "neutral" on
    emotional text) on the most held-out corpora, ties broken by the mean weighted F1."""
    def key(entry: dict[str, Any]) -> tuple[int, float]:
        met = sum(r["weighted_f1"] >= GOALS["weighted_f1"]
                  and r["neutral_on_emotional"] <= GOALS["neutral_on_emotional"]
                  for r in entry["held_out"])
        return met, entry["summary"]["weighted_f1"]

    return max(sweep, key=key)


def run_report(heads: Sequence[str] | None, recipe: Recipe, base: Path, *, sweep: bool = False,
               root: Path | str | None = None, log: Callable[[str], None] = print
               ) -> dict[str, Any]:
    """`libra-model text-transfer`: with `sweep`, first score drkf-text under each recipe of
    `SWEEP` leave-one-corpus-out and take the best (`choose`); then every head under that
    recipe, and drkf-text trained on all five corpora scored on each test split (in corpus)."""
    chosen = list(heads or HEADS)
    t0 = time.perf_counter()
    report: dict[str, Any] = {"base": str(base), "goals": GOALS}
    if sweep:
        report["sweep"] = []
        for values in SWEEP:
            other = recipe_from(recipe, values)
            log(f"sweep: {values}")
            found = leave_one_out(["drkf-text"], other, base, root=root, log=log)
            report["sweep"].append({"recipe": recipe_dict(other), "held_out": found,
                                    "summary": summary(found)["drkf-text"]})
        best = choose(report["sweep"])
        recipe = recipe_from(recipe, best["recipe"])
        log(f"chosen: {best['recipe']}")
    rows = leave_one_out(chosen, recipe, base, root=root, log=log)
    report |= {"recipe": recipe_dict(recipe), "held_out": rows, "summary": summary(rows)}
    if "drkf-text" in chosen:
        report["in_corpus"] = in_corpus(["drkf-text"], recipe, base, root, log)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    table = format_table(rows)
    if "in_corpus" in report:
        table += "\nin corpus (drkf-text trained on all five):\n" + format_table(
            report["in_corpus"])
    report["table"] = table
    return report


def write_run(base: Path, run_dir: Path, recipe: Recipe, root: Path | str | None = None,
              log: Callable[[str], None] = print) -> Path:
    """`train_text` into a run folder shaped like `libra-model train`'s (model.pt, config.json,
    metrics.json), so `libra-model export RUN --bundle` takes it."""
    import json

    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    info = train_text(base, run_dir / "model.pt", recipe, root, log)
    from libra.training.checkpoint import load_checkpoint

    data = {c: {s: load(c, s, root, log) for s in ("val", "test")} for c in CORPORA}

    model, _ = load_checkpoint(run_dir / "model.pt")
    probs = {c: {s: drkf_text_probs(model, d.emb) for s, d in v.items()} for c, v in data.items()}
    temperature = fit_temperature([(probs[c]["val"], data[c]["val"].labels) for c in CORPORA])
    test = {c: score(probs[c]["test"], data[c]["test"].labels, temperature) for c in CORPORA}
    metrics = {"text_transfer": info, "seconds": round(time.perf_counter() - t0, 1),
               "test": test}
    config = {"name": run_dir.name, "model": "drkf", "text_transfer": info}
    (run_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    log(format_table([r | {"corpus": c, "head": "drkf-text"}
                      for c, r in test.items()]))
    return run_dir
