"""The leadership lease and the shared decision against a real redis-server (`redis_server`).

Routers' local deadlines use a fake clock; only the expiry Redis itself enforces is real time,
and that test polls for it with a generous deadline."""

from __future__ import annotations

import time

import pytest

from libra.core.policies.base import Decision
from libra.serving.control.shared_decision import DecisionBoard
from libra.serving.state.lease import LEASE_KEY, RedisLease
from libra.serving.state.redis_link import RedisLink

pytestmark = pytest.mark.integration


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def lease(url: str, holder: str, ttl_s: float = 3.0, clock: FakeClock | None = None
          ) -> RedisLease:
    clock = clock or FakeClock()
    link = RedisLink(url, clock=clock, reset_timeout_s=1.0, log_interval_s=0.0)
    return RedisLease(link, ttl_s, holder_id=holder, clock=clock)


def test_one_router_leads_and_the_other_follows_naming_it(redis_server) -> None:  # type: ignore[no-untyped-def]
    a, b = lease(redis_server.url, "a"), lease(redis_server.url, "b")
    assert a.step() is True
    assert b.step() is False
    assert (a.role, b.role) == ("leader", "follower")
    assert b.leader_id == "a"
    assert a.leader_id == "a"
    for _ in range(3):  # renewals keep the roles
        assert a.step() is True
        assert b.step() is False
    ttl_ms = a.link.client.pttl(LEASE_KEY)
    assert 0 < ttl_ms <= 3000


def test_a_leader_never_renews_a_lease_another_router_holds(redis_server) -> None:  # type: ignore[no-untyped-def]
    a, b = lease(redis_server.url, "a", ttl_s=3.0), lease(redis_server.url, "b", ttl_s=60.0)
    assert a.step() is True
    a.link.client.delete(LEASE_KEY)  # a's lease lapsed (a paused past its TTL, say)
    assert b.step() is True
    assert a.step() is False  # the compare-and-set refuses: the key is b's now
    assert a.role == "follower"
    assert a.leader_id == "b"
    assert a.link.client.get(LEASE_KEY) == b"b"
    assert a.link.client.pttl(LEASE_KEY) > 3000  # b's 60 s TTL, not cut to a's 3 s


def test_a_follower_takes_over_once_the_dead_leaders_lease_expires(redis_server) -> None:  # type: ignore[no-untyped-def]
    a, b = lease(redis_server.url, "a", ttl_s=0.3), lease(redis_server.url, "b", ttl_s=0.3)
    assert a.step() is True
    assert b.step() is False
    # a dies: it steps no more; Redis drops its key after the TTL and b takes it
    deadline = time.monotonic() + 30
    while not b.step():
        assert time.monotonic() < deadline, "the follower never took over"
        time.sleep(0.05)
    assert b.role == "leader"
    assert b.leader_id == "b"


def test_a_released_lease_is_taken_at_the_next_step(redis_server) -> None:  # type: ignore[no-untyped-def]
    a, b = lease(redis_server.url, "a", ttl_s=60), lease(redis_server.url, "b", ttl_s=60)
    assert a.step() is True
    assert b.step() is False
    a.release()
    assert a.role == "follower"
    assert b.step() is True


def test_redis_down_keeps_the_role_only_until_the_lease_would_have_expired(redis_server) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock()
    a = lease(redis_server.url, "a", ttl_s=3.0, clock=clock)
    b = lease(redis_server.url, "b", ttl_s=3.0, clock=clock)
    assert a.step() is True
    assert b.step() is False
    redis_server.stop()
    clock.now_s += 1.0
    assert a.step() is True  # renewal failed, but the lease it holds runs 2 s more
    assert b.step() is False
    clock.now_s += 1.9
    assert a.step() is True
    clock.now_s = 1000.0 + 3.0  # 3 s after the last renewal was sent: Redis may have dropped it
    assert a.step() is False
    assert a.role == "follower"
    assert a.leader_id is None
    redis_server.start()  # back, empty
    clock.now_s += 5.0  # past the breaker's reset: the next call is tried
    assert a.step() is True
    assert b.step() is False
    assert b.leader_id == "a"


def test_the_leaders_decision_reaches_a_follower_unchanged(redis_server) -> None:  # type: ignore[no-untyped-def]
    link = RedisLink(redis_server.url)
    board = DecisionBoard(link, ttl_s=30)
    assert board.read() is None
    decision = Decision(3, "libra: quota", vm_quota_rps=12.5, spill_to_serverless=False,
                        signals={"rate_rps": 4.0}, vm_quota_by_count=True, serverless_warm=2)
    board.publish(decision, "a")
    assert DecisionBoard(RedisLink(redis_server.url), ttl_s=30).read() == (decision, "a")
