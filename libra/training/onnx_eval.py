"""Evaluate an exported ONNX variant the way it is served: raw data through `libra.runtime.inputs`.

MELD transcripts go through the tokenizer, RAVDESS FLAC bytes through `audio_features`, FER-2013
pixels through `face_pixels_to_float` as one-frame clips, then `Recognizer.predict`: nothing of
the training feature cache is used, so these numbers also check that serving preprocessing
matches training. numpy and onnxruntime only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from libra.runtime.inputs.audio import audio_features
from libra.runtime.inputs.text import TextTokenizer
from libra.runtime.inputs.video import VideoInput, face_pixels_to_float
from libra.runtime.recognizer import ModelInput, Recognizer
from libra.training import datasets
from libra.training.features import SOURCE_MODALITY, SOURCES, data_root, subset_rows
from libra.training.metrics import classification_metrics


def source_rows(source: str, split: str, *, root: Path | str | None = None,
                limit: int | None = None) -> tuple[list[ModelInput], np.ndarray]:
    """Serving inputs and labels of one source's split (`limit`: the same fixed subset that
    training's `--max-eval-examples` takes)."""
    base = data_root(root)
    if source == "meld":
        examples = datasets.load_meld(base / "meld", split)
        keep = subset_rows(len(examples), limit)
        ids, mask = TextTokenizer.from_file().encode([examples[i].text for i in keep])
        rows = [ModelInput(text=(ids[j], mask[j])) for j in range(len(keep))]
        return rows, np.array([examples[i].label for i in keep], np.int64)
    if source == "ravdess":
        clips = datasets.load_ravdess(base / "ravdess-speech-16k", split)
        keep = subset_rows(len(clips), limit)
        rows = [ModelInput(audio=audio_features(clips[i].path.read_bytes())) for i in keep]
        return rows, np.array([clips[i].label for i in keep], np.int64)
    if source == "fer":
        faces, labels = datasets.load_fer(base / "fer2013" / "fer2013.npz", split)
        keep = subset_rows(len(labels), limit)
        rows = [ModelInput(video=VideoInput(face_pixels_to_float(faces[i][None]), True, 0.0, 1))
                for i in keep]
        return rows, labels[keep].astype(np.int64)
    raise ValueError(f"unknown source {source!r}; valid: {', '.join(SOURCES)}")


def batched(rows: Sequence[ModelInput], size: int) -> Iterator[Sequence[ModelInput]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def predict_rows(recognizer: Recognizer, rows: Sequence[ModelInput], batch_size: int = 64,
                 desc: str | None = None) -> np.ndarray:
    """Probabilities (N, 7), in batches."""
    out = [recognizer.predict(chunk) for chunk in tqdm(
        list(batched(rows, batch_size)), desc=desc, unit="batch", disable=desc is None)]
    return np.concatenate(out) if out else np.zeros((0, 7), np.float32)


def evaluate_onnx(recognizers: dict[str, Recognizer], split: str = "test", *,
                  sources: Sequence[str] = SOURCES, root: Path | str | None = None,
                  limit: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Metrics of each named variant on each source: {variant: {source: metrics}}; every
    variant sees exactly the same inputs."""
    results: dict[str, Any] = {name: {} for name in recognizers}
    for source in sources:
        rows, labels = source_rows(source, split, root=root, limit=limit)
        for name, recognizer in recognizers.items():
            probs = predict_rows(recognizer, rows,
                                 desc=f"{name} {source}" if progress else None)
            results[name][source] = {"modality": SOURCE_MODALITY[source],
                                     **classification_metrics(labels, probs.argmax(-1))}
    return results
