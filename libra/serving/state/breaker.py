"""A circuit breaker: stop calling a dependency that keeps failing, try it again now and then.

CLOSED: calls go through; `failure_threshold` failures in a row open the breaker. OPEN: calls
are refused at once (no socket, no timeout) until `reset_timeout_s` has passed since it opened;
the next call is then let through as the one trial of HALF_OPEN (others are still refused while
it runs). The trial's success closes the breaker, its failure opens it again for another
`reset_timeout_s`.

Why our own and not `pybreaker` or `circuitbreaker`: both read the wall clock inside (datetime /
`time.monotonic`), so a test of the open -> half-open transition must sleep or patch `time`; the
house rule is an injected clock. This one is 80 lines, thread-safe (the rate flusher, the
controller's executor thread and the event loop share one breaker per Redis), and admits exactly
one trial in half-open, which is what keeps a dead Redis from being hammered by every caller the
moment the timeout ends.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class BreakerState(enum.IntEnum):
    """Values are what the `libra_redis_breaker_state` gauge exports."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitOpenError(RuntimeError):
    """The breaker refused the call: the dependency failed recently and is not tried now."""


class CircuitBreaker:
    """See module docs. `on_change(old, new)` is called (outside the lock) on every transition."""

    def __init__(self, *, failure_threshold: int = 3, reset_timeout_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[BreakerState, BreakerState], None] | None = None) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold ({failure_threshold}) must be at least 1")
        if reset_timeout_s <= 0:
            raise ValueError(f"reset_timeout_s ({reset_timeout_s}) must be positive")
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self.clock = clock
        self.on_change = on_change
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_s = 0.0
        self._trial_running = False
        self._lock = threading.Lock()

    @property
    def state(self) -> BreakerState:
        """The state as a caller would meet it now (OPEN past its timeout reads HALF_OPEN)."""
        with self._lock:
            if (self._state == BreakerState.OPEN
                    and self.clock() - self._opened_s >= self.reset_timeout_s):
                return BreakerState.HALF_OPEN
            return self._state

    def allow(self) -> bool:
        """May a call go out now? True in HALF_OPEN means: you are the trial; report its end
        with `success()` or `failure()` (`call` does both)."""
        with self._lock:
            old = self._state
            if old == BreakerState.CLOSED:
                return True
            if old == BreakerState.OPEN:
                if self.clock() - self._opened_s < self.reset_timeout_s:
                    return False
                self._state = BreakerState.HALF_OPEN
            if self._trial_running:
                return False
            self._trial_running = True
        self._changed(old, BreakerState.HALF_OPEN)
        return True

    def success(self) -> None:
        with self._lock:
            old, self._state = self._state, BreakerState.CLOSED
            self._failures = 0
            self._trial_running = False
        self._changed(old, BreakerState.CLOSED)

    def failure(self) -> None:
        with self._lock:
            old = self._state
            self._failures += 1
            self._trial_running = False
            if old == BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
                self._state = BreakerState.OPEN
                self._opened_s = self.clock()
        self._changed(old, self._state)

    def call(self, fn: Callable[[], T]) -> T:
        """`fn()` if allowed (CircuitOpenError if not); its outcome updates the breaker."""
        if not self.allow():
            raise CircuitOpenError(f"circuit open: the last {self.failure_threshold} calls "
                                   f"failed; next try within {self.reset_timeout_s:g} s")
        try:
            out = fn()
        except Exception:
            self.failure()
            raise
        self.success()
        return out

    def _changed(self, old: BreakerState, new: BreakerState) -> None:
        if old != new and self.on_change is not None:
            self.on_change(old, new)
