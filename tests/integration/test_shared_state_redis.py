"""Rates and the worker registry in a real Redis: shared, atomic, expiring, and fault tolerant."""

from __future__ import annotations

import threading

import pytest

from libra.serving.state.rates import SECOND_KEY, MemoryRateStore, RateMonitor, RedisRateStore
from libra.serving.state.registry import MemoryRegistry, RedisRegistry, WorkerInfo

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self, now_s: float) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def test_memory_monitor_reports_whole_seconds_since_it_started() -> None:
    clock = Clock(1000.2)
    monitor = RateMonitor(MemoryRateStore(), clock=clock)
    assert monitor.window() == ((), ())  # no data yet: policies hold
    for t, n in [(1000.5, 3), (1001.1, 5), (1002.9, 2)]:
        clock.now_s = t
        monitor.record(n)
    clock.now_s = 1003.0
    assert monitor.window()[0] == (3, 5, 2)


def test_two_routers_share_one_view_through_redis(redis_server) -> None:  # type: ignore[no-untyped-def]
    clock = Clock(6000.0)
    a = RateMonitor(RedisRateStore(redis_server.url), clock=clock)
    b = RateMonitor(RedisRateStore(redis_server.url), clock=clock)
    a.record(4)
    b.record(6)
    b.flush()  # what b's flusher thread does every quarter second (a's tick flushes its own)
    clock.now_s = 6001.0
    assert a.window()[0] == (10,)
    assert b.window()[0] == (10,)


def test_concurrent_increments_are_atomic_and_keys_expire(redis_server) -> None:  # type: ignore[no-untyped-def]
    store = RedisRateStore(redis_server.url)

    def hammer() -> None:
        for _ in range(200):
            store.add(7000, 1)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.per_second(7000, 1) == [800]
    assert store.per_minute(7000 // 60, 1) == [800]
    assert 0 < store.client.ttl(f"{SECOND_KEY}7000") <= 3600


def test_a_redis_outage_never_fails_a_request_and_counts_locally(redis_server) -> None:  # type: ignore[no-untyped-def]
    clock = Clock(8000.0)
    monitor = RateMonitor(RedisRateStore(redis_server.url, timeout_s=0.2), clock=clock)
    monitor.record(2)
    redis_server.stop()
    monitor.record(3)  # must not raise
    clock.now_s = 8001.0
    assert monitor.window()[0] == (5,)  # this router's own counts
    assert monitor.view == "local"
    assert monitor.store_errors >= 1
    assert monitor.health()["state"] == "degraded"


def test_workers_register_and_vanish_when_heartbeats_stop(redis_server) -> None:  # type: ignore[no-untyped-def]
    import time

    registry = RedisRegistry(redis_server.url, ttl_s=0.3)
    registry.heartbeat(WorkerInfo("w1", "http://127.0.0.1:1", "cuda", 32))
    registry.heartbeat(WorkerInfo("w2", "http://127.0.0.1:2"))
    assert [w.worker_id for w in registry.alive()] == ["w1", "w2"]
    assert registry.alive()[0].device == "cuda"
    registry.remove("w2")
    assert [w.worker_id for w in registry.alive()] == ["w1"]
    time.sleep(0.5)
    assert registry.alive() == []


def test_memory_registry_expires_by_its_clock() -> None:
    clock = Clock(0.0)
    registry = MemoryRegistry(ttl_s=5, clock=clock)
    registry.heartbeat(WorkerInfo("w1", "http://127.0.0.1:1"))
    clock.now_s = 4.9
    assert len(registry.alive()) == 1
    clock.now_s = 5.1
    assert registry.alive() == []
