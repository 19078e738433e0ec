"""`libra-serve` closed by default, open on purpose: a real server started with API keys, and a
real start refused on a public address without them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from libra.serving.keys import hash_key, new_key
from tests.e2e.test_serve import Server, check_prediction

pytestmark = pytest.mark.e2e

USER, ADMIN, SLOW = new_key(), new_key(), new_key()


@pytest.fixture(scope="module")
def keyed_server(built_models: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[tuple[Server, Path]]:
    log_dir = tmp_path_factory.mktemp("serve-keys")
    keys = log_dir / "keys.txt"
    keys.write_text(f"# made by `libra-serve keys new`\nuser {hash_key(USER)}\n"
                    f"slow {hash_key(SLOW)} rate_rps=0.001 burst=1\n")
    server = Server(built_models[0], log_dir, "--policy", "serverless", "--initial-vms", "0",
                    "--api-keys-file", str(keys), "--log-format", "json",
                    env={"LIBRA_API_KEYS": f"ops {hash_key(ADMIN)} admin"})
    yield server, log_dir / f"serve-{server.port}.log"
    server.stop()


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_keys_decide_who_may_predict_and_how_often(keyed_server: tuple[Server, Path]) -> None:
    server, _ = keyed_server
    with httpx.Client(base_url=server.url, timeout=60) as client:
        r = client.post("/predict", json={"text": "let me in"})
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert set(r.json()) == {"code", "message", "request_id", "error"}  # the one error shape
        assert r.json()["code"] == "missing_key"
        r = client.post("/predict", json={"text": "let me in"}, headers=auth(USER[:-2]))
        assert (r.status_code, r.json()["code"]) == (401, "bad_key")

        r = client.post("/predict", json={"text": "I'm so happy!"}, headers=auth(USER))
        assert r.status_code == 200, r.text
        check_prediction(r.json(), ["text"], "serverless")

        first = client.post("/predict", json={"text": "again"}, headers=auth(SLOW))
        second = client.post("/predict", json={"text": "again"}, headers=auth(SLOW))
        assert first.status_code == 200, first.text
        assert second.status_code == 429
        assert second.json()["code"] == "rate_limited"
        assert int(second.headers["retry-after"]) >= 1
        assert client.post("/predict", json={"text": "mine"}, headers=auth(USER)
                           ).status_code == 200  # one key's limit is not another's


def test_the_admin_surface_needs_the_admin_key_and_probes_stay_open(
        keyed_server: tuple[Server, Path]) -> None:
    server, _ = keyed_server
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for path in ("/status", "/metrics", "/docs", "/openapi.json"):
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers=auth(USER)).status_code == 403, path
            assert client.get(path, headers=auth(ADMIN)).status_code == 200, path
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        client.post("/predict", json={"text": "x"}, headers=auth(SLOW))
        metrics = client.get("/metrics", headers=auth(ADMIN)).text
    assert 'libra_auth_failures_total{reason="missing_key"}' in metrics
    assert 'libra_auth_failures_total{reason="admin_only"}' in metrics
    assert 'libra_rate_limited_total{key="slow"}' in metrics


def test_the_log_has_a_start_line_and_the_refusals_but_no_key(
        keyed_server: tuple[Server, Path]) -> None:
    server, log_path = keyed_server
    httpx.get(f"{server.url}/status", headers=auth(USER + "x"))
    lines = [json.loads(line) for line in log_path.read_text().splitlines()
             if line.startswith("{")]
    start = [e for e in lines if e["logger"] == "libra.serving.cli"]
    assert len(start) == 1
    assert "API keys: 3 (1 admin)" in start[0]["message"]
    refusals = [e for e in lines if e["logger"] == "libra.serving.auth"]
    assert any(e["failure"] == "auth bad_key" and e["level"] == "WARNING" for e in refusals)
    text = log_path.read_text()
    for secret in (USER, ADMIN, SLOW, hash_key(USER)[7:]):
        assert secret not in text


def test_a_public_address_without_keys_is_refused(built_models: tuple[Path, dict]) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("LIBRA_API_KEYS",
                                                            "LIBRA_API_KEYS_FILE")}
    done = subprocess.run(
        [sys.executable, "-m", "libra.serving.cli", "--host", "0.0.0.0", "--port", "0",
         "--model-dir", str(built_models[0])],
        check=False, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode != 0
    assert "refusing to serve 0.0.0.0 without API keys" in done.stderr
    assert "--allow-unauthenticated" in done.stderr
    assert "Traceback" not in done.stderr
