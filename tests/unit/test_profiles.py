"""Profiles: every figure of the platform has a source; the simulator's defaults are the `aws`
profile, so the two cannot drift; a written profile reads back equal; bad files are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from libra.core.platform import Platform
from libra.profiles import ProfileError, dump_profile, load_profile, profile_names
from simulator.config import SimConfig


def test_shipped_profiles_load_and_every_figure_has_a_source() -> None:
    assert {"aws", "local"} <= set(profile_names())
    for name in profile_names():
        profile = load_profile(name)
        for path, _, figure in profile.figure_table():
            assert figure.how.strip(), path
            if figure.source == "measured":
                assert figure.date, f"{name}: {path} needs the date it was measured"
                assert figure.spread, f"{name}: {path} needs the spread it was measured with"


def test_the_simulators_defaults_are_the_aws_profile() -> None:
    aws = load_profile("aws").platform
    sim = SimConfig()
    assert Platform.model_validate(sim.model_dump(include=set(Platform.model_fields))) == aws


def test_a_profile_without_a_source_for_a_figure_is_refused(tmp_path: Path) -> None:
    good = dump_profile(load_profile("local"))
    bad = tmp_path / "bad.toml"
    bad.write_text(good.replace('[figures."vm.boot_s"]', '[figures."vm.boot_z"]'))
    with pytest.raises(ProfileError, match=r"no source for vm\.boot_s"):
        load_profile(bad)


def test_a_dumped_profile_reads_back_equal(tmp_path: Path) -> None:
    for name in profile_names():
        profile = load_profile(name)
        path = tmp_path / f"{name}.toml"
        path.write_text(dump_profile(profile))
        again = load_profile(path)
        assert again.platform == profile.platform
        assert again.figures == profile.figures


def test_unknown_profile_lists_the_valid_ones() -> None:
    with pytest.raises(ProfileError, match="valid profiles: aws, local"):
        load_profile("gpu-cluster")
