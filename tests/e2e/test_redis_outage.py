"""`libra-serve` with a shared Redis that hangs (SIGSTOP) or restarts: requests are answered at
once, the controller keeps ticking, `/status` and `/readyz` say what is degraded, and everything
is back to normal once Redis is."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from libra.serving.state.registry import RedisRegistry
from tests.e2e.test_serve import Server

pytestmark = pytest.mark.e2e


def wait_for(condition: Callable[[], bool], timeout_s: float = 60.0, what: str = "it") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def status(server: Server) -> dict:
    return httpx.get(f"{server.url}/status", timeout=30).json()


def timed_predict(client: httpx.Client, url: str) -> tuple[int, float]:
    started = time.perf_counter()
    r = client.post(f"{url}/predict", json={"text": "where is everybody?"})
    return r.status_code, time.perf_counter() - started


def test_a_hung_redis_costs_requests_nothing_and_status_says_degraded(
        redis_server, built_models: tuple[Path, dict], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = Server(built_models[0], tmp_path, "--policy", "serverless", "--initial-vms", "0",
                    env={"LIBRA_REDIS_URL": redis_server.url, "LIBRA_SERVERLESS_DRIVER": "noop"})
    try:
        with httpx.Client(timeout=60) as client, ThreadPoolExecutor(20) as pool:
            assert timed_predict(client, server.url)[0] == 200
            assert status(server)["rate_store"]["state"] == "ok"
            redis_server.pause()
            # 20 at once: the old synchronous INCR on the event loop served them one after the
            # other, each waiting out redis-py's retries (seconds each)
            answers = list(pool.map(lambda _: timed_predict(client, server.url), range(20)))
            assert [code for code, _ in answers] == [200] * 20
            assert max(took for _, took in answers) < 1.0, answers

            # the flusher meets the hang first, the controller's next tick reads the local view
            wait_for(lambda: (status(server)["rate_store"]["state"],
                              status(server)["rate_store"]["view"]) == ("degraded", "local"),
                     what="/status to report the rate store degraded, on the local view")
            assert "Timeout" in status(server)["rate_store"]["last_error"]
            ready = httpx.get(f"{server.url}/readyz", timeout=30)
            assert ready.status_code == 200  # degraded but serving: stays in the balancer
            assert any("redis" in why for why in ready.json()["degraded"])
            metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
            assert "libra_redis_errors_total{op=" in metrics
            assert timed_predict(client, server.url)[0] == 200

            redis_server.resume()
            wait_for(lambda: (status(server)["rate_store"]["state"],
                              status(server)["rate_store"]["view"]) == ("ok", "shared"),
                     what="the rate store to recover, on the shared view")
            assert httpx.get(f"{server.url}/readyz", timeout=30).json()["degraded"] == []
            assert timed_predict(client, server.url)[0] == 200
    finally:
        server.stop()


def test_a_redis_restart_never_stops_the_controller_and_the_fleet_registers_again(
        redis_server, built_models: tuple[Path, dict], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = Server(built_models[0], tmp_path, "--policy", "vm-static", "--policy-params",
                    '{"fleet_size": 1}', "--initial-vms", "1",
                    env={"LIBRA_REDIS_URL": redis_server.url, "LIBRA_SERVERLESS_DRIVER": "noop"})
    try:
        server.wait_for_workers(1)
        worker_url = status(server)["workers"][0]
        registry = RedisRegistry(redis_server.url)

        def registered() -> bool:
            try:
                return [w.url for w in registry.alive()] == [worker_url]
            except Exception:
                return False

        wait_for(registered, what="the VM worker in the Redis registry")
        redis_server.stop()
        before = status(server)["control"]
        # the old provisioner's heartbeat raised out of poll(): no tick succeeded until Redis
        # was back
        wait_for(lambda: status(server)["control"]["ticks"] >= before["ticks"] + 3,
                 what="three controller ticks with Redis down")
        during = status(server)
        assert during["control"]["tick_errors"] == before["tick_errors"]
        assert during["rate_store"]["state"] == "degraded"
        assert during["workers"] == [worker_url]  # still routed to: the local fleet is ours
        r = httpx.post(f"{server.url}/predict", json={"text": "still there?"}, timeout=60)
        assert (r.status_code, r.json()["backend"]) == (200, "vm")

        redis_server.start()  # empty: every registration was lost
        wait_for(registered, what="the VM worker to be registered again")
        wait_for(lambda: status(server)["rate_store"]["state"] == "ok",
                 what="the rate store to recover")
        assert status(server)["control"]["tick_errors"] == before["tick_errors"]
    finally:
        server.stop()
