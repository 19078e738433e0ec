"""Audio input: real files made here in every format we accept, the features they give, and every
way a file can be bad."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path

import av
import matplotlib.image
import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.signal import resample_poly

from libra.runtime.errors import MediaDecodeError
from libra.runtime.inputs.audio import (
    LOG_FLOOR,
    AudioInput,
    AudioSpec,
    audio_features,
    batch_log_mel,
    decode_audio,
    hz_to_mel,
    log_mel,
    mel_band_edges_hz,
    mel_filterbank,
    mel_to_hz,
)

pytestmark = pytest.mark.unit

SPEC = AudioSpec()
SILENCE = math.log(LOG_FLOOR)


# ------------------------------------------------------------------------------ making real files


def tone(
    freq_hz: float, rate_hz: int, seconds: float, channels: int = 1, amp: float = 0.5
) -> np.ndarray:
    """(samples, channels) float32 sine, the same in every channel."""
    t = np.arange(round(rate_hz * seconds)) / rate_hz
    wave = (amp * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)
    return np.repeat(wave[:, None], channels, axis=1)


def soundfile_bytes(
    samples: np.ndarray, rate_hz: int, fmt: str, subtype: str | None = None
) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate_hz, format=fmt, subtype=subtype)
    return buf.getvalue()


def has_encoder(codec: str) -> bool:
    try:
        av.codec.Codec(codec, "w")
    except (av.error.FFmpegError, ValueError):
        return False
    return True


def av_bytes(samples: np.ndarray, rate_hz: int, container: str, codec: str) -> bytes:
    """Encode (samples, channels) float32 with FFmpeg through PyAV."""
    if not has_encoder(codec):
        pytest.skip(f"the installed av wheel has no {codec!r} encoder")
    layout = {1: "mono", 2: "stereo"}[samples.shape[1]]
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate_hz)
        assert isinstance(stream, av.AudioStream)
        stream.codec_context.layout = layout
        assert stream.codec_context.codec.audio_formats
        sample_format = stream.codec_context.codec.audio_formats[0]
        if sample_format.is_planar:
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples.T), "fltp", layout)
        elif sample_format.name in ("flt", "s16", "u8"):
            packed = samples.reshape(1, -1)
            if sample_format.name == "s16":
                packed = np.round(packed * 32767).astype(np.int16)
            elif sample_format.name == "u8":
                packed = np.round(packed * 127 + 128).astype(np.uint8)
            frame = av.AudioFrame.from_ndarray(packed, sample_format.name, layout)
        else:
            raise AssertionError(
                f"test helper cannot feed {codec} its {sample_format.name} samples"
            )
        frame.sample_rate = rate_hz
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buf.getvalue()


def video_only_bytes(container: str, codec: str) -> bytes:
    if not has_encoder(codec):
        pytest.skip(f"the installed av wheel has no {codec!r} encoder")
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=10)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(5):
            image = np.full((48, 64, 3), i * 40, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def dominant_hz(wave: np.ndarray, rate_hz: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(wave.size)))
    return float(np.fft.rfftfreq(wave.size, 1 / rate_hz)[np.argmax(spectrum)])


def expected_length(seconds: float, rate_hz: int = 16000) -> int:
    return round(seconds * rate_hz)


def decode_error(data: bytes, spec: AudioSpec = SPEC) -> MediaDecodeError:
    with pytest.raises(MediaDecodeError) as info:
        decode_audio(data, spec)
    assert info.value.modality == "audio"
    assert info.value.why  # a sentence a person can act on
    return info.value


# ------------------------------------------------------------------------------ decoding formats


@pytest.mark.parametrize("rate_hz", [8000, 22050, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize(
    ("fmt", "subtype", "length_tol"),
    [("WAV", "PCM_16", 1), ("FLAC", "PCM_16", 1), ("OGG", "VORBIS", 0.02 * 16000)],
)
def test_soundfile_formats_decode_to_16k_mono_with_the_tone_intact(
    fmt: str, subtype: str, length_tol: float, rate_hz: int, channels: int
) -> None:
    data = soundfile_bytes(tone(440, rate_hz, 1.5, channels), rate_hz, fmt, subtype)

    wave = decode_audio(data)

    assert wave.dtype == np.float32
    assert wave.ndim == 1
    assert abs(wave.size - expected_length(1.5)) <= length_tol
    assert abs(dominant_hz(wave) - 440) <= 3
    assert np.abs(wave).max() <= 1.0
    assert 0.4 < np.abs(wave[1000:-1000]).max() < 0.6  # the amplitude survives resampling


@pytest.mark.parametrize(
    ("container", "codec", "rate_hz", "length_tol_s"),
    [
        ("mp3", "libmp3lame", 44100, 0.01),
        ("mp3", "libmp3lame", 22050, 0.01),
        ("ipod", "aac", 44100, 0.06),  # an .m4a; AAC adds encoder priming and padding
        ("mp4", "aac", 48000, 0.06),
        ("adts", "aac", 16000, 0.15),
        ("webm", "libopus", 48000, 0.03),
        ("matroska", "pcm_s16le", 32000, 0.0),  # integer samples through PyAV
        ("matroska", "pcm_u8", 11025, 0.0),
    ],
)
def test_ffmpeg_formats_decode_to_16k_mono_with_the_tone_intact(
    container: str, codec: str, rate_hz: int, length_tol_s: float
) -> None:
    data = av_bytes(tone(1000, rate_hz, 1.5, channels=2), rate_hz, container, codec)

    wave = decode_audio(data)

    assert wave.dtype == np.float32
    assert abs(wave.size - expected_length(1.5)) <= length_tol_s * 16000 + 1
    assert abs(dominant_hz(wave) - 1000) <= 3
    assert 0.4 < np.abs(wave[2000:-2000]).max() < 0.6


def test_mp3_encoder_is_in_the_av_wheel() -> None:
    """The MP3 and AAC tests above skip without their encoders; this says whether they ran."""
    assert has_encoder("libmp3lame") or has_encoder("mp3")
    assert has_encoder("aac")


def test_stereo_is_mixed_down_by_the_mean_of_channels() -> None:
    left = tone(440, 16000, 1.0)[:, 0]
    opposite = np.stack([left, -left], axis=1)
    one_sided = np.stack([left, np.zeros_like(left)], axis=1)

    cancelled = decode_audio(soundfile_bytes(opposite, 16000, "WAV", "FLOAT"))
    halved = decode_audio(soundfile_bytes(one_sided, 16000, "WAV", "FLOAT"))

    np.testing.assert_allclose(cancelled, 0.0, atol=1e-7)
    np.testing.assert_allclose(halved, left / 2, atol=1e-7)


def test_float_samples_outside_the_range_are_clipped_and_nan_zeroed() -> None:
    samples = np.array([0.5, 3.0, -7.0, np.nan, np.inf, -np.inf, 0.25], dtype=np.float32)
    wave = decode_audio(soundfile_bytes(samples, 16000, "WAV", "FLOAT"))
    np.testing.assert_array_equal(wave, [0.5, 1.0, -1.0, 0.0, 1.0, -1.0, 0.25])


def test_resampling_is_scipys_resample_poly_with_its_default_filter() -> None:
    samples = tone(440, 44100, 1.0)[:, 0]
    wave = decode_audio(soundfile_bytes(samples, 44100, "WAV", "FLOAT"))
    np.testing.assert_array_equal(wave, np.clip(resample_poly(samples, 160, 441), -1, 1))


def test_unusual_sample_rate_is_resampled_by_an_approximated_ratio() -> None:
    data = soundfile_bytes(tone(440, 44101, 1.0), 44101, "WAV", "PCM_16")
    wave = decode_audio(data)
    assert abs(wave.size - 16000) <= 2
    assert abs(dominant_hz(wave) - 440) <= 3


def test_a_file_cut_short_keeps_what_decodes() -> None:
    wav = soundfile_bytes(tone(440, 16000, 2.0), 16000, "WAV", "PCM_16")
    flac = soundfile_bytes(tone(440, 16000, 2.0), 16000, "FLAC")

    half_wav = decode_audio(wav[: len(wav) // 2])
    half_flac = decode_audio(flac[: len(flac) // 2])

    assert abs(half_wav.size - 16000) < 100
    assert 0 < half_flac.size < 32000
    assert abs(dominant_hz(half_flac) - 440) <= 3


# ------------------------------------------------------------------------------ bad input


def test_zero_bytes_is_empty() -> None:
    assert decode_error(b"").code == "empty"


def test_a_valid_file_without_samples_is_empty() -> None:
    data = soundfile_bytes(np.zeros((0, 1), dtype=np.float32), 16000, "FLAC")
    assert decode_error(data).code == "empty"


def test_more_bytes_than_allowed_is_too_large() -> None:
    data = soundfile_bytes(tone(440, 16000, 1.0), 16000, "WAV", "PCM_16")
    error = decode_error(data, AudioSpec(max_bytes=10_000))
    assert error.code == "too_large"
    assert "10000 bytes" in error.why


def png_bytes() -> bytes:
    buf = io.BytesIO()
    matplotlib.image.imsave(buf, np.random.default_rng(0).random((8, 8, 3)), format="png")
    return buf.getvalue()


def wav_with_unknown_codec() -> bytes:
    data = bytearray(soundfile_bytes(tone(440, 16000, 0.5), 16000, "WAV", "PCM_16"))
    assert data[12:16] == b"fmt "
    data[20:22] = (0x1234).to_bytes(2, "little")  # a format tag no decoder knows
    return bytes(data)


@pytest.mark.parametrize(
    "make",
    [
        lambda: np.random.default_rng(0).bytes(5000),
        lambda: b"hello, this is a text file, not audio\n" * 50,
        png_bytes,
        wav_with_unknown_codec,
    ],
    ids=["random-bytes", "text", "png", "wav-unknown-codec"],
)
def test_what_is_not_audio_we_read_is_unsupported_format(make: Callable[[], bytes]) -> None:
    assert decode_error(make()).code == "unsupported_format"


def _cut(data: bytes, n_bytes: int) -> bytes:
    return data[:n_bytes]


@pytest.mark.parametrize(
    ("fmt", "subtype", "n_bytes"),
    [
        ("WAV", "PCM_16", 30),  # inside the header
        ("WAV", "PCM_16", 44),  # the header and no data
        ("FLAC", "PCM_16", 40),  # inside STREAMINFO
        ("FLAC", "PCM_16", 100),  # headers, no whole frame
        ("OGG", "VORBIS", 200),  # inside the Vorbis headers
    ],
)
def test_a_file_cut_before_any_audio_is_truncated(fmt: str, subtype: str, n_bytes: int) -> None:
    data = soundfile_bytes(tone(440, 16000, 2.0), 16000, fmt, subtype)
    error = decode_error(_cut(data, n_bytes))
    assert error.code == "truncated"
    assert fmt in error.why


def test_an_m4a_cut_in_half_is_truncated() -> None:
    """PyAV's MP4 muxer writes the index (moov) last, so half a file has no index to read."""
    data = av_bytes(tone(440, 44100, 2.0, 2), 44100, "ipod", "aac")
    assert decode_error(data[: len(data) // 2]).code == "truncated"


@pytest.mark.parametrize(("container", "codec"), [("mp4", "mpeg4"), ("webm", "libvpx")])
def test_a_video_without_a_sound_track_has_no_channels(container: str, codec: str) -> None:
    error = decode_error(video_only_bytes(container, codec))
    assert error.code == "no_channels"
    assert "no audio stream" in error.why


def test_longer_than_the_input_limit_is_too_long() -> None:
    data = soundfile_bytes(tone(440, 8000, 61.0), 8000, "WAV", "PCM_16")
    error = decode_error(data)
    assert error.code == "too_long"
    assert "61.0 s" in error.why


@pytest.mark.parametrize(("container", "codec"), [("mp3", "libmp3lame"), ("webm", "libopus")])
def test_too_long_is_caught_while_ffmpeg_decodes(container: str, codec: str) -> None:
    short_limit = AudioSpec(max_duration_s=1.0, max_input_duration_s=2.0)
    data = av_bytes(tone(440, 48000, 3.0, 2), 48000, container, codec)
    assert decode_error(data, short_limit).code == "too_long"
    assert decode_audio(data).size > 2 * 16000  # the same file is fine under the default limit


_GOOD_FILES = {
    "wav": lambda: soundfile_bytes(tone(440, 22050, 1.0, 2), 22050, "WAV", "PCM_16"),
    "flac": lambda: soundfile_bytes(tone(440, 44100, 1.0), 44100, "FLAC"),
    "ogg": lambda: soundfile_bytes(tone(440, 16000, 1.0), 16000, "OGG", "VORBIS"),
    "mp3": lambda: av_bytes(tone(440, 44100, 1.0, 2), 44100, "mp3", "libmp3lame"),
    "m4a": lambda: av_bytes(tone(440, 44100, 1.0, 2), 44100, "ipod", "aac"),
}


@pytest.mark.parametrize("name", sorted(_GOOD_FILES))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.floats(0.0, 1.0), flip=st.integers(0, 2**31))
def test_damaged_files_give_audio_or_our_error_never_a_decoder_exception(
    name: str, cut: float, flip: int
) -> None:
    data = bytearray(_GOOD_FILES[name]())
    data = data[: round(len(data) * cut)]
    if data and flip % 2:  # also corrupt one byte
        data[flip % len(data)] ^= 0xFF
    try:
        wave = decode_audio(bytes(data))
    except MediaDecodeError as error:
        code = error.code
    else:
        code = "decoded"
        assert wave.dtype == np.float32
        assert wave.size > 0
        assert np.isfinite(wave).all()
        assert np.abs(wave).max() <= 1.0
    # a corrupted header may claim hours of audio: refusing it by its limit is our error too
    assert code in {"decoded", "empty", "truncated", "unsupported_format", "no_channels",
                    "too_long", "too_large", "too_many_samples"}


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=2000))
def test_arbitrary_bytes_give_audio_or_our_error(data: bytes) -> None:
    try:
        wave = decode_audio(data)
    except MediaDecodeError:
        return
    assert wave.dtype == np.float32


