"""Sleeping through quiet ticks changes nothing: the same results and the same decisions as a
replay that runs the controller at every tick, on sparse, low-rate, stepped and bursty traces,
in our default setting and the LIBRA paper's; and the pieces that promise it (`Quiet` bounds,
the serverless pool's next keep-warm time, the forecast's fit) keep their promises.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libra.core.policies import POLICIES
from libra.core.policies.base import Decision, Observation, Policy, Quiet
from libra.core.policies.forecast import DAMPING, holt_damped
from libra.core.policies.steps import largest_count
from simulator.config import ServerlessConfig, SimConfig
from simulator.engine import Simulation
from simulator.presets import load_preset
from simulator.results import summarise
from simulator.runner import DEFAULT_POLICIES, build_policy, initial_fleet, run_policies
from simulator.serverless_pool import ServerlessPool
from simulator.tracegen import synthetic_diurnal, synthetic_step, write_per_second
from simulator.traces import open_trace

pytestmark = pytest.mark.unit


def _paper() -> tuple[SimConfig, dict[str, Any], dict[str, Any]]:
    preset = load_preset("libra-ic2e21")
    data = preset.config_data()
    params = data.pop("policies")
    return SimConfig.model_validate(data), params, dict(preset.trace)


# (counts per second, setting): a server idle most seconds (libra cold at 0 VMs, mark's fleet
# coming and going), the 1 req/s, a 1x-to-5x step (fleets grow, boot, drain), and the
# paper's setting (count quota, VMs booting at the start, 1 s epochs) on sparse and stepped load
CASES = {
    "sparse": (synthetic_diurnal(days=0.25, mean_rps=0.03, seed=5).counts, "default"),
    "one-rps": (synthetic_diurnal(days=0.15, mean_rps=1.0, seed=6).counts, "default"),
    "step": (synthetic_step(base_rps=40.0, step_at_s=600.0, duration_s=1500, seed=7).counts,
             "default"),
    "sparse-paper": (synthetic_diurnal(days=0.2, mean_rps=0.05, seed=8).counts, "paper"),
    "step-paper": (synthetic_step(base_rps=20.0, step_at_s=600.0, hold_s=300.0,
                                  duration_s=1800, seed=9).counts, "paper"),
    # ticks that do not divide a minute, and a history shorter than a quiet spell's limit
    "odd-ticks": (synthetic_diurnal(days=0.25, mean_rps=0.3, seed=10).counts, "odd-ticks"),
}


def _setting(name: str, tmp: Path) -> tuple[Any, SimConfig, dict[str, Any]]:
    counts, setting = CASES[name]
    path = write_per_second(tmp / f"{name}.txt", counts)
    if setting == "default":
        return open_trace(path, seed=1), SimConfig(), {}
    if setting == "odd-ticks":
        return open_trace(path, seed=1), SimConfig(tick_s=2.5, history_s=100), {}
    cfg, params, trace_kwargs = _paper()
    return open_trace(path, seed=1, **trace_kwargs), cfg, params


@pytest.mark.parametrize("case", list(CASES))
def test_results_are_byte_identical_with_and_without_sleeping(case: str, tmp_path: Path) -> None:
    stream, cfg, params = _setting(case, tmp_path)

    rows = {}
    for skip in (False, True):
        runs = run_policies(stream, None, DEFAULT_POLICIES, cfg, params=params,
                            keep_requests=False, record_ticks=False, workers=2, skip_quiet=skip)
        rows[skip] = json.dumps([dataclasses.asdict(r.result) for r in runs], sort_keys=True)

    assert rows[True] == rows[False]


class Recording:
    """Wraps a policy: every decision it makes, with the tick's time, in order."""

    name: ClassVar[str] = "recording"

    def __init__(self, inner: Policy) -> None:
        self.inner = inner
        self.decisions: list[tuple[float, Decision]] = []
        if hasattr(inner, "quiet_until"):
            self.quiet_until = inner.quiet_until

    def decide(self, obs: Observation) -> Decision:
        decision = self.inner.decide(obs)
        self.decisions.append((obs.now_s, decision))
        return decision


def _effect(decision: Decision) -> tuple[object, ...]:
    return (decision.target_vms, decision.vm_quota_rps, decision.vm_quota_by_count,
            decision.spill_to_serverless, decision.use_vms, decision.serverless_warm)


def assert_decides_as_in_force(every: Iterable[tuple[float, Decision]],
                               slept: Iterable[tuple[float, Decision]]) -> None:
    """Each decision of the tick-by-tick run has the effect of the sleeping run's decision in
    force at that tick (the last one made at or before it)."""
    in_force = iter(slept)
    current_t, current = next(in_force)
    upcoming = next(in_force, None)
    for t_s, decision in every:
        while upcoming is not None and upcoming[0] <= t_s:
            current_t, current = upcoming
            upcoming = next(in_force, None)
        assert _effect(current) == _effect(decision), (t_s, current_t, current, decision)


