"""Every answer carries `X-Request-ID`: the client's, or one made here.

Why in front of everything (outermost ASGI middleware): the API-key gate's refusals, FastAPI's
own 404/405 and `/metrics` answer too, and a client or a load balancer correlates its logs with
ours by this header whatever the answer. A request without one (or with one that is not a short
printable token) gets a fresh id written into its headers, so the handlers, the gate and the logs
all see the same id the answer echoes.
"""

from __future__ import annotations

import os
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-request-id"
MAX_ID_CHARS = 128
VALID_ID = re.compile(rb"[\x21-\x7e]{1,%d}" % MAX_ID_CHARS)
"""Visible ASCII, no spaces: an id that goes into log lines and back into a header unchanged."""


def new_id() -> bytes:
    """32 random hex digits, like `uuid4().hex` but a fifth of its cost (it is on every
    request's path)."""
    return os.urandom(16).hex().encode()


class RequestIdMiddleware:
    """ASGI middleware: settle the request's id, echo it on the response start."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if k != HEADER]
        sent = [v for k, v in scope["headers"] if k == HEADER]
        request_id = sent[0] if sent and VALID_ID.fullmatch(sent[0]) else new_id()
        scope = {**scope, "headers": [*headers, (HEADER, request_id)]}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER]
                message = {**message, "headers": [*kept, (HEADER, request_id)]}
            await send(message)

        await self.app(scope, receive, send_with_id)
