"""Per-request service times, drawn up front from one seeded generator (vectorised)."""

from __future__ import annotations

import math

import numpy as np


def sample_service_times(
    rng: np.random.Generator, n: int, mean_s: float, cv: float, dist: str
) -> np.ndarray:
    """`n` service times with the given mean and coefficient of variation.

    Lognormal by default: GPU and CPU inference times are right-skewed with a hard floor, which a
    lognormal fits better than an exponential; the exponential is there for closed-form checks.
    """
    if dist == "deterministic" or (dist == "lognormal" and cv == 0):
        return np.full(n, mean_s)
    if dist == "exponential":
        return rng.exponential(mean_s, n)
    if dist == "lognormal":
        sigma2 = math.log1p(cv * cv)
        return rng.lognormal(math.log(mean_s) - sigma2 / 2.0, math.sqrt(sigma2), n)
    raise ValueError(
        f"unknown service_time_dist {dist!r}; valid: lognormal, exponential, deterministic"
    )
