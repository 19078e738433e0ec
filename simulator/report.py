"""Turn policy results into what people read: a table, JSON, CSV, decisions.csv and a plot."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from simulator.recorder import DecisionRow
from simulator.results import PolicyResult
from simulator.runner import PolicyRun

_COLUMNS = (
    ("policy", "policy", "{}"),
    ("requests", "requests", "{:,}"),
    ("sla_violation_pct", "SLA viol %", "{:.3f}"),
    ("dropped", "dropped", "{:,}"),
    ("latency_p50_s", "p50 s", "{:.3f}"),
    ("latency_p95_s", "p95 s", "{:.3f}"),
    ("latency_p99_s", "p99 s", "{:.3f}"),
    ("vm_cost_usd", "VM $", "{:.2f}"),
    ("serverless_cost_usd", "serverless $", "{:.2f}"),
    ("total_cost_usd", "total $", "{:.2f}"),
    ("serverless_share_pct", "serverless %", "{:.1f}"),
    ("max_vms", "peak VMs", "{}"),
)


def _columns(results: Sequence[PolicyResult]) -> tuple[tuple[str, str, str], ...]:
    """The table's columns: with a stated SLO, whether each policy met it; with an SLA
    penalty, the cost including penalties (the second view of cost); with spot VMs, their
    share of VM-seconds, their cost and the interruptions."""
    extra: list[tuple[str, str, str]] = []
    stated = [r.slo for r in results if r.slo is not None]
    if stated:
        extra.append(("slo_met", f"SLO {stated[0]:.6g} met", "{}"))
    if any(r.sla_penalty_usd > 0 for r in results):
        extra.append(("cost_with_penalties_usd", "with penalties $", "{:.2f}"))
    if any(r.spot_share_pct > 0 or r.spot_interruptions for r in results):  # spot offered
        extra.extend((("spot_share_pct", "spot % VM-s", "{:.1f}"),
                      ("spot_vm_cost_usd", "spot VM $", "{:.2f}"),
                      ("spot_interruptions", "interruptions", "{:,}")))
    return (*_COLUMNS, *extra)


def _cell(value: object, fmt: str) -> str:
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return "-" if value is None else fmt.format(value)


def table(results: Sequence[PolicyResult]) -> str:
    """A fixed-width table, one row per policy."""
    columns = _columns(results)
    rows = [[title for _, title, _ in columns]]
    for r in results:
        d = r.as_dict()
        rows.append([_cell(d[key], fmt) for key, _, fmt in columns])
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = []
    for j, row in enumerate(rows):
        pairs = enumerate(zip(row, widths, strict=True))
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs]
        lines.append("  ".join(cells))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(results: Sequence[PolicyResult]) -> str:
    columns = _columns(results)
    head = "| " + " | ".join(title for _, title, _ in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = [
        "| " + " | ".join(_cell(r.as_dict()[key], fmt) for key, _, fmt in columns) + " |"
        for r in results
    ]
    return "\n".join([head, sep, *body])


def _clean(value: float | int | str | bool | None) -> float | int | str | bool | None:
    return None if isinstance(value, float) and math.isnan(value) else value


def to_json(results: Sequence[PolicyResult], meta: dict[str, object]) -> str:
    return json.dumps(
        {
            "meta": meta,
            "results": [{k: _clean(v) for k, v in r.as_dict().items()} for r in results],
        },
        indent=2,
    )


def to_csv(results: Sequence[PolicyResult]) -> str:
    buf = io.StringIO()
    fields = list(results[0].as_dict()) if results else []
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in results:
        writer.writerow(r.as_dict())
    return buf.getvalue()


def write_decisions(runs: Sequence[PolicyRun], path: Path) -> None:
    """Every controller tick of every policy, one row each: the decision stream."""
    signal_keys = sorted({k for run in runs if run.ticks for k in run.ticks.signals})
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow([
            "policy", "t_s", "arrivals", "target_vms", "vms_ready", "vms_booting", "vms_draining",
            "serverless_in_flight", "serverless_instances", "served_serverless", "vm_quota_rps",
            "spill", "serverless_warm",
            "policy_eval_us", *signal_keys, "reason",
        ])
        for run in runs:
            for row, eval_s in zip(_rows(run), _column(run, "policy_eval_s"), strict=True):
                writer.writerow([
                    run.result.policy, f"{row.t_s:g}", row.arrivals, row.target_vms,
                    row.vms_ready, row.vms_booting, row.vms_draining, row.serverless_in_flight,
                    row.serverless_instances, row.served_serverless,
                    "" if row.vm_quota_rps is None else f"{row.vm_quota_rps:.3f}",
                    int(row.spill), row.serverless_warm, f"{eval_s * 1e6:.1f}",
                    *(f"{row.signals[k]:.4g}" if k in row.signals else "" for k in signal_keys),
                    row.reason,
                ])


TIMELINE_COLUMNS = ("policy", "t_s", "arrivals", "vms_ready", "vms_booting", "vms_draining",
                    "target_vms", "vm_quota_rps", "serverless_in_flight", "serverless_instances",
                    "serverless_warm", "served_serverless")


def write_timeline(runs: Sequence[PolicyRun], path: Path) -> None:
    """One row per tick (1 s by default) and policy; columns in docs/cli.md.

    Row t: `arrivals` in [t, t + tick), the VMs and serverless instances the tick at t saw, the
    decision made then (`target_vms`, `vm_quota_rps`, `serverless_warm`), and `served_serverless`
    in the tick before t (what the controller had seen spill).
    """
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(TIMELINE_COLUMNS)
        for run in runs:
            if run.ticks is None:
                continue
            cols = {name: _column(run, name).tolist() for name in (
                "t_s", "arrivals_in_tick", *TIMELINE_COLUMNS[3:])}
            policy = run.result.policy
            for i in range(run.ticks.n):
                quota = cols["vm_quota_rps"][i]
                writer.writerow([
                    policy, f"{cols['t_s'][i]:g}", cols["arrivals_in_tick"][i],
                    cols["vms_ready"][i], cols["vms_booting"][i], cols["vms_draining"][i],
                    cols["target_vms"][i], "" if math.isnan(quota) else f"{quota:g}",
                    cols["serverless_in_flight"][i], cols["serverless_instances"][i],
                    cols["serverless_warm"][i], cols["served_serverless"][i],
                ])


def _rows(run: PolicyRun) -> list[DecisionRow]:
    return run.ticks.rows() if run.ticks is not None else []


def _column(run: PolicyRun, name: str) -> np.ndarray:
    if run.ticks is None:
        return np.zeros(0)
    return run.ticks.column(name)


def _mean_per_bucket(values: np.ndarray, points: int = 2000) -> np.ndarray:
    """Means over consecutive buckets, so a 12 h run draws ~2,000 points, not 45,000."""
    size = max(1, -(-values.size // points))
    if size == 1:
        return values
    cut = values.size // size * size
    head = values[:cut].reshape(-1, size).mean(axis=1)
    return np.concatenate([head, [values[cut:].mean()]]) if cut < values.size else head


def plot(runs: Sequence[PolicyRun], path: Path, title: str) -> None:
    """Per policy: demand and the part served by serverless (req/s), VMs ready and booting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), 1, figsize=(11, 2.3 * len(runs) + 0.6), sharex=True,
                             squeeze=False)
    for ax, run in zip(axes[:, 0], runs, strict=True):
        t_min = _mean_per_bucket(_column(run, "t_s")) / 60.0
        demand = _mean_per_bucket(_column(run, "arrivals").astype(float)) / run.tick_s
        ready = _mean_per_bucket(_column(run, "vms_ready").astype(float))
        booting = _mean_per_bucket(_column(run, "vms_booting").astype(float))
        sls = _mean_per_bucket(_column(run, "served_serverless").astype(float)) / run.tick_s
        ax.plot(t_min, demand, color="0.6", lw=0.6, label="demand (req/s)")
        ax.fill_between(t_min, 0, sls, color="tab:orange", alpha=0.6, lw=0,
                        label="served by serverless (req/s)")
        ax.set_ylabel("req/s")
        ax2 = ax.twinx()
        ax2.step(t_min, ready, where="post", color="tab:blue", lw=1.2, label="VMs ready")
        ax2.step(t_min, ready + booting, where="post", color="tab:blue", lw=0.8, ls="--",
                 label="VMs ready + booting")
        ax2.set_ylabel("VMs")
        ax2.set_ylim(0, max(1.0, float((ready + booting).max(initial=0)) * 1.08))
        r = run.result
        ax.set_title(
            f"{r.policy}: SLA violations {r.sla_violation_pct:.2f}%, cost ${r.total_cost_usd:.2f}"
            f" (serverless {r.serverless_share_pct:.0f}% of requests)", fontsize=9, loc="left",
        )
        if ax is axes[0, 0]:
            h1, l1 = ax.get_legend_handles_labels()
            h2, l2 = ax2.get_legend_handles_labels()
            ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper right", ncol=4)
    axes[-1, 0].set_xlabel("time (min)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.35 / fig.get_figheight()))
    fig.savefig(path, dpi=110 if len(runs) <= 6 else 80)  # tall figures: keep the file small
    plt.close(fig)
