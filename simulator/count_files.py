"""Request counts per time bin, as users have them: whitespace-separated numbers, or a CSV column.

- ``per-second`` (LIBRA's ``wits_logs.txt``): one count per line, line i = second i - 1, no
  header; a blank line inside is an error (it would shift every later second).
- ``counts``: whitespace-separated counts, any number to a line (``3 0 5 2``), in order; blank
  lines are nothing. Bins of ``bin_s`` seconds (1 unless told).
- ``csv`` with a count column (``period,count``, ``time,requests``, ...): the count column is
  the one named (``--count-column``), else the one whose name says it counts (count, requests,
  invocations, hits, ...). Rows are placed by a time column when there is one whose times can be
  read (date-times, or numbers with a unit from ``--time-unit`` or the name: ``minute``,
  ``time_s``, ``ts_ms``); missing bins count zero. A bare period number (``period``, ``bin``)
  only labels consecutive rows. The bin width is ``--bin-s``, else the step between the first
  two rows' times; with neither, the reader asks for ``--bin-s``.

Read a line at a time: only the counts are kept (8 bytes a bin), never the text. Every bad line
is a :class:`~simulator.errors.TraceFormatError` naming the file, the line and the column.
"""

from __future__ import annotations

import array
import csv
import math
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from simulator.errors import TraceFormatError
from simulator.request_files import csv_dialect
from simulator.trace_io import numbered_lines
from simulator.trace_times import (
    TIME_UNITS,
    TimeFormatError,
    TimeParser,
    epoch_unit,
    looks_like_time_name,
    unit_from_name,
)

__all__ = ["COUNT_NAMES", "PERIOD_NAMES", "count_column_candidates", "read_csv_counts",
           "read_per_second", "read_whitespace_counts"]

COUNT_NAMES = frozenset(("count", "counts", "requests", "request_count", "requests_count",
                         "num_requests", "n_requests", "nrequests", "invocations", "arrivals",
                         "hits", "calls", "n"))
PERIOD_NAMES = frozenset(("period", "bin", "interval", "slot", "index", "idx", "window",
                          "second", "seconds", "sec", "minute", "minutes", "min", "hour",
                          "hours"))
_INT_RE = re.compile(r"\+?\d+")


def count_column_candidates(names: list[str]) -> list[str]:
    """Columns whose name says they count requests."""
    return [n for n in names if n.strip().lower() in COUNT_NAMES]


def read_per_second(path: Path, *, empty_why: str) -> np.ndarray:
    """One non-negative integer per line, no header (line i = second i - 1); trailing blank
    lines are allowed, a blank line inside is not."""
    counts = array.array("q")
    blank_at: int | None = None
    for line_no, text in numbered_lines(path):
        if not text.strip():
            blank_at = blank_at or line_no
            continue
        if blank_at is not None:
            _bad_second(path, blank_at, "")
        token = text.strip()
        if not _INT_RE.fullmatch(token):
            _bad_second(path, line_no, text)
        counts.append(_whole(path, line_no, token))
    if not counts:
        raise TraceFormatError(str(path), None, f"file is empty; expected one of: {empty_why}")
    return np.frombuffer(counts, dtype=np.int64).copy()


def _bad_second(path: Path, line_no: int, text: str) -> None:
    shown = text if len(text) <= 40 else text[:40] + "..."
    raise TraceFormatError(
        str(path), line_no,
        f"expected a non-negative integer (requests in second {line_no - 1}), got {shown!r}; "
        "per-second traces hold one count per line and no header")


def _whole(path: Path, line_no: int, token: str) -> int:
    value = int(token)
    if value >= 1 << 63:
        raise TraceFormatError(str(path), line_no, "a count is too large for a 64-bit integer")
    return value


def read_whitespace_counts(path: Path, *, empty_why: str) -> np.ndarray:
    """Every whitespace-separated token a non-negative integer count, in order."""
    counts = array.array("q")
    for line_no, text in numbered_lines(path):
        for position, token in enumerate(text.split(), start=1):
            if not _INT_RE.fullmatch(token):
                shown = token if len(token) <= 40 else token[:40] + "..."
                raise TraceFormatError(
                    str(path), line_no,
                    f"{shown!r} (number {position} on the line, bin {len(counts)}) is not a "
                    "non-negative integer; whitespace-separated counts hold whole numbers only")
            counts.append(_whole(path, line_no, token))
    if not counts:
        raise TraceFormatError(str(path), None, f"file is empty; expected one of: {empty_why}")
    return np.frombuffer(counts, dtype=np.int64).copy()


