"""Audio input: bytes of any common format → 16 kHz mono float32 → a fixed-width log-mel image.

This is the one path both training and serving take (numpy, scipy, soundfile and PyAV; no torch,
no librosa), so the model never sees features made another way.

- Decoding: WAV/FLAC/OGG/AIFF go to soundfile (libsndfile), the fast path; MP3, M4A/AAC,
  WebM/Matroska audio and anything else FFmpeg can read go to PyAV, which also gets a second try
  when libsndfile refuses a file. Channels are mixed down to mono by their mean, then resampled to
  `AudioSpec.sample_rate_hz` with `scipy.signal.resample_poly` (its default Kaiser filter, designed
  once per ratio) at the exact rational ratio of the two rates (a denominator above 1000 is
  approximated: a pitch error under one part in 10^6). Samples end up float32 in [-1, 1]: NaN/inf
  in float files become 0/±1 and louder float samples are clipped, not rescaled.
- Cost: channels x rate x duration is checked against `max_decoded_samples` from the header before
  decoding and counted again while decoding; decoding streams (blocks mixed to mono and resampled
  as they come, `StreamingResampler`, bit for bit what one `resample_poly` call gives), so memory
  follows the 16 kHz output, not the input's channels and rate; `max_decode_s` bounds wall time.
- Length: input up to `max_input_duration_s` (60 s) is accepted; features cover only the first
  `max_duration_s` (8 s): longer audio is clipped there, shorter is padded, so every clip gives the
  same `(n_mels, n_frames)` array and `valid_frames` says how many frames are real. Longer input is
  refused (code "too_long") while decoding, before it costs memory.
- Log-mel: frames of `win_s` (25 ms, a periodic Hann window) every `hop_s` (10 ms), with no
  padding at the edges (Kaldi's `snip_edges`: frames = 1 + (samples - win) // hop, so an 8 s clip
  has 798), each zero-padded to the next power of two (512) for the real FFT; the power spectrum
  goes through a Slaney-style mel filterbank (linear below 1 kHz, logarithmic above, each triangle
  normalised to unit area, as librosa's default), built once per spec and cached; then
  log(x + 1e-6). Padding frames hold log(1e-6), the value of digital silence. No per-utterance
  normalisation is done here: the model normalises its input itself, using `valid_frames` to
  ignore the padding.
- Voice activity (`libra.runtime.inputs.vad`: energy, its rise above the clip's floor and spectral
  flatness in the speech band) over the samples the features cover: `AudioInput.voice_found` is
  False for silence, hum or noise, and the API then leaves the audio out of the model input.
- Bad input raises `MediaDecodeError("audio", code, why)`, never a decoder's own exception:
  "empty", "too_large", "unsupported_format", "truncated", "no_channels", "too_long",
  "too_many_samples", "decode_too_slow". A file cut short that still yields some audio is accepted
  with what could be decoded; silence is valid input (decoded, with `voice_found` False).

Speed (measured once on the 2-core AMD EPYC development VM, numpy 2.4, scipy 1.17, PyAV 18;
median of 50 runs; the command is in docs/inputs.md): `log_mel` of an 8 s clip about 1 ms;
`audio_features` of an 8 s 44.1 kHz stereo file about 5 ms for WAV, 8 ms for FLAC, 11 ms for MP3
(decoding and resampling dominate); a 3.3 s 16 kHz RAVDESS FLAC (no resampling) about 1 ms.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import av
import numpy as np
import numpy.typing as npt
import soundfile as sf
from scipy import fft
from scipy.signal import firwin

from libra.runtime.errors import MediaDecodeError
from libra.runtime.inputs.budget import Clock, DecodeBudget
from libra.runtime.inputs.resample import StreamingResampler
from libra.runtime.inputs.vad import voice_activity
from libra.runtime.model_input import AudioInput

MODALITY = "audio"
LOG_FLOOR = 1e-6
"""Added to mel power before the log: silence maps to log(1e-6) ≈ -13.8 instead of -inf."""

MIN_SOURCE_RATE_HZ = 1_000
MAX_SOURCE_RATE_HZ = 768_000
_MAX_RATIO_TERM = 1_000
BLOCK_FRAMES = 1 << 16
"""Frames libsndfile reads at a time: 2 MiB of float32 for 8 channels, however long the file."""

# What a file's first bytes say it is. Soundfile reads the first group; a file whose header names a
# known audio container but that no decoder can read is "truncated", anything else "unsupported".
_SOUNDFILE_KINDS = frozenset({"WAV", "FLAC", "OGG", "AIFF"})
# FFmpeg demuxers that read still images: a PNG or JPEG has video streams but is not a container
# missing its audio, so it is "unsupported_format", not "no_channels".
_IMAGE_DEMUXERS = ("image2", "_pipe", "gif", "webp")


@dataclass(frozen=True)
class AudioSpec:
    """How audio becomes model input; hashable, so derived tables are cached per spec.

    Defaults: 16 kHz, features over the first 8 s of at most 60 s of input, 64 mel bands from
    0 to 8 kHz, 25 ms windows every 10 ms, at most 20 MiB of encoded bytes.
    """

    sample_rate_hz: int = 16000
    max_duration_s: float = 8.0
    """Features cover this much audio: longer input is clipped (not refused), shorter padded."""
    max_input_duration_s: float = 60.0
    """Longer input is refused with code "too_long"."""
    n_mels: int = 64
    win_s: float = 0.025
    hop_s: float = 0.010
    fmin_hz: float = 0.0
    fmax_hz: float = 8000.0
    max_bytes: int = 20 * 2**20
    max_decoded_samples: int = 60 * 96_000 * 8
    """Samples decoding may produce, counted over every channel (channels x rate x duration):
    60 s of 7.1 audio at 96 kHz. More is refused ("too_many_samples"), from the header when it
    tells, else while decoding."""
    max_decode_s: float = 10.0
    """Wall time one decode may take; longer is refused ("decode_too_slow"). A backstop: the
    worst file the limits above let through decodes in about 1 s here."""

    def __post_init__(self) -> None:
        if self.sample_rate_hz <= 0:
            raise ValueError(f"sample_rate_hz ({self.sample_rate_hz}) must be positive")
        if not 0 < self.max_duration_s <= self.max_input_duration_s:
            raise ValueError(
                f"max_duration_s ({self.max_duration_s}) must be positive and at most "
                f"max_input_duration_s ({self.max_input_duration_s})"
            )
        if self.n_mels < 1:
            raise ValueError(f"n_mels ({self.n_mels}) must be at least 1")
        if self.hop_samples < 1 or self.win_samples < 1:
            raise ValueError(
                f"win_s ({self.win_s}) and hop_s ({self.hop_s}) must each last at least one sample "
                f"at {self.sample_rate_hz} Hz"
            )
        if self.win_samples > self.max_samples:
            raise ValueError(
                f"win_s ({self.win_s}) must not be longer than max_duration_s "
                f"({self.max_duration_s})"
            )
        if not 0 <= self.fmin_hz < self.fmax_hz <= self.sample_rate_hz / 2:
            raise ValueError(
                f"fmin_hz ({self.fmin_hz}) and fmax_hz ({self.fmax_hz}) must satisfy "
                f"0 <= fmin_hz < fmax_hz <= half the sample rate ({self.sample_rate_hz / 2})"
            )
        if self.max_bytes <= 0:
            raise ValueError(f"max_bytes ({self.max_bytes}) must be positive")
        if self.max_decoded_samples <= 0 or self.max_decode_s <= 0:
            raise ValueError(
                f"max_decoded_samples ({self.max_decoded_samples}) and max_decode_s "
                f"({self.max_decode_s}) must be positive"
            )

    @property
    def win_samples(self) -> int:
        return round(self.win_s * self.sample_rate_hz)

    @property
    def hop_samples(self) -> int:
        return round(self.hop_s * self.sample_rate_hz)

    @property
    def n_fft(self) -> int:
        """FFT size: the window zero-padded to the next power of two (512 for 400 samples)."""
        return 1 << (self.win_samples - 1).bit_length()

    @property
    def max_samples(self) -> int:
        return round(self.max_duration_s * self.sample_rate_hz)

    @property
    def n_frames(self) -> int:
        """Frames of a `max_duration_s` clip: the fixed width of the model's audio input (798)."""
        return 1 + (self.max_samples - self.win_samples) // self.hop_samples


