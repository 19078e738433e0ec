"""The exported emotion model under ONNX Runtime: numpy in, probabilities out (no torch).

What GPU workers, Lambda functions and the ONNX evaluation run. A row is a `ModelInput` with any
non-empty subset of the modalities, made by `libra.runtime.inputs`; `assemble` packs rows into the
graph's inputs (see `libra.training.export`), cutting each axis to what the batch needs: text to its
longest sentence, audio to its longest clip, and a modality no row has to a stub of minimal size
with presence 0, so a text-only batch does not pay for 798 frames of zeros.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from libra.runtime.calibration import (
    IDENTITY,
    METADATA_KEY,
    Calibration,
    product_of_experts,
    temper,
)
from libra.runtime.labels import EMOTIONS, MODALITIES
from libra.runtime.model_input import AudioInput, VideoInput

N_MELS = 64
FACE_PX = 48
MIN_MEL_FRAMES = 8
"""The audio encoder downsamples by 8: the shortest input the exported graph accepts."""
AUDIO_CONTEXT_FRAMES = 16
"""Padding kept after the longest clip: the last pooled position of the three stride-2 convs
reads 14 frames past it (GELU(bias) there, not zeros), so cutting closer would change the
answer from the one training gave with the full 798 frames."""


@dataclass(frozen=True)
class ModelInput:
    """One request's model inputs; `text` is (input_ids, attention_mask) of one sentence."""

    audio: AudioInput | None = None
    video: VideoInput | None = None
    text: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def modalities(self) -> tuple[str, ...]:
        have = {"audio": self.audio, "video": self.video, "text": self.text}
        return tuple(m for m in MODALITIES if have[m] is not None)

    def only(self, modality: str) -> ModelInput:
        """This row with `modality` alone (the others absent)."""
        if modality not in self.modalities:
            raise ValueError(f"the row has no {modality} (it has {', '.join(self.modalities)})")
        return dataclasses.replace(self, **{m: None for m in MODALITIES if m != modality})


