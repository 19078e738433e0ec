"""Readers for the two really paired sets in ../shared/data (SOURCES-paired.md there).

Each row carries several modalities of the same clip, unlike MELD / RAVDESS speech / FER-2013:

- `ravdess-av`: the 1,440 RAVDESS audio-visual speech clips. Audio is our own log-mel of the
  matching FLAC (`audio_file`), taken from the same feature cache the served model trains on
  (`features.load_features("ravdess", ...)`); video is the clip's 35 OpenFace action-unit
  statistics. Split by actor exactly like the speech data (`datasets.RAVDESS_SPLITS`: 1-18 /
  19-20 / 21-24). Labels: RAVDESS's own 8 emotions, or the project's 7 (calm -> neutral).
- `mosi`: CMU-MOSI, 2,199 utterances with text, audio and video features (as released with
  bc-LSTM) and binary sentiment. The official test videos stay the test set; a validation set is
  carved out of the training videos by `video_id`, so no video is in two splits.

Feature modalities are standardised with the training split's mean and standard deviation.
Both sets are research-only (RAVDESS CC BY-NC-SA 4.0; CMU-MOSI research use).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from libra.runtime.labels import EMOTIONS, RAVDESS_CODES
from libra.training import datasets
from libra.training.features import SPLITS, data_root, load_features, subset_rows
from libra.training.names import PAIRED_SETS

RAVDESS_AV_FILE = Path("ravdess-av-au-mfcc") / "ravdess_au_mfcc.npz"
MOSI_FILE = Path("cmu-mosi-bclstm-features") / "mosi_utterance_features.npz"
RAVDESS_SPEECH_DIR = "ravdess-speech-16k"
MOSI_VAL_FRACTION = 0.2
MOSI_SPLIT_SEED = 0
LabelSet = Literal["8", "7"]


@dataclass(frozen=True, eq=False)
class PairedSplit:
    """Rows of one split: `inputs[modality]` are that modality's encoder arrays (row-aligned),
    `groups` the speaker or video of each row (what the split must keep disjoint), `ids` the
    clip or utterance, `extra` arrays kept for reference baselines (not model inputs)."""

    labels: np.ndarray
    inputs: dict[str, tuple[np.ndarray, ...]]
    groups: np.ndarray
    ids: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True, eq=False)
class PairedDataset:
    """A paired set: modality order (the presence mask's), class names, the three splits.

    `feature_dims[m]` is the width of a precomputed feature modality; modalities absent from it
    are raw inputs for one of our own encoders (RAVDESS audio: the log-mel).
    """

    name: str
    modalities: tuple[str, ...]
    class_names: tuple[str, ...]
    splits: dict[str, PairedSplit]
    feature_dims: dict[str, int]
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def _read_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"no paired data at {path} (see SOURCES-paired.md in the data "
                                f"folder; pass --data-dir or set $LIBRA_DATA_DIR)")
    with np.load(path) as z:
        missing = [k for k in keys if k not in z.files]
        if missing:
            raise ValueError(f"{path}: missing arrays {', '.join(missing)}")
        return {k: z[k] for k in keys}


def _standardise(splits: Mapping[str, dict[str, np.ndarray]], key: str) -> None:
    """In place: (x - mean) / std with the training split's statistics."""
    train = splits["train"][key].astype(np.float64)
    mean, std = train.mean(0), train.std(0)
    std = np.where(std > 1e-6, std, 1.0)
    for arrays in splits.values():
        arrays[key] = ((arrays[key] - mean) / std).astype(np.float32)


def _limits(max_train: int | None, max_eval: int | None) -> dict[str, int | None]:
    return {"train": max_train, "val": max_eval, "test": max_eval}


# ------------------------------------------------------------------------------- RAVDESS A+V


def ravdess_av_labels(emotion: np.ndarray, label_set: LabelSet) -> tuple[np.ndarray,
                                                                         tuple[str, ...]]:
    """RAVDESS emotion codes 1-8 -> class indices and names: 8 native classes, or the project's
    7 (calm folded into neutral, `labels.RAVDESS_CODES`)."""
    codes = np.asarray(emotion, dtype=np.int64)
    if codes.min(initial=1) < 1 or codes.max(initial=8) > 8:
        raise ValueError(f"RAVDESS emotion codes must be 1-8, got {sorted(set(codes.tolist()))}")
    if label_set == "8":
        names = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
        return codes - 1, names
    if label_set == "7":
        remap = np.array([-1] + [EMOTIONS.index(RAVDESS_CODES[f"{c:02d}"]) for c in range(1, 9)])
        return remap[codes], EMOTIONS
    raise ValueError(f"unknown RAVDESS label set {label_set!r}; valid: 8, 7")


def load_ravdess_av(root: Path | str | None = None, *, label_set: LabelSet = "8",
                    max_train: int | None = None, max_eval: int | None = None,
                    cache_dir: Path | str | None = None, progress: bool = False) -> PairedDataset:
    """RAVDESS audio + face action units of the same clips, split by actor.

    Audio rows come from the speech feature cache of each split (`max_train` / `max_eval` take
    the same fixed subsets as training's limits) and are joined to the action units by the FLAC
    path; a FLAC without an AV row is dropped, and a label or actor disagreement is an error.
    """
    base = data_root(root)
    path = base / RAVDESS_AV_FILE
    z = _read_npz(path, ("clip_id", "audio_file", "au", "au_names", "mfcc_seq", "emotion",
                         "actor"))
    by_file = {str(f): i for i, f in enumerate(z["audio_file"])}
    labels_all, class_names = ravdess_av_labels(z["emotion"], label_set)
    seven, _ = ravdess_av_labels(z["emotion"], "7")
    limits = _limits(max_train, max_eval)
    raw: dict[str, dict[str, np.ndarray]] = {}
    for split in SPLITS:
        speech_root = base / RAVDESS_SPEECH_DIR
        clips = datasets.load_ravdess(speech_root, split)
        rows = subset_rows(len(clips), limits[split])
        audio = load_features("ravdess", split, limit=limits[split], root=base,
                              cache_dir=cache_dir, progress=progress)
        if len(audio) != len(rows):
            raise ValueError(f"the RAVDESS {split} feature cache has {len(audio)} rows, the "
                             f"reader {len(rows)}: delete the cache and rebuild")
        keep, av = [], []
        for j, i in enumerate(rows):
            name = clips[i].path.relative_to(speech_root).as_posix()
            k = by_file.get(name)
            if k is None:
                continue
            if seven[k] != audio.labels[j] or int(z["actor"][k]) != clips[i].actor:
                raise ValueError(f"{path}: row {k} ({z['clip_id'][k]}) disagrees with {name} on "
                                 f"the emotion or the actor")
            keep.append(j)
            av.append(k)
        j_idx, k_idx = np.array(keep, dtype=np.int64), np.array(av, dtype=np.int64)
        raw[split] = {"labels": labels_all[k_idx].astype(np.int64),
                      "audio_mel": audio.arrays["audio_mel"][j_idx],
                      "audio_frames": audio.arrays["audio_frames"][j_idx],
                      "au": z["au"][k_idx].astype(np.float32),
                      "mfcc_seq": z["mfcc_seq"][k_idx].astype(np.float32),
                      "actor": z["actor"][k_idx].astype(np.int64),
                      "clip_id": z["clip_id"][k_idx]}
    _standardise(raw, "au")
    splits = {
        s: PairedSplit(labels=a["labels"],
                       inputs={"audio": (a["audio_mel"], a["audio_frames"]), "video": (a["au"],)},
                       groups=a["actor"], ids=a["clip_id"], extra={"mfcc_seq": a["mfcc_seq"]})
        for s, a in raw.items()
    }
    return PairedDataset(
        # the 7-class variant is its own dataset in the records, so it never replaces the 8's
        name="ravdess-av" if label_set == "8" else "ravdess-av-7",
        modalities=("audio", "video"), class_names=class_names,
        splits=splits, feature_dims={"video": int(z["au"].shape[1])},
        notes={"label_set": label_set,
               "audio": "our log-mel (64 bands, 10 ms hop) of the matching FLAC",
               "video": f"{z['au'].shape[1]} OpenFace action-unit statistics of the video",
               "split": "by actor: " + ", ".join(
                   f"{s} {list(datasets.RAVDESS_SPLITS[s])}" for s in SPLITS)})


# ------------------------------------------------------------------------------------ MOSI


def mosi_val_videos(train_videos: np.ndarray, fraction: float = MOSI_VAL_FRACTION,
                    seed: int = MOSI_SPLIT_SEED) -> set[str]:
    """The training videos held out for validation: a fixed random `fraction` of them."""
    if not 0 < fraction < 1:
        raise ValueError(f"the validation fraction ({fraction}) must be within (0, 1)")
    videos = np.unique(train_videos.astype(str))
    n_val = max(1, round(fraction * len(videos)))
    return {str(v) for v in np.random.default_rng(seed).permutation(videos)[:n_val]}


def load_mosi(root: Path | str | None = None, *, max_train: int | None = None,
              max_eval: int | None = None, val_fraction: float = MOSI_VAL_FRACTION
              ) -> PairedDataset:
    """CMU-MOSI text + audio + video features, binary sentiment, video-independent splits."""
    path = data_root(root) / MOSI_FILE
    columns = ("text", "audio", "video", "y", "utt_id", "video_id")
    keys = (*(f"{k}_{s}" for s in ("train", "test") for k in columns), "label_names")
    z = _read_npz(path, keys)
    val_videos = mosi_val_videos(z["video_id_train"], val_fraction)
    in_val = np.isin(z["video_id_train"].astype(str), sorted(val_videos))
    source = {"train": ("train", ~in_val), "val": ("train", in_val),
              "test": ("test", np.ones(len(z["y_test"]), dtype=bool))}
    limits = _limits(max_train, max_eval)
    raw: dict[str, dict[str, np.ndarray]] = {}
    for split, (part, mask) in source.items():
        idx = np.flatnonzero(mask)
        idx = idx[subset_rows(len(idx), limits[split])]
        raw[split] = {k: z[f"{k}_{part}"][idx] for k in ("text", "audio", "video", "y", "utt_id",
                                                          "video_id")}
    for k in ("text", "audio", "video"):
        _standardise(raw, k)
    splits = {s: PairedSplit(labels=a["y"].astype(np.int64),
                             inputs={m: (a[m],) for m in ("text", "audio", "video")},
                             groups=a["video_id"].astype(str), ids=a["utt_id"].astype(str))
              for s, a in raw.items()}
    return PairedDataset(
        name="mosi", modalities=("text", "audio", "video"),
        class_names=tuple(str(c) for c in z["label_names"]), splits=splits,
        feature_dims={m: int(z[f"{m}_train"].shape[1]) for m in ("text", "audio", "video")},
        notes={"text": "100-d text-CNN features", "audio": "73-d openSMILE-based features",
               "video": "100-d 3D-CNN features",
               "split": f"official test videos; validation = {len(val_videos)} of the "
                        f"{len(np.unique(z['video_id_train']))} training videos (seed "
                        f"{MOSI_SPLIT_SEED})"})


def load_paired(name: str, root: Path | str | None = None, *, label_set: LabelSet = "8",
                max_train: int | None = None, max_eval: int | None = None,
                cache_dir: Path | str | None = None, progress: bool = False) -> PairedDataset:
    """One paired set by name (`PAIRED_SETS`)."""
    if name == "ravdess-av":
        return load_ravdess_av(root, label_set=label_set, max_train=max_train,
                               max_eval=max_eval, cache_dir=cache_dir, progress=progress)
    if name == "mosi":
        return load_mosi(root, max_train=max_train, max_eval=max_eval)
    raise ValueError(f"unknown paired set {name!r}; valid: {', '.join(PAIRED_SETS)}")