def read_csv_counts(
    path: Path, *, count_column: str | None, time_column: str | None, time_unit: str | None,
    bin_s: float | None,
) -> tuple[np.ndarray, float]:
    """Counts per bin from a CSV count column, and the bin width in seconds (module docs)."""
    lines = numbered_lines(path)
    header_no, header = next(((n, t) for n, t in lines if t.strip()), (0, ""))
    if not header:
        raise TraceFormatError(str(path), None, "file is empty; expected a header and one row "
                               "per time bin")
    delimiter = csv_dialect(header)
    names = [c.strip() for c in next(csv.reader([header], delimiter=delimiter))]
    count_name = _count_name(path, header_no, names, count_column)
    time_name = _time_name(path, header_no, names, time_column, count_name)
    count_col = names.index(count_name)
    time_col = names.index(time_name) if time_name is not None else None
    rows = _rows(path, lines, delimiter, len(names), header)
    placer = _Placer(path, time_name, time_unit, bin_s)
    for line_no, row in rows:
        cell = row[count_col].strip()
        if not _INT_RE.fullmatch(cell):
            shown = cell if len(cell) <= 40 else cell[:40] + "..."
            raise TraceFormatError(str(path), line_no, f"column {count_name!r} holds {shown!r}; "
                                   "expected a non-negative integer (requests in that bin)")
        placer.add(line_no, _whole(path, line_no, cell),
                   row[time_col].strip() if time_col is not None else None)
    return placer.result(header_no)


def _count_name(path: Path, line_no: int, names: list[str], wanted: str | None) -> str:
    if wanted is not None:
        if wanted not in names:
            raise TraceFormatError(str(path), line_no, f"no column {wanted!r}; the header has "
                                   f"{', '.join(map(repr, names))}")
        return wanted
    candidates = count_column_candidates(names)
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise TraceFormatError(str(path), line_no, "no column named like a count (count, "
                               "requests, invocations, hits, ...); name it with --count-column")
    raise TraceFormatError(str(path), line_no, f"{len(candidates)} columns could be the count: "
                           f"{', '.join(map(repr, candidates))}; choose one with --count-column")


def _time_name(path: Path, line_no: int, names: list[str], wanted: str | None,
               count_name: str) -> str | None:
    if wanted is not None:
        if wanted not in names:
            raise TraceFormatError(str(path), line_no, f"no column {wanted!r}; the header has "
                                   f"{', '.join(map(repr, names))}")
        return wanted
    candidates = [n for n in names if n != count_name and
                  (looks_like_time_name(n) or n.strip().lower() in PERIOD_NAMES
                   or unit_from_name(n) is not None)]
    if len(candidates) > 1:
        raise TraceFormatError(str(path), line_no, f"{len(candidates)} columns could say when "
                               f"each bin is: {', '.join(map(repr, candidates))}; choose one "
                               "with --time-column")
    return candidates[0] if candidates else None


def _rows(path: Path, lines: Iterator[tuple[int, str]], delimiter: str, width: int,
          header: str) -> Iterator[tuple[int, list[str]]]:
    for line_no, text in lines:
        if not text.strip():
            continue
        row = next(csv.reader([text], delimiter=delimiter))
        if len(row) != width:
            shown = header if len(header) <= 80 else header[:80] + "..."
            raise TraceFormatError(str(path), line_no, f"row has {len(row)} columns; the header "
                                   f"has {width} ({shown})")
        yield line_no, row


