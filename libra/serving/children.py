"""Child processes the platform starts (VM workers, local serverless instances), started safely
and tied to the life of their parent.

Why not `asyncio.create_subprocess_exec`: under uvloop (what `uvicorn[standard]` runs) it forks
through libuv and runs Python's after-fork hooks in the child before `exec`. In a process that has
decoded video, those hooks free PyAV's per-thread reformatter, whose `pthread_cond_destroy` blocks
forever in a child that has none of the parent's threads: the child never execs and the event
loop waits on it for good (the quick start's freeze). `subprocess.Popen` goes through CPython's
`_posixsubprocess`, which uses `vfork` + `exec` on Linux and runs no Python code and no fork
handlers in the child, so what the parent has decoded cannot matter. `spawn` is that path, and
`AsyncChild` gives the event loop pipes to the child without forking from the loop.

Every child also dies with its parent: `die_with_parent()`, called first thing in each child's
`main`, asks the kernel for SIGKILL when the parent goes (`PR_SET_PDEATHSIG`) and watches
`getppid()` as a second line, so a SIGKILLed server leaves no worker holding its port and no
instance running. The kernel sends the signal when the *thread* that spawned the child ends, so
the platform spawns only from threads that live as long as it does (the event loop thread and the
controller's own executor thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

PARENT_PID_ENV = "LIBRA_PARENT_PID"
# The line each kind of child prints on stdout once it can serve (its parent waits for it).
WORKER_READY_LINE = "LIBRA_WORKER_READY"
INSTANCE_READY_LINE = "LIBRA_INSTANCE_READY"
# A worker's lines after a spot interruption notice: it stopped taking work, then it finished
# what it had and left the registry (the local provisioner reads both).
WORKER_DRAINING_LINE = "LIBRA_WORKER_DRAINING"
WORKER_DRAINED_LINE = "LIBRA_WORKER_DRAINED"
_PR_SET_PDEATHSIG = 1


def spawn(argv: Sequence[str], *, env: Mapping[str, str] | None = None,
          cwd: Path | str | None = None, stdin: int | None = None, stdout: int | object = None,
          stderr: int | object = None) -> subprocess.Popen[bytes]:
    """Start `argv` by vfork + exec (see module docs), telling it who its parent is."""
    child_env = {**(os.environ if env is None else env), PARENT_PID_ENV: str(os.getpid())}
    return subprocess.Popen(list(argv), env=child_env, cwd=cwd, stdin=stdin,
                            stdout=stdout, stderr=stderr, close_fds=True)  # type: ignore[arg-type]


def die_with_parent(poll_s: float = 0.5) -> None:
    """In a child: exit when the process that spawned it exits (see module docs).

    A no-op where the parent did not set `LIBRA_PARENT_PID` (a worker started by hand or by a
    container runtime has nobody to die with)."""
    expected = os.environ.get(PARENT_PID_ENV)
    if not expected:
        return
    parent = int(expected)
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


class AsyncChild:
    """A spawned child with asyncio streams on its stdin, stdout and stderr.

    The process is started by `spawn` (no fork on the event loop); the pipes are handed to the
    loop afterwards. `wait` polls `Popen.poll` because the loop's own child watcher only knows
    the processes it forked itself."""

    def __init__(self, popen: subprocess.Popen[bytes], stdin: asyncio.StreamWriter,
                 stdout: asyncio.StreamReader, stderr: asyncio.StreamReader) -> None:
        self.popen = popen
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr

    @classmethod
    async def start(cls, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
                    cwd: Path | str | None = None, limit: int = 2**16) -> AsyncChild:
        popen = spawn(argv, env=env, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE)
        loop = asyncio.get_running_loop()
        try:
            readers = []
            for pipe in (popen.stdout, popen.stderr):
                reader = asyncio.StreamReader(limit=limit)
                await loop.connect_read_pipe(functools.partial(asyncio.StreamReaderProtocol,
                                                               reader), pipe)
                readers.append(reader)
            # FlowControlMixin is what asyncio's own subprocess streams use for drain()
            transport, protocol = await loop.connect_write_pipe(
                asyncio.streams.FlowControlMixin, popen.stdin)
            writer = asyncio.StreamWriter(transport, protocol, None, loop)
        except BaseException:
            popen.kill()
            popen.wait()
            raise
        return cls(popen, writer, readers[0], readers[1])

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            if self.popen.poll() is None:
                self.popen.kill()

    async def wait(self, poll_s: float = 0.01) -> int:
        while (code := self.popen.poll()) is None:
            await asyncio.sleep(poll_s)
        with contextlib.suppress(Exception):
            self.stdin.close()
        return code
