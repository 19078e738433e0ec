"""Every console script follows the same conventions: `-h`/`--help`, `--version`, one library.

Each is run as a real process (`python -m <module>`, what the console script calls), so a
module that crashes on import, or an option missing from one command, fails here.
"""

from __future__ import annotations

import ast
import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS: dict[str, str] = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
    "scripts"]


def run(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)


def test_the_six_commands_are_console_scripts() -> None:
    assert set(SCRIPTS) == {"libra-sim", "libra-serve", "libra-load", "libra-model",
                            "libra-worker", "libra-calibrate"}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_every_command_answers_help(script: str, flag: str) -> None:
    done = run(SCRIPTS[script].split(":")[0], flag)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: ")
    assert "-h, --help" in done.stdout
    assert "--version" in done.stdout


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_every_command_names_itself_and_the_installed_version(script: str) -> None:
    done = run(SCRIPTS[script].split(":")[0], "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{script}, version {importlib.metadata.version('libra-serve')}"


@pytest.mark.parametrize("subcommand", [("keys", "new"), ("keys",)])
def test_subcommands_inherit_the_short_help(subcommand: tuple[str, ...]) -> None:
    done = run("libra.serving.cli", *subcommand, "-h")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: ")


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_one_cli_library_click(script: str) -> None:
    module = SCRIPTS[script].split(":")[0]
    tree = ast.parse((REPO / Path(*module.split("."))).with_suffix(".py").read_text())
    imported = {a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for a in node.names}
    imported |= {node.module for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert "click" in imported
    assert "argparse" not in imported


def test_libra_model_help_and_its_message_without_torch() -> None:
    """A serving install has no torch: --help still works, and a command that needs torch
    says which extra brings it instead of raising ModuleNotFoundError from deep inside."""
    hide = ("torch", "onnx", "onnxscript", "transformers")
    prelude = f"import sys; sys.modules.update(dict.fromkeys({hide!r}))\n"
    code = prelude + "from libra.training.cli import main; main([{args}], 'libra-model')"

    def invoke(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", code.format(args=", ".join(map(repr, args)))],
                              cwd=REPO, capture_output=True, text=True, timeout=120, check=False)

    for args in (("-h",), ("build", "-h"), ("--version",)):
        done = invoke(*args)
        assert done.returncode == 0, (args, done.stderr)
    done = invoke("build", "--out", "/nonexistent/never-written")
    assert done.returncode == 1
    assert "libra-model build needs torch, onnx, onnxscript, transformers" in done.stderr
    assert "pip install 'libra-serve[train,cpu]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_libra_sim_plot_without_matplotlib_names_the_extra() -> None:
    code = ("import sys; sys.modules.update(dict.fromkeys(['matplotlib', "
            "'matplotlib.backend_bases']))\nfrom simulator.cli import main\n"
            "main(['--trace', 'traces/azure.csv', '--plot', 'sim.png'], 'libra-sim')")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 2
    assert "--plot needs matplotlib: pip install 'libra-serve[plot]'" in done.stderr
