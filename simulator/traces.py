"""Trace readers: turn a request-trace file into arrival times, in seconds from the trace start.

The simulator replays arrivals, but public traces come in five shapes: per-minute counts (Azure
Functions 2019), per-invocation rows (Azure Functions 2021), per-request date-time stamps (Azure
LLM inference), plain timestamps, and per-second counts (LIBRA's own traces). ``load_trace`` reads
any of them into one :class:`Trace` so that policies are compared on the same footing.

And the shapes a user's own logs come in, with no script between: JSON lines with a time field
(``jsonl``; seconds, ms, us, ns or ISO-8601: :mod:`simulator.request_files`), a CSV with a
chosen time column or a count column and a bin width (``csv``), and whitespace-separated counts
(``counts``: :mod:`simulator.count_files`); any file may be gzip'd (read by its magic bytes).
Detected where the file is unambiguous (``detect_format``); ``time_field``, ``time_unit``,
``count_column`` and ``bin_s`` say what it cannot.

Count formats carry no timing inside a bin. We place a bin's ``count`` arrivals as ``count``
sorted uniform draws inside the bin, which *is* a Poisson process conditioned on its count: the
count per bin stays exact (so totals match the published numbers) while the spacing is random
rather than a comb that would flatter any batching policy. ``spread="uniform"`` gives the comb
(evenly spaced, no randomness) when that is what a comparison needs.

Everything random draws from one ``numpy.random.Generator`` seeded by ``seed``: the same inputs
and seed give byte-identical arrays.

Bad input raises :class:`~simulator.errors.TraceFormatError` naming the file, the 1-based line
(the header is line 1) and what was expected; bad arguments raise ``ValueError``.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NoReturn

import numpy as np

from simulator.arrivals import ArrayStream, ArrivalStream, CountStream, to_epochs
from simulator.count_files import (
    count_column_candidates,
    read_csv_counts,
    read_per_second,
    read_whitespace_counts,
)
from simulator.errors import TraceFormatError
from simulator.request_files import RequestFileStream, csv_dialect, open_request_files
from simulator.trace_base import SPREADS, Spread, Trace, spread_counts
from simulator.trace_io import numbered_lines, open_text
from simulator.trace_io import reading as _reading
from simulator.trace_times import TIME_UNITS, epoch_unit, looks_like_time_name

__all__ = ["FORMATS", "SPREADS", "ArrivalStream", "ReadOptions", "Trace", "detect_format",
           "load_trace", "open_trace", "spread_counts"]

FORMATS = ("azure2019", "azure2021", "azure-llm", "timestamps", "per-second", "jsonl", "csv",
           "counts")
_COUNT_KINDS = ("azure2019", "per-second", "counts")

SECONDS_PER_MINUTE = 60.0
SECONDS_PER_SECOND_BIN = 1.0
# Rows parsed per numpy call: big enough to be fast, small enough that a full Azure 2019 day
# (~46k functions x 1440 minutes) never sits in memory as Python strings all at once.
_CHUNK_ROWS = 2048

_AZ2019_IDS = ("HashOwner", "HashApp", "HashFunction")
_AZ2019_META = frozenset((*_AZ2019_IDS, "Trigger"))
_AZ2021_COLUMNS = ("app", "func", "end_timestamp", "duration")
_LLM_TIME_COLUMN = "TIMESTAMP"
_TIMESTAMP_COLUMNS = ("timestamp_s", "timestamp")

_INT_RE = re.compile(r"[+-]?\d+")
_LLM_STAMP_RE = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,9})?")

_EXPECTED_HEADERS = (
    "azure2019 'HashOwner,HashApp,HashFunction,Trigger,1,2,...,1440' or the In-Vitro "
    "'HashFunction,HashApp,HashOwner,minute_1,...,minute_1440'; "
    "azure2021 'app,func,end_timestamp,duration'; "
    "azure-llm 'TIMESTAMP,ContextTokens,GeneratedTokens'; "
    "timestamps a header with a 'timestamp_s' (or 'timestamp') column, or no header and one "
    "number per line; per-second no header and one integer per line; "
    "jsonl one JSON object per line with a time field (--time-field); "
    "csv a header with a time column (--time-column) or a count column (--count-column); "
    "counts whitespace-separated integers"
)


@dataclass(frozen=True)
class ReadOptions:
    """What a file cannot say about itself: which field holds the time, in which unit, which
    column counts requests, how long a bin is. None: detect it (or fail asking for it)."""

    time_field: str | None = None
    time_unit: str | None = None
    count_column: str | None = None
    bin_s: float | None = None

    def check(self) -> None:
        if self.time_unit is not None and self.time_unit not in TIME_UNITS:
            raise ValueError(f"unknown time unit {self.time_unit!r}; choose one of "
                             f"{', '.join(TIME_UNITS)}")
        if self.bin_s is not None and not (math.isfinite(self.bin_s) and self.bin_s > 0):
            raise ValueError(f"bin_s must be a finite number of seconds > 0, got {self.bin_s}")
        for name in ("time_field", "count_column"):
            value = getattr(self, name)
            if value is not None and not value.strip():
                raise ValueError(f"{name} must name a field or column, got {value!r}")


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def load_trace(
    paths: str | Path | Sequence[str | Path],
    *,
    fmt: str = "auto",
    function: str | None = None,
    app: str | None = None,
    top: int | None = None,
    scale: float = 1.0,
    start_s: float = 0.0,
    end_s: float | None = None,
    spread: Spread = "poisson",
    seed: int = 0,
    epoch_s: float | None = None,
    time_field: str | None = None,
    time_unit: str | None = None,
    count_column: str | None = None,
    bin_s: float | None = None,
) -> Trace:
    """Read one trace file (or several, back to back) into a :class:`Trace`.

    The arrivals are exactly those :func:`open_trace` streams with the same arguments (see
    there for every argument); use that for long traces, this for small ones and for analysis.
    """
    return open_trace(paths, fmt=fmt, function=function, app=app, top=top, scale=scale,
                      start_s=start_s, end_s=end_s, spread=spread, seed=seed, epoch_s=epoch_s,
                      time_field=time_field, time_unit=time_unit, count_column=count_column,
                      bin_s=bin_s).materialize()


def open_trace(
    paths: str | Path | Sequence[str | Path],
    *,
    fmt: str = "auto",
    function: str | None = None,
    app: str | None = None,
    top: int | None = None,
    scale: float = 1.0,
    start_s: float = 0.0,
    end_s: float | None = None,
    spread: Spread = "poisson",
    seed: int = 0,
    epoch_s: float | None = None,
    time_field: str | None = None,
    time_unit: str | None = None,
    count_column: str | None = None,
    bin_s: float | None = None,
) -> ArrivalStream:
    """Read one trace file (or several, back to back) as a stream of arrivals.

    Count formats (azure2019, per-second, counts, csv with a count column) keep only their
    counts in memory and spread one chunk of trace time at a time (:mod:`simulator.arrivals`);
    jsonl and csv with a time column stream the file again for every replay (memory flat;
    :mod:`simulator.request_files`); the other per-request formats are read whole (they are
    small) and handed out in chunks.

    Args:
        paths: a file, or a list of files concatenated in time (day 2 follows day 1). All must
            share one format.
        fmt: ``"auto"`` (detect from the header / first line) or one of :data:`FORMATS`.
        function: azure2019 / azure2021 only: keep one function's rows (its HashFunction / func id).
            In several day files a function absent from some days counts zero there.
        app: azure2019 / azure2021 only: keep one app (the sum of its functions). With
            ``function`` too, keep that function within that app. Neither: all rows summed.
        top: azure2019 only: keep the ``top`` functions with the most invocations over all the
            files (a function is its HashOwner, HashApp, HashFunction; ties broken by first
            appearance), summed. Combines with ``app`` (the top functions of that app).
        scale: multiply the request rate. Count formats (azure2019, per-second): each bin's count
            becomes ``count * scale`` rounded stochastically (floor plus a Bernoulli draw of the
            fraction), then spread. Per-request formats: each arrival becomes ``floor(scale)``
            plus Bernoulli(frac(scale)) arrivals; with ``scale >= 1`` the original keeps its time
            and each extra copy lands at ``t + U(0, 1) s``; with ``scale < 1`` each arrival is kept
            with probability ``scale``. Why copies within a second rather than a uniform rescale
            of time: the trace's shape (bursts, diurnal swing, quiet gaps) is kept at every time
            scale of one second and up, and the expected count is exactly ``scale`` times the
            original. The trace may end up to 1 s later than before scaling.
        start_s, end_s: keep arrivals in ``[start_s, end_s)`` (applied after spreading and
            scaling), shifted so the window starts at 0; ``duration_s = end_s - start_s``. An
            ``end_s`` past the trace end is clipped to it.
        spread: how count formats place a bin's arrivals: ``"poisson"`` (sorted uniform draws,
            i.e. a Poisson process conditioned on the exact count) or ``"uniform"`` (evenly
            spaced at ``(j + 0.5) * bin / count``).
        seed: seeds scaling (one generator) and spreading (one generator per chunk).
        epoch_s: move every arrival to the start of its epoch (a multiple of ``epoch_s`` of
            trace time, after spreading and scaling, before the window cut). LIBRA's simulator
            handles a second's requests together (``epoch_s=1``: a 1 s request served at once
            frees its slot exactly when the next second's requests arrive). None: keep times.
        time_field: jsonl / csv: the field or column holding each request's time (for a count
            csv: the column saying which bin a row is). None: the one whose name says time.
        time_unit: jsonl / csv: ``s``, ``ms``, ``us`` or ``ns`` for numeric times. None: from
            the field's name (``time_ms``) or, for epoch times, their size; date-times need none.
        count_column: csv: the column of request counts per bin (a count csv). None: the one
            named like a count (count, requests, invocations, hits, ...), if any.
        bin_s: counts, per-second and count csv: seconds per bin. None: 1 for counts and
            per-second, the step between the first two rows' times for a count csv.

    Raises:
        TraceFormatError: a file is missing, empty or malformed, or an id is not in it.
        ValueError: an argument is out of range (message says the valid range or choices).
    """
    path_list = _as_path_list(paths)
    _check_arguments(fmt=fmt, scale=scale, start_s=start_s, end_s=end_s, spread=spread, seed=seed)
    if epoch_s is not None and not (math.isfinite(epoch_s) and epoch_s > 0):
        raise ValueError(f"epoch_s must be a finite number of seconds > 0, got {epoch_s}")
    if top is not None and (isinstance(top, bool) or not isinstance(top, (int, np.integer))
                            or top < 1):
        raise ValueError(f"top must be a whole number of functions >= 1, got {top!r}")
    options = ReadOptions(time_field, time_unit, count_column, bin_s)
    options.check()
    formats = _resolve_formats(path_list, fmt, options)
    kind = formats[0]
    _check_selection_applies(kind, function, app, top)
    _check_options_apply(kind, options, path_list[0])
    if function is not None and top is not None:
        raise ValueError("function= keeps one function and top= the busiest N: give one of them")
    name = _trace_name(path_list, function=function, app=app, top=top, scale=scale,
                       start_s=start_s, end_s=end_s)
    source = ", ".join(str(p) for p in path_list)
    rng = np.random.default_rng(seed)
    if kind == "jsonl" or (kind == "csv" and _csv_mode(path_list[0], options) == "requests"):
        files = open_request_files(path_list, "jsonl" if kind == "jsonl" else "csv",
                                   time_field=time_field, time_unit=time_unit)
        return RequestFileStream(name=name, source=source, duration_s=0.0, files=files,
                                 scale=scale, seed=seed, epoch_s=epoch_s, start_s=start_s,
                                 stop_s=end_s)
    if kind in (*_COUNT_KINDS, "csv"):
        counts, bin_s = _read_count_series(path_list, kind, function=function, app=app, top=top,
                                           options=options)
        counts = _scale_counts(counts, scale, rng)
        full_s = counts.size * bin_s
        if start_s >= full_s and (start_s > 0 or full_s > 0):
            raise ValueError(f"start_s={start_s:g} is at or past the end of the trace "
                             f"({full_s:g} s)")
        stop_s = full_s if end_s is None else min(end_s, full_s)
        return CountStream(name=name, source=source, duration_s=stop_s - start_s, counts=counts,
                           bin_s=bin_s, spread=spread, seed=seed, start_s=start_s, stop_s=stop_s,
                           epoch_s=epoch_s)
    arrivals_s, duration_s = _load_request_format(
        path_list, kind, function=function, app=app, scale=scale, rng=rng
    )
    if epoch_s is not None:
        arrivals_s = to_epochs(arrivals_s, epoch_s)
    arrivals_s, duration_s = _cut_window(arrivals_s, duration_s, start_s, end_s)
    trace = Trace(name=name, arrivals_s=arrivals_s, duration_s=duration_s, source=source)
    return ArrayStream.of(trace)


# --------------------------------------------------------------------------------------------
# Arguments and format detection
# --------------------------------------------------------------------------------------------


def _as_path_list(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(paths, (str, Path)):
        return [Path(paths)]
    path_list = [Path(p) for p in paths]
    if not path_list:
        raise ValueError("paths is empty; give a trace file or a list of files")
    return path_list


def _check_arguments(
    *, fmt: str, scale: float, start_s: float, end_s: float | None, spread: str, seed: int
) -> None:
    if fmt != "auto" and fmt not in FORMATS:
        raise ValueError(f"unknown trace format {fmt!r}; choose one of auto, {', '.join(FORMATS)}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0 (1.0 keeps the rate), got {scale}")
    if not (math.isfinite(start_s) and start_s >= 0):
        raise ValueError(f"start_s must be a finite number of seconds >= 0, got {start_s}")
    if end_s is not None and not end_s > start_s:
        raise ValueError(f"end_s ({end_s}) must be greater than start_s ({start_s})")
    if spread not in SPREADS:
        raise ValueError(f"unknown spread {spread!r}; choose one of {', '.join(SPREADS)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")


def _resolve_formats(path_list: list[Path], fmt: str, options: ReadOptions) -> list[str]:
    if fmt != "auto":
        return [fmt] * len(path_list)
    formats = [_detect(path, options) for path in path_list]
    for path, kind in zip(path_list[1:], formats[1:], strict=True):
        if kind != formats[0]:
            raise TraceFormatError(
                str(path), 1,
                f"looks like {kind} but {path_list[0]} is {formats[0]}; files read together "
                "must share one format",
            )
    return formats


def detect_format(path: str | Path, *, time_field: str | None = None,
                  time_unit: str | None = None, count_column: str | None = None) -> str:
    """Which of :data:`FORMATS` a file is in, from its header (or, headerless, its lines).

    Naming a time field, a unit or a count column says the file is a user's log (jsonl if its
    first line is a JSON object, else csv) rather than one of the public traces' own formats."""
    return _detect(Path(path), ReadOptions(time_field, time_unit, count_column))


