"""Reliability under faults, overload and hostile input: one table row per scenario.

Each scenario starts its own `libra-serve` (the shipped server: uvicorn on uvloop, real worker
processes, the real local serverless pool, a real `redis-server` where it needs one), drives it
over loopback with an open-loop client, injects one fault, and reports what clients saw:

    sent, 2xx, 4xx, 429/503, 5xx, no answer, p50/p99 of the 2xx (timed from each request's
    scheduled arrival, so client-side queueing counts) and the server's own p99 for them (the
    answer's `latency_ms`: the difference is time spent before the app saw the request), the
    slowest /healthz on the health port (`--health-port`, what load balancers probe) and on the
    main port (each polled every 100 ms from a thread of its own, so the client's busy event
    loop is not timed), the latest controller tick, the API process's RSS growth, whether (and
    how fast) the server recovered once the fault was removed, and the load average.

Targets (issue 15): 0 without an answer, 0 5xx except a 502 after the retry also failed,
/healthz under 50 ms, admitted p99 under 2x the SLA during overload, RSS growth under 200 MB for
a decode bomb, ticks never more than 2 s late, all recovered.

    python bench/reliability.py                       # every scenario, ~10 minutes
    python bench/reliability.py --only overload-1000 --only redis-hung
    python bench/reliability.py --markdown docs/reliability-table.md

Nothing is asserted; the figures go to docs/reliability.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import http.client
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvloop

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench.hostile_media: the one builder of the decode bombs
MODEL_DIR = REPO / "artifacts" / "onnx"
TEXT = {"text": "I can't believe you did that, this is wonderful!"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children_of(pid: int) -> set[int]:
    """Every process below `pid` (from /proc)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                for kid in map(int, (task / "children").read_text().split()):
                    if kid not in found:
                        found.add(kid)
                        todo.append(kid)
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Redis:
    """A real redis-server on a free port that a scenario may stop, freeze and restart."""

    def __init__(self, tmp: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            sys.exit("needs redis-server (apt-get install redis-server)")
        self.binary, self.tmp, self.port = binary, tmp, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.tmp)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port),
                                                                        0.2):
                return
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(10)

    def freeze(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


class Serve:
    """`libra-serve` as a user starts it, in its own process, with a health port."""

    def __init__(self, tmp: Path, *args: str, env: dict[str, str] | None = None,
                 wait_workers: int = 0) -> None:
        self.port, self.health_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"serve-{self.port}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "libra.serving.cli", "--port", str(self.port), "--model-dir",
             str(MODEL_DIR), "--health-port", str(self.health_port), *args], cwd=REPO,
            stdout=self.log_path.open("wb"),
            stderr=subprocess.STDOUT,
            env={**os.environ, "LIBRA_LOG_DIR": str(tmp), **(env or {})})
        deadline = time.monotonic() + 180
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                sys.exit(f"libra-serve did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        while wait_workers and len(self.status().get("workers", [])) < wait_workers:
            if time.monotonic() > deadline:
                sys.exit("workers never became ready")
            time.sleep(0.2)

    def status(self) -> dict[str, Any]:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            return dict(httpx.get(f"{self.url}/status", timeout=5).json())
        return {}

    def children(self, marker: str) -> list[int]:
        return sorted(p for p in children_of(self.proc.pid) if marker in cmdline(p))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@dataclass
class Outcome:
    status: int | None  # None: no answer
    latency_s: float
    retry_after: bool = False
    code: str = ""
    server_s: float | None = None
    """The server's own time for a 200 (its `latency_ms`: from the handler's start)."""


@dataclass
class Row:
    scenario: str
    outcomes: list[Outcome] = field(default_factory=list)
    healthz_max_ms: float = 0.0
    main_healthz_max_ms: float = 0.0
    tick_late_max_s: float = 0.0
    rss_growth_mb: float = 0.0
    recovered: bool | None = None
    recovery_s: float | None = None
    note: str = ""
    load: float = 0.0

    def cells(self) -> list[str]:
        statuses = [o.status for o in self.outcomes]
        ok = sorted(o.latency_s for o in self.outcomes if o.status is not None
                    and 200 <= o.status < 300)
        shed = [o for o in self.outcomes if o.status in (429, 503)]
        p50 = f"{1000 * statistics.median(ok):.0f}" if ok else "-"
        p99 = f"{1000 * ok[min(len(ok) - 1, int(0.99 * len(ok)))]:.0f}" if ok else "-"
        own = sorted(o.server_s for o in self.outcomes if o.server_s is not None)
        own_p99 = f"{1000 * own[min(len(own) - 1, int(0.99 * len(own)))]:.0f}" if own else "-"
        recovered = ("-" if self.recovered is None else
                     "yes" if self.recovered else "NO") + (
            f" ({self.recovery_s:.1f} s)" if self.recovered and self.recovery_s is not None
            else "")
        fivexx = [s for s in statuses if s is not None and s >= 500 and s != 503]
        return [self.scenario, str(len(statuses)),
                str(sum(s is not None and 200 <= s < 300 for s in statuses)),
                str(sum(s is not None and 400 <= s < 500 and s != 429 for s in statuses)),
                f"{len(shed)}" + ("" if all(o.retry_after for o in shed) else " (no Retry-After)"),
                str(len(fivexx)), str(sum(s is None for s in statuses)), p50, p99, own_p99,
                f"{self.healthz_max_ms:.0f}", f"{self.main_healthz_max_ms:.0f}",
                f"{self.tick_late_max_s:.1f}", f"{self.rss_growth_mb:.0f}", recovered,
                f"{self.load:.1f}"]


HEADER = ["scenario", "sent", "2xx", "4xx", "429/503", "5xx", "no answer", "p50 ms", "p99 ms",
          "server p99 ms", "healthz max ms (health port)", "main /healthz max ms",
          "tick late max s", "RSS growth MB", "recovered", "load avg"]


class Probe(threading.Thread):
    """GET /healthz every 100 ms on its own connection, from a thread of its own (blocking
    http.client): the client's event loop, busy sending a burst, must not be timed as the
    server's. A probe that fails counts its time up to the failure."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.max_s = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            t0 = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn.request("GET", "/healthz")
                conn.getresponse().read()
            conn.close()
            self.max_s = max(self.max_s, time.perf_counter() - t0)
            self.stop.wait(0.1)


class Watch:
    """Background probes for one scenario: /healthz every 100 ms on the health port and on the
    main port, the API's RSS, and how late the controller's ticks run (the server's own gauge,
    from /metrics)."""

    def __init__(self, serve: Serve) -> None:
        self.serve = serve
        self.health = Probe(serve.health_port)
        self.main = Probe(serve.port)
        self.rss_start = rss_mb(serve.proc.pid)
        self.rss_max = self.rss_start
        self.tick_late_max_s = 0.0
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Watch:
        self.health.start()
        self.main.start()
        self._tasks = [asyncio.ensure_future(self._rss()), asyncio.ensure_future(self._ticks())]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for probe in (self.health, self.main):
            probe.stop.set()
            probe.join(60)

    async def _rss(self) -> None:
        while True:
            self.rss_max = max(self.rss_max, rss_mb(self.serve.proc.pid))
            await asyncio.sleep(0.1)

    async def _ticks(self) -> None:
        """The server's own figure: `libra_control_tick_late_seconds`, how late the tick that
        just started was, scraped every 0.25 s (the max over the run)."""
        async with httpx.AsyncClient(timeout=30) as client:
            while True:
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    text = (await client.get(f"{self.serve.url}/metrics")).text
                    for line in text.splitlines():
                        if line.startswith("libra_control_tick_late_seconds "):
                            self.tick_late_max_s = max(self.tick_late_max_s,
                                                       float(line.split()[1]))
                await asyncio.sleep(0.25)

    def into(self, row: Row) -> Row:
        row.healthz_max_ms = 1000 * self.health.max_s
        row.main_healthz_max_ms = 1000 * self.main.max_s
        row.load = os.getloadavg()[0]
        row.rss_growth_mb = max(0.0, self.rss_max - self.rss_start)
        row.tick_late_max_s = max(0.0, self.tick_late_max_s)
        return row


async def post_raw(host: str, port: int, body: bytes, timeout_s: float = 60.0
                   ) -> tuple[int, dict[str, str], bytes]:
    """One POST /predict on its own connection, on raw asyncio streams.

    Why not httpx: a thousand concurrent httpx requests cost the client more CPU than the server
    spends on them on a 2-core machine, and the client's own queueing would then be measured as
    the server's latency."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    try:
        writer.write((f"POST /predict HTTP/1.1\r\nHost: {host}\r\n"
                      f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
                      "connection: close\r\n\r\n").encode() + body)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout_s)
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:] if ":" in line)}
        length = int(headers.get("content-length", "0"))
        payload = await asyncio.wait_for(reader.readexactly(length), timeout_s)
        return int(lines[0].split()[1]), headers, payload
    finally:
        writer.close()


