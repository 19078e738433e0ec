"""Trace readers, as a specification: each format on small files, each error as the user sees it."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.errors import TraceFormatError
from simulator.traces import FORMATS, Trace, detect_format, load_trace, spread_counts

pytestmark = pytest.mark.unit

AZ2019_HEADER = "HashOwner,HashApp,HashFunction,Trigger"
INVITRO_HEADER = "HashFunction,HashApp,HashOwner"
LLM_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens"
AZ2021_HEADER = "app,func,end_timestamp,duration"


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8", newline="")
    return path


def azure2019_text(rows: list[tuple[str, str, list[int]]], first_minute: int = 1) -> str:
    """Original-format file: rows of (app, function, counts per minute)."""
    n_minutes = len(rows[0][2])
    labels = ",".join(str(first_minute + m) for m in range(n_minutes))
    lines = [f"{AZ2019_HEADER},{labels}"]
    lines += [f"owner,{app},{fn},http,{','.join(map(str, counts))}" for app, fn, counts in rows]
    return "\n".join(lines) + "\n"


def per_minute(trace: Trace) -> np.ndarray:
    n_minutes = round(trace.duration_s / 60)
    return np.bincount((trace.arrivals_s // 60).astype(np.int64), minlength=n_minutes)


def assert_trace_error(excinfo: pytest.ExceptionInfo[TraceFormatError], path: Path | str,
                       line: int | None, *fragments: str) -> None:
    err = excinfo.value
    assert err.path == str(path)
    assert err.line == line
    for fragment in fragments:
        assert fragment in err.why, f"{fragment!r} not in {err.why!r}"
    prefix = f"{path}:{line}: " if line is not None else f"{path}: "
    assert str(err) == prefix + err.why


@pytest.fixture
def three_functions(tmp_path: Path) -> Path:
    return write(tmp_path, "day.csv", azure2019_text([
        ("appA", "f1", [3, 0, 5]),
        ("appA", "f2", [1, 2, 0]),
        ("appB", "f3", [0, 10, 1]),
    ]))


# ---------------------------------------------------------------------------------------------
# azure2019: per-minute counts
# ---------------------------------------------------------------------------------------------


def test_azure2019_aggregates_all_functions_minute_by_minute(three_functions: Path) -> None:
    trace = load_trace(three_functions)

    assert len(trace) == 22
    assert trace.duration_s == 180.0
    assert per_minute(trace).tolist() == [4, 12, 6]
    assert trace.name == "day"
    assert trace.source == str(three_functions)


def test_azure2019_selects_one_function_or_one_app(three_functions: Path) -> None:
    assert per_minute(load_trace(three_functions, function="f3")).tolist() == [0, 10, 1]
    assert per_minute(load_trace(three_functions, app="appA")).tolist() == [4, 2, 5]
    assert per_minute(load_trace(three_functions, app="appA", function="f2")).tolist() == [1, 2, 0]
    assert load_trace(three_functions, function="f3").name == "day[function=f3]"


def test_azure2019_minutes_count_from_the_first_minute_column(tmp_path: Path) -> None:
    # The 8 h slice of the real trace labels its minutes 480..959.
    path = write(tmp_path, "slice.csv", azure2019_text([("a", "f", [2, 0, 1])], first_minute=480))

    trace = load_trace(path)

    assert trace.duration_s == 180.0
    assert per_minute(trace).tolist() == [2, 0, 1]


def test_azure2019_invitro_reordered_header_without_trigger(tmp_path: Path) -> None:
    path = write(tmp_path, "1000_inv.csv",
                 f"{INVITRO_HEADER},minute_1,minute_2\r\nh1,h1,h1,4,0\r\nh2,h2,h2,1,6\r\n")

    assert detect_format(path) == "azure2019"
    assert per_minute(load_trace(path)).tolist() == [5, 6]
    assert per_minute(load_trace(path, function="h2")).tolist() == [1, 6]


def test_azure2019_day_files_are_concatenated_in_time(tmp_path: Path) -> None:
    day1 = write(tmp_path, "d01.csv", azure2019_text([("a", "f", [1, 2]), ("a", "g", [0, 1])]))
    day2 = write(tmp_path, "d02.csv", azure2019_text([("a", "g", [3, 4])]))

    both = load_trace([day1, day2])
    only_f = load_trace([day1, day2], function="f")

    assert both.duration_s == 240.0
    assert per_minute(both).tolist() == [1, 3, 3, 4]
    # A function missing from a day file had no invocations that day.
    assert per_minute(only_f).tolist() == [1, 2, 0, 0]
    assert both.name == "d01+d02"


def test_uniform_spread_places_arrivals_evenly_inside_each_minute(tmp_path: Path) -> None:
    path = write(tmp_path, "u.csv", azure2019_text([("a", "f", [3, 0, 1])]))

    trace = load_trace(path, spread="uniform")

    np.testing.assert_allclose(trace.arrivals_s, [10.0, 30.0, 50.0, 150.0])


def test_blank_lines_in_a_csv_are_skipped(tmp_path: Path) -> None:
    path = write(tmp_path, "gaps.csv", f"{AZ2019_HEADER},1\n\na,b,c,http,2\n\n\n")

    assert len(load_trace(path)) == 2


# ---------------------------------------------------------------------------------------------
# per-second counts
# ---------------------------------------------------------------------------------------------


def test_per_second_counts_are_kept_second_by_second(tmp_path: Path) -> None:
    path = write(tmp_path, "wits.txt", "3\n0\n7\n1")  # no newline at the end, as LIBRA's files

    trace = load_trace(path)

    assert detect_format(path) == "per-second"
    assert trace.duration_s == 4.0
    assert trace.per_second_counts().tolist() == [3, 0, 7, 1]


def test_per_second_uniform_spread(tmp_path: Path) -> None:
    path = write(tmp_path, "s.txt", "2\n1\n")

    np.testing.assert_allclose(load_trace(path, spread="uniform").arrivals_s, [0.25, 0.75, 1.5])


# ---------------------------------------------------------------------------------------------
# per-request formats
# ---------------------------------------------------------------------------------------------


def test_azure2021_arrival_is_end_minus_duration_clipped_at_zero(tmp_path: Path) -> None:
    path = write(tmp_path, "a2021.csv", f"{AZ2021_HEADER}\n"
                 "app1,fa,10.5,0.5\napp1,fb,3.0,5.0\napp2,fc,20.25,0.25\napp1,fa,7.0,1.0\n")

    trace = load_trace(path)

    np.testing.assert_allclose(trace.arrivals_s, [0.0, 6.0, 10.0, 20.0])
    assert trace.duration_s == 20.25  # the last end timestamp: the span the file covers
    np.testing.assert_allclose(load_trace(path, function="fa").arrivals_s, [6.0, 10.0])
    np.testing.assert_allclose(load_trace(path, app="app2").arrivals_s, [20.0])
    assert load_trace(path, app="app2").duration_s == 20.25


def test_azure_llm_keeps_the_seventh_fractional_digit(tmp_path: Path) -> None:
    path = write(tmp_path, "llm.csv", f"{LLM_HEADER}\r\n"
                 "2023-11-16 18:17:03.9799600,4808,10\r\n"
                 "2023-11-16 18:17:04.0319601,3180,8\r\n"
                 "2023-11-16 18:18:04.0000000,1,1\r\n")

    trace = load_trace(path)

    assert detect_format(path) == "azure-llm"
    assert trace.arrivals_s[0] == 0.0
    assert trace.arrivals_s[1] == pytest.approx(0.0520001, abs=1e-9)
    assert trace.arrivals_s[2] == pytest.approx(60.02004, abs=1e-9)
    assert trace.duration_s == trace.arrivals_s[-1]


def test_azure_llm_rows_out_of_order_are_sorted_relative_to_the_earliest(tmp_path: Path) -> None:
    path = write(tmp_path, "llm.csv", f"{LLM_HEADER}\n"
                 "2023-11-16 18:00:05,1,1\n2023-11-16 18:00:01.5,1,1\n")

    np.testing.assert_allclose(load_trace(path).arrivals_s, [0.0, 3.5])


@pytest.mark.parametrize("column", ["timestamp_s", "timestamp", "Timestamp_S"])
def test_timestamps_with_a_header_relative_to_the_minimum(tmp_path: Path, column: str) -> None:
    path = write(tmp_path, "t.csv", f"id,{column}\na,100.5\nb,100.0\nc,102.25\n")

    trace = load_trace(path)

    assert detect_format(path) == "timestamps"
    np.testing.assert_allclose(trace.arrivals_s, [0.0, 0.5, 2.25])
    assert trace.duration_s == 2.25


def test_headerless_fractional_numbers_are_timestamps(tmp_path: Path) -> None:
    path = write(tmp_path, "t.txt", "5\n3.5\n4\n")

    assert detect_format(path) == "timestamps"
    np.testing.assert_allclose(load_trace(path).arrivals_s, [0.0, 0.5, 1.5])


def test_fmt_forces_integer_lines_to_be_read_as_timestamps(tmp_path: Path) -> None:
    path = write(tmp_path, "t.txt", "10\n12\n")

    np.testing.assert_allclose(load_trace(path, fmt="timestamps").arrivals_s, [0.0, 2.0])
    assert len(load_trace(path)) == 22  # auto: integers only, so counts per second


# ---------------------------------------------------------------------------------------------
# scale, window, seed
# ---------------------------------------------------------------------------------------------


def test_whole_scale_multiplies_counts_exactly(three_functions: Path) -> None:
    assert per_minute(load_trace(three_functions, scale=3.0)).tolist() == [12, 36, 18]


def test_scale_above_one_keeps_each_original_and_adds_copies_within_a_second(
    tmp_path: Path,
) -> None:
    original = np.arange(0.0, 2000.0, 2.0)
    path = write(tmp_path, "t.csv", "timestamp_s\n" + "\n".join(map(str, original)) + "\n")

    scaled = load_trace(path, scale=2.5, seed=3).arrivals_s

    assert np.isin(original, scaled).all()
    extra = scaled[~np.isin(scaled, original)]
    offset = extra - np.floor(extra / 2.0) * 2.0  # distance past the original it copies
    assert ((offset > 0) & (offset < 1.0)).all()
    assert abs(len(scaled) - 2.5 * len(original)) < 5 * np.sqrt(len(original) * 0.25)


def test_scale_below_one_thins_without_moving_arrivals(tmp_path: Path) -> None:
    original = np.arange(0.0, 1000.0, 0.5)
    path = write(tmp_path, "t.csv", "timestamp_s\n" + "\n".join(map(str, original)) + "\n")

    thinned = load_trace(path, scale=0.3, seed=1).arrivals_s

    assert np.isin(thinned, original).all()
    assert abs(len(thinned) - 0.3 * len(original)) < 5 * np.sqrt(len(original) * 0.21)


def test_window_keeps_start_inclusive_end_exclusive_and_shifts_to_zero(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", "timestamp_s\n0\n1\n2\n3\n4\n5\n")

    trace = load_trace(path, start_s=1.0, end_s=4.0)

    np.testing.assert_allclose(trace.arrivals_s, [0.0, 1.0, 2.0])
    assert trace.duration_s == 3.0
    assert trace.name == "t[1s-4s]"


def test_window_past_the_end_is_clipped_to_the_trace(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", "timestamp_s\n0\n1\n2\n")

    trace = load_trace(path, start_s=1.0, end_s=100.0)

    np.testing.assert_allclose(trace.arrivals_s, [0.0, 1.0])  # the last arrival, at the end
    assert trace.duration_s == 1.0


def test_window_start_past_the_end_is_an_argument_error(tmp_path: Path) -> None:
    path = write(tmp_path, "s.txt", "1\n1\n")

    with pytest.raises(ValueError, match=r"start_s=5 is at or past the end of the trace \(2 s\)"):
        load_trace(path, start_s=5.0)


def test_same_seed_same_arrivals_other_seed_other_arrivals(three_functions: Path) -> None:
    a = load_trace(three_functions, seed=11).arrivals_s
    b = load_trace(three_functions, seed=11).arrivals_s
    c = load_trace(three_functions, seed=12).arrivals_s

    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)


# ---------------------------------------------------------------------------------------------
# The Trace object
# ---------------------------------------------------------------------------------------------


def test_trace_arrivals_are_read_only_and_per_second_counts_cover_the_span() -> None:
    source = np.array([0.2, 0.7, 2.5, 3.0])
    trace = Trace(name="t", arrivals_s=source, duration_s=3.0, source="memory")

    with pytest.raises(ValueError, match="read-only"):
        trace.arrivals_s[0] = 1.0
    source[0] = 0.1  # the caller's own array stays writable
    # An arrival exactly at a whole-second end is counted in the last second.
    assert trace.per_second_counts().tolist() == [2, 0, 2]
    assert len(trace) == 4
    assert trace.mean_rate_per_s == pytest.approx(4 / 3)


def test_trace_rejects_unsorted_arrivals_and_short_duration() -> None:
    with pytest.raises(ValueError, match="sorted ascending"):
        Trace(name="t", arrivals_s=np.array([1.0, 0.5]), duration_s=2.0, source="m")
    with pytest.raises(ValueError, match=r"must be >= the last arrival"):
        Trace(name="t", arrivals_s=np.array([0.0, 5.0]), duration_s=2.0, source="m")
    with pytest.raises(ValueError, match=">= 0"):
        Trace(name="t", arrivals_s=np.array([-1.0]), duration_s=2.0, source="m")


def test_empty_trace_has_no_seconds() -> None:
    trace = Trace(name="t", arrivals_s=np.array([]), duration_s=0.0, source="m")

    assert trace.per_second_counts().tolist() == []
    assert trace.mean_rate_per_s == 0.0


# ---------------------------------------------------------------------------------------------
# Errors a user can fix: file, line, what was expected
# ---------------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    with pytest.raises(TraceFormatError) as excinfo:
        load_trace(path)
    assert_trace_error(excinfo, path, None, "no such file")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(TraceFormatError) as excinfo:
        load_trace(tmp_path)
    assert_trace_error(excinfo, tmp_path, None, "is a directory")


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
@pytest.mark.parametrize("fmt", ["auto", "azure2019", "per-second"])
def test_empty_file(tmp_path: Path, text: str, fmt: str) -> None:
    path = write(tmp_path, "empty.csv", text)
    with pytest.raises(TraceFormatError) as excinfo:
        load_trace(path, fmt=fmt)
    assert_trace_error(excinfo, path, None, "file is empty", "HashOwner", "TIMESTAMP")


def test_unknown_header_lists_the_expected_ones(tmp_path: Path) -> None:
    path = write(tmp_path, "x.csv", "when,what\n1,2\n")
    with pytest.raises(TraceFormatError) as excinfo:
        load_trace(path)
    assert_trace_error(excinfo, path, 1, "unrecognised header 'when,what'",
                       "HashOwner,HashApp,HashFunction,Trigger", "minute_1",
                       "app,func,end_timestamp,duration", "TIMESTAMP", "timestamp_s")


def test_forced_format_with_the_wrong_header(tmp_path: Path) -> None:
    path = write(tmp_path, "llm.csv", f"{LLM_HEADER}\n2023-11-16 18:17:03.9799600,1,1\n")
    with pytest.raises(TraceFormatError) as excinfo:
        load_trace(path, fmt="azure2021")
    assert_trace_error(excinfo, path, 1, "no column app, func, end_timestamp, duration",
                       "expected 'app,func,end_timestamp,duration'")

    with pytest.raises(TraceFormatError) as excinfo:
        load_trace(path, fmt="azure2019")
    assert_trace_error(excinfo, path, 1, "no column HashOwner, HashApp, HashFunction",
                       "HashOwner,HashApp,HashFunction,Trigger,1,2,...,1440")


def test_minute_labels_must_be_consecutive(tmp_path: Path) -> None:
    path = write(tmp_path, "gap.csv", f"{AZ2019_HEADER},1,2,4\na,b,c,http,1,1,1\n")
    with pytest.raises(TraceFormatError) as excinfo:
        load_trace(path)
    assert_trace_error(excinfo, path, 1, "column 7 is labelled '4'; expected minute 3")


def test_negative_count(tmp_path: Path) -> None:
    path = write(tmp_path, "neg.csv", azure2019_text([("a", "f", [1, 2]), ("a", "g", [0, -2])]))
    with pytest.raises(TraceFormatError) as excinfo:
        load_trace(path)
    assert_trace_error(excinfo, path, 3, "negative count -2 in minute column '2'",
                       "non-negative integer")


@pytest.mark.parametrize("cell", ["abc", "1.5", "", "7x"])
def test_text_in_a_count_column(tmp_path: Path, cell: str) -> None:
    path = write(tmp_path, "txt.csv", f"{AZ2019_HEADER},1,2\na,b,f,http,1,2\na,b,g,http,3,{cell}\n")
    with pytest.raises(TraceFormatError) as excinfo:
        load_trace(path)
    assert_trace_error(excinfo, path, 3, f"minute column '2' holds {cell!r}",
                       "expected a non-negative integer count")


def test_row_with_the_wrong_number_of_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "short.csv", f"{AZ2019_HEADER},1,2\na,b,f,http,1,2\na,b,g,http,3\n")
    with pytest.raises(TraceFormatError) as excinfo:
        load_trace(path)
    assert_trace_error(excinfo, path, 3, "row has 5 columns; the header has 6")


def test_unknown_function_says_how_many_ids_and_gives_an_example(three_functions: Path) -> None:
    with pytest.raises(TraceFormatError) as excinfo:
        load_trace(three_functions, function="nope")
    assert_trace_error(excinfo, three_functions, None,
                       "no function id 'nope'; the file has 3 function ids, e.g. 'f1'")


def test_unknown_app(three_functions: Path) -> None:
    with pytest.raises(TraceFormatError) as excinfo:
        load_trace(three_functions, app="appZ")
    assert_trace_error(excinfo, three_functions, None,
                       "no app id 'appZ'; the file has 2 app ids, e.g. 'appA'")


def test_function_not_in_the_app(three_functions: Path) -> None:
    with pytest.raises(TraceFormatError) as excinfo:
        load_trace(three_functions, app="appB", function="f1")
    assert_trace_error(excinfo, three_functions, None, "function 'f1' is not in app 'appB'")


def test_unknown_function_in_azure2021(tmp_path: Path) -> None:
    path = write(tmp_path, "a.csv", f"{AZ2021_HEADER}\nA,fa,1,0.5\nA,fb,2,0.5\n")
    with pytest.raises(TraceFormatError) as excinfo:
        load_trace(path, function="fz")
    assert_trace_error(excinfo, path, None, "the file has 2 function ids, e.g. 'fa'")


@pytest.mark.parametrize("stamp", ["yesterday", "2023-13-16 18:17:03.1", "2023-11-16 18:17",
                                   "2023", "2023-11-16 18:17:03.1234567890"])
def test_unparseable_llm_timestamp(tmp_path: Path, stamp: str) -> None:
    path = write(tmp_path, "llm.csv", f"{LLM_HEADER}\n2023-11-16 18:17:03.9799600,1,1\n"
                 f"{stamp},2,2\n")
    with pytest.raises(TraceFormatError) as excinfo:
        load_trace(path)
    assert_trace_error(excinfo, path, 3, f"cannot read TIMESTAMP {stamp!r}",
                       "'2023-11-16 18:17:03.9799600'")


@pytest.mark.parametrize(("row", "why"), [
    ("A,f,soon,0.5", "end_timestamp holds 'soon'; expected a finite number of seconds >= 0"),
    ("A,f,2.0,-1", "duration holds '-1'; expected a finite number of seconds >= 0"),
    ("A,f,nan,1", "end_timestamp holds 'nan'"),
])
def test_bad_azure2021_numbers(tmp_path: Path, row: str, why: str) -> None:
    path = write(tmp_path, "a.csv", f"{AZ2021_HEADER}\nA,f,1,0.5\n{row}\n")
    with pytest.raises(TraceFormatError) as excinfo:
        load_trace(path)
    assert_trace_error(excinfo, path, 3, why)


@pytest.mark.parametrize(("text", "line", "why"), [
    ("timestamp_s\n1.0\nlater\n", 3, "timestamp_s holds 'later'; expected a finite number"),
    ("timestamp_s\n1.0\n2.0\ninf\n", 4, "timestamp_s holds 'inf'"),
    ("1.5\n2.5,3\n", 2, "row has 2 columns; a headerless timestamps file has one number"),
    ("x,y\n1,2\n", 1, "no 'timestamp_s' or 'timestamp' column"),
    ("timestamp\n2023-11-16 18:17:03\n", 2, "read by fmt='azure-llm' from a TIMESTAMP column"),
])
def test_bad_timestamps(tmp_path: Path, text: str, line: int, why: str) -> None:
    path = write(tmp_path, "t.csv", text)
    with pytest.raises(TraceFormatError) as excinfo:
        load_trace(path, fmt="timestamps")
    assert_trace_error(excinfo, path, line, why)


@pytest.mark.parametrize(("text", "line", "got"), [
    ("3\n-1\n2\n", 2, "'-1'"),
    ("3\nmany\n", 2, "'many'"),
    ("3\n2.5\n", 2, "'2.5'"),
    ("3\n\n2\n", 2, "''"),
    ("count\n3\n", 1, "'count'"),
])
def test_bad_per_second_lines(tmp_path: Path, text: str, line: int, got: str) -> None:
    path = write(tmp_path, "s.txt", text)
    with pytest.raises(TraceFormatError) as excinfo:
        load_trace(path, fmt="per-second")
    assert_trace_error(excinfo, path, line, "expected a non-negative integer (requests in second",
                       f"got {got}")


def test_header_without_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "h.csv", f"{AZ2019_HEADER},1,2\n")
    with pytest.raises(TraceFormatError) as excinfo:
        load_trace(path)
    assert_trace_error(excinfo, path, None, "has a header but no rows")


def test_files_of_different_formats_cannot_be_mixed(tmp_path: Path, three_functions: Path) -> None:
    seconds = write(tmp_path, "s.txt", "1\n2\n")
    with pytest.raises(TraceFormatError) as excinfo:
        load_trace([three_functions, seconds])
    assert_trace_error(excinfo, seconds, 1, "looks like per-second but", "share one format")


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv.xz"
    path.write_bytes(b"\xfd7zXZ\x00\x00\x04\xe6\xd6\xb4F")
    with pytest.raises(TraceFormatError) as excinfo:
        load_trace(path)
    assert_trace_error(excinfo, path, None, "not UTF-8 text", "unpack it first")


def test_trace_format_error_str_and_pickle() -> None:
    with_line = TraceFormatError("a.csv", 3, "bad")
    without = TraceFormatError("a.csv", None, "missing")

    assert str(with_line) == "a.csv:3: bad"
    assert str(without) == "a.csv: missing"
    assert isinstance(with_line, ValueError)
    copy = pickle.loads(pickle.dumps(with_line))
    assert (copy.path, copy.line, copy.why) == ("a.csv", 3, "bad")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"scale": 0.0}, "scale must be a finite number > 0"),
    ({"scale": -2.0}, "scale must be a finite number > 0"),
    ({"scale": float("nan")}, "scale must be a finite number > 0"),
    ({"start_s": 5.0, "end_s": 5.0}, r"end_s \(5.0\) must be greater than start_s \(5.0\)"),
    ({"start_s": -1.0}, "start_s must be a finite number of seconds >= 0"),
    ({"fmt": "xlsx"}, "unknown trace format 'xlsx'; choose one of auto, " + ", ".join(FORMATS)),
    ({"spread": "even"}, "unknown spread 'even'; choose one of poisson, uniform"),
    ({"seed": -1}, "seed must be an integer >= 0"),
    ({"function": "f"}, "function=/app= select rows of azure2019 or azure2021 traces"),
])
def test_argument_errors_say_what_is_valid(tmp_path: Path, kwargs: dict, message: str) -> None:
    path = write(tmp_path, "s.txt", "1\n2\n")
    with pytest.raises(ValueError, match=message):
        load_trace(path, **kwargs)


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

counts_strategy = st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=30)


@given(counts=counts_strategy, bin_s=st.sampled_from([0.5, 1.0, 60.0, 86_400.0]),
       spread=st.sampled_from(["poisson", "uniform"]), seed=st.integers(0, 2**32 - 1))
def test_spreading_conserves_every_bin_and_stays_inside_it(
    counts: list[int], bin_s: float, spread: str, seed: int
) -> None:
    # Bin starts far from zero (86,400 s bins) check the rounding guard at the bin's end too.
    arrivals = spread_counts(np.array(counts), bin_s, spread=spread,
                             rng=np.random.default_rng(seed))

    bins = np.floor(arrivals / bin_s).astype(np.int64)
    assert np.bincount(bins, minlength=len(counts)).tolist() == counts
    assert np.all(np.diff(arrivals) >= 0)
    assert arrivals.dtype == np.float64


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(matrix=st.integers(1, 3).flatmap(lambda n_minutes: st.lists(
    st.lists(st.integers(0, 30), min_size=n_minutes, max_size=n_minutes), min_size=1, max_size=4)),
       seed=st.integers(0, 10_000))
def test_azure2019_file_counts_are_conserved_per_minute(
    tmp_path: Path, matrix: list[list[int]], seed: int
) -> None:
    rows = [("app", f"f{i}", counts) for i, counts in enumerate(matrix)]
    path = write(tmp_path, "p.csv", azure2019_text(rows))

    trace = load_trace(path, seed=seed)
    again = load_trace(path, seed=seed)

    assert per_minute(trace).tolist() == np.sum(matrix, axis=0).tolist()
    assert np.all((trace.arrivals_s >= 0) & (trace.arrivals_s < trace.duration_s))
    assert trace.arrivals_s.tobytes() == again.arrivals_s.tobytes()
    if len(trace) >= 2:
        assert not np.array_equal(trace.arrivals_s, load_trace(path, seed=seed + 1).arrivals_s)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scale=st.floats(0.05, 6.0), seed=st.integers(0, 10_000))
def test_scale_conserves_expected_counts(tmp_path: Path, scale: float, seed: int) -> None:
    counts = np.full(2_000, 7)
    per_second = write(tmp_path, "s.txt", "\n".join(map(str, counts)) + "\n")
    requests = write(tmp_path, "t.csv", "timestamp_s\n" + "\n".join(
        f"{t:.3f}" for t in np.linspace(0.0, 5_000.0, 10_000)) + "\n")

    scaled_counts = load_trace(per_second, scale=scale, seed=seed)
    scaled_requests = load_trace(requests, scale=scale, seed=seed)

    # Bernoulli rounding: the sd of the total is at most sqrt(n / 4); allow 5 sd.
    assert abs(len(scaled_counts) - scale * counts.sum()) <= 5 * np.sqrt(counts.size / 4) + 1
    assert abs(len(scaled_requests) - scale * 10_000) <= 5 * np.sqrt(10_000 / 4) + 1
    assert scaled_requests.duration_s >= 5_000.0


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start_s=st.floats(0.0, 100.0), length_s=st.floats(0.5, 150.0),
       seed=st.integers(0, 1000), scale=st.sampled_from([0.5, 1.0, 2.0]))
def test_window_is_the_same_as_filtering_the_whole_trace(
    tmp_path: Path, start_s: float, length_s: float, seed: int, scale: float
) -> None:
    path = write(tmp_path, "w.csv", azure2019_text([("a", "f", [20, 3, 40])]))
    whole = load_trace(path, seed=seed, scale=scale).arrivals_s

    window = load_trace(path, seed=seed, scale=scale, start_s=start_s, end_s=start_s + length_s)

    stop_s = min(start_s + length_s, 180.0)
    expected = whole[(whole >= start_s) & (whole < stop_s)] - start_s
    np.testing.assert_array_equal(window.arrivals_s, expected)
    assert window.duration_s == pytest.approx(stop_s - start_s)