def _detect(path: Path, options: ReadOptions) -> str:
    first = _first_line(path)
    if first.lstrip().startswith("{"):
        return "jsonl"
    if options.time_field is not None or options.count_column is not None:
        return "csv"
    cells = [c.strip() for c in next(csv.reader([first], delimiter=csv_dialect(first)), [""])]
    names = set(cells)
    if set(_AZ2019_IDS) <= names:
        return "azure2019"
    if set(_AZ2021_COLUMNS) <= names:
        return "azure2021"
    if _LLM_TIME_COLUMN in names:
        return "azure-llm"
    if {c.lower() for c in cells} & set(_TIMESTAMP_COLUMNS):
        # seconds, as this format has always read them, unless a unit was given or the values
        # can only be epoch milli-, micro- or nanoseconds
        return "csv" if options.time_unit is not None or _epoch_subsecond(path) else \
            "timestamps"
    if len(cells) == 1 and _is_number(cells[0].split()[0] if cells[0].split() else ""):
        return _headerless_numbers(path)
    tokens = first.split()
    if len(tokens) > 1 and "," not in first and all(_INT_RE.fullmatch(t) for t in tokens):
        return "counts"
    if count_column_candidates(cells) or any(looks_like_time_name(c) for c in cells):
        return "csv"
    raise TraceFormatError(
        str(path), 1, f"unrecognised header {_clip(first)!r}; expected one of: {_EXPECTED_HEADERS}"
    )