async def send(url: str, at_s: float, start: float, body: dict[str, Any] | bytes) -> Outcome:
    """One request at its scheduled time; latency counts from the schedule."""
    delay = at_s - (time.perf_counter() - start)
    if delay > 0:
        await asyncio.sleep(delay)
    scheduled = start + at_s
    host, port = url.removeprefix("http://").split(":")
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    try:
        status, headers, payload = await post_raw(host, int(port), raw)
    except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError, IndexError):
        return Outcome(None, time.perf_counter() - scheduled)
    code, server_s = "", None
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        answer = json.loads(payload)
        code = str(answer.get("code", ""))
        if status == 200:
            server_s = float(answer["latency_ms"]) / 1000
    return Outcome(status, time.perf_counter() - scheduled, "retry-after" in headers, code,
                   server_s)


async def stream(url: str, rate_rps: float, seconds: float,
                 body: Callable[[int], dict[str, Any] | bytes] = lambda i: TEXT,
                 seed: int = 0) -> list[Outcome]:
    """An open-loop Poisson stream; returns every request's outcome."""
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.exponential(1 / rate_rps, int(rate_rps * seconds * 1.3) + 10))
    times = times[times < seconds]
    start = time.perf_counter()
    return list(await asyncio.gather(*(send(url, float(t), start, body(i))
                                       for i, t in enumerate(times))))


