"""Live against simulated on one trace slice: `libra-serve` + `libra-load` beside `libra-sim`.

The simulator is only worth its numbers if it predicts what the running platform does. This starts
`libra-serve` on this machine (local worker processes, the local serverless pool), replays a trace
slice against it open-loop with `libra-load`'s replay, then simulates the very same arrivals
through the same policy with the simulator set to the same setting (prices, SLA, keep-alive,
concurrency cap, worker capacity, no VM at the start) and calibrated with what the live run
measured of this machine:

- serverless: the billed duration the live policy plans with is the simulator's service time and
  there is no separate invoke overhead, so both policies see the same service time and cost per
  request (hence the same break-even rate and warm-set sizes); a cold call's median latency over
  a warm call's is the cold start;
- VMs: the median latency of a request a worker served is the service time; the boot is the
  emulated delay plus the worker's own start, read off the polled timeline.

It prints both rows of `libra-sim`'s table, when each had a VM running, and the differences in
serverless share and SLA-violation rate. Nothing is asserted; docs/results.md quotes the output.

    python bench/live_vs_sim.py --out artifacts/live_vs_sim     # conv x6, 1,800 s: ~31 min
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from libra.serving.loadgen import TEXTS, LoadReport, replay, write_timeline  # noqa: E402
from simulator.config import SimConfig  # noqa: E402
from simulator.report import table  # noqa: E402
from simulator.results import PolicyResult  # noqa: E402
from simulator.runner import run_policies  # noqa: E402
from simulator.traces import load_trace  # noqa: E402

CONV = REPO.parent / "shared" / "traces" / "AzureLLMInferenceTrace_conv.csv"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(args: argparse.Namespace, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`libra-serve` with the slice's setting; returns once it answers /readyz."""
    port = free_port()
    env = {**os.environ, "LIBRA_VM_PRICE_PER_HOUR_USD": str(args.vm_price_per_hour),
           "LIBRA_SERVERLESS_DURATION_S": str(args.serverless_duration_s),
           "LIBRA_SLA_MARGIN_S": str(args.sla_margin_s)}
    cmd = [sys.executable, "-m", "libra.serving.cli", "--port", str(port), "--policy", args.policy,
           "--initial-vms", "0", "--max-vms", str(args.max_vms), "--boot-delay-s",
           str(args.boot_delay_s), "--sla-s", str(args.sla_s), "--vm-capacity-rps",
           str(args.vm_capacity_rps), "--serverless-max-concurrency",
           str(args.serverless_concurrency), "--serverless-keep-alive-s", str(args.keep_alive_s)]
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"libra-serve did not start; see {log}")


def vm_boot_s(report: LoadReport, fallback_s: float) -> float:
    """Launch to ready of the first VM the live controller started, from the 1 s poll."""
    rows = report.timeline
    start = next((r["t_s"] for r in rows if r["vms_booting"] > 0), None)
    if start is None:
        return fallback_s
    ready = next((r["t_s"] for r in rows if r["t_s"] > start and r["vms_ready"] > 0), None)
    return fallback_s if ready is None else float(ready - start)


def calibrate(report: LoadReport, args: argparse.Namespace) -> dict[str, Any]:
    """Simulator parameters for this machine, measured by the live run itself."""
    ok = [o for o in report.outcomes if o.status == 200]
    warm = np.array([o.latency_s for o in ok if o.backend == "serverless" and not o.cold_start])
    cold = np.array([o.latency_s for o in ok if o.backend == "serverless" and o.cold_start])
    vm = np.array([o.latency_s for o in ok if o.backend == "vm"])
    warm_p50 = float(np.median(warm)) if len(warm) else args.serverless_duration_s
    return {
        "serverless_warm_p50_s": warm_p50,
        "serverless_cold_start_s": float(np.median(cold)) - warm_p50 if len(cold) else 0.72,
        "serverless_cv": float(np.std(warm) / np.mean(warm)) if len(warm) > 1 else 0.2,
        "vm_service_time_s": float(np.median(vm)) if len(vm) else 0.01,
        "vm_cv": float(np.std(vm) / np.mean(vm)) if len(vm) > 1 else 0.3,
        "vm_boot_s": vm_boot_s(report, args.boot_delay_s + 3.0),
        "warm_serverless_calls": len(warm), "cold_serverless_calls": len(cold),
        "vm_calls": len(vm),
    }