def _headerless_numbers(path: Path) -> str:
    """Headerless numbers: integers one a line are counts per second, integers several to a line
    whitespace-separated counts, and any fraction or exponent means seconds (timestamps).
    (Integer timestamps are ambiguous: pass fmt="timestamps".) Read a line at a time."""
    several = False
    for _, text in numbered_lines(path):
        if _looks_fractional(text):
            return "timestamps"
        several = several or len(text.split()) > 1
    return "counts" if several else "per-second"


def _epoch_subsecond(path: Path) -> bool:
    """Whether a timestamps file's first time is an epoch time in ms, us or ns (not seconds)."""
    lines = numbered_lines(path)
    header = next(((n, t) for n, t in lines if t.strip()), None)
    row = next(((n, t) for n, t in lines if t.strip()), None)
    if header is None or row is None:
        return False
    names = [c.strip().lower() for c in next(csv.reader([header[1]]))]
    cells = next(csv.reader([row[1]]))
    column = next((names.index(c) for c in _TIMESTAMP_COLUMNS if c in names), 0)
    if column >= len(cells) or not _is_number(cells[column]):
        return False
    return epoch_unit(float(cells[column])) in ("ms", "us", "ns")


def _csv_mode(path: Path, options: ReadOptions) -> str:
    """A csv of requests (a time column) or of counts per bin (a count column)."""
    if options.count_column is not None:
        return "counts"
    if options.time_field is not None:
        return "requests"
    first = _first_line(path)
    cells = [c.strip() for c in next(csv.reader([first], delimiter=csv_dialect(first)), [""])]
    return "counts" if count_column_candidates(cells) else "requests"


