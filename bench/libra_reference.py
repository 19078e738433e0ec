"""What LIBRA's own simulator would print for a per-second trace, restated to compare with ours.

An independent, per-second re-statement (our code, written from ../shared/LIBRA.md and a reading
of `aliraza0337/LIBRA` @ 53a8044; nothing copied) of the authors' simulator loop for its four
policies: `hybrid` (LIBRA), `serverless` (FaaS), `vm_cloud_max` (MAX, 292 VMs) and `vm_cloud`
with auto-scaling (AUTO). It keeps the authors' rules and quirks, because the point is to predict
their numbers, not to be right:
- 1 s epochs; a VM (m4.large) serves 16 requests per epoch once ready (100 s after launch); one
  FIFO queue for the fleet, served VM by VM; a request served after its arrival epoch is late;
- LIBRA: EWMA mean / deviation every epoch, a decision at epoch 1 and every 300, the quota held
  for a 100-epoch counter after a scale-out; the first `quota` requests of an epoch to the VMs;
- AUTO: after each epoch the fleet's utilisation (booting VMs count as capacity) is recorded;
  with more than 120 samples, the sum of the last 300 divided by 120 (their bug) above 0.7 adds
  10 VMs (at most 292), below 0.3 removes the newest 10 (never below 10), and the history restarts;
- billing: a VM from launch until the first epoch after its last request once told to stop (a VM
  cannot stop before it is ready); `provision_vms` replaces the list of VMs waiting to stop (so a
  VM still waiting is never billed) and VMs waiting at the end are not billed; after the trace
  the queue is served to the end and running VMs billed until then; serverless $8.535e-6 a
  request.

    python bench/libra_reference.py ../shared/traces/libra/wits_logs.txt
    libra-sim --preset libra-ic2e21 --trace ../shared/traces/libra/wits_logs.txt   # ours
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BOOT = 100
PER_VM = 16  # int(8 GB / 512 MB) requests in one 1 s epoch
VM_USD_PER_S = 0.10 / 3600
LAMBDA_USD = 0.0000002 + 0.5 * 1.0 * 0.00001667
MIN_VMS, MAX_VMS = 10, 292


@dataclass
class RefVM:
    ready: int  # the authors' start_time: the first epoch it can serve
    last_used: int
    served_epoch: int = -1
    served: int = 0

    def load(self, epoch: int) -> int:
        return self.served if self.served_epoch == epoch else 0


@dataclass
class RefCloud:
    initial: int
    auto: bool = False
    active: list[RefVM] = field(default_factory=list)
    to_kill: list[RefVM] = field(default_factory=list)
    queue: deque[list[int]] = field(default_factory=deque)  # [arrival epoch, requests]
    history: list[float] = field(default_factory=list)
    vm_seconds: int = 0
    late: int = 0
    served: int = 0

    def __post_init__(self) -> None:
        self.launch(1, self.initial)

    def launch(self, epoch: int, n: int) -> None:
        self.active += [RefVM(epoch + BOOT, epoch + BOOT) for _ in range(n)]

    def provision(self, n: int, epoch: int) -> None:
        if n < len(self.active):
            self.to_kill = self.active[n:]  # replaces any VM still waiting (never billed)
            self.active = self.active[:n]
        else:
            self.launch(epoch, n - len(self.active))

    def bill(self, vm: RefVM, epoch: int) -> None:
        while vm.load(epoch) > 0:
            epoch += 1
        self.vm_seconds += max(0, epoch - vm.ready) + BOOT

    def handle(self, requests: int | None, epoch: int) -> int:
        waiting = []
        for vm in self.to_kill:
            if epoch > vm.last_used:
                self.bill(vm, epoch)
            else:
                waiting.append(vm)
        self.to_kill = waiting
        if requests:
            self.queue.append([epoch, requests])
        for vm in self.active:
            if not self.queue:
                break
            room = PER_VM - vm.load(epoch) if vm.ready <= epoch else -1
            if room <= 0:
                continue
            taken = 0
            while self.queue and taken < room:
                group = self.queue[0]
                n = min(group[1], room - taken)
                taken += n
                if group[0] < epoch:
                    self.late += n
                group[1] -= n
                if group[1] == 0:
                    self.queue.popleft()
            vm.served_epoch, vm.served = epoch, vm.load(epoch) + taken
            vm.last_used = epoch + 1
            self.served += taken
        if self.auto:
            self.auto_scale(epoch)
        return sum(g[1] for g in self.queue)

    def auto_scale(self, epoch: int) -> None:
        capacity = PER_VM * len(self.active)
        self.history.append(sum(vm.load(epoch) for vm in self.active) / capacity)
        if len(self.history) > 120:
            mean = sum(self.history[-300:]) / 120  # the authors' averaging, bug included
            if mean > 0.70:
                if len(self.active) < MAX_VMS:
                    self.launch(epoch, 10)
                self.history = []
            if mean < 0.30:
                if len(self.active) > 10:
                    self.to_kill = self.active[-10:]
                    self.active = self.active[:-10]
                self.history = []


@dataclass
class RefLibra:
    alpha: float = 0.2
    mean: float | None = None
    dev: float = 0.0
    n_vms: int = 0
    in_force: int = 0
    share: int = 0
    quota: int = 0
    waiting: bool = False
    counter: int = 0
    next_update: int = -1

    def step(self, x: int, epoch: int, cloud: RefCloud) -> int:
        """Fold epoch `epoch`'s count, decide if due, return its VM quota."""
        if self.mean is None:
            self.mean, self.dev = float(x), 0.0
        else:
            self.dev = (1 - self.alpha) * self.dev + self.alpha * abs(self.mean - x)
            self.mean = (1 - self.alpha) * self.mean + self.alpha * x
        if epoch in (1, self.next_update):
            self.next_update = epoch + 300
            self.share = int(abs(self.mean + self.dev))
            self.n_vms = math.ceil(self.share / PER_VM)
            cloud.provision(self.n_vms, epoch)
            if self.n_vms > self.in_force:
                self.waiting = True
            else:
                self.in_force, self.quota = self.n_vms, int(self.share * 0.8)
        if self.waiting:
            if self.counter == BOOT:
                self.in_force, self.quota = self.n_vms, int(self.share * 0.8)
                self.waiting, self.counter = False, 0
            else:
                self.counter += 1
        return self.quota


