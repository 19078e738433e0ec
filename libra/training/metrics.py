"""Classification metrics for the torch and the ONNX evaluations (numpy; sklearn if present)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from libra.runtime.labels import EMOTIONS

N_CLASSES = len(EMOTIONS)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray,
                           class_names: Sequence[str] = EMOTIONS) -> dict[str, Any]:
    """Accuracy, weighted and macro F1 (over the classes present in `y_true`, as sklearn does
    with its default labels), and the confusion matrix over all `class_names` (rows = truth;
    `EMOTIONS` by default, another label set for the paired experiments)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    n_classes = len(class_names)
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    labels = np.union1d(np.unique(y_true), np.unique(y_pred))
    try:
        from sklearn.metrics import f1_score

        weighted = float(f1_score(y_true, y_pred, labels=labels, average="weighted",
                                  zero_division=0))
        macro = float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))
    except ImportError:
        weighted, macro = _f1_numpy(cm, labels)
    return {
        "n": len(y_true),
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        "weighted_f1": weighted,
        "macro_f1": macro,
        "confusion_matrix": cm.tolist(),
        "labels": list(class_names),
    }


def _f1_numpy(cm: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    tp = np.diag(cm)[labels].astype(float)
    support = cm.sum(1)[labels].astype(float)
    predicted = cm.sum(0)[labels].astype(float)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    total = support.sum()
    weighted = float((f1 * support).sum() / total) if total else 0.0
    return weighted, float(f1.mean()) if len(f1) else 0.0
