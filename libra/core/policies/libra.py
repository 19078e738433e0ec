"""`libra`: LIBRA's structure (VMs for sustained load, serverless for the rest and for VM boots)
with what the paper leaves implicit or out made explicit. The paper's own algorithm, step for
step, is `libra-paper` (`libra/core/policies/libra_paper.py`).

1. **Break-even from the prices.** One more VM pays off only if it carries at least
   r* = VM price per second / serverless cost per request (the traffic cost indifference point).
   Every `interval_s` (60 s) the policy takes the last `period_s` (300 s) of per-second counts and
   computes the mean load the k-th VM would have carried, `mean_t clip(x_t - (k-1) * capacity, 0,
   capacity)`: a VM that only bursts reach carries little on average, one a sustained rise
   reaches carries a lot. The fleet is the largest k whose k-th VM clears its bar: r* for a VM
   already running, r* * max(boot + period, EC2 minimum) / period for one that must first boot
   (it is billed while booting and for at least the minimum). No constant fitted to a trace: the
   prices, the boot delay and the period decide.
2. **Serverless concurrency limit.** Serverless carries at most `limit / service time` req/s;
   load above that is throttled (dropped). The fleet is at least the VMs that carry, on average
   over the window, the load serverless could not.
3. **EC2's 60 s minimum.** A VM stopped within `vm_min_billing_s` of being launched saves nothing,
   so the fleet does not shrink within that time of growing.
4. **Serverless cold starts and keep-alive.** When a cold start cannot meet the SLA (cold start +
   service > SLA), the policy keeps warm the serverless instances the spill has needed at its
   peak over the last `warm_horizon_s` (the per-second load above the ready VMs' capacity, times
   the serverless service time, plus a Poisson margin of three standard deviations for arrivals
   inside the second), up to the concurrency limit; the platform keeps them warm past their
   keep-alive with pings (`Decision.serverless_warm`).
5. **Per-request latency against the SLA.** No quota: ready VMs take every request they can
   finish inside the SLA (the shared routing rule, planned with the VM's p99 service time), the
   rest spills. Booting VMs take nothing, so serverless hides the VM boot as the paper's held
   quota does.

With traffic and no VM at all the policy decides at once (the cold-start branch) instead of
waiting for the interval; with a running fleet it holds until its window has `min_window_s`
(60 s) of data.

**A stated SLO** (`Observation.slo`, `libra.core.policies.slo`): the violation budget 1 - slo is
split between throttling, cold starts and VM service tails. The throttle floor then holds the
throttled fraction of the whole observed history (not the period's mean excess) under its share,
against what serverless carries within its limit at that share's Poisson quantile; warm
instances cover the spill's Poisson quantile at the cold-start share; the router's planning
quantile follows the budget (`Platform`). **Flash crowds**: with an SLO the policy checks every
tick where the rate is heading one VM boot ahead (`slo.projected_rate`); when that would exceed
the fleet plus what serverless may carry (its concurrency limit, and the instances its scale-up
rate can add within a boot), it launches the VMs at once instead of at the next interval, and
while the spill is at a new peak it starts the warm instances the rise will need a cold start
from now. Burst VMs are sized again at the next interval like any other (break-even rule,
billing minimum). Without an SLO none of this runs and the policy is as before.

**Spot** (`Observation.spot_*`, `libra.core.policies.spot_split`): where the platform offers spot
VMs, the fleet is sized at a spot VM's price including what its interruptions cost (the
replacement billed during the notice, the spill while it boots), and at each resize
`Decision.on_demand_vms` keeps an on-demand base below spot VMs (break-even per VM, the SLO's
budget for interruption-late requests, a storm serverless can carry).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import ClassVar

from libra.core.policies import slo as slo_steps
from libra.core.policies import spot_split
from libra.core.policies.base import Decision, Observation, Quiet
from libra.core.policies.steps import break_even_rps, clamp, largest_count, vms_paying_off

_EPS = 1e-9
_POISSON_Z = 3.0  # margin for arrivals bunching inside a second: 3 sd of a Poisson count
_COUNT_CEILING = 1 << 40  # no second brings more requests than this


@dataclass
class Libra:
    """LIBRA with explicit break-even, serverless limits and warm instances (see module docs)."""

    name: ClassVar[str] = "libra"
    period_s: float = 300.0
    interval_s: float = 60.0
    min_window_s: float = 60.0
    warm_horizon_s: float = 3600.0
    min_vms: int = 0
    max_vms: int = 1000
    _last_decide_s: float | None = field(default=None, init=False, repr=False)
    _target: int = field(default=0, init=False, repr=False)
    _grew_at_s: float = field(default=-math.inf, init=False, repr=False)
    _signals: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    # (minute, warm instances needed at the peak of that minute), newest last
    _warm_peaks: deque[tuple[int, int]] = field(default_factory=deque, init=False, repr=False)
    _seen_until_s: int = field(default=0, init=False, repr=False)
    # quiet bounds by what they depend on (see quiet_until)
    _bounds: dict[tuple[object, ...], int] = field(default_factory=dict, init=False, repr=False)
    _floats: dict[tuple[object, ...], float] = field(default_factory=dict, init=False,
                                                     repr=False)
    # (target, on-demand VMs of it) as last split (spot_split.py)
    _split: tuple[int, int | None] = field(default=(-1, None), init=False, repr=False)
    _quantiles: dict[tuple[float, float, float], int] = field(default_factory=dict, init=False,
                                                              repr=False)

    def __post_init__(self) -> None:
        for name in ("period_s", "interval_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} ({getattr(self, name)}) must be positive")
        if self.warm_horizon_s < 0:
            raise ValueError(f"warm_horizon_s ({self.warm_horizon_s}) must not be negative")
        if self.max_vms < self.min_vms:
            raise ValueError(f"max_vms ({self.max_vms}) must be >= min_vms ({self.min_vms})")

    # -- the decision ------------------------------------------------------------------------
    def decide(self, obs: Observation) -> Decision:
        priced, obs = obs, spot_split.sized_with_spot(obs)  # spot: VMs sized at its price
        warm = self._warm_target(obs)
        if not obs.arrivals_per_s:
            return Decision.hold_fleet(obs.vms_active, "no samples yet", serverless_warm=warm)
        cold = obs.vms_active == 0 and self._target == 0 and obs.arrivals_per_s[-1] > 0
        enough = len(obs.arrivals_per_s) >= self.min_window_s
        due = enough and (
            self._last_decide_s is None or obs.now_s - self._last_decide_s + _EPS >= self.interval_s
        )
        flash = self._flash_size(obs)
        if due or cold:
            size = max(self._size(obs), flash)
            if due or size > 0:
                reason = self._resize(obs, size, cold_start=cold and not due)
            else:
                reason = "cold start: too little load for a VM"
        elif flash > max(self._target, obs.vms_active):
            self._grew_at_s = obs.now_s
            self._target = flash
            reason = f"flash crowd: the load would outrun serverless -> {flash} VMs"
        elif self._last_decide_s is None:
            return Decision.hold_fleet(obs.vms_active, "window not full yet", serverless_warm=warm)
        elif obs.vms_booting:
            reason = "new VMs booting: serverless hides their cold start"
        else:
            reason = "between intervals"
        return Decision(
            target_vms=self._target,
            reason=reason,
            spill_to_serverless=True,
            serverless_warm=warm,
            signals={**self._signals, "serverless_warm": float(warm)},
            on_demand_vms=self._on_demand(priced),
        )

    def _on_demand(self, obs: Observation) -> int | None:
        """Of the target, the on-demand VMs (the rest spot; `spot_split.py`), split again only
        when the fleet is resized, so a quiet spell keeps it."""
        if not spot_split.spot_offered(obs):
            return None
        if self._target != self._split[0] or self._last_decide_s == obs.now_s:
            self._split = (self._target, spot_split.on_demand_vms(
                obs, self._target, self._planning_window(obs)))
        return self._split[1]

    def quiet_until(self, obs: Observation, decision: Decision) -> Quiet | None:
        """Between intervals, within the minute, while the warm pool and (at 0 VMs) the
        cold-start branch cannot change: see `Quiet`. Each bound below is the largest
        per-second count for which this policy's own arithmetic keeps the decision."""
        obs = spot_split.sized_with_spot(obs)
        if self._last_decide_s is None or not obs.arrivals_per_s or obs.vms_booting or \
                obs.vms_draining or obs.vms_ready != self._target or \
                decision.target_vms != self._target:
            return None
        now_whole = math.floor(obs.now_s + _EPS)
        # warm peaks are kept per minute (and libra-forecast's buckets close on the minute)
        until_s = min(self._last_decide_s + self.interval_s, 60.0 * (now_whole // 60 + 1))
        bound = _COUNT_CEILING
        if self._warm_on(obs):
            peak = max((n for _, n in self._warm_peaks), default=0)
            # a sizing after the warm target was set (libra-forecast's ratio) moves it next tick
            if self._warm_for_peak(peak, obs) != decision.serverless_warm:
                return None
            capacity_rps, service_s = obs.vms_ready * obs.vm_capacity_rps, obs.serverless_service_s
            key: tuple[object, ...] = ("warm", peak, capacity_rps, service_s, obs.slo)
            if key not in self._bounds:
                self._bounds[key] = largest_count(
                    lambda x: self._instances(x, capacity_rps, obs) <= peak, 0,
                    math.floor(capacity_rps + peak / service_s) + 2)
            bound = self._bounds[key]
        if obs.slo is not None:
            bound = min(bound, self._flash_bound(obs))
        if self._target == 0:  # the cold-start branch sizes the fleet at every arrival
            if self.min_vms > 0 or not self._quiet_cold_ok():
                return None
            cold_bound = self._no_vm_bound(obs)
            if max(self._floor_counts(obs)) > cold_bound:
                return None
            bound = min(bound, cold_bound)
        if len(self._bounds) > 256:  # a memo, not a history: keep it small
            self._bounds.clear()
        return Quiet(until_s - Quiet.MARGIN_S, float(bound))

    def _quiet_cold_ok(self) -> bool:
        """Whether sizing at a cold start would leave this policy's state as it is."""
        return True

    def _scaled(self, count: int) -> float:
        """One second's count as `_planning_window` gives it to the sizing."""
        return float(count)

    def _no_vm_bound(self, obs: Observation) -> int:
        """`_cold_bound`, remembered by what it depends on."""
        key = ("cold", self._scaled(1), obs.vm_capacity_rps, obs.vm_price_per_s_usd,
               obs.serverless_cost_per_request_usd, obs.vm_boot_s, obs.vm_min_billing_s,
               obs.serverless_concurrency_limit, obs.serverless_service_s, obs.slo)
        if key not in self._bounds:
            self._bounds[key] = self._cold_bound(obs)
        return self._bounds[key]

    def _cold_bound(self, obs: Observation) -> int:
        """The largest count such that `_size` gives 0 VMs for any window of counts none above
        it: the first VM's load (a mean of clipped counts) stays below its start bar, and
        nothing is left over for the throttle floor. 1e-12 covers the mean's rounding above
        its largest term."""
        capacity = obs.vm_capacity_rps
        r_star = break_even_rps(obs.vm_price_per_s_usd, obs.serverless_cost_per_request_usd)
        billed_s = max(obs.vm_boot_s + self.period_s, obs.vm_min_billing_s)
        start_rps = r_star * billed_s / self.period_s
        serverless_rps = self._serverless_rps(obs)

        def holds(count: int) -> bool:
            value = self._scaled(count)
            no_vm = self.max_vms <= 0 or value <= 0 or \
                min(value, capacity) * (1.0 + 1e-12) + _EPS < start_rps
            return no_vm and value <= serverless_rps

        per_count = self._scaled(1)
        limit = serverless_rps if self.max_vms <= 0 else min(start_rps, serverless_rps)
        top = math.floor(limit / per_count) + 2 \
            if per_count > 0 and limit / per_count < _COUNT_CEILING else _COUNT_CEILING
        return largest_count(holds, 0, top)

    # -- VM fleet --------------------------------------------------------------------------------
    def _planning_window(self, obs: Observation) -> tuple[float, ...]:
        """The per-second rates the fleet is sized for: the last period, as it happened."""
        return tuple(obs.arrivals_per_s[-max(1, round(self.period_s)):])

    def _size(self, obs: Observation) -> int:
        r_star = break_even_rps(obs.vm_price_per_s_usd, obs.serverless_cost_per_request_usd)
        if obs.vms_ready == 0 and self.min_vms == 0 and \
                max(self._floor_counts(obs), default=0) <= self._no_vm_bound(obs):
            # No count of the window reaches the bound: no VM pays off and serverless throttles
            # nothing, which is what the sizing below finds (a test checks it), only without the
            # work; at 0 VMs it runs at every second with an arrival.
            self._signals = {"r_star_rps": r_star, "paying_vms": 0.0, "throttle_floor_vms": 0.0}
            return 0
        return self._size_for(obs, r_star)

    def _size_for(self, obs: Observation, r_star: float) -> int:
        window = self._planning_window(obs)
        capacity = obs.vm_capacity_rps
        billed_s = max(obs.vm_boot_s + self.period_s, obs.vm_min_billing_s)
        paying = vms_paying_off(
            window, capacity, running_vms=obs.vms_ready, keep_rps=r_star,
            start_rps=r_star * billed_s / self.period_s, max_vms=self.max_vms,
        )
        floor = self._throttle_floor(window, obs)
        if obs.slo is not None:
            floor = self._slo_throttle_floor(obs)
        self._signals = {"r_star_rps": r_star, "paying_vms": float(paying),
                         "throttle_floor_vms": float(floor)}
        return clamp(max(paying, floor), self.min_vms, self.max_vms)

    @staticmethod
    def _throttle_floor(window: tuple[float, ...], obs: Observation) -> int:
        """VMs carrying, on average over the window, the load serverless would throttle."""
        if obs.serverless_concurrency_limit <= 0 or obs.serverless_service_s <= 0:
            return 0
        serverless_rps = obs.serverless_concurrency_limit / obs.serverless_service_s
        if max(window) <= serverless_rps:
            return 0  # every term below is 0.0 (the usual case, without the loop)
        excess = sum(max(0.0, x - serverless_rps) for x in window) / len(window)
        return math.ceil(excess / obs.vm_capacity_rps - _EPS) if excess > 0 else 0

    # -- a stated SLO ---------------------------------------------------------------------------
    def _floor_counts(self, obs: Observation) -> tuple[int, ...]:
        """The counts the throttle floor reads: the period without an SLO, all the history
        the observation holds with one (a burst is remembered for as long as it is seen)."""
        if obs.slo is None:
            return obs.arrivals_per_s[-max(1, round(self.period_s)):]
        return obs.arrivals_per_s

    def _serverless_rps(self, obs: Observation) -> float:
        """The per-second count serverless carries: its limit / service time, or with an SLO
        the count whose busy instances stay within the limit but for the throttle share."""
        limit, service_s = obs.serverless_concurrency_limit, obs.serverless_service_s
        if limit <= 0 or service_s <= 0:
            return math.inf
        if obs.slo is None:
            return limit / service_s
        key = ("carry", limit, service_s, obs.slo)
        if key not in self._floats:
            tail = slo_steps.THROTTLE_SHARE * slo_steps.violation_budget(obs.slo)
            self._floats[key] = slo_steps.serverless_carry_rps(limit, service_s, tail)
        return self._floats[key]

    def _slo_throttle_floor(self, obs: Observation) -> int:
        """VMs keeping the history's throttled fraction under the throttle share of the budget
        (`slo.throttle_floor_vms`), on the counts as the sizing plans them."""
        assert obs.slo is not None
        counts = self._floor_counts(obs)
        scale = self._scaled(1)
        rates = counts if scale == 1.0 else tuple(x * scale for x in counts)
        share = slo_steps.THROTTLE_SHARE * slo_steps.violation_budget(obs.slo)
        return slo_steps.throttle_floor_vms(rates, self._serverless_rps(obs),
                                            obs.vm_capacity_rps, share, self.max_vms)

    def _flash_carry_rps(self, obs: Observation) -> float:
        """What serverless may carry one boot from now: its limit, and no more instances than
        its scale-up burst and rate can add by then (from none: a pessimistic start)."""
        carry = self._serverless_rps(obs)
        burst, rate = obs.serverless_scale_burst, obs.serverless_scale_rate_per_s
        if (burst > 0 or rate > 0) and obs.serverless_service_s > 0:
            reachable = burst + rate * obs.vm_boot_s
            carry = min(carry, reachable / obs.serverless_service_s)
        return carry

    def _flash_size(self, obs: Observation) -> int:
        """With an SLO: the fleet a flash crowd needs one boot from now, when the rise would
        take the spill above what serverless may carry, or the SLO's throttle floor at once
        when a second of the last few already went above the fleet and that; 0 otherwise
        (see module docs)."""
        if obs.slo is None or self.max_vms <= 0 or not obs.arrivals_per_s:
            return 0
        capacity = obs.vm_capacity_rps
        fleet_rps = max(self._target, obs.vms_active) * capacity
        floor = 0
        if self._scaled(max(obs.arrivals_per_s[-3:])) - fleet_rps > self._serverless_rps(obs):
            floor = self._slo_throttle_floor(obs)
        projected = slo_steps.projected_rate(obs.arrivals_per_s, obs.vm_boot_s + 1.0)
        if projected is None:
            return clamp(floor, self.min_vms, self.max_vms) if floor else 0
        projected *= self._scaled(1)
        carry = self._flash_carry_rps(obs)
        if projected - fleet_rps <= carry:
            return clamp(floor, self.min_vms, self.max_vms) if floor else 0
        need = math.ceil((projected - carry) / capacity - _EPS)
        return clamp(max(need, floor), self.min_vms, self.max_vms)

    def _flash_bound(self, obs: Observation) -> int:
        """The largest count such that `_flash_size` stays 0 or at the target while no second
        brings more: the projection is at most twice the last 10 s's mean."""
        carry = min(self._flash_carry_rps(obs), self._serverless_rps(obs))
        top = self._target * obs.vm_capacity_rps + carry
        key = ("flash", top, self._scaled(1))
        if key not in self._bounds:
            if math.isinf(top):
                self._bounds[key] = _COUNT_CEILING
            else:
                self._bounds[key] = largest_count(
                    lambda x: 2.0 * self._scaled(x) * (1.0 + 1e-12) <= top, 0,
                    min(_COUNT_CEILING, math.floor(top) + 2))
        return self._bounds[key]

    def _resize(self, obs: Observation, size: int, *, cold_start: bool) -> str:
        self._last_decide_s = obs.now_s
        if size < self._target and obs.now_s - self._grew_at_s < obs.vm_min_billing_s:
            return f"keep {self._target} VMs: launched less than the billing minimum ago"
        if size > self._target:
            self._grew_at_s = obs.now_s
        self._target = size
        why = "cold start: traffic and no VM" if cold_start else "interval"
        return f"{why}: break-even sizing -> {size} VMs"

    # -- serverless warm instances -------------------------------------------------------------
    def _warm_scale(self, obs: Observation) -> float:
        """How much bigger than the past peak the next spill is expected to be (1: as big)."""
        return 1.0

    def _warm_target(self, obs: Observation) -> int:
        """Instances the spill needed at its peak over the warm horizon (0 if cold is harmless)."""
        if not self._warm_on(obs):
            return 0
        now_whole = math.floor(obs.now_s + _EPS)
        new = min(len(obs.arrivals_per_s), now_whole - self._seen_until_s)
        self._seen_until_s = now_whole
        capacity_rps = obs.vms_ready * obs.vm_capacity_rps
        peaks = self._warm_peaks
        rising = 0
        if new > 0:
            need = self._instances(max(obs.arrivals_per_s[-new:]), capacity_rps, obs)
            if obs.slo is not None and need > max((n for _, n in peaks), default=0):
                rising = self._rising_need(obs, capacity_rps)
            minute = now_whole // 60
            if peaks and peaks[-1][0] == minute:
                peaks[-1] = (minute, max(peaks[-1][1], need))
            else:
                peaks.append((minute, need))
        horizon_min = math.ceil(self.warm_horizon_s / 60.0)
        while peaks and peaks[0][0] <= now_whole // 60 - horizon_min:
            peaks.popleft()
        warm = self._warm_from_peaks(obs)
        if rising > warm:
            warm = min(rising, obs.serverless_concurrency_limit) \
                if obs.serverless_concurrency_limit > 0 else rising
        return warm

    def _instances(self, count: int, capacity_rps: float, obs: Observation) -> int:
        """Warm instances for a second of `count`: `_instances_for`, or with an SLO the
        spill's Poisson quantile at the cold-start share of the budget (memoised)."""
        if obs.slo is None:
            return _instances_for(count, capacity_rps, obs.serverless_service_s)
        spill = max(0.0, count - capacity_rps)
        if spill <= 0:
            return 0
        key = (spill, obs.serverless_service_s, obs.slo)
        if key not in self._quantiles:
            if len(self._quantiles) > 4096:  # a memo, not a history
                self._quantiles.clear()
            tail = slo_steps.COLD_SHARE * slo_steps.violation_budget(obs.slo)
            self._quantiles[key] = slo_steps.poisson_quantile(
                spill * obs.serverless_service_s, tail)
        return self._quantiles[key]

    def _rising_need(self, obs: Observation, capacity_rps: float) -> int:
        """While the spill sets a new peak: the instances it will need one cold start ahead,
        so they are warm when the rise gets there instead of cold-starting under it."""
        lead_s = obs.serverless_cold_start_s + obs.serverless_service_s + 1.0
        projected = slo_steps.projected_rate(obs.arrivals_per_s, lead_s)
        if projected is None:
            return 0
        return self._instances(math.ceil(projected * self._scaled(1) - _EPS), capacity_rps, obs)

    def _warm_from_peaks(self, obs: Observation) -> int:
        return self._warm_for_peak(max((n for _, n in self._warm_peaks), default=0), obs)

    def _warm_for_peak(self, peak: int, obs: Observation) -> int:
        warm = math.ceil(peak * self._warm_scale(obs) - _EPS)
        if obs.serverless_concurrency_limit > 0:
            warm = min(warm, obs.serverless_concurrency_limit)
        return warm

    def _warm_on(self, obs: Observation) -> bool:
        """Whether warm instances matter: a cold start breaks the SLA (and a horizon is set)."""
        return not (obs.serverless_cold_start_s + obs.serverless_service_s <= obs.sla_s
                    or obs.serverless_service_s <= 0 or self.warm_horizon_s == 0)


def _instances_for(count: int, capacity_rps: float, service_s: float) -> int:
    """Serverless instances a second of `count` requests needs above the VMs' capacity."""
    spill = max(0.0, count - capacity_rps)
    need = spill * service_s
    return math.ceil(need + _POISSON_Z * math.sqrt(need) - _EPS) if need > 0 else 0
