"""Honest confidence: temperatures change how sure an answer is, never the answer; the product of
tempered experts lets a trusted modality outvote an over-confident one; the calibration travels
inside the ONNX file and every `Recognizer.predict` applies it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from libra.runtime.calibration import (
    IDENTITY,
    METADATA_KEY,
    Calibration,
    product_of_experts,
    subset_key,
    temper,
)
from libra.runtime.model_input import AudioInput, VideoInput
from libra.runtime.recognizer import ModelInput, Recognizer, read_calibration

pytestmark = pytest.mark.unit

probability_rows = arrays(np.float64, (5, 7), elements=st.floats(1e-6, 1.0)).map(
    lambda a: a / a.sum(axis=1, keepdims=True))


@given(probability_rows, st.floats(0.05, 100.0))
def test_a_temperature_keeps_the_answer_and_sums_to_one(probs: np.ndarray, t: float) -> None:
    out = temper(probs, t)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
    top = probs.max(axis=1, keepdims=True)
    clear = (probs >= top - 1e-9).sum(axis=1) == 1  # no tie for first place
    np.testing.assert_array_equal(out.argmax(axis=1)[clear], probs.argmax(axis=1)[clear])


def test_a_high_temperature_flattens_and_one_changes_nothing() -> None:
    p = np.array([[0.97, 0.01, 0.005, 0.005, 0.005, 0.0025, 0.0025]])
    np.testing.assert_allclose(temper(p, 1.0), p, rtol=1e-5)
    assert temper(p, 8.0).max() < 0.5 < temper(p, 2.0).max() < p.max()
    assert temper(p, 0.5).max() > p.max()
    np.testing.assert_allclose(temper(p, 1e4), np.full((1, 7), 1 / 7), atol=1e-3)


@pytest.mark.parametrize("t", [0.0, -1.0, float("inf"), float("nan")])
def test_a_temperature_must_be_positive_and_finite(t: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        temper(np.full((1, 7), 1 / 7), t)


def test_an_exact_zero_probability_stays_finite() -> None:
    out = temper(np.array([[1.0, 0, 0, 0, 0, 0, 0]]), 4.0)
    assert np.isfinite(out).all()
    assert out[0, 0] > 0.99


def test_a_tempered_overconfident_expert_is_outvoted_by_two_trusted_ones() -> None:
    """The espeak-ng case in numbers: speech says sadness at 0.999, text and face say joy."""
    sad = np.array([[0.0002, 0.0002, 0.0002, 0.0002, 0.999, 0.0001, 0.0001]])
    joy = np.array([[0.1, 0.7, 0.05, 0.05, 0.05, 0.025, 0.025]])
    raw = product_of_experts([sad, joy, joy])
    calibrated = product_of_experts([temper(sad, 8.0), temper(joy, 1.0), temper(joy, 1.0)])
    assert raw.argmax() == 4  # untempered, the over-confident branch wins
    assert calibrated.argmax() == 1


def test_subsets_are_named_in_sorted_order() -> None:
    assert subset_key(("video", "audio", "text")) == "audio+text+video"
    assert subset_key(["text"]) == "text"
    with pytest.raises(ValueError, match="at least one"):
        subset_key(())


def test_a_calibration_round_trips_through_json_and_checks_itself() -> None:
    c = Calibration({"audio": 8.2, "text": 4.6}, "product", source="test")
    assert Calibration.from_json(c.to_json()) == c
    assert c.temperature(("text",)) == 4.6
    assert c.temperature(("audio", "text")) == 1.0  # not fitted: unchanged
    with pytest.raises(ValueError, match="fusion"):
        Calibration({}, "vote")
    with pytest.raises(ValueError, match="positive"):
        Calibration({"audio": 0.0})
    with pytest.raises(ValueError, match="not a calibration"):
        Calibration.from_json('{"fusion": "model"}')


def test_a_file_without_calibration_serves_its_raw_answers() -> None:
    assert read_calibration({}, "x.onnx") is IDENTITY
    with pytest.raises(ValueError, match=r"x\.onnx: its 'calibration' metadata is broken"):
        read_calibration({METADATA_KEY: "{"}, "x.onnx")


# ------------------------------------------------------------------- on the real exported model


def rows() -> list[ModelInput]:
    rng = np.random.default_rng(5)
    mel = np.zeros((64, 798), np.float32)
    mel[:, :300] = rng.normal(-4, 3, (64, 300))
    audio = AudioInput(mel, 300, 3.0)
    video = VideoInput(rng.random((8, 48, 48), dtype=np.float32), True, 2.0, 50)
    ids = np.zeros(64, np.int64)
    ids[:9] = [101, 1045, 2572, 2061, 3407, 2651, 999, 999, 102]
    text = (ids, (ids > 0).astype(np.int64))
    return [ModelInput(text=text), ModelInput(audio=audio), ModelInput(video=video),
            ModelInput(audio=audio, text=text), ModelInput(audio=audio, video=video, text=text)]


@pytest.fixture(scope="module")
def fp32(built_models: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the built FP32 file with no calibration (the tests stamp their own)."""
    from libra.training.build import stamp

    path = tmp_path_factory.mktemp("calibrated") / "fp32.onnx"
    shutil.copyfile(built_models[0] / "fp32.onnx", path)
    stamp(path, {METADATA_KEY: ""})
    return path


