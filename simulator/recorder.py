"""One recorder for everything a run measures: per-request outcomes and the decision stream.

Entities never print; they report here, stamped with simulated time. `docs/metrics.md` is the
glossary of what each figure means.

Memory stays flat in the trace length: every request's latency is folded into counts and a
latency histogram (log-spaced bins 0.01% wide, so a percentile read from it is within 0.01% of
the exact order statistic), and the per-request arrays are kept only when asked for
(`keep_requests`, for tests and small analyses). The tick log is columnar (numpy arrays, ~100
bytes a tick: 9 MB for a day at 1 s ticks), and only recorded when asked for (`record_ticks`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from libra.core.policies.base import Decision, Observation
from simulator.config import SLA_TOLERANCE_S

# Latency histogram: bin i holds [L0 * R**i, L0 * R**(i+1)); bin 0 also everything below L0.
_HIST_L0_S = 1e-4
_HIST_RATIO = 1.0001
_HIST_TOP_S = 1e5
_HIST_BINS = math.ceil(math.log(_HIST_TOP_S / _HIST_L0_S) / math.log(_HIST_RATIO)) + 1
_INV_LOG_RATIO = 1.0 / math.log(_HIST_RATIO)
_FOLD_EVERY = 1 << 16


@dataclass
class DecisionRow:
    """One controller tick: what the policy saw and what it decided."""

    t_s: float
    arrivals: int
    target_vms: int
    vms_ready: int
    vms_booting: int
    vms_draining: int
    serverless_in_flight: int
    serverless_instances: int
    served_serverless: int
    vm_quota_rps: float | None
    spill: bool
    reason: str
    signals: dict[str, float]
    serverless_warm: int = 0


_INT_COLUMNS = ("arrivals", "arrivals_in_tick", "target_vms", "vms_ready", "vms_booting",
                "vms_draining", "serverless_in_flight", "serverless_instances", "served_serverless",
                "serverless_warm", "spill", "reason")
_FLOAT_COLUMNS = ("t_s", "vm_quota_rps", "policy_eval_s")


class TickLog:
    """The decision stream, one row per controller tick, stored column by column."""

    def __init__(self, capacity: int = 1024) -> None:
        self.n = 0
        self._cap = max(1, capacity)
        self.ints = {name: np.zeros(self._cap, dtype=np.int64) for name in _INT_COLUMNS}
        self.floats = {name: np.zeros(self._cap) for name in _FLOAT_COLUMNS}
        self.signals: dict[str, np.ndarray] = {}
        self.reasons: list[str] = []
        self._reason_ids: dict[str, int] = {}

    def append(self, obs: Observation, decision: Decision, *, arrivals: int,
               serverless_instances: int, served_serverless: int, eval_s: float) -> None:
        if self.n == self._cap:
            self._grow()
        i, ints, floats = self.n, self.ints, self.floats
        ints["arrivals"][i] = arrivals
        ints["target_vms"][i] = decision.target_vms
        ints["vms_ready"][i] = obs.vms_ready
        ints["vms_booting"][i] = obs.vms_booting
        ints["vms_draining"][i] = obs.vms_draining
        ints["serverless_in_flight"][i] = obs.serverless_in_flight
        ints["serverless_instances"][i] = serverless_instances
        ints["served_serverless"][i] = served_serverless
        ints["serverless_warm"][i] = decision.serverless_warm
        ints["spill"][i] = decision.spill_to_serverless
        reason_id = self._reason_ids.get(decision.reason)
        if reason_id is None:
            reason_id = self._reason_ids[decision.reason] = len(self.reasons)
            self.reasons.append(decision.reason)
        ints["reason"][i] = reason_id
        floats["t_s"][i] = obs.now_s
        quota = decision.vm_quota_rps
        floats["vm_quota_rps"][i] = math.nan if quota is None else quota
        floats["policy_eval_s"][i] = eval_s
        for key, value in decision.signals.items():
            column = self.signals.get(key)
            if column is None:
                column = self.signals[key] = np.full(self._cap, math.nan)
            column[i] = value
        self.n += 1

    def _grow(self) -> None:
        self._cap *= 2
        for table in (self.ints, self.floats, self.signals):
            for name, column in table.items():
                fill = math.nan if column.dtype.kind == "f" and table is self.signals else 0
                bigger = np.full(self._cap, fill, dtype=column.dtype)
                bigger[: column.size] = column
                table[name] = bigger

    def fill_arrivals_in_tick(self, per_second: list[int], tick_s: float) -> None:
        """Arrivals in [t, t + tick) for each row t: the requests the row's decision governed."""
        counts = np.asarray(per_second, dtype=np.int64)
        cumulative = np.concatenate([[0], np.cumsum(counts)])
        starts = self.floats["t_s"][: self.n]
        lo = np.clip(np.floor(starts + 1e-9).astype(np.int64), 0, counts.size)
        hi = np.clip(np.floor(starts + tick_s + 1e-9).astype(np.int64), 0, counts.size)
        self.ints["arrivals_in_tick"][: self.n] = cumulative[hi] - cumulative[lo]

    def column(self, name: str) -> np.ndarray:
        """One column, trimmed to the ticks recorded."""
        table = self.ints if name in self.ints else self.floats if name in self.floats \
            else self.signals
        return table[name][: self.n]

    def rows(self) -> list[DecisionRow]:
        """Row objects (for tests and small runs: a day of ticks is better read by column)."""
        ints = {k: v[: self.n].tolist() for k, v in self.ints.items()}
        floats = {k: v[: self.n].tolist() for k, v in self.floats.items()}
        signals = {k: v[: self.n].tolist() for k, v in self.signals.items()}
        out = []
        for i in range(self.n):
            quota = floats["vm_quota_rps"][i]
            out.append(DecisionRow(
                t_s=floats["t_s"][i], arrivals=ints["arrivals"][i],
                target_vms=ints["target_vms"][i], vms_ready=ints["vms_ready"][i],
                vms_booting=ints["vms_booting"][i], vms_draining=ints["vms_draining"][i],
                serverless_in_flight=ints["serverless_in_flight"][i],
                serverless_instances=ints["serverless_instances"][i],
                served_serverless=ints["served_serverless"][i],
                vm_quota_rps=None if math.isnan(quota) else quota,
                spill=bool(ints["spill"][i]), reason=self.reasons[ints["reason"][i]],
                signals={k: v[i] for k, v in signals.items() if not math.isnan(v[i])},
                serverless_warm=ints["serverless_warm"][i],
            ))
        return out


