"""`libra-model calibrate`'s parts: the ECE it reports, the temperature it fits, the pseudo-pairs
it scores fusion on, and writing the result into a built model folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from libra.runtime.calibration import Calibration, temper
from libra.runtime.recognizer import Recognizer
from libra.training.calibration import (
    CORPORA,
    Collected,
    Corpus,
    ece,
    fit_temperature,
    pseudo_pairs,
    reliability,
    single_modality,
    stamp_folder,
)

pytestmark = pytest.mark.unit


def test_ece_of_hand_made_cases() -> None:
    labels = np.array([0, 0, 0, 0])
    sure_and_right = np.tile([[1.0, 0, 0, 0, 0, 0, 0]], (4, 1))
    assert ece(sure_and_right, labels) == 0.0
    sure_half_right = sure_and_right.copy()
    sure_half_right[2:] = [0, 1.0, 0, 0, 0, 0, 0]
    assert ece(sure_half_right, labels) == pytest.approx(0.5)
    # two bins: 0.9 confident and right twice (gap 0.1), 0.5 confident and wrong twice (gap 0.5)
    p = np.array([[0.9, 0.1, 0, 0, 0, 0, 0]] * 2 + [[0.5, 0.0, 0.5, 0, 0, 0, 0]] * 2)
    y = np.array([0, 0, 1, 1])
    assert ece(p, y) == pytest.approx(0.5 * 0.1 + 0.5 * 0.5)
    curve = reliability(p, y)
    assert curve["count"] == [2, 2]
    assert curve["accuracy"] == [0.0, 1.0]


def sample(t_true: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose labels are drawn from temper(p, t_true): calibrated at T = t_true."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 4, (n, 7))
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    truth = temper(p, t_true)
    labels = np.array([rng.choice(7, p=row / row.sum()) for row in truth.astype(np.float64)])
    return p, labels


def test_the_fitted_temperature_is_the_one_that_made_the_labels() -> None:
    p, y = sample(3.0, 6000, 0)
    t = fit_temperature([(p, y)])
    assert t == pytest.approx(3.0, rel=0.1)
    assert ece(temper(p, t), y) < 0.03 < ece(p, y)


def test_each_corpus_weighs_the_same_whatever_its_size() -> None:
    big, small = sample(1.0, 8000, 1), sample(6.0, 800, 2)
    pooled = fit_temperature([big, small])
    assert 1.8 < pooled < 3.5  # between the two, not dragged to the big corpus's 1.0


def collected(labels: dict[str, np.ndarray], seed: int = 0) -> Collected:
    rng = np.random.default_rng(seed)
    corpora = {n: Corpus(n, y, lambda index: []) for n, y in labels.items()}
    probs = {n: rng.dirichlet(np.ones(7), len(y)).astype(np.float32) for n, y in labels.items()}
    return Collected(corpora, probs)


def test_pseudo_pairs_join_rows_of_the_same_label_from_each_modality() -> None:
    data = collected({"nemo": np.array([0, 1, 2, 5, 1]),
                      "dailydialog-test": np.array([1, 1, 0]),
                      "xed-en-test": np.array([2, 0]),
                      "fer-val": np.array([0, 1, 2, 2])})
    side = ("nemo", "dailydialog-test", "xed-en-test", "fer-val")
    picks, labels = pseudo_pairs(data, side, ("audio", "text", "video"))
    assert sorted(labels.tolist()) == [0, 1, 1, 2]  # label 5 has no text or face: dropped
    for k, y in enumerate(labels):
        for m in ("audio", "text", "video"):
            name, i = picks[m][k]
            assert CORPORA[name].modality == m
            assert data.labels[name][i] == y
    assert sorted(i for _, i in picks["audio"]) == [0, 1, 2, 4]  # every usable anchor once


def test_single_modality_leaves_each_corpus_out_of_its_own_fit() -> None:
    rng = np.random.default_rng(0)
    labels = {n: rng.integers(0, 7, 300) for n in CORPORA}
    report = single_modality(collected(labels))
    rows = {r["corpus"]: r for r in report["held_out"]}
    assert rows["nemo"]["fit_on"] == ["ravdess-test"]
    assert rows["meld-test"]["fit_on"] == ["dailydialog-test", "dair-emotion-test",
                                           "crowdflower-test", "xed-en-test"]
    assert rows["fer-test"]["fit_on"] == ["fer-val"]
    assert "fer-val" not in rows
    for r in rows.values():
        assert r["after"]["accuracy"] == r["before"]["accuracy"]  # T never changes an answer
    assert set(report["temperatures"]) == {"audio", "video", "text"}


def test_stamping_a_folder_updates_files_and_manifest(built_models: tuple[Path, dict],
                                                      tmp_path: Path) -> None:
    out = tmp_path / "onnx"
    out.mkdir()
    shutil.copyfile(built_models[0] / "int8.onnx", out / "int8.onnx")
    manifest = json.loads((built_models[0] / "manifest.json").read_text())
    manifest["variants"] = {"int8": manifest["variants"]["int8"]}
    (out / "manifest.json").write_text(json.dumps(manifest))
    calibration = Calibration({"audio": 7.0, "text": 4.0, "video": 1.1}, "product")
    written = stamp_folder(out, calibration)
    assert written == json.loads((out / "manifest.json").read_text())
    assert written["calibration"]["temperatures"] == {"audio": 7.0, "text": 4.0, "video": 1.1}
    entry = written["variants"]["int8"]
    assert entry["bytes"] == (out / "int8.onnx").stat().st_size
    from libra.training.build import file_sha256

    assert entry["sha256"] == file_sha256(out / "int8.onnx")
    assert Recognizer(out / "int8.onnx").calibration == calibration
