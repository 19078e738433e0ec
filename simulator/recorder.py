"""One recorder for everything a run measures: per-request outcomes and the decision stream.

Entities never print; they report here, stamped with simulated time. `docs/metrics.md` is the
glossary of what each figure means.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from libra.policies.base import Decision, Observation
from libra.routing import Route


@dataclass
class DecisionRow:
    """One controller tick: what the policy saw and what it decided."""

    t_s: float
    arrivals: int
    target_vms: int
    vms_ready: int
    vms_booting: int
    vms_draining: int
    serverless_in_flight: int
    serverless_instances: int
    served_serverless: int
    vm_quota_rps: float | None
    spill: bool
    reason: str
    signals: dict[str, float]


@dataclass
class Recorder:
    """Per-request latency and route (by arrival index) plus one row per controller tick."""

    n_requests: int
    latency_s: np.ndarray = field(init=False)
    route: np.ndarray = field(init=False)
    completed: int = 0
    decisions: list[DecisionRow] = field(default_factory=list)

    def __post_init__(self) -> None:
        # NaN latency = not served (dropped or throttled); arrays, not lists: 24 M requests fit
        self.latency_s = np.full(self.n_requests, np.nan)
        self.route = np.full(self.n_requests, int(Route.DROP), dtype=np.int8)

    def record(self, lo: int, latency_s: list[float], route: list[int]) -> None:
        """Outcomes of the requests lo, lo+1, ... dispatched together (latency NaN: dropped)."""
        hi = lo + len(latency_s)
        self.latency_s[lo:hi] = latency_s
        self.route[lo:hi] = route

    def on_complete(self, i: int) -> None:
        self.completed += 1

    def on_decision(
        self,
        obs: Observation,
        decision: Decision,
        arrivals: int,
        serverless_instances: int,
        served_serverless: int,
    ) -> None:
        self.decisions.append(
            DecisionRow(
                t_s=obs.now_s,
                arrivals=arrivals,
                target_vms=decision.target_vms,
                vms_ready=obs.vms_ready,
                vms_booting=obs.vms_booting,
                vms_draining=obs.vms_draining,
                serverless_in_flight=obs.serverless_in_flight,
                serverless_instances=serverless_instances,
                served_serverless=served_serverless,
                vm_quota_rps=decision.vm_quota_rps,
                spill=decision.spill_to_serverless,
                reason=decision.reason,
                signals=dict(decision.signals),
            )
        )

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return self.latency_s, self.route
