"""Video input: bytes of a clip → N grayscale frames sampled uniformly → N 48x48 face crops.

This is the one path both training and serving take (numpy, PyAV and OpenCV; no torch), so the
face encoder never sees crops made another way.

- Decoding (PyAV, FFmpeg inside): MP4/MOV (H.264, MPEG-4 Part 2, ...), WebM/Matroska (VP8, VP9),
  AVI, animated GIF and anything else FFmpeg demuxes and decodes. A first pass only demuxes (no
  decoding: it is cheap) to count the frames and read their timestamps, which gives the clip's true
  duration even when the header has none (browser-recorded WebM) and lets an over-long clip be
  refused before any decoding; it also notes the keyframes. The second pass decodes only what
  reaching the chosen frames needs: from the keyframe at or before each (seeking there) up to it,
  stopping after the last, and converts only the chosen ones to grayscale, so memory holds
  `n_frames` frames whatever the clip's length. The frames and pixels of that plan are checked
  against `max_decoded_frames` / `max_decoded_pixels` before decoding and charged again per
  decoded frame; `max_decode_s` bounds wall time. Where the index cannot guide decoding (no
  timestamps, a cut file) or the decoder disagrees with it, every frame is decoded, as before.
- Sampling: the clip's time span is cut into `n_frames` equal segments and the frame on screen at
  the middle of each is taken (TSN-style segment centres, which skip the first frame that is often a
  fade-in). With constant frame rate and F frames this is frame `floor((k + 0.5) * F / n_frames)`
  for k = 0..n_frames-1; a clip with fewer frames than `n_frames` gets its frames repeated evenly.
  A display rotation in the container (phones record portrait video as rotated landscape) is
  applied, so faces are upright.
- Faces: OpenCV's frontal-face Haar cascade (shipped with opencv-python(-headless) 4.x; OpenCV 5
  dropped it, see `_load_cascade`) runs on each sampled frame, scaled down so its shorter side is at
  most `_DETECT_SHORT_SIDE_PX` (240), looking for faces at least `_MIN_FACE_FRACTION` (15 %) of
  that side; the largest face wins. Its square box is grown by `FACE_BOX_SCALE` (1.05) about its
  centre: on 600 FER-2013 test faces pasted at random sizes (110-250 px) into noisy frames, the FER
  crop is a median 1.057 times the cascade's box (centred on it to 0.3 %), and growing the box by
  1.00-1.05 gives crops that correlate best with the FER face (median r = 0.78; 1.10 gives 0.73,
  1.20 gives 0.57), so the crops match the data the face encoder learns from. The crop is cut out
  (edges replicated where the box leaves the frame), resized to `face_size_px` (area interpolation)
  and scaled to [0, 1]. Frames where no face is found reuse the box of the nearest frame that has
  one; if no frame has one, every frame gets its centre square and `face_found` is False (the API
  reports it).
- Bad input raises `MediaDecodeError("video", code, why)`, never PyAV's or OpenCV's own exception:
  "empty", "too_large" (more bytes than `max_bytes`), "unsupported_format" (not a video FFmpeg
  reads, a still image, a codec with no decoder), "truncated" (a video container whose frames cannot
  be decoded: cut short or corrupt), "no_frames" (no video stream, e.g. a WAV, or a stream with no
  frames), "too_long" (longer than `max_duration_s`), "too_large_frame" (frames of more than
  `max_pixels`), "too_many_frames", "too_many_pixels", "decode_too_slow" (decoding would cost more
  than the limits above). A file cut short that still yields frames is accepted with what could be
  decoded.
"""

from __future__ import annotations

import io
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from libra.runtime.errors import MediaDecodeError
from libra.runtime.inputs.budget import Clock, DecodeBudget
from libra.runtime.model_input import VideoInput

MODALITY = "video"

FACE_BOX_SCALE = 1.05
"""A detected face box is grown by this factor about its centre before cropping (see above)."""

MAX_FPS = 240.0
"""Frame rate assumed at most: a clip with more than `max_duration_s * MAX_FPS` frames is refused
("too_long") before decoding, whatever its timestamps claim."""

