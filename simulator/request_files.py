"""Per-request logs as a user has them: JSON lines or CSV rows, one request each, with a time.

``{"timestamp": 1700000000250, "path": "/predict"}`` per line, or a CSV with a ``time``,
``timestamp_ms`` or ``created_at`` column: the time field is the one the caller names, else the
one field whose name says it is a time (``timestamp``, ``time``, ``ts``, ``arrival_time``,
``created_at``, ``time_s``, ``timestamp_ms``, ...); two such fields, or none, is an error that
names them and the flag. Units and date-times: :mod:`simulator.trace_times`.

Streaming: a file whose requests are in time order (as logs are) is never held in memory; its
arrivals are parsed again, a block of lines at a time, each time a replay reads them, so memory
stays flat in the trace's length. A file out of order is read once into one float64 array
(8 bytes a request) and sorted. Gzip'd files read the same (:mod:`simulator.trace_io`).

Scaling (``scale``) follows the other per-request formats (an arrival becomes ``floor(scale)``
plus a Bernoulli(frac) arrivals, extra copies within the next second), with one generator per
minute of trace (``default_rng([seed, 0xC5, minute])``) so the arrivals are the same however the
file is read. Every bad line is a :class:`~simulator.errors.TraceFormatError` naming the file and
the line.
"""

from __future__ import annotations

import csv
import json
import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from simulator.arrivals import CHUNK_S, ArrivalStream, to_epochs
from simulator.errors import TraceFormatError
from simulator.trace_io import numbered_lines
from simulator.trace_times import (
    TIME_UNITS,
    TimeFormatError,
    TimeParser,
    looks_like_time_name,
    unit_from_name,
)

__all__ = ["RequestFile", "RequestFileStream", "csv_dialect", "open_request_files"]

_BLOCK_LINES = 8192
_SCALE_STREAM = 0xC5


def csv_dialect(header: str) -> str:
    """The delimiter of a CSV header line: comma, else tab, else semicolon (comma if none)."""
    for delimiter in (",", "\t", ";"):
        if delimiter in header:
            return delimiter
    return ","


@dataclass
class RequestFile:
    """One JSONL or CSV file of requests and where each request's time is."""

    path: Path
    kind: Literal["jsonl", "csv"]
    time_field: str
    seconds_per_unit: float | None
    delimiter: str = ","
    header_line: int = 0  # csv: the header's line number
    column: int = 0  # csv: the time column's index

    def blocks(self) -> Iterator[np.ndarray]:
        """Seconds since the file's first request, a block of lines at a time, in file order."""
        parser = TimeParser(seconds_per_unit=self.seconds_per_unit)
        for values, line_nos in self._raw_blocks():
            try:
                yield parser.relative_s(values)
            except TimeFormatError as exc:
                raise self._error(line_nos, exc) from None

    def sorted_seconds(self) -> np.ndarray:
        """Every request's seconds since the earliest, in time order (the whole file at once):
        sorted as written, then converted as a file in order would be, to the same float."""
        parser = TimeParser(seconds_per_unit=self.seconds_per_unit)
        parts = []
        for values, line_nos in self._raw_blocks():
            try:
                parts.append(parser.raw(values))
            except TimeFormatError as exc:
                raise self._error(line_nos, exc) from None
        raw = np.sort(np.concatenate(parts))
        return parser.seconds(raw, raw[0].item())

    def _error(self, line_nos: list[int], exc: TimeFormatError) -> TraceFormatError:
        return TraceFormatError(str(self.path), line_nos[exc.index],
                                f"{self.time_field}: {exc.why}")

    def _raw_blocks(self) -> Iterator[tuple[list[object], list[int]]]:
        rows = self._jsonl_values() if self.kind == "jsonl" else self._csv_values()
        values: list[object] = []
        line_nos: list[int] = []
        for line_no, value in rows:
            values.append(value)
            line_nos.append(line_no)
            if len(values) == _BLOCK_LINES:
                yield values, line_nos
                values, line_nos = [], []
        if values:
            yield values, line_nos

    def _jsonl_values(self) -> Iterator[tuple[int, object]]:
        for line_no, text in numbered_lines(self.path):
            if not text.strip():
                continue
            record = _json_record(self.path, line_no, text)
            if self.time_field not in record:
                raise TraceFormatError(
                    str(self.path), line_no,
                    f"no field {self.time_field!r} (the time of every request); this record has "
                    f"{_names(record)}")
            yield line_no, record[self.time_field]

    def _csv_values(self) -> Iterator[tuple[int, object]]:
        lines = numbered_lines(self.path)
        header = ""
        for line_no, text in lines:
            if line_no == self.header_line:
                header = text
                break
        width = len(next(csv.reader([header], delimiter=self.delimiter)))
        for line_no, text in lines:
            if not text.strip():
                continue
            row = next(csv.reader([text], delimiter=self.delimiter))
            if len(row) != width:
                raise TraceFormatError(
                    str(self.path), line_no,
                    f"row has {len(row)} columns; the header has {width} ({_clip(header, 80)})")
            yield line_no, row[self.column].strip()


