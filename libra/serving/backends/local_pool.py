"""The local serverless pool: Lambda's instance model with real processes on this machine.

Each instance is a `handlers.lambda_local` process running the real Lambda handler. An invocation
takes an idle warm instance if there is one; otherwise, below `max_concurrency`, it starts a new
instance and pays its real cold start (process start + imports + model load); at the cap it waits
for an instance to free up, at most `acquire_timeout_s` (then `ServerlessError("throttled")`,
as Lambda throttles). An instance serves one event at a time, stays warm `keep_alive_s` after its
last event, and is then reaped. States follow `libra.core.lifecycle.FunctionState`.

`keep_warm(n)` is what a policy's `Decision.serverless_warm` asks for, done as on Lambda: start
missing instances ahead of demand (a real cold start nobody waits for) and ping idle members of
the warm set before half their keep-alive has passed, with the handler's no-inference warm-up
event, so the next burst finds them warm. Pings and warm starts are billed like invocations.

Keep-alive accounting (when an instance was last used, when it expires, when a warm-set member
needs its ping) reads the `clock` given to the pool, so tests drive it without sleeping; waiting
for a free instance is real waiting and uses the real monotonic clock. An invocation waits for an
instance at most its `timeout_s` (what is left of the request's deadline) or `acquire_timeout_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from libra.core.lifecycle import FunctionState
from libra.serving.backends.serverless import InvokeResult, ServerlessError
from libra.serving.children import INSTANCE_READY_LINE, AsyncChild
from libra.serving.logs import RateLimitedLog

log = logging.getLogger(__name__)
instance_log = logging.getLogger("libra.serverless.instance")
failures = RateLimitedLog(log)

REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class PoolConfig:
    """Limits of the local pool; units in the names."""

    model_path: Path
    max_concurrency: int = 4
    keep_alive_s: float = 60.0
    threads_per_instance: int = 1
    start_timeout_s: float = 120.0
    acquire_timeout_s: float = 30.0
    invoke_timeout_s: float = 30.0
    reap_every_s: float = 1.0

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency ({self.max_concurrency}) must be at least 1")
        if self.keep_alive_s < 0:
            raise ValueError(f"keep_alive_s ({self.keep_alive_s}) must not be negative")


@dataclass(eq=False)
class Instance:
    proc: AsyncChild
    state: FunctionState = FunctionState.COLD
    last_used_s: float = 0.0
    init_ms: float = 0.0
    served: int = 0
    stderr_task: asyncio.Task[None] | None = None


class LocalServerlessPool:
    """`ServerlessDriver` over local instance processes (see module docs)."""

    name = "local"

    def __init__(self, config: PoolConfig,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.instances: list[Instance] = []
        self._starting = 0
        self._in_flight = 0
        self._cold_starts = 0
        self._freed: asyncio.Condition | None = None
        self._reaper: asyncio.Task[None] | None = None
        self.reaped = 0
        self.warm_starts = 0
        self.warm_pings = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def capacity(self) -> int:
        return self.config.max_concurrency

    @property
    def cold_starts(self) -> int:
        return self._cold_starts

    @property
    def instances_alive(self) -> int:
        """Instances started and not reaped, busy or idle (what a policy sees)."""
        return sum(i.proc.returncode is None for i in self.instances)

    @property
    def warm_instances(self) -> int:
        return sum(i.state in (FunctionState.WARM, FunctionState.IDLE) for i in self.instances)

    def _condition(self) -> asyncio.Condition:
        if self._freed is None:
            self._freed = asyncio.Condition()
            self._reaper = asyncio.ensure_future(self._reap_loop())
        return self._freed

    async def invoke(self, event: dict[str, Any], *, timeout_s: float | None = None
                     ) -> InvokeResult:
        started = time.perf_counter()
        self._in_flight += 1
        try:
            wait_s = self.config.acquire_timeout_s
            instance, cold = await self._acquire(wait_s if timeout_s is None
                                                 else min(wait_s, timeout_s))
            try:
                answer = await self._call(instance, event)
            finally:
                await self._release(instance)
        finally:
            self._in_flight -= 1
        return InvokeResult(answer, cold, time.perf_counter() - started)

    async def _acquire(self, timeout_s: float) -> tuple[Instance, bool]:
        freed = self._condition()
        deadline = time.monotonic() + timeout_s
        async with freed:
            while True:
                for dead in [i for i in self.instances if i.proc.returncode is not None]:
                    dead.state = FunctionState.REAPED  # crashed or killed while idle
                    self.instances.remove(dead)
                    await self._stop(dead)
                for inst in self.instances:
                    if inst.state == FunctionState.IDLE:
                        inst.state = FunctionState.WARM
                        return inst, False
                if len(self.instances) + self._starting < self.config.max_concurrency:
                    self._starting += 1
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ServerlessError("throttled", f"all {self.config.max_concurrency} local "
                                          f"instances busy for {timeout_s:.3f} s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(freed.wait(), timeout=left)
        try:
            instance = await self._start()
        finally:
            async with freed:
                self._starting -= 1
        self._cold_starts += 1
        return instance, True

    async def keep_warm(self, target: int) -> list[float]:
        """Keep `target` instances (busy or idle) alive; returns the billed seconds of the
        warm starts and pings it made (see module docs)."""
        target = min(target, self.config.max_concurrency)
        if target <= 0:
            return []
        freed = self._condition()
        now = self.clock()
        async with freed:
            alive = [i for i in self.instances if i.proc.returncode is None]
            busy = sum(i.state != FunctionState.IDLE for i in alive)
            idle = sorted((i for i in alive if i.state == FunctionState.IDLE),
                          key=lambda i: i.last_used_s, reverse=True)
            # the most recently used idle instances make up the warm set; older ones may expire
            members = idle[:max(0, target - busy - self._starting)]
            stale = [i for i in members if now - i.last_used_s > self.config.keep_alive_s / 2]
            for inst in stale:
                inst.state = FunctionState.WARM  # claimed for the ping
            missing = max(0, target - len(alive) - self._starting)
            self._starting += missing
        results = await asyncio.gather(*(self._ping(i) for i in stale),
                                       *(self._warm_start() for _ in range(missing)),
                                       return_exceptions=True)
        errors = [r for r in results if isinstance(r, Exception)]
        if errors:
            try:
                raise errors[0]
            except Exception:  # a failed warm-up only means a cold start later; logged
                failures.failure("keep-warm", "%d of %d warm starts and pings failed",
                                 len(errors), len(results), level=logging.WARNING)
        return [r for r in results if isinstance(r, float)]

    async def _ping(self, instance: Instance) -> float:
        try:
            answer = await self._call(instance, {"warmup": True})
        finally:
            await self._release(instance)
        self.warm_pings += 1
        return float(answer.get("infer_ms", 0.0)) / 1000

    async def _warm_start(self) -> float:
        """A cold start ahead of demand; the slot was reserved in `_starting` by the caller."""
        try:
            instance = await self._start()
        finally:
            async with self._condition():
                self._starting -= 1
        await self._release(instance)
        self.warm_starts += 1
        return instance.init_ms / 1000

    async def _start(self) -> Instance:
        """A new instance: process start and INIT (the model load) is the cold start."""
        env = {**os.environ, "LIBRA_MODEL_PATH": str(self.config.model_path),
               "LIBRA_ORT_THREADS": str(self.config.threads_per_instance)}
        proc = await AsyncChild.start([sys.executable, "-m", "handlers.lambda_local"],
                                      cwd=str(REPO_ROOT), env=env, limit=16 * 1024 * 1024)
        instance = Instance(proc, last_used_s=self.clock())
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), self.config.start_timeout_s)
        except TimeoutError:
            line = b""
        text = line.decode(errors="replace")
        if not text.startswith(INSTANCE_READY_LINE):
            err = b""
            with contextlib.suppress(ProcessLookupError):  # it may have exited already
                proc.kill()
            with contextlib.suppress(Exception):
                err = await asyncio.wait_for(proc.stderr.read(), 5)
                await proc.wait()
            lines = err.decode(errors="replace").strip().splitlines()
            raise ServerlessError("init_failed", f"instance did not start: "
                                  f"{lines[-1] if lines else 'no output'}")
        instance.init_ms = float(text.split("init_ms=")[1])
        instance.state = FunctionState.WARM
        instance.stderr_task = asyncio.ensure_future(self._drain_stderr(proc))
        self.instances.append(instance)
        return instance

    @staticmethod
    async def _drain_stderr(proc: AsyncChild) -> None:
        """An instance's own log lines (stderr), re-logged here so they are not lost; read to
        the end so a full pipe never blocks the instance."""
        while line := await proc.stderr.readline():
            text = line.decode(errors="replace").rstrip()
            if text:
                instance_log.info("instance %d: %s", proc.pid, text)

    async def _call(self, instance: Instance, event: dict[str, Any]) -> dict[str, Any]:
        try:
            instance.proc.stdin.write(json.dumps(event).encode() + b"\n")
            await instance.proc.stdin.drain()
            line = await asyncio.wait_for(instance.proc.stdout.readline(),
                                          self.config.invoke_timeout_s)
        except (TimeoutError, ConnectionError) as exc:
            self._discard(instance)
            raise ServerlessError("timeout" if isinstance(exc, TimeoutError) else "crashed",
                                  f"instance gave no answer ({type(exc).__name__})") from None
        if not line:
            code = instance.proc.returncode
            self._discard(instance)
            raise ServerlessError("crashed", f"instance exited (code {code})")
        answer = json.loads(line)
        if "errorType" in answer:
            raise ServerlessError("function_error",
                                  f"{answer['errorType']}: {answer.get('errorMessage', '')}")
        instance.served += 1
        return dict(answer)

    @staticmethod
    def _discard(instance: Instance) -> None:
        """An instance that failed under a call is never handed out again: its end of the pipe
        may be closed before the process is reaped (`returncode` still None), and a retry that
        took it would fail at once as the first call did."""
        instance.state = FunctionState.REAPED
        with contextlib.suppress(ProcessLookupError):
            instance.proc.kill()

    async def _release(self, instance: Instance) -> None:
        freed = self._condition()
        gone = False
        async with freed:
            if instance.proc.returncode is None and instance.state == FunctionState.WARM:
                instance.state = FunctionState.IDLE
                instance.last_used_s = self.clock()
            else:
                instance.state = FunctionState.REAPED
                if instance in self.instances:
                    self.instances.remove(instance)
                    gone = True
            freed.notify()
        if gone:
            await self._stop(instance)  # reaped, its pipes closed: no zombie left behind

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.reap_every_s)
            try:
                await self.reap()
            except Exception:  # the loop outlives a failed stop; the next round retries
                failures.failure("reap", "reaping idle serverless instances failed")

    async def reap(self, now_s: float | None = None) -> int:
        """Stop instances idle longer than the keep-alive; returns how many."""
        now = self.clock() if now_s is None else now_s
        freed = self._condition()
        async with freed:
            old = [i for i in self.instances if i.state == FunctionState.IDLE
                   and now - i.last_used_s > self.config.keep_alive_s]
            for inst in old:
                inst.state = FunctionState.REAPED
                self.instances.remove(inst)
        for inst in old:
            await self._stop(inst)
        self.reaped += len(old)
        return len(old)

    @staticmethod
    async def _stop(instance: Instance) -> None:
        """End the process (EOF on stdin, then kill) and wait for it and its pipes."""
        if instance.proc.returncode is None:
            instance.proc.stdin.close()
            try:
                await asyncio.wait_for(instance.proc.wait(), 5)
            except TimeoutError:
                instance.proc.kill()
        await instance.proc.wait()
        if instance.stderr_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(instance.stderr_task, 5)

    async def aclose(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for inst in list(self.instances):
            await self._stop(inst)
        self.instances.clear()
