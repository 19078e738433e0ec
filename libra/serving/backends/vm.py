"""VM workers over HTTP: one pooled async client, one `/infer` call per request.

The client is aiohttp's: with 32 calls in flight httpx cost the router 2.0-2.2 ms of CPU a call
(its connection pool walks every pooled connection and asks the kernel whether each socket is
readable, on every request) against 0.15-0.24 ms for aiohttp (a C parser, a per-host queue of
idle connections). Under overload that was more than half the API's event loop (py-spy,
docs/reliability.md), and every request waiting behind it.

A transport failure, a timeout or a non-200 answer raises `VMError`; the router then retries the
request once on serverless, so a worker dying mid-request loses nothing. The deadline travels
with the request: the call's timeout is what is left of it, and the worker is told the same in
`X-Libra-Deadline-Ms` so it answers an expired request at once (`VMError("deadline_exceeded")`)
instead of running the model for nobody. A worker that is draining (a spot interruption
notice, a scale-in) answers new requests 503 `draining` (`VMError("draining")`): it ran nothing,
and the router retries the request elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from libra.serving.state.registry import WorkerInfo

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
    """Calls `POST {worker.url}/infer`; keeps connections alive across requests. The session is
    made on the first call in each event loop (aiohttp binds it to the loop that made it)."""

    def __init__(self, timeout_s: float = 30.0, max_connections: int = 512) -> None:
        self.timeout_s = timeout_s
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _client(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            self._loop = loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s, connect=2.0),
                json_serialize=json.dumps)
        return self._session

    async def infer(self, worker: WorkerInfo, event: dict[str, Any],
                    timeout_s: float | None = None) -> VMResult:
        """One `/infer` call, bounded by `timeout_s` (the request's remaining deadline) when
        given, else by the client's default."""
        started = time.perf_counter()
        if timeout_s is not None and timeout_s <= 0:
            raise VMError("deadline_exceeded", f"{worker.worker_id}: no time left to send it")
        headers = {} if timeout_s is None else {DEADLINE_HEADER: str(int(timeout_s * 1000))}
        timeout = (None if timeout_s is None
                   else aiohttp.ClientTimeout(total=timeout_s, connect=min(2.0, timeout_s)))
        try:
            async with self._client().post(f"{worker.url}/infer", json=event, headers=headers,
                                           timeout=timeout) as response:
                status = response.status
                raw = await response.read()
        except TimeoutError as exc:  # aiohttp's timeouts are TimeoutErrors
            raise VMError("timeout", f"{worker.worker_id}: {type(exc).__name__}") from exc
        except aiohttp.ClientError as exc:
            raise VMError("unreachable", f"{worker.worker_id}: {type(exc).__name__}") from exc
        if status != 200:
            code = f"http_{status}"
            try:
                detail = json.loads(raw)
                message = f"{detail.get('code')}: {detail.get('message')}"
                if detail.get("code") in EXPIRED_CODES:
                    code = "deadline_exceeded"
                elif detail.get("code") == "draining":  # a spot notice or a scale-in
                    code = "draining"
            except (ValueError, AttributeError):
                message = raw[:200].decode("utf-8", errors="replace")
            raise VMError(code, f"{worker.worker_id}: {message}")
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise VMError("bad_answer", f"{worker.worker_id}: the answer is not JSON") from exc
        return VMResult(body, time.perf_counter() - started)

    async def aclose(self) -> None:
        if self._session is not None and self._loop is asyncio.get_running_loop():
            await self._session.close()
        self._session = None
