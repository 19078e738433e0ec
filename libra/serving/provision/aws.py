"""The AWS provisioner: an EC2 Auto Scaling group as the VM fleet (boto3).

`set_target(n)` calls `set_desired_capacity` (no cooldown: the policy already has hysteresis).
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
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from libra.core.lifecycle import VMState
from libra.serving.logs import RateLimitedLog
from libra.serving.state.redis_link import RedisUnavailableError
from libra.serving.state.registry import WorkerInfo, WorkerRegistry

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
                 unregistered_warn_s: float = 600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if client is None:
            import boto3

            client = boto3.client("autoscaling", region_name=region)
        self.client = client
        self.group = group
        self.registry = registry
        self.max_vms = max_vms
        self.in_flight = in_flight
        self._instances: list[dict[str, Any]] = []
        self._ready: list[WorkerInfo] = []
        self._unregistered_since: dict[str, float] = {}  # InService, no heartbeat, since when
        self.unregistered_warn_s = unregistered_warn_s
        self.clock = clock
        self.desired = 0
        self.registry_errors = 0
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
        self._ready = [w for w in registered if w.worker_id in in_service]
        self._track_unregistered(in_service - {w.worker_id for w in self._ready})

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
            self._ready = self.registry.alive()
        except RedisUnavailableError:  # logged by the link: keep the last view
            self.registry_errors += 1
        except Exception:
            self.registry_errors += 1
            self._log.failure("registry read", "worker registry unreadable; routing keeps the "
                              "last known workers", level=logging.WARNING)

    @staticmethod
    def state_of(inst: dict[str, Any], registered: set[str]) -> VMState:
        """InService is READY only with a registered worker (module docs)."""
        state = STATE_OF.get(inst["LifecycleState"], VMState.PROVISIONING)
        if state == VMState.READY and inst["InstanceId"] not in registered:
            return VMState.BOOTING
        return state

    def start(self, initial: int) -> int:
        """Adopt the group as it is: a router restart must not resize a serving fleet."""
        self.poll()
        return 0

    def set_target(self, n: int) -> None:
        n = max(0, min(n, self.max_vms))
        self.poll()
        if n == self.desired:
            return
        if n < self.desired:
            self.protect_busy()
        self.client.set_desired_capacity(AutoScalingGroupName=self.group, DesiredCapacity=n,
                                         HonorCooldown=False)
        self.desired = n

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
        return {inst["InstanceId"]: self.state_of(inst, registered) for inst in self._instances}

    def ready_workers(self) -> list[WorkerInfo]:
        """In-service instances whose worker heartbeats, as of the last `poll` (per tick: the
        router calls this per request and must not hit AWS or Redis each time)."""
        return list(self._ready)

    def close(self) -> None:
        return None
