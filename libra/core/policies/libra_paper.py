"""`libra-paper`: LIBRA (Raza et al., IC2E 2021) exactly as the authors' simulator runs it.

Read in `aliraza0337/LIBRA` @ 53a8044 (`manager.py`), summarised in ../shared/LIBRA.md. Every
second, with x the requests of that second:

    first sample:  mean = x ; dev = 0
    otherwise:     dev  = (1 - mu) * dev + mu * |mean - x|      (with the OLD mean)
                   mean = (1 - alpha) * mean + alpha * x
    at the first sample and every period_s (300 s):
        vm_share = int(|mean + k * dev|)
        n_vms    = ceil(vm_share / per_vm_capacity)
        set the fleet to n_vms
        if n_vms > n_vms_in_force: keep the old quota; raise it vm_boot_s later
        else:                      quota = int(rho * vm_share), at once
    routing: the first `quota` requests of each second go to VMs (queueing there if they must),
    the rest to serverless.

`n_vms_in_force` is the fleet the quota was last set for (the authors' `prev_n_vms`); it starts
at 0, so at the first decision the quota stays 0 until the first VMs are ready: everything goes
to serverless for one VM boot. The quota is raised by a counter (`vm_boot_s` after the decision
that asked for more VMs, with the vm_share of that moment), as the authors' code does, not by
watching the VMs become ready; a counter already running is not restarted by a later scale-out.

Time: the simulator's tick at `now_s = t` sees the counts of seconds 0 .. t-1. The authors'
epoch t sees its own second's count before routing it; here the decision made with second
t-1's count routes second t, one second later (see docs/policies.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from libra.core.policies.base import Decision, Observation, Quiet

_EPS = 1e-9


@dataclass
class LibraPaper:
    """The LIBRA paper's algorithm, parameters as in the authors' configuration.py."""

    name: ClassVar[str] = "libra-paper"
    alpha: float = 0.2
    mu: float = 0.2
    k: float = 1.0
    rho: float = 0.8
    period_s: float = 300.0
    max_vms: int = 1_000_000  # the authors' LIBRA has no cap
    _mean: float | None = field(default=None, init=False, repr=False)
    _dev: float = field(default=0.0, init=False, repr=False)
    _seen_until_s: int | None = field(default=None, init=False, repr=False)
    _next_decision_s: float | None = field(default=None, init=False, repr=False)
    _n_vms: int = field(default=0, init=False, repr=False)
    _n_vms_in_force: int = field(default=0, init=False, repr=False)
    _vm_share: int = field(default=0, init=False, repr=False)
    _quota: int = field(default=0, init=False, repr=False)
    _raise_at_s: float | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("alpha", "mu", "rho"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"{name} ({value}) must be in (0, 1]")
        if self.period_s <= 0:
            raise ValueError(f"period_s ({self.period_s}) must be positive")
        if self.max_vms < 0:
            raise ValueError(f"max_vms ({self.max_vms}) must not be negative")

    def decide(self, obs: Observation) -> Decision:
        self._fold_new_seconds(obs)
        if self._mean is None:
            return Decision.hold_fleet(obs.vms_active, "no samples yet", vm_quota_rps=0.0,
                                       vm_quota_by_count=True)
        reason = "between periods"
        if self._next_decision_s is None or obs.now_s + _EPS >= self._next_decision_s:
            self._next_decision_s = obs.now_s + self.period_s
            self._vm_share = int(abs(self._mean + self.k * self._dev))
            self._n_vms = min(self.max_vms,
                              math.ceil(self._vm_share / obs.vm_capacity_rps - _EPS))
            if self._n_vms > self._n_vms_in_force:
                if self._raise_at_s is None:
                    self._raise_at_s = obs.now_s + obs.vm_boot_s
                reason = (f"period: {self._n_vms} VMs for share {self._vm_share}; quota "
                          f"{self._quota} held while they boot")
            else:
                self._set_quota()
                reason = (f"period: {self._n_vms} VMs for share {self._vm_share}, quota "
                          f"{self._quota}")
        if self._raise_at_s is not None and obs.now_s + _EPS >= self._raise_at_s:
            self._raise_at_s = None
            self._set_quota()
            reason = f"new VMs ready: quota {self._quota}"
        return Decision(
            target_vms=self._n_vms,
            reason=reason,
            vm_quota_rps=float(self._quota),
            vm_quota_by_count=True,
            spill_to_serverless=True,
            signals={"mean_rps": self._mean, "dev_rps": self._dev,
                     "share_rps": float(self._vm_share), "quota_rps": float(self._quota)},
        )

    def quiet_until(self, obs: Observation, decision: Decision) -> Quiet | None:
        """Between periods (and before a held quota is raised) the fleet and the quota stay,
        whatever the VMs do (the quota is raised by a counter, not by watching them); the mean
        and deviation fold every second of a later call in order (see `Quiet`)."""
        if self._mean is None or self._next_decision_s is None:
            return None
        until_s = self._next_decision_s
        if self._raise_at_s is not None:
            until_s = min(until_s, self._raise_at_s)
        return Quiet(until_s - Quiet.MARGIN_S, fleet_blind=True)

    def _set_quota(self) -> None:
        self._n_vms_in_force = self._n_vms
        self._quota = int(self._vm_share * self.rho)

    def _fold_new_seconds(self, obs: Observation) -> None:
        """Fold each whole second not seen yet into the mean and deviation (oldest first)."""
        if not obs.arrivals_per_s:
            return
        now_whole = math.floor(obs.now_s + _EPS)
        new = 1 if self._seen_until_s is None else now_whole - self._seen_until_s
        self._seen_until_s = now_whole
        for x in obs.arrivals_per_s[-new:] if new > 0 else ():
            if self._mean is None:
                self._mean, self._dev = float(x), 0.0
                continue
            self._dev = (1 - self.mu) * self._dev + self.mu * abs(self._mean - x)
            self._mean = (1 - self.alpha) * self._mean + self.alpha * x
