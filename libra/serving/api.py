"""The HTTP API: `POST /predict` over the router, health, readiness, metrics and status.

`/predict` takes multipart (`audio`, `video` files and a `text` field) or JSON (`text`, and base64
`audio` / `video`), any non-empty subset. Media are decoded here, once (`libra.runtime.inputs`, in
a thread), and shipped to the backend as compact arrays (`libra.runtime.payload`). Every failure a
client can cause is a 4xx with a message naming the limit or the field: 413 for a body, a clip or a
frame over a limit, 415 for a format we cannot read or a wrong content type, 422 for anything else
(no modality, empty or truncated media, text with nothing to read). A request that was accepted is
answered: a VM that fails mid-request is retried on serverless. Overload is refused, never queued
without bound (`libra.serving.admission`): 503 with `Retry-After` and a code saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from libra.runtime.errors import MediaDecodeError
from libra.runtime.inputs.audio import audio_features
from libra.runtime.inputs.video import video_features
from libra.runtime.labels import EMOTIONS, MODALITIES
from libra.runtime.payload import encode_input
from libra.runtime.recognizer import ModelInput
from libra.runtime.signals import SignalWarning, drop_missing_signals, refusal_code
from libra.serving.admission import DOOR_REASONS, ShedError, Ticket
from libra.serving.backends.serverless import ServerlessError
from libra.serving.bodies import BodyError, decode_base64, parse_json, scrub_paths
from libra.serving.door import FrontDoor, door_ticket
from libra.serving.health import HealthServer
from libra.serving.logs import RateLimitedLog
from libra.serving.oip import (
    MODEL_NAME,
    InferRequest,
    InferResponse,
    ModelMetadata,
    ServerMetadata,
    infer_response,
    model_metadata,
    parse_infer,
    server_metadata,
)
from libra.serving.request_id import RequestIdMiddleware
from libra.serving.service import Service

log = logging.getLogger(__name__)
failures = RateLimitedLog(log, interval_s=10.0)

STATUS_OF_CODE = {"too_large": 413, "too_long": 413, "too_large_frame": 413,
                  "too_many_samples": 413, "too_many_frames": 413, "too_many_pixels": 413,
                  "decode_too_slow": 413, "unsupported_format": 415}
"""HTTP status of each `MediaDecodeError.code`; the rest are 422. The decode-cost limits are 413
like the size limits: the input asks for more work than a request may have, and sending the same
bytes again fails the same way (`decode_too_slow` too: its 10 s is past the slowest decode the
counts let through, so it means a file costlier per pixel than camera video; docs/inputs.md)."""
INLINE_JSON_BYTES = 64 * 1024
"""JSON bodies up to this are parsed on the event loop; larger ones (base64 media: 25 MiB takes
0.1-0.5 s) in the decode pool, so the loop keeps answering."""
INLINE_TEXT_CHARS = 256
"""A text-only request this short is tokenized on the event loop (about 60 us), not in the
decode pool: a hop to a pool thread and back costs more than the work (a queue put, a thread
wake-up, two GIL hand-overs, and on a busy machine a wait for a core), and it was the largest
part of the router's added latency (docs/benchmarks.md). Longer text and all media go to the
pool, whose backlog admission sees."""


class PredictJSON(BaseModel):
    """The JSON form of a request: any non-empty subset of the three."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(None, description="transcript, at most 5000 characters")
    audio: str | None = Field(None, description="base64 of a WAV/FLAC/OGG/MP3/M4A file")
    video: str | None = Field(None, description="base64 of an MP4/WebM file")


class InputWarning(BaseModel):
    """Something the answer left out, and why (`no_voice`, `no_face`)."""

    code: str
    message: str


class Prediction(BaseModel):
    """The answer to `POST /predict`."""

    request_id: str
    emotion: str = Field(description=f"the most probable of {', '.join(EMOTIONS)}")
    probabilities: dict[str, float]
    modalities_used: list[str] = Field(description="the modalities the answer is based on: a "
                                       "sent one without signal (no voice, no face) is not")
    warnings: list[InputWarning] = Field(default_factory=list, description="modalities sent "
                                         "but not used, with the reason")
    backend: str = Field(description="vm or serverless")
    cold_start: bool
    latency_ms: float
    model_version: str
    face_found: bool | None = Field(None, description="video: False when no face was found "
                                    "and centre crops were used")
    retried_on_serverless: bool = False


class ErrorBody(BaseModel):
    """Every error this API answers, whatever the path: a stable `code` to branch on, a
    sentence to read, the request's id (also in the `X-Request-ID` header). `error` repeats the
    message for Open Inference Protocol clients, which read that field."""

    code: str
    message: str
    request_id: str
    error: str


ERROR_STATUSES = {401: "no or bad API key", 403: "this key may not use this path",
                  408: "the body did not arrive in time", 413: "a size or decode-cost limit",
                  415: "a format or content type we cannot read",
                  422: "bad or missing input, or nothing to recognise",
                  429: "this key's rate limit (Retry-After)", 500: "a server bug (logged)",
                  502: "the serverless backend failed after its retries",
                  503: "overload or no capacity in time (Retry-After)"}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": why, "model": ErrorBody} for status, why in ERROR_STATUSES.items()}
"""The statuses `/predict` and the v2 infer answer besides 200, each with the error body; the
API-key gate's 401/403/429 are answered before routing, but clients of these paths meet them."""
Reader = Callable[[Request, Service], Awaitable[tuple[str | None, bytes | None, bytes | None]]]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str, request_id: str) -> JSONResponse:
    """The typed JSON error; the message never shows a server file path. A 408 closes the
    connection: the rest of a stalled body may still come, and keep-alive would hold it 5 s more."""
    message = scrub_paths(message)
    response = JSONResponse({"code": code, "message": message, "request_id": request_id,
                             "error": message}, status_code=status,
                            headers={"x-request-id": request_id})
    if status == 408:
        response.headers["connection"] = "close"
    return response


def create_app(service: Service | None = None, *, settings: Any = None,
               health: HealthServer | None = None) -> FastAPI:
    """The app; `service` is built from `settings` (or the environment) at startup if not given.
    `health`: the health port (`libra.serving.health`), served from startup to shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from libra.serving.settings import Settings

        svc = service or Service(settings or Settings.from_env())
        app.state.service = svc
        await svc.start()
        # everything loaded so far (FastAPI, pydantic, numpy, the tokenizer, the policy: about
        # 140,000 objects) lives as long as the process: out of the collector's sight, a full
        # collection scans only what requests made, not 100-400 ms of startup objects
        gc.collect()
        gc.freeze()
        if health is not None:
            health.start(asyncio.get_running_loop(), svc.not_ready)
        try:
            yield
        finally:
            try:
                await svc.stop()
            finally:
                if health is not None:
                    health.stop()

    app = FastAPI(title="Libra", version="0.1.0", lifespan=lifespan,
                  description="Multimodal emotion recognition served on GPU VMs and serverless "
                              "functions by a cost-aware controller.")

    @app.post("/predict", response_model=Prediction, responses=ERROR_RESPONSES,
              openapi_extra={"requestBody": {"content": {
                  "application/json": {"schema": PredictJSON.model_json_schema()},
                  "multipart/form-data": {"schema": {"type": "object", "properties": {
                      "audio": {"type": "string", "format": "binary"},
                      "video": {"type": "string", "format": "binary"},
                      "text": {"type": "string"}}}}}}})
    async def predict(request: Request) -> Response:
        # the front door serves POST /predict itself (below); this route documents it and
        # serves an app built without the door
        return await predict_response(app.state.service, request)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        svc: Service = app.state.service
        why_not = svc.not_ready()
        # degraded (Redis down) stays 200: this router still serves on its local view, and a
        # shared dependency failing must not pull every router out of the load balancer at once
        body: dict[str, Any] = {"ready": why_not is None, "degraded": svc.degraded(),
                                "model_version": svc.model_version}
        if why_not is not None:
            body["reason"] = why_not
        return JSONResponse(body, status_code=200 if why_not is None else 503)

    @app.get("/metrics", response_class=Response, responses={200: {"content": {
        "text/plain; version=0.0.4": {"schema": {"type": "string"}}},
        "description": "Prometheus text exposition format 0.0.4"}})
    async def metrics() -> Response:
        svc: Service = app.state.service
        return Response(svc.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/status")
    async def status() -> dict[str, Any]:
        svc: Service = app.state.service
        return svc.status()

    async def unhandled(request: Request, exc: Exception) -> Response:
        """A bug, not the client: JSON like every other error, no details (they are logged)."""
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        failures.failure(f"unhandled {type(exc).__name__}", "request %s to %s failed", request_id,
                         request.url.path, exc_info=True)
        return error_response(500, "internal_error", "the server failed on this request; it "
                              "is logged under this request_id", request_id)

    async def http_error(request: Request, exc: Exception) -> Response:
        """Starlette's own 404/405 in the API's one error shape, not `{"detail": ...}`."""
        assert isinstance(exc, StarletteHTTPException)
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        response = error_response(exc.status_code, code, str(exc.detail), request_id)
        response.headers.update(exc.headers or {})
        return response

    add_oip_routes(app)
    app.add_exception_handler(Exception, unhandled)
    app.add_exception_handler(StarletteHTTPException, http_error)

    # API keys, the admin surface and per-key limits, in front of everything (a refusal reads no
    # body); with no keys configured nothing is installed (libra.serving.auth)
    from libra.serving.auth import install_auth
    from libra.serving.settings import Settings

    # innermost first: the front door (healthz and overload refusals before any route), then
    # the API-key gate, then the request id (outermost, so every refusal carries it)
    app.add_middleware(FrontDoor, service=lambda: getattr(app.state, "service", None),
                       admit_paths=frozenset({"/predict", f"/v2/models/{MODEL_NAME}/infer"}),
                       fast_paths={"/predict": predict_response})
    install_auth(app, settings or (service.settings if service else Settings.from_env()))
    app.add_middleware(RequestIdMiddleware)
    return app


async def predict_response(svc: Service, request: Request) -> Response:
    """`POST /predict`: admitted (by the front door, or here), then answered or refused."""
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    try:
        with admitted(request, svc) as ticket:
            return await answer(svc, request, request_id, ticket)
    except ShedError as exc:
        if exc.reason in DOOR_REASONS:
            svc.monitor.record()  # refused unread, but demand the policy must see
        return shed_response(svc, exc, request_id)


@contextlib.contextmanager
def admitted(request: Request, svc: Service) -> Iterator[Ticket]:
    """The ticket the front door admitted this request with (`libra.serving.door`), or one
    from the gate here (an app without the door); `ShedError` if the gate refuses."""
    ticket = door_ticket(request.scope.get("state", {}))
    if ticket is not None:
        yield ticket
        return
    with svc.gate.admit() as ticket:
        yield ticket


def add_oip_routes(app: FastAPI) -> None:
    """The Open Inference Protocol v2 beside `/predict` (`libra.serving.oip`): health, metadata
    and infer, the last through `answer` like `/predict`."""

    def service_of() -> Service:
        svc: Service = app.state.service
        return svc

    def check_model(name: str) -> None:
        if name != MODEL_NAME:
            raise StarletteHTTPException(404, f"no model {name!r}; this server has "
                                         f"{MODEL_NAME!r}")

    @app.get("/v2", response_model=ServerMetadata, tags=["Open Inference Protocol"])
    async def v2_server() -> ServerMetadata:
        return server_metadata(app.version)

    @app.get("/v2/health/live", tags=["Open Inference Protocol"])
    async def v2_live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready", tags=["Open Inference Protocol"],
             responses={503: {"model": ErrorBody, "description": "not ready, and why"}})
    async def v2_ready(request: Request) -> Response:
        return ready_response(service_of(), request)

    @app.get("/v2/models/{model_name}", response_model=ModelMetadata,
             tags=["Open Inference Protocol"], responses={404: {"model": ErrorBody}})
    async def v2_model(model_name: str) -> ModelMetadata:
        check_model(model_name)
        return model_metadata(service_of().model_version)

    @app.get("/v2/models/{model_name}/ready", tags=["Open Inference Protocol"],
             responses={404: {"model": ErrorBody}, 503: {"model": ErrorBody}})
    async def v2_model_ready(model_name: str, request: Request) -> Response:
        check_model(model_name)
        return ready_response(service_of(), request)

    @app.post("/v2/models/{model_name}/infer", response_model=InferResponse,
              tags=["Open Inference Protocol"], responses={**ERROR_RESPONSES, 404: {
                  "model": ErrorBody, "description": "no such model"}},
              openapi_extra={"requestBody": {"content": {"application/json": {
                  "schema": InferRequest.model_json_schema()}}}})
    async def v2_infer(model_name: str, request: Request) -> Response:
        check_model(model_name)
        svc = service_of()
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        try:
            with admitted(request, svc) as ticket:
                return await answer(svc, request, request_id, ticket, read=read_infer_request,
                                    render=lambda p: infer_response(
                                        p, oip_id=request.state.oip_id,
                                        outputs=request.state.oip_outputs))
        except ShedError as exc:
            if exc.reason in DOOR_REASONS:
                svc.monitor.record()
            return shed_response(svc, exc, request_id)


def ready_response(svc: Service, request: Request) -> Response:
    """OIP readiness: 200 `{"ready": true}` or 503 with `/readyz`'s reason."""
    why_not = svc.not_ready()
    if why_not is None:
        return JSONResponse({"ready": True})
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    return error_response(503, "not_ready", why_not, request_id)


