"""`libra-serve` settings: the platform from a profile, then the config file, the environment and
the options, in that order; the same TOML `libra-sim --config` reads; unknown names refused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from libra.core.platform import Platform
from libra.profiles import dump_profile, load_profile
from libra.serving import settings as settings_module
from libra.serving.cli import main
from libra.serving.settings import (
    OTHER_LIBRA_ENV,
    SIM_REPLAY_KEYS,
    Settings,
    SettingsError,
    env_names,
)
from simulator.cli import load_config
from simulator.config import SimConfig

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
LOCAL = load_profile("local").platform
AWS = load_profile("aws").platform


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No LIBRA_* setting from the machine running the tests."""
    import os

    for key in [k for k in os.environ if k.upper().startswith("LIBRA_")]:
        if key.upper() not in OTHER_LIBRA_ENV:
            monkeypatch.delenv(key)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- where the platform comes from -----------------------------------------------------------

def test_the_platform_defaults_are_the_local_profile() -> None:
    s = Settings()
    assert s.profile == "local"
    assert s.platform == LOCAL
    assert s.vm.capacity_rps == pytest.approx(LOCAL.vm.concurrency
                                              / LOCAL.vm.service_time_mean_s)


def test_the_aws_provisioner_defaults_to_the_aws_profile() -> None:
    s = Settings(provisioner="aws", asg_name="workers")
    assert (s.profile, s.platform) == ("aws", AWS)


def test_a_profile_file_written_by_calibrate_is_a_profile(tmp_path: Path) -> None:
    mine = load_profile("local").model_copy(update={"platform": LOCAL.model_copy(
        update={"vm": LOCAL.vm.model_copy(update={"boot_s": 7.0})})})
    path = write(tmp_path / "mine.toml", dump_profile(mine))
    assert Settings(profile=str(path)).vm.boot_s == 7.0


def test_an_unknown_profile_lists_the_valid_ones() -> None:
    with pytest.raises(SettingsError, match=r"unknown profile 'nope'.*local"):
        Settings(profile="nope")


def test_capacity_is_derived_never_set() -> None:
    assert "vm_capacity_rps" not in Settings.model_fields
    with pytest.raises(ValidationError, match="vm_capacity_rps"):
        Settings(vm_capacity_rps=40.0)
    s = Settings(vm={"concurrency": 8, "service_time_mean_s": 0.1})
    assert s.vm.capacity_rps == pytest.approx(80.0)


def test_the_platforms_own_checks_apply() -> None:
    with pytest.raises(ValidationError, match=r"sla_margin_s \(1.0\) must be < sla_s"):
        Settings(sla_s=1.0, sla_margin_s=1.0)


# --- precedence: profile < file < environment < options --------------------------------------

