"""`libra-calibrate` measures real workers and the real local pool and writes a profile that
loads, with today's date and a spread on every figure it measured."""

from __future__ import annotations

import datetime
from pathlib import Path

from click.testing import CliRunner

from libra.profiles import load_profile
from libra.serving.calibrate import main


def test_calibrate_writes_a_profile_of_measured_figures(built_models: tuple[Path, dict],
                                                        tmp_path: Path) -> None:
    out = tmp_path / "machine.toml"
    result = CliRunner().invoke(main, ["--out", str(out), "--model-dir", str(built_models[0]),
                                       "--rounds", "1", "--seconds", "1", "--sla-s", "60"])
    assert result.exit_code == 0, result.output
    profile = load_profile(out)
    today = datetime.date.today().isoformat()
    measured = {p for p, _, f in profile.figure_table() if f.date == today}
    assert measured == {"vm.boot_s", "vm.service_time_mean_s", "serverless.service_time_mean_s",
                        "serverless.cold_start_s"}
    vm, sls = profile.platform.vm, profile.platform.serverless
    assert 0 < vm.boot_s < 300
    assert 0 < vm.service_time_mean_s < profile.platform.sla_s == 60
    assert 0 < sls.service_time_mean_s < 1
    assert sls.cold_start_s > sls.service_time_mean_s  # a cold start costs more than a warm call
    assert "libra-calibrate --out" in profile.figures["vm.boot_s"].how
    base = load_profile("local")
    assert profile.platform.vm.price_per_hour_usd == base.platform.vm.price_per_hour_usd


def test_calibrate_without_a_model_says_what_to_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--out", str(tmp_path / "x.toml"), "--model-dir",
                                       str(tmp_path)])
    assert result.exit_code != 0
    assert "libra-model build" in result.output
