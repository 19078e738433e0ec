"""Serverless drivers behind one interface: AWS Lambda (boto3) and the local process pool.

`ServerlessDriver.invoke(event)` sends one `handlers.lambda_function` event and returns its
answer with whether it met a cold start. The `aws` driver calls `lambda.invoke` synchronously in
a thread, retrying throttles and transient service errors with capped, jittered exponential
backoff (tenacity; botocore's own retries are off so the two never multiply), with connect and
read timeouts. The `local` driver is `libra.serving.backends.local_pool.LocalServerlessPool`.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

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

    async def invoke(self, event: dict[str, Any]) -> InvokeResult: ...

    @property
    def in_flight(self) -> int: ...

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
    """Synchronous `lambda.invoke` of one function (name, ARN or alias) via boto3."""

    name = "aws"

    def __init__(self, function_name: str, *, client: Any = None, region: str | None = None,
                 max_attempts: int = 5, backoff_base_s: float = 0.1, backoff_max_s: float = 2.0,
                 connect_timeout_s: float = 2.0, read_timeout_s: float = 30.0,
                 warm_every_s: float = 240.0, warm_hold_ms: float = 100.0) -> None:
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client("lambda", region_name=region, config=Config(
                retries={"total_max_attempts": 1}, connect_timeout=connect_timeout_s,
                read_timeout=read_timeout_s, max_pool_connections=64))
        self.client = client
        self.function_name = function_name
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self._in_flight = 0
        self._cold_starts = 0
        self.throttles = 0
        self.warm_every_s = warm_every_s
        self.warm_hold_ms = warm_hold_ms
        self._warm_size = 0
        self._warmed_at_s = -math.inf
        self.warm_pings = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def cold_starts(self) -> int:
        return self._cold_starts

    def invoke_sync(self, event: dict[str, Any]) -> dict[str, Any]:
        """One `lambda.invoke`, retried on throttling; the decoded answer or ServerlessError."""
        from botocore.exceptions import ClientError  # boto3 is the `aws` extra

        def retryable(exc: BaseException) -> bool:
            if isinstance(exc, ClientError) and exc.response["Error"]["Code"] in RETRYABLE_CODES:
                self.throttles += 1
                return True
            return False

        body = json.dumps(event).encode()
        try:
            for attempt in Retrying(
                    retry=retry_if_exception(retryable), stop=stop_after_attempt(self.max_attempts),
                    wait=wait_random_exponential(multiplier=self.backoff_base_s,
                                                 max=self.backoff_max_s)):
                with attempt:
                    response = self.client.invoke(FunctionName=self.function_name,
                                                  InvocationType="RequestResponse", Payload=body)
        except RetryError as exc:
            raise ServerlessError("throttled", f"{self.function_name}: still throttled after "
                                  f"{self.max_attempts} attempts") from exc
        except ClientError as exc:
            error = exc.response["Error"]
            raise ServerlessError("invoke_failed", f"{error['Code']}: {error['Message']}") from exc
        raw = response["Payload"].read()
        if response.get("FunctionError"):
            raise ServerlessError("function_error", raw.decode(errors="replace")[:500])
        try:
            answer = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ServerlessError("bad_answer", f"the function answered non-JSON ({exc})") from exc
        if not isinstance(answer, dict):
            raise ServerlessError("bad_answer", "the function's answer is not an object")
        return answer

    async def invoke(self, event: dict[str, Any]) -> InvokeResult:
        started = time.perf_counter()
        self._in_flight += 1
        try:
            answer = await asyncio.get_running_loop().run_in_executor(
                None, self.invoke_sync, event)
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
            *(loop.run_in_executor(None, self.invoke_sync, event) for _ in range(target)),
            return_exceptions=True)
        answers = [r for r in results if isinstance(r, dict)]
        self._warm_size = len(answers)
        self.warm_pings += len(answers)
        return [(float(a.get("infer_ms", 0.0)) + float(a.get("init_ms", 0.0))) / 1000
                for a in answers]

    async def aclose(self) -> None:
        return None
