"""The bills, written once: EC2 per VM with its minimum, Lambda per invocation in duration
granules plus the request fee, with the INIT phase billed where the platform says so.

The simulator and the live cost meter both call these, so a replay and a live run of the same
events cost the same to the cent (the live meter used to bill the fleet as a whole, `max(VM-s,
launches x 60 s)`, which under-bills a short-lived VM beside a long-lived one).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from libra.core.platform import ServerlessConfig, VMConfig

_GRANULE_EPS = 1e-9  # a duration of exactly k granules is k, not k + 1, despite float noise


def vm_billed_s(launched_s: float, stopped_s: float, vm: VMConfig) -> float:
    """One VM's billed seconds: per second from launch to stop, at least `min_billing_s`."""
    return max(stopped_s - launched_s, vm.min_billing_s)


def vm_fleet_cost_usd(lives: Iterable[tuple[float, float | None]], now_s: float,
                      vm: VMConfig, *, price_per_s_usd: float | None = None
                      ) -> tuple[float, float]:
    """(cost, billed VM-s) of VMs given as (launched_s, stopped_s or None if running).

    `price_per_s_usd` prices them otherwise than on-demand: spot instances are billed like
    on-demand ones (per second from launch to stop, EC2's minimum; an instance AWS reclaims is
    billed until it is reclaimed), at the spot price (`SpotConfig.price_per_s_usd`)."""
    billed = sum(vm_billed_s(start, now_s if stop is None else stop, vm) for start, stop in lives)
    price = vm.price_per_s_usd if price_per_s_usd is None else price_per_s_usd
    return billed * price, billed


def granules(duration_s: float, fn: ServerlessConfig) -> int:
    """Billing granules of one invocation's duration (rounded up, at least one)."""
    return max(1, math.ceil(duration_s / fn.billing_granularity_s - _GRANULE_EPS))


def invocation_billed_s(duration_s: float, fn: ServerlessConfig, *, init_s: float = 0.0) -> float:
    """What Lambda bills for one invocation's duration: the handler's time, plus INIT on a cold
    start where `bill_cold_start` (AWS since August 2025)."""
    return duration_s + (init_s if fn.bill_cold_start else 0.0)


def invocation_cost_usd(duration_s: float, fn: ServerlessConfig, *, init_s: float = 0.0) -> float:
    """One invocation: GB-s of its billed duration in granules, plus the request fee."""
    billed = granules(invocation_billed_s(duration_s, fn, init_s=init_s), fn)
    return (billed * fn.billing_granularity_s * fn.memory_gb * fn.price_per_gb_s_usd
            + fn.price_per_request_usd)


def serverless_cost_usd(total_granules: int, invocations: int, fn: ServerlessConfig) -> float:
    """Many invocations folded into granules and a count (how the simulator accumulates)."""
    gb_s = total_granules * fn.billing_granularity_s * fn.memory_gb
    return gb_s * fn.price_per_gb_s_usd + invocations * fn.price_per_request_usd