_DETECT_SHORT_SIDE_PX = 240
"""Frames are scaled down for detection until their shorter side is at most this: the cascade's
cost grows with the pixels it scans (on FER faces in 480x300 frames, 57 ms a frame at full size,
15 ms at 240, with as many faces found)."""
_MIN_FACE_FRACTION = 0.15
"""Faces smaller than this fraction of the frame's shorter side are ignored: they would be
upscaled into the crop, and the smallest scales cost the cascade the most."""
_CASCADE_FILE = "haarcascade_frontalface_default.xml"

# FFmpeg demuxers that read still images: a PNG or JPEG decodes to one frame, but it is not a video.
_IMAGE_DEMUXERS = ("image2", "_pipe", "webp")

# FFmpeg's own errors plus what PyAV raises around them (bad metadata, cut input, odd streams).
_DECODE_ERRORS = (av.error.FFmpegError, ValueError, OSError, EOFError, RuntimeError, IndexError)


@dataclass(frozen=True)
class VideoSpec:
    """How a clip becomes model input.

    Defaults: 8 frames per clip, 48x48 face crops (FER-2013's grayscale 48x48, which the face
    encoder is trained on), at most 50 MiB of encoded bytes, 60 s of video and 1920x1080 pixels per
    frame.
    """

    n_frames: int = 8
    face_size_px: int = 48
    max_bytes: int = 50 * 2**20
    max_duration_s: float = 60.0
    max_pixels: int = 1920 * 1080
    max_decoded_frames: int = 1800
    """Frames decoding may produce to reach the sampled ones (60 s at 30 fps); more is refused
    ("too_many_frames"), from the demuxed index before decoding and again while decoding."""
    max_decoded_pixels: int = 300 * 1920 * 1080
    """Pixels decoding may produce, summed over those frames (300 full-HD frames); more is refused
    ("too_many_pixels"), from the index and the stream's frame size, and again while decoding.
    Decoding a 1080p frame took 1.5 ms (black) to 27 ms (noise at 26 Mbit/s) on the busy 2-core
    development VM: 0.5-8 s at this limit. A phone clip (a keyframe every 1-2 s) reaches its 8
    sampled frames through at most 8 keyframe intervals, well inside it."""
    max_decode_s: float = 10.0
    """Wall time one decode may take; longer is refused ("decode_too_slow"). A backstop for what
    the counts do not foresee: decoding costs more per pixel at higher bitrates."""

    def __post_init__(self) -> None:
        if self.n_frames < 1:
            raise ValueError(f"n_frames ({self.n_frames}) must be at least 1")
        if self.face_size_px < 8:
            raise ValueError(f"face_size_px ({self.face_size_px}) must be at least 8")
        if self.max_bytes <= 0:
            raise ValueError(f"max_bytes ({self.max_bytes}) must be positive")
        if self.max_duration_s <= 0:
            raise ValueError(f"max_duration_s ({self.max_duration_s}) must be positive")
        if self.max_pixels <= 0:
            raise ValueError(f"max_pixels ({self.max_pixels}) must be positive")
        if min(self.max_decoded_frames, self.max_decoded_pixels, self.max_decode_s) <= 0:
            raise ValueError(
                f"max_decoded_frames ({self.max_decoded_frames}), max_decoded_pixels "
                f"({self.max_decoded_pixels}) and max_decode_s ({self.max_decode_s}) must be "
                f"positive"
            )

    @property
    def max_frames(self) -> int:
        """Most frames a clip may hold: `max_duration_s` at `MAX_FPS`."""
        return math.ceil(self.max_duration_s * MAX_FPS)


DEFAULT_SPEC = VideoSpec()


@dataclass(frozen=True)
class _Decoded:
    frames: np.ndarray
    duration_s: float
    n_decoded_frames: int


# ---------------------------------------------------------------------------------------- decoding


def decode_frames(
    data: bytes, spec: VideoSpec = DEFAULT_SPEC, *, clock: Clock = time.monotonic
) -> np.ndarray:
    """Decode a clip and sample `spec.n_frames` frames uniformly over it.

    Returns (n_frames, H, W) uint8 grayscale, upright. Raises `MediaDecodeError` (modality "video")
    with a code saying what is wrong; `clock` times the decode against `spec.max_decode_s`.
    """
    return _decode(data, spec, clock).frames


def _error(code: str, why: str) -> MediaDecodeError:
    return MediaDecodeError(MODALITY, code, why)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, av.error.DecoderNotFoundError):
        return "no decoder for its codec"
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).strip() or type(exc).__name__