DEFAULT_SPEC = AudioSpec()


# ---------------------------------------------------------------------------------------- decoding


def decode_audio(
    data: bytes, spec: AudioSpec = DEFAULT_SPEC, *, clock: Clock = time.monotonic
) -> np.ndarray:
    """Decode an encoded audio file to float32 mono samples at `spec.sample_rate_hz`, in [-1, 1].

    The whole input is returned (up to `max_input_duration_s`); clipping to `max_duration_s` is
    `log_mel`'s job. Decoding streams: each block is mixed to mono and resampled as it comes, so
    memory follows the output, not channels x the input's rate. Raises `MediaDecodeError`
    (modality "audio") with a code saying what is wrong; `clock` times the decode against
    `spec.max_decode_s`.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"decode_audio takes the file's bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise _error("empty", "the audio file is empty (0 bytes)")
    if len(data) > spec.max_bytes:
        raise _error(
            "too_large",
            f"the audio file is {len(data)} bytes, more than the limit of {spec.max_bytes} bytes; "
            f"send at most {spec.max_input_duration_s:g} s of compressed audio",
        )
    kind = _sniff(data)
    budget = _budget(spec, clock)
    decoded = (_decode_with_soundfile(data, spec, kind, budget) if kind in _SOUNDFILE_KINDS
               else None)
    if decoded is None:  # PyAV's count starts afresh; the clock keeps running
        budget.used = 0
        decoded = _decode_with_av(data, spec, kind, budget)
    return decoded


def _budget(spec: AudioSpec, clock: Clock) -> DecodeBudget:
    return DecodeBudget(MODALITY, spec.max_decoded_samples, spec.max_decode_s,
                        lambda used: _too_many_samples(spec, f"at least {used} samples"), clock)


def _error(code: str, why: str) -> MediaDecodeError:
    return MediaDecodeError(MODALITY, code, why)


def _sniff(data: bytes) -> str | None:
    """The container the header names, or None when it names no audio container we know."""
    head = data[:12]
    if head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE":
        return "WAV"
    if head[:4] == b"fLaC":
        return "FLAC"
    if head[:4] == b"OggS":
        return "OGG"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "AIFF"
    if head[4:8] == b"ftyp":
        return "MP4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "Matroska/WebM"
    if head[:3] == b"ID3":
        return "MP3"
    return None


def _riff_declares_more(data: bytes) -> bool:
    """Whether a RIFF/WAV header promises more bytes than the file holds (it was cut short)."""
    if data[:4] not in (b"RIFF", b"RIFX") or len(data) < 8:
        return False
    declared = int.from_bytes(data[4:8], "little" if data[:4] == b"RIFF" else "big")
    return declared + 8 > len(data)


def _check_rate(rate_hz: int) -> None:
    if not MIN_SOURCE_RATE_HZ <= rate_hz <= MAX_SOURCE_RATE_HZ:
        raise _error(
            "unsupported_format",
            f"the audio's sample rate is {rate_hz} Hz; supported rates are "
            f"{MIN_SOURCE_RATE_HZ}-{MAX_SOURCE_RATE_HZ} Hz",
        )


def _too_long(spec: AudioSpec, seconds: float | None = None) -> MediaDecodeError:
    length = f"{seconds:.1f} s, more than" if seconds is not None else "longer than"
    return _error(
        "too_long",
        f"the audio lasts {length} the limit of {spec.max_input_duration_s:g} s (and only the "
        f"first {spec.max_duration_s:g} s are used): trim it before sending",
    )


def _too_many_samples(spec: AudioSpec, what: str) -> MediaDecodeError:
    return _error(
        "too_many_samples",
        f"decoding the audio means {what} (channels x sample rate x duration), more than the "
        f"limit of {spec.max_decoded_samples} (max_decoded_samples); send mono or stereo at "
        f"48 kHz or less",
    )


def _check_header_cost(spec: AudioSpec, channels: int, rate_hz: int, seconds: float) -> None:
    """Refuse before decoding when the header alone says the decode is over the limit."""
    samples = channels * rate_hz * seconds
    if samples > spec.max_decoded_samples:
        raise _too_many_samples(
            spec, f"{channels} channels x {rate_hz} Hz x {seconds:.1f} s = {samples:.0f} samples")


class _MonoSink:
    """Mono blocks at the source rate in, the model's rate out: finite, resampled chunk by chunk
    (`StreamingResampler`, identical to one `resample_poly` call), clipped to [-1, 1] at the end.
    Counts the input against `max_input_duration_s` as it comes, whatever the header said."""

    def __init__(self, rate_hz: int, spec: AudioSpec) -> None:
        self.rate_hz = rate_hz
        self.spec = spec
        self.max_samples = spec.max_input_duration_s * rate_hz
        if rate_hz == spec.sample_rate_hz:
            self.resampler = StreamingResampler(1, 1, np.ones(1, dtype=np.float32))
        else:
            ratio = Fraction(spec.sample_rate_hz, rate_hz).limit_denominator(_MAX_RATIO_TERM)
            up, down = ratio.numerator, ratio.denominator
            self.resampler = StreamingResampler(up, down, _resampling_filter(up, down))

    @property
    def n_samples(self) -> int:
        return self.resampler.n_in

    def add(self, mono: np.ndarray) -> None:
        self.resampler.push(np.nan_to_num(mono.astype(np.float32, copy=False), nan=0.0,
                                          posinf=1.0, neginf=-1.0))
        if self.resampler.n_in > self.max_samples:
            raise _too_long(self.spec)

    def finish(self) -> np.ndarray:
        wave = self.resampler.finish().astype(np.float32, copy=False)
        return np.clip(wave, -1.0, 1.0, out=wave)


def _decode_with_soundfile(
    data: bytes, spec: AudioSpec, kind: str | None, budget: DecodeBudget
) -> np.ndarray | None:
    """libsndfile's decode, or None to let PyAV try (libsndfile refused or failed mid-file)."""
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            rate_hz, frames, channels = int(f.samplerate), int(f.frames), int(f.channels)
            _check_rate(rate_hz)
            if frames > spec.max_input_duration_s * rate_hz:
                raise _too_long(spec, frames / rate_hz)
            _check_header_cost(spec, channels, rate_hz, frames / rate_hz)
            sink = _MonoSink(rate_hz, spec)
            while True:
                block = f.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
                if block.shape[0] == 0:
                    break
                budget.charge(block.size)
                sink.add(_mix_to_mono(block))
    except MediaDecodeError:  # a ValueError too: keep it from the clause below
        raise
    except (sf.SoundFileError, RuntimeError, ValueError, OSError):
        # PyAV gets a second try: it reads a few files libsndfile will not and keeps the decodable
        # part of a file cut short, where libsndfile gives up on the whole read.
        return None
    if sink.n_samples == 0:
        if frames > 0 or _riff_declares_more(data):
            raise _error(
                "truncated",
                f"the {kind} file's header promises audio that is not there ({len(data)} bytes "
                f"in all): it was cut short in transfer",
            )
        raise _error(
            "empty",
            f"the {kind} file holds no audio samples (it is empty, or was cut off before its "
            f"first audio)",
        )
    return sink.finish()


