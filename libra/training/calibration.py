"""`libra-model calibrate`: temperatures per modality subset, fitted on corpora the model never
trained on and judged leave-one-corpus-out, and the choice of how modalities are fused.

Every number comes from the served ONNX file fed through the serving preprocessing (raw
probabilities, `Recognizer.predict_raw`), cached per (weights, precision, corpus, preprocessing)
under `artifacts/cache/calibration/`. The corpora (`CORPORA`): text, MELD test and the test
splits of the four text-emotion-train corpora (DailyDialog, dair-ai/emotion, CrowdFlower, XED);
speech, RAVDESS test actors 21-24 and nEMO (Polish); faces, FER-2013 PublicTest and PrivateTest
(the only face corpus here, and the model trained on FER-2013's training images: no corpus is
left out for faces).

- One modality: for each corpus, T is fitted (corpus-balanced negative log-likelihood) on the other
  corpora of that modality and the corpus is scored with it (ECE over 15 bins, before and after);
  faces fit on PublicTest and are scored on PrivateTest. The served T is fitted on all of them.
- Several modalities (label-matched pseudo-pairs: no paired clip exists here): two sides,
  A = {RAVDESS test, MELD test, FER PrivateTest} and B = {nEMO, the four text corpora, FER
  PublicTest}; each side's pairs are scored with temperatures fitted on the other side. Two ways to
  fuse are compared (`libra.runtime.calibration`): the graph's own fusion tempered per subset
  ("model"), and the product of the single modalities' tempered answers ("product"), each
  without and with a temperature per subset; the one with the lowest held-out ECE, averaged over
  subsets and sides, is served.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from libra.runtime.calibration import (
    FUSIONS,
    Calibration,
    product_of_experts,
    subset_key,
    temper,
)
from libra.runtime.home import artifacts_dir
from libra.runtime.labels import EMOTIONS, MODALITIES
from libra.runtime.recognizer import ModelInput, Recognizer
from libra.training.features import data_root, spec_hash, subset_rows

N_BINS = 15
T_BOUNDS = (0.05, 1000.0)
TEXT_LIMIT = 2000
"""Rows per text corpus (a fixed random subset): MELD test has 2,610, DailyDialog test 7,494."""
PAIR_ANCHORS = 2000
"""Most pseudo-pairs per side and subset (anchors drawn at random, seeded)."""
PAIR_SEED = 0
BATCH = 64
DEFAULT_CACHE = artifacts_dir() / "cache" / "calibration"
SIDE_A = ("ravdess-test", "meld-test", "fer-test")
SIDE_B = ("nemo", "dailydialog-test", "dair-emotion-test", "crowdflower-test", "xed-en-test",
          "fer-val")


@dataclass(frozen=True)
class CorpusSpec:
    modality: str
    what: str
    licence: str


CORPORA: dict[str, CorpusSpec] = {
    "meld-test": CorpusSpec("text", "MELD test (Friends transcripts; the model trained on MELD "
                            "train)", "GPL-3.0"),
    "dailydialog-test": CorpusSpec("text", "DailyDialog test (written dialogue)",
                                   "CC BY-NC-SA 4.0"),
    "dair-emotion-test": CorpusSpec("text", "dair-ai/emotion test (tweets)",
                                    "research/educational use, no formal licence"),
    "crowdflower-test": CorpusSpec("text", "CrowdFlower text_emotion, test by author hash "
                                   "(tweets)", "Data for Everyone release, licence unverified"),
    "xed-en-test": CorpusSpec("text", "XED English test (movie subtitles)", "CC BY 4.0"),
    "ravdess-test": CorpusSpec("audio", "RAVDESS speech, actors 21-24 (English, acted; the model "
                               "trained on actors 1-18)", "CC BY-NC-SA 4.0"),
    "nemo": CorpusSpec("audio", "nEMO balanced subset (Polish, acted, 9 speakers)",
                       "CC BY-NC-SA 4.0"),
    "fer-val": CorpusSpec("video", "FER-2013 PublicTest (the model's validation split)",
                          "research use (challenge terms)"),
    "fer-test": CorpusSpec("video", "FER-2013 PrivateTest", "research use (challenge terms)"),
}


# ---------------------------------------------------------------------------------------- corpora


@dataclass
class Corpus:
    """One corpus through the serving preprocessing: labels, and rows made on demand (audio is
    decoded when asked for, so a corpus never holds all its log-mels at once)."""

    name: str
    labels: np.ndarray
    make_rows: Callable[[np.ndarray], list[ModelInput]]

    @property
    def modality(self) -> str:
        return CORPORA[self.name].modality

    def __len__(self) -> int:
        return len(self.labels)


def load_corpus(name: str, root: Path | str | None = None, text_limit: int = TEXT_LIMIT
                ) -> Corpus:
    from libra.runtime.inputs.audio import audio_features
    from libra.runtime.inputs.text import TextTokenizer
    from libra.runtime.inputs.video import VideoInput, face_pixels_to_float
    from libra.training import datasets

    base = data_root(root)
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; valid: {', '.join(CORPORA)}")
    modality = CORPORA[name].modality
    if modality == "text":
        if name == "meld-test":
            examples = datasets.load_meld(base / "meld", "test")
        else:
            examples = datasets.load_text_emotion(base / "text-emotion-train",
                                                  name.removesuffix("-test"), "test")
        keep = subset_rows(len(examples), text_limit)
        ids, mask = TextTokenizer.from_file().encode([examples[i].text or "." for i in keep])
        labels = np.array([examples[i].label for i in keep], np.int64)
        return Corpus(name, labels, lambda index: [ModelInput(text=(ids[i], mask[i]))
                                                   for i in index])
    if modality == "audio":
        clips: Sequence[Any] = (datasets.load_ravdess(base / "ravdess-speech-16k", "test")
                                if name == "ravdess-test"
                                else datasets.load_nemo(base / "nemo-speech-16k"))
        labels = np.array([c.label for c in clips], np.int64)
        return Corpus(name, labels, lambda index: [
            ModelInput(audio=audio_features(clips[i].path.read_bytes())) for i in index])
    faces, labels = datasets.load_fer(base / "fer2013" / "fer2013.npz",
                                      "val" if name == "fer-val" else "test")
    return Corpus(name, labels.astype(np.int64), lambda index: [
        ModelInput(video=VideoInput(face_pixels_to_float(faces[i][None]), True, 0.0, 1))
        for i in index])


def _cache_file(cache_dir: Path, recognizer: Recognizer, what: str, extra: str = "") -> Path:
    """Keyed by the weights (`model_version` is their checksum) and precision, not the file's
    bytes: stamping a calibration into the metadata changes no probability."""
    model = f"{recognizer.info.version}-{recognizer.info.precision}"
    sources = {"text": "meld", "audio": "ravdess", "video": "fer"}
    prep = "-".join(spec_hash(sources[m]) for m in MODALITIES)
    key = hashlib.sha256(f"{model}|{prep}|{what}|{extra}".encode()).hexdigest()[:16]
    return cache_dir / f"{what}-{key}.npz"


def raw_probs(recognizer: Recognizer, make_rows: Callable[[np.ndarray], list[ModelInput]],
              n: int, cache: Path | None, log: Callable[[str], None] = print,
              label: str = "") -> np.ndarray:
    """The graph's probabilities (n, 7) for rows 0..n-1, in batches; cached in `cache`."""
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            return np.asarray(z["probs"])
    out = np.zeros((n, len(EMOTIONS)), np.float32)
    for start in range(0, n, BATCH):
        index = np.arange(start, min(start + BATCH, n))
        out[index] = recognizer.predict_raw(make_rows(index))
    log(f"  {label}: {n} rows through {recognizer.path.name}")
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, probs=out)
    return out


