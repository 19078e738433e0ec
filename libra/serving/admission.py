"""Admission control: what the API lets in, by when each request must be answered, and the
measured service times the router's estimates are built from.

Why: under overload the queue used to build where nothing could see it (decoding in asyncio's
default executor), so nothing spilled and nothing was shed: 1,000 concurrent requests all waited,
p50 7.9 s against a 1 s SLA. Here every stage a request passes is bounded and estimated:

- `Gate`: a per-router limit on requests at work (from their body until answered) and on bodies
  still arriving; past either a request is refused at once, before its body is read. The work
  limit follows the router's measured capacity: capacity x SLA budget requests can be at work
  and still finish in time (Little's law), so on a slow machine fewer are let in, and the rest
  are refused at the door, cheaply, instead of after their body was read and tokenized.
- `DecodePool`: decoding and preprocessing in a bounded pool of their own, which knows its backlog
  and the measured time per job, so the door refuses what would wait past its SLA budget.
- `Budget`: the request's two deadlines: the SLA budget (routing: can it start and finish in time)
  and the hard deadline after which nobody works on it (timeouts, sent along to the worker).
- `ServiceEstimate`: a backend's seconds per request, measured from completions (Little's law),
  so the wait estimate follows what a worker really does, not a fixed constant.

A refused request is a `ShedError`: 503 with `Retry-After` and a reason, counted by reason.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

SHED_REASONS = ("overloaded", "decode_backlog", "over_capacity", "no_capacity",
                "deadline_exceeded", "serverless_throttled")
"""Why a request was refused (the `reason` label of `libra_requests_shed_total`)."""
DOOR_REASONS = frozenset({"overloaded", "decode_backlog"})
"""Refusals at the door, before the body is read."""


class ShedError(Exception):
    """A request refused for want of capacity or time: 503 with `Retry-After` (seconds)."""

    status = 503

    def __init__(self, reason: str, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after_s = retry_after_s

    @property
    def retry_after(self) -> str:
        """The header's value: whole seconds, at least 1 (HTTP's delta-seconds)."""
        return str(max(1, math.ceil(self.retry_after_s)))


@dataclass(frozen=True)
class Budget:
    """A request's time on the router's (monotonic) clock, set when it arrives."""

    arrived_s: float
    sla_end_s: float
    """Answered by then, it meets the SLA (less the margin): what routing decisions aim at."""
    deadline_s: float
    """Unanswered by then, nobody works on it any more: it is answered 503 `deadline_exceeded`."""

    @classmethod
    def starting(cls, now_s: float, sla_budget_s: float, timeout_s: float) -> Budget:
        return cls(now_s, now_s + sla_budget_s, now_s + max(timeout_s, sla_budget_s))

    def sla_left_s(self, now_s: float) -> float:
        return self.sla_end_s - now_s

    def left_s(self, now_s: float) -> float:
        return self.deadline_s - now_s


class ServiceEstimate:
    """Seconds of a backend's time per request, measured from completions.

    Each completion adds the time the backend was busy since the previous completion (or since
    the request was sent, if later) to a decayed sum, and one to a decayed count; their ratio is
    the time per request when the backend has work (Little's law). A worker that batches 16
    requests in 160 ms shows 10 ms per request at load and its single-request latency when idle,
    so `finish_s(ahead)` = (ahead + 1) x that is right in both regimes. History decays with busy
    time (`memory_s`), not per completion, so the 16 answers of one batch weigh alike. The prior
    counts as one completion and fades as real ones come in."""

    def __init__(self, prior_s: float, memory_s: float = 2.0) -> None:
        if memory_s <= 0:
            raise ValueError(f"memory_s ({memory_s}) must be positive")
        self.prior_s = prior_s
        self.memory_s = memory_s
        self._done = 1.0
        self._busy_s = prior_s
        self.last_done_s = -math.inf
        self.samples = 0

    @property
    def per_request_s(self) -> float:
        return self._busy_s / self._done

    def on_done(self, sent_s: float, done_s: float) -> None:
        """One request sent at `sent_s` came back at `done_s` (answer or timeout)."""
        busy_s = max(0.0, done_s - max(sent_s, self.last_done_s))
        keep = math.exp(-busy_s / self.memory_s)
        self._done = keep * self._done + 1
        self._busy_s = keep * self._busy_s + busy_s
        self.last_done_s = max(self.last_done_s, done_s)
        self.samples += 1

    def wait_s(self, ahead: int) -> float:
        """How long a new request waits behind `ahead` requests already there."""
        return max(0, ahead) * self.per_request_s

    def finish_s(self, ahead: int) -> float:
        return self.wait_s(ahead) + self.per_request_s


class Ewma:
    """An exponentially weighted mean (the serverless call latency), starting at a prior."""

    def __init__(self, prior: float, weight: float = 0.1) -> None:
        self.value = prior
        self.weight = weight

    def observe(self, x: float) -> None:
        self.value += self.weight * (x - self.value)


class DecodePool(ThreadPoolExecutor):
    """Decoding and preprocessing in threads of their own, with a visible backlog.

    Never asyncio's default executor: the controller's tick and everything else that used it
    queued behind a few videos. The pool counts the jobs it holds (queued or running) and measures
    each job's time, so `wait_s()` says how long a new job would wait before a thread takes it."""

    def __init__(self, threads: int, prior_job_s: float = 0.005) -> None:
        super().__init__(max_workers=threads, thread_name_prefix="libra-decode")
        self.threads = threads
        self.job_s = Ewma(prior_job_s, weight=0.2)
        self._held = 0
        self._lock = threading.Lock()

    @property
    def held(self) -> int:
        """Jobs queued or running."""
        return self._held

    def wait_s(self) -> float:
        queued = max(0, self._held + 1 - self.threads)
        return math.ceil(queued / self.threads) * self.job_s.value

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        with self._lock:
            self._held += 1

        def timed() -> T:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    self._held -= 1
                    self.job_s.observe(time.perf_counter() - started)

        try:
            return super().submit(timed)
        except BaseException:
            with self._lock:
                self._held -= 1
            raise


class Gate:
    """The per-router limit on admitted work, and the door's checks (see module docs).

    Two counts, so a slow client cannot hold the service: requests whose body is still arriving
    (`reading`, at most `READERS_PER_SLOT` x `max_admitted`: a body may take `body_timeout_s`)
    and requests at work (`admitted`: decoding, routed, answering; at most `max_admitted`). The
    door refuses when either is full; a request whose body has arrived takes a work slot with
    `Ticket.work()`, refused if none is free by then."""

    READERS_PER_SLOT = 4
    MIN_ADMITTED = 2
    """Work slots however low the measured capacity: requests keep measuring the backends."""

    def __init__(self, *, max_admitted: int, sla_budget_s: float, timeout_s: float,
                 decode: DecodePool | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 capacity_rps: Callable[[], float] | None = None) -> None:
        if max_admitted < 1:
            raise ValueError(f"max_admitted ({max_admitted}) must be at least 1")
        self.max_admitted = max_admitted
        self.max_reading = self.READERS_PER_SLOT * max_admitted
        self.sla_budget_s = sla_budget_s
        self.timeout_s = timeout_s
        self.decode = decode
        self.clock = clock
        self.capacity_rps = capacity_rps
        """Requests/s the backends can finish now (the router's measured figure; inf: no
        known bound); None: the limit is `max_admitted`."""
        self.admitted = 0
        self.reading = 0

    def limit(self) -> int:
        """Work slots now: measured capacity x SLA budget, at least `MIN_ADMITTED`, at most
        `max_admitted` (`max_admitted_requests`)."""
        if self.capacity_rps is None:
            return self.max_admitted
        rps = self.capacity_rps()
        if not math.isfinite(rps):
            return self.max_admitted
        return max(self.MIN_ADMITTED, min(self.max_admitted,
                                          math.ceil(rps * self.sla_budget_s)))

    def budget(self) -> Budget:
        return Budget.starting(self.clock(), self.sla_budget_s, self.timeout_s)

    def _check_work(self) -> None:
        limit = self.limit()
        if self.admitted >= limit:
            raise ShedError("overloaded", f"{self.admitted} requests are in progress here, the "
                            f"limit is {limit} (what the backends finish in the "
                            f"{self.sla_budget_s:.2f} s SLA budget, at most "
                            f"max_admitted_requests {self.max_admitted})", self.sla_budget_s)
        if self.decode is not None:
            wait_s = self.decode.wait_s()
            if wait_s > self.sla_budget_s:
                raise ShedError("decode_backlog", f"decoding would start in about {wait_s:.2f} "
                                f"s ({self.decode.held} jobs ahead), past the "
                                f"{self.sla_budget_s:.2f} s SLA budget", wait_s)

    def enter(self) -> Ticket:
        """Let one request in (to read its body), or raise `ShedError` at once; the caller
        must `leave()` the ticket when the request is answered. `Ticket.work()` when the body
        is in."""
        budget = self.budget()
        self._check_work()
        if self.reading >= self.max_reading:
            raise ShedError("overloaded", f"{self.reading} request bodies are arriving here, "
                            f"the limit is {self.max_reading} ({self.READERS_PER_SLOT} x "
                            f"max_admitted_requests)", self.sla_budget_s)
        ticket = Ticket(self, budget)
        self.reading += 1
        return ticket

    @contextlib.contextmanager
    def admit(self) -> Iterator[Ticket]:
        """`enter()` for the `with` block."""
        ticket = self.enter()
        try:
            yield ticket
        finally:
            ticket.leave()


class Ticket:
    """One request let in by a `Gate`: its budget, and which count it holds."""

    def __init__(self, gate: Gate, budget: Budget) -> None:
        self.gate = gate
        self.budget = budget
        self.working = False
        self._left = False

    def work(self) -> None:
        """The body is in: take a work slot (or raise `ShedError`, keeping the reading one until
        the `with` block ends)."""
        if self.working:
            return
        self.gate._check_work()
        self.gate.reading -= 1
        self.gate.admitted += 1
        self.working = True

    def leave(self) -> None:
        if self._left:
            return
        self._left = True
        if self.working:
            self.gate.admitted -= 1
        else:
            self.gate.reading -= 1
