"""What `libra` adds to the paper (cold starts, warm instances, the serverless concurrency limit,
EC2's minimum), what `libra-forecast` adds to `libra`, and the serverless pool's warm keeping."""

from __future__ import annotations

import math

import numpy as np
import pytest

from libra.core.policies import Libra, LibraForecast
from libra.core.policies.base import Observation
from libra.core.policies.forecast import holt_damped, seasonal_index
from simulator.config import ServerlessConfig
from simulator.serverless_pool import ServerlessPool

pytestmark = pytest.mark.unit

# One g4dn VM carries 160 req/s; Lambda: 0.27 s a request, a 1.5 s cold start, SLA 1 s.
BASE = Observation(
    now_s=0.0, arrivals_per_s=(), arrivals_per_min=(), vms_ready=1, vms_booting=0,
    vms_draining=0, vm_capacity_rps=160.0, serverless_in_flight=0, sla_s=1.0, vm_boot_s=120.0,
    vm_price_per_s_usd=0.526 / 3600, serverless_cost_per_request_usd=8.53e-6,
    serverless_cold_start_s=1.5, serverless_service_s=0.27, serverless_concurrency_limit=1000,
    vm_min_billing_s=60.0,
)


def at(now_s: int, history: list[int], **changes: object) -> Observation:
    return BASE.replace(now_s=float(now_s), arrivals_per_s=tuple(history[-900:]), **changes)


def test_libra_keeps_warm_what_the_spill_needed_at_its_peak() -> None:
    policy = Libra()
    history = [100] * 30 + [500] + [100] * 29  # one second 340 req/s above the ready VM
    for t in range(1, 61):
        d = policy.decide(at(t, history[:t]))
    need = 340 * 0.27
    assert d.serverless_warm == math.ceil(need + 3 * math.sqrt(need))  # Little + Poisson margin


def test_libra_keeps_nothing_warm_when_a_cold_start_meets_the_sla() -> None:
    policy = Libra()
    history = [500] * 60
    d = policy.decide(at(60, history, serverless_cold_start_s=0.5))  # 0.5 + 0.27 <= 1 s
    assert d.serverless_warm == 0


def test_libra_lets_the_warm_pool_go_after_the_warm_horizon() -> None:
    policy = Libra(warm_horizon_s=600.0)
    history = [500] * 5 + [100] * 1500
    warm = [policy.decide(at(t, history[:t])).serverless_warm for t in range(1, 1501)]
    assert warm[10] > 0
    assert warm[-1] == 0
    assert 540 <= warm.index(0, 10) <= 720  # between 9 and 12 minutes after the spike's minute


def test_libra_carries_on_vms_what_serverless_would_throttle() -> None:
    # VMs priced so no VM pays off (r* above a VM's capacity); serverless holds 100 / 0.25 =
    # 400 req/s. At 1,000 req/s the other 600 would be throttled: ceil(600 / 160) = 4 VMs.
    expensive = {"vm_price_per_s_usd": 1.0, "serverless_concurrency_limit": 100,
                 "serverless_service_s": 0.25}
    d = Libra().decide(at(300, [1000] * 300, **expensive))
    assert d.target_vms == 4
    assert d.signals["throttle_floor_vms"] == 4
    assert Libra().decide(at(300, [1000] * 300, vm_price_per_s_usd=1.0)).target_vms == 0


def test_libra_does_not_shrink_within_the_billing_minimum_of_growing() -> None:
    # A (hypothetical) 400 s minimum: a VM launched at t = 120 may not go before t = 520.
    policy = Libra(interval_s=60.0)
    rise = [200] * 60 + [1600] * 60
    grown = policy.decide(at(120, rise, vm_min_billing_s=400.0))
    fall = rise + [200] * 300
    kept = policy.decide(at(420, fall, vm_min_billing_s=400.0))
    assert grown.target_vms > 2
    assert kept.target_vms == grown.target_vms
    assert "billing minimum" in kept.reason
    assert Libra(interval_s=60.0).decide(at(420, fall)).target_vms < grown.target_vms


def test_holt_damped_follows_a_trend_and_stays_flat_on_a_level() -> None:
    rising = holt_damped([100.0 + 10.0 * i for i in range(60)])
    assert rising is not None
    assert rising.level == pytest.approx(690.0, abs=2.0)
    assert rising.level + 25.0 < rising.forecast(5) < rising.level + 50.0  # climbing, damped
    flat = holt_damped([200.0] * 60)
    assert flat is not None
    assert flat.forecast(10) == pytest.approx(200.0)
    assert holt_damped([1.0, 2.0]) is None