async def status_of(url: str) -> dict[str, Any]:
    """/status without blocking the client's event loop (it is sending load meanwhile)."""
    with contextlib.suppress(httpx.HTTPError, ValueError):
        async with httpx.AsyncClient(timeout=5) as client:
            return dict((await client.get(f"{url}/status")).json())
    return {}


async def fleet_ready(url: str, n: int) -> bool:
    return (await status_of(url)).get("fleet", {}).get("ready") == n


async def store_ok(url: str) -> bool:
    state = (await status_of(url)).get("rate_store", {})
    return not isinstance(state, dict) or state.get("state", "ok") == "ok"


async def recover(url: str, condition: Callable[[str], Awaitable[bool]] | None = None,
                  deadline_s: float = 120) -> tuple[bool, float]:
    """Seconds from now (the fault, or its removal) until a text request is answered 200 and
    `condition(url)` holds; started as a task so it runs while the load goes on."""
    t0 = time.monotonic()
    async with httpx.AsyncClient(timeout=10) as client:
        while time.monotonic() - t0 < deadline_s:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.post(f"{url}/predict", json=TEXT)).status_code == 200 \
                        and (condition is None or await condition(url)):
                    return True, time.monotonic() - t0
            await asyncio.sleep(0.2)
    return False, deadline_s


