"""VM workers over HTTP: one pooled async client, one `/infer` call per request.

A transport failure, a timeout or a non-200 answer raises `VMError`; the router then retries the
request once on serverless, so a worker dying mid-request loses nothing. The deadline travels
with the request: the call's timeout is what is left of it, and the worker is told the same in
`X-Libra-Deadline-Ms` so it answers an expired request at once (`VMError("deadline_exceeded")`)
instead of running the model for nobody. A worker that is draining (a spot interruption
notice, a scale-in) answers new requests 503 `draining` (`VMError("draining")`): it ran nothing,
and the router retries the request elsewhere.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx

from libra.serving.state.registry import WorkerInfo

# httpx logs every request at INFO: one line per request on the hot path; failures are logged
# (rate-limited) by the router instead
logging.getLogger("httpx").setLevel(logging.WARNING)

DEADLINE_HEADER = "X-Libra-Deadline-Ms"
"""Milliseconds the worker has to start the request, counted from when it receives it."""
EXPIRED_CODES = frozenset({"deadline_exceeded", "queue_timeout"})
"""The worker's codes for a request it did not run because its deadline passed."""


class VMError(RuntimeError):
    """A worker did not answer the request; `code` says how (`unreachable`, `timeout`, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(frozen=True)
class VMResult:
    body: dict[str, Any]
    latency_s: float


class VMBackend:
    """Calls `POST {worker.url}/infer`; keeps connections alive across requests."""

    def __init__(self, timeout_s: float = 30.0, max_connections: int = 512) -> None:
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=2.0),
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_connections))

    async def infer(self, worker: WorkerInfo, event: dict[str, Any],
                    timeout_s: float | None = None) -> VMResult:
        """One `/infer` call, bounded by `timeout_s` (the request's remaining deadline) when
        given, else by the client's default."""
        started = time.perf_counter()
        if timeout_s is not None and timeout_s <= 0:
            raise VMError("deadline_exceeded", f"{worker.worker_id}: no time left to send it")
        headers = {} if timeout_s is None else {DEADLINE_HEADER: str(int(timeout_s * 1000))}
        timeout = (httpx.USE_CLIENT_DEFAULT if timeout_s is None
                   else httpx.Timeout(timeout_s, connect=min(2.0, timeout_s)))
        try:
            response = await self.client.post(f"{worker.url}/infer", json=event,
                                              headers=headers, timeout=timeout)
        except httpx.TimeoutException as exc:
            raise VMError("timeout", f"{worker.worker_id}: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            raise VMError("unreachable", f"{worker.worker_id}: {type(exc).__name__}") from exc
        if response.status_code != 200:
            code = f"http_{response.status_code}"
            try:
                detail = response.json()
                message = f"{detail.get('code')}: {detail.get('message')}"
                if detail.get("code") in EXPIRED_CODES:
                    code = "deadline_exceeded"
                elif detail.get("code") == "draining":  # a spot notice or a scale-in
                    code = "draining"
            except (ValueError, AttributeError):
                message = response.text[:200]
            raise VMError(code, f"{worker.worker_id}: {message}")
        return VMResult(response.json(), time.perf_counter() - started)

    async def aclose(self) -> None:
        await self.client.aclose()
