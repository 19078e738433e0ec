"""`libra` with a stated SLO (issue 18): the sizing steps of `libra.core.policies.slo`, the
policy on hand-written observation timelines (throttle floor, warm instances, flash crowds),
and the quiet-tick promise kept with an SLO (replays tick by tick and skipping agree)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import poisson

from libra.core.platform import Platform
from libra.core.policies import slo as slo_steps
from libra.core.policies.base import Observation
from libra.core.policies.libra import Libra, _instances_for
from libra.core.policies.libra_forecast import LibraForecast
from simulator.config import SimConfig
from simulator.runner import run_policies
from simulator.tracegen import synthetic_diurnal, synthetic_step, write_per_second
from simulator.traces import open_trace
from tests.unit.test_simulator_quiet import _replay, assert_decides_as_in_force

pytestmark = pytest.mark.unit

CAPACITY = 160.0
SERVICE_S = 0.27
LIMIT = 1000


def _obs(counts: list[int], *, slo: float | None, now_s: float | None = None, ready: int = 0,
         booting: int = 0) -> Observation:
    """Our default platform's figures (g4dn at 160 req/s, a 2 GB Lambda, limit 1,000)."""
    return Observation(
        now_s=float(len(counts)) if now_s is None else now_s, arrivals_per_s=tuple(counts),
        arrivals_per_min=(), vms_ready=ready, vms_booting=booting, vms_draining=0,
        vm_capacity_rps=CAPACITY, serverless_in_flight=0, sla_s=1.0, vm_boot_s=120.0,
        vm_price_per_s_usd=0.526 / 3600, serverless_cost_per_request_usd=8.5e-6,
        serverless_cold_start_s=1.5, serverless_service_s=SERVICE_S,
        serverless_concurrency_limit=LIMIT, serverless_scale_burst=1000,
        serverless_scale_rate_per_s=100.0, vm_min_billing_s=60.0, slo=slo)


# -- the steps ---------------------------------------------------------------------------------
@pytest.mark.parametrize("mean", [0.05, 0.27, 1.0, 8.0, 60.0, 199.0, 250.0, 900.0, 5000.0])
@pytest.mark.parametrize("tail", [2.5e-4, 2.5e-5, 0.01])
def test_poisson_quantile_is_the_smallest_count_with_that_tail(mean: float, tail: float) -> None:
    w = slo_steps.poisson_quantile(mean, tail)
    exact = int(poisson.isf(tail, mean))  # smallest w with P(N > w) <= tail
    if mean < 200:
        assert w == exact
    else:  # Cornish-Fisher above: within one instance, never more than 1.5x the tail
        assert abs(w - exact) <= 1
        assert poisson.sf(w, mean) <= 1.5 * tail


def test_poisson_quantile_refuses_a_tail_outside_zero_and_one() -> None:
    with pytest.raises(ValueError, match="tail"):
        slo_steps.poisson_quantile(3.0, 0.0)
    with pytest.raises(ValueError, match="slo"):
        slo_steps.violation_budget(1.0)


def test_serverless_carries_less_than_its_limit_over_service_time_by_the_poisson_margin(
) -> None:
    carry = slo_steps.serverless_carry_rps(LIMIT, SERVICE_S, 5e-4)
    assert carry < LIMIT / SERVICE_S
    assert slo_steps.poisson_quantile(carry * SERVICE_S, 5e-4) <= LIMIT
    assert slo_steps.poisson_quantile((carry + 1.0) * SERVICE_S, 5e-4) > LIMIT
    assert math.isinf(slo_steps.serverless_carry_rps(0, SERVICE_S, 5e-4))


