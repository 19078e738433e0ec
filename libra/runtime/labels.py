"""One label set for every data source: MELD's seven emotions.

RAVDESS and FER-2013 are mapped onto it here, once, so training, evaluation and serving agree.
"""

from __future__ import annotations

EMOTIONS: tuple[str, ...] = ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear")
MODALITIES: tuple[str, ...] = ("audio", "video", "text")

# RAVDESS file-name emotion code -> our label. "calm" (02) is folded into neutral: it is a
# low-arousal neutral delivery in RAVDESS, and MELD has no such class.
RAVDESS_CODES: dict[str, str] = {
    "01": "neutral", "02": "neutral", "03": "joy", "04": "sadness",
    "05": "anger", "06": "fear", "07": "disgust", "08": "surprise",
}

# FER-2013 class names (the `classes` array of fer2013.npz) -> our label.
FER_CLASSES: dict[str, str] = {
    "angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "joy",
    "neutral": "neutral", "sad": "sadness", "surprise": "surprise",
}


def label_index(name: str) -> int:
    """Index of an emotion in `EMOTIONS`; a clear error for anything else."""
    try:
        return EMOTIONS.index(name.strip().lower())
    except ValueError:
        raise ValueError(f"unknown emotion {name!r}; known: {', '.join(EMOTIONS)}") from None
