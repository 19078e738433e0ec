"""The local provisioner: VM workers as child processes of this machine (the embedded default).

`set_target(n)` launches `handlers.worker` processes or drains them. A launched worker is
BOOTING until its process reports ready *and* `boot_delay_s` has passed since launch (the
platform's `vm.boot_s`: the delay emulates a VM's boot, so the controller meets the lag it plans
with, as on EC2 and in the simulator; the initial fleet of `start` has no such delay); it is
then READY and heartbeats into the registry routers read. Scale-in takes booting workers first
(they serve nobody yet), then the ready worker with the fewest requests in flight (as the router
counts them, `in_flight`); it is DRAINING
(SIGTERM: it finishes what it has) until its process exits, then TERMINATED. A worker that dies
on its own is dropped and counted in `crashes`; the next `set_target` replaces it.

Registry writes (heartbeats, removals) are best effort: with a shared Redis down they fail, are
counted in `registry_errors` and logged (rate-limited), and `poll()` goes on, so the controller
keeps ticking through an outage; the heartbeat after Redis returns registers the workers again
(a removal that failed is ended by the entry's TTL).

Spot, emulated: `interrupt(vm_id)` gives a worker a spot interruption notice (SIGUSR1, what the
instance metadata is on EC2). The worker stops taking work and says so on stdout; the next
`poll` makes it DRAINING (not capacity, removed from the registry, logged once, `on_notice`),
so the router sends it nothing new and the next `set_target` launches a replacement, booting
for `boot_delay_s` as any new VM. The instance is "reclaimed" (SIGTERM) once the worker reports
its requests in flight done, or `notice_s` after the notice, whichever comes first. There is no
spot price locally: `on_demand_vms` is accepted and ignored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from libra.core.lifecycle import VMState
from libra.serving.logs import RateLimitedLog
from libra.serving.provision.worker_process import WorkerProcess
from libra.serving.state.redis_link import RedisUnavailableError
from libra.serving.state.registry import MemoryRegistry, WorkerInfo, WorkerRegistry

log = logging.getLogger(__name__)


@dataclass(eq=False)
class LocalVM:
    process: WorkerProcess
    launched_s: float
    vm_id: str
    boot_delay_s: float
    state: VMState = VMState.BOOTING
    info: WorkerInfo | None = None
    ready_s: float | None = None
    stopped_s: float | None = None
    noticed_s: float | None = None  # when its spot interruption notice was seen


class LocalProvisioner:
    """Worker processes as the VM fleet (see module docs)."""

    name = "local"

    def __init__(self, model: Path, *, log_dir: Path, boot_delay_s: float = 0.0,
                 worker_args: tuple[str, ...] = (), max_vms: int = 8,
                 registry: WorkerRegistry | None = None, max_batch_size: int = 32,
                 in_flight: Callable[[str], int] = lambda worker_id: 0,
                 notice_s: float = 120.0,
                 on_notice: Callable[[str], None] = lambda worker_id: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.model = model
        self.log_dir = log_dir
        self.boot_delay_s = boot_delay_s
        self.worker_args = worker_args
        self.max_vms = max_vms
        self.registry = registry or MemoryRegistry()
        self.max_batch_size = max_batch_size
        self.in_flight = in_flight
        self.clock = clock
        self.vms: list[LocalVM] = []
        self.launched = 0
        self.crashes = 0
        self.target = 0
        self.registry_errors = 0
        self.notice_s = notice_s
        self.on_notice = on_notice
        self.notices = 0
        self._log = RateLimitedLog(log)

    def _active(self) -> list[LocalVM]:
        return [v for v in self.vms if v.state in (VMState.BOOTING, VMState.READY)]

    def start(self, initial: int) -> int:
        """The initial fleet is ready as soon as its processes are (no emulated boot): it
        stands for a fleet already running, as the simulator's initial VMs are ready at t=0."""
        self._set_target(initial, boot_delay_s=0.0)
        return self.target

    def set_target(self, n: int, on_demand_vms: int | None = None) -> None:
        self._set_target(n, boot_delay_s=self.boot_delay_s)

    def interrupt(self, vm_id: str) -> None:
        """A spot interruption notice to the worker of `vm_id` (module docs); KeyError if no
        such VM runs."""
        vm = next((v for v in self.vms if v.vm_id == vm_id), None)
        if vm is None:
            raise KeyError(f"no local VM {vm_id!r}; running: "
                           f"{', '.join(v.vm_id for v in self.vms) or 'none'}")
        vm.process.interrupt()

    def _set_target(self, n: int, *, boot_delay_s: float) -> None:
        self.target = n = max(0, min(n, self.max_vms))
        self.poll()
        active = self._active()
        for _ in range(n - len(active)):
            self._launch(boot_delay_s)
        surplus = len(active) - n
        if surplus > 0:
            order = sorted(active, key=lambda v: (
                v.state == VMState.READY, self.in_flight(v.info.worker_id) if v.info else 0))
            for vm in order[:surplus]:
                self._stop(vm)

    def _launch(self, boot_delay_s: float) -> None:
        self.launched += 1
        name = f"vm{self.launched}"
        process = WorkerProcess(self.model, log_dir=self.log_dir, name=name,
                                extra_args=("--max-batch-size", str(self.max_batch_size),
                                            *self.worker_args))
        self.vms.append(LocalVM(process, self.clock(), name, boot_delay_s))

    def _stop(self, vm: LocalVM) -> None:
        vm.state = VMState.DRAINING
        vm.stopped_s = self.clock()
        if vm.info is not None:
            self._unregister(vm.info)
        vm.process.drain()

    def _register(self, info: WorkerInfo) -> None:
        try:
            self.registry.heartbeat(info)
        except RedisUnavailableError:  # logged by the link; re-registered when Redis is back
            self.registry_errors += 1
        except Exception:  # routing here uses our own list: the registry is for other routers
            self.registry_errors += 1
            self._log.failure("registry heartbeat", "worker registry heartbeat for %s failed; "
                              "the controller goes on", info.worker_id, level=logging.WARNING)

    def _unregister(self, info: WorkerInfo) -> None:
        try:
            self.registry.remove(info.worker_id)
        except RedisUnavailableError:  # logged by the link; the entry's TTL ends it
            self.registry_errors += 1
        except Exception:  # the entry's TTL ends it
            self.registry_errors += 1
            self._log.failure("registry remove", "removing %s from the worker registry "
                              "failed; its entry expires by TTL", info.worker_id,
                              level=logging.WARNING)

    def poll(self) -> None:
        now = self.clock()
        for vm in list(self.vms):
            alive = vm.process.proc.poll() is None
            if alive and vm.state != VMState.DRAINING and vm.process.noticed:
                self._on_notice(vm, now)
            if vm.state == VMState.DRAINING:
                if alive and vm.noticed_s is not None and vm.stopped_s is None and (
                        vm.process.drained or now - vm.noticed_s >= self.notice_s):
                    vm.stopped_s = now  # reclaimed: what it had is done, or time is up
                    vm.process.drain()
                if not alive:
                    vm.state = VMState.TERMINATED
                    vm.process.close()
                continue
            if not alive:
                self.crashes += vm.state in (VMState.BOOTING, VMState.READY)
                vm.state = VMState.TERMINATED
                if vm.info is not None:
                    self._unregister(vm.info)
                vm.process.close()
                continue
            if (vm.state == VMState.BOOTING and vm.process.ready
                    and now - vm.launched_s >= vm.boot_delay_s):
                vm.state = VMState.READY
                vm.ready_s = now
                assert vm.process.url is not None
                assert vm.process.worker_id is not None
                vm.info = WorkerInfo(vm.process.worker_id, vm.process.url,
                                     max_batch_size=self.max_batch_size)
            if vm.state == VMState.READY and vm.info is not None:
                self._register(vm.info)
        self.vms = [v for v in self.vms if v.state != VMState.TERMINATED]

    def _on_notice(self, vm: LocalVM, now: float) -> None:
        vm.state = VMState.DRAINING
        vm.noticed_s = now
        self.notices += 1
        wid = vm.info.worker_id if vm.info else vm.process.worker_id or vm.vm_id
        log.warning("worker %s (%s) got a spot interruption notice: draining, routed around; "
                    "a replacement is launched at the next target", wid, vm.vm_id)
        if vm.info is not None:
            self._unregister(vm.info)
        self.on_notice(wid)

    def counts(self) -> dict[VMState, int]:
        out = dict.fromkeys(VMState, 0)
        for vm in self.vms:
            out[vm.state] += 1
        return out

    def vm_states(self) -> dict[str, VMState]:
        return {vm.vm_id: vm.state for vm in self.vms}

    def ready_workers(self) -> list[WorkerInfo]:
        return [v.info for v in self.vms if v.state == VMState.READY and v.info is not None]

    def close(self) -> None:
        for vm in self.vms:
            vm.process.drain()
        for vm in self.vms:
            if vm.process.wait(10) is None:
                vm.process.kill()
            vm.process.close()
        self.vms.clear()
