"""Replay one arrival sequence through several policies, each with a fresh policy object."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from libra.policies import VMStatic, make_policy, policy_class
from libra.policies.base import Policy
from libra.policies.steps import vms_for_rate
from simulator.config import SimConfig
from simulator.engine import Mode, Simulation
from simulator.results import PolicyResult, summarise

DEFAULT_POLICIES = ("vm-static", "vm-reactive", "serverless", "spock", "mark", "libra")


@dataclass
class PolicyRun:
    result: PolicyResult
    sim: Simulation


def peak_rps(arrivals_s: np.ndarray) -> float:
    """The busiest whole second's request count."""
    if len(arrivals_s) == 0:
        return 0.0
    return float(np.bincount(np.floor(arrivals_s).astype(np.int64)).max())


def build_policy(
    name: str, arrivals_s: np.ndarray, cfg: SimConfig, params: Mapping[str, Any] | None = None
) -> Policy:
    """A fresh policy; `vm-static` gets its fleet sized for this trace's peak unless given one."""
    params = dict(params or {})
    if policy_class(name) is VMStatic and "fleet_size" not in params:
        return VMStatic.for_peak(peak_rps(arrivals_s), cfg.vm.capacity_rps, cfg.static_utilisation)
    return make_policy(name, **params)


def initial_fleet(policy: Policy, arrivals_s: np.ndarray, cfg: SimConfig) -> int:
    """VMs already running when the replay starts (see `SimConfig.initial_vms`)."""
    if isinstance(policy, VMStatic):
        return policy.fleet_size
    if policy.name == "serverless":
        return 0
    if cfg.initial_vms != "auto":
        return int(cfg.initial_vms)
    first_minute = int(np.searchsorted(arrivals_s, 60.0))
    return vms_for_rate(first_minute / 60.0, cfg.vm.capacity_rps)


def _advance(bar: tqdm, tick_s: float) -> Callable[[float], None]:
    return lambda _now_s: bar.update(tick_s)


def run_policies(
    arrivals_s: np.ndarray,
    duration_s: float,
    names: Sequence[str] = DEFAULT_POLICIES,
    cfg: SimConfig | None = None,
    *,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    mode: Mode = "batched",
    progress: bool = False,
    keep_requests: bool = True,
) -> list[PolicyRun]:
    """Replay the same arrivals through each named policy and summarise each run.

    With `keep_requests=False` each run's per-request arrays are freed once summarised (the
    decision stream stays, for plots): a 24 h trace x 6 policies then fits in memory.
    """
    cfg = cfg or SimConfig()
    params = params or {}
    for name in names:
        policy_class(name)  # fail on a bad name before any work
    runs: list[PolicyRun] = []
    for name in names:
        policy = build_policy(name, arrivals_s, cfg, params.get(name))
        with tqdm(total=round(duration_s), desc=name, unit="sim-s", disable=not progress,
                  leave=False, mininterval=0.5) as bar:
            sim = Simulation(
                arrivals_s, duration_s, policy, cfg,
                initial_vms=initial_fleet(policy, arrivals_s, cfg),
                mode=mode,
                on_tick=_advance(bar, cfg.tick_s) if progress else None,
            ).run()
        runs.append(PolicyRun(summarise(name, sim), sim))
        if not keep_requests:
            sim.drop_request_data()
    return runs
