"""Short-horizon demand forecasts for policies: a damped-trend level times a seasonal profile.

Pure functions over plain sequences (numpy only; no model to train offline, no deep learning):

- `holt_damped`: Holt's linear method with a damped trend (Gardner & McKenzie, 1985) over
  per-bucket rates. Its smoothing constants are not fitted to any trace: each call picks them
  from a small grid by one-step-ahead squared error over the series it is given, so a steady
  series gets a slow level and a trending one a responsive trend.
- `seasonal_index`: the rate of each bucket of the period (a day) relative to the period's mean,
  from whole periods already seen, smoothed over neighbouring buckets; 1.0 until one period has
  been seen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_ALPHAS = (0.1, 0.3, 0.5, 0.8)
_BETAS = (0.0, 0.05, 0.15, 0.3)
DAMPING = 0.9  # the usual damped-trend factor: a trend fades over ~10 buckets


@dataclass(frozen=True)
class HoltFit:
    level: float
    trend: float
    alpha: float
    beta: float
    rmse: float

    def forecast(self, steps: float) -> float:
        """The level `steps` buckets ahead (the damped trend's sum), never below 0."""
        if steps <= 0:
            return max(0.0, self.level)
        damped = DAMPING * (1 - DAMPING**steps) / (1 - DAMPING)
        return max(0.0, self.level + damped * self.trend)


def holt_damped(series: Sequence[float]) -> HoltFit | None:
    """Fit Holt's damped trend to `series` (oldest first); None with fewer than 3 points.

    Plain Python floats rather than numpy scalars: the same IEEE operations in the same order
    (a test checks the fits are bit-identical to the numpy-scalar loop), several times faster.
    """
    y = [float(x) for x in series]
    if len(y) < 3:
        return None
    first, rest = y[0], y[1:]
    best: HoltFit | None = None
    for alpha in _ALPHAS:
        keep_level = 1 - alpha
        for beta in _BETAS:
            keep_trend = (1 - beta) * DAMPING
            level, trend, sse = first, y[1] - first, 0.0
            for x in rest:
                predicted = level + DAMPING * trend
                sse += (x - predicted) ** 2
                new_level = alpha * x + keep_level * predicted
                trend = beta * (new_level - level) + keep_trend * trend
                level = new_level
            rmse = math.sqrt(sse / (len(y) - 1))
            if best is None or rmse < best.rmse - 1e-12:
                best = HoltFit(level, trend, alpha, beta, rmse)
    return best


def seasonal_index(buckets: Sequence[float], period: int, smooth: int = 7) -> np.ndarray:
    """Per bucket of the period, its mean rate over the whole periods seen / the overall mean.

    `buckets` starts at a period boundary. Ones where no whole period is there yet. Each index is
    smoothed by a centred moving average over `smooth` buckets (wrapping around the period), so a
    one-off burst in the profile day does not become a daily forecast.
    """
    y = np.asarray(buckets, dtype=np.float64)
    whole = y.size // period
    if whole == 0 or period <= 0:
        return np.ones(max(period, 0))
    profile = y[: whole * period].reshape(whole, period).mean(axis=0)
    if smooth > 1:
        half = smooth // 2
        padded = np.concatenate([profile[-half:], profile, profile[:half]])
        profile = np.convolve(padded, np.ones(smooth) / smooth, mode="valid")[:period]
    mean = profile.mean()
    if mean <= 0:
        return np.ones(period)
    return profile / mean
