"""The contract every scaling policy shares: an `Observation` in, a `Decision` out.

A policy is pure: it reads no clock and does no I/O, so the live controller (which fills
`now_s` from `time.monotonic()`) and the simulator (which fills it from SimPy's `env.now`) drive
the very same object, and a test can drive it with a hand-written timeline.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable


@dataclass(frozen=True)
class Observation:
    """A snapshot of demand and fleet state, as the controller sees it at one tick.

    `arrivals_per_s` holds the request counts of the most recent whole seconds, oldest first: its
    last element is the second that just ended. `arrivals_per_min` does the same for whole minutes.

    The fields after `serverless_cost_per_request_usd` describe the platform's limits (cold start,
    concurrency limit, EC2's billing minimum); they default to "unknown / none" so an observer
    that does not know them (an older live controller) still builds a valid observation.
    """

    now_s: float
    arrivals_per_s: tuple[int, ...]
    arrivals_per_min: tuple[int, ...]
    vms_ready: int
    vms_booting: int
    vms_draining: int
    vm_capacity_rps: float
    serverless_in_flight: int
    sla_s: float
    vm_boot_s: float = 0.0
    vm_price_per_s_usd: float = 0.0
    serverless_cost_per_request_usd: float = 0.0
    serverless_cold_start_s: float = 0.0
    serverless_service_s: float = 0.0
    serverless_concurrency_limit: int = 0  # 0: no known limit
    serverless_scale_burst: int = 0  # new instances at once; 0: no known limit
    serverless_scale_rate_per_s: float = 0.0  # new instances per second after it; 0: unknown
    serverless_instances: int = 0  # warm instances, busy or idle
    vm_min_billing_s: float = 0.0
    slo: float | None = None  # fraction of requests to answer inside the SLA; None: not stated
    vms_spot: int = 0  # of the ready and booting VMs, how many are spot
    spot_price_per_s_usd: float = 0.0  # 0: no spot capacity offered
    spot_interruptions_per_s: float = 0.0  # per spot instance
    spot_notice_s: float = 0.0

    def __post_init__(self) -> None:
        if self.vm_capacity_rps <= 0:
            raise ValueError(f"vm_capacity_rps ({self.vm_capacity_rps}) must be positive")
        for name in ("vms_ready", "vms_booting", "vms_draining", "serverless_in_flight",
                     "serverless_concurrency_limit", "serverless_instances"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} ({getattr(self, name)}) must not be negative")
        if self.sla_s <= 0:
            raise ValueError(f"sla_s ({self.sla_s}) must be positive")

    @property
    def vms_active(self) -> int:
        """VMs that are or will soon be serving: ready plus booting (draining ones are leaving)."""
        return self.vms_ready + self.vms_booting

    def mean_rate_rps(self, window_s: float) -> float | None:
        """Mean arrival rate over the last `window_s` whole seconds, or None with no samples."""
        n = min(len(self.arrivals_per_s), max(1, round(window_s)))
        if not self.arrivals_per_s:
            return None
        return sum(self.arrivals_per_s[-n:]) / n

    def replace(self, **changes: object) -> Observation:
        """A copy with some fields changed (tests build timelines this way)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Decision:
    """What a policy wants: a VM fleet size and how requests are split between VMs and serverless.

    - `target_vms`: the fleet the provisioner should converge to (ready + booting).
    - `vm_quota_rps`: at most this many requests per second go to VMs (LIBRA's quota);
      None = no cap.
    - `vm_quota_by_count`: True: the first `vm_quota_rps` requests of each second go to VMs even
      when they must wait in the VM queue (the LIBRA paper's count-based split); False: a VM
      takes a request only when it can finish it inside the SLA budget.
    - `spill_to_serverless`: a request that no ready VM can finish inside the SLA goes to serverless
      (True) or waits in the VM queue (False, VM-only behaviour).
    - `use_vms`: False routes everything to serverless (the serverless-only baseline).
    - `hold`: True when the policy had nothing to decide on; the controller keeps the current fleet.
    - `signals`: numbers worth recording in the decision stream (rates, panic flag, estimates).
    - `serverless_warm`: serverless instances to keep warm (started ahead, pinged before their
      keep-alive ends) so a burst does not meet cold starts; 0 = leave the pool to demand.
    - `on_demand_vms`: of `target_vms`, how many are on-demand (the rest spot); None = all
      on-demand (no spot capacity, or a policy that does not use it).
    """

    target_vms: int
    reason: str
    vm_quota_rps: float | None = None
    spill_to_serverless: bool = True
    use_vms: bool = True
    hold: bool = False
    signals: Mapping[str, float] = field(default_factory=dict)
    vm_quota_by_count: bool = False
    serverless_warm: int = 0
    on_demand_vms: int | None = None

    def __post_init__(self) -> None:
        if self.on_demand_vms is not None and not 0 <= self.on_demand_vms <= self.target_vms:
            raise ValueError(f"on_demand_vms ({self.on_demand_vms}) must be between 0 and "
                             f"target_vms ({self.target_vms})")
        if self.target_vms < 0:
            raise ValueError(f"target_vms ({self.target_vms}) must not be negative")
        if self.vm_quota_rps is not None and self.vm_quota_rps < 0:
            raise ValueError(f"vm_quota_rps ({self.vm_quota_rps}) must not be negative")
        if self.serverless_warm < 0:
            raise ValueError(f"serverless_warm ({self.serverless_warm}) must not be negative")
        if not self.reason:
            raise ValueError("a Decision needs a reason (it is logged and plotted)")
        if not self.use_vms and self.target_vms:
            raise ValueError(
                f"use_vms=False with target_vms={self.target_vms}: nothing would use them"
            )

    @classmethod
    def hold_fleet(cls, current_vms: int, reason: str, **kwargs: object) -> Decision:
        """Keep the fleet as it is: the answer to missing or stale data."""
        return cls(target_vms=current_vms, reason=reason, hold=True, **kwargs)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Quiet:
    """A policy's promise that the ticks ahead change nothing, so a driver may skip them.

    `quiet_until(obs, decision)` returns one right after `decide(obs)` returned `decision` and the
    driver applied it, with `obs` showing the fleet as it then is (no VM booting or draining).
    It promises, as long as that fleet stays as it is (or whatever it does, with `fleet_blind`:
    the policy reads no VM counts) and no second brings more than `max_arrivals_per_s`
    requests:

    - `decide` at any tick before `until_s` would return a decision with the same effect
      (target, quota, split, spill, use of VMs, warm instances; the reason and signals may differ);
    - skipping some of those calls and calling `decide` once at a later tick before `until_s`
      (its observation holds every second since the last call) leaves the policy exactly as the
      skipped calls would have, so every later decision is the same too.

    The simulator uses it to make idle stretches cost next to nothing; a test replays traces
    tick by tick and skipping, and requires identical results. The live controller calls
    `decide` every tick and never asks. `obs` may show VMs booting or draining (the promise
    can then only be `fleet_blind`).
    """

    until_s: float
    max_arrivals_per_s: float = math.inf
    fleet_blind: bool = False

    # Policies compare times with a 1e-9 tolerance; a promise ends this much before the tick
    # where such a comparison could tip, so float rounding can never make a skipped tick due.
    MARGIN_S: ClassVar[float] = 1e-6

    def __post_init__(self) -> None:
        if math.isnan(self.until_s) or math.isnan(self.max_arrivals_per_s):
            raise ValueError("Quiet needs numbers, not NaN")


@runtime_checkable
class Policy(Protocol):
    """A scaling policy: `decide` is called every controller tick with a fresh observation."""

    name: ClassVar[str]

    def decide(self, obs: Observation) -> Decision: ...
