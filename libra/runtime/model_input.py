"""What one clip looks like once it is ready for the model: the decoded arrays, nothing else.

Kept apart from the decoders (`libra.runtime.inputs.audio` / `.video`, which pull in PyAV,
OpenCV, SciPy and soundfile) because the processes that only run the model, the VM worker and
the Lambda handler, receive these arrays already made by the router: importing a decoder there
would cost the Lambda's INIT most of a second and every image tens of megabytes for nothing.
numpy only. The decoders re-export both classes, so `libra.runtime.inputs.audio.AudioInput` is
this same class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class AudioInput:
    """One clip ready for the model.

    `log_mel` is (n_mels, n_frames) float32, of which the first `valid_frames` columns are real
    audio and the rest padding; `duration_s` is the length of the decoded input before clipping, and
    `clipped` says whether it was longer than the spec's `max_duration_s` (so features cover less).
    `voiced_s` is how much of what the features cover has voice activity
    (`libra.runtime.inputs.vad`), and `voice_found` whether that is enough to be speech; None and
    True where nobody measured (arrays that arrived in a payload were measured by the router).
    """

    log_mel: np.ndarray
    valid_frames: int
    duration_s: float
    clipped: bool = False
    voiced_s: float | None = None
    voice_found: bool = True


@dataclass(frozen=True, eq=False)
class VideoInput:
    """One clip ready for the model.

    `faces` is (n_frames, face_size_px, face_size_px) float32 in [0, 1]; `face_found` is False when
    no frame had a detectable face and `faces` holds centre crops instead; `duration_s` is the
    decoded clip's length and `n_decoded_frames` how many frames it has (before sampling).
    """

    faces: np.ndarray
    face_found: bool
    duration_s: float
    n_decoded_frames: int