def _sniff(data: bytes) -> str | None:
    """The video container the header names, or None when it names none we know."""
    head = data[:12]
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "MP4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "Matroska/WebM"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    if head[:3] == b"FLV":
        return "FLV"
    if head[:4] == b"OggS":
        return "Ogg"
    return None


def _decode(data: bytes, spec: VideoSpec, clock: Clock = time.monotonic) -> _Decoded:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise _error(
            "unsupported_format",
            f"expected the video file's bytes, got {type(data).__name__}",
        )
    data = bytes(data)
    if not data:
        raise _error("empty", "the video file is empty (0 bytes)")
    if len(data) > spec.max_bytes:
        raise _error(
            "too_large",
            f"the video file is {len(data)} bytes, more than the limit of {spec.max_bytes} bytes; "
            f"send at most {spec.max_duration_s:g} s of compressed video",
        )
    kind = _sniff(data)
    budget = _Budget(spec, clock)
    try:
        return _decode_checked(data, spec, kind, budget)
    except MediaDecodeError:
        raise
    except _DECODE_ERRORS as exc:  # anything the per-step handling did not anticipate
        if kind is not None:
            raise _error(
                "truncated",
                f"the file starts like {kind} video but cannot be read ({_reason(exc)}): it was "
                f"probably cut short in transfer or is corrupt",
            ) from None
        raise _error(
            "unsupported_format",
            "the file is not a video in a format we read (MP4, WebM, MOV, AVI, ...); "
            f"the decoder says: {_reason(exc)}",
        ) from None


def _open(data: bytes) -> Any:
    return av.open(io.BytesIO(data), mode="r", metadata_errors="replace")


def _video_stream(container: Any, name: str) -> Any:
    """The clip's first real video stream (an MP3's cover art is a video stream, but not a clip)."""
    fmt = str(container.format.name)
    if any(tag in fmt for tag in _IMAGE_DEMUXERS):
        raise _error(
            "unsupported_format",
            f"the file is a still image ({fmt}), not a video; send MP4 or WebM",
        )
    streams = [
        s for s in container.streams.video
        if not s.disposition & av.stream.Disposition.attached_pic
    ]
    if not streams:
        kinds = sorted({str(s.type) for s in container.streams})
        has = f"only {'/'.join(kinds)}" if kinds else "no streams"
        raise _error(
            "no_frames",
            f"the {name} file has {has} and no video stream: there are no frames to look at",
        )
    stream = streams[0]
    if stream.codec_context is None:  # FFmpeg knows no decoder for the stream's codec
        codec = str(getattr(stream, "codec_tag", "") or "").strip() or "an unknown codec"
        raise _error(
            "unsupported_format",
            f"the {name} file's video is in {codec}, which has no decoder here; send H.264 or "
            f"MPEG-4 in MP4, or VP8/VP9 in WebM",
        )
    return stream


def _decode_checked(
    data: bytes, spec: VideoSpec, kind: str | None, budget: _Budget
) -> _Decoded:
    # Pass 1: demux only, to count the frames and learn their times and keyframes (and refuse
    # long or costly clips cheaply).
    with _open(data) as container:
        name = kind or str(container.format.name).split(",")[0].upper()  # not "mov,mp4,m4a,..."
        stream = _video_stream(container, name)
        width = int(stream.codec_context.width or 0)
        height = int(stream.codec_context.height or 0)
        _check_frame_size(width, height, spec)
        index = _scan_packets(container, stream, spec, budget)
        fallback_s = _fallback_duration(container, stream)
    if index.n_packets == 0 and not index.read_failed:
        raise _error("no_frames", f"the {name} file's video stream holds no frames")
    wanted = _sample_indices(index.times_s, index.n_packets, index.span_s, spec.n_frames)

    # Pass 2, planned: decode from the keyframe before each sampled frame up to it, and stop
    # after the last. Where the index cannot be trusted (missing timestamps, a cut file) or the
    # decoder disagrees with it, decode everything instead.
    plan = _plan(index, wanted)
    _check_decode_cost(plan.n_frames if plan else index.n_packets, width, height, spec,
                       planned=plan is not None)
    if plan is not None and index.span_s is not None:
        kept = _decode_planned(data, plan, index, set(wanted), spec, budget)
        if kept is not None:
            return _Decoded(_same_shape([kept[i] for i in wanted]), index.span_s,
                            index.n_packets)

    result = _decode_selected(data, wanted, spec, budget)
    if result.n_frames == 0:
        why = f" ({_reason(result.failure)})" if result.failure is not None else ""
        raise _error(
            "truncated",
            f"no frame of the {name} file's video could be decoded{why}: it was probably cut "
            f"short in transfer or is corrupt",
        )
    if result.n_frames != index.n_packets:
        # Packets and frames disagree (a cut file, hidden frames): sample again over the frames
        # that really decoded, now that their count and times are known.
        wanted = _sample_indices(result.times_s, result.n_frames, None, spec.n_frames)
        result = _decode_selected(data, wanted, spec, budget)
    if not result.kept:
        raise _error("truncated", f"the {name} file's video did not decode the same way twice")
    frames = [result.kept[_nearest(result.kept, i)] for i in wanted]
    if index.span_s is not None and result.n_frames == index.n_packets:
        duration_s = index.span_s
    elif result.times_s is not None and result.n_frames > 1:
        step = result.times_s[-1] / (result.n_frames - 1)
        duration_s = float(result.times_s[-1] + step)
    else:
        duration_s = fallback_s(result.n_frames)
    return _Decoded(_same_shape(frames), float(duration_s), result.n_frames)


