"""`vm-reactive` (the paper's AUTO): target-utilisation autoscaling of VMs only, Knative-style.

Two windows over the arrival rate: a stable window (60 s) sets the fleet, a short panic window
(6 s) reacts to bursts. Panic starts when the panic window wants `panic_threshold` times the VMs
that are ready; while panicking the fleet never shrinks, and panic ends only after a whole stable
window without the condition. Scale-up acts after `upscale_delay_s`, scale-down after
`downscale_delay_s` (applying the highest target seen meanwhile), and each step is rate limited.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from libra.core.policies.base import Decision, Observation, Quiet
from libra.core.policies.steps import (
    ScaleDelay,
    clamp,
    largest_count,
    limit_rate,
    vms_for_rate,
)


@dataclass
class VMReactive:
    """Reactive VM autoscaling; requests wait in the VM queue while new VMs boot."""

    name: ClassVar[str] = "vm-reactive"
    target_utilisation: float = 0.7
    stable_window_s: float = 60.0
    panic_window_s: float = 6.0
    panic_threshold: float = 2.0
    upscale_delay_s: float = 0.0
    downscale_delay_s: float = 300.0
    max_scale_up_ratio: float = 1000.0
    max_scale_down_ratio: float = 2.0
    min_vms: int = 1
    max_vms: int = 1000
    _delay: ScaleDelay = field(init=False, repr=False)
    _panic_since_s: float | None = field(default=None, init=False, repr=False)
    _last_condition_s: float | None = field(default=None, init=False, repr=False)
    _panic_floor: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.panic_window_s > self.stable_window_s:
            raise ValueError(
                f"panic_window_s ({self.panic_window_s}) must be <= stable_window_s "
                f"({self.stable_window_s})"
            )
        if self.max_vms < self.min_vms:
            raise ValueError(f"max_vms ({self.max_vms}) must be >= min_vms ({self.min_vms})")
        self._delay = ScaleDelay(self.upscale_delay_s, self.downscale_delay_s)

    spills_while_changing: ClassVar[bool] = False

    def decide(self, obs: Observation) -> Decision:
        stable_rps = obs.mean_rate_rps(self.stable_window_s)
        panic_rps = obs.mean_rate_rps(self.panic_window_s)
        current = obs.vms_active
        if stable_rps is None or panic_rps is None:
            return Decision.hold_fleet(
                current, "no samples in stable window", spill_to_serverless=self._spill(obs)
            )
        want_stable = vms_for_rate(stable_rps, obs.vm_capacity_rps, self.target_utilisation)
        want_panic = vms_for_rate(panic_rps, obs.vm_capacity_rps, self.target_utilisation)
        panicking = self._update_panic(obs, want_panic)
        if panicking:
            self._panic_floor = max(self._panic_floor, want_panic, current)
            raw, window = max(want_panic, self._panic_floor), "panic"
        else:
            self._panic_floor = 0
            raw, window = want_stable, "stable"
        bounded = clamp(limit_rate(current, raw, self.max_scale_up_ratio,
                                   self.max_scale_down_ratio), self.min_vms, self.max_vms)
        if panicking and bounded < current:
            bounded = current  # never scale down while panicking
        target = self._delay.apply(obs.now_s, current, bounded)
        reason = f"{window} window wants {raw} VMs"
        if target != bounded:
            reason += f", waiting for the {'up' if bounded > current else 'down'}scale delay"
        return Decision(
            target_vms=target,
            reason=reason,
            spill_to_serverless=self._spill(obs),
            signals={
                "stable_rps": stable_rps,
                "panic_rps": panic_rps,
                "panic": float(panicking),
                "raw_target": float(raw),
            },
        )

    def quiet_until(self, obs: Observation, decision: Decision) -> Quiet | None:
        """At the fleet's floor, not panicking, no scale pending: while no second brings more
        than a load the current fleet carries at its target utilisation, neither window can
        ask for more VMs nor panic, and the floor forbids fewer (see `Quiet`)."""
        current = obs.vms_active
        if self._panic_since_s is not None or self._delay.pending_since_s is not None or \
                obs.vms_booting or obs.vms_draining or not obs.arrivals_per_s or \
                current != self.min_vms or decision.target_vms != current or \
                decision.spill_to_serverless:
            return None
        capacity_rps, utilisation = obs.vm_capacity_rps, self.target_utilisation

        def carried(count: int) -> bool:
            return vms_for_rate(count, capacity_rps, utilisation) <= current

        bound = largest_count(carried, 0, math.ceil(current * capacity_rps) + 1)
        window = obs.arrivals_per_s[-max(1, round(self.stable_window_s)):]
        if max(window) > bound:
            return None
        return Quiet(math.inf, float(bound))

    def _spill(self, obs: Observation) -> bool:
        return self.spills_while_changing and (obs.vms_booting > 0 or obs.vms_draining > 0)

    def _update_panic(self, obs: Observation, want_panic: int) -> bool:
        """Enter panic on a burst; leave only after a stable window without the condition."""
        ready = max(obs.vms_ready, 1)
        if want_panic / ready >= self.panic_threshold and want_panic > obs.vms_ready:
            self._last_condition_s = obs.now_s
            if self._panic_since_s is None:
                self._panic_since_s = obs.now_s
            return True
        if self._panic_since_s is None:
            return False
        assert self._last_condition_s is not None
        if obs.now_s - self._last_condition_s >= self.stable_window_s:
            self._panic_since_s = None
            return False
        return True
