"""Sizing steps for a stated SLO: the fraction of requests that must be answered inside the SLA.

A user who states `slo` (0.999: at most 1 request in 1,000 late or dropped) grants a violation
budget `1 - slo`. `libra` spends it on the three ways its requests are late, each given a share:

- **throttling** (`THROTTLE_SHARE`): serverless carries at most `limit / service time` req/s; a
  second above what the VMs and that carry is partly dropped. The fleet keeps the VMs that hold
  the throttled fraction of the recent history under its share (a high quantile of the window,
  not its mean);
- **cold starts** (`COLD_SHARE`): a request that finds no idle serverless instance waits for a
  cold start; the instances kept warm cover the per-second spill's Poisson quantile at that
  share, not a fixed three standard deviations;
- **VM service tails** (`ROUTING_SHARE`): the router plans a VM request with a quantile of the
  service time (`libra.core.platform.Platform.routing_service_s`); with an SLO that quantile
  follows the budget.

The shares are a split of the user's budget, not figures fitted to a trace. Everything here is a
pure function of the platform's figures, the SLO and the observed counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

THROTTLE_SHARE = 0.5
COLD_SHARE = 0.25
ROUTING_SHARE = 0.25

_EPS = 1e-9
_EXACT_MEAN = 200.0  # below this mean the Poisson tail is summed exactly


def violation_budget(slo: float) -> float:
    """The fraction of requests that may be late or dropped."""
    if not 0.0 < slo < 1.0:
        raise ValueError(f"slo ({slo}) must be between 0 and 1 (0.999: 99.9% inside the SLA)")
    return 1.0 - slo


def poisson_quantile(mean: float, tail: float) -> int:
    """The smallest w with P(N > w) <= tail for N ~ Poisson(mean).

    Instances busy at once under Poisson arrivals are Poisson (an M/G/inf queue), so w warm
    instances leave at most `tail` of the time with all of them busy, when the next request
    would cold-start. Summed exactly for small means, the Cornish-Fisher normal quantile (with
    the Poisson's skew) above them.
    """
    if not 0.0 < tail < 1.0:
        raise ValueError(f"tail ({tail}) must be between 0 and 1")
    if mean <= 0:
        return 0
    if mean < _EXACT_MEAN:
        p = math.exp(-mean)
        cdf, w = p, 0
        while 1.0 - cdf > tail:
            w += 1
            p *= mean / w
            cdf += p
            if p < 1e-300 and w > mean:
                break
        return w
    z = NormalDist().inv_cdf(1.0 - tail)
    return math.ceil(mean + z * math.sqrt(mean) + (z * z - 1.0) / 6.0 - _EPS)


def serverless_carry_rps(limit: int, service_s: float, tail: float) -> float:
    """The per-second count serverless carries within its concurrency limit: the largest mean
    rate whose busy instances exceed `limit` at most `tail` of the time."""
    if limit <= 0 or service_s <= 0:
        return math.inf
    lo, hi = 0.0, limit / service_s
    for _ in range(50):  # bisection on the rate: poisson_quantile grows with it
        mid = (lo + hi) / 2.0
        if poisson_quantile(mid * service_s, tail) <= limit:
            lo = mid
        else:
            hi = mid
    return lo


def throttle_floor_vms(rates: Sequence[float], serverless_rps: float, capacity_rps: float,
                       allowed_fraction: float, max_vms: int) -> int:
    """The fewest VMs (up to `max_vms`) that keep the requests above VMs + serverless under
    `allowed_fraction` of all requests, had `rates` (per-second counts) come in."""
    if not rates or math.isinf(serverless_rps):
        return 0
    x = np.asarray(rates, dtype=np.float64)
    top = float(x.max())
    if top <= serverless_rps:
        return 0
    allowed = allowed_fraction * float(x.sum())
    most = min(max_vms, math.ceil((top - serverless_rps) / capacity_rps - _EPS))
    if most <= 0:
        return 0
    floors = serverless_rps + np.arange(most + 1, dtype=np.float64)[:, None] * capacity_rps
    excess = np.clip(x[None, :] - floors, 0.0, None).sum(axis=1)
    fits = np.nonzero(excess <= allowed + _EPS)[0]
    return int(fits[0]) if fits.size else most


def projected_rate(counts: Sequence[float], lead_s: float) -> float | None:
    """Where the per-second rate is heading `lead_s` from now, for a flash crowd: the last 10 s's
    mean, plus the rise since 30 s before (10 s means) when the rise is a flash crowd's: it
    stands out of the per-second noise (more than 3 standard errors of the difference of two
    10 s means, from the last 40 s's spread) and takes the rate above any 10 s mean of the
    history before (a swing the history has already shown is the throttle floor's business);
    never more than twice that mean (one reaction at most doubles it; the next tick reacts again
    if the rise goes on). None with fewer than 40 s of counts."""
    if len(counts) < 40:
        return None
    recent = counts[-40:]
    level = sum(recent[-10:]) / 10.0
    rise = level - sum(recent[:10]) / 10.0
    if rise <= 0:
        return level
    mean = sum(recent) / 40.0
    spread = math.sqrt(sum((x - mean) ** 2 for x in recent) / 39.0)
    if rise <= 3.0 * spread * math.sqrt(2.0 / 10.0):
        return level
    if len(counts) >= 20:
        sums = np.cumsum(np.asarray(counts[:-10], dtype=np.float64))
        highest = max(float(sums[9]), float((sums[10:] - sums[:-10]).max(initial=0.0))) / 10.0
        if level <= highest:
            return level
    return min(level + rise / 30.0 * lead_s, 2.0 * level)
