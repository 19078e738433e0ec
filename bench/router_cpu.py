"""Router CPU per request, in process: what libra-serve's app costs beside the bare app.

`bench/router_overhead.py` times requests over loopback, which on a shared 2-core machine mostly
measures the other jobs. This drives both ASGI apps directly (no sockets, no client), one request
after another on uvloop, and reports the CPU time (`time.process_time`: every thread, so a hop to
a pool thread counts) per request: the bare FastAPI app of router_overhead.py, libra's app with
the no-op serverless driver (an admitted text request: read, parsed, tokenized, packed, routed,
answered), and libra refusing at the door (every work slot taken: 503 + Retry-After). It also
counts the garbage collector's work during libra's run (collections by generation and their
longest pause) and the objects the collector tracks after startup. Medians of `--rounds`:

    python bench/router_cpu.py                  # about 1 minute
    python bench/router_cpu.py --requests 1000 --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
BODY = json.dumps({"text": "Oh my God, you actually did it!"}).encode()


def scope() -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": "/predict", "raw_path": b"/predict", "query_string": b"",
            "root_path": "", "headers": [(b"host", b"bench"),
                                         (b"content-type", b"application/json"),
                                         (b"content-length", str(len(BODY)).encode())],
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000), "state": {}}


async def one(app: Any, status: int) -> None:
    sent: list[dict[str, Any]] = []
    given = False

    async def receive() -> dict[str, Any]:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": BODY, "more_body": False}
        await asyncio.Event().wait()  # a client that says nothing more
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope(), receive, send)
    if sent[0]["status"] != status:
        sys.exit(f"expected {status}, got {sent[0]['status']}: {sent}")


async def cpu_ms(app: Any, n: int, status: int) -> float:
    for _ in range(min(300, n)):
        await one(app, status)
    c0 = time.process_time()
    for _ in range(n):
        await one(app, status)
    return 1000 * (time.process_time() - c0) / n


class GcWatch:
    """Collections by generation during a run, and the longest pause (gc.callbacks)."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.max_pause_s = [0.0, 0.0, 0.0]
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        gen = info["generation"]
        self.count[gen] += 1
        self.max_pause_s[gen] = max(self.max_pause_s[gen], time.perf_counter() - self._t0)


async def main_async(n: int, rounds: int, model_dir: Path) -> None:
    import router_overhead

    from libra.serving.api import create_app
    from libra.serving.settings import Settings

    namespace: dict[str, Any] = {}
    exec(router_overhead.BARE_APP, namespace)  # the same bare app the loopback bench runs
    bare = namespace["app"]
    libra = create_app(settings=Settings(model_dir=model_dir, policy="serverless",
                                         initial_vms=0, serverless_driver="noop"))
    rows: dict[str, list[float]] = {"bare": [], "libra": [], "refused": []}
    watch = GcWatch()
    async with libra.router.lifespan_context(libra):
        svc = libra.state.service
        tracked, frozen = len(gc.get_objects()), gc.get_freeze_count()
        for _ in range(rounds):
            rows["bare"].append(await cpu_ms(bare, n, 200))
            gc.callbacks.append(watch)
            rows["libra"].append(await cpu_ms(libra, n, 200))
            gc.callbacks.remove(watch)
            admitted = svc.gate.admitted
            svc.gate.admitted = svc.gate.max_admitted  # every work slot taken
            rows["refused"].append(await cpu_ms(libra, n, 503))
            svc.gate.admitted = admitted
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"{n} requests x {rounds} rounds, load average {os.getloadavg()[0]:.1f}, "
          f"{os.cpu_count()} CPUs; CPU ms per request (median; rounds: "
          + "; ".join(f"{k} {', '.join(f'{x:.3f}' for x in v)}" for k, v in rows.items()) + ")")
    print(f"  bare app          {med['bare']:.3f} ms")
    print(f"  libra, admitted   {med['libra']:.3f} ms  (+{med['libra'] - med['bare']:.3f})")
    print(f"  libra, refused    {med['refused']:.3f} ms  (503 at the door)")
    print(f"  gc after startup: {tracked} objects tracked, {frozen} frozen; during libra's "
          f"runs: " + ", ".join(f"gen{g} {watch.count[g]} (max {1000 * watch.max_pause_s[g]:.1f} "
                                f"ms)" for g in range(3)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model-dir", type=Path, default=REPO / "artifacts" / "onnx")
    args = parser.parse_args()
    if not (args.model_dir / "manifest.json").is_file():
        sys.exit(f"{args.model_dir} has no model: run `libra-model build` first")
    os.environ.setdefault("LIBRA_LOG_DIR", tempfile.mkdtemp(prefix="libra-router-cpu-"))
    uvloop.run(main_async(args.requests, args.rounds, args.model_dir))


if __name__ == "__main__":
    main()
