"""Trace readers: turn a request-trace file into arrival times, in seconds from the trace start.

The simulator replays arrivals, but public traces come in five shapes: per-minute counts (Azure
Functions 2019), per-invocation rows (Azure Functions 2021), per-request date-time stamps (Azure
LLM inference), plain timestamps, and per-second counts (LIBRA's own traces). ``load_trace`` reads
any of them into one :class:`Trace` so that policies are compared on the same footing.

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
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NoReturn

import numpy as np

from simulator.errors import TraceFormatError

__all__ = ["FORMATS", "SPREADS", "Trace", "detect_format", "load_trace", "spread_counts"]

FORMATS = ("azure2019", "azure2021", "azure-llm", "timestamps", "per-second")
SPREADS = ("poisson", "uniform")
Spread = Literal["poisson", "uniform"]

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
    "number per line; per-second no header and one integer per line"
)


# --------------------------------------------------------------------------------------------
# The result
# --------------------------------------------------------------------------------------------


# eq=False: the generated __eq__ would compare arrays element-wise and raise on `bool(...)`.
@dataclass(frozen=True, eq=False)
class Trace:
    """Arrival times of one request trace, ready to replay.

    ``arrivals_s`` is float64, sorted ascending, in seconds from the trace start (>= 0) and
    read-only, so one loaded trace can be shared by every simulated policy without copies.
    ``duration_s`` is the span the trace covers (``n_minutes * 60`` for a per-minute file, the
    first-to-last span for per-request files); it is >= the last arrival.
    """

    name: str
    arrivals_s: np.ndarray
    duration_s: float
    source: str

    def __post_init__(self) -> None:
        arrivals = np.asarray(self.arrivals_s, dtype=np.float64)
        if arrivals.ndim != 1:
            raise ValueError(f"arrivals_s must be one-dimensional, got shape {arrivals.shape}")
        # A read-only view: the caller's own array stays writable, ours cannot drift.
        arrivals = arrivals.view()
        arrivals.flags.writeable = False
        object.__setattr__(self, "arrivals_s", arrivals)
        object.__setattr__(self, "duration_s", float(self.duration_s))
        _check_trace_invariants(arrivals, self.duration_s)

    def __len__(self) -> int:
        return int(self.arrivals_s.shape[0])

    def per_second_counts(self) -> np.ndarray:
        """Requests per whole second over ``ceil(duration_s)`` seconds (int64).

        Second ``i`` counts arrivals in ``[i, i + 1)``; an arrival exactly at a whole-second
        ``duration_s`` (a per-request trace ends on its last arrival) is counted in the last second.
        """
        n_seconds = math.ceil(self.duration_s)
        if len(self) and n_seconds == 0:
            n_seconds = 1  # a single instant still occupies one second
        if n_seconds == 0:
            return np.zeros(0, dtype=np.int64)
        index = np.minimum(self.arrivals_s.astype(np.int64), n_seconds - 1)
        return np.bincount(index, minlength=n_seconds).astype(np.int64)

    @property
    def mean_rate_per_s(self) -> float:
        """Average requests per second over the trace span (0 for an empty span)."""
        return len(self) / self.duration_s if self.duration_s > 0 else 0.0


def _check_trace_invariants(arrivals_s: np.ndarray, duration_s: float) -> None:
    if not math.isfinite(duration_s) or duration_s < 0:
        raise ValueError(f"duration_s must be finite and >= 0, got {duration_s}")
    if arrivals_s.size == 0:
        return
    if not np.all(np.isfinite(arrivals_s[[0, -1]])) or arrivals_s[0] < 0:
        raise ValueError(f"arrivals_s must be finite and >= 0, first is {arrivals_s[0]}")
    if arrivals_s.size > 1 and not bool(np.all(arrivals_s[1:] >= arrivals_s[:-1])):
        raise ValueError("arrivals_s must be sorted ascending")
    if arrivals_s[-1] > duration_s:
        raise ValueError(
            f"duration_s ({duration_s}) must be >= the last arrival ({arrivals_s[-1]})"
        )


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def load_trace(
    paths: str | Path | Sequence[str | Path],
    *,
    fmt: str = "auto",
    function: str | None = None,
    app: str | None = None,
    scale: float = 1.0,
    start_s: float = 0.0,
    end_s: float | None = None,
    spread: Spread = "poisson",
    seed: int = 0,
) -> Trace:
    """Read one trace file (or several, back to back) into a :class:`Trace`.

    Args:
        paths: a file, or a list of files concatenated in time (day 2 follows day 1). All must
            share one format.
        fmt: ``"auto"`` (detect from the header / first line) or one of :data:`FORMATS`.
        function: azure2019 / azure2021 only: keep one function's rows (its HashFunction / func id).
            In several day files a function absent from some days counts zero there.
        app: azure2019 / azure2021 only: keep one app (the sum of its functions). With
            ``function`` too, keep that function within that app. Neither: all rows summed.
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
        seed: seeds the one random generator behind spreading and scaling.

    Raises:
        TraceFormatError: a file is missing, empty or malformed, or an id is not in it.
        ValueError: an argument is out of range (message says the valid range or choices).
    """
    path_list = _as_path_list(paths)
    _check_arguments(fmt=fmt, scale=scale, start_s=start_s, end_s=end_s, spread=spread, seed=seed)
    formats = _resolve_formats(path_list, fmt)
    kind = formats[0]
    _check_selection_applies(kind, function, app)
    rng = np.random.default_rng(seed)
    if kind in ("azure2019", "per-second"):
        arrivals_s, duration_s = _load_count_format(
            path_list, kind, function=function, app=app, scale=scale, spread=spread, rng=rng
        )
    else:
        arrivals_s, duration_s = _load_request_format(
            path_list, kind, function=function, app=app, scale=scale, rng=rng
        )
    arrivals_s, duration_s = _cut_window(arrivals_s, duration_s, start_s, end_s)
    return Trace(
        name=_trace_name(path_list, function=function, app=app, scale=scale, start_s=start_s,
                         end_s=end_s),
        arrivals_s=arrivals_s,
        duration_s=duration_s,
        source=", ".join(str(p) for p in path_list),
    )


def spread_counts(
    counts: np.ndarray, bin_s: float, *, spread: Spread = "poisson",
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Sorted arrival times (float64 s) for ``counts[i]`` requests in ``[i*bin_s, (i+1)*bin_s)``.

    ``"poisson"`` draws each bin's arrivals uniformly inside the bin and sorts them: a Poisson
    process conditioned on the bin's count, so every count is conserved exactly. ``"uniform"``
    spaces them evenly at ``(j + 0.5) * bin_s / count``. Vectorised (one ``np.repeat`` and one
    sort), because a day of Azure Functions is ~10 M arrivals.
    """
    counts = np.asarray(counts)
    if counts.ndim != 1:
        raise ValueError(f"counts must be one-dimensional, got shape {counts.shape}")
    if counts.size and not np.array_equal(counts, np.round(counts)):
        raise ValueError("counts must be whole numbers (requests per bin)")
    if counts.size and counts.min() < 0:
        raise ValueError("counts must be >= 0")
    if not bin_s > 0:
        raise ValueError(f"bin_s must be > 0, got {bin_s}")
    if spread not in SPREADS:
        raise ValueError(f"unknown spread {spread!r}; choose one of {', '.join(SPREADS)}")
    counts = counts.astype(np.int64, copy=False)
    total = int(counts.sum())
    bin_starts_s = np.arange(counts.size, dtype=np.float64) * bin_s
    starts_s = np.repeat(bin_starts_s, counts)
    if spread == "uniform":
        first_index = np.repeat(np.cumsum(counts) - counts, counts)
        rank = np.arange(total, dtype=np.int64) - first_index
        per_bin = np.repeat(counts, counts).astype(np.float64)
        return starts_s + (rank + 0.5) * (bin_s / per_bin)
    if rng is None:
        rng = np.random.default_rng()
    arrivals_s = rng.random(total)
    np.multiply(arrivals_s, bin_s, out=arrivals_s)
    np.add(arrivals_s, starts_s, out=arrivals_s)
    # start + u*bin can round up onto the next bin's start far from 0; pull those back inside.
    np.add(starts_s, bin_s, out=starts_s)
    spilled = arrivals_s >= starts_s
    if spilled.any():
        arrivals_s[spilled] = np.nextafter(starts_s[spilled], -np.inf)
    arrivals_s.sort()
    return arrivals_s


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


