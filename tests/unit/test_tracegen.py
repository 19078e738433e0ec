"""The synthetic Azure 2019 day: reproducible, readable by load_trace, diurnal, with bursts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simulator.tracegen import SyntheticAzure2019, generate_azure2019, main, synthetic_azure2019
from simulator.traces import detect_format, load_trace

pytestmark = pytest.mark.unit

SHIPPED_SAMPLE = Path(__file__).resolve().parents[2] / "traces" / "azure.csv"


@pytest.fixture(scope="module")
def day() -> SyntheticAzure2019:
    return synthetic_azure2019()


def burst_minutes(bursts: tuple[tuple[int, int, float], ...], minutes: int) -> np.ndarray:
    mask = np.zeros(minutes, dtype=bool)
    for first, length, _ in bursts:
        mask[first:first + length] = True
    return mask


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a = generate_azure2019(tmp_path / "a.csv", seed=7).read_bytes()
    b = generate_azure2019(tmp_path / "b.csv", seed=7).read_bytes()
    c = generate_azure2019(tmp_path / "c.csv", seed=8).read_bytes()

    assert a == b
    assert a != c


def test_shipped_sample_is_what_the_documented_call_makes(tmp_path: Path) -> None:
    # traces/README.md says the sample is generate_azure2019 with its defaults.
    made = generate_azure2019(tmp_path / "azure.csv")

    assert made.read_bytes() == SHIPPED_SAMPLE.read_bytes()


def test_command_line_writes_the_same_file(tmp_path: Path) -> None:
    main([str(tmp_path / "cli.csv")])

    assert (tmp_path / "cli.csv").read_bytes() == SHIPPED_SAMPLE.read_bytes()


def test_reads_back_as_azure2019_at_a_gpu_fleet_load(tmp_path: Path) -> None:
    path = generate_azure2019(tmp_path / "day.csv")

    trace = load_trace(path)

    assert detect_format(path) == "azure2019"
    assert path.stat().st_size < 1_000_000
    assert trace.duration_s == 86_400.0
    assert 150 <= trace.mean_rate_per_s <= 400
    day = synthetic_azure2019()
    assert len(trace) == int(day.counts.sum())


def test_functions_and_apps_can_be_selected(tmp_path: Path, day: SyntheticAzure2019) -> None:
    path = generate_azure2019(tmp_path / "day.csv")

    assert len(load_trace(path, function="fn-bursty")) == int(day.counts[-1].sum())
    assert len(load_trace(path, app="app-web")) == int(day.counts[:-2].sum())
    assert [row[2] for row in day.rows] == ["fn-web-0", "fn-web-1", "fn-steady", "fn-bursty"]


def test_diurnal_trough_at_night_peak_in_the_afternoon(day: SyntheticAzure2019) -> None:
    quiet = ~burst_minutes(day.bursts, 1440)
    total = day.total_per_min.astype(float)
    hourly_per_s = np.array([total[h * 60:(h + 1) * 60][quiet[h * 60:(h + 1) * 60]].mean() / 60
                             for h in range(24)])

    assert 2 <= int(hourly_per_s.argmin()) <= 6
    assert 14 <= int(hourly_per_s.argmax()) <= 18
    assert hourly_per_s.max() / hourly_per_s.min() > 2.0
    assert hourly_per_s.min() >= 100
    assert hourly_per_s.max() <= 500


def test_bursts_lift_the_total_three_to_five_times_for_one_to_ten_minutes(
    day: SyntheticAzure2019,
) -> None:
    total = day.total_per_min.astype(float)
    quiet = ~burst_minutes(day.bursts, 1440)

    assert len(day.bursts) == 8
    for first, length, factor in day.bursts:
        assert 1 <= length <= 10
        assert 3.0 <= factor <= 5.0
        around = np.arange(max(first - 30, 0), min(first + length + 30, 1440))
        local = np.median(total[around[quiet[around]]])
        lift = total[first:first + length].mean() / local
        assert 2.7 <= lift <= 5.5, (first, length, factor, lift)


def test_bursty_function_is_off_between_bursts_and_steady_is_flat(day: SyntheticAzure2019) -> None:
    quiet = ~burst_minutes(day.bursts, 1440)
    bursty, steady = day.counts[-1], day.counts[-2]

    assert bursty[quiet].mean() < 0.01 * day.total_per_min[quiet].mean()
    assert bursty[~quiet].min() > 10 * bursty[quiet].mean()
    assert steady.std() / steady.mean() < 0.05  # Poisson noise only


@pytest.mark.parametrize("n_functions", [3, 6])
def test_other_function_counts_and_horizons(tmp_path: Path, n_functions: int) -> None:
    path = generate_azure2019(tmp_path / "d.csv", n_functions=n_functions, minutes=2 * 1440,
                              peak_per_min=600.0)

    trace = load_trace(path)

    assert trace.duration_s == 2 * 86_400.0
    assert path.read_text().count("\n") == n_functions + 1
    assert len(synthetic_azure2019(minutes=2 * 1440).bursts) == 16


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_functions": 2}, "n_functions must be >= 3"),
    ({"minutes": 0}, "minutes must be >= 1"),
    ({"peak_per_min": 0.0}, "peak_per_min must be > 0"),
    ({"trough_fraction": 1.5}, r"trough_fraction must be in \(0, 1\]"),
])
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        synthetic_azure2019(**kwargs)


def test_a_short_horizon_has_no_room_for_bursts() -> None:
    day = synthetic_azure2019(minutes=15)

    assert day.bursts == ()
    assert day.counts.shape == (4, 15)
