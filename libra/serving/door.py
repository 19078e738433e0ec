"""The front door: `/healthz` and overload refusals answered before FastAPI routes a request.

Why: under overload most requests are refused, and a refusal that goes through FastAPI (routing,
a `Request`, dependency solving, the exception handlers, a `JSONResponse`) cost about 1 ms of the
API's one event loop each: a burst of 1,000 connections kept the loop busy for seconds, and the
few requests let in, and `/healthz`, waited behind the refusals. Here, in a pure ASGI layer in
front of the routes, a refusal is a gate check and one pre-encoded answer (tens of microseconds),
before the body is read.

- `GET /healthz`: 200 at once (liveness means the loop runs; it never waits for a route).
- `POST /predict`, `POST /v2/models/{name}/infer`: the admission gate (`libra.serving.admission`)
  lets the request in, with a ticket the handler takes from the scope, or it is answered 503
  with `Retry-After` here, counted like any refusal and recorded as demand (the policy must see
  the load it refuses).
- `fast_paths` (`POST /predict`): an admitted request is answered by its handler here, without
  FastAPI's routing, dependency solving and exception layers (about a third of the router's
  added CPU per request at 1,000 req/s, docs/benchmarks.md). The route stays declared for the
  OpenAPI document; an exception still reaches the app's error handler (outside this layer).

It sits inside the request-id middleware and the API-key gate: a refusal still carries the
request's id, and a client without a valid key is answered 401, not counted as demand (an
unauthenticated flood must not start paid capacity).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from libra.serving.admission import ShedError, Ticket

if TYPE_CHECKING:
    from libra.serving.service import Service

TICKET = "libra_ticket"
"""The key of the admitted request's `Ticket` in `scope["state"]` (`request.state`)."""
Handler = Callable[["Service", Request], Awaitable[Response]]
"""A fast path's handler: the running service and the request, to its answer."""
ALIVE = b'{"status":"alive"}'
JSON_HEADERS = [(b"content-type", b"application/json")]


def door_ticket(state: dict[str, object]) -> Ticket | None:
    """The ticket the door gave this request (None for an app without the door)."""
    ticket = state.get(TICKET)
    return ticket if isinstance(ticket, Ticket) else None


class FrontDoor:
    """ASGI middleware: see module docs. `service()` is the running `Service` (None until the
    app has started: then every request passes through to the routes)."""

    def __init__(self, app: ASGIApp, service: Callable[[], Service | None],
                 admit_paths: frozenset[str], fast_paths: Mapping[str, Handler] | None = None
                 ) -> None:
        self.app = app
        self.service = service
        self.admit_paths = admit_paths
        """The model requests' paths (POST): these take a ticket from the gate."""
        self.fast_paths = dict(fast_paths or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/healthz" and scope["method"] == "GET":
            await answer(send, 200, ALIVE)
            return
        svc = (self.service() if scope["method"] == "POST" and scope["path"] in self.admit_paths
               else None)
        if svc is None:
            await self.app(scope, receive, send)
            return
        try:
            ticket = svc.gate.enter()
        except ShedError as shed:
            svc.monitor.record()  # refused unread, but demand the policy must see
            svc.metrics.shed.labels(shed.reason).inc()
            svc.metrics.requests.labels("none", "503").inc()
            await answer(send, 503, refusal(shed, request_id_of(scope)),
                         [(b"retry-after", shed.retry_after.encode())])
            return
        scope.setdefault("state", {})[TICKET] = ticket
        try:
            handler = self.fast_paths.get(scope["path"])
            if handler is None:
                await self.app(scope, receive, send)
            else:
                response = await handler(svc, Request(scope, receive))
                await response(scope, receive, send)
        finally:
            ticket.leave()


def request_id_of(scope: Scope) -> str:
    """The id the request-id middleware settled (it runs first), else none."""
    for key, value in scope["headers"]:
        if key == b"x-request-id":
            return str(value.decode("latin-1"))
    return ""


def refusal(shed: ShedError, request_id: str) -> bytes:
    """The API's one error shape (`libra.serving.api.error_response`) for a 503."""
    return json.dumps({"code": shed.reason, "message": shed.message, "request_id": request_id,
                       "error": shed.message}).encode()


async def answer(send: Send, status: int, body: bytes,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*JSON_HEADERS, (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
