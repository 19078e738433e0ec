"""The simulated VM fleet: lifecycle, a FIFO queue over every ready slot, per-second billing.

All VMs are alike, so the fleet keeps one heap of `(free_at_s, vm_id)` slot entries: the earliest
free slot of any VM serves the next request (join the shortest queue). A VM that starts draining or
is cancelled is marked, and its entries are dropped lazily when they reach the top, which keeps the
per-request cost at one heap operation.

Spot VMs (`SimVM.spot`) are the same VMs at another price, which AWS may reclaim: a notice
(`notice`) takes one out of service like a drain, and it is billed until it is reclaimed.
"""

from __future__ import annotations

import heapq
import math
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
    spot: bool = False
    interrupt_at_s: float = math.inf  # when AWS's notice comes (spot only; inf: never)
    noticed_at_s: float | None = None  # when it got the notice (it is reclaimed notice_s later)


class VMFleet:
    """VMs from launch to termination, and the slot heap requests are queued on."""

    def __init__(self, cfg: VMConfig, *, spot_price_per_s_usd: float | None = None) -> None:
        self.cfg = cfg
        self.spot_price_per_s_usd = spot_price_per_s_usd
        self.spot_counts = dict.fromkeys(VMState, 0)  # of `counts`, the spot VMs
        self.interruptions = 0  # spot notices received
        self.vms: list[SimVM] = []
        self.slots: list[tuple[float, int]] = []
        self.usable: list[bool] = []  # by vm_id: may its slots take new requests?
        self.in_service: list[SimVM] = []  # booting or ready, oldest first
        self.counts = dict.fromkeys(VMState, 0)

    # -- lifecycle -------------------------------------------------------------------------------
    def launch(self, now_s: float, *, ready_now: bool = False, spot: bool = False) -> SimVM:
        """Start a VM; its slots join the heap free from the moment it will be ready."""
        ready_at_s = now_s if ready_now else now_s + self.cfg.boot_s
        vm = SimVM(len(self.vms), now_s, ready_at_s, busy_until_s=ready_at_s, spot=spot)
        vm.state = VMState.READY if ready_now else VMState.BOOTING
        self.vms.append(vm)
        self.in_service.append(vm)
        self.usable.append(True)
        self.counts[vm.state] += 1
        if spot:
            self.spot_counts[vm.state] += 1
        for _ in range(self.cfg.concurrency):
            heapq.heappush(self.slots, (ready_at_s, vm.vm_id))
        return vm

    def mark_ready(self, vm: SimVM) -> None:
        if vm.state is VMState.BOOTING:
            self._move(vm, VMState.READY)

    def stop_one(self, now_s: float, *, spot: bool | None = None) -> SimVM | None:
        """Take one VM out of service: cancel the newest booting VM, else drain the newest ready
        (of one kind only when `spot` says which).

        Returns the VM that now drains (its termination is due at `busy_until_s`), or None when a
        booting VM was cancelled (terminated at once) or no VM was left. A booting VM that already
        has requests queued on it (VM-only policies queue on booting VMs) drains instead, so
        nothing accepted is lost.
        """
        for state in (VMState.BOOTING, VMState.READY):
            for pos in range(len(self.in_service) - 1, -1, -1):
                vm = self.in_service[pos]
                if vm.state is not state or (spot is not None and vm.spot is not spot):
                    continue
                del self.in_service[pos]
                self.usable[vm.vm_id] = False
                if state is VMState.BOOTING and vm.busy_until_s <= vm.ready_at_s:
                    self.terminate(vm, now_s)
                    return None
                self._move(vm, VMState.DRAINING)
                return vm
        return None

    def notice(self, vm: SimVM, now_s: float) -> None:
        """A spot interruption notice: the VM takes no new request from now on, finishes what it
        has and leaves the fleet's count (it drains until AWS reclaims it)."""
        self.in_service.remove(vm)
        self.usable[vm.vm_id] = False
        vm.noticed_at_s = now_s
        self.interruptions += 1
        self._move(vm, VMState.DRAINING)

    def spot_to_interrupt(self) -> SimVM | None:
        """The spot VM an interruption from a file hits: the oldest ready, else the oldest
        booting (None when no spot VM is in service)."""
        for state in (VMState.READY, VMState.BOOTING):
            for vm in self.in_service:
                if vm.spot and vm.state is state:
                    return vm
        return None

    def terminate(self, vm: SimVM, now_s: float) -> None:
        self.usable[vm.vm_id] = False
        vm.terminated_at_s = now_s
        self._move(vm, VMState.TERMINATED)

    def _move(self, vm: SimVM, state: VMState) -> None:
        self.counts[vm.state] -= 1
        if vm.spot:
            self.spot_counts[vm.state] -= 1
            self.spot_counts[state] += 1
        vm.state = state
        self.counts[state] += 1

    @property
    def spot_active(self) -> int:
        """Spot VMs ready or booting."""
        return self.spot_counts[VMState.READY] + self.spot_counts[VMState.BOOTING]

    @property
    def active(self) -> int:
        return self.counts[VMState.READY] + self.counts[VMState.BOOTING]

    # -- billing ---------------------------------------------------------------------------
    def cost_usd(self, end_s: float) -> tuple[float, float]:
        """(cost, billed VM-s): per VM from launch, with EC2's minimum, running ones to end_s
        (`libra.core.billing`, the live meter's formula); spot VMs at the spot price."""
        split = self.cost_by_kind_usd(end_s)
        return split["on_demand"][0] + split["spot"][0], split["on_demand"][1] + split["spot"][1]

    def cost_by_kind_usd(self, end_s: float) -> dict[str, tuple[float, float]]:
        """{"on_demand": (cost, billed VM-s), "spot": (cost, billed VM-s)}."""
        def lives(spot: bool) -> list[tuple[float, float | None]]:
            return [(vm.launched_at_s, vm.terminated_at_s) for vm in self.vms if vm.spot is spot]

        spot_price = self.spot_price_per_s_usd if self.spot_price_per_s_usd is not None \
            else self.cfg.price_per_s_usd
        return {"on_demand": vm_fleet_cost_usd(lives(False), end_s, self.cfg),
                "spot": vm_fleet_cost_usd(lives(True), end_s, self.cfg,
                                          price_per_s_usd=spot_price)}
