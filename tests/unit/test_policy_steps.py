"""The small pure steps policies are built from, each on its own."""

from __future__ import annotations

import math

import pytest

from libra.core.policies.steps import (
    ScaleDelay,
    break_even_rps,
    clamp,
    limit_rate,
    marginal_vm_loads,
    vms_for_rate,
    vms_paying_off,
    vms_worth_running,
)
from libra.core.route_rule import Route, choose_route

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("rate", "capacity", "util", "expected"),
    [(0, 160, 1.0, 0), (320, 160, 1.0, 2), (320.0000001, 160, 1.0, 2), (321, 160, 1.0, 3),
     (700, 100, 0.7, 10), (701, 100, 0.7, 11), (-5, 160, 1.0, 0)],
)
def test_vms_for_rate(rate: float, capacity: float, util: float, expected: int) -> None:
    assert vms_for_rate(rate, capacity, util) == expected


def test_vms_for_rate_rejects_bad_utilisation() -> None:
    with pytest.raises(ValueError, match=r"utilisation \(1.5\)"):
        vms_for_rate(10, 160, 1.5)


def test_clamp_and_its_error_names_both_bounds() -> None:
    assert clamp(0, 1, 5) == 1
    assert clamp(9, 1, 5) == 5
    assert clamp(3, 1, 5) == 3
    with pytest.raises(ValueError, match=r"max_vms \(2\) must be >= min_vms \(3\)"):
        clamp(1, 3, 2)


def test_limit_rate_bounds_each_step() -> None:
    assert limit_rate(0, 40, 2.0, 2.0) == 40  # nothing to take a ratio of: go straight there
    assert limit_rate(2, 40, 2.0, 2.0) == 4
    assert limit_rate(10, 1, 1000.0, 2.0) == 5
    assert limit_rate(10, 7, 1000.0, 2.0) == 7
    assert limit_rate(5, 5, 2.0, 2.0) == 5


def test_scale_delay_counts_time_not_ticks() -> None:
    """Ray's 0.6 s / 0.1 s trap: six 0.1 s ticks must satisfy a 0.6 s delay."""
    delay = ScaleDelay(upscale_delay_s=0.6, downscale_delay_s=10.0)
    now, decided = 0.0, []
    for _ in range(7):
        decided.append(delay.apply(now, current=1, proposed=3))
        now += 0.1
    assert decided == [1, 1, 1, 1, 1, 1, 3]


def test_scale_delay_interrupted_intent_resets() -> None:
    delay = ScaleDelay(upscale_delay_s=30.0, downscale_delay_s=30.0)
    assert delay.apply(0.0, current=2, proposed=4) == 2
    assert delay.apply(20.0, current=2, proposed=2) == 2  # the wish went away: reset
    assert delay.apply(25.0, current=2, proposed=4) == 2
    assert delay.apply(50.0, current=2, proposed=4) == 2  # only 25 s since it came back
    assert delay.apply(55.0, current=2, proposed=4) == 4


def test_scale_delay_direction_change_resets_and_scale_down_keeps_the_max() -> None:
    delay = ScaleDelay(upscale_delay_s=0.0, downscale_delay_s=60.0)
    assert delay.apply(0.0, current=10, proposed=4) == 10
    assert delay.apply(30.0, current=10, proposed=7) == 10
    assert delay.apply(60.0, current=10, proposed=3) == 7  # the highest wish in the window
    assert delay.apply(61.0, current=7, proposed=9) == 9  # up with no delay


def test_break_even_is_the_papers_indifference_point() -> None:
    """LIBRA.md: r* = 2.78e-5 / 8.535e-6 = 3.25 req/s with the paper's prices."""
    r_star = break_even_rps(0.10 / 3600, 8.535e-6)
    assert r_star == pytest.approx(3.2546, rel=1e-3)
    assert break_even_rps(0.10 / 3600, 8.535e-6, boot_s=100, horizon_s=300) == pytest.approx(
        r_star * (1 + 100 / 300)
    )
    assert break_even_rps(1.0, 0.0) == math.inf


def test_a_partial_vm_runs_only_when_its_share_pays() -> None:
    assert vms_worth_running(170, 160, break_even_rate_rps=17) == 1  # 10 req/s: serverless
    assert vms_worth_running(180, 160, break_even_rate_rps=17) == 2  # 20 req/s: a VM
    assert vms_worth_running(320, 160, break_even_rate_rps=17) == 2
    assert vms_worth_running(100, 10, break_even_rate_rps=17) == 0  # a VM never pays


def test_marginal_loads_fold_height_and_duration() -> None:
    assert marginal_vm_loads([400.0] * 10, 160, 100) == pytest.approx([160, 160, 80])
    # a burst to 2,000 req/s for 10 s in 300 s at 200 req/s: the 3rd VM carries 160 * 10/300
    rates = [200.0] * 290 + [2000.0] * 10
    loads = marginal_vm_loads(rates, 160, 100)
    assert loads[0] == pytest.approx(160)
    assert loads[1] == pytest.approx((40 * 290 + 160 * 10) / 300)
    assert loads[2] == pytest.approx(160 * 10 / 300)
    assert marginal_vm_loads([], 160, 10) == []


def test_vms_paying_off_uses_a_higher_bar_for_vms_that_must_boot() -> None:
    rates = [330.0] * 300  # the 3rd VM would carry 10 req/s
    assert vms_paying_off(rates, 160, running_vms=3, keep_rps=5, start_rps=20, max_vms=50) == 3
    assert vms_paying_off(rates, 160, running_vms=2, keep_rps=5, start_rps=20, max_vms=50) == 2
    assert vms_paying_off(rates, 160, running_vms=0, keep_rps=5, start_rps=20, max_vms=1) == 1


@pytest.mark.parametrize(
    ("wait", "quota_left", "spill", "use_vms", "expected"),
    [
        (0.0, True, True, True, Route.VM),
        (0.8, True, True, True, Route.VM),  # 0.8 + 0.1 fits 1.0
        (0.95, True, True, True, Route.SERVERLESS),
        (0.0, False, True, True, Route.SERVERLESS),  # quota spent
        (None, True, True, True, Route.SERVERLESS),  # no VM at all
        (5.0, True, False, True, Route.VM),  # VM-only: queue within the timeout
        (31.0, True, False, True, Route.DROP),  # VM-only: queue too long
        (None, True, False, True, Route.DROP),
        (0.0, True, True, False, Route.SERVERLESS),  # serverless-only policy
    ],
)
def test_routing_rule(
    wait: float | None, quota_left: bool, spill: bool, use_vms: bool, expected: Route
) -> None:
    route = choose_route(
        vm_wait_s=wait, expected_service_s=0.1, sla_budget_s=1.0, quota_left=quota_left,
        spill_to_serverless=spill, use_vms=use_vms, queue_timeout_s=30.0,
    )
    assert route is expected
