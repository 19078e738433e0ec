"""The live router: the simulator's routing rule applied to each request, and the failover.

Per request it estimates how long the least-loaded ready worker would make it wait (requests the
router has in flight there beyond the worker's slots, each slot turning over every
`vm_service_s`), asks `choose_route` (the function the simulator uses) for VM, serverless or
drop, and calls the backend. A VM that fails mid-request (connection lost, timeout, 5xx) gets
the request retried once on serverless: an accepted request is answered. The quota of the
controller's latest `Decision` (LIBRA's VM requests per second) is a token bucket per second.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from libra.core.policies.base import Decision
from libra.core.route_rule import Route, choose_route
from libra.serving.backends.serverless import ServerlessDriver, ServerlessError
from libra.serving.backends.vm import VMBackend, VMError
from libra.serving.state.registry import WorkerInfo


@dataclass(frozen=True)
class RouterConfig:
    """The SLA and the service model the routing rule needs; units in the names."""

    sla_s: float = 1.0
    sla_margin_s: float = 0.1
    vm_service_s: float = 0.05
    vm_slots: int = 8
    queue_timeout_s: float = 5.0

    @property
    def sla_budget_s(self) -> float:
        return self.sla_s - self.sla_margin_s


@dataclass(frozen=True)
class Routed:
    """What served a request and how."""

    body: dict[str, Any]
    backend: str
    cold_start: bool
    retried: bool = False
    worker_id: str | None = None


class NoBackendError(RuntimeError):
    """Neither a VM nor serverless could take the request (the policy allows no spilling and no
    VM exists, or the VM queue is past its timeout)."""


@dataclass
class Router:
    """Routes requests to ready workers or serverless per the latest decision."""

    ready_workers: Callable[[], list[WorkerInfo]]
    vm: VMBackend
    serverless: ServerlessDriver
    config: RouterConfig = field(default_factory=RouterConfig)
    decision: Decision = field(default_factory=lambda: Decision(0, "no decision yet"))
    clock: Callable[[], float] = time.time
    in_flight: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {
        "vm": 0, "serverless": 0, "retried": 0, "dropped": 0})
    _quota_second: int = -1
    _quota_left: float = 0.0

    def _wait_s(self, worker: WorkerInfo) -> float:
        busy = self.in_flight.get(worker.worker_id, 0)
        slots = max(1, self.config.vm_slots)
        return max(0, busy + 1 - slots) / slots * self.config.vm_service_s

    def _take_quota(self) -> bool:
        rps = self.decision.vm_quota_rps
        if rps is None:
            return True
        second = math.floor(self.clock())
        if second != self._quota_second:
            self._quota_second, self._quota_left = second, rps
        if self._quota_left >= 1:
            self._quota_left -= 1
            return True
        return False

    def pick(self) -> tuple[Route, WorkerInfo | None]:
        workers = self.ready_workers()
        best = min(workers, key=self._wait_s) if workers else None
        route = choose_route(
            vm_wait_s=self._wait_s(best) if best else None,
            expected_service_s=self.config.vm_service_s, sla_budget_s=self.config.sla_budget_s,
            quota_left=self._take_quota() if best else False,
            spill_to_serverless=self.decision.spill_to_serverless,
            use_vms=self.decision.use_vms, queue_timeout_s=self.config.queue_timeout_s,
            quota_by_count=self.decision.vm_quota_by_count)
        return route, best

    async def route(self, event: dict[str, Any]) -> Routed:
        route, worker = self.pick()
        if route == Route.DROP:
            self.counts["dropped"] += 1
            raise NoBackendError("no VM can take the request and the policy does not spill "
                                 "to serverless")
        if route == Route.VM and worker is not None:
            wid = worker.worker_id
            self.in_flight[wid] = self.in_flight.get(wid, 0) + 1
            try:
                result = await self.vm.infer(worker, event)
                self.counts["vm"] += 1
                return Routed(result.body, "vm", False, worker_id=wid)
            except VMError:
                self.counts["retried"] += 1
                return await self._serverless(event, retried=True)
            finally:
                self.in_flight[wid] -= 1
        return await self._serverless(event)

    async def _serverless(self, event: dict[str, Any], retried: bool = False) -> Routed:
        result = await self.serverless.invoke(event)
        if "error" in result.body and "probabilities" not in result.body:
            error = result.body["error"]
            raise ServerlessError(str(error.get("code")), str(error.get("message")))
        self.counts["serverless"] += 1
        return Routed(result.body, "serverless", result.cold_start, retried=retried)
