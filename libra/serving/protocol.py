"""The HTTP protocol `libra-serve` runs: uvicorn's httptools protocol with a header timeout.

Why: uvicorn times out only the idle gap between two requests on a kept-alive connection
(`timeout_keep_alive`). A connection that sends nothing, or stops in the middle of its request
line or headers (slowloris), is held for ever: the app never sees it, so `body_timeout_s` cannot
help, and a few thousand such sockets exhaust the process's file descriptors. Here a request's
headers must be complete within `header_timeout_s` of the connection opening or of the request's
first byte; otherwise the connection is closed (there is no request yet to answer).
"""

from __future__ import annotations

import asyncio
from typing import Any


def header_timeout_protocol(header_timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol whose headers must arrive within `header_timeout_s`; pass
    it as `uvicorn.run(..., http=...)`."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._header_timer is None:  # a later request on a kept-alive connection
                self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(header_timeout_s, self._timed_out)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _timed_out(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol


def uvicorn_http(header_timeout_s: float) -> Any:
    """What to give `uvicorn.run(http=...)`: the header-timeout protocol where httptools is
    installed (uvicorn[standard], as shipped), else uvicorn's own choice."""
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "auto"
    return header_timeout_protocol(header_timeout_s)