def _resolve_formats(path_list: list[Path], fmt: str) -> list[str]:
    if fmt != "auto":
        return [fmt] * len(path_list)
    formats = [detect_format(path) for path in path_list]
    for path, kind in zip(path_list[1:], formats[1:], strict=True):
        if kind != formats[0]:
            raise TraceFormatError(
                str(path), 1,
                f"looks like {kind} but {path_list[0]} is {formats[0]}; files read together "
                "must share one format",
            )
    return formats


def detect_format(path: str | Path) -> str:
    """Which of :data:`FORMATS` a file is in, from its header (or, headerless, its lines)."""
    path = Path(path)
    first = _first_line(path)
    cells = [c.strip() for c in next(csv.reader([first]), [""])]
    names = set(cells)
    if set(_AZ2019_IDS) <= names:
        return "azure2019"
    if set(_AZ2021_COLUMNS) <= names:
        return "azure2021"
    if _LLM_TIME_COLUMN in names:
        return "azure-llm"
    if {c.lower() for c in cells} & set(_TIMESTAMP_COLUMNS):
        return "timestamps"
    if len(cells) == 1 and _is_number(cells[0]):
        # Headerless: integers only means counts per second; any fraction or exponent means
        # seconds. (Integer timestamps are ambiguous: pass fmt="timestamps".)
        lines = _read_lines(path)
        return "timestamps" if any(_looks_fractional(line) for line in lines) else "per-second"
    raise TraceFormatError(
        str(path), 1, f"unrecognised header {_clip(first)!r}; expected one of: {_EXPECTED_HEADERS}"
    )