def test_decode_audio_wants_bytes() -> None:
    with pytest.raises(TypeError, match="bytes"):
        decode_audio("clip.wav")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ log-mel


def test_the_spec_derives_a_fixed_model_width() -> None:
    assert (SPEC.win_samples, SPEC.hop_samples, SPEC.n_fft) == (400, 160, 512)
    assert SPEC.n_frames == 1 + (8 * 16000 - 400) // 160 == 798


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"fmax_hz": 9000.0}, ["fmax_hz (9000.0)", "8000.0"]),
        ({"max_duration_s": 90.0}, ["max_duration_s (90.0)", "max_input_duration_s (60.0)"]),
        ({"n_mels": 0}, ["n_mels (0)"]),
        ({"hop_s": 0.00001}, ["hop_s (1e-05)"]),
    ],
)
def test_a_bad_spec_names_the_values(kwargs: dict[str, float], names: list[str]) -> None:
    with pytest.raises(ValueError, match="must") as info:
        AudioSpec(**kwargs)  # type: ignore[arg-type]
    for name in names:
        assert name in str(info.value)


def test_too_many_mel_bands_for_the_fft_is_refused() -> None:
    with pytest.raises(ValueError, match=r"n_mels \(256\) is too many"):
        mel_filterbank(AudioSpec(n_mels=256))