@dataclass
class Recorder:
    """Per-request outcomes folded into counts and a latency histogram, plus the tick log."""

    sla_s: float
    keep_requests: bool = False
    record_ticks: bool = True
    requests: int = 0
    served_vm: int = 0
    served_serverless: int = 0
    late: int = 0
    completed: int = 0
    histogram: np.ndarray = field(init=False, repr=False)
    ticks: TickLog | None = field(init=False, repr=False)
    _pending: list[float] = field(default_factory=list, repr=False)
    _latency: list[float] = field(default_factory=list, repr=False)
    _route: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.histogram = np.zeros(_HIST_BINS, dtype=np.int64)
        self.ticks = TickLog() if self.record_ticks else None

    @property
    def dropped(self) -> int:
        return self.requests - self.served_vm - self.served_serverless

    def record(self, latency_s: list[float], route: list[int]) -> None:
        """Outcomes of consecutive requests dispatched together (latency NaN: dropped)."""
        n = len(latency_s)
        n_vm = route.count(0)
        self.requests += n
        self.served_vm += n_vm
        self.served_serverless += route.count(1)
        self._pending.extend(latency_s)
        if len(self._pending) >= _FOLD_EVERY:
            self.fold()
        if self.keep_requests:
            self._latency.extend(latency_s)
            self._route.extend(route)

    def fold(self) -> None:
        """Fold the pending latencies into the late count and the histogram."""
        if not self._pending:
            return
        latency = np.asarray(self._pending)
        self._pending.clear()
        served = latency[~np.isnan(latency)]
        self.late += int(np.count_nonzero(served > self.sla_s + SLA_TOLERANCE_S))
        with np.errstate(divide="ignore"):
            index = np.log(np.maximum(served, _HIST_L0_S) * (1.0 / _HIST_L0_S)) * _INV_LOG_RATIO
        index = np.minimum(index.astype(np.int64), _HIST_BINS - 1)
        self.histogram += np.bincount(index, minlength=_HIST_BINS)

    def percentiles_s(self, qs: tuple[float, ...]) -> list[float]:
        """Nearest-rank percentiles of the served requests' latency (NaN with none served)."""
        self.fold()
        cumulative = np.cumsum(self.histogram)
        total = int(cumulative[-1]) if cumulative.size else 0
        if total == 0:
            return [math.nan] * len(qs)
        out = []
        for q in qs:
            rank = max(1, math.ceil(q / 100.0 * total - 1e-9))
            i = int(np.searchsorted(cumulative, rank, side="left"))
            out.append(_HIST_L0_S * _HIST_RATIO ** (i + 0.5))
        return out

    def on_complete(self, i: int) -> None:
        self.completed += 1

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(latency_s, route) per request in arrival order; needs `keep_requests`."""
        if not self.keep_requests:
            raise RuntimeError("per-request arrays were not kept; run with keep_requests=True")
        return np.asarray(self._latency, dtype=np.float64), np.asarray(self._route, dtype=np.int8)

    @property
    def decisions(self) -> list[DecisionRow]:
        return self.ticks.rows() if self.ticks is not None else []

    def drop_requests(self) -> None:
        self._latency, self._route = [], []
