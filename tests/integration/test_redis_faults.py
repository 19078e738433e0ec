"""Redis hung (SIGSTOP), stopped and restarted under the rate monitor, the registry and a real
worker: arrivals are counted without waiting, the breaker stops the calls, the outage's counts
reach Redis once it is back, and a worker registers again by itself."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from libra.serving.provision.worker_process import WorkerProcess
from libra.serving.state.rates import RateMonitor, RedisRateStore
from libra.serving.state.redis_link import RedisLink
from libra.serving.state.registry import RedisRegistry, WorkerInfo

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self, now_s: float) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def wait_for(condition, timeout_s: float = 60.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_hung_redis_never_delays_recording_and_the_breaker_stops_the_calls(
        redis_server) -> None:  # type: ignore[no-untyped-def]
    wall = Clock(9000.5)  # the buckets' clock
    mono = Clock(0.0)  # the breaker's clock: the open -> half-open step without sleeping
    link = RedisLink(redis_server.url, timeout_s=0.2, failure_threshold=3, reset_timeout_s=5.0,
                     clock=mono, wall_clock=wall)
    monitor = RateMonitor(RedisRateStore(link), clock=wall)
    monitor.record(1)
    assert monitor.flush()

    redis_server.pause()
    wall.now_s = 9001.5
    started = time.perf_counter()
    for _ in range(1000):
        monitor.record()  # memory only: the old synchronous INCR waited seconds per call here
    assert time.perf_counter() - started < 1.0
    wall.now_s = 9002.5
    for _ in range(3):  # a flush, then reads, time out until three failures open the breaker
        assert monitor.window()[0] == (1, 1000)  # this router's own counts, while Redis hangs
        assert monitor.view == "local"
    health = monitor.health()
    assert (health["state"], health["breaker"]) == ("degraded", "open")
    assert "Timeout" in health["last_error"]
    errors = sum(link.errors.values())
    assert errors == 3

    monitor.record(7)  # at 9002: never sent while the breaker is open, so kept for later
    wall.now_s = 9003.5
    assert monitor.window()[0] == (1, 1000, 7)
    assert sum(link.errors.values()) == errors  # refused, not tried: no new timeout
    assert link.refused >= 1
    assert monitor.health()["unsent"] == 7

    redis_server.resume()
    mono.now_s += 5.0  # the breaker lets one trial (a ping) through
    per_s, _ = monitor.window()
    assert monitor.view == "shared"
    assert (per_s[0], per_s[2]) == (1, 7)  # the outage's kept counts reached Redis
    assert per_s[1] in (0, 1000)  # the flush that timed out: applied on SIGCONT or lost, never 2x
    health = monitor.health()
    assert (health["state"], health["breaker"], health["unsent"]) == ("ok", "closed", 0)


def test_registry_calls_raise_a_typed_error_fast_once_the_breaker_is_open(redis_server) -> None:  # type: ignore[no-untyped-def]
    from libra.serving.state.redis_link import RedisUnavailableError

    mono = Clock(0.0)
    registry = RedisRegistry(RedisLink(redis_server.url, timeout_s=0.2, clock=mono), ttl_s=30)
    info = WorkerInfo("w1", "http://127.0.0.1:1")
    registry.heartbeat(info)
    redis_server.restart()  # empty: every key is gone
    assert registry.alive() == []
    redis_server.stop()
    for refused in (False, False, False, True):
        with pytest.raises(RedisUnavailableError) as caught:
            registry.heartbeat(info)
        assert caught.value.refused is refused
    redis_server.start()
    mono.now_s += 10
    registry.heartbeat(info)  # a full SET: registers again, not only refreshes
    assert [w.worker_id for w in registry.alive()] == ["w1"]


def test_a_worker_registers_again_after_a_redis_restart(
        redis_server, built_models: tuple[Path, dict], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    worker = WorkerProcess(built_models[0], log_dir=tmp_path, name="hb", extra_args=(
        "--device", "cpu", "--threads", "1", "--max-batch-size", "1",
        "--redis-url", redis_server.url, "--worker-id", "w-restart"))
    try:
        worker.wait_ready(120)
        registry = RedisRegistry(redis_server.url)

        def registered() -> bool:
            try:
                return [w.worker_id for w in registry.alive()] == ["w-restart"]
            except Exception:
                return False

        wait_for(registered, what="the worker's first registration")
        redis_server.stop()
        # the worker saw its heartbeat fail (the old loop ended right there) ...
        wait_for(lambda: "to the registry failed" in worker.log_path.read_text(),
                 what="a failed heartbeat")
        redis_server.start()  # empty: the worker's key is gone
        # ... and comes back on its own
        wait_for(registered, what="the worker to register again")
        assert worker.proc.poll() is None
        wait_for(lambda: re.search(r"registered again after \d+ failed heartbeats",
                                   worker.log_path.read_text()) is not None,
                 what="the re-registration log line")
    finally:
        worker.close()
