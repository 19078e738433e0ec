"""A loopback HTTP server that plays the EC2 instance metadata service (IMDSv2) for spot tests.

It does what the worker relies on and refuses the rest as IMDS does: a session token only from
`PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds` (1-21600), every read needs a
token it issued (401 otherwise), `spot/instance-action` and `events/recommendations/rebalance`
are 404 until a test posts a notice. `revoke_tokens` makes the issued tokens invalid, as their
expiry would.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

TOKEN_PATH = "/latest/api/token"
DOCUMENTS = {"/latest/meta-data/spot/instance-action": "interruption",
             "/latest/meta-data/events/recommendations/rebalance": "rebalance"}


@dataclass
class FakeImds:
    url: str = ""
    notices: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    requests: list[tuple[str, str, int]] = field(default_factory=list)  # method, path, status
    garbled: bool = False  # documents answer 200 with a body that is not JSON
    lock: threading.Lock = field(default_factory=threading.Lock)

    def interrupt(self, time: str = "2026-12-08T02:00:00Z") -> None:
        self.notices["interruption"] = {"action": "terminate", "time": time}

    def recommend_rebalance(self, time: str = "2026-12-08T01:58:00Z") -> None:
        self.notices["rebalance"] = {"noticeTime": time}

    def revoke_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def count(self, method: str, path: str, status: int | None = None) -> int:
        with self.lock:
            return sum(1 for m, p, s in self.requests
                       if m == method and p == path and (status is None or s == status))


def _handler(imds: FakeImds) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _send(self, status: int, body: str = "", kind: str = "text/plain") -> None:
            data = body.encode()
            with imds.lock:
                imds.requests.append((self.command, self.path, status))
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self) -> None:
            ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
            if self.path != TOKEN_PATH:
                self._send(404)
            elif not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                self._send(400)
            else:
                with imds.lock:
                    token = f"token-{len(imds.tokens)}-{len(imds.requests)}"
                    imds.tokens.add(token)
                self._send(200, token)

        def do_GET(self) -> None:
            with imds.lock:
                valid = self.headers.get("X-aws-ec2-metadata-token") in imds.tokens
            if not valid:
                self._send(401)
                return
            kind = DOCUMENTS.get(self.path)
            if kind and imds.garbled:
                self._send(200, "<html>captive portal</html>", "text/html")
                return
            notice = imds.notices.get(kind) if kind else None
            if notice is None:
                self._send(404, "Not Found")
            else:
                self._send(200, json.dumps(notice), "application/json")

    return Handler


@contextmanager
def fake_imds() -> Iterator[FakeImds]:
    """A `FakeImds` serving on a free loopback port until the block ends."""
    imds = FakeImds()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(imds))
    server.daemon_threads = True
    imds.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield imds
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
