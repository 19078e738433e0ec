"""The trace a replay reads, and how per-bin counts become arrival times.

Shared by the readers (`simulator/traces.py`) and the arrival streams (`simulator/arrivals.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["SPREADS", "Spread", "Trace", "spread_counts"]

SPREADS = ("poisson", "uniform")
Spread = Literal["poisson", "uniform"]


# eq=False: the generated __eq__ would compare arrays element-wise and raise on `bool(...)`.
@dataclass(frozen=True, eq=False)
class Trace:
    """Arrival times of one request trace, ready to replay.

    ``arrivals_s`` is float64, sorted ascending, in seconds from the trace start (>= 0) and
    read-only, so one loaded trace can be shared by every simulated policy without copies.
    ``duration_s`` is the span the trace covers (``n_minutes * 60`` for a per-minute file, the
    first-to-last span for per-request files); it is >= the last arrival.
    """

    name: str
    arrivals_s: np.ndarray
    duration_s: float
    source: str

    def __post_init__(self) -> None:
        arrivals = np.asarray(self.arrivals_s, dtype=np.float64)
        if arrivals.ndim != 1:
            raise ValueError(f"arrivals_s must be one-dimensional, got shape {arrivals.shape}")
        # A read-only view: the caller's own array stays writable, ours cannot drift.
        arrivals = arrivals.view()
        arrivals.flags.writeable = False
        object.__setattr__(self, "arrivals_s", arrivals)
        object.__setattr__(self, "duration_s", float(self.duration_s))
        _check_trace_invariants(arrivals, self.duration_s)

    def __len__(self) -> int:
        return int(self.arrivals_s.shape[0])

    def per_second_counts(self) -> np.ndarray:
        """Requests per whole second over ``ceil(duration_s)`` seconds (int64).

        Second ``i`` counts arrivals in ``[i, i + 1)``; an arrival exactly at a whole-second
        ``duration_s`` (a per-request trace ends on its last arrival) is counted in the last second.
        """
        n_seconds = math.ceil(self.duration_s)
        if len(self) and n_seconds == 0:
            n_seconds = 1  # a single instant still occupies one second
        if n_seconds == 0:
            return np.zeros(0, dtype=np.int64)
        index = np.minimum(self.arrivals_s.astype(np.int64), n_seconds - 1)
        return np.bincount(index, minlength=n_seconds).astype(np.int64)

    @property
    def mean_rate_per_s(self) -> float:
        """Average requests per second over the trace span (0 for an empty span)."""
        return len(self) / self.duration_s if self.duration_s > 0 else 0.0


def _check_trace_invariants(arrivals_s: np.ndarray, duration_s: float) -> None:
    if not math.isfinite(duration_s) or duration_s < 0:
        raise ValueError(f"duration_s must be finite and >= 0, got {duration_s}")
    if arrivals_s.size == 0:
        return
    if not np.all(np.isfinite(arrivals_s[[0, -1]])) or arrivals_s[0] < 0:
        raise ValueError(f"arrivals_s must be finite and >= 0, first is {arrivals_s[0]}")
    if arrivals_s.size > 1 and not bool(np.all(arrivals_s[1:] >= arrivals_s[:-1])):
        raise ValueError("arrivals_s must be sorted ascending")
    if arrivals_s[-1] > duration_s:
        raise ValueError(
            f"duration_s ({duration_s}) must be >= the last arrival ({arrivals_s[-1]})"
        )



def spread_counts(
    counts: np.ndarray, bin_s: float, *, spread: Spread = "poisson",
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Sorted arrival times (float64 s) for ``counts[i]`` requests in ``[i*bin_s, (i+1)*bin_s)``.

    ``"poisson"`` draws each bin's arrivals uniformly inside the bin and sorts them: a Poisson
    process conditioned on the bin's count, so every count is conserved exactly. ``"uniform"``
    spaces them evenly at ``(j + 0.5) * bin_s / count``. Vectorised (one ``np.repeat`` and one
    sort), because a day of Azure Functions is ~10 M arrivals.
    """
    counts = np.asarray(counts)
    if counts.ndim != 1:
        raise ValueError(f"counts must be one-dimensional, got shape {counts.shape}")
    if counts.size and not np.array_equal(counts, np.round(counts)):
        raise ValueError("counts must be whole numbers (requests per bin)")
    if counts.size and counts.min() < 0:
        raise ValueError("counts must be >= 0")
    if not bin_s > 0:
        raise ValueError(f"bin_s must be > 0, got {bin_s}")
    if spread not in SPREADS:
        raise ValueError(f"unknown spread {spread!r}; choose one of {', '.join(SPREADS)}")
    counts = counts.astype(np.int64, copy=False)
    total = int(counts.sum())
    bin_starts_s = np.arange(counts.size, dtype=np.float64) * bin_s
    starts_s = np.repeat(bin_starts_s, counts)
    if spread == "uniform":
        first_index = np.repeat(np.cumsum(counts) - counts, counts)
        rank = np.arange(total, dtype=np.int64) - first_index
        per_bin = np.repeat(counts, counts).astype(np.float64)
        return starts_s + (rank + 0.5) * (bin_s / per_bin)
    if rng is None:
        rng = np.random.default_rng()
    arrivals_s = rng.random(total)
    np.multiply(arrivals_s, bin_s, out=arrivals_s)
    np.add(arrivals_s, starts_s, out=arrivals_s)
    # start + u*bin can round up onto the next bin's start far from 0; pull those back inside.
    np.add(starts_s, bin_s, out=starts_s)
    spilled = arrivals_s >= starts_s
    if spilled.any():
        arrivals_s[spilled] = np.nextafter(starts_s[spilled], -np.inf)
    arrivals_s.sort()
    return arrivals_s
