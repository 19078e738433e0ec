"""`/readyz` says whether this router can serve: not while a VM-only policy's only VM boots."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.e2e.test_serve import free_port


def test_readyz_is_503_while_a_vm_only_policy_has_no_ready_vm(built_models: tuple[Path, dict],
                                                              tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "serve.log").open("wb")
    # vm-static launches its one VM at the first tick; it then boots for 600 s (emulated)
    proc = subprocess.Popen(
        [sys.executable, "-m", "libra.serving.cli", "--port", str(port), "--model-dir",
         str(built_models[0]), "--policy", "vm-static", "--policy-params", '{"fleet_size": 1}',
         "--initial-vms", "0", "--boot-delay-s", "600"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "LIBRA_LOG_DIR": str(tmp_path)})
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                answer = httpx.get(f"{url}/readyz", timeout=10)
                if "no VM worker is ready" in answer.json().get("reason", ""):
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the controller never decided"
            time.sleep(0.2)
        assert answer.status_code == 503
        assert answer.json()["ready"] is False
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200  # alive, not ready
        status = httpx.get(f"{url}/status", timeout=10).json()
        assert status["fleet"]["booting"] == 1
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()
