"""Which workers exist and are alive: registration with heartbeats that expire.

`MemoryRegistry` is the embedded default (the local provisioner heartbeats for the processes it
started, after probing their `/readyz`); `RedisRegistry` is what workers on other machines write
to and every router reads (`LIBRA_REDIS_URL`): one key per worker with a TTL, so a worker that
dies silently disappears after `ttl_s` without anyone cleaning up.

A heartbeat is a full `SET` of the worker's entry, not a TTL refresh: after a Redis restart (which
loses every key) the next heartbeat that gets through registers the worker again. `RedisRegistry`
calls go through a `RedisLink` (short timeouts, circuit breaker) and raise `RedisUnavailableError`;
callers decide what a failure means (a worker retries with backoff, a provisioner logs and goes
on, a router keeps its last view).

A worker that got a spot interruption notice keeps heartbeating with `draining` set until its
requests in flight are done, then removes its entry: `alive()` returns draining entries too
(flagged), so the controller counts them as draining while routers skip them (`routable`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol

from libra.serving.state.redis_link import RedisLink

KEY_PREFIX = "libra:worker:"


@dataclass(frozen=True)
class WorkerInfo:
    """A worker as routers see it."""

    worker_id: str
    url: str
    device: str = "cpu"
    max_batch_size: int = 1
    draining: bool = False
    """The worker got a spot interruption notice (or is otherwise leaving): it refuses new
    requests and finishes those in flight. Routers send it nothing; the controller counts it
    as draining, not as capacity."""

    @classmethod
    def from_json(cls, text: str | bytes) -> WorkerInfo:
        """An entry as stored; keys this version does not know are ignored, so a router of an
        older release keeps reading entries that workers of a newer one wrote (a rolling
        deploy has both for a while)."""
        data = json.loads(text)
        return cls(**{k: v for k, v in data.items() if k in _FIELDS})


def routable(workers: list[WorkerInfo]) -> list[WorkerInfo]:
    """The workers a router may send requests to: those not draining."""
    return [w for w in workers if not w.draining]


class WorkerRegistry(Protocol):
    def heartbeat(self, info: WorkerInfo) -> None: ...

    def remove(self, worker_id: str) -> None: ...

    def alive(self) -> list[WorkerInfo]: ...


class MemoryRegistry:
    """In-process registry; entries older than `ttl_s` are not alive."""

    def __init__(self, ttl_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._seen: dict[str, tuple[WorkerInfo, float]] = {}

    def heartbeat(self, info: WorkerInfo) -> None:
        self._seen[info.worker_id] = (info, self.clock())

    def remove(self, worker_id: str) -> None:
        self._seen.pop(worker_id, None)

    def alive(self) -> list[WorkerInfo]:
        now = self.clock()
        return sorted((info for info, at in self._seen.values() if now - at <= self.ttl_s),
                      key=lambda i: i.worker_id)


class RedisRegistry:
    """One `libra:worker:<id>` key per worker, JSON, expiring after `ttl_s` (module docs)."""

    def __init__(self, url_or_link: str | RedisLink, ttl_s: float = 10.0) -> None:
        self.link = (url_or_link if isinstance(url_or_link, RedisLink)
                     else RedisLink(url_or_link))
        self.client = self.link.client
        self.ttl_s = ttl_s

    def heartbeat(self, info: WorkerInfo) -> None:
        """Register or refresh `info` (a SET with a TTL: it re-creates a lost key)."""
        self.link.call("registry_heartbeat", lambda c: c.set(
            KEY_PREFIX + info.worker_id, json.dumps(asdict(info)), px=int(self.ttl_s * 1000)))

    def remove(self, worker_id: str) -> None:
        self.link.call("registry_remove", lambda c: c.delete(KEY_PREFIX + worker_id))

    def alive(self) -> list[WorkerInfo]:
        def read(client: Any) -> list[Any]:
            keys = sorted(client.scan_iter(match=KEY_PREFIX + "*", count=500))
            return list(client.mget(keys)) if keys else []

        values = self.link.call("registry_read", read)
        return [WorkerInfo.from_json(v) for v in values if v is not None]


_FIELDS = frozenset(f.name for f in fields(WorkerInfo))
