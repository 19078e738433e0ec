"""The readers on the real public traces in ../shared/traces, checked against published numbers.

Every expected figure below is in ../shared/traces/SOURCES.md or was counted from the files with
the csv module alone (ids and per-function totals), independently of the reader under test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simulator.errors import TraceFormatError
from simulator.traces import Trace, detect_format, load_trace

pytestmark = [pytest.mark.unit, pytest.mark.shared]

BUSIEST_OF_1000 = "95dc325a4a22f2d6368e04c54265752aad1ef0207cd08ed2ffa698403f3c30b3"
BUSIEST_OF_500 = "1992918c23cc92244ef4a1efabbf23ab28abe05bf37658eec9af9232d78e0939"
# An app of the 8 h slice with two functions (42 + 7,460 invocations).
TWO_FUNCTION_APP = "4e740b854138d6b46a963cc9bca494ffbae65c8c8a727932a12cec3b4bfa5cb7"
APP_2021 = "734272c01926d19690e5ec308bab64ef97950b75b1c7582283e0783fce1751d8"
FUNCTION_2021 = "556ccf8758c8c2a20082c161e955405e950439f0503522fe129e709a5dc0e58f"


def per_minute(trace: Trace) -> np.ndarray:
    return np.bincount((trace.arrivals_s // 60).astype(np.int64),
                       minlength=round(trace.duration_s / 60))


@pytest.mark.parametrize(("name", "n_requests", "peak_per_s"), [
    ("AzureLLMInferenceTrace_code.csv", 8_819, 67),
    ("AzureLLMInferenceTrace_conv.csv", 19_366, 16),
])
def test_llm_traces_one_hour_of_requests(
    shared_traces: Path, name: str, n_requests: int, peak_per_s: int
) -> None:
    trace = load_trace(shared_traces / name)

    assert detect_format(shared_traces / name) == "azure-llm"
    assert len(trace) == n_requests
    assert trace.arrivals_s[0] == 0.0
    assert 3_300 < trace.duration_s < 3_600  # ~57-58 min from the first to the last request
    assert trace.per_second_counts().max() == peak_per_s


def test_llm_code_trace_keeps_sub_microsecond_digits(shared_traces: Path) -> None:
    # Rows 2-3: 18:17:03.9799600 and 18:17:04.0319600.
    trace = load_trace(shared_traces / "AzureLLMInferenceTrace_code.csv")

    assert trace.arrivals_s[1] == pytest.approx(0.052, abs=1e-9)


def test_azure2019_8h_slice_in_the_original_format(shared_traces: Path) -> None:
    trace = load_trace(shared_traces / "azure2019-500fn-8h" / "invocations.csv")

    counts = per_minute(trace)
    assert len(trace) == 3_037_902
    assert trace.duration_s == 480 * 60.0
    assert (counts.min(), counts.max()) == (3_013, 7_603)


def test_azure2019_8h_slice_one_function_and_one_app(shared_traces: Path) -> None:
    path = shared_traces / "azure2019-500fn-8h" / "invocations.csv"

    assert len(load_trace(path, function=BUSIEST_OF_500)) == 1_915_521
    assert len(load_trace(path, app=TWO_FUNCTION_APP)) == 7_502


def test_azure2019_24h_1000_functions_sums_every_function(shared_traces: Path) -> None:
    path = shared_traces / "azure2019-1000fn-24h" / "1000_inv.csv"
    trace = load_trace(path)  # its speed is bench/sim_speed.py's business, not a test's
    counts = per_minute(trace)
    assert len(trace) == 11_639_447
    assert trace.duration_s == 86_400.0
    assert (counts.min(), counts.max()) == (4_098, 45_514)


def test_azure2019_24h_busiest_function(shared_traces: Path) -> None:
    path = shared_traces / "azure2019-1000fn-24h" / "1000_inv.csv"

    trace = load_trace(path, function=BUSIEST_OF_1000)

    assert len(trace) == 1_209_537
    assert trace.name == "1000_inv[function=95dc325a4a22]"


def test_azure2019_unknown_function_names_the_id_count(shared_traces: Path) -> None:
    path = shared_traces / "azure2019-1000fn-24h" / "1000_inv.csv"

    with pytest.raises(TraceFormatError, match=r"the file has 1000 function ids, e\.g\. '7aa0f8b2"):
        load_trace(path, function="deadbeef")


def test_invitro_square_wave_fixture(shared_traces: Path) -> None:
    # SOURCES.md: every minute of this parser fixture is 0 or 5 invocations.
    trace = load_trace(shared_traces / "azure2019-sample" / "invocations.csv", spread="uniform")

    assert trace.duration_s == 1440 * 60.0
    assert set(per_minute(trace).tolist()) <= {0, 5, 10, 15, 20}


def test_azure2021_sample(shared_traces: Path) -> None:
    path = shared_traces / "azure2021-sample" / "Azure2021_200.csv"

    trace = load_trace(path)

    assert detect_format(path) == "azure2021"
    assert len(trace) == 199
    assert trace.duration_s == pytest.approx(1_260.0557980537415)
    assert len(load_trace(path, function=FUNCTION_2021)) == 32
    assert len(load_trace(path, app=APP_2021)) == 59
    with pytest.raises(TraceFormatError, match="the file has 31 function ids"):
        load_trace(path, function="nope")


@pytest.mark.parametrize(("name", "mean_per_s", "max_per_s"), [
    ("wits_logs.txt", 142.9, 1_168),
    ("berkeley_logs.txt", 155.7, 660),
])
def test_libra_per_second_traces(
    shared_traces: Path, name: str, mean_per_s: float, max_per_s: int
) -> None:
    path = shared_traces / "libra" / name

    trace = load_trace(path)

    assert detect_format(path) == "per-second"
    assert trace.duration_s == 45_000.0
    assert trace.mean_rate_per_s == pytest.approx(mean_per_s, abs=0.05)
    assert trace.per_second_counts().max() == max_per_s
    lines = path.read_text().split()
    assert trace.per_second_counts().tolist() == [int(v) for v in lines]


def test_libra_aws_replay_window(shared_traces: Path) -> None:
    # LIBRA's AWS run replayed the first 1,800 s of WITS divided by 16.
    path = shared_traces / "libra" / "wits_logs.txt"
    first = np.array(path.read_text().split()[:1800], dtype=np.int64)

    trace = load_trace(path, end_s=1_800.0, scale=1 / 16, seed=5)

    assert trace.duration_s == 1_800.0
    expected = first.sum() / 16
    assert abs(len(trace) - expected) < 5 * np.sqrt(1_800 / 4)