def _check_options_apply(kind: str, options: ReadOptions, path: Path) -> None:
    """Refuse a flag the format has no use for, rather than ignore it."""
    if options.count_column is not None and kind != "csv":
        raise ValueError(f"count_column names a column of a count csv; a {kind} trace has none")
    if options.time_field is not None and kind not in ("jsonl", "csv"):
        raise ValueError(f"time_field names the time of a jsonl or csv trace; {kind} traces "
                         "have their own")
    if options.time_unit is not None and kind not in ("jsonl", "csv"):
        raise ValueError(f"time_unit applies to jsonl and csv times; {kind} traces have their "
                         "own unit")
    counts = kind in ("per-second", "counts") or (kind == "csv" and
                                                  _csv_mode(path, options) == "counts")
    if options.bin_s is not None and not counts:
        has = "per-minute bins" if kind == "azure2019" else "a time per request"
        raise ValueError(f"bin_s is the bin of a count trace (counts, per-second, a count csv); "
                         f"a {kind} trace has {has}")


def _check_selection_applies(
    kind: str, function: str | None, app: str | None, top: int | None
) -> None:
    if (function is not None or app is not None) and kind not in ("azure2019", "azure2021"):
        raise ValueError(
            f"function=/app= select rows of azure2019 or azure2021 traces; a {kind} trace has no "
            "function or app ids"
        )
    if top is not None and kind != "azure2019":
        raise ValueError(f"top= ranks the functions of an azure2019 trace by invocations; a "
                         f"{kind} trace has no per-function counts")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _looks_fractional(line: str) -> bool:
    return any(ch in line for ch in ".eE")


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------


def _first_line(path: Path) -> str:
    """Line 1 without its line end; reads only that much, so detecting a big file is cheap."""
    with _reading(path), open_text(path) as handle:
        first = handle.readline().rstrip("\r\n")
    return first if first.strip() else _read_lines(path)[0]


def _read_lines(path: Path) -> list[str]:
    """The file's lines without line ends or trailing blank lines; errors name the path."""
    with _reading(path), open_text(path) as handle:
        text = handle.read()
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise TraceFormatError(
            str(path), None, f"file is empty; expected one of: {_EXPECTED_HEADERS}"
        )
    return lines


