"""Hostile media cost little: decode bombs are refused from their headers before decoding, the
same limits hold while decoding where a header tells nothing, decoding has a wall-time budget, and
long clips are sampled by seeking to keyframes instead of decoding every frame.

The bombs are built here, on the fly, by `bench/hostile_media.py` (the benchmarks use the same).
"""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np
import pytest
import soundfile as sf

from bench.hostile_media import flac_bomb, frame_bomb, truncated
from libra.runtime.errors import MediaDecodeError
from libra.runtime.inputs import audio as audio_module
from libra.runtime.inputs import video as video_module
from libra.runtime.inputs.audio import DEFAULT_SPEC as AUDIO_SPEC
from libra.runtime.inputs.audio import AudioSpec, decode_audio
from libra.runtime.inputs.video import DEFAULT_SPEC as VIDEO_SPEC
from libra.runtime.inputs.video import VideoSpec, decode_frames, video_features

pytestmark = pytest.mark.unit

BRIGHTNESS_STEP = 10


class TickingClock:
    """Each reading is `step_s` later than the last: time passes only when the code looks."""

    def __init__(self, step_s: float) -> None:
        self.now_s = 0.0
        self.step_s = step_s

    def __call__(self) -> float:
        self.now_s += self.step_s
        return self.now_s


def audio_error(data: bytes, spec: AudioSpec = AUDIO_SPEC, **kwargs: object) -> MediaDecodeError:
    with pytest.raises(MediaDecodeError) as info:
        decode_audio(data, spec, **kwargs)  # type: ignore[arg-type]
    assert info.value.modality == "audio"
    return info.value


def video_error(data: bytes, spec: VideoSpec = VIDEO_SPEC, **kwargs: object) -> MediaDecodeError:
    with pytest.raises(MediaDecodeError) as info:
        decode_frames(data, spec, **kwargs)  # type: ignore[arg-type]
    assert info.value.modality == "video"
    return info.value


def wav(seconds: float, rate_hz: int = 16000, channels: int = 1) -> bytes:
    buf = io.BytesIO()
    t = np.arange(round(seconds * rate_hz)) / rate_hz
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    sf.write(buf, np.repeat(tone[:, None], channels, axis=1), rate_hz, format="WAV")
    return buf.getvalue()


