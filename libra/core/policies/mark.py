"""`mark` (MArk, Zhang et al., USENIX ATC 2019): predictive VMs, serverless for the rest.

Every `interval_s` (60 s) the policy takes the busiest `bin_s` (5 s) of the last interval as the
rate to plan for, adds `headroom` (20%), and provisions VMs for it at `target_utilisation`.
Whatever the forecast missed (requests no ready VM can finish inside the SLA) goes to serverless.
MArk forecasts with a trained model (ARIMA/LSTM); the busiest recent bin is the stand-in LIBRA's
authors and we use: no model to train, and it errs towards over-provisioning as MArk's does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from libra.core.policies.base import Decision, Observation, Quiet
from libra.core.policies.steps import clamp, vms_for_rate


@dataclass
class Mark:
    """Busiest-bin forecast every interval; VMs for the forecast, serverless for the surprise."""

    name: ClassVar[str] = "mark"
    interval_s: float = 60.0
    bin_s: int = 5
    headroom: float = 0.2
    target_utilisation: float = 0.9
    min_vms: int = 0
    max_vms: int = 1000
    _last_decision: Decision | None = field(default=None, init=False, repr=False)
    _last_decide_s: float | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.bin_s < 1 or self.bin_s > self.interval_s:
            raise ValueError(f"bin_s ({self.bin_s}) must be in [1, interval_s ({self.interval_s})]")
        if self.headroom < 0:
            raise ValueError(f"headroom ({self.headroom}) must not be negative")

    def decide(self, obs: Observation) -> Decision:
        due = self._last_decide_s is None or obs.now_s - self._last_decide_s >= self.interval_s
        if not due and self._last_decision is not None:
            return self._last_decision
        if not obs.arrivals_per_s:
            return Decision.hold_fleet(obs.vms_active, "no samples yet")
        window = obs.arrivals_per_s[-int(self.interval_s):]
        busiest = max(
            sum(window[i:i + self.bin_s]) for i in range(max(len(window) - self.bin_s, 0) + 1)
        )
        forecast_rps = busiest / min(self.bin_s, len(window)) * (1.0 + self.headroom)
        raw = vms_for_rate(forecast_rps, obs.vm_capacity_rps, self.target_utilisation)
        target = clamp(raw, self.min_vms, self.max_vms)
        self._last_decide_s = obs.now_s
        self._last_decision = Decision(
            target_vms=target,
            reason=f"busiest {self.bin_s} s bin forecasts {forecast_rps:.1f} req/s",
            spill_to_serverless=True,
            signals={"forecast_rps": forecast_rps, "raw_target": float(raw)},
        )
        return self._last_decision

    def quiet_until(self, obs: Observation, decision: Decision) -> Quiet | None:
        """Until the next interval `decide` hands back its last decision, whatever the VMs do
        (see `Quiet`)."""
        if self._last_decide_s is None or self._last_decision is None:
            return None
        return Quiet(self._last_decide_s + self.interval_s - Quiet.MARGIN_S, fleet_blind=True)
