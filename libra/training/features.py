"""Model inputs for training and evaluation, built through the serving preprocessing and cached.

Every example goes through the same functions the API uses (`libra.runtime.inputs`), so the
model never trains on features made another way:

- MELD (text): `TextTokenizer.encode` (`clean_text`, then 64 tokens) -> the frozen all-MiniLM-L6-v2
  sentence embedding (B, 384) float32. The encoder is frozen, so its output is cached; batches are
  sorted by length and cut to their longest row (padding is masked, so the embedding is the same
  to float rounding, and embedding MELD takes a fraction of the time).
- RAVDESS (audio): `audio_features` on the FLAC bytes -> log-mel (B, 64, 798), stored float16 (the
  values are log powers between about -14 and 10: float16 keeps three decimals) with
  `valid_frames` (B,) int64.
- FER-2013 (faces): 48x48 uint8 crops -> `face_pixels_to_float` -> (B, 1, 48, 48) float32 in
  [0, 1]. A still image is a one-frame clip: the face encoder mean-pools its frames, so one frame
  gives what N identical frames would. The cache keeps the uint8 pixels (the float conversion is
  exact and a float32 copy of FER would be 4x larger on disk).

The cache is one `.npz` per (source, split, subset, preprocessing hash) under `artifacts/cache/`.
The hash covers the preprocessing specs, package versions and the source code of the modules
that make the features, so a change to any of them rebuilds rather than reuses stale inputs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import inspect
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
from tqdm.auto import tqdm

from libra.runtime import labels as label_sets
from libra.runtime.home import artifacts_dir
from libra.runtime.inputs import audio as audio_inputs
from libra.runtime.inputs import video as video_inputs
from libra.runtime.labels import MODALITIES
from libra.training import datasets
from libra.training.names import (  # their one home; re-exported where users found them
    MODALITY_SOURCE,  # noqa: F401
    SOURCE_MODALITY,
    SOURCES,
    SPLITS,
    Source,  # noqa: F401
    Split,  # noqa: F401
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR_ENV = "LIBRA_DATA_DIR"
DEFAULT_CACHE_DIR = artifacts_dir() / "cache"  # libra.runtime.home: never site-packages
FEATURES_VERSION = 1
"""Bump when this module changes what it stores."""

SUBSET_SEED = 0
"""Which examples a size-limited subset keeps: fixed, so every run with the same limit agrees."""


def data_root(root: Path | str | None = None) -> Path:
    """Where the labeled data lives: `root`, else $LIBRA_DATA_DIR, else ../shared/data."""
    if root is not None:
        return Path(root)
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@dataclass(frozen=True, eq=False)
class FeatureSet:
    """The model inputs of one source and split, in the order of the source's reader.

    `arrays` holds the source's modality only: "text_emb" (N, 384) float32 for MELD;
    "audio_mel" (N, 64, 798) float16 and "audio_frames" (N,) int64 for RAVDESS; "faces"
    (N, 1, 48, 48) float32 in [0, 1] for FER-2013. `labels` (N,) int64 index `EMOTIONS`.
    """

    source: str
    split: str
    labels: np.ndarray
    arrays: dict[str, np.ndarray]

    @property
    def modality(self) -> str:
        return SOURCE_MODALITY[self.source]

    @property
    def modality_index(self) -> int:
        return MODALITIES.index(self.modality)

    def __len__(self) -> int:
        return len(self.labels)


def _check(source: str, split: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; valid: {', '.join(SOURCES)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")


# --------------------------------------------------------------------------------- text pipeline

def _text_modules() -> list[ModuleType]:
    from libra.runtime.inputs import text as text_inputs
    from libra.training import text_encoder

    return [text_inputs, text_encoder]


def _text_spec() -> dict[str, object]:
    from libra.runtime.inputs.text import DEFAULT_SPEC, find_tokenizer_file
    from libra.training.text_encoder import PACKAGE

    tokenizer = hashlib.sha256(find_tokenizer_file().read_bytes()).hexdigest()[:16]
    return {**dataclasses.asdict(DEFAULT_SPEC), "tokenizer": tokenizer,
            "encoder": _version(PACKAGE.replace("_", "-")),
            "transformers": _version("transformers"), "torch": _version("torch")}


def embed_texts(texts: list[str], batch_size: int = 128, progress: bool = True) -> np.ndarray:
    """Raw strings -> frozen MiniLM sentence embeddings (N, 384) float32, the serving path."""
    import torch

    from libra.runtime.inputs.text import TextTokenizer
    from libra.training.text_encoder import MiniLMEncoder

    ids, mask = TextTokenizer.from_file().encode(texts)  # clean_text, then 64 tokens
    encoder = MiniLMEncoder()
    lengths = mask.sum(axis=1)
    order = np.argsort(-lengths, kind="stable")  # longest first: memory peaks at once
    out = np.zeros((len(texts), 384), dtype=np.float32)
    starts = range(0, len(texts), batch_size)
    with torch.inference_mode():
        for start in tqdm(starts, desc="MELD text -> MiniLM", unit="batch", disable=not progress):
            rows = order[start:start + batch_size]
            width = max(int(lengths[rows].max()), 1)
            out[rows] = encoder.embed(ids[rows, :width], mask[rows, :width], batch_size)
    return out


def _build_meld(root: Path, split: str, keep: Callable[[int], np.ndarray],
                progress: bool) -> dict[str, np.ndarray]:
    examples = datasets.load_meld(root / "meld", split)
    rows = keep(len(examples))
    texts = [examples[i].text for i in rows]
    return {"labels": np.array([examples[i].label for i in rows], dtype=np.int64),
            "text_emb": embed_texts(texts, progress=progress)}


# -------------------------------------------------------------------------------- audio pipeline


def _build_ravdess(root: Path, split: str, keep: Callable[[int], np.ndarray],
                   progress: bool) -> dict[str, np.ndarray]:
    examples = datasets.load_ravdess(root / "ravdess-speech-16k", split)
    rows = keep(len(examples))
    spec = audio_inputs.DEFAULT_SPEC
    mels = np.empty((len(rows), spec.n_mels, spec.n_frames), dtype=np.float16)
    frames = np.empty(len(rows), dtype=np.int64)
    for j, i in enumerate(tqdm(rows, desc="RAVDESS audio -> log-mel", unit="clip",
                               disable=not progress)):
        item = audio_inputs.audio_features(examples[i].path.read_bytes(), spec)
        mels[j] = item.log_mel
        frames[j] = item.valid_frames
    return {"labels": np.array([examples[i].label for i in rows], dtype=np.int64),
            "audio_mel": mels, "audio_frames": frames}


# --------------------------------------------------------------------------------- face pipeline


def _build_fer(root: Path, split: str, keep: Callable[[int], np.ndarray],
               progress: bool) -> dict[str, np.ndarray]:
    del progress  # nothing slow here
    faces, labels = datasets.load_fer(root / "fer2013" / "fer2013.npz", split)
    rows = keep(len(labels))
    return {"labels": labels[rows].astype(np.int64), "faces_u8": faces[rows][:, None]}


def _faces_from_cache(stored: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"faces": video_inputs.face_pixels_to_float(stored["faces_u8"])}


# ------------------------------------------------------------------------------------ the cache

_STORE_CODE: dict[str, Callable[..., object]] = {
    "meld": embed_texts, "ravdess": _build_ravdess, "fer": _build_fer,
}
_BUILDERS: dict[str, Callable[[Path, str, Callable[[int], np.ndarray], bool],
                              dict[str, np.ndarray]]] = {
    "meld": _build_meld, "ravdess": _build_ravdess, "fer": _build_fer,
}


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _source_hash(code: list[ModuleType | Callable[..., object]]) -> str:
    digest = hashlib.sha256()
    for item in code:
        digest.update(inspect.getsource(item).encode())
    return digest.hexdigest()[:16]


def preprocessing_spec(source: str) -> dict[str, object]:
    """Everything that decides a source's features: the cache key hashes this."""
    code: list[ModuleType | Callable[..., object]]
    if source == "meld":
        spec, code = _text_spec(), [*_text_modules(), datasets.load_meld]
    elif source == "ravdess":
        spec = dataclasses.asdict(audio_inputs.DEFAULT_SPEC)
        spec |= {"numpy": _version("numpy"), "scipy": _version("scipy"),
                 "soundfile": _version("soundfile"), "av": _version("av")}
        code = [audio_inputs, datasets.load_ravdess, datasets.ravdess_label]
    elif source == "fer":
        # FER-2013 faces are already 48x48 crops: only the pixel conversion of the video path
        # applies, so the rest of video.py (decoding, detection) may change without a rebuild
        spec = {"face_size_px": 48, "frames": 1}
        code = [video_inputs.face_pixels_to_float, datasets.load_fer]
    else:
        _check(source, "train")
        raise AssertionError("unreachable")
    return {"source": source, "features_version": FEATURES_VERSION, **spec,
            "code": _source_hash([*code, label_sets, _STORE_CODE[source]])}


