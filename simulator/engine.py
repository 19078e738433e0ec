"""The replay engine: SimPy drives the lifecycles, requests are routed in batches between events.

SimPy runs what has a lifecycle: the controller tick, each VM's boot, each drain. Requests are the
hot path, so the default `batched` mode routes every arrival since the last event in one tight
loop right before the controller acts; nothing a request sees (slot heap, serverless pool, quota)
changes between two controller ticks except by earlier requests, so this gives the same result as
one SimPy process per request, which the `naive` mode runs as the baseline and the cross-check.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Generator
from typing import Any, Literal

import numpy as np
import simpy

from libra.lifecycle import VMState
from libra.policies.base import Decision, Observation, Policy
from libra.routing import Route, choose_route
from simulator.config import SimConfig
from simulator.recorder import Recorder
from simulator.serverless_pool import ServerlessPool
from simulator.service import sample_service_times
from simulator.vm_fleet import SimVM, VMFleet

Mode = Literal["batched", "naive"]
_VM, _SERVERLESS, _DROP = Route.VM, Route.SERVERLESS, Route.DROP


class Simulation:
    """One policy replayed over one arrival sequence under one config."""

    def __init__(
        self,
        arrivals_s: np.ndarray,
        duration_s: float,
        policy: Policy,
        cfg: SimConfig,
        *,
        initial_vms: int = 0,
        mode: Mode = "batched",
        on_tick: Callable[[float], None] | None = None,
    ) -> None:
        if mode not in ("batched", "naive"):
            raise ValueError(f"unknown mode {mode!r}; valid: batched, naive")
        self.cfg, self.policy, self.mode, self.on_tick = cfg, policy, mode, on_tick
        self.duration_s = float(duration_s)
        self.arrivals_s = np.ascontiguousarray(arrivals_s, dtype=np.float64)
        n = len(self.arrivals_s)
        # a stream of its own: a caller drawing arrivals from default_rng(seed) gets no correlation
        rng = np.random.default_rng([cfg.seed, 0x5E])
        v, s = cfg.vm, cfg.serverless
        self.vm_service = sample_service_times(
            rng, n, v.service_time_mean_s, v.service_time_cv, v.service_time_dist
        )
        self.sls_service = sample_service_times(
            rng, n, s.service_time_mean_s, s.service_time_cv, s.service_time_dist
        )
        n_seconds = max(1, math.ceil(self.duration_s))
        secs = np.minimum(np.floor(arrivals_s).astype(np.int64), n_seconds - 1) if n else []
        counts = np.bincount(secs, minlength=n_seconds)
        self.per_second: list[int] = counts.tolist()
        self.per_minute: list[int] = np.add.reduceat(counts, np.arange(0, n_seconds, 60)).tolist()
        self.env = simpy.Environment()
        self.fleet = VMFleet(v)
        self.pool = ServerlessPool(s)
        self.rec = Recorder(n)
        self.next_i = 0
        self.decision = Decision(target_vms=initial_vms, reason="initial fleet")
        self._quota_second = -1
        self._quota_tokens = 0.0
        self.policy_eval_s: list[float] = []
        self.serverless_since_tick = 0
        for _ in range(initial_vms):
            self.fleet.launch(0.0, ready_now=True)

    # -- running -------------------------------------------------------------------------------
    def run(self) -> Simulation:
        self.env.process(self._controller())
        if self.mode == "naive":
            self.env.process(self._arrivals())
        self.env.run()
        return self

    def _controller(self) -> Generator[simpy.Event, Any, None]:
        env, tick_s = self.env, self.cfg.tick_s
        k = 0
        while (now := k * tick_s) < self.duration_s:
            if now > env.now:
                yield env.timeout(now - env.now)
            if self.mode == "batched":
                self._dispatch_before(now)
            obs = self._observe(now)
            started = time.perf_counter()
            decision = self.policy.decide(obs)
            self.policy_eval_s.append(time.perf_counter() - started)
            self._apply(decision, now)
            self.decision = decision
            self.rec.on_decision(
                obs, decision, self._arrivals_in_last_tick(now), self.pool.instances(now),
                self.serverless_since_tick,
            )
            self.serverless_since_tick = 0
            if self.on_tick is not None:
                self.on_tick(now)
            k += 1
        if self.mode == "batched":
            self._dispatch_before(math.inf)

    def _arrivals(self) -> Generator[simpy.Event, Any, None]:
        """Naive mode: each request is its own SimPy process, started at its arrival time."""
        env = self.env
        for i, t in enumerate(self.arrivals_s.tolist()):
            if t > env.now:
                yield env.timeout(t - env.now)
            env.process(self._request(i))

    def _request(self, i: int) -> Generator[simpy.Event, Any, None]:
        self._dispatch_range(i, i + 1)
        latency_s = float(self.rec.latency_s[i])
        if not math.isnan(latency_s):  # it was served
            yield self.env.timeout(latency_s)
        self.rec.on_complete(i)

    # -- the per-request hot path ----------------------------------------------------------------
    def _dispatch_before(self, t_end_s: float) -> None:
        lo = self.next_i
        hi = int(np.searchsorted(self.arrivals_s, t_end_s, side="left"))
        if hi > lo:
            self._dispatch_range(lo, hi)
            self.rec.completed += hi - lo

    def _dispatch_range(self, lo: int, hi: int) -> None:
        """Route requests lo..hi-1 (in arrival order) with the shared rule and serve them."""
        cfg, d = self.cfg, self.decision
        # plain lists for the loop: indexing numpy scalars one by one is several times slower
        times = self.arrivals_s[lo:hi].tolist()
        vm_service = self.vm_service[lo:hi].tolist()
        sls_service = self.sls_service[lo:hi].tolist()
        latency = [math.nan] * (hi - lo)
        route = [int(_DROP)] * (hi - lo)
        slots, usable = self.fleet.slots, self.fleet.usable
        vms = self.fleet.vms
        serve_serverless = self.pool.dispatch
        heappop, heapreplace = heapq.heappop, heapq.heapreplace
        quota = d.vm_quota_rps if d.use_vms else None
        budget_s, expected_s = cfg.sla_budget_s, cfg.vm.routing_service_s
        timeout_s = cfg.vm.queue_timeout_s
        use_vms, spill = d.use_vms, d.spill_to_serverless
        second, tokens = self._quota_second, self._quota_tokens
        for i in range(hi - lo):
            t = times[i]
            if quota is not None and int(t) != second:
                # LIBRA's per-second quota; an unspent fraction (< 1) carries over
                second, tokens = int(t), min(max(tokens, 0.0), 1.0) + quota
            while slots and not usable[slots[0][1]]:
                heappop(slots)
            if slots:
                free_s, vm_id = slots[0]
                wait_s: float | None = free_s - t if free_s > t else 0.0
            else:
                wait_s = None
            r = choose_route(
                vm_wait_s=wait_s,
                expected_service_s=expected_s,
                sla_budget_s=budget_s,
                quota_left=quota is None or tokens >= 1.0,
                spill_to_serverless=spill,
                use_vms=use_vms,
                queue_timeout_s=timeout_s,
            )
            if r is _VM:
                assert wait_s is not None
                end_s = t + wait_s + vm_service[i]
                heapreplace(slots, (end_s, vm_id))
                vm = vms[vm_id]
                vm.busy_until_s = max(vm.busy_until_s, end_s)
                latency[i] = end_s - t
                route[i] = 0
                if quota is not None:
                    tokens -= 1.0
            elif r is _SERVERLESS:
                served = serve_serverless(t, sls_service[i])
                if served is not None:
                    latency[i] = served
                    route[i] = 1
        self._quota_second, self._quota_tokens = second, tokens
        self.rec.record(lo, latency, route)
        self.serverless_since_tick += route.count(int(_SERVERLESS))
        self.pool.fold_billing()
        self.next_i = max(self.next_i, hi)

    def drop_request_data(self) -> None:
        """Free the per-request arrays (hundreds of MB on a day-long trace) after summarising."""
        empty = np.empty(0)
        self.arrivals_s = self.vm_service = self.sls_service = empty
        self.rec.latency_s, self.rec.route = empty, np.empty(0, dtype=np.int8)

    # -- the controller's view and actions -------------------------------------------------------
    def _observe(self, now_s: float) -> Observation:
        whole = min(math.floor(now_s + 1e-9), len(self.per_second))
        per_s = self.per_second[max(0, whole - self.cfg.history_s):whole]
        minutes = whole // 60
        per_min = tuple(self.per_minute[max(0, minutes - 60):minutes])
        vm, counts = self.cfg.vm, self.fleet.counts
        return Observation(
            now_s=now_s,
            arrivals_per_s=tuple(per_s),
            arrivals_per_min=per_min,
            vms_ready=counts[VMState.READY],
            vms_booting=counts[VMState.BOOTING],
            vms_draining=counts[VMState.DRAINING],
            vm_capacity_rps=vm.capacity_rps,
            serverless_in_flight=self.pool.in_flight(now_s),
            sla_s=self.cfg.sla_s,
            vm_boot_s=vm.boot_s,
            vm_price_per_s_usd=vm.price_per_s_usd,
            serverless_cost_per_request_usd=self.cfg.serverless.cost_per_request_usd(),
        )

    def _arrivals_in_last_tick(self, now_s: float) -> int:
        hi = min(math.floor(now_s + 1e-9), len(self.per_second))
        lo = max(0, math.floor(now_s - self.cfg.tick_s + 1e-9))
        return sum(self.per_second[lo:hi])

    def _apply(self, decision: Decision, now_s: float) -> None:
        target = decision.target_vms if decision.use_vms else 0
        while self.fleet.active < target:
            self.env.process(self._boot(self.fleet.launch(now_s)))
        while self.fleet.active > target:
            vm = self.fleet.stop_one(now_s)
            if vm is not None:
                self.env.process(self._drain(vm))

    def _boot(self, vm: SimVM) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(vm.ready_at_s - self.env.now)
        self.fleet.mark_ready(vm)

    def _drain(self, vm: SimVM) -> Generator[simpy.Event, Any, None]:
        """A draining VM finishes what it queued, then stops (and stops being billed)."""
        if vm.busy_until_s > self.env.now:
            yield self.env.timeout(vm.busy_until_s - self.env.now)
        self.fleet.terminate(vm, self.env.now)
