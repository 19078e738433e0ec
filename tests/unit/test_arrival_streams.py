"""Streams of arrivals: the same arrivals as the materialized trace, chunk by chunk; top-N
functions; 1 s epochs; bad input named by file and line; memory flat in the trace length."""

from __future__ import annotations

import csv
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from libra.core.policies import Libra
from simulator.arrivals import CHUNK_S, CountStream
from simulator.config import SimConfig
from simulator.engine import Simulation
from simulator.errors import TraceFormatError
from simulator.traces import load_trace, open_trace
from tests.unit.test_traces import azure2019_text, write

pytestmark = pytest.mark.unit


def test_chunks_concatenate_to_the_materialized_trace_and_stay_in_their_minute(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "day.csv", azure2019_text([("a", "f", [5, 0, 700, 3, 9])]))
    stream = open_trace(path, seed=4)
    chunks = list(stream.chunks())

    assert len(chunks) == 5  # one per minute of trace time
    for k, chunk in enumerate(chunks):
        assert ((chunk >= k * CHUNK_S) & (chunk < (k + 1) * CHUNK_S)).all()
        assert (np.diff(chunk) >= 0).all()
    assert np.array_equal(np.concatenate(chunks), load_trace(path, seed=4).arrivals_s)
    assert stream.n_requests == 717 == len(load_trace(path, seed=4))


def test_a_window_holds_the_same_arrivals_as_the_whole_trace_there(tmp_path: Path) -> None:
    path = write(tmp_path, "s.txt", "\n".join(str(c) for c in range(1, 301)) + "\n")
    whole = load_trace(path, seed=2).arrivals_s
    window = load_trace(path, seed=2, start_s=70.5, end_s=190.0)

    inside = whole[(whole >= 70.5) & (whole < 190.0)] - 70.5
    assert np.array_equal(window.arrivals_s, inside)
    assert window.duration_s == pytest.approx(119.5)


def test_epochs_move_each_arrival_to_the_start_of_its_second(tmp_path: Path) -> None:
    path = write(tmp_path, "s.txt", "3\n0\n2\n")
    trace = load_trace(path, epoch_s=1.0)

    assert trace.arrivals_s.tolist() == [0.0, 0.0, 0.0, 2.0, 2.0]
    with pytest.raises(ValueError, match="epoch_s must be a finite number of seconds > 0"):
        load_trace(path, epoch_s=0.0)


def test_top_n_keeps_the_busiest_functions_summed(tmp_path: Path) -> None:
    path = write(tmp_path, "day.csv", azure2019_text([
        ("a1", "quiet", [1, 1, 0]),     # 2
        ("a1", "busy", [10, 0, 30]),    # 40
        ("a2", "middle", [5, 5, 5]),    # 15
        ("a2", "busiest", [0, 90, 0]),  # 90
    ]))

    def per_minute(**kw: object) -> list[int]:
        t = load_trace(path, **kw)  # type: ignore[arg-type]
        return np.bincount((t.arrivals_s // 60).astype(int), minlength=3).tolist()

    assert per_minute(top=1) == [0, 90, 0]
    assert per_minute(top=2) == [10, 90, 30]
    assert per_minute(top=10) == per_minute() == [16, 96, 35]
    assert per_minute(top=1, app="a1") == [10, 0, 30]
    assert load_trace(path, top=2).name == "day[top=2]"
    with pytest.raises(ValueError, match="give one of them"):
        load_trace(path, top=2, function="busy")
    with pytest.raises(ValueError, match="top must be a whole number"):
        load_trace(path, top=0)


def test_top_n_of_a_per_second_trace_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "s.txt", "1\n2\n")
    with pytest.raises(ValueError, match="a per-second trace has no per-function counts"):
        load_trace(path, top=3)


@pytest.mark.parametrize(("text", "line", "fragment"), [
    ("3\n-1\n", 2, "requests in second 1"),
    ("3\n4\nfive\n", 3, "got 'five'"),
    ("1\n2\n3.5\n", 3, "expected a non-negative integer"),
])
def test_malformed_per_second_files_name_the_line(
    tmp_path: Path, text: str, line: int, fragment: str
) -> None:
    path = write(tmp_path, "bad.txt", text)
    with pytest.raises(TraceFormatError) as excinfo:
        open_trace(path, fmt="per-second")
    assert (excinfo.value.path, excinfo.value.line) == (str(path), line)
    assert fragment in excinfo.value.why


def test_malformed_invitro_file_names_the_line_and_minute(tmp_path: Path) -> None:
    header = "HashFunction,HashApp,HashOwner," + ",".join(f"minute_{m}" for m in range(1, 4))
    path = write(tmp_path, "1000_inv.csv", f"{header}\nf,a,o,1,2,3\ng,a,o,4,x,6\n")
    with pytest.raises(TraceFormatError) as excinfo:
        open_trace(path, top=1)
    assert (excinfo.value.line, "minute_2" in excinfo.value.why) == (3, True)


def test_stream_replay_keeps_memory_flat_in_the_trace_length() -> None:
    """Peak traced memory of a 20 min and a 2 h replay of the same rate stay within 25%.

    (bench/sim_speed.py reports the process's peak RSS for 1 h, 6 h and 24 h of the Azure day.)
    """
    def peak_bytes(minutes: int) -> int:
        seconds = minutes * 60
        counts = np.full(seconds, 20, dtype=np.int64)  # 20 req/s
        stream = CountStream(name="flat", source="memory", duration_s=float(seconds),
                             counts=counts, bin_s=1.0, stop_s=float(seconds))
        tracemalloc.start()
        sim = Simulation(stream, None, Libra(), SimConfig(), initial_vms=1,
                         keep_requests=False, record_ticks=False).run()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert sim.rec.requests == seconds * 20
        return peak

    short, six_times = peak_bytes(20), peak_bytes(120)
    assert six_times < 1.25 * short, (short, six_times)


@pytest.mark.shared
def test_top_n_of_the_real_azure_day_matches_a_csv_count(shared_traces: Path) -> None:
    path = shared_traces / "azure2019-1000fn-24h" / "1000_inv.csv"
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        rows = sorted((sum(map(int, row[3:])) for row in reader), reverse=True)
    stream = open_trace(path, top=10)

    assert stream.n_requests == sum(rows[:10])
    assert stream.duration_s == 86_400


@pytest.mark.shared
def test_8h_slice_starts_at_its_first_minute_label_and_streams(shared_traces: Path) -> None:
    path = shared_traces / "azure2019-500fn-8h" / "invocations.csv"
    stream = open_trace(path, start_s=3600.0, end_s=7200.0)
    first = next(iter(stream.chunks()))

    assert stream.duration_s == 3600.0  # minutes 540..599 of the day: the second hour of the file
    assert first.size
    assert first[0] >= 0.0
    assert first[-1] < CHUNK_S
    assert stream.n_requests == len(load_trace(path, start_s=3600.0, end_s=7200.0))


@pytest.mark.shared
def test_wits_in_epochs_has_the_published_mean_and_every_arrival_on_a_second(
    shared_traces: Path,
) -> None:
    stream = open_trace(shared_traces / "libra" / "wits_logs.txt", epoch_s=1.0)
    total = 0
    for chunk in stream.chunks():
        assert np.array_equal(chunk, np.floor(chunk))
        total += chunk.size
    assert total / stream.duration_s == pytest.approx(142.9, abs=0.05)
