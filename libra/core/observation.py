"""The one function that builds a policy's `Observation`, for both drivers.

The simulator fills it from simulated time and the replayed counts, the live controller from its
clock and the rate monitor; the platform's figures (capacity, prices, cold start, limits) come
from the same `Platform` either way, so a policy cannot see two different platforms. One time
axis: `now_s` and the per-second counts must come from the same clock (the caller's), and the
last count is the whole second that ended at or before `now_s`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from libra.core.platform import Platform
from libra.core.policies.base import Observation


@dataclass(frozen=True)
class FleetState:
    """What the driver counts of its fleet at this instant."""

    vms_ready: int
    vms_booting: int
    vms_draining: int
    serverless_in_flight: int
    serverless_instances: int
    vms_spot: int = 0


def build_observation(platform: Platform, now_s: float, arrivals_per_s: Sequence[int],
                      arrivals_per_min: Sequence[int], fleet: FleetState) -> Observation:
    """A policy's view at `now_s` (see module docs)."""
    vm, sls = platform.vm, platform.serverless
    return Observation(
        now_s=now_s,
        arrivals_per_s=tuple(arrivals_per_s),
        arrivals_per_min=tuple(arrivals_per_min),
        vms_ready=fleet.vms_ready,
        vms_booting=fleet.vms_booting,
        vms_draining=fleet.vms_draining,
        vm_capacity_rps=vm.capacity_rps,
        serverless_in_flight=fleet.serverless_in_flight,
        sla_s=platform.sla_s,
        vm_boot_s=vm.boot_s,
        vm_price_per_s_usd=vm.price_per_s_usd,
        serverless_cost_per_request_usd=sls.cost_per_request_usd(),
        serverless_cold_start_s=sls.cold_start_s,
        serverless_service_s=sls.service_time_mean_s + sls.invoke_overhead_s,
        serverless_concurrency_limit=sls.concurrency_limit,
        serverless_scale_burst=sls.scale_burst,
        serverless_scale_rate_per_s=sls.scale_rate_per_s,
        serverless_instances=fleet.serverless_instances,
        vm_min_billing_s=vm.min_billing_s,
        slo=platform.slo,
        vms_spot=fleet.vms_spot,
        spot_price_per_s_usd=platform.spot.price_per_s_usd if platform.spot.enabled else 0.0,
        spot_interruptions_per_s=(platform.spot.interruptions_per_instance_hour / 3600.0
                                  if platform.spot.enabled else 0.0),
        spot_notice_s=platform.spot.notice_s if platform.spot.enabled else 0.0,
    )
