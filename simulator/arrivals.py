"""Arrival streams: a trace's arrivals produced one chunk of trace time at a time.

A day of Azure Functions is 11.6 M requests; held as one array it is 93 MB per copy, and the
engine's per-request arrays used to add four more. A stream keeps only what the trace is made of
(1,440 per-minute counts, or 45,000 per-second counts, or a per-request file's own array) and
spreads one chunk (`CHUNK_S` of trace time) when the engine reaches it, so a replay's memory does
not grow with the trace length.

Reproducible chunk by chunk: chunk ``k`` of a count trace is spread with its own generator
``default_rng([seed, 0xC4, k])``, so the arrivals of a window are the same whether the whole
trace is replayed or only that window, and ``materialize()`` (what `load_trace` returns) is
exactly the concatenation of the chunks the engine replays.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from simulator.trace_base import Spread, Trace, spread_counts

__all__ = ["CHUNK_S", "ArrayStream", "ArrivalStream", "CountStream", "to_epochs"]

CHUNK_S = 60.0
_CHUNK_STREAM = 0xC4


@dataclass(eq=False)
class ArrivalStream:
    """What every stream offers; see :class:`CountStream` and :class:`ArrayStream`."""

    name: str
    source: str
    duration_s: float
    _per_second: np.ndarray | None = field(default=None, init=False, repr=False)
    _n_requests: int | None = field(default=None, init=False, repr=False)

    def chunks(self) -> Iterator[np.ndarray]:
        """Sorted float64 arrival times (s from the window start), chunk after chunk, in order."""
        raise NotImplementedError

    @property
    def n_requests(self) -> int:
        if self._n_requests is None:
            self._n_requests = int(self.per_second_counts().sum())
        return self._n_requests

    def __len__(self) -> int:
        return self.n_requests

    def per_second_counts(self) -> np.ndarray:
        """Requests per whole second over ``ceil(duration_s)`` seconds (one streamed pass)."""
        if self._per_second is None:
            n_seconds = max(1, math.ceil(self.duration_s))
            counts = np.zeros(n_seconds, dtype=np.int64)
            for chunk in self.chunks():
                if chunk.size:
                    idx = np.minimum(chunk.astype(np.int64), n_seconds - 1)
                    counts += np.bincount(idx, minlength=n_seconds)
            self._per_second = counts
        return self._per_second

    def peak_rps(self) -> float:
        """The busiest whole second's request count."""
        counts = self.per_second_counts()
        return float(counts.max()) if counts.size else 0.0

    def first_seconds_rate_rps(self, seconds: float = 60.0) -> float:
        """Mean rate over the first `seconds` (what an already-running fleet was sized for)."""
        counts = self.per_second_counts()
        n = max(1, min(len(counts), round(seconds)))
        # arrivals before `seconds`, divided by `seconds`, as the engine's initial fleet rule
        return float(counts[:n].sum()) / seconds

    def materialize(self) -> Trace:
        """All arrivals in one array: what `load_trace` returns (small traces and tests)."""
        parts = list(self.chunks())
        arrivals = np.concatenate(parts) if parts else np.zeros(0)
        return Trace(name=self.name, arrivals_s=arrivals, duration_s=self.duration_s,
                     source=self.source)


@dataclass(eq=False)
class CountStream(ArrivalStream):
    """Counts per bin (per second or per minute), spread into arrivals one chunk at a time."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    bin_s: float = 1.0
    spread: Spread = "poisson"
    seed: int = 0
    start_s: float = 0.0
    stop_s: float = 0.0
    epoch_s: float | None = None

    def __post_init__(self) -> None:
        self.counts = np.asarray(self.counts, dtype=np.int64)
        self.counts.flags.writeable = False
        self._bins_per_chunk = max(1, round(CHUNK_S / self.bin_s))
        if self._aligned():
            lo, hi = round(self.start_s / self.bin_s), round(self.stop_s / self.bin_s)
            self._n_requests = int(self.counts[lo:hi].sum())
            if self.bin_s == 1.0:
                self._per_second = self.counts[lo:hi].copy()

    def _aligned(self) -> bool:
        return all(abs(x / self.bin_s - round(x / self.bin_s)) < 1e-9
                   for x in (self.start_s, self.stop_s))

    def chunks(self) -> Iterator[np.ndarray]:
        span_s = self._bins_per_chunk * self.bin_s
        first = math.floor(self.start_s / span_s)
        last = math.ceil(self.stop_s / span_s)
        n_bins = self.counts.size
        for k in range(first, last):
            b0 = k * self._bins_per_chunk
            b1 = min(b0 + self._bins_per_chunk, n_bins)
            rng = np.random.default_rng([self.seed, _CHUNK_STREAM, k])
            arrivals = spread_counts(self.counts[b0:b1], self.bin_s, spread=self.spread, rng=rng)
            arrivals += b0 * self.bin_s
            if self.epoch_s is not None:
                arrivals = to_epochs(arrivals, self.epoch_s)
            if self.start_s > k * span_s or self.stop_s < (k + 1) * span_s:
                lo = int(np.searchsorted(arrivals, self.start_s, side="left"))
                hi = int(np.searchsorted(arrivals, self.stop_s, side="left"))
                arrivals = arrivals[lo:hi]
            if self.start_s:
                arrivals -= self.start_s
            yield arrivals


def to_epochs(arrivals_s: np.ndarray, epoch_s: float) -> np.ndarray:
    """Each arrival moved to the start of its epoch (LIBRA's simulator works in 1 s epochs)."""
    return np.floor(arrivals_s / epoch_s) * epoch_s


@dataclass(eq=False)
class ArrayStream(ArrivalStream):
    """A per-request trace already in memory (small files), handed out in time chunks."""

    arrivals_s: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        self._n_requests = int(self.arrivals_s.shape[0])

    def chunks(self) -> Iterator[np.ndarray]:
        arrivals = self.arrivals_s
        n_chunks = max(1, math.ceil(self.duration_s / CHUNK_S))
        bounds = np.searchsorted(arrivals, np.arange(1, n_chunks) * CHUNK_S, side="left")
        lo = 0
        for hi in (*bounds.tolist(), arrivals.size):
            yield arrivals[lo:hi]
            lo = hi

    def materialize(self) -> Trace:
        return Trace(name=self.name, arrivals_s=self.arrivals_s, duration_s=self.duration_s,
                     source=self.source)

    @classmethod
    def of(cls, trace: Trace) -> ArrayStream:
        return cls(name=trace.name, source=trace.source, duration_s=trace.duration_s,
                   arrivals_s=trace.arrivals_s)