class _Placer:
    """Puts each row's count in its bin: by its time when times can be read, else in order."""

    def __init__(self, path: Path, time_name: str | None, time_unit: str | None,
                 bin_s: float | None) -> None:
        self.path, self.time_name, self.bin_s = path, time_name, bin_s
        unit = TIME_UNITS[time_unit] if time_unit is not None else \
            unit_from_name(time_name) if time_name is not None else None
        self.parser = TimeParser(seconds_per_unit=unit)
        self.by_time: bool | None = None if time_name is not None else False
        self.counts = array.array("q")
        self.labels: list[float] = []  # a bare period's first values, to check the step
        self.first_line = 0
        self.pending: list[tuple[int, int, float]] = []  # (line, count, seconds) before the bin

    def add(self, line_no: int, count: int, time_text: str | None) -> None:
        if self.by_time is None:  # the first row decides
            self.by_time = self._readable(time_text)
        if not self.by_time:
            if time_text is not None and self.time_name is not None:
                self._check_label(line_no, time_text)
            self.counts.append(count)
            return
        try:
            seconds = float(self.parser.relative_s([time_text])[0])
        except TimeFormatError as exc:
            raise TraceFormatError(str(self.path), line_no,
                                   f"column {self.time_name!r}: {exc.why}") from None
        if self.bin_s is None and not self.pending:
            self.pending.append((line_no, count, seconds))
            return
        if self.bin_s is None:
            first_line, first_count, first_s = self.pending[0]
            if seconds <= first_s:
                self._not_after(line_no, seconds, first_s)
            self.bin_s = seconds - first_s
            self.pending = []
            self._place(first_line, first_count, first_s)
        self._place(line_no, count, seconds)

    def _readable(self, time_text: str | None) -> bool:
        """Whether this column's times can be read: a date-time, or a number with a unit."""
        if time_text is None:
            return False
        try:
            number = float(time_text)
        except ValueError:
            return True  # a date-time (or junk, which the parser will name)
        return self.parser.seconds_per_unit is not None or epoch_unit(number) is not None

    def _place(self, line_no: int, count: int, seconds: float) -> None:
        assert self.bin_s is not None
        position = seconds / self.bin_s
        index = round(position)
        if abs(position - index) > 1e-6 * max(1.0, abs(position)):
            raise TraceFormatError(str(self.path), line_no,
                                   f"{self.time_name} is {seconds:g} s after the first row, not a "
                                   f"whole number of {self.bin_s:g} s bins; give the bin with "
                                   "--bin-s")
        if index < len(self.counts):
            raise TraceFormatError(str(self.path), line_no,
                                   f"{self.time_name} goes back to bin {index} (already at "
                                   f"{len(self.counts)}); rows must be in time order, one per "
                                   "bin")
        self.counts.extend([0] * (index - len(self.counts)))
        self.counts.append(count)

    def _not_after(self, line_no: int, seconds: float, first_s: float) -> None:
        raise TraceFormatError(str(self.path), line_no,
                               f"{self.time_name} is not after the first row's "
                               f"({seconds - first_s:g} s); rows must be in time order, one per "
                               "bin")

    def _check_label(self, line_no: int, text: str) -> None:
        """A bare period number labels consecutive rows: it must step evenly."""
        try:
            value = float(text)
        except ValueError:
            raise TraceFormatError(str(self.path), line_no,
                                   f"column {self.time_name!r} holds {text!r}; expected a "
                                   "number or a date-time") from None
        labels = self.labels
        if len(labels) < 2:
            labels.append(value)
            if len(labels) == 2 and labels[1] <= labels[0]:
                self._uneven(line_no, labels[0], value)
            return
        expected = labels[1] + (labels[1] - labels[0]) * (len(self.counts) - 1)
        if not math.isclose(value, expected, rel_tol=1e-9, abs_tol=1e-9):
            self._uneven(line_no, expected, value)

    def _uneven(self, line_no: int, expected: float, value: float) -> None:
        raise TraceFormatError(
            str(self.path), line_no,
            f"{self.time_name} is {value:g} where the next bin would be {expected:g}; with no "
            f"unit for {self.time_name!r} its rows must be consecutive bins (give --time-unit to "
            "place them by time, missing bins then count zero)")

    def result(self, header_no: int) -> tuple[np.ndarray, float]:
        if self.pending:  # a single row placed by time, bin unknown
            raise TraceFormatError(str(self.path), None, "one row cannot tell the bin width; "
                                   "give it with --bin-s")
        if not self.counts:
            raise TraceFormatError(str(self.path), None, "has a header but no rows; expected "
                                   "one row per time bin")
        if self.bin_s is None:
            where = f"its column {self.time_name!r} has no unit" if self.time_name else \
                "it has no time column"
            raise TraceFormatError(str(self.path), header_no,
                                   f"cannot tell how long each bin is ({where}); give it with "
                                   "--bin-s (e.g. --bin-s 60 for counts per minute)")
        return np.frombuffer(self.counts, dtype=np.int64).copy(), float(self.bin_s)
