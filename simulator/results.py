"""What one policy's run comes to: requests, SLA violations, latency, cost."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from libra.routing import Route
from simulator.engine import Simulation


@dataclass(frozen=True)
class PolicyResult:
    """One row of the comparison table. Definitions: docs/metrics.md."""

    policy: str
    requests: int
    served_vm: int
    served_serverless: int
    dropped: int
    sla_violations: int
    sla_violation_pct: float
    p50_latency_s: float
    p95_latency_s: float
    p99_latency_s: float
    vm_cost_usd: float
    serverless_cost_usd: float
    total_cost_usd: float
    serverless_share_pct: float
    vm_hours: float
    peak_vms: int
    cold_starts: int
    throttled: int

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def summarise(name: str, sim: Simulation) -> PolicyResult:
    """Fold a finished simulation into its result row."""
    latency, route = sim.rec.arrays()
    n = len(latency)
    served = ~np.isnan(latency)
    late = served & (latency > sim.cfg.sla_s)
    dropped = int(n - served.sum())
    violations = int(late.sum()) + dropped
    if served.any():
        p50, p95, p99 = (float(x) for x in np.percentile(latency[served], [50, 95, 99]))
    else:
        p50 = p95 = p99 = float("nan")
    vm_cost, vm_s = sim.fleet.cost_usd(sim.duration_s)
    sls_cost = sim.pool.cost_usd()
    n_sls = int((route == Route.SERVERLESS).sum())
    return PolicyResult(
        policy=name,
        requests=n,
        served_vm=int((route == Route.VM).sum()),
        served_serverless=n_sls,
        dropped=dropped,
        sla_violations=violations,
        sla_violation_pct=100.0 * violations / n if n else 0.0,
        p50_latency_s=p50,
        p95_latency_s=p95,
        p99_latency_s=p99,
        vm_cost_usd=vm_cost,
        serverless_cost_usd=sls_cost,
        total_cost_usd=vm_cost + sls_cost,
        serverless_share_pct=100.0 * n_sls / n if n else 0.0,
        vm_hours=vm_s / 3600.0,
        peak_vms=max((r.vms_ready + r.vms_booting for r in sim.rec.decisions), default=0),
        cold_starts=sim.pool.cold_starts,
        throttled=sim.pool.throttled,
    )