def assemble(rows: Sequence[ModelInput]) -> dict[str, np.ndarray]:
    """Rows -> the graph's feeds (`audio_mel`, `audio_frames`, `faces`, `input_ids`,
    `attention_mask`, `presence`)."""
    if not rows:
        raise ValueError("assemble needs at least one row")
    b = len(rows)
    presence = np.array([[m in r.modalities for m in MODALITIES] for r in rows], np.float32)
    if not presence.any(axis=1).all():
        empty = int(np.flatnonzero(~presence.any(axis=1))[0])
        raise ValueError(f"row {empty} has no modality: the model needs at least one")

    audio = [r.audio for r in rows]
    longest = max([a.valid_frames + AUDIO_CONTEXT_FRAMES for a in audio if a is not None]
                  + [MIN_MEL_FRAMES])
    n_frames = min(-(-longest // 8) * 8, max(
        [a.log_mel.shape[1] for a in audio if a is not None] + [MIN_MEL_FRAMES]))
    mel = np.zeros((b, N_MELS, n_frames), np.float32)
    valid = np.full(b, MIN_MEL_FRAMES, np.int64)
    for i, a in enumerate(audio):
        if a is not None:
            mel[i] = a.log_mel[:, :n_frames]
            valid[i] = max(a.valid_frames, 1)

    videos = [r.video for r in rows]
    n_faces = max([v.faces.shape[0] for v in videos if v is not None] + [1])
    faces = np.zeros((b, n_faces, FACE_PX, FACE_PX), np.float32)
    for i, v in enumerate(videos):
        if v is not None:
            # fewer frames than the batch: each repeated evenly, so the encoder's mean over
            # frames is unchanged (exact when the counts divide, as 1 and 8 do)
            faces[i] = v.faces[(np.arange(n_faces) * v.faces.shape[0]) // n_faces]

    texts = [r.text for r in rows]
    n_tokens = max([int(t[1].sum()) for t in texts if t is not None] + [1])
    ids = np.zeros((b, n_tokens), np.int64)
    mask = np.zeros((b, n_tokens), np.int64)
    for i, t in enumerate(texts):
        if t is not None:
            ids[i], mask[i] = t[0][:n_tokens], t[1][:n_tokens]
    return {"audio_mel": mel, "audio_frames": valid, "faces": faces, "input_ids": ids,
            "attention_mask": mask, "presence": presence}


@dataclass(frozen=True)
class ModelInfo:
    """What the ONNX file says about itself (its metadata properties)."""

    version: str
    precision: str
    emotions: tuple[str, ...]
    trained_modalities: tuple[str, ...]
    extra: dict[str, str] = field(default_factory=dict)


def read_calibration(metadata: dict[str, str], path: Path | str) -> Calibration:
    """The file's calibration (`libra.runtime.calibration`), or `IDENTITY` for a file built
    without one."""
    text = metadata.get(METADATA_KEY)
    if not text:
        return IDENTITY
    try:
        return Calibration.from_json(text)
    except ValueError as exc:
        raise ValueError(f"{path}: its {METADATA_KEY!r} metadata is broken ({exc})") from None


def read_info(metadata: dict[str, str], path: Path | str) -> ModelInfo:
    """`ModelInfo` from an ONNX file's metadata, with a clear error for a foreign file."""
    try:
        emotions = tuple(json.loads(metadata["emotions"]))
        trained = tuple(json.loads(metadata["trained_modalities"]))
        info = ModelInfo(metadata["model_version"], metadata["precision"], emotions, trained,
                         dict(metadata))
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{path} is not a Libra model export (metadata: {exc})") from None
    if info.emotions != EMOTIONS:
        raise ValueError(f"{path} predicts {info.emotions}, this code expects {EMOTIONS}")
    return info


class Recognizer:
    """An ONNX Runtime session over one exported variant.

    `device="cuda"` asks for the CUDA execution provider and falls back to the CPU when
    onnxruntime-gpu or a GPU is missing (`providers` says what it got); `threads` bounds the
    CPU intra-op threads (1 is what one Lambda vCPU gives). `predict` applies the calibration
    stored in the file (`calibration`; `libra.runtime.calibration`), so every process that
    serves the file answers with the same calibrated probabilities; `predict_raw` does not.
    """

    def __init__(self, path: Path | str, *, device: str = "cpu", threads: int | None = None
                 ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no model at {self.path}: run `libra-model build` first")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.log_severity_level = 3
        available = ort.get_available_providers()
        wanted = ["CPUExecutionProvider"]
        if device == "cuda" and "CUDAExecutionProvider" in available:
            wanted.insert(0, "CUDAExecutionProvider")
        elif device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', not {device!r}")
        self.session = ort.InferenceSession(str(self.path), options, providers=wanted)
        self.providers: tuple[str, ...] = tuple(self.session.get_providers())
        meta = self.session.get_modelmeta().custom_metadata_map
        self.info = read_info(dict(meta), self.path)
        self.calibration = read_calibration(dict(meta), self.path)

    @property
    def device(self) -> str:
        return "cuda" if self.providers[0] == "CUDAExecutionProvider" else "cpu"

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Probabilities (B, 7) for assembled feeds."""
        return np.asarray(self.session.run(["probabilities"], feeds)[0], dtype=np.float32)

    def predict_raw(self, rows: Sequence[ModelInput]) -> np.ndarray:
        """The graph's probabilities (B, 7), uncalibrated, one row per input."""
        return self.run(assemble(rows))

    def predict(self, rows: Sequence[ModelInput]) -> np.ndarray:
        """Calibrated probabilities (B, 7) in `EMOTIONS` order, one row per input."""
        if self.calibration.fusion == "product" and any(len(r.modalities) > 1 for r in rows):
            return self._predict_product(rows)
        probs = self.predict_raw(rows)
        return self._temper_rows(probs, rows)

    def _temper_rows(self, probs: np.ndarray, rows: Sequence[ModelInput]) -> np.ndarray:
        """Each row tempered with its own subset's temperature."""
        out = np.asarray(probs, dtype=np.float32).copy()
        subsets: dict[tuple[str, ...], list[int]] = {}
        for i, row in enumerate(rows):
            subsets.setdefault(row.modalities, []).append(i)
        for modalities, index in subsets.items():
            t = self.calibration.temperature(modalities)
            if t != 1.0:
                out[index] = temper(out[index], t)
        return out

    def _predict_product(self, rows: Sequence[ModelInput]) -> np.ndarray:
        """Each modality of each row run alone (one graph call per modality in the batch) and
        tempered with its T, a row's answers multiplied, then its subset's T."""
        singles: dict[str, list[int]] = {m: [] for m in MODALITIES}
        for i, row in enumerate(rows):
            for m in row.modalities:
                singles[m].append(i)
        answers: list[list[np.ndarray]] = [[] for _ in rows]
        for m, index in singles.items():
            if index:
                probs = self.predict_raw([rows[i].only(m) for i in index])
                for i, p in zip(index, temper(probs, self.calibration.temperature((m,))),
                                strict=True):
                    answers[i].append(p[None])
        fused = np.concatenate([product_of_experts(a) for a in answers])
        multi = [i for i, row in enumerate(rows) if len(row.modalities) > 1]
        fused[multi] = self._temper_rows(fused[multi], [rows[i] for i in multi])
        return fused