def spec_hash(source: str) -> str:
    blob = json.dumps(preprocessing_spec(source), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def subset_rows(n: int, limit: int | None) -> np.ndarray:
    """The rows a size-limited subset keeps: a fixed random sample, in the reader's order."""
    if limit is None or limit >= n:
        return np.arange(n)
    if limit < 1:
        raise ValueError(f"limit ({limit}) must be at least 1 (or None for every example)")
    return np.sort(np.random.default_rng(SUBSET_SEED).permutation(n)[:limit])


def cache_path(source: str, split: str, limit: int | None = None,
               cache_dir: Path | str | None = None) -> Path:
    """Where `load_features` keeps (or finds) one source and split."""
    _check(source, split)
    subset = "all" if limit is None else f"n{limit}"
    folder = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
    return folder / f"{source}-{split}-{subset}-{spec_hash(source)}.npz"


def _prune_stale(path: Path) -> None:
    """Delete entries of the same source, split and subset made by other preprocessing: nothing
    reads them again (the hash is part of the key), and they are large."""
    prefix = path.name.rsplit("-", 1)[0]
    for other in path.parent.glob(f"{prefix}-*.npz"):
        if other != path and len(other.name) == len(path.name):
            other.unlink(missing_ok=True)


def load_features(source: str, split: str, *, limit: int | None = None,
                  root: Path | str | None = None, cache_dir: Path | str | None = None,
                  progress: bool = True) -> FeatureSet:
    """Model inputs of one source and split (at most `limit` examples), from the cache or built.

    `root` is the data folder (see `data_root`); `cache_dir` defaults to `artifacts/cache/`.
    """
    path = cache_path(source, split, limit, cache_dir)
    if path.is_file():
        with np.load(path) as z:
            stored = {k: z[k] for k in z.files}
    else:
        folder = data_root(root)
        if not folder.is_dir():
            raise FileNotFoundError(
                f"no labeled data at {folder}: pass the data folder or set ${DATA_DIR_ENV} "
                f"(it holds meld/, ravdess-speech-16k/ and fer2013/)"
            )
        stored = _BUILDERS[source](folder, split, lambda n: subset_rows(n, limit), progress)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **stored)  # type: ignore[arg-type]  # numpy's stub types allow_pickle
        tmp.replace(path)  # atomic: a concurrent reader never sees half a file
        _prune_stale(path)
    labels = stored.pop("labels")
    arrays = _faces_from_cache(stored) if source == "fer" else stored
    return FeatureSet(source, split, labels, arrays)
