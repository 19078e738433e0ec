"""The router's HTTP client for VM workers: CPU per call, httpx against aiohttp.

Why it matters: under overload the API process spent more than half its event loop in httpx's
connection pool (docs/reliability.md). This posts a router-sized event (`/infer`'s JSON with the
deadline header) to the bare app of `bench/router_overhead.py` with `--in-flight` calls at once,
and reports the client's CPU time (`time.process_time`) and wall time per call, alternating the
two clients for `--rounds` rounds:

    python bench/vm_client.py                    # about 1 minute
    python bench/vm_client.py --in-flight 8 --calls 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from router_overhead import BARE_APP, free_port

EVENT = {"request_id": "f" * 32, "inputs": {"text": ["x" * 600]}}
HEADERS = {"X-Libra-Deadline-Ms": "900"}


async def timed(call: Callable[[], Awaitable[None]], calls: int, in_flight: int
                ) -> tuple[float, float]:
    """(CPU ms, wall ms) per call, after a warm-up."""
    gate = asyncio.Semaphore(in_flight)

    async def one() -> None:
        async with gate:
            await call()

    await asyncio.gather(*(one() for _ in range(200)))
    c0, w0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(calls)))
    return (1000 * (time.process_time() - c0) / calls,
            1000 * (time.perf_counter() - w0) / calls)


async def with_httpx(url: str, calls: int, in_flight: int) -> tuple[float, float]:
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    async with httpx.AsyncClient(limits=limits) as client:
        async def call() -> None:
            response = await client.post(url, json=EVENT, headers=HEADERS,
                                         timeout=httpx.Timeout(5, connect=2))
            response.json()

        return await timed(call, calls, in_flight)


async def with_aiohttp(url: str, calls: int, in_flight: int) -> tuple[float, float]:
    connector = aiohttp.TCPConnector(limit=512, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def call() -> None:
            async with session.post(url, json=EVENT, headers=HEADERS,
                                    timeout=aiohttp.ClientTimeout(total=5, connect=2)) as r:
                json.loads(await r.read())

        return await timed(call, calls, in_flight)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "bare_app.py").write_text(BARE_APP)
        server = subprocess.Popen([sys.executable, "-m", "uvicorn", "bare_app:app", "--port",
                                   str(port), "--log-level", "warning", "--app-dir", tmp])
        try:
            url = f"http://127.0.0.1:{port}/predict"
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.post(url, json=EVENT)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        sys.exit("the bare app did not start")
                    time.sleep(0.2)
            rows: dict[str, list[tuple[float, float]]] = {"httpx": [], "aiohttp": []}
            for _ in range(args.rounds):
                rows["httpx"].append(uvloop.run(with_httpx(url, args.calls, args.in_flight)))
                rows["aiohttp"].append(uvloop.run(with_aiohttp(url, args.calls,
                                                               args.in_flight)))
            print(f"{args.calls} calls, {args.in_flight} in flight, median of {args.rounds}")
            for name, runs in rows.items():
                cpu = statistics.median(r[0] for r in runs)
                wall = statistics.median(r[1] for r in runs)
                print(f"  {name:8s} client CPU {cpu:.3f} ms/call, wall {wall:.3f} ms/call "
                      f"(rounds: {', '.join(f'{r[0]:.3f}' for r in runs)})")
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
