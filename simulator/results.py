"""What one policy's run comes to: requests, SLA violations, latency, cost.

`PolicyResult.as_dict()` is the stable row `libra-sim --json` and `--csv` print (docs/cli.md):
its keys and their meaning do not change without a note there.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.engine import Simulation


@dataclass(frozen=True)
class PolicyResult:
    """One row of the comparison table. Definitions: docs/metrics.md and docs/cli.md."""

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
    trace: str = ""
    preset: str = ""
    serverless_warm_invocations: int = 0
    slo: float | None = None  # the stated SLO the run is judged against (None: none stated)
    sla_penalty_usd: float = 0.0  # $ per late or dropped request
    spot_vm_cost_usd: float = 0.0  # of vm_cost_usd, what spot VMs cost
    spot_share_pct: float = 0.0  # of billed VM-seconds, spot ones
    spot_interruptions: int = 0  # spot notices received

    @property
    def slo_met(self) -> bool | None:
        """Whether the fraction answered inside the SLA reached the SLO (None: no SLO)."""
        if self.slo is None:
            return None
        inside = self.requests - self.sla_violations
        # 999 of 1,000 meets 0.999 although 0.999 * 1000 is 999.0000000000001 in floats
        return inside >= self.slo * self.requests - 1e-9 * max(1, self.requests)

    @property
    def cost_with_penalties_usd(self) -> float:
        """Total cost plus the SLA penalty for every late or dropped request."""
        return self.total_cost_usd + self.sla_penalty_usd * self.sla_violations

    def as_dict(self) -> dict[str, float | int | str | bool | None]:
        """The stable row: the fields docs/cli.md lists, in that order."""
        return {
            "policy": self.policy,
            "trace": self.trace,
            "preset": self.preset,
            "requests": self.requests,
            "served_vm": self.served_vm,
            "served_serverless": self.served_serverless,
            "dropped": self.dropped,
            "sla_violations": self.sla_violations,
            "sla_violation_pct": self.sla_violation_pct,
            "latency_p50_s": self.p50_latency_s,
            "latency_p95_s": self.p95_latency_s,
            "latency_p99_s": self.p99_latency_s,
            "vm_cost_usd": self.vm_cost_usd,
            "serverless_cost_usd": self.serverless_cost_usd,
            "total_cost_usd": self.total_cost_usd,
            "vm_seconds": self.vm_hours * 3600.0,
            "max_vms": self.peak_vms,
            "serverless_cold_starts": self.cold_starts,
            "serverless_throttled": self.throttled,
            "serverless_warm_invocations": self.serverless_warm_invocations,
            "serverless_share_pct": self.serverless_share_pct,
            "slo": self.slo,
            "slo_met": self.slo_met,
            "sla_penalty_usd": self.sla_penalty_usd,
            "cost_with_penalties_usd": self.cost_with_penalties_usd,
            "on_demand_vm_cost_usd": self.vm_cost_usd - self.spot_vm_cost_usd,
            "spot_vm_cost_usd": self.spot_vm_cost_usd,
            "spot_share_pct": self.spot_share_pct,
            "spot_interruptions": self.spot_interruptions,
        }


def summarise(name: str, sim: Simulation, *, trace: str = "", preset: str = "") -> PolicyResult:
    """Fold a finished simulation into its result row."""
    rec = sim.rec
    rec.fold()
    n = rec.requests
    dropped = rec.dropped
    violations = rec.late + dropped
    p50, p95, p99 = rec.percentiles_s((50.0, 95.0, 99.0))
    vm_cost, vm_s = sim.fleet.cost_usd(sim.duration_s)
    spot_cost, spot_s = sim.fleet.cost_by_kind_usd(sim.duration_s)["spot"]
    sls_cost = sim.pool.cost_usd()
    return PolicyResult(
        policy=name,
        requests=n,
        served_vm=rec.served_vm,
        served_serverless=rec.served_serverless,
        dropped=dropped,
        sla_violations=violations,
        sla_violation_pct=100.0 * violations / n if n else 0.0,
        p50_latency_s=p50,
        p95_latency_s=p95,
        p99_latency_s=p99,
        vm_cost_usd=vm_cost,
        serverless_cost_usd=sls_cost,
        total_cost_usd=vm_cost + sls_cost,
        serverless_share_pct=100.0 * rec.served_serverless / n if n else 0.0,
        vm_hours=vm_s / 3600.0,
        peak_vms=sim.max_vms,
        cold_starts=sim.pool.cold_starts,
        throttled=sim.pool.throttled,
        trace=trace,
        preset=preset,
        serverless_warm_invocations=sim.pool.warm_invocations,
        slo=sim.cfg.slo,
        sla_penalty_usd=sim.cfg.sla_penalty_usd,
        spot_vm_cost_usd=spot_cost,
        spot_share_pct=100.0 * spot_s / vm_s if vm_s else 0.0,
        spot_interruptions=sim.fleet.interruptions,
    )
