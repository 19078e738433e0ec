"""Modalities without signal leave the model input, each with a warning; nothing left is a
refusal naming why."""

from __future__ import annotations

import numpy as np
import pytest

from libra.runtime.model_input import AudioInput, VideoInput
from libra.runtime.recognizer import ModelInput
from libra.runtime.signals import drop_missing_signals, refusal_code

pytestmark = pytest.mark.unit

TEXT = (np.array([101, 7592, 102] + [0] * 61), np.array([1, 1, 1] + [0] * 61))


def audio(voice: bool) -> AudioInput:
    return AudioInput(np.zeros((64, 798), np.float32), 100, 1.0, voiced_s=0.8 if voice else 0.0,
                      voice_found=voice)


def video(face: bool) -> VideoInput:
    return VideoInput(np.zeros((8, 48, 48), np.float32), face, 2.0, 50)


def test_a_row_with_signal_everywhere_is_kept_whole() -> None:
    row = ModelInput(audio=audio(True), video=video(True), text=TEXT)
    kept, warnings = drop_missing_signals(row)
    assert kept.modalities == ("audio", "video", "text")
    assert warnings == []


def test_silent_audio_and_a_faceless_video_are_dropped_with_a_warning_each() -> None:
    kept, warnings = drop_missing_signals(ModelInput(audio=audio(False), video=video(False),
                                                     text=TEXT))
    assert kept.modalities == ("text",)
    assert [(w.modality, w.code) for w in warnings] == [("audio", "no_voice"),
                                                         ("video", "no_face")]
    assert "0.00 s voiced" in warnings[0].message
    assert "8 sampled frames" in warnings[1].message


def test_audio_never_measured_counts_as_voiced() -> None:
    """Arrays from a payload were measured by the router, which already dropped silent audio."""
    row = ModelInput(audio=AudioInput(np.zeros((64, 798), np.float32), 100, 1.0))
    assert drop_missing_signals(row)[0].modalities == ("audio",)


@pytest.mark.parametrize(("row", "code"), [
    (ModelInput(audio=audio(False)), "audio_no_voice"),
    (ModelInput(video=video(False)), "video_no_face"),
    (ModelInput(audio=audio(False), video=video(False)), "no_signal"),
])
def test_nothing_left_is_refused_naming_the_reason(row: ModelInput, code: str) -> None:
    kept, warnings = drop_missing_signals(row)
    assert kept.modalities == ()
    assert refusal_code(warnings) == code


def test_a_refusal_needs_a_reason() -> None:
    with pytest.raises(ValueError, match="at least one warning"):
        refusal_code([])
