"""Request counts per second and per minute: in memory, or in Redis shared by every router.

Buckets are keyed by wall-clock second (`time.time()`), the one clock routers on different
machines share. `RedisRateStore` increments the buckets of a batch of arrivals in one MULTI
transaction (atomic across routers) and lets them expire (TTL) instead of cleaning up.

`RateMonitor` is what the router and the controller use, and it keeps Redis off the request
path: `record()` only counts in memory (a lock and two dict updates); a background thread sends
the counts to Redis every `flush_interval_s` (and the controller's tick flushes before it
reads). While Redis is unavailable the monitor serves the controller this router's own counts
(`view == "local"`) and says so in `health()`; counts that were never sent (the breaker refused)
are kept and sent when Redis is back, so the shared history is whole again. A flush that failed
after it may have reached Redis (a timeout) is dropped, not resent: a missing quarter second
beats a doubled one, and `dropped` counts it. The breaker stops the flusher and the tick from
hammering a dead Redis; `rate_rps()` (for `/status` and the metrics, on the event loop) never
touches the network.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol

from libra.serving.logs import RateLimitedLog
from libra.serving.state.breaker import BreakerState
from libra.serving.state.redis_link import RedisLink, RedisUnavailableError

log = logging.getLogger(__name__)

SECOND_KEY = "libra:rate:s:"
MINUTE_KEY = "libra:rate:m:"
KEEP_SECONDS = 3600
KEEP_MINUTES = 180

Window = tuple[tuple[int, ...], tuple[int, ...]]


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
    """INCRBY + EXPIRE on per-second and per-minute keys in one transaction; MGET to read.
    Every call goes through `link` (timeouts, breaker) and raises `RedisUnavailableError`."""

    def __init__(self, url_or_link: str | RedisLink, timeout_s: float | None = None) -> None:
        if isinstance(url_or_link, RedisLink):
            self.link = url_or_link
        else:
            self.link = (RedisLink(url_or_link) if timeout_s is None
                         else RedisLink(url_or_link, timeout_s=timeout_s))
        self.client = self.link.client

    def add(self, second: int, n: int = 1) -> None:
        self.add_many({second: n})

    def add_many(self, counts: Mapping[int, int]) -> None:
        """Arrivals per second, all buckets in one MULTI/EXEC."""
        minutes: dict[int, int] = {}
        for second, n in counts.items():
            minutes[second // 60] = minutes.get(second // 60, 0) + n

        def send(client: Any) -> None:
            pipe = client.pipeline(transaction=True)
            for second, n in counts.items():
                pipe.incrby(f"{SECOND_KEY}{second}", n)
                pipe.expire(f"{SECOND_KEY}{second}", KEEP_SECONDS)
            for minute, n in minutes.items():
                pipe.incrby(f"{MINUTE_KEY}{minute}", n)
                pipe.expire(f"{MINUTE_KEY}{minute}", KEEP_MINUTES * 60)
            pipe.execute()

        self.link.call("rate_flush", send)

    def window(self, last_s: int, n_s: int, last_min: int, n_min: int
               ) -> tuple[list[int], list[int]]:
        """The last `n_s` seconds to `last_s` and `n_min` minutes to `last_min`, one round trip."""
        keys = ([f"{SECOND_KEY}{k}" for k in range(last_s - n_s + 1, last_s + 1)]
                + [f"{MINUTE_KEY}{k}" for k in range(last_min - n_min + 1, last_min + 1)])
        if not keys:
            return [], []
        values = self.link.call("rate_read", lambda c: c.mget(keys))
        counts = [int(v) if v is not None else 0 for v in values]
        return counts[:n_s], counts[n_s:]

    def per_second(self, last: int, n: int) -> list[int]:
        return self.window(last, n, 0, 0)[0] if n > 0 else []

    def per_minute(self, last: int, n: int) -> list[int]:
        return self.window(0, 0, last, n)[1] if n > 0 else []


class RateMonitor:
    """Records arrivals and reports the whole seconds and minutes since it started (module docs).

    `store`: a `RedisRateStore` to share counts with other routers, or None / a
    `MemoryRateStore` for this process alone. Call `start()` to run the flusher thread and
    `close()` to stop it; without them, `window()` still flushes before it reads."""

    def __init__(self, store: RateStore | None = None, *, history_s: int = 900,
                 history_min: int = 60, clock: Callable[[], float] = time.time,
                 flush_interval_s: float = 0.25) -> None:
        self.remote: RedisRateStore | None = (store if isinstance(store, RedisRateStore)
                                              else None)
        self.fallback = store if isinstance(store, MemoryRateStore) else MemoryRateStore()
        self.store: RateStore = store if store is not None else self.fallback
        self.history_s = history_s
        self.history_min = history_min
        self.clock = clock
        self.flush_interval_s = flush_interval_s
        self.started_s = math.floor(clock())
        self.dropped = 0
        self.view: Literal["shared", "local"] = "shared" if self.remote else "local"
        self.last_window: Window | None = None
        self._pending: dict[int, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log = RateLimitedLog(log)

    @property
    def store_errors(self) -> int:
        """Failed Redis operations of the rate store so far (0 without Redis)."""
        return sum(self.remote.link.errors.values()) if self.remote else 0

    def record(self, n: int = 1) -> None:
        """Count `n` arrivals now, in memory only: never blocks on I/O, never raises."""
        second = math.floor(self.clock())
        with self._lock:
            self.fallback.add(second, n)
            if self.remote is not None:
                self._pending[second] = self._pending.get(second, 0) + n

    def flush(self) -> bool:
        """Send the counts not yet in Redis; False if Redis is unavailable (see module docs)."""
        if self.remote is None:
            return True
        with self._lock:
            pending, self._pending = self._pending, {}
        link = self.remote.link
        try:
            if link.breaker.state != BreakerState.CLOSED:
                link.ping()  # the half-open trial: a ping, so a failure loses no counts
            if pending:
                self.remote.add_many(pending)
        except RedisUnavailableError as exc:
            if exc.op == "ping" or exc.refused:
                self._keep(pending)
            else:  # it may have been applied: resending could count it twice
                self.dropped += sum(pending.values())
            return False
        return True

    def _keep(self, pending: dict[int, int]) -> None:
        """Put unsent counts back, forgetting those older than Redis would keep anyway."""
        oldest = math.floor(self.clock()) - KEEP_SECONDS
        with self._lock:
            for second, n in pending.items():
                if second >= oldest:
                    self._pending[second] = self._pending.get(second, 0) + n

    def window(self, now_s: float | None = None) -> Window:
        """(counts of the last whole seconds, of the last whole minutes), oldest first: the
        shared counts, or this router's own while Redis is unavailable (`view`). `now_s` is an
        instant on this monitor's clock (wall-clock seconds): the controller passes the one it
        puts in the `Observation`, so the last count is the second that ended at or before it
        (one time axis, `libra.serving.control.controller`)."""
        whole = math.floor(self.clock() if now_s is None else now_s)
        n_s = max(0, min(self.history_s, whole - self.started_s))
        n_min = max(0, min(self.history_min, whole // 60 - self.started_s // 60))
        result: Window | None = None
        if self.remote is not None and self.flush():
            try:
                per_s, per_min = self.remote.window(whole - 1, n_s, whole // 60 - 1, n_min)
                result = (tuple(per_s), tuple(per_min))
            except RedisUnavailableError:  # logged by the link; the local view is the best left
                pass
        if self.remote is not None:
            self.view = "local" if result is None else "shared"
        if result is None:
            with self._lock:
                result = (tuple(self.fallback.per_second(whole - 1, n_s)),
                          tuple(self.fallback.per_minute(whole // 60 - 1, n_min)))
        self.last_window = result
        return result

    def rate_rps(self, window_s: int = 10) -> float:
        """Mean arrivals per second over the last `window_s` whole seconds, from the controller's
        last view when Redis is used (no network: `/status` and the metrics call this on the
        event loop), else from memory."""
        if self.remote is None:
            per_s = self.window()[0]
        elif self.last_window is not None:
            per_s = self.last_window[0]
        else:
            per_s = self._local_seconds()
        recent = per_s[-window_s:]
        return sum(recent) / len(recent) if recent else 0.0

    def _local_seconds(self) -> tuple[int, ...]:
        whole = math.floor(self.clock())
        n_s = max(0, min(self.history_s, whole - self.started_s))
        with self._lock:
            return tuple(self.fallback.per_second(whole - 1, n_s))

    def health(self) -> dict[str, Any]:
        """For `/status`: the store's backend and state, which view the controller reads, and
        counts lost or waiting to be sent."""
        if self.remote is None:
            return {"backend": "memory", "state": "ok", "view": "local"}
        with self._lock:
            unsent = sum(self._pending.values())
        return {**self.remote.link.health(), "view": self.view, "unsent": unsent,
                "dropped": self.dropped}

    def start(self) -> None:
        """Run the flusher thread (Redis only); idempotent."""
        if self.remote is None or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._flush_loop, name="libra-rate-flush",
                                        daemon=True)
        self._thread.start()

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.flush_interval_s):
            try:
                self.flush()
            except Exception:  # a bug here must not end the flusher: log and go on
                self._log.failure("rate flush", "the rate flusher failed")

    def close(self) -> None:
        """Stop the flusher and send what is left (best effort: bounded by the timeouts)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self._thread = None
        self.flush()
