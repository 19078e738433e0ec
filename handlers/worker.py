"""The VM worker: an HTTP server around one ONNX Runtime session with dynamic batching.

    python -m handlers.worker --model artifacts/onnx --port 8101

`--model` is an ONNX file, or a `libra-model build` folder from which the worker picks FP16
under the CUDA execution provider and `--cpu-precision` (FP32 by default) on the CPU. The worker
answers `/readyz` only once the model is loaded and has run a warm-up batch, and on SIGTERM it
drains: `/readyz` turns 503, new requests get 503 `draining`, requests in flight finish, then it
exits. With `--redis-url` it registers itself and heartbeats so routers on other machines find
it; locally the provisioner that started it tracks it.

Spot: with `--spot-watch` the worker polls the instance metadata (`--imds-url`, IMDSv2;
`handlers.spot_watch`) for an interruption notice, and SIGUSR1 is a notice too (how the local
provisioner and tests inject one). On a notice it drains without exiting: one log line, its
registry entry marked `draining` (routers skip it, the controller counts it as draining), new
requests answered 503 `draining` with `Retry-After` (the router retries them elsewhere), the
requests in flight finished, then the entry removed and `LIBRA_WORKER_DRAINED` printed. It
stays up, refusing work, until the instance is reclaimed (on AWS) or the provisioner stops it
(locally); an exit would only have Docker restart it on a doomed machine.

Endpoints: `POST /infer` (a `libra.runtime.payload` body; typed JSON errors `code`, `message`,
`request_id`), `GET /healthz`, `GET /readyz`, `GET /stats`, `GET /metrics` (Prometheus).

Deadlines travel with the request: the router sends what is left of it in `X-Libra-Deadline-Ms`;
the worker counts it from receipt, answers an expired request at once with 504
`deadline_exceeded` without running the model, and gives the batcher the rest as the request's
timeout (504 `queue_timeout` if no batch took it in time). Without the header the worker's own
`default_timeout_s` applies.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from handlers.spot_watch import InstanceMetadata, Notice, watch
from handlers.worker_metrics import WorkerMetrics
from libra.runtime.batching import BatchError, BatchStats, BatchTimeoutError, DynamicBatcher
from libra.runtime.home import default_model_dir
from libra.runtime.model_input import AudioInput, VideoInput
from libra.runtime.payload import PayloadError, decode_input
from libra.runtime.recognizer import ModelInput, Recognizer
from libra.serving.backends.vm import DEADLINE_HEADER
from libra.serving.children import (
    WORKER_DRAINED_LINE,
    WORKER_DRAINING_LINE,
    WORKER_READY_LINE,
    die_with_parent,
)
from libra.serving.logs import RateLimitedLog, redact_url, setup_logging
from libra.serving.state.registry import WorkerInfo

log = logging.getLogger(__name__)

_EARLY_NOTICE = threading.Event()
"""SIGUSR1 before the app could take it (the model still loading): acted on once it can."""

"""Printed once with the port when the worker serves: `LIBRA_WORKER_READY port=8101 id=...`."""


def resolve_model(path: Path, device: str, cpu_precision: str) -> Path:
    """An ONNX file as given, or the right variant of a build folder for the device."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"no model at {path}: run `libra-model build` first")
    want = "fp16" if device == "cuda" else cpu_precision
    candidate = path / f"{want}.onnx"
    if not candidate.is_file():
        raise FileNotFoundError(f"{path} has no {candidate.name}: run `libra-model build`")
    return candidate


def cuda_available() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def error(status: int, code: str, message: str, request_id: str | None,
          retry_after_s: int | None = None) -> JSONResponse:
    headers = None if retry_after_s is None else {"Retry-After": str(retry_after_s)}
    return JSONResponse({"code": code, "message": message, "request_id": request_id},
                        status_code=status, headers=headers)


class WorkerState:
    """What the endpoints share: the session, the batcher, readiness and drain flags."""

    def __init__(self, recognizer: Recognizer, batcher: DynamicBatcher[ModelInput, np.ndarray],
                 worker_id: str) -> None:
        self.recognizer = recognizer
        self.batcher = batcher
        self.worker_id = worker_id
        self.ready = False
        self.draining = False
        self.started_s = time.monotonic()
        self.active = 0  # /infer requests inside the handler (decoding, queued or running)
        self.notice: Notice | None = None
        self.heartbeat: asyncio.Future[None] | None = None
        self.advertise_url = ""


