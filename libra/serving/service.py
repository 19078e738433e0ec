"""Everything `libra-serve` runs, wired from `Settings`: mechanisms chosen by config, not by ifs.

Rate store and worker registry (memory or Redis), provisioner (local processes or EC2 Auto
Scaling), serverless driver (local pool or AWS Lambda), router, controller, cost meter. `start`
launches the initial fleet and the control loop; `stop` drains and reaps everything.

Two executors of its own, so `/healthz` and the control loop never wait behind request work:
decoding runs in `decode_pool` (bounded, its backlog visible to admission), and the controller's
tick in a single thread that lives as long as the service (the provisioner spawns workers from
it, and a child dies with the thread that spawned it: `libra.serving.children`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from libra.core.billing import invocation_cost_usd, vm_billed_s, vm_fleet_cost_usd
from libra.core.lifecycle import VMState
from libra.core.platform import ServerlessConfig, VMConfig
from libra.core.policies import make_policy
from libra.core.policies.base import Decision
from libra.runtime.inputs.text import TextTokenizer
from libra.serving.admission import DecodePool, Gate
from libra.serving.backends.local_pool import LocalServerlessPool, PoolConfig
from libra.serving.backends.serverless import AwsLambdaDriver, ServerlessDriver
from libra.serving.backends.vm import VMBackend
from libra.serving.control.controller import Controller
from libra.serving.control.shared_decision import DecisionBoard
from libra.serving.emf import EmfReporter
from libra.serving.logs import RateLimitedLog
from libra.serving.metrics import ServeMetrics
from libra.serving.provision.base import Provisioner
from libra.serving.provision.local import LocalProvisioner
from libra.serving.router import Router, RouterConfig
from libra.serving.settings import Settings
from libra.serving.state.lease import Lease, RedisLease, SoleLease
from libra.serving.state.rates import MemoryRateStore, RateMonitor, RedisRateStore
from libra.serving.state.redis_link import RedisLink, RedisUnavailableError
from libra.serving.state.registry import MemoryRegistry, RedisRegistry, WorkerRegistry

BILLED_STATES = frozenset({VMState.BOOTING, VMState.READY, VMState.DRAINING})
"""A VM is billed from launch until it has stopped (drained and terminated)."""

LEASE_TICKS = 3
"""The leadership lease lasts this many ticks: a follower takes over within about as many
ticks of the leader dying, and a leader survives a tick or two that is late."""
DECISION_TICKS = 30
"""The published decision expires after this many ticks without a leader writing it."""

log = logging.getLogger(__name__)
failures = RateLimitedLog(log)


@dataclass
class CostMeter:
    """Cost so far, by the core's formulas (`libra.core.billing`, what the simulator bills):
    each VM per second from when it was launched to when it stopped, with EC2's minimum per VM;
    each serverless invocation in billing granules of its duration (plus INIT on a cold start
    where the platform bills it) and the request fee.

    VM lives are sampled from the provisioner each tick (`on_fleet`): a VM is launched when it
    first appears in a billed state and stopped when it is gone or TERMINATED, so launch and stop
    times are known to a tick. A VM the provisioner names as spot (`spot_ids`; the AWS one
    asks EC2 for each new instance's market) is billed at `spot_price_per_s_usd` for its whole
    life, the others at the on-demand price: with spot on, the meter must not bill at the
    on-demand price what costs a fraction of it."""

    vm: VMConfig
    serverless: ServerlessConfig
    clock: Callable[[], float] = time.monotonic
    spot_price_per_s_usd: float | None = None
    """The spot price (None: no spot capacity; every VM billed on-demand)."""
    serverless_usd: float = 0.0
    vm_launches: int = 0
    running: dict[str, float] = field(default_factory=dict)
    """Launch time of each VM billed now, by id."""
    spot: set[str] = field(default_factory=set)
    """The running VMs known to be spot."""
    stopped_billed_s: float = 0.0
    """Billed seconds of the VMs that have stopped (folded: a fleet changes for days)."""
    stopped_spot_billed_s: float = 0.0
    """The part of `stopped_billed_s` billed at the spot price."""

    def on_fleet(self, vms: Mapping[str, VMState], now_s: float | None = None,
                 spot_ids: Collection[str] = ()) -> None:
        """The provisioner's VMs by id as they are now, and which of them are spot (an
        instance's market is sometimes learned a tick after it appears: it is never unlearned
        while the VM runs)."""
        now_s = self.clock() if now_s is None else now_s
        billed = {vid for vid, state in vms.items() if state in BILLED_STATES}
        for vid in billed - set(self.running):
            self.running[vid] = now_s
            self.vm_launches += 1
        if self.spot_price_per_s_usd is not None:
            self.spot |= billed & set(spot_ids)
        for vid in set(self.running) - billed:
            billed_s = vm_billed_s(self.running.pop(vid), now_s, self.vm)
            self.stopped_billed_s += billed_s
            if vid in self.spot:
                self.spot.discard(vid)
                self.stopped_spot_billed_s += billed_s

    def on_serverless(self, duration_s: float, *, init_s: float = 0.0) -> None:
        """One invocation: the handler's `duration_s`, and its INIT `init_s` on a cold start."""
        self.serverless_usd += invocation_cost_usd(duration_s, self.serverless, init_s=init_s)

    def vm_billed_s(self, now_s: float | None = None) -> float:
        return sum(self._billed_s_by_market(now_s))

    def _billed_s_by_market(self, now_s: float | None = None) -> tuple[float, float]:
        """(on-demand, spot) billed VM-seconds so far."""
        now_s = self.clock() if now_s is None else now_s
        spot_s = self.stopped_spot_billed_s + vm_fleet_cost_usd(
            ((start, None) for vid, start in self.running.items() if vid in self.spot),
            now_s, self.vm)[1]
        on_demand_s = self.stopped_billed_s - self.stopped_spot_billed_s + vm_fleet_cost_usd(
            ((start, None) for vid, start in self.running.items() if vid not in self.spot),
            now_s, self.vm)[1]
        return on_demand_s, spot_s

    def vm_cost_usd(self, now_s: float | None = None) -> float:
        on_demand_s, spot_s = self._billed_s_by_market(now_s)
        spot_usd = spot_s * self.spot_price_per_s_usd if self.spot_price_per_s_usd else 0.0
        return on_demand_s * self.vm.price_per_s_usd + spot_usd

    @property
    def vm_usd(self) -> float:
        return self.vm_cost_usd()