def _same_shape(frames: list[np.ndarray]) -> np.ndarray:
    """The sampled frames stacked, any of another size (a stream that changes size) resized to
    the first one's."""
    shape = frames[0].shape
    return np.stack([f if f.shape == shape else cv2.resize(f, (shape[1], shape[0]))
                     for f in frames])


def _nearest(kept: dict[int, np.ndarray], i: int) -> int:
    """`i` if that frame was kept, else the nearest kept index (the earlier on a tie)."""
    if i in kept:
        return i
    return min(kept, key=lambda k: (abs(k - i), k))


def _check_frame_size(width: int, height: int, spec: VideoSpec) -> None:
    if width * height > spec.max_pixels:
        raise _error(
            "too_large_frame",
            f"the video's frames are {width}x{height} = {width * height} pixels, more than the "
            f"limit of {spec.max_pixels}; scale it down (e.g. to 1280x720) before sending",
        )


class _Budget:
    """The decode's frame and pixel counts and its wall time (`DecodeBudget`), charged per frame
    that comes out of the decoder."""

    def __init__(self, spec: VideoSpec, clock: Clock) -> None:
        self.frames = DecodeBudget(MODALITY, spec.max_decoded_frames, spec.max_decode_s,
                                   lambda n: _too_many_frames(spec, f"at least {n} frames"),
                                   clock)
        self.pixels = DecodeBudget(MODALITY, spec.max_decoded_pixels, spec.max_decode_s,
                                   lambda n: _too_many_pixels(spec, f"at least {n} pixels"),
                                   clock)

    def charge(self, frame: Any) -> None:
        self.frames.charge(1)
        self.pixels.charge(int(frame.width) * int(frame.height))

    def check_time(self) -> None:
        self.frames.check_time()


def _too_many_frames(spec: VideoSpec, what: str) -> MediaDecodeError:
    return _error(
        "too_many_frames",
        f"sampling {spec.n_frames} frames from this video means decoding {what}, more than the "
        f"limit of {spec.max_decoded_frames} (max_decoded_frames); send a shorter clip, a lower "
        f"frame rate, or one with a keyframe every few seconds",
    )


def _too_many_pixels(spec: VideoSpec, what: str) -> MediaDecodeError:
    return _error(
        "too_many_pixels",
        f"sampling {spec.n_frames} frames from this video means decoding {what}, more than the "
        f"limit of {spec.max_decoded_pixels} (max_decoded_pixels); send a shorter or smaller "
        f"clip (e.g. 1280x720), or one with a keyframe every few seconds",
    )


def _check_decode_cost(n_frames: int, width: int, height: int, spec: VideoSpec, *,
                       planned: bool) -> None:
    """Refuse before decoding when the index says the decode is over a limit."""
    how = "from the keyframes before the sampled frames" if planned else "(all of them)"
    if n_frames * width * height > spec.max_decoded_pixels:
        raise _too_many_pixels(
            spec, f"{n_frames} frames {how} of {width}x{height}, "
            f"{n_frames * width * height} pixels")
    if n_frames > spec.max_decoded_frames:
        raise _too_many_frames(spec, f"{n_frames} frames {how}")


