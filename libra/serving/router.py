"""The live router: the simulator's routing rule applied to each request, admission by the SLA,
and the failover.

Per request it estimates when the best ready worker would finish it: the requests the router has
in flight there times that worker's measured seconds per request (`ServiceEstimate`, learnt from
completions, starting at `vm_service_s`: the platform's planning quantile of the service time,
`vm.routing_service_s`, as the simulator plans). It asks `choose_route` (the function the
simulator uses) for VM, serverless or drop, with the request's own remaining SLA budget and the
platform's VM queue timeout (`vm.queue_timeout_s`, bounded by what is left of the hard
deadline). A request that cannot start inside its budget goes to serverless if the policy
spills, and is refused (`ShedError`: 503 + `Retry-After`) when serverless is at its
concurrency cap with a queue it could not clear in time, or when the policy does not spill:
nothing queues without bound.

Deadlines travel with the request: the VM call's timeout and the worker's own timeout
(`X-Libra-Deadline-Ms`) are what is left of its hard deadline. A VM that fails mid-request
(connection lost, timeout, 5xx, deadline passed) gets the request retried on serverless if time
is left, else it is answered 503 `deadline_exceeded`; so is one that a worker refuses because it
is draining (a spot interruption notice: the worker leaves the routable set within a control
tick, and requests that reach it meanwhile go to serverless). A serverless instance that
crashes under a request gets it retried once on another instance. The quota of the
controller's latest `Decision` (LIBRA's VM requests per second) is the core's `QuotaBucket`,
the simulator's rule: asking costs nothing, a token is spent only when a request really goes to
a VM, and the unspent fraction carries into the next second.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from libra.core.platform import Platform
from libra.core.policies.base import Decision
from libra.core.quota import QuotaBucket
from libra.core.route_rule import Route, choose_route
from libra.serving.admission import Budget, Ewma, ServiceEstimate, ShedError
from libra.serving.backends.serverless import ServerlessDriver, ServerlessError
from libra.serving.backends.vm import VMBackend, VMError
from libra.serving.logs import RateLimitedLog
from libra.serving.metrics import ServeMetrics
from libra.serving.state.registry import WorkerInfo

log = logging.getLogger(__name__)
failures = RateLimitedLog(log, interval_s=10.0)

RETRIED_SERVERLESS_CODES = frozenset({"crashed"})
"""Serverless failures retried once on another instance: the instance died, not the request."""


@dataclass(frozen=True)
class RouterConfig:
    """The SLA and the service model the routing rule needs; units in the names."""

    sla_s: float = 1.0
    sla_margin_s: float = 0.1
    vm_service_s: float = 0.05
    """Prior of a worker's seconds per request, until its completions are measured (from a
    platform: its planning quantile, `vm.routing_service_s`)."""
    vm_queue_timeout_s: float = 30.0
    """A request that would wait longer for a VM is dropped (`vm.queue_timeout_s`)."""
    request_timeout_s: float | None = None
    """Hard deadline after arrival (None: twice `sla_s`)."""
    serverless_service_s: float = 0.1
    """Prior of a serverless call's latency, until calls are measured."""
    serverless_cold_start_s: float = 0.75
    """Prior of what a cold start adds to a call, until cold calls are measured."""
    forget_s: float = 10.0
    """A worker's measured time older than this, with nothing in flight, reverts to the prior."""
    queue_past_sla: bool = False
    """Without spilling, let a request that cannot start inside its SLA budget queue for a VM
    up to the hard deadline and `vm_queue_timeout_s` (the simulator's rule). Off: it is
    refused at once (503 `over_capacity`), so the requests let in are answered in time; an
    answer that late would break the SLA anyway (issue 15)."""

    @classmethod
    def from_platform(cls, platform: Platform, *, request_timeout_s: float | None = None
                      ) -> RouterConfig:
        """The router's figures from the platform both drivers share: the VM prior is the
        service time's planning quantile (p99.9), not its mean, as in the simulator."""
        vm, sls = platform.vm, platform.serverless
        return cls(sla_s=platform.sla_s, sla_margin_s=platform.sla_margin_s,
                   vm_service_s=vm.routing_service_s, vm_queue_timeout_s=vm.queue_timeout_s,
                   request_timeout_s=request_timeout_s,
                   serverless_service_s=sls.service_time_mean_s + sls.invoke_overhead_s,
                   serverless_cold_start_s=sls.cold_start_s)

    @property
    def sla_budget_s(self) -> float:
        return self.sla_s - self.sla_margin_s

    @property
    def timeout_s(self) -> float:
        return self.request_timeout_s if self.request_timeout_s is not None else 2 * self.sla_s


