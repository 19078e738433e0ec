"""Live against simulated on one trace slice: `libra-serve` + `libra-load` beside `libra-sim`.

The simulator is only worth its numbers if it predicts what the running platform does. This
writes ONE profile (`libra.profiles`: a base profile, `local` by default, with this slice's few
changes: SLA, VM boot, keep-alive, serverless cap, each recorded as a chosen figure), starts
`libra-serve --profile` on it (local worker processes, the local serverless pool; the local
provisioner holds a new worker booting for the profile's `vm.boot_s`), replays a trace slice
against it open-loop with `libra-load`'s replay, then simulates the very same arrivals through
the same policy on the same profile (`SimConfig` = the profile's platform + no VM at the start).
Nothing is mapped by hand between the two: what differs is what the profile does not describe
of this machine, and the run prints what it measured beside the profile's figures (serverless
warm call and cold start, VM latency, launch to ready) to show where that is.

It prints both rows of `libra-sim`'s table, when each had a VM running, and the differences in
serverless share and SLA-violation rate. Nothing is asserted; docs/results.md quotes the output.

    python bench/live_vs_sim.py --out artifacts/live_vs_sim     # conv x6, 1,800 s: ~31 min
    python bench/live_vs_sim.py --duration-s 60                 # a smoke slice, ~2 min
    python bench/live_vs_sim.py --profile my-machine.toml       # what libra-calibrate wrote
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
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

from libra.core.platform import Platform  # noqa: E402
from libra.profiles import Figure, Profile, dump_profile, load_profile  # noqa: E402
from libra.serving.loadgen import TEXTS, LoadReport, replay, write_timeline  # noqa: E402
from simulator.config import SimConfig  # noqa: E402
from simulator.report import table  # noqa: E402
from simulator.results import PolicyResult  # noqa: E402
from simulator.runner import run_policies  # noqa: E402
from simulator.traces import load_trace  # noqa: E402

CONV = REPO.parent / "shared" / "traces" / "AzureLLMInferenceTrace_conv.csv"

# this slice's changes to the base profile: option -> the platform field it sets
CHANGES = {"sla_s": "sla_s", "boot_s": "vm.boot_s", "keep_alive_s": "serverless.keep_alive_s",
           "serverless_concurrency": "serverless.concurrency_limit",
           "vm_service_time_s": "vm.service_time_mean_s", "vm_concurrency": "vm.concurrency"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def slice_profile(args: argparse.Namespace) -> Profile:
    """The base profile with this slice's changes, each recorded as a chosen figure."""
    base = load_profile(args.profile)
    data = base.platform.model_dump()
    figures = dict(base.figures)
    for option, path in CHANGES.items():
        value = getattr(args, option)
        if value is None:
            continue
        *parents, leaf = path.split(".")
        node = data
        for part in parents:
            node = node[part]
        node[leaf] = value
        figures[path] = Figure(source="chosen", how=f"bench/live_vs_sim.py "
                               f"--{option.replace('_', '-')} {value} (base: {base.name})")
    changed = sorted(p for o, p in CHANGES.items() if getattr(args, o) is not None)
    return Profile(name=f"live-vs-sim-{base.name}",
                   description=f"{base.description.strip()}\n\nAs bench/live_vs_sim.py replays "
                   f"it, with {', '.join(changed) or 'nothing'} changed.",
                   platform=Platform.model_validate(data), figures=figures)


def start_server(args: argparse.Namespace, profile_path: Path, log: Path
                 ) -> tuple[subprocess.Popen[bytes], str]:
    """`libra-serve` on the slice's profile; returns once it answers /readyz. Only deployment
    settings are options here: the platform is the profile's."""
    port = free_port()
    cmd = [sys.executable, "-m", "libra.serving.cli", "--port", str(port), "--profile",
           str(profile_path), "--policy", args.policy, "--initial-vms", "0", "--max-vms",
           str(args.max_vms)]
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=REPO)
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


def vm_boot_s(report: LoadReport) -> float | None:
    """Launch to ready of the first VM the live controller started, from the 1 s poll."""
    rows = report.timeline
    start = next((r["t_s"] for r in rows if r["vms_booting"] > 0), None)
    if start is None:
        return None
    ready = next((r["t_s"] for r in rows if r["t_s"] > start and r["vms_ready"] > 0), None)
    return None if ready is None else float(ready - start)


