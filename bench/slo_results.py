"""Stated SLOs (issue 18): every policy on every shared trace with `--slo 0.999` and `0.9999`.

For each SLO, trace and setting (`default` and `paper`, at docs/results.md's scales) it replays
every policy with the SLO in the platform (so the router's planning quantile follows it for all
of them) and prints, per policy, cost, SLA violations, whether the SLO was met, and checks:

- **cheapest that meets it**: our best of `libra` / `libra-forecast` meets the SLO and costs no
  more than any policy that meets it;
- **else fewest violations**: where none of ours meets it, ours has the fewest violations among
  the policies that cost at most 1.2x ours;
- **never dominated**: no policy is both cheaper than `libra` and has fewer violations (the same
  for `libra-forecast`).

Also a synthetic step of 1x to 5x within 60 s (`simulator.tracegen.synthetic_step`; at the
generator's default 200 req/s and at 1,000 req/s, where the 5x peak exceeds the starting fleet
plus Lambda's 1,000 instances), a sub-VM day (`synthetic_diurnal`, 2 req/s) and WITS at x50
(its first hour, our policies only): the throttled fraction beside the SLO.

Results are cached as JSON in `--out` (a file per SLO, trace, setting), so a rerun or
`--report-only` replays nothing already there.

    nice -n 10 python bench/slo_results.py                  # everything (long: see --only)
    nice -n 10 python bench/slo_results.py --only llm,step,subvm
    python bench/slo_results.py --report-only               # print what is cached
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.policy_results import OURS, TRACES, setting  # noqa: E402
from simulator.config import SimConfig  # noqa: E402
from simulator.runner import DEFAULT_POLICIES, run_policies  # noqa: E402
from simulator.traces import open_trace  # noqa: E402

SLOS = (0.999, 0.9999)
GROUPS = {  # --only names -> cases: (label, trace key, setting)
    "llm": [(t, t, c) for t in ("Azure LLM code", "Azure LLM conv") for c in ("default", "paper")],
    "step": [("step 200->1000 req/s", "step200", "default"),
             ("step 1000->5000 req/s", "step1000", "default")],
    "subvm": [("sub-VM day, 2 req/s", "subvm", "default")],
    "paper": [(t, t, "paper") for t in ("WITS", "Berkeley", "Azure Functions day")],
    "default": [(t, t, "default") for t in ("WITS", "Berkeley", "Azure Functions day")],
    "wits50": [("WITS x50, first hour", "wits50", "default")],
}
COST_SLACK = 1.2
WITS50_END_S = 3600.0  # the whole 45,000 s at x50 is 321 M requests a policy: hours here


def _synthetic(key: str, out: Path) -> Path:
    """Write the synthetic traces once (per-second counts, the make-trace format)."""
    from simulator import tracegen

    path = out / f"{key}.txt"
    if not path.exists():
        if key == "step200":
            counts = tracegen.synthetic_step(seed=7).counts
        elif key == "step1000":
            counts = tracegen.synthetic_step(base_rps=1000.0, step_at_s=600.0, duration_s=1500,
                                             seed=7).counts
        else:
            counts = tracegen.synthetic_diurnal(days=1.0, mean_rps=2.0, seed=7).counts
        tracegen.write_per_second(path, counts)
    return path


def replay(slo: float, key: str, config: str, out: Path) -> list[dict[str, Any]]:
    cfg, params, trace_opts = setting(config)
    cfg = SimConfig.model_validate({**cfg.model_dump(), "slo": slo})
    policies = list(DEFAULT_POLICIES)
    end_s: float | None = None
    if key in TRACES:
        path, default_scale, paper_scale = TRACES[key]
        scale = default_scale if config == "default" else paper_scale
    elif key == "wits50":
        path, scale, policies = TRACES["WITS"][0], 50, list(OURS)
        end_s = WITS50_END_S
    else:
        path, scale = _synthetic(key, out), 1
    stream = open_trace(path, scale=scale, seed=0, end_s=end_s, **trace_opts)
    started = time.perf_counter()
    runs = run_policies(stream, None, policies, cfg, params=params, keep_requests=False,
                        record_ticks=False, workers=2,
                        preset="libra-ic2e21" if config == "paper" else "")
    print(f"  slo {slo}, {key} ({config}, x{scale:g}): {stream.n_requests:,} requests, "
          f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return [{**r.result.as_dict(), "scale": scale} for r in runs]


def cached(slo: float, key: str, config: str, out: Path, report_only: bool
           ) -> list[dict[str, Any]] | None:
    file = out / f"slo{slo:g}_{key.replace(' ', '_')}_{config}.json"
    if file.exists():
        rows: list[dict[str, Any]] = json.loads(file.read_text())
        return rows
    if report_only:
        return None
    rows = replay(slo, key, config, out)
    file.write_text(json.dumps(rows, indent=1))
    return rows


def checks(rows: list[dict[str, Any]]) -> list[str]:
    """The three checks of the module docs, each 'ok: ...' or 'NOT met: ...'."""
    by = {r["policy"]: r for r in rows}
    ours = [by[n] for n in OURS if n in by]
    met = [r for r in rows if r["slo_met"]]
    ours_met = [r for r in ours if r["slo_met"]]
    out = []
    if ours_met:
        best = min(ours_met, key=lambda r: r["total_cost_usd"])
        cheaper = [r["policy"] for r in met if r["total_cost_usd"] < best["total_cost_usd"]
                   and r["policy"] not in OURS]
        out.append(("ok" if not cheaper else "NOT met") +
                   f": {best['policy']} meets it at ${best['total_cost_usd']:.2f}" +
                   (f"; cheaper and meeting it: {', '.join(cheaper)}" if cheaper else
                    "; the cheapest that meets it"))
    else:
        best = min(ours, key=lambda r: (r["sla_violations"], r["total_cost_usd"]))
        near = [r for r in rows if r["total_cost_usd"] <= COST_SLACK * best["total_cost_usd"]
                and r["policy"] not in OURS]
        fewer = [r["policy"] for r in near if r["sla_violations"] < best["sla_violations"]]
        others = ", ".join(r["policy"] for r in met) or "none"
        out.append(("fallback ok" if not fewer else "NOT met") +
                   f": none of ours meets it (met by: {others}); {best['policy']} "
                   f"{best['sla_violations']:,} violations" +
                   (f"; fewer within 1.2x its cost: {', '.join(fewer)}" if fewer else
                    "; the fewest within 1.2x its cost"))
    for r in ours:
        dominators = [o["policy"] for o in rows if o["total_cost_usd"] < r["total_cost_usd"]
                      and o["sla_violations"] < r["sla_violations"]]
        out.append(("ok" if not dominators else "NOT met") + f": {r['policy']} " +
                   (f"dominated by {', '.join(dominators)}" if dominators else
                    "not dominated"))
    return out


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| policy | total $ | SLA violations | viol % | throttled | cold starts | SLO met |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['policy']} | {r['total_cost_usd']:.2f} | {r['sla_violations']:,} | "
                     f"{r['sla_violation_pct']:.4f} | {r['serverless_throttled']:,} | "
                     f"{r['serverless_cold_starts']:,} | {'yes' if r['slo_met'] else 'no'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "artifacts" / "slo_results")
    parser.add_argument("--only", default=",".join(GROUPS),
                        help=f"comma-separated groups of cases: {', '.join(GROUPS)}")
    parser.add_argument("--slos", default=",".join(map(str, SLOS)))
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    groups = [g.strip() for g in args.only.split(",") if g.strip()]
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        parser.error(f"unknown groups {unknown}; valid: {', '.join(GROUPS)}")
    slos = [float(s) for s in args.slos.split(",")]
    summary = []
    for group in groups:
        for label, key, config in GROUPS[group]:
            for slo in slos:
                rows = cached(slo, key, config, args.out, args.report_only)
                if rows is None:
                    continue
                scale = rows[0]["scale"]
                print(f"#### {label}, {config} x{scale:g}, SLO {slo:g}\n")
                print(table(rows) + "\n")
                verdicts = checks(rows) if group != "wits50" else []
                for r in rows:
                    if r["policy"] in OURS and group in ("step", "wits50"):
                        pct = 100.0 * r["serverless_throttled"] / r["requests"]
                        verdicts.append(("ok" if pct < 0.05 and r["slo_met"] else "NOT met") +
                                        f": {r['policy']} throttled {pct:.4f}% (target < 0.05%), "
                                        f"SLO {'met' if r['slo_met'] else 'not met'}")
                for v in verdicts:
                    print(f"- {v}")
                    summary.append(f"| {label} | {config} | {slo:g} | {v} |")
                print()
    print("#### Checks\n")
    print("| trace | setting | SLO | check |")
    print("|---|---|---|---|")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
