"""One Redis dependency as this process sees it: a client that fails fast, a circuit breaker,
and the health the API reports (ok / degraded since when, the last error, errors per operation).

Why each part:
- Short socket timeouts and no client-side retries. redis-py retries a failed command 10 times
  with backoff by default, so one call to a hung server blocked for seconds; here a call costs at
  most `timeout_s` and the caller decides what to do (count locally, keep the last view, retry
  on its own schedule).
- A breaker (`libra.serving.state.breaker`) shared by every user of the same Redis in this
  process (rate flusher, rate reads, registry): after a few failures calls are refused without
  touching the network, and one trial goes out every `reset_timeout_s`.
- Health: degraded from the first failure until the next success, whatever the operation, so
  `/status` and `/readyz` can say since when and why; each failure is logged with its traceback,
  at most once per `log_interval_s` per operation (`RateLimitedLog`), and the transitions to
  degraded and back are logged once each. This is the one place that logs Redis's own errors:
  a caller that swallows `RedisUnavailableError` counts it and need not log the cause again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from libra.serving.logs import RateLimitedLog, redact_url
from libra.serving.state.breaker import BreakerState, CircuitBreaker

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_TIMEOUT_S = 0.25
"""Per socket operation (connect, read, write). Redis answers in well under 1 ms on loopback and
a few ms inside a VPC; a quarter second is slack for a busy host and still cheap for the
controller tick (at most one such wait per tick before the breaker opens)."""


class RedisUnavailableError(Exception):
    """A Redis operation did not complete. `refused`: the breaker stopped it before it was sent
    (so it certainly had no effect); otherwise it failed or timed out and may have been applied."""

    def __init__(self, op: str, why: str, *, refused: bool) -> None:
        super().__init__(f"redis {op}: {why}")
        self.op = op
        self.refused = refused


def _iso(wall_s: float) -> str:
    return datetime.fromtimestamp(wall_s, UTC).isoformat(timespec="seconds")


class RedisLink:
    """See module docs. `on_error(op)` is called per failed operation (the metrics counter),
    `on_state(state)` on every breaker transition (the metrics gauge)."""

    def __init__(self, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                 failure_threshold: int = 3, reset_timeout_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time,
                 on_error: Callable[[str], None] | None = None,
                 on_state: Callable[[BreakerState], None] | None = None,
                 log_interval_s: float = 30.0) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.url = redact_url(url)  # for logs and /status: a Redis URL may carry its AUTH
        self.client: redis.Redis = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0))
        self.breaker = CircuitBreaker(failure_threshold=failure_threshold,
                                      reset_timeout_s=reset_timeout_s, clock=clock,
                                      on_change=self._breaker_changed)
        self.clock = clock
        self.wall_clock = wall_clock
        self.on_error = on_error
        self.on_state = on_state
        self.errors: dict[str, int] = {}
        self.refused = 0
        self.last_error: str | None = None
        self.last_error_wall_s: float | None = None
        self._degraded_since: tuple[float, float] | None = None  # (monotonic, wall)
        self._recovered_wall_s: float | None = None
        self._lock = threading.Lock()
        self._log = RateLimitedLog(log, interval_s=log_interval_s, clock=clock)

    @property
    def ok(self) -> bool:
        return self._degraded_since is None

    def call(self, op: str, fn: Callable[[redis.Redis], T]) -> T:
        """`fn(client)` through the breaker; RedisUnavailableError if refused or if Redis failed."""
        import redis

        if not self.breaker.allow():
            with self._lock:
                self.refused += 1
            raise RedisUnavailableError(op, "circuit open after repeated failures; not tried",
                                   refused=True)
        try:
            out = fn(self.client)
        except (redis.RedisError, OSError) as exc:
            self.breaker.failure()
            self._failed(op, exc)
            raise RedisUnavailableError(op, f"{type(exc).__name__}: {exc}", refused=False) from exc
        except Exception:  # Redis answered; what we did with the answer failed: not its fault
            self.breaker.success()
            raise
        self.breaker.success()
        self._succeeded()
        return out

    def ping(self) -> None:
        self.call("ping", lambda c: c.ping())

    def _failed(self, op: str, exc: BaseException) -> None:
        now, wall = self.clock(), self.wall_clock()
        with self._lock:
            self.errors[op] = self.errors.get(op, 0) + 1
            self.last_error = f"{op}: {type(exc).__name__}: {exc}"
            self.last_error_wall_s = wall
            entering = self._degraded_since is None
            if entering:
                self._degraded_since = (now, wall)
        if self.on_error is not None:
            self.on_error(op)
        if entering:
            log.warning("redis %s degraded: %s failed (%s: %s); its users fall back until it "
                        "answers again", self.url, op, type(exc).__name__, exc)
        self._log.failure(f"redis {op}", "redis %s failed", op, level=logging.WARNING)

    def _succeeded(self) -> None:
        if self._degraded_since is None:  # the common case, without the lock
            return
        with self._lock:
            since = self._degraded_since
            self._degraded_since = None
            self._recovered_wall_s = self.wall_clock()
        if since is not None:
            log.warning("redis %s ok again after %.1f s degraded", self.url,
                        self.clock() - since[0])

    def _breaker_changed(self, old: BreakerState, new: BreakerState) -> None:
        if new == BreakerState.OPEN and old == BreakerState.CLOSED:
            log.warning("redis %s circuit open: calls refused for %g s between trials",
                        self.url, self.breaker.reset_timeout_s)
        if self.on_state is not None:
            self.on_state(new)

    def health(self) -> dict[str, Any]:
        """What `/status` shows: state ok/degraded, since when (UTC) and for how long, the last
        error, the breaker, errors per operation and calls the breaker refused."""
        with self._lock:
            since = self._degraded_since
            out: dict[str, Any] = {
                "backend": "redis", "state": "ok" if since is None else "degraded",
                "since": None, "for_s": None, "last_error": self.last_error,
                "last_error_at": (None if self.last_error_wall_s is None
                                  else _iso(self.last_error_wall_s)),
                "breaker": self.breaker.state.name.lower(), "errors": dict(self.errors),
                "refused": self.refused}
        if since is not None:
            out["since"] = _iso(since[1])
            out["for_s"] = round(self.clock() - since[0], 3)
        elif self._recovered_wall_s is not None:
            out["since"] = _iso(self._recovered_wall_s)
        return out
