"""`/healthz` and `/readyz` on a port of their own, answered by a thread, not the event loop.

Why: the API answers everything on one event loop. Under a burst (1,000 connections at once) the
loop spends seconds accepting, parsing and refusing, and a probe on the main port waits its turn:
`/healthz` took 2.3 s although nothing was wrong. A load balancer or Kubernetes reading that as
dead would pull a router out exactly when it is shedding load correctly. Here a thread with its
own listening socket answers the probes (it needs the GIL for a few microseconds, which Python
hands over within its 5 ms switch interval), so a probe never queues behind requests.

Answering from a thread must not hide a frozen loop, the failure a liveness probe exists for
(issue 15 began with one). So the loop beats: a callback every `period_s` stamps the time (and
takes a snapshot of readiness, which only the loop may compute). `/healthz` is 200 while the last
beat is younger than `stall_s` (10 s by default: a loop that busy is overloaded, one that late
is stuck) and 503 `stalled` after; `/readyz` is the snapshot, 503 as well once stalled.

`libra-serve --health-port N` (`LIBRA_HEALTH_PORT`) opens it; point the load balancer's health
check and the orchestrator's probes there. The main port keeps `/healthz` and `/readyz` (the
front door answers `/healthz` before any route).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

STARTING = "the server is starting"


class LoopHeartbeat:
    """The event loop's pulse, and the readiness it last saw (see module docs)."""

    def __init__(self, *, period_s: float = 0.1, stall_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < period_s < stall_s:
            raise ValueError(f"need 0 < period_s ({period_s}) < stall_s ({stall_s})")
        self.period_s, self.stall_s, self.clock = period_s, stall_s, clock
        self.last_beat_s: float | None = None
        self.not_ready: str | None = STARTING
        self._ready: Callable[[], str | None] = lambda: None
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop,
              not_ready: Callable[[], str | None] = lambda: None) -> None:
        """Beat on `loop` from now; `not_ready()` (None: ready, else why not) runs each beat."""
        self._loop, self._ready = loop, not_ready
        self.beat()

    def beat(self) -> None:
        """One beat (on the loop): stamp the time, snapshot readiness, schedule the next."""
        try:
            self.not_ready = self._ready()
        except Exception:  # a readiness check that fails is an answer, not a dead heart
            log.exception("the readiness check failed")
            self.not_ready = "the readiness check failed (logged)"
        self.last_beat_s = self.clock()
        if self._loop is not None:
            self._handle = self._loop.call_later(self.period_s, self.beat)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._loop = None
        self.not_ready = "the server is stopping"

    def lag_s(self) -> float | None:
        """Seconds since the last beat (None: it has not beaten yet)."""
        return None if self.last_beat_s is None else self.clock() - self.last_beat_s

    def liveness(self) -> tuple[int, dict[str, Any]]:
        lag_s = self.lag_s()
        if lag_s is None:
            return 503, {"status": "starting"}
        if lag_s > self.stall_s:
            return 503, {"status": "stalled", "loop_lag_s": round(lag_s, 3),
                         "reason": f"the event loop has not run for {lag_s:.1f} s "
                                   f"(limit {self.stall_s:g} s)"}
        return 200, {"status": "alive", "loop_lag_ms": round(1000 * lag_s, 1)}

    def readiness(self) -> tuple[int, dict[str, Any]]:
        status, body = self.liveness()
        if status != 200:
            return status, {"ready": False, "reason": body.get("reason", body["status"])}
        if self.not_ready is not None:
            return 503, {"ready": False, "reason": self.not_ready}
        return 200, {"ready": True}


class HealthServer:
    """The health port: binds at construction (a taken port fails at once, before the API
    starts), serves from `start()` until `stop()`."""

    def __init__(self, host: str, port: int, heartbeat: LoopHeartbeat | None = None) -> None:
        self.heartbeat = heartbeat or LoopHeartbeat()
        self._server = ThreadingHTTPServer((host, port), _handler(self.heartbeat))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self, loop: asyncio.AbstractEventLoop,
              not_ready: Callable[[], str | None] = lambda: None) -> None:
        self.heartbeat.start(loop, not_ready)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={
            "poll_interval": 0.5}, name="libra-health", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.heartbeat.stop()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()


def _handler(heartbeat: LoopHeartbeat) -> type[BaseHTTPRequestHandler]:
    class HealthHandler(BaseHTTPRequestHandler):
        timeout = 2.0  # a probe that stalls mid-request holds its thread this long at most
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # http.server's naming
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                status, body = heartbeat.liveness()
            elif path == "/readyz":
                status, body = heartbeat.readiness()
            else:
                status, body = 404, {"code": "not_found", "message": "this port serves "
                                     "/healthz and /readyz only"}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # probes every few seconds would drown the log; failures show in the answers

    return HealthHandler
