"""Small pure steps the policies are built from: sizing, bounds, rate limits, delays, break-even.

The baselines differ in how they compute a raw target; everything after that (clamping to bounds,
limiting how fast the fleet moves, waiting before acting) is shared here and tested alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# Rates are floats; 1e-9 keeps 320.0000001 / 160 from asking for a third VM.
_EPS = 1e-9


def vms_for_rate(rate_rps: float, capacity_rps: float, utilisation: float = 1.0) -> int:
    """VMs needed to carry `rate_rps` with each VM at most `utilisation` busy."""
    if capacity_rps <= 0 or not 0 < utilisation <= 1:
        raise ValueError(
            f"capacity_rps ({capacity_rps}) must be > 0 and utilisation ({utilisation}) in (0, 1]"
        )
    if rate_rps <= 0:
        return 0
    return math.ceil(rate_rps / (capacity_rps * utilisation) - _EPS)


def clamp(target: int, min_vms: int, max_vms: int) -> int:
    """Keep a target inside the configured bounds."""
    if max_vms < min_vms:
        raise ValueError(f"max_vms ({max_vms}) must be >= min_vms ({min_vms})")
    return max(min_vms, min(max_vms, target))


def limit_rate(current: int, target: int, max_up_ratio: float, max_down_ratio: float) -> int:
    """Limit one step to `current * max_up_ratio` up and `current / max_down_ratio` down.

    Knative's max-scale-up/down rates: a fleet of 0 or 1 may always grow to the target (a ratio of
    nothing is nothing), but shrinking by more than the ratio in one step is refused.
    """
    if target > current:
        ceiling = max(math.ceil(current * max_up_ratio), 1) if current else target
        return min(target, ceiling)
    if target < current:
        floor = math.floor(current / max_down_ratio)
        return max(target, floor)
    return target


@dataclass
class ScaleDelay:
    """Hysteresis in time: act on a change only once it has been wanted for long enough.

    A scale-up must be wanted for `upscale_delay_s`, a scale-down for `downscale_delay_s`, measured
    from `pending_since_s` against `now_s` (never in ticks: 0.6 s / 0.1 s ticks is 5.999). A change
    of direction, or a tick that wants the current size, resets the pending intent. While a
    scale-down is pending the highest target seen is applied (Knative's max over the window).
    """

    upscale_delay_s: float = 0.0
    downscale_delay_s: float = 300.0
    pending_since_s: float | None = None
    pending_up: bool | None = None
    pending_max_target: int = 0

    def apply(self, now_s: float, current: int, proposed: int) -> int:
        if proposed == current:
            self.reset()
            return current
        going_up = proposed > current
        if self.pending_up is not going_up or self.pending_since_s is None:
            self.pending_since_s = now_s
            self.pending_up = going_up
            self.pending_max_target = proposed
        else:
            self.pending_max_target = max(self.pending_max_target, proposed)
        delay_s = self.upscale_delay_s if going_up else self.downscale_delay_s
        if now_s - self.pending_since_s + _EPS >= delay_s:
            target = proposed if going_up else self.pending_max_target
            self.reset()
            return target
        return current

    def reset(self) -> None:
        self.pending_since_s = None
        self.pending_up = None
        self.pending_max_target = 0


def break_even_rps(
    vm_price_per_s_usd: float,
    serverless_cost_per_request_usd: float,
    *,
    boot_s: float = 0.0,
    horizon_s: float = math.inf,
) -> float:
    """The traffic cost indifference point: below this rate one more VM costs more than serverless.

    A VM carrying r req/s for `horizon_s` seconds saves r * horizon * c_req of serverless spend and
    costs price * (boot + horizon) (it is billed while it boots and serves nothing). It pays off
    when r >= (price / c_req) * (1 + boot / horizon). With an infinite horizon this is LIBRA's
    r* = vm_price_per_s / lambda_cost_per_request.
    """
    if serverless_cost_per_request_usd <= 0:
        return math.inf if vm_price_per_s_usd > 0 else 0.0
    r_star = vm_price_per_s_usd / serverless_cost_per_request_usd
    if math.isinf(horizon_s):
        return r_star
    if horizon_s <= 0:
        raise ValueError(f"horizon_s ({horizon_s}) must be positive")
    return r_star * (1.0 + boot_s / horizon_s)


def vms_worth_running(rate_rps: float, capacity_rps: float, break_even_rate_rps: float) -> int:
    """VMs for `rate_rps` where the last, partly used VM is kept only if its share pays for it.

    A full VM pays when its capacity is above the break-even rate (the usual case: a GPU VM
    carries far more than r*); the remainder goes to a VM only when it is at least the
    break-even rate, else to serverless.
    """
    if rate_rps <= 0 or capacity_rps + _EPS < break_even_rate_rps:
        return 0
    full = math.floor(rate_rps / capacity_rps + _EPS)
    remainder_rps = rate_rps - full * capacity_rps
    if remainder_rps > _EPS and remainder_rps + _EPS >= break_even_rate_rps:
        full += 1
    return full


def marginal_vm_loads(rates_rps: Sequence[float], capacity_rps: float, max_vms: int) -> list[float]:
    """Mean load the k-th VM would carry (k = 1..) if the recent rates repeat.

    VM k carries `clip(rate - (k-1) * capacity, 0, capacity)` each second: a VM that only the
    peaks reach carries little on average. Averaged over the window this folds together how high
    the extra load goes and how long it lasts, which is what decides whether the VM pays off.
    """
    if capacity_rps <= 0:
        raise ValueError(f"capacity_rps ({capacity_rps}) must be positive")
    if not rates_rps:
        return []
    rates = np.asarray(rates_rps, dtype=np.float64)
    top = min(max_vms, math.ceil(float(rates.max()) / capacity_rps - _EPS))
    if top <= 0:
        return []
    floors = np.arange(top, dtype=np.float64)[:, None] * capacity_rps
    carried = np.clip(rates[None, :] - floors, 0.0, capacity_rps)
    return [float(x) for x in carried.mean(axis=1)]


def vms_paying_off(
    rates_rps: Sequence[float],
    capacity_rps: float,
    *,
    running_vms: int,
    keep_rps: float,
    start_rps: float,
    max_vms: int,
) -> int:
    """The largest fleet whose last VM still carries enough load to be cheaper than serverless.

    A VM already running must carry `keep_rps` (the break-even rate r*); one that would have to
    boot must carry `start_rps` (r* amortised over its boot). Loads fall with k, so the first VM
    below its bar ends the fleet.
    """
    n = 0
    for k, load in enumerate(marginal_vm_loads(rates_rps, capacity_rps, max_vms), start=1):
        if load + _EPS < (keep_rps if k <= running_vms else start_rps):
            break
        n = k
    return n


def largest_count(holds: Callable[[int], bool], lo: int, hi: int) -> int:
    """The largest whole count in [lo, hi] for which `holds` (true up to some count, false
    after it) is true; `lo - 1` if it holds for none. Policies use it to turn "the decision
    stays as it is" into a per-second arrival bound with their own arithmetic, so the bound is
    exact, not a re-derived formula that could round the other way."""
    if lo > hi or not holds(lo):
        return lo - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if holds(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo
