"""The front door (`libra.serving.door`), called as ASGI with a real `Gate` and real metrics:
`/healthz` and overload refusals are answered before the app and before the body is read; an
admitted request carries its ticket into the app and gives it back however the app ends."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send

from libra.serving.admission import Gate
from libra.serving.door import TICKET, FrontDoor, door_ticket
from libra.serving.metrics import ServeMetrics

if TYPE_CHECKING:
    from libra.serving.service import Service

pytestmark = pytest.mark.unit

PATHS = frozenset({"/predict", "/v2/models/m/infer"})


@dataclass
class Monitor:
    arrivals: int = 0

    def record(self) -> None:
        self.arrivals += 1


@dataclass
class StandIn:
    gate: Gate = field(default_factory=lambda: Gate(max_admitted=1, sla_budget_s=0.9,
                                                    timeout_s=2.0))
    monitor: Monitor = field(default_factory=Monitor)
    metrics: ServeMetrics = field(default_factory=ServeMetrics)


class App:
    """The app behind the door: records what reached it."""

    def __init__(self, fail: bool = False) -> None:
        self.scopes: list[Scope] = []
        self.fail = fail

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scopes.append(scope)
        if self.fail:
            raise RuntimeError("the app failed")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"from the app"})


def make_door(app: App, svc: StandIn | None, **kw: Any) -> FrontDoor:
    return FrontDoor(app, service=lambda: cast("Service | None", svc), admit_paths=PATHS, **kw)


def scope(method: str, path: str) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "state": {},
            "headers": [(b"x-request-id", b"req-1"), (b"content-length", b"100")]}


async def unread() -> Message:
    raise AssertionError("the body was read")


def call(door: FrontDoor, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    sent: list[dict[str, Any]] = []

    async def send(message: Message) -> None:
        sent.append(dict(message))

    asyncio.run(door(scope(method, path), unread, send))
    headers = {k.decode(): v.decode() for k, v in sent[0].get("headers", [])}
    return sent[0]["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


def test_healthz_is_answered_at_the_door() -> None:
    app = App()
    door = make_door(app, None)
    assert call(door, "GET", "/healthz") == (
        200, {"content-type": "application/json", "content-length": "18"},
        b'{"status":"alive"}')
    assert app.scopes == []
    assert call(door, "GET", "/readyz")[2] == b"from the app"  # everything else passes


def test_overload_is_refused_unread_counted_and_recorded_as_demand() -> None:
    svc = StandIn()
    app = App()
    door = make_door(app, svc)
    held = svc.gate.enter()
    held.work()  # the one work slot is taken
    status, headers, body = call(door, "POST", "/predict")
    assert status == 503
    assert headers["retry-after"] == "1"
    answer = json.loads(body)
    assert answer["code"] == "overloaded"
    assert answer["request_id"] == "req-1"
    assert app.scopes == []  # refused before the app (and before the body: `unread`)
    assert svc.monitor.arrivals == 1
    assert svc.metrics.registry.get_sample_value(
        "libra_requests_shed_total", {"reason": "overloaded"}) == 1.0
    assert svc.metrics.registry.get_sample_value(
        "libra_requests_total", {"backend": "none", "status": "503"}) == 1.0
    held.leave()


def test_an_admitted_request_brings_its_ticket_and_gives_it_back() -> None:
    svc = StandIn()
    for fail in (False, True):
        app = App(fail=fail)
        door = make_door(app, svc)
        if fail:
            with pytest.raises(RuntimeError, match="the app failed"):
                call(door, "POST", "/v2/models/m/infer")
        else:
            assert call(door, "POST", "/v2/models/m/infer")[2] == b"from the app"
        ticket = door_ticket(app.scopes[0]["state"])
        assert ticket is not None
        assert ticket.budget.sla_end_s - ticket.budget.arrived_s == pytest.approx(0.9)
        assert (svc.gate.reading, svc.gate.admitted) == (0, 0)  # given back either way


def test_paths_it_does_not_admit_pass_through_without_a_ticket() -> None:
    svc = StandIn()
    app = App()
    door = make_door(app, svc)
    for method, path in (("GET", "/predict"), ("POST", "/v2/models/other/infer"),
                         ("POST", "/status")):
        call(door, method, path)
    assert [TICKET in s["state"] for s in app.scopes] == [False, False, False]


def test_a_fast_path_is_answered_by_its_handler_not_the_app() -> None:
    svc = StandIn()
    app = App()
    seen: list[Any] = []

    async def handler(service: Any, request: Request) -> Response:
        seen.append((service, door_ticket(request.scope["state"])))
        return JSONResponse({"served": "fast"})

    door = make_door(app, svc, fast_paths={"/predict": handler})
    status, _, body = call(door, "POST", "/predict")
    assert (status, json.loads(body)) == (200, {"served": "fast"})
    assert app.scopes == []
    assert seen[0][0] is svc
    assert seen[0][1] is not None
    assert svc.gate.reading == 0
