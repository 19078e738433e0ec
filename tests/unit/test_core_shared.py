"""What the simulator and the live platform share lives once in `libra.core`: the platform
description, the bills, the quota. These tests pin each rule, and prove the simulator's inlined
hot-path copies equal the originals."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libra.core.billing import (
    granules,
    invocation_cost_usd,
    serverless_cost_usd,
    vm_billed_s,
    vm_fleet_cost_usd,
)
from libra.core.platform import Platform, ServerlessConfig, VMConfig
from libra.core.quota import QuotaBucket, refill
from simulator.config import SimConfig
from simulator.serverless_pool import ServerlessPool
from simulator.vm_fleet import VMFleet


def test_sim_config_is_the_platform_plus_replay_settings() -> None:
    assert issubclass(SimConfig, Platform)
    shared = set(Platform.model_fields)
    assert shared <= set(SimConfig.model_fields)
    assert SimConfig().vm == Platform().vm
    assert SimConfig().serverless == Platform().serverless


def test_vm_capacity_is_derived_from_slots_and_service_time_not_a_knob() -> None:
    vm = VMConfig(concurrency=16, service_time_mean_s=0.05)
    assert vm.capacity_rps == pytest.approx(320.0)
    with pytest.raises(ValueError, match="capacity_rps"):
        VMConfig(capacity_rps=40)  # type: ignore[call-arg]


def test_platform_checks_name_both_values() -> None:
    with pytest.raises(ValueError, match=r"sla_margin_s \(1.0\) must be < sla_s \(1.0\)"):
        Platform(sla_s=1.0, sla_margin_s=1.0)


def test_each_vm_is_billed_from_launch_with_its_own_minimum() -> None:
    """Per VM, not fleet-wide: a 10 s VM beside a 200 s one bills 60 + 200 s (the old live meter
    billed max(210, 2 x 60) = 210 s)."""
    vm = VMConfig(price_per_hour_usd=3.6, min_billing_s=60)
    cost, billed = vm_fleet_cost_usd([(0.0, 10.0), (0.0, None)], now_s=200.0, vm=vm)
    assert billed == pytest.approx(260.0)
    assert cost == pytest.approx(0.26)
    assert vm_billed_s(5.0, 500.0, vm) == pytest.approx(495.0)


def test_simulated_fleet_bills_with_the_core_formula() -> None:
    vm = VMConfig(min_billing_s=60)
    fleet = VMFleet(vm)
    a = fleet.launch(0.0)
    fleet.launch(0.0)
    fleet.terminate(a, 10.0)
    got = fleet.cost_usd(200.0)
    want = vm_fleet_cost_usd([(v.launched_at_s, v.terminated_at_s) for v in fleet.vms], 200.0, vm)
    assert got == pytest.approx(want)


def test_lambda_invocation_bills_granules_init_and_the_fee() -> None:
    fn = ServerlessConfig(memory_mb=1024, price_per_gb_s_usd=1.0, price_per_request_usd=0.5,
                          billing_granularity_s=0.001, bill_cold_start=True)
    assert granules(0.0101, fn) == 11
    assert granules(0.010, fn) == 10  # exactly 10 ms is 10 granules, float noise aside
    assert invocation_cost_usd(0.010, fn) == pytest.approx(0.010 + 0.5)
    assert invocation_cost_usd(0.010, fn, init_s=0.7) == pytest.approx(0.710 + 0.5)
    unbilled_init = fn.model_copy(update={"bill_cold_start": False})
    assert invocation_cost_usd(0.010, unbilled_init, init_s=0.7) == pytest.approx(0.510)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0.0001, 5.0), min_size=1, max_size=40))
def test_simulated_pool_bill_equals_the_sum_of_core_invocation_bills(durations: list[float]
                                                                     ) -> None:
    fn = ServerlessConfig()
    pool = ServerlessPool(fn)
    pool.billed_s.extend(durations)
    want = sum(invocation_cost_usd(d, fn) for d in durations)
    assert pool.cost_usd() == pytest.approx(want, rel=1e-12)
    assert serverless_cost_usd(sum(granules(d, fn) for d in durations), len(durations), fn) \
        == pytest.approx(want, rel=1e-12)


def test_quota_refills_each_second_carrying_only_the_fraction() -> None:
    bucket = QuotaBucket()
    taken = []
    for t in (0.1, 0.2, 0.3, 0.4):  # 2.5 per second: two requests, the half carries
        if bucket.left(t, 2.5):
            bucket.spend(2.5)
            taken.append(t)
    assert taken == [0.1, 0.2]
    assert bucket.left(1.0, 2.5)  # 0.5 carried + 2.5 = 3 tokens
    assert bucket.tokens == pytest.approx(3.0)
    bucket.tokens = 2.0  # two whole unspent tokens are not carried
    bucket.left(2.0, 2.5)
    assert bucket.tokens == pytest.approx(2.5)


def test_asking_for_quota_spends_nothing() -> None:
    bucket = QuotaBucket()
    for _ in range(10):
        assert bucket.left(0.5, 1.0)
    assert bucket.tokens == pytest.approx(1.0)


def test_no_quota_means_unlimited() -> None:
    bucket = QuotaBucket()
    assert all(bucket.left(t / 10, None) for t in range(100))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 30), st.booleans()), max_size=60),
       st.floats(0, 7.5))
def test_the_engines_inlined_quota_equals_the_core_rule(events: list[tuple[float, bool]],
                                                        quota: float) -> None:
    """simulator/engine.py refills inline, per request: the same arithmetic as `refill`."""
    second, tokens = -1, 0.0
    core = QuotaBucket()
    for t, to_vm in sorted(events):
        if int(t) != second:  # the engine's inlined copy, verbatim
            second, tokens = int(t), (tokens % 1.0 if tokens > 0.0 else 0.0) + quota
        left = core.left(t, quota)
        assert left == (tokens >= 1.0)
        if to_vm and left:
            tokens -= 1.0
            core.spend(quota)
        assert (core.second, core.tokens) == (second, pytest.approx(tokens))
    assert refill(3, 1.75, 3, 9.0) == (3, 1.75)