def _check_selection_applies(kind: str, function: str | None, app: str | None) -> None:
    if (function is not None or app is not None) and kind not in ("azure2019", "azure2021"):
        raise ValueError(
            f"function=/app= select rows of azure2019 or azure2021 traces; a {kind} trace has no "
            "function or app ids"
        )


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
    with _reading(path), path.open(encoding="utf-8-sig", newline="") as handle:
        first = handle.readline().rstrip("\r\n")
    return first if first.strip() else _read_lines(path)[0]


def _read_lines(path: Path) -> list[str]:
    """The file's lines without line ends or trailing blank lines; errors name the path."""
    with _reading(path):
        text = path.read_text(encoding="utf-8-sig")
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise TraceFormatError(
            str(path), None, f"file is empty; expected one of: {_EXPECTED_HEADERS}"
        )
    return lines


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn the OS's reasons for not reading a file into a TraceFormatError naming the path."""
    try:
        yield
    except FileNotFoundError:
        raise TraceFormatError(str(path), None, "no such file; check the path") from None
    except IsADirectoryError:
        raise TraceFormatError(str(path), None, "is a directory; expected a trace file") from None
    except PermissionError:
        raise TraceFormatError(str(path), None, "cannot read: permission denied") from None
    except UnicodeDecodeError as exc:
        raise TraceFormatError(
            str(path), None,
            f"not UTF-8 text (byte {exc.start}); is it still compressed? unpack it first",
        ) from None


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
    first_count_col: int
    minute_labels: tuple[str, ...]