def measured(report: LoadReport, platform: Platform) -> dict[str, Any]:
    """What the live run measured of this machine, beside the profile's figure for each."""
    ok = [o for o in report.outcomes if o.status == 200]
    warm = np.array([o.latency_s for o in ok if o.backend == "serverless" and not o.cold_start])
    cold = np.array([o.latency_s for o in ok if o.backend == "serverless" and o.cold_start])
    vm = np.array([o.latency_s for o in ok if o.backend == "vm"])
    warm_p50 = float(np.median(warm)) if len(warm) else None
    sls = platform.serverless

    def pair(live: float | None, profile: float) -> dict[str, float | None]:
        return {"live": None if live is None else round(live, 4), "profile": round(profile, 4)}

    return {
        "serverless warm call, p50 s": pair(warm_p50, sls.service_time_mean_s
                                            + sls.invoke_overhead_s),
        "serverless cold start s": pair(float(np.median(cold)) - warm_p50
                                        if len(cold) and warm_p50 is not None else None,
                                        sls.cold_start_s),
        "VM request latency, p50 s": pair(float(np.median(vm)) if len(vm) else None,
                                          platform.vm.service_time_mean_s),
        "VM launch to ready s": pair(vm_boot_s(report), platform.vm.boot_s),
        "calls": {"serverless warm": len(warm), "serverless cold": len(cold), "vm": len(vm)},
    }


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
    parser.add_argument("--profile", default="local", help="base profile: name or .toml file")
    parser.add_argument("--trace", type=Path, default=CONV)
    parser.add_argument("--scale", type=float, default=6.0)
    parser.add_argument("--start-s", type=float, default=900.0)
    parser.add_argument("--duration-s", type=float, default=1800.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--policy", default="libra")
    parser.add_argument("--max-vms", type=int, default=2, help="deployment: the fleet's cap")
    parser.add_argument("--sla-s", type=float, default=0.5)
    parser.add_argument("--boot-s", type=float, default=60.0,
                        help="vm.boot_s: the local provisioner holds a new worker this long")
    parser.add_argument("--keep-alive-s", type=float, default=None,
                        help="serverless.keep_alive_s [the profile's]")
    parser.add_argument("--serverless-concurrency", type=int, default=None,
                        help="serverless.concurrency_limit [the profile's]")
    parser.add_argument("--vm-service-time-s", type=float, default=None,
                        help="vm.service_time_mean_s [the profile's]")
    parser.add_argument("--vm-concurrency", type=int, default=None,
                        help="vm.concurrency [the profile's]")
    parser.add_argument("--out", type=Path, default=REPO / "artifacts" / "live_vs_sim")
    args = parser.parse_args()
    if not args.trace.is_file():
        raise SystemExit(f"{args.trace}: no such trace (the default needs ../shared/traces)")
    args.out.mkdir(parents=True, exist_ok=True)
    profile_path = args.out / "profile.toml"
    profile_path.write_text(dump_profile(slice_profile(args)))
    platform = load_profile(profile_path).platform  # what both sides read, from the file

    trace = load_trace(args.trace, scale=args.scale, seed=args.seed, start_s=args.start_s,
                       end_s=args.start_s + args.duration_s)
    print(f"{trace.name}: {len(trace.arrivals_s):,} requests over {args.duration_s:.0f} s; "
          f"profile {profile_path}")
    proc, url = start_server(args, profile_path, args.out / "serve.log")
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
    live = report.result(f"{args.policy} (live)", platform.sla_s)

    cfg = SimConfig.model_validate({**platform.model_dump(), "initial_vms": 0, "seed": args.seed})
    run = run_policies(trace.arrivals_s, args.duration_s, [args.policy], cfg)[0]
    sim: PolicyResult = dataclasses.replace(run.result, policy=f"{args.policy} (simulated)")
    rows = run.ticks.rows() if run.ticks is not None else []
    print(table([live, sim]))
    live_spans = vm_intervals([r["t_s"] for r in report.timeline],
                              [r["vms_ready"] for r in report.timeline])
    sim_spans = vm_intervals([r.t_s for r in rows], [r.vms_ready for r in rows])
    seen = measured(report, platform)
    print("measured live vs the profile:", json.dumps(seen))
    print("VM ready, live:     ", [(round(a), round(b)) for a, b in live_spans])
    print("VM ready, simulated:", [(round(a), round(b)) for a, b in sim_spans])
    d_share = live.serverless_share_pct - sim.serverless_share_pct
    d_viol = live.sla_violation_pct - sim.sla_violation_pct
    print(f"difference live - simulated: serverless share {d_share:+.1f} points, "
          f"SLA violations {d_viol:+.2f} points")
    (args.out / "summary.json").write_text(json.dumps({
        "trace": trace.name, "args": {k: str(v) for k, v in vars(args).items()},
        "profile": str(profile_path), "measured": seen, "live": live.as_dict(),
        "simulated": sim.as_dict(), "live_vm_spans_s": live_spans,
        "simulated_vm_spans_s": sim_spans}, indent=2))


if __name__ == "__main__":
    main()
