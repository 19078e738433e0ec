"""The AWS provisioner: an EC2 Auto Scaling group as the VM fleet (boto3).

`set_target(n)` calls `set_desired_capacity` (no cooldown: the policy already has hysteresis).
Before a scale-in, instances whose workers have requests in flight are protected from scale-in
(`set_instance_protection`) and the others unprotected, so the group terminates idle ones.
Lifecycle comes from `describe_auto_scaling_groups`: Pending* is BOOTING, InService READY,
Terminating* DRAINING. Ready workers are discovered by registration: an in-service instance
counts as ready for routing once its worker heartbeats into the shared registry (Redis) with
the instance id as its worker id.

The registry is read once per `poll`. If Redis cannot be read, routing keeps the workers it knew
that are still InService (the group's own word, fresh from AWS) rather than dropping the whole
fleet from routing while it is billed: a worker that did die fails over to serverless per
request. The failure is counted in `registry_errors` and logged (rate-limited).
"""

from __future__ import annotations

import logging
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
                 in_flight: Callable[[str], int] = lambda worker_id: 0) -> None:
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
        for inst in self._instances:
            out[STATE_OF.get(inst["LifecycleState"], VMState.PROVISIONING)] += 1
        return out

    def vm_states(self) -> dict[str, VMState]:
        return {inst["InstanceId"]: STATE_OF.get(inst["LifecycleState"], VMState.PROVISIONING)
                for inst in self._instances}

    def ready_workers(self) -> list[WorkerInfo]:
        """In-service instances whose worker heartbeats, as of the last `poll` (per tick: the
        router calls this per request and must not hit AWS or Redis each time)."""
        return list(self._ready)

    def close(self) -> None:
        return None