def test_slaney_mel_scale_anchors() -> None:
    np.testing.assert_allclose(hz_to_mel([0.0, 200.0, 1000.0, 6400.0]), [0.0, 3.0, 15.0, 42.0])
    freqs = np.array([0.0, 123.0, 999.0, 1000.0, 4321.0, 8000.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(freqs)), freqs, atol=1e-9)


def test_filterbank_is_cached_read_only_and_covers_the_band() -> None:
    bank = mel_filterbank(SPEC)
    assert bank is mel_filterbank(AudioSpec())
    assert bank.shape == (64, 257)
    assert bank.dtype == np.float32
    assert not bank.flags.writeable
    assert (bank >= 0).all()
    assert (bank.max(axis=1) > 0).all()
    edges = mel_band_edges_hz(SPEC)
    assert edges[0] == 0.0
    assert edges[-1] == pytest.approx(8000.0)


@pytest.mark.parametrize("freq_hz", [300.0, 1000.0, 2500.0, 6000.0])
def test_a_pure_tone_peaks_in_the_mel_band_that_holds_its_frequency(freq_hz: float) -> None:
    features, valid = log_mel(tone(freq_hz, 16000, 1.0)[:, 0])
    loudest_band = int(np.argmax(features[:, :valid].mean(axis=1)))
    tone_bin = round(freq_hz / (16000 / SPEC.n_fft))
    band_of_tone = int(np.argmax(mel_filterbank(SPEC)[:, tone_bin]))
    assert abs(loudest_band - band_of_tone) <= 1
    centre_hz = mel_band_edges_hz(SPEC)[loudest_band + 1]
    assert abs(centre_hz - freq_hz) / freq_hz < 0.1