def test_each_layer_overrides_the_one_below(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    config = write(tmp_path / "platform.toml", """
sla_s = 0.8
max_vms = 3
[vm]
boot_s = 40.0
concurrency = 4
[serverless]
keep_alive_s = 30.0
""")
    monkeypatch.setenv("LIBRA_CONFIG_FILE", str(config))
    s = Settings()
    assert (s.sla_s, s.max_vms, s.vm.boot_s, s.vm.concurrency) == (0.8, 3, 40.0, 4)
    # a field the file does not set keeps the profile's, inside a table the file does set
    assert s.vm.service_time_mean_s == LOCAL.vm.service_time_mean_s
    assert s.serverless.keep_alive_s == 30.0
    assert s.serverless.cold_start_s == LOCAL.serverless.cold_start_s

    monkeypatch.setenv("LIBRA_VM__BOOT_S", "90")
    monkeypatch.setenv("LIBRA_MAX_VMS", "2")
    s = Settings()
    assert (s.vm.boot_s, s.max_vms, s.vm.concurrency) == (90.0, 2, 4)

    s = Settings(vm={"boot_s": 5.0}, max_vms=1)  # what libra-serve's options become
    assert (s.vm.boot_s, s.max_vms, s.vm.concurrency, s.sla_s) == (5.0, 1, 4, 0.8)


def test_the_options_beat_the_environment_through_the_cli(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    from libra.serving.cli import load_settings

    monkeypatch.setenv("LIBRA_VM__BOOT_S", "90")
    monkeypatch.setenv("LIBRA_SERVERLESS__KEEP_ALIVE_S", "9")
    s = load_settings({"vm__boot_s": 12.0, "serverless__concurrency_limit": 2,
                       "serverless__keep_alive_s": None, "sla_s": 0.5})
    assert (s.vm.boot_s, s.serverless.concurrency_limit, s.serverless.keep_alive_s, s.sla_s) \
        == (12.0, 2, 9.0, 0.5)


def test_policy_params_as_json_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIBRA_POLICY", "vm-static")
    monkeypatch.setenv("LIBRA_POLICY_PARAMS", '{"fleet_size": 3}')
    s = Settings()
    assert s.chosen_policy_params == {"fleet_size": 3}


# --- the same TOML libra-sim --config reads ---------------------------------------------------

SIM_CONFIG = """
sla_s = 0.5
sla_margin_s = 0.05
seed = 4
history_s = 600
[vm]
boot_s = 60.0
concurrency = 16
service_time_mean_s = 0.08
queue_timeout_s = 3.0
[serverless]
keep_alive_s = 45.0
concurrency_limit = 4
[policies.libra]
period_s = 120.0
[policies.vm-static]
fleet_size = 2
"""


def test_a_libra_sim_config_describes_the_same_platform_to_both(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path / "shared.toml", SIM_CONFIG)
    sim, sim_params = load_config(path, (), profile=load_profile("local"))
    live = Settings(config_file=path)
    assert live.platform == Platform.model_validate(
        {k: v for k, v in sim.model_dump().items() if k in Platform.model_fields})
    assert live.chosen_policy_params == sim_params["libra"] == {"period_s": 120.0}
    assert Settings(config_file=path, policy="vm-static").chosen_policy_params == {
        "fleet_size": 2}
    assert "seed, history_s" in caplog.text or "history_s, seed" in caplog.text


def test_the_sim_replay_keys_are_the_simconfig_fields_beyond_the_platform() -> None:
    replay = set(SimConfig.model_fields) - set(Platform.model_fields) - set(Settings.model_fields)
    assert replay == SIM_REPLAY_KEYS


def test_policy_params_from_options_override_the_files_table(tmp_path: Path) -> None:
    path = write(tmp_path / "shared.toml", SIM_CONFIG)
    s = Settings(config_file=path, policy_params={"period_s": 60.0, "k": 2})
    assert s.chosen_policy_params == {"period_s": 60.0, "k": 2}


# --- unknown names are errors that name them --------------------------------------------------

def test_an_unknown_environment_variable_is_named_with_the_likely_setting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIBRA_MAX_VMZ", "3")
    with pytest.raises(SettingsError, match=r"LIBRA_MAX_VMZ is not a libra-serve setting "
                                            r"\(did you mean LIBRA_MAX_VMS\?\)"):
        Settings()


def test_a_moved_environment_variable_says_where_it_went(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.setenv("LIBRA_VM_SERVICE_S", "0.05")
    monkeypatch.setenv("LIBRA_VM_CAPACITY_RPS", "40")
    with pytest.raises(SettingsError) as info:
        Settings()
    assert "LIBRA_VM_SERVICE_S: now LIBRA_VM__SERVICE_TIME_MEAN_S" in str(info.value)
    assert "LIBRA_VM_CAPACITY_RPS: removed: a VM's capacity follows from" in str(info.value)


def test_an_unknown_nested_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIBRA_VM__BOOTS", "3")
    with pytest.raises(SettingsError, match=r"LIBRA_VM__BOOTS .*LIBRA_VM__BOOT_S"):
        Settings()


def test_an_unknown_config_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="max_vmz"):
        Settings(config_file=write(tmp_path / "c.toml", "max_vmz = 3\n"))
    with pytest.raises(ValidationError, match=r"vm\.boots"):
        Settings(config_file=write(tmp_path / "d.toml", "[vm]\nboots = 3\n"))
    with pytest.raises(SettingsError, match="vm_capacity_rps: removed"):
        Settings(config_file=write(tmp_path / "e.toml", "vm_capacity_rps = 3\n"))
    with pytest.raises(ValidationError, match="unknown policy 'nope'"):
        Settings(config_file=write(tmp_path / "f.toml", "[policies.nope]\nk = 1\n"))


def test_an_unreadable_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"missing\.toml: cannot read config"):
        Settings(config_file=tmp_path / "missing.toml")


ENV_READ = re.compile(r"""(?:environ(?:\.get)?\(\s*|environ\[\s*|getenv\(\s*|envvar=|_ENV\s*=\s*)
                          ["'](LIBRA_[A-Z0-9_]+)["']""", re.VERBOSE)


def test_the_other_libra_variables_are_those_the_code_reads() -> None:
    """Every LIBRA_* variable some part of Libra reads is a setting or listed as another's,
    and every listed one is read somewhere: the unknown-variable check stays honest."""
    read = set()
    for folder in ("libra", "handlers", "simulator", "bench", "tests"):
        for path in (REPO / folder).rglob("*.py"):
            read |= set(ENV_READ.findall(path.read_text()))
    assert read, "the scan found nothing: it is broken"
    assert read - env_names() - OTHER_LIBRA_ENV == set()
    assert OTHER_LIBRA_ENV - read == set()


def test_env_names_cover_nested_fields() -> None:
    names = env_names()
    assert {"LIBRA_VM__BOOT_S", "LIBRA_SERVERLESS__KEEP_ALIVE_S", "LIBRA_SLA_S",
            "LIBRA_POLICY_PARAMS", "LIBRA_PROFILE", "LIBRA_CONFIG_FILE"} <= names
    assert not hasattr(settings_module, "LAMBDA_GB_S_USD")  # prices live in the platform


# --- libra-serve's options ------------------------------------------------------------------

def serve(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--model-dir", "/nonexistent/model", *args])
    return result.exit_code, result.output


def test_vm_capacity_rps_is_gone_and_says_what_replaces_it() -> None:
    code, out = serve("--vm-capacity-rps", "40")
    assert code == 2
    assert "--vm-concurrency / --vm-service-time-s" in out


def test_a_bad_setting_is_a_usage_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIBRA_MAX_VMZ", "3")
    code, out = serve()
    assert code == 2
    assert "LIBRA_MAX_VMZ" in out
    monkeypatch.delenv("LIBRA_MAX_VMZ")
    code, out = serve("--sla-s", "0.01")
    assert code == 2
    assert "sla_margin_s (0.1) must be < sla_s (0.01)" in out  # the platform's own check


# --- libra-sim replays on the same profile ----------------------------------------------------

def test_libra_sim_replays_on_the_profile_libra_serve_runs_on(tmp_path: Path) -> None:
    import json

    from simulator.cli import main as sim_main

    trace = write(tmp_path / "t.csv", "timestamp_s\n0.1\n0.5\n1.2\n")
    config = write(tmp_path / "c.toml", "[vm]\nboot_s = 9.0\n")
    result = CliRunner().invoke(sim_main, ["--trace", str(trace), "--profile", "local",
                                           "--config", str(config), "--policies", "serverless",
                                           "--json", "--workers", "1"])
    assert result.exit_code == 0, result.output
    replayed = json.loads(result.output)["meta"]["config"]
    served = Settings(config_file=config).platform
    assert Platform.model_validate({k: replayed[k] for k in Platform.model_fields}) == served
    assert served.vm.boot_s == 9.0
    result = CliRunner().invoke(sim_main, ["--trace", str(trace), "--profile", "nope"])
    assert result.exit_code == 2
    assert "unknown profile 'nope'" in result.output
