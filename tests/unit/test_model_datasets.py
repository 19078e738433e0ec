"""The data readers on the real shared data: counts, label mapping, speaker-independent splits."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from libra.runtime.labels import EMOTIONS, label_index
from libra.training.datasets import RAVDESS_SPLITS, load_fer, load_meld, load_ravdess, ravdess_label

pytestmark = [pytest.mark.unit, pytest.mark.shared]


def test_meld_official_splits_have_their_published_sizes(shared_dir: Path) -> None:
    sizes = {s: len(load_meld(shared_dir / "data" / "meld", s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 9989, "val": 1109, "test": 2610}
    labels = Counter(e.label for e in load_meld(shared_dir / "data" / "meld", "test"))
    assert set(labels) == set(range(len(EMOTIONS)))
    assert labels.most_common(1)[0][0] == EMOTIONS.index("neutral")


def test_ravdess_splits_are_by_actor_and_cover_all_clips(shared_dir: Path) -> None:
    root = shared_dir / "data" / "ravdess-speech-16k"
    splits = {s: load_ravdess(root, s) for s in RAVDESS_SPLITS}
    assert sum(len(v) for v in splits.values()) == 1440
    actors = {s: {e.actor for e in v} for s, v in splits.items()}
    assert actors["train"].isdisjoint(actors["test"])
    assert actors["val"].isdisjoint(actors["test"])
    assert len(splits["test"]) == 4 * 60
    # each actor has 60 clips: 4 neutral, and 8 of each other emotion; calm folds into neutral
    per_actor = Counter(e.label for e in splits["test"] if e.actor == 21)
    assert per_actor[EMOTIONS.index("neutral")] == 4 + 8
    assert per_actor[EMOTIONS.index("joy")] == 8


def test_ravdess_file_names_map_to_our_labels() -> None:
    assert ravdess_label(Path("03-01-05-02-01-01-12.flac")) == (EMOTIONS.index("anger"), 12)
    assert ravdess_label(Path("03-01-02-01-01-01-01.flac"))[0] == EMOTIONS.index("neutral")
    with pytest.raises(ValueError, match="not a RAVDESS name"):
        ravdess_label(Path("clip.flac"))


def test_fer_faces_and_labels(shared_dir: Path) -> None:
    x, y = load_fer(shared_dir / "data" / "fer2013" / "fer2013.npz", "test")
    assert x.shape == (3589, 48, 48)
    assert y.min() >= 0
    assert y.max() < len(EMOTIONS)
    assert Counter(y.tolist())[EMOTIONS.index("joy")] > 800  # happy is FER's largest class


def test_unknown_labels_and_splits_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown emotion 'bored'"):
        label_index("bored")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        load_meld(Path("."), "dev")