async def answer(svc: Service, request: Request, request_id: str, ticket: Ticket, *,
                 read: Reader | None = None,
                 render: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> Response:
    """A request let in: read its body (`read`: `/predict`'s forms by default), take a work
    slot, decode, route inside its budget, answer (`render`: the `Prediction` dict as the
    protocol's answer; `ShedError` propagates)."""
    started = time.perf_counter()
    try:
        text, audio, video = await (read or read_request)(request, svc)
        ticket.work()
        row, face_found, warnings = await build_input(svc, text, audio, video)
    except ApiError as exc:
        svc.metrics.requests.labels("none", str(exc.status)).inc()
        return error_response(exc.status, exc.code, exc.message, request_id)
    svc.monitor.record()
    event = {"request_id": request_id, "inputs": encode_input(row)}
    try:
        routed = await svc.router.route(event, ticket.budget)
    except ServerlessError as exc:  # the retry failed too: the one 5xx besides 503
        svc.metrics.requests.labels("serverless", "502").inc()
        failures.failure(f"serverless {exc.code}", "request %s failed on serverless: %s",
                         request_id, exc, level=logging.WARNING)
        return error_response(502, "backend_failed", f"serverless failed ({exc.code}) after the "
                              f"retries it allows", request_id)
    latency_s = time.perf_counter() - started
    if routed.backend == "serverless":
        svc.cost.on_serverless(float(routed.body.get("infer_ms", 0.0)) / 1000,
                               init_s=float(routed.body.get("init_ms", 0.0)) / 1000)
        svc.metrics.cold_starts.inc(routed.cold_start)
    svc.metrics.requests.labels(routed.backend, "200").inc()
    svc.metrics.latency.labels(routed.backend).observe(latency_s)
    probs = routed.body["probabilities"]
    best = max(range(len(probs)), key=probs.__getitem__)  # np.argmax's first max, 1/6 the cost
    return JSONResponse((render or (lambda p: p))(Prediction(
        request_id=request_id, emotion=EMOTIONS[best],
        probabilities=dict(zip(EMOTIONS, map(float, probs), strict=True)),
        modalities_used=list(row.modalities),
        warnings=[InputWarning(code=w.code, message=w.message) for w in warnings],
        backend=routed.backend,
        cold_start=routed.cold_start, latency_ms=1000 * latency_s,
        model_version=str(routed.body.get("model_version", svc.model_version)),
        face_found=face_found, retried_on_serverless=routed.retried).model_dump()))


def shed_response(svc: Service, shed: ShedError, request_id: str) -> JSONResponse:
    """503 + `Retry-After` for a request refused for capacity or time, counted by reason."""
    svc.metrics.shed.labels(shed.reason).inc()
    svc.metrics.requests.labels("none", "503").inc()
    response = error_response(503, shed.reason, shed.message, request_id)
    response.headers["Retry-After"] = shed.retry_after
    return response


async def read_request(request: Request, svc: Service
                       ) -> tuple[str | None, bytes | None, bytes | None]:
    """(text, audio bytes, video bytes) from multipart or JSON, within the body limit."""
    limit = svc.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "body_too_large", f"the body is {int(declared)} bytes; the limit "
                       f"is {limit} bytes")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    timeout_s = svc.settings.body_timeout_s
    if ctype == "application/json":
        body = await read_body(request, limit, timeout_s)
        if len(body) <= INLINE_JSON_BYTES:
            return parse_predict_json(body)
        return await asyncio.get_running_loop().run_in_executor(
            svc.decode_pool, parse_predict_json, body)
    if ctype == "multipart/form-data":
        await read_body(request, limit, timeout_s)  # enforce the limits before parsing
        try:
            form = await request.form()
        except Exception as exc:  # starlette raises its own parse errors
            raise ApiError(422, "bad_multipart", f"the multipart body cannot be parsed "
                           f"({exc})") from None
        unknown = sorted(set(form.keys()) - set(MODALITIES))
        if unknown:
            raise ApiError(422, "unknown_field", f"unknown form fields {unknown}; send "
                           f"audio, video (files) and text")
        text = form.get("text")
        if text is not None and not isinstance(text, str):
            text = (await text.read()).decode("utf-8", errors="replace")
        media: dict[str, bytes | None] = {}
        for name in ("audio", "video"):
            part = form.get(name)
            media[name] = None if part is None else (
                part.encode() if isinstance(part, str) else await part.read())
        return text, media["audio"], media["video"]
    raise ApiError(415, "unsupported_media_type", f"content type {ctype or 'none'!r}: send "
                   f"multipart/form-data or application/json")


