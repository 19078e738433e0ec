"""The wire format between router, VM workers and serverless functions: compact model inputs.

The router decodes media once (`libra.runtime.inputs`) and ships arrays, not media, so a worker or a
Lambda function never decodes video and every payload stays far under Lambda's 6 MB synchronous
limit: a 8 s clip's log-mel is 64 x (valid frames + 16) float16 (about 100 KB), 8 face crops are
8 x 48 x 48 uint8 (18 KB), a sentence is at most 64 int32 ids. Arrays travel as base64 of their
little-endian bytes with dtype and shape, in JSON.

Log-mels go as float16, the precision training read them in (the feature cache stores float16);
faces as uint8, which is exact (they are 8-bit pixels / 255).
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from libra.runtime.model_input import AudioInput, VideoInput
from libra.runtime.recognizer import AUDIO_CONTEXT_FRAMES, ModelInput

FORMAT = "libra.runtime.inputs/1"
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
"""AWS Lambda's synchronous invocation limit, request and response each."""


class PayloadError(ValueError):
    """A payload that does not decode into model inputs; the message says which field."""


def pack_array(array: np.ndarray) -> dict[str, Any]:
    a = np.ascontiguousarray(array)
    return {"dtype": a.dtype.newbyteorder("<").str, "shape": list(a.shape),
            "b64": base64.b64encode(a.astype(a.dtype.newbyteorder("<")).tobytes()).decode()}


def unpack_array(field: str, blob: Any, dtype: str, ndim: int) -> np.ndarray:
    """The array in `blob`, checked to be of `dtype` with `ndim` dimensions."""
    try:
        shape = tuple(int(n) for n in blob["shape"])
        if np.dtype(blob["dtype"]) != np.dtype(dtype).newbyteorder("<"):
            raise PayloadError(f"{field}: dtype {blob['dtype']!r}, expected {dtype}")
        raw = base64.b64decode(blob["b64"], validate=True)
    except PayloadError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise PayloadError(f"{field}: not a packed array ({exc})") from None
    if len(shape) != ndim or any(n < 0 for n in shape):
        raise PayloadError(f"{field}: shape {list(shape)}, expected {ndim} dimensions")
    if len(raw) != int(np.prod(shape)) * np.dtype(dtype).itemsize:
        raise PayloadError(f"{field}: {len(raw)} bytes do not fill shape {list(shape)}")
    return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape).astype(
        dtype)


def encode_input(row: ModelInput) -> dict[str, Any]:
    """One request's inputs as JSON-ready data (only the modalities it has)."""
    out: dict[str, Any] = {"format": FORMAT}
    if row.audio is not None:
        keep = min(row.audio.valid_frames + AUDIO_CONTEXT_FRAMES, row.audio.log_mel.shape[1])
        out["audio"] = {"log_mel": pack_array(row.audio.log_mel[:, :keep].astype(np.float16)),
                        "valid_frames": row.audio.valid_frames,
                        "n_frames": row.audio.log_mel.shape[1],
                        "duration_s": row.audio.duration_s, "clipped": row.audio.clipped}
    if row.video is not None:
        pixels = np.clip(np.rint(row.video.faces * 255.0), 0, 255).astype(np.uint8)
        out["video"] = {"faces": pack_array(pixels), "face_found": row.video.face_found,
                        "duration_s": row.video.duration_s,
                        "n_decoded_frames": row.video.n_decoded_frames}
    if row.text is not None:
        n = int(row.text[1].sum())
        out["text"] = {"input_ids": pack_array(row.text[0][:n].astype(np.int32))}
    return out


def decode_input(data: Any, max_tokens: int = 64) -> ModelInput:
    """`encode_input`'s output back to a `ModelInput`; `PayloadError` names a bad field."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise PayloadError(f"inputs must be an object with format {FORMAT!r}")
    audio = video = text = None
    try:
        if data.get("audio") is not None:
            a = data["audio"]
            mel = unpack_array("audio.log_mel", a["log_mel"], "float16", 2)
            n_frames, valid = int(a["n_frames"]), int(a["valid_frames"])
            if mel.shape[0] != 64 or not 0 < valid <= mel.shape[1] <= n_frames:
                raise PayloadError(f"audio: log_mel {list(mel.shape)} with {valid} valid of "
                                   f"{n_frames} frames is inconsistent")
            full = np.zeros((64, n_frames), np.float32)
            full[:, :mel.shape[1]] = mel
            audio = AudioInput(full, valid, float(a["duration_s"]), bool(a["clipped"]))
        if data.get("video") is not None:
            v = data["video"]
            pixels = unpack_array("video.faces", v["faces"], "uint8", 3)
            if pixels.shape[0] < 1 or pixels.shape[1:] != (48, 48):
                raise PayloadError(f"video.faces: shape {list(pixels.shape)}, expected "
                                   f"(frames >= 1, 48, 48)")
            video = VideoInput(pixels.astype(np.float32) / np.float32(255.0),
                               bool(v["face_found"]), float(v["duration_s"]),
                               int(v["n_decoded_frames"]))
        if data.get("text") is not None:
            ids = unpack_array("text.input_ids", data["text"]["input_ids"], "int32", 1)
            if not 0 < ids.size <= max_tokens or ids.min() < 0:
                raise PayloadError(f"text.input_ids: {ids.size} ids, expected 1 to {max_tokens} "
                                   f"non-negative ids")
            padded = np.zeros(max_tokens, np.int64)
            padded[:ids.size] = ids
            mask = np.zeros(max_tokens, np.int64)
            mask[:ids.size] = 1
            text = (padded, mask)
    except PayloadError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise PayloadError(f"inputs: missing or malformed field ({exc})") from None
    row = ModelInput(audio=audio, video=video, text=text)
    if not row.modalities:
        raise PayloadError("inputs carry no modality")
    return row
