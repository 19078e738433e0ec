"""`libra-serve` as a user runs it: a real process with real workers and a real serverless pool,
driven over loopback. What a client sees: answers, the backend that served, and clear 4xx."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from libra.runtime.labels import EMOTIONS
from tests.helpers import encode_video, encode_wav

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, model_dir: Path, log_dir: Path, *args: str, env: dict | None = None
                 ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (log_dir / f"serve-{self.port}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "libra.serving.cli", "--port", str(self.port), "--model-dir",
             str(model_dir), *args],
            stdout=self.log, stderr=subprocess.STDOUT,
            env={**os.environ, "LIBRA_LOG_DIR": str(log_dir), **(env or {})})
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{self.url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError((log_dir / f"serve-{self.port}.log").read_text()[-3000:])
            time.sleep(0.2)

    def wait_for_workers(self, n: int, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while len(httpx.get(f"{self.url}/status").json()["workers"]) < n:
            assert time.monotonic() < deadline, "workers never became ready"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def vm_server(built_models: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[Server]:
    """One VM worker, every request to it (vm-static), small body limit to test 413."""
    server = Server(built_models[0], tmp_path_factory.mktemp("serve"), "--policy", "vm-static",
                    "--policy-params", '{"fleet_size": 1}', "--initial-vms", "1",
                    env={"LIBRA_MAX_BODY_BYTES": str(2 * 2**20)})
    server.wait_for_workers(1)
    yield server
    server.stop()


def check_prediction(body: dict, modalities: list[str], backend: str) -> None:
    assert set(body["probabilities"]) == set(EMOTIONS)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert body["emotion"] == max(body["probabilities"], key=body["probabilities"].get)
    assert body["modalities_used"] == modalities
    assert body["backend"] == backend
    assert body["latency_ms"] > 0


def test_json_and_multipart_requests_are_answered_by_the_vm(vm_server: Server) -> None:
    r = httpx.post(f"{vm_server.url}/predict", json={"text": "I'm so happy for you!"})
    assert r.status_code == 200, r.text
    check_prediction(r.json(), ["text"], "vm")
    wav = encode_wav()
    r = httpx.post(f"{vm_server.url}/predict", files={"audio": ("a.wav", wav, "audio/wav")},
                   data={"text": "Leave me alone."}, timeout=30)
    assert r.status_code == 200, r.text
    check_prediction(r.json(), ["audio", "text"], "vm")
    frames = np.random.default_rng(0).integers(0, 255, (12, 96, 128), dtype=np.uint8)
    mp4 = encode_video(frames, fps=6)
    r = httpx.post(f"{vm_server.url}/predict", timeout=30, json={
        "video": base64.b64encode(mp4).decode(), "audio": base64.b64encode(wav).decode()})
    assert r.status_code == 200, r.text
    check_prediction(r.json(), ["audio"], "vm")  # noise has no face: the video is not used
    assert r.json()["face_found"] is False
    assert [w["code"] for w in r.json()["warnings"]] == ["no_face"]


@pytest.mark.parametrize(("kwargs", "status", "code"), [
    ({"json": {}}, 422, "no_modality"),
    ({"json": {"text": "   "}}, 422, "no_modality"),
    ({"json": {"audio": "***"}}, 422, "bad_base64"),
    ({"json": {"text": "x" * 5001}}, 413, "text_too_long"),
    ({"json": {"text": "hi", "image": "x"}}, 422, "invalid_field"),
    ({"json": {"text": 42}}, 422, "invalid_field"),
    ({"content": b"text=hi", "headers": {"content-type": "text/plain"}}, 415,
     "unsupported_media_type"),
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422,
     "bad_json"),
    ({"files": {"audio": ("a.wav", encode_wav()[:30], "audio/wav")}}, 422, "audio_truncated"),
    ({"files": {"audio": ("a.bin", os.urandom(4000), "application/octet-stream")}}, 415,
     "audio_unsupported_format"),
    ({"files": {"video": ("v.mp4", b"", "video/mp4")}}, 422, "video_empty"),
    ({"files": {"photo": ("p.jpg", b"x", "image/jpeg")}}, 422, "unknown_field"),
    ({"files": {"audio": ("big.wav", b"\x00" * (3 * 2**20), "audio/wav")}}, 413,
     "body_too_large"),
])
def test_bad_requests_get_a_4xx_naming_the_problem(vm_server: Server, kwargs: dict, status: int,
                                                   code: str) -> None:
    r = httpx.post(f"{vm_server.url}/predict", timeout=30, **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code
    assert body["message"]
    assert body["request_id"]


def test_metrics_and_status_tell_what_happened(vm_server: Server) -> None:
    httpx.post(f"{vm_server.url}/predict", json={"text": "okay then"})
    metrics = httpx.get(f"{vm_server.url}/metrics").text
    assert 'libra_requests_total{backend="vm",status="200"}' in metrics
    assert "libra_request_latency_seconds_bucket" in metrics
    assert "libra_vms_running 1.0" in metrics
    status = httpx.get(f"{vm_server.url}/status").json()
    assert status["policy"] == "vm-static"
    assert status["fleet"]["ready"] == 1
    assert status["routed"]["vm"] >= 1
    assert status["cost_usd"]["vm"] > 0
    assert httpx.get(f"{vm_server.url}/openapi.json").json()["paths"]["/predict"]


def test_serverless_policy_sends_everything_to_functions_cold_then_warm(
        built_models: tuple[Path, dict], tmp_path: Path) -> None:
    server = Server(built_models[0], tmp_path, "--policy", "serverless", "--initial-vms", "0")
    try:
        first = httpx.post(f"{server.url}/predict", json={"text": "Wow!"}, timeout=60).json()
        second = httpx.post(f"{server.url}/predict", json={"text": "Wow!"}, timeout=60).json()
        check_prediction(first, ["text"], "serverless")
        assert (first["cold_start"], second["cold_start"]) == (True, False)
        assert first["probabilities"] == second["probabilities"]
        assert httpx.get(f"{server.url}/status").json()["fleet"]["ready"] == 0
    finally:
        server.stop()


def test_libra_keeps_serverless_warm_when_a_cold_start_would_break_the_sla(
        built_models: tuple[Path, dict], tmp_path: Path) -> None:
    """The live controller hands the policy the pool's cold start (0.75 s) against a 0.5 s SLA:
    `libra` asks for a warm set sized to the spill it saw, and the pool keeps it alive. Calls
    planned at 0.1 s (not the local profile's 3.6 ms), so ~12 req/s of spill needs two."""
    server = Server(built_models[0], tmp_path, "--policy", "libra", "--initial-vms", "0",
                    "--sla-s", "0.5", "--serverless-keep-alive-s", "4",
                    env={"LIBRA_SERVERLESS__SERVICE_TIME_MEAN_S": "0.1"})
    try:
        with httpx.Client(timeout=60) as client:
            for _ in range(12):
                assert client.post(f"{server.url}/predict", json={"text": "hm"}).status_code == 200
            deadline = time.monotonic() + 60
            while True:
                sls = client.get(f"{server.url}/status").json()["serverless"]
                if sls["warm_target"] >= 2 and sls["instances"] >= sls["warm_target"]:
                    break
                assert time.monotonic() < deadline, sls
                time.sleep(0.5)
            time.sleep(6)  # longer than the keep-alive: only pings keep the set alive
            sls = client.get(f"{server.url}/status").json()["serverless"]
            assert sls["instances"] >= sls["warm_target"] >= 2
            metrics = client.get(f"{server.url}/metrics").text
            assert f"libra_serverless_warm_target {float(sls['warm_target'])}" in metrics
    finally:
        server.stop()


def test_two_routers_share_the_rate_through_redis(built_models: tuple[Path, dict],
                                                  tmp_path: Path, redis_server) -> None:  # type: ignore[no-untyped-def]
    env = {"LIBRA_REDIS_URL": redis_server.url, "LIBRA_SERVERLESS_DRIVER": "noop"}
    a = Server(built_models[0], tmp_path, "--policy", "serverless", "--initial-vms", "0", env=env)
    b = Server(built_models[0], tmp_path, "--policy", "serverless", "--initial-vms", "0", env=env)
    try:
        for _ in range(30):
            assert httpx.post(f"{a.url}/predict", json={"text": "hey"}).status_code == 200
        time.sleep(1.2)  # the counts are read for whole seconds that have ended
        rate_b = httpx.get(f"{b.url}/status").json()["rate_rps_10s"]
        assert rate_b * 10 >= 30 - 1e-9  # b saw a's 30 requests without serving any
        assert httpx.get(f"{b.url}/status").json()["routed"]["serverless"] == 0
    finally:
        a.stop()
        b.stop()


def test_libra_load_replays_a_trace_and_records_the_fleet(vm_server: Server, tmp_path: Path
                                                          ) -> None:
    """`libra-load` sends every arrival of the slice, prints libra-sim's table, and writes the
    server's fleet and decisions per second."""
    trace = tmp_path / "arrivals.csv"
    arrivals = np.sort(np.random.default_rng(0).uniform(0, 3, size=45))
    trace.write_text("timestamp_s\n" + "\n".join(f"{t:.4f}" for t in arrivals) + "\n")
    timeline = tmp_path / "timeline.csv"
    done = subprocess.run(
        [sys.executable, "-m", "libra.serving.loadgen", "--trace", str(trace),
         "--url", vm_server.url, "--duration", "10", "--timeline", str(timeline)],
        check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("vm-static (live)"))
    cells = row.split()
    assert cells[2] == "45"  # requests: every arrival was sent and answered
    assert cells[-2] == "0.0"  # serverless %: vm-static keeps everything on its VM
    rows = timeline.read_text().splitlines()
    assert rows[0].startswith("t_s,vms_ready,vms_booting,target_vms")
    assert len(rows) >= 3
    assert all(r.split(",")[1] == "1" for r in rows[1:])


def test_libra_load_names_the_bad_line_of_a_trace(vm_server: Server, tmp_path: Path) -> None:
    trace = tmp_path / "broken.csv"
    trace.write_text("timestamp_s\n0.5\nsoon\n")
    done = subprocess.run(
        [sys.executable, "-m", "libra.serving.loadgen", "--trace", str(trace),
         "--url", vm_server.url],
        check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "broken.csv:3" in done.stderr  # file and line
    assert "soon" in done.stderr
    assert "Traceback" not in done.stderr
