"""Which VMs of a fleet should be spot: the price a spot VM really costs, and the on-demand base.

A spot VM costs its price plus what its interruptions cost. Each interruption (a Poisson rate
`lambda` per instance, from `Observation.spot_interruptions_per_s`) brings two costs:

- **the replacement's boot, billed**: the replacement is launched at the notice and billed from
  then, while the interrupted VM is billed until AWS reclaims it `notice_s` later: `notice_s` of
  the spot price twice;
- **the spill during the gap**: the interrupted VM takes no request from the notice on and its
  replacement serves only after `vm_boot_s`, so the load it carried (`r` req/s) goes to
  serverless for that long: `r * boot_s` requests at the serverless price.

So a spot VM carrying `r` req/s costs, per second,
`p_spot + lambda * (notice_s * p_spot + r * boot_s * c_serverless)`, and it is worth having
(instead of an on-demand one) while that is below the on-demand price. The policy sizes its fleet
with the price of a spot VM carrying a full VM's load (`sizing_price_per_s`, the dearest a spot VM
can be), so more VMs pay off than at the on-demand price: spot moves load from serverless to VMs.

Then the split (`on_demand_vms`): the fleet's k-th VM carries `r_k` on average over the window
(the sizing's own clipped load; the first carries most). The on-demand base is the bottom of the
fleet, spot goes on top (what an Auto Scaling group's on-demand base does), and the top VMs are
spot as long as

1. a spot VM is cheaper than an on-demand one at its load (above);
2. the requests its interruptions are expected to make late stay inside a share (`slo_share`) of
   what the SLO allows: an interruption's spill meets serverless cold starts where a cold start
   breaks the SLA, about `r * (cold start + service)` late requests (the spill until the first
   new instances are warm); budget `(1 - slo) * mean rate * slo_share` late requests per second;
3. a storm, AWS reclaiming `storm_share` of the spot VMs at once (interruptions of one pool come
   together: Spot-and-Scoot, 2026, saw 92% of co-interruptions within three minutes), leaves a
   spill serverless can still carry: the spot VMs' load times `storm_share`, plus what already
   spills, stays within the concurrency limit's throughput.

Pure arithmetic on an `Observation`; `libra` calls it when it resizes (`libra.py`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from libra.core.policies.base import Observation

_EPS = 1e-9


def spot_offered(obs: Observation) -> bool:
    """Whether the platform offers spot capacity (a spot price is known)."""
    return obs.spot_price_per_s_usd > 0


def spot_cost_per_s(obs: Observation, carried_rps: float) -> float:
    """What a spot VM carrying `carried_rps` costs per second, interruptions included."""
    per_interruption = (obs.spot_notice_s * obs.spot_price_per_s_usd
                        + carried_rps * obs.vm_boot_s * obs.serverless_cost_per_request_usd)
    return obs.spot_price_per_s_usd + obs.spot_interruptions_per_s * per_interruption


def sizing_price_per_s(obs: Observation) -> float:
    """The VM price the fleet is sized with: a full-load spot VM's, where spot is offered and
    cheaper than on-demand, else the on-demand price."""
    if not spot_offered(obs):
        return obs.vm_price_per_s_usd
    return min(obs.vm_price_per_s_usd, spot_cost_per_s(obs, obs.vm_capacity_rps))


def vm_loads(window: Sequence[float], capacity_rps: float, n_vms: int) -> list[float]:
    """Mean load the k-th VM of `n_vms` carries over `window` (k = 1 first, the busiest):
    `mean_t clip(x_t - (k - 1) * capacity, 0, capacity)`, the sizing's own measure."""
    if not window or n_vms <= 0:
        return [0.0] * max(n_vms, 0)
    loads = []
    for k in range(n_vms):
        low = k * capacity_rps
        loads.append(sum(min(max(x - low, 0.0), capacity_rps) for x in window) / len(window))
    return loads


def late_per_interruption(obs: Observation, carried_rps: float) -> float:
    """Requests an interruption is expected to make late: the spill meets cold starts until the
    first new serverless instances are warm, where a cold start breaks the SLA."""
    if obs.serverless_cold_start_s + obs.serverless_service_s <= obs.sla_s:
        return 0.0
    return carried_rps * (obs.serverless_cold_start_s + obs.serverless_service_s)


def on_demand_vms(obs: Observation, target: int, window: Sequence[float], *,
                  slo_share: float = 0.25, storm_share: float = 1.0) -> int | None:
    """Of `target` VMs, how many should be on-demand (None: spot not offered); see module docs."""
    if not spot_offered(obs):
        return None
    if target <= 0:
        return 0
    capacity = obs.vm_capacity_rps
    loads = vm_loads(window, capacity, target)
    mean_rps = sum(window) / len(window) if window else 0.0
    spill_rps = max(0.0, mean_rps - sum(loads))
    limited = obs.serverless_concurrency_limit > 0 and obs.serverless_service_s > 0
    serverless_rps = obs.serverless_concurrency_limit / obs.serverless_service_s \
        if limited else math.inf
    budget = math.inf if obs.slo is None else (1.0 - obs.slo) * mean_rps * slo_share
    late = 0.0
    spot_load = 0.0
    spot = 0
    for carried in reversed(loads):  # the least loaded VM first
        if spot_cost_per_s(obs, carried) >= obs.vm_price_per_s_usd - _EPS:
            break
        late_next = late + obs.spot_interruptions_per_s * late_per_interruption(obs, carried)
        if late_next > budget + _EPS:
            break
        if spill_rps + storm_share * (spot_load + carried) > serverless_rps + _EPS:
            break
        late, spot_load, spot = late_next, spot_load + carried, spot + 1
    return target - spot


def sized_with_spot(obs: Observation) -> Observation:
    """`obs` as the fleet's sizing sees it: VMs at `sizing_price_per_s` (unchanged without
    spot)."""
    price = sizing_price_per_s(obs)
    return obs if price == obs.vm_price_per_s_usd else obs.replace(vm_price_per_s_usd=price)
