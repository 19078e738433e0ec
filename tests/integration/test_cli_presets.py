"""`libra-sim` presets, the stable JSON row, the timeline, parallel workers and top-N."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from simulator.presets import load_preset, preset_names
from tests.integration.test_cli import SAMPLE, assert_user_error, by_policy, cli, ok, run_json
from tests.unit.test_traces import azure2019_text, write

pytestmark = pytest.mark.integration

STABLE_FIELDS = ("policy", "trace", "preset", "requests", "served_vm", "served_serverless",
                 "dropped", "sla_violations", "sla_violation_pct", "latency_p50_s",
                 "latency_p99_s", "vm_cost_usd", "serverless_cost_usd", "total_cost_usd",
                 "vm_seconds", "max_vms", "serverless_cold_starts")


def per_second_file(tmp_path: Path, counts: list[int]) -> Path:
    return write(tmp_path, "persec.txt", "\n".join(map(str, counts)) + "\n")


def test_presets_are_listed_and_printed() -> None:
    listing = ok(cli("presets")).stdout
    assert "libra-ic2e21" in preset_names()
    assert "libra-ic2e21\n    LIBRA IC2E 2021 simulated setting" in listing
    shown = ok(cli("presets", "libra-ic2e21")).stdout
    assert 'instance_type = "m4.large"' in shown
    assert_user_error(cli("presets", "nope"), 2, "unknown preset 'nope'", "libra-ic2e21")


def test_the_paper_preset_sets_every_value_of_the_papers_table() -> None:
    preset = load_preset("libra-ic2e21")
    vm, sls = preset.config["vm"], preset.config["serverless"]

    assert (vm["price_per_hour_usd"], vm["min_billing_s"], vm["boot_s"]) == (0.10, 0.0, 100.0)
    assert vm["concurrency"] / vm["service_time_mean_s"] == 16  # req/s per VM
    assert (preset.config["initial_vms"], preset.config["initial_vms_booting"]) == (10, True)
    assert preset.config["sla_s"] == 1.0
    lambda_usd = sls["memory_mb"] / 1024 * sls["service_time_mean_s"] * \
        sls["price_per_gb_s_usd"] + sls["price_per_request_usd"]
    assert lambda_usd == pytest.approx(8.535e-6)
    assert sls["cold_start_s"] == 0.0
    paper = preset.policies["libra-paper"]
    assert (paper["period_s"], paper["alpha"], paper["k"], paper["rho"]) == (300.0, 0.2, 1.0, 0.8)
    assert preset.policies["vm-static"]["fleet_size"] == 292
    assert preset.trace["epoch_s"] == 1.0


def test_preset_run_uses_the_preset_and_set_overrides_it(tmp_path: Path) -> None:
    trace = per_second_file(tmp_path, [20] * 400)
    doc = run_json("--preset", "libra-ic2e21", "--trace", str(trace), "--policies",
                   "libra-paper,vm-reactive", "--set", "vm.boot_s=50")

    cfg = doc["meta"]["config"]
    assert (cfg["vm"]["instance_type"], cfg["vm"]["boot_s"]) == ("m4.large", 50.0)
    assert cfg["policies"]["libra-paper"]["rho"] == 0.8
    assert (doc["meta"]["preset"], doc["meta"]["epoch_s"]) == ("libra-ic2e21", 1.0)
    rows = by_policy(doc)
    # 20 req/s in 1 s epochs: libra-paper holds 16 (two VMs, quota int(.8 * 20)) on VMs from
    # its first VMs' boot on, all within their second: no violation. vm-reactive queues while
    # its 10 VMs boot, so it has violations.
    assert rows["libra-paper"]["sla_violations"] == 0
    assert rows["vm-reactive"]["sla_violations"] > 0
    assert_user_error(cli("--preset", "nope", "--trace", str(trace)), 2, "valid presets")


def test_json_rows_have_the_stable_fields(tmp_path: Path) -> None:
    trace = per_second_file(tmp_path, [30] * 120)
    doc = run_json("--trace", str(trace), "--policies", "libra,serverless",
                   "--preset", "libra-ic2e21")
    for row in doc["results"]:
        assert list(row)[: len(STABLE_FIELDS) + 1][:3] == ["policy", "trace", "preset"]
        assert set(STABLE_FIELDS) <= set(row)
        assert (row["trace"], row["preset"]) == ("persec", "libra-ic2e21")
        assert row["vm_seconds"] >= 0
        assert row["max_vms"] >= 0
    serverless = by_policy(doc)["serverless"]
    # new instances are counted, but the paper models no cold-start delay: none is late
    assert serverless["serverless_cold_starts"] > 0
    assert serverless["sla_violations"] == 0


def test_timeline_has_one_row_per_second_per_policy(tmp_path: Path) -> None:
    counts = [5, 0, 12, 7] * 30
    trace, out = per_second_file(tmp_path, counts), tmp_path / "timeline.csv"
    result = ok(cli("--trace", str(trace), "--policies", "libra-paper,serverless",
                    "--preset", "libra-ic2e21", "--set", "vm.boot_s=10",
                    "--timeline", str(out), "--json"))

    assert f"timeline written to {out}" in result.stderr
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["policy", "t_s", "arrivals", "vms_ready", "vms_booting",
                             "vms_draining", "target_vms", "vm_quota_rps",
                             "serverless_in_flight", "serverless_instances", "serverless_warm",
                             "served_serverless"]
    for policy in ("libra-paper", "serverless"):
        mine = [r for r in rows if r["policy"] == policy]
        assert [int(r["arrivals"]) for r in mine] == counts  # second t's own arrivals
        assert [float(r["t_s"]) for r in mine] == [float(t) for t in range(len(counts))]
    assert all(r["vm_quota_rps"] == "" for r in rows if r["policy"] == "serverless")
    assert {r["vm_quota_rps"] for r in rows if r["policy"] == "libra-paper"} > {"0"}


def test_two_workers_give_the_same_results_as_one() -> None:
    args = ("--trace", str(SAMPLE), "--end-s", "600", "--policies", "libra,spock,libra-paper")
    one, two = run_json(*args, "--workers", "1"), run_json(*args, "--workers", "2")
    assert one["results"] == two["results"]
    assert_user_error(cli(*args, "--workers", "zero"), 2, "'zero' is not 'auto'")


def test_top_replays_the_busiest_functions(tmp_path: Path) -> None:
    path = write(tmp_path, "day.csv", azure2019_text([
        ("a", "small", [1, 0, 0]), ("a", "big", [50, 60, 70]), ("b", "mid", [9, 9, 9])]))
    doc = run_json("--trace", str(path), "--top", "2", "--policies", "serverless")
    assert doc["meta"]["requests"] == 207
    assert doc["meta"]["trace"] == "day[top=2]"
    assert_user_error(cli("--trace", str(path), "--top", "0"), 2, "--top")


def test_meta_reproduces_a_preset_run_from_its_config(tmp_path: Path) -> None:
    trace = per_second_file(tmp_path, [25] * 300)
    first = run_json("--preset", "libra-ic2e21", "--trace", str(trace), "--policies", "libra")
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps(first["meta"]["config"]))
    again = run_json("--trace", str(trace), "--policies", "libra", "--config", str(config),
                     "--epoch-s", "1")
    assert again["results"][0] == {**first["results"][0], "preset": ""}