def _replay(name: str, stream: Any, cfg: SimConfig, params: dict[str, Any],
            skip: bool) -> tuple[Recording, Simulation]:
    policy = build_policy(name, stream, cfg, params.get(name))
    recording = Recording(policy)
    sim = Simulation(stream, None, recording, cfg, initial_vms=initial_fleet(policy, stream, cfg),
                     keep_requests=False, record_ticks=False, skip_quiet=skip).run()
    return recording, sim


@pytest.mark.parametrize("case", ["sparse", "step-paper", "odd-ticks"])
@pytest.mark.parametrize("name", list(POLICIES))
def test_every_tick_decides_as_the_decision_in_force_while_sleeping(
    case: str, name: str, tmp_path: Path,
) -> None:
    stream, cfg, params = _setting(case, tmp_path)

    every, every_sim = _replay(name, stream, cfg, params, skip=False)
    slept, slept_sim = _replay(name, stream, cfg, params, skip=True)

    assert every_sim.ticks_skipped == 0
    assert slept_sim.ticks + slept_sim.ticks_skipped == every_sim.ticks
    assert slept_sim.ticks_skipped > 0  # it did sleep: the comparison is not vacuous
    assert_decides_as_in_force(every.decisions, slept.decisions)
    assert dataclasses.asdict(summarise(name, slept_sim)) == \
        dataclasses.asdict(summarise(name, every_sim))


def test_recorded_decision_streams_are_never_slept_through(tmp_path: Path) -> None:
    stream, cfg, _ = _setting("sparse", tmp_path)
    policy = build_policy("vm-static", stream, cfg)

    sim = Simulation(stream, None, policy, cfg, initial_vms=1, record_ticks=True).run()

    assert sim.ticks_skipped == 0
    assert sim.rec.ticks is not None
    assert sim.rec.ticks.n == sim.ticks == math.ceil(stream.duration_s)


def test_a_quiet_stretch_costs_far_fewer_ticks_than_seconds(tmp_path: Path) -> None:
    stream, cfg, params = _setting("sparse", tmp_path)

    runs = {name: _replay(name, stream, cfg, params, skip=True)[1]
            for name in ("vm-static", "serverless", "libra-paper", "libra")}

    seconds = math.ceil(stream.duration_s)
    for name, sim in runs.items():
        assert sim.ticks + sim.ticks_skipped == seconds
        # libra wakes at least twice a minute (its interval and its per-minute warm peaks)
        assert sim.ticks < (seconds / 20 if name == "libra" else seconds / 100), name


# -- the pieces --------------------------------------------------------------------------------


@given(st.integers(-5, 200), st.integers(-5, 200), st.integers(-5, 200))
def test_largest_count_finds_the_last_count_a_monotone_test_passes(
    edge: int, lo: int, span: int,
) -> None:
    hi = lo + span
    found = largest_count(lambda n: n <= edge, lo, hi)

    if edge < lo or span < 0:
        assert found == lo - 1
    else:
        assert found == min(edge, hi)


def test_quiet_refuses_nan() -> None:
    with pytest.raises(ValueError, match="NaN"):
        Quiet(math.nan)
    assert Quiet(5.0).max_arrivals_per_s == math.inf


@settings(max_examples=200, deadline=None)
@given(
    warm_target=st.integers(1, 6),
    before=st.lists(st.floats(0.0, 400.0), max_size=30),
    after=st.lists(st.floats(0.0, 1.0), max_size=60),
    ticks=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=20),
)
def test_keep_warm_does_nothing_before_the_pools_next_keep_warm_time(
    warm_target: int, before: list[float], after: list[float], ticks: list[float],
) -> None:
    cfg = ServerlessConfig(keep_alive_s=200.0, cold_start_s=1.0, service_time_mean_s=0.5)
    pool = ServerlessPool(cfg)
    for t_s in sorted(before):  # any history of requests
        pool.dispatch(t_s, 0.5)
    now_s = 400.0
    pool.keep_warm(now_s, warm_target)
    next_s = pool.next_keep_warm_s(now_s, warm_target)
    assert next_s >= now_s - 1e-6  # keep_warm just refreshed every stale instance
    span_s = max(0.0, next_s - now_s)
    warm_invocations = pool.warm_invocations
    # requests and keep-warm calls interleaved, all before next_s: no ping, no start
    requests = iter(sorted(now_s + u * span_s for u in after))
    pending = next(requests, None)
    for tick_s in sorted(now_s + u * span_s for u in ticks):
        while pending is not None and pending < tick_s:
            pool.dispatch(pending, 0.5)
            pending = next(requests, None)
        pool.keep_warm(tick_s, warm_target)
    assert pool.warm_invocations == warm_invocations