def _mix_to_mono(block: np.ndarray) -> np.ndarray:
    """(frames, channels) float32 → the mean of the channels."""
    channels = block.shape[1]
    if channels <= 2:
        # A matrix-vector product, as the features were always made (bit for bit): numpy's mean
        # over the short channel axis is 40x slower.
        return block @ np.full(channels, 1.0 / channels, dtype=np.float32)
    # Surround files: the columns summed in order, then scaled. OpenBLAS runs this product on
    # threads and on a busy machine paid 12 ms per 64 Ki frames of 8 channels (0.5 ms here).
    mono = block[:, 0].copy()
    for k in range(1, channels):
        mono += block[:, k]
    return mono * np.float32(1.0 / channels)


def _header_seconds(container: av.container.InputContainer, stream: av.AudioStream
                    ) -> float | None:
    """The audio's duration as the container's header states it, or None when it does not."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return float(container.duration) / av.time_base
    return None


def _decode_with_av(
    data: bytes, spec: AudioSpec, kind: str | None, budget: DecodeBudget
) -> np.ndarray:
    """FFmpeg's decode of the first audio stream, mixed down to mono and resampled frame by
    frame."""
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.error.FFmpegError, ValueError, OSError, EOFError) as exc:
        if kind is not None:
            raise _error(
                "truncated",
                f"the file starts like {kind} audio but cannot be read ({_reason(exc)}): it was "
                f"probably cut short in transfer or is corrupt",
            ) from None
        raise _error(
            "unsupported_format",
            "the file is not audio in a format we read (WAV, FLAC, OGG, MP3, M4A/AAC, WebM, ...); "
            f"the decoder says: {_reason(exc)}",
        ) from None
    with container:
        fmt = container.format.name
        name = kind or fmt.split(",")[0]  # FFmpeg's "mov,mp4,m4a,3gp,3g2,mj2" reads badly
        audio_streams = container.streams.audio
        if not audio_streams:
            kinds = sorted({s.type for s in container.streams})
            if not kinds or any(tag in fmt for tag in _IMAGE_DEMUXERS):
                what = "an image" if kinds else "a container with no streams"
                raise _error(
                    "unsupported_format",
                    f"the file is {what} ({fmt}), not audio; send WAV, FLAC, OGG, MP3, M4A or WebM",
                )
            raise _error(
                "no_channels",
                f"the {name} file has {'/'.join(kinds)} but no audio stream: there is nothing to "
                f"listen to; send a file with a sound track",
            )
        stream = audio_streams[0]
        header_s = _header_seconds(container, stream)
        header_channels = stream.codec_context.layout.nb_channels if stream.codec_context else 0
        header_rate_hz = int(stream.codec_context.sample_rate or 0) if stream.codec_context else 0
        if header_s and header_channels and header_rate_hz:
            _check_header_cost(spec, header_channels, header_rate_hz, header_s)
        sink: _MonoSink | None = None
        failure: Exception | None = None
        try:
            for frame in container.decode(stream):
                budget.check_time()
                if frame.samples == 0:
                    continue
                if frame.layout.nb_channels == 0:
                    raise _error("no_channels", f"the {name} file's audio stream has no channels")
                if sink is None:
                    _check_rate(int(frame.sample_rate))
                    sink = _MonoSink(int(frame.sample_rate), spec)
                elif frame.sample_rate != sink.rate_hz:
                    raise _error(
                        "unsupported_format",
                        f"the audio's sample rate changes mid-stream ({sink.rate_hz} -> "
                        f"{frame.sample_rate} Hz)",
                    )
                budget.charge(frame.samples * frame.layout.nb_channels)
                sink.add(_frame_to_mono(frame))
        except MediaDecodeError:
            raise
        except av.error.DecoderNotFoundError:
            raise _error(
                "unsupported_format",
                f"the {name} file's audio codec has no decoder here; send WAV (PCM), FLAC, "
                f"OGG (Vorbis/Opus), MP3, M4A (AAC) or WebM (Opus)",
            ) from None
        except (av.error.FFmpegError, ValueError, OSError, EOFError, RuntimeError) as exc:
            failure = exc  # what decoded before the error is kept, like a player would
    if sink is None or sink.n_samples == 0:
        if failure is None:
            raise _error(
                "empty",
                f"the {name} file holds no audio samples (it is empty, or was cut off before its "
                f"first audio)",
            )
        if kind is not None:
            raise _error(
                "truncated",
                f"the {kind} file's audio cannot be decoded ({_reason(failure)}): it was probably "
                f"cut short in transfer or is corrupt",
            )
        raise _error(
            "unsupported_format",
            f"no audio could be decoded from the {name} file ({_reason(failure)})",
        )
    return sink.finish()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, av.error.DecoderNotFoundError):
        return "no decoder for its codec"
    text = getattr(exc, "strerror", None) or str(exc)
    return text.strip() or type(exc).__name__


def _frame_to_mono(frame: av.AudioFrame) -> np.ndarray:
    """One decoded frame as float32 mono (the mean of its channels), whatever its sample format."""
    array = frame.to_ndarray()
    n_channels = frame.layout.nb_channels
    if not frame.format.is_planar:  # packed: one row of interleaved channels
        array = array.reshape(-1, n_channels).T
    if array.dtype.kind in "iu":
        full_scale = float(2 ** (8 * array.dtype.itemsize - 1))
        offset = full_scale if array.dtype.kind == "u" else 0.0  # 8-bit PCM is unsigned around 128
        array = (array.astype(np.float32) - offset) / full_scale
    return array.mean(axis=0, dtype=np.float32)


@lru_cache(maxsize=32)
def _resampling_filter(up: int, down: int) -> np.ndarray:
    """resample_poly's own default low-pass (Kaiser, beta 5), designed once per ratio."""
    max_rate = max(up, down)
    taps = firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))
    table = taps.astype(np.float32)
    table.setflags(write=False)
    return table