def encode_gop(n: int, codec: str, fmt: str, gop: int, fps: int = 10) -> bytes:
    """n frames of 96x64, each a brightness of its own, a keyframe every `gop` frames."""
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.codec_context.gop_size = gop
        if codec == "mpeg4":
            stream.codec_context.max_b_frames = 2  # B-frames: decode order is not display order
        for i in range(n):
            gray = np.full((64, 96), (BRIGHTNESS_STEP * i) % 250, dtype=np.uint8)
            gray[20:40, (3 * i) % 76:(3 * i) % 76 + 20] = 255  # and something that moves
            frame = av.VideoFrame.from_ndarray(np.repeat(gray[..., None], 3, axis=2), "rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def every_frame(data: bytes) -> list[np.ndarray]:
    """Each frame of the clip in display order, decoded from the first to the last."""
    with av.open(io.BytesIO(data)) as container:
        return [f.to_ndarray(format="gray") for f in container.decode(video=0)]


# ------------------------------------------------------------------------------------ audio bombs


def test_a_many_channel_high_rate_flac_is_refused_from_its_header() -> None:
    bomb = flac_bomb(seconds=16, channels=8, rate_hz=384_000)  # 49 M samples, 60 KB
    assert len(bomb) < 100_000

    error = audio_error(bomb, clock=TickingClock(0.0))

    assert error.code == "too_many_samples"
    assert "8 channels x 384000 Hz x 16.0 s" in error.why  # judged from the header
    assert "max_decoded_samples" in error.why


def test_the_issue_bomb_costs_no_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """59 s of 8-channel 384 kHz silence (197 KB): refused before a sample is read."""
    reads: list[int] = []
    real_read = sf.SoundFile.read

    def counting_read(self: sf.SoundFile, *args: object, **kwargs: object) -> np.ndarray:
        reads.append(1)
        return real_read(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sf.SoundFile, "read", counting_read)
    assert audio_error(flac_bomb()).code == "too_many_samples"
    assert reads == []


def test_without_the_header_check_the_limit_holds_while_decoding(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A header that says nothing (or lies) meets the same limit, counted block by block."""
    monkeypatch.setattr(audio_module, "_check_header_cost", lambda *args: None)
    spec = AudioSpec(max_decoded_samples=8 * 384_000)  # one second of the bomb
    error = audio_error(flac_bomb(seconds=3, channels=8, rate_hz=384_000), spec)
    assert error.code == "too_many_samples"
    assert "at least" in error.why


def test_the_ffmpeg_path_counts_samples_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audio_module, "_check_header_cost", lambda *args: None)
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as out:  # PCM in Matroska: PyAV decodes it
        stream = out.add_stream("pcm_s16le", rate=48000, layout="5.1")
        silence = np.zeros((1, 48000 * 6), dtype=np.int16)
        frame = av.AudioFrame.from_ndarray(silence, format="s16", layout="5.1")
        frame.sample_rate = 48000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    data = buf.getvalue()
    assert decode_audio(data).size == 16000  # one second, fine under the default
    error = audio_error(data, AudioSpec(max_decoded_samples=48000 * 6 // 2))
    assert error.code == "too_many_samples"


def test_audio_at_the_limit_is_decoded() -> None:
    spec = AudioSpec(max_decoded_samples=2 * 44100 * 3)
    assert decode_audio(wav(3.0, 44100, channels=2), spec).size == 48000


def test_decoding_audio_slower_than_its_budget_is_refused() -> None:
    data = wav(12.0)  # three blocks of 64 Ki frames: the clock is read at each
    spec = AudioSpec(max_decode_s=5.0)

    error = audio_error(data, spec, clock=TickingClock(2.0))

    assert error.code == "decode_too_slow"
    assert "5 s" in error.why
    assert decode_audio(data, spec, clock=TickingClock(0.5)).size == 12 * 16000


def test_a_cut_flac_bomb_is_still_refused_by_its_header() -> None:
    assert audio_error(truncated(flac_bomb(seconds=16, channels=8, rate_hz=384_000))
                       ).code == "too_many_samples"


def test_a_text_file_is_not_audio() -> None:
    assert audio_error(b'{"text": "hello"}' * 100).code == "unsupported_format"


# ------------------------------------------------------------------------------------ video bombs


def test_a_many_frame_1080p_video_is_refused_from_its_index() -> None:
    bomb = frame_bomb(n_frames=2000, width=1920, height=1080, fps=240)
    assert len(bomb) < 200_000

    error = video_error(bomb, clock=TickingClock(0.0))

    assert error.code == "too_many_pixels"
    assert "of 1920x1080" in error.why
    assert "max_decoded_pixels" in error.why


def test_a_many_frame_small_video_is_refused_by_its_frame_count() -> None:
    bomb = frame_bomb(n_frames=14_000, width=64, height=64, fps=240)  # 58 s

    error = video_error(bomb)

    assert error.code == "too_many_frames"
    assert "max_decoded_frames" in error.why


def test_the_issue_bomb_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """14,000 black 1080p frames, a keyframe every 250 (x264's default): no frame is decoded."""
    def no_decoding(*args: object) -> None:
        raise AssertionError("decoded a frame")

    monkeypatch.setattr(video_module, "_to_gray", no_decoding)
    monkeypatch.setattr(av.Packet, "decode", no_decoding)
    assert video_error(frame_bomb(keyframe_every=250)).code == "too_many_pixels"


def test_without_the_index_check_the_limits_hold_while_decoding(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(video_module, "_check_decode_cost", lambda *args, **kwargs: None)
    bomb = frame_bomb(n_frames=300, width=640, height=360, fps=240)
    assert video_error(bomb, VideoSpec(max_decoded_frames=100)).code == "too_many_frames"
    assert video_error(bomb, VideoSpec(max_decoded_pixels=100 * 640 * 360)
                       ).code == "too_many_pixels"


def test_decoding_video_slower_than_its_budget_is_refused() -> None:
    data = encode_gop(40, "libx264", "mp4", gop=100)
    spec = VideoSpec(max_decode_s=5.0)

    error = video_error(data, spec, clock=TickingClock(1.0))

    assert error.code == "decode_too_slow"
    assert "5 s" in error.why


def test_a_long_clip_with_keyframes_is_sampled_by_seeking() -> None:
    """3,000 1080p frames with a keyframe every 25: reaching the 8 sampled frames from the
    keyframes before them takes at most 8 x 25 frames, far under a limit the full decode
    (2,800 frames to the last sample) would break."""
    bomb = frame_bomb(n_frames=3000, width=1920, height=1080, fps=240, keyframe_every=25)
    spec = VideoSpec(max_decoded_frames=8 * 25, max_decoded_pixels=8 * 25 * 1920 * 1080)

    frames = decode_frames(bomb, spec)

    assert frames.shape == (8, 1080, 1920)
    assert video_features(bomb, spec).n_decoded_frames == 3000


@pytest.mark.parametrize(("codec", "fmt"), [("libx264", "mp4"), ("mpeg4", "mp4"),
                                            ("libvpx", "webm"), ("libvpx-vp9", "webm"),
                                            ("libx264", "matroska")])
@pytest.mark.parametrize("gop", [1, 3, 7])
def test_seeking_picks_the_same_frames_as_decoding_everything(
        codec: str, fmt: str, gop: int, monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode_gop(25, codec, fmt, gop)

    def no_fallback(*args: object) -> None:
        raise AssertionError("fell back to decoding every frame")

    monkeypatch.setattr(video_module, "_decode_selected", no_fallback)
    frames = decode_frames(data, VideoSpec(n_frames=8))

    everything = every_frame(data)
    centres = [int((k + 0.5) * 25 / 8) for k in range(8)]  # 10 fps: segment centres by count
    np.testing.assert_array_equal(frames, np.stack([everything[i] for i in centres]))


def test_a_cut_bomb_is_refused_or_read_up_to_the_cut() -> None:
    error = video_error(truncated(frame_bomb(n_frames=2000), 0.5))
    assert error.code in {"truncated", "too_many_pixels"}


def test_a_wav_is_not_a_video() -> None:
    assert video_error(wav(1.0)).code == "no_frames"
