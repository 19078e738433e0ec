"""Serverless drivers behind one interface: AWS Lambda (boto3) and the local process pool.

`ServerlessDriver.invoke(event, timeout_s=...)` sends one `handlers.lambda_function` event and
returns its answer with whether it met a cold start; `timeout_s` (what is left of the request's
deadline) bounds the time spent waiting for an instance or retrying throttles, not a call under
way (neither Lambda nor a local instance can be told to stop one). The `aws` driver calls
`lambda.invoke` in threads of its own, as many at once as the configured concurrency (asyncio's
default executor capped it at about 6), retrying throttles and transient service errors with
capped, jittered exponential backoff (tenacity; botocore's own retries are off so the two never
multiply), with connect and read timeouts. The `local` driver is
`libra.serving.backends.local_pool.LocalServerlessPool`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from libra.serving.logs import RateLimitedLog

log = logging.getLogger(__name__)
failures = RateLimitedLog(log)

RETRYABLE_CODES = frozenset({
    "TooManyRequestsException", "ThrottlingException", "ServiceException",
    "EC2ThrottledException", "ResourceNotReadyException",
})


@dataclass(frozen=True)
class InvokeResult:
    """The handler's answer, whether this call paid a cold start, and the call's latency."""

    body: dict[str, Any]
    cold_start: bool
    latency_s: float


class ServerlessError(RuntimeError):
    """The function could not answer: `code` says why (`throttled`, `function_error`, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ServerlessDriver(Protocol):
    name: str

    async def invoke(self, event: dict[str, Any], *, timeout_s: float | None = None
                     ) -> InvokeResult: ...

    @property
    def in_flight(self) -> int: ...

    @property
    def capacity(self) -> int:
        """Invocations that run at once (the concurrency cap); 0 when there is no known cap."""
        ...

    @property
    def cold_starts(self) -> int: ...

    @property
    def instances_alive(self) -> int:
        """Instances believed warm, busy or idle (a policy's `serverless_instances`)."""
        ...

    async def keep_warm(self, target: int) -> list[float]:
        """Keep `target` instances warm; the billed seconds of the invocations that took."""
        ...

    async def aclose(self) -> None: ...


class AwsLambdaDriver:
    """`lambda.invoke` of one function (name, ARN or alias) via boto3, `max_concurrency` calls at
    once in threads of this driver (boto3's client is thread-safe; its pool holds as many
    connections)."""

    name = "aws"

    def __init__(self, function_name: str, *, client: Any = None, region: str | None = None,
                 max_concurrency: int = 64, max_attempts: int = 5, backoff_base_s: float = 0.1,
                 backoff_max_s: float = 2.0, connect_timeout_s: float = 2.0,
                 read_timeout_s: float = 30.0, warm_every_s: float = 240.0,
                 warm_hold_ms: float = 100.0,
                 on_throttle: Callable[[], None] | None = None) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency ({max_concurrency}) must be at least 1")
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client("lambda", region_name=region, config=Config(
                retries={"total_max_attempts": 1}, connect_timeout=connect_timeout_s,
                read_timeout=read_timeout_s, max_pool_connections=max_concurrency))
        self.client = client
        self.function_name = function_name
        self.max_concurrency = max_concurrency
        self._executor = ThreadPoolExecutor(max_workers=max_concurrency,
                                            thread_name_prefix="libra-lambda")
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.on_throttle = on_throttle
        self._in_flight = 0
        self._cold_starts = 0
        self.throttles = 0
        self.warm_every_s = warm_every_s
        self.warm_hold_ms = warm_hold_ms
        self._warm_size = 0
        self._warmed_at_s = -math.inf
        self.warm_pings = 0

    @property
    def capacity(self) -> int:
        return self.max_concurrency

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def cold_starts(self) -> int:
        return self._cold_starts

    def invoke_sync(self, event: dict[str, Any], timeout_s: float | None = None
                    ) -> dict[str, Any]:
        """One `lambda.invoke`, retried on throttling while `timeout_s` lasts; the decoded
        answer or ServerlessError."""
        from botocore.exceptions import ClientError  # boto3 is the `aws` extra

        def retryable(exc: BaseException) -> bool:
            if isinstance(exc, ClientError) and exc.response["Error"]["Code"] in RETRYABLE_CODES:
                self.throttles += 1
                if self.on_throttle is not None:
                    self.on_throttle()
                return True
            return False

        stop: stop_base = stop_after_attempt(self.max_attempts)
        if timeout_s is not None:
            stop = stop | stop_after_delay(timeout_s)
        body = json.dumps(event).encode()
        try:
            for attempt in Retrying(
                    retry=retry_if_exception(retryable), stop=stop,
                    wait=wait_random_exponential(multiplier=self.backoff_base_s,
                                                 max=self.backoff_max_s)):
                with attempt:
                    response = self.client.invoke(FunctionName=self.function_name,
                                                  InvocationType="RequestResponse", Payload=body)
        except RetryError as exc:
            raise ServerlessError("throttled", f"{self.function_name}: still throttled after "
                                  f"{exc.last_attempt.attempt_number} attempts") from exc
        except ClientError as exc:
            error = exc.response["Error"]
            raise ServerlessError("invoke_failed", f"{error['Code']}: {error['Message']}") from exc
        raw = response["Payload"].read()
        if response.get("FunctionError"):
            text = raw.decode(errors="replace")[:500]
            # the runtime died under the request (killed, out of memory): another instance may
            # serve it, so the router retries it once
            crashed = "Runtime.ExitError" in text or "Runtime.OutOfMemory" in text
            raise ServerlessError("crashed" if crashed else "function_error", text)
        try:
            answer = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ServerlessError("bad_answer", f"the function answered non-JSON ({exc})") from exc
        if not isinstance(answer, dict):
            raise ServerlessError("bad_answer", "the function's answer is not an object")
        return answer

    async def invoke(self, event: dict[str, Any], *, timeout_s: float | None = None
                     ) -> InvokeResult:
        started = time.perf_counter()
        self._in_flight += 1
        try:
            answer = await asyncio.get_running_loop().run_in_executor(
                self._executor, self.invoke_sync, event, timeout_s)
        finally:
            self._in_flight -= 1
        cold = bool(answer.get("cold_start"))
        self._cold_starts += cold
        return InvokeResult(answer, cold, time.perf_counter() - started)

    @property
    def instances_alive(self) -> int:
        """Lambda does not say how many instances it keeps: the size of the last warm round."""
        return self._warm_size

    async def keep_warm(self, target: int) -> list[float]:
        """`target` concurrent warm-up pings, each holding its instance `warm_hold_ms` so they
        land on distinct instances; repeated every `warm_every_s` (well inside Lambda's idle
        keep-alive of several minutes) or at once when the target grows."""
        now = time.monotonic()
        if target <= 0:
            self._warm_size = 0
            return []
        if target <= self._warm_size and now - self._warmed_at_s < self.warm_every_s:
            return []
        self._warmed_at_s = now
        loop = asyncio.get_running_loop()
        event = {"warmup": True, "hold_ms": self.warm_hold_ms}
        results = await asyncio.gather(
            *(loop.run_in_executor(self._executor, self.invoke_sync, event)
              for _ in range(min(target, self.max_concurrency))),
            return_exceptions=True)
        errors = [r for r in results if isinstance(r, Exception)]
        if errors:
            try:
                raise errors[0]
            except Exception:  # a failed ping only means a cold start later; logged, not raised
                failures.failure("lambda keep-warm", "%d of %d Lambda warm-up pings failed",
                                 len(errors), len(results), level=logging.WARNING)
        answers = [r for r in results if isinstance(r, dict)]
        self._warm_size = len(answers)
        self.warm_pings += len(answers)
        return [(float(a.get("infer_ms", 0.0)) + float(a.get("init_ms", 0.0))) / 1000
                for a in answers]

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
