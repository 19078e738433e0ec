"""Router overhead: what libra-serve adds to a request, with a backend that costs nothing.

Two servers on loopback, each its own process: `libra-serve` with the no-op serverless driver
(policy `serverless`, no VMs: every request is read, tokenized, packed, routed and answered by
`libra.serving.backends.noop`), and a bare FastAPI/uvicorn app on the same stack that reads the
body and answers a fixed JSON. An open-loop client (Poisson arrivals) drives each at 200 and 1000
req/s in alternating rounds; the overhead is libra's latency minus the bare app's at the same rate,
p50 and p99, medians over rounds. Each server's CPU time per request (from /proc, all its threads)
and the load average are printed beside them: on a shared machine the latencies follow the load,
the CPU per request much less. Nothing is asserted; the figures go to docs/benchmarks.md:

    python bench/router_overhead.py                  # about 2 minutes
    python bench/router_overhead.py --rates 200 --seconds 5 --rounds 1
    python bench/router_overhead.py --rates 1000 --rounds 1 --gc   # + libra's GC pauses
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import uvloop

REPO = Path(__file__).resolve().parents[1]
BARE_APP = '''
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
app = FastAPI()
ANSWER = {"emotion": "neutral", "probabilities": {}, "backend": "none"}
@app.post("/predict")
async def predict(request: Request):
    await request.body()
    return JSONResponse(ANSWER)
@app.get("/readyz")
async def readyz():
    return {"ready": True}
'''


GC_HOOK = '''
import gc, json, os, threading, time
_out, _pauses, _t = os.environ["BENCH_GC_OUT"], [], [0.0]
def _cb(phase, info):
    if phase == "start":
        _t[0] = time.perf_counter()
    else:
        _pauses.append((info["generation"], time.perf_counter() - _t[0], time.time()))
gc.callbacks.append(_cb)
def _dump():
    while True:
        time.sleep(0.5)
        if os.path.exists(_out + ".go"):
            os.remove(_out + ".go")
            with open(_out + ".tmp", "w") as f:
                json.dump({"pauses": _pauses, "tracked": len(gc.get_objects()),
                           "frozen": gc.get_freeze_count()}, f)
            os.replace(_out + ".tmp", _out)
threading.Thread(target=_dump, daemon=True).start()
'''
"""With --gc, a `sitecustomize` for the libra server only: every collection's generation and
pause (gc.callbacks), written out when the bench asks (a file appears)."""


def gc_report(path: Path, since: float) -> str:
    """libra's collections since `since` (time.time()), by generation: count, total, longest."""
    path.with_name(path.name + ".go").touch()
    deadline = time.monotonic() + 10
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    data = json.loads(path.read_text())
    path.unlink()
    parts = []
    for gen in (0, 1, 2):
        ms = [1000 * p for g, p, at in data["pauses"] if g == gen and at >= since]
        parts.append(f"gen{gen} {len(ms)} ({sum(ms):.0f} ms, max {max(ms, default=0):.1f})")
    return (f"libra gc: {', '.join(parts)}; {data['tracked']} objects tracked, "
            f"{data['frozen']} frozen")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system, every thread) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(cmd: list[str], url: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    sys.exit(f"{cmd} did not become ready")


async def drive(url: str, rate_rps: float, seconds: float, seed: int,
                connections: int = 64) -> tuple[list[float], float]:
    """Latencies (s) of an open-loop Poisson run, and the rate actually achieved.

    A small HTTP/1.1 keep-alive client on raw asyncio streams (httpx alone cannot offer 1000
    req/s from one core): arrivals go to a queue that `connections` persistent connections
    drain; latency is from a request's scheduled arrival to its full answer, so time spent
    waiting for a free connection (client-side queueing) counts."""
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"text": "Oh my God, you actually did it!"}).encode()
    request = (f"POST /predict HTTP/1.1\r\nHost: {host}\r\ncontent-type: application/json\r\n"
               f"content-length: {len(body)}\r\n\r\n").encode() + body
    rng = np.random.default_rng(seed)
    offsets = np.cumsum(rng.exponential(1 / rate_rps, int(rate_rps * seconds * 1.2) + 10))
    offsets = offsets[offsets < seconds]
    queue: asyncio.Queue[float | None] = asyncio.Queue()
    latencies: list[float] = []
    failures = 0

    origin = 0.0  # perf_counter() at the schedule's zero, set once warm-up is done

    async def connection() -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection(host, int(port))
        while (at_s := await queue.get()) is not None:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            await reader.readexactly(length)
            if at_s < 0:
                continue  # warm-up
            if head.startswith(b"HTTP/1.1 200"):
                # from the request's scheduled arrival, so waiting for a free connection counts
                latencies.append(time.perf_counter() - (origin + at_s))
            else:
                failures += 1
        writer.close()

    workers = [asyncio.ensure_future(connection()) for _ in range(connections)]
    for _ in range(50):
        queue.put_nowait(-1.0)  # warm up every connection and the server
    while queue.qsize():
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    latencies.clear()
    start = origin = time.perf_counter()
    for at_s in offsets:
        delay = float(at_s) - (time.perf_counter() - start)
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait(float(at_s))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - start
    if failures:
        print(f"  {failures} requests failed at {rate_rps:.0f} req/s")
    return latencies, len(latencies) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[200.0, 1000.0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model-dir", type=Path, default=REPO / "artifacts" / "onnx")
    parser.add_argument("--gc", action="store_true",
                        help="also report libra's garbage collections and pauses per run")
    parser.add_argument("--libra-arg", action="append", default=[],
                        help="one more libra-serve argument (repeatable), to try a setting")
    args = parser.parse_args()
    if not (args.model_dir / "manifest.json").is_file():
        sys.exit(f"{args.model_dir} has no model: run `libra-model build` first")
    libra_port, bare_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "bare_app.py").write_text(BARE_APP)
        gc_env: dict[str, str] = {}
        if args.gc:
            (Path(tmp) / "gc_hook").mkdir()
            (Path(tmp) / "gc_hook" / "sitecustomize.py").write_text(GC_HOOK)
            gc_env = {"BENCH_GC_OUT": f"{tmp}/gc.json",
                      "PYTHONPATH": os.pathsep.join(filter(None, [
                          f"{tmp}/gc_hook", os.environ.get("PYTHONPATH")]))}
        libra = start([sys.executable, "-m", "libra.serving.cli", "--port", str(libra_port),
                       "--model-dir", str(args.model_dir), "--policy", "serverless",
                       "--initial-vms", "0", *args.libra_arg],
                      f"http://127.0.0.1:{libra_port}",
                      {"LIBRA_SERVERLESS_DRIVER": "noop", "LIBRA_LOG_DIR": tmp, **gc_env})
        bare = start([sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(bare_port),
                      "--log-level", "warning", "--app-dir", tmp],
                     f"http://127.0.0.1:{bare_port}", {})
        try:
            print(f"{os.cpu_count()} cores; open-loop Poisson, {args.seconds:.0f} s per run, "
                  f"{args.rounds} rounds (medians)")
            print(f"{'rate':>6} {'achieved':>9} {'bare p50':>9} {'libra p50':>10} "
                  f"{'+p50 ms':>8} {'bare p99':>9} {'libra p99':>10} {'+p99 ms':>8} "
                  f"{'bare CPU':>9} {'libra CPU':>10} {'load':>5}")
            procs = {"bare": bare, "libra": libra}
            for rate in args.rates:
                rows: dict[str, list[tuple[float, ...]]] = {"bare": [], "libra": []}
                for r in range(args.rounds):
                    for name, port in (("bare", bare_port), ("libra", libra_port)):
                        cpu0, since = cpu_s(procs[name].pid), time.time()
                        lat, achieved = uvloop.run(drive(f"http://127.0.0.1:{port}", rate,
                                                          args.seconds, seed=r))
                        # CPU per request includes the 50 warm-up requests: a 1-2% error
                        cpu_ms = 1000 * (cpu_s(procs[name].pid) - cpu0) / (len(lat) + 50)
                        ms = np.array(lat) * 1000
                        rows[name].append((float(np.percentile(ms, 50)),
                                           float(np.percentile(ms, 99)), achieved, cpu_ms,
                                           os.getloadavg()[0]))
                        if args.gc and name == "libra":
                            print(f"  {gc_report(Path(tmp) / 'gc.json', since)}", flush=True)
                    if args.rounds > 1:
                        b, lb = rows["bare"][-1], rows["libra"][-1]
                        print(f"  round {r + 1}: +p50 {lb[0] - b[0]:.2f} ms, +p99 "
                              f"{lb[1] - b[1]:.2f} ms, CPU {b[3]:.3f} / {lb[3]:.3f} ms per "
                              f"request, load {lb[4]:.1f}", flush=True)
                med = {k: [statistics.median(x[i] for x in v) for i in range(5)]
                       for k, v in rows.items()}
                print(f"{rate:6.0f} {med['libra'][2]:9.0f} {med['bare'][0]:9.2f} "
                      f"{med['libra'][0]:10.2f} {med['libra'][0] - med['bare'][0]:8.2f} "
                      f"{med['bare'][1]:9.2f} {med['libra'][1]:10.2f} "
                      f"{med['libra'][1] - med['bare'][1]:8.2f} {med['bare'][3]:9.3f} "
                      f"{med['libra'][3]:10.3f} {med['libra'][4]:5.1f}", flush=True)
        finally:
            for proc in (libra, bare):
                proc.terminate()
                proc.wait(30)


if __name__ == "__main__":
    main()
