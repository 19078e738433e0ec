"""`libra-sim --slo` and `--sla-penalty` (issue 18): bad values are clear errors, every report
says whether each policy met the SLO, and `libra` meets it through a 5x step within 60 s with
little throttling."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.tracegen import synthetic_step, write_per_second
from tests.integration.test_cli import assert_user_error, by_policy, cli, ok, run_json

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def step_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 req/s, then 5x within 60 s from 300 s on, to 900 s."""
    counts = synthetic_step(base_rps=200.0, factor=5.0, step_at_s=300.0, ramp_s=60.0,
                            duration_s=900, seed=3).counts
    return write_per_second(tmp_path_factory.mktemp("slo") / "step.txt", counts)


@pytest.mark.parametrize("value", ["1.5", "1", "0", "-0.1", "abc", "nan", "inf", ""])
def test_a_bad_slo_is_a_clear_error(value: str, step_trace: Path) -> None:
    assert_user_error(cli("--trace", str(step_trace), "--slo", value), 2, "--slo",
                      "not a fraction between 0 and 1")


@pytest.mark.parametrize("value", ["-1", "abc", "inf", "nan"])
def test_a_bad_sla_penalty_is_a_clear_error(value: str, step_trace: Path) -> None:
    assert_user_error(cli("--trace", str(step_trace), "--sla-penalty", value), 2,
                      "--sla-penalty", "not a dollar amount")


def test_a_bad_slo_in_the_config_names_the_field(step_trace: Path) -> None:
    assert_user_error(cli("--trace", str(step_trace), "--set", "slo=1.2"), None,
                      "bad config", "slo")


def test_a_step_replayed_with_an_slo_meets_it_and_says_so(step_trace: Path) -> None:
    doc = run_json("--trace", str(step_trace), "--slo", "0.999", "--sla-penalty", "0.01",
                   "--policies", "libra,libra-forecast,vm-reactive", "--workers", "2")
    rows = by_policy(doc)
    assert doc["meta"]["config"]["slo"] == 0.999
    for name in ("libra", "libra-forecast"):
        row = rows[name]
        assert row["slo"] == 0.999
        assert row["slo_met"] is True
        assert row["sla_violations"] <= 0.001 * row["requests"]
        assert row["serverless_throttled"] < 0.0005 * row["requests"]
    reactive = rows["vm-reactive"]  # queues through the step: late, and the report says so
    assert reactive["slo_met"] is False
    for row in rows.values():
        assert row["cost_with_penalties_usd"] == pytest.approx(
            row["total_cost_usd"] + 0.01 * row["sla_violations"])

    shown = ok(cli("--trace", str(step_trace), "--slo", "0.999", "--policies",
                   "libra,vm-reactive", "--workers", "2")).stdout
    assert "SLO 0.999 met" in shown
    lines = {line.split()[0]: line for line in shown.splitlines()[3:] if line.strip()}
    assert lines["libra"].rstrip().endswith("yes")
    assert lines["vm-reactive"].rstrip().endswith("NO")
    assert "with penalties $" not in shown  # no penalty stated: no second view


def test_without_an_slo_the_report_has_no_slo_column_and_json_says_none(step_trace: Path
                                                                         ) -> None:
    doc = run_json("--trace", str(step_trace), "--policies", "serverless", "--end-s", "200")
    row = by_policy(doc)["serverless"]
    assert row["slo"] is None
    assert row["slo_met"] is None
    assert row["cost_with_penalties_usd"] == row["total_cost_usd"]
    shown = ok(cli("--trace", str(step_trace), "--policies", "serverless", "--end-s",
                   "200")).stdout
    assert "SLO" not in shown
