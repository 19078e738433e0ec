"""VM workers over HTTP: one pooled async client, one `/infer` call per request.

A transport failure, a timeout or a non-200 answer raises `VMError`; the router then retries the
request once on serverless, so a worker dying mid-request loses nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from libra.serving.state.registry import WorkerInfo


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

    async def infer(self, worker: WorkerInfo, event: dict[str, Any]) -> VMResult:
        started = time.perf_counter()
        try:
            response = await self.client.post(f"{worker.url}/infer", json=event)
        except httpx.TimeoutException as exc:
            raise VMError("timeout", f"{worker.worker_id}: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            raise VMError("unreachable", f"{worker.worker_id}: {type(exc).__name__}") from exc
        if response.status_code != 200:
            try:
                detail = response.json()
                message = f"{detail.get('code')}: {detail.get('message')}"
            except ValueError:
                message = response.text[:200]
            raise VMError(f"http_{response.status_code}", f"{worker.worker_id}: {message}")
        return VMResult(response.json(), time.perf_counter() - started)

    async def aclose(self) -> None:
        await self.client.aclose()