def _data_rows(lines: list[str], n_columns: int, path: Path, header_text: str
               ) -> Iterable[tuple[int, list[str]]]:
    """(line number, cells) for each non-blank row after the header, checking its width."""
    reader = csv.reader(lines)
    next(reader)
    for row in reader:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != n_columns:
            raise TraceFormatError(
                str(path), reader.line_num,
                f"row has {len(row)} columns; the header has {n_columns} "
                f"({_clip(header_text, 80)})",
            )
        yield reader.line_num, row


# --------------------------------------------------------------------------------------------
# Count formats: azure2019 (per minute) and per-second
# --------------------------------------------------------------------------------------------


@dataclass
class _IdIndex:
    """Ids seen across files, kept in first-seen order so error messages are deterministic."""

    functions: dict[str, None] = field(default_factory=dict)
    apps: dict[str, None] = field(default_factory=dict)
    matched_rows: int = 0


@dataclass(frozen=True)
class _Azure2019Layout:
    n_columns: int
    function_col: int
    app_col: int
    owner_col: int
    first_count_col: int
    minute_labels: tuple[str, ...]


RowKey = tuple[str, str, str]  # (HashOwner, HashApp, HashFunction): one function


def _read_count_series(
    path_list: list[Path], kind: str, *, function: str | None, app: str | None, top: int | None,
    options: ReadOptions,
) -> tuple[np.ndarray, float]:
    """The selected counts per bin of all files back to back (int64), and the bin in seconds."""
    if kind == "csv":
        parts = [read_csv_counts(path, count_column=options.count_column,
                                 time_column=options.time_field, time_unit=options.time_unit,
                                 bin_s=options.bin_s) for path in path_list]
        bins = {bin_s for _, bin_s in parts}
        if len(bins) > 1:
            raise TraceFormatError(", ".join(map(str, path_list)), None,
                                   f"files read together have different bins "
                                   f"({', '.join(f'{b:g} s' for b in sorted(bins))}); give "
                                   "--bin-s or read them one at a time")
        return np.concatenate([c for c, _ in parts]), parts[0][1]
    if kind != "azure2019":
        read = read_per_second if kind == "per-second" else read_whitespace_counts
        series = [read(path, empty_why=_EXPECTED_HEADERS) for path in path_list]
        bin_s = SECONDS_PER_SECOND_BIN if options.bin_s is None else options.bin_s
        return np.concatenate(series), bin_s
    ids = _IdIndex()
    if top is None:
        def keep(key: RowKey) -> bool:
            return (function is None or key[2] == function) and (app is None or key[1] == app)
    else:
        # Pass 1 ranks functions by their total over every file; pass 2 sums the chosen ones.
        totals: dict[RowKey, int] = {}
        for path in path_list:
            _read_azure2019(path, lambda key: app is None or key[1] == app, _IdIndex(), totals)
        if app is not None and not totals:
            _check_ids_found(path_list, None, app, _IdIndex())
        chosen = set(sorted(totals, key=lambda k: -totals[k])[:top])

        def keep(key: RowKey) -> bool:
            return key in chosen
    series = [_read_azure2019(path, keep, ids) for path in path_list]
    _check_ids_found(path_list, function, app, ids)
    return np.concatenate(series), SECONDS_PER_MINUTE


def _azure2019_layout(path: Path, header: list[str]) -> _Azure2019Layout:
    names = [h.strip() for h in header]
    missing = [c for c in _AZ2019_IDS if c not in names]
    if missing:
        raise TraceFormatError(
            str(path), 1,
            f"not an Azure Functions 2019 invocation header: no column {', '.join(missing)}; "
            "expected 'HashOwner,HashApp,HashFunction,Trigger,1,2,...,1440' (original) or "
            "'HashFunction,HashApp,HashOwner,minute_1,...,minute_1440' (In-Vitro)",
        )
    count_cols = [i for i, name in enumerate(names) if name not in _AZ2019_META]
    if not count_cols:
        raise TraceFormatError(str(path), 1, "no minute columns after the id columns; expected "
                               "labels 1..1440 or minute_1..minute_1440")
    first = count_cols[0]
    if count_cols != list(range(first, len(names))):
        raise TraceFormatError(
            str(path), 1, "id columns (HashOwner, HashApp, HashFunction, Trigger) must all come "
            "before the minute columns",
        )
    _check_minute_labels(path, names[first:], first)
    return _Azure2019Layout(
        n_columns=len(names),
        function_col=names.index("HashFunction"),
        app_col=names.index("HashApp"),
        owner_col=names.index("HashOwner"),
        first_count_col=first,
        minute_labels=tuple(names[first:]),
    )


def _check_minute_labels(path: Path, labels: list[str], first_col: int) -> None:
    """Minute labels must be consecutive integers (arrivals are placed relative to the first)."""
    first_minute = _minute_number(labels[0])
    for offset, label in enumerate(labels):
        number = _minute_number(label)
        if number is None or first_minute is None or number != first_minute + offset:
            want = "1" if first_minute is None else str(first_minute + offset)
            raise TraceFormatError(
                str(path), 1,
                f"column {first_col + offset + 1} is labelled {label!r}; expected minute {want}: "
                "minute labels must be consecutive integers like 1..1440 or minute_1..minute_1440",
            )


