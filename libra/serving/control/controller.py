"""Every tick: build an `Observation`, call the policy the simulator uses, apply the `Decision`.

The observation is built by `libra.core.observation.build_observation`, the function the
simulator calls, from the settings' `Platform` (prices, boot, EC2's billing minimum, capacity,
the serverless cost, cold start, service time and concurrency cap) plus what is counted here
(arrivals, VMs per state, serverless in flight and alive), so a policy cannot see two different
platforms. The fleet target goes to the provisioner here; the quota and the serverless warm set
are applied by the router and `libra.serving.service` on the event loop.

One time axis. Arrivals are counted per wall-clock second (`time.time()`: the one clock routers
on different machines share, so their counts add up in Redis), and `now_s` comes from the same
clock read once per tick: the controller passes that instant to the rate monitor, so the last
count is exactly the whole second that ended at or before `now_s`, as in the simulator. `now_s`
is that wall time minus `origin_s`, the whole minute on or before the controller started: small
numbers, and the same seconds and minutes the counts are keyed on (a policy that keeps
per-minute peaks closes its minute when the per-minute counts do). A wall clock can be stepped
(NTP); the policies' hysteresis then sees the step once, which is the price of counts that
several routers share. The tick loop itself is scheduled on `time.monotonic()`.

Spot: the decision's `on_demand_vms` (of `target_vms`, how many on-demand; None: all) goes to
the provisioner with the target, and a provisioner that knows its spot VMs (`spot_vms`, AWS)
reports them in the observation. A VM whose worker got an interruption notice is DRAINING in
the provisioner's counts, so the policy sees it as leaving, not as capacity.

The loop that calls `tick` (`libra.serving.service`) counts a tick that fails in `tick_errors`
and goes on: the fleet keeps its size until the next good tick.

With several routers on one Redis only the lease holder (`libra.serving.state.lease`) calls
`tick`; the others call `follow` with the leader's published decision: they refresh the workers
they route to and apply the decision to their router, but never run the policy or resize the
fleet (and never call the cloud's describe API: see `follow`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol

from libra.core.lifecycle import VMState
from libra.core.observation import FleetState, build_observation
from libra.core.platform import Platform
from libra.core.policies.base import Decision, Observation, Policy
from libra.serving.provision.base import Provisioner
from libra.serving.state.rates import RateMonitor


class ServerlessCounts(Protocol):
    """What the controller reads of the serverless driver."""

    @property
    def in_flight(self) -> int: ...

    @property
    def instances_alive(self) -> int: ...


class DecisionSink(Protocol):
    """Where the decision's per-request parts go (the router)."""

    decision: Decision


class Controller:
    """Runs one policy against the live fleet (see module docs)."""

    def __init__(self, policy: Policy, monitor: RateMonitor, provisioner: Provisioner,
                 serverless: ServerlessCounts, router: DecisionSink, platform: Platform, *,
                 clock: Callable[[], float] | None = None) -> None:
        self.policy = policy
        self.monitor = monitor
        self.provisioner = provisioner
        self.serverless = serverless
        self.router = router
        self.platform = platform
        self.clock = clock or monitor.clock  # the clock the arrivals are counted on
        self.origin_s = 60.0 * math.floor(self.clock() / 60.0)
        self.last_decision: Decision | None = None
        self.last_observation: Observation | None = None
        self.ticks = 0
        self.tick_errors = 0
        self.last_eval_s = 0.0

    def observe(self) -> Observation:
        self.provisioner.poll()
        counts = self.provisioner.counts()
        wall_s = self.clock()
        per_s, per_min = self.monitor.window(wall_s)
        fleet = FleetState(vms_ready=counts[VMState.READY], vms_booting=counts[VMState.BOOTING],
                           vms_draining=counts[VMState.DRAINING],
                           serverless_in_flight=self.serverless.in_flight,
                           serverless_instances=self.serverless.instances_alive,
                           vms_spot=int(getattr(self.provisioner, "spot_vms", 0)))
        return build_observation(self.platform, wall_s - self.origin_s, per_s, per_min, fleet)

    def tick(self) -> Decision:
        obs = self.observe()
        started = time.perf_counter()
        decision = self.policy.decide(obs)
        self.last_eval_s = time.perf_counter() - started
        if not decision.hold:
            if decision.use_vms:
                self.provisioner.set_target(decision.target_vms,
                                            on_demand_vms=decision.on_demand_vms)
            else:
                self.provisioner.set_target(0)
        self.router.decision = decision
        self.last_decision, self.last_observation = decision, obs
        self.ticks += 1
        return decision

    def follow(self, decision: Decision | None) -> None:
        """A follower's tick: the rate view and routing workers refreshed, the leader's
        `decision` (None: none published yet, keep the last) given to the router. A
        provisioner with a `refresh_workers` method (AWS: the registry only, no
        DescribeAutoScalingGroups) uses it; one without (local processes this router owns)
        polls as usual. Never the policy, never `set_target`."""
        self.monitor.window(self.clock())  # the shared rate for /status and the metrics
        refresh = getattr(self.provisioner, "refresh_workers", None)
        if callable(refresh):
            refresh()
        else:
            self.provisioner.poll()
        if decision is not None:
            self.router.decision = decision
            self.last_decision = decision
        self.ticks += 1