def at(delay_s: float, action: Callable[[], object]) -> Awaitable[None]:
    async def run() -> None:
        await asyncio.sleep(delay_s)
        action()
    return run()


# ---------------------------------------------------------------- media

def encode_video(frames: np.ndarray, fps: int = 10, codec: str = "libx264") -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def small_video() -> str:
    frames = np.random.default_rng(0).integers(0, 255, (24, 64, 64, 3)).astype(np.uint8)
    return base64.b64encode(encode_video(frames)).decode()


def hostile_corpus() -> list[tuple[str, bytes]]:
    """Bodies a hostile or broken client sends (raw JSON bytes), from bench/hostile_media.py."""
    from bench.hostile_media import hostile_json

    return [(name, body) for name, body, _, _ in hostile_json()]


# ---------------------------------------------------------------- scenarios

async def video_cold_starts(tmp: Path) -> Row:
    serve = Serve(tmp, "--policy", "libra", "--initial-vms", "0", "--sla-s", "0.5",
                  "--serverless-keep-alive-s", "1")
    row = Row("video + cold/warm-start cycles (x10)")
    video = small_video()
    try:
        async with Watch(serve) as watch:
            for _ in range(10):
                start = time.perf_counter()
                outs = [await send(serve.url, 0, start, {"video": video,
                                                                 "text": "look"})]
                outs += await asyncio.gather(*(send(serve.url, 0, time.perf_counter(),
                                                    TEXT) for _ in range(4)))
                row.outcomes += outs
                await asyncio.sleep(1.5)  # past the keep-alive: the next burst cold-starts
            row.recovered, row.recovery_s = await recover(serve.url)
        status = await status_of(serve.url)
        row.note = f"cold starts {status.get('serverless', {}).get('cold_starts')}"
        return watch.into(row)
    finally:
        serve.stop()


async def kill_vm_worker(tmp: Path) -> Row:
    """`libra` with one VM: the killed worker's requests are retried on serverless, the policy
    spills meanwhile, and the provisioner replaces the worker (recovered: fleet whole again)."""
    serve = Serve(tmp, "--policy", "libra", "--initial-vms", "1", wait_workers=1)
    row = Row("kill -9 the VM worker under load")
    try:
        async with Watch(serve) as watch:
            victim = serve.children("handlers.worker")[0]
            load = asyncio.ensure_future(stream(serve.url, 20, 40))
            await at(5, lambda: os.kill(victim, signal.SIGKILL))
            healed = asyncio.ensure_future(recover(serve.url, lambda u: fleet_ready(u, 1)))
            row.outcomes = await load
            row.recovered, row.recovery_s = await healed
        return watch.into(row)
    finally:
        serve.stop()


async def kill_serverless_instance(tmp: Path) -> Row:
    serve = Serve(tmp, "--policy", "serverless", "--initial-vms", "0")
    row = Row("kill -9 a busy serverless instance")
    try:
        async with Watch(serve) as watch:
            load = asyncio.ensure_future(stream(serve.url, 20, 15))
            await asyncio.sleep(5)
            for pid in serve.children("handlers.lambda_local")[:1]:
                os.kill(pid, signal.SIGKILL)
            healed = asyncio.ensure_future(recover(serve.url))
            row.outcomes = await load
            row.recovered, row.recovery_s = await healed
        return watch.into(row)
    finally:
        serve.stop()


