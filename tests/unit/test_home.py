"""Where models and logs go by default: never inside site-packages (libra.runtime.home)."""

from __future__ import annotations

from pathlib import Path

import pytest

from libra.runtime import home
from libra.serving.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def test_libra_home_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LIBRA_HOME", str(tmp_path))
    assert home.default_model_dir() == tmp_path / "onnx"
    assert home.default_log_dir() == tmp_path / "logs"
    settings = Settings.from_env()
    assert (settings.model_dir, settings.log_dir) == (tmp_path / "onnx", tmp_path / "logs")


def test_a_checkout_keeps_its_own_artifacts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIBRA_HOME", raising=False)
    assert home.source_tree() == REPO
    assert home.default_model_dir() == REPO / "artifacts" / "onnx"


def test_an_installed_package_writes_under_the_current_directory(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    (site / "libra").mkdir(parents=True)
    (site / "pyproject.toml").write_text("")  # even a stray one does not make it a checkout
    monkeypatch.setattr(home, "_PACKAGE_PARENT", site)
    monkeypatch.delenv("LIBRA_HOME", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert home.source_tree() is None
    assert home.default_model_dir() == work / "artifacts" / "onnx"
    assert Settings.from_env().log_dir == work / "artifacts" / "logs"
    assert site not in Settings.from_env().model_dir.parents


def test_model_dir_set_explicitly_beats_the_home(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    monkeypatch.setenv("LIBRA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LIBRA_MODEL_DIR", str(tmp_path / "models"))
    assert Settings.from_env().model_dir == tmp_path / "models"
