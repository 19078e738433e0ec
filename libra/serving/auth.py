"""Closed by default, open on purpose: the API-key gate in front of the whole app.

With keys configured (`libra.serving.keys`), every request needs `Authorization: Bearer <key>`
except `/healthz` and `/readyz` (load balancers and orchestrators probe them without keys):

- no key, or a key we do not know: 401 `missing_key` / `bad_key`, with `WWW-Authenticate`;
- the admin surface (`/status`, `/metrics`, `/docs`, `/redoc`, `/openapi.json`) with a key that is
  not an admin key: 403 `admin_only`;
- any other path (`/predict`) over the key's token bucket (`libra.serving.ratelimit`): 429
  `rate_limited` with `Retry-After`. The admin surface is not rate-limited (scrapers poll it).

Why an admin key rather than a second, internal port: one listener keeps one server lifecycle
(drain, signals, TLS in front of it) and one app in the process; Prometheus sends a bearer token
from a file (`authorization: {credentials_file: ...}`), and on AWS the public load balancer does
not route the admin paths at all (infra), so the key is a second lock, not the only one.

Why a pure ASGI middleware and not a FastAPI dependency: `/docs`, `/redoc` and `/openapi.json`
are routes FastAPI adds itself, outside the dependency system, and a refusal should cost no body
read, no JSON parsing and no routing. Without keys the gate is not installed at all: `libra-serve`
on loopback works exactly as it did, at the same speed.

Refusals are counted (`libra_auth_failures_total{reason}`, `libra_rate_limited_total{key}`) and
logged, rate-limited, with the key's name and the client's address, never the key.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from libra.serving.keys import ApiKey, Keyring
from libra.serving.logs import RateLimitedLog
from libra.serving.ratelimit import KeyedLimiter, retry_after_s

if TYPE_CHECKING:
    from fastapi import FastAPI

    from libra.serving.metrics import ServeMetrics
    from libra.serving.settings import Settings

log = logging.getLogger(__name__)
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
ADMIN_PATHS = frozenset({"/status", "/metrics"})
REALM = 'Bearer realm="libra"'


class AuthGate:
    """ASGI middleware: API key, admin rights and the key's rate limit (see module docs)."""

    def __init__(self, app: ASGIApp, *, keyring: Keyring, limiter: KeyedLimiter,
                 admin_paths: frozenset[str],
                 metrics: Callable[[], ServeMetrics | None] = lambda: None) -> None:
        self.app, self.keyring, self.limiter = app, keyring, limiter
        self.admin_paths, self.metrics = admin_paths, metrics
        self.refusals = RateLimitedLog(log)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        key, refusal = self.check(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        assert key is not None
        scope.setdefault("state", {})["api_key"] = key.name  # request.state.api_key
        await self.app(scope, receive, send)

    def check(self, scope: Scope) -> tuple[ApiKey | None, JSONResponse | None]:
        """(the caller's key, None) to let the request through, else (key or None, refusal)."""
        headers = dict(scope["headers"])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1") or uuid.uuid4().hex
        scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None, self._deny(scope, 401, "missing_key", "send an API key as "
                                    "`Authorization: Bearer <key>`", request_id, REALM)
        key = self.keyring.lookup(token)
        if key is None:
            return None, self._deny(scope, 401, "bad_key", "this API key is not valid",
                                    request_id, f'{REALM}, error="invalid_token"')
        path = scope["path"]
        if path in self.admin_paths:
            if key.admin:
                return key, None
            return key, self._deny(scope, 403, "admin_only", f"{path} needs an admin key",
                                   request_id, f'{REALM}, error="insufficient_scope"', key)
        wait_s = self.limiter.take(key.name, key.rate_rps, key.burst)
        if wait_s == 0.0:
            return key, None
        metrics = self.metrics()
        if metrics is not None:
            metrics.rate_limited.labels(key.name).inc()
        after = retry_after_s(wait_s)
        rate = key.rate_rps or self.limiter.rate_rps
        burst = key.burst or self.limiter.burst
        self.refusals.failure(f"rate {key.name}", "key %r is over its rate limit (%g/s, burst "
                              "%d): 429 from %s", key.name, rate, burst, _client(scope),
                              level=logging.WARNING, exc_info=False)
        return key, _error(429, "rate_limited", f"this key may send {rate:g} requests/s "
                           f"(bursts of {burst}); retry in {after} s", request_id,
                           {"retry-after": str(after)})

    def _deny(self, scope: Scope, status: int, code: str, message: str, request_id: str,
              challenge: str, key: ApiKey | None = None) -> JSONResponse:
        metrics = self.metrics()
        if metrics is not None:
            metrics.auth_failures.labels(code).inc()
        self.refusals.failure(f"auth {code}", "%d %s: %s %s from %s%s", status, code,
                              scope.get("method", ""), scope["path"], _client(scope),
                              "" if key is None else f" (key {key.name!r})",
                              level=logging.WARNING, exc_info=False)
        return _error(status, code, message, request_id, {"www-authenticate": challenge})


def _error(status: int, code: str, message: str, request_id: str,
           headers: dict[str, str]) -> JSONResponse:
    """The API's one error shape (`libra.serving.api.error_response`)."""
    return JSONResponse({"code": code, "message": message, "request_id": request_id,
                         "error": message}, status_code=status, headers=headers)


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "unknown"


def admin_paths_of(app: FastAPI) -> frozenset[str]:
    """`/status`, `/metrics` and wherever this app serves its OpenAPI documents."""
    docs = [app.docs_url, app.redoc_url, app.openapi_url]
    if app.docs_url and app.swagger_ui_oauth2_redirect_url:
        docs.append(app.swagger_ui_oauth2_redirect_url)
    return ADMIN_PATHS | {p for p in docs if p}


def install_auth(app: FastAPI, settings: Settings,
                 clock: Callable[[], float] = time.monotonic) -> Keyring:
    """Put the gate in front of `app` if `settings` configure keys; return the keys (maybe none).

    Raises `KeyConfigError` (naming the file and line) for a bad key entry."""
    keyring = Keyring.load(settings.api_keys, settings.api_keys_file)
    if not keyring:
        return keyring

    def metrics() -> ServeMetrics | None:
        service: Any = getattr(app.state, "service", None)
        return None if service is None else service.metrics

    app.add_middleware(AuthGate, keyring=keyring, admin_paths=admin_paths_of(app),
                       limiter=KeyedLimiter(settings.rate_limit_rps, settings.rate_limit_burst,
                                            clock), metrics=metrics)
    if not keyring.has_admin:
        log.warning("no admin key configured: /status, /metrics and the OpenAPI docs answer "
                    "403 to every key")
    return keyring
