"""Honest confidence: post-hoc temperature scaling per modality subset, and fusion that weighs
each modality by how far its calibrated answer can be trusted.

The served model's top probability averaged 0.84-0.99 on text and speech corpora it never saw,
where it was right 15-39 % of the time (issue 17). Temperature scaling changes no answer (the
argmax stays) but makes the probabilities mean what they say: p ∝ exp(log p / T), with one T per
modality subset fitted by `libra-model calibrate` on labelled corpora the model was not trained
on, and stored with the model (the ONNX file's `calibration` metadata, mirrored in
`manifest.json`), so the worker, the Lambda and the local pool apply the same numbers.

Fusion. Inside the graph the fusion encoder sees each branch's features, not a calibrated
probability: a branch that is confidently wrong on new data (espeak-ng speech reads as
"sadness" at 0.98-1.0) outvotes the others there, and no temperature applied afterwards can
change that answer. So with `fusion="product"` a request with several modalities is answered
outside the graph: each modality is run alone (one graph call per modality present in the
batch), its answer tempered with that modality's T, and the answers multiplied (a product of
experts: a flat, untrustworthy answer moves the product little), then the subset's T. With
`fusion="model"` the graph's own fused answer is tempered with the subset's T. numpy only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

METADATA_KEY = "calibration"
"""The ONNX metadata property holding `Calibration.to_json()`."""
FUSIONS = ("model", "product")
PROB_FLOOR = 1e-12
"""Probabilities are floored here before their log: an exact 0 from the graph stays finite."""


def subset_key(modalities: Sequence[str]) -> str:
    """A modality subset's name: its modalities sorted and joined ("audio+text")."""
    if not modalities:
        raise ValueError("a modality subset needs at least one modality")
    return "+".join(sorted(modalities))


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Rows of probabilities with temperature `temperature`: p ∝ exp(log p / T), row by row.
    T > 1 flattens, T < 1 sharpens, T = 1 changes nothing; the argmax never changes."""
    if not temperature > 0 or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a positive finite number, not {temperature}")
    logp = np.log(np.maximum(np.asarray(probs, dtype=np.float64), PROB_FLOOR)) / temperature
    return _softmax(logp)


def product_of_experts(probs: Sequence[np.ndarray]) -> np.ndarray:
    """The normalised product of several answers to the same rows (each (B, C))."""
    if not probs:
        raise ValueError("a product of experts needs at least one answer")
    logp = sum(np.log(np.maximum(np.asarray(p, dtype=np.float64), PROB_FLOOR)) for p in probs)
    return _softmax(np.asarray(logp))


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


@dataclass(frozen=True)
class Calibration:
    """Temperatures per modality subset (`subset_key` names; a subset not listed keeps T = 1)
    and how several modalities are fused (`FUSIONS`)."""

    temperatures: Mapping[str, float] = field(default_factory=dict)
    fusion: str = "model"
    source: str = ""
    """Where the numbers came from (corpora, command), for a person reading the metadata."""

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, not {self.fusion!r}")
        for key, t in self.temperatures.items():
            if not (isinstance(t, int | float) and t > 0 and math.isfinite(t)):
                raise ValueError(f"temperature of {key!r} must be a positive number, not {t!r}")

    def temperature(self, modalities: Sequence[str]) -> float:
        return float(self.temperatures.get(subset_key(modalities), 1.0))

    def to_json(self) -> str:
        return json.dumps({"temperatures": dict(sorted(self.temperatures.items())),
                           "fusion": self.fusion, "source": self.source}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        try:
            data: Any = json.loads(text)
            return cls({str(k): float(v) for k, v in data["temperatures"].items()},
                       str(data.get("fusion", "model")), str(data.get("source", "")))
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a calibration ({exc})") from None


IDENTITY = Calibration()
"""No calibration: the graph's own answer (what a model built without one serves)."""
