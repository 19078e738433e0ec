"""The policy comparison in docs/results.md: every policy on every shared trace, two settings.

Settings, with fleets of about the same size in both (the paper's VM carries a tenth of ours):
- `default`: our SimConfig defaults (docs/simulator.md: g4dn.xlarge at 160 req/s, a 2 GB Lambda
  with a 1.5 s cold start, SLA 1 s); WITS, Berkeley and the Azure Functions day scaled x10,
  the Azure LLM traces x100 (as in the earlier sections);
- `paper`: the `libra-ic2e21` preset (LIBRA's simulated setting, 1 s epochs); WITS, Berkeley and
  the Azure day as they are (x1), the LLM traces x10.

Prints markdown: the full WITS and Berkeley runs under the paper preset (every policy, VM /
serverless split, costs, SLA violations, p99), one table per trace with each policy's ratios to
`libra-paper` under both settings, and the issue's goal per trace and setting (our best of
`libra` / `libra-forecast` costs less than `libra-paper` at equal or fewer SLA violations and has
at most 15% of `vm-reactive`'s). Results are cached as JSON in `--out`, so `--report-only`
reprints without replaying.

    python bench/policy_results.py --plots docs   # about 15 minutes on two free cores
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

from simulator.config import SimConfig  # noqa: E402
from simulator.presets import load_preset  # noqa: E402
from simulator.report import plot  # noqa: E402
from simulator.runner import DEFAULT_POLICIES, run_policies  # noqa: E402
from simulator.traces import open_trace  # noqa: E402

SHARED = Path(os.environ.get("LIBRA_SHARED_DIR", REPO.parent / "shared")) / "traces"
TRACES = {  # name: (path, scale under default, scale under paper)
    "WITS": (SHARED / "libra" / "wits_logs.txt", 10, 1),
    "Berkeley": (SHARED / "libra" / "berkeley_logs.txt", 10, 1),
    "Azure Functions day": (SHARED / "azure2019-1000fn-24h" / "1000_inv.csv", 10, 1),
    "Azure LLM code": (SHARED / "AzureLLMInferenceTrace_code.csv", 100, 10),
    "Azure LLM conv": (SHARED / "AzureLLMInferenceTrace_conv.csv", 100, 10),
}
SETTINGS = ("default", "paper")
OURS = ("libra", "libra-forecast")


def setting(name: str) -> tuple[SimConfig, dict[str, Any], dict[str, Any]]:
    """(config, policy parameters, trace options) of a setting."""
    if name == "default":
        return SimConfig(), {}, {}
    preset = load_preset("libra-ic2e21")
    data = preset.config_data()
    params = data.pop("policies", {})
    return SimConfig.model_validate(data), params, dict(preset.trace)


def replay(trace: str, config: str, seed: int, plots: Path | None) -> list[dict[str, Any]]:
    path, default_scale, paper_scale = TRACES[trace]
    scale = default_scale if config == "default" else paper_scale
    cfg, params, trace_opts = setting(config)
    cfg = cfg.model_copy(update={"seed": seed})
    stream = open_trace(path, scale=scale, seed=seed, **trace_opts)
    started = time.perf_counter()
    runs = run_policies(stream, None, DEFAULT_POLICIES, cfg, params=params, keep_requests=False,
                        record_ticks=plots is not None, workers=2,
                        preset="libra-ic2e21" if config == "paper" else "")
    print(f"  {trace} ({config}, x{scale:g}, seed {seed}): {stream.n_requests:,} requests, "
          f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    if plots is not None:
        slug = trace.split(maxsplit=1)[0].lower()
        plot(runs, plots / f"results_{slug}_{config}.png",
             f"{trace} x{scale:g}, {config} setting: VMs over time per policy")
    return [{**r.result.as_dict(), "scale": scale, "seed": seed} for r in runs]


def cached(out: Path, trace: str, config: str, seed: int, plots: Path | None,
           report_only: bool) -> list[dict[str, Any]]:
    file = out / f"{trace.replace(' ', '_')}_{config}_seed{seed}.json"
    if file.exists() and (report_only or plots is None):
        return json.loads(file.read_text())
    if report_only:
        sys.exit(f"no cached result {file}; run without --report-only first")
    rows = replay(trace, config, seed, plots)
    file.write_text(json.dumps(rows, indent=1))
    return rows


def split_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| policy | requests | served by VMs | served by serverless | VM $ | serverless $ | "
             "total $ | SLA violations | SLA viol % | p99 s | max VMs |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['policy']} | {r['requests']:,} | {r['served_vm']:,} | "
            f"{r['served_serverless']:,} | {r['vm_cost_usd']:.2f} | "
            f"{r['serverless_cost_usd']:.2f} | {r['total_cost_usd']:.2f} | "
            f"{r['sla_violations']:,} | {r['sla_violation_pct']:.3f} | "
            f"{_num(r['latency_p99_s'])} | {r['max_vms']} |")
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _ratio(a: float, b: float) -> str:
    if b == 0:
        return "=" if a == 0 else "inf"
    return f"{a / b:.3f}"


def ratio_table(by_config: dict[str, list[dict[str, Any]]]) -> str:
    lines = ["| setting | policy | total $ | SLA violations | cost / libra-paper | "
             "violations / libra-paper | violations / vm-reactive |",
             "|---|---|---|---|---|---|---|"]
    for config, rows in by_config.items():
        r = {row["policy"]: row for row in rows}
        paper, reactive = r["libra-paper"], r["vm-reactive"]
        for row in rows:
            lines.append(
                f"| {config} x{row['scale']:g} | {row['policy']} | {row['total_cost_usd']:.2f} | "
                f"{row['sla_violations']:,} ({row['sla_violation_pct']:.3f}%) | "
                f"{_ratio(row['total_cost_usd'], paper['total_cost_usd'])} | "
                f"{_ratio(row['sla_violations'], paper['sla_violations'])} | "
                f"{_ratio(row['sla_violations'], reactive['sla_violations'])} |")
    return "\n".join(lines)


def goal(rows: list[dict[str, Any]]) -> tuple[bool, str]:
    """Our best policy: cheaper than libra-paper at <= its violations, <= 15% of vm-reactive's."""
    r = {row["policy"]: row for row in rows}
    paper, reactive = r["libra-paper"], r["vm-reactive"]

    def meets(row: dict[str, Any]) -> bool:
        return (row["total_cost_usd"] < paper["total_cost_usd"]
                and row["sla_violations"] <= paper["sla_violations"]
                and row["sla_violations"] <= 0.15 * reactive["sla_violations"])

    passing = [r[name] for name in OURS if meets(r[name])]
    best = min(passing or [r[n] for n in OURS], key=lambda row: row["total_cost_usd"])
    text = (f"{best['policy']}: ${best['total_cost_usd']:.2f} vs libra-paper "
            f"${paper['total_cost_usd']:.2f}; {best['sla_violations']:,} vs "
            f"{paper['sla_violations']:,} violations; "
            f"{_ratio(best['sla_violations'], reactive['sla_violations'])} of vm-reactive's")
    return bool(passing), text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "artifacts" / "policy_results")
    parser.add_argument("--plots", type=Path, default=None)
    parser.add_argument("--seeds", type=int, default=3, help="seeds for the LLM traces")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for trace in TRACES:
        results[trace] = {}
        for config in SETTINGS:
            wants_plot = args.plots if trace in ("WITS", "Berkeley") and config == "paper" \
                else None
            results[trace][config] = cached(args.out, trace, config, 0, wants_plot,
                                            args.report_only)
    print("### Every policy on the full WITS and Berkeley traces, paper preset\n")
    for trace in ("WITS", "Berkeley"):
        print(f"#### {trace} (45,000 s, x1, `--preset libra-ic2e21`)\n")
        print(split_table(results[trace]["paper"]) + "\n")
    print("### One table per trace: ratios to libra-paper\n")
    goals = []
    for trace in TRACES:
        print(f"#### {trace}\n")
        print(ratio_table(results[trace]) + "\n")
        for config in SETTINGS:
            ok, text = goal(results[trace][config])
            goals.append(f"| {trace} | {config} | 0 | {'met' if ok else 'NOT met'}: {text} |")
    for trace in ("Azure LLM code", "Azure LLM conv"):
        for config in SETTINGS:
            for seed in range(1, args.seeds):
                rows = cached(args.out, trace, config, seed, None, args.report_only)
                ok, text = goal(rows)
                goals.append(f"| {trace} | {config} | {seed} | "
                             f"{'met' if ok else 'NOT met'}: {text} |")
    print("### The goal per trace and setting\n")
    print("| trace | setting | seed | our best vs libra-paper and vm-reactive |")
    print("|---|---|---|---|")
    print("\n".join(goals))


if __name__ == "__main__":
    main()
