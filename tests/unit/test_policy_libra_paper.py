"""`libra-paper` step by step against a timeline worked by hand from ../shared/LIBRA.md.

The example uses round numbers so every step can be checked on paper: 16 req/s per VM, a 3 s VM
boot, a 5 s period and alpha = mu = 0.5 (the algorithm is the same at 0.2; only the arithmetic
is uglier).
"""

from __future__ import annotations

import numpy as np
import pytest

from libra.core.policies import LibraPaper
from libra.core.policies.base import Observation
from libra.core.route_rule import Route, choose_route
from simulator.config import ServerlessConfig, SimConfig, VMConfig
from simulator.engine import Simulation

pytestmark = pytest.mark.unit

BASE = Observation(now_s=0.0, arrivals_per_s=(), arrivals_per_min=(), vms_ready=0,
                   vms_booting=0, vms_draining=0, vm_capacity_rps=16.0,
                   serverless_in_flight=0, sla_s=1.0, vm_boot_s=3.0)

# second t (1-based, as the authors count): requests x_t; then what LIBRA.md's rules give.
#  t   x    dev (old mean)              mean        decision / quota
#  1   32   0                           32          share 32 -> 2 VMs > 0 in force: quota held 0
#  2   64   .5*0  + .5*|32-64| = 16     48
#  3   16   .5*16 + .5*|48-16| = 24     32
#  4   16   .5*24 + .5*|32-16| = 20     24          1 + 3 s: quota = int(.8 * 32) = 25
#  5   48   .5*20 + .5*|24-48| = 22     36
#  6   96   .5*22 + .5*|36-96| = 41     66          share int(66+41) = 107 -> 7 VMs: held 25
#  7   0    .5*41 + .5*66     = 53.5    33
#  8   0    .5*53.5 + .5*33   = 43.25   16.5
#  9   0    .5*43.25 + .5*16.5 = 29.875 8.25        6 + 3 s: quota = int(.8 * 107) = 85
# 10   0    14.9375 + 4.125   = 19.0625 4.125
# 11   0    9.53125 + 2.0625  = 11.59375 2.0625     share int(13.65625) = 13 -> 1 VM <= 7:
#                                                    quota int(.8 * 13) = 10 at once
XS = [32, 64, 16, 16, 48, 96, 0, 0, 0, 0, 0]
EXPECTED = {  # t: (target_vms, quota, mean, dev)
    1: (2, 0, 32.0, 0.0),
    2: (2, 0, 48.0, 16.0),
    3: (2, 0, 32.0, 24.0),
    4: (2, 25, 24.0, 20.0),
    5: (2, 25, 36.0, 22.0),
    6: (7, 25, 66.0, 41.0),
    7: (7, 25, 33.0, 53.5),
    8: (7, 25, 16.5, 43.25),
    9: (7, 85, 8.25, 29.875),
    10: (7, 85, 4.125, 19.0625),
    11: (1, 10, 2.0625, 11.59375),
}


def test_libra_paper_follows_the_hand_worked_timeline() -> None:
    policy = LibraPaper(alpha=0.5, mu=0.5, period_s=5.0)
    # the simulator's tick at now_s = t sees seconds 1..t (here: the authors' epochs)
    for t in range(1, len(XS) + 1):
        d = policy.decide(BASE.replace(now_s=float(t), arrivals_per_s=tuple(XS[:t])))
        target, quota, mean, dev = EXPECTED[t]
        assert (d.target_vms, d.vm_quota_rps) == (target, quota), t
        assert d.signals["mean_rps"] == pytest.approx(mean), t
        assert d.signals["dev_rps"] == pytest.approx(dev), t
        assert d.vm_quota_by_count
        assert d.spill_to_serverless


def test_libra_paper_defaults_are_the_papers_and_hold_without_samples() -> None:
    policy = LibraPaper()
    assert (policy.alpha, policy.mu, policy.k, policy.rho, policy.period_s) == \
        (0.2, 0.2, 1.0, 0.8, 300.0)
    d = policy.decide(BASE.replace(vms_booting=10))
    assert d.hold
    assert d.target_vms == 10
    assert d.vm_quota_rps == 0


