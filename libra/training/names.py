"""The names `libra-model` offers as choices: sources, splits, paired sets, ONNX variants.

Standard library only, so that `libra-model --help` (and the error that says which extra a
command needs) works on an install without torch, onnx or the media decoders. The modules that
use these names (`features`, `paired_data`, `build`) import them from here: one copy.
"""

from __future__ import annotations

from typing import Literal

from libra.runtime.labels import MODALITIES

Source = Literal["meld", "ravdess", "fer"]
Split = Literal["train", "val", "test"]
SOURCES: tuple[Source, ...] = ("meld", "ravdess", "fer")
SPLITS: tuple[Split, ...] = ("train", "val", "test")
SOURCE_MODALITY: dict[str, str] = {"meld": "text", "ravdess": "audio", "fer": "video"}
MODALITY_SOURCE: dict[str, str] = {
    m: s for m in MODALITIES for s, of in SOURCE_MODALITY.items() if of == m}
PAIRED_SETS: tuple[str, ...] = ("ravdess-av", "mosi")
VARIANTS: tuple[str, ...] = ("fp32", "fp16", "int8", "int4")
"""The ONNX files `libra-model build` can write (`<variant>.onnx`)."""