def test_seasonal_index_is_the_profile_of_whole_periods_and_ones_before() -> None:
    day = [100.0] * 6 + [300.0] * 6  # a 12-bucket "day": quiet half, busy half
    assert seasonal_index(day[:11], 12).tolist() == [1.0] * 12
    index = seasonal_index(day * 2, 12, smooth=1)
    assert index[:6] == pytest.approx([0.5] * 6)
    assert index[6:] == pytest.approx([1.5] * 6)


def drive(policy: Libra, rates: list[int], boot_s: float = 120.0) -> list[int]:
    """Targets over time with the fleet following the policy after `boot_s`."""
    targets, ready, pending = [], 1, []  # pending: (ready_at_s, n)
    for t in range(1, len(rates) + 1):
        ready += sum(n for at_s, n in pending if at_s <= t)
        pending = [(a, n) for a, n in pending if a > t]
        booting = sum(n for _, n in pending)
        d = policy.decide(at(t, rates[:t], vms_ready=ready, vms_booting=booting))
        more = d.target_vms - ready - booting
        if more > 0:
            pending.append((t + boot_s, more))
        elif more < 0:
            ready = max(0, ready + more)
        targets.append(d.target_vms)
    return targets


def test_libra_forecast_boots_vms_ahead_of_a_steady_rise() -> None:
    ramp = [160 + int(2 * t) for t in range(1800)]  # +2 req/s every second for 30 min
    plain, ahead = drive(Libra(), ramp), drive(LibraForecast(), ramp)
    assert all(a >= p for a, p in zip(ahead, plain, strict=True))
    assert sum(ahead) > sum(plain)  # more VMs earlier, so fewer spill while they boot


def test_libra_forecast_uses_yesterdays_profile_for_todays_rise() -> None:
    # A 2-hour "day": an hour at 150 req/s, then an hour at 1,500. On day two the rise is
    # foreseen from day one's profile; a trend alone cannot see a step coming.
    day = [150] * 3600 + [1500] * 3600
    forecast = LibraForecast(season_s=7200.0)
    plain = Libra()
    two_days = day + day[:3600]
    f_targets, p_targets = drive(forecast, two_days), drive(plain, two_days)
    before_rise = slice(7200 + 3600 - 240, 7200 + 3600)  # the last 4 minutes before day two's
    assert max(p_targets[before_rise]) <= 1
    assert max(f_targets[before_rise]) >= 4  # booting for the profile's rise (10 VMs at 1,500)


def test_pool_starts_missing_warm_instances_and_pings_them_past_keep_alive() -> None:
    cfg = ServerlessConfig(keep_alive_s=60.0, cold_start_s=1.5, invoke_overhead_s=0.02,
                           warm_ping_s=0.1)
    pool = ServerlessPool(cfg)
    pool.keep_warm(0.0, 3)
    assert (pool.instances(0.0), pool.warm_invocations, pool.cold_starts) == (3, 3, 0)
    for now_s in np.arange(1.0, 200.0, 1.0):
        pool.keep_warm(float(now_s), 3)
    assert pool.instances(200.0) == 3  # kept past the 60 s keep-alive
    pings = pool.warm_invocations - 3
    assert pings >= 200 // 30 * 3 - 3  # each pinged before half its keep-alive
    latency = pool.dispatch(200.5, 0.25)
    assert latency == pytest.approx(0.27)  # a warm instance: no cold start
    assert pool.cold_starts == 0
    expected_gb_s = 2.0 * (3 * (1.5 + 0.001) + pings * 0.1 + 0.25)
    fees = (3 + pings + 1) * cfg.price_per_request_usd
    assert pool.cost_usd() == pytest.approx(expected_gb_s * cfg.price_per_gb_s_usd + fees)


def test_pool_lets_unwanted_instances_expire() -> None:
    pool = ServerlessPool(ServerlessConfig(keep_alive_s=60.0))
    pool.keep_warm(0.0, 5)
    pool.keep_warm(10.0, 2)  # want fewer: the extra three are not pinged
    for now_s in range(11, 200):
        pool.keep_warm(float(now_s), 2)
    assert pool.instances(200.0) == 2
