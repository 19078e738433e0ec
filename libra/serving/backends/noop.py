"""A backend that answers at once with a uniform distribution: for measuring the router alone.

`bench/router_overhead.py` serves with it (`serverless_driver="noop"`, policy `serverless`) so
the latency it reports is what the API, decoding, payload packing and routing add, with no model.
"""

from __future__ import annotations

from typing import Any

from libra.runtime.labels import EMOTIONS
from libra.serving.backends.serverless import InvokeResult


class NoopDriver:
    name = "noop"

    def __init__(self) -> None:
        self.calls = 0

    @property
    def in_flight(self) -> int:
        return 0

    @property
    def capacity(self) -> int:
        return 0  # no cap: it answers at once

    @property
    def cold_starts(self) -> int:
        return 0

    @property
    def instances_alive(self) -> int:
        return 0

    async def keep_warm(self, target: int) -> list[float]:
        return []

    async def invoke(self, event: dict[str, Any], *, timeout_s: float | None = None
                     ) -> InvokeResult:
        self.calls += 1
        return InvokeResult({"request_id": event.get("request_id"),
                             "probabilities": [1 / len(EMOTIONS)] * len(EMOTIONS),
                             "model_version": "noop", "infer_ms": 0.0}, False, 0.0)

    async def aclose(self) -> None:
        return None
