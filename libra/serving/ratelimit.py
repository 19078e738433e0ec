"""Per-key rate limits: a token bucket per API key, on an injected clock.

A bucket holds up to `burst` tokens and refills at `rate_rps` tokens per second; a request takes
one. A client may therefore send `burst` requests at once, then `rate_rps` per second for as
long as it likes. A refused request learns how long until a token is there (`Retry-After`).

Why a bucket per key and not per address: every request can start paid GPU VMs and Lambda
calls, and the key is what the bill is charged to; many clients behind one NAT share an address,
one client may use many. Keys are configured, so the set of buckets is bounded.

No lock: the buckets are used from the event loop only (the auth middleware), one thread.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class TokenBucket:
    """`burst` tokens, refilled at `rate_rps` per second of `clock` (monotonic seconds)."""

    def __init__(self, rate_rps: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate_rps <= 0 or burst < 1:
            raise ValueError(f"rate_rps ({rate_rps}) must be > 0 and burst ({burst}) >= 1")
        self.rate_rps, self.burst, self.clock = rate_rps, burst, clock
        self.tokens = float(burst)
        self._last_s = clock()

    def take(self) -> float:
        """Take one token: 0.0 if there was one, else the seconds until there will be one."""
        now_s = self.clock()
        self.tokens = min(self.burst, self.tokens + (now_s - self._last_s) * self.rate_rps)
        self._last_s = now_s
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate_rps


def retry_after_s(wait_s: float) -> int:
    """`Retry-After` is whole seconds; round up, never 0 (a client told 0 retries at once)."""
    return max(1, math.ceil(wait_s))


class KeyedLimiter:
    """One bucket per key name, made on first use with the key's own or the default limits."""

    def __init__(self, rate_rps: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate_rps, self.burst, self.clock = rate_rps, burst, clock
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, name: str, rate_rps: float | None = None, burst: int | None = None) -> float:
        """0.0 if `name` may go on, else the seconds it must wait."""
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = TokenBucket(
                rate_rps or self.rate_rps, burst or self.burst, self.clock)
        return bucket.take()