def test_keep_warm_pings_once_the_pools_next_keep_warm_time_has_passed() -> None:
    pool = ServerlessPool(ServerlessConfig(keep_alive_s=200.0, cold_start_s=1.0))
    pool.keep_warm(0.0, 2)  # two instances started
    started = pool.warm_invocations
    next_s = pool.next_keep_warm_s(10.0, 2)

    pool.keep_warm(next_s + 1.0, 2)

    assert started == 2
    assert 100.0 < next_s < 102.0  # half the keep-alive after they went idle
    assert pool.warm_invocations == started + 2
    missing = ServerlessPool(ServerlessConfig(scale_burst=1))
    missing.keep_warm(0.0, 3)  # the scale-up budget starts one of three
    assert missing.next_keep_warm_s(0.0, 3) == 0.0


def _holt_numpy_scalars(series: list[float]) -> tuple[float, float, float, float, float] | None:
    """The fit as first written (numpy scalars), the reference for the plain-float loop."""
    y = np.asarray(series, dtype=np.float64)
    if y.size < 3:
        return None
    best = None
    for alpha in (0.1, 0.3, 0.5, 0.8):
        for beta in (0.0, 0.05, 0.15, 0.3):
            level, trend, sse = y[0], y[1] - y[0], 0.0
            for x in y[1:]:
                predicted = level + DAMPING * trend
                sse += (x - predicted) ** 2
                new_level = alpha * x + (1 - alpha) * predicted
                trend = beta * (new_level - level) + (1 - beta) * DAMPING * trend
                level = new_level
            rmse = math.sqrt(sse / (y.size - 1))
            if best is None or rmse < best[4] - 1e-12:
                best = (float(level), float(trend), alpha, beta, rmse)
    return best


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(0.0, 5000.0), min_size=0, max_size=60))
def test_holt_fit_is_bit_identical_to_the_numpy_scalar_loop(series: list[float]) -> None:
    fit = holt_damped(series)
    reference = _holt_numpy_scalars(series)

    if reference is None:
        assert fit is None
    else:
        assert fit is not None
        assert (fit.level, fit.trend, fit.alpha, fit.beta, fit.rmse) == reference


def test_pool_heap_order_is_what_next_keep_warm_assumes() -> None:
    # idle instances are kept oldest first: the warm set is the newest `keep` of them
    pool = ServerlessPool(ServerlessConfig())
    for t_s in (0.0, 0.1, 0.2, 5.0):
        pool.dispatch(t_s, 0.5)
    pool.release(10.0)
    assert list(pool.idle_since) == sorted(pool.idle_since)
    assert not pool.busy_until or heapq.nsmallest(1, pool.busy_until)[0] > 10.0


def test_arrivals_spread_once_for_all_policies_replay_as_each_alone(tmp_path: Path) -> None:
    # epochs of a minute move arrivals out of their count's second: vm-static must still be
    # sized on the file's per-second peak, as when the stream is replayed on its own
    counts = synthetic_step(base_rps=5.0, step_at_s=300.0, duration_s=900, seed=2).counts
    stream = open_trace(write_per_second(tmp_path / "step.txt", counts), epoch_s=60.0)
    names = ["vm-static", "libra", "mark"]

    together = run_policies(stream, None, names, SimConfig(), keep_requests=False,
                            record_ticks=False, workers=2)
    alone = [run_policies(stream, None, [name], SimConfig(), keep_requests=False,
                          record_ticks=False)[0] for name in names]

    assert [r.result.policy for r in together] == names
    assert [dataclasses.asdict(r.result) for r in together] == \
        [dataclasses.asdict(r.result) for r in alone]


@settings(max_examples=300, deadline=None)
@given(
    window=st.lists(st.integers(0, 60), min_size=1, max_size=400),
    capacity_rps=st.sampled_from([4.0, 16.0, 160.0]),
    vm_price_per_s=st.floats(1e-5, 1e-3),
    request_cost=st.floats(1e-7, 1e-4),
    limit=st.sampled_from([0, 5, 1000]),
    ratio=st.sampled_from([1.0, 0.5, 1.3, 2.0000001, 7.0]),
)
def test_sizing_at_zero_vms_takes_its_shortcut_only_where_the_full_sizing_agrees(
    window: list[int], capacity_rps: float, vm_price_per_s: float, request_cost: float,
    limit: int, ratio: float,
) -> None:
    from libra.core.policies.libra import Libra
    from libra.core.policies.libra_forecast import LibraForecast
    from libra.core.policies.steps import break_even_rps

    obs = Observation(
        now_s=float(len(window)), arrivals_per_s=tuple(window), arrivals_per_min=(),
        vms_ready=0, vms_booting=0, vms_draining=0, vm_capacity_rps=capacity_rps,
        serverless_in_flight=0, sla_s=1.0, vm_boot_s=120.0, vm_price_per_s_usd=vm_price_per_s,
        serverless_cost_per_request_usd=request_cost, serverless_service_s=0.27,
        serverless_concurrency_limit=limit, vm_min_billing_s=60.0,
    )
    r_star = break_even_rps(vm_price_per_s, request_cost)
    for policy in (Libra(), LibraForecast()):
        if isinstance(policy, LibraForecast):
            policy._ratio = ratio
        size = Libra._size(policy, obs)
        signals = dict(policy._signals)
        assert (size, signals) == (policy._size_for(obs, r_star), policy._signals)