def _too_long(spec: VideoSpec, what: str) -> MediaDecodeError:
    return _error(
        "too_long",
        f"the video {what}, more than the limit of {spec.max_duration_s:g} s; trim it before "
        f"sending",
    )


@dataclass
class _PacketIndex:
    n_packets: int
    times_s: np.ndarray | None  # presentation times of the frames, sorted; None if any is unknown
    span_s: float | None  # from the first frame's start to the last one's end
    read_failed: bool
    pts: np.ndarray | None = None  # the frames' raw timestamps, sorted (as times_s)
    key_pts: tuple[int, ...] = ()  # raw timestamps of the keyframes


def _scan_packets(container: Any, stream: Any, spec: VideoSpec, budget: _Budget) -> _PacketIndex:
    """Demux (without decoding) the video stream: how many frames, when, how long in all, and
    which are keyframes (where decoding can start)."""
    time_base = float(stream.time_base) if stream.time_base else 0.0
    starts: list[int] = []
    ends: list[int] = []
    keys: list[int] = []
    has_all_pts = time_base > 0
    n_packets = 0
    read_failed = False
    try:
        for packet in container.demux(stream):
            if packet.size == 0:  # the flush packet at the end
                continue
            n_packets += 1
            if n_packets > spec.max_frames:
                raise _too_long(spec, f"has more than {spec.max_frames} frames")
            if n_packets % 256 == 0:
                budget.check_time()
            if packet.pts is None:
                has_all_pts = False
            elif has_all_pts:
                starts.append(int(packet.pts))
                ends.append(int(packet.pts) + int(packet.duration or 0))
                if packet.is_keyframe:
                    keys.append(int(packet.pts))
    except MediaDecodeError:
        raise
    except _DECODE_ERRORS:
        read_failed = True  # keep what was read: a player would show the frames up to the cut
    times_s: np.ndarray | None = None
    span_s: float | None = None
    pts: np.ndarray | None = None
    if has_all_pts and starts:
        start = min(starts)
        pts = np.sort(np.asarray(starts, dtype=np.int64))
        times_s = (pts - start) * time_base
        span_s = (max(ends) - start) * time_base
        if span_s <= times_s[-1]:  # no packet durations: the last frame lasts the mean step
            step = (times_s[-1] / (len(times_s) - 1)) if len(times_s) > 1 else 0.0
            span_s = float(times_s[-1] + step)
        if span_s > spec.max_duration_s:
            raise _too_long(spec, f"lasts {span_s:.1f} s")
    return _PacketIndex(n_packets, times_s, span_s, read_failed, pts, tuple(keys))


def _sample_indices(
    times_s: np.ndarray | None, n_available: int, span_s: float | None, n_frames: int
) -> list[int]:
    """Indices (in presentation order) of the frames on screen at the centres of `n_frames` equal
    segments of the clip: by timestamp when every frame has one, else by count."""
    if n_available <= 0:
        return [0] * n_frames
    centres = (np.arange(n_frames) + 0.5) / n_frames
    if times_s is not None and len(times_s) == n_available and n_available > 1:
        span = span_s if span_s is not None and span_s > times_s[-1] else float(
            times_s[-1] + (times_s[-1] - times_s[0]) / (n_available - 1)
        )
        targets = times_s[0] + centres * (span - times_s[0])
        # The frame on screen at t is the last one that started at or before t. A small tolerance
        # keeps exact segment centres that land on a frame boundary from rounding down.
        picked = np.searchsorted(times_s, targets + 1e-9, side="right") - 1
    else:
        picked = np.floor(centres * n_available + 1e-9).astype(np.int64)
    return [int(i) for i in np.clip(picked, 0, n_available - 1)]


@dataclass
class _DecodeResult:
    kept: dict[int, np.ndarray]
    n_frames: int
    times_s: np.ndarray | None
    failure: BaseException | None