def _load_count_format(
    path_list: list[Path], kind: str, *, function: str | None, app: str | None, scale: float,
    spread: Spread, rng: np.random.Generator,
) -> tuple[np.ndarray, float]:
    if kind == "azure2019":
        ids = _IdIndex()
        series = [_read_azure2019(path, function, app, ids) for path in path_list]
        _check_ids_found(path_list, function, app, ids)
        bin_s = SECONDS_PER_MINUTE
    else:
        series = [_read_per_second(path) for path in path_list]
        bin_s = SECONDS_PER_SECOND_BIN
    counts = np.concatenate(series)
    counts = _scale_counts(counts, scale, rng)
    return spread_counts(counts, bin_s, spread=spread, rng=rng), counts.size * bin_s


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
    path: Path, function: str | None, app: str | None, ids: _IdIndex
) -> np.ndarray:
    """Per-minute counts of the selected rows of one file (all rows when nothing is selected)."""
    lines = _read_lines(path)
    layout = _azure2019_layout(path, next(csv.reader([lines[0]])))
    total = np.zeros(len(layout.minute_labels), dtype=np.int64)
    cells: list[list[str]] = []
    line_nos: list[int] = []
    selected: list[bool] = []
    n_rows = 0
    for line_no, row in _data_rows(lines, layout.n_columns, path, lines[0]):
        n_rows += 1
        function_id, app_id = row[layout.function_col].strip(), row[layout.app_col].strip()
        ids.functions.setdefault(function_id)
        ids.apps.setdefault(app_id)
        cells.append(row[layout.first_count_col:])
        line_nos.append(line_no)
        selected.append((function is None or function_id == function)
                        and (app is None or app_id == app))
        if len(cells) == _CHUNK_ROWS:
            total += _sum_selected(path, cells, line_nos, selected=selected, layout=layout, ids=ids)
            cells, line_nos, selected = [], [], []
    if cells:
        total += _sum_selected(path, cells, line_nos, selected=selected, layout=layout, ids=ids)
    if n_rows == 0:
        raise TraceFormatError(str(path), None, "has a header but no rows; expected one row per "
                               "function with its per-minute invocation counts")
    return total


def _sum_selected(
    path: Path, cells: list[list[str]], line_nos: list[int], *, selected: list[bool],
    layout: _Azure2019Layout, ids: _IdIndex,
) -> np.ndarray:
    block = _parse_count_block(path, cells, line_nos, layout)
    mask = np.asarray(selected, dtype=bool)
    ids.matched_rows += int(mask.sum())
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


def _read_per_second(path: Path) -> np.ndarray:
    """Counts per second, one non-negative integer per line (line i = second i)."""
    lines = _read_lines(path)
    try:
        counts = np.array(lines, dtype=np.int64)
    except (ValueError, OverflowError):
        counts = None
    if counts is None or counts.min() < 0:
        for line_no, text in enumerate(lines, start=1):
            if not _INT_RE.fullmatch(text.strip()) or int(text) < 0:
                raise TraceFormatError(
                    str(path), line_no,
                    f"expected a non-negative integer (requests in second {line_no - 1}), "
                    f"got {_clip(text, 40)!r}; per-second traces hold one count per line and "
                    "no header",
                )
        raise TraceFormatError(str(path), None, "a count is too large for a 64-bit integer")
    return counts


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
    path_list: list[Path], *, function: str | None, app: str | None, scale: float, start_s: float,
    end_s: float | None,
) -> str:
    name = "+".join(p.stem for p in path_list)
    if app is not None:
        name += f"[app={_short_id(app)}]"
    if function is not None:
        name += f"[function={_short_id(function)}]"
    if scale != 1.0:
        name += f"x{scale:g}"
    if start_s != 0.0 or end_s is not None:
        name += f"[{start_s:g}s-{'end' if end_s is None else f'{end_s:g}s'}]"
    return name


def _short_id(identifier: str) -> str:
    # Azure ids are 64-hex hashes; 12 characters keep names readable and still unique in practice.
    return identifier if len(identifier) <= 16 else identifier[:12]