def open_request_files(
    paths: list[Path], kind: Literal["jsonl", "csv"], *, time_field: str | None,
    time_unit: str | None,
) -> list[RequestFile]:
    """Each file with its time field found (given, or the one whose name says time)."""
    return [_request_file(path, kind, time_field, time_unit) for path in paths]


def _request_file(path: Path, kind: Literal["jsonl", "csv"], time_field: str | None,
                  time_unit: str | None) -> RequestFile:
    first = _first_content_line(path)
    if first is None:
        raise TraceFormatError(str(path), None, "file is empty; expected one request per line")
    line_no, text = first
    if kind == "jsonl":
        names = list(_json_record(path, line_no, text))
        column, delimiter = 0, ","
    else:
        delimiter = csv_dialect(text)
        names = [c.strip() for c in next(csv.reader([text], delimiter=delimiter))]
    name = _time_name(path, line_no, names, time_field, "field" if kind == "jsonl" else "column")
    if kind == "csv":
        column = names.index(name)
    unit = TIME_UNITS[time_unit] if time_unit is not None else unit_from_name(name)
    return RequestFile(path, kind, name, unit, delimiter=delimiter, header_line=line_no,
                       column=column)


def _time_name(path: Path, line_no: int, names: list[str], wanted: str | None,
               what: str) -> str:
    flag = "--time-field" if what == "field" else "--time-column"
    if wanted is not None:
        if wanted not in names:
            raise TraceFormatError(str(path), line_no, f"no {what} {wanted!r}; there are "
                                   f"{_names(names)}")
        return wanted
    candidates = [n for n in names if looks_like_time_name(n)]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise TraceFormatError(str(path), line_no, f"no {what} named like a time (timestamp, "
                               f"time, ts, arrival_time, created_at, time_ms, ...) among "
                               f"{_names(names)}; name it with {flag}")
    raise TraceFormatError(str(path), line_no, f"{len(candidates)} {what}s could be the time: "
                           f"{', '.join(map(repr, candidates))}; choose one with {flag}")


def _first_content_line(path: Path) -> tuple[int, str] | None:
    for line_no, text in numbered_lines(path):
        if text.strip():
            return line_no, text
    return None


def _json_record(path: Path, line_no: int, text: str) -> dict[str, object]:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceFormatError(str(path), line_no, f"not JSON ({exc.msg} at column "
                               f"{exc.colno}); expected one JSON object per line") from None
    if not isinstance(record, dict):
        raise TraceFormatError(str(path), line_no, f"a JSON {type(record).__name__}, not an "
                               "object; expected one object per line, e.g. "
                               '{"timestamp": 1700000000250}')
    return record


