"""No answer from a missing signal: modalities whose media hold nothing to read leave the input.

A video in which no sampled frame has a face gives the face encoder centre crops of background,
and audio without voice gives the speech encoder silence or noise; the model answered both with
a confident emotion (issue 17: "sadness 0.61" for a faceless video). Such a modality is dropped
from the model input, which masks it out as absent (the presence mask), and the answer carries a
warning saying so. When nothing is left, there is nothing to answer: the API refuses the request
(422) with `refusal_code`. numpy only (the router runs it; workers never see dropped media).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from libra.runtime.recognizer import ModelInput


@dataclass(frozen=True)
class SignalWarning:
    """One modality left out: `code` ("no_voice", "no_face") and the sentence a person reads."""

    modality: str
    code: str
    message: str

    @property
    def error_code(self) -> str:
        """The code of a refusal for this reason alone: "audio_no_voice", "video_no_face"."""
        return f"{self.modality}_{self.code}"


def drop_missing_signals(row: ModelInput) -> tuple[ModelInput, list[SignalWarning]]:
    """`row` without its empty modalities, and a warning per modality dropped (in
    `MODALITIES` order). The returned row may have no modality left: see `refusal_code`."""
    warnings: list[SignalWarning] = []
    audio, video = row.audio, row.video
    if audio is not None and not audio.voice_found:
        voiced = f" ({audio.voiced_s:.2f} s voiced)" if audio.voiced_s is not None else ""
        warnings.append(SignalWarning(
            "audio", "no_voice", f"no voice activity in the audio{voiced}: it holds silence, hum "
            f"or noise, so the answer does not use it"))
        audio = None
    if video is not None and not video.face_found:
        warnings.append(SignalWarning(
            "video", "no_face", f"no face found in any of the {video.faces.shape[0]} sampled "
            f"frames, so the answer does not use the video"))
        video = None
    return dataclasses.replace(row, audio=audio, video=video), warnings


def refusal_code(warnings: list[SignalWarning]) -> str:
    """The 422 code when no modality is left: the one reason, or "no_signal" for several."""
    if not warnings:
        raise ValueError("a request refused for missing signals has at least one warning")
    return warnings[0].error_code if len(warnings) == 1 else "no_signal"
