"""Shared fixtures: where ../shared lives, and a skip with a reason where it does not."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_dir() -> Path:
    return Path(os.environ.get("LIBRA_SHARED_DIR", REPO_ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The project's shared data folder, read in place; tests needing it skip where it is absent."""
    path = _shared_dir()
    if not (path / "traces").is_dir():
        pytest.skip(f"needs the shared data folder {path} (real traces), absent in this clone")
    return path


@pytest.fixture(scope="session")
def shared_traces(shared_dir: Path) -> Path:
    return shared_dir / "traces"


@pytest.fixture(scope="session")
def built_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """`libra-model build` of the bundled weights into a temporary folder, once per session:
    the real model every serving test runs (needs the `train` extra for the export)."""
    import json

    pytest.importorskip("torch", reason="building the ONNX files needs the `train` extra")
    pytest.importorskip("onnxscript", reason="building the ONNX files needs the `train` extra")
    from click.testing import CliRunner

    from libra.training.build import BUNDLE_DIR
    from libra.training.cli import main

    if not (BUNDLE_DIR / "model.pt").is_file():
        pytest.skip(f"no bundled weights in {BUNDLE_DIR}")
    out = tmp_path_factory.mktemp("onnx")
    result = CliRunner().invoke(main, ["build", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "manifest.json").read_text())


class RedisServer:
    """A real `redis-server` on a free loopback port, owned by one test, which may hang it
    (`pause`: SIGSTOP, `resume`: SIGCONT), stop it, and `restart` it on the same port (empty:
    no persistence, as after a real restart that lost its keys)."""

    def __init__(self, tmp: Path) -> None:
        import shutil
        import socket

        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("needs redis-server (apt-get install redis-server; .ci/run does)")
        self.binary = binary
        self.tmp = tmp
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.start()

    def start(self) -> None:
        import subprocess
        import time

        import redis

        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.tmp)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url, socket_timeout=1).ping()
                break
            except (redis.ConnectionError, redis.TimeoutError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise
                time.sleep(0.02)

    def pause(self) -> None:
        """Hang it: connections are still accepted by the kernel, nothing is answered."""
        import signal

        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        import signal

        self.proc.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """Stop it and start an empty one on the same port."""
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.resume()  # a stopped process would not act on SIGTERM
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def data_dir(shared_dir: Path) -> Path:
    """The labeled emotion data in ../shared/data, read in place."""
    path = shared_dir / "data"
    if not (path / "meld").is_dir():
        pytest.skip(f"needs the labeled data in {path} (see SOURCES.md there)")
    return path
