"""The simulated VM fleet: lifecycle, a FIFO queue over every ready slot, per-second billing.

All VMs are alike, so the fleet keeps one heap of `(free_at_s, vm_id)` slot entries: the earliest
free slot of any VM serves the next request (join the shortest queue). A VM that starts draining or
is cancelled is marked, and its entries are dropped lazily when they reach the top, which keeps the
per-request cost at one heap operation.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from libra.core.billing import vm_fleet_cost_usd
from libra.core.lifecycle import VMState
from simulator.config import VMConfig


@dataclass
class SimVM:
    vm_id: int
    launched_at_s: float
    ready_at_s: float
    state: VMState = VMState.BOOTING
    busy_until_s: float = 0.0
    terminated_at_s: float | None = None


class VMFleet:
    """VMs from launch to termination, and the slot heap requests are queued on."""

    def __init__(self, cfg: VMConfig) -> None:
        self.cfg = cfg
        self.vms: list[SimVM] = []
        self.slots: list[tuple[float, int]] = []
        self.usable: list[bool] = []  # by vm_id: may its slots take new requests?
        self.in_service: list[SimVM] = []  # booting or ready, oldest first
        self.counts = dict.fromkeys(VMState, 0)

    # -- lifecycle -------------------------------------------------------------------------------
    def launch(self, now_s: float, *, ready_now: bool = False) -> SimVM:
        """Start a VM; its slots join the heap free from the moment it will be ready."""
        ready_at_s = now_s if ready_now else now_s + self.cfg.boot_s
        vm = SimVM(len(self.vms), now_s, ready_at_s, busy_until_s=ready_at_s)
        vm.state = VMState.READY if ready_now else VMState.BOOTING
        self.vms.append(vm)
        self.in_service.append(vm)
        self.usable.append(True)
        self.counts[vm.state] += 1
        for _ in range(self.cfg.concurrency):
            heapq.heappush(self.slots, (ready_at_s, vm.vm_id))
        return vm

    def mark_ready(self, vm: SimVM) -> None:
        if vm.state is VMState.BOOTING:
            self._move(vm, VMState.READY)

    def stop_one(self, now_s: float) -> SimVM | None:
        """Take one VM out of service: cancel the newest booting VM, else drain the newest ready.

        Returns the VM that now drains (its termination is due at `busy_until_s`), or None when a
        booting VM was cancelled (terminated at once) or no VM was left. A booting VM that already
        has requests queued on it (VM-only policies queue on booting VMs) drains instead, so
        nothing accepted is lost.
        """
        for state in (VMState.BOOTING, VMState.READY):
            for pos in range(len(self.in_service) - 1, -1, -1):
                vm = self.in_service[pos]
                if vm.state is not state:
                    continue
                del self.in_service[pos]
                self.usable[vm.vm_id] = False
                if state is VMState.BOOTING and vm.busy_until_s <= vm.ready_at_s:
                    self.terminate(vm, now_s)
                    return None
                self._move(vm, VMState.DRAINING)
                return vm
        return None

    def terminate(self, vm: SimVM, now_s: float) -> None:
        self.usable[vm.vm_id] = False
        vm.terminated_at_s = now_s
        self._move(vm, VMState.TERMINATED)

    def _move(self, vm: SimVM, state: VMState) -> None:
        self.counts[vm.state] -= 1
        vm.state = state
        self.counts[state] += 1

    @property
    def active(self) -> int:
        return self.counts[VMState.READY] + self.counts[VMState.BOOTING]

    # -- billing ---------------------------------------------------------------------------
    def cost_usd(self, end_s: float) -> tuple[float, float]:
        """(cost, billed VM-s): per VM from launch, with EC2's minimum, running ones to end_s
        (`libra.core.billing`, the live meter's formula)."""
        return vm_fleet_cost_usd(((vm.launched_at_s, vm.terminated_at_s) for vm in self.vms),
                                 end_s, self.cfg)
