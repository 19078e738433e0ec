"""Spot VMs in the simulator: the interruption process (seeded, at its rate, from a file), bad
files, billing at the spot price, and the notice -> drain -> replacement timeline on a tiny trace,
with serverless carrying the gap; and a replay that sleeps through quiet ticks still matches one
that runs every tick when notices come.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from libra.core.billing import vm_fleet_cost_usd
from libra.core.lifecycle import VMState
from libra.core.platform import SpotConfig
from libra.core.policies.base import Decision, Observation
from simulator.config import SLA_TOLERANCE_S, ServerlessConfig, SimConfig, VMConfig
from simulator.engine import Simulation
from simulator.runner import run_policies
from simulator.spot import Interruptions, SpotFileError, read_interruptions
from simulator.tracegen import synthetic_diurnal, write_per_second
from simulator.traces import open_trace
from simulator.vm_fleet import VMFleet

pytestmark = pytest.mark.unit


# -- the interruption process ---------------------------------------------------------------------
def test_interruption_times_depend_on_seed_and_vm_only() -> None:
    spot = SpotConfig(enabled=True, interruptions_per_instance_hour=0.5)
    a, b = Interruptions(spot, seed=3), Interruptions(spot, seed=3)
    # drawn in another order, the same VM gets the same time
    times_a = [a.draw_for(vm, 10.0) for vm in range(50)]
    times_b = [b.draw_for(vm, 10.0) for vm in reversed(range(50))][::-1]
    assert times_a == times_b
    assert all(t > 10.0 for t in times_a)
    other = Interruptions(spot, seed=4)
    assert [other.draw_for(vm, 10.0) for vm in range(50)] != times_a


def test_interruptions_come_at_the_configured_rate() -> None:
    per_hour = 0.2 / 24.0  # 20% per instance-day
    source = Interruptions(SpotConfig(enabled=True, interruptions_per_instance_hour=per_hour), 0)
    lives_s = np.array([source.draw_for(vm, 0.0) for vm in range(20_000)])
    mean_s = 3600.0 / per_hour
    assert abs(lives_s.mean() / mean_s - 1.0) < 0.03  # 20,000 exponentials: sd 0.7%
    # memoryless: of those alive after one mean life, the rest live another mean life
    alive = lives_s[lives_s > mean_s] - mean_s
    assert abs(alive.mean() / mean_s - 1.0) < 0.06
    # a day at 20% per instance-day interrupts about 1 - exp(-0.2) of the instances
    assert abs((lives_s < 86_400).mean() - (1 - math.exp(-0.2))) < 0.01


def test_no_rate_means_no_interruption() -> None:
    source = Interruptions(SpotConfig(enabled=True, interruptions_per_instance_hour=0.0), 0)
    assert source.draw_for(0, 0.0) == math.inf
    assert source.next_file_time_s() == math.inf


def test_a_file_of_times_is_read_sorted_with_comments_and_repeats(tmp_path: Path) -> None:
    path = tmp_path / "storm.txt"
    path.write_text("# a storm\n900\n\n300.5  # one\n900\n900\n")
    assert read_interruptions(path) == [300.5, 900.0, 900.0, 900.0]
    source = Interruptions(SpotConfig(enabled=True, interruptions_file=str(path)), 0)
    assert source.draw_for(0, 0.0) == math.inf  # the file, not the rate, decides
    assert source.next_file_time_s() == 300.5
    assert source.take_file_times(300.0) == []
    assert source.take_file_times(1000.0) == [300.5, 900.0, 900.0, 900.0]
    assert source.next_file_time_s() == math.inf


@pytest.mark.parametrize(("text", "line", "why"), [
    ("10\nten\n", 2, "'ten' is not a time in seconds"),
    ("10\n\n# fine\n-5\n", 4, "'-5': a time must be a finite number >= 0"),
    ("nan\n", 1, "a time must be a finite number"),
    ("1 2\n", 1, "not a time in seconds"),
])
def test_a_bad_line_is_an_error_naming_file_and_line(tmp_path: Path, text: str, line: int,
                                                     why: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(SpotFileError, match=f"^{re.escape(str(path))}:{line}: ") as err:
        read_interruptions(path)
    assert why in str(err.value)
    assert err.value.line == line


def test_a_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SpotFileError, match=r"nope\.txt: cannot read"):
        Interruptions(SpotConfig(enabled=True, interruptions_file=str(tmp_path / "nope.txt")), 0)


# -- billing -------------------------------------------------------------------------------------
def test_spot_vms_are_billed_per_second_with_the_minimum_at_the_spot_price() -> None:
    vm = VMConfig()
    spot_s = 0.2104 / 3600
    # 30 s billed as 60 s, 1000 s as 1000 s, a running one to the end (now 2000 s)
    cost, billed = vm_fleet_cost_usd([(0.0, 30.0), (100.0, 1100.0), (1500.0, None)], 2000.0, vm,
                                     price_per_s_usd=spot_s)
    assert billed == 60.0 + 1000.0 + 500.0
    assert cost == pytest.approx(billed * spot_s)
    fleet = VMFleet(vm, spot_price_per_s_usd=spot_s)
    od = fleet.launch(0.0, ready_now=True)
    sp = fleet.launch(0.0, spot=True)
    fleet.terminate(sp, 10.0)  # interrupted while booting: still the minimum
    fleet.terminate(od, 100.0)
    split = fleet.cost_by_kind_usd(200.0)
    assert split["on_demand"] == pytest.approx((100.0 * vm.price_per_s_usd, 100.0))
    assert split["spot"] == pytest.approx((60.0 * spot_s, 60.0))
    assert fleet.cost_usd(200.0) == pytest.approx(
        (100.0 * vm.price_per_s_usd + 60.0 * spot_s, 160.0))


# -- the timeline of one interruption -------------------------------------------------------------
class TwoSpotVMs:
    """Holds two VMs, both spot (a hand-written policy: the engine's part alone)."""

    name: ClassVar[str] = "two-spot"

    def decide(self, obs: Observation) -> Decision:
        return Decision(target_vms=2, reason="two spot VMs", on_demand_vms=0)


def _tiny(tmp_path: Path, interruptions: str) -> tuple[Simulation, np.ndarray]:
    """30 req/s evenly for 900 s; a VM carries 20 req/s (1 slot, 50 ms), so two carry it all
    and one leaves 10 req/s to serverless (a 0.1 s cold start: the SLA holds)."""
    path = tmp_path / "interruptions.txt"
    path.write_text(interruptions)
    cfg = SimConfig(
        vm=VMConfig(concurrency=1, service_time_mean_s=0.05, service_time_dist="deterministic",
                    boot_s=120.0),
        serverless=ServerlessConfig(cold_start_s=0.1, service_time_dist="deterministic"),
        spot=SpotConfig(enabled=True, interruptions_file=str(path)),
    )
    arrivals = (np.arange(30 * 900) + 0.5) / 30.0
    sim = Simulation(arrivals, 900.0, TwoSpotVMs(), cfg, keep_requests=True).run()
    return sim, arrivals


def test_a_notice_drains_the_vm_and_serverless_carries_the_gap_until_the_replacement(
        tmp_path: Path) -> None:
    sim, arrivals = _tiny(tmp_path, "300.4\n")
    vms = sim.fleet.vms
    assert [(vm.spot, vm.launched_at_s) for vm in vms] == [(True, 0.0), (True, 0.0),
                                                           (True, 301.0)]
    hit, kept, new = vms
    # noticed at the first tick after the notice, reclaimed two minutes after the notice
    assert hit.noticed_at_s == 301.0
    assert hit.terminated_at_s == pytest.approx(420.4)
    assert hit.busy_until_s <= 301.0 + 0.05 + 1e-9  # took nothing after the notice
    assert kept.state is VMState.READY
    assert new.state is VMState.READY
    assert new.ready_at_s == 421.0
    assert sim.fleet.interruptions == 1
    latency, route = sim.rec.arrays()
    sls = route == 1
    # serverless: while both VMs boot, then only between the notice and the replacement
    assert sls[(arrivals >= 121) & (arrivals < 301)].sum() == 0
    gap = (arrivals >= 301) & (arrivals < 421)
    assert sls[gap].mean() == pytest.approx(1 / 3, abs=0.01)  # one VM of two missing
    assert sls[arrivals >= 422].sum() == 0
    # nothing late: serverless covered the gap (the kept VM queues up to the SLA's edge)
    assert (latency <= 1.0 + SLA_TOLERANCE_S).all()
    # billing: the interrupted VM until it is reclaimed, its replacement from the notice
    spot_s = sim.cfg.spot.price_per_s_usd
    assert sim.fleet.cost_by_kind_usd(900.0)["spot"] == pytest.approx(
        ((420.4 + 900.0 + 599.0) * spot_s, 420.4 + 900.0 + 599.0))


def test_a_storm_takes_several_vms_at_once_and_a_notice_with_no_spot_vm_is_missed(
        tmp_path: Path) -> None:
    sim, arrivals = _tiny(tmp_path, "300\n300\n300\n")
    assert sim.fleet.interruptions == 2
    assert sim.spot_missed == 1
    _, route = sim.rec.arrays()
    # no VM at all until a second before the replacements are ready (a booting VM takes what
    # it can finish inside the SLA once ready)
    gap = (arrivals >= 300) & (arrivals < 419)
    assert route[gap].min() == 1
    assert sim.fleet.counts[VMState.READY] == 2


# -- determinism and tick skipping with notices ---------------------------------------------------
def test_rate_driven_replays_are_deterministic_and_skipping_quiet_ticks_changes_nothing(
        tmp_path: Path) -> None:
    path = write_per_second(tmp_path / "day.txt",
                            synthetic_diurnal(days=0.1, mean_rps=300.0, seed=3).counts)
    cfg = SimConfig(spot=SpotConfig(enabled=True, interruptions_per_instance_hour=1.0))
    stream = open_trace(path, seed=1)
    rows = {}
    for skip in (False, True):
        runs = run_policies(stream, None, ["libra", "libra-forecast", "mark"], cfg,
                            keep_requests=False, record_ticks=False, skip_quiet=skip)
        rows[skip] = json.dumps([dataclasses.asdict(r.result) for r in runs], sort_keys=True)
    assert rows[True] == rows[False]
    libra = json.loads(rows[True])[0]
    assert libra["spot_interruptions"] >= 3  # notices did come
    assert libra["spot_share_pct"] > 50.0
    assert json.loads(rows[True])[2]["spot_share_pct"] == 0.0  # mark asks for no spot