@pytest.mark.parametrize(
    ("seconds", "valid"),
    [(0.0, 0), (100 / 16000, 1), (400 / 16000, 1), (1.0, 98), (8.0, 798), (10.0, 798)],
)
def test_features_have_a_fixed_width_and_count_their_real_frames(
    seconds: float, valid: int
) -> None:
    wave = tone(440, 16000, seconds)[:, 0]
    features, n_valid = log_mel(wave)
    assert features.shape == (64, SPEC.n_frames)
    assert features.dtype == np.float32
    assert n_valid == valid
    assert (features[:, n_valid:] == np.float32(SILENCE)).all()  # padding reads as silence
    if n_valid:
        assert (features[:, :n_valid].max(axis=0) > SILENCE + 5).all()


def test_longer_audio_is_clipped_to_its_first_max_duration() -> None:
    rng = np.random.default_rng(1)
    wave = (0.1 * rng.standard_normal(12 * 16000)).astype(np.float32)
    np.testing.assert_array_equal(log_mel(wave)[0], log_mel(wave[: 8 * 16000])[0])


def test_silence_is_valid_input() -> None:
    data = soundfile_bytes(np.zeros((16000, 1), dtype=np.float32), 16000, "WAV", "PCM_16")
    features = audio_features(data)
    assert features.valid_frames == 98
    assert np.allclose(features.log_mel, SILENCE)


