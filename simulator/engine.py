"""The replay engine: SimPy drives the lifecycles, requests are routed in batches between events.

SimPy runs what has a lifecycle: the controller tick, each VM's boot, each drain. Requests are the
hot path, so the default `batched` mode routes every arrival since the last event in one tight
loop right before the controller acts; nothing a request sees (slot heap, serverless pool, quota)
changes between two controller ticks except by earlier requests, so this gives the same result as
one SimPy process per request, which the `naive` mode runs as the baseline and the cross-check.

Idle stretches cost next to nothing: after each decision a policy may promise (`Quiet`) that the
ticks ahead change nothing while the fleet stays and no second exceeds a count; the controller
then sleeps to the first tick that could matter (the promise's end, a second above the count,
the serverless pool's next keep-warm ping, at most `_MAX_SPELL_S` ahead) and routes what arrived
meanwhile in one pass. It never sleeps while a VM boots or drains, or when the decision stream is
recorded; a test replays traces both ways and requires identical results.

Spot VMs (`SpotConfig`, `simulator/spot.py`): a policy's `Decision.on_demand_vms` splits its
target into on-demand and spot VMs. A spot VM's interruption notice takes effect at the first tick
at or after it (the worker polls for it; a tick is 1 s): the VM stops taking requests, finishes
what it has and is reclaimed `notice_s` after the notice; a replacement of the same kind is
launched at once (capacity rebalancing) and boots. A quiet spell never runs past a notice.

Arrivals come from a stream (`simulator/arrivals.py`) one chunk of trace time at a time, and
service times are drawn per block of request indices, so memory does not grow with the trace:
a request's service time depends only on its index and the seed, never on how requests were
batched, which is what lets both modes agree request by request.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator
from typing import Any, Literal

import numpy as np
import simpy

from libra.core.lifecycle import VMState
from libra.core.observation import FleetState, build_observation
from libra.core.policies.base import Decision, Observation, Policy, Quiet
from libra.core.route_rule import FIT_TOLERANCE_S, Route, choose_route
from simulator.arrivals import ArrayStream, ArrivalStream
from simulator.config import SimConfig
from simulator.recorder import Recorder
from simulator.serverless_pool import ServerlessPool
from simulator.service_times import sample_service_times
from simulator.spot import Interruptions
from simulator.trace_base import Trace
from simulator.vm_fleet import SimVM, VMFleet

Mode = Literal["batched", "naive"]
_VM, _SERVERLESS, _DROP = Route.VM, Route.SERVERLESS, Route.DROP
_SERVICE_BLOCK = 1 << 16
# A quiet spell ends at least this often: it bounds the arrivals buffered at once, and a policy
# must see every second since its last call in its observation (history_s of them).
_MAX_SPELL_S = 600.0
_SERVICE_STREAM = 0x5E


class ServiceTimes:
    """Per-request service times on VMs and on serverless, drawn per block of request indices.

    Block `b` (requests `b * 65536` to `(b + 1) * 65536 - 1`) is drawn from its own generator
    `default_rng([seed, 0x5E, b])`, so request i's times depend only on i and the seed.
    """

    def __init__(self, cfg: SimConfig, *, keep: bool = False) -> None:
        self.cfg, self.keep = cfg, keep
        self._blocks: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.kept: list[tuple[np.ndarray, np.ndarray]] = []

    def _block(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        block = self._blocks.get(b)
        if block is None:
            rng = np.random.default_rng([self.cfg.seed, _SERVICE_STREAM, b])
            v, s = self.cfg.vm, self.cfg.serverless
            block = (
                sample_service_times(rng, _SERVICE_BLOCK, v.service_time_mean_s,
                                     v.service_time_cv, v.service_time_dist),
                sample_service_times(rng, _SERVICE_BLOCK, s.service_time_mean_s,
                                     s.service_time_cv, s.service_time_dist),
            )
            for old in [k for k in self._blocks if k < b]:
                del self._blocks[old]  # requests are taken in index order
            self._blocks[b] = block
            if self.keep:
                self.kept.append(block)
        return block

    def take(self, lo: int, n: int) -> tuple[list[float], list[float]]:
        """Service times (VM, serverless) of requests lo .. lo + n - 1."""
        b0 = lo // _SERVICE_BLOCK
        b1 = (lo + max(n, 1) - 1) // _SERVICE_BLOCK
        if b0 == b1:
            vm, sls = self._block(b0)
            i = lo - b0 * _SERVICE_BLOCK
            return vm[i:i + n].tolist(), sls[i:i + n].tolist()
        vms: list[float] = []
        slss: list[float] = []
        for b in range(b0, b1 + 1):
            vm, sls = self._block(b)
            i = max(lo - b * _SERVICE_BLOCK, 0)
            j = min(lo + n - b * _SERVICE_BLOCK, _SERVICE_BLOCK)
            vms.extend(vm[i:j].tolist())
            slss.extend(sls[i:j].tolist())
        return vms, slss

    def arrays(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The first n requests' times (only with `keep`)."""
        if not self.kept:
            return np.zeros(0), np.zeros(0)
        vm = np.concatenate([b[0] for b in self.kept])[:n]
        sls = np.concatenate([b[1] for b in self.kept])[:n]
        return vm, sls


