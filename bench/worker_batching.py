"""Worker throughput with dynamic batching against batch size 1, side by side.

Starts `handlers.worker` processes (one at a time) and drives each closed-loop with
`--concurrency` clients sending the same full request (3.5 s of audio, 8 face frames, a
sentence; `--request text`: the sentence alone) for `--seconds`; reports requests/s and p50
latency, medians over `--rounds` alternating rounds, and the ratio batched / batch-1. On the
GPU machine pass `--device cuda` (FP16 under the CUDA execution provider). Nothing is
asserted; figures go to docs/benchmarks.md:

    python bench/worker_batching.py                          # CPU, about 2 minutes
    python bench/worker_batching.py --device cuda --batch 64 --concurrency 256
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.model_variants import requests  # noqa: E402
from libra.runtime.payload import encode_input  # noqa: E402
from libra.serving.provision.worker_process import WorkerProcess  # noqa: E402


async def drive(url: str, concurrency: int, seconds: float,
                request: str = "full") -> tuple[float, float]:
    body = {"request_id": "bench", "inputs": encode_input(requests()[request])}
    latencies: list[float] = []
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(
            max_connections=concurrency, max_keepalive_connections=concurrency)) as client:
        for _ in range(3):
            await client.post(f"{url}/infer", json=body)
        stop = time.perf_counter() + seconds

        async def loop() -> None:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                r = await client.post(f"{url}/infer", json=body)
                r.raise_for_status()
                latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, 1000 * float(np.median(latencies))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "artifacts" / "onnx")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--cpu-precision", default="fp32", choices=["fp32", "int8", "int4"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--delay-ms", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--request", choices=["full", "text"], default="full",
                        help="full: audio + video + text; text: one sentence")
    args = parser.parse_args()
    configs = {"batch 1": 1, f"batch {args.batch}": args.batch}
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in configs}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for name, size in configs.items():
                extra = ["--device", args.device, "--cpu-precision", args.cpu_precision,
                         "--max-batch-size", str(size), "--max-batch-delay-ms",
                         str(args.delay_ms if size > 1 else 0)]
                if args.threads:
                    extra += ["--threads", str(args.threads)]
                worker = WorkerProcess(args.model_dir, log_dir=Path(tmp), extra_args=tuple(extra))
                try:
                    url = worker.wait_ready(300)
                    device = httpx.get(f"{url}/readyz").json()["device"]
                    results[name].append(asyncio.run(drive(url, args.concurrency, args.seconds,
                                                               args.request)))
                finally:
                    worker.drain()
                    worker.wait(30)
                    worker.close()
    print(f"device {device}, {args.request} requests, {args.concurrency} concurrent clients, "
          f"{args.seconds:.0f} s runs, "
          f"{args.rounds} rounds (medians)")
    medians = {k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v))
               for k, v in results.items()}
    for name, (rps, p50) in medians.items():
        print(f"{name:10} {rps:8.1f} requests/s   p50 {p50:7.1f} ms")
    base = medians["batch 1"][0]
    print(f"batching speed-up: {medians[f'batch {args.batch}'][0] / base:.2f}x")


if __name__ == "__main__":
    main()
