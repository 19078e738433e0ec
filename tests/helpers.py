"""Helpers more than one test module needs: a scripted policy and a loopback file server."""

from __future__ import annotations

import http.server
import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import ClassVar

import av
import numpy as np
import pytest

from libra.core.policies.base import Decision, Observation


@dataclass
class Scripted:
    """A policy that plays a timeline: from each `t_s` on, it returns that decision."""

    name: ClassVar[str] = "scripted"
    timeline: tuple[tuple[float, Decision], ...] = ()

    def decide(self, obs: Observation) -> Decision:
        current = self.timeline[0][1]
        for t_s, decision in self.timeline:
            if obs.now_s + 1e-9 >= t_s:
                current = decision
        return current


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve_folder(root: Path) -> Iterator[str]:
    """Serve `root` over http on a free loopback port; yields the base URL (no trailing /)."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------- media made in tests


def _has_encoder(codec: str) -> bool:
    try:
        av.codec.Codec(codec, "w")
    except (av.error.FFmpegError, ValueError):  # UnknownCodecError is a ValueError
        return False
    return True


def encode_video(
    frames: np.ndarray,
    codec: str = "libx264",
    fmt: str = "mp4",
    fps: int = 10,
    *,
    pts: list[int] | None = None,
    rotation: int | None = None,
    path: Path | None = None,
    options: dict[str, str] | None = None,
) -> bytes:
    """Encode (n, H, W) grayscale or (n, H, W, 3) RGB uint8 frames into a real video file.

    `pts` gives each frame's time in units of 1/fps (variable frame rate); `path` writes to disk
    (the MP4 muxer needs a seekable file to move its index to the front with "faststart").
    """
    if not _has_encoder(codec):
        pytest.skip(f"this PyAV wheel has no {codec} encoder")
    n, height, width = frames.shape[:3]
    target: io.BytesIO | str = str(path) if path is not None else io.BytesIO()
    with av.open(target, "w", format=fmt, options=options or {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(n):
            rgb = frames[i] if frames.ndim == 4 else np.repeat(frames[i][..., None], 3, axis=2)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = pts[i] if pts is not None else i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    if path is not None:
        return path.read_bytes()
    assert isinstance(target, io.BytesIO)
    return target.getvalue()


def encode_wav(seconds: float = 1.5, rate_hz: int = 16000) -> bytes:
    """A real WAV file: a 220 Hz tone with a 3 Hz tremolo."""
    import soundfile as sf

    t = np.arange(int(seconds * rate_hz)) / rate_hz
    wave_ = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    buf = io.BytesIO()
    sf.write(buf, wave_.astype(np.float32), rate_hz, format="WAV")
    return buf.getvalue()


def wav_bytes(samples: np.ndarray, rate_hz: int = 16000) -> bytes:
    """Mono float samples in [-1, 1] as a 16-bit WAV file."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.asarray(samples, dtype=np.float32), rate_hz, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def espeak_wav(text: str, voice: str = "en-us") -> bytes:
    """`text` spoken by espeak-ng (a real speech synthesizer: formants, pitch, pauses) in `voice`
    as WAV bytes; skips the test where the binary is not installed (Debian: apt-get install
    espeak-ng)."""
    import shutil
    import subprocess

    binary = shutil.which("espeak-ng")
    if binary is None:
        pytest.skip("needs the espeak-ng binary (apt-get install espeak-ng)")
    done = subprocess.run([binary, "-v", voice, "--stdout", text], capture_output=True,
                          timeout=60, check=True)
    return done.stdout
