"""The AWS provisioner: an EC2 Auto Scaling group as the VM fleet (boto3).

`set_target(n)` calls `set_desired_capacity` (no cooldown: the policy already has hysteresis;
with spot on, see below).
Before a scale-in, instances whose workers have requests in flight are protected from scale-in
(`set_instance_protection`) and the others unprotected, so the group terminates idle ones.
Lifecycle comes from `describe_auto_scaling_groups`: Pending* is BOOTING, Terminating*
DRAINING, and InService is READY only once its worker heartbeats into the shared registry
(Redis) with the instance id as its worker id. An InService instance whose worker has not
registered, or whose heartbeat expired, counts as BOOTING for the policy, the router and the
cost meter: it is billed but is not capacity (EC2 says the machine runs, not that the container
serves). One that stays so for `unregistered_warn_s` is logged as probably dead (the group's
ELB health check is what replaces it).

Followers (`libra.serving.state.lease`) call `refresh_workers` instead of `poll`: the registry
only, never DescribeAutoScalingGroups, so N routers cost the AWS API what one does. A follower
reports no fleet (the leader's `/status` and cost meter have it).

The registry is read once per `poll`. If Redis cannot be read, routing keeps the workers it knew
that are still InService (the group's own word, fresh from AWS) rather than dropping the whole
fleet from routing while it is billed: a worker that did die fails over to serverless per
request. The failure is counted in `registry_errors` and logged (rate-limited).

Spot (`spot_enabled`, from `Settings.spot.enabled`): the group is a mixed-instances group, and
`set_target(n, on_demand_vms)` also sets its on-demand base
(`MixedInstancesPolicy.InstancesDistribution.OnDemandBaseCapacity` = the decision's
`on_demand_vms`, `OnDemandPercentageAboveBaseCapacity` = 0: every instance above the base is
spot), in one `update_auto_scaling_group` call with the desired capacity, and only when the base
the group reports differs (a restarted router adopts it as it is). A decision without an
on-demand part (`on_demand_vms` None) means all on-demand: the base is `max_vms`, which never
changes; a target of 0 leaves the base as it is (nothing to mix). With spot off the
distribution is Terraform's and is never touched. If that call fails (throttled, AccessDenied,
a group that is not mixed-instances) the failure is counted in `fleet_errors`, logged with its
traceback (rate-limited), tried again after `mix_retry_s`, and the desired capacity is still set
with `set_desired_capacity`: the fleet's size never waits on its mix. The group replaces an
interrupted spot instance itself (its desired capacity is unchanged; capacity rebalancing
launches the replacement early on a rebalance recommendation).

A worker that got an interruption notice (`handlers.worker`, watching the instance metadata)
heartbeats with `draining` set until its requests in flight are done: it counts as DRAINING,
never READY, and is not routed to; the first tick that sees it logs one line and calls
`on_notice`. Until the group moves it to Terminating it is InService, billed, and not capacity.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from libra.core.lifecycle import VMState
from libra.serving.logs import RateLimitedLog
from libra.serving.provision.instance_markets import InstanceMarkets
from libra.serving.state.redis_link import RedisUnavailableError
from libra.serving.state.registry import WorkerInfo, WorkerRegistry, routable

log = logging.getLogger(__name__)

STATE_OF = {"Pending": VMState.BOOTING, "Pending:Wait": VMState.BOOTING,
            "Pending:Proceed": VMState.BOOTING, "InService": VMState.READY,
            "Terminating": VMState.DRAINING, "Terminating:Wait": VMState.DRAINING,
            "Terminating:Proceed": VMState.DRAINING}


class AutoScalingProvisioner:
    """EC2 Auto Scaling group `group` as the fleet (see module docs)."""

    name = "aws"

    def __init__(self, group: str, *, registry: WorkerRegistry, client: Any = None,
                 region: str | None = None, max_vms: int = 64,
                 in_flight: Callable[[str], int] = lambda worker_id: 0,
                 unregistered_warn_s: float = 600.0, spot_enabled: bool = False,
                 mix_retry_s: float = 60.0,
                 on_notice: Callable[[str], None] = lambda worker_id: None,
                 on_fleet_error: Callable[[str], None] = lambda op: None,
                 ec2_client: Any = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if client is None:
            import boto3

            client = boto3.client("autoscaling", region_name=region)
        self.client = client
        # the group's region: a client given without `region` (tests, callers) names it
        self.markets = InstanceMarkets(ec2_client, region=region or client.meta.region_name) \
            if spot_enabled else None
        self.group = group
        self.registry = registry
        self.max_vms = max_vms
        self.in_flight = in_flight
        self._instances: list[dict[str, Any]] = []
        self._ready: list[WorkerInfo] = []
        self._draining: set[str] = set()  # InService instances whose worker is draining
        self._noticed: set[str] = set()  # instances still in the group whose worker drained
        self._unregistered_since: dict[str, float] = {}  # InService, no heartbeat, since when
        self.unregistered_warn_s = unregistered_warn_s
        self.clock = clock
        self.desired = 0
        self.registry_errors = 0
        self.spot_enabled = spot_enabled
        self.on_notice = on_notice
        self.on_fleet_error = on_fleet_error
        self.on_demand_base: int | None = None  # the group's, as of the last poll (None: not mixed)
        self.on_demand_percent: int | None = None
        self.fleet_errors = 0
        self.notices = 0
        self.mix_retry_s = mix_retry_s
        self._mix_retry_at = -math.inf
        self._log = RateLimitedLog(log)

    def describe(self) -> dict[str, Any]:
        groups = self.client.describe_auto_scaling_groups(
            AutoScalingGroupNames=[self.group])["AutoScalingGroups"]
        if not groups:
            raise LookupError(f"no Auto Scaling group named {self.group!r}")
        return dict(groups[0])

    def poll(self) -> None:
        group = self.describe()
        self._instances = list(group.get("Instances", []))
        self.desired = int(group["DesiredCapacity"])
        in_service = {i["InstanceId"] for i in self._instances
                      if i["LifecycleState"] == "InService"}
        try:
            registered = self.registry.alive()
        except RedisUnavailableError:  # logged by the link: keep the known workers in service
            registered = self._ready
            self.registry_errors += 1
        except Exception:  # a bad entry, a bug: the same fallback, with its traceback
            registered = self._ready
            self.registry_errors += 1
            self._log.failure("registry read", "worker registry unreadable; routing keeps the "
                              "last known workers still InService", level=logging.WARNING)
        self._read_distribution(group)
        self._learn_markets({i["InstanceId"] for i in self._instances})
        self._ready = [w for w in routable(registered) if w.worker_id in in_service]
        self._see_notices({w.worker_id for w in registered if w.draining},
                          {i["InstanceId"] for i in self._instances})
        self._draining = (self._noticed & in_service) - {w.worker_id for w in self._ready}
        self._track_unregistered(in_service - {w.worker_id for w in self._ready}
                                 - self._draining)

    def _read_distribution(self, group: dict[str, Any]) -> None:
        dist = group.get("MixedInstancesPolicy", {}).get("InstancesDistribution")
        if dist is None:
            self.on_demand_base = self.on_demand_percent = None
            return
        self.on_demand_base = int(dist.get("OnDemandBaseCapacity", 0))
        self.on_demand_percent = int(dist.get("OnDemandPercentageAboveBaseCapacity", 100))

    def _learn_markets(self, members: set[str]) -> None:
        """Which instances are spot (`InstanceMarkets`), so the cost meter bills them at the
        spot price and `spot_vms` counts them exactly. A failed call is logged and counted;
        the instances are asked about again at the next poll."""
        if self.markets is None:
            return
        try:
            self.markets.learn(members)
        except Exception:  # ClientError, a timeout: the fleet's size must not wait on it
            self.fleet_errors += 1
            self.on_fleet_error("describe_instances")
            self._log.failure("describe instances", "cannot read the market (spot or "
                              "on-demand) of new instances of %s; asked again next poll",
                              self.group, level=logging.WARNING)

    @property
    def spot_ids(self) -> frozenset[str]:
        """The group's instances EC2 says are spot (see `_learn_markets`)."""
        return frozenset() if self.markets is None else self.markets.spot_ids

    def _see_notices(self, marked: set[str], members: set[str]) -> None:
        """One log line and one `on_notice` per worker that turned draining. An instance stays
        noticed while it is in the group: once its worker has drained and left the registry
        it is still InService until reclaimed, and must stay DRAINING (not BOOTING, which the
        policy would count as capacity on its way)."""
        for wid in sorted((marked & members) - self._noticed):
            self.notices += 1
            log.warning("worker %s is draining (spot interruption notice): routers send it "
                        "nothing new; the group replaces the instance", wid)
            self.on_notice(wid)
        self._noticed = (self._noticed | marked) & members

    def _track_unregistered(self, ids: set[str]) -> None:
        now_s = self.clock()
        self._unregistered_since = {iid: self._unregistered_since.get(iid, now_s)
                                    for iid in ids}
        for iid, since_s in self._unregistered_since.items():
            if now_s - since_s >= self.unregistered_warn_s:
                self._log.failure(f"unregistered {iid}", "instance %s has been InService for "
                                  "%.0f s without its worker registering: billed, not counted "
                                  "as capacity; its container is probably dead", iid,
                                  now_s - since_s, level=logging.WARNING, exc_info=False)

    def refresh_workers(self) -> None:
        """A follower's poll: the registered workers, no AWS call (module docs)."""
        self._instances = []
        try:
            self._ready = routable(self.registry.alive())
        except RedisUnavailableError:  # logged by the link: keep the last view
            self.registry_errors += 1
        except Exception:
            self.registry_errors += 1
            self._log.failure("registry read", "worker registry unreadable; routing keeps the "
                              "last known workers", level=logging.WARNING)

    @staticmethod
    def state_of(inst: dict[str, Any], registered: set[str],
                 draining: frozenset[str] | set[str] = frozenset()) -> VMState:
        """InService is READY only with a registered worker that is not draining (module
        docs): a draining one is DRAINING, an unregistered one BOOTING."""
        state = STATE_OF.get(inst["LifecycleState"], VMState.PROVISIONING)
        if state == VMState.READY and inst["InstanceId"] in draining:
            return VMState.DRAINING
        if state == VMState.READY and inst["InstanceId"] not in registered:
            return VMState.BOOTING
        return state

    def start(self, initial: int) -> int:
        """Adopt the group as it is: a router restart must not resize a serving fleet."""
        self.poll()
        return 0

    def set_target(self, n: int, on_demand_vms: int | None = None) -> None:
        """Desired capacity `n`; with spot on, `on_demand_vms` of them on-demand (module docs)."""
        n = max(0, min(n, self.max_vms))
        self.poll()
        base = self.base_for(n, on_demand_vms)
        if base is not None and self.on_demand_base is None:
            self._mix_failed(f"group {self.group} has no mixed instances policy (spot is on: "
                             f"infra/terraform/workers.tf makes one)")
            base = None
        if base is not None and self.clock() < self._mix_retry_at:
            base = None  # a failed update is retried after `mix_retry_s`, not every tick
        mix_changes = base is not None and (base, 0) != (self.on_demand_base,
                                                         self.on_demand_percent)
        if n == self.desired and not mix_changes:
            return
        if n < self.desired:
            self.protect_busy()
        if base is not None and mix_changes and self._update_group(n, base):
            return
        if n != self.desired:
            self.client.set_desired_capacity(AutoScalingGroupName=self.group,
                                             DesiredCapacity=n, HonorCooldown=False)
            self.desired = n

    def base_for(self, n: int, on_demand_vms: int | None) -> int | None:
        """The on-demand base for a target of `n` (None: leave the group's own, as with spot
        off, or with no VM to mix)."""
        if not self.spot_enabled or n == 0:
            return None
        return self.max_vms if on_demand_vms is None else max(0, min(on_demand_vms, n))

    def _update_group(self, n: int, base: int) -> bool:
        """Desired capacity and on-demand base in one call; False (counted, logged) if it
        failed, for the caller to set the capacity alone."""
        try:
            self.client.update_auto_scaling_group(
                AutoScalingGroupName=self.group, DesiredCapacity=n,
                MixedInstancesPolicy={"InstancesDistribution": {
                    "OnDemandBaseCapacity": base, "OnDemandPercentageAboveBaseCapacity": 0}})
        except Exception:  # ClientError, a timeout: the size must not wait on the mix
            self._mix_failed(f"setting the on-demand base of {self.group} to {base} (of {n}) "
                             f"failed; setting its desired capacity alone", exc_info=True)
            return False
        log.info("group %s: desired capacity %d, on-demand base %d (spot above it)",
                 self.group, n, base)
        self.desired, self.on_demand_base, self.on_demand_percent = n, base, 0
        return True

    def _mix_failed(self, message: str, *, exc_info: bool = False) -> None:
        self.fleet_errors += 1
        self.on_fleet_error("update_auto_scaling_group")
        self._mix_retry_at = self.clock() + self.mix_retry_s
        self._log.failure("update group", "%s; retried in %.0f s", message, self.mix_retry_s,
                          level=logging.WARNING, exc_info=exc_info)

    @property
    def spot_vms(self) -> int:
        """Booting or ready instances that are spot: as EC2 says once every one's market is
        known, else by the group's own rule (the first `OnDemandBaseCapacity` on-demand, all
        above it spot at 0 %), which is exact once the group has converged to its
        distribution, as it does by replacing instances."""
        alive = [i["InstanceId"] for i in self._instances
                 if STATE_OF.get(i["LifecycleState"]) in (VMState.BOOTING, VMState.READY)]
        markets = self.markets
        if markets is not None and all(markets.known(iid) for iid in alive):
            return sum(markets.is_spot(iid) for iid in alive)
        if self.on_demand_base is None or self.on_demand_percent != 0:
            return 0
        return max(0, len(alive) - self.on_demand_base)

    def protect_busy(self) -> None:
        """Protect instances with requests in flight from scale-in; unprotect the rest."""
        in_service = [i for i in self._instances if i["LifecycleState"] == "InService"]
        busy = {i["InstanceId"] for i in in_service if self.in_flight(i["InstanceId"]) > 0}
        for protect in (True, False):
            ids = [i["InstanceId"] for i in in_service
                   if (i["InstanceId"] in busy) == protect
                   and bool(i.get("ProtectedFromScaleIn")) != protect]
            if ids:
                self.client.set_instance_protection(
                    InstanceIds=ids, AutoScalingGroupName=self.group,
                    ProtectedFromScaleIn=protect)

    def counts(self) -> dict[VMState, int]:
        out = dict.fromkeys(VMState, 0)
        for state in self.vm_states().values():
            out[state] += 1
        return out

    def vm_states(self) -> dict[str, VMState]:
        registered = {w.worker_id for w in self._ready}
        return {inst["InstanceId"]: self.state_of(inst, registered, self._draining)
                for inst in self._instances}

    def ready_workers(self) -> list[WorkerInfo]:
        """In-service instances whose worker heartbeats, as of the last `poll` (per tick: the
        router calls this per request and must not hit AWS or Redis each time)."""
        return list(self._ready)

    def close(self) -> None:
        return None