def _decode_selected(
    data: bytes, wanted: list[int], spec: VideoSpec, budget: _Budget
) -> _DecodeResult:
    """Decode every frame of the clip's video stream, keeping as grayscale only the wanted ones.

    A bad packet is skipped and reading stops at a cut, as a player would; what decoded is kept.
    """
    wanted_set = set(wanted)
    kept: dict[int, np.ndarray] = {}
    pts: list[int | None] = []
    failure: BaseException | None = None

    def take(frame: Any) -> None:
        i = len(pts)
        pts.append(frame.pts)
        if len(pts) > spec.max_frames:
            raise _too_long(spec, f"has more than {spec.max_frames} frames")
        _check_frame_size(int(frame.width), int(frame.height), spec)
        budget.charge(frame)
        if i in wanted_set:
            kept[i] = _to_gray(frame)

    with _open(data) as container:
        stream = _video_stream(container, "video")
        time_base = float(stream.time_base) if stream.time_base else 0.0
        try:
            for packet in container.demux(stream):
                budget.check_time()
                try:
                    for frame in packet.decode():
                        take(frame)
                except MediaDecodeError:
                    raise
                except _DECODE_ERRORS as exc:
                    failure = exc
        except MediaDecodeError:
            raise
        except _DECODE_ERRORS as exc:  # reading stopped at a cut: flush what the decoder holds
            failure = exc
            try:
                for frame in stream.codec_context.decode(None):
                    take(frame)
            except MediaDecodeError:
                raise
            except _DECODE_ERRORS:
                pass
    times_s: np.ndarray | None = None
    if len(pts) > 0 and time_base > 0 and all(p is not None for p in pts):
        raw = np.asarray(pts, dtype=np.int64)
        if np.all(np.diff(raw) > 0):  # frames came out in presentation order, as they should
            times_s = (raw - raw[0]) * time_base
    return _DecodeResult(kept, len(pts), times_s, failure)


@dataclass(frozen=True)
class _Plan:
    """Runs of frames (first, last), by presentation index, that decoding goes through: each run
    after the first frame of the clip starts at a keyframe, reached by seeking."""

    runs: tuple[tuple[int, int], ...]

    @property
    def n_frames(self) -> int:
        return sum(last - first + 1 for first, last in self.runs)


def _plan(index: _PacketIndex, wanted: list[int]) -> _Plan | None:
    """The fewest frames to decode to reach the wanted ones: from the keyframe at or before
    each (or on from the previous one when no keyframe lies between), ending at the last.

    None when the index cannot guide decoding: a frame without a timestamp, two frames with the
    same one, or a file whose reading failed part-way.
    """
    pts = index.pts
    if pts is None or index.read_failed or len(pts) != index.n_packets or len(pts) == 0:
        return None
    if np.any(np.diff(pts) <= 0):
        return None
    at = np.searchsorted(pts, np.asarray(index.key_pts, dtype=np.int64))
    keys = np.unique(at[(at < len(pts)) & (pts[np.minimum(at, len(pts) - 1)] == index.key_pts)])
    runs: list[tuple[int, int]] = []
    for target in sorted(set(wanted)):
        before = keys[keys <= target]
        start = int(before[-1]) if before.size else 0
        if runs and start <= runs[-1][1]:
            runs[-1] = (runs[-1][0], target)  # decoding on from the last run costs no more
        else:
            runs.append((start, target))
    return _Plan(tuple(runs))


def _decode_planned(data: bytes, plan: _Plan, index: _PacketIndex, wanted: set[int],
                    spec: VideoSpec, budget: _Budget) -> dict[int, np.ndarray] | None:
    """Decode the plan's runs, keeping the wanted frames as grayscale; None when the decoder does
    not give the frames the index promised (hidden frames, a keyframe that is not one), so the
    caller decodes everything instead.

    Frames are told apart by timestamp. After a seek the decoder starts at the keyframe; frames
    it shows from before it (an open GOP's leading frames) are skipped, not counted.
    """
    pts = index.pts
    assert pts is not None
    kept: dict[int, np.ndarray] = {}
    try:
        with _open(data) as container:
            stream = _video_stream(container, "video")
            for first, last in plan.runs:
                if first > 0:
                    container.seek(int(pts[first]), stream=stream, backward=True,
                                   any_frame=False)
                expect = first
                for packet in container.demux(stream):
                    budget.check_time()
                    for frame in packet.decode():
                        budget.charge(frame)
                        _check_frame_size(int(frame.width), int(frame.height), spec)
                        if frame.pts is None:
                            return None
                        if frame.pts < pts[expect] and expect == first:
                            continue
                        if frame.pts != pts[expect]:
                            return None
                        if expect in wanted:
                            kept[expect] = _to_gray(frame)
                        expect += 1
                        if expect > last:
                            break
                    if expect > last:
                        break
                if expect <= last:  # the stream ended before the run did
                    return None
    except MediaDecodeError:
        raise
    except _DECODE_ERRORS:
        return None
    return kept


