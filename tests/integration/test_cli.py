"""`libra-sim` as a user drives it: real processes for a few end-to-end runs, CliRunner elsewhere.

Every run replays a short window of the shipped sample (`traces/azure.csv`; the whole day is 24 M
requests and takes minutes), so the file stays well under a minute on two cores. Bad input must
end in one clear `Error: ...` line and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from libra.core.policies import POLICIES
from simulator.cli import main
from simulator.fetch import TRACES
from simulator.runner import DEFAULT_POLICIES
from simulator.traces import load_trace
from tests.helpers import serve_folder

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE = REPO_ROOT / "traces" / "azure.csv"
SAMPLE_SHA256 = "ef659b22e80d9230dfc9c5ca73c75b15f8f7fa5734d1192b0d1afa2b0539bba0"  # README
LLM_CODE = "AzureLLMInferenceTrace_code.csv"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SUBPROCESS_TIMEOUT_S = 120

# Ten minutes of the sample (124,660 requests): quick for every policy.
SHORT = ("--trace", str(SAMPLE), "--end-s", "600")
# Half an hour around the first burst (01:30, 6 min): where LIBRA's period_s changes its choices.
BURST = ("--trace", str(SAMPLE), "--start-s", "4800", "--end-s", "6600")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _runner() -> CliRunner:
    try:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]  # click 8.1
    except TypeError:
        return CliRunner()  # click >= 8.2 keeps stdout and stderr apart by itself


def cli(*args: str) -> Result:
    return _runner().invoke(main, list(args))


def everything(result: Result) -> str:
    return result.stdout + result.stderr


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"{result.exception!r}\n{everything(result)}"
    assert result.exception is None
    return result


def run_json(*args: str) -> dict[str, Any]:
    return json.loads(ok(cli(*args, "--json")).stdout)


def by_policy(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["policy"]: row for row in doc["results"]}


def assert_user_error(result: Result, exit_code: int | None, *fragments: str) -> str:
    """A clean click error: that exit code (None: any but 0), `Error: ...`, no traceback."""
    out = everything(result)
    assert result.exit_code != 0, out
    assert exit_code is None or result.exit_code == exit_code, out
    assert isinstance(result.exception, SystemExit), f"crashed with {result.exception!r}"
    assert "Traceback" not in out
    assert "Error: " in result.stderr
    for fragment in fragments:
        assert fragment in out, f"{fragment!r} not in {out!r}"
    return out


def run_process(*args: str, exe: str | None = None, cwd: Path = REPO_ROOT
                ) -> subprocess.CompletedProcess[str]:
    command = [exe] if exe else [sys.executable, "-m", "simulator.cli"]
    return subprocess.run([*command, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT_S, check=False)


def table_rows(output: str) -> tuple[list[str], list[list[str]]]:
    """(header cells, body rows split on whitespace) of the fixed-width table."""
    lines = output.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.strip() and set(line) <= {"-", " "})
    return lines[rule - 1].split("  "), [line.split() for line in lines[rule + 1:] if line.strip()]


def assert_accounts_add_up(doc: dict[str, Any]) -> None:
    """Each request is served by a VM or serverless, or dropped; each dollar is VM or serverless."""
    assert doc["results"], "no results"
    for row in doc["results"]:
        where = row["policy"]
        assert row["requests"] == doc["meta"]["requests"], where
        served = row["served_vm"] + row["served_serverless"]
        assert served + row["dropped"] == row["requests"], where
        assert math.isclose(row["total_cost_usd"], row["vm_cost_usd"] + row["serverless_cost_usd"],
                            rel_tol=1e-12, abs_tol=1e-12), where
        assert row["sla_violations"] >= row["dropped"], where
        assert math.isclose(row["sla_violation_pct"],
                            100.0 * row["sla_violations"] / row["requests"], rel_tol=1e-12), where
        assert min(row["vm_cost_usd"], row["serverless_cost_usd"]) >= 0, where


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# --------------------------------------------------------------------------------------------
# Output: table, JSON, CSV, plot, decisions
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def half_hour_json() -> dict[str, Any]:
    """All six default policies over the first half hour, as JSON."""
    return run_json("--trace", str(SAMPLE), "--end-s", "1800")


def test_table_has_one_row_per_policy_in_the_order_given() -> None:
    order = ["libra", "vm-static", "serverless", "vm-reactive"]
    expected_requests = len(load_trace(SAMPLE, end_s=600))

    out = ok(cli(*SHORT, "--policies", ",".join(order))).stdout

    first_line = out.splitlines()[0]
    assert first_line.startswith(
        f"trace azure[0s-600s]: {expected_requests:,} requests over 600 s (scale x1); SLA 1 s;")
    header, rows = table_rows(out)
    assert header[0] == "policy"
    assert [row[0] for row in rows] == order
    assert all(row[1] == f"{expected_requests:,}" for row in rows)


def test_json_has_meta_and_every_request_and_dollar_accounted_for(
    half_hour_json: dict[str, Any],
) -> None:
    meta = half_hour_json["meta"]
    assert meta["requests"] == len(load_trace(SAMPLE, end_s=1800)) > 0
    assert meta["duration_s"] == 1800
    assert (meta["seed"], meta["mode"], meta["scale"]) == (0, "batched", 1.0)
    assert meta["source"] == str(SAMPLE)
    assert meta["config"]["vm"]["instance_type"] == "g4dn.xlarge"
    assert [row["policy"] for row in half_hour_json["results"]] == list(DEFAULT_POLICIES)
    assert_accounts_add_up(half_hour_json)
    serverless = by_policy(half_hour_json)["serverless"]
    assert serverless["served_vm"] == 0
    assert serverless["vm_cost_usd"] == 0


NOT_STATED = {"slo", "slo_met"}
"""Row fields that are None (empty in CSV) when the run states no SLO."""


def test_csv_has_the_same_numbers_as_json(half_hour_json: dict[str, Any]) -> None:
    out = ok(cli("--trace", str(SAMPLE), "--end-s", "1800", "--csv")).stdout

    rows = list(csv.DictReader(io.StringIO(out)))

    assert len(rows) == len(half_hour_json["results"])
    for row, expected in zip(rows, half_hour_json["results"], strict=True):
        assert list(row) == list(expected)
        for key, value in expected.items():
            if value is None:  # null in JSON: a NaN (nan in CSV) or a field not stated (empty)
                assert row[key] == ("" if key in NOT_STATED else "nan"), key
            elif isinstance(value, bool):  # bool("False") is True: compare the text
                assert row[key] == str(value), key
            elif isinstance(value, str):
                assert row[key] == value, key
            else:
                assert type(value)(row[key]) == value, (row["policy"], key)


def test_plot_and_decisions_files_leave_json_on_stdout_intact(tmp_path: Path) -> None:
    png, decisions = tmp_path / "out.png", tmp_path / "d.csv"
    order = ["libra", "vm-reactive"]

    result = ok(cli(*SHORT, "--policies", ",".join(order), "--json",
                    "--plot", str(png), "--decisions", str(decisions)))

    doc = json.loads(result.stdout)  # the "written to" notes go to stderr
    assert f"plot written to {png}" in result.stderr
    assert f"decisions written to {decisions}" in result.stderr
    data = png.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 20_000
    width, height = png_size(data)
    assert width > 500
    assert height > 300

    with decisions.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = [dict(zip(header, row, strict=True)) for row in reader]
    assert header[:4] == ["policy", "t_s", "arrivals", "target_vms"]
    assert header[-1] == "reason"
    ticks = round(doc["meta"]["duration_s"] / doc["meta"]["config"]["tick_s"])
    assert ticks == 600
    assert [r["policy"] for r in rows] == [p for p in order for _ in range(ticks)]
    results = by_policy(doc)
    for policy in order:
        mine = [r for r in rows if r["policy"] == policy]
        assert [float(r["t_s"]) for r in mine] == [float(t) for t in range(ticks)]
        assert sum(int(r["arrivals"]) for r in mine) <= doc["meta"]["requests"]
        served_serverless = sum(int(r["served_serverless"]) for r in mine)
        assert served_serverless <= results[policy]["served_serverless"]
        assert max(int(r["vms_ready"]) for r in mine) <= results[policy]["max_vms"]


def test_decisions_has_one_row_per_tick_at_a_longer_tick(tmp_path: Path) -> None:
    decisions = tmp_path / "d.csv"

    ok(cli("--trace", str(SAMPLE), "--end-s", "300", "--set", "tick_s=5", "--policies", "libra",
           "--csv", "--decisions", str(decisions)))

    with decisions.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [float(r["t_s"]) for r in rows] == [5.0 * k for k in range(300 // 5)]


# --------------------------------------------------------------------------------------------
# Seeds, config, modes
# --------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_results_and_another_seed_does_not() -> None:
    args = (*SHORT, "--policies", "libra,serverless")
    first, again = run_json(*args, "--seed", "5"), run_json(*args, "--seed", "5")
    other = run_json(*args, "--seed", "6")

    assert first["results"] == again["results"]
    first["meta"].pop("wall_s"), again["meta"].pop("wall_s")
    assert first["meta"] == again["meta"]
    assert first["meta"]["seed"] == first["meta"]["config"]["seed"] == 5
    # Per-minute counts are exact, so the request total is seed-free; the spacing is not.
    assert other["meta"]["requests"] == first["meta"]["requests"]
    assert other["results"] != first["results"]


def test_set_policy_parameter_changes_only_that_policy() -> None:
    args = (*BURST, "--policies", "vm-static,libra")
    base = by_policy(run_json(*args))
    longer = by_policy(run_json(*args, "--set", "policies.libra.period_s=600"))

    assert longer["vm-static"] == base["vm-static"]
    assert longer["libra"] != base["libra"]
    assert longer["libra"]["requests"] == base["libra"]["requests"]


def test_config_file_sets_vm_fields_and_policy_parameters(tmp_path: Path) -> None:
    config = tmp_path / "sim.toml"
    config.write_text(
        "[vm]\n"
        "price_per_hour_usd = 1.052  # twice the default\n"
        "boot_s = 90.0\n"
        "\n"
        "[policies.libra]\n"
        "period_s = 600\n"
    )
    args = (*BURST, "--policies", "vm-static,libra")

    base = run_json(*args)
    from_file = run_json(*args, "--config", str(config))
    from_set = run_json(*args, "--set", "vm.price_per_hour_usd=1.052", "--set", "vm.boot_s=90",
                        "--set", "policies.libra.period_s=600")
    file_then_set = run_json(*args, "--config", str(config), "--set", "vm.boot_s=100")

    vm = from_file["meta"]["config"]["vm"]
    assert (vm["price_per_hour_usd"], vm["boot_s"]) == (1.052, 90.0)
    assert vm["concurrency"] == base["meta"]["config"]["vm"]["concurrency"]  # the rest default
    assert from_file["meta"]["config"] == from_set["meta"]["config"]
    assert from_file["results"] == from_set["results"]  # TOML tables == --set dotted keys
    assert file_then_set["meta"]["config"]["vm"]["boot_s"] == 100  # --set wins over the file
    assert file_then_set["meta"]["config"]["vm"]["price_per_hour_usd"] == 1.052
    # vm-static runs the same fleet at twice the price: same requests, exactly twice the VM bill.
    static, static_base = by_policy(from_file)["vm-static"], by_policy(base)["vm-static"]
    assert static["served_vm"] == static_base["served_vm"]
    assert math.isclose(static["vm_cost_usd"], 2 * static_base["vm_cost_usd"], rel_tol=1e-9)
    assert by_policy(from_file)["libra"] != by_policy(base)["libra"]
    assert_accounts_add_up(from_file)


def test_json_config_file_round_trips_meta_config(tmp_path: Path) -> None:
    args = (*SHORT, "--policies", "vm-reactive,libra")
    first = run_json(*args, "--set", "vm.boot_s=60", "--set", "sla_s=0.8")
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps(first["meta"]["config"]))

    again = run_json(*args, "--config", str(config))

    assert again["meta"]["config"] == first["meta"]["config"]
    assert again["results"] == first["results"]


def test_naive_mode_gives_the_same_results_as_batched() -> None:
    args = ("--trace", str(SAMPLE), "--end-s", "240", "--policies", "vm-reactive,serverless,libra")
    batched, naive = run_json(*args), run_json(*args, "--mode", "naive")

    assert naive["meta"]["mode"] == "naive"
    assert naive["results"] == batched["results"]


# --------------------------------------------------------------------------------------------
# Bad input: a clear error and a non-zero exit, never a traceback
# --------------------------------------------------------------------------------------------


@pytest.fixture
def text_in_count_column(tmp_path: Path) -> Path:
    """The sample with row 2 (file line 3), minute 7, holding 'abc'."""
    lines = SAMPLE.read_text().splitlines()
    cells = lines[2].split(",")
    cells[4 + 6] = "abc"
    lines[2] = ",".join(cells)
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_text_in_a_count_column_names_file_and_line_in_a_real_process(
    text_in_count_column: Path,
) -> None:
    proc = run_process("--trace", str(text_in_count_column), "--end-s", "60")

    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stdout == ""
    assert proc.stderr.startswith(f"Error: {text_in_count_column}:3: ")
    assert "'abc'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_empty_trace_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")

    assert_user_error(cli("--trace", str(empty)), 1, f"{empty}: file is empty")


def test_missing_trace_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"

    assert_user_error(cli("--trace", str(missing)), 1, f"{missing}: no such file")


def test_unknown_policy_lists_the_valid_ones() -> None:
    out = assert_user_error(cli(*SHORT, "--policies", "libra,lbra"), 2,
                            "--policies", "unknown policy 'lbra'")
    assert f"valid policies: {', '.join(POLICIES)}" in out


@pytest.mark.parametrize("key", ["vm.boot_secs", "serverless.memory", "sla"])
def test_unknown_set_key_is_named(key: str) -> None:
    assert_user_error(cli(*SHORT, "--set", f"{key}=1"), 1, "bad config", key,
                      "Extra inputs are not permitted")


@pytest.mark.parametrize("assignment", ["vm.boot_s", "=90", ""])
def test_set_without_key_equals_value(assignment: str) -> None:
    assert_user_error(cli(*SHORT, "--set", assignment), 2, "--set", "is not KEY=VALUE")


def test_set_through_a_value_that_is_not_a_section() -> None:
    assert_user_error(cli(*SHORT, "--set", "sla_s=1", "--set", "sla_s.x=2"), 2,
                      "'sla_s' is not a section")


def test_json_and_csv_are_exclusive() -> None:
    assert_user_error(cli(*SHORT, "--json", "--csv"), 2, "--json and --csv are exclusive")


def test_no_trace_says_how_to_give_one() -> None:
    assert_user_error(cli("--json"), 2, "give a trace", "--trace")


def test_unknown_function_id_names_it() -> None:
    assert_user_error(cli(*SHORT, "--function", "fn-nope"), 1, str(SAMPLE), "'fn-nope'")


def test_bad_window_is_a_usage_error() -> None:
    assert_user_error(cli("--trace", str(SAMPLE), "--start-s", "600", "--end-s", "60"), 2,
                      "end_s (60.0) must be greater than start_s (600.0)")


def test_bad_policy_parameter_value_is_a_clear_error() -> None:
    assert_user_error(cli(*SHORT, "--policies", "libra", "--set", "policies.libra.period_s=-1"),
                      1, "period_s (-1) must be positive")


def test_bad_config_file_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("[vm\nboot_s = 1\n")

    assert_user_error(cli(*SHORT, "--config", str(config)), 1, f"{config}: cannot read config")


# --------------------------------------------------------------------------------------------
# Outputs, configs and policy lists that cannot work fail up front with a clear message
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("option", "name"), [("--plot", "no-such-dir/out.png"),
                                              ("--decisions", "no-such-dir/d.csv"),
                                              ("--plot", "out.txt")])
def test_unwritable_output_path_is_a_clear_error(tmp_path: Path, option: str, name: str) -> None:
    target = tmp_path / name

    assert_user_error(cli("--trace", str(SAMPLE), "--end-s", "60", "--policies", "libra",
                          option, str(target)), None, str(target))


@pytest.mark.parametrize("case", ["json-list", "toml-policies-int", "set-policies",
                                  "set-policies-libra"])
def test_config_that_is_not_a_table_is_a_clear_error(tmp_path: Path, case: str) -> None:
    json_list, toml_int = tmp_path / "list.json", tmp_path / "int.toml"
    json_list.write_text("[1, 2]")
    toml_int.write_text("policies = 3\n")
    extra = {
        "json-list": ("--config", str(json_list)),
        "toml-policies-int": ("--config", str(toml_int)),
        "set-policies": ("--set", "policies=3"),
        "set-policies-libra": ("--set", "policies.libra=5"),
    }[case]

    result = cli("--trace", str(SAMPLE), "--end-s", "60", "--policies", "libra", *extra)

    out = everything(result)
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), f"crashed with {result.exception!r}"
    assert "Error: " in out


def test_parameters_for_an_unknown_policy_are_rejected() -> None:
    result = cli(*SHORT, "--policies", "libra", "--set", "policies.lbra.period_s=600")

    assert result.exit_code != 0
    assert "lbra" in everything(result)


@pytest.mark.parametrize("policies", ["", ","])
def test_empty_policy_list_is_a_usage_error(policies: str) -> None:
    result = cli(*SHORT, "--policies", policies, "--csv")

    assert result.exit_code == 2


def test_meta_config_records_policy_parameters_and_reproduces_the_run(tmp_path: Path) -> None:
    args = (*BURST, "--policies", "libra")
    first = run_json(*args, "--set", "policies.libra.period_s=600")
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps(first["meta"]["config"]))

    again = run_json(*args, "--config", str(config))

    assert first["meta"]["config"].get("policies", {}).get("libra") == {"period_s": 600}
    assert again["results"] == first["results"]


# --------------------------------------------------------------------------------------------
# Real processes: `python -m simulator.cli` and the installed `libra-sim`
# --------------------------------------------------------------------------------------------


def test_python_m_json_run() -> None:
    proc = run_process(*SHORT, "--policies", "serverless,libra", "--json")

    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    doc = json.loads(proc.stdout)
    assert [row["policy"] for row in doc["results"]] == ["serverless", "libra"]
    assert doc["meta"]["source"] == str(SAMPLE)
    assert_accounts_add_up(doc)


def test_installed_entry_point_runs_from_any_folder(tmp_path: Path) -> None:
    exe = shutil.which("libra-sim")
    if exe is None:
        pytest.skip("the libra-sim console script is not on PATH (pip install -e . puts it there)")

    proc = run_process(*SHORT, "--policies", "vm-reactive,libra", "--csv", exe=exe, cwd=tmp_path)

    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [r["policy"] for r in rows] == ["vm-reactive", "libra"]
    expected = len(load_trace(SAMPLE, end_s=600))
    assert all(int(r["requests"]) == expected for r in rows)

    helped = run_process("--help", exe=exe, cwd=tmp_path)
    assert helped.returncode == 0
    assert "fetch-trace" in helped.stdout
    assert "make-trace" in helped.stdout


# --------------------------------------------------------------------------------------------
# fetch-trace and make-trace
# --------------------------------------------------------------------------------------------


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base_url, folder): a loopback http.server; base_url/NAME serves folder/data/NAME."""
    root = tmp_path / "served"
    (root / "data").mkdir(parents=True)
    with serve_folder(root) as base_url:
        yield f"{base_url}/data", root / "data"


