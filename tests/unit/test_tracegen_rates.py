"""The per-second generators: a 1x-to-5x step within 60 s, and days of a low-rate server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from simulator.cli import main as libra_sim
from simulator.tracegen import synthetic_diurnal, synthetic_step, write_per_second
from simulator.traces import detect_format, load_trace

pytestmark = pytest.mark.unit


def test_step_rate_is_base_then_five_times_base_within_sixty_seconds() -> None:
    step = synthetic_step(base_rps=100.0, factor=5.0, step_at_s=600.0, ramp_s=60.0,
                          duration_s=1200)

    assert step.duration_s == 1200
    assert np.all(step.rate_rps[:600] == 100.0)
    assert np.all(step.rate_rps[660:] == 500.0)
    ramp = step.rate_rps[600:660]
    assert np.all(np.diff(ramp) > 0)
    assert 100.0 < ramp[0] < 110.0
    assert 490.0 < ramp[-1] < 500.0


def test_step_counts_are_poisson_around_the_rate() -> None:
    step = synthetic_step(base_rps=100.0, factor=5.0, step_at_s=600.0, duration_s=1200, seed=3)

    before, after = step.counts[:600], step.counts[660:]
    # 600 Poisson(100) draws: the mean is within 4 standard errors (0.41 each) of 100
    assert abs(before.mean() - 100.0) < 4 * (100.0 / 600) ** 0.5
    assert abs(after.mean() - 500.0) < 4 * (500.0 / 540) ** 0.5
    assert abs(after.var() / after.mean() - 1.0) < 0.25  # Poisson: variance = mean


def test_a_sheer_step_and_a_step_that_ends() -> None:
    sheer = synthetic_step(base_rps=10.0, factor=3.0, step_at_s=5.0, ramp_s=0.0, duration_s=10)
    assert sheer.rate_rps.tolist() == [10.0] * 5 + [30.0] * 5

    pulse = synthetic_step(base_rps=10.0, factor=5.0, step_at_s=100.0, ramp_s=10.0, hold_s=30.0,
                           duration_s=200)
    assert np.all(pulse.rate_rps[110:140] == 50.0)
    assert np.all(pulse.rate_rps[150:] == 10.0)
    assert np.all(np.diff(pulse.rate_rps[140:150]) < 0)


def test_same_seed_same_counts_other_seed_other_counts() -> None:
    a = synthetic_step(seed=1).counts
    assert np.array_equal(a, synthetic_step(seed=1).counts)
    assert not np.array_equal(a, synthetic_step(seed=2).counts)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"factor": 0.0}, "factor must be > 0"),
    ({"step_at_s": 5000.0}, "step_at_s must be within the trace"),
    ({"ramp_s": -1.0}, "ramp_s must be >= 0"),
    ({"hold_s": float("nan")}, "hold_s must be >= 0"),
    ({"duration_s": 0}, "duration_s must be a whole number"),
    ({"base_rps": -1.0}, "the rate must be >= 0"),
])
def test_step_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        synthetic_step(**kwargs)


def test_diurnal_week_averages_the_mean_rate_with_a_day_night_swing() -> None:
    week = synthetic_diurnal(days=7, mean_rps=1.0, seed=7)

    assert week.duration_s == 7 * 86_400
    assert abs(week.rate_rps.mean() - 1.0) < 1e-9
    assert abs(week.counts.mean() - 1.0) < 0.01
    day = week.rate_rps[:86_400]
    assert abs(int(np.argmin(day)) - 4 * 3600) <= 1  # 04:00
    assert abs(int(np.argmax(day)) - 16 * 3600) <= 1  # 16:00
    assert day.min() / day.max() == pytest.approx(0.35, rel=1e-6)
    assert np.allclose(week.rate_rps[86_400:2 * 86_400], day, rtol=1e-9)


@pytest.mark.parametrize("name", ["step.txt", "step.txt.gz"])
def test_written_counts_read_back_as_a_per_second_trace(tmp_path: Path, name: str) -> None:
    step = synthetic_step(base_rps=5.0, duration_s=120, step_at_s=60.0, ramp_s=10.0)
    path = write_per_second(tmp_path / name, step.counts)

    trace = load_trace(path)

    assert detect_format(path) == "per-second"
    assert trace.duration_s == 120.0
    assert trace.per_second_counts().tolist() == step.counts.tolist()


def test_gzip_output_is_reproducible(tmp_path: Path) -> None:
    counts = synthetic_step(duration_s=60, step_at_s=30.0).counts
    a = write_per_second(tmp_path / "a.gz", counts).read_bytes()
    b = write_per_second(tmp_path / "b.gz", counts).read_bytes()

    assert a[:2] == b"\x1f\x8b"
    assert a == b


def test_make_trace_step_and_diurnal_from_the_command_line(tmp_path: Path) -> None:
    runner = CliRunner()
    step = runner.invoke(libra_sim, [
        "make-trace", "--kind", "step", "--out", str(tmp_path / "step.txt"), "--base-rps", "20",
        "--factor", "5", "--step-at-s", "100", "--ramp-s", "60", "--duration-s", "300",
        "--seed", "4"])
    week = runner.invoke(libra_sim, [
        "make-trace", "--kind", "diurnal", "--days", "0.5", "--mean-rps", "2",
        "--out", str(tmp_path / "half.txt.gz")])

    assert step.exit_code == 0, step.output
    assert week.exit_code == 0, week.output
    expected = synthetic_step(base_rps=20.0, factor=5.0, step_at_s=100.0, ramp_s=60.0,
                              duration_s=300, seed=4).counts
    assert load_trace(tmp_path / "step.txt").per_second_counts().tolist() == expected.tolist()
    assert load_trace(tmp_path / "half.txt.gz").duration_s == 43_200.0


@pytest.mark.parametrize(("args", "message"), [
    (["--kind", "diurnal", "--factor", "3"], "--factor do(es) not apply to --kind diurnal"),
    (["--base-rps", "3"], "--base-rps do(es) not apply to --kind azure2019"),
    (["--kind", "step", "--factor", "0"], "factor must be > 0"),
])
def test_make_trace_refuses_flags_of_another_kind_and_bad_values(
    tmp_path: Path, args: list[str], message: str,
) -> None:
    result = CliRunner().invoke(libra_sim, ["make-trace", "--out", str(tmp_path / "x"), *args])

    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "x").exists()