def test_throttle_floor_holds_the_throttled_fraction_under_the_allowed_one() -> None:
    # 899 seconds at 1,000 req/s and one at 5,000: serverless carries 3,000
    rates = [1000.0] * 899 + [5000.0]
    total = sum(rates)
    for allowed, want in ((0.0, 13), (500 / total, 10), (2000 / total, 0)):
        k = slo_steps.throttle_floor_vms(rates, 3000.0, CAPACITY, allowed, 1000)
        assert k == want
        assert max(0.0, 5000 - 3000 - k * CAPACITY) <= allowed * total + 1e-6
        if k:
            assert 5000 - 3000 - (k - 1) * CAPACITY > allowed * total
    assert slo_steps.throttle_floor_vms(rates, 3000.0, CAPACITY, 0.0, 4) == 4  # max_vms


def test_projection_follows_a_rise_and_at_most_doubles_the_level() -> None:
    assert slo_steps.projected_rate([100] * 39, 120.0) is None
    assert slo_steps.projected_rate([100] * 60, 120.0) == 100.0  # flat: no rise
    ramp = [100 + 10 * t for t in range(60)]  # +10 req/s each second
    level = sum(ramp[-10:]) / 10
    assert slo_steps.projected_rate(ramp, 3.0) == pytest.approx(level + 10 * 3.0)
    assert slo_steps.projected_rate(ramp, 1000.0) == 2 * level
    fall = list(reversed(ramp))
    assert slo_steps.projected_rate(fall, 120.0) == pytest.approx(sum(fall[-10:]) / 10)


def test_projection_extrapolates_only_above_the_historys_highest_level() -> None:
    swing = [1000] * 60 + [4000] * 60 + [1000] * 60  # the history has been at 4,000 before
    ramp = [1000 + 50 * t for t in range(60)]  # back up to 3,950 within a minute
    level = sum(ramp[-10:]) / 10
    assert slo_steps.projected_rate(swing + ramp, 120.0) == level
    assert slo_steps.projected_rate([1000] * 180 + ramp, 120.0) == pytest.approx(
        min(level + 50 * 120.0, 2 * level))


def test_projection_ignores_a_rise_inside_the_per_second_noise() -> None:
    # seconds alternating 2,000 and 18,000 (a x50-scaled trace): 10 s means move by
    # thousands without any trend
    noisy = [2000, 18000] * 15 + [18000, 2000, 18000, 18000, 2000, 18000, 18000, 2000, 18000,
                                  18000]
    level = sum(noisy[-10:]) / 10
    assert level > sum(noisy[:10]) / 10  # a "rise" of 1,600 req/s between the 10 s means
    assert slo_steps.projected_rate(noisy, 120.0) == level


def test_the_router_plans_with_a_quantile_that_follows_the_slo() -> None:
    assert Platform().vm.routing_quantile == 0.999
    assert Platform.model_validate({"slo": 0.99}).vm.routing_quantile == 0.999  # already >=
    strict = Platform.model_validate({"slo": 0.9999})
    assert strict.vm.routing_quantile == pytest.approx(1 - slo_steps.ROUTING_SHARE * 1e-4)
    assert strict.vm.routing_service_s > Platform().vm.routing_service_s
    higher = Platform.model_validate({"slo": 0.9999, "vm": {"routing_quantile": 0.999999}})
    assert higher.vm.routing_quantile == 0.999999  # a stricter user setting is kept


# -- the policy on hand-written timelines ----------------------------------------------------
def test_without_an_slo_nothing_of_it_runs() -> None:
    counts = [200] * 300 + [5000]
    plain, stated = Libra(), Libra()
    a = plain.decide(_obs(counts, slo=None, ready=1))
    b = stated.decide(_obs(counts, slo=0.999, ready=1))
    assert a.target_vms < b.target_vms  # the SLO floor keeps VMs for the burst
    # without: the period's mean excess, (5000 - 1000 / 0.27) / 300 req/s, rounds up to 1 VM
    assert plain._signals["throttle_floor_vms"] == 1
    assert stated._signals["throttle_floor_vms"] > 5


