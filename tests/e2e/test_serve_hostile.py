"""The hostile corpus against `libra-serve` as shipped (uvicorn on uvloop, a real worker): every
body a parser chokes on, every decode bomb, truncated files and wrong types get the exact 4xx
that names the problem, a body that stalls half-way gets 408 within the bound, liberal base64 is
served, and the server keeps serving through all of it."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from bench.hostile_media import flac_bomb, frame_bomb, hostile_json, truncated
from tests.e2e.test_serve import Server
from tests.helpers import encode_video, encode_wav

pytestmark = pytest.mark.e2e

BODY_TIMEOUT_S = 2.0
HEADER_TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def server(built_models: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    serve = Server(built_models[0], tmp_path_factory.mktemp("hostile"), "--policy", "vm-static",
                   "--policy-params", '{"fleet_size": 1}', "--initial-vms", "1",
                   env={"LIBRA_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
                        "LIBRA_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S)})
    serve.wait_for_workers(1)
    yield serve
    serve.stop()


def still_serving(server: Server) -> None:
    assert httpx.get(f"{server.url}/healthz", timeout=30).status_code == 200
    r = httpx.post(f"{server.url}/predict", json={"text": "still there?"}, timeout=60)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(("name", "body", "status", "code"), hostile_json(),
                         ids=[case[0] for case in hostile_json()])
def test_hostile_json_gets_the_exact_4xx(server: Server, name: str, body: bytes, status: int,
                                         code: str) -> None:
    r = httpx.post(f"{server.url}/predict", content=body, timeout=60,
                   headers={"content-type": "application/json"})
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert r.json()["message"]
    still_serving(server)


BOMBS = {
    "flac 8 ch 384 kHz": ("audio", lambda: flac_bomb(16, 8, 384_000), 413,
                          "audio_too_many_samples"),
    "1080p 2,000 frames": ("video", lambda: frame_bomb(2000, 1920, 1080), 413,
                           "video_too_many_pixels"),
    "64x64 14,000 frames": ("video", lambda: frame_bomb(14_000, 64, 64), 413,
                            "video_too_many_frames"),
    "wav cut in its header": ("audio", lambda: encode_wav()[:30], 422, "audio_truncated"),
    "mp4 cut in half": ("video", lambda: truncated(encode_video(
        np.zeros((20, 64, 64), np.uint8))), 422, "video_truncated"),
    "a wav sent as video": ("video", encode_wav, 422, "video_no_frames"),
    "an mp4 sent as audio": ("audio", lambda: encode_video(np.zeros((5, 64, 64), np.uint8)), 422,
                             "audio_no_channels"),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_decode_bombs_and_broken_media_get_the_exact_4xx(server: Server, name: str) -> None:
    field, make, status, code = BOMBS[name]
    data = make()
    started = time.monotonic()
    r = httpx.post(f"{server.url}/predict", files={field: ("upload", data)}, timeout=120)
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    print(f"{name}: {len(data)} bytes, {r.status_code} {r.json()['code']} in "
          f"{time.monotonic() - started:.2f} s")
    still_serving(server)


def test_bombs_as_base64_json_too(server: Server) -> None:
    body = {"audio": base64.b64encode(flac_bomb(16, 8, 384_000)).decode(),
            "video": base64.b64encode(frame_bomb(2000, 1920, 1080)).decode()}
    r = httpx.post(f"{server.url}/predict", json=body, timeout=120)
    assert r.status_code == 413, r.text
    assert r.json()["code"] in {"audio_too_many_samples", "video_too_many_pixels"}
    still_serving(server)


def test_wrapped_and_data_uri_base64_is_served(server: Server) -> None:
    wav = encode_wav()
    mp4 = encode_video(np.random.default_rng(0).integers(0, 255, (12, 64, 64), np.uint8), fps=6)
    body = {"audio": "data:audio/wav;base64," + base64.encodebytes(wav).decode(),
            "video": base64.urlsafe_b64encode(mp4).decode().rstrip("=")}
    r = httpx.post(f"{server.url}/predict", json=body, timeout=60)
    assert r.status_code == 200, r.text
    # both were decoded; the noise video has no face, so the answer uses the audio alone
    assert r.json()["modalities_used"] == ["audio"]
    assert [w["code"] for w in r.json()["warnings"]] == ["no_face"]


def send_half(port: int, body: bytes) -> socket.socket:
    """A request whose body stops half-way; the socket stays open, sending nothing more."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.sendall(b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body) + body[:len(body) // 2])
    return sock


def read_answer(sock: socket.socket) -> tuple[bytes, bool]:
    """What the server sent until it closed (or 60 s passed), and whether it closed."""
    received = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            return received, True
        received += chunk
    return received, False


def test_a_body_that_stalls_half_way_gets_408_and_others_are_served(server: Server) -> None:
    body = json.dumps({"text": "this body will never be finished " * 20}).encode()
    stalled = [send_half(server.port, body) for _ in range(20)]
    started = time.monotonic()
    try:
        with httpx.Client(timeout=60) as client:  # meanwhile, the server serves others
            for _ in range(5):
                r = client.post(f"{server.url}/predict", json={"text": "I'm fine"})
                assert r.status_code == 200, r.text
        for sock in stalled:
            received, closed = read_answer(sock)
            head, _, payload = received.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408"), received[:300]
            assert json.loads(payload)["code"] == "body_timeout"
            assert closed, "the server closes a connection whose body stalled"
        waited_s = time.monotonic() - started
        print(f"20 stalled bodies answered 408 and closed after {waited_s:.1f} s "
              f"(body_timeout_s {BODY_TIMEOUT_S})")
    finally:
        for sock in stalled:
            sock.close()
    still_serving(server)


@pytest.mark.parametrize("sent", [b"", b"POST /predict HTTP/1.1\r\nHost: localhost\r\nConte"],
                         ids=["nothing", "half the headers"])
def test_a_connection_that_stalls_before_its_headers_end_is_closed(server: Server,
                                                                   sent: bytes) -> None:
    """uvicorn alone would hold these for ever (slowloris): closed after header_timeout_s."""
    stalled = []
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        sock.sendall(sent)
        stalled.append(sock)
    try:
        still_serving(server)  # meanwhile
        for sock in stalled:
            received, closed = read_answer(sock)
            assert closed, "the connection was held open"
            assert received == b""  # no request yet, nothing to answer
    finally:
        for sock in stalled:
            sock.close()


def test_a_kept_alive_connection_serves_request_after_request(server: Server) -> None:
    """The header timer restarts with each request: one connection that keeps working past
    several header timeouts is kept (a raw socket, so no client reconnects behind our back)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        for _ in range(4):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            answer = b""
            while b'"alive"' not in answer:
                chunk = sock.recv(4096)
                assert chunk, "the server closed a working kept-alive connection"
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200")
            time.sleep(HEADER_TIMEOUT_S * 0.75)  # the idle gap under test: < keep-alive (5 s)