def stamped(path: Path, calibration: Calibration, tmp: Path) -> Recognizer:
    from libra.training.build import stamp

    out = tmp / "stamped.onnx"
    shutil.copyfile(path, out)
    stamp(out, {METADATA_KEY: calibration.to_json()})
    return Recognizer(out)


def test_predict_tempers_each_row_with_its_own_subset(fp32: Path, tmp_path: Path) -> None:
    raw = Recognizer(fp32)
    assert raw.calibration is IDENTITY
    batch = rows()
    want_raw = raw.predict_raw(batch)
    np.testing.assert_allclose(raw.predict(batch), want_raw, atol=1e-6)
    temps = {"text": 4.0, "audio": 8.0, "video": 1.5, "audio+text": 2.0,
             "audio+text+video": 3.0}
    calibrated = stamped(fp32, Calibration(temps, "model"), tmp_path)
    got = calibrated.predict(batch)
    for i, row in enumerate(batch):
        want = temper(want_raw[i:i + 1], temps[subset_key(row.modalities)])[0]
        np.testing.assert_allclose(got[i], want, atol=1e-5)
    np.testing.assert_array_equal(got.argmax(axis=1), want_raw.argmax(axis=1))
    np.testing.assert_allclose(calibrated.predict_raw(batch), want_raw, atol=1e-6)


def test_product_fusion_multiplies_each_modality_run_alone(fp32: Path, tmp_path: Path) -> None:
    raw = Recognizer(fp32)
    temps = {"text": 4.0, "audio": 8.0, "video": 1.5, "audio+text+video": 0.7}
    calibrated = stamped(fp32, Calibration(temps, "product"), tmp_path)
    batch = rows()
    got = calibrated.predict(batch)
    for i, row in enumerate(batch):
        experts = [temper(raw.predict_raw([row.only(m)]), temps[m]) for m in row.modalities]
        want = product_of_experts(experts)
        if len(row.modalities) > 1:
            want = temper(want, temps.get(subset_key(row.modalities), 1.0))
        np.testing.assert_allclose(got[i], want[0], atol=1e-5)
        np.testing.assert_allclose(calibrated.predict([row])[0], got[i], atol=1e-5)


def test_build_stamps_the_bundles_calibration_and_refuses_a_stale_one(
        tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="building needs the `train` extra")
    from libra.training.build import (
        BUNDLE_DIR,
        CALIBRATION_FILE,
        build,
        model_version,
        save_calibration,
    )

    bundle = tmp_path / "bundle"
    shutil.copytree(BUNDLE_DIR, bundle)
    calibration = Calibration({"text": 3.0, "audio": 9.0}, "product", source="a test")
    version = model_version(bundle / "model.pt", "drkf")
    save_calibration(calibration, version, bundle)
    manifest = build(tmp_path / "out", bundle_dir=bundle, variants=("int8",), log=lambda _: None)
    assert manifest["calibration"] == json.loads(calibration.to_json())
    assert Recognizer(tmp_path / "out" / "int8.onnx").calibration == calibration
    save_calibration(calibration, "drkf-000000000000", bundle)
    with pytest.raises(ValueError, match="fitted on drkf-000000000000, not on these weights"):
        build(tmp_path / "stale", bundle_dir=bundle, variants=("int8",), log=lambda _: None)
    (bundle / CALIBRATION_FILE).unlink()
    manifest = build(tmp_path / "plain", bundle_dir=bundle, variants=("int8",),
                     log=lambda _: None)
    assert "calibration" not in manifest
    assert Recognizer(tmp_path / "plain" / "int8.onnx").calibration is IDENTITY
