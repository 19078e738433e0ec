"""One controller among many routers: a leadership lease in Redis with a TTL.

Every router sharing a Redis calls `step()` once per control tick. The first to `SET key id NX
PX ttl` holds the lease and runs the policy and the provisioner; it renews with a Lua
compare-and-set (`PEXPIRE` only if the value is still its own id), so a router never extends a
lease that another has taken since. The others are followers: they route by the leader's
published decision (`libra.serving.control.shared_decision`) and try `SET NX` each tick, so one
of them takes over within a TTL (3 ticks by default) of the leader dying.

Redis unavailable: the holder keeps its role only until the lease it last renewed would have
expired, measured on its own clock from *before* it sent the renewal (so never later than Redis
itself drops the key), then steps down and stops driving the provisioner. With Redis
unreachable no router can know whether another took over once the key expired; two routers
resizing the same group is worse than a fleet that keeps its size for an outage. A follower
stays a follower while Redis is down.

Without Redis (the embedded default) `SoleLease` says this router is the leader, as before.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Protocol

from libra.serving.state.redis_link import RedisLink, RedisUnavailableError

LEASE_KEY = "libra:control:leader"

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
"""Extend the lease only if it is still ours (atomic on the server: no lost-update race)."""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def router_id() -> str:
    """An id unique to this process: host, pid and a random suffix (a pid can be reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease(Protocol):
    holder_id: str

    def step(self) -> bool:
        """Acquire or renew; True if this router is the leader for the coming tick."""

    @property
    def role(self) -> str: ...

    @property
    def leader_id(self) -> str | None: ...

    def release(self) -> None: ...


class SoleLease:
    """No shared state: this router is the only one, hence the leader."""

    def __init__(self, holder_id: str | None = None) -> None:
        self.holder_id = holder_id or router_id()

    def step(self) -> bool:
        return True

    @property
    def role(self) -> str:
        return "leader"

    @property
    def leader_id(self) -> str | None:
        return self.holder_id

    def release(self) -> None:
        return None


class RedisLease:
    """The lease at `key` in the Redis behind `link` (module docs). `clock` is monotonic
    seconds; it decides only how long a leader may trust a lease it cannot renew."""

    def __init__(self, link: RedisLink, ttl_s: float, *, holder_id: str | None = None,
                 key: str = LEASE_KEY, clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_s <= 0:
            raise ValueError(f"lease ttl_s ({ttl_s}) must be positive")
        self.link = link
        self.ttl_s = ttl_s
        self.holder_id = holder_id or router_id()
        self.key = key
        self.clock = clock
        self._held_until_s: float | None = None  # local deadline of the lease we hold
        self._leader_id: str | None = None
        self.transitions = 0

    @property
    def is_leader(self) -> bool:
        return self._held_until_s is not None

    @property
    def role(self) -> str:
        return "leader" if self.is_leader else "follower"

    @property
    def leader_id(self) -> str | None:
        """The holder as last read from Redis (None: unknown, e.g. Redis unreachable)."""
        return self.holder_id if self.is_leader else self._leader_id

    def _set_held(self, until_s: float | None) -> None:
        if (until_s is None) != (self._held_until_s is None):
            self.transitions += 1
        self._held_until_s = until_s

    def step(self) -> bool:
        started_s = self.clock()
        ttl_ms = max(1, int(self.ttl_s * 1000))
        try:
            if self.is_leader and self.link.call("lease_renew", lambda c: c.eval(
                    _RENEW, 1, self.key, self.holder_id, ttl_ms)):
                self._set_held(started_s + self.ttl_s)
                return True
            # not ours (lost, expired, or Redis restarted empty): try to take it
            if self.link.call("lease_acquire", lambda c: c.set(
                    self.key, self.holder_id, nx=True, px=ttl_ms)):
                self._set_held(started_s + self.ttl_s)
                return True
            self._set_held(None)
            holder = self.link.call("lease_read", lambda c: c.get(self.key))
            self._leader_id = (None if holder is None else holder.decode()
                               if isinstance(holder, bytes) else str(holder))
            return False
        except RedisUnavailableError:
            if self._held_until_s is not None and started_s < self._held_until_s:
                return True  # still inside the lease we last renewed
            self._set_held(None)
            self._leader_id = None
            return False

    def release(self) -> None:
        """Give the lease up at shutdown so a follower takes over at its next tick."""
        if not self.is_leader:
            return
        self._set_held(None)
        # a failure is logged by the link; the key then expires on its own
        with contextlib.suppress(RedisUnavailableError):
            self.link.call("lease_release",
                           lambda c: c.eval(_RELEASE, 1, self.key, self.holder_id))