def _minute_number(label: str) -> int | None:
    text = label.removeprefix("minute_")
    return int(text) if text.isdigit() else None


def _read_azure2019(
    path: Path, keep: Callable[[RowKey], bool], ids: _IdIndex,
    totals: dict[RowKey, int] | None = None,
) -> np.ndarray:
    """Per-minute counts summed over the rows `keep` selects, parsed 2,048 rows at a time.

    With `totals`, each selected row's invocations over the file are also added to its key's
    entry (the first pass of a top-N selection).
    """
    lines = _read_lines(path)
    layout = _azure2019_layout(path, next(csv.reader([lines[0]])))
    total = np.zeros(len(layout.minute_labels), dtype=np.int64)
    cells: list[list[str]] = []
    line_nos: list[int] = []
    selected: list[bool] = []
    keys: list[RowKey] = []
    n_rows = 0
    for line_no, row in _data_rows(lines, layout.n_columns, path, lines[0]):
        n_rows += 1
        key = (row[layout.owner_col].strip(), row[layout.app_col].strip(),
               row[layout.function_col].strip())
        ids.functions.setdefault(key[2])
        ids.apps.setdefault(key[1])
        cells.append(row[layout.first_count_col:])
        line_nos.append(line_no)
        selected.append(keep(key))
        keys.append(key)
        if len(cells) == _CHUNK_ROWS:
            total += _sum_selected(path, cells, line_nos, selected=selected, layout=layout, ids=ids,
                                   keys=keys, totals=totals)
            cells, line_nos, selected, keys = [], [], [], []
    if cells:
        total += _sum_selected(path, cells, line_nos, selected=selected, layout=layout, ids=ids,
                               keys=keys, totals=totals)
    if n_rows == 0:
        raise TraceFormatError(str(path), None, "has a header but no rows; expected one row per "
                               "function with its per-minute invocation counts")
    return total


def _sum_selected(
    path: Path, cells: list[list[str]], line_nos: list[int], *, selected: list[bool],
    layout: _Azure2019Layout, ids: _IdIndex, keys: list[RowKey],
    totals: dict[RowKey, int] | None,
) -> np.ndarray:
    block = _parse_count_block(path, cells, line_nos, layout)
    mask = np.asarray(selected, dtype=bool)
    ids.matched_rows += int(mask.sum())
    if totals is not None:
        for key, row_total, chosen in zip(keys, block.sum(axis=1).tolist(), selected,
                                          strict=True):
            if chosen:
                totals[key] = totals.get(key, 0) + row_total
    return block[mask].sum(axis=0)


def _parse_count_block(
    path: Path, cells: list[list[str]], line_nos: list[int], layout: _Azure2019Layout
) -> np.ndarray:
    """Rows of count cells as int64, every cell validated; errors name line and minute column."""
    try:
        block = np.array(cells, dtype=np.int64)
    except (ValueError, OverflowError):
        _raise_first_bad_count(path, cells, line_nos, layout)
    negative = np.argwhere(block < 0)
    if negative.size:
        row, col = (int(v) for v in negative[0])
        raise TraceFormatError(
            str(path), line_nos[row],
            f"negative count {block[row, col]} in minute column {layout.minute_labels[col]!r}; "
            "expected a non-negative integer (invocations in that minute)",
        )
    return block


def _raise_first_bad_count(
    path: Path, cells: list[list[str]], line_nos: list[int], layout: _Azure2019Layout
) -> NoReturn:
    for row, line_no in zip(cells, line_nos, strict=True):
        for col, cell in enumerate(row):
            if not _INT_RE.fullmatch(cell.strip()):
                raise TraceFormatError(
                    str(path), line_no,
                    f"minute column {layout.minute_labels[col]!r} holds {_clip(cell, 40)!r}; "
                    "expected a non-negative integer count (invocations in that minute)",
                )
    raise TraceFormatError(str(path), line_nos[0], "a count is too large for a 64-bit integer")


def _check_ids_found(
    path_list: list[Path], function: str | None, app: str | None, ids: _IdIndex
) -> None:
    where = ", ".join(str(p) for p in path_list)
    if function is not None and function not in ids.functions:
        raise TraceFormatError(where, None, _unknown_id_message("function", function,
                                                                ids.functions))
    if app is not None and app not in ids.apps:
        raise TraceFormatError(where, None, _unknown_id_message("app", app, ids.apps))
    if function is not None and app is not None and ids.matched_rows == 0:
        raise TraceFormatError(where, None, f"function {function!r} is not in app {app!r}; drop "
                               "app= to take the function from whichever app has it")


def _unknown_id_message(kind: str, wanted: str, known: dict[str, None]) -> str:
    example = next(iter(known), None)
    hint = f", e.g. {example!r}" if example is not None else ""
    return f"no {kind} id {wanted!r}; the file has {len(known)} {kind} ids{hint}"


def _scale_counts(counts: np.ndarray, scale: float, rng: np.random.Generator) -> np.ndarray:
    """``count * scale`` per bin, rounded stochastically so the expectation is exact."""
    if scale == 1.0:
        return counts
    scaled = counts * scale
    whole = np.floor(scaled)
    extra = rng.random(counts.size) < (scaled - whole)
    return whole.astype(np.int64) + extra


