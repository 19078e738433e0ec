"""The health port (`libra.serving.health`): a thread answers the probes, the event loop's
heartbeat decides what they say. Timing logic runs on an injected clock; the one real-socket test
blocks the loop on an event and proves the probe is answered meanwhile (no wall-clock bound)."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from dataclasses import dataclass

import pytest

from libra.serving.health import HealthServer, LoopHeartbeat

pytestmark = pytest.mark.unit


@dataclass
class Clock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


def test_alive_while_the_loop_beats_and_stalled_once_it_stops() -> None:
    clock = Clock()
    beat = LoopHeartbeat(period_s=0.1, stall_s=10.0, clock=clock)
    assert beat.liveness() == (503, {"status": "starting"})
    beat.beat()  # no loop attached: one beat, nothing scheduled
    clock.now += 9.5
    status, body = beat.liveness()
    assert (status, body["status"], body["loop_lag_ms"]) == (200, "alive", 9500.0)
    clock.now += 1.0  # 10.5 s without a beat: a loop that late is stuck
    status, body = beat.liveness()
    assert (status, body["status"]) == (503, "stalled")
    assert "10.5 s" in body["reason"]
    assert beat.readiness()[0] == 503


def test_readiness_is_the_snapshot_the_loop_took() -> None:
    clock = Clock()
    reason: list[str | None] = ["no VM worker is ready yet"]
    beat = LoopHeartbeat(clock=clock)
    beat._ready = lambda: reason[0]
    beat.beat()
    assert beat.readiness() == (503, {"ready": False, "reason": "no VM worker is ready yet"})
    reason[0] = None
    assert beat.readiness()[0] == 503  # not until the loop beats again
    beat.beat()
    assert beat.readiness() == (200, {"ready": True})


def test_a_readiness_check_that_raises_is_not_ready_not_dead() -> None:
    def broken() -> str | None:
        raise RuntimeError("boom")

    beat = LoopHeartbeat(clock=Clock())
    beat._ready = broken
    beat.beat()
    assert beat.liveness()[0] == 200
    status, body = beat.readiness()
    assert status == 503
    assert "failed" in body["reason"]


def test_a_bad_period_is_refused() -> None:
    with pytest.raises(ValueError, match="period_s"):
        LoopHeartbeat(period_s=5.0, stall_s=1.0)


def get(port: int, path: str) -> tuple[int, dict[str, object]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_the_probe_is_answered_while_the_event_loop_is_blocked() -> None:
    """The loop beats, then blocks (as a loop busy with a burst would); the health thread still
    answers 200 from the last beat, and the loop is released only after that answer came."""
    server = HealthServer("127.0.0.1", 0)
    answers: list[tuple[int, dict[str, object]]] = []
    release = threading.Event()

    async def main() -> None:
        server.start(asyncio.get_running_loop(), lambda: None)
        await asyncio.sleep(0)  # one beat happened in start()
        answers.append(get(server.port, "/healthz"))
        answers.append(get(server.port, "/readyz"))

        def probe() -> None:
            answers.append(get(server.port, "/healthz"))
            release.set()

        threading.Thread(target=probe).start()
        assert release.wait(60), "the health port did not answer while the loop was blocked"

    try:
        asyncio.run(main())
    finally:
        server.stop()
    assert [a[0] for a in answers] == [200, 200, 200]
    assert answers[0][1]["status"] == "alive"
    assert answers[1][1] == {"ready": True}


def test_other_paths_are_404_and_a_taken_port_fails_at_once() -> None:
    server = HealthServer("127.0.0.1", 0)
    try:
        async def main() -> tuple[int, dict[str, object]]:
            server.start(asyncio.get_running_loop())
            return await asyncio.to_thread(get, server.port, "/predict")

        status, body = asyncio.run(main())
        assert status == 404
        assert body["code"] == "not_found"
        with pytest.raises(OSError, match="in use"):
            HealthServer("127.0.0.1", server.port)
    finally:
        server.stop()