class Simulation:
    """One policy replayed over one arrival sequence under one config."""

    def __init__(
        self,
        arrivals: np.ndarray | ArrivalStream | Trace,
        duration_s: float | None,
        policy: Policy,
        cfg: SimConfig,
        *,
        initial_vms: int = 0,
        mode: Mode = "batched",
        on_tick: Callable[[float], None] | None = None,
        keep_requests: bool = True,
        record_ticks: bool = True,
        skip_quiet: bool = True,
    ) -> None:
        if mode not in ("batched", "naive"):
            raise ValueError(f"unknown mode {mode!r}; valid: batched, naive")
        self.cfg, self.policy, self.mode, self.on_tick = cfg, policy, mode, on_tick
        self.stream = _as_stream(arrivals, duration_s)
        self.duration_s = float(self.stream.duration_s)
        self.service = ServiceTimes(cfg, keep=keep_requests)
        self.n_seconds = max(1, math.ceil(self.duration_s))
        self.per_second: list[int] = [0] * self.n_seconds
        self.per_minute: list[int] = []
        self._chunks: Iterator[np.ndarray] = iter(self.stream.chunks())
        self._loaded_until_s = -math.inf
        self._buffer: deque[np.ndarray] = deque()
        self._buffer_pos = 0
        self._exhausted = False
        self.env = simpy.Environment()
        self.fleet = VMFleet(cfg.vm, spot_price_per_s_usd=cfg.spot.price_per_s_usd
                             if cfg.spot.enabled else None)
        self.spot: Interruptions | None = Interruptions(cfg.spot, cfg.seed) \
            if cfg.spot.enabled else None
        self._spot_due: list[tuple[float, int]] = []  # (notice time, vm_id), rate mode
        self.spot_missed = 0  # file interruptions that found no spot VM running
        self.pool = ServerlessPool(cfg.serverless)
        self.rec = Recorder(cfg.sla_s, keep_requests=keep_requests, record_ticks=record_ticks)
        self.next_i = 0
        self.decision = Decision(target_vms=initial_vms, reason="initial fleet")
        self._quota_second = -1
        self._quota_tokens = 0.0
        self.policy_eval_s_total = 0.0
        self.ticks = 0  # ticks the controller ran (decided)
        self.ticks_skipped = 0  # ticks a policy's Quiet promise let it sleep through
        # sleeping through ticks needs batched routing and no per-tick record to fill
        self._quiet_until = getattr(policy, "quiet_until", None) \
            if skip_quiet and mode == "batched" and not record_ticks else None
        self.max_vms = 0
        self.serverless_since_tick = 0
        self._initial_booting: list[SimVM] = []
        for _ in range(initial_vms):
            vm = self.fleet.launch(0.0, ready_now=not cfg.initial_vms_booting)
            if cfg.initial_vms_booting:
                self._initial_booting.append(vm)

    # -- per-request arrays, kept for tests and small analyses ----------------------------------
    @property
    def vm_service(self) -> np.ndarray:
        return self.service.arrays(self.next_i)[0]

    @property
    def sls_service(self) -> np.ndarray:
        return self.service.arrays(self.next_i)[1]

    @property
    def policy_eval_s(self) -> list[float]:
        ticks = self.rec.ticks
        return ticks.column("policy_eval_s").tolist() if ticks is not None else []

    # -- running -------------------------------------------------------------------------------
    def run(self) -> Simulation:
        for vm in self._initial_booting:
            self.env.process(self._boot(vm))
        self.env.process(self._controller())
        if self.mode == "naive":
            self.env.process(self._arrivals())
        self.env.run()
        if self.rec.ticks is not None:
            self.rec.ticks.fill_arrivals_in_tick(self.per_second, self.cfg.tick_s)
        self.rec.fold()
        self.pool.fold_billing()
        return self

    def _controller(self) -> Generator[simpy.Event, Any, None]:
        env, tick_s = self.env, self.cfg.tick_s
        k = 0
        ticks = self.rec.ticks
        last_k = math.ceil(self.duration_s / tick_s) - 1  # the last tick before the end
        while (now := k * tick_s) < self.duration_s:
            if now > env.now:
                yield env.timeout(now - env.now)
            if self.mode == "batched":
                self._dispatch_before(now)
            else:
                self._load_until(now, keep=False)
            if self.spot is not None:
                self._spot_notices(now)
            obs = self._observe(now)
            started = time.perf_counter()
            decision = self.policy.decide(obs)
            eval_s = time.perf_counter() - started
            self.policy_eval_s_total += eval_s
            self._apply(decision, now)
            self.decision = decision
            self.max_vms = max(self.max_vms, obs.vms_ready + obs.vms_booting)
            if ticks is not None:
                ticks.append(
                    obs, decision, arrivals=self._arrivals_in_last_tick(now),
                    serverless_instances=self.pool.instances(now),
                    served_serverless=self.serverless_since_tick, eval_s=eval_s,
                )
            self.serverless_since_tick = 0
            self.ticks += 1
            if self.on_tick is not None:
                self.on_tick(now)
            next_k = k + 1
            if self._quiet_until is not None and k < last_k:
                next_k = self._after_quiet_spell(k, obs, decision, last_k)
                self.ticks_skipped += next_k - k - 1
            k = next_k
        if self.mode == "batched":
            self._dispatch_before(math.inf)

    def _after_quiet_spell(self, k: int, obs: Observation, decision: Decision,
                           last_k: int) -> int:
        """The next tick that must run after tick `k`: `k + 1`, or later when the policy
        promised quiet (`Quiet`) and nothing in the engine acts at the ticks in between."""
        counts = self.fleet.counts
        ready, booting, draining = (counts[VMState.READY], counts[VMState.BOOTING],
                                    counts[VMState.DRAINING])
        if (ready, booting, draining) != (obs.vms_ready, obs.vms_booting, obs.vms_draining):
            obs = obs.replace(vms_ready=ready, vms_booting=booting, vms_draining=draining)
        assert self._quiet_until is not None
        quiet: Quiet | None = self._quiet_until(obs, decision)
        # A VM becoming ready or stopping changes only the counts a policy sees (requests see
        # the slot heap, where a booting VM's slots are free from its ready time on, and a
        # draining VM's were dropped when it stopped), so a policy blind to them sleeps on.
        if quiet is None or ((booting or draining) and not quiet.fleet_blind):
            return k + 1
        tick_s = self.cfg.tick_s
        # the call that ends the spell must itself come before `until_s`
        spell_s = min(_MAX_SPELL_S, float(self.cfg.history_s))
        stop = min(last_k, k + math.floor(spell_s / tick_s))
        if math.isfinite(quiet.until_s):
            stop = min(stop, math.ceil(quiet.until_s / tick_s))
        while stop > k and stop * tick_s >= quiet.until_s:
            stop -= 1
        if decision.serverless_warm > 0:
            # keep-warm pings must happen at the ticks they would have: skip only ticks before
            # the first one that could ping (or start) an instance
            ping_s = self.pool.next_keep_warm_s(k * tick_s, decision.serverless_warm)
            while stop > k + 1 and (stop - 1) * tick_s >= ping_s:
                stop -= 1
        if stop <= k + 1:
            return k + 1
        if math.isfinite(quiet.max_arrivals_per_s):
            stop = self._first_tick_seeing_more(k, stop, quiet.max_arrivals_per_s)
        if self.spot is not None:
            # the tick that takes the next notice must run, and the one before it too: the
            # policy must see the seconds before the notice with the fleet they had
            notice_s = self._next_notice_s()
            if math.isfinite(notice_s):
                due = math.ceil(notice_s / tick_s)
                while due > 0 and (due - 1) * tick_s >= notice_s:
                    due -= 1
                stop = min(stop, max(due - 1, k + 1))
        return max(stop, k + 1)

    def _first_tick_seeing_more(self, k: int, stop: int, limit: float) -> int:
        """`stop`, or the first tick after `k` whose observation holds a second with more than
        `limit` arrivals, whichever is earlier."""
        tick_s = self.cfg.tick_s
        self._load_until(stop * tick_s, keep=True)
        first = self._whole_seconds(k * tick_s)
        last = self._whole_seconds((stop - 1) * tick_s)  # seen by the skipped ticks
        seen = self.per_second[first:last]
        if not seen or max(seen) <= limit:
            return stop
        second = first + next(i for i, n in enumerate(seen) if n > limit)
        tick = k + 1
        while self._whole_seconds(tick * tick_s) <= second:
            tick += 1
        return tick

    def _whole_seconds(self, now_s: float) -> int:
        """How many whole seconds the observation at `now_s` holds (as `_observe` counts)."""
        return min(math.floor(now_s + 1e-9), self.n_seconds)

    def _arrivals(self) -> Generator[simpy.Event, Any, None]:
        """Naive mode: each request is its own SimPy process, started at its arrival time."""
        env = self.env
        i = 0
        for chunk in self.stream.chunks():
            for t in chunk.tolist():
                if t > env.now:
                    yield env.timeout(t - env.now)
                env.process(self._request(i, t))
                i += 1

    def _request(self, i: int, t: float) -> Generator[simpy.Event, Any, None]:
        latency_s = self._dispatch([t], i)[0]
        if not math.isnan(latency_s):  # it was served
            yield self.env.timeout(latency_s)
        self.rec.on_complete(i)

    # -- arrivals, chunk by chunk ----------------------------------------------------------------
    def _load_until(self, t_s: float, *, keep: bool) -> None:
        """Read chunks until every arrival before `t_s` is counted (and buffered, with `keep`)."""
        per_second, last = self.per_second, self.n_seconds - 1
        while not self._exhausted and self._loaded_until_s < t_s:
            chunk = next(self._chunks, None)
            if chunk is None:
                self._exhausted = True
                self._loaded_until_s = math.inf
                break
            if chunk.size:
                # a chunk's last arrival bounds what is loaded: chunks never overlap in time
                self._loaded_until_s = float(chunk[-1])
                if keep:
                    self._buffer.append(chunk)
                seconds = np.minimum(chunk.astype(np.int64), last)
                s0 = int(seconds[0])
                for offset, count in enumerate(np.bincount(seconds - s0).tolist()):
                    if count:
                        per_second[s0 + offset] += count

    def _dispatch_before(self, t_end_s: float) -> None:
        self._load_until(t_end_s, keep=True)
        buffer = self._buffer
        while buffer:
            chunk = buffer[0]
            lo = self._buffer_pos
            hi = int(np.searchsorted(chunk, t_end_s, side="left")) if t_end_s < math.inf \
                else chunk.size
            if hi > lo:
                self._dispatch(chunk[lo:hi].tolist(), self.next_i)
                self.rec.completed += hi - lo
            if hi < chunk.size:
                self._buffer_pos = hi
                break
            buffer.popleft()
            self._buffer_pos = 0

    # -- the per-request hot path ----------------------------------------------------------------
    def _dispatch(self, times: list[float], first_i: int) -> list[float]:
        """Route requests first_i, first_i + 1, ... (arrival `times`) by the shared rule."""
        cfg, d = self.cfg, self.decision
        n = len(times)
        vm_service, sls_service = self.service.take(first_i, n)
        latency = [math.nan] * n
        route = [int(_DROP)] * n
        slots, usable = self.fleet.slots, self.fleet.usable
        vms = self.fleet.vms
        serve_serverless = self.pool.dispatch
        heappop, heapreplace = heapq.heappop, heapq.heapreplace
        quota = d.vm_quota_rps if d.use_vms else None
        by_count = d.vm_quota_by_count
        budget_s, expected_s = cfg.sla_budget_s, cfg.vm.routing_service_s
        timeout_s = cfg.vm.queue_timeout_s
        use_vms, spill = d.use_vms, d.spill_to_serverless
        second, tokens = self._quota_second, self._quota_tokens
        # A request finding a free slot now, with quota left, goes to that VM: choose_route says
        # so whenever the planned service alone fits the budget (or the quota counts requests).
        # That is nearly every VM-served request, so it skips the call; any other case asks it.
        free_slot_is_vm = use_vms and (by_count or expected_s <= budget_s + FIT_TOLERANCE_S)
        while slots and not usable[slots[0][1]]:
            heappop(slots)
        # No VM at all (none can appear before the next tick): choose_route answers every
        # request alike, serverless when spilling, else drop; only the quota's per-second
        # bookkeeping goes on as the loop below would do it.
        no_vm = use_vms and not slots
        if no_vm and quota is not None:
            for t in times:
                if int(t) != second:
                    second, tokens = int(t), (tokens % 1.0 if tokens > 0.0 else 0.0) + quota
        if not use_vms or (no_vm and spill):  # everything to serverless
            self.pool.dispatch_many(times, sls_service, latency, route)
        for i in range(n if use_vms and not no_vm else 0):
            t = times[i]
            if quota is not None and int(t) != second:
                # LIBRA's per-second quota; an unspent fraction (< 1) carries over, whole
                # unspent requests do not
                second, tokens = int(t), (tokens % 1.0 if tokens > 0.0 else 0.0) + quota
            while slots and not usable[slots[0][1]]:
                heappop(slots)
            r: Route | None = None
            if slots:
                free_s, vm_id = slots[0]
                wait_s: float | None = free_s - t if free_s > t else 0.0
                if free_s <= t and free_slot_is_vm and (quota is None or tokens >= 1.0):
                    r = _VM
            else:
                wait_s = None
            if r is None:
                r = choose_route(
                    vm_wait_s=wait_s,
                    expected_service_s=expected_s,
                    sla_budget_s=budget_s,
                    quota_left=quota is None or tokens >= 1.0,
                    spill_to_serverless=spill,
                    use_vms=use_vms,
                    queue_timeout_s=timeout_s,
                    quota_by_count=by_count,
                )
            if r is _VM:
                assert wait_s is not None
                end_s = t + wait_s + vm_service[i]
                heapreplace(slots, (end_s, vm_id))
                vm = vms[vm_id]
                if end_s > vm.busy_until_s:  # noqa: PLR1730 (max() costs a call here)
                    vm.busy_until_s = end_s
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
        self.rec.record(latency, route)
        self.serverless_since_tick += route.count(int(_SERVERLESS))
        self.pool.fold_billing()
        self.next_i = max(self.next_i, first_i + n)
        return latency

    def drop_request_data(self) -> None:
        """Free the per-request arrays kept for analysis."""
        self.rec.drop_requests()
        self.service.kept.clear()

    # -- the controller's view and actions -------------------------------------------------------
    def _observe(self, now_s: float) -> Observation:
        whole = min(math.floor(now_s + 1e-9), self.n_seconds)
        per_s = self.per_second[max(0, whole - self.cfg.history_s):whole]
        minutes = whole // 60
        per_minute, per_second = self.per_minute, self.per_second
        while len(per_minute) < minutes:
            m = len(per_minute)
            per_minute.append(sum(per_second[m * 60:(m + 1) * 60]))
        per_min = tuple(per_minute[max(0, minutes - 60):minutes])
        counts = self.fleet.counts
        return build_observation(self.cfg, now_s, per_s, per_min, FleetState(
            vms_ready=counts[VMState.READY], vms_booting=counts[VMState.BOOTING],
            vms_draining=counts[VMState.DRAINING],
            serverless_in_flight=self.pool.in_flight(now_s),
            serverless_instances=self.pool.instances(now_s),
            vms_spot=self.fleet.spot_active))

    def _arrivals_in_last_tick(self, now_s: float) -> int:
        hi = min(math.floor(now_s + 1e-9), self.n_seconds)
        lo = max(0, math.floor(now_s - self.cfg.tick_s + 1e-9))
        return sum(self.per_second[lo:hi])

    def _apply(self, decision: Decision, now_s: float) -> None:
        target = decision.target_vms if decision.use_vms else 0
        if self.spot is not None:
            self._apply_mixed(decision, target, now_s)
            return
        while self.fleet.active < target:
            self.env.process(self._boot(self.fleet.launch(now_s)))
        while self.fleet.active > target:
            vm = self.fleet.stop_one(now_s)
            if vm is not None:
                self.env.process(self._drain(vm))
        if decision.serverless_warm:
            self.pool.keep_warm(now_s, decision.serverless_warm)

    # -- spot capacity -------------------------------------------------------------------------
    def _apply_mixed(self, decision: Decision, target: int, now_s: float) -> None:
        """Move the fleet towards `target` VMs, `decision.on_demand_vms` of them on-demand (None:
        all), make before break: VMs of the kind short are launched at once, VMs of the kind in
        excess are cancelled while booting, and drained while ready only as far as the ready
        VMs exceed the target (so changing the mix never lowers the ready capacity)."""
        fleet = self.fleet
        on_demand = target if decision.on_demand_vms is None else decision.on_demand_vms
        if decision.hold and decision.on_demand_vms is None:  # keep the mix as it is
            on_demand = min(target, fleet.active - fleet.spot_active)
        want = {False: on_demand, True: target - on_demand}
        for spot in (False, True):
            have = fleet.spot_active if spot else fleet.active - fleet.spot_active
            for _ in range(want[spot] - have):
                self._launch(now_s, spot=spot)
        for spot in (False, True):
            excess = (fleet.spot_active if spot else fleet.active - fleet.spot_active) - want[spot]
            while excess > 0:
                booting = [vm for vm in fleet.in_service
                           if vm.spot is spot and vm.state is VMState.BOOTING]
                if not booting and fleet.counts[VMState.READY] <= target:
                    break  # its replacement is not ready yet
                vm = fleet.stop_one(now_s, spot=spot)
                if vm is not None:
                    self.env.process(self._drain(vm))
                excess -= 1
        if decision.serverless_warm:
            self.pool.keep_warm(now_s, decision.serverless_warm)

    def _launch(self, now_s: float, *, spot: bool) -> SimVM:
        vm = self.fleet.launch(now_s, spot=spot)
        if spot and self.spot is not None:
            vm.interrupt_at_s = self.spot.draw_for(vm.vm_id, now_s)
            if math.isfinite(vm.interrupt_at_s):
                heapq.heappush(self._spot_due, (vm.interrupt_at_s, vm.vm_id))
        self.env.process(self._boot(vm))
        return vm

    def _next_notice_s(self) -> float:
        """When the next notice comes (inf: none due), from the rate or the file."""
        assert self.spot is not None
        due, vms = self._spot_due, self.fleet.vms
        while due and not self._in_service(vms[due[0][1]]):
            heapq.heappop(due)
        first = due[0][0] if due else math.inf
        return min(first, self.spot.next_file_time_s())

    @staticmethod
    def _in_service(vm: SimVM) -> bool:
        return vm.state in (VMState.READY, VMState.BOOTING)

    def _spot_notices(self, now_s: float) -> None:
        """Deliver every notice due at or before this tick (see module docs)."""
        assert self.spot is not None
        due, vms = self._spot_due, self.fleet.vms
        hit: list[tuple[SimVM, float]] = []
        while due and due[0][0] <= now_s:
            at_s, vm_id = heapq.heappop(due)
            if self._in_service(vms[vm_id]):
                hit.append((vms[vm_id], at_s))
        for at_s in self.spot.take_file_times(now_s):
            vm = self.fleet.spot_to_interrupt()
            if vm is None:
                self.spot_missed += 1
                continue
            self.fleet.notice(vm, now_s)  # out of service, so the next time hits another VM
            hit.append((vm, at_s))
        for vm, at_s in hit:
            if vm.noticed_at_s is None:
                self.fleet.notice(vm, now_s)
            self.env.process(self._reclaim(vm, at_s + self.cfg.spot.notice_s))
            self._launch(now_s, spot=vm.spot)  # capacity rebalancing: a replacement at once

    def _reclaim(self, vm: SimVM, at_s: float) -> Generator[simpy.Event, Any, None]:
        """AWS reclaims a noticed spot VM at the notice's end; it is billed until then. Its
        queue is finished by then: the notice (120 s) outlasts `vm.queue_timeout_s` (30 s)."""
        if at_s > self.env.now:
            yield self.env.timeout(at_s - self.env.now)
        self.fleet.terminate(vm, max(at_s, self.env.now))

    def _boot(self, vm: SimVM) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(vm.ready_at_s - self.env.now)
        self.fleet.mark_ready(vm)

    def _drain(self, vm: SimVM) -> Generator[simpy.Event, Any, None]:
        """A draining VM finishes what it queued, then stops (and stops being billed)."""
        if vm.busy_until_s > self.env.now:
            yield self.env.timeout(vm.busy_until_s - self.env.now)
        self.fleet.terminate(vm, self.env.now)


def _as_stream(arrivals: np.ndarray | ArrivalStream | Trace, duration_s: float | None
               ) -> ArrivalStream:
    if isinstance(arrivals, ArrivalStream):
        return arrivals
    if isinstance(arrivals, Trace):
        return ArrayStream.of(arrivals)
    if duration_s is None:
        raise ValueError("give duration_s with an arrivals array")
    array = np.ascontiguousarray(arrivals, dtype=np.float64)
    return ArrayStream(name="arrivals", source="memory", duration_s=float(duration_s),
                       arrivals_s=array)
