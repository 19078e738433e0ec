"""Dynamic batching: one queue, one loop, one `process_batch` for single and batched calls.

After LitServe's loop: collect up to `max_batch_size` requests, or until the oldest has waited
`max_batch_delay_s`, run the model once on the batch in a worker thread (the event loop keeps
accepting), and scatter the results. A request whose own deadline passed while it waited is
answered on its own with `BatchTimeoutError` instead of being run; a `process_batch` that raises or
returns the wrong number of results fails each request of that batch with `BatchError`, and the
loop goes on. The decision when to cut a batch (`ready`, `wake_in_s`) takes the time as an
argument, so it is tested without sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class BatchError(RuntimeError):
    """The model call for a batch failed; every request in it gets this."""


class BatchTimeoutError(TimeoutError):
    """A request waited past its deadline before its batch ran."""


@dataclass
class Pending(Generic[T, R]):
    item: T
    enqueued_s: float
    deadline_s: float
    future: asyncio.Future[R] = field(repr=False)


@dataclass(frozen=True)
class BatchStats:
    """Counters a worker exports: batches run, requests served, their mean batch size."""

    batches: int
    requests: int
    timeouts: int
    errors: int

    @property
    def mean_batch_size(self) -> float:
        return self.requests / self.batches if self.batches else 0.0


class DynamicBatcher(Generic[T, R]):
    """Batches `submit`ted items for `process_batch`; run `serve()` as a task."""

    def __init__(self, process_batch: Callable[[list[T]], Sequence[R]], *,
                 max_batch_size: int = 32, max_batch_delay_s: float = 0.005,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size ({max_batch_size}) must be at least 1")
        if max_batch_delay_s < 0:
            raise ValueError(f"max_batch_delay_s ({max_batch_delay_s}) must not be negative")
        self.process_batch = process_batch
        self.max_batch_size = max_batch_size
        self.max_batch_delay_s = max_batch_delay_s
        self.clock = clock
        self.queue: deque[Pending[T, R]] = deque()
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch")
        self._batches = self._requests = self._timeouts = self._errors = 0
        self.in_flight = 0

    @property
    def stats(self) -> BatchStats:
        return BatchStats(self._batches, self._requests, self._timeouts, self._errors)

    async def submit(self, item: T, timeout_s: float = 30.0) -> R:
        """Queue one item and wait for its result (raises `BatchTimeoutError`, `BatchError`)."""
        now = self.clock()
        pending: Pending[T, R] = Pending(item, now, now + timeout_s,
                                         asyncio.get_running_loop().create_future())
        self.queue.append(pending)
        self.in_flight += 1
        self._wake.set()
        try:
            return await pending.future
        finally:
            self.in_flight -= 1

    def ready(self, now_s: float) -> bool:
        """Cut a batch now: it is full, or its oldest request has waited long enough."""
        if not self.queue:
            return False
        return (len(self.queue) >= self.max_batch_size
                or now_s - self.queue[0].enqueued_s >= self.max_batch_delay_s)

    def wake_in_s(self, now_s: float) -> float | None:
        """Seconds until the oldest request's delay runs out (None with an empty queue)."""
        if not self.queue:
            return None
        return max(0.0, self.queue[0].enqueued_s + self.max_batch_delay_s - now_s)

    def take(self, now_s: float) -> list[Pending[T, R]]:
        """Up to `max_batch_size` requests, oldest first; expired ones are answered here."""
        batch: list[Pending[T, R]] = []
        while self.queue and len(batch) < self.max_batch_size:
            pending = self.queue.popleft()
            if pending.future.done():  # the caller gave up (cancelled)
                continue
            if now_s > pending.deadline_s:
                self._timeouts += 1
                pending.future.set_exception(BatchTimeoutError(
                    f"waited {now_s - pending.enqueued_s:.3f} s in the batch queue, past its "
                    f"deadline"))
                continue
            batch.append(pending)
        return batch

    async def serve(self) -> None:
        """The loop: wait for a batch to be ready, run it, repeat (until cancelled)."""
        loop = asyncio.get_running_loop()
        while True:
            now = self.clock()
            if not self.ready(now):
                self._wake.clear()
                wait = self.wake_in_s(now)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)
                continue
            batch = self.take(now)
            if batch:
                await loop.run_in_executor(self._executor, self._run, batch, loop)

    def _run(self, batch: list[Pending[T, R]], loop: asyncio.AbstractEventLoop) -> None:
        try:
            results = list(self.process_batch([p.item for p in batch]))
            if len(results) != len(batch):
                raise BatchError(f"the model returned {len(results)} results for a batch of "
                                 f"{len(batch)}")
        except Exception as exc:  # the model's failure is each request's error, not the loop's
            self._errors += len(batch)
            error = exc if isinstance(exc, BatchError) else BatchError(
                f"{type(exc).__name__}: {exc}")
            for p in batch:
                loop.call_soon_threadsafe(_set_exception, p.future, error)
            return
        self._batches += 1
        self._requests += len(batch)
        for p, result in zip(batch, results, strict=True):
            loop.call_soon_threadsafe(_set_result, p.future, result)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def _set_result(future: asyncio.Future[R], result: R) -> None:
    if not future.done():
        future.set_result(result)


def _set_exception(future: asyncio.Future[R], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
