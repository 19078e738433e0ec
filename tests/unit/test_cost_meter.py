"""The live cost meter bills by the core's formulas, as the simulator does: each VM from its
launch to its stop with EC2's minimum per VM, each serverless call in granules of its duration
(INIT included on a cold start) at the platform's prices."""

from __future__ import annotations

import pytest

from libra.core.billing import invocation_cost_usd, vm_fleet_cost_usd
from libra.core.lifecycle import VMState
from libra.profiles import load_profile
from libra.serving.service import CostMeter

pytestmark = pytest.mark.unit

PLATFORM = load_profile("aws").platform
B, R, D, T = VMState.BOOTING, VMState.READY, VMState.DRAINING, VMState.TERMINATED


def test_each_vm_is_billed_from_launch_to_stop_with_its_own_minimum() -> None:
    meter = CostMeter(PLATFORM.vm, PLATFORM.serverless)
    meter.on_fleet({"a": B}, now_s=0.0)
    meter.on_fleet({"a": R}, now_s=120.0)
    meter.on_fleet({"a": R, "b": B}, now_s=500.0)  # a short-lived second VM
    meter.on_fleet({"a": R, "b": D}, now_s=505.0)  # draining is still billed
    meter.on_fleet({"a": R, "b": T}, now_s=510.0)  # stopped after 10 s: billed 60
    meter.on_fleet({"a": D}, now_s=990.0)
    meter.on_fleet({}, now_s=1000.0)  # gone
    expected_usd, expected_s = vm_fleet_cost_usd([(0.0, 1000.0), (500.0, 510.0)], 1000.0,
                                                 PLATFORM.vm)
    assert meter.vm_billed_s(2000.0) == pytest.approx(expected_s) == pytest.approx(1060.0)
    assert meter.vm_cost_usd(2000.0) == pytest.approx(expected_usd)
    assert meter.vm_launches == 2
    # the fleet-wide rule it replaces, max(VM-s, launches x 60 s), billed 1,010 s
    assert expected_s > max(1000.0 + 10.0, 2 * 60.0)


def test_a_running_vm_is_billed_to_now_at_least_its_minimum() -> None:
    meter = CostMeter(PLATFORM.vm, PLATFORM.serverless)
    meter.on_fleet({"a": R}, now_s=100.0)
    assert meter.vm_billed_s(110.0) == PLATFORM.vm.min_billing_s
    assert meter.vm_billed_s(400.0) == pytest.approx(300.0)


def test_a_relaunched_id_is_a_new_vm() -> None:
    meter = CostMeter(PLATFORM.vm, PLATFORM.serverless)
    meter.on_fleet({"a": R}, now_s=0.0)
    meter.on_fleet({}, now_s=100.0)
    meter.on_fleet({"a": B}, now_s=200.0)
    assert meter.vm_launches == 2
    assert meter.vm_billed_s(300.0) == pytest.approx(100.0 + 100.0)


def test_serverless_calls_are_billed_at_the_platforms_prices_with_init_on_cold_starts() -> None:
    sls = PLATFORM.serverless
    meter = CostMeter(PLATFORM.vm, sls)
    meter.on_serverless(0.0123)
    meter.on_serverless(0.0123, init_s=0.717)
    assert meter.serverless_usd == pytest.approx(
        invocation_cost_usd(0.0123, sls) + invocation_cost_usd(0.0123, sls, init_s=0.717))
    dearer = sls.model_copy(update={"price_per_gb_s_usd": 2 * sls.price_per_gb_s_usd,
                                    "price_per_request_usd": 0.0})
    other = CostMeter(PLATFORM.vm, dearer)
    other.on_serverless(1.0)
    assert other.serverless_usd == pytest.approx(2 * sls.price_per_gb_s_usd * sls.memory_gb)


def test_init_is_not_billed_where_the_platform_says_so() -> None:
    sls = PLATFORM.serverless.model_copy(update={"bill_cold_start": False})
    meter = CostMeter(PLATFORM.vm, sls)
    meter.on_serverless(0.1, init_s=0.9)
    assert meter.serverless_usd == pytest.approx(invocation_cost_usd(0.1, sls))


def test_spot_vms_are_billed_at_the_spot_price_for_their_whole_life() -> None:
    """A VM the provisioner names spot, even a tick after it appeared, is billed at the spot
    price from its launch; the others at the on-demand price; EC2's minimum for both."""
    spot_price = PLATFORM.spot.price_per_s_usd
    meter = CostMeter(PLATFORM.vm, PLATFORM.serverless, spot_price_per_s_usd=spot_price)
    meter.on_fleet({"od": R, "s1": B}, now_s=0.0)  # s1's market not known yet
    meter.on_fleet({"od": R, "s1": R}, now_s=10.0, spot_ids={"s1"})
    meter.on_fleet({"od": R, "s1": D, "s2": B}, now_s=500.0, spot_ids={"s1", "s2"})
    meter.on_fleet({"od": R, "s2": R}, now_s=620.0, spot_ids={"s2"})  # s1 reclaimed
    meter.on_fleet({"od": R, "s3": B}, now_s=700.0, spot_ids={"s3"})  # s2 gone, s3 lives 5 s
    meter.on_fleet({"od": R}, now_s=705.0)
    od_s, spot_s = 1000.0, 620.0 + 200.0 + PLATFORM.vm.min_billing_s
    assert meter.vm_billed_s(1000.0) == pytest.approx(od_s + spot_s)
    assert meter.vm_cost_usd(1000.0) == pytest.approx(
        od_s * PLATFORM.vm.price_per_s_usd + spot_s * spot_price)
    assert spot_price < PLATFORM.vm.price_per_s_usd  # the point: not billed as on-demand


def test_without_spot_capacity_every_vm_is_on_demand() -> None:
    meter = CostMeter(PLATFORM.vm, PLATFORM.serverless)  # spot off: ids named spot ignored
    meter.on_fleet({"a": R}, now_s=0.0, spot_ids={"a"})
    assert meter.vm_cost_usd(100.0) == pytest.approx(100.0 * PLATFORM.vm.price_per_s_usd)