# ----------------------------------------------------------------------------------------- log-mel


def hz_to_mel(freq_hz: npt.ArrayLike) -> np.ndarray:
    """Slaney's mel scale: linear (3 mels per 200 Hz) below 1 kHz, logarithmic above."""
    f = np.asarray(freq_hz, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3.0, 1000.0
    min_log_mel, log_step = min_log_hz / f_sp, math.log(6.4) / 27.0
    linear = f / f_sp
    logarithmic = min_log_mel + np.log(np.maximum(f, min_log_hz) / min_log_hz) / log_step
    return np.where(f >= min_log_hz, logarithmic, linear)


def mel_to_hz(mel: npt.ArrayLike) -> np.ndarray:
    """The inverse of `hz_to_mel`."""
    m = np.asarray(mel, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3.0, 1000.0
    min_log_mel, log_step = min_log_hz / f_sp, math.log(6.4) / 27.0
    logarithmic = min_log_hz * np.exp(log_step * (np.maximum(m, min_log_mel) - min_log_mel))
    return np.where(m >= min_log_mel, logarithmic, f_sp * m)


def mel_band_edges_hz(spec: AudioSpec = DEFAULT_SPEC) -> np.ndarray:
    """The n_mels + 2 corner frequencies: band i rises from edge i, peaks at i+1, ends at i+2."""
    mels = np.linspace(hz_to_mel(spec.fmin_hz), hz_to_mel(spec.fmax_hz), spec.n_mels + 2)
    return mel_to_hz(mels)


@lru_cache(maxsize=16)
def mel_filterbank(spec: AudioSpec = DEFAULT_SPEC) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) float32 triangles of unit area in Hz ("slaney" norm); cached."""
    edges = mel_band_edges_hz(spec)
    bin_hz = np.fft.rfftfreq(spec.n_fft, d=1.0 / spec.sample_rate_hz)
    widths = np.diff(edges)
    ramps = edges[:, None] - bin_hz[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    empty = np.flatnonzero(weights.max(axis=1) == 0)
    if empty.size:
        raise ValueError(
            f"n_mels ({spec.n_mels}) is too many for n_fft ({spec.n_fft}) between "
            f"{spec.fmin_hz} and {spec.fmax_hz} Hz: bands {empty.tolist()} catch no FFT bin; "
            f"lower n_mels or lengthen win_s"
        )
    table = weights.astype(np.float32)
    table.setflags(write=False)
    return table


@lru_cache(maxsize=16)
def _window(spec: AudioSpec) -> np.ndarray:
    n = spec.win_samples
    table = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)  # periodic
    table.setflags(write=False)
    return table


def log_mel(wave: np.ndarray, spec: AudioSpec = DEFAULT_SPEC) -> tuple[np.ndarray, int]:
    """Log-mel features of mono samples at `spec.sample_rate_hz`, padded/clipped to a fixed width.

    Returns `(features, valid_frames)`: features are (n_mels, n_frames) float32 of log(mel power +
    1e-6), where the first `valid_frames` columns come from the audio (at most `max_duration_s` of
    it) and the rest hold log(1e-6), the value of silence. A clip shorter than one window is
    zero-padded to one frame; an empty clip has no valid frames. Samples are expected in [-1, 1]:
    others are clipped there and NaN becomes 0, so the output is always finite. Not normalised per
    utterance: the model does that.
    """
    x = np.asarray(wave, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"log_mel takes 1-D mono samples, got an array of shape {x.shape}")
    x = np.nan_to_num(x[: spec.max_samples], nan=0.0, posinf=1.0, neginf=-1.0)
    x = np.clip(x, -1.0, 1.0)
    win, hop = spec.win_samples, spec.hop_samples
    out = np.full((spec.n_mels, spec.n_frames), math.log(LOG_FLOOR), dtype=np.float32)
    if x.size == 0:
        return out, 0
    if x.size < win:
        x = np.pad(x, (0, win - x.size))
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop]  # a view: no copy
    spectrum = fft.rfft(frames * _window(spec), n=spec.n_fft, axis=1)  # 2x numpy's here
    power = spectrum.real**2 + spectrum.imag**2
    mel = power @ mel_filterbank(spec).T  # (valid_frames, n_mels)
    valid = mel.shape[0]
    out[:, :valid] = np.log(mel + np.float32(LOG_FLOOR)).T
    return out, valid


def audio_features(
    data: bytes, spec: AudioSpec = DEFAULT_SPEC, *, clock: Clock = time.monotonic
) -> AudioInput:
    """Encoded bytes → `AudioInput`: decode, resample, clip/pad to `max_duration_s`, log-mel,
    and voice activity over the same samples the features cover (`voice_found`: the API leaves
    audio without voice out of the model input)."""
    wave = decode_audio(data, spec, clock=clock)
    features, valid = log_mel(wave, spec)
    activity = voice_activity(wave, spec.sample_rate_hz, max_samples=spec.max_samples)
    return AudioInput(
        log_mel=features,
        valid_frames=valid,
        duration_s=wave.size / spec.sample_rate_hz,
        clipped=wave.size > spec.max_samples,
        voiced_s=activity.voiced_s,
        voice_found=activity.has_voice,
    )


def batch_log_mel(inputs: Sequence[AudioInput]) -> tuple[np.ndarray, np.ndarray]:
    """Stack clips for one model call: (B, n_mels, n_frames) float32 and (B,) int64 valid frames."""
    if not inputs:
        raise ValueError("batch_log_mel needs at least one AudioInput")
    shapes = {item.log_mel.shape for item in inputs}
    if len(shapes) > 1:
        raise ValueError(
            f"batch_log_mel got features of shapes {sorted(shapes)}; all must come from one "
            f"AudioSpec"
        )
    features = np.stack([item.log_mel for item in inputs]).astype(np.float32, copy=False)
    valid = np.array([item.valid_frames for item in inputs], dtype=np.int64)
    return features, valid