@pytest.mark.shared
def test_fetch_trace_downloads_from_a_mirror_and_the_file_replays(
    shared_traces: Path, mirror: tuple[str, Path], tmp_path: Path
) -> None:
    base_url, served = mirror
    shutil.copyfile(shared_traces / LLM_CODE, served / LLM_CODE)  # a copy made at test time
    dest = tmp_path / "dest"

    proc = run_process("fetch-trace", "azure-llm-code", "--base-url", base_url,
                       "--dest", str(dest))

    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout.splitlines() == [str(dest / LLM_CODE)]
    assert (dest / LLM_CODE).read_bytes() == (served / LLM_CODE).read_bytes()
    assert sorted(p.name for p in dest.iterdir()) == [LLM_CODE]  # no temporary file left

    doc = run_json("--trace", str(dest / LLM_CODE), "--policies", "serverless,libra")
    assert doc["meta"]["requests"] == 8_819
    assert_accounts_add_up(doc)


def test_fetch_trace_from_a_mirror_without_the_file_is_a_clear_error(
    mirror: tuple[str, Path], tmp_path: Path
) -> None:
    base_url, _ = mirror

    assert_user_error(cli("fetch-trace", "azure-llm-conv", "--base-url", base_url,
                          "--dest", str(tmp_path / "dest")),
                      1, f"{base_url}/AzureLLMInferenceTrace_conv.csv: HTTP 404")
    assert list((tmp_path / "dest").iterdir()) == []


