"""The router-to-backend wire format: round trips, stays small, refuses malformed fields."""

from __future__ import annotations

import json

import numpy as np
import pytest

from libra.runtime.inputs.audio import AudioInput
from libra.runtime.inputs.video import VideoInput
from libra.runtime.payload import (
    MAX_PAYLOAD_BYTES,
    PayloadError,
    decode_input,
    encode_input,
    pack_array,
)
from libra.runtime.recognizer import ModelInput, assemble

pytestmark = pytest.mark.unit


def full_row(valid: int = 798, frames: int = 8) -> ModelInput:
    rng = np.random.default_rng(0)
    mel = np.zeros((64, 798), np.float32)
    mel[:, :valid] = rng.normal(-4, 3, (64, valid))
    faces = rng.integers(0, 256, (frames, 48, 48)).astype(np.float32) / np.float32(255)
    ids = np.zeros(64, np.int64)
    ids[:12] = rng.integers(100, 30000, 12)
    return ModelInput(audio=AudioInput(mel, valid, valid / 100, valid == 798),
                      video=VideoInput(faces, False, 3.0, 90),
                      text=(ids, (ids > 0).astype(np.int64)))


def test_a_round_trip_gives_the_model_the_same_feeds() -> None:
    row = full_row(valid=350)
    back = decode_input(json.loads(json.dumps(encode_input(row))))
    want, got = assemble([row]), assemble([back])
    assert want.keys() == got.keys()
    for key in want:
        assert want[key].shape == got[key].shape
    np.testing.assert_array_equal(got["faces"], want["faces"])  # uint8 pixels: exact
    np.testing.assert_array_equal(got["input_ids"], want["input_ids"])
    np.testing.assert_allclose(got["audio_mel"], want["audio_mel"], rtol=1e-3, atol=1e-3)
    assert back.video is not None
    assert back.video.face_found is False
    assert back.audio is not None
    assert back.audio.valid_frames == 350


def test_the_largest_request_stays_far_under_the_lambda_limit() -> None:
    size = len(json.dumps({"inputs": encode_input(full_row())}))
    assert size < MAX_PAYLOAD_BYTES / 20


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.pop("format"), "format"),
    (lambda d: d["audio"]["log_mel"].update(dtype="<f4"), "audio.log_mel: dtype"),
    (lambda d: d["audio"]["log_mel"].update(b64="!!!"), "audio.log_mel: not a packed array"),
    (lambda d: d["audio"]["log_mel"].update(shape=[64, 5000]), "do not fill shape"),
    (lambda d: d["audio"].update(valid_frames=0), "inconsistent"),
    (lambda d: d["video"].update(faces=pack_array(np.zeros((2, 32, 32), np.uint8))),
     "expected \\(frames >= 1, 48, 48\\)"),
    (lambda d: d["text"].update(input_ids=pack_array(np.zeros(65, np.int32))), "1 to 64"),
    (lambda d: d["video"].pop("face_found"), "missing or malformed field"),
    (lambda d: [d.pop(k) for k in ("audio", "video", "text")], "no modality"),
])
def test_malformed_payloads_name_the_field(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    data = encode_input(full_row())
    mutate(data)
    with pytest.raises(PayloadError, match=message):
        decode_input(data)