def test_log_mel_wants_mono() -> None:
    with pytest.raises(ValueError, match=r"1-D mono samples.*\(2, 100\)"):
        log_mel(np.zeros((2, 100), dtype=np.float32))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.data_too_large])
@given(
    wave=arrays(
        np.float32,
        st.integers(0, 3 * 16000),
        elements=st.floats(width=32),
        fill=st.floats(width=32),
    )
)
def test_any_float_waveform_gives_finite_fixed_shape_features(wave: np.ndarray) -> None:
    features, valid = log_mel(wave)
    assert features.shape == (SPEC.n_mels, SPEC.n_frames)
    assert features.dtype == np.float32
    assert np.isfinite(features).all()
    assert 0 <= valid <= SPEC.n_frames


# ---------------------------------------------------------------------------- features and batches


def test_audio_features_reports_duration_and_clipping() -> None:
    short = audio_features(soundfile_bytes(tone(440, 44100, 2.0, 2), 44100, "FLAC"))
    long = audio_features(soundfile_bytes(tone(440, 16000, 10.0), 16000, "FLAC"))

    assert short.duration_s == pytest.approx(2.0, abs=1e-3)
    assert not short.clipped
    assert short.valid_frames == 1 + (32000 - 400) // 160
    assert long.duration_s == pytest.approx(10.0)
    assert long.clipped
    assert long.valid_frames == SPEC.n_frames
    assert short.log_mel.shape == long.log_mel.shape == (64, 798)


def test_batch_stacks_features_and_valid_frames() -> None:
    clips = [
        audio_features(soundfile_bytes(tone(f, 16000, s), 16000, "WAV", "PCM_16"))
        for f, s in [(300, 0.5), (1000, 3.0), (2000, 9.0)]
    ]
    features, valid = batch_log_mel(clips)
    assert features.shape == (3, 64, 798)
    assert features.dtype == np.float32
    np.testing.assert_array_equal(valid, [48, 298, 798])
    np.testing.assert_array_equal(features[1], clips[1].log_mel)


def test_batch_refuses_empty_and_mixed_specs() -> None:
    with pytest.raises(ValueError, match="at least one"):
        batch_log_mel([])
    narrow = AudioSpec(n_mels=40)
    mixed = [
        AudioInput(np.zeros((64, 798), np.float32), 1, 1.0),
        AudioInput(np.zeros((40, narrow.n_frames), np.float32), 1, 1.0),
    ]
    with pytest.raises(ValueError, match=r"shapes \[\(40, 798\), \(64, 798\)\]"):
        batch_log_mel(mixed)


# ------------------------------------------------------------------------------ real data


@pytest.mark.shared
def test_a_ravdess_flac_from_shared_data(shared_dir: Path) -> None:
    folder = shared_dir / "data" / "ravdess-speech-16k" / "Actor_01"
    if not folder.is_dir():
        pytest.skip(f"needs RAVDESS speech at {folder}, absent in this clone")
    path = sorted(folder.glob("*.flac"))[0]
    data = path.read_bytes()

    wave = decode_audio(data)
    features = audio_features(data)

    assert sf.info(str(path)).samplerate == 16000
    assert 2.0 <= wave.size / 16000 <= 5.0
    assert features.duration_s == pytest.approx(wave.size / 16000)
    assert np.isfinite(features.log_mel).all()
    assert features.log_mel[:, : features.valid_frames].max() > SILENCE + 5  # speech, not padding
