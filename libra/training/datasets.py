"""Readers for the labeled data in ../shared/data, mapped onto `EMOTIONS` (numpy only).

The sources are not paired (SOURCES.md there): a MELD row is text only, a RAVDESS clip audio only,
a FER-2013 image a face only. Each reader returns examples of its one modality; training mixes
them with a presence mask (the incomplete-multimodal setting).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from libra.runtime.labels import EMOTIONS, FER_CLASSES, RAVDESS_CODES, label_index

# Speaker-independent RAVDESS split by actor, as SOURCES.md suggests.
RAVDESS_SPLITS: dict[str, tuple[int, ...]] = {
    "train": tuple(range(1, 19)),
    "val": (19, 20),
    "test": (21, 22, 23, 24),
}
MELD_FILES = {"train": "train_sent_emo.csv", "val": "dev_sent_emo.csv", "test": "test_sent_emo.csv"}
FER_SPLITS = {"train": "train", "val": "val", "test": "test"}


@dataclass(frozen=True)
class TextExample:
    text: str
    label: int
    dialogue_id: str


@dataclass(frozen=True)
class AudioExample:
    path: Path
    label: int
    actor: int


def _check_split(split: str, known: dict) -> None:
    if split not in known:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(known)}")


def load_meld(root: Path, split: str) -> list[TextExample]:
    """MELD utterances of one official split (val = MELD's dev), raw text (clean at encode time)."""
    _check_split(split, MELD_FILES)
    path = Path(root) / MELD_FILES[split]
    examples = []
    with path.open(encoding="utf-8", errors="replace", newline="") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            try:
                examples.append(TextExample(row["Utterance"], label_index(row["Emotion"]),
                                            row["Dialogue_ID"]))
            except (KeyError, ValueError) as exc:
                raise ValueError(f"{path}:{line}: {exc}") from None
    return examples


def ravdess_label(path: Path) -> tuple[int, int]:
    """(label, actor) from a RAVDESS file name `03-01-EE-II-SS-RR-AA`."""
    parts = Path(path).stem.split("-")
    if len(parts) != 7 or parts[2] not in RAVDESS_CODES:
        raise ValueError(f"{path}: not a RAVDESS name (03-01-EE-II-SS-RR-AA)")
    return EMOTIONS.index(RAVDESS_CODES[parts[2]]), int(parts[6])


def load_ravdess(root: Path, split: str) -> list[AudioExample]:
    """RAVDESS speech clips of the split's actors, sorted by path for reproducibility."""
    _check_split(split, RAVDESS_SPLITS)
    actors = set(RAVDESS_SPLITS[split])
    examples = []
    for path in sorted(Path(root).glob("Actor_*/*.flac")):
        label, actor = ravdess_label(path)
        if actor in actors:
            examples.append(AudioExample(path, label, actor))
    if not examples:
        raise ValueError(f"{root}: no RAVDESS FLAC files for actors {sorted(actors)}")
    return examples


def load_fer(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """FER-2013 faces (N, 48, 48) uint8 and labels (N,) in `EMOTIONS` order."""
    _check_split(split, FER_SPLITS)
    with np.load(path) as z:
        classes = [str(c) for c in z["classes"]]
        remap = np.array([EMOTIONS.index(FER_CLASSES[c]) for c in classes], dtype=np.int64)
        return z[f"x_{split}"], remap[z[f"y_{split}"].astype(np.int64)]
