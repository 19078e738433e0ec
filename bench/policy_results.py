"""The policy comparison in docs/results.md: real traces, every policy, several seeds.

Replays the Azure LLM `code` (very bursty) and `conv` (steadier) traces from ../shared/traces,
scaled x100 (tens of GPU VMs at the default 160 req/s per VM), through the six policies and the
paper-faithful LIBRA variant, for `--seeds` seeds, and prints markdown: the table per trace (seed
0), the issue's three criteria per seed, and a sweep over the scale factor. Writes the plots with
`--plots DIR`.

    python bench/policy_results.py --plots docs
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from simulator.config import SimConfig  # noqa: E402
from simulator.report import markdown_table, plot  # noqa: E402
from simulator.results import PolicyResult  # noqa: E402
from simulator.runner import DEFAULT_POLICIES, run_policies  # noqa: E402
from simulator.traces import load_trace  # noqa: E402

SHARED = Path(os.environ.get("LIBRA_SHARED_DIR", REPO.parent / "shared"))
PAPER = {"sizing": "ewma", "quota": "share", "break_even": False}


def run(trace_name: str, scale: float, seed: int, names=DEFAULT_POLICIES, with_paper=True,
        plots: Path | None = None) -> dict[str, PolicyResult]:
    path = SHARED / "traces" / f"AzureLLMInferenceTrace_{trace_name}.csv"
    trace = load_trace(path, scale=scale, seed=seed)
    cfg = SimConfig(seed=seed)
    runs = run_policies(trace.arrivals_s, trace.duration_s, names, cfg, keep_requests=False)
    if plots is not None:
        plot(runs, plots / f"results_{trace_name}_x{scale:g}.png",
             f"Azure LLM {trace_name} x{scale:g} (seed {seed}), SLA {cfg.sla_s:g} s")
    out = {r.result.policy: r.result for r in runs}
    if with_paper:
        [paper] = run_policies(trace.arrivals_s, trace.duration_s, ["libra"], cfg,
                               params={"libra": PAPER}, keep_requests=False)
        out["libra (paper)"] = PolicyResult(**{**paper.result.as_dict(), "policy": "libra (paper)"})
    return out


def criteria(r: dict[str, PolicyResult]) -> str:
    lib, rea, sta, spo = r["libra"], r["vm-reactive"], r["vm-static"], r["spock"]
    viol_ratio = lib.sla_violations / rea.sla_violations if rea.sla_violations else float("inf")
    cost_ratio = lib.total_cost_usd / sta.total_cost_usd
    beats = (lib.total_cost_usd < spo.total_cost_usd
             and lib.sla_violation_pct <= spo.sla_violation_pct)
    return (f"{viol_ratio:.3f} ({'ok' if viol_ratio <= 0.15 else 'MISS'}) | "
            f"{cost_ratio:.3f} ({'ok' if cost_ratio <= 0.60 else 'MISS'}) | "
            f"${lib.total_cost_usd:.2f} vs ${spo.total_cost_usd:.2f}, "
            f"{lib.sla_violation_pct:.3f}% vs {spo.sla_violation_pct:.3f}% "
            f"({'ok' if beats else 'MISS'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=100.0)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sweep", default="10,20,50,100,200")
    parser.add_argument("--plots", type=Path, default=None)
    args = parser.parse_args()
    header = ("| trace | seed | libra / vm-reactive violations (<= 0.15) | libra / vm-static cost "
              "(<= 0.60) | libra vs spock: cost, SLA violations |\n|---|---|---|---|---|")
    rows = []
    for name in ("code", "conv"):
        for seed in range(args.seeds):
            r = run(name, args.scale, seed, plots=args.plots if seed == 0 else None)
            if seed == 0:
                print(f"\n### `{name}` x{args.scale:g}, seed 0\n")
                print(markdown_table(list(r.values())))
            rows.append(f"| {name} | {seed} | {criteria(r)} |")
    print(f"\n### The three criteria, x{args.scale:g}, per seed\n")
    print(header)
    print("\n".join(rows))
    print("\n### Scale sweep (seed 0)\n")
    print(header.replace("| seed |", "| scale |"))
    for name in ("code", "conv"):
        for scale in (float(s) for s in args.sweep.split(",")):
            r = run(name, scale, 0, names=("vm-static", "vm-reactive", "spock", "libra"),
                    with_paper=False)
            print(f"| {name} | x{scale:g} | {criteria(r)} |")


if __name__ == "__main__":
    main()
