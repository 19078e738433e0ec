"""One worker as a child process: start it, learn its port, stop it with a drain.

The local provisioner's unit of work, and what tests use to run real workers. The child prints
`LIBRA_WORKER_READY port=... id=...` once its model is loaded and warm (`handlers.worker`); its
other output goes to a log file so a full pipe never blocks it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from libra.serving.children import (
    WORKER_DRAINED_LINE,
    WORKER_DRAINING_LINE,
    WORKER_READY_LINE,
    spawn,
)

_READY = re.compile(rf"{WORKER_READY_LINE} port=(\d+) id=(\S+)")


class WorkerStartError(RuntimeError):
    """The worker exited or stayed silent before it was ready; the message quotes its log."""


class WorkerProcess:
    """A `handlers.worker` child; `url` is set once it is ready."""

    def __init__(self, model: Path, *, log_dir: Path, extra_args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None, name: str = "worker") -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}-{os.getpid()}-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("ab")  # O_APPEND: the child writes stderr here too
        self.started_s = time.monotonic()
        self.proc = spawn(
            [sys.executable, "-m", "handlers.worker", "--model", str(model), "--port", "0",
             *extra_args],
            stdout=subprocess.PIPE, stderr=self._log, env={**os.environ, **(env or {})},
            cwd=Path(__file__).resolve().parents[3])
        self.url: str | None = None
        self.worker_id: str | None = None
        self.ready_s: float | None = None
        self.noticed = False  # it got a spot interruption notice and stopped taking work
        self.drained = False  # ... and then finished its requests in flight
        self._ready = threading.Event()
        threading.Thread(target=self._read_stdout, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace")
            match = _READY.search(line)
            if match and self.url is None:
                self.url = f"http://127.0.0.1:{match.group(1)}"
                self.worker_id = match.group(2)
                self.ready_s = time.monotonic()
                self._ready.set()
            elif line.startswith(WORKER_DRAINING_LINE):
                self.noticed = True
            elif line.startswith(WORKER_DRAINED_LINE):
                self.drained = True
            self._log.write(raw)
            self._log.flush()
        self._ready.set()  # exited: wake anyone waiting

    @property
    def ready(self) -> bool:
        return self.url is not None and self.proc.poll() is None

    def wait_ready(self, timeout_s: float = 120.0) -> str:
        """The worker's URL once ready; `WorkerStartError` if it dies or times out first."""
        if not self._ready.wait(timeout_s) or self.url is None:
            self.kill()
            raise WorkerStartError(f"worker not ready after {timeout_s:.0f} s "
                                   f"(exit code {self.proc.poll()}); log {self.log_path}:\n"
                                   f"{self.log_tail()}")
        return self.url

    def log_tail(self, n_bytes: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_bytes()[-n_bytes:].decode(errors="replace")
        return ""

    def interrupt(self) -> None:
        """SIGUSR1: a spot interruption notice, as the instance metadata would give one on EC2
        (the worker drains and stays up; `noticed`, then `drained`, turn true)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)

    def drain(self) -> None:
        """SIGTERM: the worker refuses new requests, finishes those in flight, exits."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float = 30.0) -> int | None:
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def close(self) -> None:
        self.kill()
        self._log.close()
