"""Helpers more than one test module needs: a scripted policy and a loopback file server."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import ClassVar

from libra.policies.base import Decision, Observation


@dataclass
class Scripted:
    """A policy that plays a timeline: from each `t_s` on, it returns that decision."""

    name: ClassVar[str] = "scripted"
    timeline: tuple[tuple[float, Decision], ...] = ()

    def decide(self, obs: Observation) -> Decision:
        current = self.timeline[0][1]
        for t_s, decision in self.timeline:
            if obs.now_s + 1e-9 >= t_s:
                current = decision
        return current


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve_folder(root: Path) -> Iterator[str]:
    """Serve `root` over http on a free loopback port; yields the base URL (no trailing /)."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
