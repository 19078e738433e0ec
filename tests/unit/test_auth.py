"""API keys, per-key token buckets and the gate in front of the app.

The keys and the buckets are tested as data (the bucket on a fake clock, never sleeping); the gate
with FastAPI's TestClient, as `install_auth` puts it in front of an app with the API's paths (the
gate reads nothing of the routes behind it), and in front of the real `create_app`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi import FastAPI, Request, Response
from fastapi.testclient import TestClient

from libra.serving.api import create_app
from libra.serving.auth import AuthGate, install_auth
from libra.serving.keys import MIN_KEY_CHARS, KeyConfigError, Keyring, hash_key, new_key, parse_keys
from libra.serving.metrics import ServeMetrics
from libra.serving.ratelimit import KeyedLimiter, TokenBucket, retry_after_s
from libra.serving.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


# ---- keys -------------------------------------------------------------------------------------

def test_a_new_key_is_random_and_its_hash_is_sha256_hex() -> None:
    a, b = new_key(), new_key()
    assert a != b
    assert a.startswith("libra_")
    assert len(a) >= MIN_KEY_CHARS
    hashed = hash_key(a)
    assert hashed.startswith("sha256:")
    assert len(hashed) == 7 + 64
    assert hash_key(a) == hashed  # no salt: the same key always hashes the same


def test_a_short_key_is_refused_for_hashing_it_would_be_a_password() -> None:
    with pytest.raises(ValueError, match=f"at least {MIN_KEY_CHARS}"):
        hash_key("hunter2")


def test_lookup_finds_the_key_by_its_hash_and_nothing_else() -> None:
    alice, ops = new_key(), new_key()
    ring = Keyring(parse_keys(f"alice {hash_key(alice)} rate_rps=2.5 burst=4\n"
                              f"# ops can see /status\nops {hash_key(ops)[7:]} admin", "keys"))
    found = ring.lookup(alice)
    assert found is not None
    assert (found.name, found.admin, found.rate_rps, found.burst) == (
        "alice", False, 2.5, 4)
    assert ring.lookup(ops) == ring.keys[1]
    assert ring.keys[1].admin
    assert ring.lookup(alice[:-1]) is None
    assert ring.lookup(hash_key(alice)) is None  # the stored hash is not a key
    assert ring.lookup("") is None
    assert ring.has_admin
    assert len(ring) == 2


def test_entries_can_be_separated_by_semicolons_in_one_environment_variable() -> None:
    text = f"a {hash_key(new_key())}; b {hash_key(new_key())} admin ;"
    assert [k.name for k in parse_keys(text, "LIBRA_API_KEYS")] == ["a", "b"]


@pytest.mark.parametrize(("text", "why"), [
    ("alice", "an entry is `name sha256"),
    ("alice sha256:abc", "is not a SHA-256 hash"),
    ("alice hunter2", "is not a SHA-256 hash"),
    (f"al/ice {'0' * 64}", "key name 'al/ice'"),
    (f"alice {'0' * 64} superuser", "option 'superuser'"),
    (f"alice {'0' * 64} rate_rps=0", "option 'rate_rps=0'"),
    (f"alice {'0' * 64} burst=two", "option 'burst=two'"),
])
def test_a_bad_entry_names_the_source_the_line_and_the_problem(text: str, why: str) -> None:
    with pytest.raises(KeyConfigError) as info:
        parse_keys(f"# header\n\n{text}\n", "keys.txt")
    assert str(info.value).startswith("keys.txt:3: ")
    assert why in str(info.value)


def test_two_keys_with_one_name_or_one_hash_are_refused() -> None:
    h = hash_key(new_key())
    with pytest.raises(KeyConfigError, match=r"share the name \['a'\]"):
        Keyring(parse_keys(f"a {hash_key(new_key())}\na {h}", "k"))
    with pytest.raises(KeyConfigError, match="share the hash"):
        Keyring(parse_keys(f"a {h}\nb {h}", "k"))


def test_keys_load_from_the_variable_and_the_file_together(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"b {hash_key(new_key())} admin\n")
    ring = Keyring.load(f"a {hash_key(new_key())}", path)
    assert [k.name for k in ring.keys] == ["a", "b"]
    with pytest.raises(KeyConfigError, match="cannot read the keys file"):
        Keyring.load(None, tmp_path / "missing")
    assert len(Keyring.load(None, None)) == 0


# ---- token bucket -----------------------------------------------------------------------------

def test_a_bucket_lets_a_burst_through_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate_rps=2.0, burst=3, clock=clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.5)  # one token every 0.5 s
    clock.now_s += 0.25
    assert bucket.take() == pytest.approx(0.25)  # half a token there, half still to come
    clock.now_s += 0.25
    assert bucket.take() == 0.0
    assert bucket.take() == pytest.approx(0.5)


def test_a_bucket_refills_up_to_its_burst_and_no_further() -> None:
    clock = Clock()
    bucket = TokenBucket(rate_rps=10.0, burst=2, clock=clock)
    bucket.take(), bucket.take()
    clock.now_s += 3600  # an idle hour buys a burst, not 36,000 requests
    assert [bucket.take() == 0.0 for _ in range(3)] == [True, True, False]


def test_a_refused_take_costs_no_token() -> None:
    clock = Clock()
    bucket = TokenBucket(rate_rps=1.0, burst=1, clock=clock)
    assert bucket.take() == 0.0
    for _ in range(100):  # a client hammering while limited does not push its wait out
        assert bucket.take() == pytest.approx(1.0)
    clock.now_s += 1.0
    assert bucket.take() == 0.0


@pytest.mark.parametrize(("wait_s", "header"), [(0.001, 1), (0.5, 1), (1.0, 1), (1.01, 2),
                                                 (99.2, 100)])
def test_retry_after_is_whole_seconds_rounded_up_and_at_least_one(wait_s: float,
                                                                   header: int) -> None:
    assert retry_after_s(wait_s) == header


def test_the_limiter_keeps_a_bucket_per_key_with_its_own_override() -> None:
    clock = Clock()
    limiter = KeyedLimiter(rate_rps=1.0, burst=1, clock=clock)
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0  # a is spent ...
    assert limiter.take("b") == 0.0  # ... b is not
    assert [limiter.take("big", 100.0, 5) == 0.0 for _ in range(6)] == [True] * 5 + [False]


def test_bucket_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="rate_rps"):
        TokenBucket(0.0, 1)


# ---- the gate -------------------------------------------------------------------------------

USER, ADMIN, SLOW = new_key(), new_key(), new_key()
KEYS = (f"user {hash_key(USER)}\nops {hash_key(ADMIN)} admin\n"
        f"slow {hash_key(SLOW)} rate_rps=0.5 burst=2")


def api_like_app(settings: Settings, clock: Clock) -> FastAPI:
    """The API's paths, each answering who got through, behind the gate `install_auth` adds."""
    app = FastAPI()
    app.state.service = SimpleNamespace(metrics=ServeMetrics())

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, str | None]:
        return {"key": getattr(request.state, "api_key", None)}

    @app.get("/status")
    async def status() -> dict[str, list[str]]:
        return {"workers": ["http://10.0.0.7:8101"]}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(app.state.service.metrics.render(), media_type="text/plain")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz")
    async def readyz() -> dict[str, bool]:
        return {"ready": True}

    install_auth(app, settings, clock=clock)
    return app


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(clock: Clock) -> Iterator[TestClient]:
    with TestClient(api_like_app(Settings(api_keys=KEYS), clock)) as c:
        yield c


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def metrics_of(client: TestClient) -> str:
    return client.get("/metrics", headers=bearer(ADMIN)).text