async def redis_fault(tmp: Path, hang: bool) -> Row:
    redis = Redis(tmp)
    serve = Serve(tmp, "--policy", "libra", "--initial-vms", "1",
                  env={"LIBRA_REDIS_URL": redis.url}, wait_workers=1)
    row = Row("Redis hung (SIGSTOP 10 s)" if hang else "Redis stopped 10 s, restarted")
    try:
        async with Watch(serve) as watch:
            load = asyncio.ensure_future(stream(serve.url, 20, 25))
            await asyncio.sleep(5)
            redis.freeze() if hang else redis.stop()
            await asyncio.sleep(10)
            redis.thaw() if hang else redis.start()
            healed = asyncio.ensure_future(recover(serve.url, store_ok))
            row.outcomes = await load
            row.recovered, row.recovery_s = await healed
        return watch.into(row)
    finally:
        serve.stop()
        redis.stop()


async def overload_concurrent(tmp: Path, n: int = 1000) -> Row:
    serve = Serve(tmp, "--policy", "libra", "--initial-vms", "1", wait_workers=1)
    row = Row(f"overload: {n} concurrent")
    try:
        async with Watch(serve) as watch:
            start = time.perf_counter()
            row.outcomes = list(await asyncio.gather(
                *(send(serve.url, 0, start, TEXT) for _ in range(n))))
            row.recovered, row.recovery_s = await recover(serve.url)
        return watch.into(row)
    finally:
        serve.stop()


async def measure_capacity(url: str, seconds: float = 6, connections: int = 32) -> float:
    """Closed-loop throughput of the server as configured (req/s)."""
    done = 0
    stop = time.perf_counter() + seconds

    async def loop(client: httpx.AsyncClient) -> None:
        nonlocal done
        while time.perf_counter() < stop:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.post(f"{url}/predict", json=TEXT)).status_code == 200:
                    done += 1

    async with httpx.AsyncClient(timeout=30) as client:
        await asyncio.gather(*(loop(client) for _ in range(connections)))
    return done / seconds


async def overload_sustained(tmp: Path, factor: float = 3.0, seconds: float = 30) -> Row:
    serve = Serve(tmp, "--policy", "vm-static", "--policy-params", '{"fleet_size": 1}',
                  "--initial-vms", "1", wait_workers=1)
    try:
        capacity = await measure_capacity(serve.url)
        rate = factor * capacity
        row = Row(f"overload: {factor:.0f}x capacity ({rate:.0f} req/s) for {seconds:.0f} s")
        row.note = f"measured capacity {capacity:.0f} req/s (1 worker, closed loop)"
        async with Watch(serve) as watch:
            row.outcomes = await stream(serve.url, rate, seconds)
            row.recovered, row.recovery_s = await recover(serve.url)
        return watch.into(row)
    finally:
        serve.stop()


async def decode_bombs(tmp: Path) -> Row:
    from bench.hostile_media import flac_bomb, frame_bomb

    flac = base64.b64encode(flac_bomb()).decode()
    video = base64.b64encode(frame_bomb()).decode()
    serve = Serve(tmp, "--policy", "vm-static", "--policy-params", '{"fleet_size": 1}',
                  "--initial-vms", "1", wait_workers=1)
    row = Row("decode bombs (4 FLAC, 2 video) beside a text stream")
    try:
        async with Watch(serve) as watch:
            load = asyncio.ensure_future(stream(serve.url, 10, 20))
            await asyncio.sleep(3)
            start = time.perf_counter()
            bombs = await asyncio.gather(
                *(send(serve.url, 0, start, {"audio": flac}) for _ in range(4)),
                *(send(serve.url, 0, start, {"video": video}) for _ in range(2)))
            row.outcomes = await load + list(bombs)
            row.note = "bombs answered " + ", ".join(
                f"{o.status} {o.code}" for o in bombs)
            row.recovered, row.recovery_s = await recover(serve.url)
        return watch.into(row)
    finally:
        serve.stop()


