"""Reading one request's time from whatever a log wrote: a number in some unit, or ISO-8601.

Logs write times as epoch seconds (``1700000000.25``), milliseconds (``1700000000250``),
micro- or nanoseconds, or as date-times (``2023-11-14T22:13:20.25Z``,
``2023-11-14 23:13:20.250+01:00``). A unit is taken, in this order, from the caller
(``--time-unit``), from the field's name (``timestamp_ms``, ``time_s``, ``ts_ns``, ``seconds``),
or from the size of the first value when it can only be an epoch time (1e8 to 1e11 is seconds
since 1973-5138, 1e11 to 1e14 milliseconds, and so on up); anything else is ambiguous and the
reader asks for the flag rather than guess. Date-times need no unit; a zone offset or ``Z`` is
honoured (nanoseconds kept), a time without one is read as it is written (all times of a trace
in one zone).

Everything here is pure: values in, numbers out, ``TimeFormatError`` naming the value (the readers
add the file and line).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["TIME_UNITS", "TimeFormatError", "TimeParser", "epoch_unit", "looks_like_time_name",
           "unit_from_name"]

# seconds per unit
TIME_UNITS: dict[str, float] = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_NS_PER_UNIT = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}

_NAME_UNITS = (
    (re.compile(r"(^|[_\-\s.])(s|sec|secs|second|seconds)$"), 1.0),
    (re.compile(r"(^|[_\-\s.])(ms|msec|msecs|millis|millisecond|milliseconds)$"), 1e-3),
    (re.compile(r"(^|[_\-\s.])(us|µs|usec|usecs|micros|microsecond|microseconds)$"), 1e-6),
    (re.compile(r"(^|[_\-\s.])(ns|nsec|nsecs|nanos|nanosecond|nanoseconds)$"), 1e-9),
    (re.compile(r"(^|[_\-\s.])(min|mins|minute|minutes)$"), 60.0),
    (re.compile(r"(^|[_\-\s.])(h|hr|hrs|hour|hours)$"), 3600.0),
)
_TIME_WORDS = frozenset((
    "timestamp", "time", "ts", "t", "arrival", "arrival_time", "arrived", "arrived_at",
    "datetime", "date_time", "created", "created_at", "start", "start_time", "started_at",
    "request_time", "received", "received_at",
))
_NUMBER_RE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_INT_RE = re.compile(r"[+-]?\d+")
_ISO_RE = re.compile(
    r"(\d{4}-\d{2}-\d{2})"  # date
    r"(?:[T ](\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?))?"  # time, seconds and fraction optional
    r"(Z|[+-]\d{2}(?::?\d{2})?)?"  # zone
)
# A first value in [low, high) can only be an epoch time in this unit (the years 1973 to 5138).
_EPOCH_RANGES = (("s", 1e8, 1e11), ("ms", 1e11, 1e14), ("us", 1e14, 1e17), ("ns", 1e17, 1e20))

ISO_EXAMPLE = "'2023-11-14T22:13:20.25Z' or '2023-11-14 23:13:20+01:00'"


class TimeFormatError(ValueError):
    """One value that is not a time; ``index`` is its position in the block parsed."""

    def __init__(self, index: int, why: str) -> None:
        self.index = index
        self.why = why
        super().__init__(why)


def unit_from_name(name: str) -> float | None:
    """Seconds per unit a column or field name states (``time_ms`` -> 0.001), or None."""
    lowered = name.strip().lower()
    for pattern, seconds in _NAME_UNITS:
        if pattern.search(lowered):
            return seconds
    return None


def looks_like_time_name(name: str) -> bool:
    """Whether a name says it holds a time: a time word, or a time word with a unit suffix."""
    lowered = name.strip().lower()
    if lowered in _TIME_WORDS:
        return True
    stem = re.sub(r"[_\-\s.](s|sec|secs|seconds|ms|msec|millis|milliseconds|us|usec|micros|"
                  r"microseconds|ns|nsec|nanos|nanoseconds|utc|iso)$", "", lowered)
    return stem != lowered and stem in _TIME_WORDS


def epoch_unit(first: float) -> str | None:
    """The unit a first value must be in if it is an epoch time, or None when it could be any."""
    magnitude = abs(first)
    for unit, low, high in _EPOCH_RANGES:
        if low <= magnitude < high:
            return unit
    return None


@dataclass
class TimeParser:
    """Turns blocks of raw time values into int64 nanoseconds or float64 seconds, consistently.

    The first value fixes the kind (numbers or date-times) and, for numbers without a stated
    unit, the unit by its epoch size. Values are returned relative to ``origin``, the first
    value of the stream, so epoch nanoseconds keep every digit.
    """

    seconds_per_unit: float | None = None  # from the caller or the name; None: decide on data
    kind: str | None = None  # "number" or "iso", fixed by the first value
    origin_int: int | None = None  # first value in integer units (ns for date-times)
    origin_float: float | None = None
    unit_source: str = ""

    def relative_s(self, values: Sequence[object]) -> np.ndarray:
        """Seconds since the stream's first value (float64), one per value."""
        return self.seconds(self.raw(values))

    def raw(self, values: Sequence[object]) -> np.ndarray:
        """The values as written, as numbers: int64 (integers; date-times in ns) where exact,
        else float64. Sort these, not seconds, to put a file in order without rounding."""
        if not values:
            return np.zeros(0, dtype=np.int64)
        if self.kind is None:
            self._fix_kind(values[0])
        if self.kind == "iso":
            return self._iso_ns(values)
        return self._numbers(values)

    def seconds(self, raw: np.ndarray, origin: int | float | None = None) -> np.ndarray:
        """Seconds from `origin` (default: the stream's first value) to each raw value."""
        if self.kind == "iso":
            start = self.origin_int if origin is None else origin
            assert start is not None
            return (raw - np.int64(start)).astype(np.float64) / 1e9
        assert self.seconds_per_unit is not None
        if raw.dtype == np.int64:
            start = self.origin_int if origin is None else origin
            if isinstance(start, int):
                return (raw - np.int64(start)).astype(np.float64) * self.seconds_per_unit
        start_f = self.origin_float if origin is None else float(origin)
        assert start_f is not None
        return (raw.astype(np.float64) - start_f) * self.seconds_per_unit

    # -- numbers --------------------------------------------------------------------------------
    def _fix_kind(self, first: object) -> None:
        number = _as_number(first)
        if number is None:
            if isinstance(first, str) and _ISO_RE.fullmatch(first.strip()):
                self.kind = "iso"
                self.origin_int = int(self._iso_ns([first])[0])
                return
            raise TimeFormatError(0, f"{_show(first)} is neither a number nor an ISO-8601 "
                                     f"date-time like {ISO_EXAMPLE}")
        self.kind = "number"
        if self.seconds_per_unit is None:
            unit = epoch_unit(float(number))
            if unit is None:
                raise TimeFormatError(0, f"{_show(first)} has no unit: it could be seconds, "
                                         "milliseconds, microseconds or nanoseconds (only epoch "
                                         "times tell by their size); give the unit (--time-unit "
                                         "s|ms|us|ns, or a field name like time_ms)")
            self.seconds_per_unit = TIME_UNITS[unit]
            self.unit_source = f"epoch {unit}"
        if isinstance(number, int):
            self.origin_int = number
        self.origin_float = float(number)

    def _numbers(self, values: Sequence[object]) -> np.ndarray:
        numbers = []
        for i, value in enumerate(values):
            number = _as_number(value)
            if number is None or (isinstance(number, float) and not math.isfinite(number)):
                raise TimeFormatError(i, f"{_show(value)} is not a finite number (the first "
                                         "time was a number; every time must be)")
            numbers.append(number)
        if self.origin_int is not None and all(type(n) is int for n in numbers):
            try:  # integers stay exact (epoch nanoseconds have 19 digits)
                return np.array(numbers, dtype=np.int64)
            except OverflowError:
                pass
        return np.array(numbers, dtype=np.float64)

    # -- date-times -------------------------------------------------------------------------------
    def _iso_ns(self, values: Sequence[object]) -> np.ndarray:
        naive: list[str] = []
        offsets_ns: list[int] = []
        for i, value in enumerate(values):
            match = _ISO_RE.fullmatch(value.strip()) if isinstance(value, str) else None
            if match is None:
                raise TimeFormatError(i, f"{_show(value)} is not an ISO-8601 date-time like "
                                         f"{ISO_EXAMPLE} (the first time was one; every time "
                                         "must be)")
            date, clock, zone = match.groups()
            naive.append(date if clock is None else f"{date}T{clock.replace(',', '.')}")
            offsets_ns.append(_zone_ns(zone))
        try:
            stamps = np.array(naive, dtype="datetime64[ns]")
        except ValueError:
            for i, text in enumerate(naive):
                try:
                    np.datetime64(text, "ns")
                except ValueError:
                    raise TimeFormatError(i, f"{_show(values[i])} is not a valid date-time (no "
                                             "such day or time)") from None
            raise
        return stamps.astype(np.int64) - np.array(offsets_ns, dtype=np.int64)


def _zone_ns(zone: str | None) -> int:
    if zone is None or zone == "Z":
        return 0
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    return sign * (hours * 3600 + minutes * 60) * 10**9


def _as_number(value: object) -> int | float | None:
    """A JSON number or a numeric string as int (exact) or float; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        text = value.strip()
        if _INT_RE.fullmatch(text):
            return int(text)
        if _NUMBER_RE.fullmatch(text):
            return float(text)
    return None


def _show(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