async def read_infer_request(request: Request, svc: Service
                             ) -> tuple[str | None, bytes | None, bytes | None]:
    """(text, audio bytes, video bytes) of an OIP infer request (JSON, `libra.serving.oip`),
    within the body limits of `/predict`; its `id` and outputs go to `request.state`."""
    limit = svc.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "body_too_large", f"the body is {int(declared)} bytes; the limit "
                       f"is {limit} bytes")
    if request.headers.get("inference-header-content-length") is not None:
        raise ApiError(415, "binary_tensors_unsupported", "the binary tensor extension is not "
                       "served: send JSON tensors (tritonclient: binary_data=False), media as "
                       "base64 strings")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ("", "application/json"):
        raise ApiError(415, "unsupported_media_type", f"content type {ctype!r}: send "
                       f"application/json")
    if request.headers.get("content-encoding", "identity").lower() != "identity":
        raise ApiError(415, "unsupported_encoding", "compressed bodies are not served: send "
                       "the JSON uncompressed")
    body = await read_body(request, limit, svc.settings.body_timeout_s)
    try:
        if len(body) <= INLINE_JSON_BYTES:
            parsed = parse_infer(body)
        else:
            parsed = await asyncio.get_running_loop().run_in_executor(svc.decode_pool,
                                                                      parse_infer, body)
    except BodyError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None
    request.state.oip_id, request.state.oip_outputs = parsed.id, parsed.outputs
    return parsed.text, parsed.audio, parsed.video


