"""Hostile input, built on the fly: decode bombs, truncated files, JSON a parser chokes on.

The builders are shared by the tests (`tests/unit/test_inputs_hostile.py`,
`tests/e2e/test_serve_hostile.py`) and by benchmarks (`bench/reliability.py` may import them):

    flac_bomb()          59 s of 8-channel 384 kHz silence: 197 KB as FLAC, 725 MB as float32
    frame_bomb()         14,000 black 1080p frames at 240 fps in H.264: under 1 MB, built in
                         well under a second (one frame encoded, its packet repeated)
    truncated(data)      the first part of a file
    hostile_json()       bodies with the status and code the API must answer

Run as a script it measures what the bombs cost to decode, each in a fresh process (peak RSS
growth and wall time), with this tree's `libra.runtime.inputs` or an older tree's:

    python bench/hostile_media.py
    git archive beb3b21 | tar -x -C /tmp/libra-beb3b21 && \
        python bench/hostile_media.py --tree /tmp/libra-beb3b21        # before
    python bench/hostile_media.py --serve                               # the API process's RSS

Nothing is asserted: the figures go to docs/inputs.md.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------ builders

def flac_bomb(seconds: float = 59.0, channels: int = 8, rate_hz: int = 384_000) -> bytes:
    """Silence at a high rate on many channels: tiny as FLAC, channels x rate x seconds float32
    samples once decoded (the issue's 197 KB file is the default)."""
    import soundfile as sf

    buf = io.BytesIO()
    whole_s, rest_s = divmod(seconds, 1.0)
    with sf.SoundFile(buf, "w", samplerate=rate_hz, channels=channels, format="FLAC") as out:
        block = np.zeros((rate_hz, channels), dtype=np.int16)
        for _ in range(int(whole_s)):
            out.write(block)
        if rest_s:
            out.write(block[:round(rest_s * rate_hz)])
    return buf.getvalue()


def frame_bomb(n_frames: int = 14_000, width: int = 1920, height: int = 1080,
               fps: int = 240, keyframe_every: int | None = None) -> bytes:
    """`n_frames` black frames in an H.264 MP4: a small file whose full decode is long.

    Encoding 14,000 1080p frames takes minutes, so one keyframe and one inter frame are encoded
    and their packets repeated with new timestamps (FFmpeg decodes every one of them).
    `keyframe_every` repeats the keyframe that often; None: only the first frame is one, so no
    seek can skip the decoding."""
    import av

    src = io.BytesIO()
    with av.open(src, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
        black = av.VideoFrame.from_ndarray(np.zeros((height, width, 3), np.uint8),
                                           format="rgb24").reformat(format="yuv420p")
        for i in range(3):
            black.pts = i
            for packet in stream.encode(black):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    bomb = io.BytesIO()
    with av.open(io.BytesIO(src.getvalue())) as inp:
        template = inp.streams.video[0]
        packets = [p for p in inp.demux(template) if p.size]
        key = bytes(next(p for p in packets if p.is_keyframe))
        inter = bytes([p for p in packets if not p.is_keyframe][-1])
        with av.open(bomb, "w", format="mp4") as out:
            stream = out.add_stream_from_template(template)
            for i in range(n_frames):
                is_key = i == 0 or (keyframe_every is not None and i % keyframe_every == 0)
                packet = av.Packet(key if is_key else inter)
                packet.time_base = Fraction(1, fps)
                packet.pts = packet.dts = i
                packet.duration = 1
                packet.is_keyframe = is_key
                packet.stream = stream
                out.mux(packet)
    return bomb.getvalue()


def truncated(data: bytes, fraction: float = 0.5) -> bytes:
    """The first `fraction` of a file, as a dropped upload leaves it."""
    return data[:max(1, round(len(data) * fraction))]


def hostile_json() -> list[tuple[str, bytes, int, str]]:
    """(name, JSON body, status, code) a client gets for bodies a parser or validator chokes
    on; the media in these are small (bombs are separate)."""
    def body(**fields: object) -> bytes:
        return json.dumps(fields).encode()

    return [
        ("nested 10,000 deep", b'{"text": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", 422,
         "json_too_deep"),
        ("nested 100,000 deep, never closed", b"[" * 100_000, 422, "json_too_deep"),
        ("integer of 5,000 digits", b'{"text": ' + b"9" * 5000 + b"}", 422,
         "json_int_too_long"),
        ("negative integer of 100,000 digits", b'{"audio": -' + b"7" * 100_000 + b"}", 422,
         "json_int_too_long"),
        ("float of 1e999999", b'{"text": 1e999999}', 422, "invalid_field"),
        ("not JSON", b"{this is not json", 422, "bad_json"),
        ("not UTF-8", b'{"text": "\xff\xfe"}', 422, "bad_json"),
        ("a list, not an object", b'["text", "hi"]', 422, "invalid_field"),
        ("text as a number", body(text=42), 422, "invalid_field"),
        ("text as a list", body(text=["hi"]), 422, "invalid_field"),
        ("audio as an object", body(audio={"b64": "AAAA"}), 422, "invalid_field"),
        ("unknown field", body(txt="hi"), 422, "invalid_field"),
        ("nothing to hear", body(), 422, "no_modality"),
        ("base64 garbage", body(audio="!!!not base64!!!"), 422, "bad_base64"),
        ("data: URI without base64", body(audio="data:audio/wav,RIFF"), 422, "bad_base64"),
        ("random bytes as audio", body(audio=base64.b64encode(os.urandom(4000)).decode()), 415,
         "audio_unsupported_format"),
        ("random bytes as video", body(video=base64.b64encode(os.urandom(4000)).decode()), 415,
         "video_unsupported_format"),
        ("text of 100,000 characters", body(text="a" * 100_000), 413, "text_too_long"),
    ]


# --------------------------------------------------------------------------------- measuring

_DECODE = r"""
import resource, sys, time
try:  # trees before the re-layout (beb3b21) first: an editable install maps libra.runtime
    from libra.inputs.audio import audio_features
    from libra.inputs.video import video_features
except ImportError:
    from libra.runtime.inputs.audio import audio_features
    from libra.runtime.inputs.video import video_features
assert audio_features.__code__.co_filename.startswith(sys.argv[3]), audio_features.__code__
data = open(sys.argv[2], "rb").read()
features = audio_features if sys.argv[1] == "audio" else video_features
before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
try:
    features(data)
    outcome = "decoded"
except Exception as exc:
    outcome = getattr(exc, "code", type(exc).__name__)
wall_s = time.perf_counter() - started
grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kb) / 1024
print(f"{outcome}\t{wall_s:.2f}\t{grown_mb:.0f}")
"""


def bombs() -> list[tuple[str, str, bytes]]:
    return [
        ("FLAC 59 s, 8 ch, 384 kHz (197 KB)", "audio", flac_bomb()),
        ("FLAC 60 s, 8 ch, 96 kHz (at the limit)", "audio", flac_bomb(60, 8, 96_000)),
        ("H.264 14,000 black 1080p frames, 1 keyframe", "video", frame_bomb()),
        ("H.264 14,000 black 1080p frames, keyframe every 250", "video",
         frame_bomb(keyframe_every=250)),
        ("H.264 3,000 black 1080p frames, keyframe every 50", "video",
         frame_bomb(3000, keyframe_every=50)),
        ("H.264 14,000 black 64x64 frames, 1 keyframe", "video", frame_bomb(width=64, height=64)),
    ]


def measure_decodes(tree: Path, tmp: Path) -> None:
    print(f"decoding in a fresh process with {tree}'s libra")
    print(f"{'input':55} {'bytes':>9} {'outcome':>18} {'wall s':>7} {'RSS +MB':>8}")
    for name, modality, data in bombs():
        path = tmp / "bomb.bin"
        path.write_bytes(data)
        done = subprocess.run([sys.executable, "-c", _DECODE, modality, str(path), str(tree)],
                              cwd=tree,
                              env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True,
                              text=True, timeout=600, check=False)
        if done.returncode != 0:
            print(f"{name:55} failed: {done.stderr.strip().splitlines()[-1:]}")
            continue
        outcome, wall_s, grown_mb = done.stdout.strip().split("\t")
        print(f"{name:55} {len(data):9d} {outcome:>18} {wall_s:>7} {grown_mb:>8}")


def _rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if ":" in line)
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def measure_server(tmp: Path) -> None:
    """A real `libra-serve`: its RSS before and after each bomb, and what the client saw."""
    import socket

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = (tmp / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "libra.serving.cli", "--port", str(port), "--policy", "vm-static",
         "--policy-params", '{"fleet_size": 1}', "--initial-vms", "1"],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/status").json()["fleet"]["ready"] >= 1:
                    break
            except (httpx.TransportError, KeyError, ValueError):
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError((tmp / "serve.log").read_text()[-2000:])
            time.sleep(0.3)
        httpx.post(f"{url}/predict", json={"text": "warm up"}, timeout=60)
        print(f"the API process of libra-serve (pid {proc.pid})")
        print(f"{'input':55} {'answer':>28} {'s':>6} {'RSS MB':>7} {'peak +MB':>9}")
        for name, modality, data in bombs():
            _, peak_mb = _rss_mb(proc.pid)
            started = time.perf_counter()
            r = httpx.post(f"{url}/predict", timeout=120, files={
                modality: (f"bomb.{'flac' if modality == 'audio' else 'mp4'}", data)})
            wall_s = time.perf_counter() - started
            answer = f"{r.status_code} {r.json().get('code', r.json().get('emotion'))}"
            after_mb, after_peak_mb = _rss_mb(proc.pid)
            print(f"{name:55} {answer:>28} {wall_s:6.2f} {after_mb:7.0f} "
                  f"{after_peak_mb - peak_mb:9.0f}")
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, default=REPO,
                        help="a checkout whose libra decodes (default: this one)")
    parser.add_argument("--serve", action="store_true",
                        help="post the bombs to a real libra-serve and read its RSS")
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        if args.serve:
            measure_server(Path(tmp))
        else:
            measure_decodes(args.tree.resolve(), Path(tmp))


if __name__ == "__main__":
    main()
