"""Where Libra keeps what it makes: the ONNX files, logs, training runs and feature caches.

Why not beside the code: installed from a wheel, the code lives in site-packages, which is not
the user's to write (read-only in images, shared by virtual environments, wiped by an upgrade),
so a model built there would vanish with the next `pip install` and a log dir there would fail
under a non-root user. The rule, in order:

1. `$LIBRA_HOME`, when set (images and services set it, or the finer `LIBRA_MODEL_DIR`,
   `LIBRA_LOG_DIR`);
2. the checkout's own `artifacts/`, when the package runs from a source tree (an editable install,
   `pip install -e .`): what the README's commands and the tests have always used;
3. otherwise `./artifacts` of the current directory, as `git` or `terraform` keep their work
   where they are run.

Read at call time, not import time, so a process that changes directory or sets the variable
first gets what it asked for. Standard library only: every install imports it.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "LIBRA_HOME"
_PACKAGE_PARENT = Path(__file__).resolve().parents[2]


def source_tree() -> Path | None:
    """The checkout this package runs from, or None when it was installed (site-packages)."""
    if {"site-packages", "dist-packages"} & set(_PACKAGE_PARENT.parts):
        return None
    if (_PACKAGE_PARENT / "pyproject.toml").is_file() and (_PACKAGE_PARENT / "libra").is_dir():
        return _PACKAGE_PARENT
    return None


def artifacts_dir() -> Path:
    """The folder under which models (`onnx/`), logs (`logs/`), runs and caches go."""
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home).expanduser()
    tree = source_tree()
    return (tree if tree is not None else Path.cwd()) / "artifacts"


def default_model_dir() -> Path:
    """Where `libra-model build` writes and `libra-serve` / `libra-worker` read the ONNX files."""
    return artifacts_dir() / "onnx"


def default_log_dir() -> Path:
    """Where the local workers' and serverless instances' logs go."""
    return artifacts_dir() / "logs"
