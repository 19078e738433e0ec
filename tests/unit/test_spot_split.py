"""The policy's spot split on hand-written observations: the price a spot VM really costs, the
sizing price, and the on-demand base (break-even, the SLO's budget for interruptions, a storm
serverless must carry); and `libra` asking for it."""

from __future__ import annotations

import math

import pytest

from libra.core.policies import Libra
from libra.core.policies.base import Observation
from libra.core.policies.spot_split import (
    late_per_interruption,
    on_demand_vms,
    sized_with_spot,
    sizing_price_per_s,
    spot_cost_per_s,
    vm_loads,
)

pytestmark = pytest.mark.unit

OD_S = 0.526 / 3600
SPOT_S = 0.2104 / 3600
PER_DAY = 1 / 86_400
# One g4dn VM carries 160 req/s; Lambda: 0.27 s a request, a 1.5 s cold start, SLA 1 s.
BASE = Observation(
    now_s=0.0, arrivals_per_s=(), arrivals_per_min=(), vms_ready=1, vms_booting=0,
    vms_draining=0, vm_capacity_rps=160.0, serverless_in_flight=0, sla_s=1.0, vm_boot_s=120.0,
    vm_price_per_s_usd=OD_S, serverless_cost_per_request_usd=8.53e-6,
    serverless_cold_start_s=1.5, serverless_service_s=0.27, serverless_concurrency_limit=1000,
    vm_min_billing_s=60.0,
)
SPOT = BASE.replace(spot_price_per_s_usd=SPOT_S, spot_interruptions_per_s=0.05 * PER_DAY,
                    spot_notice_s=120.0)


def test_without_spot_nothing_changes() -> None:
    assert on_demand_vms(BASE, 5, [600.0] * 60) is None
    assert sizing_price_per_s(BASE) == OD_S
    assert sized_with_spot(BASE) is BASE


def test_a_spot_vm_costs_its_price_plus_what_its_interruptions_cost() -> None:
    rate = 0.05 * PER_DAY
    # per interruption: 120 s billed twice at the spot price, and 100 req/s x 120 s to serverless
    per_interruption = 120 * SPOT_S + 100 * 120 * 8.53e-6
    assert spot_cost_per_s(SPOT, 100.0) == pytest.approx(SPOT_S + rate * per_interruption)
    # sized at a full VM's spot cost: cheaper than on-demand, so a lower break-even
    assert sizing_price_per_s(SPOT) == pytest.approx(spot_cost_per_s(SPOT, 160.0))
    assert sized_with_spot(SPOT).vm_price_per_s_usd < OD_S


def test_vm_loads_are_the_sizings_clipped_means() -> None:
    assert vm_loads([100.0, 400.0], 160.0, 3) == [130.0, 80.0, 40.0]
    assert vm_loads([], 160.0, 2) == [0.0, 0.0]


def test_cheap_spot_at_a_low_rate_takes_the_whole_fleet() -> None:
    assert on_demand_vms(SPOT, 4, [600.0] * 300) == 0
    assert on_demand_vms(SPOT, 0, [600.0] * 300) == 0


def test_spot_dearer_than_on_demand_once_interruptions_are_counted_is_not_used() -> None:
    # at 50 interruptions per instance-day, a loaded spot VM's spill and double billing cost
    # more than the discount; a VM carrying less costs less to interrupt
    often = SPOT.replace(spot_interruptions_per_s=50 * PER_DAY)
    assert spot_cost_per_s(often, 160.0) > OD_S > spot_cost_per_s(often, 10.0)
    assert sizing_price_per_s(often) == OD_S
    # three VMs loaded 160, 160 and 10 req/s: only the least loaded is worth being spot
    assert on_demand_vms(often, 3, [330.0] * 300) == 2
    dear = SPOT.replace(spot_price_per_s_usd=OD_S * 1.01, spot_interruptions_per_s=0.0)
    assert on_demand_vms(dear, 3, [330.0] * 300) == 3


def test_the_slo_bounds_the_late_requests_interruptions_may_cost() -> None:
    window = [480.0] * 300  # three full VMs
    rate = 3.0 * PER_DAY
    stormy = SPOT.replace(spot_interruptions_per_s=rate)
    # one interruption of a full VM: its 160 req/s meet cold starts for 1.5 + 0.27 s
    assert late_per_interruption(stormy, 160.0) == pytest.approx(160 * 1.77)
    per_vm = rate * 160 * 1.77  # late requests per second a spot VM is expected to cost
    budget = lambda slo: (1 - slo) * 480.0 * 0.25  # noqa: E731
    assert budget(0.999) > 3 * per_vm  # room for all three
    assert on_demand_vms(stormy.replace(slo=0.999), 3, window) == 0
    assert per_vm < budget(0.9999) < 2 * per_vm  # room for one
    assert on_demand_vms(stormy.replace(slo=0.9999), 3, window) == 2
    assert on_demand_vms(stormy.replace(slo=0.99999), 3, window) == 3
    # a cold start inside the SLA makes an interruption cost no late request
    warm = stormy.replace(slo=0.99999, serverless_cold_start_s=0.2)
    assert late_per_interruption(warm, 160.0) == 0.0
    assert on_demand_vms(warm, 3, window) == 0


def test_a_storm_must_leave_a_spill_serverless_can_carry() -> None:
    window = [8000.0] * 300  # 50 full VMs; serverless carries 1000 / 0.27 = 3,704 req/s
    od = on_demand_vms(SPOT, 50, window)
    assert od is not None
    serverless_rps = 1000 / 0.27
    assert (50 - od) * 160 <= serverless_rps < (50 - od + 1) * 160
    # a storm that takes half the spot VMs allows twice as many
    half = on_demand_vms(SPOT, 50, window, storm_share=0.5)
    assert half is not None
    assert (50 - half) * 160 * 0.5 <= serverless_rps < (50 - half + 1) * 160 * 0.5
    # what already spills counts against serverless: 52 VMs' load on 50 VMs
    spilling = on_demand_vms(SPOT, 50, [8320.0] * 300)
    assert spilling is not None
    assert (50 - spilling) * 160 + 320 <= serverless_rps < (51 - spilling) * 160 + 320


def test_libra_sizes_at_the_spot_price_and_asks_for_the_split() -> None:
    # 10 req/s above one VM: below on-demand's break-even (17.1 req/s), above spot's
    history = [170] * 300
    od_policy, spot_policy = Libra(), Libra()
    for t in range(1, 301):
        d_od = od_policy.decide(BASE.replace(now_s=float(t), arrivals_per_s=tuple(history[:t])))
        d_spot = spot_policy.decide(SPOT.replace(now_s=float(t),
                                                 arrivals_per_s=tuple(history[:t])))
    assert d_od.on_demand_vms is None
    assert d_od.target_vms == 1
    assert d_spot.target_vms == 2
    assert d_spot.on_demand_vms == 0
    r_star_spot = sizing_price_per_s(SPOT) / 8.53e-6
    assert d_spot.signals["r_star_rps"] == pytest.approx(r_star_spot)
    assert math.isclose(d_od.signals["r_star_rps"], OD_S / 8.53e-6, rel_tol=1e-9)
