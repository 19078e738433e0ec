"""`libra-serve --health-port`: the probes on a port of their own (a thread, not the event loop),
as shipped (uvicorn on uvloop, a real worker process). Its `/readyz` follows the router's own:
503 with the reason while the only VM boots, 200 once it is ready; `/healthz` is answered on both
ports; a health port that is taken is a clear CLI error before anything starts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_serve import free_port

pytestmark = pytest.mark.e2e


def wait_for(condition: object, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if condition():  # type: ignore[operator]
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.1)


def test_the_health_port_answers_probes_and_follows_readiness(
        built_models: tuple[Path, dict], tmp_path: Path) -> None:
    port, health = free_port(), free_port()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "libra.serving.cli", "--port", str(port), "--health-port",
         str(health), "--model-dir", str(built_models[0]), "--policy", "vm-static",
         "--policy-params", '{"fleet_size": 1}', "--initial-vms", "1", "--boot-delay-s", "4"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "LIBRA_LOG_DIR": str(tmp_path)})
    main_url, health_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{health}"
    try:
        wait_for(lambda: httpx.get(f"{health_url}/healthz").status_code == 200)
        alive = httpx.get(f"{health_url}/healthz").json()
        assert alive["status"] == "alive"
        assert alive["loop_lag_ms"] >= 0
        # booting: both ports say not ready, with the same reason (the health port's is the
        # snapshot the event loop took on its last beat)
        wait_for(lambda: httpx.get(f"{main_url}/readyz").status_code == 503
                 and httpx.get(f"{health_url}/readyz").status_code == 503)
        reason = httpx.get(f"{main_url}/readyz").json()["reason"]
        assert httpx.get(f"{health_url}/readyz").json() == {"ready": False, "reason": reason}
        wait_for(lambda: httpx.get(f"{health_url}/readyz").status_code == 200)
        assert httpx.get(f"{health_url}/readyz").json() == {"ready": True}
        assert httpx.get(f"{main_url}/readyz").status_code == 200
        main = httpx.get(f"{main_url}/healthz")  # the main port keeps its own, at the door
        assert main.json() == {"status": "alive"}
        assert main.headers["x-request-id"]
        assert httpx.get(f"{health_url}/predict").status_code == 404
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()
    with pytest.raises(httpx.TransportError):  # it went with the server
        httpx.get(f"{health_url}/healthz", timeout=5)


def test_a_taken_health_port_is_a_clear_error(built_models: tuple[Path, dict],
                                              tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "libra.serving.cli", "--port", str(free_port()),
             "--health-port", str(busy), "--model-dir", str(built_models[0])],
            check=False, capture_output=True, text=True, timeout=120,
            env={**os.environ, "LIBRA_LOG_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert f"cannot open the health port 127.0.0.1:{busy}" in result.stderr
    assert "Traceback" not in result.stderr