def create_app(model: Path, *, device: str = "auto", cpu_precision: str = "fp32",
               threads: int | None = None, max_batch_size: int = 32,
               max_batch_delay_s: float = 0.005, worker_id: str | None = None,
               registry_url: str | None = None, advertise_url: str | None = None,
               default_timeout_s: float = 30.0, imds_url: str | None = None,
               spot_poll_s: float = 5.0, notice_signal: bool = False) -> FastAPI:
    """The worker app; the model loads and warms up in the lifespan, before `/readyz` is 200.
    `imds_url`: watch the instance metadata there for a spot notice (None: do not);
    `notice_signal`: SIGUSR1 is a notice (the process's main thread only)."""
    want_cuda = device == "cuda" or (device == "auto" and cuda_available())
    path = resolve_model(model, "cuda" if want_cuda else "cpu", cpu_precision)
    wid = worker_id or f"worker-{uuid.uuid4().hex[:8]}"

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        recognizer = await loop.run_in_executor(None, lambda: Recognizer(
            path, device="cuda" if want_cuda else "cpu", threads=threads))
        batcher: DynamicBatcher[ModelInput, np.ndarray] = DynamicBatcher(
            lambda rows: list(recognizer.predict(rows)), max_batch_size=max_batch_size,
            max_batch_delay_s=max_batch_delay_s)
        state = WorkerState(recognizer, batcher, wid)
        app.state.worker = state
        serve = asyncio.ensure_future(batcher.serve())
        await loop.run_in_executor(None, warm_up, recognizer, max_batch_size)
        state.ready = True
        state.heartbeat = heartbeat = (
            asyncio.ensure_future(heartbeat_loop(state, registry_url, advertise_url))
            if registry_url and advertise_url else None)

        def on_notice(notice: Notice) -> None:
            if notice.kind != "interruption":  # the group replaces the instance (module docs)
                metrics.spot_notices.labels(notice.kind).inc()
                log.warning("spot rebalance recommendation (%s): this instance is at elevated "
                            "risk of interruption; serving on", notice.when)
                return
            if begin_drain(state, notice, metrics):
                drains.append(asyncio.ensure_future(drain(state, registry_url, metrics)))

        drains: list[asyncio.Future[None]] = []
        imds = InstanceMetadata(imds_url) if imds_url else None
        watcher = (asyncio.ensure_future(watch(imds, on_notice, every_s=spot_poll_s))
                   if imds is not None else None)
        if notice_signal:
            signalled = Notice("interruption", {"action": "terminate", "source": "SIGUSR1"})
            loop.add_signal_handler(signal.SIGUSR1, on_notice, signalled)
            if _EARLY_NOTICE.is_set():  # it came while the model loaded
                on_notice(signalled)
        try:
            yield
        finally:
            state.draining = True
            if notice_signal:
                loop.remove_signal_handler(signal.SIGUSR1)
            for task in (heartbeat, serve, watcher, *drains):
                if task is not None:
                    task.cancel()
            if imds is not None:
                await imds.aclose()
            if registry_url:
                await asyncio.get_running_loop().run_in_executor(
                    None, deregister, registry_url, wid)
            batcher.close()

    app = FastAPI(title="Libra worker", lifespan=lifespan)

    def batcher_stats() -> tuple[BatchStats, int]:
        state: WorkerState | None = getattr(app.state, "worker", None)
        if state is None:
            return BatchStats(0, 0, 0, 0), 0
        return state.batcher.stats, state.batcher.in_flight

    metrics = WorkerMetrics(batcher_stats)

    @app.post("/infer")
    async def infer(request: Request) -> JSONResponse:
        received = time.perf_counter()
        state: WorkerState = app.state.worker
        state.active += 1
        try:
            response, code = await serve_infer(state, request, received, metrics,
                                               default_timeout_s)
        finally:
            state.active -= 1
        metrics.requests.labels(str(response.status_code), code).inc()
        if response.status_code == 200:
            metrics.latency.observe(time.perf_counter() - received)
        return response

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        # the pid: where `kill -USR1` injects a spot notice into a local worker (module docs)
        return {"status": "alive", "worker_id": wid, "pid": os.getpid()}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        state: WorkerState | None = getattr(app.state, "worker", None)
        if state is None or not state.ready or state.draining:
            why = "draining" if state is not None and state.draining else "loading"
            notice = None if state is None or state.notice is None else state.notice.when
            return JSONResponse({"ready": False, "why": why, "worker_id": wid,
                                 "spot_notice": notice}, status_code=503)
        return JSONResponse({"ready": True, "worker_id": wid, **describe(state)})

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        state: WorkerState = app.state.worker
        s = state.batcher.stats
        return {"worker_id": wid, "batches": s.batches, "requests": s.requests,
                "mean_batch_size": s.mean_batch_size, "timeouts": s.timeouts,
                "errors": s.errors, "in_flight": state.batcher.in_flight, **describe(state)}

    return app


model_failures = RateLimitedLog(log, interval_s=10.0)


async def serve_infer(state: WorkerState, request: Request, received: float,
                      metrics: WorkerMetrics, default_timeout_s: float
                      ) -> tuple[JSONResponse, str]:
    """One `/infer` request inside its deadline; the answer and its code (ok for 200)."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return error(400, "bad_json", "the body is not JSON", None), "bad_json"
    request_id = body.get("request_id") if isinstance(body, dict) else None

    def fail(status: int, code: str, message: str) -> tuple[JSONResponse, str]:
        return error(status, code, message, request_id), code

    if state.draining:  # the router retries it elsewhere; a client may come back in a second
        return error(503, "draining", f"{state.worker_id} is draining", request_id,
                     retry_after_s=1), "draining"
    if not state.ready:
        return fail(503, "not_ready", f"{state.worker_id} is still loading")
    header = request.headers.get(DEADLINE_HEADER)
    try:
        timeout_s = (float(header) / 1000 if header is not None
                     else float(body.get("timeout_s", default_timeout_s)))
    except (TypeError, ValueError):
        return fail(400, "bad_deadline", f"{DEADLINE_HEADER} must be a number of "
                    f"milliseconds, not {header!r}")
    left_s = timeout_s - (time.perf_counter() - received)
    if left_s <= 0:  # the router gave up on it already: running the model helps nobody
        metrics.expired.labels("arrival").inc()
        return fail(504, "deadline_exceeded", f"the request's deadline passed "
                    f"{-1000 * left_s:.0f} ms before it could start")
    try:
        row = decode_input(body.get("inputs") if isinstance(body, dict) else None)
    except PayloadError as exc:
        return fail(400, "bad_payload", str(exc))
    try:
        probs = await state.batcher.submit(row, timeout_s=left_s)
    except BatchTimeoutError as exc:
        metrics.expired.labels("queue").inc()
        return fail(504, "queue_timeout", str(exc))
    except BatchError as exc:
        model_failures.failure("model call", "the model failed request %s", request_id)
        return fail(500, "model_error", str(exc))
    info = state.recognizer.info
    return JSONResponse({
        "request_id": request_id, "probabilities": [float(p) for p in probs],
        "model_version": info.version, "precision": info.precision,
        "device": state.recognizer.device, "worker_id": state.worker_id,
        "worker_ms": 1000 * (time.perf_counter() - received),
    }), "ok"


def describe(state: WorkerState) -> dict[str, Any]:
    info = state.recognizer.info
    return {"model_version": info.version, "precision": info.precision,
            "device": state.recognizer.device, "providers": list(state.recognizer.providers),
            "max_batch_size": state.batcher.max_batch_size}


def warm_up(recognizer: Recognizer, max_batch_size: int) -> None:
    """Run the shapes requests will have once, so the first real request is not the slow one."""
    rng = np.random.default_rng(0)
    ids = np.zeros(64, np.int64)
    ids[:8] = [101, 2023, 2003, 1037, 3231, 6251, 1012, 102]
    mel = np.full((64, 798), -8.0, np.float32)
    row = ModelInput(audio=AudioInput(mel, 300, 3.0),
                     video=VideoInput(rng.random((8, 48, 48), dtype=np.float32), True, 3.0, 90),
                     text=(ids, (ids > 0).astype(np.int64)))
    for n in sorted({1, min(8, max_batch_size), max_batch_size}):
        recognizer.predict([row] * n)


async def heartbeat_loop(state: WorkerState, registry_url: str, url: str,
                         every_s: float = 2.0, max_backoff_s: float = 4.0) -> None:
    """Register in the shared (Redis) registry and keep the entry while serving, and while
    draining with the entry marked so, through failures: a heartbeat that fails is retried
    with capped exponential backoff (tenacity) and never given up, each failure logged
    (rate-limited). A heartbeat is a full SET with a TTL, so
    after a Redis restart (which loses every key) the worker registers again, within
    `max_backoff_s` plus the breaker's trial interval of Redis answering: on AWS routers find
    workers only here, and a worker that stays unregistered is capacity billed but unused.
    `max_backoff_s` stays well under the entry's TTL (10 s) so one lost heartbeat never drops
    a healthy worker from routing."""
    from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential, wait_random

    from libra.serving.state.redis_link import RedisUnavailableError
    from libra.serving.state.registry import RedisRegistry

    registry = RedisRegistry(registry_url)
    state.advertise_url = url
    loop = asyncio.get_running_loop()
    limited = RateLimitedLog(log)
    while True:  # draining too (marked so): cancelled once drained or at shutdown
        info = worker_info(state, url)
        failures = 0
        async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(Exception),
                wait=wait_exponential(multiplier=0.1, max=max_backoff_s) + wait_random(0, 0.1),
                reraise=True):
            with attempt:
                try:
                    await loop.run_in_executor(None, registry.heartbeat, info)
                except RedisUnavailableError as exc:  # its cause is logged by the RedisLink
                    failures += 1
                    if failures == 1 or failures % 10 == 0:
                        log.warning("heartbeat of %s to the registry failed (%d in a row: %s); "
                                    "retrying with backoff", state.worker_id, failures, exc)
                    raise
                except Exception:  # retried with backoff: the worker must come back on its own
                    failures += 1
                    limited.failure("registry heartbeat", "heartbeat of %s to the registry "
                                    "failed (%d in a row); retrying with backoff",
                                    state.worker_id, failures, level=logging.WARNING)
                    raise
        if failures:
            log.warning("%s registered again after %d failed heartbeats", state.worker_id,
                        failures)
        await asyncio.sleep(every_s)


def begin_drain(state: WorkerState, notice: Notice, metrics: WorkerMetrics) -> bool:
    """Stop taking work on a spot interruption notice: one log line, the counter, the line the
    local provisioner reads. False if the worker was draining already."""
    metrics.spot_notices.labels(notice.kind).inc()
    if state.draining:
        return False
    state.draining = True
    state.notice = notice
    log.warning("spot interruption notice (%s, reclaimed at %s): %s drains: new requests "
                "refused 503, %d in flight finishing", notice.detail.get("action", "terminate"),
                notice.when, state.worker_id, state.active)
    print(f"{WORKER_DRAINING_LINE} id={state.worker_id}", flush=True)
    return True


async def drain(state: WorkerState, registry_url: str | None, metrics: WorkerMetrics,
                poll_s: float = 0.05) -> None:
    """After a notice: keep the registry entry, marked draining, until the requests in flight
    are answered; then remove it (module docs). The heartbeat loop writes the mark (it reads
    `state.draining`) so that it is re-written through a Redis restart, like any heartbeat."""
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    if registry_url and state.heartbeat is not None:
        await loop.run_in_executor(None, mark_draining, registry_url, state)
    while state.active > 0 or state.batcher.in_flight > 0:
        await asyncio.sleep(poll_s)
    if state.heartbeat is not None:
        # a beat already in its thread may still land after the removal: it says draining, and
        # expires with the entry's TTL
        state.heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await state.heartbeat
    if registry_url:
        await loop.run_in_executor(None, deregister, registry_url, state.worker_id)
    metrics.drains.inc()
    log.warning("%s drained %.1f s after the notice and left the registry; refusing work "
                "until the instance is reclaimed", state.worker_id, time.monotonic() - started)
    print(f"{WORKER_DRAINED_LINE} id={state.worker_id}", flush=True)


def mark_draining(registry_url: str, state: WorkerState) -> None:
    """One heartbeat with the draining mark at once, not at the loop's next beat."""
    from libra.serving.state.registry import RedisRegistry

    with contextlib.suppress(Exception):  # the heartbeat loop writes it again in a moment
        RedisRegistry(registry_url).heartbeat(worker_info(state, state.advertise_url))


