"""A seeded synthetic day in the Azure Functions 2019 format, so the project can ship a trace.

The real Azure traces may not be redistributed inside this repository (see ``traces/README.md``
for how to fetch them), yet ``libra-sim`` should run out of the box and tests need a file that is
the same on every machine. This module writes one: the original 2019 invocation-count format
(``HashOwner,HashApp,HashFunction,Trigger,1..1440``, counts per minute), with the three shapes a
cost-aware policy must handle, at the load of a small GPU fleet rather than of one function:

* a **diurnal** swing: ``n_functions - 2`` web functions in one app share a raised-cosine day
  curve with its trough at 04:00 and its peak at 16:00 (``trough_fraction * peak`` .. ``peak``),
  each a little phase-shifted, times a slow log-normal wander (AR(1), ~5 %) as real traffic has;
* one **steady** function (a timer/batch job) at a constant rate, the base a VM fleet should hold;
* one **bursty** on-off function: near zero, then ``bursts_per_day`` bursts of 1-10 minutes that
  lift the aggregate to 3-5x its local rate, the case LIBRA sends to serverless;
* **noise**: every count is a Poisson draw around its expected rate.

With the defaults (``peak_per_min=24000``, ``trough_fraction=0.35``) the aggregate day averages
about 280 requests/s (per-minute ~130/s at night to ~430/s in the afternoon, bursts to
~550-1,750/s) and the file is 33 kB. Everything draws from one ``numpy.random.Generator(seed)``:
the same arguments give a byte-identical file.

Regenerate the shipped sample with ``python -m simulator.tracegen traces/azure.csv``.

Two per-second generators write the LIBRA format (one integer per line: requests in that second;
gzip'd when the name ends in ``.gz``), for what the day above does not show:

* ``synthetic_step``: a flash crowd, ``base_rps`` then a linear ramp to ``factor`` times it
  within ``ramp_s`` (1x to 5x within 60 s by default), held to the end or for ``hold_s``;
* ``synthetic_diurnal``: days of a low-rate server with a day/night swing (a week at 1 req/s
  is the case where replay cost must follow requests, not trace seconds).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["RateTrace", "SyntheticAzure2019", "generate_azure2019", "synthetic_azure2019",
           "synthetic_diurnal", "synthetic_step", "write_per_second"]

MINUTES_PER_DAY = 1440
TROUGH_MINUTE_OF_DAY = 4 * 60  # 04:00; the peak falls 12 h later, at 16:00
OWNER_ID = "owner-libra-synthetic"
STEADY_FUNCTION = "fn-steady"
BURSTY_FUNCTION = "fn-bursty"
WEB_APP = "app-web"

# The steady job carries this share of the trough rate, so the trough is not all diurnal.
STEADY_SHARE_OF_TROUGH = 0.25
# When off, the bursty function still trickles at this share of the day's mean rate.
BURSTY_IDLE_SHARE_OF_MEAN = 0.005
BURST_MINUTES = (1, 10)
BURST_MULTIPLIER = (3.0, 5.0)
# Slow multiplicative wander of the web traffic: log-space AR(1) with this sd and correlation.
WANDER_SD = 0.05
WANDER_CORRELATION = 0.95


@dataclass(frozen=True)
class SyntheticAzure2019:
    """What ``synthetic_azure2019`` made: one row of ids per function, its counts, its bursts."""

    rows: tuple[tuple[str, str, str, str], ...]  # (HashOwner, HashApp, HashFunction, Trigger)
    counts: np.ndarray  # int64, shape (n_functions, minutes)
    bursts: tuple[tuple[int, int, float], ...]  # (first minute index, length in minutes, factor)

    @property
    def total_per_min(self) -> np.ndarray:
        """All functions summed, per minute."""
        return self.counts.sum(axis=0)


def synthetic_azure2019(
    *,
    n_functions: int = 4,
    minutes: int = MINUTES_PER_DAY,
    seed: int = 7,
    peak_per_min: float = 24_000.0,
    trough_fraction: float = 0.35,
    bursts_per_day: float = 8.0,
) -> SyntheticAzure2019:
    """Counts per function and minute, without writing a file (see the module docstring)."""
    _check_arguments(n_functions, minutes, peak_per_min, trough_fraction, bursts_per_day)
    rng = np.random.default_rng(seed)
    minute_index = np.arange(minutes)
    diurnal_per_min = _diurnal_curve(minute_index, peak_per_min, trough_fraction)
    steady_per_min = STEADY_SHARE_OF_TROUGH * trough_fraction * peak_per_min
    mean_per_min = float(diurnal_per_min.mean())

    n_web = n_functions - 2
    web_weights = 0.6 ** np.arange(n_web)
    web_weights /= web_weights.sum()
    web_shifts_min = rng.uniform(-30.0, 30.0, size=n_web)
    expected = np.empty((n_functions, minutes))
    for i in range(n_web):
        shifted = _diurnal_curve(minute_index - web_shifts_min[i], peak_per_min, trough_fraction)
        wander = _log_wander(rng, minutes)
        expected[i] = web_weights[i] * (shifted - steady_per_min) * wander
    expected[n_web] = steady_per_min
    bursts = _place_bursts(rng, minutes, bursts_per_day)
    bursty = np.full(minutes, BURSTY_IDLE_SHARE_OF_MEAN * mean_per_min)
    for first, length, factor in bursts:
        window = slice(first, first + length)
        bursty[window] += (factor - 1.0) * diurnal_per_min[window]
    expected[n_web + 1] = bursty

    rows = tuple(
        [(OWNER_ID, WEB_APP, f"fn-web-{i}", "http") for i in range(n_web)]
        + [(OWNER_ID, "app-batch", STEADY_FUNCTION, "timer"),
           (OWNER_ID, "app-events", BURSTY_FUNCTION, "queue")]
    )
    counts = rng.poisson(expected).astype(np.int64)
    return SyntheticAzure2019(rows=rows, counts=counts, bursts=tuple(bursts))


def generate_azure2019(
    path: str | Path,
    *,
    n_functions: int = 4,
    minutes: int = MINUTES_PER_DAY,
    seed: int = 7,
    peak_per_min: float = 24_000.0,
    trough_fraction: float = 0.35,
    bursts_per_day: float = 8.0,
) -> Path:
    """Write a synthetic day in the original Azure Functions 2019 format; returns the path.

    Ids are readable (``fn-web-0``, ``fn-steady``, ``fn-bursty``; apps ``app-web``,
    ``app-batch``, ``app-events``) so ``load_trace(..., function="fn-bursty")`` reads naturally.
    """
    day = synthetic_azure2019(
        n_functions=n_functions, minutes=minutes, seed=seed, peak_per_min=peak_per_min,
        trough_fraction=trough_fraction, bursts_per_day=bursts_per_day,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["HashOwner", "HashApp", "HashFunction", "Trigger",
                         *(str(m) for m in range(1, minutes + 1))])
        for ids, counts in zip(day.rows, day.counts, strict=True):
            writer.writerow([*ids, *counts.tolist()])
    return path


def _check_arguments(
    n_functions: int, minutes: int, peak_per_min: float, trough_fraction: float,
    bursts_per_day: float,
) -> None:
    if n_functions < 3:
        raise ValueError(f"n_functions must be >= 3 (one steady, one bursty, at least one "
                         f"diurnal), got {n_functions}")
    if minutes < 1:
        raise ValueError(f"minutes must be >= 1, got {minutes}")
    if not (math.isfinite(peak_per_min) and peak_per_min > 0):
        raise ValueError(f"peak_per_min must be > 0, got {peak_per_min}")
    if not 0 < trough_fraction <= 1:
        raise ValueError(f"trough_fraction must be in (0, 1], got {trough_fraction}")
    if bursts_per_day < 0:
        raise ValueError(f"bursts_per_day must be >= 0, got {bursts_per_day}")


def _diurnal_curve(minute: np.ndarray, peak_per_min: float, trough_fraction: float) -> np.ndarray:
    """Raised cosine over the day: the trough at 04:00, the peak at 16:00."""
    phase = 2.0 * np.pi * (minute - TROUGH_MINUTE_OF_DAY) / MINUTES_PER_DAY
    trough = trough_fraction * peak_per_min
    return trough + (peak_per_min - trough) * (1.0 - np.cos(phase)) / 2.0


def _log_wander(rng: np.random.Generator, minutes: int) -> np.ndarray:
    """A mean-one multiplicative wander: exp of a stationary AR(1) with sd ``WANDER_SD``."""
    innovation_sd = WANDER_SD * math.sqrt(1.0 - WANDER_CORRELATION**2)
    shocks = rng.normal(0.0, innovation_sd, size=minutes)
    level = np.empty(minutes)
    level[0] = rng.normal(0.0, WANDER_SD)
    for m in range(1, minutes):
        level[m] = WANDER_CORRELATION * level[m - 1] + shocks[m]
    return np.exp(level - WANDER_SD**2 / 2.0)


def _place_bursts(
    rng: np.random.Generator, minutes: int, bursts_per_day: float
) -> list[tuple[int, int, float]]:
    """Non-overlapping bursts, one per equal slot of the horizon, so they spread over the day."""
    n_bursts = round(bursts_per_day * minutes / MINUTES_PER_DAY)
    if bursts_per_day > 0 and minutes >= 2 * BURST_MINUTES[1]:
        n_bursts = max(n_bursts, 1)
    slot_min = minutes // n_bursts if n_bursts else 0
    if slot_min < 2 * BURST_MINUTES[1]:
        return []
    bursts = []
    for k in range(n_bursts):
        length = int(rng.integers(BURST_MINUTES[0], BURST_MINUTES[1] + 1))
        first = k * slot_min + int(rng.integers(0, slot_min - length))
        factor = float(rng.uniform(*BURST_MULTIPLIER))
        bursts.append((first, length, round(factor, 3)))
    return bursts


@dataclass(frozen=True)
class RateTrace:
    """Per-second counts and the expected rate each was drawn from (Poisson, one per second)."""

    counts: np.ndarray  # int64, one per second
    rate_rps: np.ndarray  # float64, the expected count of each second

    @property
    def duration_s(self) -> int:
        return int(self.counts.size)


def synthetic_step(
    *,
    base_rps: float = 200.0,
    factor: float = 5.0,
    step_at_s: float = 1800.0,
    ramp_s: float = 60.0,
    hold_s: float | None = None,
    duration_s: int = 3600,
    seed: int = 7,
) -> RateTrace:
    """A flash crowd: ``base_rps``, then from ``step_at_s`` a linear ramp to ``factor *
    base_rps`` reached ``ramp_s`` later (0: a sheer step), held for ``hold_s`` (None: to the
    end) and ramped back down as fast. Each second's count is a Poisson draw around the rate
    at the middle of that second, so a 5x step within 60 s is 5x within 60 s in every draw.
    """
    _check_rate_arguments(duration_s, base_rps)
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"factor must be > 0 (5 is a 5x step), got {factor}")
    if not (math.isfinite(step_at_s) and 0 <= step_at_s <= duration_s):
        raise ValueError(f"step_at_s must be within the trace [0, {duration_s}], got {step_at_s}")
    if not (math.isfinite(ramp_s) and ramp_s >= 0):
        raise ValueError(f"ramp_s must be >= 0 seconds, got {ramp_s}")
    if hold_s is not None and not (math.isfinite(hold_s) and hold_s >= 0):
        raise ValueError(f"hold_s must be >= 0 seconds or None (to the end), got {hold_s}")
    mid_s = np.arange(duration_s, dtype=np.float64) + 0.5
    up = _ramp(mid_s - step_at_s, ramp_s)
    if hold_s is not None:
        up = up - _ramp(mid_s - (step_at_s + ramp_s + hold_s), ramp_s)
    rate_rps = base_rps * (1.0 + (factor - 1.0) * up)
    return RateTrace(np.random.default_rng(seed).poisson(rate_rps).astype(np.int64), rate_rps)


def synthetic_diurnal(
    *,
    days: float = 7.0,
    mean_rps: float = 1.0,
    trough_fraction: float = 0.35,
    seed: int = 7,
) -> RateTrace:
    """Days of a low-rate server: the day curve of the Azure sample (trough at 04:00, peak at
    16:00, ``trough_fraction`` of the peak at night) scaled to average ``mean_rps``."""
    if not (math.isfinite(days) and days > 0):
        raise ValueError(f"days must be > 0, got {days}")
    if not 0 < trough_fraction <= 1:
        raise ValueError(f"trough_fraction must be in (0, 1], got {trough_fraction}")
    duration_s = round(days * 86_400)
    _check_rate_arguments(duration_s, mean_rps)
    minute = (np.arange(duration_s, dtype=np.float64) + 0.5) / 60.0
    curve = _diurnal_curve(minute, 1.0, trough_fraction)
    rate_rps = curve * (mean_rps / ((1.0 + trough_fraction) / 2.0))  # the curve's mean is that
    return RateTrace(np.random.default_rng(seed).poisson(rate_rps).astype(np.int64), rate_rps)


def write_per_second(path: str | Path, counts: np.ndarray) -> Path:
    """Counts one per line (the LIBRA per-second format), gzip'd if the name ends in .gz."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(map(str, np.asarray(counts, dtype=np.int64).tolist())) + "\n"
    if path.suffix == ".gz":
        # no name, mtime 0: the same counts give the same bytes whatever the file is called
        with path.open("wb") as raw, \
                gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as handle:
            handle.write(text.encode())
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _ramp(since_s: np.ndarray, ramp_s: float) -> np.ndarray:
    """0 before the ramp, rising linearly to 1 over ``ramp_s`` (a step when 0), 1 after."""
    if ramp_s == 0:
        return (since_s >= 0).astype(np.float64)
    return np.clip(since_s / ramp_s, 0.0, 1.0)


def _check_rate_arguments(duration_s: int, rate_rps: float) -> None:
    if isinstance(duration_s, bool) or int(duration_s) != duration_s or duration_s < 1:
        raise ValueError(f"duration_s must be a whole number of seconds >= 1, got {duration_s}")
    if not (math.isfinite(rate_rps) and rate_rps >= 0):
        raise ValueError(f"the rate must be >= 0 requests per second, got {rate_rps}")


def main(argv: list[str] | None = None) -> None:
    """``python -m simulator.tracegen OUT.csv [--seed N] ...``: write a synthetic day."""
    parser = argparse.ArgumentParser(description="Write a synthetic Azure Functions 2019 day.")
    parser.add_argument("path", type=Path)
    parser.add_argument("--n-functions", type=int, default=4)
    parser.add_argument("--minutes", type=int, default=MINUTES_PER_DAY)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--peak-per-min", type=float, default=24_000.0)
    args = parser.parse_args(argv)
    generate_azure2019(args.path, n_functions=args.n_functions, minutes=args.minutes,
                       seed=args.seed, peak_per_min=args.peak_per_min)


if __name__ == "__main__":
    main()
