"""`libra-forecast`: `libra` planning on a forecast, so VMs boot before the load arrives.

`libra` sizes the fleet for the last `period_s` as it happened; a VM decided now is ready only
`vm_boot_s` later, so on a rise the load arrives first and serverless carries it meanwhile. This
variant folds each second into one-minute buckets and, at every re-sizing, forecasts the rate
over the time the decision will be in force (from now to now + boot + interval) with
`libra.core.policies.forecast`: Holt's damped trend over the last hour of buckets (smoothing
constants picked by one-step error, not fitted to a trace), times the seasonal profile of the
day once a whole day has been seen (so day two boots VMs ahead of day one's morning rise). The
recent window's per-second shape (its bursts) is kept and scaled by forecast / current level,
then the break-even sizing of `libra` applies. Upward only by default (`follow_falls`): when the
forecast falls, the fleet still waits for the load to fall, because a VM given back too early
costs a boot to get back while one kept a few minutes too long costs a few minutes.

The warm serverless pool is scaled by the same ratio, so instances are started ahead of a
predicted rise instead of after the first cold starts.

Still a pure `decide(obs)`: the buckets are the policy's own state, built from `obs`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from libra.core.policies.base import Decision, Observation
from libra.core.policies.forecast import holt_damped, seasonal_index
from libra.core.policies.libra import Libra

_EPS = 1e-9


@dataclass
class LibraForecast(Libra):
    """`libra` sized for the forecast rate over the next boot + interval (see module docs)."""

    name: ClassVar[str] = "libra-forecast"
    bucket_s: int = 60
    fit_buckets: int = 60
    season_s: float = 86400.0
    follow_falls: bool = False
    _buckets: list[float] = field(default_factory=list, init=False, repr=False)
    _bucket_now: float = field(default=0.0, init=False, repr=False)
    _folded_until_s: int = field(default=0, init=False, repr=False)
    _ratio: float = field(default=1.0, init=False, repr=False)
    # memos: the forecast changes only when a bucket closes (once a minute), the seasonal
    # index only when a whole season has been seen; without them a cold start re-fitted the
    # same buckets at every second with an arrival
    _ratio_buckets: int = field(default=-1, init=False, repr=False)
    _forecast_memo: tuple[tuple[int, float], float] | None = field(default=None, init=False,
                                                                   repr=False)
    _season_memo: tuple[int, np.ndarray] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bucket_s < 1 or self.fit_buckets < 3:
            raise ValueError(f"bucket_s ({self.bucket_s}) must be >= 1 and fit_buckets "
                             f"({self.fit_buckets}) >= 3")

    def decide(self, obs: Observation) -> Decision:
        self._fold(obs)
        return super().decide(obs)

    def _fold(self, obs: Observation) -> None:
        """Add each whole second not seen yet to its one-minute bucket (rates in req/s)."""
        now_whole = math.floor(obs.now_s + _EPS)
        new = min(len(obs.arrivals_per_s), now_whole - self._folded_until_s)
        first = now_whole - new
        for offset, x in enumerate(obs.arrivals_per_s[-new:] if new > 0 else ()):
            second = first + offset
            self._bucket_now += x
            if (second + 1) % self.bucket_s == 0:
                self._buckets.append(self._bucket_now / self.bucket_s)
                self._bucket_now = 0.0
        self._folded_until_s = max(self._folded_until_s, now_whole)

    def _forecast_ratio(self, obs: Observation) -> float:
        """Highest forecast rate over the decision's time in force / the current level.

        A function of the closed buckets and the boot delay only, so it is computed once per
        bucket and remembered (the same number each time, fewer fits)."""
        key = (len(self._buckets), obs.vm_boot_s)
        if self._forecast_memo is None or self._forecast_memo[0] != key:
            self._forecast_memo = (key, self._fit_ratio(obs))
        return self._forecast_memo[1]

    def _fit_ratio(self, obs: Observation) -> float:
        recent = self._buckets[-self.fit_buckets:]
        fit = holt_damped(recent)
        if fit is None or fit.level <= 0:
            return 1.0
        horizon_buckets = (obs.vm_boot_s + self.interval_s) / self.bucket_s
        season = round(self.season_s / self.bucket_s)
        index = self._seasonal_index(season) if season > 0 else None
        now_bucket = len(self._buckets)
        base = fit.level / self._season_at(index, season, now_bucket - 1)
        peak = 0.0
        for step in range(1, math.ceil(horizon_buckets) + 1):
            seasonal = self._season_at(index, season, now_bucket - 1 + step)
            trend_part = fit.forecast(step) - fit.level
            peak = max(peak, base * seasonal + trend_part)
        ratio = peak / fit.level
        return ratio if self.follow_falls else max(1.0, ratio)

    def _seasonal_index(self, season: int) -> np.ndarray:
        """`seasonal_index` of the buckets, which changes only when a whole season closes."""
        whole = len(self._buckets) // season
        if self._season_memo is None or self._season_memo[0] != whole:
            self._season_memo = (whole, seasonal_index(self._buckets, season))
        return self._season_memo[1]

    @staticmethod
    def _season_at(index: np.ndarray | None, season: int, bucket: int) -> float:
        if index is None or season <= 0:
            return 1.0
        return max(float(index[bucket % season]), 1e-3)

    def _size(self, obs: Observation) -> int:
        self._ratio = self._forecast_ratio(obs)
        self._ratio_buckets = len(self._buckets)
        size = super()._size(obs)
        self._signals["forecast_ratio"] = self._ratio
        return size

    def _planning_window(self, obs: Observation) -> tuple[float, ...]:
        """The last period's per-second shape, scaled to the forecast level."""
        window = super()._planning_window(obs)
        if abs(self._ratio - 1.0) < 1e-6:
            return window
        return tuple(x * self._ratio for x in window)

    def _warm_scale(self, obs: Observation) -> float:
        return max(1.0, self._ratio)

    def _quiet_cold_ok(self) -> bool:
        # a cold-start sizing sets the ratio from the buckets: no change if it already has
        # (the buckets do not close within the minute a quiet spell is limited to)
        return self._ratio_buckets == len(self._buckets)

    def _scaled(self, count: int) -> float:
        return float(count) if abs(self._ratio - 1.0) < 1e-6 else count * self._ratio
