"""Spot capacity in docs/results.md (issue 18): `libra` with spot VMs against `libra` on-demand
only, on every shared trace at the default setting's scales, with the SLO 0.999; and one
interruption storm, drawn.

For each trace (WITS, Berkeley and the Azure Functions day x10, the Azure LLM traces x100, seed 0,
as `bench/policy_results.py`'s default setting) `libra` is replayed three times, all with
`slo = 0.999`: on-demand only; spot offered at the profile's price with 5% interruptions per
instance-day; and at 20%. It prints a markdown table: cost, the ratio to on-demand only, SLA
violations and whether the SLO was met, spot's share of VM-seconds, interruptions.

The storm: the first two hours of WITS x10 with spot offered and no interruption at the rate,
then `--storm-vms` spot VMs interrupted at once at 3,600 s from an interruptions file; the plot
shows arrivals, the VMs' capacity (ready VMs x 160 req/s), what serverless served each second, and
the VMs ready, booting and draining, against the same replay with no storm.

Results are cached as JSON in `--out`; `--report-only` reprints without replaying.

    nice -n 10 python bench/spot_results.py --plot docs/results_spot_storm.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from libra.forked import fork_map  # noqa: E402
from simulator.config import SimConfig  # noqa: E402
from simulator.runner import PolicyRun, run_policies  # noqa: E402
from simulator.traces import open_trace  # noqa: E402

SHARED = Path(os.environ.get("LIBRA_SHARED_DIR", REPO.parent / "shared")) / "traces"
TRACES = {  # name: (path, scale under the default setting)
    "WITS": (SHARED / "libra" / "wits_logs.txt", 10),
    "Berkeley": (SHARED / "libra" / "berkeley_logs.txt", 10),
    "Azure Functions day": (SHARED / "azure2019-1000fn-24h" / "1000_inv.csv", 10),
    "Azure LLM code": (SHARED / "AzureLLMInferenceTrace_code.csv", 100),
    "Azure LLM conv": (SHARED / "AzureLLMInferenceTrace_conv.csv", 100),
}
SLO = 0.999
SETTINGS = {"on-demand": None, "spot 5%/day": 0.05, "spot 20%/day": 0.20}
STORM_AT_S = 3600.0


def config(per_day: float | None, *, storm_file: Path | None = None) -> SimConfig:
    base = SimConfig(slo=SLO)
    if per_day is None and storm_file is None:
        return base
    spot = base.spot.model_copy(update={
        "enabled": True, "interruptions_per_instance_hour": (per_day or 0.0) / 24.0,
        "interruptions_file": str(storm_file) if storm_file else None})
    return base.model_copy(update={"spot": spot})


def replay(job: tuple[str, str]) -> dict[str, Any]:
    trace, setting = job
    path, scale = TRACES[trace]
    stream = open_trace(path, scale=scale, seed=0)
    started = time.perf_counter()
    run = run_policies(stream, None, ["libra"], config(SETTINGS[setting]), keep_requests=False,
                       record_ticks=False, workers=1)[0]
    print(f"  {trace} x{scale} {setting}: {stream.n_requests:,} requests, "
          f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return {**run.result.as_dict(), "scale": scale, "setting": setting}


def results(out: Path, workers: int, report_only: bool) -> dict[tuple[str, str], dict[str, Any]]:
    jobs = [(trace, setting) for trace in TRACES for setting in SETTINGS]
    file = lambda job: out / f"{job[0].replace(' ', '_')}_{job[1].replace(' ', '_').replace('%', 'pct').replace('/', '_')}.json"  # noqa: E731,E501
    todo = [job for job in jobs if not file(job).exists()]
    if todo and report_only:
        sys.exit(f"no cached result {file(todo[0])}; run without --report-only first")
    # the longest traces first, so that no long one is left running alone at the end
    todo.sort(key=lambda job: -TRACES[job[0]][0].stat().st_size)
    for job, row in zip(todo, fork_map(replay, todo, workers), strict=True):
        file(job).write_text(json.dumps(row, indent=1))
    return {job: json.loads(file(job).read_text()) for job in jobs}


def table(rows: dict[tuple[str, str], dict[str, Any]]) -> str:
    lines = ["| trace | setting | total $ | / on-demand | VM $ (spot) | serverless $ | "
             "SLA violations | SLO 0.999 met | spot share of VM-s | interruptions | max VMs |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for trace, (_, scale) in TRACES.items():
        base = rows[(trace, "on-demand")]["total_cost_usd"]
        for setting in SETTINGS:
            r = rows[(trace, setting)]
            lines.append(
                f"| {trace} x{scale} | {setting} | {r['total_cost_usd']:.2f} | "
                f"{r['total_cost_usd'] / base:.3f} | {r['vm_cost_usd']:.2f} "
                f"({r['spot_vm_cost_usd']:.2f}) | {r['serverless_cost_usd']:.2f} | "
                f"{r['sla_violations']:,} ({r['sla_violation_pct']:.4f}%) | "
                f"{'yes' if r['slo_met'] else 'NO'} | {r['spot_share_pct']:.1f}% | "
                f"{r['spot_interruptions']} | {r['max_vms']} |")
    return "\n".join(lines)


def criterion(rows: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    """The issue's 'Spot on' criterion, per trace."""
    out = []
    for trace in TRACES:
        base = rows[(trace, "on-demand")]
        five, twenty = rows[(trace, "spot 5%/day")], rows[(trace, "spot 20%/day")]
        saving = 1 - five["total_cost_usd"] / base["total_cost_usd"]
        ok = saving >= 0.30 and five["slo_met"] and twenty["slo_met"]
        out.append(f"- {trace}: {'met' if ok else 'NOT met'}: {saving:.1%} below on-demand at "
                   f"5%/day (SLO {'met' if five['slo_met'] else 'NOT met'}), SLO at 20%/day "
                   f"{'met' if twenty['slo_met'] else 'NOT met'}")
    return out