def test_libra_paper_does_not_restart_a_running_cold_start_counter() -> None:
    # period 2 s < boot 3 s: a second scale-out at t=3 comes while the first counter (raise at
    # t=4) runs; the quota is raised at t=4 with the share of that moment, as the authors' code
    # does (its counter is not reset).
    policy = LibraPaper(alpha=1.0, mu=1.0, period_s=2.0)
    xs = [16, 16, 64, 64]
    quotas = [policy.decide(BASE.replace(now_s=float(t), arrivals_per_s=tuple(xs[:t])))
              .vm_quota_rps for t in range(1, 5)]
    # t=1: share 16 (1 VM) held at 0; t=3: share int(64 + 48) = 112 (7 VMs); t=4: raised
    assert quotas == [0.0, 0.0, 0.0, int(0.8 * 112)]


def test_count_based_quota_queues_inside_the_quota_and_spills_outside_it() -> None:
    queued = choose_route(vm_wait_s=0.5, expected_service_s=1.0, sla_budget_s=1.0,
                          quota_left=True, spill_to_serverless=True, use_vms=True,
                          queue_timeout_s=30.0, quota_by_count=True)
    over_quota = choose_route(vm_wait_s=0.0, expected_service_s=1.0, sla_budget_s=1.0,
                              quota_left=False, spill_to_serverless=True, use_vms=True,
                              queue_timeout_s=30.0, quota_by_count=True)
    sla_aware = choose_route(vm_wait_s=0.5, expected_service_s=1.0, sla_budget_s=1.0,
                             quota_left=True, spill_to_serverless=True, use_vms=True,
                             queue_timeout_s=30.0)
    assert (queued, over_quota, sla_aware) == (Route.VM, Route.SERVERLESS, Route.SERVERLESS)


# The paper's setting in small: one VM of 16 slots x 1 s, no cold start, arrivals in 1 s epochs.
PAPER_SMALL = SimConfig(
    vm=VMConfig(concurrency=16, service_time_mean_s=1.0, service_time_dist="deterministic",
                service_time_cv=0.0, boot_s=3.0, min_billing_s=0.0, price_per_hour_usd=0.1,
                queue_timeout_s=1e9),
    serverless=ServerlessConfig(memory_mb=512, service_time_mean_s=1.0,
                                service_time_dist="deterministic", service_time_cv=0.0,
                                cold_start_s=0.0, invoke_overhead_s=0.0),
)


def test_in_paper_epochs_the_quota_share_is_served_within_its_second() -> None:
    # 20 requests at the start of every second for 40 s: the tick at t = 1 sees second 0,
    # wants 2 VMs (share 20) and holds the quota at 0 until t = 1 + 3 s, when the VMs launched
    # at t = 1 are ready; from then on int(.8 * 20) = 16 requests of each second go to VMs.
    # Every request takes exactly 1 s: none is late.
    arrivals = np.repeat(np.arange(40.0), 20)
    sim = Simulation(arrivals, 40.0, LibraPaper(period_s=300.0), PAPER_SMALL).run()
    latency, route = sim.rec.arrays()

    assert sim.rec.late == 0
    assert np.allclose(latency, 1.0)
    seconds = arrivals.astype(int)
    per_second_vm = np.bincount(seconds[route == Route.VM], minlength=40)
    assert per_second_vm[:4].tolist() == [0, 0, 0, 0]  # quota 0 until the VMs are ready
    assert set(per_second_vm[4:].tolist()) == {16}  # then exactly the quota, each second


def test_count_based_quota_above_capacity_queues_and_is_late() -> None:
    # A quota larger than what the ready VMs hold: the extra requests wait a whole second on the
    # VM (the paper's unbounded FIFO) instead of spilling, so they miss the 1 s SLA.
    from libra.core.policies.base import Decision
    from tests.helpers import Scripted

    policy = Scripted(((0.0, Decision(target_vms=1, reason="1 VM, quota 20", vm_quota_rps=20.0,
                                      vm_quota_by_count=True)),))
    arrivals = np.repeat(np.arange(3.0), 20)
    sim = Simulation(arrivals, 3.0, policy, PAPER_SMALL, initial_vms=1).run()
    latency, route = sim.rec.arrays()

    assert (route == Route.VM).all()
    assert int((latency > 1.0 + 1e-6).sum()) == sim.rec.late > 0