def simulate(counts: np.ndarray, policy: str) -> dict[str, float]:
    """The authors' loop for one policy over per-second counts (epoch t = counts[t - 1])."""
    cloud = RefCloud(initial=MAX_VMS if policy == "MAX" else MIN_VMS, auto=policy == "AUTO")
    libra = RefLibra()
    to_serverless = 0
    epoch = 0
    for epoch, x in enumerate(counts.tolist(), start=1):
        if policy == "FaaS":
            to_serverless += x
        elif policy == "LIBRA":
            to_vms = min(libra.step(x, epoch, cloud), x)
            cloud.handle(to_vms, epoch)
            to_serverless += x - to_vms
        else:
            cloud.handle(x, epoch)
    epoch += 1
    if policy != "FaaS":
        while cloud.handle(None, epoch) > 0:
            epoch += 1
        for vm in cloud.active:
            cloud.bill(vm, epoch)
    vm_usd = 0.0 if policy == "FaaS" else cloud.vm_seconds * VM_USD_PER_S
    sls_usd = to_serverless * LAMBDA_USD
    total = int(counts.sum())
    return {"requests": total, "served_vm": cloud.served, "served_serverless": to_serverless,
            "vm_usd": vm_usd, "serverless_usd": sls_usd, "total_usd": vm_usd + sls_usd,
            "violations": cloud.late, "violation_pct": 100.0 * cloud.late / total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace", type=Path, help="per-second counts, one integer per line")
    args = parser.parse_args()
    counts = np.loadtxt(args.trace, dtype=np.int64, ndmin=1)
    print(f"{args.trace.name}: {int(counts.sum()):,} requests over {counts.size:,} s "
          "(LIBRA's simulator, restated)", file=sys.stderr)
    print("| policy (theirs) | requests | served by VMs | served by serverless | VM $ | "
          "serverless $ | total $ | SLA violations | SLA viol % |")
    print("|---|---|---|---|---|---|---|---|---|")
    for policy in ("MAX", "AUTO", "FaaS", "LIBRA"):
        r = simulate(counts, policy)
        print(f"| {policy} | {r['requests']:,} | {r['served_vm']:,} | "
              f"{r['served_serverless']:,} | {r['vm_usd']:.2f} | {r['serverless_usd']:.2f} | "
              f"{r['total_usd']:.2f} | {r['violations']:,} | {r['violation_pct']:.3f} |")


if __name__ == "__main__":
    main()
