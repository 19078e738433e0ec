"""Simulator speed and memory at paper scale: the full Azure Functions day through every policy,
and a week of a low-rate server.

Prints (nothing is asserted; the figures go to docs/results.md with this command):
- 1 h, 6 h and 24 h of `1000_inv.csv` (all 1,000 functions summed; 11.6 M requests in 24 h),
  every policy, two at a time in separate processes (a fresh process per policy): wall time of
  the whole set (median of `--repeats` for 24 h), simulated requests per second, and per policy
  its own wall time and its process's peak resident memory (RSS);
- a week of per-second counts at 1 req/s (`simulator.tracegen.synthetic_diurnal`, ~0.6 M
  requests over 604,800 s), every policy, the same way (median of `--repeats`): replay cost must
  follow requests, not trace seconds (`--every-tick` also times the controller at every tick);
- `--cases log`: a JSON-lines request log (epoch-millisecond `timestamp`, in time order) of 1 M
  and of 4 M requests replayed through `serverless`, each in a fresh process: its peak RSS
  (flat: the log is streamed, never held) and CPU time;
- a naive SimPy model (one process per request, a `simpy.Resource` for the VM pool, no policy,
  no cost) against this engine's `vm-static` on the same slice, one process each, side by side.

    python bench/sim_speed.py                # about 5 minutes on 2 free cores
    python bench/sim_speed.py --repeats 1    # one 24 h run
    python bench/sim_speed.py --cases week   # only the week at 1 req/s

The machine is shared with other agents: the load average is printed before and after, and
figures taken while it was above the core count are marked as such.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from simulator.arrivals import ArrivalStream  # noqa: E402
from simulator.config import SimConfig  # noqa: E402
from simulator.runner import DEFAULT_POLICIES, PolicyRun, run_policies  # noqa: E402
from simulator.tracegen import synthetic_diurnal, write_per_second  # noqa: E402
from simulator.traces import open_trace  # noqa: E402

SHARED = Path(os.environ.get("LIBRA_SHARED_DIR", REPO.parent / "shared"))
DAY = SHARED / "traces" / "azure2019-1000fn-24h" / "1000_inv.csv"


def load_note() -> str:
    one, five, _ = os.getloadavg()
    cores = os.cpu_count() or 1
    busy = " (machine busy: others running)" if five > cores else ""
    return f"load average {one:.1f} / {five:.1f} (1 / 5 min) on {cores} cores{busy}"


def run_all(hours: float, workers: int) -> tuple[int, float, list[PolicyRun]]:
    return run_stream(open_trace(DAY, end_s=hours * 3600.0), workers)


def run_stream(stream: ArrivalStream, workers: int, *, skip_quiet: bool = True
               ) -> tuple[int, float, list[PolicyRun]]:
    n = stream.n_requests
    stream.peak_rps()  # the per-second pass vm-static needs, once, before forking
    started, cpu_started = time.perf_counter(), time.process_time()
    runs = run_policies(stream, None, DEFAULT_POLICIES, SimConfig(), keep_requests=False,
                        record_ticks=False, workers=workers, skip_quiet=skip_quiet)
    PARENT_CPU_S[id(runs)] = time.process_time() - cpu_started
    return n, time.perf_counter() - started, runs


def week_at_one_rps(repeats: int, workers: int, every_tick: bool) -> None:
    """A week of per-second counts at 1 req/s (a day/night swing), written by tracegen."""
    with tempfile.TemporaryDirectory() as tmp:
        path = write_per_second(Path(tmp) / "week.txt", synthetic_diurnal(days=7, mean_rps=1.0,
                                                                           seed=7).counts)
        stream = open_trace(path)
        walls, last = [], None
        for _ in range(repeats):
            n, wall, last = run_stream(stream, workers)
            walls.append(wall)
        assert last is not None
        report_set("week at 1 req/s (604,800 s, per-second counts)", n, walls, last)
        if every_tick:
            n, wall, runs = run_stream(stream, workers, skip_quiet=False)
            report_set("the same week, controller at every tick (no sleeping)", n, [wall], runs)


# CPU the parent spent in a set (spreading a short trace's arrivals once for every policy)
PARENT_CPU_S: dict[int, float] = {}


def report_set(label: str, n: int, walls: list[float], runs: list[PolicyRun]) -> None:
    """Wall time (what this run took, others' load included) and CPU time (what it costs: the
    wall time two free cores would give is the larger of half the sum and the longest one).
    The CPU time is the policies' processes plus the parent's work before forking."""
    wall = statistics.median(walls)
    total = n * len(runs)
    parent = PARENT_CPU_S.get(id(runs), 0.0)
    cpu = [r.cpu_s for r in runs]
    free_wall = max((sum(cpu) + parent) / 2.0, parent + max(cpu))
    cpu = [*cpu, parent]
    spread = ", ".join(f"{w:.1f}" for w in walls)
    print(f"\n{label}: {n:,} requests x {len(runs)} policies; wall {wall:.1f} s [{spread}], "
          f"{total / wall:,.0f} simulated req/s in all; CPU {sum(cpu):.1f} s, "
          f"{total / sum(cpu):,.0f} simulated req/s per CPU-second, so {free_wall:.1f} s on two "
          f"free cores; peak RSS max {max(r.peak_rss_mb for r in runs):.0f} MB")
    print("| policy | wall s | CPU s | simulated req/s per CPU-s | peak RSS MB |")
    print("|---|---|---|---|---|")
    for r in runs:
        print(f"| {r.result.policy} | {r.wall_s:.1f} | {r.cpu_s:.1f} | {n / r.cpu_s:,.0f} | "
              f"{r.peak_rss_mb:.0f} |")
    if parent >= 0.05:
        print(f"| (parent: arrivals spread once for all) | | {parent:.1f} | | |")


def log_replay(path: str) -> None:
    """In a fresh process (so the peak RSS is this replay's): open, count, replay `serverless`.

    Peak RSS from /proc's VmHWM: `ru_maxrss` would still hold the forking parent's peak."""
    from libra.core.policies import make_policy
    from simulator.engine import Simulation

    started = time.process_time()
    stream = open_trace(path)
    n = stream.n_requests
    Simulation(stream, None, make_policy("serverless"), SimConfig(), keep_requests=False,
               record_ticks=False).run()
    status = Path("/proc/self/status").read_text().splitlines()
    rss_mb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024.0
    print(f"| {n:,} | {Path(path).stat().st_size / 1e6:,.0f} | {type(stream).__name__} | "
          f"{time.process_time() - started:.1f} | {rss_mb:.1f} |")


def logs_streamed() -> None:
    import subprocess

    print("\njsonl request logs (in time order) replayed through serverless, each in a fresh "
          "process:")
    print("| requests | file MB | stream | CPU s (open, count, replay) | peak RSS MB |")
    print("|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for n in (1_000_000, 4_000_000):
            path = Path(tmp) / f"log{n}.jsonl"
            start_ms = 1_700_000_000_000.0
            with path.open("w") as handle:
                for _ in range(n // 100_000):  # a block at a time: the parent stays small
                    stamps = start_ms + np.cumsum(rng.exponential(10.0, 100_000))
                    start_ms = float(stamps[-1])
                    handle.writelines(f'{{"timestamp": {t}, "path": "/predict", "status": 200}}\n'
                                      for t in stamps.astype(np.int64).tolist())
            subprocess.run([sys.executable, __file__, "--log-replay", str(path)], check=True)
            path.unlink()


def naive_simpy(arrivals_s: np.ndarray, service_s: np.ndarray, slots: int) -> float:
    """The textbook model: one SimPy process per request, a Resource for the VM pool (returns
    the mean latency, so the work cannot be skipped)."""
    import simpy

    env = simpy.Environment()
    pool = simpy.Resource(env, capacity=slots)
    latency = np.empty(arrivals_s.size)

    def request(i: int, t: float):  # type: ignore[no-untyped-def]
        with pool.request() as slot:
            yield slot
            yield env.timeout(service_s[i])
        latency[i] = env.now - t

    def source():  # type: ignore[no-untyped-def]
        for i, t in enumerate(arrivals_s.tolist()):
            if t > env.now:
                yield env.timeout(t - env.now)
            env.process(request(i, t))

    env.process(source())
    env.run()
    return float(np.nanmean(latency))


def naive_vs_engine(minutes: float) -> None:
    stream = open_trace(DAY, end_s=minutes * 60.0)
    trace = stream.materialize()
    cfg = SimConfig()
    vms = max(1, int(np.ceil(stream.peak_rps() / cfg.vm.capacity_rps)))
    rng = np.random.default_rng(0)
    service = rng.lognormal(np.log(cfg.vm.service_time_mean_s), 0.3, len(trace))
    started = time.process_time()
    naive_simpy(trace.arrivals_s, service, vms * cfg.vm.concurrency)
    naive_s = time.process_time() - started
    started = time.process_time()
    run_policies(trace, None, ["vm-static"], cfg, keep_requests=False, record_ticks=False)
    engine_s = time.process_time() - started
    n = len(trace)
    print(f"\nnaive SimPy vs this engine, first {minutes:g} min of the day ({n:,} requests, "
          f"{vms} VMs x {cfg.vm.concurrency} slots), one after the other in this process, "
          "CPU time:")
    print("| model | CPU s | requests per CPU-second |")
    print("|---|---|---|")
    print(f"| naive SimPy (process per request, Resource pool, no policy, no cost) | "
          f"{naive_s:.2f} | {n / naive_s:,.0f} |")
    print(f"| this engine, vm-static (policy, per-request latency, cost) | {engine_s:.2f} | "
          f"{n / engine_s:,.0f} |")
    print(f"speed-up, same slice, same run: {naive_s / engine_s:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="24 h runs (median reported)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--naive-minutes", type=float, default=30.0)
    parser.add_argument("--cases", default="day,week,naive",
                        help="comma-separated of: day (1, 6, 24 h of the Azure day), week "
                        "(a week at 1 req/s), naive (naive SimPy side by side), log (memory "
                        "of streamed jsonl logs)")
    parser.add_argument("--log-replay", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--every-tick", action="store_true",
                        help="week: also replay with the controller at every tick (slow)")
    args = parser.parse_args()
    if args.log_replay is not None:
        log_replay(args.log_replay)
        return
    cases = {c.strip() for c in args.cases.split(",") if c.strip()}
    unknown = cases - {"day", "week", "naive", "log"}
    if unknown:
        sys.exit(f"unknown case(s) {', '.join(sorted(unknown))}; valid: day, week, naive, log")
    if cases & {"day", "naive"} and not DAY.exists():
        sys.exit(f"needs {DAY} (the shared traces folder); set LIBRA_SHARED_DIR")
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores; "
          f"{len(DEFAULT_POLICIES)} policies: {', '.join(DEFAULT_POLICIES)}")
    print(f"before: {load_note()}")
    if "day" in cases:
        for hours in (1.0, 6.0):
            n, wall, runs = run_all(hours, args.workers)
            report_set(f"{hours:g} h", n, [wall], runs)
        walls, last = [], None
        for _ in range(args.repeats):
            n, wall, last = run_all(24.0, args.workers)
            walls.append(wall)
        assert last is not None
        report_set("24 h", n, walls, last)
    if "week" in cases:
        week_at_one_rps(args.repeats, args.workers, args.every_tick)
    if "naive" in cases:
        naive_vs_engine(args.naive_minutes)
    if "log" in cases:
        logs_streamed()
    print(f"\nafter: {load_note()}")


if __name__ == "__main__":
    main()