# --------------------------------------------------------------------------------------------
# Per-request formats: azure2021, azure-llm, timestamps
# --------------------------------------------------------------------------------------------


def _load_request_format(
    path_list: list[Path], kind: str, *, function: str | None, app: str | None, scale: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, float]:
    ids = _IdIndex()
    parts: list[np.ndarray] = []
    offset_s = 0.0
    for path in path_list:
        if kind == "azure2021":
            arrivals_s, span_s = _read_azure2021(path, function, app, ids)
        elif kind == "azure-llm":
            arrivals_s, span_s = _read_azure_llm(path)
        else:
            arrivals_s, span_s = _read_timestamps(path)
        parts.append(arrivals_s + offset_s)  # each file's span begins where the last one ended
        offset_s += span_s
    if kind == "azure2021":
        _check_ids_found(path_list, function, app, ids)
    arrivals_s = np.concatenate(parts)
    arrivals_s = _scale_arrivals(arrivals_s, scale, rng)
    last_s = float(arrivals_s[-1]) if arrivals_s.size else 0.0
    return arrivals_s, max(offset_s, last_s)


def _read_azure2021(
    path: Path, function: str | None, app: str | None, ids: _IdIndex
) -> tuple[np.ndarray, float]:
    """Arrivals (end_timestamp - duration, clipped at 0) of the selected rows; span = last end."""
    lines = _read_lines(path)
    header = [c.strip() for c in next(csv.reader([lines[0]]))]
    missing = [c for c in _AZ2021_COLUMNS if c not in header]
    if missing:
        raise TraceFormatError(
            str(path), 1,
            f"not an Azure Functions 2021 header: no column {', '.join(missing)}; expected "
            f"'app,func,end_timestamp,duration' (seconds), got {_clip(lines[0])!r}",
        )
    app_col, func_col, end_col, dur_col = (header.index(c) for c in _AZ2021_COLUMNS)
    ends: list[str] = []
    durations: list[str] = []
    line_nos: list[int] = []
    keep: list[bool] = []
    for line_no, row in _data_rows(lines, len(header), path, lines[0]):
        function_id, app_id = row[func_col].strip(), row[app_col].strip()
        ids.functions.setdefault(function_id)
        ids.apps.setdefault(app_id)
        ends.append(row[end_col])
        durations.append(row[dur_col])
        line_nos.append(line_no)
        keep.append((function is None or function_id == function)
                    and (app is None or app_id == app))
    if not line_nos:
        raise TraceFormatError(str(path), None, "has a header but no rows; expected one row per "
                               "invocation: app,func,end_timestamp,duration")
    end_s = _parse_seconds(path, ends, line_nos, "end_timestamp")
    duration_s = _parse_seconds(path, durations, line_nos, "duration")
    mask = np.asarray(keep, dtype=bool)
    ids.matched_rows += int(mask.sum())
    arrivals_s = np.clip(end_s[mask] - duration_s[mask], 0.0, None)
    arrivals_s.sort()
    return arrivals_s, float(end_s.max())


def _read_azure_llm(path: Path) -> tuple[np.ndarray, float]:
    """Arrivals relative to the earliest TIMESTAMP; 100 ns digits kept (numpy parses to ns)."""
    lines = _read_lines(path)
    header = [c.strip() for c in next(csv.reader([lines[0]]))]
    if _LLM_TIME_COLUMN not in header:
        raise TraceFormatError(
            str(path), 1,
            "not an Azure LLM inference header: no TIMESTAMP column; expected "
            f"'TIMESTAMP,ContextTokens,GeneratedTokens', got {_clip(lines[0])!r}",
        )
    col = header.index(_LLM_TIME_COLUMN)
    stamps: list[str] = []
    line_nos: list[int] = []
    for line_no, row in _data_rows(lines, len(header), path, lines[0]):
        stamp = row[col].strip()
        if not _LLM_STAMP_RE.fullmatch(stamp):
            raise _bad_stamp(path, line_no, stamp)
        stamps.append(stamp)
        line_nos.append(line_no)
    if not stamps:
        raise TraceFormatError(str(path), None, "has a header but no rows; expected one row per "
                               "request")
    try:
        times = np.array(stamps, dtype="datetime64[ns]")
    except ValueError:
        for stamp, line_no in zip(stamps, line_nos, strict=True):
            try:
                np.datetime64(stamp, "ns")
            except ValueError:
                raise _bad_stamp(path, line_no, stamp) from None
        raise
    ns = (times - times.min()).astype(np.int64)
    arrivals_s = np.sort(ns) / 1e9
    return arrivals_s, float(arrivals_s[-1])


def _bad_stamp(path: Path, line_no: int, stamp: str) -> TraceFormatError:
    return TraceFormatError(
        str(path), line_no,
        f"cannot read TIMESTAMP {_clip(stamp, 40)!r}; expected a date-time like "
        "'2023-11-16 18:17:03.9799600' (up to 9 fractional digits)",
    )


