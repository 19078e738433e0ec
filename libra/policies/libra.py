"""`libra` (Raza et al., IC2E 2021): VMs for sustained load, serverless for the rest.

The paper's algorithm (`sizing="ewma"`, `quota="share"`): every second the request count is folded
into an exponentially weighted mean and mean deviation (Jacobson/Karels: the deviation is updated
with the old mean). At the first sample and every `period_s` (300 s) the VM share is
`mean + k * dev`; the fleet is sized for it and VMs receive at most `rho * share` requests per
second, the rest going to serverless. While new VMs boot the old quota is kept, so serverless hides
the VM cold start.

Our default makes the paper's implicit break-even explicit (`sizing="break-even"`): at each period
the k-th VM is kept only if, had the last period's per-second rates repeated, the load it would
have carried is at least the traffic cost indifference point r* = VM price per second / serverless
cost per request (amortised over its boot for a VM that must start). A VM that only bursts reach
carries little on average, so a short or low burst stays on serverless and a sustained one earns
VMs, without a fitted constant: prices and the period decide. Routing (`quota="headroom"`) lets
ready VMs take every request they can finish inside the SLA and spills the rest, which is the
per-request form of LIBRA's quota and hides VM cold start the same way (booting VMs take nothing).
The break-even sizing slides its `period_s` window and re-sizes every `interval_s` (60 s), so a
sustained rise earns VMs within a minute while a burst shorter than the window barely moves the
average load of a new VM. With traffic and no VM at all, the policy decides at once (the
cold-start branch) instead of waiting for the interval to end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from libra.policies.base import Decision, Observation
from libra.policies.steps import (
    break_even_rps,
    clamp,
    vms_for_rate,
    vms_paying_off,
    vms_worth_running,
)


@dataclass
class Libra:
    """LIBRA: demand monitoring, periodic VM sizing, serverless for bursts and VM boot time."""

    name: ClassVar[str] = "libra"
    alpha: float = 0.2
    mu: float = 0.2
    k: float = 1.0
    rho: float = 0.8
    period_s: float = 300.0
    interval_s: float = 60.0
    min_window_s: float = 60.0
    sizing: Literal["break-even", "ewma"] = "break-even"
    quota: Literal["headroom", "share"] = "headroom"
    break_even: bool = True
    min_vms: int = 0
    max_vms: int = 1000
    _mean: float | None = field(default=None, init=False, repr=False)
    _dev: float = field(default=0.0, init=False, repr=False)
    _seen_until_s: int | None = field(default=None, init=False, repr=False)
    _last_decide_s: float | None = field(default=None, init=False, repr=False)
    _target: int = field(default=0, init=False, repr=False)
    _share_rps: float = field(default=0.0, init=False, repr=False)
    _quota_rps: float = field(default=0.0, init=False, repr=False)
    _pending_quota_rps: float | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("alpha", "mu", "rho"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"{name} ({value}) must be in (0, 1]")
        if self.quota not in ("headroom", "share"):
            raise ValueError(f"quota ({self.quota!r}) must be 'headroom' or 'share'")
        if self.sizing not in ("break-even", "ewma"):
            raise ValueError(f"sizing ({self.sizing!r}) must be 'break-even' or 'ewma'")
        if self.period_s <= 0:
            raise ValueError(f"period_s ({self.period_s}) must be positive")
        if self.max_vms < self.min_vms:
            raise ValueError(f"max_vms ({self.max_vms}) must be >= min_vms ({self.min_vms})")

    def decide(self, obs: Observation) -> Decision:
        self._fold_new_seconds(obs)
        if self._mean is None:
            return Decision.hold_fleet(obs.vms_active, "no samples yet", vm_quota_rps=0.0)
        cold = obs.vms_active == 0 and self._target == 0 and self._mean > 0
        # the paper re-sizes once a period; the break-even sizing slides its window every interval
        interval_s = self.period_s if self.sizing == "ewma" else self.interval_s
        enough = self.sizing == "ewma" or len(obs.arrivals_per_s) >= self.min_window_s
        due = enough and (
            self._last_decide_s is None or obs.now_s - self._last_decide_s >= interval_s
        )
        if due or (cold and self._size(obs) > 0):
            reason = self._resize(obs, cold_start=cold and not due)
        elif self._last_decide_s is None:
            return Decision.hold_fleet(obs.vms_active, "window not full yet", vm_quota_rps=0.0)
        elif self._pending_quota_rps is not None and obs.vms_booting == 0:
            self._quota_rps, self._pending_quota_rps = self._pending_quota_rps, None
            reason = "new VMs ready: quota raised"
        elif self._pending_quota_rps is not None:
            reason = "new VMs booting: serverless hides their cold start"
        else:
            reason = "between periods"
        return Decision(
            target_vms=self._target,
            reason=reason,
            vm_quota_rps=self._quota_rps if self.quota == "share" else None,
            spill_to_serverless=True,
            signals={
                "mean_rps": self._mean,
                "dev_rps": self._dev,
                "share_rps": self._share_rps,
                "quota_rps": self._quota_rps,
            },
        )

    def _fold_new_seconds(self, obs: Observation) -> None:
        """Fold each whole second not seen yet into the mean and deviation (oldest first)."""
        if not obs.arrivals_per_s:
            return
        now_whole = math.floor(obs.now_s + 1e-9)
        new = 1 if self._seen_until_s is None else now_whole - self._seen_until_s
        self._seen_until_s = now_whole
        for x in obs.arrivals_per_s[-new:] if new > 0 else ():
            if self._mean is None:
                self._mean, self._dev = float(x), 0.0
                continue
            self._dev = (1 - self.mu) * self._dev + self.mu * abs(self._mean - x)
            self._mean = (1 - self.alpha) * self._mean + self.alpha * x

    def _r_star(self, obs: Observation, *, boot: bool) -> float:
        """Break-even rate; for a VM that must boot, amortised over one period after the boot."""
        if not self.break_even:
            return 0.0
        return break_even_rps(
            obs.vm_price_per_s_usd,
            obs.serverless_cost_per_request_usd,
            boot_s=obs.vm_boot_s if boot else 0.0,
            horizon_s=self.period_s,
        )

    def _size(self, obs: Observation) -> int:
        assert self._mean is not None
        if self.sizing == "break-even":
            window = obs.arrivals_per_s[-max(1, round(self.period_s)):]
            raw = vms_paying_off(
                window,
                obs.vm_capacity_rps,
                running_vms=obs.vms_ready,
                keep_rps=self._r_star(obs, boot=False),
                start_rps=self._r_star(obs, boot=True),
                max_vms=self.max_vms,
            )
        elif self.break_even:
            raw = vms_worth_running(self._ewma_share(), obs.vm_capacity_rps,
                                    self._r_star(obs, boot=True))
        else:
            raw = vms_for_rate(self._ewma_share(), obs.vm_capacity_rps)
        return clamp(raw, self.min_vms, self.max_vms)

    def _ewma_share(self) -> float:
        assert self._mean is not None
        return max(self._mean + self.k * self._dev, 0.0)

    def _resize(self, obs: Observation, *, cold_start: bool) -> str:
        self._share_rps = self._ewma_share()
        previous = self._target
        self._target = self._size(obs)
        self._last_decide_s = obs.now_s
        quota_rps = self.rho * min(self._share_rps, self._target * obs.vm_capacity_rps)
        if self._target > previous and obs.vms_ready < self._target:
            self._pending_quota_rps = quota_rps  # raised once the new VMs are ready
        else:
            self._quota_rps, self._pending_quota_rps = quota_rps, None
        why = "cold start: traffic and no VM" if cold_start else "period"
        return (
            f"{why}: {self.sizing} sizing -> {self._target} VMs "
            f"(share {self._share_rps:.1f} req/s, break-even {self._r_star(obs, boot=True):.1f})"
        )