async def slow_bodies(tmp: Path, n: int = 200) -> Row:
    serve = Serve(tmp, "--policy", "vm-static", "--policy-params", '{"fleet_size": 1}',
                  "--initial-vms", "1", wait_workers=1)
    row = Row(f"slow bodies ({n} stalled half-sent) beside a text stream")
    host, port = "127.0.0.1", serve.port
    head = (f"POST /predict HTTP/1.1\r\nHost: {host}\r\ncontent-type: application/json\r\n"
            f"content-length: 100000\r\n\r\n").encode() + b'{"text": "' + b"a" * 1000
    try:
        async with Watch(serve) as watch:
            conns = []
            for _ in range(n):
                with contextlib.suppress(OSError):
                    reader, writer = await asyncio.open_connection(host, port)
                    writer.write(head)
                    conns.append((reader, writer))
            row.outcomes = await stream(serve.url, 10, 15)
            closed = 0
            t0 = time.monotonic()
            for reader, _ in conns:
                left = max(0.1, 60 - (time.monotonic() - t0))
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(reader.read(), left)
                    closed += 1
            row.note = (f"{closed} of {len(conns)} stalled connections answered or closed "
                        f"by the server within {time.monotonic() - t0 + 15:.0f} s")
            for _, writer in conns:
                writer.close()
            row.recovered, row.recovery_s = await recover(serve.url)
        return watch.into(row)
    finally:
        serve.stop()


async def hostile(tmp: Path) -> Row:
    serve = Serve(tmp, "--policy", "vm-static", "--policy-params", '{"fleet_size": 1}',
                  "--initial-vms", "1", wait_workers=1)
    row = Row("hostile corpus (x3 each)")
    try:
        async with Watch(serve) as watch:
            corpus = hostile_corpus() * 3
            start = time.perf_counter()
            row.outcomes = list(await asyncio.gather(
                *(send(serve.url, 0, start, body) for _, body in corpus)))
            row.note = "; ".join(f"{name}: {o.status} {o.code}" for (name, _), o in
                                 zip(corpus[:len(corpus) // 3], row.outcomes, strict=False))
            row.recovered, row.recovery_s = await recover(serve.url)
        return watch.into(row)
    finally:
        serve.stop()


SCENARIOS: dict[str, Callable[[Path], Awaitable[Row]]] = {
    "video-cold-starts": video_cold_starts,
    "kill-vm-worker": kill_vm_worker,
    "kill-serverless": kill_serverless_instance,
    "redis-restart": lambda tmp: redis_fault(tmp, hang=False),
    "redis-hung": lambda tmp: redis_fault(tmp, hang=True),
    "overload-1000": overload_concurrent,
    "overload-3x": overload_sustained,
    "decode-bombs": decode_bombs,
    "slow-bodies": slow_bodies,
    "hostile": hostile,
}


def refusals(row: Row) -> str:
    """The codes of the 5xx and 503 answers, with counts ("503 over_capacity x 12")."""
    counts: dict[str, int] = {}
    for o in row.outcomes:
        if o.status is not None and o.status >= 500:
            key = f"{o.status} {o.code or '?'}"
            counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k} x {n}" for k, n in sorted(counts.items()))


def markdown(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    notes = [f"- {r.scenario}: " + "; ".join(filter(None, [r.note, refusals(r)]))
             for r in rows if r.note or refusals(r)]
    return "\n".join([*lines, *(["", *notes] if notes else [])]) + "\n"


async def main_async(names: list[str], out: Path | None) -> None:
    if not (MODEL_DIR / "manifest.json").is_file():
        sys.exit(f"no model in {MODEL_DIR}: run `libra-model build` first")
    rows = []
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.monotonic()
            row = await SCENARIOS[name](Path(tmp))
            rows.append(row)
            print(f"{name}: {time.monotonic() - t0:.0f} s  " + " | ".join(row.cells()),
                  flush=True)
    table = markdown(rows)
    print(f"\nload average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs\n")
    print(table)
    if out is not None:
        out.write_text(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS),
                        help="run only these scenarios (repeatable)")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    uvloop.install()
    asyncio.run(main_async(args.only or list(SCENARIOS), args.markdown))


if __name__ == "__main__":
    main()
