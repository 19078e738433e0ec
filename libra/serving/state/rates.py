"""Request counts per second and per minute: in memory, or in Redis shared by every router.

Buckets are keyed by wall-clock second (`time.time()`), the one clock routers on different
machines share. `RedisRateStore` increments both buckets of an arrival in one MULTI transaction
(atomic across routers) and lets them expire (TTL) instead of cleaning up. `RateMonitor` is what
the router and the controller use: it never lets a store failure fail a request; while Redis is
unreachable it counts locally, reads local counts, and counts the errors.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol

SECOND_KEY = "libra:rate:s:"
MINUTE_KEY = "libra:rate:m:"
KEEP_SECONDS = 3600
KEEP_MINUTES = 180


class RateStore(Protocol):
    def add(self, second: int, n: int = 1) -> None: ...

    def per_second(self, last: int, n: int) -> list[int]: ...

    def per_minute(self, last: int, n: int) -> list[int]: ...


class MemoryRateStore:
    """Counts in dicts, pruned to the last hour of seconds and three hours of minutes."""

    def __init__(self) -> None:
        self.seconds: dict[int, int] = {}
        self.minutes: dict[int, int] = {}

    def add(self, second: int, n: int = 1) -> None:
        self.seconds[second] = self.seconds.get(second, 0) + n
        minute = second // 60
        self.minutes[minute] = self.minutes.get(minute, 0) + n
        if len(self.seconds) > KEEP_SECONDS + 60:
            for s in [s for s in self.seconds if s < second - KEEP_SECONDS]:
                del self.seconds[s]
            for m in [m for m in self.minutes if m < minute - KEEP_MINUTES]:
                del self.minutes[m]

    def per_second(self, last: int, n: int) -> list[int]:
        return [self.seconds.get(s, 0) for s in range(last - n + 1, last + 1)]

    def per_minute(self, last: int, n: int) -> list[int]:
        return [self.minutes.get(m, 0) for m in range(last - n + 1, last + 1)]


class RedisRateStore:
    """INCRBY + EXPIRE on per-second and per-minute keys in one transaction; MGET to read."""

    def __init__(self, url: str, timeout_s: float = 0.5) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=timeout_s,
                                           socket_connect_timeout=timeout_s)

    def add(self, second: int, n: int = 1) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.incrby(f"{SECOND_KEY}{second}", n)
        pipe.expire(f"{SECOND_KEY}{second}", KEEP_SECONDS)
        pipe.incrby(f"{MINUTE_KEY}{second // 60}", n)
        pipe.expire(f"{MINUTE_KEY}{second // 60}", KEEP_MINUTES * 60)
        pipe.execute()

    def _read(self, prefix: str, last: int, n: int) -> list[int]:
        if n <= 0:
            return []
        values = self.client.mget([f"{prefix}{k}" for k in range(last - n + 1, last + 1)])
        return [int(v) if v is not None else 0 for v in values]

    def per_second(self, last: int, n: int) -> list[int]:
        return self._read(SECOND_KEY, last, n)

    def per_minute(self, last: int, n: int) -> list[int]:
        return self._read(MINUTE_KEY, last, n)


class RateMonitor:
    """Records arrivals and reports the whole seconds and minutes since it started."""

    def __init__(self, store: RateStore | None = None, *, history_s: int = 900,
                 history_min: int = 60, clock: Callable[[], float] = time.time) -> None:
        self.store: RateStore = store or MemoryRateStore()
        self.fallback = MemoryRateStore()
        self.history_s = history_s
        self.history_min = history_min
        self.clock = clock
        self.started_s = math.floor(clock())
        self.store_errors = 0

    def record(self, n: int = 1) -> None:
        """Count `n` arrivals now (never raises: a store failure is counted, not propagated)."""
        second = math.floor(self.clock())
        self.fallback.add(second, n)
        if self.store is not self.fallback:
            try:
                self.store.add(second, n)
            except Exception:  # any store error (connection, timeout): count it, serve on
                self.store_errors += 1

    def window(self, now_s: float | None = None) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(counts of the last whole seconds, of the last whole minutes), oldest first."""
        whole = math.floor(self.clock() if now_s is None else now_s)
        n_s = max(0, min(self.history_s, whole - self.started_s))
        n_min = max(0, min(self.history_min, whole // 60 - self.started_s // 60))
        try:
            per_s = self.store.per_second(whole - 1, n_s)
            per_min = self.store.per_minute(whole // 60 - 1, n_min)
        except Exception:  # Redis down: this router's own counts are the best view left
            self.store_errors += 1
            per_s = self.fallback.per_second(whole - 1, n_s)
            per_min = self.fallback.per_minute(whole // 60 - 1, n_min)
        return tuple(per_s), tuple(per_min)

    def rate_rps(self, window_s: int = 10) -> float:
        per_s, _ = self.window()
        recent = per_s[-window_s:]
        return sum(recent) / len(recent) if recent else 0.0
