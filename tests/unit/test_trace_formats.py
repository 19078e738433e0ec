"""Any trace a user has: JSON lines, CSV with a time or a count column, whitespace-separated
counts, gzip'd or not. A written trace reads back the same in every format; what a file cannot
say (which field, which unit, how long a bin) is asked for by name, never guessed.
"""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.cli import main as libra_sim
from simulator.errors import TraceFormatError
from simulator.request_files import RequestFileStream
from simulator.traces import detect_format, load_trace, open_trace

pytestmark = pytest.mark.unit

EPOCH_MS = 1_700_000_000_000
FILES = settings(max_examples=60, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


def write(path: Path, text: str, *, gz: bool = False) -> Path:
    if gz:
        with gzip.open(path, "wt", encoding="utf-8", newline="") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def iso(ms: int, zone_h: int = 0) -> str:
    """An ISO-8601 date-time with milliseconds, in a zone `zone_h` hours east of UTC."""
    at = datetime.fromtimestamp(ms / 1000, UTC) + timedelta(hours=zone_h)
    text = at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    return text + ("Z" if zone_h == 0 else f"{zone_h:+03d}:00")


def assert_error(excinfo: pytest.ExceptionInfo[TraceFormatError], path: Path,
                 line: int | None, *fragments: str) -> None:
    err = excinfo.value
    assert err.path == str(path)
    assert err.line == line
    for fragment in fragments:
        assert fragment in err.why, f"{fragment!r} not in {err.why!r}"


# -- read back what was written ------------------------------------------------------------

gaps_ms = st.lists(st.integers(0, 90_000), min_size=1, max_size=40)


def _times_ms(gaps: list[int]) -> list[int]:
    return (EPOCH_MS + np.cumsum(gaps)).tolist()


def _written_requests(directory: Path, style: str, times_ms: list[int], gz: bool) -> Path:
    name = directory / f"{style}.{'jsonl' if style.startswith('jsonl') else 'csv'}"
    if style == "jsonl-ms":
        text = "".join(json.dumps({"timestamp": t, "path": "/predict"}) + "\n" for t in times_ms)
    elif style == "jsonl-s":
        text = "".join(json.dumps({"at_s": t / 1000, "user": "u"}) + "\n" for t in times_ms)
    elif style == "jsonl-iso":
        text = "".join(json.dumps({"time": iso(t, zone_h=(i % 3) - 1)}) + "\n"
                       for i, t in enumerate(times_ms))
    elif style == "csv-ms":
        text = "user,time_ms\n" + "".join(f"u{i},{t}\n" for i, t in enumerate(times_ms))
    else:  # csv-iso
        text = "created_at;status\n" + "".join(f"{iso(t)};200\n" for t in times_ms)
    return write(name.with_suffix(name.suffix + ".gz") if gz else name, text, gz=gz)


@FILES
@given(gaps=gaps_ms, style=st.sampled_from(["jsonl-ms", "jsonl-s", "jsonl-iso", "csv-ms",
                                            "csv-iso"]), gz=st.booleans())
def test_requests_read_back_as_written(tmp_path_factory: pytest.TempPathFactory,
                                       gaps: list[int], style: str, gz: bool) -> None:
    times_ms = _times_ms(gaps)
    path = _written_requests(tmp_path_factory.mktemp("t"), style, times_ms, gz)
    options = {"time_field": "at_s"} if style == "jsonl-s" else {}

    trace = load_trace(path, **options)

    expected_s = (np.array(times_ms) - times_ms[0]) / 1000.0
    assert detect_format(path, **options) == style.split("-", maxsplit=1)[0]
    assert len(trace) == len(times_ms)
    np.testing.assert_allclose(trace.arrivals_s, expected_s, rtol=0, atol=2e-6)
    assert trace.duration_s == pytest.approx(expected_s[-1], abs=2e-6)


counts_lists = st.lists(st.integers(0, 50), min_size=1, max_size=40)


def _written_counts(directory: Path, style: str, counts: list[int], bin_s: int,
                    line_breaks: list[int], gz: bool) -> tuple[Path, dict[str, object]]:
    if style == "per-second":
        text, options = "".join(f"{c}\n" for c in counts), {}
    elif style == "counts":
        tokens = [str(c) for c in counts]
        lines, start = [], 0
        for width in [*line_breaks, len(tokens)]:
            lines.append(" ".join(tokens[start:start + max(1, width)]))
            start += max(1, width)
            if start >= len(tokens):
                break
        text, options = "\n".join(lines) + "\n", {"bin_s": float(bin_s)}
    elif style == "csv-period":
        text = "period,count\n" + "".join(f"{i},{c}\n" for i, c in enumerate(counts))
        options = {"bin_s": float(bin_s)}
    else:  # csv-time: bins with no request have no row; their times say where the others go
        rows = [(iso(EPOCH_MS + 1000 * bin_s * i), c) for i, c in enumerate(counts)
                if c or i in (0, 1, len(counts) - 1)]
        text = "time,requests\n" + "".join(f"{t},{c}\n" for t, c in rows)
        options = {} if len(counts) > 1 else {"bin_s": float(bin_s)}
    name = directory / ("c.txt" if style in ("per-second", "counts") else "c.csv")
    if gz:
        name = name.with_suffix(name.suffix + ".gz")
    return write(name, text, gz=gz), options


@FILES
@given(counts=counts_lists, style=st.sampled_from(["per-second", "counts", "csv-period",
                                                   "csv-time"]),
       bin_s=st.sampled_from([1, 5, 60]), line_breaks=st.lists(st.integers(1, 6), max_size=10),
       gz=st.booleans())
def test_counts_read_back_as_written(tmp_path_factory: pytest.TempPathFactory, counts: list[int],
                                     style: str, bin_s: int, line_breaks: list[int],
                                     gz: bool) -> None:
    path, options = _written_counts(tmp_path_factory.mktemp("c"), style, counts, bin_s,
                                    line_breaks, gz)

    stream = open_trace(path, **options)

    expected_bin_s = 1 if style == "per-second" else bin_s
    assert stream.counts.tolist() == counts
    assert stream.bin_s == expected_bin_s
    assert stream.duration_s == len(counts) * expected_bin_s
    assert len(stream) == sum(counts)


@FILES
@given(gaps=gaps_ms, order=st.randoms(use_true_random=False))
def test_rows_out_of_order_read_as_the_sorted_file(tmp_path_factory: pytest.TempPathFactory,
                                                   gaps: list[int], order: object) -> None:
    times_ms = _times_ms(gaps)
    shuffled = list(times_ms)
    order.shuffle(shuffled)  # type: ignore[attr-defined]
    directory = tmp_path_factory.mktemp("o")
    in_order = write(directory / "a.jsonl", "".join(f'{{"ts_ms": {t}}}\n' for t in times_ms))
    mixed = write(directory / "b.jsonl", "".join(f'{{"ts_ms": {t}}}\n' for t in shuffled))

    assert np.array_equal(load_trace(mixed).arrivals_s, load_trace(in_order).arrivals_s)


def test_a_file_in_time_order_is_streamed_not_held(tmp_path: Path) -> None:
    times = _times_ms([0, 400, 1_000, 61_000, 200])
    path = write(tmp_path / "log.jsonl", "".join(f'{{"timestamp": {t}}}\n' for t in times))
    mixed = write(tmp_path / "mixed.jsonl",
                  "".join(f'{{"timestamp": {t}}}\n' for t in reversed(times)))

    stream = open_trace(path)
    held = open_trace(mixed)

    assert isinstance(stream, RequestFileStream)
    assert stream._sorted == {}
    assert len(held._sorted[0]) == len(times)  # type: ignore[attr-defined]
    first, again = list(stream.chunks()), list(stream.chunks())
    assert len(first) == 2  # a minute of trace time at a time
    assert [c.tolist() for c in first] == [c.tolist() for c in again]


@FILES
@given(gaps=gaps_ms, scale=st.sampled_from([0.5, 1.0, 2.0, 3.0, 2.5]),
       seed=st.integers(0, 2**16))
def test_request_scale_copies_within_a_second_and_is_reproducible(
    tmp_path_factory: pytest.TempPathFactory, gaps: list[int], scale: float, seed: int,
) -> None:
    times_ms = _times_ms(gaps)
    path = write(tmp_path_factory.mktemp("s") / "log.jsonl",
                 "".join(f'{{"timestamp": {t}}}\n' for t in times_ms))
    original = load_trace(path).arrivals_s

    scaled = load_trace(path, scale=scale, seed=seed)

    assert np.array_equal(scaled.arrivals_s, load_trace(path, scale=scale, seed=seed).arrivals_s)
    assert np.all(np.diff(scaled.arrivals_s) >= 0)
    if scale == int(scale):
        assert len(scaled) == int(scale) * len(original)
    if scale >= 1:
        # every original is kept, and each copy is within a second after some original
        assert np.isin(original, scaled.arrivals_s).all()
        nearest = original[np.searchsorted(original, scaled.arrivals_s, side="right") - 1]
        assert np.all(scaled.arrivals_s - nearest < 1.0)
    else:
        assert np.isin(scaled.arrivals_s, original).all()
    assert scaled.duration_s >= scaled.arrivals_s[-1] if len(scaled) else True


@FILES
@given(gaps=gaps_ms, start=st.floats(0.0, 100.0), length=st.floats(1.0, 300.0),
       epoch=st.sampled_from([None, 1.0, 7.0]))
def test_request_window_is_filtering_the_whole_trace(
    tmp_path_factory: pytest.TempPathFactory, gaps: list[int], start: float, length: float,
    epoch: float | None,
) -> None:
    times_ms = _times_ms([1000, *gaps])
    path = write(tmp_path_factory.mktemp("w") / "log.csv",
                 "timestamp_ms\n" + "".join(f"{t}\n" for t in times_ms))
    whole = load_trace(path, epoch_s=epoch)
    if start >= whole.duration_s and (start > 0 or whole.duration_s > 0):
        with pytest.raises(ValueError, match="at or past the end"):
            load_trace(path, start_s=start, end_s=start + length, epoch_s=epoch)
        return

    window = load_trace(path, start_s=start, end_s=start + length, epoch_s=epoch)

    stop = min(start + length, whole.duration_s)
    keep = (whole.arrivals_s >= start) & ((whole.arrivals_s < stop) |
                                          ((stop == whole.duration_s) &
                                           (whole.arrivals_s == stop)))
    np.testing.assert_array_equal(window.arrivals_s, whole.arrivals_s[keep] - start)
    assert window.duration_s == pytest.approx(stop - start)


def test_files_are_read_back_to_back(tmp_path: Path) -> None:
    day1 = write(tmp_path / "d1.jsonl", '{"t_ms": 1000}\n{"t_ms": 5000}\n')
    day2 = write(tmp_path / "d2.jsonl", '{"t_ms": 90000}\n{"t_ms": 91500}\n')

    trace = load_trace([day1, day2])

    assert trace.arrivals_s.tolist() == [0.0, 4.0, 4.0, 5.5]
    assert trace.duration_s == 5.5


def test_a_timestamp_column_in_epoch_milliseconds_is_read_as_milliseconds(
    tmp_path: Path,
) -> None:
    # the timestamps format reads seconds; epoch-millisecond values can only be milliseconds
    seconds = write(tmp_path / "s.csv", "timestamp\n3.5\n1.0\n")
    millis = write(tmp_path / "ms.csv", f"timestamp\n{EPOCH_MS}\n{EPOCH_MS + 2500}\n")

    assert detect_format(seconds) == "timestamps"
    assert load_trace(seconds).arrivals_s.tolist() == [0.0, 2.5]
    assert detect_format(millis) == "csv"
    assert load_trace(millis).arrivals_s.tolist() == [0.0, 2.5]
    assert load_trace(seconds, time_unit="ms").arrivals_s.tolist() == [0.0, 0.0025]


def test_iso_zones_and_nanoseconds_are_kept(tmp_path: Path) -> None:
    path = write(tmp_path / "z.jsonl", "".join(json.dumps({"time": t}) + "\n" for t in [
        "2024-03-01T12:00:00Z", "2024-03-01T13:00:00.000000001+01:00",
        "2024-03-01 07:00:02.5-05:00", "2024-03-01T12:00:03,25",
    ]))

    assert load_trace(path).arrivals_s.tolist() == [0.0, 1e-9, 2.5, 3.25]


# -- what a file cannot say, and bad lines ------------------------------------------------


@pytest.mark.parametrize(("text", "line", "fragments"), [
    ('{"timestamp": 1, "created_at": 2}\n', 1,
     ("2 fields could be the time", "'timestamp', 'created_at'", "--time-field")),
    ('{"path": "/p", "status": 200}\n', 1,
     ("no field named like a time", "'path', 'status'", "--time-field")),
    ('{"timestamp": 12.5}\n', 1, ("12.5 has no unit", "--time-unit")),
    ('{"timestamp": 1700000000250}\n{"timestamp": 1700000000300\n', 2, ("not JSON",)),
    ('{"timestamp": 1700000000250}\n[1, 2]\n', 2, ("a JSON list, not an object",)),
    ('{"timestamp": 1700000000250}\n\n{"ts": 1700000000300}\n', 3,
     ("no field 'timestamp'", "'ts'")),
    ('{"timestamp": 1700000000250}\n{"timestamp": "2023-11-14T22:13:20Z"}\n', 2,
     ("not a finite number",)),
    ('{"timestamp": "2023-11-14T22:13:20Z"}\n{"timestamp": 1700000000}\n', 2,
     ("not an ISO-8601 date-time",)),
    ('{"timestamp": "2023-02-30T00:00:00"}\n', 1, ("not a valid date-time",)),
    ('{"timestamp": "yesterday"}\n', 1, ("neither a number nor an ISO-8601",)),
    ('{"timestamp": true}\n', 1, ("neither a number",)),
])
def test_jsonl_errors_name_the_line_and_what_to_do(
    tmp_path: Path, text: str, line: int, fragments: tuple[str, ...],
) -> None:
    path = write(tmp_path / "log.jsonl", text)
    with pytest.raises(TraceFormatError) as excinfo:
        load_trace(path)
    assert_error(excinfo, path, line, *fragments)


@pytest.mark.parametrize(("text", "options", "line", "fragments"), [
    ("period,count,requests\n0,1,2\n", {}, 1,
     ("2 columns could be the count", "'count', 'requests'", "--count-column")),
    ("period,count\n0,1\n1,2\n", {}, 1, ("cannot tell how long each bin is", "--bin-s")),
    ("count\n1\n2\n", {}, 1, ("it has no time column", "--bin-s")),
    ("period,count\n0,1\n1,2\n3,4\n", {"bin_s": 60.0}, 4,
     ("period is 3 where the next bin would be 2", "--time-unit")),
    ("minute,count\n1,1\n2,2\n1,4\n", {}, 4, ("goes back to bin 0", "time order")),
    ("time_s,count\n0,1\n60,2\n90,4\n", {}, 4, ("not a whole number of 60 s bins", "--bin-s")),
    ("time_s,count\n0,1\n60,-2\n", {}, 3, ("column 'count' holds '-2'", "non-negative")),
    ("time_s,count\n0,1\n60\n", {}, 3, ("row has 1 columns; the header has 2",)),
    ("time,hits\n2024-01-01T00:00:00,3\nnoon,4\n", {}, 3, ("'noon' is not an ISO-8601",)),
    ("when,what\n1,2\n", {"count_column": "hits"}, 1, ("no column 'hits'", "'when', 'what'")),
    ("time,count\n2024-01-01T00:00:00,3\n", {}, None, ("one row cannot tell the bin width",)),
])
def test_count_csv_errors_name_the_line_and_what_to_do(
    tmp_path: Path, text: str, options: dict, line: int | None, fragments: tuple[str, ...],
) -> None:
    path = write(tmp_path / "rate.csv", text)
    with pytest.raises(TraceFormatError) as excinfo:
        load_trace(path, **options)
    assert_error(excinfo, path, line, *fragments)


@pytest.mark.parametrize(("text", "options", "line", "fragments"), [
    ("user,time,created_at\nu,1,2\n", {}, 1,
     ("2 columns could be the time", "--time-column")),
    ("user,when\nu,1\n", {"time_field": "time"}, 1, ("no column 'time'", "'user', 'when'")),
    ("time_ms,user\n1000,u\n1500,u,v\n", {}, 3, ("row has 3 columns; the header has 2",)),
    ("time_ms,user\n1000,u\nsoon,v\n", {}, 3, ("'soon' is not a finite number",)),
    ("time_ms\n", {}, None, ("has no requests",)),
])
def test_request_csv_errors_name_the_line_and_what_to_do(
    tmp_path: Path, text: str, options: dict, line: int | None, fragments: tuple[str, ...],
) -> None:
    path = write(tmp_path / "log.csv", text)
    with pytest.raises(TraceFormatError) as excinfo:
        load_trace(path, fmt="csv", **options)
    assert_error(excinfo, path, line, *fragments)


def test_whitespace_counts_name_the_bad_number(tmp_path: Path) -> None:
    path = write(tmp_path / "c.txt", "3 0 5\n2 x 1\n")
    with pytest.raises(TraceFormatError) as excinfo:
        load_trace(path)
    assert_error(excinfo, path, 2, "'x' (number 2 on the line, bin 4)", "whole numbers")


def test_a_damaged_gzip_names_the_file(tmp_path: Path) -> None:
    good = gzip.compress(b"1\n2\n3\n" * 1000)
    path = tmp_path / "cut.txt.gz"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(TraceFormatError) as excinfo:
        load_trace(path)
    assert_error(excinfo, path, None, "gzip data is damaged or cut short")


@pytest.mark.parametrize(("text", "kwargs", "message"), [
    ('{"timestamp": 1700000000250}\n', {"count_column": "n"},
     "count_column names a column of a count csv; a jsonl trace has none"),
    ('{"timestamp": 1700000000250}\n', {"bin_s": 5.0}, "a jsonl trace has a time per request"),
    ("1\n2\n", {"time_unit": "ms"}, "time_unit applies to jsonl and csv times"),
    ("1\n2\n", {"time_field": "t", "fmt": "per-second"},
     "time_field names the time of a jsonl or csv trace"),
    ("1\n2\n", {"time_unit": "minutes"}, "unknown time unit 'minutes'; choose one of s, ms"),
    ("1\n2\n", {"bin_s": 0.0}, "bin_s must be a finite number of seconds > 0"),
    ("1\n2\n", {"count_column": " "}, "count_column must name a field or column"),
])
def test_options_a_format_cannot_use_are_refused(tmp_path: Path, text: str, kwargs: dict,
                                                 message: str) -> None:
    path = write(tmp_path / "x.txt", text)
    with pytest.raises(ValueError, match=message):
        load_trace(path, **kwargs)


def test_detection_by_content_not_name(tmp_path: Path) -> None:
    assert detect_format(write(tmp_path / "a.txt", '  {"ts_s": 1}\n')) == "jsonl"
    assert detect_format(write(tmp_path / "b.csv", "4 5 0\n1\n")) == "counts"
    assert detect_format(write(tmp_path / "c.log", "ts,path\n1,/\n")) == "csv"
    assert detect_format(write(tmp_path / "d.txt", "arrival_time,x\n1,2\n")) == "csv"
    assert detect_format(write(tmp_path / "e.dat", "hits\n4\n"), count_column="hits") == "csv"
    plain = write(tmp_path / "f.txt", "1\n2\n")
    zipped = write(tmp_path / "f.bin", "1\n2\n", gz=True)
    assert detect_format(zipped) == detect_format(plain) == "per-second"


# -- the command line ----------------------------------------------------------------------


def test_command_line_reads_a_log_with_its_flags(tmp_path: Path) -> None:
    log = write(tmp_path / "log.jsonl", "".join(
        json.dumps({"when": EPOCH_MS + 250 * i}) + "\n" for i in range(40)), gz=True)
    rate = write(tmp_path / "rate.csv", "period,count\n0,30\n1,0\n2,45\n")
    runner = CliRunner()

    by_log = runner.invoke(libra_sim, ["--trace", str(log), "--time-column", "when",
                                       "--time-unit", "ms", "--policies", "serverless",
                                       "--json", "--workers", "1"])
    by_rate = runner.invoke(libra_sim, ["--trace", str(rate), "--bin-s", "60", "--policies",
                                        "serverless", "--json", "--workers", "1"])
    unsure = runner.invoke(libra_sim, ["--trace", str(rate), "--policies", "serverless"])
    wrong = runner.invoke(libra_sim, ["--trace", str(log), "--bin-s", "1"])

    assert by_log.exit_code == 0, by_log.output
    assert json.loads(by_log.output)["meta"]["requests"] == 40
    assert json.loads(by_log.output)["meta"]["duration_s"] == pytest.approx(9.75)
    assert by_rate.exit_code == 0, by_rate.output
    assert json.loads(by_rate.output)["meta"]["requests"] == 75
    assert json.loads(by_rate.output)["meta"]["duration_s"] == 180.0
    assert unsure.exit_code == 1
    assert f"Error: {rate}:1: cannot tell how long each bin is" in unsure.output
    assert wrong.exit_code == 2
    assert "a jsonl trace has a time per request" in wrong.output


def test_counts_per_second_from_the_first_pass_are_those_of_the_arrivals(tmp_path: Path) -> None:
    times = _times_ms([0, 999, 1, 500, 59_000, 600, 1_000])
    day1 = write(tmp_path / "a.jsonl", "".join(f'{{"timestamp": {t}}}\n' for t in times))
    day2 = write(tmp_path / "b.jsonl", "".join(f'{{"timestamp": {t}}}\n' for t in times[:3]))

    stream = open_trace([day1, day2])
    counted_while_reading = stream.per_second_counts().tolist()
    stream._per_second = None

    assert counted_while_reading == stream.per_second_counts().tolist()
    assert sum(counted_while_reading) == len(stream) == 10