def test_slo_throttle_floor_keeps_vms_for_a_burst_seen_anywhere_in_the_history() -> None:
    # a burst 10 minutes ago: outside the 300 s period, inside the observation's history
    counts = [200] * 200 + [6000] * 3 + [200] * 600
    policy = Libra()
    decision = policy.decide(_obs(counts, slo=0.999, ready=2))
    carry = slo_steps.serverless_carry_rps(LIMIT, SERVICE_S, 0.5e-3)
    burst_share = 3 * 6000 / sum(counts)
    assert burst_share > 0.5e-3  # the burst alone would break the throttle share
    assert decision.target_vms >= math.ceil((6000 - carry) / CAPACITY) - 1
    assert policy._signals["throttle_floor_vms"] == decision.target_vms


def test_warm_instances_cover_the_spills_poisson_quantile_at_the_cold_start_share() -> None:
    counts = [3] * 120  # a sub-VM load: 3 req/s, nothing on VMs
    for slo in (0.999, 0.9999):
        decision = Libra().decide(_obs(counts, slo=slo))
        tail = slo_steps.COLD_SHARE * (1 - slo)
        assert decision.target_vms == 0
        assert decision.serverless_warm == slo_steps.poisson_quantile(3 * SERVICE_S, tail)
        assert poisson.sf(decision.serverless_warm, 3 * SERVICE_S) <= tail
    plain = Libra().decide(_obs(counts, slo=None))
    assert plain.serverless_warm == _instances_for(3, 0.0, SERVICE_S)
    assert Libra().decide(_obs(counts, slo=0.9999)).serverless_warm > plain.serverless_warm


def _ramp_counts(base: int, top: int, ramp_s: int, before_s: int, into_s: int) -> list[int]:
    rise = [round(base + (top - base) * min(1.0, t / ramp_s)) for t in range(into_s)]
    return [base] * before_s + rise


def test_a_flash_crowd_launches_vms_within_seconds_not_at_the_next_interval() -> None:
    base, top = 1000, 5000  # 5x within 60 s: the spill would outrun 1,000 Lambda instances
    policy = Libra()
    reacted_at = None
    fleet = 7
    for into in range(60):
        counts = _ramp_counts(base, top, 60, 600, into)
        decision = policy.decide(_obs(counts, slo=0.999, ready=fleet,
                                      booting=max(0, policy._target - fleet)))
        if into == 0:
            assert decision.target_vms == fleet  # the interval sizing at the ramp's start
        if decision.target_vms > fleet and reacted_at is None:
            reacted_at = into
            assert decision.reason.startswith("flash crowd")
    assert reacted_at is not None
    assert reacted_at < 30  # the interval is 60 s
    assert policy._target > fleet

    plain = Libra()
    for into in range(59):
        counts = _ramp_counts(base, top, 60, 600, into)
        plain_decision = plain.decide(_obs(counts, slo=None, ready=fleet))
        if into:
            assert plain_decision.target_vms == fleet  # waits for its interval


def test_a_burst_above_fleet_and_serverless_raises_the_fleet_before_the_window_fills(
) -> None:
    # a replay starts with 20 VMs ready; 45 s in (the window is not full) one second brings
    # 9,000 requests: 3,200 on VMs, more than serverless carries on the rest
    counts = [3000] * 44 + [9000]
    policy = Libra()
    decision = policy.decide(_obs(counts, slo=0.999, ready=20))
    carry = slo_steps.serverless_carry_rps(LIMIT, SERVICE_S, 0.5e-3)
    want = slo_steps.throttle_floor_vms(counts, carry, CAPACITY, 0.5e-3, 1000)
    assert want > 30  # the burst's excess, all but the 70 requests half the budget allows
    assert decision.target_vms == want
    assert decision.reason.startswith("flash crowd")
    # and a flash-crowd check never shrinks the fleet it was handed
    calm = Libra().decide(_obs([3000] * 45, slo=0.999, ready=40))
    assert calm.target_vms == 40