# ---------------------------------------------------------------------------------------- metrics


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> float:
    """Expected calibration error: the top probability against being right, in `n_bins` equal
    bins of confidence, weighted by how many rows fall in each."""
    conf, right = probs.max(axis=1), probs.argmax(axis=1) == labels
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        inside = bins == b
        if inside.any():
            total += inside.mean() * abs(float(right[inside].mean() - conf[inside].mean()))
    return float(total)


def reliability(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS
                ) -> dict[str, list[float]]:
    """Per confidence bin: mean confidence, accuracy and count (empty bins left out)."""
    conf, right = probs.max(axis=1), probs.argmax(axis=1) == labels
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    rows: dict[str, list[float]] = {"confidence": [], "accuracy": [], "count": []}
    for b in range(n_bins):
        inside = bins == b
        if inside.any():
            rows["confidence"].append(float(conf[inside].mean()))
            rows["accuracy"].append(float(right[inside].mean()))
            rows["count"].append(int(inside.sum()))
    return rows


def nll(probs: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> float:
    p = np.maximum(probs[np.arange(len(labels)), labels].astype(np.float64), 1e-12)
    w = np.ones(len(labels)) if weights is None else weights
    return float(-(w * np.log(p)).sum() / w.sum())


def scores(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {"n": len(labels), "accuracy": float((probs.argmax(1) == labels).mean()),
            "mean_confidence": float(probs.max(1).mean()), "ece": ece(probs, labels),
            "nll": nll(probs, labels)}


def fit_temperature(parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> float:
    """The T minimising the negative log-likelihood of `parts` ((probs, labels) per corpus),
    each corpus weighing the same whatever its size."""
    from scipy.optimize import minimize_scalar

    probs = np.concatenate([p for p, _ in parts])
    labels = np.concatenate([y for _, y in parts])
    weights = np.concatenate([np.full(len(y), 1.0 / len(y)) for _, y in parts])
    logp = np.log(np.maximum(probs.astype(np.float64), 1e-12))

    def loss(log_t: float) -> float:
        z = logp / math.exp(log_t)
        z -= z.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(z).sum(axis=1))
        return float(-(weights * (z[np.arange(len(labels)), labels] - log_norm)).sum()
                     / weights.sum())

    found = minimize_scalar(loss, bounds=tuple(math.log(b) for b in T_BOUNDS), method="bounded",
                            options={"xatol": 1e-4})
    return float(round(math.exp(found.x), 4))


# ---------------------------------------------------------------------------- single modalities


@dataclass
class Collected:
    """Raw probabilities and labels of every corpus, per variant."""

    corpora: dict[str, Corpus]
    probs: dict[str, np.ndarray]
    labels: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = {name: c.labels for name, c in self.corpora.items()}

    def of(self, modality: str) -> list[str]:
        return [n for n in self.corpora if CORPORA[n].modality == modality]


def collect(recognizer: Recognizer, root: Path | str | None = None, *,
            text_limit: int = TEXT_LIMIT, cache_dir: Path | None = DEFAULT_CACHE,
            corpora: dict[str, Corpus] | None = None, log: Callable[[str], None] = print
            ) -> Collected:
    corpora = corpora or {name: load_corpus(name, root, text_limit) for name in CORPORA}
    probs = {}
    for name, corpus in corpora.items():
        cache = (_cache_file(cache_dir, recognizer, name, f"n{len(corpus)}")
                 if cache_dir is not None else None)
        probs[name] = raw_probs(recognizer, corpus.make_rows, len(corpus), cache, log, name)
    return Collected(corpora, probs)


def single_modality(data: Collected) -> dict[str, Any]:
    """Leave-one-corpus-out per modality (faces: PublicTest -> PrivateTest), and the served T
    (fitted on every corpus of the modality; its scores on each corpus are in-sample)."""
    rows: list[dict[str, Any]] = []
    served: dict[str, float] = {}
    for modality in MODALITIES:
        names = data.of(modality)
        parts = {n: (data.probs[n], data.labels[n]) for n in names}
        if modality == "video":
            folds = {"fer-test": ["fer-val"]}
            served[modality] = fit_temperature([parts["fer-val"]])
        else:
            folds = {n: [m for m in names if m != n] for n in names}
            served[modality] = fit_temperature(list(parts.values()))
        for held_out, fit_on in folds.items():
            fit = [parts[n] for n in fit_on]
            t = fit_temperature(fit)
            probs, labels = parts[held_out]
            rows.append({"corpus": held_out, "modality": modality, "fit_on": fit_on,
                         "temperature": t, "before": scores(probs, labels),
                         "after": scores(temper(probs, t), labels),
                         "served": scores(temper(probs, served[modality]), labels),
                         "alternatives": alternatives(fit, probs, labels)})
    return {"held_out": rows, "temperatures": served}


def alternatives(fit: Sequence[tuple[np.ndarray, np.ndarray]], probs: np.ndarray,
                 labels: np.ndarray) -> dict[str, dict[str, float]]:
    """Other post-hoc calibrators under the same leave-one-corpus-out split, to show whether
    the served one (T by NLL) leaves something easy on the table: T chosen by ECE on the fitted
    corpora, and vector scaling (a weight and 7 biases on log p; it can change answers)."""
    from scipy.optimize import minimize

    grid = np.exp(np.linspace(math.log(0.2), math.log(200.0), 240))
    t_ece = float(min(grid, key=lambda t: np.mean([ece(temper(p, t), y) for p, y in fit])))
    logp = np.log(np.maximum(np.concatenate([p for p, _ in fit]).astype(np.float64), 1e-12))
    y_fit = np.concatenate([y for _, y in fit])
    w = np.concatenate([np.full(len(y), 1.0 / len(y)) for _, y in fit])

    def loss(theta: np.ndarray) -> float:
        z = logp * theta[0] + theta[1:]
        z -= z.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(z).sum(axis=1))
        return float(-(w * (z[np.arange(len(y_fit)), y_fit] - log_norm)).sum() / w.sum()
                     + 1e-3 * np.sum(theta[1:] ** 2))

    theta = minimize(loss, np.r_[0.2, np.zeros(len(EMOTIONS))], method="L-BFGS-B").x
    z = np.log(np.maximum(probs.astype(np.float64), 1e-12)) * theta[0] + theta[1:]
    vector = np.exp(z - z.max(axis=1, keepdims=True))
    vector /= vector.sum(axis=1, keepdims=True)
    return {"temperature_by_ece": {"temperature": t_ece,
                                   **scores(temper(probs, t_ece), labels)},
            "vector_scaling": scores(vector, labels)}


# ------------------------------------------------------------------------------- several at once


def pseudo_pairs(data: Collected, side: Sequence[str], subset: Sequence[str],
                 seed: int = PAIR_SEED, limit: int = PAIR_ANCHORS
                 ) -> tuple[dict[str, list[tuple[str, int]]], np.ndarray]:
    """Label-matched pseudo-pairs from one side's corpora: per modality of `subset`, the (corpus,
    row) each pair takes, and the pairs' labels. Anchors are rows of the first of audio, text,
    video in the subset (at most `limit`, at random); each partner is a random same-label row
    of the side's corpora of its modality. Anchors whose label a partner pool lacks are dropped."""
    rng = np.random.default_rng(seed)
    pools: dict[str, list[tuple[str, int]]] = {}
    pool_labels: dict[str, np.ndarray] = {}
    for m in subset:
        names = [n for n in side if CORPORA[n].modality == m]
        pools[m] = [(n, i) for n in names for i in range(len(data.labels[n]))]
        pool_labels[m] = np.concatenate([data.labels[n] for n in names])
    anchor = next(m for m in ("audio", "text", "video") if m in subset)
    order = rng.permutation(len(pools[anchor]))
    picked: dict[str, list[tuple[str, int]]] = {m: [] for m in subset}
    labels = []
    for k in order:
        y = int(pool_labels[anchor][k])
        partners = {m: np.flatnonzero(pool_labels[m] == y) for m in subset if m != anchor}
        if any(p.size == 0 for p in partners.values()):
            continue
        picked[anchor].append(pools[anchor][k])
        for m, p in partners.items():
            picked[m].append(pools[m][int(rng.choice(p))])
        labels.append(y)
        if len(labels) == limit:
            break
    return picked, np.array(labels, np.int64)


def _gather(data: Collected, picks: list[tuple[str, int]]) -> np.ndarray:
    return np.stack([data.probs[n][i] for n, i in picks])


def fused_raw(recognizer: Recognizer, data: Collected, picks: dict[str, list[tuple[str, int]]],
              cache: Path | None, log: Callable[[str], None], label: str) -> np.ndarray:
    """The graph's own fused answer to each pseudo-pair (inference: pairs are new rows)."""
    n = len(next(iter(picks.values())))

    def make_rows(index: np.ndarray) -> list[ModelInput]:
        rows = []
        for k in index:
            parts: dict[str, Any] = {}
            for m, seq in picks.items():
                name, i = seq[k]
                parts[m] = getattr(data.corpora[name].make_rows(np.array([i]))[0], m)
            rows.append(ModelInput(**parts))
        return rows

    return raw_probs(recognizer, make_rows, n, cache, log, label)


CANDIDATES: tuple[tuple[str, bool], ...] = (
    ("model", False), ("model", True), ("product", False), ("product", True))
"""(fusion, with a temperature per subset) pairs `several_modalities` chooses from."""


def several_modalities(recognizer: Recognizer, data: Collected, *,
                       cache_dir: Path | None = DEFAULT_CACHE,
                       log: Callable[[str], None] = print) -> dict[str, Any]:
    """Both fusions on every subset of two or more modalities, without and with a temperature per
    subset, each side scored with temperatures fitted on the other side; the candidate with the
    lowest mean held-out ECE is served (`CANDIDATES`)."""
    sides = {"A": SIDE_A, "B": SIDE_B}
    single_t = {s: {m: fit_temperature([(data.probs[n], data.labels[n])
                                        for n in side if CORPORA[n].modality == m])
                    for m in MODALITIES} for s, side in sides.items()}
    subsets = [c for r in (2, 3) for c in combinations(MODALITIES, r)]
    answers: dict[tuple[str, str, str], np.ndarray] = {}  # (side, subset, fusion) -> probs
    labels: dict[tuple[str, str], np.ndarray] = {}
    for s, side in sides.items():
        other = "B" if s == "A" else "A"
        for subset in subsets:
            key = subset_key(subset)
            picks, y = pseudo_pairs(data, side, subset)
            labels[(s, key)] = y
            cache = (_cache_file(cache_dir, recognizer, f"pairs-{s}-{key}",
                                 json.dumps(picks)) if cache_dir is not None else None)
            answers[(s, key, "model")] = fused_raw(recognizer, data, picks, cache, log,
                                                   f"pairs {s} {key}")
            # each side's product uses the single temperatures fitted on the OTHER side
            answers[(s, key, "product")] = product_of_experts(
                [temper(_gather(data, picks[m]), single_t[other][m]) for m in subset])
    rows: list[dict[str, Any]] = []
    for fusion in FUSIONS:
        for subset in subsets:
            key = subset_key(subset)
            for s, side in sides.items():
                other = "B" if s == "A" else "A"
                t = fit_temperature([(answers[(other, key, fusion)], labels[(other, key)])])
                rows.append({
                    "fusion": fusion, "subset": key, "held_out_side": s,
                    "corpora": [n for n in side if CORPORA[n].modality in subset],
                    "temperature": t,
                    "before": scores(answers[(s, key, fusion)], labels[(s, key)]),
                    "after": scores(temper(answers[(s, key, fusion)], t), labels[(s, key)])})
    summary = {f"{fusion}{' + T per subset' if tempered else ''}": {
        metric: float(np.mean([r["after" if tempered else "before"][metric]
                               for r in rows if r["fusion"] == fusion]))
        for metric in ("ece", "nll", "accuracy")} for fusion, tempered in CANDIDATES}
    best = min(range(len(CANDIDATES)),
               key=lambda k: summary[list(summary)[k]]["ece"])
    chosen, tempered = CANDIDATES[best]
    served = {subset_key(subset): fit_temperature(
        [(answers[(s, subset_key(subset), chosen)], labels[(s, subset_key(subset))])
         for s in sides]) for subset in subsets} if tempered else {}
    return {"held_out": rows, "candidates": summary, "chosen": list(summary)[best],
            "fusion": chosen, "temperatures": served, "single_temperatures_by_side": single_t}


# --------------------------------------------------------------------------------------- the run


def calibrate(recognizer: Recognizer, root: Path | str | None = None, *,
              text_limit: int = TEXT_LIMIT, cache_dir: Path | None = DEFAULT_CACHE,
              log: Callable[[str], None] = print) -> tuple[Calibration, dict[str, Any]]:
    """Fit and judge everything; returns the served `Calibration` and the full report."""
    log(f"collecting raw probabilities ({recognizer.path.name})")
    data = collect(recognizer, root, text_limit=text_limit, cache_dir=cache_dir, log=log)
    single = single_modality(data)
    several = several_modalities(recognizer, data, cache_dir=cache_dir, log=log)
    temperatures = {**single["temperatures"], **several["temperatures"]}
    calibration = Calibration(
        temperatures, several["fusion"],
        source=f"libra-model calibrate on {recognizer.info.version} ({recognizer.path.name}): "
               f"T of text fitted on {', '.join(data.of('text'))} ({text_limit} rows each), "
               f"of audio on {', '.join(data.of('audio'))}, of video on fer-val, each corpus "
               f"weighing the same; fusion {several['chosen']} (docs/model-calibration.json)")
    report = {"model_version": recognizer.info.version, "variant": recognizer.info.precision,
              "n_bins": N_BINS, "text_limit": text_limit,
              "corpora": {n: {"modality": c.modality, "what": c.what, "licence": c.licence,
                              "n": len(data.labels[n])} for n, c in CORPORA.items()},
              "single": single, "several": several,
              "calibration": json.loads(calibration.to_json()),
              "reliability": {n: {"before": reliability(data.probs[n], data.labels[n])}
                              for n in CORPORA}}
    for row in single["held_out"]:
        n = row["corpus"]
        report["reliability"][n]["after"] = reliability(
            temper(data.probs[n], row["temperature"]), data.labels[n])
    return calibration, report


def check_variant(recognizer: Recognizer, report: dict[str, Any], root: Path | str | None = None,
                  *, text_limit: int = TEXT_LIMIT, cache_dir: Path | None = DEFAULT_CACHE,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """Another variant's held-out scores under the temperatures fitted on the reference's
    probabilities (what serving it with the shipped calibration gives)."""
    data = collect(recognizer, root, text_limit=text_limit, cache_dir=cache_dir, log=log)
    out = {}
    for row in report["single"]["held_out"]:
        n = row["corpus"]
        out[n] = {"before": scores(data.probs[n], data.labels[n]),
                  "after": scores(temper(data.probs[n], row["temperature"]), data.labels[n])}
    return out


def plot_reliability(report: dict[str, Any], folder: Path) -> list[Path]:
    """One PNG per modality (docs/model-reliability-<modality>.png): per held-out corpus, accuracy
    against confidence in 15 bins, before and after its leave-one-corpus-out temperature."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    by_modality: dict[str, list[dict[str, Any]]] = {}
    for row in report["single"]["held_out"]:
        by_modality.setdefault(row["modality"], []).append(row)
    for modality, rows in by_modality.items():
        fig, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3.4), squeeze=False)
        for ax, row in zip(axes[0], rows, strict=True):
            curves = report["reliability"][row["corpus"]]
            ax.plot([0, 1], [0, 1], color="0.7", lw=1)
            for when, style in (("before", "o--"), ("after", "s-")):
                c = curves[when]
                ax.plot(c["confidence"], c["accuracy"], style, ms=3,
                        label=f"{when}: ECE {row[when]['ece']:.3f}")
            ax.set_title(f"{row['corpus']} (n={row['before']['n']})\nT={row['temperature']:g}",
                         fontsize=8)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_xlabel("confidence (top probability)", fontsize=7)
            ax.set_ylabel("accuracy", fontsize=7)
            ax.tick_params(labelsize=7)
            ax.legend(fontsize=6, loc="upper left")
        fig.suptitle(f"{modality}: reliability on held-out corpora, before and after "
                     f"temperature scaling ({report['model_version']}, {report['variant']})",
                     fontsize=9)
        fig.tight_layout()
        path = folder / f"model-reliability-{modality}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def stamp_folder(onnx_dir: Path, calibration: Calibration) -> dict[str, Any]:
    """Write `calibration` into every variant's metadata in `onnx_dir` and into its
    `manifest.json` (sizes and sha256 updated); returns the manifest."""
    from libra.runtime.calibration import METADATA_KEY
    from libra.training.build import file_sha256, stamp

    manifest_path = onnx_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest["variants"].values():
        path = onnx_dir / entry["file"]
        stamp(path, {METADATA_KEY: calibration.to_json()})
        entry["bytes"], entry["sha256"] = path.stat().st_size, file_sha256(path)
    manifest["calibration"] = json.loads(calibration.to_json())
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
