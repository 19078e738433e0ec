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
TEXT_EMOTION_FILES: dict[str, str] = {
    "dailydialog": "dailydialog.csv", "dair-emotion": "dair_emotion.csv",
    "crowdflower": "crowdflower.csv", "xed-en": "xed_en.csv"}
"""The four English text corpora of ../shared/data/text-emotion-train (already mapped onto
`EMOTIONS` there; SOURCES.md in that folder says how). The served model never trained on them."""
TEXT_EMOTION_SPLITS = {"train": "train", "val": "validation", "test": "test"}


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


@dataclass(frozen=True)
class SpeechExample:
    """A clip of a corpus whose speakers are named, not numbered (nEMO: "nemo_EB0")."""

    path: Path
    label: int
    speaker: str


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


def load_text_emotion(root: Path, corpus: str, split: str) -> list[TextExample]:
    """One corpus of text-emotion-train, one split (its official split, or the folder's hash
    split), in file order; `dialogue_id` is empty (these rows carry no dialogue)."""
    _check_split(split, TEXT_EMOTION_SPLITS)
    if corpus not in TEXT_EMOTION_FILES:
        raise ValueError(f"unknown corpus {corpus!r}; valid: {', '.join(TEXT_EMOTION_FILES)}")
    path = Path(root) / TEXT_EMOTION_FILES[corpus]
    wanted = TEXT_EMOTION_SPLITS[split]
    examples = []
    with path.open(encoding="utf-8", newline="") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            try:
                if row["split"] == wanted:
                    examples.append(TextExample(row["text"], label_index(row["label"]), ""))
            except (KeyError, ValueError) as exc:
                raise ValueError(f"{path}:{line}: {exc}") from None
    return examples


def load_nemo(root: Path) -> list[SpeechExample]:
    """Every clip of nEMO's balanced subset (Polish acted speech, 9 speakers, no disgust), in
    `index.csv` order."""
    index = Path(root) / "index.csv"
    examples = []
    with index.open(encoding="utf-8", newline="") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            try:
                examples.append(SpeechExample(Path(root) / row["file"], label_index(row["label"]),
                                              row["speaker"]))
            except (KeyError, ValueError) as exc:
                raise ValueError(f"{index}:{line}: {exc}") from None
    if not examples:
        raise ValueError(f"{index}: no clips listed")
    return examples