def test_fetch_trace_unknown_name_lists_the_valid_ones(tmp_path: Path) -> None:
    out = assert_user_error(cli("fetch-trace", "azure-2023", "--dest", str(tmp_path)), 2,
                            "unknown trace 'azure-2023'")
    for name in TRACES:
        assert name in out
    assert list(tmp_path.iterdir()) == []


def test_make_trace_rewrites_the_shipped_sample_byte_for_byte(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "x.csv"

    result = ok(cli("make-trace", "--out", str(out)))

    assert result.stdout.strip() == str(out)
    assert out.read_bytes() == SAMPLE.read_bytes()
    assert hashlib.sha256(out.read_bytes()).hexdigest() == SAMPLE_SHA256

    other = tmp_path / "seed8.csv"
    ok(cli("make-trace", "--out", str(other), "--seed", "8"))
    assert other.read_bytes() != SAMPLE.read_bytes()


def test_csv_and_json_agree_on_a_stated_slo() -> None:
    args = (*SHORT, "--policies", "libra,vm-static", "--slo", "0.999")
    rows = list(csv.DictReader(io.StringIO(ok(cli(*args, "--csv")).stdout)))
    results = json.loads(ok(cli(*args, "--json")).stdout)["results"]
    assert [(r["slo"], r["slo_met"]) for r in rows] == \
        [(str(r["slo"]), str(r["slo_met"])) for r in results]
    assert {r["slo"] for r in results} == {0.999}
    assert all(isinstance(r["slo_met"], bool) for r in results)