def sim_config(args: argparse.Namespace, cal: dict[str, Any]) -> SimConfig:
    service = cal["vm_service_time_s"]
    return SimConfig.model_validate({
        "sla_s": args.sla_s, "sla_margin_s": args.sla_margin_s, "initial_vms": 0,
        "seed": args.seed,
        "vm": {"price_per_hour_usd": args.vm_price_per_hour, "boot_s": cal["vm_boot_s"],
               # slots so that slots / service time is the capacity the live policy was told
               "concurrency": max(1, round(args.vm_capacity_rps * service)),
               "service_time_mean_s": service, "service_time_cv": min(cal["vm_cv"], 1.0)},
        "serverless": {"service_time_mean_s": args.serverless_duration_s,
                       "service_time_cv": min(cal["serverless_cv"], 1.0),
                       "invoke_overhead_s": 0.0,
                       "cold_start_s": cal["serverless_cold_start_s"],
                       "keep_alive_s": args.keep_alive_s,
                       "concurrency_limit": args.serverless_concurrency},
    })


def vm_intervals(t_s: list[float], vms: list[int]) -> list[tuple[float, float]]:
    """[start, end) spans with at least one VM ready."""
    spans, since = [], None
    for t, n in zip(t_s, vms, strict=True):
        if n > 0 and since is None:
            since = t
        elif n == 0 and since is not None:
            spans.append((since, t))
            since = None
    if since is not None:
        spans.append((since, t_s[-1]))
    return spans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", type=Path, default=CONV)
    parser.add_argument("--scale", type=float, default=6.0)
    parser.add_argument("--start-s", type=float, default=900.0)
    parser.add_argument("--duration-s", type=float, default=1800.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--policy", default="libra")
    parser.add_argument("--sla-s", type=float, default=0.5)
    parser.add_argument("--sla-margin-s", type=float, default=0.1)
    parser.add_argument("--vm-price-per-hour", type=float, default=0.0416,
                        help="t3.medium, the CPU VM a local worker stands for")
    parser.add_argument("--vm-capacity-rps", type=float, default=150.0,
                        help="text requests/s one 1-thread worker sustains (worker_batching.py)")
    parser.add_argument("--boot-delay-s", type=float, default=60.0)
    parser.add_argument("--max-vms", type=int, default=2)
    parser.add_argument("--serverless-duration-s", type=float, default=0.004,
                        help="warm text invocation inside the function (serverless_latency.py)")
    parser.add_argument("--serverless-concurrency", type=int, default=4)
    parser.add_argument("--keep-alive-s", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=REPO / "artifacts" / "live_vs_sim")
    args = parser.parse_args()
    if not args.trace.is_file():
        raise SystemExit(f"{args.trace}: no such trace (the default needs ../shared/traces)")
    args.out.mkdir(parents=True, exist_ok=True)

    trace = load_trace(args.trace, scale=args.scale, seed=args.seed, start_s=args.start_s,
                       end_s=args.start_s + args.duration_s)
    print(f"{trace.name}: {len(trace.arrivals_s):,} requests over {args.duration_s:.0f} s")
    proc, url = start_server(args, args.out / "serve.log")
    try:
        report = asyncio.run(replay(url, trace.arrivals_s, [{"text": t} for t in TEXTS]))
    finally:
        proc.terminate()
        proc.wait(60)
    write_timeline(args.out / "live_timeline.csv", report.timeline)
    with (args.out / "live_requests.csv").open("w") as f:  # for finding where violations fall
        f.write("sent_s,latency_s,status,backend,cold_start\n")
        f.writelines(f"{o.sent_s:.4f},{o.latency_s:.5f},{o.status},{o.backend},{int(o.cold_start)}\n"
                     for o in report.outcomes)
    live = report.result(f"{args.policy} (live)", args.sla_s)

    cal = calibrate(report, args)
    cfg = sim_config(args, cal)
    run = run_policies(trace.arrivals_s, args.duration_s, [args.policy], cfg)[0]
    sim: PolicyResult = dataclasses.replace(run.result, policy=f"{args.policy} (simulated)")
    rows = run.ticks.rows() if run.ticks is not None else []
    print(table([live, sim]))
    live_spans = vm_intervals([r["t_s"] for r in report.timeline],
                              [r["vms_ready"] for r in report.timeline])
    sim_spans = vm_intervals([r.t_s for r in rows], [r.vms_ready for r in rows])
    print("calibration:", json.dumps({k: round(v, 4) if isinstance(v, float) else v
                                      for k, v in cal.items()}))
    print("VM ready, live:     ", [(round(a), round(b)) for a, b in live_spans])
    print("VM ready, simulated:", [(round(a), round(b)) for a, b in sim_spans])
    d_share = live.serverless_share_pct - sim.serverless_share_pct
    d_viol = live.sla_violation_pct - sim.sla_violation_pct
    print(f"difference live - simulated: serverless share {d_share:+.1f} points, "
          f"SLA violations {d_viol:+.2f} points")
    (args.out / "summary.json").write_text(json.dumps({
        "trace": trace.name, "args": {k: str(v) for k, v in vars(args).items()},
        "calibration": cal, "live": live.as_dict(), "simulated": sim.as_dict(),
        "live_vm_spans_s": live_spans, "simulated_vm_spans_s": sim_spans}, indent=2))


if __name__ == "__main__":
    main()