def test_burst_vms_are_sized_again_by_the_break_even_rule_once_it_passes() -> None:
    policy = Libra()
    counts = [1000] * 600
    policy.decide(_obs(counts, slo=0.999, ready=7))
    burst = counts + [1000 + 80 * t for t in range(40)]  # a rise that stops after 40 s
    grown = policy.decide(_obs(burst, slo=0.999, ready=7))
    assert grown.target_vms > 7
    after = burst + [1000] * 900  # the burst leaves the observed history
    decision = policy.decide(_obs(after[-900:], slo=0.999, now_s=float(len(after)),
                                  ready=grown.target_vms))
    assert decision.target_vms == 7


@settings(max_examples=60, deadline=None)
@given(
    level=st.integers(0, 4000),
    noise=st.lists(st.integers(-300, 300), min_size=60, max_size=60),
    target=st.integers(0, 30),
    ratio=st.sampled_from([1.0, 1.7]),
)
def test_no_flash_crowd_while_no_second_exceeds_the_quiet_bound(
    level: int, noise: list[int], target: int, ratio: float,
) -> None:
    for policy in (Libra(), LibraForecast()):
        policy._target = target
        if isinstance(policy, LibraForecast):
            policy._ratio = ratio
        obs = _obs([max(0, level + n) for n in noise], slo=0.999, ready=target)
        bound = policy._flash_bound(obs)
        clipped = obs.replace(arrivals_per_s=tuple(min(x, bound) for x in obs.arrivals_per_s))
        assert policy._flash_size(clipped) <= target


@settings(max_examples=60, deadline=None)
@given(
    window=st.lists(st.integers(0, 6000), min_size=1, max_size=400),
    slo=st.sampled_from([0.99, 0.999, 0.9999]),
    ratio=st.sampled_from([1.0, 0.5, 1.3]),
)
def test_sizing_at_zero_vms_takes_its_shortcut_only_where_the_full_sizing_agrees_with_an_slo(
    window: list[int], slo: float, ratio: float,
) -> None:
    from libra.core.policies.steps import break_even_rps

    obs = _obs(window, slo=slo)
    r_star = break_even_rps(obs.vm_price_per_s_usd, obs.serverless_cost_per_request_usd)
    for policy in (Libra(), LibraForecast()):
        if isinstance(policy, LibraForecast):
            policy._ratio = ratio
        size = Libra._size(policy, obs)
        signals = dict(policy._signals)
        assert (size, signals) == (policy._size_for(obs, r_star), policy._signals)


# -- quiet ticks with an SLO: the same results and decisions ----------------------------------
_CASES = {
    "sparse": synthetic_diurnal(days=0.2, mean_rps=0.05, seed=5).counts,
    "step": synthetic_step(base_rps=40.0, step_at_s=600.0, duration_s=1500, seed=7).counts,
    "flash": synthetic_step(base_rps=1000.0, step_at_s=300.0, ramp_s=30.0, hold_s=200.0,
                            duration_s=900, seed=8).counts,
}


@pytest.mark.parametrize("case", list(_CASES))
@pytest.mark.parametrize("name", ["libra", "libra-forecast"])
def test_with_an_slo_sleeping_decides_and_ends_as_every_tick_does(
    case: str, name: str, tmp_path: Path,
) -> None:
    stream = open_trace(write_per_second(tmp_path / f"{case}.txt", _CASES[case]), seed=1)
    cfg = SimConfig.model_validate({"slo": 0.999})

    every, every_sim = _replay(name, stream, cfg, {}, skip=False)
    slept, slept_sim = _replay(name, stream, cfg, {}, skip=True)

    assert slept_sim.ticks + slept_sim.ticks_skipped == every_sim.ticks
    if case != "flash":
        assert slept_sim.ticks_skipped > 0  # it did sleep: the comparison is not vacuous
    assert_decides_as_in_force(every.decisions, slept.decisions)
    if case == "flash":
        assert any(d.reason.startswith("flash crowd") for _, d in every.decisions)
    rows = {}
    for skip in (False, True):
        runs = run_policies(stream, None, [name], cfg, keep_requests=False,
                            record_ticks=False, workers=1, skip_quiet=skip)
        rows[skip] = json.dumps([dataclasses.asdict(r.result) for r in runs], sort_keys=True)
    assert rows[True] == rows[False]
