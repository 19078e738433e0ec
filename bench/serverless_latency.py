"""Local serverless pool: cold-start against warm invocation latency, side by side.

Each round starts a fresh pool (so its first call is a real cold start: a process, the imports
and the model load), then makes `--warm` more calls on the now-warm instance. Prints medians
over rounds of the cold call, the warm calls, and the instance's own INIT time. These figures
are what the simulator's `serverless.cold_start_s` and `service_s` defaults should be measured
against on this machine. Nothing is asserted; figures go to docs/benchmarks.md:

    python bench/serverless_latency.py                    # about a minute
    python bench/serverless_latency.py --precision int4
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.model_variants import requests  # noqa: E402
from libra.runtime.payload import encode_input  # noqa: E402
from libra.serving.backends.local_pool import LocalServerlessPool, PoolConfig  # noqa: E402


async def round_trip(model: Path, warm: int, kind: str) -> tuple[float, float, list[float]]:
    pool = LocalServerlessPool(PoolConfig(model, max_concurrency=1))
    event = {"request_id": "bench", "inputs": encode_input(requests()[kind])}
    try:
        cold = await pool.invoke(event)
        assert cold.cold_start
        warm_s = [(await pool.invoke(event)).latency_s for _ in range(warm)]
        return cold.latency_s, float(cold.body["init_ms"]) / 1000, warm_s
    finally:
        await pool.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "artifacts" / "onnx")
    parser.add_argument("--precision", default="int8", choices=["int8", "int4", "fp32"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warm", type=int, default=20)
    parser.add_argument("--kind", default="full", choices=["full", "text"])
    args = parser.parse_args()
    model = args.model_dir / f"{args.precision}.onnx"
    if not model.is_file():
        sys.exit(f"no {model}: run `libra-model build` first")
    colds, inits, warms = [], [], []
    for _ in range(args.rounds):
        cold, init, warm = asyncio.run(round_trip(model, args.warm, args.kind))
        colds.append(cold)
        inits.append(init)
        warms.append(statistics.median(warm))
    print(f"{args.precision}, {args.kind} request, {args.rounds} rounds x {args.warm} warm calls")
    print(f"cold call  {1000 * statistics.median(colds):8.1f} ms  (INIT inside it: "
          f"{1000 * statistics.median(inits):.1f} ms)")
    print(f"warm call  {1000 * statistics.median(warms):8.1f} ms")
    print(f"cold / warm: {statistics.median(colds) / statistics.median(warms):.1f}x")


if __name__ == "__main__":
    main()
