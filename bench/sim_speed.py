"""Simulator speed: simulated requests per second, flatness as the trace grows, naive baseline.

Replays real traces from ../shared/traces through all six policies and prints medians over
`--repeats` runs (nothing is asserted; the figures go to docs/results.md with this command):
- the target: Azure LLM `conv` scaled x100 (about 1.9 M requests), all six policies, batched;
- growth in rate: the same trace x1000 (10x the requests in the same hour);
- growth in length: LIBRA's WITS trace, first 4,500 s against all 45,000 s (10x longer);
- the naive baseline, one SimPy process per request, side by side with batched on one trace.

    python bench/sim_speed.py                     # about 5 minutes on 2 cores
    python bench/sim_speed.py --naive-scale 100   # naive at x100 as well (longer)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from simulator.runner import DEFAULT_POLICIES, run_policies  # noqa: E402
from simulator.traces import load_trace  # noqa: E402

SHARED = Path(os.environ.get("LIBRA_SHARED_DIR", REPO.parent / "shared"))
CONV = SHARED / "traces" / "AzureLLMInferenceTrace_conv.csv"
WITS = SHARED / "traces" / "libra" / "wits_logs.txt"


def time_run(scale: float, mode: str, repeats: int, path: Path = CONV,
             end_s: float | None = None) -> tuple[int, list[float]]:
    trace = load_trace(path, scale=scale, seed=0, end_s=end_s)
    walls = []
    for _ in range(repeats):
        started = time.perf_counter()
        run_policies(trace.arrivals_s, trace.duration_s, DEFAULT_POLICIES, mode=mode,
                     keep_requests=False)  # type: ignore[arg-type]
        walls.append(time.perf_counter() - started)
    return len(trace), walls


def report(label: str, n: int, walls: list[float]) -> float:
    wall = statistics.median(walls)
    rate = n * len(DEFAULT_POLICIES) / wall
    spread = ", ".join(f"{w:.2f}" for w in walls)
    print(f"{label:<28} {n:>10,} req x {len(DEFAULT_POLICIES)} policies  median {wall:7.2f} s "
          f"[{spread}]  {rate:>12,.0f} simulated req/s")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive-scale", type=float, default=10.0)
    parser.add_argument("--naive-repeats", type=int, default=1)
    args = parser.parse_args()
    if not CONV.exists():
        sys.exit(f"needs {CONV} (the shared traces folder); set LIBRA_SHARED_DIR")
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores")
    r100 = report("batched conv x100 (target)", *time_run(100, "batched", args.repeats))
    r1000 = report("batched conv x1000", *time_run(1000, "batched", 1))
    print(f"throughput ratio, 10x the rate (x1000 / x100): {r1000 / r100:.2f}")
    short = report("batched wits 4,500 s", *time_run(1, "batched", args.repeats, WITS, 4500.0))
    long = report("batched wits 45,000 s", *time_run(1, "batched", 1, WITS))
    print(f"throughput ratio, 10x the length (45,000 s / 4,500 s): {long / short:.2f}")
    nb = report(f"batched conv x{args.naive_scale:g}",
                *time_run(args.naive_scale, "batched", args.naive_repeats))
    nn = report(f"naive conv x{args.naive_scale:g}",
                *time_run(args.naive_scale, "naive", args.naive_repeats))
    print(f"batched / naive speed-up, same trace, same run: {nb / nn:.1f}x")


if __name__ == "__main__":
    main()
