"""Watch the EC2 instance metadata for a spot interruption notice (IMDSv2).

AWS gives a spot instance two minutes' notice before reclaiming it: from then on
`GET /latest/meta-data/spot/instance-action` answers 200 with `{"action": "terminate", "time":
"..."}` (404 before). A rebalance recommendation (`/latest/meta-data/events/recommendations/
rebalance`, `{"noticeTime": "..."}`) comes earlier, when the instance is at elevated risk. AWS
suggests polling every 5 seconds. IMDSv2 wants a session token first (`PUT /latest/api/token`
with its lifetime), sent with every read; the launch template requires it (`http_tokens =
"required"`, infra/terraform/workers.tf), and the worker runs on the host network, so the
default hop limit of 1 reaches it.

The worker drains on an interruption notice (`handlers.worker`). A rebalance recommendation is
only reported: the Auto Scaling group, with capacity rebalancing on, launches a replacement and
then terminates the at-risk instance through its termination lifecycle hook, which the worker
meets as a scale-in (Terminating:Wait, then SIGTERM).

The endpoint is configurable (`--imds-url`) so tests point it at a loopback server that plays
IMDS. An IMDS that does not answer (not on EC2, a hiccup) is logged, rate-limited, and polled
again: the watcher never stops on its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from libra.serving.logs import RateLimitedLog

log = logging.getLogger(__name__)

DEFAULT_IMDS_URL = "http://169.254.169.254"
TOKEN_TTL_S = 21600
"""The longest session token IMDS issues (6 h); it is renewed a minute before it ends, or at
once when IMDS refuses it (401)."""
INSTANCE_ACTION = "/latest/meta-data/spot/instance-action"
REBALANCE = "/latest/meta-data/events/recommendations/rebalance"


class MetadataError(RuntimeError):
    """IMDS answered something other than the document or a 404."""


@dataclass(frozen=True)
class Notice:
    """What IMDS said: `kind` is `interruption` or `rebalance`; `detail` is its JSON."""

    kind: str
    detail: dict[str, Any]

    @property
    def when(self) -> str:
        return str(self.detail.get("time") or self.detail.get("noticeTime") or "unknown")


class InstanceMetadata:
    """An IMDSv2 client for the two spot documents (module docs)."""

    def __init__(self, base_url: str = DEFAULT_IMDS_URL, *, timeout_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = httpx.AsyncClient(timeout=timeout_s)
        self.clock = clock
        self._token: str | None = None
        self._token_until_s = 0.0

    async def _fresh_token(self) -> str:
        if self._token is None or self.clock() >= self._token_until_s:
            response = await self.client.put(
                f"{self.base_url}/latest/api/token",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_S)})
            if response.status_code != 200:
                raise MetadataError(f"IMDS refused a session token: HTTP "
                                    f"{response.status_code}")
            self._token = response.text.strip()
            self._token_until_s = self.clock() + TOKEN_TTL_S - 60
        return self._token

    async def document(self, path: str) -> dict[str, Any] | None:
        """The JSON document at `path`, or None where IMDS says 404 (no notice)."""
        for attempt in (1, 2):
            token = await self._fresh_token()
            response = await self.client.get(f"{self.base_url}{path}",
                                             headers={"X-aws-ec2-metadata-token": token})
            if response.status_code == 401 and attempt == 1:  # expired or revoked: renew once
                self._token = None
                continue
            if response.status_code == 404:
                return None
            if response.status_code != 200:
                raise MetadataError(f"IMDS {path}: HTTP {response.status_code}")
            try:
                data = response.json()
            except ValueError as exc:
                raise MetadataError(f"IMDS {path}: not JSON: {response.text[:100]!r}") from exc
            return data if isinstance(data, dict) else {"value": data}
        raise MetadataError(f"IMDS {path}: the renewed token was refused too")

    async def interruption(self) -> Notice | None:
        detail = await self.document(INSTANCE_ACTION)
        return None if detail is None else Notice("interruption", detail)

    async def rebalance(self) -> Notice | None:
        detail = await self.document(REBALANCE)
        return None if detail is None else Notice("rebalance", detail)

    async def aclose(self) -> None:
        await self.client.aclose()


async def watch(imds: InstanceMetadata, on_notice: Callable[[Notice], None], *,
                every_s: float = 5.0) -> None:
    """Poll IMDS every `every_s` until cancelled; `on_notice` once per kind of notice seen (an
    interruption notice stays up until the instance is gone: it is one notice, not many)."""
    seen: set[str] = set()
    failures = RateLimitedLog(log, interval_s=60.0)
    while True:
        for read in (imds.interruption, imds.rebalance):
            try:
                notice = await read()
            except (httpx.HTTPError, MetadataError):
                failures.failure("imds", "reading the instance metadata at %s failed; polled "
                                 "again in %g s", imds.base_url, every_s,
                                 level=logging.WARNING)
                break
            if notice is not None and notice.kind not in seen:
                seen.add(notice.kind)
                on_notice(notice)
        await asyncio.sleep(every_s)