def _to_gray(frame: Any) -> np.ndarray:
    gray = np.ascontiguousarray(frame.to_ndarray(format="gray"), dtype=np.uint8)
    try:
        rotation = int(frame.rotation or 0)
    except _DECODE_ERRORS:
        rotation = 0
    quarter_turns = round(rotation / 90) % 4  # counter-clockwise, as np.rot90 counts
    if quarter_turns:
        gray = np.ascontiguousarray(np.rot90(gray, k=quarter_turns))
    return gray


def _fallback_duration(container: Any, stream: Any) -> Callable[[int], float]:
    """How long a clip of n frames lasts when its frames carry no usable timestamps: the header's
    duration, else n frames at the stream's frame rate, else 0."""
    header_s = float(container.duration) / av.time_base if container.duration else 0.0
    rate = stream.average_rate or stream.guessed_rate
    frame_s = 1.0 / float(rate) if rate else 0.0
    return lambda n_frames: header_s or n_frames * frame_s


# ------------------------------------------------------------------------------------------- faces

_local = threading.local()


def _load_cascade() -> Any:
    """The frontal-face Haar cascade, loaded once per thread (OpenCV does not promise that one
    classifier may detect in several threads at once; the API's thread pool runs several)."""
    cascade = getattr(_local, "cascade", None)
    if cascade is not None:
        return cascade
    classifier = getattr(cv2, "CascadeClassifier", None)
    folder = getattr(getattr(cv2, "data", None), "haarcascades", "")
    path = Path(folder) / _CASCADE_FILE if folder else None
    if classifier is None or path is None or not path.is_file():
        missing = "no CascadeClassifier" if classifier is None else f"no {_CASCADE_FILE}"
        raise RuntimeError(
            f"OpenCV {cv2.__version__} has no frontal-face Haar cascade ({missing}): OpenCV 5 "
            f"moved it out of the main package; install opencv-python-headless>=4.8,<5"
        )
    cascade = classifier(str(path))
    if cascade.empty():
        raise RuntimeError(f"OpenCV could not load the Haar cascade {path}")
    _local.cascade = cascade
    return cascade


def face_detector_available() -> bool:
    """Whether this OpenCV ships the frontal-face Haar cascade that `crop_faces` needs."""
    try:
        _load_cascade()
    except RuntimeError:
        return False
    return True


def _detect_largest_face(frame: np.ndarray) -> np.ndarray | None:
    """The largest face in one grayscale frame as (x, y, w, h) in frame pixels, or None."""
    height, width = frame.shape
    scale = min(1.0, _DETECT_SHORT_SIDE_PX / min(height, width))
    small = frame if scale == 1.0 else cv2.resize(
        frame, (max(1, round(width * scale)), max(1, round(height * scale))),
        interpolation=cv2.INTER_AREA,
    )
    min_side = max(24, round(_MIN_FACE_FRACTION * min(small.shape)))
    boxes = _load_cascade().detectMultiScale(
        small, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side)
    )
    if len(boxes) == 0:
        return None
    box = max(np.asarray(boxes, dtype=np.float64), key=lambda b: b[2] * b[3])
    return box / scale


_OUTLIER_SIZE_RATIO = 1.5


