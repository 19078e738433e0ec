"""Admission and routing by the SLA, with five-line fakes: a fake clock, a fake worker backend and
a fake serverless driver. What a request gets (VM, serverless, 503 with a reason and
Retry-After) for a given queue, measured service time and deadline."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

from libra.core.policies.base import Decision
from libra.serving.admission import (
    Budget,
    DecodePool,
    Gate,
    ServiceEstimate,
    ShedError,
)
from libra.serving.backends.serverless import InvokeResult, ServerlessError
from libra.serving.backends.vm import VMError, VMResult
from libra.serving.router import NoBackendError, Router, RouterConfig
from libra.serving.state.registry import WorkerInfo

pytestmark = pytest.mark.unit

W1 = WorkerInfo("w1", "http://w1")
ANSWER = {"probabilities": [1 / 7] * 7}


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeVM:
    """Takes `service_s` of fake time per call, or fails with `fail` (a VMError code)."""

    clock: Clock
    service_s: float = 0.05
    fail: str | None = None
    timeouts: list[float | None] = field(default_factory=list)

    async def infer(self, worker: WorkerInfo, event: dict[str, Any],
                    timeout_s: float | None = None) -> VMResult:
        self.timeouts.append(timeout_s)
        self.clock.now += self.service_s
        if self.fail:
            raise VMError(self.fail, f"{worker.worker_id}: {self.fail}")
        return VMResult(dict(ANSWER), self.service_s)

    async def aclose(self) -> None:
        return None


@dataclass
class FakeServerless:
    """`capacity` at once; `busy` calls already in flight; fails with `errors` in turn."""

    capacity: int = 4
    busy: int = 0
    errors: list[str] = field(default_factory=list)
    calls: int = 0
    timeouts: list[float | None] = field(default_factory=list)
    name: str = "fake"
    cold_starts: int = 0
    instances_alive: int = 0

    @property
    def in_flight(self) -> int:
        return self.busy

    async def invoke(self, event: dict[str, Any], *, timeout_s: float | None = None
                     ) -> InvokeResult:
        self.calls += 1
        self.timeouts.append(timeout_s)
        if self.errors:
            code = self.errors.pop(0)
            raise ServerlessError(code, f"instance {code}")
        return InvokeResult(dict(ANSWER), False, 0.1)

    async def keep_warm(self, target: int) -> list[float]:
        return []

    async def aclose(self) -> None:
        return None


def router(*, workers: tuple[WorkerInfo, ...] = (W1,), spill: bool = True,
           vm: FakeVM | None = None, serverless: FakeServerless | None = None,
           clock: Clock | None = None, **config: Any) -> Router:
    clock = clock or Clock()
    return Router(lambda: list(workers), vm or FakeVM(clock),  # type: ignore[arg-type]
                  serverless or FakeServerless(), RouterConfig(**config),
                  decision=Decision(1, "test", spill_to_serverless=spill), clock=clock)


def counter(r: Router, name: str, **labels: str) -> float:
    return r.metrics.registry.get_sample_value(name, labels) or 0.0


# --- the measured service time -------------------------------------------------------------

def test_service_estimate_learns_a_batching_worker_and_an_idle_one() -> None:
    busy = ServiceEstimate(prior_s=0.05)
    t = 0.0
    for _ in range(20):  # batches of 16 requests, each batch 0.16 s: 10 ms per request
        sent = t
        t += 0.16
        for _ in range(16):
            busy.on_done(sent, t)
    assert busy.per_request_s == pytest.approx(0.01, rel=0.05)
    assert busy.finish_s(ahead=31) == pytest.approx(0.32, rel=0.05)  # two batches

    idle = ServiceEstimate(prior_s=0.05)
    for i in range(200):  # one request at a time, 20 ms each, with gaps between them
        idle.on_done(i * 1.0, i * 1.0 + 0.02)
    assert idle.per_request_s == pytest.approx(0.02, rel=0.01)


def test_the_router_estimate_sees_the_workers_in_flight_and_its_measured_time() -> None:
    r = router(vm_service_s=0.1)
    r.in_flight["w1"] = 8  # 8 x 0.1 s ahead + 0.1 s of its own = 0.9 s: inside the budget
    route, _ = r.pick()
    assert route.name == "VM"
    r.in_flight["w1"] = 9  # 1.0 s: past the 0.9 s budget, so it spills
    route, _ = r.pick()
    assert route.name == "SERVERLESS"


def test_the_estimate_follows_a_worker_that_became_slow() -> None:
    clock = Clock()
    vm = FakeVM(clock, service_s=0.4)
    r = router(vm=vm, clock=clock, vm_service_s=0.01)
    for _ in range(40):
        asyncio.run(r.route({"request_id": "x"}))
    assert r.service["w1"].per_request_s > 0.3  # measured, not the 0.01 s prior
    r.in_flight["w1"] = 2  # 3 x 0.4 s > 0.9 s
    assert r.pick()[0].name == "SERVERLESS"


# --- refusing what cannot make it ------------------------------------------------------------

def test_without_spilling_a_request_that_cannot_start_in_time_is_refused_at_once() -> None:
    r = router(spill=False, vm_service_s=0.1)
    r.in_flight["w1"] = 30  # 3 s of queue against a 0.9 s budget
    with pytest.raises(ShedError) as info:
        asyncio.run(r.route({"request_id": "x"}))
    assert info.value.reason == "over_capacity"
    assert int(info.value.retry_after) >= 3  # about when the queue will have drained
    assert r.counts["shed"] == 1
    assert r.vm.timeouts == []  # type: ignore[attr-defined]


def test_no_vm_and_no_spilling_is_no_capacity() -> None:
    r = router(workers=(), spill=False)
    with pytest.raises(NoBackendError) as info:
        asyncio.run(r.route({"request_id": "x"}))
    assert info.value.reason == "no_capacity"
    assert info.value.retry_after == "1"


def test_serverless_at_its_cap_with_a_long_queue_refuses_instead_of_queueing() -> None:
    serverless = FakeServerless(capacity=4, busy=40)  # 10 rounds of 0.1 s queued ahead
    r = router(serverless=serverless, vm_service_s=0.1)
    r.in_flight["w1"] = 30
    with pytest.raises(ShedError) as info:
        asyncio.run(r.route({"request_id": "x"}))
    assert info.value.reason == "over_capacity"
    assert serverless.calls == 0


def test_serverless_below_its_cap_takes_the_spill() -> None:
    serverless = FakeServerless(capacity=4, busy=2)
    r = router(serverless=serverless, vm_service_s=0.1)
    r.in_flight["w1"] = 30
    routed = asyncio.run(r.route({"request_id": "x"}))
    assert routed.backend == "serverless"
    assert serverless.calls == 1


def test_when_the_quota_says_serverless_but_it_is_full_a_vm_that_fits_serves() -> None:
    clock = Clock()
    serverless = FakeServerless(capacity=1, busy=20)
    r = Router(lambda: [W1], FakeVM(clock), serverless,  # type: ignore[arg-type]
               RouterConfig(vm_service_s=0.05), clock=clock,
               decision=Decision(1, "quota spent", vm_quota_rps=0.0))
    assert asyncio.run(r.route({"request_id": "x"})).backend == "vm"


# --- deadlines travel with the request -------------------------------------------------------

def test_the_vm_call_gets_what_is_left_of_the_deadline() -> None:
    clock = Clock()
    vm = FakeVM(clock)
    r = router(vm=vm, clock=clock, sla_s=1.0, request_timeout_s=3.0)
    budget = Budget.starting(clock.now, 0.9, 3.0)
    clock.now += 0.5  # spent reading and decoding
    asyncio.run(r.route({"request_id": "x"}, budget))
    assert vm.timeouts == [pytest.approx(2.5)]


def test_a_request_past_its_deadline_is_refused_without_calling_anyone() -> None:
    clock = Clock()
    r = router(clock=clock)
    budget = Budget.starting(clock.now, 0.9, 2.0)
    clock.now += 2.5
    with pytest.raises(ShedError) as info:
        asyncio.run(r.route({"request_id": "x"}, budget))
    assert info.value.reason == "deadline_exceeded"
    assert r.vm.timeouts == []  # type: ignore[attr-defined]


def test_a_vm_that_expired_the_request_leaves_no_time_to_retry_so_it_is_503() -> None:
    clock = Clock()
    vm = FakeVM(clock, service_s=2.0, fail="deadline_exceeded")
    serverless = FakeServerless()
    r = router(vm=vm, serverless=serverless, clock=clock, request_timeout_s=2.0)
    with pytest.raises(ShedError) as info:
        asyncio.run(r.route({"request_id": "x"}))
    assert info.value.reason == "deadline_exceeded"
    assert serverless.calls == 0
    assert r.service["w1"].samples == 0  # an expired request says nothing of the worker


def test_a_vm_that_fails_fast_is_retried_on_serverless_with_the_time_left() -> None:
    clock = Clock()
    serverless = FakeServerless()
    r = router(vm=FakeVM(clock, service_s=0.2, fail="unreachable"), serverless=serverless,
               clock=clock, request_timeout_s=2.0)
    routed = asyncio.run(r.route({"request_id": "x"}))
    assert (routed.backend, routed.retried) == ("serverless", True)
    assert serverless.timeouts == [pytest.approx(1.8)]
    assert counter(r, "libra_retries_total", kind="vm_to_serverless") == 1


# --- serverless failures ---------------------------------------------------------------------

def test_a_crashed_serverless_instance_is_retried_once_on_another() -> None:
    serverless = FakeServerless(errors=["crashed"])
    r = router(workers=(), serverless=serverless)
    routed = asyncio.run(r.route({"request_id": "x"}))
    assert (routed.backend, routed.retried) == ("serverless", True)
    assert serverless.calls == 2
    assert counter(r, "libra_retries_total", kind="serverless_crashed") == 1
    assert counter(r, "libra_serverless_errors_total", code="crashed") == 1


def test_a_second_crash_is_the_answer_502_not_a_third_try() -> None:
    serverless = FakeServerless(errors=["crashed", "crashed", "crashed"])
    r = router(workers=(), serverless=serverless)
    with pytest.raises(ServerlessError, match="crashed"):
        asyncio.run(r.route({"request_id": "x"}))
    assert serverless.calls == 2


def test_a_function_error_is_not_retried() -> None:
    serverless = FakeServerless(errors=["function_error"])
    r = router(workers=(), serverless=serverless)
    with pytest.raises(ServerlessError):
        asyncio.run(r.route({"request_id": "x"}))
    assert serverless.calls == 1


def test_serverless_throttled_for_the_whole_budget_is_a_503() -> None:
    r = router(workers=(), serverless=FakeServerless(errors=["throttled"]))
    with pytest.raises(ShedError) as info:
        asyncio.run(r.route({"request_id": "x"}))
    assert info.value.reason == "serverless_throttled"


# --- the door ----------------------------------------------------------------------------------

def test_the_gate_admits_up_to_its_limit_and_refuses_the_next_at_once() -> None:
    gate = Gate(max_admitted=2, sla_budget_s=0.9, timeout_s=2.0, clock=Clock())
    with gate.admit() as a, gate.admit() as b:
        a.work()
        b.work()
        with pytest.raises(ShedError) as info, gate.admit():
            pass
        assert info.value.reason == "overloaded"
        assert info.value.retry_after == "1"
        assert gate.admitted == 2
    assert (gate.admitted, gate.reading) == (0, 0)
    with gate.admit() as ticket:
        assert ticket.budget.left_s(ticket.budget.arrived_s) == 2.0


def test_the_work_limit_is_the_measured_capacity_times_the_sla_budget() -> None:
    capacity = [20.0]  # requests/s the backends finish, as the router measures them
    gate = Gate(max_admitted=64, sla_budget_s=0.9, timeout_s=2.0, clock=Clock(),
                capacity_rps=lambda: capacity[0])
    assert gate.limit() == 18  # 20/s x 0.9 s: more at work would finish late
    with contextlib.ExitStack() as working:
        for _ in range(18):
            working.enter_context(gate.admit()).work()
        with pytest.raises(ShedError, match="the limit is 18") as info, gate.admit():
            pass
        assert info.value.reason == "overloaded"
        capacity[0] = 40.0  # a faster measurement lets more in at once
        with gate.admit() as more:
            more.work()
    capacity[0] = 1000.0
    assert gate.limit() == 64  # never past max_admitted_requests
    capacity[0] = 0.1
    assert gate.limit() == Gate.MIN_ADMITTED  # a probe still gets in to measure
    capacity[0] = float("inf")  # no known bound (serverless without a cap)
    assert gate.limit() == 64


def test_the_router_capacity_is_what_its_backends_finish_as_measured() -> None:
    clock = Clock()
    w2 = WorkerInfo("w2", "http://w2")
    sls = FakeServerless(capacity=4, instances_alive=1)
    r = router(workers=(W1, w2), clock=clock, vm_service_s=0.05, serverless=sls,
               serverless_service_s=0.2, serverless_cold_start_s=0.8)
    # priors: 2 workers at 20/s; one warm instance at 5/s, three cold ones at 1/s each
    assert r.capacity_rps() == pytest.approx(2 / 0.05 + 1 / 0.2 + 3 / 1.0)
    start = clock.now - 2.0
    for i in range(200):  # w1 measured at 10 ms a request, in the last 2 s
        r.estimate(W1).on_done(start + i * 0.01, start + (i + 1) * 0.01)
    assert r.capacity_rps() == pytest.approx(100 + 20 + 8, rel=0.05)
    sls.instances_alive = 4  # all warm now
    assert r.capacity_rps() == pytest.approx(100 + 20 + 20, rel=0.05)
    r.decision = Decision(1, "VMs only", spill_to_serverless=False)
    assert r.capacity_rps() == pytest.approx(100 + 20, rel=0.05)
    r.serverless = FakeServerless(capacity=0)
    r.decision = Decision(0, "serverless only", use_vms=False)
    assert r.capacity_rps() == float("inf")


def test_slow_bodies_hold_reading_slots_not_the_work_slots() -> None:
    gate = Gate(max_admitted=2, sla_budget_s=0.9, timeout_s=2.0, clock=Clock())
    with contextlib.ExitStack() as slow_clients:
        for _ in range(gate.max_reading - 1):  # bodies trickling in, never finished
            slow_clients.enter_context(gate.admit())
        with gate.admit() as fast:  # a client whose body is in is still served
            fast.work()
            assert gate.admitted == 1
        slow_clients.enter_context(gate.admit())  # the last reading slot
        with pytest.raises(ShedError, match="bodies are arriving"), gate.admit():
            pass
    assert (gate.admitted, gate.reading) == (0, 0)


def test_a_body_that_arrives_when_work_is_full_is_refused_then() -> None:
    gate = Gate(max_admitted=1, sla_budget_s=0.9, timeout_s=2.0, clock=Clock())
    with gate.admit() as first, gate.admit() as second:
        first.work()
        with pytest.raises(ShedError, match="in progress"):
            second.work()
    assert (gate.admitted, gate.reading) == (0, 0)


def test_the_door_refuses_what_would_wait_for_decoding_past_the_budget() -> None:
    pool = DecodePool(threads=1)
    release = threading.Event()
    try:
        pool.submit(release.wait, 30)
        pool.submit(release.wait, 30)  # one running, one queued
        pool.job_s.value = 0.5  # measured: half a second a job
        gate = Gate(max_admitted=100, sla_budget_s=0.9, timeout_s=2.0, decode=pool)
        assert pool.wait_s() == pytest.approx(1.0)
        with pytest.raises(ShedError) as info, gate.admit():
            pass
        assert info.value.reason == "decode_backlog"
    finally:
        release.set()
        pool.shutdown(wait=True)
    assert pool.held == 0


def test_a_worker_judged_too_slow_is_probed_again_once_its_evidence_is_old() -> None:
    clock = Clock()
    r = router(clock=clock, vm_service_s=0.05, forget_s=10.0)
    est = r.estimate(W1)
    for _ in range(20):  # every request took 2 s: no request fits the budget any more
        est.on_done(clock.now, clock.now + 2.0)
        clock.now += 2.0
    assert r.pick()[0].name == "SERVERLESS"
    clock.now += 11.0  # nothing sent there since: the evidence is stale
    assert r.pick()[0].name == "VM"
    assert r.service["w1"].per_request_s == 0.05


def test_estimates_of_workers_that_left_are_dropped() -> None:
    r = router()
    r.estimate(W1)
    r.estimate(WorkerInfo("w2", "http://w2"))
    r.in_flight["w2"] = 1  # still answering: kept until it has nothing in flight
    r.forget({"w1"})
    assert set(r.service) == {"w1", "w2"}
    r.in_flight["w2"] = 0
    r.forget({"w1"})
    assert set(r.service) == {"w1"}


@pytest.mark.parametrize(("alive", "served"), [(0, False), (2, True)])
def test_requests_queued_behind_cold_starts_are_refused_and_behind_warm_calls_served(
        alive: int, served: bool) -> None:
    # two calls in flight at a cap of two; a third waits for one of them: 0.2 s behind warm
    # instances, 0.75 s more while both are still cold-starting (the first burst)
    serverless = FakeServerless(capacity=2, busy=2, instances_alive=alive)
    r = router(serverless=serverless, vm_service_s=0.1, serverless_cold_start_s=0.75)
    r.in_flight["w1"] = 30
    if served:
        assert asyncio.run(r.route({"request_id": "x"})).backend == "serverless"
    else:
        with pytest.raises(ShedError, match="concurrency cap"):
            asyncio.run(r.route({"request_id": "x"}))


def test_below_its_cap_serverless_takes_a_request_even_when_a_cold_start_breaks_the_sla() -> None:
    # a free slot is not overload: the request starts now, on a new instance; refusing it
    # would leave a serverless-only platform unable to answer its first request
    serverless = FakeServerless(capacity=2, busy=0, instances_alive=0)
    r = router(workers=(), serverless=serverless, sla_s=0.5, serverless_cold_start_s=2.0)
    assert asyncio.run(r.route({"request_id": "x"})).backend == "serverless"