def _read_timestamps(path: Path) -> tuple[np.ndarray, float]:
    """Seconds from a 'timestamp_s'/'timestamp' column (or one per line), relative to the min."""
    lines = _read_lines(path)
    header = [c.strip() for c in next(csv.reader([lines[0]]))]
    lowered = [c.lower() for c in header]
    if len(header) == 1 and _is_number(header[0]):
        values, line_nos = _headerless_values(path, lines)
        column = "value"
    else:
        column = next((c for c in _TIMESTAMP_COLUMNS if c in lowered), "")
        if not column:
            raise TraceFormatError(
                str(path), 1,
                f"no 'timestamp_s' or 'timestamp' column in header {_clip(lines[0])!r}; expected "
                "a header naming a column of seconds, or no header and one number per line",
            )
        col = lowered.index(column)
        rows = list(_data_rows(lines, len(header), path, lines[0]))
        values = [row[col] for _, row in rows]
        line_nos = [line_no for line_no, _ in rows]
    if not values:
        raise TraceFormatError(str(path), None, "has a header but no rows; expected one "
                               "timestamp (seconds) per row")
    seconds = _parse_seconds(path, values, line_nos, column, allow_negative=True)
    arrivals_s = np.sort(seconds - seconds.min())
    return arrivals_s, float(arrivals_s[-1])


def _headerless_values(path: Path, lines: list[str]) -> tuple[list[str], list[int]]:
    values: list[str] = []
    line_nos: list[int] = []
    for line_no, text in enumerate(lines, start=1):
        if "," in text:
            raise TraceFormatError(
                str(path), line_no,
                f"row has {text.count(',') + 1} columns; a headerless timestamps file has one "
                "number (seconds) per line",
            )
        if text.strip():
            values.append(text)
            line_nos.append(line_no)
    return values, line_nos


def _parse_seconds(
    path: Path, cells: list[str], line_nos: list[int], column: str, *,
    allow_negative: bool = False,
) -> np.ndarray:
    """Cells as finite float seconds (>= 0 unless allowed); errors name the line and column."""
    try:
        values = np.array(cells, dtype=np.float64)
    except ValueError:
        pass  # some cell is not a number: the loop below finds which
    else:
        if bool(np.all(np.isfinite(values) & (allow_negative | (values >= 0)))):
            return values
    for cell, line_no in zip(cells, line_nos, strict=True):
        try:
            value = float(cell)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or (value < 0 and not allow_negative):
            sign = "" if allow_negative else " >= 0"
            hint = ("; date-times are read by fmt='azure-llm' from a TIMESTAMP column"
                    if _LLM_STAMP_RE.match(cell.strip()) else "")
            raise TraceFormatError(
                str(path), line_no,
                f"{column} holds {_clip(cell, 40)!r}; expected a finite number of seconds"
                f"{sign}{hint}",
            )
    raise AssertionError("unreachable: some cell failed the vectorised check")


def _scale_arrivals(arrivals_s: np.ndarray, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Each arrival becomes floor(scale) + Bernoulli(frac) arrivals (see ``load_trace``)."""
    if scale == 1.0:
        return arrivals_s
    whole = math.floor(scale)
    copies = whole + (rng.random(arrivals_s.size) < scale - whole)
    if whole == 0:
        return arrivals_s[copies == 1]  # thinning keeps the survivors' own times
    extra_s = np.repeat(arrivals_s, copies - 1)
    extra_s += rng.random(extra_s.size)
    return np.sort(np.concatenate([arrivals_s, extra_s]))


# --------------------------------------------------------------------------------------------
# Window and naming
# --------------------------------------------------------------------------------------------


def _cut_window(
    arrivals_s: np.ndarray, duration_s: float, start_s: float, end_s: float | None
) -> tuple[np.ndarray, float]:
    if start_s == 0.0 and (end_s is None or end_s >= duration_s):
        return arrivals_s, duration_s
    if start_s >= duration_s:
        raise ValueError(f"start_s={start_s:g} is at or past the end of the trace "
                         f"({duration_s:g} s)")
    stop_s = duration_s if end_s is None else min(end_s, duration_s)
    # [start, stop) except at the trace's own end, which holds a per-request trace's last arrival
    side: Literal["left", "right"] = "right" if stop_s >= duration_s else "left"
    lo = int(np.searchsorted(arrivals_s, start_s, side="left"))
    hi = int(np.searchsorted(arrivals_s, stop_s, side=side))
    return arrivals_s[lo:hi] - start_s, stop_s - start_s


def _trace_name(
    path_list: list[Path], *, function: str | None, app: str | None, top: int | None,
    scale: float, start_s: float, end_s: float | None,
) -> str:
    name = "+".join(p.stem for p in path_list)
    if app is not None:
        name += f"[app={_short_id(app)}]"
    if function is not None:
        name += f"[function={_short_id(function)}]"
    if top is not None:
        name += f"[top={top}]"
    if scale != 1.0:
        name += f"x{scale:g}"
    if start_s != 0.0 or end_s is not None:
        name += f"[{start_s:g}s-{'end' if end_s is None else f'{end_s:g}s'}]"
    return name


def _short_id(identifier: str) -> str:
    # Azure ids are 64-hex hashes; 12 characters keep names readable and still unique in practice.
    return identifier if len(identifier) <= 16 else identifier[:12]