def _agree(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two face boxes (x, y, w, h) could be the same face a moment apart."""
    if not 1 / _OUTLIER_SIZE_RATIO <= float(a[2]) / float(b[2]) <= _OUTLIER_SIZE_RATIO:
        return False
    offset = (a[:2] + a[2:] / 2) - (b[:2] + b[2:] / 2)
    return bool(np.hypot(*offset) < max(float(a[2]), float(b[2])))


def locate_faces(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where to crop each frame: boxes (n, 4) float64 as (x, y, w, h), and a bool mask of the
    frames where a face was detected.

    With three or more detections, those that disagree with the clip's consensus are dropped as
    false hits (an eye, a patch of texture): within a few seconds a face neither jumps nor changes
    size much. The consensus is the detection that agrees with the most others (the larger on a
    tie), two boxes agreeing when their sizes are within `_OUTLIER_SIZE_RATIO` of each other and
    their centres less than one face width apart. Frames without a face take the
    box of the nearest frame with one (the earlier on a tie). With no face anywhere, every box is
    the frame's centre square and the mask is all False.
    """
    frames = _check_frames(frames)
    n, height, width = frames.shape
    detected = [_detect_largest_face(frame) for frame in frames]
    hits = [box for box in detected if box is not None]
    if len(hits) >= 3:
        anchor = max(hits, key=lambda a: (sum(_agree(a, b) for b in hits), a[2] * a[3]))
        detected = [box if box is not None and _agree(box, anchor) else None for box in detected]
    found = np.array([box is not None for box in detected], dtype=bool)
    boxes = np.empty((n, 4), dtype=np.float64)
    if not found.any():
        side = min(height, width)
        boxes[:] = ((width - side) / 2, (height - side) / 2, side, side)
        return boxes, found
    with_face = np.flatnonzero(found)
    for i in range(n):
        nearest = with_face[np.argmin(np.abs(with_face - i))]  # argmin takes the first on a tie
        box = detected[nearest]
        assert box is not None
        boxes[i] = box
    return boxes, found


def crop_faces(frames: np.ndarray, spec: VideoSpec = DEFAULT_SPEC) -> tuple[np.ndarray, bool]:
    """Face crops of each frame: (n, face_size_px, face_size_px) float32 in [0, 1], and whether
    any frame had a face (if not, the crops are centre squares)."""
    frames = _check_frames(frames)
    boxes, found = locate_faces(frames)
    size = spec.face_size_px
    crops = np.empty((len(frames), size, size), dtype=np.uint8)
    for i, (frame, box) in enumerate(zip(frames, boxes, strict=True)):
        scale = FACE_BOX_SCALE if found.any() else 1.0
        crops[i] = _crop_square(frame, box, scale, size)
    return face_pixels_to_float(crops), bool(found.any())


def _crop_square(frame: np.ndarray, box: np.ndarray, scale: float, size: int) -> np.ndarray:
    x, y, w, h = (float(v) for v in box)
    side = max(1, round(max(w, h) * scale))
    centre = (x + w / 2 - 0.5, y + h / 2 - 0.5)  # pixel centres sit at integer coordinates
    # getRectSubPix replicates the border where the grown box leaves the frame, keeping the face
    # centred and its aspect ratio intact.
    patch = cv2.getRectSubPix(frame, (side, side), centre)
    interpolation = cv2.INTER_AREA if side >= size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interpolation)


def face_pixels_to_float(faces: np.ndarray) -> np.ndarray:
    """uint8 face crops → float32 in [0, 1]: how FER-2013's 48x48 faces enter training too."""
    return np.asarray(faces, dtype=np.float32) / np.float32(255.0)


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.dtype != np.uint8 or 0 in frames.shape:
        raise ValueError(
            f"frames must be a non-empty (n, H, W) uint8 grayscale array, got {frames.dtype} "
            f"{frames.shape}"
        )
    return np.ascontiguousarray(frames)


# ------------------------------------------------------------------------------------------ public


def video_features(
    data: bytes, spec: VideoSpec = DEFAULT_SPEC, *, clock: Clock = time.monotonic
) -> VideoInput:
    """Bytes of a clip → `VideoInput` (face crops of `spec.n_frames` uniformly sampled frames).

    Raises `MediaDecodeError` (modality "video") for input that is not a usable video.
    """
    decoded = _decode(data, spec, clock)
    try:
        faces, found = crop_faces(decoded.frames, spec)
    except cv2.error as exc:  # OpenCV on a frame it cannot handle: the caller's input, not a bug
        raise _error(
            "unsupported_format", f"the video's frames cannot be processed ({exc})"
        ) from None
    return VideoInput(faces, found, decoded.duration_s, decoded.n_decoded_frames)


def batch_faces(inputs: Sequence[VideoInput], spec: VideoSpec = DEFAULT_SPEC) -> np.ndarray:
    """Stack clips into the model's video input: (B, n_frames, size, size) float32.

    An empty batch is (0, spec.n_frames, spec.face_size_px, spec.face_size_px).
    """
    if not inputs:
        size = spec.face_size_px
        return np.zeros((0, spec.n_frames, size, size), dtype=np.float32)
    shapes = {item.faces.shape for item in inputs}
    if len(shapes) != 1:
        raise ValueError(
            f"every clip in a batch must have the same faces shape, got {sorted(shapes)}: "
            f"decode them with one VideoSpec"
        )
    return np.stack([item.faces for item in inputs]).astype(np.float32, copy=False)
