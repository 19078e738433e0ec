"""The live controller with five-line fakes (a clock, a provisioner, a serverless driver): the
observation it builds is the core's, from the settings' platform, on one time axis; the decision
goes where it must. And `Service` wires the platform into the router, the controller and the
local fleet."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from libra.core.lifecycle import VMState
from libra.core.observation import FleetState, build_observation
from libra.core.platform import Platform
from libra.core.policies.base import Decision, Observation
from libra.profiles import load_profile
from libra.serving.control.controller import Controller
from libra.serving.state.rates import RateMonitor
from libra.serving.state.registry import WorkerInfo

pytestmark = pytest.mark.unit

PLATFORM = load_profile("local").platform


@dataclass
class Clock:
    now: float

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeProvisioner:
    name: str = "fake"
    states: dict[VMState, int] = field(default_factory=lambda: {VMState.READY: 2,
                                                                VMState.BOOTING: 1})
    targets: list[int] = field(default_factory=list)
    on_demand: list[int | None] = field(default_factory=list)
    polls: int = 0

    def start(self, initial: int) -> int:
        return 0

    def set_target(self, n: int, on_demand_vms: int | None = None) -> None:
        self.targets.append(n)
        self.on_demand.append(on_demand_vms)

    def poll(self) -> None:
        self.polls += 1

    def counts(self) -> dict[VMState, int]:
        return {state: self.states.get(state, 0) for state in VMState}

    def vm_states(self) -> dict[str, VMState]:
        return {}

    def ready_workers(self) -> list[WorkerInfo]:
        return []

    def close(self) -> None:
        return None


@dataclass
class FakeServerless:
    in_flight: int = 3
    instances_alive: int = 2


@dataclass
class Sink:
    decision: Decision = field(default_factory=lambda: Decision(0, "none yet"))


@dataclass
class Recorder:
    """A policy that returns `decision` and keeps what it saw."""

    decision: Decision = field(default_factory=lambda: Decision(2, "two"))
    seen: list[Observation] = field(default_factory=list)
    name: str = "recorder"

    def decide(self, obs: Observation) -> Decision:
        self.seen.append(obs)
        return self.decision


def controller(clock: Clock, policy: Recorder | None = None,
               platform: Platform = PLATFORM) -> tuple[Controller, RateMonitor, FakeProvisioner,
                                                       Sink]:
    monitor = RateMonitor(clock=clock)
    fleet, sink = FakeProvisioner(), Sink()
    return (Controller(policy or Recorder(), monitor, fleet, FakeServerless(),  # type: ignore[arg-type]
                       sink, platform), monitor, fleet, sink)


def test_now_and_the_arrival_counts_are_on_one_clock() -> None:
    clock = Clock(1000.4)
    policy = Recorder()
    ctl, monitor, _, _ = controller(clock, policy)
    for t, n in [(1000.5, 3), (1001.2, 2), (1001.9, 4), (1002.1, 1)]:
        clock.now = t
        monitor.record(n)
    clock.now = 1002.6
    ctl.tick()
    obs = policy.seen[-1]
    # the counts end with the whole second that ended at or before now (second 1001)
    assert obs.arrivals_per_s == (3, 6)
    # now_s names the same second, and the same second of the minute, as the counts' keys
    assert ctl.origin_s % 60 == 0
    assert math.floor(obs.now_s) + ctl.origin_s == 1002
    assert math.floor(obs.now_s) % 60 == 1002 % 60


def test_a_policys_minute_closes_when_the_counted_minute_does() -> None:
    clock = Clock(1019.5)  # second 59 of minute 16 (960-1019)
    policy = Recorder()
    ctl, monitor, _, _ = controller(clock, policy)
    clock.now = 1019.6
    monitor.record(5)
    clock.now = 1020.3  # minute 17 has begun
    ctl.tick()
    obs = policy.seen[-1]
    assert obs.arrivals_per_min == (5,)  # minute 16, whole
    assert math.floor(obs.now_s) // 60 == (1020 - ctl.origin_s) // 60 == 1  # its minute 1 = 17


def test_the_observation_is_the_cores_from_the_platform() -> None:
    clock = Clock(500.0)
    policy = Recorder()
    platform = PLATFORM.model_copy(update={"vm": PLATFORM.vm.model_copy(
        update={"boot_s": 33.0, "concurrency": 4, "service_time_mean_s": 0.1})})
    ctl, _, _, _ = controller(clock, policy, platform)
    clock.now = 503.5
    ctl.tick()
    obs = policy.seen[-1]
    fleet = FleetState(vms_ready=2, vms_booting=1, vms_draining=0, serverless_in_flight=3,
                       serverless_instances=2)
    assert obs == build_observation(platform, obs.now_s, obs.arrivals_per_s,
                                    obs.arrivals_per_min, fleet)
    assert (obs.vm_capacity_rps, obs.vm_boot_s) == (pytest.approx(40.0), 33.0)


def test_the_decision_goes_to_the_fleet_and_the_router_and_a_hold_keeps_the_fleet() -> None:
    clock = Clock(100.0)
    policy = Recorder(Decision(3, "three", vm_quota_rps=5.0))
    ctl, _, fleet, sink = controller(clock, policy)
    ctl.tick()
    assert fleet.targets == [3]
    assert sink.decision.vm_quota_rps == 5.0
    policy.decision = Decision.hold_fleet(7, "no samples")
    ctl.tick()
    assert fleet.targets == [3]
    assert sink.decision.hold
    policy.decision = Decision(0, "serverless only", use_vms=False)
    ctl.tick()
    assert fleet.targets == [3, 0]
    assert (ctl.ticks, fleet.polls) == (3, 3)


def test_the_on_demand_part_goes_to_the_fleet_and_draining_vms_are_not_capacity() -> None:
    """Issue 18: the decision's on-demand part travels with its target (None: all on-demand),
    and a VM draining after a spot notice is observed as draining, not ready."""
    clock = Clock(100.0)
    policy = Recorder(Decision(3, "three, one on-demand", on_demand_vms=1))
    ctl, _, fleet, _ = controller(clock, policy)
    fleet.states = {VMState.READY: 1, VMState.DRAINING: 1, VMState.BOOTING: 1}
    ctl.tick()
    policy.decision = Decision(2, "all on-demand")
    ctl.tick()
    policy.decision = Decision(0, "serverless only", use_vms=False)
    ctl.tick()
    assert fleet.targets == [3, 2, 0]
    assert fleet.on_demand == [1, None, None]
    obs = policy.seen[-1]
    assert (obs.vms_ready, obs.vms_draining, obs.vms_booting) == (1, 1, 1)


def test_a_follower_applies_the_leaders_decision_and_never_decides_or_resizes() -> None:
    clock = Clock(100.0)
    policy = Recorder(Decision(3, "three"))
    ctl, _, fleet, sink = controller(clock, policy)
    ctl.follow(None)  # no leader has published yet: nothing to apply
    assert sink.decision.reason == "none yet"
    assert ctl.last_decision is None
    leaders = Decision(0, "leader: serverless only", use_vms=False)
    ctl.follow(leaders)
    assert sink.decision == leaders
    assert ctl.last_decision == leaders
    ctl.follow(None)  # the key expired or Redis is down: keep the last
    assert sink.decision == leaders
    assert (policy.seen, fleet.targets, fleet.polls, ctl.ticks) == ([], [], 3, 3)


def test_the_service_wires_the_settings_platform_everywhere(tmp_path: Path) -> None:
    """Router prior, queue timeout, controller, fleet and cost meter all read one platform."""
    from libra.serving.service import Service
    from libra.serving.settings import Settings

    (tmp_path / "manifest.json").write_text(json.dumps(
        {"trained_modalities": ["text"], "model_version": "test"}))
    settings = Settings(model_dir=tmp_path, log_dir=tmp_path, initial_vms=0,
                        vm={"boot_s": 33.0, "concurrency": 6, "queue_timeout_s": 4.0},
                        serverless={"concurrency_limit": 3, "keep_alive_s": 12.0})
    svc = Service(settings)
    try:
        platform = settings.platform
        assert svc.router.config.vm_service_s == platform.vm.routing_service_s
        assert svc.router.config.vm_service_s > platform.vm.service_time_mean_s
        assert svc.router.config.vm_queue_timeout_s == 4.0
        assert svc.controller.platform == platform
        obs = svc.controller.observe()
        assert (obs.vm_boot_s, obs.serverless_concurrency_limit) == (33.0, 3)
        assert svc.provisioner.boot_delay_s == 33.0  # type: ignore[attr-defined]
        assert svc.provisioner.max_batch_size == 6  # type: ignore[attr-defined]
        assert svc.serverless.capacity == 3
        assert svc.cost.vm == platform.vm
    finally:
        svc._control_pool.shutdown()
        svc.decode_pool.shutdown()