def worker_info(state: WorkerState, url: str) -> WorkerInfo:
    """This worker's registry entry, marked draining once it is."""
    return WorkerInfo(state.worker_id, url, describe(state)["device"],
                      state.batcher.max_batch_size, draining=state.draining)


def deregister(registry_url: str, worker_id: str) -> None:
    from libra.serving.state.registry import RedisRegistry

    with contextlib.suppress(Exception):  # leaving is best effort: the entry's TTL ends it anyway
        RedisRegistry(registry_url).remove(worker_id)


class DrainingServer(uvicorn.Server):
    """uvicorn's graceful shutdown, with the worker marked draining the moment SIGTERM lands."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.libra_app = app

    def handle_exit(self, sig: int, frame: Any) -> None:
        state = getattr(self.libra_app.state, "worker", None)
        if state is not None:
            state.draining = True
        super().handle_exit(sig, frame)


_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@click.command(name="libra-worker", context_settings={"help_option_names": ["-h", "--help"]},
               help=__doc__.split("\n\n")[0])
@click.version_option(package_name="libra-serve", prog_name="libra-worker")
@click.option("--model", type=click.Path(path_type=Path), default=default_model_dir,
              show_default="$LIBRA_HOME/onnx, else the checkout's or ./ artifacts/onnx",
              help="ONNX file or `libra-model build` folder")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=0, show_default=True, help="0 picks a free port")
@click.option("--device", type=click.Choice(["auto", "cuda", "cpu"]), default="auto",
              show_default=True)
@click.option("--cpu-precision", type=click.Choice(["fp32", "int8", "int4"]), default="fp32",
              show_default=True)
@click.option("--threads", type=int, default=None, help="CPU intra-op threads")
@click.option("--max-batch-size", type=int, default=32, show_default=True)
@click.option("--max-batch-delay-ms", type=float, default=5.0, show_default=True)
@click.option("--worker-id", default=None)
@click.option("--redis-url", envvar="LIBRA_REDIS_URL", default=None,
              help="register and heartbeat here [$LIBRA_REDIS_URL]")
@click.option("--drain-timeout-s", type=float, default=30.0, show_default=True)
@click.option("--spot-watch/--no-spot-watch", default=False, show_default=True,
              help="poll the instance metadata for a spot interruption notice and drain on one "
              "(on EC2; infra/terraform's user data turns it on)")
@click.option("--imds-url", default="http://169.254.169.254", show_default=True,
              help="instance metadata endpoint (IMDSv2) --spot-watch polls")
@click.option("--spot-poll-s", type=click.FloatRange(min=0.05), default=5.0,
              show_default=True, help="seconds between two reads of the instance metadata")
@click.option("--log-level", type=click.Choice(_LOG_LEVELS, case_sensitive=False),
              envvar="LIBRA_LOG_LEVEL", default="info", help="[$LIBRA_LOG_LEVEL; info]")
@click.option("--log-format", type=click.Choice(["text", "json"]), envvar="LIBRA_LOG_FORMAT",
              default="text", help="stderr as text or JSON lines [$LIBRA_LOG_FORMAT; text]")
def main(**opts: Any) -> None:
    args = SimpleNamespace(**opts)
    args.log_level = args.log_level.lower()
    if importlib.util.find_spec("onnxruntime") is None:
        raise click.ClickException(
            "no ONNX Runtime installed: pip install 'libra-serve[worker,gpu]' on a CUDA machine, "
            "'libra-serve[worker,cpu]' elsewhere (one of the two, never both)")
    setup_logging(args.log_level, args.log_format)
    die_with_parent()  # a killed server must not leave a worker holding its port
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    port = sock.getsockname()[1]
    worker_id = args.worker_id or f"worker-{port}-{os.getpid()}"
    try:
        app = create_app(args.model, device=args.device, cpu_precision=args.cpu_precision,
                         threads=args.threads, max_batch_size=args.max_batch_size,
                         max_batch_delay_s=args.max_batch_delay_ms / 1000, worker_id=worker_id,
                         registry_url=args.redis_url,
                         advertise_url=f"http://{args.host}:{port}",
                         imds_url=args.imds_url if args.spot_watch else None,
                         spot_poll_s=args.spot_poll_s, notice_signal=True)
    except FileNotFoundError as exc:
        sys.exit(f"libra-worker: {exc}")
    log.info("libra-worker %s on http://%s:%d: model %s, device %s, cpu precision %s, threads "
             "%s, batches of up to %d within %g ms, registry %s, drain %g s, spot watch %s; "
             "log %s/%s",
             worker_id, args.host, port, args.model, args.device, args.cpu_precision,
             args.threads or "auto", args.max_batch_size, args.max_batch_delay_ms,
             redact_url(args.redis_url) if args.redis_url else "none", args.drain_timeout_s,
             f"{args.imds_url} every {args.spot_poll_s:g} s" if args.spot_watch else "off",
             args.log_level, args.log_format)
    # log_config=None: uvicorn's warnings go through our handler, in our format
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=int(
        args.drain_timeout_s), access_log=False, log_config=None)
    server = DrainingServer(config, app)

    async def run() -> None:
        task = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        while not getattr(getattr(app.state, "worker", None), "ready", False) and not task.done():
            await asyncio.sleep(0.01)
        if not task.done():
            print(f"{WORKER_READY_LINE} port={port} id={worker_id}", flush=True)
        await task

    # uvicorn restores these handlers after its graceful shutdown and re-raises the signal it
    # caught: a no-op SIGTERM handler makes a completed drain exit 0 rather than die by signal
    signal.signal(signal.SIGTERM, lambda *_: None)
    # SIGUSR1's default would kill the worker: until the app takes it, remember it
    signal.signal(signal.SIGUSR1, lambda *_: _EARLY_NOTICE.set())
    asyncio.run(run())


if __name__ == "__main__":
    main()
