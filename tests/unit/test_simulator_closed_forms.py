"""The simulator against numbers worked out by hand: Erlang C queueing and exact bills.

Each test states a scenario small enough to compute on paper (or with a textbook formula) and
checks the replay lands on it: the VM pool is an M/M/c queue, VMs bill per second with a minimum,
serverless bills rounded GB-s plus a fee, cold starts follow keep-alive, limits throttle.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from libra.core.lifecycle import VMState
from libra.core.policies import ServerlessOnly, VMStatic
from libra.core.policies.base import Decision
from libra.core.route_rule import Route
from simulator.config import ServerlessConfig, SimConfig, VMConfig
from simulator.engine import Simulation
from simulator.results import summarise
from simulator.runner import run_policies
from simulator.serverless_pool import ServerlessPool
from simulator.vm_fleet import VMFleet
from tests.helpers import Scripted

pytestmark = pytest.mark.unit

# $3.60 an hour is $0.001 a second: VM bills come out as round numbers.
PRICE_PER_HOUR_USD = 3.6
PRICE_PER_S_USD = 0.001


# -- helpers -----------------------------------------------------------------------------------



def erlang_c_mean_wait_s(arrival_rps: float, service_mean_s: float, servers: int) -> float:
    """Mean time in queue of an M/M/c FCFS queue (Erlang C).

    With offered load a = lambda / mu and c servers (a < c), write T = (a^c / c!) * c / (c - a);
    the probability that an arrival waits is

        C(c, a) = T / (sum_{k=0}^{c-1} a^k / k!  +  T)

    and the mean wait in queue is W_q = C(c, a) / (c * mu - lambda).
    Kleinrock, Queueing Systems Vol. 1 (1975), section 3.5; Gross & Harris, Fundamentals of
    Queueing Theory, section 2.3 (M/M/c).
    """
    mu = 1.0 / service_mean_s
    a = arrival_rps / mu
    if a >= servers:
        raise ValueError(f"offered load ({a}) must be below the server count ({servers})")
    top = a**servers / math.factorial(servers) * servers / (servers - a)
    p_wait = top / (sum(a**k / math.factorial(k) for k in range(servers)) + top)
    return p_wait / (servers * mu - arrival_rps)


def poisson_arrivals_s(rate_rps: float, n: int, seed: int) -> np.ndarray:
    # Its own stream: with default_rng(cfg.seed) the gaps would be the very exponentials the
    # engine draws as service times (scaled), and the queue would no longer be M/M/c.
    rng = np.random.default_rng([seed, 0xA77])
    return np.cumsum(rng.exponential(1.0 / rate_rps, n))


def mm_c_config(concurrency: int, seed: int) -> SimConfig:
    """Exponential service, and an SLA and queue timeout nothing reaches: no drop, no spill."""
    return SimConfig(
        vm=VMConfig(
            concurrency=concurrency,
            service_time_mean_s=0.05,
            service_time_dist="exponential",
            service_time_cv=1.0,
            queue_timeout_s=1e9,
        ),
        sla_s=1e9,
        seed=seed,
    )


def run_vm_static(arrivals_s: np.ndarray, vms: int, cfg: SimConfig) -> Simulation:
    duration_s = float(arrivals_s[-1]) + 1.0
    return Simulation(arrivals_s, duration_s, VMStatic(fleet_size=vms), cfg, initial_vms=vms).run()


def waits_s(sim: Simulation) -> np.ndarray:
    latency, _ = sim.rec.arrays()
    return latency - np.asarray(sim.vm_service)


# -- 1. the VM pool is an M/M/c queue ------------------------------------------------------------
def test_erlang_c_formula_reduces_to_mm1() -> None:
    # c = 1: P(wait) = rho and W_q = rho / (mu - lambda)
    assert erlang_c_mean_wait_s(8.0, 0.1, 1) == pytest.approx(0.8 / (10.0 - 8.0), rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_vm_with_8_slots_waits_as_erlang_c_predicts(seed: int) -> None:
    # rho = 0.8 on c = 8 slots of mean 50 ms: lambda = 0.8 * 8 / 0.05 = 128 req/s.
    # Waits are strongly correlated near rho = 0.8: 2M arrivals (4.3 simulated hours) bring the
    # seed-to-seed spread of the mean wait to about 1.3% (measured over 8 seeds; 1.6% at 1M), so
    # 5% is nearly four standard errors. The first 10,000 (78 s) are cut as warm-up from empty.
    arrival_rps, n, warm_up = 128.0, 2_000_000, 10_000
    sim = run_vm_static(poisson_arrivals_s(arrival_rps, n, seed), 1, mm_c_config(8, seed))
    result = summarise("vm-static", sim)

    assert result.served_vm == n  # nothing dropped, nothing spilled
    expected_s = erlang_c_mean_wait_s(arrival_rps, 0.05, 8)
    assert float(waits_s(sim)[warm_up:].mean()) == pytest.approx(expected_s, rel=0.05)


def test_two_vms_of_4_slots_are_one_queue_of_8_slots() -> None:
    # The fleet keeps one FIFO over every slot (join the earliest free one), so how slots are
    # split between VMs does not change any wait: the same M/M/8 queue, request by request.
    arrivals_s = poisson_arrivals_s(128.0, 20_000, seed=3)
    one_by_8 = run_vm_static(arrivals_s, 1, mm_c_config(8, seed=3))
    two_by_4 = run_vm_static(arrivals_s, 2, mm_c_config(4, seed=3))

    assert waits_s(two_by_4).tobytes() == waits_s(one_by_8).tobytes()
    assert (waits_s(one_by_8) > 0).any()  # the comparison is not between two empty queues


# -- 2. cost accounting ---------------------------------------------------------------------------
def test_static_fleet_costs_fleet_times_duration_times_price() -> None:
    duration_s = 1000.0
    cfg = SimConfig(vm=VMConfig(price_per_hour_usd=PRICE_PER_HOUR_USD))
    arrivals_s = np.sort(np.random.default_rng(5).uniform(0.0, duration_s, 2000))

    [run] = run_policies(
        arrivals_s, duration_s, ["vm-static"], cfg, params={"vm-static": {"fleet_size": 2}}
    )

    assert run.result.vm_cost_usd == pytest.approx(2 * 1000 * PRICE_PER_S_USD, rel=1e-12)
    assert run.result.vm_hours == pytest.approx(2000 / 3600, rel=1e-12)
    assert run.result.serverless_cost_usd == 0.0
    assert run.result.total_cost_usd == run.result.vm_cost_usd


def test_vm_billing_has_a_60_s_minimum_then_runs_per_second_to_the_end() -> None:
    fleet = VMFleet(VMConfig(price_per_hour_usd=PRICE_PER_HOUR_USD, min_billing_s=60.0))
    short = fleet.launch(0.0, ready_now=True)
    long = fleet.launch(0.0, ready_now=True)
    fleet.launch(50.0)  # still running (booting, then ready) at the end
    fleet.terminate(short, 10.0)
    fleet.terminate(long, 100.5)

    cost_usd, billed_s = fleet.cost_usd(end_s=300.0)

    assert billed_s == pytest.approx(60.0 + 100.5 + 250.0, rel=1e-12)
    assert cost_usd == pytest.approx(410.5 * PRICE_PER_S_USD, rel=1e-12)


def serverless_cfg(**overrides: Any) -> ServerlessConfig:
    """A function with round figures: 2 GB, $0.00001 per GB-s, $0.0000002 per request."""
    fields: dict[str, Any] = {
        "memory_mb": 2048,
        "price_per_gb_s_usd": 0.00001,
        "price_per_request_usd": 0.0000002,
        "service_time_dist": "deterministic",
        "service_time_mean_s": 0.2504,
        "cold_start_s": 1.5,
        "invoke_overhead_s": 0.02,
        "keep_alive_s": 600.0,
    }
    fields.update(overrides)
    return ServerlessConfig(**fields)


def run_serverless(
    arrivals_s: list[float], sls: ServerlessConfig, sla_s: float = 5.0
) -> Simulation:
    cfg = SimConfig(serverless=sls, sla_s=sla_s)
    duration_s = max(arrivals_s) + 10.0
    return Simulation(np.asarray(arrivals_s), duration_s, ServerlessOnly(), cfg).run()


@pytest.mark.parametrize(
    ("bill_cold_start", "billed_gb_s"),
    [
        # cold, warm, warm, cold again after keep-alive: 1.7504 -> 1.751 s, 0.2504 -> 0.251 s
        (True, 2 * (1.751 + 0.251 + 0.251 + 1.751)),
        (False, 2 * (0.251 + 0.251 + 0.251 + 0.251)),
    ],
)
def test_serverless_bill_is_the_hand_sum(bill_cold_start: bool, billed_gb_s: float) -> None:
    # 10 s gaps are inside the 600 s keep-alive; the 680 s gap after t=20 is not.
    sim = run_serverless([0.0, 10.0, 20.0, 700.0], serverless_cfg(bill_cold_start=bill_cold_start))
    result = summarise("serverless", sim)

    assert result.cold_starts == 2
    assert result.served_serverless == 4
    assert result.vm_cost_usd == 0.0
    expected_usd = billed_gb_s * 0.00001 + 4 * 0.0000002
    assert result.serverless_cost_usd == pytest.approx(expected_usd, rel=1e-9)
    latency, _ = sim.rec.arrays()
    cold_s, warm_s = 0.02 + 1.5 + 0.2504, 0.02 + 0.2504
    assert latency.tolist() == pytest.approx([cold_s, warm_s, warm_s, cold_s], rel=1e-12)


@pytest.mark.parametrize(
    ("service_s", "billed_s"),
    [(0.25, 0.25), (0.2500004, 0.251), (0.0001, 0.001), (1.0, 1.0)],
)
def test_serverless_duration_is_rounded_up_to_the_millisecond(
    service_s: float, billed_s: float
) -> None:
    pool = ServerlessPool(serverless_cfg(cold_start_s=0.0, price_per_request_usd=0.0))

    pool.dispatch(0.0, service_s)

    assert pool.cost_usd() == pytest.approx(2 * billed_s * 0.00001, rel=1e-9)


@pytest.mark.parametrize("mode", ["batched", "naive"])
def test_draining_vm_is_billed_until_its_queue_is_served(mode: str) -> None:
    # One slot, 0.5 s per request, ten requests at t=0.100..0.109: 5 s of queued work. At t=1 the
    # policy wants no VM; the VM drains, finishes at 0.1 + 10 * 0.5 = 5.1 s, and only then stops.
    cfg = SimConfig(
        vm=VMConfig(
            price_per_hour_usd=PRICE_PER_HOUR_USD,
            min_billing_s=0.0,
            concurrency=1,
            service_time_dist="deterministic",
            service_time_mean_s=0.5,
        ),
    )
    policy = Scripted(
        (
            (0.0, Decision(target_vms=1, reason="keep one", spill_to_serverless=False)),
            (1.0, Decision(target_vms=0, reason="none wanted", spill_to_serverless=False)),
        )
    )
    arrivals_s = 0.1 + 0.001 * np.arange(10)

    sim = Simulation(arrivals_s, 20.0, policy, cfg, initial_vms=1, mode=mode).run()

    [vm] = sim.fleet.vms
    assert vm.state is VMState.TERMINATED
    assert vm.terminated_at_s == pytest.approx(5.1, rel=1e-12)
    latency, route = sim.rec.arrays()
    assert (route == Route.VM).all()
    assert float((arrivals_s + latency).max()) == pytest.approx(5.1, rel=1e-12)
    assert summarise("scripted", sim).vm_cost_usd == pytest.approx(5.1 * PRICE_PER_S_USD, rel=1e-12)


# -- 3. cold starts, concurrency, throttling ------------------------------------------------------
def test_no_keep_alive_means_every_request_after_an_idle_gap_is_cold() -> None:
    # 5 s apart, each done after 1.77 s: every instance is idle, then reaped, before the next
    # (and the last one by the controller tick after it finishes).
    arrivals_s = [5.0 * i for i in range(10)]
    sim = run_serverless(arrivals_s, serverless_cfg(keep_alive_s=0.0))

    assert sim.pool.cold_starts == 10
    assert sim.pool.reaped == 10
    assert sim.pool.instances(60.0) == 0


def test_long_keep_alive_means_only_the_first_request_is_cold() -> None:
    arrivals_s = [5.0 * i for i in range(10)]
    sim = run_serverless(arrivals_s, serverless_cfg(keep_alive_s=600.0))

    assert sim.pool.cold_starts == 1
    latency, _ = sim.rec.arrays()
    assert latency[1:].tolist() == pytest.approx([0.02 + 0.2504] * 9, rel=1e-12)


def test_overlapping_requests_each_need_their_own_instance() -> None:
    # Four requests 10 ms apart overlap (each busy for >= 0.27 s): four cold starts. Four more
    # once all are done reuse the four warm instances.
    first = [1.0, 1.01, 1.02, 1.03]
    sim = run_serverless([*first, *(t + 10.0 for t in first)], serverless_cfg())

    assert sim.pool.cold_starts == 4
    assert sim.pool.instances(12.0) == 4
    assert summarise("serverless", sim).served_serverless == 8


def test_concurrency_limit_throttles_and_throttled_requests_are_dropped_violations() -> None:
    # A limit of 3 with 5 requests at once: 3 cold starts, 2 answered 429.
    sim = run_serverless([1.0, 1.001, 1.002, 1.003, 1.004], serverless_cfg(concurrency_limit=3))
    result = summarise("serverless", sim)

    assert (result.cold_starts, result.throttled) == (3, 2)
    assert (result.served_serverless, result.dropped) == (3, 2)
    assert result.sla_violations == 2  # every served one is inside the 5 s SLA
    latency, route = sim.rec.arrays()
    assert np.isnan(latency[3:]).all()
    assert (route[3:] == Route.DROP).all()


def test_scale_rate_token_bucket_throttles_then_refills() -> None:
    # Burst 2, refilled at 1 instance/s: at t=0.5 five need instances, 2 get them. At t=1.5 one
    # token has come back (the first two are still busy until 2.27 s): one more cold start.
    sls = serverless_cfg(scale_burst=2, scale_rate_per_s=1.0)
    sim = run_serverless([0.5, 0.5, 0.5, 0.5, 0.5, 1.5, 1.5], sls)
    result = summarise("serverless", sim)

    assert (result.cold_starts, result.throttled) == (3, 4)
    _, route = sim.rec.arrays()
    assert route.tolist() == [Route.SERVERLESS] * 2 + [Route.DROP] * 3 + [
        Route.SERVERLESS,
        Route.DROP,
    ]
    assert result.sla_violations == result.dropped == 4