def finite(x: float) -> float | None:
    """`x`, or None where JSON has no number for it (infinity: no known bound)."""
    return x if math.isfinite(x) else None


class Service:
    """The running platform on this machine (see module docs)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = s = settings
        manifest_path = s.model_dir / "manifest.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"no model in {s.model_dir} (manifest.json missing): run "
                                    f"`libra-model build` first")
        self.manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        self.trained_modalities = tuple(self.manifest["trained_modalities"])
        self.model_version = str(self.manifest["model_version"])
        self.tokenizer = TextTokenizer.from_file()
        self.metrics = ServeMetrics()
        self.metrics.set_build_info(self.model_version)
        self.emf = EmfReporter.from_env()  # CloudWatch alarms' data on AWS; a no-op elsewhere
        # one link (timeouts, breaker, health) for every use of Redis in this process
        self.redis = (RedisLink(s.redis_url,
                                on_error=lambda op: self.metrics.redis_errors.labels(op).inc(),
                                on_state=self.metrics.redis_breaker.set)
                      if s.redis_url else None)
        self.monitor = RateMonitor(RedisRateStore(self.redis) if self.redis
                                   else MemoryRateStore())
        self.registry: WorkerRegistry = (RedisRegistry(self.redis) if self.redis
                                         else MemoryRegistry())
        self.provisioner = self._provisioner()
        self.serverless = self._serverless()
        self.vm = VMBackend(timeout_s=max(10.0, 10 * s.sla_s))
        platform = s.platform
        router_config = RouterConfig.from_platform(platform,
                                                   request_timeout_s=s.request_timeout_s)
        self.router = Router(self.provisioner.ready_workers, self.vm, self.serverless,
                             router_config, metrics=self.metrics)
        self.decode_pool = DecodePool(s.decode_threads)
        self.gate = Gate(max_admitted=s.max_admitted_requests,
                         sla_budget_s=router_config.sla_budget_s,
                         timeout_s=router_config.timeout_s, decode=self.decode_pool,
                         capacity_rps=self.router.capacity_rps)
        self.metrics.admitted.set_function(lambda: self.gate.admitted)
        self.metrics.decode_held.set_function(lambda: self.decode_pool.held)
        self._control_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="libra-control")
        self.policy = make_policy(s.policy, **s.chosen_policy_params)
        self.controller = Controller(self.policy, self.monitor, self.provisioner,
                                     self.serverless, self.router, platform)
        # one controller among the routers sharing a Redis (libra.serving.state.lease)
        lease_ttl_s = LEASE_TICKS * s.tick_s
        self.lease: Lease = (RedisLease(self.redis, lease_ttl_s) if self.redis
                             else SoleLease())
        self.board = (DecisionBoard(self.redis, DECISION_TICKS * s.tick_s) if self.redis
                      else None)
        self.cost = CostMeter(s.vm, s.serverless, spot_price_per_s_usd=(
            s.spot.price_per_s_usd if s.spot.enabled else None))
        self._control: asyncio.Task[None] | None = None
        self._warming: asyncio.Task[None] | None = None
        self._metrics_task: asyncio.Task[None] | None = None

    def _provisioner(self) -> Provisioner:
        s = self.settings
        if s.provisioner == "aws":
            from libra.serving.provision.aws import AutoScalingProvisioner

            return AutoScalingProvisioner(
                s.asg_name or "", registry=self.registry, region=s.aws_region, max_vms=s.max_vms,
                in_flight=self._in_flight, spot_enabled=s.spot.enabled,
                on_notice=lambda worker_id: self.metrics.spot_notices.inc(),
                on_fleet_error=lambda op: self.metrics.fleet_errors.labels(op).inc())
        # a local worker is a VM of the platform: booting for vm.boot_s, vm.concurrency slots
        return LocalProvisioner(
            s.model_dir, log_dir=s.log_dir, boot_delay_s=s.vm.boot_s, max_vms=s.max_vms,
            registry=self.registry, max_batch_size=s.vm.concurrency, in_flight=self._in_flight,
            on_notice=lambda worker_id: self.metrics.spot_notices.inc(),
            notice_s=s.spot.notice_s,
            worker_args=("--threads", str(s.worker_threads), "--cpu-precision",
                         s.worker_cpu_precision, "--max-batch-delay-ms",
                         str(s.max_batch_delay_ms)))

    def _in_flight(self, worker_id: str) -> int:
        """Requests the router has on a worker: provisioners drain idle workers first."""
        return self.router.in_flight.get(worker_id, 0)

    def _serverless(self) -> ServerlessDriver:
        s = self.settings
        if s.serverless_driver == "aws":
            return AwsLambdaDriver(s.lambda_function or "", region=s.aws_region,
                                   max_concurrency=s.serverless.concurrency_limit,
                                   on_throttle=self.metrics.lambda_throttles.inc)
        if s.serverless_driver == "noop":
            from libra.serving.backends.noop import NoopDriver

            return NoopDriver()
        return LocalServerlessPool(PoolConfig(
            s.model_dir / f"{s.serverless_precision}.onnx",
            max_concurrency=s.serverless.concurrency_limit,
            keep_alive_s=s.serverless.keep_alive_s))

    async def start(self) -> None:
        self.monitor.start()  # the thread that sends counted arrivals to Redis
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._control_pool, self.provisioner.start,
                                   self.settings.initial_vms)
        self.cost.on_fleet(self.provisioner.vm_states(),
                           spot_ids=getattr(self.provisioner, "spot_ids", frozenset()))
        self._control = asyncio.ensure_future(self._control_loop())

    async def _control_loop(self) -> None:
        loop = asyncio.get_running_loop()
        tick_s = self.settings.tick_s
        next_s = time.monotonic()
        while True:
            self.metrics.tick_late.set(max(0.0, time.monotonic() - next_s))
            try:
                decision = await loop.run_in_executor(self._control_pool, self._tick)
                self._after_tick()
                if decision is not None and decision.serverless_warm \
                        and (self._warming is None or self._warming.done()):
                    self._warming = asyncio.ensure_future(
                        self._keep_warm(decision.serverless_warm))
            except Exception:  # counted and logged; the loop outlives a bad tick
                self.controller.tick_errors += 1
                self.metrics.tick_errors.inc()
                self.emf.put({"ControlTickErrors": 1})
                failures.failure("control tick", "control tick %d failed; the fleet keeps its "
                                 "size until a good tick", self.controller.ticks + 1)
            next_s += tick_s
            now = time.monotonic()
            if next_s < now - tick_s:  # a tick overran by more than one period: do not burst
                next_s = now
            await asyncio.sleep(max(0.0, next_s - now))

    def _tick(self) -> Decision | None:
        """The leader runs the policy and publishes its decision; a follower applies the
        leader's decision to its router and returns None (it keeps nothing warm: the warm set
        is the leader's). Without Redis this router is the leader."""
        if self.lease.step():
            decision = self.controller.tick()
            if self.board is not None:
                # a failure is logged by the link; followers keep the last decision
                with contextlib.suppress(RedisUnavailableError):
                    self.board.publish(decision, self.lease.holder_id)
            return decision
        followed = None
        if self.board is not None:
            try:
                read = self.board.read()
            except RedisUnavailableError:  # logged by the link: keep the last decision
                read = None
            followed = None if read is None else read[0]
        self.controller.follow(followed)
        return None

    async def _keep_warm(self, target: int) -> None:
        """The policy's serverless warm set; its starts and pings are billed like requests
        (the drivers report each one's billed seconds, INIT included)."""
        try:
            for billed_s in await self.serverless.keep_warm(target):
                self.cost.on_serverless(billed_s)
        except Exception:  # a failed warm-up only means the next burst meets cold starts
            self.metrics.warm_errors.inc()
            failures.failure("keep-warm", "keeping %d serverless instances warm failed", target,
                             level=logging.WARNING)

    def _after_tick(self) -> None:
        counts = self.provisioner.counts()
        self.cost.on_fleet(self.provisioner.vm_states(),
                           spot_ids=getattr(self.provisioner, "spot_ids", frozenset()))
        self.router.forget({w.worker_id for w in self.provisioner.ready_workers()})
        m = self.metrics
        m.vms_running.set(counts[VMState.READY])
        m.vms_booting.set(counts[VMState.BOOTING])
        m.vms_draining.set(counts[VMState.DRAINING])
        m.serverless_in_flight.set(self.serverless.in_flight)
        m.serverless_instances.set(self.serverless.instances_alive)
        m.cost.set_total("vm", self.cost.vm_usd)
        m.cost.set_total("serverless", self.cost.serverless_usd)
        m.rate.set(self.monitor.rate_rps())
        m.policy_eval.observe(self.controller.last_eval_s)
        if self.controller.last_decision is not None:
            m.target_vms.set(self.controller.last_decision.target_vms)
            m.serverless_warm_target.set(self.controller.last_decision.serverless_warm)

    def status(self) -> dict[str, Any]:
        decision = self.controller.last_decision
        counts = self.provisioner.counts()
        return {
            "policy": self.policy.name, "profile": self.settings.profile,
            "model_version": self.model_version,
            "rate_rps_10s": self.monitor.rate_rps(),
            "decision": None if decision is None else {
                "target_vms": decision.target_vms, "reason": decision.reason,
                "vm_quota_rps": decision.vm_quota_rps, "use_vms": decision.use_vms,
                "spill_to_serverless": decision.spill_to_serverless, "hold": decision.hold,
                "on_demand_vms": decision.on_demand_vms,
                "signals": dict(decision.signals)},
            "fleet": {**{state.name.lower(): n for state, n in counts.items()},
                      "spot": int(getattr(self.provisioner, "spot_vms", 0)),
                      "spot_notices": int(getattr(self.provisioner, "notices", 0))},
            "workers": [w.url for w in self.provisioner.ready_workers()],
            "serverless": {"driver": self.serverless.name,
                           "in_flight": self.serverless.in_flight,
                           "instances": self.serverless.instances_alive,
                           "warm_target": 0 if decision is None else decision.serverless_warm,
                           "cold_starts": self.serverless.cold_starts},
            "routed": dict(self.router.counts),
            "admission": {"admitted": self.gate.admitted,
                          "max_admitted": self.gate.max_admitted,
                          "admission_limit": self.gate.limit(),
                          "capacity_rps": finite(round(self.router.capacity_rps(), 1)),
                          "reading_bodies": self.gate.reading,
                          "decode_jobs": self.decode_pool.held,
                          "decode_job_s": self.decode_pool.job_s.value,
                          "worker_s_per_request": {
                              wid: est.per_request_s for wid, est in self.router.service.items()},
                          "serverless_call_s": self.router.serverless_call_s,
                          "serverless_cold_start_s": self.router.serverless_cold_start_s},
            "cost_usd": {"vm": self.cost.vm_usd, "serverless": self.cost.serverless_usd},
            "control": {"ticks": self.controller.ticks,
                        "tick_errors": self.controller.tick_errors,
                        "role": self.lease.role, "leader": self.lease.leader_id,
                        "router_id": self.lease.holder_id},
            "rate_store_errors": self.monitor.store_errors,
            "rate_store": self.monitor.health(),
            "degraded": self.degraded(),
        }

    def not_ready(self) -> str | None:
        """Why this router cannot serve a request now (None: it can). Ready means some backend
        would take a request: a ready VM worker, or serverless under a policy that uses it. A
        VM-only policy whose only VM is still booting is not ready: a load balancer should send
        its traffic elsewhere rather than have it refused."""
        decision = self.controller.last_decision
        if self.controller.ticks == 0 or decision is None:
            return "the controller has not decided yet"
        if decision.use_vms and not decision.spill_to_serverless \
                and not self.provisioner.ready_workers():
            return "the policy serves from VMs only and no VM worker is ready yet"
        return None

    def degraded(self) -> list[str]:
        """What works worse than it should, one sentence each (empty: nothing). A degraded router
        still serves: the caller decides whether that matters (`/readyz` stays 200)."""
        out = []
        health = self.monitor.health()
        if health["state"] != "ok":
            out.append(f"rate store: redis unavailable since {health['since']} "
                       f"({health['last_error']}); the controller reads this router's own "
                       f"arrivals")
        return out

    async def stop(self) -> None:
        if self._warming is not None:
            self._warming.cancel()
        if self._control is not None:
            self._control.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._control
        await asyncio.get_running_loop().run_in_executor(self._control_pool,
                                                         self.provisioner.close)
        await asyncio.get_running_loop().run_in_executor(self._control_pool, self.lease.release)
        await asyncio.get_running_loop().run_in_executor(None, self.monitor.close)
        await self.serverless.aclose()
        await self.vm.aclose()
        self._control_pool.shutdown(wait=False)
        self.decode_pool.shutdown(wait=False, cancel_futures=True)
