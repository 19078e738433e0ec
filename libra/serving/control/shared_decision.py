"""The leader's last decision in Redis, so follower routers split requests by the same rule.

Only the leader runs the policy (`libra.serving.state.lease`); a follower still routes, and the
quota, spill and VM/serverless choice come from the `Decision`. The leader writes it as JSON
after every tick, with the lease's id, under one key that expires (`ttl_s`): a follower keeps
the last decision it read when the key is missing or Redis is unreachable, rather than inventing
a split of its own.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from libra.core.policies.base import Decision
from libra.serving.state.redis_link import RedisLink

DECISION_KEY = "libra:control:decision"


def encode(decision: Decision, leader_id: str) -> str:
    body = dataclasses.asdict(decision)
    body["signals"] = dict(decision.signals)
    return json.dumps({"leader": leader_id, "decision": body})


def decode(raw: str | bytes) -> tuple[Decision, str]:
    """The decision and its leader's id; ValueError/KeyError/TypeError on a bad entry."""
    body: dict[str, Any] = json.loads(raw)
    return Decision(**body["decision"]), str(body["leader"])


class DecisionBoard:
    """Publish (leader) and read (followers) the decision at `key` (module docs)."""

    def __init__(self, link: RedisLink, ttl_s: float, *, key: str = DECISION_KEY) -> None:
        self.link = link
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.key = key

    def publish(self, decision: Decision, leader_id: str) -> None:
        """RedisUnavailableError if Redis failed (the caller counts it and goes on)."""
        value = encode(decision, leader_id)
        self.link.call("decision_publish",
                       lambda c: c.set(self.key, value, px=self.ttl_ms))

    def read(self) -> tuple[Decision, str] | None:
        """The published decision, or None if there is none (no leader for a while)."""
        raw = self.link.call("decision_read", lambda c: c.get(self.key))
        return None if raw is None else decode(raw)
