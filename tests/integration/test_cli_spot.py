"""`libra-sim --spot` (issue 18): bad values and bad interruption files are clear errors before
any replay, and a replay with spot VMs reports their share, cost and interruptions, cheaper than
the same replay on-demand only."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.tracegen import synthetic_step, write_per_second
from tests.integration.test_cli import assert_user_error, by_policy, cli, ok, run_json

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """500 req/s for 20 minutes: about three VMs' load."""
    counts = synthetic_step(base_rps=500.0, factor=1.0, step_at_s=600.0, duration_s=1200,
                            seed=4).counts
    return write_per_second(tmp_path_factory.mktemp("spot") / "flat.txt", counts)


@pytest.mark.parametrize(("option", "value"), [
    ("--spot-price", "abc"), ("--spot-price", "-1"), ("--spot-price", "nan"),
    ("--spot-interruptions-per-day", "x"), ("--spot-interruptions-per-day", "-0.1"),
    ("--spot-interruptions-per-day", "inf"),
])
def test_a_bad_spot_value_is_a_clear_error(option: str, value: str, trace: Path) -> None:
    assert_user_error(cli("--trace", str(trace), "--spot", option, value), 2, option,
                      "not a number >= 0")


def test_a_bad_interruptions_file_names_file_and_line(trace: Path, tmp_path: Path) -> None:
    bad = tmp_path / "storm.txt"
    bad.write_text("# storm\n300\n300 s\n")
    assert_user_error(cli("--trace", str(trace), "--spot", "--spot-interruptions-file",
                          str(bad)), 1, f"{bad}:3:", "'300 s' is not a time in seconds")


def test_spot_replays_report_share_cost_and_interruptions(trace: Path, tmp_path: Path) -> None:
    storm = tmp_path / "storm.txt"
    storm.write_text("600\n600\n")
    common = ("--trace", str(trace), "--policies", "libra,mark", "--workers", "1", "--slo",
              "0.999")
    on_demand = by_policy(run_json(*common))
    spot_doc = run_json(*common, "--spot", "--spot-price", "0.2", "--spot-interruptions-file",
                        str(storm))
    spot = by_policy(spot_doc)
    assert spot_doc["meta"]["config"]["spot"]["enabled"] is True
    assert spot_doc["meta"]["config"]["spot"]["price_per_hour_usd"] == 0.2
    assert on_demand["libra"]["spot_share_pct"] == 0.0
    assert on_demand["libra"]["spot_vm_cost_usd"] == 0.0
    row = spot["libra"]
    assert row["spot_share_pct"] > 50.0
    assert row["spot_interruptions"] == 2
    assert row["spot_vm_cost_usd"] + row["on_demand_vm_cost_usd"] == pytest.approx(
        row["vm_cost_usd"])
    # cheaper even with the storm's spill (two of four VMs gone for two minutes of twenty) and
    # the initial on-demand fleet kept until its spot replacements are ready
    assert row["total_cost_usd"] < 0.85 * on_demand["libra"]["total_cost_usd"]
    assert row["served_serverless"] > 0
    assert row["slo_met"] is True
    # mark asks for no spot: on-demand as before, untouched by the storm
    assert spot["mark"]["spot_share_pct"] == 0.0
    assert spot["mark"]["spot_interruptions"] == 0
    assert spot["mark"]["total_cost_usd"] == on_demand["mark"]["total_cost_usd"]


def test_the_table_shows_spot_columns_only_with_spot(trace: Path, tmp_path: Path) -> None:
    common = ("--trace", str(trace), "--policies", "libra", "--workers", "1", "--end-s", "600")
    plain = ok(cli(*common)).stdout
    assert "spot % VM-s" not in plain
    spot = ok(cli(*common, "--spot")).stdout
    header, _, row = spot.splitlines()[1:4]
    assert "spot % VM-s" in header
    assert "interruptions" in header
    assert row.split()[0] == "libra"