def parse_predict_json(body: bytes) -> tuple[str | None, bytes | None, bytes | None]:
    """(text, audio bytes, video bytes) of a JSON body: parsed with limits (depth, integer
    digits: `libra.serving.bodies`), then validated, then base64 read liberally."""
    try:
        data = PredictJSON.model_validate(parse_json(body))
    except BodyError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
                             for e in exc.errors())
        raise ApiError(422, "invalid_field", f"{problems} (send text, audio, video)") from None
    return data.text, b64("audio", data.audio), b64("video", data.video)


async def read_body(request: Request, limit: int, timeout_s: float | None = None) -> bytes:
    """The whole body, at most `limit` bytes (413) arriving within `timeout_s` (408: a client
    that stalls half-way must not hold a connection and its buffers for ever)."""
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, "body_too_large",
                                   f"the body is over the {limit}-byte limit")
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(408, "body_timeout", f"the body did not arrive within {timeout_s:g} s "
                       f"(body_timeout_s; {size} bytes came): send it at once, or smaller"
                       ) from None
    body = b"".join(chunks)
    request._body = body  # starlette re-reads the body for .form()
    return body


def b64(field: str, value: str | None) -> bytes | None:
    """A base64 field's bytes: plain, wrapped, URL-safe, unpadded or as a `data:` URI."""
    if value is None:
        return None
    try:
        return decode_base64(field, value)
    except BodyError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None


async def build_input(svc: Service, text: str | None, audio: bytes | None, video: bytes | None
                      ) -> tuple[ModelInput, bool | None, list[SignalWarning]]:
    """Decode what was sent into model inputs (in a thread: decoding is CPU work), leaving out
    media without signal (`libra.runtime.signals`): 422 when nothing is left."""
    if text is not None and not text.strip():
        text = None
    if text is None and audio is None and video is None:
        raise ApiError(422, "no_modality", "send at least one of audio, video and text")
    if text is not None and len(text) > svc.settings.max_text_chars:
        raise ApiError(413, "text_too_long", f"text is {len(text)} characters; the limit is "
                       f"{svc.settings.max_text_chars}")
    untrained = [m for m, v in (("audio", audio), ("video", video), ("text", text))
                 if v is not None and m not in svc.trained_modalities]
    if untrained:
        raise ApiError(422, "modality_not_served", f"this model ({svc.model_version}) was not "
                       f"trained on {', '.join(untrained)}")

    def decode() -> tuple[ModelInput, bool | None]:
        tokens = None
        if text is not None:
            ids, mask = svc.tokenizer.encode([text])
            tokens = (ids[0], mask[0])
        a = audio_features(audio) if audio is not None else None
        v = video_features(video) if video is not None else None
        return ModelInput(audio=a, video=v, text=tokens), (None if v is None else v.face_found)

    try:
        if audio is None and video is None and text is not None \
                and len(text) <= INLINE_TEXT_CHARS:
            row, face_found = decode()
        else:
            row, face_found = await asyncio.get_running_loop().run_in_executor(
                svc.decode_pool, decode)
    except MediaDecodeError as exc:
        status = STATUS_OF_CODE.get(exc.code, 422)
        raise ApiError(status, f"{exc.modality}_{exc.code}", str(exc)) from None
    row, warnings = drop_missing_signals(row)
    if not row.modalities:
        raise ApiError(422, refusal_code(warnings), "nothing to recognise: "
                       + "; ".join(f"{w.modality}: {w.message}" for w in warnings))
    return row, face_found, warnings
