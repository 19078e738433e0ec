"""Replay one arrival stream through several policies, each with a fresh policy object.

Policies are independent runs, so with `workers > 1` they run in separate processes (forked:
each child reads the same stream object the parent opened, nothing is pickled but the results).
Each run reports its own wall time and its process's peak resident memory.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from libra.core.policies import VMStatic, make_policy, policy_class
from libra.core.policies.base import Policy
from libra.core.policies.steps import vms_for_rate
from libra.forked import fork_map
from simulator.arrivals import ArrayStream, ArrivalStream
from simulator.config import SimConfig
from simulator.engine import Mode, Simulation, _as_stream
from simulator.recorder import TickLog
from simulator.results import PolicyResult, summarise
from simulator.trace_base import Trace

# The policies that usually take longest per simulated second (a fit, a sizing or quota work
# per interval), slowest first; the rest follow in the order asked.
_SLOW_FIRST = {name: rank for rank, name in enumerate(("libra-forecast", "libra", "libra-paper",
                                                       "mark"))}
# Arrivals spread once and shared by every policy's process up to this many (8 bytes each).
SHARED_ARRIVALS_MAX = 2_000_000

DEFAULT_POLICIES = ("vm-static", "vm-reactive", "serverless", "spock", "mark", "libra-paper",
                    "libra", "libra-forecast")


@dataclass
class PolicyRun:
    """One policy's result, its decision stream (if recorded) and what the run cost to compute."""

    result: PolicyResult
    ticks: TickLog | None
    tick_s: float
    wall_s: float = 0.0
    peak_rss_mb: float = 0.0
    cpu_s: float = 0.0  # this process's CPU time for the run (independent of other load)
    sim: Simulation | None = None  # only for runs in this process


def build_policy(
    name: str, stream: ArrivalStream, cfg: SimConfig, params: Mapping[str, Any] | None = None
) -> Policy:
    """A fresh policy; `vm-static` gets its fleet sized for this trace's peak unless given one."""
    params = dict(params or {})
    if policy_class(name) is VMStatic and "fleet_size" not in params:
        return VMStatic.for_peak(stream.peak_rps(), cfg.vm.capacity_rps, cfg.static_utilisation)
    return make_policy(name, **params)


def initial_fleet(policy: Policy, stream: ArrivalStream, cfg: SimConfig) -> int:
    """VMs running (or booting) when the replay starts (see `SimConfig.initial_vms`)."""
    if isinstance(policy, VMStatic):
        return policy.fleet_size
    if policy.name == "serverless":
        return 0
    if cfg.initial_vms != "auto":
        return int(cfg.initial_vms)
    return vms_for_rate(stream.first_seconds_rate_rps(60.0), cfg.vm.capacity_rps)


def _advance(bar: tqdm, tick_s: float) -> Callable[[float], None]:
    # the controller may sleep through quiet ticks: move the bar to the tick, not by one
    return lambda now_s: bar.update(now_s + tick_s - bar.n)


@dataclass(frozen=True)
class _Job:
    stream: ArrivalStream
    cfg: SimConfig
    params: Mapping[str, Mapping[str, Any]]
    mode: Mode
    keep_requests: bool
    record_ticks: bool
    trace_name: str
    preset: str
    progress: bool = False
    skip_quiet: bool = True


def _run_one(job: _Job, name: str) -> PolicyRun:
    started, cpu_started = time.perf_counter(), time.process_time()
    policy = build_policy(name, job.stream, job.cfg, job.params.get(name))
    with tqdm(total=round(job.stream.duration_s), desc=name, unit="sim-s",
              disable=not job.progress, leave=False, mininterval=0.5) as bar:
        sim = Simulation(
            job.stream, None, policy, job.cfg,
            initial_vms=initial_fleet(policy, job.stream, job.cfg),
            mode=job.mode,
            on_tick=_advance(bar, job.cfg.tick_s) if job.progress else None,
            keep_requests=job.keep_requests,
            record_ticks=job.record_ticks,
            skip_quiet=job.skip_quiet,
        ).run()
    result = summarise(name, sim, trace=job.trace_name, preset=job.preset)
    return PolicyRun(result, sim.rec.ticks, job.cfg.tick_s, time.perf_counter() - started,
                     _peak_rss_mb(), time.process_time() - cpu_started, sim)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _detached(run: PolicyRun) -> PolicyRun:
    """What a child sends back: SimPy state does not pickle; the result and the tick log do."""
    run.sim = None
    return run


def run_policies(
    arrivals: np.ndarray | ArrivalStream | Trace,
    duration_s: float | None = None,
    names: Sequence[str] = DEFAULT_POLICIES,
    cfg: SimConfig | None = None,
    *,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    mode: Mode = "batched",
    progress: bool = False,
    keep_requests: bool = True,
    record_ticks: bool = True,
    workers: int = 1,
    trace_name: str = "",
    preset: str = "",
    skip_quiet: bool = True,
) -> list[PolicyRun]:
    """Replay the same arrivals through each named policy and summarise each run.

    `keep_requests=False` keeps no per-request arrays (memory flat in the trace length);
    `record_ticks=False` keeps no per-tick decision stream either (no plot, timeline or
    decisions file then). `workers > 1` runs that many policies at once in forked processes
    (their `sim` is then None). `skip_quiet=False` makes the controller run every tick even
    where the policy promised nothing changes (the reference the skipping is tested against).
    """
    cfg = cfg or SimConfig()
    params = params or {}
    for name in names:
        policy_class(name)  # fail on a bad name before any work
    stream = _shared_arrivals(_as_stream(arrivals, duration_s), len(names))
    job = _Job(stream, cfg, params, mode, keep_requests, record_ticks,
               trace_name or stream.name, preset, progress and workers <= 1, skip_quiet)
    for name in names:
        build_policy(name, stream, cfg, params.get(name))  # bad parameters fail here, too
    # a fresh process per policy, so each run's peak memory is its own; the slow ones start
    # first so that no slow one is left running alone at the end, results in the order asked
    order = sorted(range(len(names)), key=lambda i: _SLOW_FIRST.get(names[i], len(_SLOW_FIRST)))
    runs = fork_map(lambda name: _run_one(job, name), [names[i] for i in order], workers,
                    in_child=lambda name: _detached(_run_one(job, name)))
    by_position = dict(zip(order, runs, strict=True))
    return [by_position[i] for i in range(len(names))]


def _shared_arrivals(stream: ArrivalStream, n_policies: int) -> ArrivalStream:
    """Make a streamed trace's arrivals once for all policies when they are few (a week at
    1 req/s: 0.6 M, 5 MB), instead of once per policy (spreading counts, or parsing a log
    file again): forked children share the array, and the arrivals are the very same
    (`materialize` joins the chunks the engine would replay). Longer traces stay streamed, so
    memory stays flat in their length."""
    if n_policies < 2 or isinstance(stream, ArrayStream) or \
            stream.n_requests > SHARED_ARRIVALS_MAX:
        return stream
    shared = ArrayStream.of(stream.materialize())
    shared.name, shared.source = stream.name, stream.source
    # the same per-second counts as the original (vm-static's peak, the initial fleet), even
    # where epochs moved arrivals out of the second a count file gave them
    shared._per_second = stream.per_second_counts()
    return shared


def default_workers() -> int:
    """Both cores of the development machine (all the cores this process may use)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