@pytest.mark.parametrize("headers", [{}, {"authorization": "Basic dXNlcjpwdw=="},
                                     {"authorization": "Bearer "}])
def test_no_key_is_401_with_a_bearer_challenge_in_the_error_shape(client: TestClient,
                                                                  headers: dict) -> None:
    r = client.post("/predict", json={"text": "hi"}, headers={**headers, "x-request-id": "r1"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="libra"'
    assert r.json() == {"code": "missing_key", "message": r.json()["message"],
                        "request_id": "r1", "error": r.json()["message"]}
    assert "Authorization: Bearer" in r.json()["message"]


def test_a_wrong_key_is_401_invalid_token_and_counted(client: TestClient) -> None:
    r = client.post("/predict", json={"text": "hi"}, headers=bearer(USER + "x"))
    assert r.status_code == 401
    assert r.json()["code"] == "bad_key"
    assert r.json()["request_id"]
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    client.post("/predict", json={}, headers={})
    metrics = metrics_of(client)
    assert 'libra_auth_failures_total{reason="bad_key"} 1.0' in metrics
    assert 'libra_auth_failures_total{reason="missing_key"} 1.0' in metrics


def test_a_good_key_gets_through_and_the_route_knows_whose_it_is(client: TestClient) -> None:
    r = client.post("/predict", json={}, headers=bearer(USER))
    assert (r.status_code, r.json()) == (200, {"key": "user"})


def test_health_and_readiness_stay_open(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize("path", ["/status", "/metrics", "/docs", "/openapi.json", "/redoc",
                                  "/docs/oauth2-redirect"])
def test_the_admin_surface_needs_an_admin_key(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 401
    r = client.get(path, headers=bearer(USER))
    assert (r.status_code, r.json()["code"]) == (403, "admin_only")
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    assert "10.0.0.7" not in r.text
    assert client.get(path, headers=bearer(ADMIN)).status_code == 200


def test_an_unknown_path_is_closed_too(client: TestClient) -> None:
    assert client.get("/v2/health/live").status_code == 401
    assert client.get("/v2/health/live", headers=bearer(USER)).status_code == 404


def test_a_key_over_its_rate_gets_429_with_retry_after_until_its_bucket_refills(
        client: TestClient, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="libra.serving.auth"):
        assert [client.post("/predict", headers=bearer(SLOW)).status_code
                for _ in range(2)] == [200, 200]  # its burst of 2
        refused = [client.post("/predict", headers=bearer(SLOW)) for _ in range(3)]
        assert [r.status_code for r in refused] == [429] * 3
        assert refused[0].json()["code"] == "rate_limited"
        assert refused[0].headers["retry-after"] == "2"  # one token per 2 s at 0.5/s
        clock.now_s += 1.5
        assert client.post("/predict", headers=bearer(SLOW)).headers["retry-after"] == "1"
        clock.now_s += 0.5
        assert client.post("/predict", headers=bearer(SLOW)).status_code == 200
    assert client.post("/predict", headers=bearer(USER)).status_code == 200  # its own bucket
    assert 'libra_rate_limited_total{key="slow"} 4.0' in metrics_of(client)
    lines = [r.getMessage() for r in caplog.records if r.name == "libra.serving.auth"]
    assert len(lines) == 1  # logged once, not once per refusal
    assert "'slow'" in lines[0]
    assert SLOW not in caplog.text


def test_a_key_can_carry_its_own_limits() -> None:
    fast = new_key()
    settings = Settings(api_keys=f"fast {hash_key(fast)} burst=50", rate_limit_burst=2)
    with TestClient(api_like_app(settings, Clock())) as c:
        assert {c.post("/predict", headers=bearer(fast)).status_code for _ in range(50)} == {200}
        assert c.post("/predict", headers=bearer(fast)).status_code == 429


def test_the_admin_surface_is_not_rate_limited(client: TestClient) -> None:
    for _ in range(30):  # more than the default burst of 20
        assert client.get("/metrics", headers=bearer(ADMIN)).status_code == 200


def test_without_keys_no_gate_is_installed() -> None:
    settings = Settings()
    app = api_like_app(settings, Clock())
    assert all(m.cls is not AuthGate for m in app.user_middleware)
    with TestClient(app) as c:
        assert c.get("/status").status_code == 200
        assert c.post("/predict").json() == {"key": None}


# ---- the real app ------------------------------------------------------------------------------

def stand_in(settings: Settings) -> SimpleNamespace:
    """The running platform, as far as starting and stopping the real app needs it."""

    async def nothing() -> None:
        return None

    return SimpleNamespace(settings=settings, metrics=ServeMetrics(), start=nothing,
                           stop=nothing)


def test_the_real_app_is_gated_when_keys_are_configured() -> None:
    settings = Settings(api_keys=KEYS)
    with TestClient(create_app(stand_in(settings), settings=settings)) as c:  # type: ignore[arg-type]
        assert c.post("/predict", json={"text": "hi"}).status_code == 401
        assert c.get("/openapi.json", headers=bearer(USER)).status_code == 403
        assert c.get("/openapi.json", headers=bearer(ADMIN)).json()["paths"]["/predict"]
        assert c.get("/healthz").status_code == 200


def test_the_real_app_is_open_without_keys() -> None:
    settings = Settings()
    with TestClient(create_app(stand_in(settings), settings=settings)) as c:  # type: ignore[arg-type]
        assert c.get("/openapi.json").status_code == 200


def test_a_bad_key_entry_stops_the_app_from_being_built() -> None:
    settings = Settings(api_keys="alice sha256:nothex")
    with pytest.raises(KeyConfigError, match="LIBRA_API_KEYS:1"):
        create_app(stand_in(settings), settings=settings)  # type: ignore[arg-type]