def _names(names: object) -> str:
    listed = list(names)  # type: ignore[call-overload]
    shown = ", ".join(repr(n) for n in listed[:12])
    return f"{shown}{', ...' if len(listed) > 12 else ''}" if listed else "none"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------------------------
# The stream
# --------------------------------------------------------------------------------------------


class _SecondCounts:
    """Requests per whole second, grown as blocks arrive (8 bytes a second of trace)."""

    def __init__(self) -> None:
        self.counts = np.zeros(0, dtype=np.int64)

    def append(self, counts: np.ndarray, first_second: int) -> None:
        end = first_second + counts.size
        if end > self.counts.size:
            grown = np.zeros(max(end, 2 * self.counts.size), dtype=np.int64)
            grown[: self.counts.size] = self.counts
            self.counts = grown
        self.counts[first_second:end] += counts

    def add(self, other: _SecondCounts) -> None:
        self.append(other.counts, 0)

    def over(self, duration_s: float) -> np.ndarray:
        """Over ``max(1, ceil(duration_s))`` seconds, as `ArrivalStream.per_second_counts`
        counts them (an arrival at the very end counts in the last second)."""
        n_seconds = max(1, math.ceil(duration_s))
        counts = np.zeros(n_seconds, dtype=np.int64)
        head = self.counts[:n_seconds]
        counts[: head.size] = head
        counts[-1] += int(self.counts[n_seconds:].sum())
        return counts


@dataclass
class _Scan:
    n: int = 0
    last_s: float = 0.0
    in_order: bool = True
    per_second: _SecondCounts = field(default_factory=_SecondCounts)


def _scan(file: RequestFile, offset_s: float) -> _Scan:
    """One pass: how many requests, the span, whether they are in time order (validating every
    line on the way), and their count per whole second of trace time once `offset_s` is added."""
    scan = _Scan()
    previous = -math.inf
    for block in file.blocks():
        if block.size == 0:
            continue
        scan.n += block.size
        if scan.in_order and (block[0] < previous or bool(np.any(block[1:] < block[:-1]))):
            scan.in_order = False
        previous = float(block[-1])
        scan.last_s = max(scan.last_s, float(block.max()))
        if scan.in_order:
            seconds = (block + offset_s).astype(np.int64)  # as per_second_counts floors them
            scan.per_second.append(np.bincount(seconds - seconds[0]), int(seconds[0]))
    return scan


