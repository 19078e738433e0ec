"""The live router follows the simulator's rules, written once in `libra.core`: the per-second VM
quota (spent only when a request goes to a VM, fraction carried), the platform's VM queue
timeout, and the planning quantile of the service time as the prior of an unmeasured worker."""

from __future__ import annotations

import asyncio

import pytest

from libra.core.policies.base import Decision
from libra.profiles import load_profile
from libra.serving.router import Router, RouterConfig
from tests.unit.test_router_admission import W1, Clock, FakeServerless, FakeVM

pytestmark = pytest.mark.unit

PLATFORM = load_profile("local").platform


def router(decision: Decision, config: RouterConfig | None = None,
           clock: Clock | None = None) -> Router:
    clock = clock or Clock(1000.0)
    return Router(lambda: [W1], FakeVM(clock), FakeServerless(),  # type: ignore[arg-type]
                  config or RouterConfig(vm_service_s=0.05), decision=decision, clock=clock)


def backend(r: Router) -> str:
    return asyncio.run(r.route({"request_id": "x"})).backend


# --- the quota -----------------------------------------------------------------------------------

def test_asking_for_quota_spends_none_when_the_request_goes_to_serverless() -> None:
    r = router(Decision(1, "one a second", vm_quota_rps=1.0))
    r.in_flight["w1"] = 30  # the VM cannot start it in time: serverless, for want of a slot
    assert backend(r) == "serverless"
    r.in_flight["w1"] = 0  # same second, the VM is free: the token was not spent
    assert backend(r) == "vm"
    assert backend(r) == "serverless"  # now it was


def test_the_unspent_fraction_carries_into_the_next_second() -> None:
    clock = Clock(1000.0)
    r = router(Decision(1, "1.5 a second", vm_quota_rps=1.5), clock=clock)
    assert [backend(r) for _ in range(2)] == ["vm", "serverless"]  # 1.5 -> 0.5 left
    clock.now = 1001.0
    assert [backend(r) for _ in range(3)] == ["vm", "vm", "serverless"]  # 0.5 + 1.5


# --- the queue timeout ---------------------------------------------------------------------------

@pytest.mark.parametrize(("queue_timeout_s", "request_timeout_s", "route"), [
    (30.0, 120.0, "VM"),  # 2.5 s of queue is inside the platform's 30 s: it waits (late)
    (1.0, 120.0, "DROP"),  # past the platform's queue timeout
    (30.0, 2.0, "DROP"),  # past the request's hard deadline: nobody would answer it
])
def test_a_vm_only_policy_queues_up_to_the_platforms_queue_timeout(
        queue_timeout_s: float, request_timeout_s: float, route: str) -> None:
    """The simulator's rule, kept with `queue_past_sla`."""
    r = router(Decision(1, "VMs only", spill_to_serverless=False),
               RouterConfig(vm_service_s=0.1, vm_queue_timeout_s=queue_timeout_s,
                            request_timeout_s=request_timeout_s, queue_past_sla=True))
    r.in_flight["w1"] = 25  # 2.5 s of queue ahead: past the 0.9 s SLA budget
    assert r.pick()[0].name == route


@pytest.mark.parametrize(("ahead", "route"), [
    (5, "VM"),  # 0.55 s of queue + 0.11 s: inside the 0.9 s budget
    (8, "VM"),  # starts at 0.88 s, inside the budget (answered a little late)
    (9, "DROP"),  # 0.99 s of queue: cannot start in the budget, refused though 2 s are left
    (25, "DROP"),
])
def test_by_default_a_vm_only_policy_refuses_what_cannot_start_inside_the_sla(
        ahead: int, route: str) -> None:
    r = router(Decision(1, "VMs only", spill_to_serverless=False),
               RouterConfig(vm_service_s=0.11, vm_queue_timeout_s=30.0, request_timeout_s=2.0))
    r.in_flight["w1"] = ahead
    assert r.pick()[0].name == route


def test_the_queue_timeout_comes_from_the_platform() -> None:
    platform = PLATFORM.model_copy(update={"vm": PLATFORM.vm.model_copy(
        update={"queue_timeout_s": 7.0})})
    assert RouterConfig.from_platform(platform).vm_queue_timeout_s == 7.0


# --- the prior of an unmeasured worker ----------------------------------------------------------

def test_an_unmeasured_worker_is_planned_at_the_p99_9_not_the_mean() -> None:
    config = RouterConfig.from_platform(PLATFORM)
    vm = PLATFORM.vm
    assert config.vm_service_s == vm.routing_service_s
    assert config.vm_service_s > 2 * vm.service_time_mean_s  # cv 0.3: p99.9 ~ 2.4 x mean
    # 5 requests' worth at the mean fits the 0.9 s budget; at the p99.9 it does not
    ahead = 4
    assert (ahead + 1) * vm.service_time_mean_s <= config.sla_budget_s
    assert (ahead + 1) * vm.routing_service_s > config.sla_budget_s
    r = router(Decision(1, "spill", spill_to_serverless=True), config)
    r.in_flight["w1"] = ahead
    assert r.pick()[0].name == "SERVERLESS"
    r.in_flight["w1"] = 2
    assert r.pick()[0].name == "VM"


def test_the_serverless_priors_come_from_the_platform() -> None:
    sls = PLATFORM.serverless
    config = RouterConfig.from_platform(PLATFORM, request_timeout_s=3.0)
    assert config.serverless_service_s == sls.service_time_mean_s + sls.invoke_overhead_s
    assert config.serverless_cold_start_s == sls.cold_start_s
    assert (config.sla_s, config.sla_margin_s, config.timeout_s) == (
        PLATFORM.sla_s, PLATFORM.sla_margin_s, 3.0)