@dataclass(frozen=True)
class Routed:
    """What served a request and how."""

    body: dict[str, Any]
    backend: str
    cold_start: bool
    retried: bool = False
    worker_id: str | None = None


class NoBackendError(ShedError):
    """Neither a VM nor serverless could take the request (the policy allows no spilling and no
    VM exists)."""

    def __init__(self, message: str) -> None:
        super().__init__("no_capacity", message)


@dataclass
class Router:
    """Routes requests to ready workers or serverless per the latest decision."""

    ready_workers: Callable[[], list[WorkerInfo]]
    vm: VMBackend
    serverless: ServerlessDriver
    config: RouterConfig = field(default_factory=RouterConfig)
    decision: Decision = field(default_factory=lambda: Decision(0, "no decision yet"))
    clock: Callable[[], float] = time.monotonic
    metrics: ServeMetrics = field(default_factory=ServeMetrics)
    in_flight: dict[str, int] = field(default_factory=dict)
    service: dict[str, ServiceEstimate] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {
        "vm": 0, "serverless": 0, "retried": 0, "dropped": 0, "shed": 0})
    quota: QuotaBucket = field(default_factory=QuotaBucket)
    _serverless_s: Ewma = field(init=False)
    _cold_start_s: Ewma = field(init=False)

    def __post_init__(self) -> None:
        self._serverless_s = Ewma(self.config.serverless_service_s)
        self._cold_start_s = Ewma(self.config.serverless_cold_start_s)

    # --- estimates -------------------------------------------------------------------------

    def estimate(self, worker: WorkerInfo) -> ServiceEstimate:
        """The worker's measured time per request. Evidence older than `forget_s` with nothing
        in flight is dropped for the prior: a worker judged too slow to get requests would
        otherwise never be measured again (it gets one as a probe)."""
        wid = worker.worker_id
        est = self.service.get(wid)
        if est is None or (not self.in_flight.get(wid) and est.samples
                           and self.clock() - est.last_done_s > self.config.forget_s):
            est = self.service[wid] = ServiceEstimate(self.config.vm_service_s)
        return est

    def forget(self, alive: set[str]) -> None:
        """Drop the estimates of workers no longer in `alive` (the fleet changes over days)."""
        for wid in [w for w in self.service if w not in alive and not self.in_flight.get(w)]:
            del self.service[wid]
            self.in_flight.pop(wid, None)

    def _wait_s(self, worker: WorkerInfo) -> float:
        return self.estimate(worker).wait_s(self.in_flight.get(worker.worker_id, 0))

    def _finish_s(self, worker: WorkerInfo) -> float:
        return self.estimate(worker).finish_s(self.in_flight.get(worker.worker_id, 0))

    @property
    def serverless_call_s(self) -> float:
        return self._serverless_s.value

    @property
    def serverless_cold_start_s(self) -> float:
        return self._cold_start_s.value

    def capacity_rps(self) -> float:
        """Requests per second this router's backends finish now, as measured: each ready
        worker at its measured seconds per request, plus serverless when the decision sends
        work there: each warm instance at the measured call time, each instance the cap still
        allows at a cold start plus a call (a burst meets cold instances: counting them warm
        let in requests that then waited out their deadline); inf when serverless has no known
        cap. The admission gate lets in capacity x SLA budget requests at once."""
        d = self.decision
        rps = 0.0
        if d.use_vms:
            rps += sum(1 / max(self.estimate(w).per_request_s, 1e-6)
                       for w in self.ready_workers())
        if d.spill_to_serverless or not d.use_vms:
            cap = self.serverless.capacity
            if cap <= 0:
                return math.inf
            warm = min(cap, self.serverless.instances_alive)
            call_s = max(self.serverless_call_s, 1e-6)
            rps += warm / call_s + (cap - warm) / (call_s + self.serverless_cold_start_s)
        return rps

    def serverless_wait_s(self) -> float:
        """How long a new request would wait before serverless starts it (measured warm call
        and cold start). Below the concurrency cap: not at all, it gets an instance now (a new
        one pays its cold start, which is starting, not queueing). At the cap: the calls queued
        ahead of it, `cap` at a time, after the cold starts still under way."""
        cap = self.serverless.capacity
        ahead = self.serverless.in_flight + 1 - cap
        if cap <= 0 or ahead <= 0:
            return 0.0
        warming = self.serverless.instances_alive < cap
        return ((self.serverless_cold_start_s if warming else 0.0)
                + math.ceil(ahead / cap) * self.serverless_call_s)

    def serverless_fits(self, left_s: float) -> bool:
        """Serverless can take a request with `left_s` to go: below its cap, or its queue would
        clear in time (past that, refusing now beats a throttle at the deadline)."""
        wait_s = self.serverless_wait_s()
        return wait_s == 0.0 or wait_s + self.serverless_call_s <= left_s

    def pick(self, budget: Budget | None = None) -> tuple[Route, WorkerInfo | None]:
        """The rule's route for a request with `budget`, and the worker that would take it."""
        now = self.clock()
        budget = budget or self.budget(now)
        workers = self.ready_workers()
        best = min(workers, key=self._finish_s) if workers else None
        est = self.estimate(best) if best else None
        sla_left_s = budget.sla_left_s(now)
        route = choose_route(
            vm_wait_s=self._wait_s(best) if best else None,
            expected_service_s=est.per_request_s if est else self.config.vm_service_s,
            sla_budget_s=sla_left_s,
            quota_left=self.quota.left(now, self.decision.vm_quota_rps) if best else False,
            spill_to_serverless=self.decision.spill_to_serverless,
            use_vms=self.decision.use_vms,
            # past its hard deadline nobody answers a request; without `queue_past_sla` one
            # that cannot start inside its SLA budget is refused now (RouterConfig)
            queue_timeout_s=max(0.0, min(self.config.vm_queue_timeout_s, budget.left_s(now)
                                         if self.config.queue_past_sla else sla_left_s)),
            quota_by_count=self.decision.vm_quota_by_count)
        return route, best

    def budget(self, now_s: float | None = None) -> Budget:
        """A budget starting now (a request that did not bring one)."""
        return Budget.starting(self.clock() if now_s is None else now_s,
                               self.config.sla_budget_s, self.config.timeout_s)

    # --- routing ---------------------------------------------------------------------------

    def _shed(self, reason: str, message: str, retry_after_s: float = 1.0) -> ShedError:
        self.counts["shed"] += 1
        return ShedError(reason, message, retry_after_s)

    async def route(self, event: dict[str, Any], budget: Budget | None = None) -> Routed:
        """Serve `event` inside `budget` (from now if None); raises `ShedError` (503) or
        `ServerlessError` (502, after the retries it allows)."""
        budget = budget or self.budget()
        if budget.left_s(self.clock()) <= 0:
            raise self._shed("deadline_exceeded", "the request's deadline passed before it "
                             "could be routed")
        route, worker = self.pick(budget)
        if route == Route.DROP:
            self.counts["dropped"] += 1
            if worker is None:
                raise NoBackendError("no VM can take the request and the policy does not spill "
                                     "to serverless")
            raise self._shed("over_capacity", f"the VMs cannot start this request inside its "
                             f"{self.config.sla_budget_s:.2f} s SLA budget (about "
                             f"{self._wait_s(worker):.2f} s of queue) and the policy does not "
                             f"spill to serverless", self._wait_s(worker))
        if route == Route.SERVERLESS:
            sla_left_s = budget.sla_left_s(self.clock())
            if not self.serverless_fits(sla_left_s):
                if (worker is not None and self.decision.use_vms
                        and self._finish_s(worker) <= sla_left_s):
                    route = Route.VM  # the quota said serverless, but it is full and a VM fits
                else:
                    raise self._shed("over_capacity", f"serverless is at its concurrency cap "
                                     f"({self.serverless.capacity}) with about "
                                     f"{self.serverless_wait_s():.2f} s of queue and the VMs "
                                     f"cannot answer inside the SLA budget either",
                                     self.serverless_wait_s())
        if route == Route.VM and worker is not None:
            return await self._vm(worker, event, budget)
        return await self._serverless(event, budget)

    async def _vm(self, worker: WorkerInfo, event: dict[str, Any], budget: Budget) -> Routed:
        self.quota.spend(self.decision.vm_quota_rps)  # it really goes to a VM (core.quota)
        wid = worker.worker_id
        est = self.estimate(worker)
        self.in_flight[wid] = self.in_flight.get(wid, 0) + 1
        sent_s = self.clock()
        try:
            result = await self.vm.infer(worker, event, timeout_s=budget.left_s(sent_s))
        except VMError as exc:
            if exc.code not in ("deadline_exceeded", "draining"):  # it ran nothing there
                est.on_done(sent_s, self.clock())
            failures.failure(f"vm {exc.code}", "VM %s failed a request (%s)", wid, exc,
                             level=logging.WARNING)
            return await self._after_vm_failure(event, budget, exc)
        else:
            est.on_done(sent_s, self.clock())
            self.counts["vm"] += 1
            return Routed(result.body, "vm", False, worker_id=wid)
        finally:
            self.in_flight[wid] -= 1

    async def _after_vm_failure(self, event: dict[str, Any], budget: Budget,
                                exc: VMError) -> Routed:
        left_s = budget.left_s(self.clock())
        if left_s < self.serverless_call_s:
            raise self._shed("deadline_exceeded", f"the VM did not answer in time ({exc.code}) "
                             f"and too little of the deadline is left to retry") from None
        if not self.serverless_fits(left_s):
            raise self._shed("over_capacity", f"the VM failed ({exc.code}) and serverless is "
                             f"at its concurrency cap", self.serverless_wait_s()) from None
        self.counts["retried"] += 1
        self.metrics.retries.labels("vm_to_serverless").inc()
        return await self._serverless(event, budget, retried=True)

    async def _serverless(self, event: dict[str, Any], budget: Budget,
                          retried: bool = False) -> Routed:
        for attempt in (1, 2):
            sent_s = self.clock()
            queued = self.serverless.in_flight >= self.serverless.capacity > 0
            try:
                result = await self.serverless.invoke(
                    event, timeout_s=max(0.0, budget.left_s(sent_s)))
                if "error" in result.body and "probabilities" not in result.body:
                    error = result.body["error"]
                    raise ServerlessError(str(error.get("code")), str(error.get("message")))
            except ServerlessError as exc:
                self.metrics.serverless_errors.labels(exc.code).inc()
                if (exc.code in RETRIED_SERVERLESS_CODES and attempt == 1
                        and budget.left_s(self.clock()) > 0):
                    failures.failure(f"serverless {exc.code}", "serverless instance failed "
                                     "(%s); retrying once on another", exc, level=logging.WARNING)
                    self.counts["retried"] += 1
                    self.metrics.retries.labels("serverless_crashed").inc()
                    retried = True
                    continue
                if exc.code == "throttled":
                    raise self._shed("serverless_throttled", "serverless is throttled (every "
                                     "instance busy for the request's whole budget)",
                                     self.serverless_call_s) from None
                raise
            if result.cold_start:
                self._cold_start_s.observe(max(0.0, result.latency_s - self.serverless_call_s))
            elif not queued:
                self._serverless_s.observe(result.latency_s)
            self.counts["serverless"] += 1
            return Routed(result.body, "serverless", result.cold_start, retried=retried)
        raise AssertionError("unreachable: the second attempt returns or raises")
