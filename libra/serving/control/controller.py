"""Every tick: build an `Observation`, call the policy the simulator uses, apply the `Decision`.

The observation carries what the simulator's carries (prices, boot, EC2's billing minimum, the
serverless cold start, service time, concurrency cap and live instances), so a policy decides
live as it does in `libra-sim`. The fleet target goes to the provisioner here; the quota and the
serverless warm set are applied by the router and `libra.serving.service` on the event loop.

The policy object is the same class `libra-sim` runs (`libra.core.policies`); time enters as
`now_s` from the clock given here. The loop that calls `tick` (`libra.serving.service`) counts a
tick that fails in `tick_errors` and goes on: the fleet keeps its size until the next good tick.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from libra.core.lifecycle import VMState
from libra.core.policies.base import Decision, Observation, Policy
from libra.serving.backends.serverless import ServerlessDriver
from libra.serving.provision.base import Provisioner
from libra.serving.router import Router
from libra.serving.state.rates import RateMonitor


@dataclass(frozen=True)
class ControlConfig:
    """What the policy needs to know about the platform; units in the names."""

    tick_s: float = 1.0
    sla_s: float = 1.0
    vm_capacity_rps: float = 160.0
    vm_boot_s: float = 120.0
    vm_price_per_s_usd: float = 0.526 / 3600
    vm_min_billing_s: float = 60.0
    serverless_cost_per_request_usd: float = 0.0000086
    serverless_cold_start_s: float = 0.0
    serverless_service_s: float = 0.0
    serverless_concurrency_limit: int = 0  # 0: no known limit


class Controller:
    """Runs one policy against the live fleet (see module docs)."""

    def __init__(self, policy: Policy, monitor: RateMonitor, provisioner: Provisioner,
                 serverless: ServerlessDriver, router: Router, config: ControlConfig, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.monitor = monitor
        self.provisioner = provisioner
        self.serverless = serverless
        self.router = router
        self.config = config
        self.clock = clock
        self.started_s = clock()
        self.last_decision: Decision | None = None
        self.last_observation: Observation | None = None
        self.ticks = 0
        self.tick_errors = 0
        self.last_eval_s = 0.0

    def observe(self) -> Observation:
        self.provisioner.poll()
        counts = self.provisioner.counts()
        per_s, per_min = self.monitor.window()
        c = self.config
        return Observation(
            now_s=self.clock() - self.started_s, arrivals_per_s=per_s, arrivals_per_min=per_min,
            vms_ready=counts[VMState.READY], vms_booting=counts[VMState.BOOTING],
            vms_draining=counts[VMState.DRAINING], vm_capacity_rps=c.vm_capacity_rps,
            serverless_in_flight=self.serverless.in_flight, sla_s=c.sla_s,
            vm_boot_s=c.vm_boot_s, vm_price_per_s_usd=c.vm_price_per_s_usd,
            serverless_cost_per_request_usd=c.serverless_cost_per_request_usd,
            serverless_cold_start_s=c.serverless_cold_start_s,
            serverless_service_s=c.serverless_service_s,
            serverless_concurrency_limit=c.serverless_concurrency_limit,
            serverless_instances=self.serverless.instances_alive,
            vm_min_billing_s=c.vm_min_billing_s)

    def tick(self) -> Decision:
        obs = self.observe()
        started = time.perf_counter()
        decision = self.policy.decide(obs)
        self.last_eval_s = time.perf_counter() - started
        if not decision.hold:
            self.provisioner.set_target(decision.target_vms if decision.use_vms else 0)
        self.router.decision = decision
        self.last_decision, self.last_observation = decision, obs
        self.ticks += 1
        return decision