# -- the storm ---------------------------------------------------------------------------------
def storm(out: Path, n_vms: int, plot: Path | None) -> list[str]:
    path, scale = TRACES["WITS"]
    storm_file = out / "storm.txt"
    storm_file.write_text(f"# {n_vms} spot VMs interrupted at once\n"
                          + f"{STORM_AT_S:g}\n" * n_vms)
    runs: dict[str, PolicyRun] = {}
    for name, cfg in (("no storm", config(0.0)), ("storm", config(None, storm_file=storm_file))):
        stream = open_trace(path, scale=scale, seed=0, end_s=7200.0)
        runs[name] = run_policies(stream, None, ["libra"], cfg, keep_requests=False,
                                  record_ticks=plot is not None, workers=1)[0]
    lines = ["| WITS x10, first 2 h, spot | requests | served by serverless | total $ | "
             "SLA violations | interruptions |", "|---|---|---|---|---|---|"]
    for name, run in runs.items():
        r = run.result
        lines.append(f"| {name} | {r.requests:,} | {r.served_serverless:,} | "
                     f"{r.total_cost_usd:.2f} | {r.sla_violations:,} | {r.spot_interruptions} |")
    if plot is not None:
        draw_storm(runs, plot, n_vms)
    return lines


def draw_storm(runs: dict[str, PolicyRun], path: Path, n_vms: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo, hi = STORM_AT_S - 300, STORM_AT_S + 600
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for name, style in (("no storm", ":"), ("storm", "-")):
        ticks = runs[name].ticks
        assert ticks is not None
        t = ticks.column("t_s")
        window = (t >= lo) & (t < hi)
        t = t[window]
        ready = ticks.column("vms_ready")[window]
        if name == "storm":
            top.plot(t, ticks.column("arrivals_in_tick")[window], color="0.6", lw=0.8,
                     label="arrivals / s")
        top.plot(t, ready * 160.0, style, color="tab:blue", label=f"VM capacity, {name}")
        top.plot(t, ticks.column("served_serverless")[window], style, color="tab:orange",
                 label=f"served by serverless / s, {name}")
        if name == "storm":
            bottom.plot(t, ready, color="tab:blue", label="VMs ready")
            bottom.plot(t, ticks.column("vms_booting")[window], color="tab:green",
                        label="VMs booting (replacements)")
            bottom.plot(t, ticks.column("vms_draining")[window], color="tab:red",
                        label="VMs draining (noticed, until reclaimed)")
    for ax in (top, bottom):
        ax.axvline(STORM_AT_S, color="k", lw=0.8, ls="--")
        ax.axvline(STORM_AT_S + 120, color="k", lw=0.8, ls=":")
        ax.legend(fontsize=8, loc="upper left")
    top.set_ylabel("requests / s")
    bottom.set_ylabel("VMs")
    bottom.set_xlabel("s (dashed: the notice; dotted: reclaimed, replacements ready)")
    top.set_title(f"WITS x10, libra with spot: {n_vms} spot VMs interrupted at once at "
                  f"{STORM_AT_S:g} s; serverless carries the gap")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "artifacts" / "spot_results")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--storm-vms", type=int, default=10)
    parser.add_argument("--plot", type=Path, default=None, help="draw the storm to this PNG")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    missing = [str(p) for p, _ in TRACES.values() if not p.exists()]
    if missing:
        sys.exit(f"shared traces missing: {', '.join(missing)} (set LIBRA_SHARED_DIR)")
    rows = results(args.out, args.workers, args.report_only)
    print(table(rows))
    print()
    print("\n".join(criterion(rows)))
    if not args.report_only:
        print()
        print("\n".join(storm(args.out, args.storm_vms, args.plot)))


if __name__ == "__main__":
    main()