@dataclass(eq=False)
class RequestFileStream(ArrivalStream):
    """Arrivals of one or more request files (back to back), read again for every replay."""

    files: list[RequestFile] = field(default_factory=list)
    scale: float = 1.0
    seed: int = 0
    epoch_s: float | None = None
    start_s: float = 0.0
    stop_s: float | None = None  # None: the end of the trace
    _offsets_s: list[float] = field(default_factory=list, init=False, repr=False)
    _sorted: dict[int, np.ndarray] = field(default_factory=dict, init=False, repr=False)
    _full_s: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        offset_s = 0.0
        per_second: _SecondCounts | None = _SecondCounts()
        for i, file in enumerate(self.files):
            scan = _scan(file, offset_s)
            if per_second is not None and scan.in_order:
                per_second.add(scan.per_second)
            else:
                per_second = None
            if scan.n == 0:
                raise TraceFormatError(str(file.path), None, "has no requests; expected one per "
                                       "line" + (" after the header" if file.kind == "csv"
                                                 else ""))
            span_s = scan.last_s
            if not scan.in_order:  # read once, sorted; relative to the earliest request
                self._sorted[i] = file.sorted_seconds()
                span_s = float(self._sorted[i][-1])
            self._offsets_s.append(offset_s)
            offset_s += span_s
        self._full_s = offset_s
        if self.scale > 1.0:  # extra copies can land up to a second after the last request
            last_s = max((float(c[-1]) for c in self._scaled_tail() if c.size), default=0.0)
            self._full_s = max(offset_s, last_s)
        if self.start_s >= self._full_s and (self.start_s > 0 or self._full_s > 0):
            raise ValueError(f"start_s={self.start_s:g} is at or past the end of the trace "
                             f"({self._full_s:g} s)")
        stop_s = self._full_s if self.stop_s is None else min(self.stop_s, self._full_s)
        self.stop_s = stop_s
        self.duration_s = stop_s - self.start_s
        if per_second is not None and self.scale == 1.0 and self.epoch_s is None and \
                self.start_s == 0.0 and stop_s >= self._full_s:
            # the arrivals are the scanned times themselves: no second pass to count them
            self._per_second = per_second.over(self.duration_s)

    # -- the source, in time order --------------------------------------------------------------
    def _source_blocks(self) -> Iterator[np.ndarray]:
        for i, file in enumerate(self.files):
            offset_s = self._offsets_s[i]
            if i in self._sorted:
                yield self._sorted[i] + offset_s
                continue
            for block in file.blocks():
                if block.size:
                    yield block + offset_s

    def _source_minutes(self) -> Iterator[tuple[int, np.ndarray]]:
        """(k, arrivals in [k * CHUNK_S, (k + 1) * CHUNK_S)) for each k that has any."""
        pending: list[np.ndarray] = []
        current = -1
        for block in self._source_blocks():
            index = np.floor(block / CHUNK_S).astype(np.int64)
            cuts = np.flatnonzero(index[1:] != index[:-1]) + 1
            for part, k in zip(np.split(block, cuts), index[np.r_[0, cuts]].tolist(),
                               strict=True):
                if k != current and pending:
                    yield current, np.concatenate(pending)
                    pending = []
                current = k
                pending.append(part)
        if pending:
            yield current, np.concatenate(pending)

    def _scaled_minutes(self) -> Iterator[np.ndarray]:
        """Scaled arrivals in time order; copies spilling into the next minute wait for it."""
        carry = np.zeros(0)
        for k, source in self._source_minutes():
            if carry.size and carry[-1] < k * CHUNK_S:
                yield carry  # the minute before had nothing of its own
                carry = np.zeros(0)
            arrivals = self._scale(k, source)
            if carry.size:
                arrivals = np.sort(np.concatenate([carry, arrivals]))
            split = int(np.searchsorted(arrivals, (k + 1) * CHUNK_S, side="left"))
            carry = arrivals[split:]
            yield arrivals[:split]
        if carry.size:
            yield carry

    def _scaled_tail(self) -> Iterator[np.ndarray]:
        """The scaled arrivals of the trace's last two minutes (where its last copy lands)."""
        for k, source in deque(self._source_minutes(), maxlen=2):
            yield self._scale(k, source)

    def _scale(self, k: int, source: np.ndarray) -> np.ndarray:
        if self.scale == 1.0:
            return source
        rng = np.random.default_rng([self.seed, _SCALE_STREAM, k])
        whole = math.floor(self.scale)
        copies = whole + (rng.random(source.size) < self.scale - whole)
        if whole == 0:
            return source[copies == 1]
        extra_s = np.repeat(source, copies - 1)
        extra_s += rng.random(extra_s.size)
        return np.sort(np.concatenate([source, extra_s]))

    # -- what the engine reads ----------------------------------------------------------------
    def chunks(self) -> Iterator[np.ndarray]:
        assert self.stop_s is not None
        cut = self.start_s > 0.0 or self.stop_s < self._full_s
        # [start, stop), except at the trace's own end, which holds its last arrival
        side: Literal["left", "right"] = "right" if self.stop_s >= self._full_s else "left"
        for minute in self._scaled_minutes():
            arrivals = minute if self.epoch_s is None else to_epochs(minute, self.epoch_s)
            if cut:
                lo = int(np.searchsorted(arrivals, self.start_s, side="left"))
                hi = int(np.searchsorted(arrivals, self.stop_s, side=side))
                arrivals = arrivals[lo:hi] - self.start_s
            if arrivals.size:
                yield arrivals
