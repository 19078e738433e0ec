"""The local provisioner and the controller over real worker processes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from libra.core.lifecycle import VMState
from libra.core.platform import Platform
from libra.core.policies.base import Decision
from libra.serving.backends.noop import NoopDriver
from libra.serving.backends.vm import VMBackend
from libra.serving.control.controller import Controller
from libra.serving.provision.local import LocalProvisioner
from libra.serving.router import Router
from libra.serving.state.rates import RateMonitor
from tests.helpers import Scripted

pytestmark = pytest.mark.integration


def wait_until(check, timeout_s: float = 90.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_workers_boot_with_the_emulated_delay_then_drain_on_scale_in(
        built_models: tuple[Path, dict], tmp_path: Path) -> None:
    fleet = LocalProvisioner(built_models[0], log_dir=tmp_path, boot_delay_s=3.0,
                             worker_args=("--threads", "1"), max_vms=3)
    try:
        started = time.monotonic()
        fleet.set_target(2)
        assert fleet.counts()[VMState.BOOTING] == 2
        wait_until(lambda: (fleet.poll(), fleet.counts()[VMState.READY] == 2)[1])
        assert time.monotonic() - started >= 3.0  # not ready before the emulated boot
        assert len(fleet.ready_workers()) == 2
        assert len(fleet.registry.alive()) == 2
        fleet.set_target(5)  # capped at max_vms
        assert fleet.counts()[VMState.BOOTING] == 1
        fleet.set_target(1)  # the booting one goes first, then one ready worker drains
        counts = fleet.counts()
        assert counts[VMState.READY] == 1
        assert counts[VMState.DRAINING] == 2
        wait_until(lambda: (fleet.poll(), fleet.counts()[VMState.DRAINING] == 0)[1])
        assert len(fleet.registry.alive()) == 1
    finally:
        fleet.close()


def test_the_initial_fleet_is_ready_without_the_emulated_boot(
        built_models: tuple[Path, dict], tmp_path: Path) -> None:
    """It stands for a fleet already running (the simulator's initial VMs are ready at t=0);
    a VM the controller launches later boots for the emulated delay. The provisioner's clock
    is frozen, so only the delay can hold the second one back."""
    frozen = 0.0
    fleet = LocalProvisioner(built_models[0], log_dir=tmp_path, boot_delay_s=30.0,
                             worker_args=("--threads", "1"), max_vms=2, clock=lambda: frozen)
    try:
        fleet.start(1)
        wait_until(lambda: (fleet.poll(), fleet.counts()[VMState.READY] == 1)[1])
        fleet.set_target(2)
        wait_until(lambda: all(vm.process.ready for vm in fleet.vms))
        fleet.poll()
        assert (fleet.counts()[VMState.READY], fleet.counts()[VMState.BOOTING]) == (1, 1)
        assert set(fleet.vm_states().values()) == {VMState.READY, VMState.BOOTING}
    finally:
        fleet.close()


def test_a_worker_that_dies_is_counted_and_replaced(built_models: tuple[Path, dict],
                                                     tmp_path: Path) -> None:
    fleet = LocalProvisioner(built_models[0], log_dir=tmp_path, worker_args=("--threads", "1"))
    try:
        fleet.set_target(1)
        wait_until(lambda: (fleet.poll(), len(fleet.ready_workers()) == 1)[1])
        fleet.vms[0].process.kill()
        fleet.poll()
        assert fleet.crashes == 1
        assert fleet.ready_workers() == []
        fleet.set_target(1)
        assert fleet.counts()[VMState.BOOTING] == 1
    finally:
        fleet.close()


def test_the_controller_applies_decisions_and_holds_on_a_hold(
        built_models: tuple[Path, dict], tmp_path: Path) -> None:
    fleet = LocalProvisioner(built_models[0], log_dir=tmp_path, worker_args=("--threads", "1"))
    policy = Scripted(((0.0, Decision(1, "start one", vm_quota_rps=5.0)),
                       (1e9, Decision(0, "never reached"))))
    serverless = NoopDriver()
    router = Router(fleet.ready_workers, VMBackend(), serverless)
    controller = Controller(policy, RateMonitor(), fleet, serverless, router, Platform())
    try:
        decision = controller.tick()
        assert decision.reason == "start one"
        assert router.decision.vm_quota_rps == 5.0
        assert fleet.counts()[VMState.BOOTING] == 1
        policy.timeline = ((0.0, Decision.hold_fleet(7, "no samples")),)
        controller.tick()
        assert fleet.target == 1  # a hold keeps the fleet: 7 was never asked of the provisioner
        assert controller.last_observation is not None
        assert controller.last_observation.vms_booting + controller.last_observation.vms_ready == 1
    finally:
        fleet.close()
