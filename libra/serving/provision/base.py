"""The provisioner interface: converge the fleet to a target size, report it, list ready VMs."""

from __future__ import annotations

from typing import Protocol

from libra.core.lifecycle import VMState
from libra.serving.state.registry import WorkerInfo


class Provisioner(Protocol):
    name: str

    def start(self, initial: int) -> int:
        """Bring up the fleet a router starts with; returns the VMs it launched (for billing).
        Local: `initial` workers. AWS: none; the group already has its size (set by Terraform
        at creation, by the controller afterwards), so a restarted router adopts it."""

    def set_target(self, n: int, on_demand_vms: int | None = None) -> None:
        """Start or stop workers so that ready + booting converges to `n`, `on_demand_vms` of
        them on-demand and the rest spot where the provisioner has spot capacity (None: all
        on-demand; a provisioner without spot ignores it)."""

    def poll(self) -> None:
        """Advance lifecycles (booting -> ready, draining -> terminated); called every tick."""

    def counts(self) -> dict[VMState, int]: ...

    def vm_states(self) -> dict[str, VMState]:
        """Every VM it knows by a stable id, with its state (the cost meter bills each VM from
        when it first appears until it is gone or TERMINATED, as EC2 bills an instance)."""

    def ready_workers(self) -> list[WorkerInfo]: ...

    def close(self) -> None: ...
